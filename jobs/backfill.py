"""The backfill runner: register stage UDFs as columns and fill them through geneva.

All columns named in one call are filled inside one Ray session (the local Ray by default),
because every backfill job carries a fixed start-up cost. A backfill is

* incremental: only rows whose value is NULL (or was computed by an older UDF version);
* resumable: geneva checkpoints each batch, so a killed run picks up where it stopped;
* filterable: ``where`` restricts it further (combined with "not yet computed").

Each job's driver (this process) is recorded before the job starts (:mod:`jobs.job_drivers`),
so a job left RUNNING by a killed driver is recognised as abandoned: the next backfill of the
same table marks it FAILED with the reason before it starts.

Where Ray runs: ``--cluster NAME`` (a defined cluster), else the Ray named by ``RAY_ADDRESS``
(Ray's own convention: a ``host:port`` GCS address of a Ray started with ``ray start --head``
from the same environment; the command joins it as a driver, and its workers end when the
command does, or is killed), else the warm local Ray that successive commands share
(:mod:`jobs.local_ray`; ``VW_LOCAL_RAY=per-command`` starts one for the duration of the command).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.console import Display
from jobs.inline_driver import inline_drivers, job_driver, wait_for
from jobs.job_drivers import ensure_job_tables, mark_abandoned, record_driver
from jobs.local_ray import local_pipeline_resources, local_ray_mode, using_head, worker_env_vars
from jobs.read_tasks import task_size
from manifests.clusters import ClusterSpec
from tables.column_state import (
    UDF_VERSION_KEY,
    failed_rows,
    field_spec,
    is_blob,
    missing_filter,
    recent_errors,
    row_keys,
)
from tables.commits import is_commit_conflict, retry_on_conflict
from tables.connection import open_videos, table_exists
from tables.names import VIDEOS, key_column
from udfs.errors import NotFoundError, VwError
from udfs.models import ModelSpec, resolve_profile
from udfs.stage import Stage, StageOptions
from udfs.stages import stage_for_column
from udfs.unit_progress import counter_actor, read_units


class BackfillError(VwError, RuntimeError):
    """A backfill could not be started (bad column, incompatible existing column, bad SQL)."""


@dataclass
class BackfillOptions(StageOptions):
    """What the user asked for on the command line (or in Python): the stages' settings
    (:class:`~udfs.stage.StageOptions`: profile, model, batch size, ...) and how to run them."""

    where: str | None = None
    concurrency: int = 1
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
    recomputed: int = 0  # rows that had values of an older UDF version

    @property
    def computed(self) -> int:
        """Rows newly filled by this run."""
        return self.filled_after - self.filled_before


def report_lines(reports: list[ColumnReport]) -> Iterator[tuple[bool, str]]:
    """The summary of a backfill: ``(is_error, line)`` per column and per error record."""
    for r in reports:
        again = f" (+{r.recomputed} recomputed: new UDF version)" if r.recomputed else ""
        yield False, (f"  {r.column}: {r.computed} computed{again}, {r.filled_after}/{r.rows} filled, "
                      f"{r.failed} failed, {r.seconds:.1f}s")
        for e in r.errors:
            yield True, f"  error {e.get('row') or 'row ' + str(e['row_address'])}: {e['error_type']}: {e['message']}"
        if r.failed:
            more = f" ({r.failed - len(r.errors)} more in `vw status`)" if r.failed > len(r.errors) else ""
            yield True, (f"  {r.failed} rows of {r.column} failed{more}: fix the inputs named above (or the "
                         f"setting), then run the backfill again with --retry-failed")


def stage_for(column: str) -> Stage:
    """The stage that owns ``column`` (its stage name or one of its column names)."""
    try:
        return stage_for_column(column)
    except NotFoundError as err:
        raise BackfillError(str(err)) from None


def _check_compatible(table: Any, column: str, spec: ModelSpec, replace: bool) -> bool:
    """True when the column must be (re)registered; raises when it holds another model's output."""
    existing = field_spec(table, column)
    if not existing and column not in table.schema.names:
        return True
    wanted = spec.identity()
    differs = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
    if not differs:
        return False
    if replace:
        table.drop_columns([column])
        return True
    detail = "; ".join(f"{k.removeprefix('vw.')}: stored {old!r}, asked {new!r}" for k, (old, new) in differs.items())
    raise BackfillError(
        f"column {column!r} holds output computed differently ({detail}). "
        "Re-run with --replace to drop it and recompute every row."
    )


