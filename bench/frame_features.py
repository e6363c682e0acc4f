"""Benchmark of the frame-features column: frames per second end to end, and memory on a long video.

::

    python -m bench.frame_features                      # CPU: tiny and offline profiles
    python -m bench.frame_features --long-video F.mp4   # + peak RSS of one worker on a long file
    python -m bench.frame_features --device cuda --full-config --clips 32   # GPU, DINOv2-large size

Inputs are synthetic 720p H.264 clips (ffmpeg lavfi sources, cached under ``bench/out``).
End to end = :class:`udfs.frame_features.FrameFeatures` called on a batch of rows, exactly as
geneva calls it (decode threads ahead of the model, frames batched across videos). The
breakdown runs decoding alone (:func:`udfs.decode.decode_chunks`) and the model alone (on
frames decoded beforehand). ``--full-config`` builds DINOv2-large from its configuration with
RANDOM WEIGHTS: true throughput, meaningless vectors. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.video_embedding import _loadavg, _logger, generated_videos
from udfs.decode import SamplingPlan, decode_chunks
from udfs.frame_features import FrameFeatures
from udfs.frame_models import DINOV2_TRANSFORM, FrameEncoder
from udfs.models import ModelSpec

OUT_DIR = Path(__file__).resolve().parent / "out" / "frame_features"
RANDOM_LABEL = "RANDOM WEIGHTS - throughput only, the features mean nothing"


def dinov2_large_random(device: str) -> FrameEncoder:
    """A :class:`FrameEncoder` holding DINOv2-large built from its config with random weights."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                       patch_size=14, image_size=518, layerscale_value=1.0)
    torch.manual_seed(0)
    enc = FrameEncoder("tiny", device=device)
    enc.spec = ModelSpec("frame_features", "full", "dinov2-large-config-random", 1024, True)
    enc._model, enc._transform = Dinov2Model(cfg).to(device).eval(), DINOV2_TRANSFORM
    return enc


def make_udf(profile: str, device: str, full_config: bool, frame_batch: int | None, fps: float) -> FrameFeatures:
    """The UDF under test (its encoder swapped for the random DINOv2-large with ``full_config``)."""
    udf = FrameFeatures("tiny" if full_config else profile, fps=fps, frame_batch=frame_batch, device=device)
    if full_config:
        udf._encoder = dinov2_large_random(device)
    return udf


def rows(paths: Sequence[Path]) -> tuple[pa.Array, ...]:
    """The UDF's input columns for ``paths`` (whole videos)."""
    n = len(paths)
    none = pa.array([None] * n, pa.float64())
    return pa.array([p.stem for p in paths]), pa.array([str(p) for p in paths]), none, none


def sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def end_to_end(udf: FrameFeatures, paths: Sequence[Path], repeats: int) -> dict[str, Any]:
    """Frames/s of the UDF over all ``paths`` in one call (best of ``repeats``, after a warm-up)."""
    from udfs.arrays import steps_from_arrow

    args = rows(paths)
    out = steps_from_arrow(udf(*[a.slice(0, 1) for a in args]))  # warm-up: model load
    best = float("inf")
    frames = 0
    for _ in range(repeats):
        sync(udf.encoder.device)
        start = time.perf_counter()
        out = steps_from_arrow(udf(*args))
        sync(udf.encoder.device)
        best = min(best, time.perf_counter() - start)
        frames = sum(len(r) for r in out)
    return {"frames": frames, "seconds": round(best, 3), "frames_per_s": round(frames / best, 1)}


def decode_only(paths: Sequence[Path], fps: float, chunk: int) -> dict[str, Any]:
    """Frames/s of decoding alone (one thread, chunked, as one decode thread of the UDF)."""
    start = time.perf_counter()
    frames = sum(len(c.data) for p in paths for c in decode_chunks(str(p), SamplingPlan.every(fps), chunk))
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1)}


def model_only(udf: FrameFeatures, paths: Sequence[Path], fps: float, batch: int) -> dict[str, Any]:
    """Frames/s of preprocessing + model on frames decoded beforehand."""
    import torch

    frames = torch.cat([c.data for c in decode_chunks(str(paths[0]), SamplingPlan.every(fps), 10_000)])
    enc = udf.encoder
    enc.encode_many([frames[:2]], batch)
    sync(enc.device)
    start = time.perf_counter()
    enc.encode_many([frames], batch)
    sync(enc.device)
    seconds = time.perf_counter() - start
    return {"frames": len(frames), "seconds": round(seconds, 3), "frames_per_s": round(len(frames) / seconds, 1)}


