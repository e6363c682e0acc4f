"""Object storage that fails: ``gs://`` objects behind a proxy that answers HTTP 500 on demand.

What retries what:

* gcsfs retries HTTP 408, 429 and 500-504 (and connection errors) by itself: 6 attempts per
  request with exponential backoff (0.5-1.5 s, 1-2 s, 2-3 s, 4-5 s, 8-9 s: about 18 s in all);
* :mod:`udfs.storage` adds no retries of its own; it turns what still fails into a
  ``StorageError`` naming the URI and the HTTP status, when the object is opened and on every
  later read, so ingest failures and backfill error records say which object failed and why.

The in-process tests shorten gcsfs's backoff sleeps (the retry count and rules are unchanged);
the backfill (the shared run of :mod:`backfill_scenario`) has the real ones in the Ray workers.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tables.connection import connect, open_videos
from tables.ingest import ingest
from tests.reliability import backfill_scenario as scenario
from tests.reliability.faults import FaultProxy, shared_proxy
from tests.videogen import make_cfr_video

pytestmark = pytest.mark.reliability

BUCKET = "vw-faults"
GCSFS_ATTEMPTS = 6


@pytest.fixture(scope="module")
def proxy(gcs_emulator: str, gcs_fs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    """The shared fault proxy in front of the emulator, with a bucket of 1 s clips."""
    clip = make_cfr_video(tmp_path_factory.mktemp("gcs") / "clip.mp4", num_frames=25, width=96, height=64).path
    gcs_fs.mkdir(BUCKET)
    for name in ("ok", "flaky", "dead", "flaky_read", "dead_read"):
        gcs_fs.put(str(clip), f"{BUCKET}/{name}.mp4")
    p = shared_proxy()
    p.upstream = gcs_emulator
    p.clear()
    try:
        yield p
    finally:
        p.clear()
        p.upstream = None


@pytest.fixture()
def via_proxy(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> FaultProxy:
    """gcsfs of this process talks to the proxy, with backoff sleeps shortened 100 times."""
    import gcsfs
    import gcsfs.retry

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    sleep = asyncio.sleep
    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=lambda s: sleep(s / 100)))
    gcsfs.GCSFileSystem.clear_instance_cache()  # no instance bound to the emulator's own address
    proxy.clear()
    return proxy


def test_gcsfs_retries_5xx_by_itself(via_proxy: FaultProxy) -> None:
    import gcsfs

    fs = gcsfs.GCSFileSystem(endpoint_url=via_proxy.url, token="anon", project="test")
    via_proxy.fail("ok.mp4", times=GCSFS_ATTEMPTS - 1)
    assert fs.cat_file(f"{BUCKET}/ok.mp4", start=0, end=8)[4:8] == b"ftyp"
    assert via_proxy.requests["ok.mp4"] == GCSFS_ATTEMPTS
    via_proxy.clear()
    via_proxy.fail("ok.mp4", times=None)
    with pytest.raises(Exception, match="500"):
        fs.cat_file(f"{BUCKET}/ok.mp4", start=0, end=8)
    assert via_proxy.requests["ok.mp4"] == GCSFS_ATTEMPTS  # gives up after its attempts
    via_proxy.clear()
    via_proxy.fail("ok.mp4", times=1, status=404)
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{BUCKET}/ok.mp4", start=0, end=8)
    assert via_proxy.requests["ok.mp4"] == 1  # a 404 is final


def test_ingest_probe_retries_then_reports(via_proxy: FaultProxy, tmp_path: Path) -> None:
    table = open_videos(connect(str(tmp_path / "wh")))
    via_proxy.fail("flaky.mp4", times=3)
    via_proxy.fail("dead.mp4", times=None)
    via_proxy.fail("flaky_read.mp4", times=2, media_only=True)
    via_proxy.fail("dead_read.mp4", times=None, media_only=True)
    uris = [f"gs://{BUCKET}/{n}.mp4" for n in ("ok", "flaky", "dead", "flaky_read", "dead_read")]
    report = ingest(table, uris)
    reasons = {f.input: f.reason for f in report.failures}
    assert set(reasons) == {uris[2], uris[4]}
    assert reasons[uris[2]] == "cannot read: HTTP 500 from the storage service (injected backend error)"
    assert reasons[uris[4]].startswith(f"{uris[4]}: reading failed: HTTP 500 from the storage service")
    rows = {r["video_id"]: r for r in table.to_arrow().to_pylist()}
    assert set(rows) == {"ok", "flaky", "flaky_read"}
    assert {r["num_frames"] for r in rows.values()} == {25}  # probed for real, through the retries
    assert via_proxy.requests["dead.mp4"] >= GCSFS_ATTEMPTS

    # the outage ends: a re-run adds the two that failed, touches nothing else, duplicates nothing
    via_proxy.clear()
    again = ingest(table, uris)
    assert not again.failures and (again.inserted, again.updated) == (2, 3)
    assert sorted(table.to_arrow().column("video_id").to_pylist()) == sorted(
        ["ok", "flaky", "dead", "flaky_read", "dead_read"])


def test_decode_errors_name_the_object(via_proxy: FaultProxy) -> None:
    from udfs.decode import SamplingPlan, decode
    from udfs.storage import StorageError

    via_proxy.fail("flaky_read.mp4", times=2, media_only=True)
    frames = decode(f"gs://{BUCKET}/flaky_read.mp4", SamplingPlan.uniform(4))
    assert tuple(frames.data.shape[:2]) == (4, 3)
    for name, media_only, doing in (("dead.mp4", False, "opening"), ("dead_read.mp4", True, "reading")):
        via_proxy.fail(name, times=None, media_only=media_only)
        with pytest.raises(StorageError) as info:
            decode(f"gs://{BUCKET}/{name}", SamplingPlan.uniform(4))
        assert str(info.value) == (f"gs://{BUCKET}/{name}: {doing} failed: "
                                   "HTTP 500 from the storage service (injected backend error)")


@pytest.fixture(scope="module")
def backfilled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared backfill (see :mod:`backfill_scenario`): its ``gs://`` rows are
    ``bf_ok`` (fine), ``bf_flaky`` (reads fail twice with HTTP 500), ``bf_dead`` (always 500)."""
    result = scenario.run_once(request, tmp_path_factory)
    if not result["workers_use_proxy"]:
        pytest.skip("the shared Ray session was started before these tests could point its workers at the "
                    "fault proxy (run tests/reliability before the other integration tests)")
    return result


@pytest.mark.integration
def test_backfill_retries_and_records_what_keeps_failing(backfilled: dict) -> None:
    values = scenario.column_values(backfilled["db"])
    assert values["bf_ok"] is not None and values["bf_ok"] == values["good1"]  # same clip, same features
    assert values["bf_flaky"] == values["bf_ok"]  # retried by gcsfs in the worker, then computed
    assert values["bf_dead"] is None
    err = scenario.errors_by_id(backfilled["db"])["bf_dead"]
    assert err["error_type"] == "StorageError"
    assert err["error"] == (f"gs://{scenario.BUCKET}/bf_dead.mp4: reading failed: "
                            "HTTP 500 from the storage service (injected backend error)")
    assert backfilled["requests"]["bf_flaky.mp4"] >= 3
    assert backfilled["requests"]["bf_dead.mp4"] >= GCSFS_ATTEMPTS
    status = backfilled["status"].out
    assert "StorageError" in status and "bf_dead.mp4" in status