def ensure_columns(table: Any, pairs: list[tuple[str, Any]], opts: BackfillOptions, spec: ModelSpec) -> dict[str, bool]:
    """Register a stage's UDF columns (``(column, UDF)`` pairs) on ``table`` (idempotent; --replace
    swaps models).

    Returns, per column, whether its UDF version is new (a new column, or stored values that
    were computed by another version and will be recomputed).
    """
    changed: dict[str, bool] = {}
    for col, fn in pairs:
        fn.field_metadata = dict(fn.field_metadata or {}) | {UDF_VERSION_KEY: str(fn.version)}

        def register(col: str = col, fn: Any = fn) -> bool:
            # Decided afresh on each try: a preempted try may have committed the column already.
            stored = field_spec(table, col).get(UDF_VERSION_KEY)
            if _check_compatible(table, col, spec, opts.replace):
                table.add_columns({col: fn})
                return True
            table.alter_columns({"path": col, "udf": fn})
            return stored != str(fn.version)

        changed[col] = retry_on_conflict(register, table, f"registering column {col!r}")
    return changed


def _count(table: Any, where: str | None = None) -> int:
    return int(table.count_rows(where) if where else table.count_rows())


def _validate_where(table: Any, where: str | None) -> None:
    if not where:
        return
    try:
        table.count_rows(where)
    except Exception as err:  # noqa: BLE001 - surfaced as a clear message
        raise BackfillError(f"invalid --where {where!r}: {err}") from err


#: Rows that have a video file (``has_video`` is false for rows registered from labels only; NULL, in
#: tables written before the column existed, means a video).
WITH_VIDEO = "(has_video IS NULL OR has_video = true)"


def with_video_scope(table: Any, opts: BackfillOptions, log: Callable[[str], None]) -> BackfillOptions:
    """``opts`` restricted to rows with a video file when ``table`` has rows registered from labels only
    (``vw ingest --format soccernet --labels-only``); says how many rows that leaves out."""
    if "has_video" not in table.schema.names:
        return opts
    without = _count(table, " AND ".join(filter(None, [f"({opts.where})" if opts.where else None,
                                                       "has_video = false"])))
    if not without:
        return opts
    log(f"backfill {table.name}: {without} rows have no video file (registered from labels only): skipped")
    return replace(opts, where=" AND ".join(filter(None, [f"({opts.where})" if opts.where else None, WITH_VIDEO])))


def _where_for(missing: str, opts: BackfillOptions) -> str | None:
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
    return " AND ".join([f"({missing})", *parts])


def _check_cluster(cluster: str | ClusterSpec | None) -> ClusterSpec:
    """The cluster entry named ``cluster`` (``None``: the embedded local Ray) from the clusters file in force."""
    from manifests.clusters import ClusterConfigError, get_cluster

    if isinstance(cluster, ClusterSpec):
        return cluster
    try:
        return get_cluster(cluster)
    except ClusterConfigError as err:
        raise BackfillError(str(err)) from err


def _session_manifest(target: ClusterSpec, stage_names: list[str] | None) -> Any:
    """The geneva manifest of a session on ``target`` running ``stage_names`` (every stage when ``None``)."""
    from manifests.environments import build_manifest, environment_for_stage, environments

    envs = list(environments().values()) if stage_names is None else [environment_for_stage(s) for s in stage_names]
    return build_manifest(envs, install=target.environment == "manifest")


