"""Arrow schemas of the warehouse tables (base columns only; computed columns are added by UDFs)."""

from __future__ import annotations

import pyarrow as pa

#: Columns of ``videos`` written by ingest. Every other column is computed by a UDF.
VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("split", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("captions", pa.list_(pa.string())),
        pa.field("category", pa.string()),  # the dataset's own category, when it has one
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("num_frames", pa.int64()),
        pa.field("codec", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("metadata", pa.string()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        # False for a row registered from a dataset's labels only (no video file; the video stages skip it);
        # NULL in tables written before the column existed, which means a video.
        pa.field("has_video", pa.bool_()),
    ]
)

#: Base columns ingest may overwrite on re-ingest (everything except the key).
VIDEOS_UPDATABLE = [f.name for f in VIDEOS_SCHEMA if f.name != "video_id"]