def _proc_status_mib(key: str) -> float:
    """A ``VmRSS`` / ``VmHWM`` line of /proc/self/status in MiB (the peak is per process image,
    unlike ``ru_maxrss``, which a child started by fork + exec inherits from its parent)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def rss_child(path: str, profile: str, chunk: int | None) -> dict[str, Any]:
    """Run in a fresh process: features of one long video; peak RSS during the run."""
    import torch

    udf = FrameFeatures(profile, chunk_frames=chunk)
    udf.encoder.encode(torch.zeros((1, 3, 64, 64), dtype=torch.uint8))  # load the model first
    base = _proc_status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    start = time.perf_counter()
    feats = udf.features(path)
    seconds = time.perf_counter() - start
    peak = _proc_status_mib("VmHWM")
    return {"frames": int(feats.shape[0]), "dim": int(feats.shape[1]), "seconds": round(seconds, 1),
            "rss_after_model_load_mib": round(base), "peak_rss_mib": round(peak),
            "peak_over_model_load_mib": round(peak - base), "output_mib": round(feats.nbytes / 2**20, 1),
            "chunk_frames": udf.chunk_frames}


def long_video(path: Path, profile: str, chunk: int | None) -> dict[str, Any]:
    """:func:`rss_child` in a subprocess (its own peak RSS, nothing else in it)."""
    cmd = [sys.executable, "-m", "bench.frame_features", "--rss-child", str(path), "--profiles", profile]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    from udfs.decode import probe

    info = probe(str(path))
    return {"video": path.name, "duration_s": round(info.duration_s, 1), "size": f"{info.width}x{info.height}",
            "profile": profile, **result}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", default="tiny,offline", help="comma-separated profiles (CPU mode)")
    p.add_argument("--clips", type=int, default=6, help="number of 720p clips")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second")
    p.add_argument("--device", default="cpu")
    p.add_argument("--full-config", action="store_true", help="DINOv2-large config, random weights")
    p.add_argument("--frame-batches", default="", help="comma-separated frame batch sizes to try")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--chunk", type=int, default=None, help="frames per decode chunk")
    p.add_argument("--long-video", type=Path, default=None, help="also measure peak RSS on this file")
    p.add_argument("--long-only", action="store_true", help="only the long-video measurement")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the JSON result."""
    args = parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args.profiles.split(",")[0], args.chunk)))
        return {}
    log = _logger()
    if args.long_only:
        if not args.long_video:
            raise SystemExit("--long-only needs --long-video FILE")
        res = {"long_video": [long_video(args.long_video, p, args.chunk) for p in args.profiles.split(",")],
               "machine": {"cpus": os.cpu_count(), "loadavg": _loadavg()}}
        print(json.dumps(res, indent=2))
        return res
    log(f"encoding {args.clips} clips of {args.seconds:g}s 720p (cached)")
    paths = generated_videos(OUT_DIR / "clips", args.clips, args.seconds, (1280, 720), 25, 25)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
                              "clips": {"count": len(paths), "seconds": args.seconds, "size": "1280x720",
                                        "fps": 25, "gop": 25}, "sample_fps": args.fps, "runs": []}
    profiles = ["dinov2-large-config"] if args.full_config else args.profiles.split(",")
    batches = [int(b) for b in args.frame_batches.split(",") if b] or [None]
    for profile in profiles:
        for batch in batches:
            udf = make_udf(profile, args.device, args.full_config, batch, args.fps)
            log(f"{profile} frame_batch={batch or 'default'}: end to end")
            run = {"profile": profile, "device": args.device, "frame_batch": batch or "default",
                   "random_weights": udf.encoder.spec.random_weights,
                   "end_to_end": end_to_end(udf, paths, args.repeats),
                   "model_only": model_only(udf, paths, args.fps, batch or 32)}
            if run["random_weights"]:
                run["label"] = RANDOM_LABEL
            result["runs"].append(run)
    log("decode only")
    result["decode_only_one_thread"] = decode_only(paths, args.fps, args.chunk or 32)
    if args.long_video:
        log(f"long video {args.long_video}")
        result["long_video"] = [long_video(args.long_video, p, args.chunk) for p in args.profiles.split(",")]
    result["machine"]["loadavg_end"] = _loadavg()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
