"""Concurrency: readers during a backfill see one consistent version; concurrent writers lose nothing.

* Readers: while a `vw backfill frame_features` subprocess fills the column, three threads loop
  over the read paths users have: vector search (:func:`tables.search.search`), SQL
  (:func:`tables.sql.run_sql`, the `vw sql` code path) and training batches
  (:class:`tables.feature_dataset.FrameFeatureDataset`). Every read classifies what it saw as one
  table state: the column ``absent`` (not registered yet), ``empty`` (registered, no value) or
  ``full`` (every row has the value of an uninterrupted run). Any other mix (some rows filled,
  different values, a row count other than 40, duplicated ids) or any other error fails the test.
* Writers: two backfills of different columns (two `vw backfill` subprocesses) and an ingest that
  re-registers the 40 videos and adds 10 new ones, all at the same time. Everything must finish
  and nothing may be lost: all 50 rows, both columns filled for the rows the backfills saw, the
  ingest's updates kept.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.reliability.conftest import (
    FRAME_ARGS,
    NUM_VIDEOS,
    column_values,
    copy_db,
    driver_env,
    make_videos,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

#: Pause between two reads of one reader thread (keeps the 2-core machine for the backfill).
READ_PACE_S = 0.2


def _check_rows(ids: list[str], features: list[Any] | None, times: list[Any] | None,
                baseline: dict[str, Any]) -> str:
    """The state one read saw (``absent`` / ``empty`` / ``full``); raises on any inconsistent mix."""
    assert len(ids) == NUM_VIDEOS and len(set(ids)) == NUM_VIDEOS, f"{len(ids)} rows, {len(set(ids))} ids"
    if features is None:
        return "absent"
    filled = [vid for vid, v in zip(ids, features, strict=True) if v is not None]
    assert len(filled) in (0, NUM_VIDEOS), f"a read saw {len(filled)} of {NUM_VIDEOS} rows filled"
    if not filled:
        return "empty"
    for vid, v in zip(ids, features, strict=True):
        np.testing.assert_array_equal(np.asarray(v, np.float32), baseline["frame_features"][vid], err_msg=vid)
    if times is not None:
        filled_times = [t for t in times if t is not None]
        assert len(filled_times) in (0, NUM_VIDEOS), f"a read saw {len(filled_times)} times filled"
        for vid, t in zip(ids, times, strict=True):
            assert t is None or t == baseline["frame_features_times"][vid], vid
    return "full"


def read_sql(db: Path, baseline: dict[str, Any]) -> str:
    """`vw sql`'s code path: one SELECT over the whole table."""
    from tables.sql import run_sql

    t = run_sql("SELECT * FROM videos", db=str(db))
    names = t.column_names
    return _check_rows(t.column("video_id").to_pylist(),
                       t.column("frame_features").to_pylist() if "frame_features" in names else None,
                       t.column("frame_features_times").to_pylist() if "frame_features_times" in names else None,
                       baseline)


def read_dataset(db: Path, baseline: dict[str, Any]) -> str:
    """A training reader pinned to the latest version: every sample of one epoch."""
    from tables.feature_dataset import FeatureDatasetError, FrameFeatureDataset

    try:
        ds = FrameFeatureDataset(str(db))
    except FeatureDatasetError as err:
        assert "no column" in str(err), err
        return "absent"
    samples = ds.__getitems__(list(range(len(ds)))) if len(ds) else []
    ids = [s["video_id"] for s in samples] + list(ds.missing)
    features = [s["features"].numpy() for s in samples] + [None] * len(ds.missing)
    # A row whose times are not computed yet comes with an empty ``times`` tensor.
    times = ([s["times"].numpy().tolist() or None for s in samples] + [None] * len(ds.missing)
             if ds.times_column else None)
    return _check_rows(ids, features, times, baseline)


def read_search(db: Path, baseline: dict[str, Any], expected: list[tuple[str, float]]) -> str:
    """Vector search on the per-frame column (mean pooling): the top 5 must be the full table's top 5."""
    from tables.search import SearchError, search

    query = baseline["frame_features"]["v000"].mean(axis=0)
    try:
        res = search(str(db), vector=query, column="frame_features", pooling="mean", k=5, candidates="exact")
    except (SearchError, LookupError, ValueError) as err:
        assert "frame_features" in str(err), err
        return "absent"
    got = res.table.select(["video_id", "score"]).to_pylist()
    if not got:
        return "empty"
    assert [(r["video_id"], round(r["score"], 5)) for r in got] == expected, got
    return "full"


def _reader(name: str, read: Callable[[], str], stop: threading.Event, seen: Counter, errors: list[str]) -> None:
    while True:
        last = stop.is_set()
        try:
            seen[(name, read())] += 1
        except Exception:  # noqa: BLE001 - every failure is reported by the test
            errors.append(f"{name}: {traceback.format_exc()}")
            return
        if last:
            return
        stop.wait(READ_PACE_S)


