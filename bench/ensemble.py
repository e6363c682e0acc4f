"""Soccer ensemble analysis at scale (``python -m bench.ensemble [--halves 1000 --events 3000]``; prints JSON).

Setup (not measured): a fresh warehouse whose ``events`` table holds, per match half (one video),
``--truth`` ground-truth events of the 17 SoccerNet-v2 classes and ``--events`` events of each of
two models: detections scattered around the ground truth (a few per annotation, mostly the right
class, a few seconds off) plus noise at random times and classes. Rows are written with pyarrow in
large batches and carry the same deterministic event ids as :func:`tables.events.event_id`.

Measured: one :func:`jobs.ensemble.run_ensemble` (read from ``events``, cross-model matching,
fusion with NMS, P/R/F1 and tight / loose average-mAP for both models and the ensemble, writing
the fused events and the result tables), in a child process so that its peak RSS is its own; the
time of each phase, the total, and the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs.ensemble.options import SOCCERNET_V2_CLASSES
from tables.events import EVENTS_SCHEMA, GROUND_TRUTH, event_id, open_events

MODELS = ("qwen", "llava")
HALF_S = 2900.0  # a little over 48 minutes
#: Relative frequency of the SoccerNet-v2 classes in a half (roughly as in the real annotations).
CLASS_WEIGHTS = np.array([0.1, 2, 0.5, 3, 2, 4, 5, 8, 25, 20, 12, 10, 3, 5, 2, 0.1, 0.1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--halves", type=int, default=1000, help="match halves (videos)")
    p.add_argument("--events", type=int, default=3000, help="events per model and half")
    p.add_argument("--truth", type=int, default=100, help="ground-truth events per half")
    p.add_argument("--tolerance", type=float, default=3.0, help="matching tolerance in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", default=None, help="warehouse folder (default: a temporary one, removed after)")
    p.add_argument("--analyse", default=None, help=argparse.SUPPRESS)  # child process: analyse this warehouse
    return p.parse_args(argv)


def _ids(video: str, model: str, times: np.ndarray, labels: Sequence[str]) -> list[str]:
    run = None
    return [event_id(video, model, run, t, lab, None) for t, lab in zip(times.tolist(), labels, strict=True)]


def half_tables(rng: np.random.Generator, video: str, game: str, half: int, n_events: int,
                n_truth: int) -> list[pa.Table]:
    """Arrow tables (``EVENTS_SCHEMA``) of one half: its ground truth and each model's events."""
    classes = np.array(SOCCERNET_V2_CLASSES)
    probs = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
    gt_t = np.round(np.sort(rng.uniform(0, HALF_S - 60, n_truth)), 3)
    gt_c = rng.choice(len(classes), n_truth, p=probs)
    visible = rng.random(n_truth) < 0.85
    meta = [json.dumps({"game": game, "half": half, "visibility": "visible" if v else "not shown"})
            for v in visible]
    tables = [_table(video, GROUND_TRUTH, gt_t, classes[gt_c].tolist(), None, meta)]
    for m, hit_rate in zip(MODELS, (0.8, 0.65), strict=True):
        # detections near the ground truth: several per annotation that is found
        found = np.flatnonzero(rng.random(n_truth) < hit_rate)
        per = rng.integers(1, 8, found.size)
        src = np.repeat(found, per)
        n_near = min(src.size, n_events // 2)
        src = src[:n_near]
        near_t = gt_t[src] + rng.normal(0, 1.5, n_near)
        near_c = np.where(rng.random(n_near) < 0.85, gt_c[src], rng.choice(len(classes), n_near, p=probs))
        near_conf = np.clip(rng.normal(0.7, 0.15, n_near), 0.01, 1.0)
        n_noise = n_events - n_near
        noise_t = rng.uniform(0, HALF_S, n_noise)
        noise_c = rng.choice(len(classes), n_noise, p=probs)
        noise_conf = np.clip(rng.beta(2, 5, n_noise), 0.01, 1.0)
        t = np.round(np.clip(np.concatenate([near_t, noise_t]), 0, HALF_S), 3)
        c = np.concatenate([near_c, noise_c])
        conf = np.round(np.concatenate([near_conf, noise_conf]), 4)
        # one event per (time, class): the event id is a hash of them
        _, keep = np.unique(np.stack([t, c.astype(np.float64)]), axis=1, return_index=True)
        keep.sort()
        tables.append(_table(video, m, t[keep], classes[c[keep]].tolist(), conf[keep], None))
    return tables


def _table(video: str, model: str, times: np.ndarray, labels: list[str], conf: np.ndarray | None,
           metadata: list[str] | None) -> pa.Table:
    n = len(labels)
    nulls_s = pa.nulls(n, pa.string())
    return pa.table({
        "event_id": pa.array(_ids(video, model, times, labels), pa.string()),
        "video_id": pa.array([video] * n, pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "run_id": nulls_s,
        "time_s": pa.array(times, pa.float64()),
        "label": pa.array(labels, pa.string()),
        "team": nulls_s,
        "confidence": pa.nulls(n, pa.float64()) if conf is None else pa.array(conf, pa.float64()),
        "details": nulls_s,
        "raw": nulls_s,
        "window_id": pa.nulls(n, pa.int64()),
        "metadata": nulls_s if metadata is None else pa.array(metadata, pa.string()),
        "created_at": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * n, EVENTS_SCHEMA.field("created_at").type),
    }, schema=EVENTS_SCHEMA)


def build_warehouse(path: str, halves: int, n_events: int, n_truth: int, seed: int) -> dict[str, Any]:
    """Write the synthetic events into a new warehouse at ``path``; returns row counts and time."""
    from tables.connection import connect

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    table = open_events(connect(path))
    batch: list[pa.Table] = []
    rows = 0
    for h in range(halves):
        game = f"bench/2020-2021/game {h // 2:04d}"
        batch.extend(half_tables(rng, f"{game}/{h % 2 + 1}", game, h % 2 + 1, n_events, n_truth))
        if len(batch) >= 300 or h == halves - 1:
            data = pa.concat_tables(batch)
            table.add(data)
            rows += data.num_rows
            batch = []
    return {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}


def analyse(path: str, tolerance: float) -> dict[str, Any]:
    """One full ensemble run on the warehouse at ``path``: timings, sizes and peak RSS."""
    from jobs.ensemble import EnsembleOptions, run_ensemble
    from tables.connection import connect

    start = time.perf_counter()
    result = run_ensemble(connect(path), EnsembleOptions(models=list(MODELS), tolerance_s=tolerance,
                                                         run_id="bench"))
    total = time.perf_counter() - start
    overall = {r.model: {"f1": round(r.f1 or 0.0, 4), "ap_tight": round(r.ap_tight or 0.0, 4),
                         "ap_loose": round(r.ap_loose or 0.0, 4)}
               for r in result.metrics if r.label == "__all__"}
    return {
        "total_s": round(total, 2),
        "phases_s": result.timings_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "events": result.event_counts(),
        "ground_truth_events": len(result.truth_frame),
        "categories": result.category_counts(),
        "fused_events": len(result.fused),
        "written": result.written,
        "overall": overall,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Build the warehouse, analyse it in a child process, print the JSON report."""
    args = parse_args(argv)
    if args.analyse:
        print(json.dumps(analyse(args.analyse, args.tolerance)))
        return
    if args.halves < 1 or args.events < 1 or args.truth < 1:
        raise SystemExit("--halves, --events and --truth must be positive")
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        path = args.db or tmp
        setup = build_warehouse(path, args.halves, args.events, args.truth, args.seed)
        os.sync()  # the setup's writes reach the disk before the analysis is timed
        load_before = os.getloadavg()
        child = subprocess.run([sys.executable, "-m", "bench.ensemble", "--analyse", path, "--tolerance",
                                str(args.tolerance)], capture_output=True, text=True, check=False,
                               cwd=Path(__file__).resolve().parent.parent)
        load_after = os.getloadavg()
        if child.returncode != 0:
            raise SystemExit(f"the analysis failed:\n{child.stderr}")
        report = {
            "config": {"halves": args.halves, "events_per_model_and_half": args.events,
                       "truth_per_half": args.truth, "models": list(MODELS), "classes": len(SOCCERNET_V2_CLASSES),
                       "tolerance_s": args.tolerance, "seed": args.seed},
            "setup": setup,
            "analysis": json.loads(child.stdout.strip().splitlines()[-1]),
            "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in load_after]},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
