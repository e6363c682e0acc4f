"""``vw status``: rows, computed columns, errors, jobs and indexes of every table."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jobs.cli.common import DbOpt, connect, echo_err


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

    conn = connect(db)
    if clean:
        for job in mark_abandoned(conn):
            echo_err(f"job {job.job_id} ({job.table}.{job.column}): its driver ({job.driver}) is gone; marked FAILED")
    tables = warehouse_status(conn)
    if as_json:
        typer.echo(json.dumps(as_dict(tables), indent=2, default=str))
        return
    if not tables:
        typer.echo(f"warehouse {conn.uri}: no tables yet (run `vw ingest PATHS...`)")
    for t in tables:
        apart = f" ({t.without_video} without a video file: labels only, skipped by the stages)" \
            if t.without_video else ""
        typer.echo(f"{t.table}: {t.rows} rows{apart}, version {t.version}")
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


def register(app: typer.Typer) -> None:
    """Add ``vw status`` to ``app``."""
    app.command()(status)
