"""The GPU run: make the test videos, run every model stage under a time budget, write one report.

Called by ``bench/gpu/run.sh`` (which installs the payload first); ``--cpu`` is the dry run of
the test suite (tiny models, small videos, the same code path). Writes to ``OUT``:

``report.json``
    the plan, the environment, what the videos are, and for every stage its measurements
    (end to end, decode only, model only, NVDEC against the CPU decoder, busy fraction, peak
    GPU memory), each figure that has a goal beside its goal;
``stages/<name>.json``
    each stage's own result (rewritten after every measurement: a killed stage keeps what it had);
``videos.json``
    what each generated video is (the videos themselves and the saved V-JEPA 2 model go to
    ``--work``, default ``OUT/work``: ``run.sh`` puts them outside ``OUT`` so that only the
    report, the stage results and the log come back from the GPU machine).

Goals (printed beside each figure): V-JEPA 2 >= 20 clips/s, DINOv2-large >= 1000 frames/s,
LLaVA-NeXT-Video >= 8 windows/s, GPU busy >= 80 %.

    python3 -m bench.gpu.run --out OUT [--cpu] [--deadline-s 460]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu.videos import VideoSpec, make_all, write_manifest

ROOT = Path(__file__).resolve().parents[2]

#: Imports that must not be needed on the GPU machine (blocked in the stage processes of the dry run).
ABSENT_ON_GPU = ("lancedb", "lance", "geneva", "ray", "tables", "jobs")

#: Stage plans. ``budget_s``: the stage's own time from its start (model build included);
#: ``overhead_s``: process start, imports and CUDA initialisation before that.
PLANS: dict[str, dict[str, Any]] = {
    "gpu": {
        "device": "cuda",
        "deadline_s": 465.0,
        "reserve_s": 8.0,
        "overhead_s": 14.0,
        "videos": {"clip": dict(width=1280, height=720, fps=30, seconds=10.0, per_gop=8, bitrate=5_000_000),
                   "long": dict(width=1280, height=720, fps=25, seconds=600.0, loop_of=60.0, per_gop=1,
                                bitrate=5_000_000),
                   "gops": [250, 25]},
        "stages": [
            {"name": "vjepa2", "stage": "vjepa", "budget_s": 125.0, "tiny": False, "num_frames": 64,
             "batch_sizes": [1, 4, 8, 16], "rows_per_call_min": 32,
             "caps": {"e2e_s": 8.0, "decode_s": 6.0, "model_s": 2.0}},
            {"name": "dinov2", "stage": "dinov2", "budget_s": 95.0, "full_config": True, "fps": 1.0,
             "rows_per_call": 16, "caps": {"e2e_s": 12.0, "decode_s": 6.0, "model_s": 4.0}},
            {"name": "llava", "stage": "detector", "family": "llava", "budget_s": 115.0, "full_config": True,
             "batch_sizes": [1, 8, 32], "new_tokens": 64, "side": 384, "rows_per_call_min": 4,
             "caps": {"model_s": 6.0, "e2e_s": 8.0, "model_need_s": 12.0, "e2e_need_s": 16.0}},
            {"name": "qwen", "stage": "detector", "family": "qwen", "budget_s": 80.0, "min_budget_s": 30.0,
             "full_config": True, "batch_sizes": [1, 8, 32], "new_tokens": 64, "side": 384, "rows_per_call_min": 4,
             "caps": {"model_s": 4.0, "e2e_s": 6.0, "model_need_s": 10.0, "e2e_need_s": 14.0}},
            # runs when time is left; alone with VW_GPU_ONLY=latents (a second run)
            {"name": "latents", "stage": "latents", "budget_s": 60.0, "min_budget_s": 25.0, "full_config": True,
             "size": [720, 480], "frames": 49, "videos_per_call": 4, "batch_sizes": [1, 2], "need_s": 20.0},
        ],
    },
    "cpu": {
        "device": "cpu",
        "deadline_s": 130.0,
        "reserve_s": 2.0,
        "overhead_s": 6.0,
        "videos": {"clip": dict(width=320, height=180, fps=30, seconds=6.0, per_gop=2, bitrate=400_000),
                   "long": dict(width=320, height=180, fps=25, seconds=20.0, loop_of=10.0, per_gop=1,
                                bitrate=400_000),
                   "gops": [250, 25]},
        "stages": [
            {"name": "vjepa2", "stage": "vjepa", "budget_s": 20.0, "tiny": True, "num_frames": 16,
             "batch_sizes": [1, 2], "rows_per_call_min": 2,
             "caps": {"e2e_s": 0.2, "decode_s": 0.2, "model_s": 0.1}},
            {"name": "dinov2", "stage": "dinov2", "budget_s": 20.0, "full_config": False, "fps": 1.0,
             "rows_per_call": 2, "caps": {"e2e_s": 0.2, "decode_s": 0.2, "model_s": 0.1}},
            {"name": "llava", "stage": "detector", "family": "llava", "budget_s": 20.0, "full_config": False,
             "batch_sizes": [1, 2], "new_tokens": 4, "side": 384, "rows_per_call_min": 2,
             "caps": {"model_s": 0.1, "e2e_s": 0.1, "model_need_s": 1.0, "e2e_need_s": 1.0}},
            {"name": "qwen", "stage": "detector", "family": "qwen", "budget_s": 20.0, "min_budget_s": 5.0,
             "full_config": False, "batch_sizes": [2], "new_tokens": 4, "side": 384, "rows_per_call_min": 2,
             "caps": {"model_s": 0.1, "e2e_s": 0.1, "model_need_s": 1.0, "e2e_need_s": 1.0}},
            {"name": "latents", "stage": "latents", "budget_s": 15.0, "min_budget_s": 5.0, "full_config": False,
             "size": [96, 64], "frames": 9, "videos_per_call": 2, "batch_sizes": [1, 2], "need_s": 1.0},
        ],
    },
}

#: lavfi sources of the videos (mandelbrot and life render at ~50 fps at 720p: too slow to make in time).
SOURCES_CYCLE = ("noisy", "testsrc2")


def log(msg: str) -> None:
    print(f"[gpu-run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def video_specs(plan: dict[str, Any], folder: Path) -> dict[str, dict[str, list[VideoSpec]]]:
    """``{"clip"|"long": {"gop250": [...], "gop25": [...]}}`` of the files to make."""
    out: dict[str, dict[str, list[VideoSpec]]] = {}
    for kind in ("clip", "long"):
        v = plan["videos"][kind]
        for gop in plan["videos"]["gops"]:
            specs = []
            for i in range(v["per_gop"]):
                source = SOURCES_CYCLE[i % len(SOURCES_CYCLE)]
                name = f"{kind}_{source}_{v['width']}x{v['height']}_{v['seconds']:g}s_{v['fps']}fps_g{gop}_{i:02d}.mp4"
                specs.append(VideoSpec(str(folder / name), source, v["seconds"], v["width"], v["height"], v["fps"],
                                       gop, v["bitrate"], v.get("loop_of", 0.0)))
            out.setdefault(kind, {})[f"gop{gop}"] = specs
    return out


def describe_videos(made: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """What was decoded, in words and numbers (for the report)."""
    v = plan["videos"]
    clip, long = v["clip"], v["long"]
    return {
        "clips": (f"{clip['per_gop']} files per GOP, {clip['width']}x{clip['height']} H.264 High yuv420p, "
                  f"{clip['seconds']:g} s at {clip['fps']} fps, ~{clip['bitrate'] / 1e6:g} Mbit/s ABR, libx264 "
                  f"veryfast, 2 B-frames, GOP {v['gops']} exactly; lavfi sources {', '.join(SOURCES_CYCLE)} "
                  "(noisy = testsrc2 + temporal noise); every row of a run is a distinct video_id over these files"),
        "long": (f"{long['per_gop']} file per GOP, {long['seconds']:g} s ({long['seconds'] / 60:.3g} min) at "
                 f"{long['fps']} fps, {long['width']}x{long['height']}: a {long['loop_of']:g} s encoded segment "
                 f"(a whole number of GOPs) repeated by packet copy, so every frame of the "
                 f"{long['seconds']:g} s is a real H.264 frame to decode but the pictures repeat every "
                 f"{long['loop_of']:g} s"),
        "files": made,
    }


def run_stage(name: str, cfg: dict[str, Any], folder: Path, timeout_s: float, env: dict[str, str]) -> dict[str, Any]:
    """One stage in its own process; its result (from stdout, or the partial file when it died)."""
    from bench.gpu_all import last_json, metrics

    cfg_path = folder / f"{name}.config.json"
    out_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    cmd = [sys.executable, "-m", "bench.gpu.stages", cfg["stage"], "--config", str(cfg_path), "--out", str(out_path)]
    log(f"stage {name}: budget {cfg['budget_s']:.0f}s, hard limit {timeout_s:.0f}s")
    start = time.monotonic()
    entry: dict[str, Any] = {"cmd": " ".join(cmd[1:])}
    try:
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout_s, env=env)
        entry["returncode"] = done.returncode
        stdout = done.stdout
    except subprocess.TimeoutExpired as err:
        entry["returncode"] = None
        entry["killed"] = f"hard limit of {timeout_s:.0f}s reached; the results below are what it had written"
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    entry["seconds"] = round(time.monotonic() - start, 1)
    try:
        result = last_json(stdout)
    except ValueError:
        result = json.loads(out_path.read_text()) if out_path.exists() else {"ok": False, "error": "no result"}
    entry["ok"] = bool(result.get("ok")) and entry["returncode"] == 0
    entry["result"] = result
    entry["metrics"] = metrics({k: v for k, v in result.items() if k not in ("environment", "config")})
    return entry


def goal_table(stages: dict[str, Any], dry_run: bool) -> list[dict[str, Any]]:
    """Every figure that has a goal, with the goal and whether it is met (never "met" in a dry run)."""
    rows = []
    for name, entry in stages.items():
        for key, g in (entry.get("result", {}).get("goals") or {}).items():
            row = {"stage": name, "figure": key, **g}
            if dry_run:
                row["met"] = None
                row["note"] = "dry run: tiny models on the CPU, not comparable with the goal"
            rows.append(row)
    return rows


def print_summary(report: dict[str, Any]) -> None:
    """A short table on stderr: the headline figures beside their goals."""
    log(f"done in {report['seconds']:.0f}s ({report['mode']})")
    for row in report["goals"]:
        value = row["value"]
        shown = "n/a" if value is None else f"{value:g}"
        verdict = {True: "MET", False: "below", None: "not measured"}[row["met"]]
        if "note" in row:
            verdict = "(dry run)"
        log(f"  {row['stage']:<7} {row['figure']:<40} {shown:>10}  goal >= {row['goal']:g}  {verdict}")
    for name, entry in report["stages"].items():
        if not entry.get("ok"):
            err = entry.get("result", {}).get("error") or entry.get("killed") or entry.get("skipped") or "failed"
            log(f"  stage {name}: NOT OK: {str(err)[:300]}")


def main(argv: list[str] | None = None) -> int:
    """Run everything; exit 0 when every stage that ran finished (figures below goal are not failures)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cpu", action="store_true", help="the dry run: tiny models, small videos, CPU")
    p.add_argument("--deadline-s", type=float, default=None, help="seconds this command may take in all")
    p.add_argument("--only", default="", help="comma-separated stage names (default: all)")
    p.add_argument("--install-summary", type=Path, default=None, help="JSON written by bench.gpu.payload")
    p.add_argument("--work", type=Path, default=None, help="videos and saved models (default OUT/work)")
    args = p.parse_args(argv)
    start = time.monotonic()
    mode = "cpu" if args.cpu else "gpu"
    if args.cpu:  # as on the GPU machine: none of these may be needed, here either
        from bench.gpu.stages import block_imports

        block_imports(ABSENT_ON_GPU)
    plan = PLANS[mode]
    deadline = args.deadline_s or plan["deadline_s"]
    out = args.out.resolve()
    (out / "stages").mkdir(parents=True, exist_ok=True)
    work = (args.work or out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "mode": mode, "host": platform.node(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(), "deadline_s": deadline, "cpus": os.cpu_count(),
        "weights": "RANDOM WEIGHTS everywhere: full-size model configs built in code, throughput only",
    }
    if args.install_summary and args.install_summary.exists():
        report["install"] = json.loads(args.install_summary.read_text() or "{}")
    report_path = out / "report.json"

    def save() -> None:
        report["seconds"] = round(time.monotonic() - start, 1)
        report_path.write_text(json.dumps(report, indent=2, default=str))

    log(f"mode {mode}: making videos")
    t0 = time.monotonic()
    specs = video_specs(plan, work / "videos")
    flat = [s for kind in specs.values() for group in kind.values() for s in group]
    made = make_all(flat)
    write_manifest(out / "videos.json", made)
    report["videos"] = describe_videos(made, plan) | {"seconds": round(time.monotonic() - t0, 1)}
    save()
    log(f"videos ready in {time.monotonic() - t0:.1f}s")
    paths = {kind: {gop: [s.path for s in group] for gop, group in groups.items()} for kind, groups in specs.items()}

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if args.cpu:
        env["VW_BENCH_BLOCK_IMPORTS"] = ",".join(ABSENT_ON_GPU)
    env.pop("VW_DECODE_DEVICE", None)
    only = {s for s in args.only.split(",") if s}
    report["stages"] = {}
    threads = os.cpu_count() or 1
    for stage in plan["stages"]:
        name = stage["name"]
        if only and name not in only:
            continue
        left = deadline - (time.monotonic() - start) - plan["reserve_s"]
        budget = min(stage["budget_s"], left - plan["overhead_s"])
        if budget < stage.get("min_budget_s", 10.0):
            report["stages"][name] = {"ok": True, "skipped": f"not enough time left ({left:.0f}s)"}
            log(f"stage {name}: skipped, {left:.0f}s left")
            save()
            continue
        cfg = stage | {"device": plan["device"], "budget_s": budget, "decode_threads": threads,
                       "work_dir": str(work), "main_gop": "gop250"}
        if stage["stage"] in ("vjepa", "latents"):
            cfg["videos"] = paths["clip"]
        elif stage["stage"] == "dinov2":
            cfg["videos"] = paths["long"]
            cfg["video_seconds"] = plan["videos"]["long"]["seconds"]
        else:
            cfg["videos"] = [p for group in paths["clip"].values() for p in group]
            cfg["video_seconds"] = plan["videos"]["clip"]["seconds"]
        hard = min(budget + plan["overhead_s"] + 25.0, deadline - (time.monotonic() - start) - 1.0)
        report["stages"][name] = run_stage(name, cfg, out / "stages", hard, env)
        save()
    report["goals"] = goal_table(report["stages"], args.cpu)
    save()
    print_summary(report)
    return 0 if all(e.get("ok") for e in report["stages"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
