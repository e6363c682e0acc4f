"""Shared pytest fixtures: generated test videos, a local GCS emulator, one local Ray session."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

# gcsfs probes bucket types over gRPC first and waits 60 s per bucket against the emulator.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# `vw` subprocesses of the tests start their own Ray and end it (nothing outlives a test); the warm
# local Ray shared between commands is tested on its own, in tests/test_local_ray.py.
os.environ.setdefault("VW_LOCAL_RAY", "per-command")
# A geneva job none of whose tasks completes fails after 10 minutes here (geneva waits 30 by
# default): the tests' tasks take seconds, so a stalled job is a bug to report, not to wait out.
os.environ.setdefault("GENEVA_PIPELINE_STALL_TIMEOUT_S", "600")
# The tests keep what the code caches in the user's cache folder (e.g. embedded scenario
# descriptions) in a folder of their own, removed at the end: never the user's.
if "VW_CACHE_DIR" not in os.environ:
    os.environ["VW_CACHE_DIR"] = tempfile.mkdtemp(prefix="vw-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VW_CACHE_DIR"], True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A ``gcp-storage-emulator`` on loopback; sets ``STORAGE_EMULATOR_HOST`` for gcsfs.

    Yields the emulator's base URL. Buckets are created by the tests that need them.
    """
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the GCS emulator did not start") from None
            time.sleep(0.2)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    try:
        yield url
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def gcs_fs(gcs_emulator: str):
    """A gcsfs filesystem talking to the emulator (anonymous, no credentials)."""
    import gcsfs

    return gcsfs.GCSFileSystem(endpoint_url=gcs_emulator, token="anon", project="test")


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ONE local Ray session for every integration test (each backfill reuses it).

    geneva's ``local_ray_context`` reuses an already-initialised Ray, so the backfill runner's
    own context inside the tests does not start another one. geneva's bookkeeping actors reserve no
    CPU there, as on every local Ray of the command line.
    """
    from jobs.local_ray import local_pipeline_resources
    from tables.connection import connect

    conn = connect(str(tmp_path_factory.mktemp("ray-anchor")))
    with local_pipeline_resources(), conn.local_ray_context():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``slow`` unless ``VW_RUN_SLOW=1`` (they are kept out of `make test`)."""
    if os.environ.get("VW_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with VW_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
