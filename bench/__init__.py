"""Benchmarks of the pipeline stages (run each module with ``python -m bench.<name>``)."""
