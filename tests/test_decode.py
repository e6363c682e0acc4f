"""Unit tests of udfs.decode and udfs.storage on generated videos whose frames encode their index."""

from __future__ import annotations

import io
import logging
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from videogen import (
    ROTATIONS,
    GeneratedVideo,
    frame_index_of,
    make_broken_files,
    make_cfr_video,
    make_rotated_video,
    make_vfr_video,
    rotate_back,
    rotate_upright,
)

from udfs import decode as dec
from udfs import storage
from udfs.decode import (
    DecodedFrames,
    SamplingPlan,
    VideoDecodeError,
    VideoInfo,
    decode,
    plan_times,
    probe,
)

METHODS = ("seek", "sequential", "auto")


@dataclass(frozen=True)
class Videos:
    short_gop: GeneratedVideo  # 263 frames (10.52 s) at 25 fps, a keyframe every 25 frames
    long_gop: GeneratedVideo  # the same frames, a keyframe every 250 frames
    vfr: GeneratedVideo  # 200 frames, durations cycling 20/40/100/40 ms
    clip_1s: GeneratedVideo  # 25 frames
    portrait: GeneratedVideo  # 240x320
    mkv: GeneratedVideo  # Matroska (no frame count in the header)
    faststart: GeneratedVideo  # mp4 with the index at the front
    ts: Path  # short_gop remuxed to MPEG-TS (pts start at 1.4 s, seeking is unreliable)
    broken: dict[str, Path]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    root = tmp_path_factory.mktemp("decode-videos")
    short = make_cfr_video(root / "short_gop.mp4", num_frames=263, gop=25)
    faststart = make_cfr_video(root / "faststart.mp4", num_frames=100, gop=25, faststart=True)
    broken = make_broken_files(root / "broken", short.path)
    data = faststart.path.read_bytes()
    broken["truncated_faststart"] = root / "broken" / "truncated_faststart.mp4"
    broken["truncated_faststart"].write_bytes(data[: len(data) // 2])
    ts = root / "short_gop.ts"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(short.path),
         "-c", "copy", str(ts)],
        check=True,
    )
    return Videos(
        short_gop=short,
        long_gop=make_cfr_video(root / "long_gop.mp4", num_frames=263, gop=250),
        vfr=make_vfr_video(root / "vfr.mp4", num_frames=200),
        clip_1s=make_cfr_video(root / "clip_1s.mp4", num_frames=25, gop=25),
        portrait=make_cfr_video(root / "portrait.mp4", num_frames=50, width=240, height=320),
        mkv=make_cfr_video(root / "cfr.mkv", num_frames=100, gop=25),
        faststart=faststart,
        ts=ts,
        broken=broken,
    )


def expected_times(plan: SamplingPlan, duration: float) -> np.ndarray:
    """The plan's instants, written out independently of plan_times."""
    start = plan.start_s or 0.0
    end = duration if plan.end_s is None else min(plan.end_s, duration)
    if plan.kind == "uniform":
        n = plan.num_frames
        return np.array([start + (i + 0.5) * (end - start) / n for i in range(n)])
    times, k = [], 0
    while start + k / plan.fps < end:
        times.append(start + k / plan.fps)
        k += 1
    return np.array(times)


def check_frames(result: DecodedFrames, video: GeneratedVideo, plan: SamplingPlan) -> None:
    """The result holds exactly the frames displayed at the plan's instants.

    The range ends at the duration the decoder reports (checked against the generated
    duration in test_decode_reports_scanned_info).
    """
    want = [video.index_at(t) for t in expected_times(plan, result.info.duration_s)]
    got = [frame_index_of(frame) for frame in result.data]
    assert got == want
    assert result.indices.tolist() == want
    np.testing.assert_allclose(result.timestamps_s, [video.pts_s[i] for i in want], atol=1e-6)
    assert result.data.dtype == torch.uint8
    assert result.timestamps_s.dtype == np.float64 and result.indices.dtype == np.int64


