"""`vw demo`: the whole first stage end to end on the embedded warehouse and a local Ray."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from jobs.backfill import BackfillError, BackfillOptions, run_backfill
from jobs.samples import sample_videos
from udfs.models import ModelUnavailableError, vjepa2_spec


def run_demo(conn: Any, profile: str, videos_dir: Path) -> int:
    """Ingest the sample clips, backfill ``video_embedding``, print what happened; exit code."""
    from jobs.cli import do_ingest, print_reports

    start = time.monotonic()
    typer.echo(f"warehouse: {conn.uri}")
    try:
        spec = vjepa2_spec(profile)
    except (ModelUnavailableError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    if spec.random_weights:
        typer.echo(
            "NOTE: model profile 'tiny' uses RANDOM WEIGHTS: the embeddings exercise the "
            "pipeline but carry no meaning. Use --models full for the real V-JEPA 2."
        )
    videos = sample_videos(videos_dir)
    report = do_ingest(conn, [str(v) for v in videos], source="demo", split=None)
    opts = BackfillOptions(profile=profile, batch_size=4)
    try:
        reports = run_backfill(conn, ["video_embedding"], opts, log=typer.echo)
    except (BackfillError, ModelUnavailableError) as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    typer.echo("")
    typer.echo("demo summary")
    typer.echo(f"  videos ingested: {report.inserted} new, {report.updated} updated, "
               f"{len(report.failures)} failed")
    print_reports(reports)
    typer.echo(f"  model: {spec.label()}")
    typer.echo(f"  total time: {time.monotonic() - start:.1f}s")
    typer.echo("  next: `vw status` shows the tables and any errors")
    failed = len(report.failures) + sum(r.failed for r in reports)
    return 0 if failed == 0 else 1
