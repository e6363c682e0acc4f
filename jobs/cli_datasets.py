"""`vw` commands for datasets and scenario labels: dataset ingest, `vw scenarios`, `vw export-metadata`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jobs.cli import DbOpt, _connect, _err, _progress, app


def do_ingest_dataset(
    conn: Any,
    fmt: str,
    inputs: list[str],
    source: str | None,
    split: str | None,
    videos_root: str | None,
    limit: int | None,
    validation_ratio: float,
    seed: int,
) -> int:
    """`vw ingest --format NAME PATH`: prints one line per failure and a summary; returns the exit code."""
    from tables.datasets import DatasetOptions, ingest_dataset

    if len(inputs) != 1:
        _err(f"error: --format {fmt} reads exactly one PATH (its annotation file or folder), got {len(inputs)}")
        return 2
    if source is not None or split is not None:
        _err("error: --source and --split do not apply with --format (the dataset decides them)")
        return 2
    options = DatasetOptions(videos_root=videos_root, limit=limit, validation_ratio=validation_ratio, seed=seed)
    try:
        report = ingest_dataset(conn, fmt, inputs[0], options, progress=_progress("probing"))
    except ValueError as err:
        _err(f"error: {err}")
        return 2
    for failure in report.failures:
        _err(f"FAILED {failure.input}: {failure.reason}")
    typer.echo(
        f"ingest {fmt}: {report.records} records read, {report.selected} selected, {report.missing} without "
        f"a video file; {report.ingest.inserted} new, {report.ingest.updated} updated, "
        f"{len(report.failures)} failed; videos table version {report.ingest.table_version}"
    )
    if report.events:
        typer.echo(f"events: {report.events} ground-truth events written")
    return 0 if report.ok else 1


@app.command("scenarios")
def scenarios_report(
    out: Annotated[Path | None, typer.Option(help="Also write a bar chart (PNG) of the counts here.")] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos`.")] = None,
    db: DbOpt = None,
) -> None:
    """Videos per scenario and split (after `vw backfill scenarios`), optionally as a bar chart."""
    from jobs.scenarios import format_counts, scenario_counts, write_chart

    try:
        counts = scenario_counts(_connect(db), where)
    except (LookupError, ValueError) as err:
        _err(f"error: {err}")
        raise typer.Exit(2) from None
    if not counts.total():
        typer.echo("no videos")
        raise typer.Exit(0)
    typer.echo(format_counts(counts))
    if out is not None:
        write_chart(counts, out)
        typer.echo(f"chart: {out}")


@app.command("export-metadata")
def export_metadata_command(
    out: Annotated[Path, typer.Option(help="JSON file to write (atomically).")] = Path("scenario_metadata.json"),
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos`, e.g. \"source = 'msrvtt'\".")] = None,
    frames_dir: Annotated[
        str | None, typer.Option(help="Folder of extracted frames: image_path = <dir>/<video_id>.png.")
    ] = None,
    latents_dir: Annotated[
        str | None, typer.Option(help="Folder of cached latents: latent_path = <dir>/<scenario>/<video_id>.npz.")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Write scenario_metadata.json ({"train": [...], "validation": [...]}) for training scripts."""
    from jobs.scenarios import export_metadata

    try:
        report = export_metadata(_connect(db), out, where, frames_dir, latents_dir)
    except (LookupError, ValueError) as err:
        _err(f"error: {err}")
        raise typer.Exit(2) from None
    parts = ", ".join(f"{n} {split}" for split, n in report.per_split.items())
    typer.echo(f"wrote {report.path}: {parts}")
    if report.without_scenario or report.without_split:
        typer.echo(f"left out: {report.without_scenario} without a scenario (no caption or not computed), "
                   f"{report.without_split} without a split")