PLANS = {
    "uniform16": SamplingPlan.uniform(16),
    "uniform64": SamplingPlan.uniform(64),
    "fps1": SamplingPlan.every(1.0),
    "fps3": SamplingPlan.every(3.0),
    "uniform5_range": SamplingPlan.uniform(5, start_s=2.0, end_s=4.5),
    "window": SamplingPlan.window(3.3, 5.1, 4.0),
    "fps_all_frames": SamplingPlan.every(25.0, start_s=4.0, end_s=6.0),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("plan_name", sorted(PLANS))
@pytest.mark.parametrize("which", ["short_gop", "long_gop", "vfr"])
def test_plans_return_exact_frames(videos: Videos, which: str, plan_name: str, method: str):
    video = getattr(videos, which)
    plan = PLANS[plan_name]
    check_frames(decode(video.path, plan, method=method), video, plan)


def test_uniform_spans_the_whole_video(videos: Videos):
    result = decode(videos.long_gop.path, SamplingPlan.uniform(4))
    # Centres of 4 equal segments of 10.52 s: 1.315, 3.945, 6.575, 9.205 s.
    assert result.indices.tolist() == [32, 98, 164, 230]


def test_uniform_repeats_frames_of_a_short_clip(videos: Videos):
    plan = SamplingPlan.uniform(64)
    for method in METHODS:
        result = decode(videos.clip_1s.path, plan, method=method)
        assert result.data.shape[0] == 64
        check_frames(result, videos.clip_1s, plan)
        assert sorted(set(result.indices.tolist())) == list(range(25))
        assert np.all(np.diff(result.indices) >= 0)


def test_fps_plan_counts_instants_before_the_end(videos: Videos):
    result = decode(videos.short_gop.path, SamplingPlan.every(1.0))  # 10.52 s long
    assert result.timestamps_s.tolist() == [float(k) for k in range(11)]
    assert result.indices.tolist() == [25 * k for k in range(11)]


def test_range_past_the_end_is_clipped_and_range_after_the_end_fails(videos: Videos):
    video = videos.short_gop
    plan = SamplingPlan.every(2.0, start_s=9.0, end_s=60.0)
    result = decode(video.path, plan)  # instants 9, 9.5, 10, 10.5 s of a 10.52 s video
    assert result.indices.tolist() == [225, 237, 250, 262]
    with pytest.raises(VideoDecodeError, match="short_gop.mp4"):
        decode(video.path, SamplingPlan.uniform(4, start_s=11.0, end_s=12.0))


def test_vfr_frames_follow_time_not_frame_count(videos: Videos):
    video = videos.vfr
    # Frames start at 0, 0.02, 0.06, 0.16, 0.20, 0.22, 0.26 s. The instants 0.05, 0.15 and
    # 0.25 s fall in frames 1, 2 and 5 (at 25 fps they would be frames 1, 3 and 6).
    result = decode(video.path, SamplingPlan.uniform(3, start_s=0.0, end_s=0.3))
    assert result.indices.tolist() == [1, 2, 5]
    np.testing.assert_allclose(result.timestamps_s, [0.02, 0.06, 0.22])


def test_matroska_and_index_at_front(videos: Videos):
    for video in (videos.mkv, videos.faststart):
        for method in METHODS:
            check_frames(decode(video.path, PLANS["fps3"], method=method), video, PLANS["fps3"])


def test_local_seeks_do_not_fall_back(videos: Videos, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="udfs.decode")
    for video in (videos.short_gop, videos.long_gop, videos.vfr, videos.mkv, videos.faststart):
        decode(video.path, SamplingPlan.uniform(9), method="seek")
    assert not caplog.records


def test_mpeg_ts_falls_back_to_sequential(videos: Videos, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="udfs.decode")
    plan = SamplingPlan.uniform(10)
    reference = decode(videos.short_gop.path, plan)
    sources = [videos.ts, _memory_uri(videos.ts, "short.ts")]
    for source in sources:
        for method in METHODS:
            result = decode(source, plan, method=method)
            assert [frame_index_of(f) for f in result.data] == reference.indices.tolist()
            assert result.indices.tolist() == reference.indices.tolist()
            offset = result.timestamps_s - reference.timestamps_s  # TS pts start at 1.4 s
            np.testing.assert_allclose(offset, offset[0])
    assert any("seeking failed" in r.getMessage() for r in caplog.records)


def test_remote_vfr_without_durations_falls_back(videos: Videos, caplog):
    caplog.set_level(logging.INFO, logger="udfs.decode")
    # ffmpeg writes this stream's packets without durations: torchcodec's time lookups
    # return the following frame, which the pts check catches.
    uri = _memory_uri(videos.vfr.path, "vfr-fallback.mp4")
    decode(uri, SamplingPlan.uniform(5), method="seek")
    assert any("seeking failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("method", ["seek", "sequential"])
def test_resize_keeps_aspect_ratio(videos: Videos, method: str):
    landscape = decode(
        videos.short_gop.path, SamplingPlan.uniform(6), resize_short_side=96, method=method
    )
    assert tuple(landscape.data.shape) == (6, 3, 96, 128)
    check_frames(landscape, videos.short_gop, SamplingPlan.uniform(6))
    portrait = decode(
        videos.portrait.path, SamplingPlan.uniform(6), resize_short_side=60, method=method
    )
    assert tuple(portrait.data.shape) == (6, 3, 80, 60)
    check_frames(portrait, videos.portrait, SamplingPlan.uniform(6))


def test_resize_matches_between_methods(videos: Videos):
    plan = SamplingPlan.uniform(5)
    seek = decode(videos.long_gop.path, plan, resize_short_side=120, method="seek")
    seq = decode(videos.long_gop.path, plan, resize_short_side=120, method="sequential")
    assert seek.data.shape == seq.data.shape
    # Same frames, resized by swscale inside the decoder vs by torch: close, not identical.
    diff = (seek.data.float() - seq.data.float()).abs().mean()
    assert diff < 4.0


def test_probe_reads_the_header(videos: Videos):
    info = probe(videos.short_gop.path)
    assert info == VideoInfo(
        duration_s=pytest.approx(10.52), fps=pytest.approx(25.0), num_frames=263,
        width=320, height=240, codec="h264",
    )
    assert probe(videos.portrait.path).width == 240
    assert probe(videos.portrait.path).height == 320
    vfr = probe(videos.vfr.path)  # the header's own duration: not exact for this stream
    assert vfr.num_frames == 200
    assert 9.5 < vfr.duration_s < 10.1
    assert vfr.fps == pytest.approx(200 / vfr.duration_s)
    mkv = probe(videos.mkv.path)  # no frame count in a Matroska header: duration x fps
    assert mkv.num_frames == 100 and mkv.fps == pytest.approx(25.0)


def test_decode_reports_scanned_info(videos: Videos):
    info = decode(videos.short_gop.path, SamplingPlan.uniform(2)).info
    assert (info.num_frames, info.duration_s, info.fps) == (263, pytest.approx(10.52), 25.0)
    info = decode(videos.vfr.path, SamplingPlan.uniform(2)).info
    assert info.num_frames == 200
    # The mp4 muxer gives the last frame of a variable-rate stream no duration: the video
    # ends at the last frame's pts or one nominal frame later.
    assert videos.vfr.pts_s[-1] <= info.duration_s <= videos.vfr.duration_s
    assert info.fps == pytest.approx(200 / info.duration_s)


def _memory_uri(path: Path, name: str) -> str:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/decode-tests/{name}", path.read_bytes())
    return f"memory://decode-tests/{name}"


def test_sources_give_the_same_frames(videos: Videos):
    video = videos.short_gop
    plan = SamplingPlan.uniform(12)
    reference = decode(video.path, plan)
    check_frames(reference, video, plan)
    with open(video.path, "rb") as handle:
        from_file = decode(handle, plan)
    sources = {
        "str": str(video.path),
        "file_uri": f"file://{video.path}",
        "bytes": video.path.read_bytes(),
        "bytesio": io.BytesIO(video.path.read_bytes()),
        "memory": _memory_uri(video.path, "short.mp4"),
    }
    results = {key: decode(source, plan) for key, source in sources.items()}
    results["open_file"] = from_file
    for key, result in results.items():
        assert torch.equal(result.data, reference.data), key
        assert result.indices.tolist() == reference.indices.tolist(), key
        np.testing.assert_allclose(result.timestamps_s, reference.timestamps_s, err_msg=key)
    assert probe(sources["memory"]) == probe(video.path)


@pytest.mark.parametrize("method", METHODS)
def test_remote_source_with_every_method(videos: Videos, method: str):
    uri = _memory_uri(videos.long_gop.path, "long.mp4")
    for plan in (PLANS["uniform16"], PLANS["window"], PLANS["fps_all_frames"]):
        check_frames(decode(uri, plan, method=method), videos.long_gop, plan)


def test_remote_vfr_is_sampled_by_time(videos: Videos):
    video = videos.vfr
    plan = SamplingPlan.uniform(20)
    for method in METHODS:
        result = decode(_memory_uri(video.path, "vfr.mp4"), plan, method=method)
        want = [video.index_at(t) for t in expected_times(plan, probe(video.path).duration_s)]
        assert [frame_index_of(f) for f in result.data] == want
        np.testing.assert_allclose(result.timestamps_s, [video.pts_s[i] for i in want])


def test_gcs_source(videos: Videos, gcs_fs):
    gcs_fs.mkdir("decode-tests")
    gcs_fs.put(str(videos.short_gop.path), "decode-tests/x.mp4")
    plan = SamplingPlan.uniform(8)
    remote = decode("gs://decode-tests/x.mp4", plan)
    local = decode(videos.short_gop.path, plan)
    assert torch.equal(remote.data, local.data)
    assert remote.indices.tolist() == local.indices.tolist()
    assert probe("gs://decode-tests/x.mp4").num_frames == 263
    fs, path = storage.filesystem_for("gs://decode-tests/x.mp4")
    assert fs.exists(path)
    with pytest.raises(FileNotFoundError, match="gs://decode-tests/missing.mp4"):
        decode("gs://decode-tests/missing.mp4", plan)


BROKEN = ["empty", "random", "truncated", "corrupt_middle", "text", "truncated_faststart"]


@pytest.mark.parametrize("kind", BROKEN)
@pytest.mark.parametrize("method", ["seek", "sequential"])
def test_broken_files_raise(videos: Videos, kind: str, method: str):
    path = videos.broken[kind]
    with pytest.raises(VideoDecodeError, match=path.name) as err:
        decode(path, SamplingPlan.every(5.0), method=method)
    assert str(err.value).strip()


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_remote_sources_raise(videos: Videos, kind: str):
    uri = _memory_uri(videos.broken[kind], f"broken-{kind}.mp4")
    with pytest.raises(VideoDecodeError, match=uri):
        decode(uri, SamplingPlan.every(5.0))


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "text"])
def test_broken_files_fail_probe(videos: Videos, kind: str):
    with pytest.raises(VideoDecodeError, match=videos.broken[kind].name):
        probe(videos.broken[kind])


