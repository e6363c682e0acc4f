"""A backfill on an existing Ray cluster: a separate `ray start --head`, driven by the `vw` CLI in a subprocess.

The pytest process may hold its own local Ray (fixture ``local_ray``); the head here has its
own temp dir, ports and auth token, and is stopped by process id, never with `ray stop`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ray_head import RayHead, free_port, running_head
from tests.videogen import make_cfr_video

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def ray_head():
    with running_head(num_cpus=2) as head:
        yield head


def _vw(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vw"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_backfill_on_existing_ray_cluster(tmp_path: Path, ray_head: RayHead) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_cfr_video(videos / "a.mp4", num_frames=24, gop=12)
    make_cfr_video(videos / "b.mp4", num_frames=30, gop=10)
    db = str(tmp_path / "db")
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        "clusters:\n"
        "  lab:\n"
        "    type: ray\n"
        f"    address: {ray_head.address}\n"
        "    auth: token\n"
        "    environment: image\n"
        "    num_gpus: 0\n"
        "    memory: 256Mi\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_AUTH_TOKEN_PATH"] = str(ray_head.token_path)
    env["VW_CLUSTERS"] = str(clusters)

    done = _vw(["ingest", str(videos), "--db", db], env)
    assert done.returncode == 0, done.stderr

    checked = _vw(["clusters", "--check"], env, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{ray_head.address} accepts connections" in checked.stdout

    # A built-in stage and a stage declared in a test module only (its UDF travels by value), as two
    # jobs of one command at once.
    run = _vw(["backfill", "video_embedding", "mean_colour", "--models", "tiny", "--num-frames", "8",
               "--cluster", "lab", "--clusters", str(clusters), "--db", db],
              {**{k: v for k, v in env.items() if k != "VW_CLUSTERS"}, "VW_STAGE_MODULES": "tests.stage_mean_colour",
               "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "video_embedding: 2 computed, 2/2 filled, 0 failed" in run.stdout
    assert "mean_colour: 2 computed, 2/2 filled, 0 failed" in run.stdout
    assert "starting 2 jobs at once" in run.stdout
    # The job ran on the separate head: its workers logged there.
    logs = list((ray_head.temp_dir / "ray").glob("session_*/logs/worker-*.out"))
    assert logs, "no worker ran on the test Ray head"

    from tables.connection import connect, open_videos

    table = open_videos(connect(db), create=False)
    assert table.count_rows("video_embedding IS NULL OR video_embedding_pooled IS NULL") == 0
    assert table.count_rows("mean_colour IS NULL OR mean_colour_times IS NULL") == 0
    assert table.count_rows() == 2


def test_unknown_cluster_is_a_clear_error(tmp_path: Path) -> None:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("clusters:\n  lab: {type: ray, address: 'ray://127.0.0.1:1'}\n")
    env = {**os.environ, "VW_CLUSTERS": str(clusters)}
    run = _vw(["backfill", "video_embedding", "--cluster", "nope", "--db", str(tmp_path / "db")], env, timeout=60)
    assert run.returncode == 2
    assert "unknown cluster 'nope'" in run.stderr and "lab" in run.stderr


def test_unreachable_cluster_fails_before_anything_starts(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_cfr_video(videos / "a.mp4", num_frames=12, gop=12)
    db = str(tmp_path / "db")
    assert _vw(["ingest", str(videos), "--db", db], dict(os.environ)).returncode == 0
    clusters = tmp_path / "clusters.yaml"
    port = free_port()  # nothing listens there
    clusters.write_text(f"clusters:\n  lab: {{type: ray, address: 'ray://127.0.0.1:{port}'}}\n")
    env = {**os.environ, "VW_CLUSTERS": str(clusters)}
    start = time.monotonic()
    run = _vw(["backfill", "video_embedding", "--models", "tiny", "--cluster", "lab", "--db", db], env, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"127.0.0.1:{port} is unreachable" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert time.monotonic() - start < 60  # it used to retry for minutes
