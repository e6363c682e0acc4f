"""Frame-sampling benchmark: ``udfs.decode.decode`` against OpenCV and PyAV baselines.

Generates synthetic H.264 files (ffmpeg ``testsrc2``; 240p and 720p, 60 s and 600 s, a keyframe
every 25 or 250 frames, cached under ``bench/out/decode/``) and times, for a uniform-64 plan and
a 1 fps plan:

``ours``             ``udfs.decode.decode(path, plan)`` (method ``auto``)
``opencv_seek``      ``cv2.VideoCapture``: ``set(CAP_PROP_POS_FRAMES, i)`` + ``read()`` per frame
``opencv_grab``      ``grab()`` every frame up to the last wanted one, ``retrieve()`` the wanted
``pyav_seek``        PyAV: seek to each target, decode forward to the frame displayed at it
``pyav_sequential``  PyAV: decode from the start, convert the wanted frames

Every method returns full-size RGB (BGR for OpenCV) frames of the same instants. Each timing is
the minimum over ``--repeats`` interleaved rounds; a method whose run exceeds ``--slow-s`` is not
repeated, and the per-frame seeking baselines stop at ``--cap-s`` (their time is then a lower
bound, listed in ``capped_lower_bounds``).
Progress goes to stderr; stdout gets one JSON document.

Usage: ``python -m bench.decode [--quick] [--repeats N] [--variants]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from udfs.decode import SamplingPlan, decode, plan_times, probe  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out" / "decode"
FPS = 25
SIZES = {"240p": (426, 240), "720p": (1280, 720)}
PLANS = {"uniform64": SamplingPlan.uniform(64), "fps1": SamplingPlan.every(1.0)}
BASELINES = ("opencv_seek", "opencv_grab", "pyav_seek", "pyav_sequential")


@dataclass(frozen=True)
class BenchFile:
    """One synthetic video of the matrix."""

    size: str
    seconds: int
    gop: int

    @property
    def name(self) -> str:
        return f"{self.size}_{self.seconds}s_gop{self.gop}.mp4"


def matrix(quick: bool) -> list[BenchFile]:
    """The files to benchmark: the full matrix, or a reduced one with ``quick``."""
    if quick:
        return [BenchFile(size, 60, gop) for size in SIZES for gop in (25, 250)]
    return [
        BenchFile(size, seconds, gop)
        for seconds in (60, 600)
        for size in SIZES
        for gop in (25, 250)
    ]


def ensure_video(spec: BenchFile, out_dir: Path = OUT_DIR) -> Path:
    """Generate ``spec`` with ffmpeg unless it is cached; returns its path."""
    path = out_dir / spec.name
    if path.exists():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = SIZES[spec.size]
    part = path.with_suffix(".part.mp4")
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={FPS}",
        "-t", str(spec.seconds), "-c:v", "libx264", "-preset", "superfast", "-crf", "23",
        "-g", str(spec.gop), "-keyint_min", str(spec.gop), "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", str(part),
    ]
    log(f"generating {spec.name} ...")
    subprocess.run(cmd, check=True)
    part.rename(path)
    return path


def log(message: str) -> None:
    """Progress to stderr (stdout is reserved for the JSON result)."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Methods. Each takes the path, the target times (s) and frame indices, returns frame count.


def run_ours(path: Path, plan: SamplingPlan, method: str = "auto") -> int:
    return int(decode(path, plan, method=method).data.shape[0])


