"""Detector UDF core without Ray: settings, tiny models on decoded windows, OOM halving, row errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from tests.videogen import make_cfr_video
from udfs.detection_parser import parse_answer
from udfs.detections import (
    DETECTION_TYPE,
    WindowDetections,
    WindowOutOfMemoryError,
    cells_to_arrow,
    detection_cell,
    udf_version,
    window_runs,
)
from udfs.detector_models import DetectorSettings, build_tiny_tokenizer, detector_spec, tiny_tokenizer
from udfs.models import ModelUnavailableError
from udfs.video_detector import VideoDetector, fit_within

SETTINGS = DetectorSettings(max_new_tokens=8)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cfr_video(tmp_path_factory.mktemp("det") / "clip.mp4", num_frames=125, width=160, height=120).path


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECT_TEMPERATURE", "0.2")
    monkeypatch.setenv("DETECT_DO_SAMPLE", "no")
    monkeypatch.setenv("DETECT_MAX_NEW_TOKENS", "32")
    s = DetectorSettings.from_env(seed=7)
    assert (s.temperature, s.do_sample, s.max_new_tokens, s.seed, s.top_p) == (0.2, False, 32, 7, 0.9)
    assert s.generate_kwargs() == {"max_new_tokens": 32, "do_sample": False}
    assert ("temperature", "0.2") not in s.params()  # greedy decoding ignores the sampling settings
    assert DetectorSettings().generate_kwargs() == {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7,
                                                    "top_p": 0.9}
    monkeypatch.setenv("DETECT_TOP_P", "lots")
    with pytest.raises(ValueError, match="DETECT_TOP_P must be a number"):
        DetectorSettings.from_env()
    monkeypatch.setenv("DETECT_TOP_P", "1.5")
    with pytest.raises(ValueError, match="top_p"):
        DetectorSettings.from_env()


def test_specs_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = detector_spec("llava", "tiny", settings=SETTINGS)
    assert (spec.stage, spec.name, spec.random_weights) == ("detections_llava", "llava-next-video-tiny-random", True)
    meta = spec.field_metadata()
    assert (meta["vw.event_model"], meta["vw.max_new_tokens"], meta["vw.random_weights"]) == ("llava", "8", "true")
    other = detector_spec("llava", "tiny", settings=DetectorSettings(max_new_tokens=9))
    assert udf_version(spec) != udf_version(other) and len(udf_version(spec)) < 40
    with pytest.raises(ValueError, match="no 'offline' model"):
        detector_spec("qwen", "offline")
    with pytest.raises(ValueError, match="4-bit"):
        detector_spec("qwen", "tiny", settings=DetectorSettings(load_in_4bit=True))
    with pytest.raises(ValueError, match="unknown detector"):
        detector_spec("gpt", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("QWEN_VL_MODEL", "Qwen/not-downloaded-here")
    with pytest.raises(ModelUnavailableError, match="Qwen/not-downloaded-here"):
        detector_spec("qwen", "full", settings=SETTINGS)
    # 4-bit needs CUDA: refused before any weight is read
    udf = WindowDetections("llava", "full", settings=DetectorSettings(load_in_4bit=True), device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        _ = udf.detector


def test_tiny_tokenizer_is_deterministic() -> None:
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert tiny_tokenizer() is tiny_tokenizer()
    for token in ("<video>", "<image>", "<|video_pad|>", "<|im_end|>"):
        assert token in a.get_vocab()
        assert a.convert_tokens_to_ids(token) < len(a)
    assert a.padding_side == "left"


def test_fit_within_keeps_the_aspect_ratio() -> None:
    frames = torch.zeros((2, 3, 720, 1280), dtype=torch.uint8)
    assert tuple(fit_within(frames, 384).shape) == (2, 3, 216, 384)
    assert tuple(fit_within(torch.zeros((1, 3, 1000, 500), dtype=torch.uint8), 384).shape) == (1, 3, 384, 192)
    small = torch.zeros((1, 3, 120, 160), dtype=torch.uint8)
    assert fit_within(small, 384) is small


def test_window_runs_group_overlapping_windows_on_one_grid() -> None:
    def k(wid: int, vid: str, start: float, end: float, fps: float | None = 1.0) -> tuple:
        return (wid, vid, f"/v/{vid}.mp4", start, end, fps)

    keys = [k(1, "a", 0, 4), k(2, "a", 2, 6), k(3, "b", 0, 3), k(4, "a", 4, 8), k(5, "a", 20, 24),
            k(6, "a", 21.5, 25.5), k(7, "c", 0, 4, None), k(8, "a", 22, 26)]
    # 6 is off the 1 fps grid of the run [5]: it starts a run of its own, and so does 8 after it
    assert [[w[0] for w in run] for run in window_runs(keys)] == [[1, 2, 4], [5], [6], [8], [3], [7]]


def test_shared_decode_gives_each_window_its_own_frames(video: Path) -> None:
    from tests.videogen import frame_index_of

    udf = WindowDetections("llava", "tiny", settings=DetectorSettings(max_side=80), device="cpu")
    udf._device = "cpu"
    uri = str(video)
    run = [(1, "v", uri, 0.0, 4.0, 1.0), (2, "v", uri, 2.0, 5.0, 1.0), (3, "v", uri, 4.0, 5.0, 1.0)]
    shared = udf._decode_run(run)
    assert {k[0]: [frame_index_of(f) for f in shared[k]] for k in run} == {
        1: [0, 25, 50, 75], 2: [50, 75, 100], 3: [100]}  # 25 fps: frame 25 * t
    assert all(tuple(f.shape[1:]) == (3, 60, 80) for f in shared.values())  # 160x120 -> longest side 80
    alone = udf._decode_run(run[1:2])
    assert torch.equal(alone[run[1]], shared[run[1]])
    missing = udf._decode_run([(9, "x", "/nowhere/x.mp4", 0.0, 4.0, 1.0)])
    assert isinstance(missing[(9, "x", "/nowhere/x.mp4", 0.0, 4.0, 1.0)], FileNotFoundError)


@pytest.mark.parametrize("key", ["llava", "qwen"])
def test_tiny_detector_answers_real_windows(key: str, video: Path) -> None:
    udf = WindowDetections(key, "tiny", settings=SETTINGS, batch_size=2, device="cpu")
    rows = {"window_id": [1, 2, 3], "video_id": ["v"] * 3, "uri": [str(video)] * 3,
            "start_s": [0.0, 2.0, 4.0], "end_s": [4.0, 5.0, 5.0], "fps": [1.0, 1.0, 1.0]}
    out = udf(*(pa.array(rows[c]) for c in ["window_id", "video_id", "uri", "start_s", "end_s", "fps"]))
    assert out.type == DETECTION_TYPE and len(out) == 3 and out.null_count == 0
    for cell in out.to_pylist():
        assert isinstance(cell["raw"], str)
        assert (cell["parse_error"] is None) == (cell["label"] is not None)
        assert cell == detection_cell(parse_answer(cell["raw"]))
    # the same windows in the same batches give the same answers (sampling starts from the seed)
    again = udf(*(pa.array(rows[c]) for c in ["window_id", "video_id", "uri", "start_s", "end_s", "fps"]))
    assert again.to_pylist() == out.to_pylist()


def test_detector_refuses_mixed_frame_counts() -> None:
    det = VideoDetector("llava", "tiny", settings=SETTINGS, device="cpu")
    clips = [torch.zeros((4, 3, 32, 32), dtype=torch.uint8), torch.zeros((2, 3, 32, 32), dtype=torch.uint8)]
    with pytest.raises(ValueError, match="same number of frames"):
        det.inputs(clips, [1.0, 1.0])


class FakeDetector:
    """Raises CUDA OOM for batches above ``max_batch`` and for the poisoned window even alone."""

    device = "cpu"

    def __init__(self, max_batch: int, poisoned_frames: int | None = None, broken_frames: int | None = None) -> None:
        self.max_batch = max_batch
        self.poisoned = poisoned_frames
        self.broken = broken_frames
        self.calls: list[list[int]] = []

    def answer(self, clips: list, fps: list) -> list[str]:
        ids = [int(c[0, 0, 0, 0]) for c in clips]
        self.calls.append(ids)
        if len(clips) > self.max_batch or (self.poisoned in ids):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.broken in ids:
            raise RuntimeError("the processor rejected this clip")
        return [f"{{'label': 'Goal', 'confidence': {i / 100}}}" for i in ids]


def _fake_udf(fake: FakeDetector, frames: dict[int, int], batch_size: int) -> WindowDetections:
    udf = WindowDetections("llava", "tiny", settings=SETTINGS, batch_size=batch_size, device="cpu")
    udf._detector = fake  # type: ignore[assignment]

    def decode_run(run: list[tuple]) -> dict[tuple, object]:
        out: dict[tuple, object] = {}
        for key in run:
            wid = key[0]
            if wid not in frames:
                out[key] = FileNotFoundError(f"no such file: {key[2]}")
                continue
            clip = torch.zeros((frames[wid], 3, 8, 8), dtype=torch.uint8)
            clip[:, :, :, :] = wid
            out[key] = clip
        return out

    udf._decode_run = decode_run  # type: ignore[method-assign]
    return udf


def _arrays(ids: list[int]) -> list[pa.Array]:
    n = len(ids)
    return [pa.array(ids, pa.int64()), pa.array(["v"] * n), pa.array([f"/v/{i}.mp4" for i in ids]),
            pa.array([0.0] * n), pa.array([4.0] * n), pa.array([1.0] * n)]


def test_cuda_oom_halves_the_batch_then_fails_only_the_window() -> None:
    fake = FakeDetector(max_batch=2, poisoned_frames=13)
    frames = {10: 4, 11: 4, 12: 4, 13: 4, 14: 4, 15: 4, 20: 2}
    udf = _fake_udf(fake, frames, batch_size=8)
    ids = [10, 11, 12, 13, 14, 15, 20]
    with pytest.raises(WindowOutOfMemoryError, match=r"window 13 of video v .*even with one window"):
        udf(*_arrays(ids))
    # 4-frame windows: 6 (OOM), halved to 4 (OOM), to 2: [10, 11] runs, [12, 13] fails (13 is poisoned),
    # halved to 1: 12 runs, 13 fails alone (its error), then 14 and 15 one by one
    assert [c for c in fake.calls if 20 not in c] == [
        [10, 11, 12, 13, 14, 15], [10, 11, 12, 13], [10, 11], [12, 13], [12], [13], [14], [15]]
    assert [20] in fake.calls  # the 2-frame window runs in its own group
    calls = len(fake.calls)
    # geneva bisects the failed batch: the cached outcomes answer, nothing runs again
    good = udf(*_arrays([10, 11, 12, 14, 15, 20])).to_pylist()
    assert len(fake.calls) == calls
    assert [c["confidence"] for c in good] == [0.10, 0.11, 0.12, 0.14, 0.15, 0.20]
    assert all(c["label"] == "Goal" and c["parse_error"] is None for c in good)
    with pytest.raises(WindowOutOfMemoryError):
        udf(*_arrays([13]))


def test_after_an_oom_later_batches_start_smaller() -> None:
    fake = FakeDetector(max_batch=1)
    udf = _fake_udf(fake, {10: 4, 11: 4, 12: 4, 13: 4}, batch_size=2)
    cells = udf(*_arrays([10, 11, 12, 13])).to_pylist()
    assert fake.calls == [[10, 11], [10], [11], [12], [13]]
    assert [c["confidence"] for c in cells] == [0.10, 0.11, 0.12, 0.13]


def test_other_failures_stay_with_their_window() -> None:
    fake = FakeDetector(max_batch=8, broken_frames=11)
    udf = _fake_udf(fake, {10: 4, 11: 4, 12: 4}, batch_size=4)
    with pytest.raises(RuntimeError, match="window 11 .*processor rejected"):
        udf(*_arrays([10, 11, 12, 99]))
    assert [c["confidence"] for c in udf(*_arrays([10, 12])).to_pylist()] == [0.10, 0.12]
    with pytest.raises(FileNotFoundError, match="/v/99.mp4"):
        udf(*_arrays([99]))


def test_cells_to_arrow_keeps_nulls_and_several_events() -> None:
    parsed = parse_answer('[{"label": "Corner", "confidence": 0.6}, {"label": "Goal", "team": "home"}]')
    arr = cells_to_arrow([detection_cell(parsed), None, detection_cell(parse_answer("no idea"))])
    rows = arr.to_pylist()
    assert rows[1] is None and arr.null_count == 1
    assert rows[0]["label"] == "Corner" and [e["label"] for e in rows[0]["events"]] == ["Corner", "Goal"]
    assert rows[2]["raw"] == "no idea" and rows[2]["parse_error"] and rows[2]["events"] == []
