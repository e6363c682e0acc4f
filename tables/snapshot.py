"""A table pinned at one version, as the training readers hold it (picklable, reopened per process)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TableSnapshot:
    """Where a Lance table lives and which version to read; the dataset opens lazily per process.

    Only plain values are pickled (no open handle crosses a fork or a worker start), and a
    process reopens the dataset at the pinned version the first time it reads.
    """

    uri: str
    version: int
    storage_options: dict[str, str] | None
    names: set[str]
    _ds: Any = field(default=None, repr=False, compare=False)
    _pid: int | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ds": None, "_pid": None}

    @property
    def dataset(self) -> Any:
        """The Lance dataset at the pinned version, opened once per process."""
        if self._ds is None or self._pid != os.getpid():
            import lance

            self._ds = lance.dataset(self.uri, version=self.version, storage_options=self.storage_options)
            self._pid = os.getpid()
        return self._ds


def pin_table(db: str | None, table: str, version: int | None, columns: Sequence[str],
              error: type[Exception]) -> tuple[TableSnapshot, Any]:
    """Pin ``table`` of the warehouse ``db`` at ``version`` (default: the latest).

    Returns the snapshot and the dataset opened in this process. Raises ``error`` naming the
    problem when the table or one of ``columns`` does not exist.
    """
    from tables.connection import connect, storage_options_from_env

    conn = connect(db)
    if table not in set(conn.table_names()):
        raise error(f"the warehouse at {conn.uri} has no table {table!r}")
    lance_ds = conn.open_table(table).to_lance()
    if version is not None:
        lance_ds = lance_ds.checkout_version(version)
    names = set(lance_ds.schema.names)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise error(
            f"table {table!r} has no column(s) {', '.join(map(repr, unknown))}; available: {', '.join(sorted(names))}"
        )
    snap = TableSnapshot(lance_ds.uri, int(lance_ds.version), storage_options_from_env() or None, names)
    return snap, lance_ds
