"""ONE backfill over everything that can go wrong with a video after it was ingested.

Each geneva backfill costs ~10 s of fixed overhead per column, so the bad-input tests and the
storage-fault tests share this single run (computed once per test process, whichever test
module asks first):

* local files, ingested while good, then emptied, overwritten with random bytes, truncated,
  overwritten with text, deleted, replaced by a folder, made unreadable (``chmod 000``; not
  when running as root, where reads are never denied), one with a corrupt middle from the
  start, and one whose ``uri`` carries a password (``https://user:SECRET@...``);
* ``gs://`` objects behind the fault proxy: one fine, one whose reads fail twice with HTTP 500,
  one whose reads always fail with HTTP 500;
* two good local files.

The run is ``vw backfill frame_features --models tiny``, then ``vw status``, then the same
backfill again (which must find nothing to compute).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from tables.connection import connect, open_videos
from tests.reliability.faults import CliResult, run_cli, shared_proxy, start_local_ray
from tests.videogen import make_broken_files, make_cfr_video

#: The password of the credentialed URI: it must never show in errors, output or status.
URI_SECRET = "s3cr3t-P4ss"
BUCKET = "vw-faults-backfill"
ROOT = os.geteuid() == 0
LOCAL_BAD = ["corrupt_middle", "emptied", "randomized", "truncated", "texted", "deleted", "now_a_folder",
             "credentialed"] + ([] if ROOT else ["denied"])
GOOD = ["good1", "good2", "bf_ok", "bf_flaky"]
GCS_BAD = ["bf_dead"]

_RESULT: dict[str, Any] | None = None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scenario's results (see the module docstring); the backfill runs on the first call only.

    ``workers_use_proxy`` is False when Ray was started before this run could point its workers
    at the fault proxy; the ``gs://`` rows then fail for another reason and tests skip them.
    """
    global _RESULT
    if _RESULT is not None:
        return _RESULT
    workers_use_proxy = start_local_ray(request)
    emulator = request.getfixturevalue("gcs_emulator")
    gcs_fs = request.getfixturevalue("gcs_fs")
    root = tmp_path_factory.mktemp("changed")
    videos = root / "videos"
    videos.mkdir()
    clip = make_cfr_video(root / "clip.mp4", num_frames=25, width=96, height=64).path
    corrupt = make_broken_files(root / "broken", make_cfr_video(root / "valid.mp4", num_frames=50).path)
    for name in ["good1", "good2", *LOCAL_BAD]:
        shutil.copy(corrupt["corrupt_middle"] if name == "corrupt_middle" else clip, videos / f"{name}.mp4")
    gcs_fs.mkdir(BUCKET)
    for name in ("bf_ok", "bf_flaky", "bf_dead"):
        gcs_fs.put(str(clip), f"{BUCKET}/{name}.mp4")

    proxy = shared_proxy()
    proxy.upstream = emulator
    proxy.clear()
    old_host = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
    try:
        db = str(root / "wh")
        gs = [f"gs://{BUCKET}/{n}.mp4" for n in ("bf_ok", "bf_flaky", "bf_dead")]
        ingested = run_cli("ingest", videos, *gs, "--db", db)
        assert ingested.code == 0, ingested.text
        _break(videos, clip)
        table = open_videos(connect(db), create=False)
        secret_uri = f"https://reader:{URI_SECRET}@127.0.0.1:{_closed_port()}/credentialed.mp4"
        table.update(where="video_id = 'credentialed'", values={"uri": secret_uri})
        table.checkout_latest()
        base = list(table.schema.names)
        before = table.to_arrow().select(base).sort_by("video_id")
        proxy.fail("bf_flaky.mp4", times=2, media_only=True)
        proxy.fail("bf_dead.mp4", times=None, media_only=True)
        backfill: CliResult = run_cli("backfill", "frame_features", "--models", "tiny", "--db", db)
        requests = dict(proxy.requests)
        status = run_cli("status", "--db", db)
        rerun = run_cli("backfill", "frame_features", "--models", "tiny", "--db", db)
    finally:
        proxy.clear()
        if old_host is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old_host
    _RESULT = {"db": db, "base": base, "before": before, "backfill": backfill, "status": status, "rerun": rerun,
               "requests": requests, "workers_use_proxy": workers_use_proxy,
               "rows": len(GOOD) + len(LOCAL_BAD) + len(GCS_BAD)}
    return _RESULT


def _break(videos: Path, clip: Path) -> None:
    """Change the local files on disk after they were ingested."""
    data = clip.read_bytes()
    (videos / "emptied.mp4").write_bytes(b"")
    (videos / "randomized.mp4").write_bytes(os.urandom(50_000))
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (videos / "texted.mp4").write_text("not a video any more\n" * 100)
    (videos / "deleted.mp4").unlink()
    (videos / "now_a_folder.mp4").unlink()
    (videos / "now_a_folder.mp4").mkdir()
    if not ROOT:
        (videos / "denied.mp4").chmod(0)


def column_values(db: str, column: str = "frame_features") -> dict[str, Any]:
    """``video_id -> value`` of ``column`` in the scenario's warehouse."""
    data = open_videos(connect(db), create=False).to_arrow()
    return dict(zip(data.column("video_id").to_pylist(), data.column(column).to_pylist(), strict=True))


def errors_by_id(db: str) -> dict[str, dict[str, Any]]:
    """The error record of every failed row, by ``video_id``."""
    from tables.column_state import failed_rows

    table = open_videos(connect(db), create=False)
    return {r["video_id"]: r for r in failed_rows(table, "frame_features", columns=("video_id", "uri"))}
