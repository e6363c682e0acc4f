"""Benchmark of the ``video_latents`` stage and of reading its latents for training.

``python -m bench.video_latents`` prints one JSON document:

``stage``
    clips/s of :class:`udfs.video_latents.VideoLatents` called as geneva's workers call it
    (pyarrow in, the Arrow struct out) on generated H.264 videos: end to end, decoding and
    preparing the frames alone, and the VAE alone. ``--profile tiny`` (default) is the small
    random-weight VAE; ``--full`` builds the CogVideoX-2b VAE from its config with random
    weights (the GPU run: throughput does not depend on weight values) at 720x480x49.
``storage``
    100 (``--rows``) CogVideoX-size latents (``[1, 16, 13, 60, 90]`` float16, plain and flipped,
    2.2 MB each) stored four ways: the stage's layout (a Lance blob column holding each video's
    ``.npz``), inline binary cells of a struct column stored uncompressed, the same with Lance's
    default compression, and the seed's ``.npz`` files; bytes per clip on disk and reader
    samples/s (random order, batches of 4, each sample a float16 tensor ready for the training
    loop), side by side, every reader from the page cache.

Videos, tables and files go to a temporary folder (removed after) unless ``--work`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

FULL_SHAPE = (1, 16, 13, 60, 90)  # CogVideoX-2b VAE, 49 frames at 720x480


def make_videos(folder: Path, n: int, seconds: float, width: int, height: int, fps: int = 25) -> list[str]:
    """``n`` H.264 videos of moving gradients (torchcodec's encoder), distinct per video."""
    import torch
    from torchcodec.encoders import VideoEncoder

    folder.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * fps)
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    paths = []
    for v in range(n):
        t = torch.arange(frames).view(frames, 1, 1) / frames
        shape = (frames, height, width)
        r = ((x + t + v * 0.1) % 1).expand(shape)
        g = ((y + 0.5 * t) % 1).expand(shape)
        b = (((x + y) / 2 + v * 0.05) % 1).expand(frames, height, width)
        data = (torch.stack([r, g, b], dim=1) * 255).to(torch.uint8)
        path = folder / f"v{v:03d}.mp4"
        VideoEncoder(data.contiguous(), frame_rate=fps).to_file(str(path), codec="libx264", pixel_format="yuv420p",
                                                                 crf=23, preset="veryfast")
        paths.append(str(path))
    return paths


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_stage(paths: Sequence[str], profile: str, settings: Any, batch: int, device: str,
                full: bool = False) -> dict[str, Any]:
    """Clips/s of the stage end to end, of decoding + preparing alone and of the VAE alone."""
    import torch

    from udfs.video_latents import VaeEncoder, VideoLatents

    udf = VideoLatents(profile, None, settings, batch, device)
    if full:  # CogVideoX-2b's VAE from its config (the class defaults), random weights
        from diffusers import AutoencoderKLCogVideoX

        encoder = VaeEncoder(profile, None, device)
        vae = AutoencoderKLCogVideoX().eval().requires_grad_(False)
        if device.startswith("cuda"):
            vae = vae.to(device=device, dtype=torch.bfloat16)
            vae.enable_tiling()
            vae.enable_slicing()
        encoder._vae = vae
        udf._encoder = encoder
    none = pa.array([None] * len(paths), pa.float64())
    ids = pa.array([Path(p).stem for p in paths])
    uris = pa.array(list(paths))
    per_clip = 2 if settings.augment else 1
    udf(ids[:1], uris[:1], none[:1], none[:1])  # warm-up: model load, first call
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    out, seconds = _timed(lambda: udf(ids, uris, none, none))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    prepared, prep_s = _timed(lambda: [udf.prepare(p, Path(p).stem, None, None) for p in paths])
    clips = [c for p in prepared for c in p.clips]
    assert udf._encoder is not None
    _, model_s = _timed(lambda: udf._encoder.encode_adaptive(clips, batch))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    from udfs.video_latents import clip_latents, npz_arrays

    cell = out.to_pylist()[0]
    shape = list(clip_latents(npz_arrays(cell), 0, False).shape)
    n = len(paths)
    return {
        "videos": n, "clips_per_video": per_clip, "clip_latent_shape": shape, "device": device, "profile": profile,
        "full_size_config": full, "batch": batch,
        "size": f"{settings.width}x{settings.height}", "frames": settings.frames, "fps": settings.fps,
        "end_to_end_clips_per_s": round(n * per_clip / seconds, 3),
        "decode_prepare_clips_per_s": round(n * per_clip / prep_s, 3),
        "vae_clips_per_s": round(len(clips) / model_s, 3),
        "stored_bytes_per_video": len(cell),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None,
    }


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _struct_type(compressed: bool) -> pa.DataType:
    raw = None if compressed else {"lance-encoding:compression": "none"}
    return pa.struct([pa.field("latents", pa.large_binary(), metadata=raw),
                      pa.field("flipped", pa.large_binary(), metadata=raw)])


def _views(column: pa.Array) -> list[np.ndarray]:
    """float16 views of a ``large_binary`` array's cells (no copy), reshaped to :data:`FULL_SHAPE`."""
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2]
    return [np.frombuffer(data, np.uint8, count=int(offsets[i + 1] - offsets[i]), offset=int(offsets[i]))
            .view(np.float16).reshape(FULL_SHAPE) for i in range(len(column))]


