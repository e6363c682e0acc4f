"""The warm local Ray: one Ray head per user and Python environment, shared by successive commands.

Starting a Ray for each command costs several seconds (more on a busy machine), and two commands
starting their own Ray at the same moment can time out. So, by default, the first command that
needs a local Ray starts a head in the background (``ray start --head`` on 127.0.0.1, with its own
ports and temp dir), records its address in a state folder, and every later command joins it as a
driver. A small watcher process stops the head once no command has used it for
``VW_RAY_IDLE_S`` seconds (default 900); ``vw ray stop`` stops it at once, ``vw ray status`` shows it.

Settings:

* ``VW_LOCAL_RAY``: ``warm`` (the default) or ``per-command`` (a Ray started inside the command
  and ended with it, as geneva's local context does; what batch schedulers such as SLURM may
  prefer, since nothing outlives the job).
* ``VW_RAY_DIR``: the state folder (default ``/tmp/vw-ray-<uid>-<environment hash>``; short,
  because Ray's Unix sockets live under it). One head per folder; the folder name includes a hash
  of the Python environment, because a head's workers run the Python that started it.
* ``VW_RAY_IDLE_S``: idle seconds before the watcher stops the head.

Starting is serialised by a lock file, so commands started together share one head. The ``VW_*``,
``HF_*``, ``TRANSFORMERS_*``, ``TORCH*``, ``GENEVA_*``, thread-count and ``PYTHONPATH`` variables of
each command are passed to its own workers (:func:`worker_env_vars`) and are kept out of the head's
environment. On any local Ray (warm or per command), geneva's bookkeeping actors reserve no CPU
(:func:`local_pipeline_resources`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from jobs.ray_processes import end_processes, marked_processes, pid_alive
from udfs.errors import SettingError, VwError, check_choice

LocalRayMode = Literal["warm", "per-command"]

MODE_ENV = "VW_LOCAL_RAY"
DIR_ENV = "VW_RAY_DIR"
IDLE_ENV = "VW_RAY_IDLE_S"
DEFAULT_IDLE_S = 900.0

#: Prefixes of environment variables a joining command passes to its workers.
WORKER_ENV_PREFIXES = ("VW_", "HF_", "TRANSFORMERS_", "TORCH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                       "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "TOKENIZERS_PARALLELISM", "GENEVA_")

#: geneva's settings for its bookkeeping actors on a local Ray: a job's driver task, job tracker and
#: fragment writer reserve no CPU (geneva reserves 0.1 CPU each, sized for clusters). They are mostly
#: idle, and on a small machine their reservations kept the stages of one command from running at once:
#: two 1-CPU appliers plus 0.1 CPU each for their jobs' driver, tracker and writer do not fit in 2 CPUs,
#: so the second stage's applier waited for the first stage's job to end. A value the user set wins.
LOCAL_PIPELINE_RESOURCES = {
    "GENEVA_PIPELINE_RESOURCES__DRIVER_NUM_CPUS": "0",
    "GENEVA_PIPELINE_RESOURCES__JOBTRACKER_NUM_CPUS": "0",
    "GENEVA_PIPELINE_RESOURCES__FRAGMENT_WRITER_NUM_CPUS": "0",
}


class LocalRayError(VwError, RuntimeError):
    """The warm local Ray could not be started, joined or stopped."""


def local_ray_mode() -> LocalRayMode:
    """The local Ray mode set by ``VW_LOCAL_RAY`` (``warm`` when unset)."""
    return check_choice(os.environ.get(MODE_ENV, "warm").strip() or "warm", LocalRayMode, MODE_ENV)


def idle_seconds() -> float:
    """``VW_RAY_IDLE_S`` as a positive number of seconds (default 900)."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SettingError(f"{IDLE_ENV}={raw!r} is not a positive number of seconds")
    return value


