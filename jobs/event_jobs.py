"""Events from the detector columns and from earlier pipelines' prediction files.

De-duplication (:func:`deduplicate`)
    Per video, model and label, events closer than ``window_s`` seconds (3 by default,
    inclusive) are one event: the most confident one is kept (missing confidences rank last;
    ties: the earlier one). This is what the earlier pipelines' merge step did to the
    overlapping windows (4 s windows every 2 s see most actions twice).

Detector events (:func:`refresh_detection_events`)
    Every action of every parsed detection cell of ``windows.detections_<family>`` becomes an
    event of model ``<family>`` (``llava``, ``qwen``) at the window's *centre*
    (``(start_s + end_s) / 2``: the action lies somewhere in the window, the centre is at most
    half a window off), with the window's ``window_id``, the raw answer, and metadata naming
    the column, checkpoint, profile and ``random_weights``. Their ``run_id`` is
    :data:`DETECTOR_RUN`. A refresh recomputes the events of every video from the current
    cells and rewrites only the videos whose events changed (new windows detected, a column
    recomputed), each in one commit (``write_events(..., replace_scope=scope_filter([model],
    videos, run_id))``); re-running it without changes writes nothing.

Imported predictions (:func:`import_predictions`)
    The JSON files earlier pipelines wrote (``final_predictions_llava_video_0.json``, partial
    ``partial_results_llava_vid0_gpu1.json``): a list of ``{"time": seconds, "raw": answer}``
    where ``raw`` is usually a Python-dict string. Each answer is parsed with the detectors'
    parser; ``time`` is used as written (those pipelines wrote the window *start*: pass
    ``time_offset_s=2`` to move them to the centre of their 4 s windows, as detector events
    are). Run id :data:`IMPORT_RUN`. The events are merged with the ones already imported for
    the same model and videos and de-duplicated together, so importing a video's partial files
    one by one, all at once, or twice gives the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tables.connection import lance_error_text
from tables.events import (
    EVENTS_SCHEMA,
    GROUND_TRUTH,
    Event,
    ensure_event_indexes,
    event_id,
    open_events,
    scope_filter,
    write_events,
)
from udfs.detection_parser import NONE_LABEL, parse_answer
from udfs.detections import analysed
from udfs.errors import VwError

DEFAULT_DEDUP_S = 3.0
#: ``run_id`` of the events computed from the detector columns.
DETECTOR_RUN = "detector"
#: ``run_id`` of imported prediction files.
IMPORT_RUN = "import"
#: Most videos a refresh names in its scope filter; beyond, it rewrites the model's whole scope in one merge.
_SCOPE_CHUNK = 500


class EventsError(VwError, ValueError):
    """Bad input to an events job: options, prediction files, video maps, filters."""


def _rank(e: Event) -> tuple:
    conf = -math.inf if e.confidence is None else e.confidence
    return (-conf, e.time_s, e.window_id if e.window_id is not None else -1, e.team or "", e.details or "",
            json.dumps(e.metadata, sort_keys=True) if e.metadata else "")


def deduplicate(events: Iterable[Event], window_s: float = DEFAULT_DEDUP_S) -> list[Event]:
    """Keep the most confident event of each cluster within ``window_s`` (see module documentation).

    Returns the kept events ordered by video, model, time and label.
    """
    if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s >= 0):
        raise EventsError(f"the de-duplication window must be a number of seconds >= 0, got {window_s!r}")
    groups: dict[tuple[str, str, str], list[Event]] = {}
    for e in events:
        groups.setdefault((e.video_id, e.model, e.label), []).append(e)
    kept: list[Event] = []
    for group in groups.values():
        chosen: list[Event] = []
        for e in sorted(group, key=_rank):
            if all(abs(e.time_s - k.time_s) > window_s + 1e-9 for k in chosen):
                chosen.append(e)
        kept.extend(chosen)
    return sorted(kept, key=lambda e: (e.video_id, e.model, e.time_s, e.label))


# ---------------------------------------------------------------------------- detector events


def detector_columns(table: Any) -> dict[str, str]:
    """``{column: event model}`` of the detector columns present on ``windows``."""
    from tables.column_state import field_spec
    from udfs.detector_models import FAMILIES

    out = {}
    for key in FAMILIES:
        column = f"detections_{key}"
        if column in table.schema.names:
            out[column] = field_spec(table, column).get("vw.event_model", key)
    return out


def events_from_cells(rows: Iterable[dict[str, Any]], column: str, model: str,
                      column_meta: dict[str, str]) -> list[Event]:
    """Events of detection cells (rows with ``window_id``, ``video_id``, ``start_s``, ``end_s``, ``column``)."""
    base = {
        "source": column,
        "checkpoint": column_meta.get("vw.name"),
        "profile": column_meta.get("vw.profile"),
        "random_weights": column_meta.get("vw.random_weights") == "true",
    }
    out = []
    for row in rows:
        cell = row[column]
        if not analysed(cell):
            continue
        centre = (row["start_s"] + row["end_s"]) / 2
        for e in cell.get("events") or []:
            if e["label"] == NONE_LABEL:
                continue
            out.append(Event(
                video_id=row["video_id"], model=model, time_s=round(centre, 3), label=e["label"], team=e["team"],
                confidence=e["confidence"], details=e["details"], raw=cell["raw"], window_id=row["window_id"],
                run_id=DETECTOR_RUN,
                metadata=base | {"window_start_s": row["start_s"], "window_end_s": row["end_s"]},
            ))
    return out


def _signature(e: Event) -> tuple:
    return (event_id(e.video_id, e.model, e.run_id, e.time_s, e.label, e.team), e.confidence, e.details, e.raw,
            e.window_id, json.dumps(e.metadata, sort_keys=True) if e.metadata else None)


def _stored(table: Any, condition: str | None) -> list[dict[str, Any]]:
    if table.count_rows() == 0:
        return []
    return table.to_lance().to_table(filter=condition).to_pylist()


def _stored_signature(row: dict[str, Any]) -> tuple:
    return (row["event_id"], row["confidence"], row["details"], row["raw"], row["window_id"], row["metadata"])


@dataclass
class RefreshReport:
    """What one refresh did for one detector column."""

    column: str
    model: str
    windows: int = 0
    detected: int = 0
    videos: int = 0
    affected_videos: list[str] = field(default_factory=list)
    events: int = 0
    random_weights: bool = False


def _video_filter(video_ids: Sequence[str] | None) -> str | None:
    return scope_filter(video_ids=video_ids) if video_ids is not None else None


def refresh_detection_events(conn: Any, models: Sequence[str] | None = None, video_ids: Sequence[str] | None = None,
                             dedup_window_s: float = DEFAULT_DEDUP_S) -> list[RefreshReport]:
    """Bring the detector events of ``events`` in step with the detector columns of ``windows``.

    ``models``: event models (``llava``, ``qwen``) to refresh (default: every detector column
    present); ``video_ids``: restrict to these videos. Raises ``LookupError`` without a
    ``windows`` table and ``ValueError`` for a model without a column.
    """
    from tables.column_state import field_spec
    from tables.windows import open_windows

    windows = open_windows(conn)
    columns = detector_columns(windows)
    if models is not None:
        known = {m: c for c, m in columns.items()}
        missing = [m for m in models if m not in known]
        if missing:
            raise EventsError(f"no detector column for {missing} on 'windows' (present: {sorted(known) or 'none'}): "
                             f"run `vw backfill {' '.join('detections_' + m for m in missing)}` first")
        columns = {known[m]: m for m in models}
    events_table = open_events(conn)
    reports = []
    for column, model in columns.items():
        meta = field_spec(windows, column)
        rows = windows.to_lance().to_table(columns=["window_id", "video_id", "start_s", "end_s", column],
                                           filter=_video_filter(video_ids)).to_pylist()
        new = deduplicate(events_from_cells(rows, column, model, meta), dedup_window_s)
        scope = scope_filter([model], video_ids, run_id=DETECTOR_RUN)
        old_rows = _stored(events_table, scope)
        new_sig: dict[str, set] = {}
        old_sig: dict[str, set] = {}
        for e in new:
            new_sig.setdefault(e.video_id, set()).add(_signature(e))
        for r in old_rows:
            old_sig.setdefault(r["video_id"], set()).add(_stored_signature(r))
        videos = sorted({r["video_id"] for r in rows} | set(old_sig))
        affected = [v for v in videos if new_sig.get(v, set()) != old_sig.get(v, set())]
        by_video: dict[str, list[Event]] = {}
        for e in new:
            by_video.setdefault(e.video_id, []).append(e)
        if len(affected) > _SCOPE_CHUNK:
            # Many videos changed: one merge of every event in scope (unchanged rows are written as
            # they are) in one commit, instead of one pass over the events table per few videos.
            write_events(events_table, new, replace_scope=scope)
        elif affected:
            write_events(events_table, [e for v in affected for e in by_video.get(v, [])],
                         replace_scope=scope_filter([model], affected, run_id=DETECTOR_RUN))
        reports.append(RefreshReport(
            column=column, model=model, windows=len(rows), detected=sum(analysed(r[column]) for r in rows),
            videos=len({r["video_id"] for r in rows}), affected_videos=affected,
            events=sum(len(by_video.get(v, [])) for v in affected),
            random_weights=meta.get("vw.random_weights") == "true",
        ))
    ensure_event_indexes(events_table)
    return reports


# --------------------------------------------------------------------------- imported files

_VIDEO_NUMBER = re.compile(r"(?:^|[^a-z0-9])(?:video|vid)[_-]?(\d+)(?![0-9])", re.IGNORECASE)


def video_number(path: str) -> int | None:
    """The video number in a predictions file name (``..._video_5.json``, ``..._vid5_gpu0.json``)."""
    match = _VIDEO_NUMBER.search(os.path.basename(path))
    return int(match.group(1)) if match else None


@dataclass
class ImportReport:
    """What one import did; ``problems`` name the file (and entry) of everything not imported."""

    model: str
    files: int = 0
    entries: int = 0
    answers_parsed: int = 0
    no_action: int = 0
    events_before_dedup: int = 0
    events_written: int = 0
    videos: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _video_for(path: str, video_id: str | None, video_map: dict[str, str] | None) -> str:
    if video_id:
        return video_id
    number = video_number(path)
    if number is None:
        raise EventsError("cannot tell the video from the file name (no 'video_N' or 'vidN' in it): "
                         "pass --video-id")
    if video_map is not None:
        if str(number) not in video_map:
            raise EventsError(f"video number {number} is not in the video map")
        return video_map[str(number)]
    return f"video_{number}"


def json_number(value: Any, what: str) -> float:
    """``value`` (a JSON number, or a string holding one) as a float; :class:`EventsError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventsError(f"'{what}' is not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise EventsError(f"'{what}' is not a number: {value!r}") from None


def _entry_time(entry: dict[str, Any], offset: float) -> float:
    if "time" not in entry:
        raise EventsError("no 'time'")
    t = entry["time"]
    value = json_number(t, "time")
    if not math.isfinite(value) or value + offset < 0:
        raise EventsError(f"'time' must be a finite number of seconds >= 0 (after the offset), got {t!r}")
    return round(value + offset, 3)


def _entry_raw(entry: dict[str, Any]) -> str:
    if "raw" not in entry:
        raise EventsError("no 'raw' answer")
    raw = entry["raw"]
    if isinstance(raw, dict | list):
        return json.dumps(raw)
    if not isinstance(raw, str):
        raise EventsError(f"'raw' is not text: {raw!r}")
    return raw


def read_predictions_file(path: str, model: str, video_id: str, time_offset_s: float,
                          report: ImportReport) -> list[Event]:
    """The events of one predictions file; problems are added to ``report`` (file and entry named)."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        report.problems.append(f"{path}: not readable as JSON ({err})")
        return []
    if not isinstance(data, list):
        report.problems.append(f"{path}: expected a JSON list of {{time, raw}} entries, got {type(data).__name__}")
        return []
    report.files += 1
    out = []
    for i, entry in enumerate(data):
        report.entries += 1
        try:
            if not isinstance(entry, dict):
                raise EventsError(f"not an object: {entry!r}"[:120])
            time_s = _entry_time(entry, time_offset_s)
            raw = _entry_raw(entry)
        except ValueError as err:
            report.problems.append(f"{path}: entry {i}: {err}")
            continue
        parsed = parse_answer(raw)
        if parsed.parse_error:
            report.problems.append(f"{path}: entry {i} (time {time_s:g}): unparseable answer "
                                   f"({parsed.parse_error}): {raw[:80]!r}")
            continue
        report.answers_parsed += 1
        actions = parsed.actions
        if not actions:
            report.no_action += 1
        for e in actions:
            out.append(Event(video_id=video_id, model=model, time_s=time_s, label=e.label, team=e.team,
                             confidence=e.confidence, details=e.details, raw=raw, run_id=IMPORT_RUN,
                             metadata={"source_file": name, "entry": i}))
    return out


def _event_from_row(row: dict[str, Any]) -> Event:
    return Event(video_id=row["video_id"], model=row["model"], time_s=row["time_s"], label=row["label"],
                 team=row["team"], confidence=row["confidence"], details=row["details"], raw=row["raw"],
                 window_id=row["window_id"], run_id=row["run_id"],
                 metadata=json.loads(row["metadata"]) if row["metadata"] else None)


def load_video_map(path: str) -> dict[str, str]:
    """A ``{"N": "video_id"}`` JSON object mapping file numbers to warehouse video ids."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise EventsError(f"video map {path}: not readable as JSON ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
        raise EventsError(f"video map {path}: expected a JSON object of number -> video id strings")
    return {str(k): v for k, v in data.items()}


def known_videos(conn: Any, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that are rows of the ``videos`` table (none when it does not exist)."""
    from tables.connection import open_videos, table_exists
    from tables.ingest import stored_video_ids
    from tables.names import VIDEOS

    ids = list(ids)
    if not ids or not table_exists(conn, VIDEOS):
        return set()
    return stored_video_ids(open_videos(conn, create=False), ids)


UNKNOWN_VIDEO_HINT = "ingest it first (or its labels: vw ingest --format soccernet --labels-only), or pass " \
    "--allow-unknown-videos to keep the events anyway"


def import_predictions(conn: Any, model: str, files: Sequence[str], video_id: str | None = None,
                       video_map: dict[str, str] | None = None, time_offset_s: float = 0.0,
                       dedup_window_s: float = DEFAULT_DEDUP_S, allow_unknown_videos: bool = False) -> ImportReport:
    """Import prediction files into ``events`` (see the module documentation); a file whose video is not
    in the warehouse is refused (a problem naming the file and the id) unless ``allow_unknown_videos``."""
    if not model or not model.strip():
        raise EventsError("the model name is empty")
    if model == GROUND_TRUTH:
        raise EventsError(f"'{GROUND_TRUTH}' is reserved for annotations; name the model that made the predictions")
    if not files:
        raise EventsError("no prediction files given")
    if not math.isfinite(time_offset_s):
        raise EventsError(f"the time offset must be a finite number of seconds, got {time_offset_s}")
    report = ImportReport(model)
    per_video: dict[str, list[Event]] = {}
    targets: dict[str, str | EventsError] = {}
    for path in files:
        try:
            targets[path] = _video_for(path, video_id, video_map)
        except EventsError as err:
            targets[path] = err
    ids = [v for v in targets.values() if isinstance(v, str)]
    known = set(ids) if allow_unknown_videos else known_videos(conn, ids)
    for path in files:  # problems in file order
        vid = targets[path]
        if isinstance(vid, EventsError):
            report.problems.append(f"{path}: {vid}")
            continue
        if vid not in known:
            how = "--video-id" if video_id else ("the video map" if video_map is not None else "its file name")
            report.problems.append(f"{path}: video {vid!r} (from {how}) is not in the warehouse: {UNKNOWN_VIDEO_HINT}")
            continue
        events = read_predictions_file(path, model, vid, time_offset_s, report)
        per_video.setdefault(vid, []).extend(events)
    videos = sorted(v for v in per_video if per_video[v])
    report.videos = videos
    report.events_before_dedup = sum(len(v) for v in per_video.values())
    if not videos:
        return report
    table = open_events(conn)
    written = 0
    for i in range(0, len(videos), _SCOPE_CHUNK):
        part = videos[i : i + _SCOPE_CHUNK]
        scope = scope_filter([model], part, run_id=IMPORT_RUN)
        existing = [_event_from_row(r) for r in _stored(table, scope)]
        merged = deduplicate([*existing, *(e for v in part for e in per_video[v])], dedup_window_s)
        write_events(table, merged, replace_scope=scope)
        written += len(merged)
    report.events_written = written
    ensure_event_indexes(table)
    return report


def delete_events(conn: Any, models: Sequence[str], where: str | None = None) -> int:
    """Delete the events of ``models`` (those matching ``where``) in one commit; returns how many."""
    if not models:
        raise EventsError("name the models whose events are deleted")
    table = open_events(conn, create=False)
    condition = scope_filter(list(models))
    if where:
        condition = f"({condition}) AND ({where})"
    try:
        count = table.count_rows(condition)
    except Exception as err:  # noqa: BLE001 - a bad filter is the user's to fix
        raise EventsError(f"bad --where filter {where!r}: {err}") from None
    if count == 0:
        known = sorted(set(table.to_lance().to_table(columns=["model"]).column("model").to_pylist()))
        raise EventsError(f"no events of {', '.join(models)}" + (f" match {where!r}" if where else "")
                          + f"; models with events: {', '.join(known) or 'none'}")
    table.delete(condition)
    return count


# ------------------------------------------------------------------------------------ reading

OUTPUT_COLUMNS = ["video_id", "model", "time_s", "label", "team", "confidence", "details", "window_id", "run_id"]


def query_events(conn: Any, where: str | None = None, limit: int | None = None) -> pa.Table:
    """Rows of ``events`` matching the SQL filter ``where``, ordered by video, time, model, label.

    Raises ``LookupError`` without an ``events`` table and ``ValueError`` for a bad filter.
    """
    if limit is not None and limit < 0:
        raise EventsError(f"limit must be >= 0, got {limit}")
    table = open_events(conn, create=False)
    try:
        rows = table.to_lance().to_table(filter=where) if where else table.to_lance().to_table()
    except (ValueError, OSError) as err:
        msg = lance_error_text(err, limit=2000)
        raise EventsError(f"bad --where filter {where!r} on the events table: {msg}") from None
    rows = rows.sort_by([("video_id", "ascending"), ("time_s", "ascending"), ("model", "ascending"),
                         ("label", "ascending")])
    return rows.slice(0, limit) if limit is not None else rows


def random_weight_events(rows: pa.Table) -> int:
    """How many of ``rows`` come from models with random weights (their metadata says so)."""
    count = 0
    for meta in rows.column("metadata").to_pylist():
        if meta and json.loads(meta).get("random_weights") is True:
            count += 1
    return count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    return str(value)


def format_table(rows: pa.Table, details_width: int = 40) -> str:
    """An aligned text table of :data:`OUTPUT_COLUMNS` (details cut to ``details_width``)."""
    data = rows.select(OUTPUT_COLUMNS).to_pylist()
    cells = [[_cell(r[c]) for c in OUTPUT_COLUMNS] for r in data]
    di = OUTPUT_COLUMNS.index("details")
    for row in cells:
        text = " ".join(row[di].split())
        row[di] = text if len(text) <= details_width else text[: details_width - 3] + "..."
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(OUTPUT_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(OUTPUT_COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def format_csv(rows: pa.Table) -> str:
    """CSV with a header: :data:`OUTPUT_COLUMNS` plus ``raw``."""
    columns = [*OUTPUT_COLUMNS, "raw"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows.select(columns).to_pylist():
        writer.writerow(["" if r[c] is None else r[c] for c in columns])
    return out.getvalue()


def format_json(rows: pa.Table) -> str:
    """A JSON list of every column (``metadata`` parsed, ``created_at`` as ISO text)."""
    items = []
    for r in rows.select([f.name for f in EVENTS_SCHEMA]).to_pylist():
        r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else None
        r["created_at"] = r["created_at"].isoformat() if r["created_at"] else None
        items.append(r)
    return json.dumps(items, indent=2, ensure_ascii=False)
