"""Day-to-day command-line costs, side by side: an earlier release of the warehouse against this checkout.

Runs, on the same machine in one go, for ``baseline`` (the code at ``--baseline``, default the last
commit before the command line was made quiet and fast to start, checked out into a temporary git
worktree) and ``current`` (this checkout):

* ``vw --help`` and ``vw backfill --help``: start time (median of ``--repeat`` runs);
* ``vw ingest`` of ``--files`` small local files (files/s, start-up included);
* ``vw status`` on a 10-video warehouse: start time (median);
* ``vw backfill frame_features --models tiny`` on those 10 videos, its output going to a file as
  under SLURM: wall time and the number of lines written, and whether the summary comes last.

Both run with a Ray started inside the command (``VW_LOCAL_RAY=per-command`` where the code knows it),
so that no warm Ray favours either. Prints one JSON document (also written to ``--out``) with the
load average before and after. Usage: ``python -m bench.cli_start [--baseline REF] [--files 500]``
(about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.releases import ROOT, release_worktree, run_vw, short_head
from bench.report import emit

#: The last commit before the command-line package (fast --help, quiet output, rotation, ...).
BASELINE_REF = "ffc9fc6"


def _clip(path: Path, hue: int = 0) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=128x96:rate=10:duration=2", "-vf", f"hue=h={hue}", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def _median_seconds(code: Path, args: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        seconds, text, rc = run_vw(code, args, env, cwd)
        if rc != 0:
            raise RuntimeError(f"vw {' '.join(args)} failed ({code}):\n{text[-3000:]}")
        times.append(seconds)
    return round(statistics.median(times), 2)


def _variant(name: str, code: Path, env: dict[str, str], work: Path, many: Path, ten: Path,
             repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"code": str(code)}
    out["help_seconds"] = _median_seconds(code, ["--help"], env, work, repeat)
    out["backfill_help_seconds"] = _median_seconds(code, ["backfill", "--help"], env, work, repeat)
    db = work / f"{name}-many.db"
    seconds, text, rc = run_vw(code, ["ingest", str(many), "--db", str(db)], env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: ingest failed:\n{text[-3000:]}")
    files = len(list(many.iterdir()))
    out["ingest"] = {"files": files, "seconds": round(seconds, 1), "files_per_s": round(files / seconds, 1)}
    db = work / f"{name}-ten.db"
    _, text, rc = run_vw(code, ["ingest", str(ten), "--db", str(db)], env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: ingest failed:\n{text[-3000:]}")
    out["status_seconds"] = _median_seconds(code, ["status", "--db", str(db)], env, work, repeat)
    seconds, text, rc = run_vw(code, ["backfill", "frame_features", "--models", "tiny", "--db", str(db)], env, work)
    if rc != 0:
        raise RuntimeError(f"{name}: backfill failed:\n{text[-3000:]}")
    lines = text.rstrip("\n").splitlines()
    out["backfill_to_a_file"] = {"seconds": round(seconds, 1), "lines": len(lines),
                                 "last_lines": lines[-3:]}
    return out


def main() -> None:
    """Run the comparison and print its JSON (also written to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REF, help="git ref of the earlier release")
    parser.add_argument("--files", type=int, default=500, help="files for the ingest measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per start-time measurement (median)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vwcli", dir="/tmp"))
    report: dict[str, Any] = {"baseline_ref": args.baseline, "current_ref": short_head(),
                              "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VW_"))},
           "VW_LOCAL_RAY": "per-command"}
    try:
        ten, many = work / "ten", work / "many"
        ten.mkdir()
        many.mkdir()
        _clip(work / "clip.mp4")
        for i in range(10):
            _clip(ten / f"video{i}.mp4", hue=i * 31)
        for i in range(args.files):
            shutil.copy(work / "clip.mp4", many / f"file{i:04d}.mp4")
        with release_worktree(args.baseline, work / "baseline") as baseline:
            report["baseline"] = _variant("baseline", baseline, env, work, many, ten, args.repeat)
        report["current"] = _variant("current", ROOT, env, work, many, ten, args.repeat)
        b, c = report["baseline"], report["current"]
        report["ratios_baseline_over_current"] = {
            "help": round(b["help_seconds"] / c["help_seconds"], 1),
            "backfill_help": round(b["backfill_help_seconds"] / c["backfill_help_seconds"], 1),
            "status": round(b["status_seconds"] / c["status_seconds"], 1),
            "ingest_files_per_s": round(c["ingest"]["files_per_s"] / b["ingest"]["files_per_s"], 1),
            "backfill_lines": round(b["backfill_to_a_file"]["lines"] / c["backfill_to_a_file"]["lines"], 1),
        }
    finally:
        report["loadavg_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()
