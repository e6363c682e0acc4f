"""`vw export-features`: per-video ``.npy`` files from a per-frame column."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.cli.common import DbOpt, connect, progress


def export_features_cmd(
    out: Annotated[str, typer.Option("--out", help="Folder receiving <video_id>.npy and failed_videos.json.")],
    column: Annotated[
        str | None, typer.Option(help="Per-frame vector column to export (default: the frame features column).")
    ] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on `videos` restricting the rows.")] = None,
    db: DbOpt = None,
) -> None:
    """Write one float32 .npy (num_frames x D) per video plus failed_videos.json (atomic writes)."""
    from jobs.export_features import export_features
    from tables.connection import open_videos
    from udfs.frame_features import frame_features_column

    table = open_videos(connect(db), create=False)
    report = export_features(table, column or frame_features_column(), out, where, progress=progress("exporting"))
    typer.echo(
        f"export-features: {report.written} files in {report.out}; "
        f"{len(report.failed) - len(report.not_computed)} failed and {len(report.not_computed)} not computed "
        f"(listed in failed_videos.json)"
    )
    raise typer.Exit(0 if not report.failed else 1)


def register(app: typer.Typer) -> None:
    """Add ``vw export-features`` to ``app``."""
    app.command("export-features")(export_features_cmd)
