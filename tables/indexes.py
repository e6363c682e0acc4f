"""Index building for the read paths: ANN indexes on vector columns, scalar and full-text indexes.

Choice of the vector index (:func:`plan_vector_index`; every value can be overridden):

* fewer than ``min_rows`` (default 5,000) vectors: no index. An exact scan of that many vectors
  takes milliseconds and is exact; the search code scans when there is no index.
* one vector per row (``*_pooled``, ``caption_embedding``, ``frames.vector``): ``IVF_HNSW_SQ``
  (HNSW graphs over 8-bit scalar-quantised vectors inside a few IVF partitions,
  ``ceil(rows / 250,000)``, at least 2; ``m = 16``, ``ef_construction = 100``), cosine. HNSW
  keeps recall high under prefilters, which IVF_PQ does not; SQ keeps distances close to exact.
  Searches probe every partition up to 8.
* a per-step (multivector) column: ``IVF_FLAT`` with ``sqrt(vectors)`` partitions (cosine is the
  only metric LanceDB supports for multivector columns); candidates are re-scored exactly.

Scalar indexes go on the columns people filter on (:data:`SCALAR_CANDIDATES`): ``BITMAP`` for
columns with at most 1,000 distinct values repeated 10 times on average, ``BTREE`` otherwise.
``caption`` gets LanceDB's native full-text index. After a vector index is built,
:func:`measure_recall` compares it with an exact search on a sample of the table's own vectors
(recall@10, p50 latency of both).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tables.choices import VECTOR_INDEX_TYPES
from tables.vector_search import SearchParams, search_params, vector_index
from udfs.errors import VwError

MIN_ROWS = 5000
ROWS_PER_PARTITION = 250_000
#: HNSW graph degree and build breadth: m = 16, ef_construction = 100 builds ~5x faster than
#: LanceDB's defaults (20, 300) with the same recall@10 on the benchmark data.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
BITMAP_MAX_DISTINCT = 1000
#: Columns of each table that get a scalar index when present.
SCALAR_CANDIDATES = {
    "videos": ("video_id", "source", "split", "category", "scenario", "duration_s"),
    "frames": ("video_id", "time_s"),
    "events": ("video_id", "model", "label", "time_s", "confidence"),
}
FTS_CANDIDATES = {"videos": ("caption",)}
VECTOR_TYPES = VECTOR_INDEX_TYPES


class IndexBuildError(VwError, ValueError):
    """An index that cannot be built as asked (names the table, the column and the reason)."""


@dataclass
class IndexPlan:
    """The vector index chosen for a column, or why none is built (``index_type`` None)."""

    column: str
    rows: int
    dim: int
    index_type: str | None
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass
class IndexReport:
    """What ``vw index`` did for one column."""

    table: str
    column: str
    kind: str  # vector | scalar | fts | frames
    action: str  # built | skipped | refreshed
    detail: str = ""
    seconds: float = 0.0
    recall_at_10: float | None = None
    ann_p50_ms: float | None = None
    exact_p50_ms: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _sub_vectors(dim: int) -> int:
    if dim % 16 == 0:
        return dim // 16
    if dim % 8 == 0:
        return dim // 8
    return 1


def plan_vector_index(rows: int, dim: int, *, multivector: bool = False, vectors: int | None = None,
                      index_type: str | None = None, num_partitions: int | None = None,
                      num_sub_vectors: int | None = None, min_rows: int = MIN_ROWS) -> IndexPlan:
    """The index for a column of ``rows`` rows of ``dim``-d vectors (``vectors`` in all, for multivector)."""
    total = vectors if vectors is not None else rows
    if index_type is not None and index_type.upper() not in VECTOR_TYPES:
        raise IndexBuildError(f"unknown index type {index_type!r}: use one of {', '.join(VECTOR_TYPES)}")
    if total < min_rows:
        return IndexPlan("", rows, dim, None, reason=(
            f"{total} vectors < {min_rows}: no index; an exact scan of that many vectors is fast and exact"))
    if multivector:
        kind = (index_type or "IVF_FLAT").upper()
        parts = num_partitions or max(2, int(math.sqrt(total)))
    else:
        kind = (index_type or "IVF_HNSW_SQ").upper()
        default_parts = (max(2, math.ceil(rows / ROWS_PER_PARTITION)) if "HNSW" in kind
                         else max(2, int(math.sqrt(rows))))
        parts = num_partitions or default_parts
    params: dict[str, Any] = {"num_partitions": int(min(parts, max(1, total // 64)))}
    if "HNSW" in kind:
        params.update(m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
    if "PQ" in kind:
        params["num_sub_vectors"] = num_sub_vectors or _sub_vectors(dim)
    return IndexPlan("", rows, dim, kind, params, reason="chosen from rows and dimension")


def build_vector_index(table: Any, column: str, plan: IndexPlan) -> float:
    """Create (replace) the cosine vector index of ``plan`` on ``column``; returns seconds taken."""
    start = time.monotonic()
    kwargs: dict[str, Any] = {"metric": "cosine", "vector_column_name": column, "index_type": plan.index_type,
                              "replace": True, "num_partitions": plan.params["num_partitions"]}
    for name in ("num_sub_vectors", "m", "ef_construction"):
        if name in plan.params:
            kwargs[name] = plan.params[name]
    table.create_index(**kwargs)
    return time.monotonic() - start


def sample_vectors(table: Any, column: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``n`` stored vectors (``[D]``, or ``[T, D]`` for multivector) of random rows."""
    ds = table.to_lance()
    total = ds.count_rows()
    if total == 0:
        return []
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=min(n, total), replace=False))
    got = ds.take(idx.tolist(), columns=[column]).column(column).combine_chunks()
    out = []
    if pa.types.is_list(got.type):
        from udfs.arrays import steps_from_arrow

        out = [s for s in steps_from_arrow(got) if s is not None and len(s)]
    else:
        dim = got.type.list_size
        values = got.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        valid = got.is_valid().to_numpy(zero_copy_only=False)
        out = [values[i] for i in range(len(got)) if valid[i]]
    return out


