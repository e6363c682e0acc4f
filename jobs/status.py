"""`vw status`: what the warehouse holds, per table and per computed column."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.backfill import field_spec, recent_errors


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
    running_jobs: list[str] = field(default_factory=list)


def computed_columns(table: Any) -> list[str]:
    """Columns produced by a UDF (they carry ``vw.*`` field metadata)."""
    return [name for name in table.schema.names if field_spec(table, name)]


def _still_failed(table: Any, column: str, errors: list[Any]) -> int:
    """Rows with an error record whose value is still NULL (at their current address)."""
    addresses = sorted({e.row_address for e in errors if e.row_address is not None})
    if not addresses:
        return 0
    ds = table.to_lance()
    hits = 0
    for i in range(0, len(addresses), 1000):
        chunk = ",".join(str(a) for a in addresses[i : i + 1000])
        got = ds.to_table(columns=[column], with_row_address=True,
                          filter=f"_rowaddr IN ({chunk})")
        hits += got.column(column).null_count
    return hits


def column_status(table: Any, column: str) -> ColumnStatus:
    """Filled / missing / failed counts and the last errors of ``column``."""
    rows = table.count_rows()
    missing = table.count_rows(f"{column} IS NULL") if rows else 0
    try:
        errors = table.get_errors(column_name=column)
    except Exception:  # noqa: BLE001 - no error store yet
        errors = []
    meta = field_spec(table, column)
    model = f"{meta.get('vw.name', '?')} [{meta.get('vw.profile', '?')}]"
    if meta.get("vw.random_weights") == "true":
        model += " RANDOM WEIGHTS"
    return ColumnStatus(
        column=column,
        model=model,
        filled=rows - missing,
        missing=missing,
        failed=_still_failed(table, column, errors),
        last_errors=recent_errors(table, column, limit=5),
    )


def table_status(conn: Any, name: str) -> TableStatus:
    """Status of one table of the warehouse."""
    table = conn.open_table(name)
    try:
        running = [j.job_id for j in conn.list_jobs(table_name=name, status="RUNNING")]
    except Exception:  # noqa: BLE001 - job history may not exist yet
        running = []
    return TableStatus(
        table=name,
        rows=table.count_rows(),
        version=table.version,
        columns=[column_status(table, c) for c in computed_columns(table)],
        running_jobs=running,
    )


def warehouse_status(conn: Any) -> list[TableStatus]:
    """Status of every user table (geneva's system tables are left out)."""
    names = [n for n in conn.table_names() if not n.startswith("_")]
    return [table_status(conn, n) for n in sorted(names)]


def as_dict(status: list[TableStatus]) -> list[dict[str, Any]]:
    """JSON-ready form of :func:`warehouse_status`."""
    return [asdict(s) for s in status]