def on_cluster(stages: list[Stage], target: ClusterSpec) -> list[Stage]:
    """``stages`` whose UDFs carry the session manifest and the cluster's resources (unchanged on the local Ray).

    The model column of a GPU stage (its first column) gets ``target.num_gpus`` GPUs unless
    ``--num-gpus`` was given, and ``target.memory`` bytes of host memory when set.
    """
    if target.is_local:
        return stages
    manifest = _session_manifest(target, [s.name for s in stages])
    memory = target.memory_bytes()

    def placed(stage: Stage) -> Stage:
        gpu = stage.environment.gpu

        def udfs(opts: BackfillOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
            if gpu and opts.num_gpus is None:
                opts = replace(opts, num_gpus=target.num_gpus)
            pairs = stage.udfs(opts, spec)
            for col, fn in pairs:
                if target.type == "kuberay":
                    # geneva checks a UDF's manifest against its KubeRay context; it cannot see the
                    # environment of a session on an existing Ray cluster, and would warn there.
                    fn.manifest = manifest
                if gpu and memory is not None and col == stage.main_column():
                    fn.memory = memory
            return pairs

        return replace(stage, udfs=udfs)

    return [placed(s) for s in stages]


@contextlib.contextmanager
def ray_session(
    conn: Any, cluster: str | ClusterSpec | None = None, stage_names: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[None]:
    """One Ray session for every backfill of a command (local Ray unless a cluster is named).

    On a ``ray`` or ``kuberay`` cluster the workers run the manifest of ``stage_names``
    (every stage environment when ``None``); manifests are never used on the local Ray. The
    local Ray is the warm one shared by successive commands (:mod:`jobs.local_ray`) unless
    ``VW_LOCAL_RAY=per-command``. On a local Ray each job's driver runs in this process
    (:mod:`jobs.inline_driver`).
    """
    from geneva._context import LocalRayContext, get_current_context

    target = _check_cluster(cluster)
    if not target.is_local:
        from jobs.cluster_session import cluster_session
        from manifests.clusters import check_cluster

        check_cluster(target)  # an unreachable address or a missing kube config fails now, in a second

        with cluster_session(target, _session_manifest(target, stage_names)):
            yield
        return
    context = get_current_context()
    if context is not None:
        # Already inside a Ray context (a notebook, a test session): reuse it.
        with inline_drivers(log) if isinstance(context, LocalRayContext) else contextlib.nullcontext():
            yield
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        with joined_ray(address), conn.local_ray_context(), inline_drivers(log):
            yield
        return
    with local_pipeline_resources():
        if local_ray_mode() == "warm":
            with using_head(log) as head:
                log(f"local Ray: the warm head at {head.address} (started "
                    f"{_ago(time.time() - head.started)} ago; `vw ray stop` ends it)")
                with (joined_ray(head.address, env_vars=worker_env_vars()), conn.local_ray_context(),
                      inline_drivers(log)):
                    yield
            return
        with conn.local_ray_context(), inline_drivers(log):
            yield


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


@contextlib.contextmanager
def joined_ray(address: str, env_vars: dict[str, str] | None = None) -> Iterator[None]:
    """Join the running Ray at ``address`` (``host:port`` or ``auto``) as a driver for the block.

    geneva's local context then runs its jobs there instead of starting a Ray of its own. A Ray
    client address (``ray://``) is refused: such clusters are defined with ``vw clusters`` and
    named with ``--cluster``, so their workers get the manifest they need.
    """
    import logging

    import ray

    if "://" in address:
        raise BackfillError(
            f"RAY_ADDRESS={address!r} is a Ray client address: define the cluster (type ray) in the "
            "clusters file and use --cluster NAME, or give the GCS address host:port of a local Ray"
        )
    # ``env_vars``: the command's settings for its workers (the warm head's own environment has none of
    # them); a Ray of the user's (RAY_ADDRESS) gives its workers its own environment, as Ray does.
    ray.init(address=address, log_to_driver=True, logging_level=logging.INFO,
             runtime_env={"env_vars": env_vars} if env_vars else None)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class StageRun:
    """One stage of a command: its table, model, UDFs and which of its columns have a new version."""

    stage: Stage
    table: Any
    spec: ModelSpec
    pairs: list[tuple[str, Any]]
    changed: dict[str, bool]

    def main(self) -> tuple[str, Any]:
        """The main column and its UDF (filled by the stage's one geneva job)."""
        return self.pairs[0]

    def derived(self) -> list[tuple[str, Any]]:
        """The derived columns and their UDFs, in fill order (computed in this process)."""
        flags = {c.name: c.derived for c in self.stage.columns()}
        return [(col, fn) for col, fn in self.pairs[1:] if flags.get(col, True)]


def run_backfill(
    conn: Any,
    columns: list[str],
    opts: BackfillOptions,
    log: Callable[[str], None] = print,
    cluster: str | ClusterSpec | None = None,
    display: Display | None = None,
) -> list[ColumnReport]:
    """Fill the stages of ``columns``; returns one report per column, in stage and column order.

    Everything is checked before anything is registered: the cluster, the stages, their
    tables, the ``where`` filter and every stage's model spec. Each stage's main column is filled
    by one geneva job; its derived columns are computed from the main column in this process right
    after (no job of their own). The jobs of independent stages run at the same time in one Ray
    session, which is started only when some stage has rows to compute. ``display`` shows each job's
    rows done while it runs (:mod:`jobs.console`); without it, geneva shows its own progress.
    """
    resolve_profile(opts.profile)  # validates the setting
    if opts.concurrency < 1:
        raise BackfillError(f"--concurrency must be at least 1 (workers per job), got {opts.concurrency}")
    # Settings read once a Ray session starts: a bad value is refused before anything is written.
    job_driver()
    local_ray_mode()
    target = _check_cluster(cluster)
    stages: list[Stage] = []
    for c in columns:
        s = stage_for(c)
        if s not in stages:
            stages.append(s)
    stages = on_cluster(stages, target)
    tables: dict[str, Any] = {}
    for stage in stages:
        if stage.table not in tables:
            tables[stage.table] = open_stage_table(conn, stage)
            _validate_where(tables[stage.table], opts.where)
    specs = [stage.spec(opts) for stage in stages]
    for name in tables:
        for job in mark_abandoned(conn, name):
            log(f"job {job.job_id} ({job.column}) was abandoned by its driver ({job.driver}): marked FAILED")
    runs: list[StageRun] = []
    for stage, spec in zip(stages, specs, strict=True):
        log(f"model: {spec.label()}")
        pairs = stage.udfs(opts, spec)
        table = open_stage_table(conn, stage)  # a handle per stage: stages may run in parallel threads
        changed = ensure_columns(table, pairs, opts, spec)
        runs.append(StageRun(stage, table, spec, pairs, changed))
    scoped = {id(run): with_video_scope(run.table, opts, log) for run in runs}
    plans = {id(run): _plan(run.table, run.main()[0], scoped[id(run)], run.changed.get(run.main()[0], True))
             for run in runs}
    jobs = [run for run in runs if plans[id(run)].needs_job]

    def main_column(run: StageRun) -> ColumnReport:
        col = run.main()[0]
        return _backfill_one(run.table, col, run.spec, scoped[id(run)], plans[id(run)], log=log, conn=conn,
                             display=display, stage=run.stage)

    firsts = {id(run): main_column(run) for run in runs if run not in jobs}
    if jobs:
        ensure_job_tables(conn)  # once, before stages start their jobs from parallel threads
        with ray_session(conn, target, [run.stage.name for run in jobs], log=log):
            if len(jobs) == 1:
                firsts[id(jobs[0])] = main_column(jobs[0])
            else:
                log(f"starting {len(jobs)} jobs at once: {', '.join(run.main()[0] for run in jobs)}")
                with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="vw-stage") as pool:
                    futures = {id(run): pool.submit(main_column, run) for run in jobs}
                    for key, future in futures.items():
                        firsts[key] = future.result()
    # Derived columns once every job has committed: their merges rewrite the table's fragments,
    # which would make a job still running on the same table commit-conflict and run again.
    reports = {id(run): [firsts[id(run)], *_fill_derived(run, scoped[id(run)], log)] for run in runs}
    _refresh_indexes(runs, log)
    return [r for run in runs for r in reports[id(run)]]


def _refresh_indexes(runs: list[StageRun], log: Callable[[str], None]) -> None:
    """Bring the filled tables' indexes up to date incrementally once enough rows are missing from them
    (:data:`tables.indexes.STALE_FRACTION`); ``vw index`` does it at any count."""
    from tables.indexes import refresh_stale_indexes

    done: set[str] = set()
    for run in runs:
        name = run.table.name
        if name in done:
            continue
        done.add(name)
        run.table.checkout_latest()
        for report in refresh_stale_indexes(run.table, name):
            log(f"index {name}.{report.column}: {report.detail} ({report.seconds:.1f}s)")


def open_stage_table(conn: Any, stage: Stage) -> Any:
    """The table ``stage`` fills (``videos`` or a view such as ``windows``); must exist."""
    if stage.table == VIDEOS:
        return open_videos(conn, create=False)
    if not table_exists(conn, stage.table):
        raise NotFoundError(
            f"the warehouse at {conn.uri} has no '{stage.table}' table, which stage "
            f"{stage.name!r} fills: create it first"
        )
    return conn.open_table(stage.table)


def _filled(table: Any, col: str, scope: str | None, rows: int) -> int:
    table.checkout_latest()
    return rows - _count(table, " AND ".join(filter(None, [scope, f"({missing_filter(table, col)})"])))


def _failed_in_scope(table: Any, col: str, scope: str | None) -> int:
    """Missing rows of ``col`` in ``scope`` that have an error record (0 when some missing row has none)."""

    null = f"({missing_filter(table, col)})"
    missing = _count(table, " AND ".join(filter(None, [scope, null])))
    if not missing:
        return 0
    failed = {r["_rowaddr"] for r in failed_rows(table, col, columns=())}
    if len(failed) < missing:
        return 0
    rows = table.to_lance().to_table(columns=[], with_row_address=True,
                                     filter=" AND ".join(filter(None, [scope, null])))
    untried = set(rows.column("_rowaddr").to_pylist()) - failed
    return missing if not untried else 0


#: Jobs started for one column when concurrent writes make geneva's commit conflict.
JOB_ATTEMPTS = 3


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1][:300] if text else type(err).__name__


