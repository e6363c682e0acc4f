"""Run every stage benchmark in sequence and collect one JSON report.

GPU mode (default) runs V-JEPA 2 clip embeddings (bench/gpu_video_embedding.py), DINOv2-large
frame features (bench/frame_features.py --device cuda --full-config) and the video-language
detectors (bench/detections.py --device cuda --full-config). ``--cpu`` runs each briefly in its
CPU mode (tiny models) to check the chain; ``--dry-run`` prints the commands only.

The report keeps each script's own JSON under ``runs.<name>.report`` and lifts the throughput,
GPU busy fraction and peak GPU memory figures found in it into ``runs.<name>.metrics``.

    python -m bench.gpu_all --out bench/out/gpu_all.json

This needs a fully set-up machine (FFmpeg CLI, the project's packages) and has no time budget.
For the prepared, time-boxed run on a bare GPU machine (payload of wheels, videos made with
PyAV, every stage under a budget, one report; its CPU dry run is tests/test_gpu_run.py) use
``bash bench/gpu/run.sh OUT_DIR``, which reuses :func:`last_json` and :func:`metrics` from here.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: name -> (GPU-mode arguments, CPU-mode arguments) of each benchmark module.
PLAN: dict[str, tuple[str, list[str], list[str]]] = {
    "video_embedding": ("bench.gpu_video_embedding", ["--device", "cuda"], ["--device", "cpu", "--quick", "--tiny"]),
    "frame_features": ("bench.frame_features", ["--device", "cuda", "--full-config"],
                       ["--device", "cpu", "--profiles", "tiny", "--clips", "1", "--seconds", "4", "--repeats", "1"]),
    "detections": ("bench.detections", ["--device", "cuda", "--full-config"], ["--device", "cpu", "--quick"]),
}

#: Substrings of report keys that are lifted into ``metrics``.
METRIC_KEYS = ("per_s", "clips_s", "frames_s", "windows_s", "busy", "peak_gpu", "gpu_mem", "peak_mem", "batch")


def commands(cpu: bool, only: list[str] | None = None) -> dict[str, list[str]]:
    """The command line of each benchmark to run (``only``: a subset of :data:`PLAN`)."""
    unknown = sorted(set(only or []) - set(PLAN))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(PLAN)}")
    return {name: [sys.executable, "-m", module, *(cpu_args if cpu else gpu_args)]
            for name, (module, gpu_args, cpu_args) in PLAN.items() if not only or name in only}


def last_json(text: str) -> Any:
    """The last JSON document a script printed (its report); raises ValueError when there is none."""
    decoder = json.JSONDecoder()
    for start in reversed([i for i, ch in enumerate(text) if ch == "{" and (i == 0 or text[i - 1] == "\n")]):
        try:
            doc, _ = decoder.raw_decode(text[start:])
            return doc
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON report in the output")


def metrics(report: Any, prefix: str = "") -> dict[str, Any]:
    """Flattened ``path: value`` of the numeric report entries whose key names a tracked metric."""
    found: dict[str, Any] = {}
    if isinstance(report, dict):
        for key, value in report.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (dict, list)):
                found |= metrics(value, path)
            elif isinstance(value, (int, float)) and any(k in str(key).lower() for k in METRIC_KEYS):
                found[path] = value
    elif isinstance(report, list):
        for i, value in enumerate(report):
            found |= metrics(value, f"{prefix}[{i}]")
    return found


def run_all(cmds: dict[str, list[str]], timeout: float) -> dict[str, Any]:
    """Run ``cmds`` one after another; one entry per benchmark (its report, metrics, or the error)."""
    runs: dict[str, Any] = {}
    for name, cmd in cmds.items():
        print(f"[gpu_all] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            runs[name] = {"cmd": cmd[1:], "ok": False, "error": f"timed out after {timeout:g}s"}
            continue
        entry: dict[str, Any] = {"cmd": cmd[1:], "seconds": round(time.monotonic() - start, 1),
                                 "returncode": done.returncode}
        try:
            report = last_json(done.stdout)
            entry |= {"ok": done.returncode == 0, "metrics": metrics(report), "report": report}
        except ValueError as err:
            entry |= {"ok": False, "error": f"{err}; stderr tail: {done.stderr[-2000:]}"}
        if done.returncode != 0 and "error" not in entry:
            entry["error"] = done.stderr[-2000:]
        runs[name] = entry
    return runs


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 1 when a benchmark failed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run each benchmark briefly in its CPU mode")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--only", default="", help="comma-separated subset: " + ",".join(PLAN))
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    args = p.parse_args(argv)
    cmds = commands(args.cpu, [s for s in args.only.split(",") if s] or None)
    if args.dry_run:
        print(json.dumps({name: cmd[1:] for name, cmd in cmds.items()}, indent=2))
        return 0
    report = {"mode": "cpu" if args.cpu else "gpu", "host": platform.node(), "python": platform.python_version(),
              "runs": run_all(cmds, args.timeout)}
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0 if all(r.get("ok") for r in report["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