def test_broken_bytes_and_names(videos: Videos):
    with pytest.raises(VideoDecodeError, match="video-42"):
        decode(b"", SamplingPlan.uniform(2), name="video-42")
    with pytest.raises(VideoDecodeError, match="video-43"):
        decode(videos.broken["random"].read_bytes(), SamplingPlan.uniform(2), name="video-43")
    with pytest.raises(VideoDecodeError, match="bytes"):
        decode(videos.broken["text"].read_bytes(), SamplingPlan.uniform(2))


@pytest.mark.parametrize(
    "uri", ["/no/such/video.mp4", "file:///no/such/video.mp4", "memory://decode-tests/nope.mp4"]
)
def test_missing_files(uri: str):
    with pytest.raises(FileNotFoundError, match=uri):
        decode(uri, SamplingPlan.uniform(2))
    with pytest.raises(FileNotFoundError, match=uri):
        probe(uri)


def test_directory_and_bad_arguments(tmp_path: Path, videos: Videos):
    with pytest.raises(VideoDecodeError, match="directory"):
        decode(tmp_path, SamplingPlan.uniform(2))
    with pytest.raises(ValueError, match="method"):
        decode(videos.short_gop.path, SamplingPlan.uniform(2), method="fastest")
    with pytest.raises(TypeError):
        decode(12345, SamplingPlan.uniform(2))  # type: ignore[arg-type]