def state_dir() -> Path:
    """The warm head's state folder (``$VW_RAY_DIR``, else one per user and Python environment)."""
    configured = os.environ.get(DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    env_hash = hashlib.sha1(os.path.realpath(sys.prefix).encode()).hexdigest()[:8]
    return Path("/tmp") / f"vw-ray-{os.getuid()}-{env_hash}"


@dataclass(frozen=True)
class Head:
    """A warm head: its GCS address, ports, temp dir, start time, Python and watcher process."""

    address: str
    port: int
    client_port: int
    temp_dir: str
    started: float
    python: str
    idle_s: float
    num_cpus: int
    watcher_pid: int = 0

    def marks(self) -> tuple[str, ...]:
        """Strings that only this head's processes have on their command line."""
        return (self.temp_dir, f":{self.port} ", f"--port={self.client_port} ")

    def alive(self) -> bool:
        """True when the head's GCS port accepts connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False


def _head_file(folder: Path) -> Path:
    return folder / "head.json"


def _last_used_file(folder: Path) -> Path:
    return folder / "last_used"


def _users_dir(folder: Path) -> Path:
    return folder / "users"


def read_head(folder: Path | None = None) -> Head | None:
    """The head recorded in ``folder`` (the state folder by default), or ``None``."""
    path = _head_file(folder or state_dir())
    try:
        return Head(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def touch(folder: Path) -> None:
    """Record that the head was used now (the watcher's idle clock restarts)."""
    _last_used_file(folder).touch()


def users(folder: Path | None = None) -> list[int]:
    """Process ids of the commands using the head right now (stale markers are removed)."""
    directory = _users_dir(folder or state_dir())
    live: list[int] = []
    for marker in directory.glob("*") if directory.is_dir() else []:
        try:
            pid = int(marker.name)
        except ValueError:
            continue
        if pid_alive(pid):
            live.append(pid)
        else:
            marker.unlink(missing_ok=True)
    return sorted(live)


def _start(folder: Path, log: Callable[[str], None]) -> Head:
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        raise LocalRayError(f"cannot start the warm local Ray: {ray_bin} does not exist")
    temp_dir = folder / "ray"
    shutil.rmtree(temp_dir, ignore_errors=True)
    port = _free_port()
    client_port, dashboard_port = _free_port(), _free_port()
    while len({port, client_port, dashboard_port}) < 3:
        client_port, dashboard_port = _free_port(), _free_port()
    num_cpus = os.cpu_count() or 1
    token = folder / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    # The settings each command passes to its own workers are left out of the head's environment, so a
    # setting of the command that started the head never leaks into a later command's workers.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith(WORKER_ENV_PREFIXES)},
           **auth_env(folder)}
    start_log = folder / "ray-start.log"
    cmd = [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
           "--ray-client-server-port", str(client_port), "--num-cpus", str(num_cpus),
           "--temp-dir", str(temp_dir), "--disable-usage-stats",
           # geneva checks its actors' liveness through Ray's state API, which the dashboard serves.
           "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)]
    log(f"starting the warm local Ray ({num_cpus} CPUs; kept for {idle_seconds():g} s idle, "
        f"`vw ray stop` ends it)")
    with open(start_log, "w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180, check=False)
    head = Head(address=f"127.0.0.1:{port}", port=port, client_port=client_port, temp_dir=str(temp_dir),
                started=time.time(), python=sys.executable, idle_s=idle_seconds(), num_cpus=num_cpus)
    if done.returncode != 0 or not head.alive():
        end_processes(marked_processes(head.marks()), grace=5.0)
        raise LocalRayError(f"`ray start --head` failed (exit status {done.returncode}); its output is in {start_log}")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "jobs.local_ray", str(folder)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(folder / "watcher.log", "w"),
        start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent),
    )
    head = Head(**{**asdict(head), "watcher_pid": watcher.pid})
    tmp = _head_file(folder).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(head)))
    tmp.replace(_head_file(folder))
    return head


