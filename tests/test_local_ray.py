"""The warm local Ray (jobs/local_ray.py): settings, one head for commands started together, joined by
a backfill, stopped when idle (after its last user) and by `vw ray stop`, leaving no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.local_ray import (
    LOCAL_PIPELINE_RESOURCES,
    auth_env,
    forget_geneva_settings,
    idle_seconds,
    local_pipeline_resources,
    local_ray_mode,
    read_head,
    state_dir,
    stop_head,
    using_head,
    worker_env_vars,
)
from jobs.ray_processes import end_processes, marked_processes
from tests.videogen import make_cfr_video
from udfs.errors import ChoiceError, SettingError

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VW_LOCAL_RAY")
    assert local_ray_mode() == "warm"
    monkeypatch.setenv("VW_LOCAL_RAY", "per-command")
    assert local_ray_mode() == "per-command"
    monkeypatch.setenv("VW_LOCAL_RAY", "sometimes")
    with pytest.raises(ChoiceError, match="VW_LOCAL_RAY"):
        local_ray_mode()
    monkeypatch.delenv("VW_RAY_IDLE_S", raising=False)
    assert idle_seconds() == 900
    monkeypatch.setenv("VW_RAY_IDLE_S", "-3")
    with pytest.raises(SettingError, match="VW_RAY_IDLE_S='-3'"):
        idle_seconds()
    monkeypatch.delenv("VW_RAY_DIR", raising=False)
    assert state_dir().name.startswith(f"vw-ray-{os.getuid()}-")
    monkeypatch.setenv("VW_RAY_DIR", "/tmp/elsewhere")
    assert state_dir() == Path("/tmp/elsewhere")
    monkeypatch.setenv("VW_PROFILE", "tiny")
    monkeypatch.setenv("HOME_UNRELATED", "x")
    assert worker_env_vars()["VW_PROFILE"] == "tiny" and "HOME_UNRELATED" not in worker_env_vars()


@pytest.fixture()
def fresh_geneva_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """geneva reads its settings afresh in the test, and this process keeps none of the test's after it.

    geneva caches its settings per process; the session's local Ray (conftest's ``local_ray``) has
    cached its own, and a later job of this process must not run with the test's.
    """
    forget_geneva_settings()
    yield monkeypatch
    monkeypatch.undo()
    forget_geneva_settings()


def test_geneva_bookkeeping_reserves_no_cpu_on_a_local_ray(fresh_geneva_settings: pytest.MonkeyPatch) -> None:
    from geneva.runners.ray.admission import PipelineResourceConfig

    for key in LOCAL_PIPELINE_RESOURCES:
        fresh_geneva_settings.delenv(key, raising=False)
    fresh_geneva_settings.setenv("GENEVA_PIPELINE_RESOURCES__JOBTRACKER_NUM_CPUS", "0.5")  # the user's setting wins
    forget_geneva_settings()  # read again with the variables above
    before = PipelineResourceConfig.get()
    with local_pipeline_resources() as added:
        inside = PipelineResourceConfig.get()
        assert (inside.driver_num_cpus, inside.jobtracker_num_cpus, inside.fragment_writer_num_cpus) == (0, 0.5, 0)
        assert set(added) == {"GENEVA_PIPELINE_RESOURCES__DRIVER_NUM_CPUS",
                              "GENEVA_PIPELINE_RESOURCES__FRAGMENT_WRITER_NUM_CPUS"}
        assert worker_env_vars()["GENEVA_PIPELINE_RESOURCES__DRIVER_NUM_CPUS"] == "0"  # joined workers get them
    after = PipelineResourceConfig.get()
    assert "GENEVA_PIPELINE_RESOURCES__DRIVER_NUM_CPUS" not in os.environ
    assert (after.driver_num_cpus, after.jobtracker_num_cpus) == (before.driver_num_cpus, 0.5) == (0.1, 0.5)


def _wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return value


@pytest.fixture()
def warm(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment of `vw` commands that share a warm head kept in a folder of this test."""
    folder = Path(tempfile.mkdtemp(prefix="vwr", dir="/tmp"))  # short: Ray's sockets live under it
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "VW_LOCAL_RAY": "warm", "VW_RAY_DIR": str(folder), "VW_RAY_IDLE_S": "6", "PYTHONPATH": str(ROOT)}
    for key in ("VW_LOCAL_RAY", "VW_RAY_DIR", "VW_RAY_IDLE_S"):
        monkeypatch.setenv(key, env[key])
    yield env
    head = read_head(folder)
    stop_head(folder)
    if head is not None:
        end_processes(marked_processes(head.marks()))
        assert not marked_processes(head.marks()), "the warm head left processes behind"


