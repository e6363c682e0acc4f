"""Rows of one scope of a table written part by part and made visible in one commit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import lance
import pyarrow as pa


class StagedRows:
    """The new rows of one *scope* (a SQL filter) of a LanceDB table, written while they are
    still being computed.

    :meth:`add` may be called from several threads. When the table has no rows in the scope yet,
    each part is written at once as new data files and :meth:`commit` appends them all in one
    transaction: nothing is visible before, and the files of parts never committed belong to no
    version. When the scope has rows, the parts are kept and :meth:`commit` hands them to
    ``replace`` (a function that makes them the scope's rows in one commit, e.g. a merge).
    """

    def __init__(self, table: Any, schema: pa.Schema, scope: str, replace: Callable[[pa.Table], int]) -> None:
        self.table = table
        self.schema = schema
        self.scope = scope
        self.dataset = table.to_lance()
        self.new_scope = self.dataset.count_rows(filter=scope) == 0
        self._replace = replace
        self.parts: list[pa.Table] = []
        self.fragments: list[Any] = []
        self.rows = 0
        self._lock = threading.Lock()

    def check(self, rows: pa.Table) -> None:
        """Raise ``ValueError`` when ``rows`` (already in the table's schema) may not be added."""

    def add(self, rows: pa.Table) -> None:
        """Write (or, when the scope is replaced, keep) ``rows`` in the table's schema."""
        rows = rows.select(self.schema.names).cast(self.schema)
        self.check(rows)
        fragments = []
        if self.new_scope and rows.num_rows:
            fragments = lance.fragment.write_fragments(rows, self.dataset, schema=self.schema)
        with self._lock:
            self.fragments.extend(fragments)
            self.rows += rows.num_rows
            if not self.new_scope:
                self.parts.append(rows)

    def commit(self) -> int:
        """Make the rows added the scope's rows; returns how many there are."""
        if not self.new_scope:
            return self._replace(pa.concat_tables(self.parts) if self.parts else self.schema.empty_table())
        if self.fragments:
            lance.LanceDataset.commit(self.dataset, lance.LanceOperation.Append(self.fragments),
                                      read_version=self.dataset.version)
        return self.rows
