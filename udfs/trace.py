"""Stage trace: what the UDF workers are doing, one JSON line per pipeline event.

Set ``VW_TRACE`` to a file path (on a file system the workers can write: the local disk for the
local Ray, a shared volume on a cluster) before ``vw backfill``; the UDFs built by that command
append one line per event to it::

    {"t": 1732300000.12, "pid": 4242, "stage": "frame_features", "event": "model_start",
     "ids": ["clip-1", "clip-2"], "frames": 48}

Events: ``batch_start`` / ``batch_end`` (one UDF call: the ``ids`` it was given / returned values
for), ``decode_start`` / ``decode_end`` (one video), ``model_start`` / ``model_end`` (one model
call over frames of the ``ids``). ``batch_end`` means the UDF handed the values of those rows to
geneva, which checkpoints them. The trace shows where time goes on the workers, and after an
interrupted run which rows had been computed.

Lines are appended with one ``write`` each on a file opened in append mode, so lines from several
worker processes do not interleave. Tracing never fails a computation: a write error disables it
for the rest of the process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

TRACE_ENV = "VW_TRACE"


def trace_path_from_env(path: str | None = None) -> str | None:
    """The trace file: the argument, else ``$VW_TRACE``, else ``None`` (no tracing)."""
    return path or os.environ.get(TRACE_ENV) or None


class StageTrace:
    """Appends events of one stage to a trace file (a no-op when ``path`` is ``None``).

    Picklable: only the path and the stage travel to the workers; each process opens the file
    on its first event.
    """

    def __init__(self, path: str | None, stage: str) -> None:
        self.path = path
        self.stage = stage
        self._fh: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "stage": self.stage}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["stage"])  # type: ignore[misc]

    @property
    def enabled(self) -> bool:
        """True when events are written."""
        return self.path is not None

    def event(self, event: str, ids: Iterable[Any] = (), **fields: Any) -> None:
        """Append one event with the row ``ids`` it concerns and extra JSON-able ``fields``."""
        if self.path is None:
            return
        record = {"t": time.time(), "pid": os.getpid(), "stage": self.stage, "event": event,
                  "ids": [str(i) for i in ids], **fields}
        line = (json.dumps(record, default=str) + "\n").encode()
        with self._lock:
            try:
                if self._fh is None:
                    self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open for the process
                self._fh.write(line)
            except OSError:
                self.path = None  # tracing must never fail the computation


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a trace file in file order (a torn last line, from a killed writer, is skipped)."""
    events = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        return []
    return events