def test_readers_see_one_consistent_version_during_a_backfill(tmp_path: Path, pristine_db: Path, ray_head,
                                                              baseline, vw_runs) -> None:
    from tables.search import search

    query = baseline["frame_features"]["v000"].mean(axis=0)
    full = search(str(baseline["db"]), vector=query, column="frame_features", pooling="mean", k=5,
                  candidates="exact").table.select(["video_id", "score"]).to_pylist()
    expected = [(r["video_id"], round(r["score"], 5)) for r in full]
    db = copy_db(pristine_db, tmp_path / "db")
    run = vw_runs(["backfill", *FRAME_ARGS], driver_env(ray_head, db), "readers").start()
    stop = threading.Event()
    seen: Counter = Counter()
    errors: list[str] = []
    readers = {
        "sql": lambda: read_sql(db, baseline),
        "dataset": lambda: read_dataset(db, baseline),
        "search": lambda: read_search(db, baseline, expected),
    }
    threads = [threading.Thread(target=_reader, args=(n, r, stop, seen, errors), daemon=True)
               for n, r in readers.items()]
    for t in threads:
        t.start()
    try:
        rc = run.wait(240)
    finally:
        stop.set()  # each reader does one last read of the final version, then stops
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a reader did not stop"
    assert not errors, "\n".join(errors)
    assert rc == 0, run.tail()
    per_kind = {name: sum(n for (k, _), n in seen.items() if k == name) for name in readers}
    print(f"reads checked: {sum(seen.values())} {dict(sorted(seen.items()))}")
    for name in readers:
        assert seen[(name, "full")] >= 1, f"{name} never read the filled column: {seen}"
        assert per_kind[name] >= 3, f"{name} read only {per_kind[name]} times during the backfill"
    # The reads overlapped the backfill: some saw the column before it was filled.
    assert sum(n for (_, state), n in seen.items() if state != "full") >= 3, seen


def test_two_backfills_and_an_ingest_at_once_lose_nothing(tmp_path: Path, pristine_db: Path, ray_head, baseline,
                                                         vw_runs) -> None:
    from tables.connection import connect, open_videos
    from tables.ingest import ingest
    from udfs.video_embedding import pool_steps

    db = copy_db(pristine_db, tmp_path / "db")
    env = driver_env(ray_head, db)
    features = vw_runs(["backfill", *FRAME_ARGS], env, "features").start()
    embedding = vw_runs(["backfill", "video_embedding", "--models", "tiny", "--num-frames", "4", "--batch-size", "4"],
                        env, "embedding").start()
    new = make_videos(tmp_path / "new", 10, prefix="n")
    # Ingest once both jobs compute (their UDFs have started a batch): a re-ingest of the 40
    # videos (updates every row the backfills are filling) plus 10 new videos.
    wait_for(lambda: all(any(e["event"] == "batch_start" for e in r.events()) or r.proc.poll() is not None
                         for r in (features, embedding)), 180, "both backfills to compute")
    videos_dir = Path(str(pristine_db)).parent / "videos"
    started = time.monotonic()
    report = ingest(open_videos(connect(str(db))), [str(videos_dir), *map(str, new)], source="concurrent")
    ingest_s = time.monotonic() - started
    assert not report.failures and (report.inserted, report.updated) == (10, NUM_VIDEOS), report
    assert features.wait(300) == 0, features.tail()
    assert embedding.wait(300) == 0, embedding.tail()

    import lance

    t = lance.dataset(str(db / "videos.lance")).to_table()
    ids = t.column("video_id").to_pylist()
    assert len(ids) == len(set(ids)) == NUM_VIDEOS + 10, "rows lost or duplicated"
    assert set(t.column("source").to_pylist()) == {"concurrent"}, "the ingest's updates were lost"
    feats = column_values(db, "frame_features")
    steps = column_values(db, "video_embedding")
    pooled = column_values(db, "video_embedding_pooled")
    old = list(baseline["frame_features"])
    missing = [vid for vid in old if feats[vid] is None or steps[vid] is None or pooled[vid] is None]
    assert not missing, f"values lost for {missing}"
    for vid in old:
        np.testing.assert_array_equal(feats[vid], baseline["frame_features"][vid], err_msg=vid)
        s = np.asarray(steps[vid], np.float32)
        assert s.shape == (2, 32), (vid, s.shape)
        np.testing.assert_allclose(np.asarray(pooled[vid], np.float32), pool_steps(s), rtol=1e-5, atol=1e-6)
    reruns = sum(r.stdout().count("running it again on the new table version") for r in (features, embedding))
    print(f"concurrent writes checked: 2 backfills x {NUM_VIDEOS} rows + ingest of {NUM_VIDEOS} updates and 10 new "
          f"rows ({ingest_s:.1f}s while both ran); jobs re-run after a commit conflict: {reruns}")