def measure_recall(table: Any, column: str, queries: list[np.ndarray], k: int = 10,
                   key: str = "_rowid", params: SearchParams | None = None) -> dict[str, float]:
    """recall@k of the indexed search against an exact scan, and p50 latencies (ms) of both."""
    info = vector_index(table, column)
    p = search_params(info, k, params)
    hits, ann_ms, exact_ms = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        got = _ids(table, column, q, k, p, False)
        ann_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        truth = _ids(table, column, q, k, p, True)
        exact_ms.append(1000 * (time.perf_counter() - t0))
        hits.append(len(set(got) & set(truth)) / max(1, min(k, len(truth))))
    return {"recall": float(np.mean(hits)) if hits else float("nan"),
            "ann_p50_ms": float(np.median(ann_ms)) if ann_ms else float("nan"),
            "exact_p50_ms": float(np.median(exact_ms)) if exact_ms else float("nan"),
            "queries": len(queries), **{f"param_{k_}": v for k_, v in p.as_dict().items()}}


def _ids(table: Any, column: str, q: np.ndarray, k: int, p: SearchParams, exact: bool) -> list[int]:
    builder = table.search([r for r in q] if np.ndim(q) == 2 else q, vector_column_name=column)
    builder = p.apply(builder.distance_type("cosine").with_row_id(True), exact)
    return builder.limit(k).select(["_distance"]).to_arrow().column("_rowid").to_pylist()


def scalar_index_kind(table: Any, column: str) -> str | None:
    """``BITMAP`` / ``BTREE`` for a scalar column (by distinct count), ``LABEL_LIST`` for string lists,
    None for columns that cannot take a scalar index."""
    dtype = table.schema.field(column).type
    if pa.types.is_list(dtype) and pa.types.is_string(dtype.value_type):
        return "LABEL_LIST"
    if not (pa.types.is_string(dtype) or pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
            or pa.types.is_boolean(dtype) or pa.types.is_timestamp(dtype)):
        return None
    if pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype):
        return "BTREE"
    distinct: set[Any] = set()
    rows = 0
    for batch in table.to_lance().to_batches(columns=[column], batch_size=65536):
        rows += batch.num_rows
        distinct.update(batch.column(0).unique().to_pylist())
        if len(distinct) > BITMAP_MAX_DISTINCT:
            return "BTREE"
    # A bitmap pays off when values repeat; near-unique keys get a B-tree.
    return "BITMAP" if len(distinct) * 10 <= max(rows, 1) else "BTREE"


def existing_indexes(table: Any) -> dict[str, str]:
    """``{column: index_type}`` of the single-column indexes of ``table``."""
    return {list(i.columns)[0]: str(i.index_type) for i in table.list_indices() if len(i.columns) == 1}


