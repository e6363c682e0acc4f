"""A backfill job's driver in the command's own process, on a local Ray.

geneva runs the driver of each backfill (it plans the read tasks, starts the applier actors, hands
them tasks, writes and commits the fragments) as a Ray task: a new worker process that imports
geneva, 2-3 s of CPU, before it can plan and start the job's appliers. On a small job that import
lies on the critical path; on 2 cores, with the job tracker importing geneva at the same moment, it
costs more. The command that starts the job has geneva loaded already and only waits for the job,
so on a local Ray (the warm one, one per command, one joined through ``RAY_ADDRESS`` or a local
context of a notebook or test session) :func:`inline_drivers` has geneva call the same driver
function in a thread of the command instead of a Ray task. Everything else is geneva's as before: the
job record and its states, the job tracker, the appliers, checkpoints, error records and commits.
On a defined cluster (``--cluster``) geneva's driver task runs on the cluster's head as before.
``VW_JOB_DRIVER=task`` keeps geneva's driver task on a local Ray too (``command``, the default: in
the command's process).

geneva has no setting for this: for the duration of the block, the driver's Ray remote function is
replaced, in geneva's pipeline module, by :class:`InlineRemote`, whose ``remote()`` starts the
function in a thread and returns an :class:`InlineDriver` where geneva keeps the task's object ref.
:func:`wait_for` waits for either kind. :func:`supported` checks that the installed geneva
dispatches its backfills the way this relies on (a test pins it); where it does not, the block
says so in one line and geneva's driver task is used.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

from udfs.errors import check_choice
from udfs.process_setting import ProcessSetting

JobDriver = Literal["command", "task"]
DRIVER_ENV = "VW_JOB_DRIVER"
#: The name, in geneva's pipeline module, of the Ray remote function that drives a backfill.
DRIVER_FUNCTION = "run_ray_add_column_remote"
#: geneva's function that submits that driver task for ``Table.backfill_async``.
DISPATCH_FUNCTION = "dispatch_run_ray_add_column"


class InlineDriver:
    """One job's driver running in a thread of this process (held by geneva as the job's object ref)."""

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.job_id = str(kwargs.get("job_id") or "")
        self._future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(function, args, kwargs), daemon=True,
                                        name=f"vw-driver-{self.job_id[:8]}")
        self._thread.start()

    def _run(self, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._future.set_running_or_notify_cancel()
        try:
            self._future.set_result(function(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits for the job
            self._future.set_exception(err)

    def done(self, timeout: float | None = None) -> bool:
        """Whether the driver has ended, waiting up to ``timeout`` seconds for it."""
        concurrent.futures.wait([self._future], timeout=timeout)
        return self._future.done()

    def result(self) -> Any:
        """The driver's return value; raises its error (waits for it to end)."""
        return self._future.result()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # geneva stores a pickle of the job's object ref in its job record: this one says what ran it.
        return (str, (f"driver in process {os.getpid()} (video-warehouse, local Ray)",))


class InlineRemote:
    """Stands in for geneva's driver remote function: ``options(...).remote(...)`` runs it in a thread."""

    def __init__(self, remote_function: Any) -> None:
        self.original = remote_function
        self._function = remote_function._function

    def options(self, **_: Any) -> InlineRemote:
        """Ray placement options of the driver task: nothing to place in this process."""
        return self

    def remote(self, *args: Any, **kwargs: Any) -> InlineDriver:
        """Start the driver in a thread of this process."""
        return InlineDriver(self._function, args, kwargs)


def supported() -> bool:
    """Whether the installed geneva submits each backfill's driver through the remote function this
    module replaces (module global, wrapping a plain Python function)."""
    from geneva.runners.ray import pipeline

    remote = getattr(pipeline, DRIVER_FUNCTION, None)
    if isinstance(remote, InlineRemote):
        remote = remote.original
    dispatch = getattr(pipeline, DISPATCH_FUNCTION, None)
    return (callable(getattr(remote, "_function", None)) and callable(getattr(remote, "options", None))
            and dispatch is not None and DRIVER_FUNCTION in dispatch.__code__.co_names)


def job_driver() -> JobDriver:
    """Where a local Ray's backfill drivers run, from ``VW_JOB_DRIVER`` (``command`` when unset)."""
    return check_choice(os.environ.get(DRIVER_ENV, "command").strip() or "command", JobDriver, DRIVER_ENV)


def _swap_in() -> None:
    from geneva.runners.ray import pipeline

    setattr(pipeline, DRIVER_FUNCTION, InlineRemote(getattr(pipeline, DRIVER_FUNCTION)))


def _swap_out() -> None:
    from geneva.runners.ray import pipeline

    setattr(pipeline, DRIVER_FUNCTION, getattr(pipeline, DRIVER_FUNCTION).original)


_SETTING = ProcessSetting(_swap_in, _swap_out)


@contextlib.contextmanager
def inline_drivers(log: Callable[[str], None] = print) -> Iterator[None]:
    """Within the block, backfills started in this process run their driver in a thread of it.

    Re-entrant and thread-safe (the stages of one command start their jobs from parallel threads);
    the original remote function is restored when the outermost block ends.
    """
    if job_driver() == "task":
        yield
        return
    if not supported():
        log("note: this geneva version starts backfill drivers differently: each job's driver runs as a Ray "
            "task (a new process per job)")
        yield
        return
    with _SETTING.held():
        yield


def wait_for(job: Any, poll: Callable[[], None], interval_s: float = 2.0) -> None:
    """Wait for geneva ``job`` (from ``Table.backfill_async``) to end, calling ``poll`` every
    ``interval_s`` seconds meanwhile; raises the job's error. Works for an in-process driver and a
    driver task alike."""
    ref = getattr(job.future, "ray_obj_ref", None)
    if isinstance(ref, InlineDriver):
        while not ref.done(timeout=interval_s):
            poll()
        try:
            ref.result()
        except Exception as err:  # worded as geneva's Job.result words a driver task's error
            raise RuntimeError(f"job {job.job_id} failed: {err}") from err
        return
    while not job.done(timeout=interval_s):
        poll()
    job.result()
