"""What a long command prints: its own messages and one progress display; the libraries' output goes to a log.

geneva, Ray and Lance write a great deal while a job runs (multi-line progress blocks redrawn every
two seconds, every worker's log lines, a Lance warning per commit). A command run through
:func:`quiet_console` sends all of it, at the file-descriptor level so that native code is caught
too, to a log file (``$VW_LOG``, else a file under ``logs/`` of a local warehouse, else under the
user's cache folder), and prints only:

* its own messages (what it will do, the models, the end summary), and
* one progress display for all of its jobs: in a terminal, one line per running job redrawn in
  place (rows done / total, rate, ETA, failures, and for stages with long rows the frames done
  and their rate); off a terminal (a SLURM log, CI), a start line per job, a progress line at
  most every 30 s or every 10 % of the job, and an end line.

``--verbose`` (or ``VW_LOG_LEVEL=debug``) lets the libraries print as they do, for debugging.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

LOG_ENV = "VW_LOG"
LOG_LEVEL_ENV = "VW_LOG_LEVEL"

#: Off a terminal: seconds between two progress lines of one job, and the share of rows between two.
QUIET_INTERVAL_S = 30.0
QUIET_STEP = 0.1


@dataclass
class _Job:
    label: str
    total: int
    unit: str
    started: float = field(default_factory=lambda: time.monotonic())
    done: int = 0
    failed: int = 0
    printed_at: float = field(default_factory=lambda: time.monotonic())
    printed_share: float = 0.0
    inner_unit: str | None = None  # what a row is made of (frames), counted while rows are long
    inner_done: int = 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = f"ETA {(self.total - self.done) / rate:.0f}s" if rate > 0 and self.done < self.total else "ETA --"
        failed = f", {self.failed} failed" if self.failed else ""
        inner = ""
        if self.inner_unit and self.inner_done:
            inner = (f"; {self.inner_done:,} {self.inner_unit} "
                     f"({self.inner_done / elapsed if elapsed > 0 else 0.0:.1f} {self.inner_unit}/s)")
        return (f"{self.label}: {self.done}/{self.total} {self.unit} ({rate:.1f}/s, {eta}{failed}, "
                f"{elapsed:.0f}s){inner}")


class Display:
    """One progress display for the jobs of a command (thread-safe; jobs may run in parallel threads).

    ``live`` redraws one line per running job in place (rich); otherwise lines are printed sparingly.
    """

    def __init__(self, out: IO[str], live: bool, log_path: Path | None = None) -> None:
        self.out = out
        self.live = live
        self.log_path = log_path
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=out)
            self._live = Live(console=self._console, refresh_per_second=4, transient=True,
                              get_renderable=self._render)
            self._live.start()

    def _render(self) -> object:
        from rich.text import Text

        return Text("\n".join(job.line() for job in self._jobs.values()))

    def echo(self, message: str) -> None:
        """Print a message line (above the running jobs' lines in a terminal)."""
        with self._lock:
            if self._live is not None:
                self._console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                print(message, file=self.out, flush=True)

    def start(self, key: str, label: str, total: int, unit: str = "rows", inner_unit: str | None = None) -> None:
        """A job starts: ``total`` units to do; ``inner_unit`` names what its rows are made of
        (``"frames"``), counted by :meth:`update` ``inner`` while rows are long."""
        with self._lock:
            self._jobs[key] = _Job(label, total, unit, inner_unit=inner_unit)
        if not self.live:
            self.echo(f"{label}: started, {total} {unit} to do")

    def update(self, key: str, done: int | None, total: int | None = None, failed: int = 0,
               inner: int | None = None) -> None:
        """A job's progress: ``done`` units finished (of ``total`` when it is known better now; ``None``:
        not known now) and ``inner`` units of its ``inner_unit`` (frames) finished inside them."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return
            if total:
                job.total = total
            if done is not None:
                job.done, job.failed = min(done, job.total), failed
            if inner is not None:
                job.inner_done = max(job.inner_done, inner)
            if self.live:
                return
            share = job.done / job.total if job.total else 1.0
            now = time.monotonic()
            due = now - job.printed_at >= QUIET_INTERVAL_S or share - job.printed_share >= QUIET_STEP
            if not due or job.done >= job.total:
                return
            job.printed_at, job.printed_share = now, share
            line = job.line()
        self.echo(line)

    def finish(self, key: str) -> None:
        """A job ended (its outcome is printed by the caller's summary)."""
        with self._lock:
            self._jobs.pop(key, None)

    def close(self) -> None:
        """Stop redrawing (the summary is printed after)."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def log_path_for(db_uri: str | None, command: str) -> Path:
    """Where the libraries' output of ``command`` goes: ``$VW_LOG``, else ``<warehouse>/logs/`` for a
    local warehouse, else ``logs/`` in the user cache folder (:func:`udfs.user_cache.user_cache_dir`, by
    default ``~/.cache/video-warehouse``), one file per command run."""
    configured = os.environ.get(LOG_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"vw-{command}-{stamp}-{os.getpid()}.log"
    if db_uri and "://" not in db_uri:
        return Path(db_uri).expanduser() / "logs" / name
    from udfs.user_cache import user_cache_dir

    return user_cache_dir("logs", name)


def verbose_requested(verbose: bool = False) -> bool:
    """True with ``--verbose`` or ``VW_LOG_LEVEL=debug``: the libraries print as they do."""
    return verbose or os.environ.get(LOG_LEVEL_ENV, "").strip().lower() == "debug"


def _writes_to_fd(stream: IO[str], fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


class _Unclosed:
    """A stream whose ``close`` does nothing (the display does not own it)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()


@contextlib.contextmanager
def quiet_console(log_path: Path, verbose: bool = False, silent: bool = False) -> Iterator[Display]:
    """Send everything written to stdout and stderr (Python and native) to ``log_path`` for the block;
    yield the :class:`Display` that prints to the real stdout. With ``verbose`` nothing is redirected;
    with ``silent`` the display's lines go to the log too (a command that prints JSON after the block)."""
    if verbose:
        display = Display(sys.stdout, live=sys.stdout.isatty() and not silent)
        try:
            yield display
        finally:
            display.close()
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        if silent:
            out, live = os.fdopen(os.dup(log.fileno()), "w", buffering=1), False
        elif _writes_to_fd(sys.stdout, 1):
            out, live = os.fdopen(os.dup(saved_out), "w", buffering=1), os.isatty(saved_out)
        else:  # sys.stdout is captured in Python (a test runner, a notebook): the display writes there
            out, live = _Unclosed(sys.stdout), False
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        display = Display(out, live=live, log_path=log_path)
        try:
            yield display
        finally:
            display.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            out.close()
