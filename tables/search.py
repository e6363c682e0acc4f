"""Similarity search: "videos like this one", by stored video, by video file, by vector, by text.

::

    from tables.search import search

    res = search(video_id="bikes", pooling="max", k=5, where="split = 'train'", columns=["caption"])
    res.to_pandas()        # rank, video_id, score, distance, caption
    res.plan               # how it was computed (index, exact scan, candidate pool, timings)
    search(video="clip.mp4", column="frame_features", pooling="segment:0-0.33")
    search(vector=v, column="video_embedding", pooling="multivector")
    search(text="a man rides a bike")                       # captions: full text + semantic (RRF)

Queries (exactly one of ``video_id`` / ``video`` / ``vector``, and / or ``text``):

* ``video_id``: the stored vectors of that row (the row itself is left out of the results unless
  ``include_query``);
* ``video``: a file or URI embedded on the fly by the column's own UDF code and model profile
  (:mod:`tables.query_embedding`);
* ``vector``: ``[D]`` (a pooled vector: candidates are pooled, the query is taken as it is) or
  ``[T, D]`` per-step vectors (pooled like the candidates);
* ``text``: see :mod:`tables.text_search`. With a video query as well, the video ranking and the
  text ranking(s) are fused by reciprocal rank fusion.

Pooling (:mod:`tables.pooling`) is applied identically to the query and the candidates. How the
candidates are found (``candidates``):

``mean`` on a column with a pooled companion (``video_embedding_pooled``)
    a vector search on the pooled column: its ANN index when there is one (built by
    ``vw index``; HNSW keeps its recall under the prefilter), otherwise exact over the filtered
    rows when the filter is selective (see :func:`tables.vector_search.vector_ranking`).
``max`` / ``centre`` / ``segment`` (and ``mean`` on a column without a pooled companion)
    ``pooled``: the ``pool_size`` nearest rows of the pooled column (ANN, prefiltered) are
    re-scored exactly with the chosen pooling. Fast at any table size; it can miss a row whose
    chosen pooling is close but whose mean is not among the ``pool_size`` nearest (recall is
    measured by ``bench/search.py``). ``frames``: the same with candidates from the derived frames
    table (per-frame columns, :mod:`tables.frames`). ``exact``: every row matching the filter is
    read and scored (exact, cost grows with the rows and steps read). ``auto`` picks ``exact`` when
    the matching rows' steps are at most the ``pool_size`` candidates' steps plus
    :data:`tables.vector_search.EXACT_BUDGET` floats (the cost of the index search the candidate
    paths add), else ``pooled``, else ``frames``, else ``exact``.
``multivector``
    MaxSim (cosine) late interaction, with the same candidate strategies: ``exact`` scores every
    matching row with numpy; ``pooled`` / ``frames`` re-score the ``pool_size`` rows nearest to the
    query's mean vector; ``auto`` as above. ``ann`` runs LanceDB's multivector search on the
    per-step column (its multivector index if ``vw index --multivector`` built one, else a scan of
    every step vector; slow on large tables) and re-scores what it returns exactly.

Filters (``where``, SQL on the table) are prefilters by default, so a selective filter still
returns ``k`` rows when ``k`` rows match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tables.catalog import cached_dataset, open_cached
from tables.choices import SEARCH_CANDIDATES, SearchCandidates, TextMode
from tables.filters import combine, count_matching, in_list, sql_quote
from tables.names import VIDEOS
from tables.pooling import Pooling, l2_normalise, maxsim_rows, parse_pooling
from tables.search_result import SearchResult, attach_columns, ranked_table
from tables.vector_columns import VectorColumn, describe_column
from tables.vector_search import (
    EXACT_BUDGET,
    SearchParams,
    ann,
    exact,
    search_params,
    steps_scores,
    vector_index,
    vector_ranking,
)
from udfs.arrays import steps_from_arrow
from udfs.errors import VwError
from udfs.video_embedding import video_embedding_column

KEY = "video_id"
CANDIDATES = SEARCH_CANDIDATES


class SearchError(VwError, ValueError):
    """A search that cannot run as asked (names the input and the problem)."""


@dataclass
class Query:
    """A resolved video query: per-step vectors and / or one vector, and what it came from."""

    description: str
    steps: np.ndarray | None = None
    vector: np.ndarray | None = None
    video_id: str | None = None


def connection(db: Any = None) -> Any:
    """A warehouse connection: ``db`` itself when it is one, else :func:`tables.connection.connect`."""
    if db is None or isinstance(db, str):
        from tables.connection import connect

        return connect(db)
    return db


def default_pool_size(k: int) -> int:
    """Candidates re-scored by the ``pooled`` / ``frames`` strategies: ``max(20 k, 200)``."""
    return max(20 * k, 200)


def search(
    db: Any = None,
    *,
    video_id: str | None = None,
    video: str | None = None,
    vector: Any = None,
    text: str | None = None,
    table: str = VIDEOS,
    column: str | None = None,
    pooling: str | Pooling = "mean",
    k: int = 10,
    where: str | None = None,
    prefilter: bool = True,
    columns: Sequence[str] = (),
    candidates: SearchCandidates = "auto",
    pool_size: int | None = None,
    text_mode: TextMode = "auto",
    text_column: str = "caption",
    embedding_column: str = "caption_embedding",
    include_query: bool = False,
    params: SearchParams | None = None,
    device: str | None = None,
) -> SearchResult:
    """Rank the rows of ``table`` by similarity to the query (see the module documentation).

    Returns a :class:`~tables.search_result.SearchResult` with ``rank``, ``video_id``, ``score``,
    ``distance`` and the requested ``columns``.
    """
    from tables.text_search import rrf_table, text_ranking

    started = time.perf_counter()
    if k < 1:
        raise SearchError(f"k must be >= 1, got {k}")
    if candidates not in CANDIDATES:
        raise SearchError(f"unknown candidates {candidates!r}: use one of {', '.join(CANDIDATES)}")
    given = [name for name, v in (("video_id", video_id), ("video", video), ("vector", vector)) if v is not None]
    if len(given) > 1:
        raise SearchError(f"give one video query, not {' and '.join(given)}")
    if not given and text is None:
        raise SearchError("nothing to search for: give video_id, video, vector or text")
    conn = connection(db)
    tbl = open_cached(conn, table)
    missing = [c for c in columns if c not in tbl.schema.names]
    if missing:
        raise SearchError(f"table {table!r} has no column(s) {', '.join(map(repr, missing))}")
    if where:
        count_matching(tbl, where)  # a bad filter fails here, with the engine's message
    plan: dict[str, Any] = {"table": table, "k": k, "where": where, "prefilter": prefilter}
    fused = bool(given) and text is not None
    depth = max(k, default_pool_size(k) // 4) if fused else k
    rankings: dict[str, pa.Table] = {}
    if given:
        col = describe_column(tbl, column or video_embedding_column(), table)
        pool = parse_pooling(pooling)
        query = resolve_query(tbl, col, video_id=video_id, video=video, vector=vector, device=device)
        exclude = f"{KEY} != {sql_quote(video_id)}" if video_id is not None and not include_query else None
        ranked, vplan = video_ranking(conn, tbl, col, pool, query, depth, where=combine(where, exclude),
                                      prefilter=prefilter, candidates=candidates, pool_size=pool_size, params=params)
        rankings["video"] = ranked
        plan.update(query=query.description, column=col.name, model=col.model_label(), pooling=pool.name,
                    video=vplan)
    if text is not None:
        ranked, tplan = text_ranking(tbl, text, depth, where=where, mode=text_mode, text_column=text_column,
                                     embedding_column=embedding_column, device=device, params=params)
        rankings.update(ranked)
        plan["text"] = tplan
    if len(rankings) == 1:
        only = next(iter(rankings.values()))
        result = only
    else:
        result = rrf_table(rankings, k)
        plan["fusion"] = f"reciprocal rank fusion (k = 60) of {', '.join(rankings)}"
    result = result.slice(0, k)
    result = attach_columns(result, tbl, KEY, columns)
    plan["seconds"] = round(time.perf_counter() - started, 4)
    return SearchResult(result, plan)


def as_result(ranked: pa.Table) -> pa.Table:
    """``(video_id, _distance)`` rows (best first) -> ``rank, video_id, score, distance``."""
    dist = ranked.column("_distance").to_numpy(zero_copy_only=False).astype(np.float64)
    return ranked_table({KEY: ranked.column(KEY)}, 1.0 - dist, dist)


# -- queries -----------------------------------------------------------------------------------


def resolve_query(tbl: Any, col: VectorColumn, *, video_id: str | None = None, video: str | None = None,
                  vector: Any = None, device: str | None = None) -> Query:
    """The query's vectors for column ``col`` (stored row, embedded file, or given vector)."""
    if video_id is not None:
        got = cached_dataset(tbl).to_table(columns=[col.name], filter=f"{KEY} = {sql_quote(video_id)}")
        if got.num_rows == 0:
            raise SearchError(f"no video {video_id!r} in table {col.table!r}")
        value = got.column(col.name).combine_chunks()
        if not value.is_valid().to_pylist()[0]:
            raise SearchError(
                f"video {video_id!r} has no {col.name!r} (not computed yet, or its computation failed: see `vw status`)"
            )
        if col.is_steps:
            return Query(f"video_id {video_id}", steps=steps_from_arrow(value)[0], video_id=video_id)
        return Query(f"video_id {video_id}", vector=np.asarray(value.values.to_numpy(zero_copy_only=False),
                                                                np.float32)[: col.dim], video_id=video_id)
    if video is not None:
        if not col.is_steps:
            raise SearchError(
                f"column {col.name!r} holds one vector per row (not per-step video features): a video file "
                "cannot be embedded for it; search video_embedding or frame_features"
            )
        from tables.query_embedding import embed_video

        return Query(f"video {video}", steps=embed_video(col, video, device))
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim == 1 and arr.shape[0] == col.dim:
        return Query(f"vector [{col.dim}]", vector=arr)
    if arr.ndim == 2 and arr.shape[1] == col.dim and len(arr) >= 1:
        if not col.is_steps and len(arr) != 1:
            raise SearchError(f"column {col.name!r} holds one vector per row: give one {col.dim}-d vector")
        if not col.is_steps:
            return Query(f"vector [{col.dim}]", vector=arr[0])
        return Query(f"vectors [{len(arr)}, {col.dim}]", steps=arr)
    raise SearchError(
        f"the query vector has shape {tuple(arr.shape)}, but column {col.name!r} of table {col.table!r} holds "
        f"{col.dim}-d vectors: give {col.dim} values (or [T, {col.dim}] per-step vectors)"
    )