@dataclass
class _Plan:
    """What a column's backfill has to do in its scope (counted before any job starts)."""

    scope: str | None
    rows: int
    filled_before: int
    failed_before: int
    recompute: int

    @property
    def needs_job(self) -> bool:
        """Whether some row must be computed (new rows, retried failures or a new UDF version)."""
        return bool(self.recompute) or self.filled_before + self.failed_before < self.rows


def _plan(table: Any, col: str, opts: BackfillOptions, new_version: bool) -> _Plan:
    table.checkout_latest()
    scope = f"({opts.where})" if opts.where else None
    rows = _count(table, scope)
    filled_before = _filled(table, col, scope, rows)
    recompute = filled_before if new_version else 0
    failed_before = 0 if new_version or opts.retry_failed else _failed_in_scope(table, col, scope)
    return _Plan(scope, rows, filled_before, failed_before, recompute)


def _fill_derived(run: StageRun, opts: BackfillOptions, log: Callable[[str], None]) -> list[ColumnReport]:
    """Compute the stage's derived columns from its main column in this process, one column after the
    other, each written with one merge on the table's key (no geneva job: they cost milliseconds per
    row, a job seconds).

    A derived column is computed for the rows in scope whose source is filled and whose own value is
    missing, or for every such row when its UDF version (or the main column's) is new. Rows whose
    main column failed stay NULL in the derived columns too.
    """
    table, main = run.table, run.main()[0]
    key = key_column(run.stage.table)
    main_new = run.changed.get(main, True)
    out = []
    for col, fn in run.derived():
        table.checkout_latest()
        scope = f"({opts.where})" if opts.where else None
        rows = _count(table, scope)
        filled_before = _filled(table, col, scope, rows)
        new = run.changed.get(col, True) or main_new
        source = f"NOT ({missing_filter(table, main)})"
        todo = " AND ".join(filter(None, [scope, source, None if new else f"({missing_filter(table, col)})"]))
        start = time.monotonic()
        import pyarrow as pa

        inputs = list(fn.input_columns or [])
        ds = table.to_lance()
        blobs = {c for c in inputs if is_blob(ds.schema.field(c))}
        # A scan gives a blob column's descriptors: its bytes are taken by row (small batches: blobs are large).
        scanned = [key, *(c for c in inputs if c not in blobs)] + (["_rowoffset"] if blobs else [])
        reader = ds.scanner(columns=scanned, filter=todo, batch_size=16 if blobs else 4096).to_reader()
        keys, values = [], []
        for batch in reader:
            if batch.num_rows:
                keys.append(batch.column(key))
                offsets = batch.column("_rowoffset").to_pylist() if blobs else []
                args = [pa.array([b.read() for b in ds.take_blobs(c, indices=offsets)], pa.large_binary())
                        if c in blobs else batch.column(c) for c in inputs]
                values.append(fn.func(*args))
        computed = sum(len(k) for k in keys)
        if computed:
            update = pa.table({key: pa.concat_arrays(keys), col: pa.concat_arrays(values)})
            _merge(table, key, update)
        seconds = time.monotonic() - start
        filled_after = _filled(table, col, scope, rows)
        log(f"backfill {col}: {computed} rows computed from {main} in this process ({seconds:.1f}s)")
        out.append(ColumnReport(column=col, model=run.spec.label(), rows=rows, filled_before=filled_before,
                                filled_after=filled_after, failed=0, seconds=seconds,
                                recomputed=filled_before if new else 0))
    return out


