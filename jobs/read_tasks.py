"""How a backfill job splits its table into read tasks (geneva's ``task_size``).

geneva's default is ``min(rows // workers // 2, largest fragment)`` rows per task: on a table of
few fragments it cuts each fragment in two or more tasks, so that every worker gets work. A task
that covers a whole fragment is written by the worker itself when it ends (geneva's direct fragment
write); a task that covers part of one goes through a checkpoint, a queue actor and a
fragment-writer actor, two more processes that each import geneva, seconds of a small job. With one
worker (the local default) or at least as many fragments as workers, cutting fragments gains no
parallelism: the tasks are then whole fragments.
"""

from __future__ import annotations

from typing import Any


def fragment_rows(table: Any) -> list[int]:
    """Physical rows of each fragment of ``table`` (a LanceDB or geneva table), from the manifest."""
    return [int(f.metadata.physical_rows) for f in table.to_lance().get_fragments()]


def whole_fragment_task_size(rows: list[int], concurrency: int) -> int | None:
    """Rows per read task so that every task is one whole fragment, or ``None`` (geneva's default)
    when the fragments are fewer than the workers and splitting them is what keeps workers busy.

    ``rows``: the fragments' physical rows; ``concurrency``: the job's workers.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not rows or len(rows) < concurrency:
        return None
    return max(max(rows), 1)


def task_size(table: Any, concurrency: int) -> int | None:
    """``task_size`` for a backfill of ``table`` with ``concurrency`` workers (see the module)."""
    return whole_fragment_task_size(fragment_rows(table), concurrency)
