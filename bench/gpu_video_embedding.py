"""End-to-end throughput of our V-JEPA 2 UDF on one GPU (full ViT-L size, random weights).

The model is the full-size V-JEPA 2 ViT-L (``transformers.VJEPA2Config()`` defaults: 1024-d,
24 layers, 256 px crops, 64 frames) with **random weights**: the numbers measure throughput
only, never quality. It is saved once with ``save_pretrained`` under ``bench/out/models`` and
loaded through our registry (profile ``full``, ``model=<dir>``), exactly as a real checkpoint
directory would be.

Measured, after a warm-up batch:

``end_to_end``
    :class:`udfs.video_embedding.VideoEmbedding` called on pyarrow arrays, ``--call-rows``
    rows per call: decoding in its thread pool, preprocessing on the device, the encoder
    under bf16 autocast, Arrow output.
``model_only``
    ``VJEPA2Embedder.embed`` on clips decoded beforehand (host-to-device copy, resize and
    normalisation on the device, encoder, pooled steps back on the host).
``forward_only``
    The encoder alone on an already preprocessed batch.
``decode_only``
    The UDF's own decode step over all rows, with the same number of decode threads.

Also reported: the GPU's busy fraction during the end-to-end run (CUDA events around every
encoder forward, and NVML utilisation samples when ``pynvml`` is installed), peak GPU memory,
device name and library versions. ``--decode-device cuda`` decodes with NVDEC through
torchcodec (our UDF reads ``VW_DECODE_DEVICE``).

Run ``python -m bench.gpu_video_embedding`` on a CUDA machine. For a CPU smoke test use
``python -m bench.gpu_video_embedding --device cpu --quick --tiny`` (the full model needs
about 80 s per clip on a small CPU). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.video_embedding import (
    OUT_DIR,
    SOURCES,
    chunks,
    encode_video,
    parse_size,
    patch_decoder_resize,
)

MODEL_SEED = 0
RANDOM_WEIGHTS_LABEL = "RANDOM WEIGHTS - throughput only, the embeddings mean nothing"


def model_dir(out_dir: Path, tiny: bool) -> tuple[Path, dict[str, Any]]:
    """A saved V-JEPA 2 with seeded random weights (full ViT-L config, or the tiny one).

    Returns the directory and a summary of its config.
    """
    import torch
    from transformers import VJEPA2Config, VJEPA2Model

    from udfs.models import tiny_vjepa2_config

    cfg = tiny_vjepa2_config() if tiny else VJEPA2Config()
    name = "vjepa2-tiny" if tiny else "vjepa2-vitl-fpc64-256"
    folder = out_dir / "models" / f"{name}-random-seed{MODEL_SEED}"
    summary = {
        "config": "udfs.models.tiny_vjepa2_config()" if tiny else "transformers.VJEPA2Config()",
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "crop_size": cfg.crop_size,
        "frames_per_clip": cfg.frames_per_clip,
        "random_weights": True,
        "seed": MODEL_SEED,
        "dir": str(folder),
    }
    if not (folder / "config.json").exists():
        init_device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.random.fork_rng(devices=[]), torch.device(init_device):
            torch.manual_seed(MODEL_SEED)
            model = VJEPA2Model(cfg).eval()
        tmp = folder.with_name(folder.name + ".part")
        model.save_pretrained(tmp)
        del model
        tmp.rename(folder)
    return folder, summary


def make_clips(
    folder: Path, unique: int, seconds: float, size: tuple[int, int], fps: int, gop: int,
    sources: Sequence[str], jobs: int,
) -> list[Path]:
    """``unique`` H.264 files (ffmpeg CLI, encoded in parallel), cached in ``folder``."""
    table = dict(SOURCES)
    w, h = size
    todo = []
    for i in range(unique):
        kind = sources[i % len(sources)]
        src = table[kind].format(w=w, h=h, fps=fps)
        path = folder / f"{kind}_{w}x{h}_{seconds:g}s_{fps}fps_g{gop}_{i:02d}.mp4"
        todo.append((path, src))
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(lambda job: encode_video(job[0], job[1], seconds, gop), todo))


def rows_for(paths: Sequence[Path], clips: int) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """``clips`` rows cycling over ``paths``, each with its own ``video_id``.

    Distinct ids keep the UDF from merging repeated files within a call: every row is
    decoded and embedded.
    """
    uris = [str(paths[i % len(paths)]) for i in range(clips)]
    return (
        pa.array([f"clip{i:05d}" for i in range(clips)], pa.string()),
        pa.array(uris, pa.string()),
        pa.array([None] * clips, pa.float64()),
        pa.array([None] * clips, pa.float64()),
    )


def take(arrays: Sequence[pa.Array], idx: Sequence[int]) -> list[pa.Array]:
    """Rows ``idx`` of each column."""
    indices = pa.array(list(idx), pa.int64())
    return [a.take(indices) for a in arrays]


class GpuTimer:
    """Sums CUDA-event time around every encoder forward (a lower bound of GPU busy time)."""

    def __init__(self, model: Any) -> None:
        import torch

        self._torch = torch
        self._pairs: list[tuple[Any, Any]] = []
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, _module: Any, args: Any, kwargs: Any) -> None:
        start = self._torch.cuda.Event(enable_timing=True)
        start.record()
        self._pairs.append((start, None))

    def _post(self, _module: Any, args: Any, kwargs: Any, output: Any) -> None:
        end = self._torch.cuda.Event(enable_timing=True)
        end.record()
        self._pairs[-1] = (self._pairs[-1][0], end)

    def reset(self) -> None:
        """Forget the events recorded so far."""
        self._pairs.clear()

    def seconds(self) -> float:
        """GPU seconds spent inside encoder forwards since the last reset."""
        self._torch.cuda.synchronize()
        return sum(s.elapsed_time(e) for s, e in self._pairs if e is not None) / 1000.0

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()


class NvmlSampler:
    """Samples the GPU's utilisation (``torch.cuda.utilization``, i.e. NVML) in a thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception as err:  # noqa: BLE001 - pynvml missing or unsupported
                self.error = f"{type(err).__name__}: {err}"
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> NvmlSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Mean utilisation (%) and the sample count, or why there are none."""
        if not self.samples:
            return {"available": False, "why": self.error or "no samples"}
        return {
            "available": True,
            "mean_percent": round(sum(self.samples) / len(self.samples), 1),
            "samples": len(self.samples),
        }


def sync(device: str) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` shrinks the defaults that were not given."""
    import torch

    p = argparse.ArgumentParser(prog="python -m bench.gpu_video_embedding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--decode-device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: NVDEC through torchcodec (sets VW_DECODE_DEVICE)")
    p.add_argument("--decoder-resize", action="store_true",
                   help="decode straight to the model's short side (decode(resize_short_side=)) "
                        "instead of full resolution; patched on the UDF instance")
    p.add_argument("--quick", action="store_true", help="a short run (few clips, short files)")
    p.add_argument("--tiny", action="store_true",
                   help="the tiny config instead of ViT-L (CPU smoke tests)")
    p.add_argument("--clips", type=int, help="rows embedded in the timed run (256; quick 16)")
    p.add_argument("--unique", type=int, help="distinct files the rows cycle over (16; quick 4)")
    p.add_argument("--seconds", type=float, help="length of each file (10; quick 4)")
    p.add_argument("--size", default="1280x720", help="WxH of the files")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--gop", type=int, default=60, help="keyframe interval (frames)")
    p.add_argument("--sources", default="testsrc2,mandelbrot,noisy",
                   help=f"lavfi sources to rotate through: {','.join(k for k, _ in SOURCES)}")
    p.add_argument("--num-frames", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None, help="model batch (16; cpu 2)")
    p.add_argument("--call-rows", type=int, default=None,
                   help="rows per UDF call, like geneva's checkpoint size (64; quick 8)")
    p.add_argument("--decode-threads", type=int, default=os.cpu_count() or 1,
                   help="videos decoded at once (the UDF's thread pool)")
    p.add_argument("--ffmpeg-threads", type=int, default=None,
                   help="FFmpeg threads per decoder (sets DECODE_THREADS; 0 = FFmpeg decides; "
                        "default: udfs.decode's rule)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--model-iters", type=int, default=None, help="batches for model_only (10)")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    q = args.quick
    on_cpu = args.device == "cpu"
    args.clips = args.clips or (16 if q else 256)
    args.unique = args.unique or (4 if q else 16)
    args.seconds = args.seconds or (4.0 if q else 10.0)
    args.batch_size = args.batch_size or (2 if on_cpu else 16)
    args.call_rows = args.call_rows or (8 if q else 64)
    args.model_iters = args.model_iters or (2 if q or on_cpu else 10)
    args.size = parse_size(args.size)
    args.sources = [s for s in args.sources.split(",") if s]
    return args