#: A backfill or an events refresh brings an index up to date once this share of the indexed rows
#: (and at least :data:`STALE_MIN_ROWS` rows) is not in it; ``vw index`` does at any count.
STALE_FRACTION = 0.1
STALE_MIN_ROWS = 1000


def index_kind(index_type: str) -> str:
    """``vector``, ``fts`` or ``scalar`` for an index type as Lance names it."""
    t = index_type.upper()
    if "IVF" in t or "HNSW" in t:
        return "vector"
    return "fts" if "INVERTED" in t or "FTS" in t else "scalar"


def _state_of(table: Any, column: str) -> dict[str, Any] | None:
    return next((s for s in index_states(table) if s["columns"] == [column]), None)


def refresh_index(table: Any, table_name: str, state: dict[str, Any]) -> IndexReport:
    """Add the rows an index lacks to it incrementally (Lance's index optimisation: the new rows
    go into a delta of the existing index; nothing is retrained or rebuilt)."""
    start = time.monotonic()
    table.to_lance().optimize.optimize_indices(index_names=[state["name"]])
    table.checkout_latest()
    after = _state_of(table, state["columns"][0]) or state
    left = f", {after['unindexed_rows']} still not indexed" if after["unindexed_rows"] else ""
    return IndexReport(table_name, state["columns"][0], index_kind(state["type"]), "refreshed",
                       f"{state['unindexed_rows']} new rows added to the {state['type']} index incrementally{left}",
                       time.monotonic() - start)


def refresh_stale_indexes(table: Any, table_name: str, min_fraction: float = STALE_FRACTION,
                          min_rows: int = STALE_MIN_ROWS) -> list[IndexReport]:
    """:func:`refresh_index` for every index of ``table`` missing at least ``min_rows`` rows and
    ``min_fraction`` of its indexed rows (``0, 1``: every index missing any row)."""
    out = []
    for state in index_states(table):
        behind = state["unindexed_rows"]
        if behind >= max(1, min_rows) and behind >= min_fraction * state["indexed_rows"]:
            out.append(refresh_index(table, table_name, state))
    return out


def ensure_scalar_index(table: Any, table_name: str, column: str, kind: str | None = None,
                        replace: bool = False) -> IndexReport:
    """Create a scalar index on ``column`` (kind chosen by :func:`scalar_index_kind` unless given);
    an existing one is brought up to date incrementally (or left as it is when it is)."""
    have = existing_indexes(table)
    if column in have and not replace:
        state = _state_of(table, column)
        if state is not None and state["unindexed_rows"]:
            return refresh_index(table, table_name, state)
        return IndexReport(table_name, column, "scalar", "skipped", f"already indexed ({have[column]}), up to date")
    chosen = kind or scalar_index_kind(table, column)
    if chosen is None:
        return IndexReport(table_name, column, "scalar", "skipped",
                           f"type {table.schema.field(column).type} takes no scalar index")
    start = time.monotonic()
    table.create_scalar_index(column, index_type=chosen, replace=True)
    return IndexReport(table_name, column, "scalar", "built", chosen, time.monotonic() - start)


def ensure_fts_index(table: Any, table_name: str, column: str) -> IndexReport:
    """Build LanceDB's native full-text index on a text column; an existing one is brought up to
    date incrementally (or left as it is when it is)."""
    state = _state_of(table, column)
    if state is not None and index_kind(state["type"]) == "fts":
        if state["unindexed_rows"]:
            return refresh_index(table, table_name, state)
        return IndexReport(table_name, column, "fts", "skipped", f"already indexed ({state['type']}), up to date")
    start = time.monotonic()
    table.create_fts_index(column, replace=True)
    return IndexReport(table_name, column, "fts", "built", "native inverted index (BM25)",
                       time.monotonic() - start)


def index_states(table: Any) -> list[dict[str, Any]]:
    """Every index of ``table``: name, columns, type, indexed and unindexed rows."""
    out = []
    for idx in table.list_indices():
        indexed = getattr(idx, "num_indexed_rows", None)
        unindexed = getattr(idx, "num_unindexed_rows", None)
        if indexed is None:
            stats = table.index_stats(idx.name)
            indexed, unindexed = stats.num_indexed_rows, stats.num_unindexed_rows
        out.append({"name": idx.name, "columns": list(idx.columns), "type": str(idx.index_type),
                    "indexed_rows": int(indexed or 0), "unindexed_rows": int(unindexed or 0)})
    return out
