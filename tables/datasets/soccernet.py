"""SoccerNet-v2 game folders: ``<league>/<season>/<game>/{1_224p.mkv, 2_224p.mkv, Labels-v2.json}``.

``PATH`` is the dataset root; every ``Labels-v2.json`` under it is a game. One row per half,
id ``<league>/<season>/<game>/<half>`` (``england_epl/2014-2015/2015-02-21 - 18-00 Chelsea 1 -
1 Burnley/1``). Video file: ``<videos root>/<league>/<season>/<game>/<half>_224p.mkv`` (the
videos root defaults to ``PATH``). Both halves of a game share a split; the game's teams,
date and score go to ``metadata``.

``Labels-v2.json``: ``{"annotations": [{"gameTime": "1 - 12:34", "label": "Goal",
"position": "754000", "team": "home", "visibility": "visible"}, ...], ...}``. Each annotation
becomes an ``events`` row with ``model = 'ground_truth'``, ``time_s = position / 1000`` (the
time within the half named by ``gameTime``), ``label`` and ``team``; ``gameTime``,
``visibility``, ``team`` and ``position`` (ms) are kept in the event's ``metadata``.
"""

from __future__ import annotations

import posixpath
import re

from tables.datasets.records import (
    BadFile,
    BadRecord,
    DatasetRecord,
    ReadResult,
    describe_error,
    join,
    optional_str,
    read_json,
    require_str,
)
from tables.events import GROUND_TRUTH, Event
from tables.ingest import IngestEntry

SOURCE = "soccernet"
NAMING = "<videos root>/<league>/<season>/<game>/<half>_224p.mkv"
#: Each half's events replace that video's earlier ground truth (even when there are none left).
GROUND_TRUTH_EVENTS = True
LABELS_FILE = "Labels-v2.json"
VIDEO_NAME = "{half}_224p.mkv"
HALVES = (1, 2)

_GAME_TIME = re.compile(r"^\s*([12])\s*-\s*(\d{1,3}):(\d{2})\s*$")


def label_files(root: str) -> list[tuple[str, str]]:
    """``(file, game)`` of every ``Labels-v2.json`` under ``root`` (sorted); ``file`` is a path or
    URI like ``root``, ``game`` its folder relative to ``root`` (``<league>/<season>/<game>``)."""
    from udfs import storage

    fs, fs_root = storage.filesystem_for(root)
    if not fs.isdir(fs_root):
        raise BadFile("not a folder: SoccerNet is read from the dataset's root folder")
    fs_root = fs_root.rstrip("/")
    found = sorted(p for p in fs.find(fs_root) if posixpath.basename(p) == LABELS_FILE)
    games = [posixpath.relpath(posixpath.dirname(p), fs_root) for p in found]
    if "://" in root:
        scheme = root.split("://", 1)[0]
        found = [f"{scheme}://{p.lstrip('/')}" for p in found]
    return list(zip(found, games, strict=True))


def half_video_id(game: str, half: int) -> str:
    """The ``video_id`` of one half of a game (``game`` is ``<league>/<season>/<game>``)."""
    return f"{game}/{half}"


def read(path: str, videos_root: str) -> ReadResult:
    """Records (two halves per game) and ground-truth events of a SoccerNet root folder."""
    out = ReadResult()
    try:
        files = label_files(path)
    except (BadFile, OSError) as exc:
        out.fail(path, describe_error(exc))
        return out
    if not files:
        out.fail(path, f"no {LABELS_FILE} files under this folder")
    for file, folder in files:
        # a labels file directly in the root folder: the game is named after that folder
        game = posixpath.basename(path.rstrip("/")) if folder == "." else folder
        _read_game(file, game, folder, videos_root, out)
    return out


def _game_metadata(labels: dict, game: str) -> dict[str, object]:
    parts = game.split("/")
    meta: dict[str, object] = {"game": game}
    if len(parts) >= 3:
        meta.update(league=parts[-3], season=parts[-2], game_name=parts[-1])
    for key, name in (("gameHomeTeam", "home_team"), ("gameAwayTeam", "away_team"),
                      ("gameDate", "date"), ("gameScore", "score")):
        if isinstance(labels.get(key), str) and labels[key]:
            meta[name] = labels[key]
    return meta


def parse_annotation(item: object) -> tuple[int, Event]:
    """``(half, event)`` of one ``annotations`` item (the event's ``video_id`` is filled later)."""
    if not isinstance(item, dict):
        raise BadRecord(f"expected an object, got {type(item).__name__}")
    game_time = require_str(item, "gameTime")
    match = _GAME_TIME.match(game_time)
    if not match:
        raise BadRecord(f"'gameTime' must look like '1 - 12:34' (half 1 or 2), got {game_time!r}")
    half = int(match[1])
    raw_position = item.get("position")
    try:
        position = int(str(raw_position).strip())
    except ValueError:
        raise BadRecord(f"'position' must be a whole number of milliseconds, got {raw_position!r}") from None
    if position < 0:
        raise BadRecord(f"'position' must be >= 0, got {raw_position!r}")
    label = require_str(item, "label")
    team = optional_str(item, "team")
    visibility = optional_str(item, "visibility")
    meta = {"gameTime": game_time, "position_ms": position, "team": team, "visibility": visibility}
    event = Event(video_id="", model=GROUND_TRUTH, time_s=position / 1000.0, label=label, team=team,
                  metadata={k: v for k, v in meta.items() if v is not None})
    return half, event


def _read_game(file: str, game: str, folder: str, videos_root: str, out: ReadResult) -> None:
    try:
        labels = read_json(file)
        if not isinstance(labels, dict) or not isinstance(labels.get("annotations"), list):
            raise BadFile("not a SoccerNet labels file: expected an object with an 'annotations' list")
    except BadFile as exc:
        out.fail(file, describe_error(exc))
        return
    events: dict[int, list[Event]] = {h: [] for h in HALVES}
    for number, item in enumerate(labels["annotations"], start=1):
        try:
            half, event = parse_annotation(item)
        except BadRecord as exc:
            out.fail(f"{file} annotations item {number}", describe_error(exc))
            continue
        events[half].append(event)
    meta = _game_metadata(labels, game)
    for half in HALVES:
        vid = half_video_id(game, half)
        for event in events[half]:
            event.video_id = vid
        entry = IngestEntry(
            uri=join(videos_root, folder, VIDEO_NAME.format(half=half)),
            video_id=vid,
            source=SOURCE,
            metadata={**meta, "half": half},
            origin=f"{file} half {half}",
        )
        out.records.append(DatasetRecord(entry=entry, group=game, events=events[half]))
