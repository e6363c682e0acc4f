"""``ensemble_matches`` written part by part: one commit for a new run, a merge for a re-run."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from tables.connection import connect
from tables.ensemble_results import ENSEMBLE_MATCHES, MATCHES_SCHEMA, MatchesWriter, read_results, write_matches


def rows(run_id: str, model: str, ids: list[str], scope: str = "ground_truth") -> pa.Table:
    n = len(ids)
    return pa.table({
        "run_id": [run_id] * n, "scope": [scope] * n, "video_id": ["g/1"] * n, "model": [model] * n,
        "label": ["Goal"] * n, "event_id": ids, "time_s": [float(i) for i in range(n)], "confidence": [0.5] * n,
        "category": ["tp"] * n, "group_id": [None] * n, "matched_models": [[model]] * n,
        "partner_event_ids": [[]] * n, "partner_labels": [[]] * n, "partner_time_s": [None] * n,
        "created_at": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * n,
    }, schema=MATCHES_SCHEMA)


def version(conn: object) -> int:
    return conn.open_table(ENSEMBLE_MATCHES).version  # type: ignore[attr-defined]


def test_new_run_parts_become_visible_in_one_commit(tmp_path: Path) -> None:
    conn = connect(str(tmp_path))
    write_matches(conn, "other", rows("other", "qwen", ["o1", "o2"]))
    writer = MatchesWriter(conn, "r1")
    assert writer.new_scope
    before = version(conn)
    parts = [rows("r1", m, [f"{m}-{i}" for i in range(50)]) for m in ("qwen", "llava", "ensemble")]
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(writer.add, parts))
    assert version(conn) == before and read_results(conn, ENSEMBLE_MATCHES, "run_id = 'r1'").num_rows == 0
    assert writer.commit() == 150
    assert version(conn) == before + 1
    got = read_results(conn, ENSEMBLE_MATCHES, "run_id = 'r1'")
    assert sorted(got.column("event_id").to_pylist()) == sorted(i for p in parts for i in p["event_id"].to_pylist())
    assert read_results(conn, ENSEMBLE_MATCHES, "run_id = 'other'").num_rows == 2


def test_rerun_replaces_the_run_in_one_merge(tmp_path: Path) -> None:
    conn = connect(str(tmp_path))
    write_matches(conn, "r1", rows("r1", "qwen", ["a", "b", "c"]))
    write_matches(conn, "r2", rows("r2", "qwen", ["a"]))
    writer = MatchesWriter(conn, "r1")
    assert not writer.new_scope
    writer.add(rows("r1", "qwen", ["b", "d"]))
    writer.add(rows("r1", "llava", ["b"]))
    before = version(conn)
    assert writer.commit() == 3
    assert version(conn) == before + 1
    got = read_results(conn, ENSEMBLE_MATCHES, "run_id = 'r1'")
    assert sorted(zip(got["model"].to_pylist(), got["event_id"].to_pylist(), strict=True)) == [
        ("llava", "b"), ("qwen", "b"), ("qwen", "d")]
    assert read_results(conn, ENSEMBLE_MATCHES, "run_id = 'r2'").num_rows == 1


def test_rows_of_another_run_are_refused(tmp_path: Path) -> None:
    conn = connect(str(tmp_path))
    writer = MatchesWriter(conn, "r1")
    with pytest.raises(ValueError, match=r"rows of runs \['r2'\] given while writing run 'r1'"):
        writer.add(rows("r2", "qwen", ["a"]))
    assert writer.commit() == 0
    assert read_results(conn, ENSEMBLE_MATCHES).num_rows == 0
