"""`vw windows`, `vw events`, `vw import-predictions` and `vw export-predictions`: analysis windows and the
events table, with prediction files in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from jobs.cli.common import DbOpt, OptionError, connect, echo_err, split_names

EventsFormat = Literal["table", "csv", "json"]
PredictionFormat = Literal["llava", "soccernet"]
ExportFormat = Literal["soccernet"]


def windows_cmd(
    window: Annotated[float, typer.Option(help="Window length in seconds.")] = 4.0,
    step: Annotated[float, typer.Option(help="Seconds between window starts.")] = 2.0,
    fps: Annotated[float, typer.Option(help="Frames per second the detectors sample in a window.")] = 1.0,
    recreate: Annotated[
        bool, typer.Option(help="Drop the windows table (and its detector columns) and rebuild it, e.g. to "
                           "change --window/--step/--fps.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Create or refresh the `windows` table: one row per analysis window of every video (idempotent)."""
    from tables.windows import WindowSettings, refresh_windows

    settings = WindowSettings(window, step, fps)
    report = refresh_windows(connect(db), settings, recreate=recreate)
    for vid, problem in report.skipped:
        echo_err(f"SKIPPED video {vid}: {problem}")
    typer.echo(
        f"windows ({settings.describe()}): {report.videos} videos, {report.added} windows added, "
        f"{report.removed} removed, {report.total} in total; table version {report.version}"
        + (" (recreated)" if report.recreated else "")
    )
    raise typer.Exit(0 if not report.skipped else 1)


def events_cmd(
    where: Annotated[
        str | None,
        typer.Option(help="SQL filter, e.g. \"label = 'Goal' AND confidence > 0.8 AND model = 'llava'\"."),
    ] = None,
    fmt: Annotated[EventsFormat, typer.Option("--format", help="Output format: table, csv or json.")] = "table",
    limit: Annotated[int | None, typer.Option(help="Print at most N events.")] = None,
    refresh: Annotated[
        bool, typer.Option(help="First rebuild the detector events from the windows' detector columns "
                           "(only videos whose events changed are rewritten).")
    ] = False,
    models: Annotated[
        str | None, typer.Option(help="With --refresh: comma-separated detector models (default: every column); "
                                 "with --delete: the models whose events are deleted.")
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the events of --models (those matching --where) in one commit.")
    ] = False,
    dedup_window: Annotated[
        float, typer.Option(help="With --refresh: events of one label closer than this many seconds are one event.")
    ] = 3.0,
    db: DbOpt = None,
) -> None:
    """Filter the `events` table (detections, imported predictions, ground truth, ensembles)."""
    from jobs.event_jobs import (
        format_csv,
        format_json,
        format_table,
        query_events,
        random_weight_events,
        refresh_detection_events,
    )

    conn = connect(db)
    if delete:
        from jobs.event_jobs import delete_events

        if refresh or not models:
            raise OptionError("--delete needs --models NAME[,NAME] (and no --refresh)")
        deleted = delete_events(conn, split_names(models), where)
        typer.echo(f"deleted {deleted} events of {', '.join(split_names(models))}"
                   + (f" matching {where}" if where else ""))
        return
    if refresh:
        for r in refresh_detection_events(conn, split_names(models) or None, dedup_window_s=dedup_window):
            tag = " [RANDOM WEIGHTS: pipeline check only]" if r.random_weights else ""
            echo_err(f"refresh {r.column} -> model '{r.model}'{tag}: {r.detected}/{r.windows} windows detected, "
                     f"{len(r.affected_videos)} of {r.videos} videos rewritten ({r.events} events)")
    elif models:
        raise OptionError("--models applies only with --refresh")
    rows = query_events(conn, where, limit)
    random = random_weight_events(rows)
    if random:
        echo_err(f"note: {random} of these {rows.num_rows} events come from models with RANDOM WEIGHTS (profile tiny)")
    if fmt == "table":
        typer.echo(format_table(rows))
        echo_err(f"{rows.num_rows} events")
    elif fmt == "csv":
        typer.echo(format_csv(rows), nl=False)
    else:
        typer.echo(format_json(rows))