def _merge(table: Any, key: str, update: Any) -> None:
    """Write ``update``'s columns into the rows of ``table`` with the same ``key`` (one commit)."""
    retry_on_conflict(lambda: table.merge_insert(key).when_matched_update_all().execute(update), table,
                      f"writing {', '.join(n for n in update.column_names if n != key)}")


def _job_rows(job: Any) -> tuple[int, int, int] | None:
    """(rows checkpointed, rows of the fragments read, rows failed) from geneva's job tracker, or
    ``None`` while it cannot say. The fragments' rows include those the job's filter skips."""
    import ray

    tracker = getattr(job.future, "job_tracker", None)
    if tracker is None:
        return None
    try:
        snapshot = ray.get(tracker.get_all.remote(), timeout=1.0)
    except Exception:  # noqa: BLE001 - a tracker not ready (or gone) only leaves the display as it is
        return None
    metric = snapshot.get("rows_checkpointed") or snapshot.get("rows_committed")
    if not metric:
        return None
    failed = (snapshot.get("rows_skipped_on_error") or {}).get("n") or 0
    return int(metric.get("n") or 0), int(metric.get("total") or 0), int(failed)


def _job_options(table: Any, where: str | None, opts: BackfillOptions, job_id: str) -> dict[str, Any]:
    """The arguments of one geneva backfill job: its filter, workers, id and read tasks (whole fragments
    where that costs no parallelism, :mod:`jobs.read_tasks`)."""
    return {"where": where, "concurrency": opts.concurrency, "job_id": job_id,
            "task_size": task_size(table, opts.concurrency)}


