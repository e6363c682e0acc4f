"""Table and column names used across the warehouse (stable once chosen).

The computed columns' names are defined by their stages (:mod:`udfs.video_embedding`,
:mod:`udfs.frame_features`, ...): a stage's module is the one place that names it.
"""

from __future__ import annotations

from udfs.errors import NotFoundError

VIDEOS = "videos"
WINDOWS = "windows"
EVENTS = "events"

#: The key column of each table stages fill (unique per row).
TABLE_KEYS = {VIDEOS: "video_id", WINDOWS: "window_id"}

#: Model name of ground-truth annotations in ``events``.
GROUND_TRUTH = "ground_truth"

DEFAULT_DB = "./warehouse"
DB_ENV = "VW_DB"


def key_column(table: str) -> str:
    """The key column of ``table`` (``video_id`` for videos, ``window_id`` for windows)."""
    if table not in TABLE_KEYS:
        raise NotFoundError(f"table {table!r} has no key column known to the warehouse ({', '.join(TABLE_KEYS)})")
    return TABLE_KEYS[table]
