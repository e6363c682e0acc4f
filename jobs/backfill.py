"""The backfill runner: register stage UDFs as columns and fill them through geneva.

All columns named in one call are filled inside one Ray session (the local Ray by default),
because every backfill job carries a fixed start-up cost. A backfill is

* incremental: only rows whose value is NULL (or was computed by an older UDF version);
* resumable: geneva checkpoints each batch, so a killed run picks up where it stopped;
* filterable: ``where`` restricts it further (combined with "not yet computed").
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tables.connection import open_videos, table_exists
from tables.names import VIDEOS, pooled_column, video_embedding_column
from udfs.models import ModelSpec, resolve_profile, vjepa2_spec


class BackfillError(RuntimeError):
    """A backfill could not be started (bad column, incompatible existing column, bad SQL)."""


@dataclass
class BackfillOptions:
    """What the user asked for on the command line (or in Python)."""

    where: str | None = None
    profile: str | None = None
    model: str | None = None
    batch_size: int = 8
    concurrency: int = 1
    num_frames: int | None = None
    num_gpus: float | None = None
    retry_failed: bool = False
    replace: bool = False


@dataclass
class ColumnReport:
    """What one backfill did to one column."""

    column: str
    model: str
    rows: int
    filled_before: int
    filled_after: int
    failed: int
    seconds: float
    job_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def computed(self) -> int:
        """Rows newly filled by this run."""
        return self.filled_after - self.filled_before


@dataclass
class Stage:
    """A backfillable stage: the table it fills, the columns it owns and how to build their UDFs.

    ``columns`` lists the stage's columns in fill order (derived columns after their source);
    ``spec`` resolves the model from the options without loading weights; ``udfs`` returns
    ``(column, geneva UDF)`` pairs.
    """

    name: str
    columns: Callable[[], list[str]]
    spec: Callable[[BackfillOptions], ModelSpec]
    udfs: Callable[[BackfillOptions, ModelSpec], list[tuple[str, Any]]]
    table: str = VIDEOS


def _video_embedding_udfs(opts: BackfillOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    from udfs.video_embedding import pooled_udf, video_embedding_udf

    col = video_embedding_column()
    steps = video_embedding_udf(
        spec.profile, opts.model, opts.num_frames, opts.batch_size, opts.num_gpus
    )
    return [(col, steps), (pooled_column(col), pooled_udf(col, spec))]


STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    """Add ``stage`` to the registry :data:`STAGES` (by name; re-registering replaces it)."""
    STAGES[stage.name] = stage
    return stage


register_stage(Stage(
    name="video_embedding",
    columns=lambda: [video_embedding_column(), pooled_column(video_embedding_column())],
    spec=lambda o: vjepa2_spec(o.profile, o.model),
    udfs=_video_embedding_udfs,
))


def stage_for(column: str) -> Stage:
    """The stage that owns ``column`` (its stage name or one of its column names)."""
    for stage in STAGES.values():
        if column == stage.name or column in stage.columns():
            return stage
    known = sorted({c for s in STAGES.values() for c in [s.name, *s.columns()]})
    raise BackfillError(f"unknown column {column!r}: backfillable columns are {', '.join(known)}")


def field_spec(table: Any, column: str) -> dict[str, str]:
    """The ``vw.*`` field metadata of an existing column (empty when absent)."""
    schema = table.schema
    if column not in schema.names:
        return {}
    meta = schema.field(column).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"vw.")}


def _check_compatible(table: Any, column: str, spec: ModelSpec, replace: bool) -> bool:
    """True when the column must be (re)registered; raises when it holds another model's output."""
    existing = field_spec(table, column)
    if not existing and column not in table.schema.names:
        return True
    if existing.get("vw.name") == spec.name and existing.get("vw.profile") == spec.profile:
        return False
    if replace:
        table.drop_columns([column])
        return True
    raise BackfillError(
        f"column {column!r} already holds output of model {existing.get('vw.name')!r} "
        f"(profile {existing.get('vw.profile')!r}); this run asks for {spec.name!r} "
        f"(profile {spec.profile!r}). Re-run with --replace to drop it and recompute every row."
    )


def ensure_columns(table: Any, stage: Stage, opts: BackfillOptions, spec: ModelSpec) -> None:
    """Register the stage's UDF columns on ``table`` (idempotent; --replace swaps models)."""
    for col, fn in stage.udfs(opts, spec):
        if _check_compatible(table, col, spec, opts.replace):
            table.add_columns({col: fn})
        else:
            table.alter_columns({"path": col, "udf": fn})


def _count(table: Any, where: str | None = None) -> int:
    return int(table.count_rows(where) if where else table.count_rows())


def _validate_where(table: Any, where: str | None) -> None:
    if not where:
        return
    try:
        table.count_rows(where)
    except Exception as err:  # noqa: BLE001 - surfaced as a clear message
        raise BackfillError(f"invalid --where {where!r}: {err}") from err


