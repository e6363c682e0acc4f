"""Indexes follow the data: `vw index` brings stale indexes up to date incrementally, says so, and
leaves fresh ones alone; the events table's indexes catch up past a share of unindexed rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.indexing import IndexOptions, run_index
from tables.connection import connect
from tables.events import Event, ensure_event_indexes, open_events, write_events
from tables.indexes import index_states, refresh_stale_indexes

DIM = 16


def _rows(start: int, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = {b"vw.name": b"test-vectors", b"vw.profile": b"tiny", b"vw.dim": str(DIM).encode()}
    return pa.table([pa.array([f"v{i:05d}" for i in range(start, start + n)]),
                     pa.array([["train", "validation"][i % 2] for i in range(start, start + n)]),
                     pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)],
                    schema=pa.schema([pa.field("video_id", pa.string()), pa.field("split", pa.string()),
                                      pa.field("caption_embedding", pa.list_(pa.float32(), DIM), metadata=meta)]))


def _behind(table: pa.Table) -> dict[str, int]:
    return {s["columns"][0]: s["unindexed_rows"] for s in index_states(table)}


def test_vw_index_refreshes_stale_indexes_incrementally(tmp_path) -> None:
    conn = connect(str(tmp_path / "db"))
    table = conn.create_table("videos", _rows(0, 600, 0))
    opts = IndexOptions(min_rows=100, recall_queries=5)
    first = {(r.column, r.action) for r in run_index(conn, "videos", None, opts, log=print)}
    assert ("caption_embedding", "built") in first and ("split", "built") in first

    table.add(_rows(600, 100, 1))
    assert _behind(conn.open_table("videos")) == {"caption_embedding": 100, "split": 100, "video_id": 100}
    reports = {r.column: r for r in run_index(conn, "videos", None, opts, log=print)}
    for column in ("caption_embedding", "split", "video_id"):
        assert reports[column].action == "refreshed", reports[column]
        assert "100 new rows added" in reports[column].detail
    assert reports["caption_embedding"].recall_at_10 is not None  # measured after the refresh
    assert _behind(conn.open_table("videos")) == {"caption_embedding": 0, "split": 0, "video_id": 0}

    again = {r.column: r for r in run_index(conn, "videos", None, opts, log=print)}
    assert again["caption_embedding"].action == "skipped" and "up to date" in again["caption_embedding"].detail
    assert again["split"].action == "skipped" and "up to date" in again["split"].detail

    # a table that has outgrown its vector index (more new rows than indexed) gets it rebuilt
    conn.open_table("videos").add(_rows(700, 800, 2))
    grown = {r.column: r for r in run_index(conn, "videos", "caption_embedding", opts, log=print)}
    assert grown["caption_embedding"].action == "built"


def test_stale_indexes_refresh_past_a_share_of_unindexed_rows(tmp_path) -> None:
    conn = connect(str(tmp_path / "db"))
    events = open_events(conn)
    write_events(events, [Event(f"v{i % 20}", "qwen", float(i), "Goal", confidence=0.5) for i in range(2000)])
    assert set(ensure_event_indexes(events)) >= {"video_id", "model", "label"}
    # a few new rows: below the share, the indexes are left for `vw index`
    write_events(events, [Event("v-new", "qwen", float(i), "Goal", confidence=0.5) for i in range(50)])
    assert ensure_event_indexes(events) == []
    assert _behind(events)["video_id"] == 50
    # past 10% and 1,000 rows: brought up to date
    write_events(events, [Event("v-more", "qwen", float(i), "Foul", confidence=0.5) for i in range(1200)])
    refreshed = ensure_event_indexes(events)
    assert "video_id" in refreshed and all(n == 0 for n in _behind(events).values())
    assert refresh_stale_indexes(events, "events", 0, 1) == []


@pytest.mark.parametrize("kind", ["BTree", "Bitmap", "IVF_HNSW_SQ", "Inverted", "LabelList"])
def test_index_kinds(kind: str) -> None:
    from tables.indexes import index_kind

    assert index_kind(kind) == {"BTree": "scalar", "Bitmap": "scalar", "IVF_HNSW_SQ": "vector", "Inverted": "fts",
                                "LabelList": "scalar"}[kind]