def _vw(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vw"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _two_videos(tmp_path: Path, env: dict[str, str]) -> str:
    """A warehouse of two small ingested videos; its path."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        make_cfr_video(videos / f"v{i}.mp4", num_frames=20 + i, fps=10, width=64, height=48, gop=10)
    db = str(tmp_path / "db")
    assert _vw(["ingest", str(videos), "--db", db], env).returncode == 0
    return db


@pytest.mark.integration
def test_commands_share_one_warm_head_until_it_idles(tmp_path: Path, warm: dict[str, str]) -> None:
    folder = Path(warm["VW_RAY_DIR"])
    db = _two_videos(tmp_path, warm)

    # Two commands that need a local Ray at the same moment: one starts the head, the other joins it.
    starters = [subprocess.Popen([sys.executable, "-c", "from jobs.local_ray import ensure_head; "
                                  "print(ensure_head(log=lambda m: None).address)"],
                                 env=warm, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in starters]
    assert all(p.returncode == 0 for p in starters), outs
    addresses = {out.strip() for out, _ in outs}
    with using_head(log=lambda m: None) as head:  # this test uses it too, until the backfill has joined
        assert addresses == {head.address}, (addresses, outs)
        status = json.loads(_vw(["ray", "status", "--json"], warm).stdout)
        assert status["running"] and status["address"] == head.address and os.getpid() in status["users"]
        backfill = subprocess.Popen([str(BIN / "vw"), "backfill", "frame_features", "--models", "tiny", "--db", db],
                                    env=warm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert backfill.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("local Ray:") for line in lines):
            line = backfill.stdout.readline()
            assert line, "".join(lines)[-3000:]
            lines.append(line)
        assert f"local Ray: the warm head at {head.address}" in lines[-1], lines[-1]
    # The backfill's job runs for longer than the idle time: its own use keeps the head.
    rest, _ = backfill.communicate(timeout=300)
    out = "".join(lines) + rest
    assert backfill.returncode == 0, out[-3000:]
    assert "frame_features: 2 computed, 2/2 filled, 0 failed" in out
    assert read_head(folder) == head, "the head was restarted"

    # Idle for VW_RAY_IDLE_S with no command using it: the watcher stops it and every process of it.
    _wait_for(lambda: read_head(folder) is None and not marked_processes(head.marks()), 120,
              "the idle warm head to stop")
    assert not head.alive()


@pytest.mark.integration
def test_vw_ray_start_and_stop(warm: dict[str, str]) -> None:
    started = _vw(["ray", "start"], {**warm, "VW_RAY_IDLE_S": "600"})
    assert started.returncode == 0, started.stderr
    head = read_head(Path(warm["VW_RAY_DIR"]))
    assert head is not None and head.alive() and head.idle_s == 600
    assert f"warm local Ray at {head.address}" in started.stdout
    stopped = _vw(["ray", "stop"], warm)
    assert stopped.returncode == 0 and f"stopped the warm local Ray at {head.address}" in stopped.stdout
    assert not marked_processes(head.marks()) and not head.alive()
    assert read_head(Path(warm["VW_RAY_DIR"])) is None
    assert "no warm local Ray" in _vw(["ray", "status"], warm).stdout


#: Lists the CPU each geneva actor and driver task of a Ray job asked for (run against the warm head).
_RESOURCES_OF_JOB = """
import json, sys, ray
from ray.util.state import list_actors, list_tasks
ctx = ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
api = "http://" + ctx.dashboard_url  # this head's, though other Rays may run on the machine
actors = list_actors(address=api, detail=True, limit=10000)
jobs = {a.job_id for a in actors if a.class_name == "ApplierActor"}
out = {job: [] for job in jobs}
for a in actors:
    if a.job_id in jobs:
        out[a.job_id].append([a.class_name, (a.required_resources or {}).get("CPU", 0)])
for t in list_tasks(address=api, detail=True, limit=10000, filters=[("type", "=", "NORMAL_TASK")]):
    if t.job_id in jobs and "backfill.driver" in t.name:
        out[t.job_id].append(["driver", (t.required_resources or {}).get("CPU", 0)])
print(json.dumps(out))
"""


@pytest.mark.integration
def test_the_stages_of_one_command_fit_at_once_on_two_cpus(tmp_path: Path, warm: dict[str, str]) -> None:
    """Two stages' jobs need two 1-CPU appliers; geneva's job trackers reserve no CPU on the local Ray, so
    both appliers are placed at once on a 2-CPU machine (with geneva's 0.1 CPU each, the second applier
    waited for the first stage's job to end). The jobs' drivers run in the command's process (no driver
    task), and each job reads its one fragment as one task, which the applier writes itself: no queue or
    fragment-writer actor is started."""
    db = _two_videos(tmp_path, warm)
    with using_head(log=lambda m: None) as head:  # kept alive for the query below
        run = _vw(["backfill", "video_embedding", "frame_features", "--models", "tiny", "--num-frames", "8",
                   "--db", db], warm)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "starting 2 jobs at once" in run.stdout
        query = subprocess.run([sys.executable, "-c", _RESOURCES_OF_JOB, head.address],
                               env={**warm, **auth_env(Path(warm["VW_RAY_DIR"]))},
                               capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr[-3000:]
    jobs = json.loads(query.stdout.strip().splitlines()[-1])
    assert len(jobs) == 1, jobs  # the one command
    cpus: dict[str, list[float]] = {}
    for name, cpu in next(iter(jobs.values())):
        cpus.setdefault(name, []).append(cpu)
    assert cpus["ApplierActor"] == [1.0, 1.0], cpus
    assert cpus["_JobTracker"] == [0, 0], cpus  # one per stage's job, none reserving a CPU
    assert "driver" not in cpus and "FragmentWriter" not in cpus and "_QueueActor" not in cpus, cpus
    assert all(cpu == 0 for name, found in cpus.items() if name != "ApplierActor" for cpu in found), cpus