def test_plan_validation_and_times():
    info = VideoInfo(duration_s=10.5, fps=25.0, num_frames=263, width=4, height=4, codec=None)
    assert plan_times(SamplingPlan.every(1.0), info).tolist() == [float(k) for k in range(11)]
    np.testing.assert_allclose(plan_times(SamplingPlan.uniform(2), info), [2.625, 7.875])
    np.testing.assert_allclose(
        plan_times(SamplingPlan.window(2.0, 3.0, 4.0), info), [2.0, 2.25, 2.5, 2.75]
    )
    assert plan_times(SamplingPlan.every(1.0, end_s=10.0), info).tolist()[-1] == 9.0
    for bad in (
        lambda: SamplingPlan("random"),
        lambda: SamplingPlan.uniform(0),
        lambda: SamplingPlan.every(0.0),
        lambda: SamplingPlan.every(1.0, start_s=-1.0),
        lambda: SamplingPlan.window(3.0, 2.0, 1.0),
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="after the end"):
        plan_times(SamplingPlan.uniform(2, start_s=11.0), info)


def test_auto_cost_model_prefers_seeking_sparse_plans_on_long_gops():
    keyframes = np.arange(0, 15000, 250)
    table = dec._FrameTable(
        pts=np.arange(15000) / 25.0, end=(np.arange(15000) + 1) / 25.0, keyframes=keyframes,
        durations=np.full(15000, 0.04),
    )
    sparse = np.arange(120, 15000, 250)  # mid-GOP, one per GOP
    keys = table.keyframe_before(sparse)
    assert dec._seek_cost(sparse, keys) < dec._sequential_cost(sparse, keys) / 2
    dense = np.arange(0, 2000)  # every frame: no seek happens, the costs are the same span
    keys = table.keyframe_before(dense)
    assert dec._seek_cost(dense, keys) <= dec._sequential_cost(dense, keys)
    assert math.isclose(dec._seek_cost(dense, keys), 2000 + dec.SEEK_PENALTY_FRAMES)


