"""The ``events`` table: one row per detected or annotated event, per model.

Detector outputs (after de-duplication), imported prediction files, fused ensemble runs and
ground-truth annotations (``model = 'ground_truth'``) all land here, so comparing models is a
filter: ``label = 'Goal' AND confidence > 0.8 AND model = 'llava'``.

Every row has a deterministic ``event_id`` (a hash of video, model, run, time, label and
team), so writing the same events twice never duplicates them. :func:`write_events` replaces
the events of a *scope* (for example one model's events on the videos just analysed) in one
atomic commit: readers see either the old set or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tables.filters import sql_quote
from tables.names import EVENTS
from tables.names import GROUND_TRUTH as GROUND_TRUTH  # re-exported: the events table's ground-truth model
from tables.staged_rows import StagedRows
from udfs.errors import NotFoundError

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("time_s", pa.float64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("team", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("details", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("window_id", pa.int64()),
        pa.field("metadata", pa.string()),  # source-specific extras as JSON text
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: Scalar indexes (column -> index type) on the columns people filter on.
EVENT_INDEXES = {
    "video_id": "BTREE",
    "model": "BITMAP",
    "label": "BITMAP",
    "time_s": "BTREE",
    "confidence": "BTREE",
}


@dataclass
class Event:
    """One event before it is written (``metadata`` is any JSON-serialisable dict)."""

    video_id: str
    model: str
    time_s: float
    label: str
    team: str | None = None
    confidence: float | None = None
    details: str | None = None
    raw: str | None = None
    window_id: int | None = None
    run_id: str | None = None
    metadata: dict | None = None


def event_id(video_id: str, model: str, run_id: str | None, time_s: float, label: str,
             team: str | None) -> str:
    """The deterministic key of an event (time rounded to the millisecond)."""
    key = json.dumps([video_id, model, run_id or "", round(float(time_s), 3), label, team or ""])
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def events_to_arrow(events: Iterable[Event]) -> pa.Table:
    """Events as an Arrow table of :data:`EVENTS_SCHEMA` (duplicates by key dropped)."""
    now = dt.datetime.now(dt.UTC)
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if not e.video_id or not e.model or not e.label:
            raise ValueError(f"an event needs video_id, model and label: {e!r}")
        eid = event_id(e.video_id, e.model, e.run_id, e.time_s, e.label, e.team)
        rows.setdefault(eid, {
            "event_id": eid,
            "video_id": e.video_id,
            "model": e.model,
            "run_id": e.run_id,
            "time_s": float(e.time_s),
            "label": e.label,
            "team": e.team,
            "confidence": None if e.confidence is None else float(e.confidence),
            "details": e.details,
            "raw": e.raw,
            "window_id": e.window_id,
            "metadata": json.dumps(e.metadata, sort_keys=True) if e.metadata else None,
            "created_at": now,
        })
    return pa.Table.from_pylist(list(rows.values()), schema=EVENTS_SCHEMA)


def open_events(conn: Any, create: bool = True) -> Any:
    """Open the ``events`` table, creating it empty when missing."""
    if EVENTS in set(conn.table_names()):
        return conn.open_table(EVENTS)
    if not create:
        raise NotFoundError(f"the warehouse at {conn.uri} has no '{EVENTS}' table yet")
    return conn.create_table(EVENTS, schema=EVENTS_SCHEMA)


def scope_filter(models: Sequence[str] | None = None, video_ids: Sequence[str] | None = None,
                 run_id: str | None = None) -> str | None:
    """A SQL filter selecting events of ``models`` on ``video_ids`` (any of them when None)."""
    parts = []
    if models is not None:
        parts.append(f"model IN ({', '.join(sql_quote(m) for m in models)})" if models else "false")
    if video_ids is not None:
        parts.append(f"video_id IN ({', '.join(sql_quote(v) for v in video_ids)})" if video_ids else "false")
    if run_id is not None:
        parts.append(f"run_id = {sql_quote(run_id)}")
    return " AND ".join(parts) if parts else None


def write_events(table: Any, events: Iterable[Event] | pa.Table, replace_scope: str | None = None) -> int:
    """Upsert ``events`` by ``event_id``; with ``replace_scope`` (SQL), rows in that scope that
    are not among ``events`` are deleted in the same commit. Returns the number of rows written.
    """
    data = events if isinstance(events, pa.Table) else events_to_arrow(events)
    if data.num_rows == 0 and replace_scope is None:
        return 0
    merge = table.merge_insert("event_id").when_matched_update_all().when_not_matched_insert_all()
    if replace_scope is not None:
        merge = merge.when_not_matched_by_source_delete(replace_scope)
    merge.execute(data)
    return data.num_rows


def staged_events(table: Any, scope: str) -> StagedRows:
    """Events of ``scope`` written part by part and made the scope's events in one atomic commit at
    :meth:`~tables.staged_rows.StagedRows.commit`; every row must lie within ``scope``. A scope
    without events yet is one append; otherwise the rows are merged by ``event_id`` and the
    scope's other rows deleted (:func:`write_events`)."""
    return StagedRows(table, EVENTS_SCHEMA, scope, lambda rows: write_events(table, rows, replace_scope=scope))


def ensure_event_indexes(table: Any) -> list[str]:
    """Create the missing scalar indexes of :data:`EVENT_INDEXES` and bring stale ones up to date
    incrementally past :data:`tables.indexes.STALE_FRACTION`; returns the columns indexed or refreshed now."""
    from tables.indexes import refresh_stale_indexes

    if table.count_rows() == 0:
        return []
    have = {tuple(i.columns)[0] for i in table.list_indices() if len(i.columns) == 1}
    made = []
    for column, kind in EVENT_INDEXES.items():
        if column not in have:
            table.create_scalar_index(column, index_type=kind)
            made.append(column)
    return made + [r.column for r in refresh_stale_indexes(table, EVENTS)]
