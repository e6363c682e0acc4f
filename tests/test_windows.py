"""The ``windows`` table: the window grid, idempotent refresh, new videos only, settings changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from tables.connection import connect, open_videos
from tables.schema import VIDEOS_SCHEMA
from tables.windows import (
    WindowSettings,
    WindowSettingsError,
    open_windows,
    refresh_windows,
    video_range,
    window_grid,
    window_id,
)


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0.0, 10.0, [(0, 4), (2, 6), (4, 8), (6, 10), (8, 10)]),
    (0.0, 9.0, [(0, 4), (2, 6), (4, 8), (6, 9), (8, 9)]),
    (0.0, 4.0, [(0, 4), (2, 4)]),
    (0.0, 4.5, [(0, 4), (2, 4.5), (4, 4.5)]),
    (0.0, 3.0, [(0, 3), (2, 3)]),  # shorter than one window
    (0.0, 2.0, [(0, 2)]),
    (0.0, 1.2, [(0, 1.2)]),
    (1.5, 3.7, [(1.5, 3.7), (3.5, 3.7)]),  # a clip range inside the file
    (600.0, 610.0, [(600, 604), (602, 606), (604, 608), (606, 610), (608, 610)]),
])
def test_grid_default_settings(start: float, end: float, expected: list[tuple[float, float]]) -> None:
    assert window_grid(start, end, 4.0, 2.0) == [(float(s), float(e)) for s, e in expected]


def test_grid_other_settings_and_float_steps() -> None:
    assert window_grid(0.0, 8.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0)]
    assert window_grid(0.0, 8.5, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 8.5)]
    grid = window_grid(0.0, 1.0, 0.3, 0.1)
    assert len(grid) == 10 and grid[-1] == (0.9, 1.0) and grid[3] == (0.3, 0.6)
    # a long video: the last start is the last multiple of the step before the end
    grid = window_grid(0.0, 5400.0, 4.0, 2.0)
    assert len(grid) == 2700 and grid[-1] == (5398.0, 5400.0) and grid[-2] == (5396.0, 5400.0)


def test_grid_and_range_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        window_grid(3.0, 3.0, 4.0, 2.0)
    with pytest.raises(ValueError, match="length is unknown"):
        video_range({"video_id": "v", "start_s": None, "end_s": None, "duration_s": None})
    with pytest.raises(ValueError, match="empty"):
        video_range({"start_s": 5.0, "end_s": 5.0, "duration_s": 9.0})
    assert video_range({"start_s": None, "end_s": None, "duration_s": 7.5}) == (0.0, 7.5)
    assert video_range({"start_s": 2.0, "end_s": None, "duration_s": 7.5}) == (2.0, 7.5)
    with pytest.raises(ValueError, match="step"):
        WindowSettings(4.0, 5.0, 1.0)
    with pytest.raises(ValueError, match="fps"):
        WindowSettings(4.0, 2.0, 0.0)


def test_window_ids_are_deterministic_and_distinct() -> None:
    assert window_id("a", 0, 0.0, 4.0) == window_id("a", 0, 0.0, 4.0)
    ids = {window_id(v, i, s, e) for v in ("a", "b") for i, (s, e) in enumerate(window_grid(0, 100, 4, 2))}
    assert len(ids) == 100 and all(0 <= i < 2**63 for i in ids)
    assert window_id("a", 0, 0.0, 4.0) != window_id("a", 0, 0.0, 3.0)


def _add_videos(conn: object, rows: list[dict]) -> None:
    now = dt.datetime.now(dt.UTC)
    full = [{f.name: None for f in VIDEOS_SCHEMA} | {"ingested_at": now} | r for r in rows]
    open_videos(conn).add(pa.Table.from_pylist(full, schema=VIDEOS_SCHEMA))


def _windows(conn: object) -> dict[tuple[str, int], tuple]:
    rows = open_windows(conn).to_arrow().to_pylist()
    return {(r["video_id"], r["window_index"]): (r["start_s"], r["end_s"], r["window_id"], r["uri"]) for r in rows}


def test_refresh_is_idempotent_and_adds_only_new_videos(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "db"))
    _add_videos(conn, [
        {"video_id": "a", "uri": "/v/a.mp4", "duration_s": 5.0},
        {"video_id": "b", "uri": "/v/b.mp4", "duration_s": 60.0, "start_s": 10.0, "end_s": 13.0},
        {"video_id": "c", "uri": "/v/c.mp4", "duration_s": None},  # length unknown: reported
    ])
    report = refresh_windows(conn)
    assert (report.videos, report.added, report.removed, report.total) == (3, 5, 0, 5)
    assert report.skipped == [("c", "no duration_s and no end_s: the video's length is unknown")]
    first = _windows(conn)
    assert {k: v[:2] for k, v in first.items()} == {
        ("a", 0): (0.0, 4.0), ("a", 1): (2.0, 5.0), ("a", 2): (4.0, 5.0),
        ("b", 0): (10.0, 13.0), ("b", 1): (12.0, 13.0),
    }
    row = open_windows(conn).to_arrow().to_pylist()[0]
    assert (row["window_s"], row["step_s"], row["fps"]) == (4.0, 2.0, 1.0)

    # A computed column: its values must survive refreshes.
    table = open_windows(conn)
    table.add_columns({"marker": "concat(video_id, '-', cast(window_index as string))"})
    version = table.version
    again = refresh_windows(conn)
    assert (again.added, again.removed, again.total) == (0, 0, 5)
    assert open_windows(conn).version == version  # nothing written

    _add_videos(conn, [{"video_id": "d", "uri": "/v/d.mp4", "duration_s": 2.0}])
    third = refresh_windows(conn)
    assert (third.added, third.removed, third.total) == (1, 0, 6)
    now = _windows(conn)
    assert {k: v for k, v in now.items() if k[0] != "d"} == first
    assert now[("d", 0)][:2] == (0.0, 2.0)
    markers = {r["video_id"]: r["marker"] for r in open_windows(conn).to_arrow().to_pylist() if r["window_index"] == 0}
    assert markers["a"] == "a-0" and markers["d"] is None  # old values kept, the new row is to be computed


def test_refresh_follows_deleted_videos_changed_ranges_and_moves(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "db"))
    _add_videos(conn, [
        {"video_id": "a", "uri": "/v/a.mp4", "duration_s": 5.0},
        {"video_id": "b", "uri": "/v/b.mp4", "duration_s": 3.0},
    ])
    refresh_windows(conn)
    videos = open_videos(conn)
    videos.delete("video_id = 'b'")
    videos.update(where="video_id = 'a'", values={"end_s": 4.0, "uri": "/w/a.mp4"})
    report = refresh_windows(conn)
    assert (report.added, report.removed, report.total) == (1, 4, 2)  # a: [0, 4) kept, [2, 4) new
    assert {k: (v[0], v[1], v[3]) for k, v in _windows(conn).items()} == {
        ("a", 0): (0.0, 4.0, "/w/a.mp4"), ("a", 1): (2.0, 4.0, "/w/a.mp4")}
    videos.update(where="video_id = 'a'", values={"uri": "/x/a.mp4"})
    report = refresh_windows(conn)
    assert (report.added, report.removed, report.moved) == (0, 0, 1)
    assert {v[3] for v in _windows(conn).values()} == {"/x/a.mp4"}


def test_other_settings_are_refused_unless_recreated(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    conn = connect(db)
    _add_videos(conn, [{"video_id": "a", "uri": "/v/a.mp4", "duration_s": 10.0}])
    runner = CliRunner()
    res = runner.invoke(app, ["windows", "--db", db])
    assert res.exit_code == 0, res.output
    assert "5 windows added" in res.output
    version = open_windows(conn).version
    with pytest.raises(WindowSettingsError, match=r"built with window 4 s, step 2 s, 1 fps, not window 5 s"):
        refresh_windows(conn, WindowSettings(5.0, 2.0, 1.0))
    res = runner.invoke(app, ["windows", "--window", "4", "--step", "1", "--db", db])
    assert res.exit_code == 2 and "--recreate" in res.output
    assert open_windows(conn).version == version
    res = runner.invoke(app, ["windows", "--window", "4", "--step", "4", "--recreate", "--db", db])
    assert res.exit_code == 0, res.output
    assert "(recreated)" in res.output
    assert [v[:2] for v in _windows(conn).values()] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    res = runner.invoke(app, ["windows", "--window", "2", "--step", "3", "--db", db])
    assert res.exit_code == 2 and "longer than the window" in res.output


def test_windows_without_videos_table(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["windows", "--db", str(tmp_path / "db")])
    assert res.exit_code == 2 and "vw ingest" in res.output
