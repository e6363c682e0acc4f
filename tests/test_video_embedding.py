"""Unit tests of the V-JEPA 2 stage core (no Ray): preprocessing, shapes, pooling, errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from udfs.decode import VideoDecodeError
from udfs.models import ModelUnavailableError, load_vjepa2
from udfs.video_embedding import (
    PooledEmbedding,
    VideoEmbedding,
    VJEPA2Embedder,
    num_frames_from_env,
    pool_steps,
    steps_from_arrow,
    steps_to_arrow,
    vjepa2_spec,
)


def _encode(path: Path, source: str, seconds: float) -> Path:
    subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source,
         "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("emb")
    good = _encode(d / "good.mp4", "testsrc2=size=160x120:rate=25", 3)
    other = _encode(d / "other.mp4", "mandelbrot=size=128x96:rate=25", 2)
    bad = d / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    return {"good": good, "other": other, "bad": bad}


def test_pool_steps_is_unit_norm_mean() -> None:
    steps = np.array([[3.0, 0.0], [1.0, 0.0], [2.0, 4.0]], np.float32)
    v = pool_steps(steps)
    expected = steps.mean(0) / np.linalg.norm(steps.mean(0))
    np.testing.assert_allclose(v, expected, rtol=1e-6)
    assert v.dtype == np.float32


def test_steps_arrow_roundtrip_with_nulls() -> None:
    rows = [np.arange(6, dtype=np.float32).reshape(3, 2), None, np.ones((1, 2), np.float32)]
    arr = steps_to_arrow(rows, 2)
    assert arr.type == pa.list_(pa.list_(pa.float32(), 2))
    assert arr.null_count == 1
    back = steps_from_arrow(arr)
    np.testing.assert_array_equal(back[0], rows[0])
    assert back[1] is None
    np.testing.assert_array_equal(back[2], rows[2])


def test_pooled_udf_core_keeps_nulls() -> None:
    arr = steps_to_arrow([np.array([[1.0, 1.0]], np.float32), None], 2)
    out = PooledEmbedding()(arr)
    assert out.type == pa.list_(pa.float32(), 2)
    assert out[1].as_py() is None
    np.testing.assert_allclose(out[0].as_py(), [2**-0.5, 2**-0.5], rtol=1e-6)


def test_num_frames_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUM_FRAMES", "16")
    assert num_frames_from_env() == 16
    with pytest.raises(ValueError, match="even"):
        num_frames_from_env(7)


def test_preprocess_matches_hf_processor() -> None:
    """Our on-device preprocessing equals the V-JEPA 2 video processor's output."""
    from transformers import VJEPA2VideoProcessor

    gen = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (4, 3, 120, 200), dtype=torch.uint8, generator=gen)
    emb = VJEPA2Embedder("tiny", device="cpu")
    ours = emb.preprocess([clip])[0]
    proc = VJEPA2VideoProcessor(crop_size=emb.crop_size)
    ref = proc(clip, return_tensors="pt")["pixel_values_videos"][0]
    assert ours.shape == ref.shape
    # Both resize bilinearly with antialiasing; allow for rounding of the uint8 step.
    assert (ours - ref).abs().mean() < 0.02


def test_tiny_embedding_shapes_and_determinism() -> None:
    emb = VJEPA2Embedder("tiny", device="cpu")
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (16, 3, 96, 128), dtype=torch.uint8, generator=gen)
    b = torch.randint(0, 256, (16, 3, 72, 72), dtype=torch.uint8, generator=gen)
    out = emb.embed([a, b, a])
    assert out.shape == (3, 8, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[0], out[1])
    # The same weights in a fresh process-level load (seeded).
    assert load_vjepa2("tiny") is load_vjepa2("tiny")


def _batch(paths: list[Path]) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    return (
        pa.array([p.stem for p in paths]),
        pa.array([str(p) for p in paths]),
        pa.array([None] * len(paths), pa.float64()),
        pa.array([None] * len(paths), pa.float64()),
    )


def test_udf_batch_with_bad_row_isolates_without_recompute(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    udf = VideoEmbedding("tiny", num_frames=8, batch_size=2, device="cpu")
    calls: list[str] = []
    real = udf._decode

    def counting(uri: str, *args: object) -> torch.Tensor:
        calls.append(uri)
        return real(uri, *args)

    monkeypatch.setattr(udf, "_decode", counting)
    rows = [clips["good"], clips["bad"], clips["other"]]
    with pytest.raises(VideoDecodeError, match="bad"):
        udf(*_batch(rows))
    assert sorted(calls) == sorted(str(p) for p in rows)
    # geneva bisects the failed batch: each piece is answered from the cache.
    ok = udf(*_batch([clips["good"]]))
    with pytest.raises(VideoDecodeError, match="bad"):
        udf(*_batch([clips["bad"]]))
    ok2 = udf(*_batch([clips["other"]]))
    assert len(calls) == 3, "bisection must not decode any row again"
    assert ok.type == pa.list_(pa.list_(pa.float32(), 32))
    assert len(ok[0].as_py()) == 4 and len(ok2[0].as_py()) == 4


def test_udf_identical_videos_identical_embeddings(clips: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy.mp4"
    shutil.copy(clips["good"], copy)
    udf = VideoEmbedding("tiny", num_frames=8, device="cpu")
    out = steps_from_arrow(udf(*_batch([clips["good"], copy, clips["other"]])))
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.allclose(out[0], out[2])


def test_full_profile_without_weights_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("VJEPA_MODEL", raising=False)
    with pytest.raises(ModelUnavailableError) as info:
        vjepa2_spec("full")
    msg = str(info.value)
    assert "facebook/vjepa2-vitl-fpc64-256" in msg
    assert "VJEPA_MODEL" in msg and "huggingface-cli download" in msg


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model profile 'huge'"):
        vjepa2_spec("huge")
