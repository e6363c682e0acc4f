"""``vw demo``: sample clips through the video stages on the embedded warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import DbOpt, VerboseOpt, connect


def demo(
    models: Annotated[
        str, typer.Option(help="Model profiles for the demo (default: real offline frame features, "
                          "random-weight V-JEPA 2), or full.")
    ] = "frame_features=offline,tiny",
    db: DbOpt = None,
    verbose: VerboseOpt = False,
    videos_dir: Annotated[Path, typer.Option(help="Where generated sample clips are written.")] = Path("./demo-videos"),
) -> None:
    """Create the warehouse, ingest sample videos, backfill video_embedding and frame_features, and report."""
    from jobs.demo import run_demo

    raise typer.Exit(run_demo(connect(db, create=True), models, videos_dir, verbose=verbose))


def register(app: typer.Typer) -> None:
    """Add ``vw demo`` to ``app``."""
    app.command()(demo)
