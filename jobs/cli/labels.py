"""``vw scenarios`` and ``vw export-metadata``: scenario labels for training scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import DbOpt, connect


def scenarios(
    out: Annotated[Path | None, typer.Option(help="Also write a bar chart (PNG) of the counts here.")] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos`.")] = None,
    db: DbOpt = None,
) -> None:
    """Videos per scenario and split (after `vw backfill scenarios`), optionally as a bar chart."""
    from jobs.scenario_metadata import format_counts, scenario_counts, write_chart

    counts = scenario_counts(connect(db), where)
    if not counts.total():
        typer.echo("no videos")
        raise typer.Exit(0)
    typer.echo(format_counts(counts))
    if out is not None:
        write_chart(counts, out)
        typer.echo(f"chart: {out}")


def export_metadata_command(
    out: Annotated[Path, typer.Option(help="JSON file to write (atomically).")] = Path("scenario_metadata.json"),
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos`, e.g. \"source = 'msrvtt'\".")] = None,
    frames_dir: Annotated[
        str | None, typer.Option(help="Folder of key frames: image_path = <dir>/<video_id>.png (the PNGs are "
                                 "written from `key_frame` when `vw backfill video_latents` computed it).")
    ] = None,
    latents_dir: Annotated[
        str | None, typer.Option(help="Folder of cached latents: latent_path = <dir>/<scenario>/<video_id>.npz "
                                 "(written from `video_latents` when computed).")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Write scenario_metadata.json ({"train": [...], "validation": [...]}) for training scripts."""
    from jobs.scenario_metadata import export_metadata

    report = export_metadata(connect(db), out, where, frames_dir, latents_dir)
    parts = ", ".join(f"{n} {split}" for split, n in report.per_split.items())
    typer.echo(f"wrote {report.path}: {parts}")
    for kind, counts in report.files.items():
        folder = frames_dir if kind == "image" else latents_dir
        typer.echo(f"{kind} files: {counts['written']} written to {folder}"
                   + (f"; {counts['missing']} rows without a value (path null; see {folder}/failed_videos.json)"
                      if counts["missing"] else ""))
    if report.without_scenario or report.without_split:
        typer.echo(f"left out: {report.without_scenario} without a scenario (no caption or not computed), "
                   f"{report.without_split} without a split")


def register(app: typer.Typer) -> None:
    """Add ``vw scenarios`` and ``vw export-metadata`` to ``app``."""
    app.command()(scenarios)
    app.command("export-metadata")(export_metadata_command)