# -- rankings ----------------------------------------------------------------------------------


def video_ranking(conn: Any, tbl: Any, col: VectorColumn, pooling: Pooling, query: Query, k: int, *,
                  where: str | None, prefilter: bool = True, candidates: str = "auto",
                  pool_size: int | None = None, params: SearchParams | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The ``k`` best rows for a video query with ``pooling``: a result table and the plan."""
    if not col.is_steps:
        if pooling.kind != "mean":
            raise SearchError(
                f"pooling {pooling.name!r} needs a per-step column; {col.name!r} holds one vector per row"
            )
        assert query.vector is not None
        mode = _vector_mode(candidates)
        ranked, plan = vector_ranking(tbl, col.name, query.vector, k, where=where, prefilter=prefilter,
                                      candidates=mode, params=params)
        return as_result(ranked), plan
    pool_size = pool_size or default_pool_size(k)
    if pooling.is_multivector:
        steps = l2_normalise(query.steps if query.steps is not None else query.vector[None, :])
        if candidates == "ann":
            return _multivector_native(tbl, col, steps, k, where, prefilter, params)
        qmean = Pooling("mean").pool(steps)
        return _rerank(conn, tbl, col, lambda v, o: maxsim_rows(steps, v, o), qmean, k, where, prefilter,
                       candidates, pool_size, params)
    qvec = pooling.pool(query.steps) if query.steps is not None else l2_normalise(query.vector)
    if pooling.kind == "mean" and col.pooled:
        ranked, plan = vector_ranking(tbl, col.pooled, qvec, k, where=where, prefilter=prefilter,
                                      candidates=_vector_mode(candidates), params=params)
        return as_result(ranked), plan
    qmean = Pooling("mean").pool(query.steps) if query.steps is not None else qvec
    return _rerank(conn, tbl, col, lambda v, o: pooling.pool_rows(v, o) @ qvec, qmean, k, where, prefilter,
                   candidates, pool_size, params)


def _vector_mode(candidates: str) -> str:
    if candidates in ("pooled", "frames"):
        raise SearchError(f"candidates {candidates!r} applies to per-step columns with a non-mean pooling")
    return candidates


def _steps_estimate(col: VectorColumn) -> int:
    """Typical steps per row: ``vw.steps`` of the column, else 32."""
    try:
        return max(1, int(col.metadata.get("vw.steps", "32")))
    except ValueError:
        return 32


def _rerank(conn: Any, tbl: Any, col: VectorColumn, score_steps: Callable[[np.ndarray, np.ndarray], np.ndarray],
            qmean: np.ndarray, k: int, where: str | None, prefilter: bool, candidates: str, pool_size: int,
            params: SearchParams | None) -> tuple[pa.Table, dict[str, Any]]:
    """Top-``k`` by ``score_steps`` over candidates (pooled ANN, frames ANN) or over every matching row."""
    from tables.frames import frames_state, frames_table_name

    matching = count_matching(tbl, where)  # an upper bound: rows without a value are skipped later
    steps = _steps_estimate(col)
    cost = matching * steps * col.dim
    # The candidate paths read and re-score the steps of ``pool_size`` rows after an index search:
    # exact is cheaper while its read is not larger than that by more than one index search's worth.
    budget = EXACT_BUDGET + pool_size * steps * col.dim
    frames = None
    if candidates in ("auto", "frames"):
        frames = frames_state(conn, col.name)
    mode = candidates
    if mode == "auto":
        mode = "exact" if cost <= budget else "pooled" if col.pooled else "frames" if frames else "exact"
    if mode == "ann":
        mode = "pooled" if col.pooled else "frames"
    plan: dict[str, Any] = {"column": col.name, "matching_rows": matching}
    score = steps_scores(col.name, score_steps)
    if mode == "exact":
        out = exact(tbl, col.name, k, score, key=KEY, where=where)
        plan["method"] = "exact"
        if candidates == "auto" and cost > budget:
            plan["note"] = (f"no pooled column or frames table to draw candidates from: scanned {matching} rows; "
                            f"run `vw index --column {col.name}`")
        return as_result(out), plan
    if mode == "pooled":
        if not col.pooled:
            raise SearchError(f"column {col.name!r} has no pooled companion {col.name + '_pooled'!r}")
        info = vector_index(tbl, col.pooled)
        p = search_params(info, pool_size, params)
        cand = ann(tbl, col.pooled, qmean, pool_size, where=where, prefilter=prefilter, select=[KEY],
                   params=p, bypass_index=info is None)
        ids = cand.column(KEY).to_pylist()
        plan.update(method=f"candidates from {col.pooled} ({'ANN ' + info.index_type if info else 'scan'}), "
                    "exact re-scoring", pool_size=pool_size, candidates=len(ids), params=p.as_dict())
    elif mode == "frames":
        if frames is None:
            raise SearchError(
                f"no frames table for column {col.name!r}: build it with `vw index --column {col.name}`"
            )
        ids = _frame_candidates(conn, frames_table_name(col.name), qmean, pool_size, where, tbl, params)
        plan.update(method=f"candidates from {frames['table']} (ANN), exact re-scoring", pool_size=pool_size,
                    candidates=len(ids))
        if frames["stale"]:
            plan["warning"] = (f"{frames['table']} was built from an older table version: "
                               f"run `vw index --column {col.name}`")
    else:
        raise SearchError(f"unknown candidates {candidates!r}")
    out = exact(tbl, col.name, k, score, key=KEY, where=combine(where, in_list(KEY, ids)))
    return as_result(out), plan


def _frame_candidates(conn: Any, frames_name: str, qmean: np.ndarray, pool_size: int, where: str | None,
                      tbl: Any, params: SearchParams | None) -> list[str]:
    """Videos owning the frames nearest to the query's mean vector (at most ``pool_size``)."""
    frames = open_cached(conn, frames_name)
    info = vector_index(frames, "vector")
    allowed = None
    if where:
        allowed = set(cached_dataset(tbl).to_table(columns=[KEY], filter=where).column(KEY).to_pylist())
    ids: list[str] = []
    limit = pool_size * 4
    total = frames.count_rows()
    while True:
        hits = ann(frames, "vector", qmean, limit, select=[KEY], params=search_params(info, limit, params),
                   bypass_index=info is None)
        ids = [v for v in dict.fromkeys(hits.column(KEY).to_pylist()) if allowed is None or v in allowed]
        if len(ids) >= pool_size or limit >= total:
            return ids[:pool_size]
        limit *= 4


def _multivector_native(tbl: Any, col: VectorColumn, steps: np.ndarray, k: int, where: str | None,
                        prefilter: bool, params: SearchParams | None) -> tuple[pa.Table, dict[str, Any]]:
    """LanceDB's multivector search (its index, or a scan), then exact MaxSim on the returned rows."""
    matching = count_matching(tbl, where)
    plan: dict[str, Any] = {"column": col.name, "matching_rows": matching, "query_steps": len(steps)}
    q = steps
    info = vector_index(tbl, col.name)
    fetch = max(2 * k, k + 10)
    p = search_params(info, fetch, params)
    cand = ann(tbl, col.name, q, fetch, where=where, prefilter=prefilter, select=[KEY], params=p,
               bypass_index=info is None)
    ids = cand.column(KEY).to_pylist()
    # Distances of multivector indexes differ by index type: re-score the candidates exactly.
    score = steps_scores(col.name, lambda v, o: maxsim_rows(q, v, o))
    out = exact(tbl, col.name, k, score, key=KEY, where=combine(where, in_list(KEY, ids)))
    plan.update(method=f"LanceDB multivector ({'ANN ' + info.index_type if info else 'scan'}), exact MaxSim "
                f"re-scoring of {len(ids)} candidates", params=p.as_dict() if info else {})
    if prefilter and out.num_rows < min(k, matching):
        out = exact(tbl, col.name, k, score, key=KEY, where=where)
        plan["completed_exactly"] = f"the index returned fewer than {min(k, matching)} rows under the filter"
    return as_result(out), plan
