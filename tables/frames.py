"""The derived ``frames`` table: one row per frame vector of a per-frame column, for moment search.

``videos.frame_features`` holds all frames of a video in one row, which suits training readers but
not "find moments like this one" over a million frames: that needs one indexable vector per row.
``vw index --column frame_features`` builds (then refreshes) the table ``frames``
(``frames_<column>`` for another per-frame column) with

``video_id`` string, ``time_s`` float64 (the ``<column>_times`` instant), ``frame`` int32 (position in
the video's sequence), ``vector`` ``fixed_size_list<float32, D>``, ``fingerprint`` string (a hash of
the video's vectors and times),

an ANN index on ``vector`` and a BTREE index on ``video_id``. The schema metadata records the
source table, column and model. A refresh re-reads the source column in batches (bounded memory)
and rewrites only the videos whose fingerprint changed, appeared or disappeared; a column now
computed by another model (or at another fps) rebuilds the table.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tables.catalog import all_table_names, forget, open_cached
from tables.filters import in_list
from tables.names import VIDEOS
from tables.vector_columns import VectorColumn, describe_column
from udfs.arrays import steps_from_arrow
from udfs.errors import VwError
from udfs.frame_features import NAME as FRAME_FEATURES

DEFAULT_FRAMES_TABLE = "frames"
IDENTITY_KEYS = ("vw.name", "vw.profile", "vw.fps")
_WRITE_ROWS = 65536
_DELETE_CHUNK = 500


class FramesError(VwError, RuntimeError):
    """The frames table cannot be built or used (names the table, the column and the reason)."""


def frames_table_name(column: str) -> str:
    """``frames`` for the default ``frame_features`` column, ``frames_<column>`` otherwise."""
    return DEFAULT_FRAMES_TABLE if column == FRAME_FEATURES else f"{DEFAULT_FRAMES_TABLE}_{column}"


def frames_schema(dim: int, metadata: dict[str, str]) -> pa.Schema:
    """Schema of a frames table of ``dim``-d vectors with ``metadata`` (source and model)."""
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("time_s", pa.float64(), nullable=False),
            pa.field("frame", pa.int32(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("fingerprint", pa.string(), nullable=False),
        ],
        metadata={k.encode(): v.encode() for k, v in metadata.items()},
    )


def table_metadata(table: Any) -> dict[str, str]:
    """The ``vw.*`` schema metadata of a table."""
    meta = table.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"vw.")}


def fingerprint(vectors: np.ndarray, times: np.ndarray) -> str:
    """A short hash of a video's vectors and times (changes when either changes)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(np.ascontiguousarray(vectors, np.float32).tobytes())
    h.update(np.ascontiguousarray(times, np.float64).tobytes())
    return h.hexdigest()


@dataclass
class FramesReport:
    """What a build or refresh of the frames table did."""

    table: str
    column: str
    videos_added: int
    videos_removed: int
    videos: int
    frames: int
    rebuilt: bool
    seconds: float


