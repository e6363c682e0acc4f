"""Text search over captions: full text (BM25), semantic (``caption_embedding``), and their fusion.

``fts``
    LanceDB's native full-text index on ``caption`` (built by ``vw index --column caption``);
    the score is BM25.
``semantic``
    The text is encoded with the model recorded on ``caption_embedding`` (all-MiniLM-L6-v2 for
    the ``full`` and ``offline`` profiles, :class:`udfs.text_embedding.TextEncoder`), then a cosine
    vector search on that column.
``hybrid``
    Both, fused by reciprocal rank fusion (Cormack et al.): each list contributes
    ``1 / (60 + rank)`` (rank 1 = best) to a row's score, so a row ranked well by both comes
    first and no score scale has to be calibrated against the other. Each list is retrieved
    ``max(k, 50)`` deep before fusion.
``auto``
    ``hybrid`` when the table has both an FTS index on the text column and the embedding column,
    else whichever of the two it has.

The same fusion merges a video-similarity ranking with text rankings when a search gets both.
The ``where`` filter is a prefilter of every list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tables.choices import TEXT_MODES
from tables.filters import FilterError
from tables.search_result import ranked_table
from tables.vector_search import SearchParams, vector_ranking
from udfs.errors import VwError

RRF_K = 60
MODES = TEXT_MODES
KEY = "video_id"


class TextSearchError(VwError, ValueError):
    """A text search that cannot run (no index / column for the mode, empty text)."""


def fts_index_on(table: Any, column: str) -> bool:
    """True when ``column`` has a full-text (inverted) index."""
    for idx in table.list_indices():
        kind = str(idx.index_type).upper()
        if list(idx.columns) == [column] and ("FTS" in kind or "INVERTED" in kind):
            return True
    return False


def resolve_mode(table: Any, mode: str, text_column: str, embedding_column: str) -> str:
    """The text mode to run (``auto`` resolved) after checking the table supports it."""
    if mode not in MODES:
        raise TextSearchError(f"unknown text mode {mode!r}: use one of {', '.join(MODES)}")
    has_fts = text_column in table.schema.names and fts_index_on(table, text_column)
    has_emb = embedding_column in table.schema.names
    fts_fix = f"no full-text index on {text_column!r}: build it with `vw index --column {text_column}`"
    emb_fix = f"no {embedding_column!r} column: compute it with `vw backfill scenarios`"
    if mode == "auto":
        if has_fts and has_emb:
            return "hybrid"
        if has_fts or has_emb:
            return "fts" if has_fts else "semantic"
        raise TextSearchError(f"text search needs a full-text index or caption embeddings: {fts_fix}; {emb_fix}")
    if mode in ("fts", "hybrid") and not has_fts:
        raise TextSearchError(fts_fix)
    if mode in ("semantic", "hybrid") and not has_emb:
        raise TextSearchError(emb_fix)
    return mode


def fts_ranking(table: Any, text: str, k: int, where: str | None, text_column: str) -> pa.Table:
    """BM25 ranking of ``text`` over ``text_column``: ``rank, video_id, score, distance (NULL)``."""
    builder = table.search(text, query_type="fts", fts_columns=text_column)
    if where:
        builder = builder.where(where, prefilter=True)
    try:
        got = builder.limit(k).select([KEY, "_score"]).to_arrow()
    except Exception as err:  # noqa: BLE001 - the engine's message, with the inputs
        if where:
            raise FilterError(f"full-text search {text!r} with filter {where!r} failed: {err}") from err
        raise TextSearchError(f"full-text search {text!r} failed: {err}") from err
    return ranked_table({KEY: got.column(KEY)}, got.column("_score").to_numpy(zero_copy_only=False), None)


def semantic_ranking(table: Any, text: str, k: int, where: str | None, embedding_column: str,
                     device: str | None = None, params: SearchParams | None = None) -> tuple[pa.Table, dict]:
    """Cosine ranking of the encoded ``text`` over ``embedding_column``, and the vector-search plan."""
    from tables.query_embedding import embed_text
    from tables.vector_columns import describe_column

    col = describe_column(table, embedding_column)
    query = embed_text(col, text, device)
    ranked, plan = vector_ranking(table, embedding_column, query, k, where=where, params=params)
    dist = ranked.column("_distance").to_numpy(zero_copy_only=False).astype(np.float64)
    plan["model"] = col.model_label()
    return ranked_table({KEY: ranked.column(KEY)}, 1.0 - dist, dist), plan


def text_ranking(table: Any, text: str, k: int, *, where: str | None = None, mode: str = "auto",
                 text_column: str = "caption", embedding_column: str = "caption_embedding",
                 device: str | None = None, params: SearchParams | None = None) -> tuple[dict[str, pa.Table], dict]:
    """The ranking(s) for ``text``: ``{"fts": ..., "semantic": ...}`` (one or both) and the plan."""
    if not text or not text.strip():
        raise TextSearchError("the text query is empty")
    chosen = resolve_mode(table, mode, text_column, embedding_column)
    depth = k if chosen != "hybrid" else max(k, 50)
    out: dict[str, pa.Table] = {}
    plan: dict[str, Any] = {"mode": chosen, "text": text}
    if chosen in ("fts", "hybrid"):
        out["fts"] = fts_ranking(table, text, depth, where, text_column)
    if chosen in ("semantic", "hybrid"):
        out["semantic"], plan["semantic"] = semantic_ranking(table, text, depth, where, embedding_column,
                                                             device, params)
    return out, plan


def rrf_scores(rankings: dict[str, list[str]], k_const: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ``sum over lists of 1 / (k_const + rank)``, best first (ties: first seen)."""
    scores: dict[str, float] = {}
    for ids in rankings.values():
        for rank, key in enumerate(ids, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k_const + rank)
    order = sorted(scores.items(), key=lambda kv: -kv[1])
    return order


def rrf_table(rankings: dict[str, pa.Table], k: int, k_const: int = RRF_K) -> pa.Table:
    """Fuse result tables by RRF: ``rank, video_id, score (RRF), distance (NULL)`` plus, per list,
    ``<name>_rank`` and ``<name>_score`` (NULL where the list did not return the row)."""
    ids = {name: t.column(KEY).to_pylist() for name, t in rankings.items()}
    fused = rrf_scores(ids, k_const)[:k]
    keys = [key for key, _ in fused]
    extra: dict[str, Any] = {}
    for name, t in rankings.items():
        pos = {key: i for i, key in enumerate(ids[name])}
        scores = t.column("score").to_pylist()
        extra[f"{name}_rank"] = pa.array([pos[key] + 1 if key in pos else None for key in keys], pa.int32())
        extra[f"{name}_score"] = pa.array([scores[pos[key]] if key in pos else None for key in keys], pa.float64())
    return ranked_table({KEY: keys}, [s for _, s in fused], None, extra)