def versions() -> dict[str, str | None]:
    """Versions of the libraries on the hot path."""
    import torch
    import torchcodec
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torchcodec": getattr(torchcodec, "__version__", None),
        "transformers": transformers.__version__,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the measurements and print the JSON report (also returned)."""
    args = parse_args(argv)
    import numpy as np
    import torch

    from udfs.video_embedding import VideoEmbedding

    log = _logger()
    device = args.device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU (use --device cpu for a smoke test)")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.ffmpeg_threads is not None:
        os.environ["DECODE_THREADS"] = str(args.ffmpeg_threads)
    if args.decode_device == "cuda":
        os.environ["VW_DECODE_DEVICE"] = "cuda"
    else:
        os.environ.pop("VW_DECODE_DEVICE", None)

    log("model")
    mdir, msummary = model_dir(args.out_dir, args.tiny)
    log("clips")
    paths = make_clips(args.out_dir / "gpu_videos", args.unique, args.seconds, args.size,
                       args.fps, args.gop, args.sources, os.cpu_count() or 1)
    arrays = rows_for(paths, args.clips)
    n = args.clips

    udf = VideoEmbedding(profile="full", model=str(mdir), num_frames=args.num_frames,
                         batch_size=args.batch_size, device=device,
                         decode_threads=args.decode_threads)
    log("warm-up")
    warm = min(n, max(args.batch_size, 2))
    udf(*take(arrays, range(warm)))
    if args.decoder_resize:
        patch_decoder_resize(udf)
        udf(*take(arrays, range(warm)))
    embedder = udf._embedder
    if embedder is None:  # pragma: no cover - set by the first call
        raise RuntimeError("the UDF did not build its embedder")
    model = embedder.model
    params = sum(p.numel() for p in model.parameters())

    # --- end to end
    log(f"end to end: {n} clips, {args.call_rows} rows per call")
    timer = GpuTimer(model) if cuda else None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = NvmlSampler() if cuda else None
    out_rows = 0
    t0 = time.perf_counter()
    with sampler if sampler is not None else nullcontext():
        for idx in chunks(range(n), args.call_rows):
            out = udf(*take(arrays, idx))
            out_rows += len(out)
        sync(device)
    e2e_s = time.perf_counter() - t0
    gpu_model_s = timer.seconds() if timer is not None else None
    if timer is not None:
        timer.close()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    steps_shape = [len(out[0]), len(out[0][0])] if len(out) else None

    # --- decode only (the UDF's own decode function, same pool size)
    log("decode only")
    uris, ids = arrays[1].to_pylist(), arrays[0].to_pylist()
    kept: list[Any] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.decode_threads) as pool:
        # One call's worth of rows in flight at a time, as in the UDF (bounded host memory).
        for idx in chunks(range(n), args.call_rows):
            futs = [pool.submit(udf._decode, uris[i], ids[i], None, None) for i in idx]
            for f in futs:
                clip = f.result()
                if len(kept) < args.batch_size:
                    kept.append(clip)
            del futs
    decode_s = time.perf_counter() - t0

    # --- model only: decoded clips -> embed (H2D, preprocess, encoder, D2H)
    log("model only")
    clips = kept[: args.batch_size]
    embedder.embed(clips)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.model_iters):
        embedder.embed(clips)
    sync(device)
    model_s = time.perf_counter() - t0
    model_clips = args.model_iters * len(clips)

    # --- forward only: preprocessed batch -> encoder
    x = embedder.preprocess(clips)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
                else torch.autocast("cpu", enabled=False))
    with torch.inference_mode(), autocast:
        model(pixel_values_videos=x, skip_predictor=True)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.model_iters):
            model(pixel_values_videos=x, skip_predictor=True)
        sync(device)
    forward_s = time.perf_counter() - t0

    e2e_rate = n / e2e_s
    report: dict[str, Any] = {
        "benchmark": "gpu_video_embedding: our V-JEPA 2 UDF end to end",
        "weights": RANDOM_WEIGHTS_LABEL,
        "model": msummary | {"parameters": params, "dtype": str(next(model.parameters()).dtype),
                             "autocast": "bf16" if cuda else "none (fp32)"},
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)",
        "versions": versions(),
        "config": {
            "clips": n,
            "unique_files": args.unique,
            "file": {"size": f"{args.size[0]}x{args.size[1]}", "seconds": args.seconds,
                     "fps": args.fps, "gop": args.gop, "codec": "h264 (libx264 veryfast)",
                     "sources": args.sources},
            "num_frames": args.num_frames,
            "batch_size": args.batch_size,
            "rows_per_call": args.call_rows,
            "decode_threads": args.decode_threads,
            "ffmpeg_threads": os.environ.get("DECODE_THREADS", "udfs.decode default"),
            "decode_device": args.decode_device,
            "decoder_resize": args.decoder_resize,
            "torch_threads": torch.get_num_threads(),
        },
        "results": {
            "end_to_end": {"wall_s": round(e2e_s, 3), "clips_per_s": round(e2e_rate, 3),
                           "output_rows": out_rows, "steps_shape_per_row": steps_shape},
            "model_only": {"clips": model_clips, "wall_s": round(model_s, 3),
                           "clips_per_s": round(model_clips / model_s, 3),
                           "what": "embed() on decoded host clips: copy, preprocess, encoder"},
            "forward_only": {"clips": model_clips, "wall_s": round(forward_s, 3),
                             "clips_per_s": round(model_clips / forward_s, 3)},
            "decode_only": {"clips": n, "wall_s": round(decode_s, 3),
                            "clips_per_s": round(n / decode_s, 3)},
            "gpu_busy": {
                "encoder_forward_fraction": (round(gpu_model_s / e2e_s, 3)
                                             if gpu_model_s is not None else None),
                "what": "CUDA-event time inside encoder forwards / end-to-end wall time",
                "nvml": sampler.summary() if sampler is not None else None,
            },
            "peak_gpu_memory_gib": round(peak, 3) if peak is not None else None,
        },
    }
    if cuda:
        report["goal"] = {"end_to_end_clips_per_s": 20, "met": e2e_rate >= 20}
    bottleneck = min(
        ("decode", n / decode_s), ("model", model_clips / model_s), key=lambda kv: kv[1]
    )
    report["results"]["slower_stage"] = bottleneck[0]
    print(json.dumps(report, indent=2, default=_jsonable(np)))
    return report


def _jsonable(np: Any) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        return str(value)

    return convert


def _logger() -> Callable[[str], None]:
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[gpu-bench {time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr,
              flush=True)

    return log


if __name__ == "__main__":
    main()
