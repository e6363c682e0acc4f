"""Fault injection and snapshot helpers for the bad-input, storage-fault and security tests.

* :class:`FaultProxy`: an HTTP proxy on loopback in front of the GCS emulator that answers
  chosen object requests with an HTTP error a given number of times (or always), counting
  every request it sees per object;
* :func:`snapshot`: a table's version and content digest, to prove that nothing changed;
* :func:`as_nobody` / :func:`ingest_as_nobody`: file access checks as an unprivileged user, so
  that a ``chmod 000`` file is really unreadable even when the tests run as root;
* :func:`run_cli`: one ``vw`` command in-process with its stdout, stderr and exit code;
* :func:`start_local_ray`: the session's shared local Ray, whose workers (when this call starts
  it) reach object storage through :func:`shared_proxy`, so backfills can meet injected faults.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

#: Hop-by-hop headers a proxy must not forward.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "host", "content-length"}
NOBODY = 65534


@dataclass
class _Rule:
    remaining: int | None  # None: fail every request
    status: int
    media_only: bool


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (range reads, retries) are normal here."""


class FaultProxy:
    """Forwards every request to ``upstream`` except chosen object requests, which fail.

    ``fail(name, times=3)`` makes the next 3 requests that touch object ``name`` (its metadata
    or its bytes; only its bytes with ``media_only=True``) answer ``status`` (500 by default);
    ``times=None`` fails them all.
    ``requests[name]`` counts the requests that touched ``name``. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self._rules: dict[str, _Rule] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy's base URL (what ``STORAGE_EMULATOR_HOST`` should name)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, name: str, times: int | None, status: int = 500, media_only: bool = False) -> None:
        """Fail the next ``times`` requests touching object ``name`` (every one when None)."""
        with self._lock:
            self._rules[name] = _Rule(times, status, media_only)

    def clear(self) -> None:
        """Forget every rule and counter."""
        with self._lock:
            self._rules.clear()
            self.requests.clear()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _object_of(self, path: str) -> str | None:
        decoded = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        return next((name for name in self._rules if decoded.endswith("/o/" + name)), None)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        name = self._object_of(h.path)
        status = None
        with self._lock:
            if name is not None:
                self.requests[name] += 1
                rule = self._rules[name]
                media = "alt=media" in h.path or "/download/" in h.path
                if (media or not rule.media_only) and (rule.remaining is None or rule.remaining > 0):
                    status = rule.status
                    if rule.remaining is not None:
                        rule.remaining -= 1
        if status is None and not self.upstream:
            status = 503
        if status is not None:
            payload = json.dumps({"error": {"code": status, "message": "injected backend error"}}).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
            return
        target = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            h.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
        finally:
            conn.close()


_SHARED: FaultProxy | None = None
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def shared_proxy() -> FaultProxy:
    """The process-wide fault proxy the Ray workers use for ``gs://`` (closed at exit).

    It has no upstream until a test sets ``proxy.upstream`` to the GCS emulator; until then
    every request is answered 503.
    """
    global _SHARED
    if _SHARED is None:
        _SHARED = FaultProxy()
        atexit.register(_SHARED.close)
    return _SHARED


def start_local_ray(request: Any) -> bool:
    """Get the session's ``local_ray`` fixture; True when its workers use :func:`shared_proxy`.

    Ray workers take their environment from the moment Ray starts: when this call starts it,
    ``STORAGE_EMULATOR_HOST`` names the shared proxy for that moment only (the test process's
    own environment is restored right after). When Ray was already started by an earlier test,
    the answer comes from asking a worker.
    """
    import ray

    proxy = shared_proxy()
    if not ray.is_initialized():
        old = os.environ.get(EMULATOR_ENV)
        os.environ[EMULATOR_ENV] = proxy.url
        try:
            request.getfixturevalue("local_ray")
        finally:
            if old is None:
                os.environ.pop(EMULATOR_ENV, None)
            else:
                os.environ[EMULATOR_ENV] = old
    else:
        request.getfixturevalue("local_ray")

    @ray.remote(num_cpus=0)
    def worker_env() -> str | None:
        return os.environ.get(EMULATOR_ENV)

    return ray.get(worker_env.remote(), timeout=120) == proxy.url


# --------------------------------------------------------------------------- snapshots


def snapshot(table: Any) -> tuple[int, str]:
    """``(version, digest)`` of a table: the digest covers every column of every row, in id order."""
    table.checkout_latest()
    data = table.to_arrow()
    if "video_id" in data.column_names:
        data = data.sort_by("video_id")
    digest = hashlib.sha256()
    for name in sorted(data.column_names):
        column = data.column(name)
        digest.update(name.encode())
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, pa.schema([pa.field(name, column.type)])) as writer:
            writer.write_table(pa.table({name: column}))
        digest.update(sink.getvalue().to_pybytes())
    return int(table.version), digest.hexdigest()


# --------------------------------------------------------------------------- permissions


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


@contextmanager
def as_nobody() -> Iterator[None]:
    """File access checks of this thread (and threads it starts) as user ``nobody``.

    Linux checks file permissions against the filesystem uid; switching it away from 0 drops
    the root override, so a ``chmod 000`` file raises ``PermissionError`` for real. The real
    and effective ids stay as they are, so the previous ids are restored on exit.
    """
    libc = _libc()
    old_uid, old_gid = libc.setfsuid(-1), libc.setfsgid(-1)  # -1 only reads the current value
    libc.setfsgid(NOBODY)
    libc.setfsuid(NOBODY)
    try:
        yield
    finally:
        libc.setfsuid(old_uid)
        libc.setfsgid(old_gid)


_INGEST_AS_NOBODY = """
import json, sys
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tests.reliability.faults import as_nobody
db, warm, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
table = open_videos(connect(db))
ingest(table, [warm])  # loads every module first: the interpreter's own files are not readable by nobody
with as_nobody():
    report = ingest(table, inputs)
print(json.dumps({"inserted": report.inserted, "updated": report.updated,
                  "failures": [[f.input, f.reason] for f in report.failures]}))
"""


def ingest_as_nobody(db: str, warm_up: str, inputs: list[str], timeout: float = 180) -> dict[str, Any]:
    """``ingest(videos, inputs)`` in a separate interpreter whose file access is ``nobody``'s.

    A separate process, because threads started while the file-system uid is switched keep it
    (Lance starts threads on demand): they must not outlive the call in the test process.
    ``warm_up`` (a readable video) is ingested first, as root. Returns the report as a dict.
    """
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _INGEST_AS_NOBODY, db, warm_up, *inputs], cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the unprivileged ingest failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def open_to_everyone(root: str | os.PathLike[str]) -> None:
    """Make a folder tree writable by every user (so ``nobody`` can write a warehouse in it)."""
    os.chmod(root, 0o777)
    for here, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(here, d), 0o777)
        for f in files:
            os.chmod(os.path.join(here, f), 0o666)


# --------------------------------------------------------------------------- CLI


@dataclass
class CliResult:
    """What one ``vw`` command printed and returned."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout and stderr together."""
        return self.out + self.err


def run_cli(*args: str) -> CliResult:
    """Run ``vw ARGS`` in-process; unexpected exceptions propagate (a bug, not a message)."""
    from typer.testing import CliRunner

    from jobs.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)