def _run_watched(
    table: Any, col: str, where: str | None, opts: BackfillOptions, job_id: str, todo: int,
    display: Display | None, stage: Stage | None = None,
) -> None:
    """``table.backfill`` of ``col``, started asynchronously so that ``display`` shows its rows done
    (and, for a stage with a ``progress_unit``, the frames done inside them); without ``display``,
    geneva's own progress bars. Raises the job's error."""
    unit = stage.progress_unit if stage is not None and display is not None else None
    counter = counter_actor() if unit else None
    base = read_units(counter, stage.name) if counter is not None and stage is not None else None
    job = table.backfill_async(col, **_job_options(table, where, opts, job_id))
    if display is None:
        wait_for(job, job.future.status)
        table.checkout_latest()
        return
    display.start(job_id, f"{table.name}.{col}", todo, inner_unit=unit if base is not None else None)

    def poll() -> None:
        rows = _job_rows(job)
        inner = None
        if base is not None and stage is not None:
            units = read_units(counter, stage.name)
            inner = None if units is None else units - base
        if rows is not None:
            read, total, failed = rows
            # Rows the filter skips are read at once: the rows still to read are the ones to compute.
            display.update(job_id, max(0, todo - (total - read)), failed=failed, inner=inner)
        elif inner is not None:
            display.update(job_id, None, inner=inner)

    try:
        wait_for(job, poll)
        table.checkout_latest()
    finally:
        display.finish(job_id)


