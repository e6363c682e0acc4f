"""Vector search primitives over one column: ANN through the column's index, or exact with numpy.

``ann`` runs Lance's nearest-neighbour search (cosine; LanceDB's multivector search for a
``[T, D]`` query) with search parameters derived from the column's index (:func:`search_params`);
on a column without an index it scans every vector. The dataset object is reused between
searches (:func:`tables.catalog.cached_dataset`) so the index stays in memory.
``exact`` scores the rows that match a filter with numpy, reading only those rows' vectors
(Lance materialises the vector column late, after the filter), so an exact search over a
selective filter costs in proportion to the rows it selects, not to the table.

Scores are cosine similarities; ``_distance`` is ``1 - score`` (LanceDB's cosine distance). For a
per-step (multivector) column the score is MaxSim (:func:`tables.pooling.maxsim`) and the
distance is ``1 - score`` too (LanceDB reports ``|q| * (1 - score)``; it is rescaled here).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tables.filters import FilterError
from tables.pooling import l2_normalise
from udfs.errors import SettingError

SCAN_BATCH = 4096
VECTOR_INDEX_TYPES = ("IVF", "HNSW", "PQ", "SQ", "RQ", "FLAT")


@dataclass(frozen=True)
class IndexInfo:
    """A vector index of a column, as the table reports it."""

    name: str
    column: str
    index_type: str
    indexed_rows: int
    unindexed_rows: int
    num_partitions: int | None = None


@dataclass(frozen=True)
class SearchParams:
    """Query-time knobs of an ANN search (None leaves LanceDB's default)."""

    nprobes: int | None = None
    ef: int | None = None
    refine_factor: int | None = None

    def apply(self, builder: Any, bypass_index: bool = False) -> Any:
        """``builder`` (a LanceDB vector query) with these knobs, or with the index bypassed."""
        if bypass_index:
            return builder.bypass_vector_index()
        if self.nprobes is not None:
            builder = builder.nprobes(self.nprobes)
        if self.ef is not None:
            builder = builder.ef(self.ef)
        if self.refine_factor is not None:
            builder = builder.refine_factor(self.refine_factor)
        return builder

    def as_dict(self) -> dict[str, int]:
        """The set parameters, for reporting."""
        return {k: v for k, v in (("nprobes", self.nprobes), ("ef", self.ef),
                                  ("refine_factor", self.refine_factor)) if v is not None}


def is_vector_index(index_type: str) -> bool:
    """True for LanceDB's vector index types (IvfPq, IvfHnswSq, ...), False for scalar and FTS ones."""
    t = index_type.upper()
    return t.startswith("IVF") or "HNSW" in t


_PARTITIONS: dict[tuple[str, str], int | None] = {}


def _num_partitions(table: Any, name: str, uuid: str) -> int | None:
    key = (uuid, name)
    if key not in _PARTITIONS:
        # Only the partition count is read: leave the centroids out of the statistics.
        os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
        stats = table.to_lance().stats.index_stats(name)
        segments = stats.get("segments") or stats.get("indices") or []
        _PARTITIONS[key] = int(segments[0]["num_partitions"]) if segments and "num_partitions" in segments[0] else None
    return _PARTITIONS[key]


def vector_index(table: Any, column: str) -> IndexInfo | None:
    """The vector index on ``column`` (None when the column has none)."""
    for idx in table.list_indices():
        if list(idx.columns) == [column] and is_vector_index(str(idx.index_type)):
            indexed = int(getattr(idx, "num_indexed_rows", 0) or 0)
            unindexed = int(getattr(idx, "num_unindexed_rows", 0) or 0)
            if not hasattr(idx, "num_indexed_rows"):
                stats = table.index_stats(idx.name)
                indexed, unindexed = int(stats.num_indexed_rows), int(stats.num_unindexed_rows)
            parts = _num_partitions(table, idx.name, str(getattr(idx, "index_uuid", idx.name)))
            return IndexInfo(idx.name, column, str(idx.index_type), indexed, unindexed, parts)
    return None


def search_params(info: IndexInfo | None, k: int, override: SearchParams | None = None) -> SearchParams:
    """Default query parameters for an index, with any explicit ``override`` values taking precedence.

    HNSW-backed indexes (few large partitions) probe every partition up to 8 (a quarter beyond)
    with ``ef = max(150, 2 k)`` and re-score ``2 k`` hits with the full vectors (exact distances
    for the returned rows); IVF_PQ / IVF_SQ / IVF_FLAT probe ``max(20, partitions / 8)``
    partitions and refine (re-score with full vectors) ``10 k`` PQ candidates or ``5 k`` SQ ones.
    """
    over = override or SearchParams()
    if info is None:
        return over
    t = info.index_type.upper()
    parts = info.num_partitions or 1
    if "HNSW" in t:
        base = SearchParams(nprobes=parts if parts <= 8 else max(8, parts // 4), ef=max(150, 2 * k),
                            refine_factor=2)
    else:
        refine = 10 if "PQ" in t else 5 if ("SQ" in t or "RQ" in t) else None
        base = SearchParams(nprobes=min(parts, max(20, parts // 8)), refine_factor=refine)
    refine = over.refine_factor if over.refine_factor is not None else base.refine_factor
    ef = over.ef if over.ef is not None else base.ef
    if ef is not None:  # HNSW returns k * refine_factor candidates and needs ef >= that
        ef = max(ef, k * (refine or 1))
    return SearchParams(nprobes=over.nprobes if over.nprobes is not None else base.nprobes, ef=ef,
                        refine_factor=refine)


def ann(table: Any, column: str, query: np.ndarray, k: int, *, where: str | None = None,
        prefilter: bool = True, select: Sequence[str] = (), params: SearchParams | None = None,
        bypass_index: bool = False) -> pa.Table:
    """LanceDB cosine search on ``column`` (a ``[D]`` query, or ``[T, D]`` for a multivector column).

    Returns ``select`` columns plus ``_distance`` (cosine distance; MaxSim-based for multivector).
    """
    q = np.asarray(query, dtype=np.float32)
    p = params or SearchParams()
    cols = [c for c in dict.fromkeys(select) if c != "_distance"]
    if q.ndim == 1:
        return _lance_nearest(table, column, q, k, where, prefilter, cols, p, bypass_index)
    builder = p.apply(table.search([row for row in q], vector_column_name=column).distance_type("cosine"),
                      bypass_index)
    if where:
        builder = builder.where(where, prefilter=prefilter)
    try:
        out = builder.limit(k).select([*cols, "_distance"]).to_arrow()
    except Exception as err:  # noqa: BLE001 - a bad filter is the usual cause; the engine says which
        if where:
            raise FilterError(f"search with filter {where!r} failed: {err}") from err
        raise
    # LanceDB's multivector distance is the sum over query steps of (1 - best cosine)
    dist = out.column("_distance").to_numpy(zero_copy_only=False) / max(len(q), 1)
    return out.set_column(out.schema.get_field_index("_distance"), "_distance", pa.array(dist, pa.float32()))


def _lance_nearest(table: Any, column: str, q: np.ndarray, k: int, where: str | None, prefilter: bool,
                   cols: list[str], p: SearchParams, bypass_index: bool) -> pa.Table:
    """A single-vector search through the table's cached Lance dataset (warm index caches)."""
    from tables.catalog import cached_dataset

    nearest: dict[str, Any] = {"column": column, "q": q, "k": k, "metric": "cosine", "use_index": not bypass_index}
    if not bypass_index:
        nearest.update(p.as_dict())
    try:
        return cached_dataset(table).to_table(columns=[*cols, "_distance"], nearest=nearest, filter=where or None,
                                              prefilter=bool(where) and prefilter)
    except Exception as err:  # noqa: BLE001 - a bad filter is the usual cause; the engine says which
        if where:
            raise FilterError(f"search with filter {where!r} failed: {err}") from err
        raise


class TopK:
    """The ``k`` best (highest-score) items seen so far."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, Any]] = []
        self._n = 0

    def push_many(self, scores: np.ndarray, item: Callable[[int], Any]) -> None:
        """Offer ``len(scores)`` items; ``item(i)`` builds item ``i`` (called only for contenders)."""
        if len(scores) > self.k:
            keep = np.argpartition(-scores, self.k - 1)[: self.k]
        else:
            keep = np.arange(len(scores))
        for i in sorted(int(j) for j in keep):
            self._n += 1
            score = float(scores[i])
            if len(self._heap) < self.k:
                heapq.heappush(self._heap, (score, -self._n, item(i)))
            elif score > self._heap[0][0]:
                heapq.heapreplace(self._heap, (score, -self._n, item(i)))

    def best(self) -> list[tuple[float, Any]]:
        """``(score, item)`` pairs, best first (ties keep the scan order)."""
        return [(s, item) for s, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


def scan(table: Any, columns: Sequence[str], where: str | None, batch_size: int = SCAN_BATCH) -> Any:
    """Record batches of ``columns`` of the rows matching ``where`` (a bad filter raises FilterError)."""
    from tables.catalog import cached_dataset

    ds = cached_dataset(table)
    try:
        yield from ds.to_batches(columns=list(dict.fromkeys(columns)), filter=where, batch_size=batch_size)
    except Exception as err:  # noqa: BLE001 - surfaced with the filter text
        if where:
            raise FilterError(f"invalid filter {where!r}: {err}") from err
        raise


def exact(table: Any, column: str, k: int, score_rows: Callable[[pa.RecordBatch], np.ndarray], *,
          key: str, where: str | None = None, select: Sequence[str] = ()) -> pa.Table:
    """Exact top-``k`` over the rows matching ``where``: ``score_rows(batch)`` scores each row.

    Rows whose ``column`` is NULL are skipped (``score_rows`` gives them ``-inf``). Returns ``key``
    + ``select`` columns (values of the winning rows) plus ``_distance = 1 - score``, best first.
    """
    out_cols = [c for c in dict.fromkeys([key, *select]) if c != "_distance"]
    cols = list(dict.fromkeys([*out_cols, column]))
    top = TopK(k)
    for batch in scan(table, cols, where):
        if batch.num_rows == 0:
            continue
        scores = np.asarray(score_rows(batch), dtype=np.float64)
        present = np.isfinite(scores)
        if not present.all():
            idx = np.nonzero(present)[0]
            top.push_many(scores[idx], lambda i, b=batch, idx=idx: b.slice(int(idx[i]), 1).select(out_cols))
            continue
        top.push_many(scores, lambda i, b=batch: b.slice(i, 1).select(out_cols))
    best = top.best()
    if not best:
        schema = pa.schema([table.schema.field(c) for c in out_cols] + [pa.field("_distance", pa.float32())])
        return schema.empty_table()
    rows = pa.concat_tables([pa.Table.from_batches([b]) for _, b in best])
    dist = pa.array([1.0 - s for s, _ in best], pa.float32())
    return rows.append_column("_distance", dist)


def vector_scores(column: str, query: np.ndarray) -> Callable[[pa.RecordBatch], np.ndarray]:
    """Cosine scores of a ``fixed_size_list`` column's rows against a ``[D]`` query."""
    q = l2_normalise(query)

    def score(batch: pa.RecordBatch) -> np.ndarray:
        arr = batch.column(column)
        dim = arr.type.list_size
        values = arr.values.to_numpy(zero_copy_only=False)
        start = arr.offset * dim
        x = np.asarray(values[start : start + len(arr) * dim], np.float32).reshape(-1, dim)
        # (x @ q) / |x| rather than normalising a copy of x: 5x faster at 1,024-d (zero rows score 0)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        scores = ((x @ q) / np.maximum(norms, 1e-12)).astype(np.float64)
        if arr.null_count:
            scores[~arr.is_valid().to_numpy(zero_copy_only=False)] = -np.inf
        return scores

    return score


def steps_scores(column: str, score_rows: Callable[[np.ndarray, np.ndarray], np.ndarray]
                 ) -> Callable[[pa.RecordBatch], np.ndarray]:
    """Scores of a per-step column's rows: ``score_rows(values, offsets)`` scores a batch's rows stored
    flat (row ``i`` is ``values[offsets[i]:offsets[i + 1]]``, ``[T, D]``) in whole-array operations,
    :meth:`tables.pooling.Pooling.pool_rows` or :func:`tables.pooling.maxsim_rows`; NULL rows and rows
    without steps score ``-inf``."""

    def score(batch: pa.RecordBatch) -> np.ndarray:
        arr = batch.column(column)
        dim = arr.type.value_type.list_size
        # the list offsets index the child's steps (a slice of the batch shifts the offsets, not the child)
        values = arr.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        offsets = arr.offsets.to_numpy()
        scores = np.asarray(score_rows(values, offsets), np.float64)
        scores[np.diff(offsets) == 0] = -np.inf
        if arr.null_count:
            scores[~arr.is_valid().to_numpy(zero_copy_only=False)] = -np.inf
        return scores

    return score


#: Floats the exact path reads and scores in about the time one indexed search takes: exact search
#: is chosen while the matching rows' vectors fit it. Measured with the planner sweep of
#: ``python -m bench.search --only pooled`` (100,000 x 1,024-d, IVF_HNSW_SQ, 2 cores;
#: ``bench/results/search-planner-2026-12-06-cpu2.json``): through ``search()`` the exact path costs
#: about 5 ms plus 1.2 us per 1,024-d row read under a filter (5.3 ms at 100 rows, 8.6 ms at 1,000,
#: 12.0 ms at 2,000, 17.4 ms at 10,000), the prefiltered index 7-9 ms whatever the filter keeps
#: (13.7 ms at 10,000 rows); they cross between 1,000 and 1,500 rows. The budget sits at the low
#: end: a read of stored vectors slows more than the index under load or a cold page cache (27 ms
#: for 1,000 rows was seen on a busy machine). Scoring vectors already in memory, a fraction of
#: that read, had once set this budget 24 times higher.
EXACT_BUDGET = 1_000_000


def vector_ranking(table: Any, column: str, query: np.ndarray, k: int, *, key: str = "video_id",
                   where: str | None = None, prefilter: bool = True, candidates: str = "auto",
                   params: SearchParams | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Top-``k`` rows of a single-vector column for a ``[D]`` query: ``(key, _distance)`` and the plan.

    ``candidates``: ``exact`` (numpy over the rows matching ``where``), ``ann`` (the column's index
    with ``where`` as a prefilter; a full LanceDB scan when there is no index) or ``auto``, by cost:
    exact when the matching rows' vectors fit :data:`EXACT_BUDGET` (a selective filter, or a small
    table), else ``ann``; the plan's ``chosen_because`` says which and why. When a
    prefiltered ANN search returns fewer than ``k`` rows although more match, the search is redone
    exactly and the plan says so.
    """
    from tables.filters import count_matching

    dim = int(np.asarray(query).shape[-1])
    # Rows matching the filter (an upper bound of those with a vector: counting non-NULL vectors
    # would read the whole vector column).
    matching = count_matching(table, where)
    info = vector_index(table, column)
    mode = candidates
    plan: dict[str, Any] = {"column": column, "matching_rows": matching}
    if mode == "auto":
        # By cost: exact while the matching rows' vectors fit the budget (a selective filter or a
        # small table), the index beyond. A plain IVF index loses recall under a prefilter (only the
        # probed partitions are filtered), so a filtered search stays exact four times longer there.
        hnsw = info is not None and "HNSW" in info.index_type.upper()
        budget = EXACT_BUDGET * (4 if where and info is not None and not hnsw else 1)
        floats = matching * dim
        mode = "exact" if floats <= budget else "ann"
        plan["chosen_because"] = (f"{matching} matching rows x {dim} = {floats:,} floats "
                                  f"{'<=' if floats <= budget else '>'} the exact-search budget of {budget:,}"
                                  + ("" if info else "; no index"))
    if mode == "exact":
        out = exact(table, column, k, vector_scores(column, query), key=key, where=where)
        plan["method"] = "exact"
        return out, plan
    if mode != "ann":
        raise SettingError(f"unknown candidates mode {candidates!r}: use auto, exact or ann")
    p = search_params(info, k, params)
    out = ann(table, column, query, k, where=where, prefilter=prefilter, select=[key], params=p,
              bypass_index=info is None)
    plan.update(method="ann" if info else "flat-scan (no index)", index=info.index_type if info else None,
                params=p.as_dict() if info else {}, prefilter=bool(where) and prefilter)
    if info and info.unindexed_rows:
        plan["unindexed_rows"] = info.unindexed_rows  # LanceDB scans these exactly and merges them
    if prefilter and out.num_rows < min(k, matching):
        out = exact(table, column, k, vector_scores(column, query), key=key, where=where)
        plan["completed_exactly"] = f"the index returned fewer than {min(k, matching)} rows under the filter"
    return out, plan
