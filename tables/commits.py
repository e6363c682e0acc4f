"""Commits that race other writers: recognise Lance's commit conflicts and redo short writes.

Lance commits optimistically: a writer that read version ``n`` and finds ``n + 1`` written by
someone else either rebases its transaction (appends, most merges) or refuses with a commit
conflict. Schema changes (adding, configuring or dropping a column) are refused against any
concurrent schema change, so two backfills registering their columns at the same moment refuse
each other; each column is two commits (the column, then its UDF configuration), so a writer
can be preempted several times in a row while another registers its columns.

:func:`retry_on_conflict` redoes such a short write on the latest version, with a growing,
randomised pause between tries, until it commits or a deadline passes. Long work (a backfill
job) is not redone here: see :mod:`jobs.backfill`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from udfs.errors import VwError

T = TypeVar("T")

#: How long one write keeps retrying while other writers keep committing first.
CONFLICT_DEADLINE_S = 120.0
#: First pause between two tries; doubled after each conflict up to :data:`MAX_PAUSE_S`.
FIRST_PAUSE_S = 0.02
MAX_PAUSE_S = 2.0


class CommitRetryError(VwError, RuntimeError):
    """A write still conflicted with concurrent writers when its deadline passed."""


def is_commit_conflict(err: BaseException) -> bool:
    """True when ``err`` (or its cause) is Lance refusing a commit because of a concurrent write.

    Lance raises :class:`lance.commit.CommitConflictError` from its Python API and a
    ``RuntimeError`` ("Retryable commit conflict ...", "Incompatible transaction ...") from
    LanceDB's; both are recognised, through ``__cause__`` / ``__context__`` chains too.
    """
    from lance.commit import CommitConflictError

    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CommitConflictError) or "CommitConflictError" in type(current).__name__:
            return True
        text = str(current)
        if ("CommitConflictError" in text or "Incompatible transaction" in text
                or "commit conflict" in text.lower()):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_on_conflict(write: Callable[[], T], table: Any, what: str, *,
                      deadline_s: float = CONFLICT_DEADLINE_S,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """``write()``, redone on ``table``'s latest version after each commit conflict.

    ``write`` must decide what to do from the table's current state each time it is called (a
    try can be preempted after part of its work committed). Pauses grow from
    :data:`FIRST_PAUSE_S` to :data:`MAX_PAUSE_S`, each drawn at random up to that bound so
    that writers that collided do not collide again. Any other error is raised at once.

    Raises:
        CommitRetryError: conflicts went on for ``deadline_s`` seconds (names ``what``, the
            table and the number of tries; the last conflict is its cause).
    """
    start = time.monotonic()
    bound = FIRST_PAUSE_S
    tries = 0
    while True:
        tries += 1
        try:
            return write()
        except Exception as err:
            if not is_commit_conflict(err):
                raise
            waited = time.monotonic() - start
            if waited >= deadline_s:
                name = getattr(table, "name", "?")
                raise CommitRetryError(
                    f"{what} on table {name!r}: concurrent writers committed first {tries} times in "
                    f"{waited:.0f}s; nothing of it was kept half-done. Run the command again once the "
                    f"other writers are done"
                ) from err
        sleep(random.uniform(bound / 2, bound))
        bound = min(bound * 2, MAX_PAUSE_S)
        table.checkout_latest()