class Capped(Exception):
    """A baseline ran past its time cap (its timing is then a lower bound)."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise Capped


def run_opencv_seek(path: Path, indices: np.ndarray, deadline: float | None = None) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    for index in indices:
        _check(deadline)
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise RuntimeError(f"OpenCV could not read frame {index} of {path}")
        frames.append(frame)
    cap.release()
    return len(frames)


def run_opencv_grab(path: Path, indices: np.ndarray) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    wanted = np.asarray(indices)
    frames, position, j = [], 0, 0
    while j < len(wanted):
        if not cap.grab():
            raise RuntimeError(f"OpenCV stopped at frame {position} of {path}")
        if position == wanted[j]:
            ok, frame = cap.retrieve()
            while j < len(wanted) and wanted[j] == position:
                frames.append(frame)
                j += 1
        position += 1
    cap.release()
    return len(frames)


def run_pyav_seek(path: Path, times: np.ndarray, deadline: float | None = None) -> int:
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for t in times:
            _check(deadline)
            container.seek(int(t / stream.time_base), stream=stream, backward=True)
            frames.append(_pyav_frame_at(container, stream, float(t)))
    return len(frames)


def _pyav_frame_at(container, stream, t: float):
    previous = None
    for frame in container.decode(stream):
        if frame.time > t + 1e-6:
            break
        previous = frame
    if previous is None:
        raise RuntimeError(f"PyAV found no frame at {t} s")
    return previous.to_ndarray(format="rgb24")


def run_pyav_sequential(path: Path, times: np.ndarray) -> int:
    import av

    frames, j, previous = [], 0, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            while j < len(times) and previous is not None and times[j] < frame.time - 1e-6:
                frames.append(previous.to_ndarray(format="rgb24"))
                j += 1
            if j >= len(times):
                break
            previous = frame
        while j < len(times) and previous is not None:
            frames.append(previous.to_ndarray(format="rgb24"))
            j += 1
    return len(frames)


# ------------------------------------------------------------------------------------------


def time_methods(
    methods: dict[str, Callable[[float | None], int]],
    expected: int,
    repeats: int,
    slow_s: float,
    cap_s: float,
    label: str,
) -> tuple[dict[str, float], list[str]]:
    """Minimum wall time in ms of each method over ``repeats`` rounds, and the capped methods.

    Rounds are interleaved (every method once per round), so changes in machine load hit all
    methods alike. A method whose run exceeds ``slow_s`` is not run again. Per-frame seeking
    baselines stop at ``cap_s``; their time is then a lower bound.
    """
    best = {name: float("inf") for name in methods}
    done: set[str] = set()
    capped: list[str] = []
    for _ in range(repeats):
        for name, fn in methods.items():
            if name in done:
                continue
            start = time.perf_counter()
            try:
                count = fn(start + cap_s)
            except Capped:
                count = expected
                capped.append(name)
            elapsed = time.perf_counter() - start
            if count != expected:
                raise RuntimeError(f"{name} returned {count} frames, expected {expected}")
            best[name] = min(best[name], elapsed)
            if elapsed > slow_s:
                done.add(name)
            log(f"  {label} {name}: {elapsed * 1000:.0f} ms{' (capped)' if name in capped else ''}")
    return {name: round(value * 1000, 1) for name, value in best.items()}, capped


def bench_row(
    path: Path, plan_name: str, repeats: int, slow_s: float, cap_s: float, variants: bool
) -> dict:
    """Time every method on one file and plan."""
    plan = PLANS[plan_name]
    info = probe(path)
    times = plan_times(plan, info)
    indices = np.floor(times * info.fps + 1e-6).astype(np.int64)
    methods: dict[str, Callable[[float | None], int]] = {
        "ours": lambda deadline: run_ours(path, plan),
        "opencv_seek": lambda deadline: run_opencv_seek(path, indices, deadline),
        "opencv_grab": lambda deadline: run_opencv_grab(path, indices),
        "pyav_seek": lambda deadline: run_pyav_seek(path, times, deadline),
        "pyav_sequential": lambda deadline: run_pyav_sequential(path, times),
    }
    if variants:
        methods["ours_seek"] = lambda deadline: run_ours(path, plan, "seek")
        methods["ours_sequential"] = lambda deadline: run_ours(path, plan, "sequential")
    ms, capped = time_methods(
        methods, len(times), repeats, slow_s, cap_s, f"{path.name} {plan_name}"
    )
    # A capped baseline took at least its cap: never the fastest.
    compared = {k: v for k, v in ms.items() if k == "ours" or (k in BASELINES and k not in capped)}
    fastest = min(compared, key=compared.get)
    return {
        "file": path.name,
        "plan": plan_name,
        "frames": len(times),
        "ms": ms,
        "fastest": fastest,
        "ours_over_fastest": round(ms["ours"] / compared[fastest], 3),
        "capped_lower_bounds": capped,
    }


def summarize(rows: list[dict]) -> dict:
    """Totals per method, ours vs the OpenCV seek approach, rows within 10 % of the fastest."""
    names = list(rows[0]["ms"]) if rows else []
    totals = {name: round(sum(row["ms"][name] for row in rows), 1) for name in names}
    within = [row for row in rows if row["ours_over_fastest"] <= 1.10]
    return {
        "totals_ms": totals,
        # A lower bound when some opencv_seek runs were capped.
        "speedup_ours_vs_opencv_seek": round(totals["opencv_seek"] / totals["ours"], 2),
        "rows_ours_within_10pct_of_fastest": f"{len(within)}/{len(rows)}",
        "rows_ours_fastest": sum(1 for row in rows if row["fastest"] == "ours"),
        "worst_ours_over_fastest": max((row["ours_over_fastest"] for row in rows), default=None),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 s files only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow-s", type=float, default=8.0,
                        help="do not repeat a method whose run takes longer than this")
    parser.add_argument("--cap-s", type=float, default=60.0,
                        help="stop a per-frame seeking baseline after this long (lower bound)")
    parser.add_argument("--variants", action="store_true",
                        help="also time ours with the method forced to seek / sequential")
    parser.add_argument("--only", default="", help="substring filter on file names")
    args = parser.parse_args(argv)

    specs = [spec for spec in matrix(args.quick) if args.only in spec.name]
    paths = [ensure_video(spec) for spec in specs]
    started = time.perf_counter()
    load_before = os.getloadavg()
    rows = [
        bench_row(path, plan_name, args.repeats, args.slow_s, args.cap_s, args.variants)
        for path in paths
        for plan_name in PLANS
    ]
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "repeats": args.repeats,
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
        **summarize(rows),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
