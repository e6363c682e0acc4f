"""Fixtures of the crash and concurrency tests: generated videos, a shared Ray head, `vw` drivers.

Every backfill here runs in a real ``vw`` subprocess joined to ONE Ray head started for the
test session (``RAY_ADDRESS``: starting a Ray per command costs ~10 s on a small machine). The
head is stopped by process id at the end (never with ``ray stop``), and every subprocess is
killed with its process group if a test fails half-way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.ray_processes import processes as _processes
from tests.ray_head import RayHead, running_head
from tests.videogen import make_cfr_video
from udfs.trace import read_trace

BIN = Path(sys.executable).parent
NUM_VIDEOS = 40
#: `--batch-size 4`: 8 videos per UDF call, which is also the checkpoint size (the CPU minimum).
BATCH_SIZE = 4
CHECKPOINT_ROWS = 8
FRAME_ARGS = ["frame_features", "--models", "tiny", "--batch-size", str(BATCH_SIZE)]
#: Ray processes of the head itself (not workers of a job).
HEAD_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns a true value (returned); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def make_videos(directory: Path, count: int, prefix: str = "v") -> list[Path]:
    """``count`` small distinct H.264 clips (64x48, 2.0-2.4 s at 10 fps)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [make_cfr_video(directory / f"{prefix}{i:03d}.mp4", num_frames=20 + i % 5, fps=10, width=64, height=48,
                           gop=10).path for i in range(count)]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """One Ray head (4 logical CPUs) that every `vw` subprocess of these tests joins."""
    with running_head(num_cpus=4) as head:
        yield head


def job_workers(head: RayHead) -> list[tuple[int, str]]:
    """Worker processes of the head's jobs (``ray::...`` processes other than the head's agents)."""
    procs = _processes()
    ours = set(head.pids())
    return [(pid, cmd.strip()) for pid, (_, cmd) in procs.items()
            if pid in ours and cmd.startswith("ray::") and not cmd.startswith(HEAD_AGENTS)]


def driver_env(head: RayHead, db: Path | str, **extra: str) -> dict[str, str]:
    """Environment of a `vw` subprocess: the warehouse ``db`` and the shared Ray head."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(VW_DB=str(db), RAY_ADDRESS=f"127.0.0.1:{head.port}", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(head.token_path), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class VwRun:
    """A `vw` subprocess (its own process group) with its output and trace files."""

    args: list[str]
    env: dict[str, str]
    workdir: Path
    name: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    _files: list[Any] = field(default_factory=list)

    @property
    def trace_path(self) -> Path:
        """The stage trace of this run (``VW_TRACE``)."""
        return self.workdir / f"{self.name}.trace.jsonl"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.err"

    def start(self) -> VwRun:
        """Start ``vw ARGS`` with ``VW_TRACE`` set to :attr:`trace_path`."""
        out, err = open(self.stdout_path, "wb"), open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self._files = [out, err]
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "vw"), *self.args], env={**self.env, "VW_TRACE": str(self.trace_path)},
                                     stdout=out, stderr=err, start_new_session=True)
        return self

    def events(self) -> list[dict[str, Any]]:
        """The trace events written so far."""
        return read_trace(self.trace_path)

    def wait(self, timeout: float) -> int:
        """Wait for the exit status (the run is killed and the test fails after ``timeout`` s)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            command = " ".join(self.args)
            raise AssertionError(f"`vw {command}` did not finish in {timeout:.0f}s:\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL the `vw` process itself (not its group: Ray must stop the job's workers on its own)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        """Kill whatever is left of the run's process group and close its files."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for fh in self._files:
            fh.close()
        self._files = []

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        """The end of stdout and of stderr (for assertion messages)."""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout\n{self.stdout()[-chars:]}\n--- stderr\n{err[-chars:]}"


@pytest.fixture()
def vw_runs(tmp_path: Path) -> Iterator[Callable[..., VwRun]]:
    """A factory of :class:`VwRun` objects; every run is killed and closed at the end of the test."""
    runs: list[VwRun] = []

    def make(args: list[str], env: dict[str, str], name: str) -> VwRun:
        run = VwRun(args, env, tmp_path, name)
        runs.append(run)
        return run

    try:
        yield make
    finally:
        for run in runs:
            run.close()


def run_vw(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``vw ARGS`` to completion (bounded)."""
    return subprocess.run([str(BIN / "vw"), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def pristine_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with :data:`NUM_VIDEOS` ingested videos and nothing computed (copy it, never write it)."""
    from tables.connection import connect, open_videos
    from tables.ingest import ingest

    root = tmp_path_factory.mktemp("reliability")
    videos = make_videos(root / "videos", NUM_VIDEOS)
    db = root / "pristine"
    report = ingest(open_videos(connect(str(db))), [str(p) for p in videos])
    assert report.inserted == NUM_VIDEOS and not report.failures, report.failures
    return db


def copy_db(pristine: Path, target: Path) -> Path:
    """A private copy of a warehouse directory."""
    shutil.copytree(pristine, target)
    return target


def column_values(db: Path | str, column: str, table: str = "videos") -> dict[str, Any]:
    """``video_id -> value`` of ``column`` at the latest version (per-step columns as float32 arrays)."""
    import lance

    ds = lance.dataset(str(Path(db) / f"{table}.lance"))
    t = ds.to_table(columns=["video_id", column])
    values = t.column(column).to_pylist()
    return {vid: (None if v is None else np.asarray(v, np.float32) if column == "frame_features" else v)
            for vid, v in zip(t.column("video_id").to_pylist(), values, strict=True)}


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory, pristine_db: Path, ray_head: RayHead) -> dict[str, Any]:
    """``frame_features`` / ``frame_features_times`` of an uninterrupted `vw backfill` of the pristine warehouse."""
    db = copy_db(pristine_db, tmp_path_factory.mktemp("baseline") / "db")
    done = run_vw(["backfill", *FRAME_ARGS], driver_env(ray_head, db), timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    features = column_values(db, "frame_features")
    times = column_values(db, "frame_features_times")
    assert len(features) == NUM_VIDEOS and all(v is not None for v in features.values())
    return {"db": db, "frame_features": features, "frame_features_times": times}
