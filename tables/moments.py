"""Moment search: "find moments like this one" over the per-frame features of every video.

::

    from tables.moments import find_moments

    find_moments(video_id="bikes", time_s=4.0, k=10, where="split = 'train'").to_pandas()
    find_moments(image="frame.png", gap_s=5.0)

The query is a stored frame (``video_id`` + ``time_s``: the frame nearest that instant), an image
file (decoded with torchvision / PIL and encoded by the column's own frame encoder and profile,
:func:`tables.query_embedding.embed_image`) or a vector. Scores are cosine similarities.

Results are ``(video_id, time_s, score)``, de-duplicated: hits of the same video closer than or
at ``gap_s`` seconds to a better hit are dropped (greedy, best first), so one similar scene gives
one result rather than one per second. For a stored-frame query, hits of the query video within
``gap_s`` of the query instant are left out (unless ``include_query``).

Where the candidates come from:

* the derived ``frames`` table (:mod:`tables.frames`, built by ``vw index --column
  frame_features``) with its ANN index: one vector per row, so the search scales to millions of
  frames. ``where`` (SQL on ``videos``) becomes a ``video_id IN (...)`` prefilter when it selects
  at most :data:`PREFILTER_MAX_VIDEOS` videos, otherwise a post-filter with a growing fetch. The
  fetch (``max(20 k, 200)`` frames first) grows until ``k`` de-duplicated hits are found or every
  frame was seen. The ANN search reads deeper than a plain top-k (``ef = max(800, 4 * fetch)``,
  ``refine_factor = 5``): de-duplication discards most of the nearest frames.
* without a frames table, or when ``where`` is selective enough that its videos' frames fit
  :data:`EXACT_BUDGET`, every frame of the videos matching ``where`` is
  scored with numpy (exact; its cost grows with the number of frames read).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tables.catalog import all_table_names, cached_dataset, open_cached
from tables.choices import MOMENT_CANDIDATES, MomentCandidates
from tables.filters import count_matching, in_list, sql_quote
from tables.frames import frames_state, frames_table_name
from tables.names import VIDEOS
from tables.pooling import l2_normalise
from tables.search import SearchError, connection
from tables.search_result import SearchResult, attach_columns, ranked_table
from tables.vector_columns import VectorColumn, describe_column
from tables.vector_search import SearchParams, ann, scan, search_params, vector_index
from udfs.arrays import steps_from_arrow
from udfs.frame_features import frame_features_column

DEFAULT_GAP_S = 3.0
PREFILTER_MAX_VIDEOS = 5000
KEY = "video_id"
#: Frame-vector floats the exact path scores in about the time one search of the frames table's
#: index takes (its deeper search, refinement and de-duplication cost 20-45 ms, about three times a
#: pooled search), measured with ``python -m bench.search --medium --only moments`` (300,000 frames
#: of 384-d, 2 cores): exact 12-14 ms for the frames of 10-30 videos against 20-27 ms through the
#: index, 27 ms against 30 ms at 100 videos (10,000 frames), 80 ms against 45 ms at 300 videos.
EXACT_BUDGET = 4_000_000


def dedupe(hits: Sequence[tuple[str, float, float]], gap_s: float, k: int,
           exclude: tuple[str, float] | None = None) -> list[tuple[str, float, float]]:
    """Best-first ``(video_id, time_s, score)`` hits without near-duplicates (at most ``k``).

    A hit is dropped when a better kept hit of the same video is within ``gap_s`` seconds, or when
    it lies within ``gap_s`` of ``exclude = (video_id, time_s)``.
    """
    kept: list[tuple[str, float, float]] = []
    times: dict[str, list[float]] = {}
    for vid, t, s in sorted(hits, key=lambda h: -h[2]):
        if exclude is not None and vid == exclude[0] and abs(t - exclude[1]) <= gap_s:
            continue
        if any(abs(t - u) <= gap_s for u in times.get(vid, ())):
            continue
        kept.append((vid, t, s))
        times.setdefault(vid, []).append(t)
        if len(kept) >= k:
            break
    return kept


def frame_at(tbl: Any, col: VectorColumn, video_id: str, time_s: float) -> tuple[np.ndarray, float]:
    """The stored vector of ``video_id`` nearest to ``time_s`` and its instant."""
    if col.times is None:
        raise SearchError(f"column {col.name!r} has no timestamps column {col.name + '_times'!r}")
    got = cached_dataset(tbl).to_table(columns=[col.name, col.times], filter=f"{KEY} = {sql_quote(video_id)}")
    if got.num_rows == 0:
        raise SearchError(f"no video {video_id!r} in table {col.table!r}")
    feats = steps_from_arrow(got.column(col.name))[0]
    times = got.column(col.times).to_pylist()[0]
    if feats is None or times is None or len(feats) == 0:
        raise SearchError(f"video {video_id!r} has no {col.name!r} (not computed yet, or failed: see `vw status`)")
    t = np.asarray(times, np.float64)
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    if time_s < t[0] - period or time_s > t[-1] + period:
        raise SearchError(
            f"time {time_s:g} s is outside video {video_id!r}: its frames span {t[0]:g} to {t[-1]:g} s"
        )
    i = int(np.argmin(np.abs(t - time_s)))
    return feats[i], float(t[i])


def find_moments(
    db: Any = None,
    *,
    video_id: str | None = None,
    time_s: float | None = None,
    image: str | None = None,
    vector: Any = None,
    column: str | None = None,
    k: int = 10,
    where: str | None = None,
    gap_s: float = DEFAULT_GAP_S,
    columns: Sequence[str] = (),
    candidates: MomentCandidates = "auto",
    include_query: bool = False,
    params: SearchParams | None = None,
    device: str | None = None,
) -> SearchResult:
    """The ``k`` best moments ``(video_id, time_s, score)`` like the query (see the module documentation)."""
    started = time.perf_counter()
    if k < 1:
        raise SearchError(f"k must be >= 1, got {k}")
    if gap_s < 0:
        raise SearchError(f"gap_s must be >= 0, got {gap_s}")
    if candidates not in MOMENT_CANDIDATES:
        raise SearchError(f"unknown candidates {candidates!r}: use {', '.join(MOMENT_CANDIDATES)}")
    given = [n for n, v in (("video_id", video_id), ("image", image), ("vector", vector)) if v is not None]
    if len(given) != 1:
        raise SearchError("give exactly one moment query: video_id with time_s, image, or vector")
    if video_id is not None and time_s is None:
        raise SearchError("a moment query by video_id needs time_s (seconds)")
    conn = connection(db)
    tbl = open_cached(conn, VIDEOS)
    col = describe_column(tbl, column or frame_features_column(), VIDEOS)
    if not col.is_steps:
        raise SearchError(f"column {col.name!r} holds one vector per row: moment search needs a per-frame column")
    count_matching(tbl, where)
    exclude = None
    if video_id is not None:
        q, t_q = frame_at(tbl, col, video_id, float(time_s))  # type: ignore[arg-type]
        desc = f"{video_id} at {t_q:g} s"
        exclude = None if include_query else (video_id, t_q)
    elif image is not None:
        from tables.query_embedding import embed_image

        q, desc = embed_image(col, image, device), f"image {image}"
    else:
        q = np.asarray(vector, np.float32)
        if q.shape != (col.dim,):
            raise SearchError(
                f"the query vector has shape {tuple(q.shape)}, but column {col.name!r} holds {col.dim}-d vectors"
            )
        desc = f"vector [{col.dim}]"
    q = l2_normalise(q)
    state = frames_state(conn, col.name) if frames_table_name(col.name) in set(all_table_names(conn)) else None
    mode = candidates
    because = None
    if mode == "auto":
        mode = "frames" if state else "exact"
        because = "a frames table with its index" if state else "no frames table"
        if state and where:  # a selective filter: scoring its videos' frames exactly is cheaper
            share = count_matching(tbl, where) / max(1, tbl.count_rows())
            floats = int(share * state["frames"] * col.dim)
            mode = "exact" if floats <= EXACT_BUDGET else "frames"
            because = (f"about {floats:,} frame-vector floats in the matching videos "
                       f"{'<=' if floats <= EXACT_BUDGET else '>'} the exact-search budget of {EXACT_BUDGET:,}")
    plan: dict[str, Any] = {"query": desc, "column": col.name, "model": col.model_label(), "k": k,
                            "where": where, "gap_s": gap_s}
    if because:
        plan["chosen_because"] = because
    if mode == "frames":
        if state is None:
            raise SearchError(f"no frames table for {col.name!r}: build it with `vw index --column {col.name}`")
        hits = _frames_hits(conn, tbl, state["table"], q, k, where, gap_s, exclude, params, plan)
        if state["stale"]:
            plan["warning"] = (f"{state['table']} was built from an older version of videos: "
                               f"refresh it with `vw index --column {col.name}`")
    else:
        hits = _exact_hits(tbl, col, q, k, where, gap_s, exclude)
        plan["method"] = "exact (numpy over every frame of the matching videos)"
    result = ranked_table({KEY: [h[0] for h in hits], "time_s": pa.array([h[1] for h in hits], pa.float64())},
                          [h[2] for h in hits], [1.0 - h[2] for h in hits])
    result = attach_columns(result, tbl, KEY, columns)
    plan["seconds"] = round(time.perf_counter() - started, 4)
    return SearchResult(result, plan)


def _frames_hits(conn: Any, tbl: Any, name: str, q: np.ndarray, k: int, where: str | None, gap_s: float,
                 exclude: tuple[str, float] | None, params: SearchParams | None,
                 plan: dict[str, Any]) -> list[tuple[str, float, float]]:
    frames = open_cached(conn, name)
    info = vector_index(frames, "vector")
    total = frames.count_rows()
    prefilter, allowed = None, None
    if where:
        ids = cached_dataset(tbl).to_table(columns=[KEY], filter=where).column(KEY).to_pylist()
        if len(ids) <= PREFILTER_MAX_VIDEOS:
            prefilter = in_list(KEY, ids)
            total = frames.count_rows(prefilter) if ids else 0
        else:
            allowed = set(ids)
    limit = max(20 * k, 200)
    rounds = 0
    while True:
        rounds += 1
        p = search_params(info, limit, _moment_params(limit, params))
        got = ann(frames, "vector", q, limit, where=prefilter, select=[KEY, "time_s"], params=p,
                  bypass_index=info is None) if total else None
        hits = [] if got is None else [
            (v, t, 1.0 - d) for v, t, d in zip(got.column(KEY).to_pylist(), got.column("time_s").to_pylist(),
                                             got.column("_distance").to_pylist(), strict=True)
            if allowed is None or v in allowed
        ]
        kept = dedupe(hits, gap_s, k, exclude)
        if len(kept) >= k or limit >= total:
            break
        limit *= 4
    plan.update(method=f"{name} ({'ANN ' + info.index_type if info else 'scan'})", frames=total,
                fetched=limit, rounds=rounds, filter=("prefilter" if prefilter else "postfilter" if allowed else None),
                params=search_params(info, limit, _moment_params(limit, params)).as_dict() if info else {})
    return kept


def _moment_params(limit: int, params: SearchParams | None) -> SearchParams:
    """Moment search reads deeper than a top-k search (de-duplication eats near-identical frames):
    ``ef = max(800, 4 * limit)`` and ``refine_factor = 5`` unless given."""
    given = params or SearchParams()
    return SearchParams(nprobes=given.nprobes, ef=given.ef if given.ef is not None else max(800, 4 * limit),
                        refine_factor=given.refine_factor if given.refine_factor is not None else 5)


def _exact_hits(tbl: Any, col: VectorColumn, q: np.ndarray, k: int, where: str | None, gap_s: float,
                exclude: tuple[str, float] | None) -> list[tuple[str, float, float]]:
    """Every frame scored; per batch keep enough best frames that de-duplication still finds ``k``."""
    if col.times is None:
        raise SearchError(f"column {col.name!r} has no timestamps column {col.name + '_times'!r}")
    pool: list[tuple[str, float, float]] = []
    for batch in scan(tbl, [KEY, col.name, col.times], where, batch_size=256):
        feats = steps_from_arrow(batch.column(col.name))
        times = batch.column(col.times).to_pylist()
        for vid, f, t in zip(batch.column(KEY).to_pylist(), feats, times, strict=True):
            if f is None or not len(f):
                continue
            s = l2_normalise(f) @ q
            pool.extend(zip([vid] * len(s), map(float, t), map(float, s), strict=True))
        # Each video can contribute at most one kept hit per gap window: keeping every frame of the
        # best videos is exact; trim only what can no longer reach the top k.
        pool = _trim(pool, k, gap_s, exclude)
    return dedupe(pool, gap_s, k, exclude)


def _trim(pool: list[tuple[str, float, float]], k: int, gap_s: float,
          exclude: tuple[str, float] | None) -> list[tuple[str, float, float]]:
    """Drop hits scoring below the k-th de-duplicated hit (they can never be returned)."""
    if len(pool) <= 4 * k:
        return pool
    kept = dedupe(pool, gap_s, k, exclude)
    if len(kept) < k:
        return pool
    floor = kept[-1][2]
    return [h for h in pool if h[2] >= floor]
