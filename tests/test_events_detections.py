"""Events from detector columns and from imported prediction files: de-duplication, refresh, filter."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.event_jobs import (
    DETECTOR_RUN,
    IMPORT_RUN,
    deduplicate,
    import_predictions,
    query_events,
    refresh_detection_events,
    video_number,
)
from tables.connection import connect
from tables.events import Event, open_events
from tables.names import WINDOWS
from tables.windows import WINDOWS_SCHEMA, window_id
from tests.ensemble_records import detections_from_arrow
from udfs.detection_parser import parse_answer
from udfs.detections import DETECTION_TYPE, detection_cell


def ev(t: float, conf: float | None, label: str = "Goal", video: str = "v", model: str = "m") -> Event:
    return Event(video_id=video, model=model, time_s=t, label=label, confidence=conf)


def test_deduplicate_keeps_the_most_confident_within_the_window() -> None:
    kept = deduplicate([ev(2, 0.7), ev(4, 0.9), ev(6, 0.6), ev(7.5, 0.5), ev(10, 0.8), ev(4, 0.3, "Foul"),
                        ev(4, 0.2, video="w"), ev(4, 0.1, model="n")])
    assert [(e.video_id, e.model, e.time_s, e.label, e.confidence) for e in kept] == [
        ("v", "m", 4, "Foul", 0.3), ("v", "m", 4, "Goal", 0.9),  # 2, 6 and 7.5 (near 10) suppressed
        ("v", "m", 10, "Goal", 0.8), ("v", "n", 4, "Goal", 0.1), ("w", "m", 4, "Goal", 0.2)]
    # inclusive window; missing confidences rank last; ties keep the earlier event
    assert [e.time_s for e in deduplicate([ev(0, None), ev(3, 0.1)])] == [3]
    assert [e.time_s for e in deduplicate([ev(0, 0.5), ev(3.001, 0.5)])] == [0, 3.001]
    assert [e.time_s for e in deduplicate([ev(5, 0.5), ev(3, 0.5)])] == [3]
    assert len(deduplicate([ev(0, 0.5), ev(1, 0.5)], window_s=0.5)) == 2
    with pytest.raises(ValueError, match="window"):
        deduplicate([], window_s=-1)


LLAVA_META = {"vw.event_model": "llava", "vw.name": "llava-hf/LLaVA-NeXT-Video-7B-hf", "vw.profile": "full",
              "vw.random_weights": "false"}
QWEN_META = {"vw.event_model": "qwen", "vw.name": "qwen2.5-vl-tiny-random", "vw.profile": "tiny",
             "vw.random_weights": "true"}

#: (video, start, end, llava answer or None for "not computed yet", qwen answer)
WINDOW_ANSWERS = [
    ("m1", 0, 4, "{'label': 'Goal', 'team': 'home', 'confidence': 0.7, 'details': 'shot'}", None),
    ("m1", 2, 6, '[{"label": "Goal", "team": "home", "confidence": 0.9, "details": "in the net"},'
                 ' {"label": "Foul", "team": "away", "confidence": 0.5}]', '{"label": "Goal", "confidence": 0.4}'),
    ("m1", 4, 8, '{"label": "goal!", "team": "home", "confidence": "60%"}', None),
    ("m1", 6, 10, "I cannot tell.", None),
    ("m1", 8, 12, '{"label": "none", "confidence": 0.9}', None),
    ("m1", 10, 14, '{"label": "Corner", "team": "away", "confidence": 0.8}', None),
    ("m1", 12, 16, '```json\n{"label": "corner kick", "team": "away", "confidence": 0.85}\n```', None),
    ("m2", 0, 4, '{"label": "Goal", "team": "away", "confidence": 0.8}', None),
    ("m2", 2, 6, None, None),
    ("m2", 6, 10, '{"label": "Yellow card", "team": "home"}', None),
]


def _cell(answer: str | None) -> dict | None:
    return None if answer is None else detection_cell(parse_answer(answer))


def _window_rows(answers: list[tuple]) -> pa.Table:
    schema = WINDOWS_SCHEMA.append(pa.field("detections_llava", DETECTION_TYPE, metadata=LLAVA_META)).append(
        pa.field("detections_qwen", DETECTION_TYPE, metadata=QWEN_META))
    index: dict[str, int] = {}
    rows = []
    for vid, start, end, llava, qwen in answers:
        i = index[vid] = index.get(vid, -1) + 1
        rows.append({"window_id": window_id(vid, i, start, end), "video_id": vid, "uri": f"/v/{vid}.mp4",
                     "window_index": i, "start_s": float(start), "end_s": float(end), "window_s": 4.0,
                     "step_s": 2.0, "fps": 1.0, "detections_llava": _cell(llava), "detections_qwen": _cell(qwen)})
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture()
def warehouse(tmp_path: Path) -> str:
    db = str(tmp_path / "db")
    conn = connect(db)
    conn.create_table(WINDOWS, data=_window_rows(WINDOW_ANSWERS))
    return db


def _events(db: str, where: str | None = None) -> list[tuple]:
    rows = query_events(connect(db), where).to_pylist()
    return [(r["video_id"], r["model"], r["time_s"], r["label"], r["team"], r["confidence"]) for r in rows]


def test_refresh_builds_deduplicated_events_at_window_centres(warehouse: str) -> None:
    conn = connect(warehouse)
    reports = refresh_detection_events(conn)
    assert [(r.column, r.model, r.windows, r.detected, r.affected_videos, r.random_weights) for r in reports] == [
        ("detections_llava", "llava", 10, 9, ["m1", "m2"], False),
        ("detections_qwen", "qwen", 10, 1, ["m1"], True)]
    assert _events(warehouse) == [
        ("m1", "llava", 4.0, "Foul", "away", 0.5),
        ("m1", "llava", 4.0, "Goal", "home", 0.9),
        ("m1", "qwen", 4.0, "Goal", None, 0.4),
        ("m1", "llava", 14.0, "Corner", "away", 0.85),
        ("m2", "llava", 2.0, "Goal", "away", 0.8),
        ("m2", "llava", 8.0, "Yellow card", "home", None),
    ]
    table = query_events(conn)
    goal = [r for r in table.to_pylist() if r["label"] == "Goal" and r["model"] == "llava" and r["video_id"] == "m1"][0]
    assert goal["window_id"] == window_id("m1", 1, 2.0, 6.0) and goal["run_id"] == DETECTOR_RUN
    assert goal["raw"].startswith('[{"label": "Goal"') and goal["details"] == "in the net"
    meta = json.loads(goal["metadata"])
    assert meta["random_weights"] is False and meta["window_start_s"] == 2.0 and meta["source"] == "detections_llava"
    qwen = [r for r in table.to_pylist() if r["model"] == "qwen"][0]
    assert json.loads(qwen["metadata"])["random_weights"] is True
    # the ensemble analysis reads these rows
    assert len(detections_from_arrow(table)) == 6
    indexed = {tuple(i.columns)[0] for i in open_events(conn).list_indices()}
    assert {"video_id", "model", "label", "time_s", "confidence"} <= indexed


def test_refresh_rewrites_only_videos_whose_events_changed(warehouse: str) -> None:
    conn = connect(warehouse)
    refresh_detection_events(conn)
    events = open_events(conn)
    version = events.version
    before = {r["event_id"]: r["created_at"] for r in query_events(conn).to_pylist()}
    again = refresh_detection_events(conn)
    assert [r.affected_videos for r in again] == [[], []]
    assert open_events(conn).version == version

    # m2's missing window gets detected (a later backfill): only m2 is rewritten
    answers = [a if a[:3] != ("m2", 2, 6) else ("m2", 2, 6, '{"label": "Goal", "confidence": 0.95}', None)
               for a in WINDOW_ANSWERS]
    windows = conn.open_table(WINDOWS)
    windows.merge_insert("window_id").when_matched_update_all().execute(_window_rows(answers))
    reports = refresh_detection_events(conn, models=["llava"])
    assert [r.affected_videos for r in reports] == [["m2"]]
    after = query_events(conn).to_pylist()
    assert [(r["video_id"], r["time_s"], r["label"], r["confidence"]) for r in after if r["video_id"] == "m2"] == [
        ("m2", 4.0, "Goal", 0.95), ("m2", 8.0, "Yellow card", None)]
    assert all(before[r["event_id"]] == r["created_at"] for r in after if r["video_id"] == "m1")
    with pytest.raises(ValueError, match="vw backfill detections_gpt"):
        refresh_detection_events(conn, models=["gpt"])


def test_refresh_of_many_changed_videos_is_one_commit_and_keeps_the_rest(tmp_path: Path, monkeypatch) -> None:
    import jobs.event_jobs as event_jobs

    monkeypatch.setattr(event_jobs, "_SCOPE_CHUNK", 3)  # more videos changed than one scope filter names

    def answers(label: str, changed: int) -> list[tuple]:
        return [(f"v{i}", 0, 4, f'{{"label": "{label if i < changed else "Foul"}", "confidence": 0.5}}',
                 '{"label": "Corner", "confidence": 0.6}') for i in range(8)]

    conn = connect(str(tmp_path / "db"))
    conn.create_table(WINDOWS, data=_window_rows(answers("Foul", 0)))
    refresh_detection_events(conn)
    imported = Event("v0", "llava", 1.0, "Goal", confidence=0.9, run_id=IMPORT_RUN)
    from tables.events import write_events

    write_events(open_events(conn), [imported])
    qwen_before = {r["event_id"]: r["created_at"] for r in query_events(conn, "model = 'qwen'").to_pylist()}
    windows = conn.open_table(WINDOWS)
    for changed in (2, 6):  # 2 videos: named in the scope filter; 6: the model's whole scope in one merge
        windows.merge_insert("window_id").when_matched_update_all().execute(_window_rows(answers("Goal", changed)))
        version = open_events(conn).version
        reports = refresh_detection_events(conn, models=["llava"])
        assert reports[0].affected_videos == [f"v{i}" for i in range(changed) if changed == 2 or i >= 2]
        assert open_events(conn).version == version + 1, "one commit per refresh"
        rows = query_events(conn, f"model = 'llava' AND run_id = '{DETECTOR_RUN}'").to_pylist()
        assert sorted((r["video_id"], r["label"]) for r in rows) == [
            (f"v{i}", "Goal" if i < changed else "Foul") for i in range(8)]
    assert [r["label"] for r in query_events(conn, f"run_id = '{IMPORT_RUN}'").to_pylist()] == ["Goal"]
    assert {r["event_id"]: r["created_at"] for r in query_events(conn, "model = 'qwen'").to_pylist()} == qwen_before


def test_events_cli_filters_and_formats(warehouse: str) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["events", "--refresh", "--db", warehouse,
                              "--where", "label = 'Goal' AND confidence > 0.8 AND model = 'llava'"])
    assert res.exit_code == 0, res.output
    assert "RANDOM WEIGHTS" in res.output  # the qwen column's refresh line says so
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines[0].split()[:4] == ["video_id", "model", "time_s", "label"]
    assert len(lines) == 2 and lines[1].split()[:6] == ["m1", "llava", "4.0", "Goal", "home", "0.9"]

    res = runner.invoke(app, ["events", "--format", "csv", "--where", "video_id = 'm2'", "--db", warehouse])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["time_s"], r["label"], r["confidence"]) for r in rows] == [("2.0", "Goal", "0.8"),
                                                                         ("8.0", "Yellow card", "")]
    res = runner.invoke(app, ["events", "--format", "json", "--where", "model = 'qwen'", "--db", warehouse])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    assert len(items) == 1 and items[0]["metadata"]["random_weights"] is True
    assert "1 of these 1 events come from models with RANDOM WEIGHTS" in res.stderr

    res = runner.invoke(app, ["events", "--where", "labelz = 'Goal'", "--db", warehouse])
    assert res.exit_code == 2 and "bad --where filter" in res.output
    res = runner.invoke(app, ["events", "--format", "xml", "--db", warehouse])
    assert res.exit_code == 2 and "--format" in res.output


SEED_ANSWER = "{{'label': '{label}', 'team': '{team}', 'confidence': {conf}, 'details': '{details}'}}"


def _seed(label: str, team: str, conf: float, details: str = "Player scores from close range") -> str:
    return SEED_ANSWER.format(label=label, team=team, conf=conf, details=details)


@pytest.fixture()
def prediction_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "final0": [
            {"time": 245.0, "raw": _seed("Goal", "away", 0.95)},
            {"time": 247.0, "raw": _seed("Goal", "away", 0.93, "Goal celebration visible")},
            {"time": 300.0, "raw": "{'label': 'None', 'team': None, 'confidence': 0.8, 'details': 'open play'}"},
            {"time": "abc", "raw": _seed("Corner", "home", 0.7)},
            {"raw": _seed("Corner", "home", 0.7)},
            "not an entry",
            {"time": 310.0, "raw": "The players walk off the pitch."},
            {"time": 320.0, "raw": 5},
            {"time": 330.0, "raw": _seed("Corner kick", "home", 0.7, "Corner from the left")},
        ],
        "gpu0": [{"time": 10.0, "raw": _seed("Foul", "home", 0.6)},
                 {"time": 12.0, "raw": _seed("Foul", "home", 0.8)}],
        "gpu1": [{"time": 14.0, "raw": _seed("Foul", "home", 0.7)},
                 {"time": 40.0, "raw": _seed("Throw-in", "away", 0.9)}],
    }
    names = {"final0": "final_predictions_llava_video_0.json", "gpu0": "partial_results_llava_vid1_gpu0.json",
             "gpu1": "partial_results_llava_vid1_gpu1.json"}
    out = {}
    for key, entries in files.items():
        out[key] = tmp_path / names[key]
        out[key].write_text(json.dumps(entries))
    out["broken"] = tmp_path / "final_predictions_llava_video_7.json"
    out["broken"].write_text('[{"time": 1.0, "raw": "{\'label\'')
    out["unnamed"] = tmp_path / "predictions.json"
    out["unnamed"].write_text(json.dumps([{"time": 5.0, "raw": _seed("Offside", "away", 0.5)}]))
    return out


def test_video_number_from_file_names() -> None:
    assert video_number("/x/final_predictions_llava_video_12.json") == 12
    assert video_number("partial_results_qwen7b_vid3_gpu2.json") == 3
    assert video_number("predictions.json") is None


def test_import_seed_files_reports_bad_entries(tmp_path: Path, prediction_files: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    files = [str(prediction_files[k]) for k in ("final0", "gpu0", "broken", "unnamed")]
    report = import_predictions(connect(db), "llava_seed", files, allow_unknown_videos=True)
    final = str(prediction_files["final0"])
    assert report.problems[:5] == [
        f"{final}: entry 3: 'time' is not a number: 'abc'",
        f"{final}: entry 4: no 'time'",
        f"{final}: entry 5: not an object: 'not an entry'",
        f"{final}: entry 6 (time 310): unparseable answer (no JSON object or Python dict in the answer): "
        "'The players walk off the pitch.'",
        f"{final}: entry 7: 'raw' is not text: 5",
    ]
    assert report.problems[5].startswith(f"{prediction_files['broken']}: not readable as JSON")
    assert report.problems[6].startswith(f"{prediction_files['unnamed']}: cannot tell the video from the file name")
    assert (report.files, report.entries, report.answers_parsed, report.no_action) == (2, 11, 6, 1)
    assert (report.events_before_dedup, report.events_written, report.videos) == (5, 3, ["video_0", "video_1"])
    expected = [("video_0", "llava_seed", 245.0, "Goal", "away", 0.95),
                ("video_0", "llava_seed", 330.0, "Corner", "home", 0.7),
                ("video_1", "llava_seed", 12.0, "Foul", "home", 0.8)]
    assert _events(db) == expected
    assert {r["run_id"] for r in query_events(connect(db)).to_pylist()} == {IMPORT_RUN}

    # importing again duplicates nothing; the other partial file of video 1 merges with the first
    import_predictions(connect(db), "llava_seed", files, allow_unknown_videos=True)
    assert _events(db) == expected
    import_predictions(connect(db), "llava_seed", [str(prediction_files["gpu1"])],
                       allow_unknown_videos=True)
    together = str(tmp_path / "db2")
    import_predictions(connect(together), "llava_seed", [str(prediction_files[k]) for k in ("gpu0", "gpu1")],
                       allow_unknown_videos=True)
    video1 = [e for e in _events(db) if e[0] == "video_1"]
    assert video1 == _events(together) == [("video_1", "llava_seed", 12.0, "Foul", "home", 0.8),
                                           ("video_1", "llava_seed", 40.0, "Throw-in", "away", 0.9)]


def test_import_cli_with_explicit_video_and_offset(tmp_path: Path, prediction_files: dict[str, Path]) -> None:
    db = str(tmp_path / "db")
    runner = CliRunner()
    res = runner.invoke(app, ["import-predictions", "--model", "qwen7b", "--video-id", "england/game/1",
                              "--time-offset", "2", str(prediction_files["unnamed"]), "--db", db])
    assert res.exit_code == 1  # the warehouse has no such video: refused, nothing written
    assert "video 'england/game/1' (from --video-id) is not in the warehouse" in res.output
    res = runner.invoke(app, ["import-predictions", "--allow-unknown-videos", "--model", "qwen7b", "--video-id",
                              "england/game/1", "--time-offset", "2", str(prediction_files["unnamed"]), "--db", db])
    assert res.exit_code == 0, res.output
    assert "1 events -> 1 after de-duplication on 1 videos; 0 problems" in res.output
    assert _events(db) == [("england/game/1", "qwen7b", 7.0, "Offside", "away", 0.5)]
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"0": "england/game/2"}))
    res = runner.invoke(app, ["import-predictions", "--allow-unknown-videos", "--model", "qwen7b", "--video-map",
                              str(mapping), str(prediction_files["final0"]), str(prediction_files["gpu0"]), "--db", db])
    assert res.exit_code == 1
    assert "NOT IMPORTED" in res.output and "video number 1 is not in the video map" in res.output
    assert [e[0] for e in _events(db)] == ["england/game/1", "england/game/2", "england/game/2"]
    res = runner.invoke(app, ["import-predictions", "--allow-unknown-videos", "--model", "ground_truth",
                              str(prediction_files["gpu0"]), "--db", db])
    assert res.exit_code == 2 and "reserved" in res.output