def _where_for(column: str, opts: BackfillOptions) -> str | None:
    parts = []
    if opts.where:
        parts.append(f"({opts.where})")
    if opts.retry_failed:
        # A fresh filter string gets fresh checkpoints, so rows that failed before are retried
        # (and their derived columns are not answered from a checkpoint holding NULL).
        nonce = uuid.uuid4().hex[:8]
        parts.append(f"('{nonce}' = '{nonce}')")
    if not parts:
        return None
    return " AND ".join([f"{column} IS NULL", *parts])


def _check_cluster(cluster: str | None) -> None:
    if cluster not in (None, "local"):
        raise BackfillError(f"unknown cluster {cluster!r}: only 'local' is defined")


@contextlib.contextmanager
def ray_session(conn: Any, cluster: str | None = None) -> Iterator[None]:
    """One Ray session for every backfill of a command (local Ray unless a cluster is named)."""
    from geneva._context import get_current_context

    _check_cluster(cluster)
    if get_current_context() is not None:
        # Already inside a Ray context (a notebook, a test session): reuse it.
        yield
        return
    with conn.local_ray_context():
        yield


def recent_errors(table: Any, column: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest error records of ``column`` as dicts (video row, exception, message)."""
    try:
        errors = table.get_errors(column_name=column)
    except Exception:  # noqa: BLE001 - no error store yet means no errors
        return []
    errors = sorted(errors, key=lambda e: e.timestamp, reverse=True)[:limit]
    return [
        {
            "row_address": e.row_address,
            "error_type": e.error_type,
            "message": e.error_message,
            "job_id": e.job_id,
            "time": e.timestamp.isoformat(),
        }
        for e in errors
    ]


def run_backfill(
    conn: Any,
    columns: list[str],
    opts: BackfillOptions,
    log: Callable[[str], None] = print,
    cluster: str | None = None,
) -> list[ColumnReport]:
    """Fill ``columns`` (in one Ray session); returns one report per column.

    Everything is checked before anything is registered: the cluster, the stages, their
    tables, the ``where`` filter and every stage's model spec.
    """
    resolve_profile(opts.profile)  # validates the setting
    _check_cluster(cluster)
    stages: list[Stage] = []
    for c in columns:
        s = stage_for(c)
        if s not in stages:
            stages.append(s)
    tables: dict[str, Any] = {}
    for stage in stages:
        if stage.table not in tables:
            tables[stage.table] = open_stage_table(conn, stage)
            _validate_where(tables[stage.table], opts.where)
    specs = [stage.spec(opts) for stage in stages]
    for stage, spec in zip(stages, specs, strict=True):
        log(f"model: {spec.label()}")
        ensure_columns(tables[stage.table], stage, opts, spec)
    reports: list[ColumnReport] = []
    with ray_session(conn, cluster):
        for stage, spec in zip(stages, specs, strict=True):
            for col in stage.columns():
                reports.append(_backfill_one(tables[stage.table], col, spec, opts, log=log))
    return reports


def open_stage_table(conn: Any, stage: Stage) -> Any:
    """The table ``stage`` fills (``videos`` or a view such as ``windows``); must exist."""
    if stage.table == VIDEOS:
        return open_videos(conn, create=False)
    if not table_exists(conn, stage.table):
        raise LookupError(
            f"the warehouse at {conn.uri} has no '{stage.table}' table, which stage "
            f"{stage.name!r} fills: create it first"
        )
    return conn.open_table(stage.table)


def _filled(table: Any, col: str, scope: str | None, rows: int) -> int:
    table.checkout_latest()
    return rows - _count(table, " AND ".join(filter(None, [scope, f"{col} IS NULL"])))


def _backfill_one(
    table: Any, col: str, spec: ModelSpec, opts: BackfillOptions, log: Callable[[str], None]
) -> ColumnReport:
    table.checkout_latest()
    scope = f"({opts.where})" if opts.where else None
    rows = _count(table, scope)
    filled_before = _filled(table, col, scope, rows)
    log(f"backfill {col}: {rows - filled_before} of {rows} rows to compute")
    start = time.monotonic()
    result = table.backfill(
        col, where=_where_for(col, opts), concurrency=opts.concurrency
    )
    seconds = time.monotonic() - start
    filled_after = _filled(table, col, scope, rows)
    job_id = getattr(result, "job_id", None)
    errors = [e for e in recent_errors(table, col, limit=1000) if e["job_id"] == job_id]
    return ColumnReport(
        column=col,
        model=spec.label(),
        rows=rows,
        filled_before=filled_before,
        filled_after=filled_after,
        failed=len({e["row_address"] for e in errors}),
        seconds=seconds,
        job_id=job_id,
        errors=errors[:5],
    )
