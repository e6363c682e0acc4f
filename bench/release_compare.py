"""A command's fixed costs, side by side: an earlier release of the warehouse against this checkout.

Runs, on the same machine in one go, ``vw backfill scenarios`` on 10 captioned clips and ``vw demo``
(the README's first command) with

* ``baseline``: the code at ``--baseline`` (default: the last commit before a stage became one geneva
  job), checked out into a temporary git worktree and run with this environment's packages;
* ``current``: this checkout, with a Ray started inside each command (``VW_LOCAL_RAY=per-command``);
* ``current-warm``: this checkout joining a warm local Ray started beforehand (its start is timed
  apart), as successive commands of a user do; ``scenarios_again`` is that user's next
  ``vw backfill scenarios`` (a new warehouse of the same clips), with the scenario descriptions'
  embeddings in the user cache folder from the first.

Every variant starts with an empty user cache folder.

Each run gets a fresh warehouse. Prints one JSON document: wall times, geneva jobs started (the
records of geneva's job table in the run's warehouse), ratios baseline / current, and the load
average before and after.
Usage: ``python -m bench.release_compare [--baseline REF] [--out FILE]`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.releases import ROOT, release_worktree, run_vw, short_head
from bench.report import emit

#: The last commit whose stages filled each derived column with a geneva job of its own, one job after another.
BASELINE_REF = "5f324a2"

CAPTIONS = [
    "a car drives on a busy highway", "a train arrives at the station", "a man cooks pasta in a kitchen",
    "a chef chops onions on a board", "a politician answers questions at a press conference",
    "reporters listen to a briefing in a press room", "a band plays guitar on stage",
    "a woman sings a song into a microphone", "a bus stops at a traffic light", "someone bakes a cake in an oven",
]



def _geneva_jobs(db: Path) -> int:
    """Backfill jobs geneva recorded in the warehouse at ``db`` (any status)."""
    import geneva

    return len(geneva.connect(str(db)).list_jobs(status=None))


def _clips(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=128x96:rate=10:duration=2", "-vf", f"hue=h={i * 31}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(folder / f"video{i}.mp4")], check=True)


def _msrvtt(path: Path) -> None:
    videos = [{"category": 0, "url": "", "video_id": f"video{i}", "start time": 0.0, "end time": 2.0,
               "split": "train", "id": i} for i in range(len(CAPTIONS))]
    sentences = [{"caption": c, "video_id": f"video{i}", "sen_id": i} for i, c in enumerate(CAPTIONS)]
    path.write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))


def _demo_backfill(text: str) -> dict[str, Any]:
    """The demo's backfill wall time: its ``backfill time`` line, or (a release without it, whose jobs ran
    one after another) the sum of the per-column times of its summary."""
    found = re.search(r"^\s+backfill time: ([0-9.]+)s", text, re.M)
    if found:
        return {"backfill_seconds": float(found.group(1)), "backfill_seconds_from": "its backfill time line"}
    columns = [float(m) for m in re.findall(r"^\s+\S+: \d+ computed, .*?, ([0-9.]+)s$", text, re.M)]
    return {"backfill_seconds": round(sum(columns), 1),
            "backfill_seconds_from": "the sum of its columns' times (jobs one after another)"}


def _scenarios(name: str, code: Path, env: dict[str, str], work: Path, db: Path) -> dict[str, Any]:
    seconds, text, rc = run_vw(code, ["backfill", "scenarios", "--db", str(db)], env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: vw backfill scenarios failed:\n{text[-3000:]}")
    return {"seconds": round(seconds, 1), "geneva_jobs": _geneva_jobs(db), "rows": len(CAPTIONS)}


def _variant(name: str, code: Path, env: dict[str, str], work: Path, clips: Path, annotations: Path,
             again: bool = False) -> dict[str, Any]:
    """One version's runs; each starts with an empty user cache folder (``VW_CACHE_DIR``)."""
    out: dict[str, Any] = {"code": str(code)}
    env = {**env, "VW_CACHE_DIR": str(work / f"{name}-cache")}
    db = work / f"{name}-scenarios.db"
    _, text, rc = run_vw(code, ["ingest", "--format", "msrvtt", str(annotations), "--videos-root", str(clips),
                             "--validation-ratio", "0", "--db", str(db)], env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: ingest failed:\n{text[-3000:]}")
    shutil.copytree(db, work / f"{name}-scenarios-ingested.db")
    out["scenarios"] = _scenarios(name, code, env, work, db)
    if again:
        # A user's next scenarios command: a new warehouse (same clips), the text model's embeddings of
        # the scenario descriptions already in the user cache folder.
        again_db = work / f"{name}-scenarios-again.db"
        shutil.copytree(work / f"{name}-scenarios-ingested.db", again_db)
        out["scenarios_again"] = _scenarios(name, code, env, work, again_db)
    demo_db = work / f"{name}-demo.db"
    seconds, text, rc = run_vw(code, ["demo", "--db", str(demo_db), "--videos-dir", str(work / f"{name}-demo-videos")],
                               env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: vw demo failed:\n{text[-3000:]}")
    out["demo"] = {"seconds": round(seconds, 1), "geneva_jobs": _geneva_jobs(demo_db), **_demo_backfill(text)}
    return out


def main() -> None:
    """Run the comparison and print its JSON (also written to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref of the earlier release")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vwcmp", dir="/tmp"))
    report: dict[str, Any] = {"baseline_ref": args.baseline, "current_ref": short_head(),
                              "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VW_"))}
    try:
        with release_worktree(args.baseline, work / "baseline") as baseline:
            clips, annotations = work / "clips", work / "MSRVTT_data.json"
            _clips(clips, len(CAPTIONS))
            _msrvtt(annotations)
            report["baseline"] = _variant("baseline", baseline, {**env, "VW_LOCAL_RAY": "per-command"}, work, clips,
                                          annotations)
            report["current"] = _variant("current", ROOT, {**env, "VW_LOCAL_RAY": "per-command"}, work, clips,
                                         annotations)
            warm = {**env, "VW_LOCAL_RAY": "warm", "VW_RAY_DIR": str(work / "ray")}
            seconds, text, rc = run_vw(ROOT, ["ray", "start"], warm, work)
            if rc != 0:
                raise RuntimeError(f"vw ray start failed:\n{text[-3000:]}")
            report["warm_head_start_seconds"] = round(seconds, 1)
            try:
                report["current-warm"] = _variant("current-warm", ROOT, warm, work, clips, annotations, again=True)
            finally:
                run_vw(ROOT, ["ray", "stop"], warm, work)
            for variant in ("current", "current-warm"):
                report[f"speedup_{variant}"] = {
                    task: round(report["baseline"][task]["seconds"] / report[variant][task]["seconds"], 2)
                    for task in ("scenarios", "demo")
                }
                report[f"speedup_{variant}"]["demo_backfill"] = round(
                    report["baseline"]["demo"]["backfill_seconds"] / report[variant]["demo"]["backfill_seconds"], 2)
            report["speedup_current-warm"]["scenarios_again"] = round(
                report["baseline"]["scenarios"]["seconds"] / report["current-warm"]["scenarios_again"]["seconds"], 2)
    finally:
        report["loadavg_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()
