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
    typer.echo(msg, err=True)


def _connect(db: str | None) -> Any:
    from tables.connection import connect

    return connect(db)


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


def do_ingest(conn: Any, inputs: list[str], source: str | None, split: str | None) -> Any:
    """Ingest ``inputs`` into ``videos`` and print one line per failure; returns the report."""
    from tables.connection import open_videos
    from tables.ingest import ingest

    table = open_videos(conn)
    report = ingest(table, inputs, source=source, split=split, progress=_progress("probing"))
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
    db: DbOpt = None,
) -> None:
    """Register videos in the `videos` table (probing container headers; re-ingest is idempotent)."""
    report = do_ingest(_connect(db), inputs, source, split)
    raise typer.Exit(0 if not report.failures else 1)


def print_reports(reports: list[Any]) -> None:
    """One summary line per backfilled column, plus its errors."""
    for r in reports:
        typer.echo(
            f"  {r.column}: {r.computed} computed, {r.filled_after}/{r.rows} filled, "
            f"{r.failed} failed, {r.seconds:.1f}s"
        )
        for e in r.errors:
            _err(f"  error row {e['row_address']}: {e['error_type']}: {e['message']}")


@app.command()
def backfill(
    columns: Annotated[list[str], typer.Argument(help="Columns (or stages) to fill, e.g. video_embedding.")],
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos` restricting the rows.")] = None,
    models: Annotated[
        str | None,
        typer.Option(help="Model profile: full (real checkpoints) or tiny (random weights, tests only). "
                     "Default $VW_MODELS or full."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Videos per model call.")] = 8,
    concurrency: Annotated[int, typer.Option(help="Parallel UDF workers.")] = 1,
    num_frames: Annotated[int | None, typer.Option(help="Frames per video (default $NUM_FRAMES or 64).")] = None,
    num_gpus: Annotated[float | None, typer.Option(help="GPUs per worker (default 0 on the local Ray).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Retry rows whose earlier computation failed.")] = False,
    replace: Annotated[bool, typer.Option(help="Drop a column computed by another model and recompute it.")] = False,
    cluster: Annotated[str | None, typer.Option(help="Cluster to run on (default: local Ray).")] = None,
    db: DbOpt = None,
) -> None:
    """Fill computed columns through geneva (incremental, resumable) in one Ray session."""
    from jobs.backfill import BackfillError, BackfillOptions, run_backfill
    from udfs.models import ModelUnavailableError

    opts = BackfillOptions(
        where=where, profile=models, batch_size=batch_size, concurrency=concurrency,
        num_frames=num_frames, num_gpus=num_gpus, retry_failed=retry_failed, replace=replace,
    )
    try:
        reports = run_backfill(_connect(db), columns, opts, log=typer.echo, cluster=cluster)
    except (BackfillError, ModelUnavailableError, LookupError, ValueError) as err:
        _err(f"error: {err}")
        raise typer.Exit(2) from None
    print_reports(reports)
    raise typer.Exit(0 if all(r.failed == 0 for r in reports) else 1)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOpt = None,
) -> None:
    """Rows, computed columns (filled / missing / failed), last errors and version of each table."""
    from jobs.status import as_dict, warehouse_status

    conn = _connect(db)
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
        for job in t.running_jobs:
            typer.echo(f"  job {job} is recorded as RUNNING")


@app.command()
def demo(
    models: Annotated[
        str, typer.Option(help="Model profile for the demo: tiny (random weights, offline) or full.")
    ] = "tiny",
    db: DbOpt = None,
    videos_dir: Annotated[Path, typer.Option(help="Where generated sample clips are written.")] = Path("./demo-videos"),
) -> None:
    """Create the warehouse, ingest sample videos, backfill video_embedding, and report."""
    from jobs.demo import run_demo

    raise typer.Exit(run_demo(_connect(db), models, videos_dir))


def main() -> None:
    """Entry point of the `vw` script."""
    app()


if __name__ == "__main__":
    main()