def test_storage_helpers(monkeypatch: pytest.MonkeyPatch):
    assert not storage.is_remote("/a/b.mp4")
    assert not storage.is_remote("file:///a/b.mp4")
    assert storage.is_remote("gs://bucket/b.mp4")
    assert storage.is_remote("memory://b.mp4")
    monkeypatch.delenv("BLOCK_SIZE", raising=False)
    assert storage.block_size() == 16 * 2**20
    monkeypatch.setenv("BLOCK_SIZE", "1048576")
    assert storage.block_size() == 1048576
    monkeypatch.setenv("BLOCK_SIZE", "lots")
    with pytest.raises(ValueError, match="BLOCK_SIZE"):
        storage.block_size()


def test_thread_settings(videos: Videos, monkeypatch: pytest.MonkeyPatch):
    plan = SamplingPlan.uniform(6)
    reference = decode(videos.long_gop.path, plan)
    for value in ("1", "0", "3"):
        monkeypatch.setenv("DECODE_THREADS", value)
        result = decode(videos.long_gop.path, plan)
        assert torch.equal(result.data, reference.data)
    monkeypatch.setenv("DECODE_THREADS", "many")
    with pytest.raises(ValueError, match="DECODE_THREADS"):
        decode(videos.long_gop.path, plan)


# --------------------------------------------------------------------------------------------
# Display rotation (phones store portrait video as landscape frames plus a display matrix)


@dataclass(frozen=True)
class Rotated:
    upright: GeneratedVideo  # 150 frames (6 s) of 320x240, a keyframe every 25 frames
    by_rotation: dict[int, GeneratedVideo]  # the same bitstream with each display rotation
    vfr_upright: GeneratedVideo
    vfr_rotated: GeneratedVideo  # the VFR video with a 270 degree (phone portrait) matrix


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Rotated:
    root = tmp_path_factory.mktemp("decode-rotated")
    upright = make_cfr_video(root / "upright.mp4", num_frames=150, gop=25)
    by_rotation = {r: make_rotated_video(root / f"rot{r}.mp4", upright, r) for r in ROTATIONS}
    vfr = make_vfr_video(root / "vfr_upright.mp4", num_frames=120)
    return Rotated(upright, by_rotation, vfr, make_rotated_video(root / "vfr_rot270.mp4", vfr, 270))


ROTATION_PLANS = {
    "uniform12": SamplingPlan.uniform(12),
    "every_half_s": SamplingPlan.every(2.0),
    "window": SamplingPlan.window(1.3, 3.1, 5.0),
    "window_all_frames": SamplingPlan.every(25.0, start_s=4.0, end_s=5.0),
}


def check_rotated(result: DecodedFrames, reference: DecodedFrames, video: GeneratedVideo,
                  max_mean_diff: float = 1.0) -> None:
    """``result`` (of the rotated video) is ``reference`` (of the upright one) displayed upright."""
    assert tuple(result.data.shape[-2:]) != () and result.data.shape[0] == reference.data.shape[0]
    if video.rotation in (90, 270):
        assert tuple(result.data.shape[-2:]) == tuple(reference.data.shape[-2:])[::-1]
    else:
        assert result.data.shape == reference.data.shape
    back = rotate_back(result.data, video.rotation)
    diff = (back.float() - reference.data.float()).abs().mean().item()
    assert diff < max_mean_diff, f"mean abs diff {diff:.2f} from the upright clip's frames"
    # The index pattern reads back only from an upright frame turned to the coded orientation.
    assert [frame_index_of(f) for f in back] == reference.indices.tolist()
    assert result.indices.tolist() == reference.indices.tolist()
    np.testing.assert_allclose(result.timestamps_s, reference.timestamps_s, atol=1e-6)


