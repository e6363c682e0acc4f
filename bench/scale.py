"""Cost curves: what ingest, a backfill, `vw status`, the windows table, events, `vw index`, search
and the feature reader cost as the warehouse grows, with the framework's overhead per row beside
the UDF's own cost.

Warehouses of growing size are built from small generated clips (2 s at 128x96, 10 fps: decoding is
cheap, so the framework's own costs show); the files are copies of 20 distinct clips (copies, not
links: each file is probed on its own). A warm-up at 20 rows runs first and is not reported (imports,
the first connection, the models' first load). At each size ``N`` (one fresh warehouse per size):

``ingest``        ``tables.ingest.ingest`` of the folder (probing included): files/s
``status``        ``jobs.status.warehouse_status`` (what ``vw status`` reads)
``windows``       ``tables.windows.refresh_windows`` (4 s windows, 2 s apart: one window per clip)
``backfill``      ``run_backfill(frame_features, profile tiny)`` through geneva on the warm local Ray
                  (started before the clock), rows/s
``udf``           the same UDF class called in this process on the same rows, in batches of 8: the
                  UDF's own cost; ``backfill / udf`` is geneva's overhead factor
``reader``        ``FrameFeatureDataset`` over the filled column, one pass, batch 32, no workers
``events``        ``write_events`` of 5 events per video (``N x 5`` rows) and ``ensure_event_indexes``
``events_query``  an events filter (one model and label) counted, with the scalar indexes
``events_refresh`` ``vw events --refresh`` (``refresh_detection_events``) after a detector column is
                  filled on ``windows`` (2 detected events per window, in the cells the detector UDF
                  writes, added with Lance's merge: the detector's own cost through geneva is the
                  backfill's, measured above); ``events_refresh_again`` the same refresh with nothing
                  changed (what every later refresh costs)
``index``         ``vw index --column frame_features``: the ``frames`` table (2 frames per video: 2 s at
                  1 fps) and its vector index from 256 frames on, without the recall measurement
``search_p50``, ``search_p95``  ``search(video_id=..., column="frame_features")`` over 20 stored videos
``search_filtered_p50``, ``search_filtered_p95``  the same with a filter keeping 1% of the videos
``clip_reader``   ``ClipDataset`` (4 frames uniformly over each video, 64 px short side, batch 32, no
                  workers): one pass, decoding every video

Sizes: 100, 1,000 and 10,000 rows for ingest, status, windows and events; 100 and 1,000 for the
backfill, the in-process UDF, the readers, the index and search (10,000 with ``--full``; with
``VW_RUN_SLOW=1`` also 100,000 rows for the tables users make that large: videos, windows, events).
``--sizes`` runs chosen sizes only (e.g. ``--sizes 100000``). Prints one
JSON document (seconds per step and size, rows/s, the slope of each curve on log-log axes: 1 is
linear, clearly above 1 is super-linear) and draws the curves to ``--png``. About 5 minutes on 2
cores by default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import emit

CLIPS = 20
BASE_SIZES = [100, 1_000, 10_000]
BACKFILL_SIZES = [100, 1_000]


def _clips(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(CLIPS):
        path = folder / f"clip{i:02d}.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=128x96:rate=10:duration=2", "-vf", f"hue=h={i * 17}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
        out.append(path)
    return out


def _videos(folder: Path, clips: list[Path], n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copyfile(clips[i % len(clips)], folder / f"v{i:06d}.mp4")
    return folder


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _udf_in_process(conn: Any) -> float:
    """Seconds for the frame-features UDF class over every row, called here in batches of 8."""
    from tables.connection import open_videos
    from udfs.frame_features import FrameFeatures

    table = open_videos(conn, create=False).to_lance().to_table(columns=["video_id", "uri", "start_s", "end_s"])
    udf = FrameFeatures(profile="tiny")
    udf(*[table.column(c).slice(0, 1).combine_chunks() for c in table.column_names])  # load the model first
    start = time.perf_counter()
    for i in range(0, table.num_rows, 8):
        part = table.slice(i, 8)
        udf(*[part.column(c).combine_chunks() for c in part.column_names])
    return time.perf_counter() - start


def _reader(db: str) -> float:
    from tables.feature_dataset import FrameFeatureDataset

    ds = FrameFeatureDataset(db)
    start = time.perf_counter()
    for _ in ds.loader(batch_size=32, num_workers=0, seed=0):
        pass
    return time.perf_counter() - start


def _clip_reader(db: str) -> float:
    from tables.clip_dataset import ClipDataset

    ds = ClipDataset(db, num_frames=4, resize_short_side=64, shuffle=False)
    start = time.perf_counter()
    for _ in ds.loader(batch_size=32, num_workers=0):
        pass
    return time.perf_counter() - start


def _fill_detections(conn: Any) -> None:
    """A ``detections_qwen`` column on ``windows`` as the detector UDF fills it: 2 events per window."""
    import lance
    import pyarrow as pa

    from tables.windows import open_windows
    from udfs.detection_parser import parse_answer
    from udfs.detections import DETECTION_TYPE, column_metadata, detection_cell, detections_spec

    windows = open_windows(conn)
    ids = windows.to_lance().to_table(columns=["window_id"]).column(0)
    labels = ("Goal", "Foul", "Corner", "Shots on target", "Offside")
    cells = [detection_cell(parse_answer(json.dumps([
        {"label": labels[i % 5], "team": "home", "confidence": 0.9, "details": "from close range"},
        {"label": labels[(i + 2) % 5], "team": "away", "confidence": 0.4, "details": "near the box"}])))
        for i in range(len(ids))]
    meta = column_metadata(detections_spec("qwen", "tiny"))
    field = pa.field("detections_qwen", DETECTION_TYPE, metadata=meta)
    new = pa.Table.from_arrays([ids, pa.array(cells, type=DETECTION_TYPE)],
                               schema=pa.schema([windows.schema.field("window_id"), field]))
    lance.dataset(windows.to_lance().uri).merge(new, left_on="window_id")


def _events(conn: Any, n: int) -> int:
    """Write 5 events per video of a warehouse of ``n`` videos and build / refresh their indexes."""
    from tables.events import Event, ensure_event_indexes, open_events, write_events

    labels = ("Goal", "Foul", "Corner", "Shots on target", "Offside")
    events = [Event(f"v{i:06d}", "qwen" if j % 2 else "llava", 2.0 * j + 0.5, labels[(i + j) % 5],
                    confidence=0.1 + 0.15 * j) for i in range(n) for j in range(5)]
    table = open_events(conn)
    write_events(table, events)
    ensure_event_indexes(table)
    return len(events)


def measure(n: int, clips: list[Path], work: Path, with_backfill: bool) -> dict[str, float]:
    """Seconds per step for a fresh warehouse of ``n`` videos."""
    from jobs.backfill import BackfillOptions, run_backfill
    from jobs.event_jobs import refresh_detection_events
    from jobs.indexing import IndexOptions, run_index
    from jobs.status import warehouse_status
    from tables.connection import connect, open_videos
    from tables.events import open_events
    from tables.ingest import ingest
    from tables.search import search
    from tables.windows import WindowSettings, refresh_windows

    videos = _videos(work / f"videos-{n}", clips, n)
    db = str(work / f"db-{n}")
    conn = connect(db)
    out: dict[str, float] = {}
    out["ingest"], report = _timed(lambda: ingest(open_videos(conn), [str(videos)]))
    if report.inserted != n:
        raise RuntimeError(f"ingest of {n} files inserted {report.inserted}: {report.failures[:3]}")
    out["status"], _ = _timed(lambda: warehouse_status(conn))
    out["windows"], _ = _timed(lambda: refresh_windows(conn, WindowSettings(4.0, 2.0, 1.0)))
    out["events"], _ = _timed(lambda: _events(conn, n))
    events = open_events(conn, create=False)
    out["events_query"], _ = _timed(lambda: events.count_rows("model = 'qwen' AND label = 'Goal'"))
    _fill_detections(conn)
    out["events_refresh"], reports = _timed(lambda: refresh_detection_events(conn))
    if reports[0].events != 2 * n:
        raise RuntimeError(f"the events refresh of {n} windows wrote {reports[0].events} events, not {2 * n}")
    out["events_refresh_again"], _ = _timed(lambda: refresh_detection_events(conn))
    if with_backfill:
        out["backfill"], reports = _timed(lambda: run_backfill(conn, ["frame_features"],
                                                               BackfillOptions(profile="tiny"), log=lambda m: None))
        if reports[0].filled_after != n:
            raise RuntimeError(f"the backfill of {n} rows filled {reports[0].filled_after}")
        out["udf"] = _udf_in_process(conn)
        out["status_after_backfill"], _ = _timed(lambda: warehouse_status(conn))
        out["reader"] = _reader(db)
        out["clip_reader"] = _clip_reader(db)
        out["index"], _ = _timed(lambda: run_index(conn, "videos", "frame_features",
                                                   IndexOptions(min_rows=256, measure=False), log=lambda m: None))
        ids = [f"v{i:06d}" for i in range(0, n, max(1, n // 20))][:20]
        times = [_timed(lambda v=v: search(conn, video_id=v, column="frame_features", k=10))[0] for v in ids]
        out["search_p50"], out["search_p95"] = (float(t) for t in np.percentile(times, [50, 95]))
        one_percent = f"video_id < 'v{max(1, n // 100):06d}'"
        times = [_timed(lambda v=v: search(conn, video_id=v, column="frame_features", k=10, where=one_percent))[0]
                 for v in ids]
        out["search_filtered_p50"], out["search_filtered_p95"] = (float(t) for t in np.percentile(times, [50, 95]))
    shutil.rmtree(videos)
    return out


def slopes(results: dict[int, dict[str, float]]) -> dict[str, float]:
    """Per step, the slope of log(seconds) against log(rows) (least squares over the sizes it ran at)."""
    steps = sorted({s for r in results.values() for s in r})
    out = {}
    for step in steps:
        points = [(n, r[step]) for n, r in sorted(results.items()) if step in r and r[step] > 0]
        if len(points) >= 2:
            x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            out[step] = round(float(np.polyfit(x, y, 1)[0]), 2)
    return out


def draw(results: dict[int, dict[str, float]], slope: dict[str, float], path: Path) -> None:
    """Seconds against rows, log-log, one curve per step, its slope in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5.5))
    colours = plt.get_cmap("tab20")
    for i, (step, s) in enumerate(slope.items()):
        points = [(n, r[step]) for n, r in sorted(results.items()) if step in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="osD^v"[i % 5], color=colours(i % 20),
                label=f"{step} (slope {s:g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("seconds")
    ax.set_title("video-warehouse cost curves (slope 1 = linear)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Run the sizes, print the JSON and draw the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also backfill and read 10,000 rows")
    parser.add_argument("--png", type=Path, default=Path("bench/out/scale.png"), help="where the curves go")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="run these sizes only")
    args = parser.parse_args()
    sizes = args.sizes or list(BASE_SIZES) + ([100_000] if os.environ.get("VW_RUN_SLOW") == "1" else [])
    backfill_sizes = set(BACKFILL_SIZES) | ({10_000} if args.full else set()) \
        | ({10_000} if os.environ.get("VW_RUN_SLOW") == "1" else set())
    work = Path(tempfile.mkdtemp(prefix="vwscale"))
    os.environ["VW_RAY_DIR"] = str(Path(tempfile.mkdtemp(prefix="vwsr", dir="/tmp")))
    os.environ.setdefault("VW_LOCAL_RAY", "warm")
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg(), "sizes": sizes,
                              "backfill_sizes": sorted(backfill_sizes)}
    from jobs.console import quiet_console
    from jobs.local_ray import ensure_head, stop_head

    log = Path("bench/out/scale.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        clips = _clips(work / "clips")
        # geneva's, Ray's and Lance's output goes to the log; this prints only its JSON
        # stdout carries the JSON only: the progress lines go to stderr
        with contextlib.redirect_stdout(sys.stderr), quiet_console(log) as display:
            if os.environ["VW_LOCAL_RAY"] == "warm":
                report["warm_head_start_s"] = round(_timed(lambda: ensure_head(log=display.echo))[0], 2)
            measure(20, clips, work, True)  # warm-up, not reported
            results = {}
            for n in sizes:
                display.echo(f"scale: {n} rows")
                results[n] = measure(n, clips, work, n in backfill_sizes)
    finally:
        stop_head()
        shutil.rmtree(work, ignore_errors=True)
    slope = slopes(results)
    report["seconds"] = {str(n): {k: round(v, 3) for k, v in r.items()} for n, r in results.items()}
    report["rows_per_s"] = {str(n): {k: round(n / v, 1) for k, v in r.items() if v > 0} for n, r in results.items()}
    report["geneva_overhead_x"] = {str(n): round(r["backfill"] / r["udf"], 2)
                                   for n, r in results.items() if "backfill" in r and r["udf"] > 0}
    report["slopes"] = slope
    report["loadavg_after"] = os.getloadavg()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    draw(results, slope, args.png)
    report["png"], report["log"] = str(args.png), str(log)
    emit(report, args.out)


if __name__ == "__main__":
    main()
