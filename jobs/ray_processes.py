"""Find and end the processes of one Ray head, without touching any other Ray of the user.

``ray stop`` ends every Ray process of the user (a notebook's, a test session's, another
command's), so a head started by this project is stopped by its own marks instead: the processes
whose command line names its temp dir or one of its ports, and their descendants.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process readable in /proc."""
    out: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = (ppid, cmdline)
    return out


def marked_processes(marks: Iterable[str]) -> list[int]:
    """Processes whose command line contains one of ``marks``, plus their descendants (not this one)."""
    marks = tuple(marks)
    procs = processes()
    me = os.getpid()
    ours = {pid for pid, (_, cmd) in procs.items() if any(m in cmd for m in marks) and pid != me}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours - {me}
        grew = bool(children)
        ours |= children
    return sorted(ours)


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def end_processes(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM ``pids``, then SIGKILL those still running after ``grace`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