def bench_storage(folder: Path, rows: int, batch: int, seed: int = 0) -> dict[str, Any]:
    """Bytes per clip and reader samples/s of four layouts (see the module docstring)."""
    import lance
    import torch

    from udfs.video_latents import BLOB_METADATA, LatentSettings, clip_latents, npz_arrays, npz_of

    rng = np.random.default_rng(seed)
    n_values = int(np.prod(FULL_SHAPE))
    settings = LatentSettings()
    plain = [rng.standard_normal(n_values, dtype=np.float32).astype(np.float16).reshape(FULL_SHAPE)
             for _ in range(rows)]
    flipped = [rng.standard_normal(n_values, dtype=np.float32).astype(np.float16).reshape(FULL_SHAPE)
               for _ in range(rows)]
    ids = pa.array([f"video{i}" for i in range(rows)])
    npz = [npz_of(p, f, np.arange(49) / 8, b"\x89PNG" + bytes(1000), settings, 1.15258426)
           for p, f in zip(plain, flipped, strict=True)]
    blob_field = pa.field("video_latents", pa.large_binary(), metadata=BLOB_METADATA)
    lance.write_dataset(pa.table({"video_id": ids, "video_latents": pa.array(npz, pa.large_binary())},
                                 schema=pa.schema([pa.field("video_id", pa.string()), blob_field])),
                        str(folder / "blob.lance"))
    for name, compressed in (("inline", False), ("compressed", True)):
        cells = pa.array([{"latents": p.tobytes(), "flipped": f.tobytes()}
                          for p, f in zip(plain, flipped, strict=True)], _struct_type(compressed))
        lance.write_dataset(pa.table({"video_id": ids, "video_latents": cells}), str(folder / f"{name}.lance"))
    npz_dir = folder / "npz"
    npz_dir.mkdir()
    for i, data in enumerate(npz):
        (npz_dir / f"video{i}.npz").write_bytes(data)
    del plain, flipped, npz

    order = np.random.default_rng(seed + 1).permutation(rows)
    batches = [sorted(order[i:i + batch].tolist()) for i in range(0, rows, batch)]
    sets = {name: lance.dataset(str(folder / f"{name}.lance")) for name in ("blob", "inline", "compressed")}

    def read_blob() -> int:  # the stage's layout, read as the training reader reads it
        n = 0
        for b in batches:
            for blob in sets["blob"].take_blobs("video_latents", indices=b):
                arrays = npz_arrays(blob)
                for side in (False, True):
                    torch.from_numpy(clip_latents(arrays, 0, side).copy())
                    n += 1
        return n

    def read_inline(name: str) -> int:  # Arrow buffers viewed as arrays, one copy into each tensor
        n = 0
        for b in batches:
            cells = sets[name].take(b, columns=["video_latents"]).column(0).combine_chunks()
            for field in ("latents", "flipped"):
                for array in _views(cells.field(field)):
                    torch.from_numpy(array[0].copy())
                    n += 1
        return n

    def read_npz() -> int:
        n = 0
        for b in batches:
            for i in b:
                with np.load(npz_dir / f"video{i}.npz") as z:  # how a script reads the seed's files
                    torch.from_numpy(z["latents"])
                    torch.from_numpy(z["latents_flipped"])
                n += 2
        return n

    out: dict[str, Any] = {"rows": rows, "clip_shape": list(FULL_SHAPE), "dtype": "float16", "batch": batch,
                           "samples_per_row": 2}
    for name, fn, path in (("blob_npz", read_blob, "blob.lance"), ("inline", lambda: read_inline("inline"),
                                                                    "inline.lance"),
                           ("inline_compressed", lambda: read_inline("compressed"), "compressed.lance"),
                           ("npz_files", read_npz, "npz")):
        fn()  # warm the page cache: every reader then reads from memory, as an epoch after the first does
        samples, seconds = _timed(fn)
        out[name] = {"samples_per_s": round(samples / seconds, 1),
                     "bytes_per_clip": _folder_bytes(folder / path) // (rows * 2)}
    base = out["blob_npz"]["samples_per_s"]
    out["ratios_vs_blob_npz"] = {k: round(out[k]["samples_per_s"] / base, 2)
                                 for k in ("inline", "inline_compressed", "npz_files")}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its JSON document."""
    from udfs.video_latents import LatentSettings, parse_size

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each generated video")
    p.add_argument("--size", default="256x160", help="training size (the stage's LATENT_SIZE)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip (4k+1)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--full", action="store_true", help="the CogVideoX-2b VAE config at 720x480x49 (GPU)")
    p.add_argument("--rows", type=int, default=100, help="rows of the storage comparison (0: skip it)")
    p.add_argument("--no-stage", action="store_true", help="only the storage comparison")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="vw-bench-latents-"))
    doc: dict[str, Any] = {"benchmark": "video_latents", "load_avg_1m": round(os.getloadavg()[0], 2),
                           "cpus": os.cpu_count()}
    try:
        if not args.no_stage:
            width, height = (720, 480) if args.full else parse_size(args.size)
            frames = 49 if args.full else args.frames
            settings = LatentSettings(fps=8, width=width, height=height, frames=frames, clips=1, augment=True)
            paths = make_videos(work / "videos", args.videos, max(args.seconds, frames / 8 + 0.5), 1280 if args.full
                                else 320, 720 if args.full else 240)
            doc["stage"] = bench_stage(paths, "tiny", settings, args.batch, args.device, full=args.full)
        if args.rows:
            folder = work / "storage"
            folder.mkdir(parents=True, exist_ok=True)
            doc["storage"] = bench_storage(folder, args.rows, 4)
        doc["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
