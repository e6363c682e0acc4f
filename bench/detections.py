"""Windows per second of the soccer-event detectors (``python -m bench.detections``; prints JSON).

CPU mode (default)
    :class:`udfs.detections.WindowDetections` (the UDF geneva runs) called on pyarrow arrays of
    windows, as geneva calls it, without Ray: decoding each window at 1 fps from generated H.264
    clips, resizing, the processor, ``generate`` (exactly ``--new-tokens`` tokens per window:
    random weights would stop at random lengths) and parsing, for the ``tiny`` LLaVA-NeXT-Video
    and Qwen2.5-VL models (random weights: their answers are noise, only the speed of the
    pipeline is measured) at several batch sizes (windows per ``generate`` call).

GPU mode (``--device cuda --full-config``)
    ``LlavaNextVideoForConditionalGeneration`` built from the full LLaVA-NeXT-Video-7B
    configuration (CLIP ViT-L/14 at 336 px, a 7B Llama) with random weights in bf16 on the GPU,
    driven through :class:`udfs.video_detector.VideoDetector` with windows of 4 random frames of
    ``--side`` px (384) and exactly ``--new-tokens`` generated tokens (64) per window: windows/s
    at several batch sizes, with the time split into the processor (CPU) and ``generate``, and
    the peak GPU memory. No decoding: the frames are made in memory, so only the model side is
    measured. The tokenizer is the tiny one (token ids only matter for speed).

Every result says ``random_weights: true``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (tiny models, decoded windows) or cuda")
    p.add_argument("--full-config", action="store_true",
                   help="GPU mode: the full LLaVA-NeXT-Video-7B config with random bf16 weights")
    p.add_argument("--batch-sizes", default=None,
                   help="comma-separated windows per generate call (default cpu 1,4,8; gpu 1,2,4,8,16)")
    p.add_argument("--families", default="llava,qwen", help="CPU mode: detector families")
    p.add_argument("--videos", type=int, default=3, help="CPU mode: generated clips")
    p.add_argument("--seconds", type=float, default=12.0, help="CPU mode: length of each clip")
    p.add_argument("--new-tokens", type=int, default=64, help="generated tokens per window")
    p.add_argument("--frames", type=int, default=4, help="GPU mode: frames per window")
    p.add_argument("--side", type=int, default=384, help="GPU mode: frame side in pixels")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per batch size (CPU: best and median)")
    p.add_argument("--quick", action="store_true", help="a smaller run (CPU: 1 clip, batch sizes 1,4)")
    return p.parse_args(argv)


def _batch_sizes(text: str | None, default: str) -> list[int]:
    sizes = [int(v) for v in (text or default).split(",") if v.strip()]
    if not sizes or any(s < 1 for s in sizes):
        raise SystemExit(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def versions() -> dict[str, str | None]:
    """Versions of the libraries that matter here."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "torchcodec"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


# --------------------------------------------------------------------------------- CPU mode


