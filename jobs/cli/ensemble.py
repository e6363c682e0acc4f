"""``vw ensemble``: compare, fuse and score detectors' events (see :mod:`jobs.ensemble`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import DbOpt, OptionError, connect, echo_err
from jobs.ensemble.options import NmsMode
from tables.names import GROUND_TRUTH
from udfs.errors import VwError


class ReportNotWrittenError(VwError, OSError):
    """The analysis ran and its tables were written, but the report folder could not be written."""

    exit_code = 1


def parse_list(value: str, what: str) -> list[str]:
    """A comma-separated option as a list of non-empty, stripped names."""
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise OptionError(f"{what} must be a comma-separated list of names, got {value!r}")
    return items


def parse_weights(value: str) -> dict[str, float]:
    """``qwen=1,llava=0.5`` as ``{"qwen": 1.0, "llava": 0.5}``."""
    weights = {}
    for item in parse_list(value, "--weights"):
        name, sep, number = item.partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not sep or not name.strip() or not math.isfinite(weight):
            raise OptionError(f"--weights expects MODEL=NUMBER items separated by commas, got {item!r}")
        weights[name.strip()] = weight
    return weights


def ensemble(
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated models to compare and fuse, e.g. qwen,llava.")
    ],
    ground_truth: Annotated[str, typer.Option(help="Model name of the ground-truth events.")] = GROUND_TRUTH,
    tolerance: Annotated[float, typer.Option(help="Matching tolerance in seconds (across models and for F1).")] = 3.0,
    where: Annotated[
        str | None,
        typer.Option(help="SQL filter on `events`, applied to the models' events and the ground truth alike."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Folder for the Markdown report, the JSON summary and the pictures.")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Run id (default: the ensemble name and a hash of the options).")
    ] = None,
    name: Annotated[str, typer.Option(help="Model name of the fused events written to `events`.")] = "ensemble",
    weights: Annotated[
        str | None, typer.Option(help="Per-model fusion weights, e.g. qwen=1,llava=0.5 (default 1 each).")
    ] = None,
    nms: Annotated[NmsMode, typer.Option(help="Non-maximum suppression of fused events: hard, soft or none.")] = "hard",
    nms_window: Annotated[
        float | None, typer.Option(help="NMS window in seconds (default: the tolerance).")
    ] = None,
    soft_sigma: Annotated[float, typer.Option(help="Gaussian sigma of soft-NMS.")] = 0.5,
    min_confidence: Annotated[float, typer.Option(help="Drop fused events below this confidence.")] = 0.0,
    classes: Annotated[
        str | None,
        typer.Option(help="Comma-separated class list for average-mAP (default: SoccerNet-v2's 17 classes)."),
    ] = None,
    score: Annotated[bool, typer.Option("--score/--no-score", help="Score against the ground truth.")] = True,
    max_timelines: Annotated[int, typer.Option(help="At most this many timeline pictures in the report.")] = 100,
    clips: Annotated[
        bool,
        typer.Option("--clips/--no-clips",
                     help="Cut short MP4 clips around the events into the report, for the review page to play where "
                          "the browser cannot read the video's uri (a page on a web server, gs:// or s3:// videos)."),
    ] = False,
    max_clips: Annotated[int, typer.Option(help="With --clips: at most this many clips (disagreements first).")] = 100,
    db: DbOpt = None,
) -> None:
    """Match events across models, fuse them into one model, score all against the ground truth."""
    from jobs.ensemble import SOCCERNET_V2_CLASSES, EnsembleOptions, FusionOptions, run_ensemble
    from jobs.ensemble.kernels import kernels_to_compile
    from jobs.ensemble.report import format_summary, format_table, timeline_videos, write_report
    from jobs.ensemble.review_page import write_review_page

    options = EnsembleOptions(
        models=parse_list(models, "--models"), ground_truth=ground_truth, tolerance_s=tolerance, where=where,
        run_id=run_id,
        fusion=FusionOptions(name=name, weights=parse_weights(weights) if weights else None, nms=nms,
                             nms_window_s=nms_window, soft_nms_sigma=soft_sigma, min_confidence=min_confidence),
        classes=tuple(parse_list(classes, "--classes")) if classes else SOCCERNET_V2_CLASSES, score=score,
    )
    if max_timelines < 0:
        raise OptionError(f"--max-timelines must be >= 0, got {max_timelines}")
    if max_clips < 0:
        raise OptionError(f"--max-clips must be >= 0, got {max_clips}")
    if clips and report is None:
        raise OptionError("--clips cuts clips into the report folder: give --report DIR")
    conn = connect(db)
    pending, cache = kernels_to_compile()
    if pending:
        echo_err(f"compiling the analysis kernels ({len(pending)} numba functions; once per installation, cached in "
                 f"{cache}): a minute or two on 2 cores, seconds on later runs")
    result = run_ensemble(conn, options)
    typer.echo(format_summary(result))
    typer.echo("")
    typer.echo(format_table(result))
    if report is not None:
        try:
            files = write_report(result, report, max_timelines=max_timelines)
            files += write_review_page(result, report, conn, clips=clips, max_clips=max_clips,
                                       on_note=lambda text: echo_err(f"note: {text}"))
        except (OSError, ValueError) as err:
            raise ReportNotWrittenError(f"report not written to {report}: {err}") from None
        typer.echo(f"report: {len(files)} files in {report}; open {report / 'index.html'} to review")
        videos = len(timeline_videos(result))
        if videos > max_timelines:
            typer.echo(f"note: timelines drawn for {max_timelines} of {videos} videos (--max-timelines)")
    typer.echo(", ".join(f"{k}: {v} rows written" for k, v in result.written.items()))


def register(app: typer.Typer) -> None:
    """Add ``vw ensemble`` to ``app``."""
    app.command("ensemble")(ensemble)