def _backfill_one(
    table: Any, col: str, spec: ModelSpec, opts: BackfillOptions, plan: _Plan,
    log: Callable[[str], None], conn: Any = None, display: Display | None = None, stage: Stage | None = None,
) -> ColumnReport:
    rows, filled_before, failed_before, recompute, scope = (plan.rows, plan.filled_before, plan.failed_before,
                                                            plan.recompute, plan.scope)
    if not plan.needs_job:
        # Every row is computed by this version or failed before (retried only on request):
        # no job to start (each costs several seconds).
        note = f", {failed_before} failed before (--retry-failed retries them)" if failed_before else ""
        log(f"backfill {col}: nothing to compute ({filled_before} of {rows} rows computed{note})")
        return ColumnReport(column=col, model=spec.label(), rows=rows, filled_before=filled_before,
                            filled_after=filled_before, failed=0, seconds=0.0)
    log(f"backfill {col}: {rows - filled_before} of {rows} rows to compute"
        + (f", {recompute} to recompute (new UDF version)" if recompute else ""))
    start = time.monotonic()
    for attempt in range(1, JOB_ATTEMPTS + 1):
        job_id = uuid.uuid4().hex
        if conn is not None:
            record_driver(conn, job_id, table.name, col)
        try:
            where = _where_for(missing_filter(table, col), opts)
            _run_watched(table, col, where, opts, job_id, rows - filled_before, display, stage)
            break
        except Exception as err:
            if attempt == JOB_ATTEMPTS or not is_commit_conflict(err):
                raise
            log(f"backfill {col}: a concurrent write replaced rows this job computed ({_first_line(err)}); "
                f"running it again on the new table version (attempt {attempt + 1} of {JOB_ATTEMPTS})")
            table.checkout_latest()
    seconds = time.monotonic() - start
    filled_after = _filled(table, col, scope, rows)
    errors = [e for e in recent_errors(table, col, limit=1000) if e["job_id"] == job_id]
    key = key_column(table.name)
    keys = row_keys(table, [e["row_address"] for e in errors[:5]], key)
    for e in errors[:5]:
        e["row"] = f"{key} {keys[e['row_address']]!r}" if e["row_address"] in keys else f"row {e['row_address']}"
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
        recomputed=recompute,
    )
