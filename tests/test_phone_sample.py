"""The demo's phone-style sample clip (portrait display of landscape coded frames) decodes upright."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.samples import PHONE_CLIP, _display_rotation, phone_clip
from tables.ingest import IngestEntry, probe_entry
from udfs.decode import SamplingPlan, decode, probe


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phone_clip(tmp_path_factory.mktemp("phone"))


def _ffmpeg_upright_frames(path: Path) -> np.ndarray:
    """Every frame as ffmpeg's own player logic shows it (``autorotate``), ``[n, H, W, 3]``."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 640, 360, 3)


def test_phone_clip_is_portrait(phone: Path) -> None:
    assert phone.name == PHONE_CLIP[0]
    assert _display_rotation(phone) == 270  # -90: "rotate 90 degrees clockwise", as phones write
    info = probe(phone)
    assert (info.width, info.height) == (360, 640)
    facts = probe_entry(IngestEntry(uri=str(phone)))
    assert (facts["width"], facts["height"]) == (360, 640)
    assert phone_clip(phone.parent) == phone  # cached
    assert sorted(p.name for p in phone.parent.iterdir()) == [phone.name]  # no leftovers


@pytest.mark.parametrize("method", ["seek", "sequential"])
def test_phone_clip_frames_match_ffmpeg_autorotate(phone: Path, method: str) -> None:
    reference = _ffmpeg_upright_frames(phone)
    result = decode(phone, SamplingPlan.uniform(6), method=method)
    assert tuple(result.data.shape) == (6, 3, 640, 360)
    want = torch.from_numpy(reference[result.indices]).permute(0, 3, 1, 2)
    diff = (result.data.float() - want.float()).abs().mean().item()
    assert diff < 3.0, f"mean abs diff {diff:.2f} from ffmpeg's upright frames"
    resized = decode(phone, SamplingPlan.uniform(6), resize_short_side=112, method=method)
    assert tuple(resized.data.shape) == (6, 3, 199, 112)
