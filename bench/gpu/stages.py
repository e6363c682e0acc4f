"""The model stages of the GPU run, each under a time budget (one process per stage).

``python -m bench.gpu.stages STAGE --config CFG.json --out RESULT.json`` runs one stage:

``vjepa``
    :class:`udfs.video_embedding.VideoEmbedding` (V-JEPA 2; ViT-L from ``VJEPA2Config()`` with
    random weights, saved and loaded through the registry as a checkpoint directory, see
    :func:`bench.gpu_video_embedding.model_dir`), ``num_frames`` frames uniformly over each clip.
``dinov2``
    :class:`udfs.frame_features.FrameFeatures` at ``fps`` (DINOv2-large from its config with
    random weights, :func:`bench.frame_features.dinov2_large_random`) over long videos.
``latents``
    :class:`udfs.video_latents.VideoLatents` (the CogVideoX-2b VAE from its config with random
    weights, bf16, tiled) on 49 frames at 8 fps, 720x480, plain and flipped
    (:func:`bench.video_latents.bench_stage`).
``detector``
    :class:`udfs.detections.WindowDetections` (LLaVA-NeXT-Video-7B or Qwen2.5-VL-7B from their
    configs, random bf16 weights, :data:`bench.detections.FULL_MODELS`) on 4 s windows at 1 fps,
    exactly ``new_tokens`` generated tokens per window.

Every UDF is instantiated and called the way geneva's workers call it: with pyarrow arrays of
the input columns, returning the Arrow array that would be written, so "end to end" is the
file on disk to the returned Arrow array: decoding (the UDF's own threads), host-to-device
copies, preprocessing, the model and the Arrow conversion. Besides end to end each stage
measures decoding alone and the model alone, and on CUDA also the NVDEC decoder (torchcodec
``device="cuda"``), the GPU busy fraction and the peak GPU memory.

Time: the stage gets ``budget_s`` seconds from its start (model build and warm-ups included).
Each measurement has a cap: it runs calls until the cap is spent (at least one call) and
records what it got. A measurement that no longer fits in the remaining budget is recorded as
skipped. Results are written to ``--out`` after every measurement, so a stage that is killed
still leaves what it measured.

Busy fraction: CUDA-event time inside the model's forward calls / wall time
(:class:`bench.gpu_video_embedding.GpuTimer`: a lower bound of GPU busy time), plus the mean of
NVML utilisation samples when ``pynvml`` is importable.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

GOALS = {"vjepa_clips_per_s": 20.0, "dinov2_frames_per_s": 1000.0, "detector_windows_per_s": 8.0,
         "gpu_busy_fraction": 0.80,
         # the seed's latent preprocessing: ~40 min on one GPU for ~1,350 training videos, plain and flipped
         "latents_clips_per_s": 1.2}


def log(msg: str) -> None:
    """A progress line on stderr (the run log)."""
    print(f"[stage {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Recorder:
    """The stage's result document, rewritten to ``path`` after every change."""

    def __init__(self, path: Path | None, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.save()

    def save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.doc, indent=2, default=str))
            tmp.replace(self.path)

    def put(self, section: str, name: str, value: Any) -> None:
        self.doc.setdefault(section, {})[name] = value
        self.save()


