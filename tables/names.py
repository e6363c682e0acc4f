"""Table and column names used across the warehouse (stable once chosen).

The computed columns' names are defined beside the stages in :mod:`udfs.columns` (UDF modules
must not import ``tables``) and re-exported here, so readers find every name in one module.
"""

from __future__ import annotations

from udfs.columns import (  # noqa: F401 - re-exported: the column names of the stages
    DEFAULT_FRAME_FEATURES_COL,
    DEFAULT_VIDEO_EMBEDDING_COL,
    FRAME_FEATURES_ENV,
    POOLED_SUFFIX,
    TIMES_SUFFIX,
    VIDEO_EMBEDDING_ENV,
    frame_features_column,
    pooled_column,
    times_column,
    video_embedding_column,
)

VIDEOS = "videos"
WINDOWS = "windows"
EVENTS = "events"

#: Model name of ground-truth annotations in ``events``.
GROUND_TRUTH = "ground_truth"

DEFAULT_DB = "./warehouse"
DB_ENV = "VW_DB"
