"""Losing a Ray node mid-backfill: a two-node cluster on this machine, one node killed.

A head (2 logical CPUs) and a second node joined with ``ray start --address`` (2 logical CPUs,
its own node-manager port) run ``vw backfill frame_features --concurrency 4``; as soon as the
trace shows a worker of the second node starting its first batch (which takes seconds: the
worker imports the decoder and warms up the model), every process of the second node is
SIGKILLed at once, as a machine that disappears, with that batch's rows in flight. The backfill
either finishes on the surviving node or fails; re-run, it completes. The column then equals the
uninterrupted run's (``baseline``), without duplicate rows, and `vw status` shows no job running
or abandoned.

Waiting instead for rows *finished* on both nodes raced on a busy machine: the five tasks of 8
rows take a warm worker a fraction of a second, so one node could finish the job before the other
node's first batch ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ray_head import RayNode, running_head
from tests.reliability.conftest import (
    FRAME_ARGS,
    NUM_VIDEOS,
    column_values,
    copy_db,
    driver_env,
    run_vw,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def _worker_pids(events: list[dict[str, Any]], event: str = "batch_end") -> set[int]:
    return {int(e["pid"]) for e in events if e.get("event") == event}


def test_backfill_survives_losing_a_node(tmp_path: Path, pristine_db: Path, baseline: dict[str, Any],
                                         vw_runs) -> None:
    import json

    with running_head(num_cpus=2) as head:
        node = RayNode(head, num_cpus=2)
        node.start()
        db = copy_db(pristine_db, tmp_path / "db")
        # A job that the node's loss leaves with no task completing fails in 5 minutes, not 10.
        env = driver_env(head, db, GENEVA_PIPELINE_STALL_TIMEOUT_S="300")
        run = vw_runs(["backfill", *FRAME_ARGS, "--concurrency", "4"], env, "node-loss").start()

        def second_node_at_work() -> bool:
            return bool(_worker_pids(run.events(), "batch_start") & set(node.pids()))

        wait_for(lambda: second_node_at_work() or run.proc.poll() is not None, 300,
                 "a worker of the second node starting a batch", interval=0.05)
        assert run.proc.poll() is None, f"the backfill ended before the second node started a batch:\n{run.tail()}"
        second_pids = set(node.pids())
        killed = node.kill()
        assert killed
        events = run.events()
        before = _worker_pids(events)
        in_flight = _worker_pids(events, "batch_start") & second_pids
        code = run.wait(900)
        out = run.stdout()
        if code != 0:
            # The node's loss failed the job: the same command again completes it.
            again = run_vw(["backfill", *FRAME_ARGS], env, timeout=600)
            assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
            out += again.stdout
        print(f"node loss: first run exit {code}; second-node workers at work when killed: {sorted(in_flight)}; "
              f"batches they had finished: "
              f"{len([e for e in events if e.get('event') == 'batch_end' and int(e['pid']) in second_pids])}; "
              f"workers that had finished batches: {sorted(before)}")

        features = column_values(db, "frame_features")
        times = column_values(db, "frame_features_times")
        assert len(features) == NUM_VIDEOS and all(v is not None for v in features.values()), out[-3000:]
        for vid, expected in baseline["frame_features"].items():
            np.testing.assert_array_equal(features[vid], expected, err_msg=vid)
            assert times[vid] == baseline["frame_features_times"][vid], vid
        import lance

        ids = lance.dataset(str(db / "videos.lance")).to_table(columns=["video_id"]).column(0).to_pylist()
        assert len(ids) == len(set(ids)) == NUM_VIDEOS, "duplicate rows"
        done = run_vw(["status", "--json"], env, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        text = done.stdout
        tables, _ = json.JSONDecoder().raw_decode(text[text.index("["):])
        videos = next(t for t in tables if t["table"] == "videos")
        assert videos["running_jobs"] == [] and videos["abandoned_jobs"] == [], videos
