"""Detector columns end to end on the shared local Ray: windows, tiny LLaVA + Qwen backfills, events.

One warehouse for the module, tests in file order: `vw windows` over two generated clips (5 s and
3 s) and one whose file vanished after ingest; one run_backfill filling both detector columns
(tiny profile, real decoded windows); the events refresh; then a new video: `vw windows` adds only
its window and a second llava backfill computes only that one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.backfill import BackfillOptions, run_backfill
from jobs.cli import app
from jobs.event_jobs import events_from_cells, refresh_detection_events
from tables.connection import connect
from tables.ingest import ingest
from tables.windows import open_windows
from tests.videogen import make_cfr_video
from udfs.detection_parser import parse_answer
from udfs.detections import analysed, detection_cell, not_analysed

pytestmark = pytest.mark.integration

COLUMNS = ["detections_llava", "detections_qwen"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("detwh")
    five = make_cfr_video(root / "five.mp4", num_frames=125, width=160, height=120).path
    three = make_cfr_video(root / "three.mp4", num_frames=75, width=200, height=120).path
    gone = Path(shutil.copy(three, root / "gone.mp4"))
    db = str(root / "db")
    conn = connect(db)
    from tables.connection import open_videos

    assert ingest(open_videos(conn), [str(five), str(three), str(gone)]).inserted == 3
    gone.unlink()
    old = os.environ.get("DETECT_MAX_NEW_TOKENS")
    os.environ["DETECT_MAX_NEW_TOKENS"] = "8"
    try:
        yield {"db": db, "root": root, "three": three}
    finally:
        if old is None:
            os.environ.pop("DETECT_MAX_NEW_TOKENS", None)
        else:
            os.environ["DETECT_MAX_NEW_TOKENS"] = old


def _cells(db: str, column: str) -> dict[tuple[str, int], dict | None]:
    rows = open_windows(connect(db)).to_arrow().to_pylist()
    return {(r["video_id"], r["window_index"]): r[column] for r in rows}


def test_windows_then_both_detectors(warehouse: dict) -> None:
    res = CliRunner().invoke(app, ["windows", "--db", warehouse["db"]])
    assert res.exit_code == 0, res.output
    assert "3 videos, 7 windows added" in res.output  # five: 3, three: 2, gone: 2
    conn = connect(warehouse["db"])
    reports = run_backfill(conn, COLUMNS, BackfillOptions(profile="tiny", batch_size=2), log=print)
    assert [r.column for r in reports] == COLUMNS
    windows = open_windows(conn)
    for r in reports:
        assert (r.rows, r.failed) == (7, 2), r
        assert all("gone.mp4" in e["message"] and e["error_type"] == "FileNotFoundError" for e in r.errors)
        # geneva stores a failed struct cell with every field NULL: no answer, an error record
        assert windows.count_rows(not_analysed(r.column)) == 2
    for column in COLUMNS:
        meta = windows.schema.field(column).metadata
        assert meta[b"vw.random_weights"] == b"true" and meta[b"vw.max_new_tokens"] == b"8"
        assert meta[b"vw.missing"] == f"{column}.raw IS NULL".encode()
        cells = _cells(warehouse["db"], column)
        assert not analysed(cells[("gone", 0)]) and not analysed(cells[("gone", 1)])
        good = {k: c for k, c in cells.items() if k[0] != "gone"}
        assert sorted(good) == [("five", 0), ("five", 1), ("five", 2), ("three", 0), ("three", 1)]
        for cell in good.values():
            assert isinstance(cell["raw"], str)
            assert (cell["parse_error"] is None) != (cell["label"] is None)
            assert cell == detection_cell(parse_answer(cell["raw"]))


def test_events_refresh_matches_the_cells(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    reports = refresh_detection_events(conn)
    windows = open_windows(conn)
    rows = windows.to_arrow().to_pylist()
    for r in reports:
        assert (r.windows, r.detected, r.random_weights) == (7, 5, True)
        expected = events_from_cells(rows, r.column, r.model, {})
        assert r.events <= len(expected)
    assert [r.affected_videos for r in refresh_detection_events(conn)] == [[], []]


def test_new_video_adds_and_computes_only_its_windows(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    before = _cells(warehouse["db"], "detections_llava")
    two = make_cfr_video(warehouse["root"] / "two.mp4", num_frames=50, width=160, height=120).path
    from tables.connection import open_videos

    assert ingest(open_videos(conn), [str(two)]).inserted == 1
    res = CliRunner().invoke(app, ["windows", "--db", warehouse["db"]])
    assert res.exit_code == 0, res.output
    assert "4 videos, 1 windows added, 0 removed, 8 in total" in res.output
    (report,) = run_backfill(conn, ["detections_llava"], BackfillOptions(profile="tiny", batch_size=2), log=print)
    assert (report.rows, report.computed, report.failed) == (8, 1, 0)
    assert open_windows(conn).count_rows(not_analysed("detections_llava")) == 2  # the vanished video's
    after = _cells(warehouse["db"], "detections_llava")
    assert {k: v for k, v in after.items() if k[0] != "two"} == before
    assert after[("two", 0)] is not None
