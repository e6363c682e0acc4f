"""Table and column names used across the warehouse (stable once chosen)."""

from __future__ import annotations

import os

VIDEOS = "videos"
WINDOWS = "windows"
EVENTS = "events"

DEFAULT_DB = "./warehouse"
DB_ENV = "VW_DB"

VIDEO_EMBEDDING_ENV = "VIDEO_EMBEDDING_COL"
DEFAULT_VIDEO_EMBEDDING_COL = "video_embedding"
POOLED_SUFFIX = "_pooled"


def video_embedding_column() -> str:
    """Name of the per-step V-JEPA 2 column (``VIDEO_EMBEDDING_COL``, default ``video_embedding``)."""
    return os.environ.get(VIDEO_EMBEDDING_ENV, DEFAULT_VIDEO_EMBEDDING_COL)


def pooled_column(column: str) -> str:
    """Name of the pooled, L2-normalised companion of a per-step embedding column."""
    return column + POOLED_SUFFIX
