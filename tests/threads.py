"""Run calls in threads released together (tests of concurrent writers without Ray)."""

from __future__ import annotations

import threading
from collections.abc import Callable

#: How long a test waits for its threads (generous: a busy 2-core machine).
JOIN_TIMEOUT_S = 300


def at_once(calls: list[Callable[[], object]]) -> list[str]:
    """Run ``calls`` in threads released together; the errors they raised (``repr``)."""
    barrier = threading.Barrier(len(calls))
    errors: list[str] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(err))

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), f"a call was still running after {JOIN_TIMEOUT_S} s"
    return errors
