"""A separate Ray head on 127.0.0.1 for tests, started with `ray start` and stopped by process id.

`ray stop` would end every Ray process of the user (including a test session's own local Ray),
so :meth:`RayHead.stop` ends only the processes of this head: those whose command line names
its temp dir or GCS port, and their descendants.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobs.ray_processes import end_processes, marked_processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """`ray start --head` with its own temp dir, ports and auth token; ``address`` is its Ray client address."""

    def __init__(self, ray_bin: str, num_cpus: int = 1) -> None:
        # Short path: Ray's Unix sockets live under the temp dir (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="vwray", dir="/tmp"))
        self.port = free_port()
        self.client_port = free_port()
        while self.client_port == self.port:
            self.client_port = free_port()
        self.token_path = self.temp_dir / "token"
        self.token_path.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        self.env.pop("RAY_ADDRESS", None)
        self.ray_bin = ray_bin
        self.num_cpus = num_cpus

    @property
    def address(self) -> str:
        """The Ray client address (``ray://127.0.0.1:PORT``)."""
        return f"ray://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the head and wait until its client port accepts connections."""
        subprocess.run(
            [self.ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--ray-client-server-port", str(self.client_port), "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
             "--temp-dir", str(self.temp_dir / "ray"), "--include-dashboard=false", "--disable-usage-stats"],
            env=self.env, check=True, capture_output=True, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head's client port {self.client_port} did not open") from None
                time.sleep(0.3)

    def pids(self) -> list[int]:
        """Processes of this head: command line names its temp dir or GCS port, plus their descendants."""
        return marked_processes((str(self.temp_dir), f":{self.port} ", f"--port={self.client_port} "))

    def stop(self, grace: float = 10.0) -> None:
        """End this head's processes (SIGTERM, then SIGKILL after ``grace`` seconds) and remove its temp dir."""
        end_processes(self.pids(), grace)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextmanager
def running_head(num_cpus: int) -> Iterator[RayHead]:
    """A started Ray head of the venv's ``ray`` with ``num_cpus`` logical CPUs; stopped on exit,
    and no process of it may be left behind."""
    head = RayHead(str(Path(sys.executable).parent / "ray"), num_cpus=num_cpus)
    try:
        head.start()
        yield head
    finally:
        head.stop()
    assert not head.pids(), "the test Ray head left processes behind"


class RayNode:
    """A second Ray node on this machine joined to ``head`` with ``ray start --address``: its own
    node-manager and object-manager ports mark its processes, so :meth:`kill` ends exactly this
    node (its raylet, agents and workers), as a machine that disappears would."""

    def __init__(self, head: RayHead, num_cpus: int = 1) -> None:
        self.head = head
        self.num_cpus = num_cpus
        self.node_manager_port = free_port()
        self.object_manager_port = free_port()
        while self.object_manager_port == self.node_manager_port:
            self.object_manager_port = free_port()

    def start(self, timeout: float = 60.0) -> None:
        """Join the head and wait until the node's raylet runs."""
        subprocess.run(
            [self.head.ray_bin, "start", "--address", f"127.0.0.1:{self.head.port}", "--node-ip-address", "127.0.0.1",
             "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
             "--node-manager-port", str(self.node_manager_port),
             "--object-manager-port", str(self.object_manager_port), "--disable-usage-stats"],
            env=self.head.env, check=True, capture_output=True, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not self.pids():
            if time.monotonic() > deadline:
                raise RuntimeError("the second Ray node's raylet did not start")
            time.sleep(0.3)

    def pids(self) -> list[int]:
        """The node's processes: its raylet, the workers and agents it started, and their children."""
        port = self.node_manager_port
        return marked_processes((f"--node_manager_port={port} ", f"--node-manager-port={port} "))

    def kill(self) -> list[int]:
        """SIGKILL every process of the node at once (no clean shutdown); returns their pids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return pids
