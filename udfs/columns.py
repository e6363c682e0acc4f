"""Names of the stages' computed columns (environment-configurable) and of their companions.

Defined here, at the bottom of the import graph, because the UDF modules name their output
columns; :mod:`tables.names` re-exports them for the read paths.
"""

from __future__ import annotations

import os

VIDEO_EMBEDDING_ENV = "VIDEO_EMBEDDING_COL"
DEFAULT_VIDEO_EMBEDDING_COL = "video_embedding"
POOLED_SUFFIX = "_pooled"

FRAME_FEATURES_ENV = "FRAME_FEATURES_COL"
DEFAULT_FRAME_FEATURES_COL = "frame_features"
TIMES_SUFFIX = "_times"


def video_embedding_column() -> str:
    """Name of the per-step V-JEPA 2 column (``VIDEO_EMBEDDING_COL``, default ``video_embedding``)."""
    return os.environ.get(VIDEO_EMBEDDING_ENV, DEFAULT_VIDEO_EMBEDDING_COL)


def pooled_column(column: str) -> str:
    """Name of the pooled, L2-normalised companion of a per-step embedding column."""
    return column + POOLED_SUFFIX


def frame_features_column() -> str:
    """Name of the per-frame features column (``FRAME_FEATURES_COL``, default ``frame_features``)."""
    return os.environ.get(FRAME_FEATURES_ENV, DEFAULT_FRAME_FEATURES_COL)


def times_column(column: str) -> str:
    """Name of the timestamps companion of a per-frame column (``<column>_times``)."""
    return column + TIMES_SUFFIX