def window_arrays(paths: Sequence[Path], seconds: float) -> tuple[list[Any], int]:
    """Arrow columns of the 4 s / 2 s windows of ``paths`` (the UDF's input) and their count."""
    import pyarrow as pa

    from tables.windows import window_grid, window_id

    cols: dict[str, list] = {k: [] for k in ("window_id", "video_id", "uri", "start_s", "end_s", "fps")}
    for path in paths:
        for i, (start, end) in enumerate(window_grid(0.0, seconds, 4.0, 2.0)):
            cols["window_id"].append(window_id(path.stem, i, start, end))
            cols["video_id"].append(path.stem)
            cols["uri"].append(str(path))
            cols["start_s"].append(start)
            cols["end_s"].append(end)
            cols["fps"].append(1.0)
    arrays = [pa.array(cols["window_id"], pa.int64()), pa.array(cols["video_id"]), pa.array(cols["uri"]),
              pa.array(cols["start_s"]), pa.array(cols["end_s"]), pa.array(cols["fps"])]
    return arrays, len(cols["window_id"])


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """CPU mode (see the module documentation)."""
    import torch

    from bench.video_embedding import generated_videos
    from udfs.detections import WindowDetections
    from udfs.detector_models import DetectorSettings

    count = 1 if args.quick else args.videos
    sizes = _batch_sizes(args.batch_sizes, "1,4" if args.quick else "1,4,8")
    paths = generated_videos(OUT_DIR / "videos", count, args.seconds, (640, 360), 30, 60)
    arrays, windows = window_arrays(paths, args.seconds)
    settings = DetectorSettings(max_new_tokens=args.new_tokens)
    results = []
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        warm = WindowDetections(family, "tiny", settings=settings, batch_size=max(sizes), device="cpu")
        warm(*(a.slice(0, 2) for a in arrays))  # builds the tokenizer and the model once per process
        for size in sizes:
            times = []
            for _ in range(args.repeats):  # a fresh UDF each time: nothing answered from its cache
                udf = WindowDetections(family, "tiny", settings=settings, batch_size=size, device="cpu")
                # random weights stop at random lengths: time exactly --new-tokens tokens per window
                udf.detector.extra_generate = {"min_new_tokens": args.new_tokens}
                start = time.perf_counter()
                out = udf(*arrays)
                times.append(time.perf_counter() - start)
            cells = out.to_pylist()
            best, median = min(times), statistics.median(times)
            results.append({
                "family": family, "profile": "tiny", "random_weights": True, "batch_size": size,
                "windows": windows, "seconds_min": round(best, 3), "seconds_median": round(median, 3),
                "windows_per_s": round(windows / best, 2), "windows_per_s_median": round(windows / median, 2),
                "parsed": sum(c["parse_error"] is None for c in cells),
                "parse_errors": sum(c["parse_error"] is not None for c in cells),
            })
            print(f"{family} batch {size}: {windows / best:.2f} windows/s (best of {args.repeats})", file=sys.stderr)
    return {
        "mode": "cpu-tiny", "device": "cpu", "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "videos": [p.name for p in paths], "seconds_per_video": args.seconds,
        "window": "4 s every 2 s at 1 fps", "max_new_tokens": args.new_tokens, "results": results,
    }


# --------------------------------------------------------------------------------- GPU mode


def _bf16_on(device: str, build: Any) -> Any:
    """``build()`` with bf16 as the default dtype, its tensors created on ``device``, seeded."""
    import torch

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            return build()
    finally:
        torch.set_default_dtype(default)


def full_llava_model(device: str) -> tuple[Any, Any]:
    """LLaVA-NeXT-Video-7B's architecture with random bf16 weights on ``device``, and its processor."""
    from transformers import LlamaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    from udfs.detector_models import tiny_processor, tiny_tokenizer

    tok = tiny_tokenizer()
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    config = LlavaNextVideoConfig(
        text_config=text, video_token_index=int(tok.convert_tokens_to_ids("<video>")),
        image_token_index=int(tok.convert_tokens_to_ids("<image>")),
    )
    model = _bf16_on(device, lambda: LlavaNextVideoForConditionalGeneration(config))
    side = int(config.vision_config.image_size)
    return model.eval(), tiny_processor("llava", side=side)


#: Pixels per frame of Qwen2.5-VL's own video processor (``min_pixels`` = 128 * 28 * 28).
QWEN_MIN_PIXELS = 128 * 28 * 28


