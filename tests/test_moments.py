"""Moment search: de-duplication within a gap, the frames table path against the exact path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.indexing import IndexOptions, run_index
from tables import moments
from tables.connection import connect
from tables.frames import frames_state, refresh_frames
from tables.moments import dedupe, find_moments
from tables.search import SearchError
from udfs.arrays import lists_to_arrow, steps_to_arrow

D = 8


@pytest.fixture()
def wh(tmp_path) -> dict:
    """Video A has a scene like the query at 3-5 s, B at 7 s, C nothing; 30 more noise videos."""
    rng = np.random.default_rng(3)
    q = np.zeros(D, np.float32)
    q[0] = 1.0
    feats, ids, splits = [], [], []
    for name in ("A", "B", "C"):
        f = rng.normal(size=(10, D)).astype(np.float32)
        f[:, 0] = -3.0  # far from the query
        feats.append(f)
        ids.append(name)
        splits.append("x")
    feats[0][3:6] = q + 0.05 * rng.normal(size=(3, D))
    feats[0][4] = q  # the best frame of A
    feats[1][7] = q + 0.2 * rng.normal(size=D)
    for i in range(30):
        f = rng.normal(size=(10, D)).astype(np.float32)
        f[:, 0] = -3.0
        feats.append(f)
        ids.append(f"n{i}")
        splits.append("y")
    times = [np.arange(10, dtype=np.float64) + 0.5 for _ in feats]  # instants 0.5, 1.5, ...
    db = str(tmp_path / "db")
    conn = connect(db)
    conn.create_table("videos", pa.table({
        "video_id": ids, "split": splits,
        "frame_features": steps_to_arrow(feats, D),
        "frame_features_times": lists_to_arrow(times, pa.float64()),
    }))
    return {"conn": conn, "q": q, "db": db}


def test_dedupe_keeps_best_within_gap() -> None:
    hits = [("A", 3.0, 0.9), ("A", 4.0, 0.99), ("A", 5.0, 0.95), ("A", 9.0, 0.5), ("B", 4.0, 0.8)]
    assert dedupe(hits, 1.0, 10) == [("A", 4.0, 0.99), ("B", 4.0, 0.8), ("A", 9.0, 0.5)]
    assert dedupe(hits, 0.0, 10)[:3] == [("A", 4.0, 0.99), ("A", 5.0, 0.95), ("A", 3.0, 0.9)]
    assert dedupe(hits, 10.0, 10) == [("A", 4.0, 0.99), ("B", 4.0, 0.8)]
    assert dedupe(hits, 1.0, 10, exclude=("A", 4.2)) == [("A", 3.0, 0.9), ("B", 4.0, 0.8), ("A", 9.0, 0.5)]
    assert dedupe(hits, 1.0, 2) == [("A", 4.0, 0.99), ("B", 4.0, 0.8)]


def test_exact_moments_deduplicated(wh: dict) -> None:
    res = find_moments(wh["conn"], vector=wh["q"], k=3, gap_s=2.0)
    got = list(zip(res.column("video_id"), res.column("time_s"), strict=True))
    assert got[0] == ("A", 4.5) and got[1] == ("B", 7.5)
    assert ("A", 3.5) not in got and ("A", 5.5) not in got
    assert res.column("score")[0] == pytest.approx(1.0, abs=1e-6)
    no_gap = find_moments(wh["conn"], vector=wh["q"], k=4, gap_s=0.0)
    assert [v for v in no_gap.column("video_id")][:3] == ["A", "A", "A"]
    filtered = find_moments(wh["conn"], vector=wh["q"], k=3, where="video_id != 'A'")
    assert "A" not in filtered.column("video_id") and filtered.column("video_id")[0] == "B"


def test_query_by_stored_moment_excludes_itself(wh: dict) -> None:
    res = find_moments(wh["conn"], video_id="A", time_s=4.4, k=2, gap_s=2.0)
    assert res.column("video_id")[0] == "B"
    with pytest.raises(SearchError, match="outside video 'A'"):
        find_moments(wh["conn"], video_id="A", time_s=60.0)
    with pytest.raises(SearchError, match="needs time_s"):
        find_moments(wh["conn"], video_id="A")


def test_frames_table_path_matches_exact(wh: dict) -> None:
    conn = wh["conn"]
    reports = run_index(conn, "videos", "frame_features", IndexOptions(min_rows=200, recall_queries=5), log=print)
    assert [r.kind for r in reports] == ["frames", "scalar", "vector"]
    assert reports[2].action == "built" and reports[2].recall_at_10 >= 0.9
    state = frames_state(conn)
    assert state == {"table": "frames", "frames": 330, "source_version": state["source_version"], "stale": False}
    assert find_moments(conn, vector=wh["q"], k=5).plan["method"].startswith("frames (ANN")
    # a selective filter is scored exactly over its videos' frames
    selective = find_moments(conn, vector=wh["q"], k=5, where="split = 'x'").plan
    assert selective["method"].startswith("exact") and "<= the exact-search budget" in selective["chosen_because"]
    # past the budget the same filter goes through the frames table's index
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(moments, "EXACT_BUDGET", 10)
        wide = find_moments(conn, vector=wh["q"], k=5, where="split = 'x'").plan
    assert wide["method"].startswith("frames (ANN") and "> the exact-search budget of 10" in wide["chosen_because"]
    for where in (None, "split = 'x'"):
        via_frames = find_moments(conn, vector=wh["q"], k=5, gap_s=2.0, where=where, candidates="frames")
        exact = find_moments(conn, vector=wh["q"], k=5, gap_s=2.0, where=where, candidates="exact")
        assert via_frames.plan["method"].startswith("frames")
        assert list(zip(via_frames.column("video_id"), via_frames.column("time_s"), strict=True)) == list(
            zip(exact.column("video_id"), exact.column("time_s"), strict=True))
    # refresh: an unchanged table writes nothing; a removed video disappears
    again = refresh_frames(conn)
    assert again.videos_added == 0 and again.videos_removed == 0 and again.frames == 330
    conn.open_table("videos").delete("video_id = 'B'")
    assert frames_state(conn)["stale"]
    after = refresh_frames(conn)
    assert after.videos_removed == 1 and after.frames == 320
    res = find_moments(conn, vector=wh["q"], k=2, gap_s=2.0)
    assert "B" not in res.column("video_id")


def test_cli_moments(wh: dict) -> None:
    import json

    from typer.testing import CliRunner

    from jobs.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["moments", "--video-id", "A", "--time", "4.5", "-k", "2", "--gap", "2",
                              "--format", "json", "--db", wh["db"]])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["video_id"] for r in doc["results"]][0] == "B" and doc["plan"]["method"].startswith("exact")
    res = runner.invoke(app, ["moments", "--video-id", "A", "--db", wh["db"]])
    assert res.exit_code == 2 and "needs time_s" in res.output
