"""The prepared GPU run (bench/gpu/) cannot rot: its CPU dry run is part of the suite.

``bash bench/gpu/run.sh --cpu OUT`` is the very script the GPU machine runs, with tiny models,
small videos and no payload to unpack (the packages of this environment are used; the PyAV
FFmpeg wiring for torchcodec is still made and used). Video generation, the UDF classes called
on Arrow arrays and the JSON report run for real. The stage processes cannot import lancedb,
lance, geneva, ray, tables or jobs, as on the GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_payload_unpacks_wheels_and_links_ffmpeg(tmp_path: Path) -> None:
    from bench.gpu.payload import exports, install

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fake-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("fakepkg/__init__.py", "VALUE = 1\n")
        zf.writestr("av.libs/libavcodec-0123abcd.so.62.28.102", b"not really a library")
        zf.writestr("av.libs/libx264-0123abcd.so.165", b"not linked")
    summary = install(wheels, tmp_path / "prefix", use_installed=False)
    site = tmp_path / "prefix" / "site"
    assert summary["unpacked"] == ["fake-1.0-py3-none-any.whl"]
    assert (site / "fakepkg" / "__init__.py").exists()
    assert summary["ffmpeg_links"] == {"libavcodec.so.62": "libavcodec-0123abcd.so.62.28.102"}
    link = site / "av.libs" / "libavcodec.so.62"
    assert link.is_symlink() and link.read_bytes() == b"not really a library"
    text = exports(summary)
    assert f"export PYTHONPATH={site}" in text and "LD_LIBRARY_PATH" in text
    again = install(wheels, tmp_path / "prefix", use_installed=False)  # idempotent
    assert again["ffmpeg_links"] == summary["ffmpeg_links"]


def test_gpu_plan_fits_in_eight_minutes() -> None:
    from bench.gpu.run import PLANS

    gpu = PLANS["gpu"]
    assert gpu["deadline_s"] <= 480
    first = [s for s in gpu["stages"] if s["name"] not in ("qwen", "latents")]  # the last two take what is left
    videos_allowance = 45.0
    assert sum(s["budget_s"] + gpu["overhead_s"] for s in first) + videos_allowance + gpu["reserve_s"] <= 465
    names = [s["name"] for s in gpu["stages"]]
    assert names == ["vjepa2", "dinov2", "llava", "qwen", "latents"]
    vjepa = gpu["stages"][0]
    assert vjepa["batch_sizes"] == [1, 4, 8, 16] and vjepa["num_frames"] == 64 and not vjepa["tiny"]
    assert gpu["stages"][2]["batch_sizes"] == [1, 8, 32] and gpu["stages"][2]["new_tokens"] == 64
    assert gpu["videos"]["gops"] == [250, 25] and gpu["videos"]["long"]["seconds"] == 600
    header = (ROOT / "bench" / "gpu" / "run.sh").read_text().split("set -euo")[0]
    assert '".gpu-payload"' in header and "bash bench/gpu/run.sh" in header


def test_gpu_run_cpu_dry_run(tmp_path: Path) -> None:
    pytest.importorskip("av")
    out = tmp_path / "out"
    env = dict(os.environ, VW_PYTHON=sys.executable, VW_GPU_PREFIX=str(tmp_path / "prefix"))
    for var in ("VW_GPU_INSTALL", "VW_GPU_ONLY", "VW_GPU_TOTAL_S", "VW_DECODE_DEVICE", "VW_MODELS"):
        env.pop(var, None)
    done = subprocess.run(["bash", "bench/gpu/run.sh", "--cpu", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    log = (out / "run.log").read_text()
    assert "== exit 0" in log
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "cpu"
    assert set(report["stages"]) == {"vjepa2", "dinov2", "llava", "qwen", "latents"}
    for name, entry in report["stages"].items():
        assert entry["ok"], (name, entry)

    # the install step pointed at this environment still wired PyAV's FFmpeg for torchcodec
    assert "libavcodec.so.62" in report["install"]["ffmpeg_links"]
    env_info = report["stages"]["vjepa2"]["result"]["environment"]
    assert env_info["torchcodec_ffmpeg_major"] == 8

    # videos: exact GOPs, the long file looped to its full length
    files = report["videos"]["files"]
    assert {f["gop"] for f in files} == {250, 25}
    for f in files:
        assert f["probed_frames"] == round(f["seconds"] * f["fps"])
        assert f["keyframe_gaps"] in ([], [f["gop"]])
    long = [f for f in files if f["loop_of"]]
    assert long and all(f["loop"]["copies"] == 2 and f["probed_duration_s"] == pytest.approx(20, abs=0.1)
                        for f in long)

    vjepa = report["stages"]["vjepa2"]["result"]
    e2e = vjepa["end_to_end"]
    assert set(e2e) == {"b1_gop250_cpu", "b2_gop250_cpu", "b2_gop25_cpu"}
    for run in e2e.values():
        assert run["clips"] >= run["rows_per_call"] and run["clips_per_s"] > 0
        assert run["steps_per_row"] == 8 and run["arrow_type"].startswith("list<")
    assert set(vjepa["decode_only"]) == {"gop250_cpu", "gop25_cpu", "nvdec"}
    assert "skipped" in vjepa["decode_only"]["nvdec"]
    assert vjepa["model_only"]["b2"]["clips_per_s"] > 0
    assert vjepa["goals"]["clips_per_s_end_to_end_best"]["goal"] == 20

    dino = report["stages"]["dinov2"]["result"]
    for run in dino["end_to_end"].values():
        assert run["frames"] == run["videos"] * 20 and run["frames_per_s"] > 0
    assert dino["decode_only"]["gop250_cpu"]["frames"] > 0
    assert dino["goals"]["frames_per_s_end_to_end_best"]["goal"] == 1000

    for name in ("llava", "qwen"):
        det = report["stages"][name]["result"]
        assert det["end_to_end"] and all(r["windows"] > 0 and r["answers_with_raw"] == r["rows_per_call"]
                                         for r in det["end_to_end"].values())
        assert all(r["new_tokens"] == 4 for r in det["model_only"].values())
    assert report["stages"]["llava"]["result"]["goals"]["windows_per_s_end_to_end_best"]["goal"] == 8
    latents = report["stages"]["latents"]["result"]
    for run in latents["end_to_end"].values():
        assert run["end_to_end_clips_per_s"] > 0 and run["clip_latent_shape"] == [4, 3, 8, 12]
    assert latents["goals"]["clips_per_s_end_to_end_best"]["goal"] == 1.2
    assert {row["stage"] for row in report["goals"]} == {"vjepa2", "dinov2", "llava", "qwen", "latents"}