def full_qwen_model(device: str) -> tuple[Any, Any]:
    """Qwen2.5-VL-7B-Instruct's architecture with random bf16 weights on ``device``, and a processor.

    The configuration is that of the released checkpoint (28 text layers of 3584, GQA with 4
    key/value heads, a 32-block 1280-wide vision tower with window attention); the processor is
    the real processor class with the tiny tokenizer and frame-size bounds of about the released
    video processor's minimum (``side`` 320: 102400 pixels per frame).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from udfs.detector_models import tiny_processor, tiny_tokenizer

    tok = tiny_tokenizer()
    ids = {t: int(tok.convert_tokens_to_ids(t)) for t in
           ("<pad>", "<s>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                         pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"], eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24],
                                          "rope_theta": 1000000.0}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = _bf16_on(device, lambda: Qwen2_5_VLForConditionalGeneration(config))
    return model.eval(), tiny_processor("qwen", side=320)


FULL_MODELS = {"llava": (full_llava_model, "llava-next-video-7b-config-random"),
               "qwen": (full_qwen_model, "qwen2.5-vl-7b-config-random")}


def time_generate(det: Any, size: int, frames: int, side: int, new_tokens: int, repeats: int,
                  cap_s: float | None = None) -> dict[str, Any]:
    """Windows/s of the model side alone (processor + ``generate``) on random frames, ``size`` a call.

    One warm-up call, then ``repeats`` timed calls (fewer when ``cap_s`` seconds are spent; at
    least one). CUDA out-of-memory is reported in the result instead of raised.
    """
    import torch

    cuda = str(det.device).startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    gen = torch.Generator().manual_seed(0)
    clips = [torch.randint(0, 256, (frames, 3, side, side), dtype=torch.uint8, generator=gen) for _ in range(size)]
    fps = [1.0] * size
    try:
        det.generate(det.inputs(clips, fps), min_new_tokens=new_tokens)  # warm-up
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        pre_s = gen_s = 0.0
        done = 0
        start = time.perf_counter()
        while done < max(1, repeats):
            t0 = time.perf_counter()
            inputs = det.inputs(clips, fps)
            sync()
            t1 = time.perf_counter()
            out = det.generate(inputs, min_new_tokens=new_tokens)
            sync()
            pre_s += t1 - t0
            gen_s += time.perf_counter() - t1
            done += 1
            if cap_s is not None and time.perf_counter() - start >= cap_s:
                break
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {"batch_size": size, "error": f"CUDA out of memory: {err}"[:300]}
    total = pre_s + gen_s
    windows = size * done
    result = {
        "batch_size": size, "windows": windows, "calls": done, "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": int(out.shape[1]), "processor_s": round(pre_s / done, 4),
        "generate_s": round(gen_s / done, 4), "windows_per_s": round(windows / total, 3),
        "new_tokens_per_s": round(windows * int(out.shape[1]) / gen_s, 1),
    }
    if cuda:
        result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """GPU mode (see the module documentation)."""
    import torch

    from udfs.detector_models import DetectorSettings
    from udfs.video_detector import VideoDetector

    if not args.full_config:
        raise SystemExit("--device cuda measures the full config: add --full-config")
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    sizes = _batch_sizes(args.batch_sizes, "1,2,4,8,16")
    start = time.perf_counter()
    model, processor = full_llava_model(args.device)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    settings = DetectorSettings(max_new_tokens=args.new_tokens, max_side=args.side)
    det = VideoDetector.from_parts("llava", model, processor, settings, args.device, profile="full",
                                   name="llava-next-video-7b-config-random")
    results = []
    for size in sizes:
        result = time_generate(det, size, args.frames, args.side, args.new_tokens, args.repeats)
        results.append(result)
        if "windows_per_s" in result:
            print(f"batch {size}: {result['windows_per_s']:.2f} windows/s", file=sys.stderr)
    return {
        "mode": "gpu-full-config", "device": torch.cuda.get_device_name(0), "dtype": "bfloat16",
        "model": "LLaVA-NeXT-Video-7B architecture, random weights", "random_weights": True,
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3), "build_s": round(build_s, 1),
        "frames": args.frames, "side": args.side, "new_tokens": args.new_tokens, "repeats": args.repeats,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON report."""
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    report = run_gpu(args) if args.device.startswith("cuda") else run_cpu(args)
    report["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    report["versions"] = versions()
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
