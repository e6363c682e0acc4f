"""video-warehouse UDFs: decoding, the model registry and one module per computed column."""
