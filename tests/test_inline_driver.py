"""Backfill drivers in the command's process: the stand-in for geneva's driver task (no Ray here)."""

from __future__ import annotations

import pickle
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from geneva.runners.ray import pipeline

from jobs.inline_driver import (
    DRIVER_FUNCTION,
    InlineDriver,
    InlineRemote,
    inline_drivers,
    job_driver,
    supported,
    wait_for,
)
from udfs.errors import ChoiceError


def test_the_installed_geneva_dispatches_its_drivers_as_this_relies_on() -> None:
    assert supported()


def test_the_driver_function_is_swapped_within_the_block_and_restored_after() -> None:
    original = getattr(pipeline, DRIVER_FUNCTION)
    with inline_drivers(log=pytest.fail):
        stand_in = getattr(pipeline, DRIVER_FUNCTION)
        assert isinstance(stand_in, InlineRemote) and stand_in.original is original
        with inline_drivers(log=pytest.fail):  # nested (a stage inside a command's session)
            assert getattr(pipeline, DRIVER_FUNCTION) is stand_in
        assert getattr(pipeline, DRIVER_FUNCTION) is stand_in
    assert getattr(pipeline, DRIVER_FUNCTION) is original


def test_blocks_entered_from_threads_restore_the_original_once_all_have_ended() -> None:
    original = getattr(pipeline, DRIVER_FUNCTION)
    inside, leave = threading.Barrier(4), threading.Event()

    def block() -> None:
        with inline_drivers(log=pytest.fail):
            inside.wait(timeout=30)
            leave.wait(timeout=30)

    threads = [threading.Thread(target=block) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait(timeout=30)
    assert isinstance(getattr(pipeline, DRIVER_FUNCTION), InlineRemote)
    leave.set()
    for t in threads:
        t.join(timeout=30)
    assert getattr(pipeline, DRIVER_FUNCTION) is original


def test_vw_job_driver_task_keeps_genevas_driver_task(monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(pipeline, DRIVER_FUNCTION)
    monkeypatch.setenv("VW_JOB_DRIVER", "task")
    assert job_driver() == "task"
    with inline_drivers(log=pytest.fail):
        assert getattr(pipeline, DRIVER_FUNCTION) is original
    monkeypatch.setenv("VW_JOB_DRIVER", "thread")
    with pytest.raises(ChoiceError, match="VW_JOB_DRIVER must be one of command, task; got 'thread'"):
        job_driver()


def test_the_stand_in_runs_the_function_in_a_thread_with_genevas_arguments() -> None:
    seen: dict[str, Any] = {}

    def driver(table_ref: str, col: str, *, job_id: str) -> dict[str, Any]:
        seen.update(thread=threading.current_thread().name, args=(table_ref, col), job_id=job_id)
        return {"rows_processed": 3}

    remote = InlineRemote(SimpleNamespace(_function=driver, options=None))
    ref = remote.options(name="backfill.driver(videos.x)", num_cpus=0).remote("ref", "x", job_id="abc123456789")
    assert isinstance(ref, InlineDriver)
    assert ref.done(timeout=30) and ref.result() == {"rows_processed": 3}
    assert seen == {"thread": "vw-driver-abc12345", "args": ("ref", "x"), "job_id": "abc123456789"}
    # geneva keeps a pickle of the job's object ref in its job record: this one names the process.
    assert "driver in process" in pickle.loads(pickle.dumps(ref))


def _job(ref: InlineDriver) -> Any:
    return SimpleNamespace(job_id=ref.job_id, future=SimpleNamespace(ray_obj_ref=ref))


def test_wait_for_polls_until_the_driver_ends() -> None:
    release = threading.Event()
    ref = InlineDriver(lambda job_id: release.wait(timeout=60), (), {"job_id": "j1"})
    polls: list[float] = []

    def poll() -> None:
        polls.append(time.monotonic())
        if len(polls) == 3:
            release.set()

    wait_for(_job(ref), poll, interval_s=0.01)
    assert len(polls) >= 3 and ref.done(timeout=0)


def test_a_failed_driver_raises_as_geneva_words_a_failed_job() -> None:
    def driver(job_id: str) -> None:
        raise ValueError("udf exploded")

    ref = InlineDriver(driver, (), {"job_id": "j2"})
    with pytest.raises(RuntimeError, match="job j2 failed: udf exploded") as info:
        wait_for(_job(ref), lambda: None, interval_s=0.01)
    assert isinstance(info.value.__cause__, ValueError)


def test_a_driver_task_job_is_waited_for_through_geneva() -> None:
    calls: list[str] = []

    class Job:
        job_id = "j3"
        future = SimpleNamespace(ray_obj_ref=object())

        def done(self, timeout: float | None = None) -> bool:
            calls.append("done")
            return calls.count("done") == 3

        def result(self) -> None:
            calls.append("result")

    wait_for(Job(), lambda: calls.append("poll"), interval_s=0.01)
    assert calls == ["done", "poll", "done", "poll", "done", "result"]
