"""Progress inside long rows: the workers count the frames (or clips) they finish, the command shows the rate.

A row of a video stage can take minutes (a 10-minute 720p video sampled at 1 fps is 600 frames
through the model), while geneva counts rows only. A stage that declares a ``progress_unit``
gets a :class:`UnitReporter` in its UDF; the UDF calls ``add(n)`` as it finishes units. Reporters
send their counts, at most once a second per process and without waiting for an answer, to one
small named Ray actor per command (named after the command's Ray job, see :func:`actor_name`, in
the :data:`NAMESPACE` namespace, no CPU reserved), which the command creates and polls with the
rows. The actor is owned by the command's driver: when the command ends, or is killed, Ray stops
it with the command's other workers, so nothing of a command outlives it on a warm Ray.

Reporting never fails or slows a computation: outside Ray, with no counter actor (a job started
by geneva directly, or through Ray's job submission, whose workers run under another job id), or
when the actor is gone, the counts are dropped. Two commands running the same stage at the same
time on one Ray count their units apart.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

ACTOR_PREFIX = "vw-unit-progress-"
NAMESPACE = "video-warehouse"

#: Seconds between two sends of one process, and between two lookups of a missing actor.
SEND_INTERVAL_S = 1.0
LOOKUP_INTERVAL_S = 10.0


class UnitCounter:
    """The counter actor's body: units finished per key (a stage name)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int) -> None:
        """``n`` more units of ``key`` finished."""
        self._counts[key] = self._counts.get(key, 0) + int(n)

    def get(self, key: str) -> int:
        """Units of ``key`` finished so far."""
        return self._counts.get(key, 0)


def _ray() -> Any | None:
    """The ``ray`` module when this process is connected to a Ray cluster (never imports it)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        return ray if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-torn-down Ray counts as none
        return None


def actor_name(ray: Any) -> str:
    """The counter actor's name for the Ray job this process runs in (a driver and its workers share it)."""
    return ACTOR_PREFIX + str(ray.get_runtime_context().get_job_id())


def counter_actor() -> Any | None:
    """The driver's handle of its command's counter actor, created when missing (``None`` without Ray).

    The actor reserves no CPU, holds a few integers and is owned by this driver (not detached): it
    ends with the command, killed or not.
    """
    ray = _ray()
    if ray is None:
        return None
    try:
        return ray.remote(num_cpus=0)(UnitCounter).options(
            name=actor_name(ray), namespace=NAMESPACE, get_if_exists=True).remote()
    except Exception:  # noqa: BLE001 - progress is a display aid: no counter, no inner progress
        return None


def read_units(actor: Any, key: str, timeout_s: float = 1.0) -> int | None:
    """Units of ``key`` the counter holds (``None`` when it cannot say within ``timeout_s``)."""
    ray = _ray()
    if ray is None or actor is None:
        return None
    try:
        return int(ray.get(actor.get.remote(key), timeout=timeout_s))
    except Exception:  # noqa: BLE001 - a busy or lost counter leaves the display as it was
        return None


class UnitReporter:
    """Counts one stage's finished units in a worker and sends them to the counter actor.

    Picklable: only the key and the unit travel to the workers; each process finds the actor on
    its first send.
    """

    def __init__(self, key: str, unit: str) -> None:
        self.key = key
        self.unit = unit
        self._pending = 0
        self._sent_at = 0.0
        self._looked_at = -LOOKUP_INTERVAL_S
        self._actor: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "unit": self.unit}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["key"], state["unit"])  # type: ignore[misc]

    def add(self, n: int, flush: bool = False) -> None:
        """``n`` more units finished; sent now when ``flush`` or a second has passed since the last send."""
        with self._lock:
            self._pending += int(n)
            now = time.monotonic()
            if not self._pending or (not flush and now - self._sent_at < SEND_INTERVAL_S):
                return
            actor = self._find(now)
            if actor is None:
                self._pending = 0  # nobody listens: drop the counts
                return
            try:
                actor.add.remote(self.key, self._pending)
            except Exception:  # noqa: BLE001 - a lost counter: look it up again later
                self._actor = None
            self._pending, self._sent_at = 0, now

    def flush(self) -> None:
        """Send what is pending (at the end of a batch)."""
        self.add(0, flush=True)

    def _find(self, now: float) -> Any | None:
        if self._actor is not None:
            return self._actor
        ray = _ray()
        if ray is None or now - self._looked_at < LOOKUP_INTERVAL_S:
            return None
        self._looked_at = now
        try:
            self._actor = ray.get_actor(actor_name(ray), namespace=NAMESPACE)
        except Exception:  # noqa: BLE001 - no counter (a job not started by vw): counts are dropped
            self._actor = None
        return self._actor