class Budget:
    """Seconds left of the stage's budget, and the caps of its measurements."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def fits(self, need_s: float) -> bool:
        return self.left() >= need_s


def cuda_of(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    if cuda_of(device):
        import torch

        torch.cuda.synchronize()


@contextmanager
def gpu_meter(device: str, model: Any) -> Iterator[dict[str, Any]]:
    """Busy fraction (CUDA events around ``model``'s forwards, NVML samples) and peak memory of a block.

    Yields a dict that holds the figures once the block is left (``wall_s`` is the block's time).
    """
    out: dict[str, Any] = {}
    if not cuda_of(device):
        start = time.perf_counter()
        yield out
        out["wall_s"] = time.perf_counter() - start
        return
    import torch

    from bench.gpu_video_embedding import GpuTimer, NvmlSampler

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    timer = GpuTimer(model)
    sampler = NvmlSampler()
    start = time.perf_counter()
    try:
        with sampler:
            yield out
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        model_s = timer.seconds()
    finally:
        timer.close()
    out.update(wall_s=wall, gpu_busy_fraction=round(model_s / wall, 3) if wall else None,
               gpu_model_s=round(model_s, 3), nvml=sampler.summary(),
               peak_gpu_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3))


def run_until(cap_s: float, step: Callable[[], int]) -> tuple[int, int]:
    """Call ``step`` (returns units done) until ``cap_s`` seconds are spent, at least once."""
    units = calls = 0
    start = time.perf_counter()
    while True:
        units += step()
        calls += 1
        if time.perf_counter() - start >= cap_s:
            return units, calls


def pooled_run(cap_s: float, workers: int, items: Iterator[Any], work: Callable[[Any], int]) -> dict[str, Any]:
    """``work(item)`` on ``workers`` threads, ``2 * workers`` in flight, until ``cap_s``; units/s."""
    units = done = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(workers, thread_name_prefix="vw-bench") as pool:
        flight: list[Future] = []
        for item in items:
            flight.append(pool.submit(work, item))
            if len(flight) >= 2 * workers:
                units += flight.pop(0).result()
                done += 1
            if time.perf_counter() - start >= cap_s:
                break
        for fut in flight:
            units += fut.result()
            done += 1
    wall = time.perf_counter() - start
    return {"items": done, "units": units, "wall_s": round(wall, 3), "units_per_s": round(units / wall, 2)}


def goal(value: float | None, target: float) -> dict[str, Any]:
    """A figure beside its goal."""
    return {"value": value, "goal": target, "met": None if value is None else value >= target}


def skipped(why: str) -> dict[str, Any]:
    return {"skipped": why}


def guarded(rec: Recorder, section: str, name: str, budget: Budget, need_s: float,
            fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Run one measurement when ``need_s`` seconds are left; record its result or its error."""
    if not budget.fits(need_s):
        rec.put(section, name, skipped(f"budget spent ({budget.left():.0f}s left, {need_s:.0f}s needed)"))
        return None
    log(f"{section}.{name} ({budget.left():.0f}s left)")
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - recorded; the other measurements still run
        result = {"error": f"{type(err).__name__}: {err}"[:800], "traceback": traceback.format_exc()[-1500:]}
        if "OutOfMemoryError" in type(err).__name__:
            import torch

            torch.cuda.empty_cache()
    result["measure_s"] = round(time.perf_counter() - started, 1)
    rec.put(section, name, result)
    return result


@contextmanager
def decode_device_env(device: str) -> Iterator[None]:
    """``VW_DECODE_DEVICE`` (read by the V-JEPA 2 UDF at each decode) set for a block."""
    old = os.environ.get("VW_DECODE_DEVICE")
    if device == "cpu":
        os.environ.pop("VW_DECODE_DEVICE", None)
    else:
        os.environ["VW_DECODE_DEVICE"] = device
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VW_DECODE_DEVICE", None)
        else:
            os.environ["VW_DECODE_DEVICE"] = old


def video_rows(paths: Sequence[str], n: int, counter: Iterator[int]) -> list[pa.Array]:
    """``(video_id, uri, start_s, end_s)`` of ``n`` whole-video rows cycling over ``paths``.

    Every row gets a new ``video_id``: the UDFs never merge rows within a call nor answer from
    their cache, so each row is decoded and run through the model.
    """
    first = next(counter)
    for _ in range(n - 1):
        next(counter)
    uris = [paths[(first + i) % len(paths)] for i in range(n)]
    none = pa.array([None] * n, pa.float64())
    return [pa.array([f"row{first + i:07d}" for i in range(n)]), pa.array(uris), none, none]


def list_lengths(out: pa.Array) -> int:
    """Total number of list elements of a list array (frames / steps returned)."""
    return int(pc.sum(pc.list_value_length(out)).as_py() or 0)


# ---------------------------------------------------------------------------------- V-JEPA 2


def stage_vjepa(cfg: dict[str, Any], rec: Recorder) -> None:
    """V-JEPA 2 clips (see the module documentation)."""
    import torch

    from bench.gpu_video_embedding import RANDOM_WEIGHTS_LABEL, model_dir
    from udfs.video_embedding import VideoEmbedding

    budget = Budget(cfg["budget_s"])
    device, threads = cfg["device"], cfg["decode_threads"]
    cuda = cuda_of(device)
    caps = cfg["caps"]
    videos: dict[str, list[str]] = cfg["videos"]
    main_gop = cfg["main_gop"]
    counter = itertools.count()
    start = time.perf_counter()
    mdir, summary = model_dir(Path(cfg["work_dir"]), cfg["tiny"])
    rec.doc["model"] = summary | {"label": RANDOM_WEIGHTS_LABEL,
                                  "build_or_load_s": round(time.perf_counter() - start, 1)}
    rec.doc["config"] = {k: cfg[k] for k in ("num_frames", "batch_sizes", "decode_threads", "main_gop", "caps")}
    rec.save()
    udfs: dict[int, Any] = {}

    def udf_for(batch: int) -> Any:
        if batch not in udfs:
            udfs[batch] = VideoEmbedding(profile="full", model=str(mdir), num_frames=cfg["num_frames"],
                                         batch_size=batch, device=device, decode_threads=threads)
        return udfs[batch]

    def call(udf: Any, gop: str, n: int) -> pa.Array:
        return udf(*video_rows(videos[gop], n, counter))

    def end_to_end(batch: int, gop: str, decoder: str) -> dict[str, Any]:
        udf = udf_for(batch)
        rows = max(cfg["rows_per_call_min"], 4 * batch)
        with decode_device_env(decoder):
            call(udf, gop, batch)  # warm-up: model load on first use, this batch shape
            model = udf._embedder.model
            with gpu_meter(device, model) as meter:
                outs: list[pa.Array] = []
                n, calls = run_until(caps["e2e_s"], lambda: len(outs.append(call(udf, gop, rows)) or outs[-1]))
        out = outs[-1]
        wall = meter["wall_s"]
        return {"batch_size": batch, "gop": gop, "decode_device": decoder, "rows_per_call": rows, "calls": calls,
                "clips": n, "wall_s": round(wall, 3), "clips_per_s": round(n / wall, 3),
                "arrow_type": str(out.type), "steps_per_row": list_lengths(out) // max(1, len(out)),
                **{k: v for k, v in meter.items() if k != "wall_s"}}

    kept: list[Any] = []

    def decode_only(gop: str, decoder: str) -> dict[str, Any]:
        udf = udf_for(max(cfg["batch_sizes"]))
        if udf._embedder is None:
            call(udf, gop, 1)
        paths = videos[gop]

        def work(i: int) -> int:
            clip = udf._decode(paths[i % len(paths)], f"d{i}", None, None)
            if decoder == "cpu" and len(kept) < max(cfg["batch_sizes"]):
                kept.append(clip)
            return 1

        with decode_device_env(decoder):
            got = pooled_run(caps["decode_s"], threads, iter(range(10**9)), work)
        return {"gop": gop, "decode_device": decoder, "threads": threads, "clips": got["units"],
                "wall_s": got["wall_s"], "clips_per_s": got["units_per_s"],
                "what": "the UDF's own decode step (num_frames uniformly, full-size RGB; "
                        "pinned when the model is on CUDA)"}

    def model_only(batch: int) -> dict[str, Any]:
        udf = udf_for(max(cfg["batch_sizes"]))
        if udf._embedder is None:
            call(udf, main_gop, 1)
        embedder = udf._embedder
        paths = videos[main_gop]
        while len(kept) < batch:  # normally kept by decode_only
            kept.append(udf._decode(paths[len(kept) % len(paths)], f"k{len(kept)}", None, None))
        clips = kept[:batch]
        embedder.embed(clips)
        sync(device)
        with gpu_meter(device, embedder.model) as meter:
            n, calls = run_until(caps["model_s"], lambda: len(embedder.embed(clips)))
        x = embedder.preprocess(clips)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
        with torch.inference_mode(), autocast:
            sync(device)
            t0 = time.perf_counter()
            _, fcalls = run_until(caps["model_s"] / 2, lambda: (embedder.model(pixel_values_videos=x,
                                                                                 skip_predictor=True), 1)[1])
            sync(device)
            fwd = time.perf_counter() - t0
        return {"batch_size": batch, "clips": n, "wall_s": round(meter["wall_s"], 3),
                "clips_per_s": round(n / meter["wall_s"], 3),
                "forward_only_clips_per_s": round(fcalls * batch / fwd, 3),
                "what": "embed() on decoded host clips: copy to the device, resize/crop/normalise, encoder (bf16 "
                        "autocast on CUDA), mean over patches, back to the host; forward_only: the encoder alone",
                **{k: v for k, v in meter.items() if k != "wall_s"}}

    sizes = cfg["batch_sizes"]
    biggest = max(sizes)
    plan: list[tuple[str, str, float, Callable[[], dict[str, Any]]]] = []
    plan.append(("end_to_end", f"b{biggest}_{main_gop}_cpu", caps["e2e_s"] + 5,
                 lambda: end_to_end(biggest, main_gop, "cpu")))
    for gop in videos:
        plan.append(("decode_only", f"{gop}_cpu", caps["decode_s"], lambda g=gop: decode_only(g, "cpu")))
    for b in sizes:
        plan.append(("model_only", f"b{b}", caps["model_s"] * 1.5 + 2, lambda b=b: model_only(b)))
    for b in sizes:
        if b != biggest:
            plan.append(("end_to_end", f"b{b}_{main_gop}_cpu", caps["e2e_s"] + 3,
                         lambda b=b: end_to_end(b, main_gop, "cpu")))
    if cuda:
        for gop in videos:
            plan.append(("decode_only", f"{gop}_nvdec", caps["decode_s"], lambda g=gop: decode_only(g, "cuda")))
        plan.append(("end_to_end", f"b{biggest}_{main_gop}_nvdec", caps["e2e_s"] + 5,
                     lambda: end_to_end(biggest, main_gop, "cuda")))
    else:
        rec.put("decode_only", "nvdec", skipped("no CUDA device: NVDEC is measured on the GPU run only"))
    for gop in videos:
        if gop != main_gop:
            plan.append(("end_to_end", f"b{biggest}_{gop}_cpu", caps["e2e_s"] + 3,
                         lambda g=gop: end_to_end(biggest, g, "cpu")))
    for section, name, need, fn in plan:
        guarded(rec, section, name, budget, need, fn)

    head = rec.doc.get("end_to_end", {}).get(f"b{biggest}_{main_gop}_cpu", {})
    best = max((r.get("clips_per_s", 0) for r in rec.doc.get("end_to_end", {}).values() if isinstance(r, dict)),
               default=None)
    rec.doc["goals"] = {
        "clips_per_s_end_to_end_best": goal(best, GOALS["vjepa_clips_per_s"]),
        f"gpu_busy_b{biggest}_{main_gop}_cpu": goal(head.get("gpu_busy_fraction"), GOALS["gpu_busy_fraction"]),
    }
    rec.save()


# ---------------------------------------------------------------------------------- DINOv2


def stage_dinov2(cfg: dict[str, Any], rec: Recorder) -> None:
    """DINOv2-large frame features at ``fps`` (see the module documentation)."""
    import torch

    from bench.frame_features import RANDOM_LABEL, make_udf
    from udfs.decode import SamplingPlan, decode_chunks
    from udfs.frame_features import FrameFeatures

    budget = Budget(cfg["budget_s"])
    device, threads, fps = cfg["device"], cfg["decode_threads"], cfg["fps"]
    caps = cfg["caps"]
    videos: dict[str, list[str]] = cfg["videos"]
    main_gop = cfg["main_gop"]
    counter = itertools.count()
    full = cfg["full_config"]
    start = time.perf_counter()
    udf = make_udf("tiny", device, full, cfg.get("frame_batch"), fps)
    udf.decode_threads = threads
    enc = udf.encoder
    enc.encode(torch.zeros((1, 3, 64, 64), dtype=torch.uint8))  # build / load the model
    rec.doc["model"] = {"name": enc.spec.name, "dim": enc.dim, "random_weights": enc.spec.random_weights,
                        "label": RANDOM_LABEL, "config": "bench.frame_features.dinov2_large_random" if full
                        else "tiny profile", "build_s": round(time.perf_counter() - start, 1)}
    rec.doc["config"] = {"fps": fps, "decode_threads": threads, "frame_batch": udf.frame_batch or "UDF default",
                         "chunk_frames": udf.chunk_frames, "rows_per_call": cfg["rows_per_call"], "caps": caps}
    rec.save()

    class NvdecFrameFeatures(FrameFeatures):
        """The UDF with its decode threads on NVDEC (bench patch: the UDF itself always decodes on the CPU)."""

        def _chunks(self, key: tuple) -> Iterator[Any]:
            video_id, uri, s, e = key
            for chunk in decode_chunks(uri, SamplingPlan.every(self.fps, start_s=s, end_s=e), self.chunk_frames,
                                       device="cuda", name=f"{video_id} ({uri})"):
                yield chunk.data

    def net() -> Any:
        return enc._load()[0]

    per_video = round(cfg["video_seconds"] * fps)

    def rows_per_call(gop: str, decoder: str) -> tuple[int, str]:
        """Whole videos per UDF call: ``rows_per_call``, fewer when decode-only says a call would
        take longer than the cap (a 10-minute GOP-250 video is 15,000 frames to decode)."""
        most = cfg["rows_per_call"]
        key = f"{gop}_{'cpu' if decoder == 'cpu' else 'nvdec'}"
        rate = (rec.doc.get("decode_only", {}).get(key) or {}).get("frames_per_s")
        if not rate:
            return most, f"{most} (no decode-only rate for {key})"
        rows = max(2, min(most, int(caps["e2e_s"] * rate / per_video)))
        return rows, f"{rows}: cap {caps['e2e_s']:g}s x decode-only {rate:g} frames/s / {per_video} frames per video"

    def end_to_end(gop: str, decoder: str) -> dict[str, Any]:
        u = udf
        if decoder != "cpu":
            u = NvdecFrameFeatures("tiny", fps=fps, frame_batch=udf.frame_batch, device=device, decode_threads=threads)
            u._encoder = enc
        warm = video_rows(videos[gop], 1, counter)
        u(warm[0], warm[1], pa.array([0.0]), pa.array([min(20.0, cfg["video_seconds"])]))  # warm-up: 20 s
        rows, why = rows_per_call(gop, decoder)
        with gpu_meter(device, net()) as meter:
            outs: list[pa.Array] = []
            n, calls = run_until(caps["e2e_s"], lambda: list_lengths(
                outs.append(u(*video_rows(videos[gop], rows, counter))) or outs[-1]))
        wall = meter["wall_s"]
        return {"gop": gop, "decode_device": decoder, "rows_per_call": rows, "rows_per_call_why": why,
                "calls": calls, "videos": calls * rows, "frames": n, "wall_s": round(wall, 3),
                "frames_per_s": round(n / wall, 1), "arrow_type": str(outs[-1].type),
                **{k: v for k, v in meter.items() if k != "wall_s"}}

    def decode_only(gop: str, decoder: str) -> dict[str, Any]:
        stop = threading.Event()
        paths = videos[gop]
        chunk = udf.chunk_frames

        def work(i: int) -> int:
            frames = 0
            for c in decode_chunks(paths[i % len(paths)], SamplingPlan.every(fps), chunk, device=decoder):
                frames += len(c.data)
                if stop.is_set():
                    break
            return frames

        timer = threading.Timer(caps["decode_s"], stop.set)
        timer.start()
        try:
            got = pooled_run(caps["decode_s"], threads, iter(range(10**9)), work)
        finally:
            timer.cancel()
        return {"gop": gop, "decode_device": decoder, "threads": threads, "videos_started": got["items"],
                "frames": got["units"], "wall_s": got["wall_s"], "frames_per_s": got["units_per_s"],
                "what": "udfs.decode.decode_chunks at the plan's fps, one video per thread, stopped at the cap; "
                        "frames counts the sampled frames returned (a GOP-250 file decodes about every frame "
                        "to return one per second)"}

    def model_only() -> dict[str, Any]:
        batch = udf.frame_batch or (256 if cuda_of(device) else 32)
        want = max(2 * batch, 64)
        parts, got = [], 0
        for c in decode_chunks(videos[main_gop][0], SamplingPlan.every(fps), udf.chunk_frames):
            parts.append(c.data)
            got += len(c.data)
            if got >= want:
                break
        frames = torch.cat(parts)[:want].contiguous()
        if cuda_of(device):
            frames = frames.pin_memory()
        enc.encode_many([frames[:batch]], batch)
        with gpu_meter(device, net()) as meter:
            n, calls = run_until(caps["model_s"], lambda: len(enc.encode_many([frames], batch)))
        return {"frame_batch": batch, "frames": n, "wall_s": round(meter["wall_s"], 3),
                "frames_per_s": round(n / meter["wall_s"], 1),
                "what": "encode_many on decoded 720p host frames: copy, resize 256 + crop 224 on the device, model",
                **{k: v for k, v in meter.items() if k != "wall_s"}}

    plan: list[tuple[str, str, float, Callable[[], dict[str, Any]]]] = [
        ("decode_only", f"{main_gop}_cpu", caps["decode_s"] + 1, lambda: decode_only(main_gop, "cpu")),
        ("end_to_end", f"{main_gop}_cpu", caps["e2e_s"] + 5, lambda: end_to_end(main_gop, "cpu")),
        ("model_only", "default_batch", caps["model_s"] + 2, model_only),
    ]
    for gop in videos:
        if gop != main_gop:
            plan.append(("decode_only", f"{gop}_cpu", caps["decode_s"] + 1, lambda g=gop: decode_only(g, "cpu")))
    if cuda_of(device):
        for gop in videos:
            plan.append(("decode_only", f"{gop}_nvdec", caps["decode_s"] + 1, lambda g=gop: decode_only(g, "cuda")))
        plan.append(("end_to_end", f"{main_gop}_nvdec", caps["e2e_s"] + 5, lambda: end_to_end(main_gop, "cuda")))
    else:
        rec.put("decode_only", "nvdec", skipped("no CUDA device: NVDEC is measured on the GPU run only"))
    for gop in videos:
        if gop != main_gop:
            plan.append(("end_to_end", f"{gop}_cpu", caps["e2e_s"] + 3, lambda g=gop: end_to_end(g, "cpu")))
    for section, name, need, fn in plan:
        guarded(rec, section, name, budget, need, fn)
    e2e = rec.doc.get("end_to_end", {})
    head = e2e.get(f"{main_gop}_cpu", {})
    best = max((r.get("frames_per_s", 0) for r in e2e.values() if isinstance(r, dict)), default=None)
    rec.doc["goals"] = {
        "frames_per_s_end_to_end_best": goal(best, GOALS["dinov2_frames_per_s"]),
        f"gpu_busy_{main_gop}_cpu": goal(head.get("gpu_busy_fraction"), GOALS["gpu_busy_fraction"]),
    }
    rec.save()


# ---------------------------------------------------------------------------------- detectors


def window_rows(paths: Sequence[str], seconds: float, window_s: float = 4.0, step_s: float = 2.0
                ) -> list[tuple[str, str, float, float]]:
    """``(video_id, uri, start, end)`` of the full ``window_s`` windows every ``step_s`` of each file."""
    rows = []
    for path in paths:
        k = 0
        while k * step_s + window_s <= seconds + 1e-9:
            rows.append((Path(path).stem, path, k * step_s, k * step_s + window_s))
            k += 1
    return rows


def stage_detector(cfg: dict[str, Any], rec: Recorder) -> None:
    """A video-language detector on windows (see the module documentation)."""

    from bench.detections import FULL_MODELS, time_generate
    from udfs.detections import WindowDetections
    from udfs.detector_models import DetectorSettings
    from udfs.video_detector import VideoDetector

    budget = Budget(cfg["budget_s"])
    device, family = cfg["device"], cfg["family"]
    caps = cfg["caps"]
    new_tokens = cfg["new_tokens"]
    settings = DetectorSettings(max_new_tokens=new_tokens, max_side=cfg["side"])
    start = time.perf_counter()
    if cfg["full_config"]:
        build, name = FULL_MODELS[family]
        model, processor = build(device)
        det = VideoDetector.from_parts(family, model, processor, settings, device, profile="full", name=name)
    else:
        det = VideoDetector(family, "tiny", settings=settings, device=device)
        model = det.model
    det.extra_generate = {"min_new_tokens": new_tokens}  # random weights stop at random lengths
    sync(device)
    rec.doc["model"] = {"family": family, "name": det.name, "random_weights": True,
                        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
                        "dtype": str(next(model.parameters()).dtype), "build_s": round(time.perf_counter() - start, 1),
                        "tokenizer": "the tiny profile's BPE tokenizer (token ids only matter for speed)"}
    rows = window_rows(cfg["videos"], cfg["video_seconds"])
    rec.doc["config"] = {"new_tokens": new_tokens, "max_side": cfg["side"], "frames_per_window": 4,
                         "window": "4 s every 2 s at 1 fps", "windows_available": len(rows),
                         "batch_sizes": cfg["batch_sizes"], "decode_threads": cfg["decode_threads"], "caps": caps}
    rec.save()
    counter = itertools.count()

    def arrays(n: int) -> list[pa.Array]:
        first = next(counter) * n
        picked = [rows[(first + i) % len(rows)] for i in range(n)]
        return [pa.array([first + i for i in range(n)], pa.int64()), pa.array([r[0] for r in picked]),
                pa.array([r[1] for r in picked]), pa.array([r[2] for r in picked], pa.float64()),
                pa.array([r[3] for r in picked], pa.float64()), pa.array([1.0] * n, pa.float64())]

    def end_to_end(batch: int) -> dict[str, Any]:
        udf = WindowDetections(family, "tiny", settings=settings, batch_size=batch, device=device,
                               decode_threads=cfg["decode_threads"])
        udf._detector = det
        n_rows = min(len(rows), max(batch, cfg["rows_per_call_min"]))
        with gpu_meter(device, model) as meter:
            outs: list[pa.Array] = []
            n, calls = run_until(caps["e2e_s"], lambda: len(outs.append(udf(*arrays(n_rows))) or outs[-1]))
        wall = meter["wall_s"]
        cells = outs[-1].to_pylist()
        return {"batch_size": batch, "rows_per_call": n_rows, "calls": calls, "windows": n, "wall_s": round(wall, 3),
                "windows_per_s": round(n / wall, 3), "arrow_type": str(outs[-1].type),
                "answers_with_raw": sum(c["raw"] is not None for c in cells),
                **{k: v for k, v in meter.items() if k != "wall_s"}}

    for b in cfg["batch_sizes"]:
        guarded(rec, "model_only", f"b{b}", budget, caps["model_need_s"],
                lambda b=b: time_generate(det, b, 4, cfg["side"], new_tokens, 1000, caps["model_s"]))
        guarded(rec, "end_to_end", f"b{b}", budget, caps["e2e_need_s"], lambda b=b: end_to_end(b))
    e2e = rec.doc.get("end_to_end", {})
    best = max((r.get("windows_per_s", 0) for r in e2e.values() if isinstance(r, dict)), default=None)
    rec.doc["goals"] = {"windows_per_s_end_to_end_best": goal(best, GOALS["detector_windows_per_s"])}
    rec.save()


# ---------------------------------------------------------------------------------- video latents


def stage_latents(cfg: dict[str, Any], rec: Recorder) -> None:
    """The CogVideoX VAE latents of :mod:`udfs.video_latents` (see :func:`bench.video_latents.bench_stage`)."""
    from bench.video_latents import bench_stage
    from udfs.video_latents import LatentSettings

    budget = Budget(cfg["budget_s"])
    device = cfg["device"]
    width, height = cfg["size"]
    settings = LatentSettings(fps=8, width=width, height=height, frames=cfg["frames"], clips=1, augment=True)
    paths = [p for group in cfg["videos"].values() for p in group][: cfg["videos_per_call"]]
    rec.doc["model"] = {"name": "CogVideoX-2b VAE config" if cfg["full_config"] else "tiny VAE config",
                        "random_weights": True}
    rec.doc["config"] = {"size": f"{width}x{height}", "frames": cfg["frames"], "fps": 8, "augment": True,
                         "videos_per_call": len(paths), "batch_sizes": cfg["batch_sizes"]}
    rec.save()
    for b in cfg["batch_sizes"]:
        guarded(rec, "end_to_end", f"b{b}", budget, cfg["need_s"],
                lambda b=b: bench_stage(paths, "tiny", settings, b, device, full=cfg["full_config"]))
    runs = [r for r in rec.doc.get("end_to_end", {}).values() if isinstance(r, dict) and "end_to_end_clips_per_s" in r]
    best = max((r["end_to_end_clips_per_s"] for r in runs), default=None)
    rec.doc["goals"] = {"clips_per_s_end_to_end_best": goal(best, GOALS["latents_clips_per_s"])}
    rec.save()


STAGES = {"vjepa": stage_vjepa, "dinov2": stage_dinov2, "detector": stage_detector, "latents": stage_latents}


def environment(device: str) -> dict[str, Any]:
    """Versions and the device, recorded in every stage result."""
    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads()}
    for mod in ("transformers", "torchcodec", "torchvision", "pyarrow", "numpy", "av"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as err:  # noqa: BLE001 - recorded
            out[mod] = f"unavailable: {type(err).__name__}: {err}"[:200]
    try:
        from torchcodec._core import ops

        out["torchcodec_ffmpeg_major"] = ops.ffmpeg_major_version
        out["torchcodec_core_library"] = ops.core_library_path
    except Exception as err:  # noqa: BLE001
        out["torchcodec_ffmpeg_major"] = f"unavailable: {err}"[:300]
    out["device"] = torch.cuda.get_device_name() if cuda_of(device) else f"cpu ({os.cpu_count()} cores)"
    return out


def block_imports(names: Sequence[str]) -> None:
    """Make ``names`` (top-level packages) unimportable, as on the GPU machine (the dry run sets this)."""
    import importlib.abc

    blocked = frozenset(names)

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
            if fullname.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {fullname!r} (absent on the GPU machine; blocked in the "
                                          "dry run)", name=fullname)
            return None

    sys.meta_path.insert(0, Absent())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; its result JSON goes to ``--out`` and stdout. Exit 1 when it raised."""
    blocked = [n for n in os.environ.get("VW_BENCH_BLOCK_IMPORTS", "").split(",") if n]
    if blocked:
        block_imports(blocked)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg["torch_threads"]))
    rec = Recorder(args.out, {"stage": args.stage, "name": cfg.get("name", args.stage), "ok": False})
    start = time.perf_counter()
    status = 0
    try:
        rec.doc["environment"] = environment(cfg["device"])
        STAGES[args.stage](cfg, rec)
        rec.doc["ok"] = True
    except Exception as err:  # noqa: BLE001 - recorded in the result
        rec.doc["error"] = f"{type(err).__name__}: {err}"[:1000]
        rec.doc["traceback"] = traceback.format_exc()[-3000:]
        status = 1
    rec.doc["seconds"] = round(time.perf_counter() - start, 1)
    rec.save()
    print(json.dumps(rec.doc, indent=2, default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
