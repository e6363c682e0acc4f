"""Benchmark of the features reader: the table dataset vs one ``.npy`` file per video.

::

    python -m bench.feature_reader [--videos 2000] [--workers 2] [--batch 32] [--epochs 2]

Both readers serve the same videos (float32 ``[T, 1024]``, T from 8 to 40 frames, random values)
in a shuffled order through a ``DataLoader`` with the same padding collate:

* ``npy``: the way training scripts read pre-extracted features today, ``np.load`` of
  ``<dir>/<video_id>.npy`` per sample (files written by ``vw export-features``);
* ``table``: :class:`tables.feature_dataset.FrameFeatureDataset` on the warehouse table, one
  Lance ``take`` per batch.

Each reader runs ``--epochs`` epochs with persistent workers; samples/s is reported per epoch
(the first includes worker start-up). Files and table are freshly written, so both read from
the page cache. Peak RSS of the main process and of the worker processes is reported.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.video_embedding import _loadavg, _logger
from tables.feature_dataset import FrameFeatureDataset, pad_collate
from udfs.arrays import steps_to_arrow

OUT_DIR = Path(__file__).resolve().parent / "out" / "feature_reader"
DIM = 1024


class NpyDataset:
    """The baseline: one ``np.load`` per sample from a folder of ``<video_id>.npy`` files."""

    def __init__(self, folder: Path, video_ids: Sequence[str]) -> None:
        self.folder = folder
        self.video_ids = list(video_ids)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        vid = self.video_ids[i]
        return {"video_id": vid, "features": torch.from_numpy(np.load(self.folder / f"{vid}.npy"))}


def build(root: Path, videos: int, seed: int) -> tuple[str, Path, list[str]]:
    """Write the table and the .npy files (same values); returns (db, npy folder, ids)."""
    from tables.connection import connect

    if root.exists():
        shutil.rmtree(root)
    npy = root / "npy"
    npy.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ids = [f"{1_000_000_000 + i}" for i in range(videos)]
    conn = connect(str(root / "db"))
    table = None
    for start in range(0, videos, 250):
        part = ids[start : start + 250]
        feats = [rng.standard_normal((int(rng.integers(8, 41)), DIM)).astype(np.float32) for _ in part]
        for vid, f in zip(part, feats, strict=True):
            np.save(npy / f"{vid}.npy", f)
        data = pa.table({"video_id": part, "uri": [f"/videos/{v}.mp4" for v in part],
                         "split": ["train"] * len(part), "frame_features": steps_to_arrow(feats, DIM)})
        if table is None:
            table = conn.create_table("videos", data=data)
        else:
            table.add(data)
    return str(root / "db"), npy, ids


def run_loader(loader: Any, epochs: int, set_epoch: Any) -> list[dict[str, float]]:
    """Samples/s per epoch (reading every batch and touching its tensors)."""
    out = []
    for epoch in range(epochs):
        set_epoch(epoch)
        start = time.perf_counter()
        n = 0
        checksum = 0.0
        for batch in loader:
            n += len(batch["video_id"])
            checksum += float(batch["features"][:, 0, 0].sum())
        seconds = time.perf_counter() - start
        out.append({"epoch": epoch, "samples": n, "seconds": round(seconds, 3),
                    "samples_per_s": round(n / seconds, 1)})
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the JSON result."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    log = _logger()
    log(f"writing {args.videos} videos as a table and as .npy files")
    db, npy, ids = build(OUT_DIR, args.videos, args.seed)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
                              "videos": args.videos, "dim": DIM, "batch": args.batch, "workers": args.workers,
                              "npy_bytes": sum(f.stat().st_size for f in npy.iterdir())}
    log("npy baseline")
    gen = torch.Generator().manual_seed(args.seed)
    base = NpyDataset(npy, ids)
    npy_loader = DataLoader(base, batch_size=args.batch, sampler=RandomSampler(base, generator=gen),
                            num_workers=args.workers, collate_fn=pad_collate,
                            persistent_workers=args.workers > 0,
                            multiprocessing_context="forkserver" if args.workers else None)
    result["npy"] = run_loader(npy_loader, args.epochs, lambda e: gen.manual_seed(args.seed + e))
    del npy_loader
    log("table reader")
    ds = FrameFeatureDataset(db)
    loader = ds.loader(batch_size=args.batch, num_workers=args.workers, seed=args.seed)
    result["table"] = run_loader(loader, args.epochs, loader.sampler.set_epoch)
    del loader
    steady = {k: float(np.median([e["samples_per_s"] for e in result[k][1:] or result[k]])) for k in ("npy", "table")}
    result["steady_samples_per_s"] = steady  # median over the epochs after the first (workers started)
    result["speedup_steady"] = round(steady["table"] / steady["npy"], 2)
    result["peak_rss_mib"] = {
        "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    result["machine"]["loadavg_end"] = _loadavg()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