@pytest.mark.parametrize("method", ["seek", "sequential"])
@pytest.mark.parametrize("plan_name", sorted(ROTATION_PLANS))
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_video_frames_are_upright(rotated: Rotated, rotation: int, plan_name: str, method: str):
    video = rotated.by_rotation[rotation]
    plan = ROTATION_PLANS[plan_name]
    result = decode(video.path, plan, method=method)
    reference = decode(rotated.upright.path, plan, method=method)
    check_frames(reference, rotated.upright, plan)
    assert tuple(result.data.shape[-2:]) == (video.height, video.width)
    assert (result.info.width, result.info.height) == (video.width, video.height)
    check_rotated(result, reference, video)
    # Exactly the coded frames turned by the display rotation: a stream copy, no codec noise.
    assert torch.equal(result.data, rotate_upright(reference.data, rotation))


@pytest.mark.parametrize("method", ["seek", "sequential"])
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_video_resized_keeps_the_displayed_aspect(rotated: Rotated, rotation: int, method: str):
    video = rotated.by_rotation[rotation]
    plan = SamplingPlan.uniform(6)
    result = decode(video.path, plan, resize_short_side=96, method=method)
    reference = decode(rotated.upright.path, plan, resize_short_side=96, method=method)
    assert tuple(reference.data.shape) == (6, 3, 96, 128)
    want = (128, 96) if rotation in (90, 270) else (96, 128)
    assert tuple(result.data.shape) == (6, 3, *want)
    # Resized after the rotation (swscale on the turned frame): close, not bit-exact.
    check_rotated(result, reference, video, max_mean_diff=1.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_remote_video(rotated: Rotated, rotation: int, method: str):
    video = rotated.by_rotation[rotation]
    uri = _memory_uri(video.path, f"rot{rotation}.mp4")
    for plan in (ROTATION_PLANS["uniform12"], ROTATION_PLANS["window_all_frames"]):
        reference = decode(rotated.upright.path, plan, method=method)
        check_rotated(decode(uri, plan, method=method), reference, video)
    assert probe(uri) == probe(video.path)


@pytest.mark.parametrize("method", METHODS)
def test_rotated_vfr_video(rotated: Rotated, method: str):
    # Packets without durations: the seek method looks frames up by index (exact mode).
    plan = SamplingPlan.uniform(20)
    result = decode(rotated.vfr_rotated.path, plan, method=method)
    reference = decode(rotated.vfr_upright.path, plan, method=method)
    check_rotated(result, reference, rotated.vfr_rotated)


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_video_in_chunks(rotated: Rotated, rotation: int):
    video = rotated.by_rotation[rotation]
    plan = SamplingPlan.every(5.0)
    whole = decode(video.path, plan, resize_short_side=60)
    chunks = list(dec.decode_chunks(video.path, plan, 7, resize_short_side=60))
    assert torch.equal(torch.cat([c.data for c in chunks]), whole.data)
    check_rotated(whole, decode(rotated.upright.path, plan, resize_short_side=60), video, 1.0)


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_probe_reports_the_displayed_size(rotated: Rotated, rotation: int):
    from tables.ingest import IngestEntry, probe_entry

    video = rotated.by_rotation[rotation]
    info = probe(video.path)
    assert (info.width, info.height) == (video.width, video.height)
    assert (info.width, info.height) == ((240, 320) if rotation in (90, 270) else (320, 240))
    facts = probe_entry(IngestEntry(uri=str(video.path)))  # what ingest records
    assert (facts["width"], facts["height"]) == (video.width, video.height)


@pytest.mark.parametrize("rotation", [90, 270])
def test_unrotated_frames_from_a_decoder_are_turned_upright(rotated: Rotated, rotation: int):
    # A decoder that ignores the display matrix (torchcodec's "ffmpeg" CUDA backend) returns
    # frames in the coded orientation; the collector turns them upright.
    video = rotated.by_rotation[rotation]
    plan = SamplingPlan.uniform(2)
    upright = decode(video.path, plan)
    with dec._open_source(video.path, None, None) as opened:
        for size in (None, 60):
            job, _ = dec._prepare(opened, plan, size, "cpu", "seek")
            assert job.rotation == rotation
            out = dec._Collector(job, 2)
            for frame, pts in zip(upright.data, upright.timestamps_s, strict=True):
                out.add(rotate_back(frame, rotation), float(pts))
                out.slot_of_target[len(out.pts) - 1] = len(out.pts) - 1
            got = out.result(upright.indices).data
            if size is None:
                assert torch.equal(got, upright.data)
            else:
                assert tuple(got.shape) == (2, 3, 80, 60)
                assert [frame_index_of(rotate_back(f, rotation)) for f in got] == upright.indices.tolist()
