"""`vw index`: build the indexes the read paths use, then measure the vector ones.

For a table (default ``videos``) and optionally one column:

* a per-step column with a pooled companion (``video_embedding``): the ANN index of
  ``<column>_pooled``; with ``multivector=True`` also a multivector index on the steps;
* a per-frame column with timestamps (``frame_features``): build / refresh the derived
  ``frames`` table (:mod:`tables.frames`), its ANN index and its ``video_id`` index;
* a single-vector column (``caption_embedding``, ``*_pooled``): its ANN index;
* ``caption``: the full-text index;
* a scalar column: a scalar index.

An index that exists is brought up to date incrementally when rows are missing from it (Lance's
index optimisation adds them as a delta; ``refreshed``), left as it is when it is up to date
(``skipped``), and a vector index the table has outgrown (more new rows than indexed ones), or one
asked for with other parameters, is rebuilt.

Without a column: every vector column, the full-text index of ``caption`` and the scalar indexes
of :data:`tables.indexes.SCALAR_CANDIDATES`. Every ANN index is followed by a recall@10 / latency
measurement against exact search on a sample of the column's own vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from tables.catalog import open_existing
from tables.frames import frames_table_name, refresh_frames
from tables.indexes import (
    FTS_CANDIDATES,
    MIN_ROWS,
    SCALAR_CANDIDATES,
    IndexReport,
    build_vector_index,
    ensure_fts_index,
    ensure_scalar_index,
    index_kind,
    index_states,
    measure_recall,
    plan_vector_index,
    refresh_index,
    sample_vectors,
)
from tables.names import VIDEOS
from tables.vector_columns import describe_column, vector_columns
from udfs.errors import NotFoundError


@dataclass
class IndexOptions:
    """Overrides of the automatic choices."""

    index_type: str | None = None
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    min_rows: int = MIN_ROWS
    multivector: bool = False
    recall_queries: int = 30
    measure: bool = True


def _vector(table: Any, table_name: str, column: str, opts: IndexOptions, multivector: bool = False) -> IndexReport:
    rows = table.count_rows()  # rows with a NULL vector are not indexed; the plan only needs the scale
    col = describe_column(table, column, table_name)
    vectors = None
    if multivector:
        vectors = sum(
            int(pc.sum(pc.list_value_length(b.column(0))).as_py() or 0)
            for b in table.to_lance().to_batches(columns=[column], filter=f"{column} IS NOT NULL")
        )
    plan = plan_vector_index(rows, col.dim, multivector=multivector, vectors=vectors, index_type=opts.index_type,
                             num_partitions=opts.num_partitions, num_sub_vectors=opts.num_sub_vectors,
                             min_rows=opts.min_rows)
    kind = "multivector" if multivector else "vector"
    if plan.index_type is None:
        return IndexReport(table_name, column, kind, "skipped", plan.reason)
    state = next((s for s in index_states(table) if s["columns"] == [column] and index_kind(s["type"]) == "vector"),
                 None)
    overridden = opts.index_type or opts.num_partitions or opts.num_sub_vectors
    if state is not None and not overridden and state["unindexed_rows"] <= state["indexed_rows"]:
        # An index that still covers most rows gets the new ones incrementally; one outgrown by the
        # table (more new rows than indexed ones) is rebuilt, so its partitions fit the data again.
        if not state["unindexed_rows"]:
            return IndexReport(table_name, column, kind, "skipped",
                               f"already indexed ({state['type']}, {state['indexed_rows']} rows), up to date")
        report = refresh_index(table, table_name, state)
        report.kind = kind
    else:
        seconds = build_vector_index(table, column, plan)
        report = IndexReport(table_name, column, kind, "built", f"{plan.index_type} {plan.params}", seconds,
                             params=dict(plan.params))
    if opts.measure:
        queries = sample_vectors(table, column, opts.recall_queries)
        m = measure_recall(table, column, queries)
        report.recall_at_10, report.ann_p50_ms, report.exact_p50_ms = m["recall"], m["ann_p50_ms"], m["exact_p50_ms"]
        report.params.update({k.removeprefix("param_"): v for k, v in m.items() if k.startswith("param_")})
    return report


def _frames(conn: Any, column: str, opts: IndexOptions, log: Callable[[str], None],
            progress: Callable[[int, int], None] | None) -> list[IndexReport]:
    fr = refresh_frames(conn, column, progress=progress)
    detail = (f"{fr.frames} frames of {fr.videos} videos; {fr.videos_added} videos written, "
              f"{fr.videos_removed} removed{' (rebuilt)' if fr.rebuilt else ''}")
    log(f"{fr.table}: {detail}")
    reports = [IndexReport(fr.table, column, "frames", "refreshed", detail, fr.seconds)]
    frames = conn.open_table(frames_table_name(column))
    if fr.frames:
        reports.append(ensure_scalar_index(frames, fr.table, "video_id", "BTREE", replace=True))
        reports.append(_vector(frames, fr.table, "vector", opts))
    return reports


def run_index(conn: Any, table_name: str = VIDEOS, column: str | None = None,
              opts: IndexOptions | None = None, log: Callable[[str], None] = print,
              progress: Callable[[int, int], None] | None = None) -> list[IndexReport]:
    """Build the indexes of ``table_name`` (all of them, or those of ``column``); one report each."""
    opts = opts or IndexOptions()
    table = open_existing(conn, table_name)
    if column is not None and column not in table.schema.names:
        raise NotFoundError(f"table {table_name!r} has no column {column!r}")
    columns = [column] if column else list(table.schema.names)
    vec_cols = set(vector_columns(table))
    reports: list[IndexReport] = []
    for name in columns:
        if name in vec_cols:
            col = describe_column(table, name, table_name)
            if col.is_steps:
                if col.pooled and column is not None:
                    reports.append(_vector(table, table_name, col.pooled, opts))
                if col.times is not None and table_name == VIDEOS:
                    reports.extend(_frames(conn, name, opts, log, progress))
                if opts.multivector or (column is not None and not col.pooled and col.times is None):
                    reports.append(_vector(table, table_name, name, opts, multivector=True))
            else:
                reports.append(_vector(table, table_name, name, opts))
        elif name in FTS_CANDIDATES.get(table_name, ()):
            if table.count_rows(f"{name} IS NOT NULL"):
                reports.append(ensure_fts_index(table, table_name, name))
            else:
                reports.append(IndexReport(table_name, name, "fts", "skipped", "no text to index"))
        elif column is not None or name in SCALAR_CANDIDATES.get(table_name, ()):
            if table.count_rows() == 0:
                reports.append(IndexReport(table_name, name, "scalar", "skipped", "empty table"))
            else:
                reports.append(ensure_scalar_index(table, table_name, name, replace=column is not None))
        table = conn.open_table(table_name)
    return reports