def ensure_head(log: Callable[[str], None] = print) -> Head:
    """The running warm head, started first when there is none (serialised across processes)."""
    folder = state_dir()
    with _locked(folder):
        head = read_head(folder)
        if head is not None and head.alive():
            touch(folder)
            return head
        if head is not None:
            _stop(folder, head)
        head = _start(folder, log)
        touch(folder)
        return head


@contextlib.contextmanager
def using_head(log: Callable[[str], None] = print) -> Iterator[Head]:
    """The warm head, marked as in use by this process for the block (the watcher waits for it)."""
    folder = state_dir()
    head = ensure_head(log)
    marker = _users_dir(folder) / str(os.getpid())
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    saved = {k: os.environ.get(k) for k in auth_env(folder)}
    os.environ.update(auth_env(folder))
    try:
        yield head
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        marker.unlink(missing_ok=True)
        touch(folder)


def auth_env(folder: Path | None = None) -> dict[str, str]:
    """The environment a process needs to talk to the warm head (its token, readable by this user only)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str((folder or state_dir()) / "token")}


def worker_env_vars() -> dict[str, str]:
    """This command's settings its workers on the warm head need (see the module docstring)."""
    return {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}


@contextlib.contextmanager
def local_pipeline_resources() -> Iterator[dict[str, str]]:
    """geneva's bookkeeping actors reserve no CPU during the block (:data:`LOCAL_PIPELINE_RESOURCES`).

    Sets the variables this process lacks, for the block, and yields them (a joining command passes
    them to its workers, where geneva's driver task creates the fragment writer; a Ray started inside
    the command hands its environment to its workers). geneva reads its settings once per process, so
    its cached settings are dropped on entry and on exit.
    """
    added = {k: v for k, v in LOCAL_PIPELINE_RESOURCES.items() if k not in os.environ}
    os.environ.update(added)
    forget_geneva_settings()
    try:
        yield added
    finally:
        for key in added:
            os.environ.pop(key, None)
        forget_geneva_settings()


def forget_geneva_settings() -> None:
    """Drop geneva's settings cached in this process, so its next read sees the environment."""
    from geneva.config import ConfigBase

    ConfigBase.get.__func__.cache_clear()  # type: ignore[attr-defined]


def _stop(folder: Path, head: Head) -> None:
    end_processes(marked_processes(head.marks()), grace=10.0)
    if head.watcher_pid and head.watcher_pid != os.getpid() and pid_alive(head.watcher_pid):
        end_processes([head.watcher_pid], grace=2.0)
    _head_file(folder).unlink(missing_ok=True)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def stop_head(folder: Path | None = None) -> Head | None:
    """Stop the warm head now (running jobs on it fail); returns the head stopped, or ``None``."""
    folder = folder or state_dir()
    if not folder.is_dir():
        return None
    with _locked(folder):
        head = read_head(folder)
        if head is None:
            return None
        _stop(folder, head)
        return head


def idle_for(folder: Path | None = None) -> float:
    """Seconds since a command last used the head."""
    try:
        return max(0.0, time.time() - _last_used_file(folder or state_dir()).stat().st_mtime)
    except OSError:
        return 0.0


def watch(folder: Path, poll_s: float = 2.0) -> None:
    """The watcher's loop: stop the head once it has been idle for its ``idle_s`` with no user."""
    born = time.monotonic()
    while True:
        time.sleep(poll_s)
        head = read_head(folder)
        if head is None and time.monotonic() - born < 30:
            continue  # the starting command has not recorded the head yet
        if head is None or head.watcher_pid != os.getpid():
            return  # stopped, or replaced by a head with its own watcher
        if not head.alive():
            with _locked(folder):
                if read_head(folder) == head:
                    _stop(folder, head)
            return
        if users(folder) or idle_for(folder) < head.idle_s:
            continue
        with _locked(folder):
            if read_head(folder) == head and not users(folder) and idle_for(folder) >= head.idle_s:
                _stop(folder, head)
                return


if __name__ == "__main__":
    watch(Path(sys.argv[1]))