def import_predictions_cmd(
    files: Annotated[list[Path], typer.Argument(help="Prediction files: JSON lists of {time, raw} entries; with "
                                                "--format soccernet, results_spotting.json files or folders.")],
    model: Annotated[str, typer.Option("--model", help="Model name of these predictions in `events`.")],
    fmt: Annotated[
        PredictionFormat, typer.Option("--format", help="llava: {time, raw} lists of the LLaVA pipeline; "
                                       "soccernet: SoccerNet's results_spotting.json per game.")
    ] = "llava",
    video_id: Annotated[
        str | None, typer.Option(help="Video of every file (default: from the file name, 'video_N' or 'vidN').")
    ] = None,
    video_map: Annotated[
        Path | None, typer.Option(help="JSON object mapping the file names' video numbers to video ids.")
    ] = None,
    time_offset: Annotated[
        float, typer.Option(help="Seconds added to every time (e.g. 2 to move 4 s window starts to their centres).")
    ] = 0.0,
    dedup_window: Annotated[
        float | None, typer.Option(help="Events of one label closer than this many seconds are one event "
                                   "(default 3 for llava files; soccernet files are kept as they are unless given).")
    ] = None,
    allow_unknown_videos: Annotated[
        bool, typer.Option("--allow-unknown-videos", help="Keep events of videos the warehouse does not have "
                           "(by default such files are refused).")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Load earlier pipelines' prediction files into `events` (parsed, de-duplicated, idempotent)."""
    from jobs.event_jobs import DEFAULT_DEDUP_S, import_predictions, load_video_map

    if fmt == "soccernet":
        if video_id is not None or video_map is not None or time_offset:
            raise OptionError("--video-id, --video-map and --time-offset apply to llava files; SoccerNet files name "
                              "their game and half")
        from jobs.soccernet_predictions import import_soccernet_predictions

        report = import_soccernet_predictions(connect(db, create=True), model, [str(f) for f in files], dedup_window,
                                              allow_unknown_videos)
        for problem in report.problems:
            echo_err(f"NOT IMPORTED {problem}")
        dedup = "" if dedup_window is None else f" -> {report.events_written} after de-duplication"
        typer.echo(f"import-predictions ({report.model}, soccernet): {report.files} files, {report.entries} "
                   f"predictions, {report.events_before_dedup} events{dedup} on {len(report.videos)} halves; "
                   f"{len(report.problems)} problems")
        raise typer.Exit(0 if not report.problems else 1)
    dedup_window = DEFAULT_DEDUP_S if dedup_window is None else dedup_window
    if video_id is not None and video_map is not None:
        raise OptionError("pass either --video-id or --video-map, not both")
    mapping = load_video_map(str(video_map)) if video_map is not None else None
    report = import_predictions(connect(db, create=True), model, [str(f) for f in files], video_id, mapping,
                                time_offset, dedup_window, allow_unknown_videos)
    for problem in report.problems:
        echo_err(f"NOT IMPORTED {problem}")
    typer.echo(
        f"import-predictions ({report.model}): {report.files} files, {report.entries} entries, "
        f"{report.answers_parsed} parsed ({report.no_action} without an action), "
        f"{report.events_before_dedup} events -> {report.events_written} after de-duplication "
        f"on {len(report.videos)} videos; {len(report.problems)} problems"
    )
    raise typer.Exit(0 if not report.problems else 1)


def export_predictions_cmd(
    model: Annotated[str, typer.Option("--model", help="Model whose events are written.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder receiving <league>/<season>/<game>/results_spotting.json.")
    ],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="soccernet: SoccerNet's results files.")] = "soccernet",
    where: Annotated[str | None, typer.Option(help="SQL filter on the events (e.g. \"confidence > 0.2\").")] = None,
    db: DbOpt = None,
) -> None:
    """Write a model's events in SoccerNet's format, for the official evaluation or a challenge submission."""
    from jobs.soccernet_predictions import export_soccernet_predictions

    report = export_soccernet_predictions(connect(db), model, out, where)
    for problem in report.problems:
        echo_err(f"NOT EXPORTED {problem}")
    typer.echo(f"export-predictions ({model}, {fmt}): {report.predictions} predictions in {len(report.games)} "
               f"games under {report.out}; {len(report.problems)} problems")
    raise typer.Exit(0 if not report.problems else 1)


def register(app: typer.Typer) -> None:
    """Add ``vw windows``, ``vw events``, ``vw import-predictions`` and ``vw export-predictions`` to ``app``."""
    app.command("windows")(windows_cmd)
    app.command("events")(events_cmd)
    app.command("import-predictions")(import_predictions_cmd)
    app.command("export-predictions")(export_predictions_cmd)
