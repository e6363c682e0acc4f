"""Kill -9 a running `vw backfill` at chosen points, then re-run: nothing lost, nothing duplicated.

One warehouse of 40 generated videos is backfilled (``frame_features`` with the ``tiny`` model,
8 videos per checkpoint) by a chain of `vw backfill` subprocesses joined to the session's Ray
head: the first three are killed with SIGKILL, the fourth runs to the end.

How the kill points are hit: every run writes a stage trace (``VW_TRACE``, :mod:`udfs.trace`):
the UDF worker appends an event when it starts and ends decoding a video, calling the model and
handing a batch to geneva. The test polls that file and kills the `vw` process as soon as the
trace shows the wanted phase:

1. ``decode``: a video is being decoded and no model call has started (first batch);
2. ``model``: a model call has started and not ended;
3. ``commit``: every row has been computed and handed to geneva, so the job is checkpointing,
   writing and committing the fragment.

Only the driver is killed (not its process group): Ray must stop the job's workers by itself,
and the test waits until no worker process of the job is left. The trace also counts the work:
rows whose batch ended in a killed run and were computed again by a later run are the rows
recomputed because of that kill; each must be at most one checkpoint (8 rows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.reliability.conftest import (
    CHECKPOINT_ROWS,
    FRAME_ARGS,
    NUM_VIDEOS,
    column_values,
    copy_db,
    driver_env,
    job_workers,
    run_vw,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def _open(events: list[dict[str, Any]], start: str, end: str) -> set[str]:
    """Ids with a ``start`` event not yet followed by their ``end`` event."""
    open_ids: dict[str, int] = {}
    for e in events:
        for vid in e["ids"]:
            if e["event"] == start:
                open_ids[vid] = open_ids.get(vid, 0) + 1
            elif e["event"] == end:
                open_ids[vid] = open_ids.get(vid, 0) - 1
    return {vid for vid, n in open_ids.items() if n > 0}


def in_decode(events: list[dict[str, Any]], committed: set[str]) -> bool:
    """A video is being decoded and no model call has started yet."""
    return bool(_open(events, "decode_start", "decode_end")) and not any(e["event"] == "model_start" for e in events)


def in_model(events: list[dict[str, Any]], committed: set[str]) -> bool:
    """A model call has started and not ended."""
    return bool(_open(events, "model_start", "model_end"))


def all_computed(events: list[dict[str, Any]], committed: set[str]) -> bool:
    """Every row not committed before this run has been computed and handed to geneva (it is committing)."""
    return len(computed_ids(events) | committed) == NUM_VIDEOS


def computed_ids(events: list[dict[str, Any]]) -> set[str]:
    """Ids the UDF returned values for (``batch_end`` events of the features stage)."""
    return {vid for e in events if e["event"] == "batch_end" and e["stage"] == "frame_features" for vid in e["ids"]}


def _status(env: dict[str, str]) -> dict[str, Any]:
    done = run_vw(["status", "--json"], env, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout
    status, _ = json.JSONDecoder().raw_decode(text[text.index("["):])
    return next(t for t in status if t["table"] == "videos")


def _version(db: Path) -> int:
    import lance

    return int(lance.dataset(str(db / "videos.lance")).version)


KILL_POINTS: list[tuple[str, Callable[[list[dict[str, Any]], set[str]], bool]]] = [
    ("decode", in_decode),
    ("model", in_model),
    ("commit", all_computed),
]


def test_kill_at_decode_model_and_commit_then_resume(tmp_path: Path, pristine_db: Path, ray_head, baseline,
                                                     vw_runs) -> None:
    db = copy_db(pristine_db, tmp_path / "db")
    env = driver_env(ray_head, db)
    killed: list[dict[str, Any]] = []
    committed: set[str] = set()
    for point, reached in KILL_POINTS:
        run = vw_runs(["backfill", *FRAME_ARGS], env, f"kill-{point}").start()
        wait_for(lambda run=run, reached=reached, done=committed: reached(run.events(), done)
                 or run.proc.poll() is not None, 180, f"the {point} phase of `vw backfill`", interval=0.01)
        assert run.proc.poll() is None, f"the run ended before its {point} kill point:\n{run.tail()}"
        run.kill()
        events = run.events()
        # Ray stops the workers of a job whose driver is gone; none may be left to keep writing.
        wait_for(lambda: not job_workers(ray_head), 60, "the killed job's Ray workers to stop", interval=0.2)
        version = _version(db)
        status = _status(env)
        assert _version(db) == version, "the table changed after the killed job's workers were gone"
        job_ids = {e["job_id"] for e in status["abandoned_jobs"]}
        assert status["running_jobs"] == [], f"a killed job is still reported as running: {status['running_jobs']}"
        assert len(job_ids) == 1, f"after the {point} kill `vw status` should show one abandoned job: {status}"
        features = column_values(db, "frame_features") if "frame_features" in _schema(db) else {}
        committed = {vid for vid, v in features.items() if v is not None}
        killed.append({"point": point, "job_id": job_ids.pop(), "computed": computed_ids(events),
                       "committed": committed})
        run.close()

    final = vw_runs(["backfill", *FRAME_ARGS], env, "final").start()
    assert final.wait(240) == 0, final.tail()
    out = final.stdout()
    assert f"job {killed[-1]['job_id']} (frame_features) was abandoned" in out, out

    # Complete, identical to the uninterrupted run, no duplicate rows.
    features = column_values(db, "frame_features")
    times = column_values(db, "frame_features_times")
    assert sorted(features) == sorted(baseline["frame_features"]) and len(features) == NUM_VIDEOS
    import lance

    ids = lance.dataset(str(db / "videos.lance")).to_table(columns=["video_id"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) == NUM_VIDEOS, "duplicate rows"
    for vid, expected in baseline["frame_features"].items():
        np.testing.assert_array_equal(features[vid], expected, err_msg=vid)
        assert times[vid] == baseline["frame_features_times"][vid], vid

    # Work lost per kill: rows computed by the killed run and computed again later.
    later: list[set[str]] = []
    runs_computed = [k["computed"] for k in killed] + [computed_ids(final.events())]
    for i in range(len(killed)):
        later.append(set().union(*runs_computed[i + 1:]))
    figures = []
    for k, again in zip(killed, later, strict=True):
        recomputed = k["computed"] & again
        figures.append(f"{k['point']}: {len(k['computed'])} computed, {len(k['committed'])} committed, "
                       f"{len(recomputed)} recomputed")
        assert len(recomputed) <= CHECKPOINT_ROWS, f"kill at {k['point']} lost {len(recomputed)} rows (> 1 checkpoint)"
        assert not (k["committed"] & again), f"rows committed before the {k['point']} kill were computed again"
    # After the commit kill every row had been computed: the last run fills the rows that were not
    # committed, restoring them from the checkpoints instead of calling the model again.
    final_udf = len(computed_ids(final.events()))
    left = NUM_VIDEOS - len(killed[-1]["committed"])
    assert f"frame_features: {left} computed" in out, out
    assert final_udf <= CHECKPOINT_ROWS, f"the last run computed {final_udf} rows again"
    print("kill/resume:", "; ".join(figures), f"; final run: {final_udf} rows by the UDF")

    # No job left RUNNING; every killed job is FAILED with the reason.
    status = _status(env)
    assert status["running_jobs"] == [] and status["abandoned_jobs"] == [], status
    from tables.connection import connect

    conn = connect(str(db))
    for k in killed:
        record = conn.get_job(k["job_id"])
        assert str(getattr(record.status, "value", record.status)) == "FAILED", (k, record.status)
        assert any("abandoned" in e for e in record.events or []), record.events


def _schema(db: Path) -> list[str]:
    import lance

    return lance.dataset(str(db / "videos.lance")).schema.names
