"""Running an earlier release of the warehouse beside this checkout, for side-by-side benchmarks.

:func:`release_worktree` checks a git ref out into a temporary worktree (removed afterwards), and
:func:`run_vw` runs ``vw`` from a given code folder with this environment's packages.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_vw(
    code: Path, args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 1800
) -> tuple[float, str, int]:
    """Run ``vw ARGS`` from the code at ``code``; (seconds, stdout + stderr without colour codes, exit status).

    Output goes to pipes, as it goes to a log file under SLURM (not a terminal)."""
    run_env = {**env, "PYTHONPATH": str(code)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "import sys; from jobs.cli import main; sys.argv[0] = 'vw'; main()",
                           *args], env=run_env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    seconds = time.monotonic() - start
    return seconds, ANSI.sub("", done.stdout + done.stderr), done.returncode


def short_head() -> str:
    """This checkout's commit (short)."""
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def release_worktree(ref: str, path: Path) -> Iterator[Path]:
    """The code at git ``ref`` checked out (detached) at ``path`` for the block, then removed."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
