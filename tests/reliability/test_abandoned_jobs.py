"""Jobs left RUNNING by a driver that is gone: detected, shown by `vw status`, marked FAILED (no Ray needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.job_drivers import Driver, classify, is_alive, mark_abandoned, process_start, record_driver, this_driver
from tables.connection import connect, open_videos

pytestmark = pytest.mark.reliability


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_liveness_of_a_driver() -> None:
    me = this_driver()
    assert me.pid == os.getpid() and me.host == socket.gethostname()
    assert me.pid_start is not None and me.pid_start == process_start(os.getpid())
    assert is_alive(me) is True
    assert is_alive(Driver(me.host, _dead_pid(), None)) is False
    # A live process with another start time is a reused id, not the driver.
    assert is_alive(Driver(me.host, os.getpid(), "0")) is False
    assert is_alive(Driver("another-host.invalid", os.getpid(), me.pid_start)) is None


def _launch(conn, job_id: str, column: str) -> None:
    history = conn._history
    history.launch("videos", column, job_id=job_id)
    history.set_running(job_id)


def test_abandoned_jobs_are_shown_and_marked_failed(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    conn = connect(db)
    open_videos(conn)
    _launch(conn, "job-dead", "frame_features")
    _launch(conn, "job-live", "video_embedding")
    _launch(conn, "job-foreign", "scenario")
    record_driver(conn, "job-dead", "videos", "frame_features", Driver(socket.gethostname(), _dead_pid(), None))
    record_driver(conn, "job-live", "videos", "video_embedding")

    states = {j.job_id: j.state for j in classify(conn, "videos")}
    assert states == {"job-dead": "abandoned", "job-live": "running", "job-foreign": "unknown"}

    runner = CliRunner()
    res = runner.invoke(app, ["status", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    videos = next(t for t in json.loads(res.stdout) if t["table"] == "videos")
    assert sorted(videos["running_jobs"]) == ["job-foreign", "job-live"]
    assert [j["job_id"] for j in videos["abandoned_jobs"]] == ["job-dead"]
    res = runner.invoke(app, ["status", "--db", db])
    assert "job job-dead (frame_features) is recorded as RUNNING but ABANDONED" in res.stdout

    res = runner.invoke(app, ["status", "--clean", "--db", db])
    assert res.exit_code == 0, res.output
    assert "job job-dead (videos.frame_features)" in res.stderr and "marked FAILED" in res.stderr
    record = conn.get_job("job-dead")
    assert getattr(record.status, "value", record.status) == "FAILED"
    assert any("abandoned: its driver (pid" in e for e in record.events)
    assert {j.job_id for j in classify(conn, "videos")} == {"job-live", "job-foreign"}
    assert mark_abandoned(conn) == []  # idempotent


def test_drivers_table_being_created_by_another_driver_is_waited_for(tmp_path: Path) -> None:
    """A second driver can list ``_vw_job_drivers`` before the first one has committed it."""
    from lance_namespace.errors import TableNotFoundError

    from jobs import job_drivers
    from tables.connection import connect

    conn = connect(str(tmp_path))
    job_drivers.record_driver(conn, "job-1", "videos", "frame_features")

    class HalfCreated:
        """Lists the table, but the first two opens find no committed version yet."""

        def __init__(self) -> None:
            self.opens = 0

        def table_names(self) -> list[str]:
            return conn.table_names()

        def open_table(self, name: str) -> object:
            self.opens += 1
            if self.opens <= 2:
                raise TableNotFoundError(f"Table not found: {name}")
            return conn.open_table(name)

    racing = HalfCreated()
    job_drivers.record_driver(racing, "job-2", "videos", "video_embedding")  # type: ignore[arg-type]
    assert racing.opens == 3
    assert set(job_drivers.drivers(conn, ["job-1", "job-2"])) == {"job-1", "job-2"}
