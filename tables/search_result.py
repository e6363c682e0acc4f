"""The answer of every search: an Arrow table of ranked rows plus the plan that produced it.

Columns: ``rank`` (1 = best), the key (``video_id``; moments add ``time_s``), ``score`` (higher is
better: a cosine similarity for vector searches, BM25 for full text, the fused RRF score for
hybrid searches), ``distance`` (``1 - score`` for vector searches, NULL otherwise), optional
per-source columns of a fused search, then the requested metadata columns. ``plan`` says how
the result was computed (index or exact scan, candidate pool, warnings) and how long it took.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa


@dataclass
class SearchResult:
    """Ranked rows (:attr:`table`) and how they were found (:attr:`plan`)."""

    table: pa.Table
    plan: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.table.num_rows

    def to_arrow(self) -> pa.Table:
        """The result rows as an Arrow table."""
        return self.table

    def to_pandas(self) -> Any:
        """The result rows as a pandas DataFrame."""
        return self.table.to_pandas()

    def to_list(self) -> list[dict[str, Any]]:
        """The result rows as a list of dicts."""
        return self.table.to_pylist()

    def to_json(self, indent: int | None = 2) -> str:
        """``{"plan": ..., "results": [...]}`` as JSON text (vectors become lists)."""
        return json.dumps({"plan": self.plan, "results": self.to_list()}, indent=indent, default=_json_default)

    def column(self, name: str) -> list[Any]:
        """One result column as a Python list."""
        return self.table.column(name).to_pylist()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def ranked_table(keys: dict[str, Sequence[Any]], scores: Sequence[float], distances: Sequence[float] | None,
                 extra: dict[str, pa.Array | Sequence[Any]] | None = None) -> pa.Table:
    """A result table in rank order from key columns, scores, distances and extra columns."""
    n = len(scores)
    cols: dict[str, Any] = {"rank": pa.array(np.arange(1, n + 1, dtype=np.int32))}
    for name, values in keys.items():
        cols[name] = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values))
    cols["score"] = pa.array(np.asarray(scores, dtype=np.float64))
    cols["distance"] = (pa.array(np.asarray(distances, dtype=np.float64)) if distances is not None
                        else pa.nulls(n, pa.float64()))
    for name, values in (extra or {}).items():
        cols[name] = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values))
    return pa.table(cols)


def attach_columns(result: pa.Table, table: Any, key: str, columns: Sequence[str]) -> pa.Table:
    """``result`` with ``columns`` of ``table`` joined on ``key`` (values in result order)."""
    wanted = [c for c in dict.fromkeys(columns) if c not in result.column_names]
    if not wanted or result.num_rows == 0:
        return _with_empty(result, table, wanted)
    from tables.catalog import cached_dataset
    from tables.filters import in_list

    ids = result.column(key).to_pylist()
    got = cached_dataset(table).to_table(columns=[key, *wanted], filter=in_list(key, ids))
    pos = {v: i for i, v in enumerate(got.column(key).to_pylist())}
    order = pa.array([pos.get(v) for v in ids], pa.int64())
    for c in wanted:
        result = result.append_column(c, got.column(c).take(order))
    return result


def _with_empty(result: pa.Table, table: Any, wanted: list[str]) -> pa.Table:
    schema = table.schema
    for c in wanted:
        result = result.append_column(c, pa.nulls(result.num_rows, schema.field(c).type))
    return result
