"""Progress reporting of long jobs: a ``done/total`` callback printing one line on stderr.

In a terminal the line is redrawn in place; off a terminal (a log file, CI) only the final line
is printed, so a log gets one line per job instead of one per refresh.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

#: A progress callback: ``report(done, total)``.
Progress = Callable[[int, int], None]


def line_progress(label: str) -> Progress:
    """A progress callback printing ``label: done/total (rate/s, ETA)`` on one line of stderr."""
    start = time.monotonic()
    live = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if not live and done < total:
            return
        rate = done / max(time.monotonic() - start, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        end = "\n" if done >= total else "\r"
        print(f"{label}: {done}/{total} ({rate:.1f}/s, ETA {eta:.0f}s)", end=end, file=sys.stderr, flush=True)

    return report
