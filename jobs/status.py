"""`vw status`: what the warehouse holds, per table and per computed column."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.job_drivers import classify
from tables.column_state import computed_columns, errors_of, failed_rows, field_spec, missing_filter, recent_errors
from tables.indexes import index_states


@dataclass
class ColumnStatus:
    """Fill state of one computed column."""

    column: str
    model: str
    filled: int
    missing: int
    failed: int
    last_errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TableStatus:
    """Rows, version, computed columns and running jobs of one table."""

    table: str
    rows: int
    version: int
    columns: list[ColumnStatus]
    #: Jobs recorded as PENDING / RUNNING whose driver is alive (or cannot be checked from here).
    running_jobs: list[str] = field(default_factory=list)
    #: Jobs recorded as PENDING / RUNNING whose driver is gone (see :mod:`jobs.job_drivers`).
    abandoned_jobs: list[dict[str, Any]] = field(default_factory=list)
    #: Indexes of the table: name, columns, type, indexed_rows, unindexed_rows.
    indexes: list[dict[str, Any]] = field(default_factory=list)
    #: Rows registered from labels only (no video file); the stages skip them, and they are not missing.
    without_video: int = 0


#: Rows registered from a dataset's labels only (``vw ingest --format soccernet --labels-only``).
WITHOUT_VIDEO = "has_video = false"


def without_video(table: Any) -> int:
    """Rows of ``table`` that have no video file (0 for a table without the ``has_video`` column)."""
    return table.count_rows(WITHOUT_VIDEO) if "has_video" in table.schema.names else 0


def column_status(table: Any, column: str, skipped: int = 0) -> ColumnStatus:
    """Filled / missing / failed counts and the last errors of ``column`` (``skipped``: the table has rows
    without a video file, which are neither filled nor missing)."""
    rows = table.count_rows()
    null = missing_filter(table, column)
    missing = table.count_rows(f"({null}) AND NOT ({WITHOUT_VIDEO})" if skipped else null) if rows else 0
    errors = errors_of(table, column)
    meta = field_spec(table, column)
    model = f"{meta.get('vw.name', '?')} [{meta.get('vw.profile', '?')}]"
    if meta.get("vw.random_weights") == "true":
        model += " RANDOM WEIGHTS"
    return ColumnStatus(
        column=column,
        model=model,
        filled=rows - missing - skipped,
        missing=missing,
        failed=len(failed_rows(table, column, errors)) if missing else 0,
        last_errors=recent_errors(table, column, limit=5),
    )


def table_status(conn: Any, name: str) -> TableStatus:
    """Status of one table of the warehouse."""
    table = conn.open_table(name)
    active = classify(conn, name)
    skipped = without_video(table)
    return TableStatus(
        table=name,
        rows=table.count_rows(),
        version=table.version,
        columns=[column_status(table, c, skipped) for c in computed_columns(table)],
        without_video=skipped,
        running_jobs=[j.job_id for j in active if j.state != "abandoned"],
        abandoned_jobs=[j.as_dict() for j in active if j.state == "abandoned"],
        indexes=index_states(table),
    )


def warehouse_status(conn: Any) -> list[TableStatus]:
    """Status of every user table (geneva's system tables are left out)."""
    names = [n for n in conn.table_names() if not n.startswith("_")]
    return [table_status(conn, n) for n in sorted(names)]


def as_dict(status: list[TableStatus]) -> list[dict[str, Any]]:
    """JSON-ready form of :func:`warehouse_status`."""
    return [asdict(s) for s in status]


def index_lines(status: TableStatus) -> list[str]:
    """One line per index of a table (type, columns, unindexed rows), for `vw status`."""
    lines = []
    for i in status.indexes:
        behind = f", {i['unindexed_rows']} rows not indexed yet" if i["unindexed_rows"] else ""
        lines.append(f"  index {i['name']}: {i['type']} on {', '.join(i['columns'])} "
                     f"({i['indexed_rows']} rows indexed{behind})")
    return lines
