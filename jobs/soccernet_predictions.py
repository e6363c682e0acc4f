"""SoccerNet's action-spotting prediction files in and out of the ``events`` table.

Every action-spotting model of the SoccerNet ecosystem, the official evaluation and the challenge
server use one ``results_spotting.json`` per game, in the game's folder
(``<league>/<season>/<game>/results_spotting.json``)::

    {"UrlLocal": "england_epl/2014-2015/2015-02-21 - 18-00 Chelsea 1 - 1 Burnley/",
     "predictions": [{"gameTime": "1 - 12:34", "label": "Goal", "position": "754000",
                      "half": "1", "confidence": "0.93"}, ...]}

Import: each prediction becomes an ``events`` row of the model on the video of its half (the
SoccerNet ingest's id rule, ``<league>/<season>/<game>/<half>``), ``time_s = position / 1000``,
with its confidence; the game is the file's ``UrlLocal``, else its folder relative to the folder
given, else the file's last three folders. Every prediction is kept as it is (no de-duplication
unless asked: a model's own output is what is scored), and a file replaces that model's earlier
import of the game, so importing twice never duplicates. Malformed entries are reported with the
file and their index; the rest of the file is imported.

Export: one ``results_spotting.json`` per game in SoccerNet's folder layout, written atomically,
from a model's events on videos named by that id rule.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.ensemble.frame import file_order
from jobs.event_jobs import (
    IMPORT_RUN,
    UNKNOWN_VIDEO_HINT,
    EventsError,
    ImportReport,
    deduplicate,
    json_number,
    known_videos,
    query_events,
)
from tables.datasets.soccernet import HALVES, half_video_id
from tables.events import GROUND_TRUTH, Event, ensure_event_indexes, open_events, scope_filter, write_events
from udfs.atomic_files import atomic_write

RESULTS_FILE = "results_spotting.json"
_GAME_TIME = re.compile(r"^\s*([12])\s*-\s*(\d{1,3}):(\d{2})\s*$")
_SCOPE_CHUNK = 200  # games per commit


def spotting_files(paths: Sequence[str]) -> list[tuple[str, str | None]]:
    """``(file, game from its folder)`` of every results file: a folder is searched recursively (the
    game is the file's folder relative to it); a file's game is its last three folders."""
    out: list[tuple[str, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob(RESULTS_FILE)):
                rel = file.parent.relative_to(path).as_posix()
                out.append((str(file), None if rel == "." else rel))
        else:
            parts = path.parent.parts
            out.append((str(path), "/".join(parts[-3:]) if len(parts) >= 3 else None))
    return out


def _number(value: Any, what: str) -> float:
    number = json_number(value, what)
    if not math.isfinite(number) or number < 0:
        raise EventsError(f"'{what}' must be a finite number >= 0, got {value!r}")
    return number


def parse_prediction(item: Any) -> tuple[int, float, str, float, str | None]:
    """``(half, time_s, label, confidence, team)`` of one ``predictions`` item."""
    if not isinstance(item, dict):
        raise EventsError(f"not an object: {item!r}"[:120])
    game_time = item.get("gameTime")
    match = _GAME_TIME.match(game_time) if isinstance(game_time, str) else None
    half = int(match[1]) if match else None
    if "half" in item:
        given = _number(item["half"], "half")
        if given not in HALVES:
            raise EventsError(f"'half' must be 1 or 2, got {item['half']!r}")
        if half is not None and given != half:
            raise EventsError(f"'half' {item['half']!r} disagrees with gameTime {game_time!r}")
        half = int(given)
    if half is None:
        raise EventsError(f"no half: 'gameTime' must look like '1 - 12:34' (got {game_time!r}) or 'half' be given")
    if "position" not in item:
        raise EventsError("no 'position' (milliseconds within the half)")
    position_ms = _number(item["position"], "position")
    label = item.get("label")
    if not isinstance(label, str) or not label.strip():
        raise EventsError(f"'label' must be a non-empty string, got {label!r}")
    if "confidence" not in item:
        raise EventsError("no 'confidence'")
    confidence = _number(item["confidence"], "confidence")
    team = item.get("team")
    return half, position_ms / 1000.0, label, confidence, team if isinstance(team, str) and team else None


def read_spotting_file(path: str, folder_game: str | None, model: str,
                       report: ImportReport) -> tuple[str | None, list[Event]]:
    """The game of one results file and its events; problems are added to ``report``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        report.problems.append(f"{path}: not readable as JSON ({err})")
        return None, []
    if not isinstance(data, dict) or not isinstance(data.get("predictions"), list):
        report.problems.append(f"{path}: not a SoccerNet results file (an object with a 'predictions' list)")
        return None, []
    url = data.get("UrlLocal")
    game = url.strip().strip("/") if isinstance(url, str) and url.strip().strip("/") else folder_game
    if not game:
        report.problems.append(f"{path}: no 'UrlLocal' and no game folder (<league>/<season>/<game>) around it")
        return None, []
    report.files += 1
    events = []
    for i, item in enumerate(data["predictions"]):
        report.entries += 1
        try:
            half, time_s, label, confidence, team = parse_prediction(item)
        except EventsError as err:
            report.problems.append(f"{path}: prediction {i}: {err}")
            continue
        report.answers_parsed += 1
        events.append(Event(video_id=half_video_id(game, half), model=model, time_s=round(time_s, 3), label=label,
                            team=team, confidence=confidence, raw=json.dumps(item, sort_keys=True),
                            run_id=IMPORT_RUN, metadata={"source_file": os.path.basename(path), "entry": i,
                                                         "game": game, "half": half}))
    return game, events


def import_soccernet_predictions(conn: Any, model: str, paths: Sequence[str], dedup_window_s: float | None = None,
                                 allow_unknown_videos: bool = False) -> ImportReport:
    """Import SoccerNet results files (folders or files) as ``model``'s events; see the module docstring.

    A game with neither half in the warehouse is refused (a problem naming the file and the ids looked
    for) unless ``allow_unknown_videos``."""
    if not model or not model.strip():
        raise EventsError("the model name is empty")
    if model == GROUND_TRUTH:
        raise EventsError(f"'{GROUND_TRUTH}' is reserved for annotations; name the model that made the predictions")
    files = spotting_files(paths)
    if not files:
        raise EventsError(f"no {RESULTS_FILE} file in {', '.join(map(str, paths))}")
    report = ImportReport(model)
    per_game: dict[str, list[Event]] = {}
    read = [(path, *read_spotting_file(path, folder_game, model, report)) for path, folder_game in files]
    halves = [half_video_id(game, h) for _, game, _ in read if game is not None for h in HALVES]
    known = set(halves) if allow_unknown_videos else known_videos(conn, halves)
    for path, game, events in read:
        if game is None:
            continue
        ids = [half_video_id(game, h) for h in HALVES]
        if not known.intersection(ids):
            report.problems.append(f"{path}: game {game!r} is not in the warehouse (looked for {ids[0]!r} and "
                                   f"{ids[1]!r}): {UNKNOWN_VIDEO_HINT}")
            continue
        per_game.setdefault(game, []).extend(events)
    report.events_before_dedup = sum(len(v) for v in per_game.values())
    report.videos = sorted({e.video_id for events in per_game.values() for e in events})
    if not per_game:
        return report
    table = open_events(conn)
    games = sorted(per_game)
    for i in range(0, len(games), _SCOPE_CHUNK):
        part = games[i : i + _SCOPE_CHUNK]
        scope = scope_filter([model], [half_video_id(g, h) for g in part for h in HALVES], run_id=IMPORT_RUN)
        events = [e for g in part for e in per_game[g]]
        if dedup_window_s is not None:
            events = deduplicate(events, dedup_window_s)
        report.events_written += write_events(table, events, replace_scope=scope)
    ensure_event_indexes(table)
    return report


@dataclass
class SpottingExport:
    """What one export wrote: files per game, predictions, and events it could not place."""

    out: str
    games: list[str] = field(default_factory=list)
    predictions: int = 0
    problems: list[str] = field(default_factory=list)


def _game_time(half: int, time_s: float) -> str:
    seconds = int(time_s)
    return f"{half} - {seconds // 60:02d}:{seconds % 60:02d}"


def export_soccernet_predictions(conn: Any, model: str, out: str | Path, where: str | None = None) -> SpottingExport:
    """Write ``model``'s events (optionally filtered by ``where``) as one ``results_spotting.json`` per
    game under ``out``; events on videos that are not ``<game>/<half>`` are reported, not written."""
    scope = scope_filter([model])
    rows = query_events(conn, f"({scope}) AND ({where})" if where else scope)
    if rows.num_rows == 0:
        raise EventsError(f"no events of model {model!r}" + (f" matching {where!r}" if where else ""))
    report = SpottingExport(out=str(out))
    games: dict[str, list[dict[str, Any]]] = {}
    unplaced: dict[str, int] = {}
    entries = file_order(rows.column("metadata"))
    for i, row in enumerate(rows.to_pylist()):
        game, _, half = row["video_id"].rpartition("/")
        if not game or half not in ("1", "2"):
            unplaced[row["video_id"]] = unplaced.get(row["video_id"], 0) + 1
            continue
        confidence = 1.0 if row["confidence"] is None else float(row["confidence"])
        item = {"gameTime": _game_time(int(half), row["time_s"]), "label": row["label"],
                "position": str(int(round(row["time_s"] * 1000))), "half": half, "confidence": str(confidence)}
        if row["team"]:
            item["team"] = row["team"]
        entry = None if entries is None or np.isnan(entries[i]) else float(entries[i])
        games.setdefault(game, []).append((entry, confidence, item))
    for video, count in sorted(unplaced.items()):
        report.problems.append(f"video {video!r} ({count} events) is not a SoccerNet half "
                               "(<league>/<season>/<game>/<half>): not exported")
    for game in sorted(games):
        # Where two predictions share a half-second cell of a class, the official evaluation keeps the last
        # one in the file, and `vw ensemble` the last one of the file they were imported from, else the most
        # confident: imported predictions keep their file's order, the others go in ascending confidence.
        items = [p[2] for p in sorted(games[game], key=lambda p: (0, p[0], 0.0) if p[0] is not None
                                      else (1, 0.0, p[1]))]
        target = Path(out).joinpath(*posixpath.normpath(game).split("/")) / RESULTS_FILE
        if not target.resolve().is_relative_to(Path(out).resolve()):
            report.problems.append(f"game {game!r} would be written outside {out}: not exported")
            continue
        atomic_write(target, json.dumps({"UrlLocal": game + "/", "predictions": items}, indent=1).encode())
        report.games.append(game)
        report.predictions += len(items)
    return report
