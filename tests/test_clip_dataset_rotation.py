"""ClipDataset on phone-style videos with a display rotation: upright frames of the right aspect."""

from __future__ import annotations

import pytest
import torch

from tables.clip_dataset import ClipDataset
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tests.videogen import (
    ROTATIONS,
    GeneratedVideo,
    frame_index_of,
    make_cfr_video,
    make_rotated_video,
    rotate_back,
)
from udfs.decode import SamplingPlan, decode

FPS = 10
FRAMES = 30  # 3 s per video


@pytest.fixture(scope="module")
def rotated_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, GeneratedVideo, dict[str, GeneratedVideo]]:
    media = tmp_path_factory.mktemp("rot-media")
    # Landscape coded frames (as a phone sensor writes them) with each display rotation.
    upright = make_cfr_video(media / "upright.mp4", num_frames=FRAMES, fps=FPS, width=96, height=64, gop=10)
    videos = {f"rot{r}": make_rotated_video(media / f"rot{r}.mp4", upright, r) for r in ROTATIONS}
    root = str(tmp_path_factory.mktemp("rot-db"))
    table = open_videos(connect(root))
    report = ingest(table, [str(v.path) for v in videos.values()], split="train")
    assert report.failures == [] and report.inserted == len(videos)
    return root, upright, videos


def test_ingest_records_the_displayed_size(rotated_db) -> None:
    root, _, videos = rotated_db
    rows = open_videos(connect(root)).to_arrow().select(["video_id", "width", "height"]).to_pylist()
    got = {r["video_id"]: (r["width"], r["height"]) for r in rows}
    assert got == {vid: (v.width, v.height) for vid, v in videos.items()}
    assert got["rot90"] == (64, 96) and got["rot180"] == (96, 64)


@pytest.mark.parametrize("resize", [None, 32])
def test_clip_dataset_yields_upright_frames(rotated_db, resize: int | None) -> None:
    root, upright, videos = rotated_db
    ds = ClipDataset(root, split="train", num_frames=4, resize_short_side=resize, seed=0)
    samples = {s["video_id"]: s for s in ds}
    assert set(samples) == set(videos) and ds.failures == []
    reference = decode(upright.path, SamplingPlan.uniform(4), resize_short_side=resize)
    for vid, video in videos.items():
        frames = samples[vid]["frames"]
        # Portrait display: taller than wide, and no squashing (the aspect of the display).
        h, w = (video.height, video.width) if resize is None else (
            (48, 32) if video.height > video.width else (32, 48))
        assert tuple(frames.shape) == (4, 3, h, w), vid
        back = rotate_back(frames, video.rotation)
        diff = (back.float() - reference.data.float()).abs().mean().item()
        assert diff < 3.0, f"{vid}: mean abs diff {diff:.2f} from the upright clip"
        assert [frame_index_of(f) for f in back] == reference.indices.tolist(), vid
        assert torch.allclose(samples[vid]["timestamps"], torch.from_numpy(reference.timestamps_s))


def test_clip_dataset_window_of_a_rotated_video(rotated_db) -> None:
    root, _, videos = rotated_db
    ds = ClipDataset(root, where="video_id = 'rot270'", clip_seconds=1.0, clip_fps=5, size=(48, 32), seed=1)
    (sample,) = list(ds)
    assert tuple(sample["frames"].shape) == (5, 3, 48, 32)
    back = rotate_back(sample["frames"], videos["rot270"].rotation)
    want = [round(float(t) * FPS) for t in sample["timestamps"]]
    assert [frame_index_of(f) for f in back] == want