def _source_rows(source: Any, col: VectorColumn, batch_size: int = 256) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(video_id, vectors [T, D], times [T])`` of every row with the column computed."""
    if col.times is None:
        raise FramesError(
            f"column {col.name!r} has no timestamps column {col.name + '_times'!r}: "
            "run `vw backfill frame_features` to compute it"
        )
    ds = source.to_lance()
    for batch in ds.to_batches(columns=["video_id", col.name, col.times], filter=f"{col.name} IS NOT NULL",
                               batch_size=batch_size):
        feats = steps_from_arrow(batch.column(col.name))
        times = batch.column(col.times).to_pylist()
        for vid, f, t in zip(batch.column("video_id").to_pylist(), feats, times, strict=True):
            if f is None or len(f) == 0:
                continue
            t_arr = np.asarray(t if t is not None else [], np.float64)
            if len(t_arr) != len(f):
                raise FramesError(
                    f"video {vid!r}: column {col.name!r} has {len(f)} vectors but {col.times!r} has {len(t_arr)} "
                    "times; re-run `vw backfill frame_features` for it"
                )
            yield vid, f, t_arr


def _rows_table(items: list[tuple[str, np.ndarray, np.ndarray, str]], schema: pa.Schema) -> pa.Table:
    dim = schema.field("vector").type.list_size
    ids, times, frames, fps_ = [], [], [], []
    vecs = []
    for vid, f, t, fp in items:
        n = len(f)
        ids.extend([vid] * n)
        times.append(t)
        frames.append(np.arange(n, dtype=np.int32))
        fps_.extend([fp] * n)
        vecs.append(np.asarray(f, np.float32))
    flat = np.concatenate(vecs).ravel() if vecs else np.zeros(0, np.float32)
    return pa.table(
        {
            "video_id": pa.array(ids, pa.string()),
            "time_s": pa.array(np.concatenate(times) if times else np.zeros(0), pa.float64()),
            "frame": pa.array(np.concatenate(frames) if frames else np.zeros(0, np.int32), pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
            "fingerprint": pa.array(fps_, pa.string()),
        },
        schema=schema,
    )


def _existing(table: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for batch in table.to_lance().to_batches(columns=["video_id", "fingerprint"], batch_size=65536):
        out.update(zip(batch.column("video_id").to_pylist(), batch.column("fingerprint").to_pylist(), strict=True))
    return out


def refresh_frames(conn: Any, column: str = FRAME_FEATURES, *, source_table: str = VIDEOS,
                   progress: Callable[[int, int], None] | None = None) -> FramesReport:
    """Build or incrementally refresh the frames table of ``column`` (see the module documentation)."""
    start = time.monotonic()
    names = set(all_table_names(conn))
    if source_table not in names:
        raise FramesError(f"the warehouse has no {source_table!r} table")
    source = conn.open_table(source_table)
    col = describe_column(source, column, source_table)
    if not col.is_steps:
        raise FramesError(f"column {column!r} holds one vector per row; moment search needs a per-frame column")
    identity = {k: col.metadata[k] for k in IDENTITY_KEYS if k in col.metadata}
    meta = identity | {"vw.source_table": source_table, "vw.source_column": column,
                       "vw.source_version": str(source.version)}
    schema = frames_schema(col.dim, meta)
    name = frames_table_name(column)
    rebuilt = False
    if name in names:
        table = conn.open_table(name)
        old = table_metadata(table)
        same = (table.schema.field("vector").type == schema.field("vector").type
                and all(old.get(k) == v for k, v in identity.items()))
        if not same:
            conn.drop_table(name)
            forget(conn, name)
            rebuilt = True
    if name not in set(all_table_names(conn)):
        table = conn.create_table(name, schema=schema)
        rebuilt = True
    have = _existing(table)
    seen: set[str] = set()
    pending: list[tuple[str, np.ndarray, np.ndarray, str]] = []
    pending_rows = 0
    to_replace: list[str] = []
    added = 0
    total = source.count_rows()
    done = 0
    for vid, f, t in _source_rows(source, col):
        done += 1
        seen.add(vid)
        fp = fingerprint(f, t)
        if have.get(vid) == fp:
            continue
        if vid in have:
            to_replace.append(vid)
        pending.append((vid, f, t, fp))
        pending_rows += len(f)
        added += 1
        if pending_rows >= _WRITE_ROWS:
            _delete(table, to_replace)
            table.add(_rows_table(pending, schema))
            pending, pending_rows, to_replace = [], 0, []
        if progress is not None and done % 100 == 0:
            progress(done, total)
    _delete(table, to_replace)
    if pending:
        table.add(_rows_table(pending, schema))
    gone = [v for v in have if v not in seen]
    _delete(table, gone)
    if progress is not None:
        progress(done, total)
    _set_metadata(table, meta)
    frames = table.count_rows()
    return FramesReport(name, column, added, len(gone), len(seen), frames, rebuilt, time.monotonic() - start)


def _delete(table: Any, video_ids: list[str]) -> None:
    for i in range(0, len(video_ids), _DELETE_CHUNK):
        table.delete(in_list("video_id", video_ids[i : i + _DELETE_CHUNK]))


def _set_metadata(table: Any, meta: dict[str, str]) -> None:
    """Record the source version the table now reflects (Lance schema metadata)."""
    table.to_lance().replace_schema_metadata(meta)


def frames_state(conn: Any, column: str = FRAME_FEATURES, source_table: str = VIDEOS) -> dict[str, Any] | None:
    """``{"table", "frames", "source_version", "stale"}`` of the frames table of ``column`` (None when absent)."""
    name = frames_table_name(column)
    if name not in set(all_table_names(conn)):
        return None
    table = open_cached(conn, name)
    meta = table_metadata(table)
    source = open_cached(conn, source_table)
    built = int(meta.get("vw.source_version", "-1"))
    return {"table": name, "frames": table.count_rows(), "source_version": built,
            "stale": built != int(source.version)}
