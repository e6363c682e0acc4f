"""The ``vw`` script's quick exit: statuses, exit handlers, flushed output, no hang on thread pools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _entry(code: str, *args: str) -> subprocess.CompletedProcess:
    script = ("import atexit, concurrent.futures, sys\n"
              "import jobs.cli as cli\n"
              f"{code}\n"
              f"sys.argv = ['vw', *{list(args)!r}]\n"
              "cli.entry()\n"
              "print('not reached')\n")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_command_ends_with_its_status_its_output_and_the_exit_handlers() -> None:
    # a thread pool still alive at exit (geneva and LanceDB leave some) must not keep the process waiting
    done = _entry("pool = concurrent.futures.ThreadPoolExecutor(1); pool.submit(print, 'from the pool')\n"
                  "atexit.register(lambda: print('exit handler ran', flush=True))\n"
                  "sys.stdout.write('pending output')", "--version")
    assert done.returncode == 0, done.stderr
    assert "pending output" in done.stdout and "video-warehouse" in done.stdout
    assert "exit handler ran" in done.stdout and "not reached" not in done.stdout


def test_usage_errors_and_messages_keep_their_status(tmp_path: Path) -> None:
    done = _entry("", "no-such-command")
    assert done.returncode == 2 and "No such command" in done.stderr
    done = _entry("", "status", "--db", str(tmp_path / "missing"))
    assert done.returncode == 2 and "no warehouse at" in done.stderr
    done = _entry("cli.main = lambda: sys.exit('a message instead of a status')")
    assert done.returncode == 1 and "a message instead of a status" in done.stderr
