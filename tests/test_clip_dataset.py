"""The streaming clip reader: sharding, seeded order, resume, sources, the byte cache, failures."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from tables.clip_cache import ByteCache
from tables.clip_dataset import ClipDataset, ClipDatasetError, buffer_shuffle
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tables.schema import VIDEOS_SCHEMA
from tables.video_blobs import VIDEO_BLOB_COLUMN
from tests.videogen import frame_index_of, make_broken_files, make_cfr_video

N_GOOD = 12
FPS = 10
FRAMES = 30  # 3 s per video
BUCKET = "vw-clip-bucket"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("clip-media")
    good = [make_cfr_video(root / f"clip{i:02d}.mp4", num_frames=FRAMES + i, fps=FPS, width=64, height=48,
                           gop=10).path for i in range(N_GOOD)]
    broken = make_broken_files(root / "broken", good[0])
    return {"good": good, "broken": [broken["random"], broken["truncated"]]}


def _add_broken_rows(table, paths: list[Path]) -> None:
    rows = [{"video_id": p.stem, "uri": str(p), "split": "train", "duration_s": 3.0} for p in paths]
    table.add(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA))


@pytest.fixture(scope="module")
def local_db(tmp_path_factory: pytest.TempPathFactory, media) -> str:
    root = str(tmp_path_factory.mktemp("clip-db"))
    table = open_videos(connect(root))
    report = ingest(table, [str(p) for p in media["good"]], split="train")
    assert report.failures == [] and report.inserted == N_GOOD
    _add_broken_rows(table, media["broken"])
    return root


GOOD_IDS = {f"clip{i:02d}" for i in range(N_GOOD)}
BROKEN_IDS = {"random", "truncated"}


def _frame_indices(frames: torch.Tensor) -> list[int]:
    return [frame_index_of(f) for f in frames]


def test_exactly_once_per_epoch_across_ranks_and_workers(local_db: str) -> None:
    seen: list[str] = []
    failed: list[str] = []
    for rank in range(2):
        ds = ClipDataset(local_db, split="train", columns=["caption", "duration_s"], num_frames=2, seed=3,
                         rank=rank, world_size=2)
        loader = ds.loader(batch_size=2, num_workers=2)
        loader.set_epoch(1)
        for batch in loader:
            assert batch["frames"].shape[1:] == (2, 3, 48, 64)
            assert batch["duration_s"].is_floating_point() and isinstance(batch["caption"], list)
            seen.extend(batch["video_id"])
        failed.extend(f.video_id for f in loader.failures)
        counts = loader.failure_counts()
        assert sum(counts.values()) == len(loader.failures) and set(counts) <= {0, 1}
    assert sorted(seen) == sorted(GOOD_IDS)  # each good row once, across 2 ranks x 2 workers
    assert sorted(failed) == sorted(BROKEN_IDS)  # each broken row skipped once and counted


def _epoch_ids(ds: ClipDataset, epoch: int) -> list[str]:
    ds.set_epoch(epoch)
    return [s["video_id"] for s in ds]


def test_order_is_seeded_per_epoch(local_db: str) -> None:
    ds = ClipDataset(local_db, where="video_id LIKE 'clip%'", num_frames=1, seed=5, shuffle_buffer=4)
    first = _epoch_ids(ds, 0)
    assert sorted(first) == sorted(GOOD_IDS)
    assert _epoch_ids(ds, 0) == first
    assert _epoch_ids(ds, 1) != first
    other = ClipDataset(local_db, where="video_id LIKE 'clip%'", num_frames=1, seed=6, shuffle_buffer=4)
    assert _epoch_ids(other, 0) != first
    rng = np.random.default_rng(0)
    assert sorted(buffer_shuffle(np.arange(50), 8, rng).tolist()) == list(range(50))


def _run(ds: ClipDataset, workers: int, stop_after: int | None = None, state: dict | None = None):
    loader = ds.loader(batch_size=2, num_workers=workers)
    if state is not None:
        loader.load_state_dict(state)
    else:
        loader.set_epoch(2)
    out = []
    for i, batch in enumerate(loader):
        for j, vid in enumerate(batch["video_id"]):
            out.append((vid, batch["timestamps"][j].tolist()))
        if stop_after is not None and i + 1 == stop_after:
            return out, loader.state_dict()
    return out, loader.state_dict()


def test_resume_reproduces_the_rest_of_the_epoch(local_db: str) -> None:
    def make() -> ClipDataset:
        return ClipDataset(local_db, split="train", clip_seconds=1.0, clip_fps=5, seed=11, shuffle_buffer=3)

    full, _ = _run(make(), workers=2)
    assert sorted(v for v, _ in full) == sorted(GOOD_IDS)
    assert all(len(ts) == 5 for _, ts in full)
    head, state = _run(make(), workers=2, stop_after=2)
    assert len(head) == 4 and state["epoch"] == 2
    tail, end = _run(make(), workers=2, state=state)
    assert head + tail == full  # no row repeated or skipped, same random windows, same order
    assert sorted(f["video_id"] for f in end["failures"]) == sorted(BROKEN_IDS)
    with pytest.raises(ClipDatasetError, match="num_workers"):
        make().loader(num_workers=1).load_state_dict(state)


@pytest.fixture(scope="module")
def gcs_db(tmp_path_factory: pytest.TempPathFactory, media, gcs_fs) -> str:
    gcs_fs.mkdir(BUCKET)
    for p in media["good"]:
        gcs_fs.put(str(p), f"{BUCKET}/videos/{p.name}")
    root = str(tmp_path_factory.mktemp("clip-gcs-db"))
    report = ingest(open_videos(connect(root)), [f"gs://{BUCKET}/videos/"])
    assert report.failures == [] and report.inserted == N_GOOD
    return root


@pytest.fixture(scope="module")
def blob_db(tmp_path_factory: pytest.TempPathFactory, media) -> str:
    root = str(tmp_path_factory.mktemp("clip-blob-db"))
    table = open_videos(connect(root))
    report = ingest(table, [str(p) for p in media["good"]], store_bytes=True)
    assert report.failures == []
    return root


def _frames_by_id(ds: ClipDataset) -> dict[str, tuple[list[int], list[float]]]:
    return {s["video_id"]: (_frame_indices(s["frames"]), s["timestamps"].tolist()) for s in ds}


def test_gcs_and_blob_column_give_the_frames_of_local_files(local_db: str, gcs_db: str, blob_db: str,
                                                            tmp_path: Path) -> None:
    kwargs = {"num_frames": 4, "where": "video_id LIKE 'clip%'", "shuffle": False}
    local = _frames_by_id(ClipDataset(local_db, **kwargs))
    assert len(local) == N_GOOD
    assert local["clip00"][0] == [3, 11, 18, 26]  # centres of 4 equal parts of 30 frames
    remote = ClipDataset(gcs_db, **kwargs, cache_dir=str(tmp_path / "cache"), cache_bytes=10 * 2**20)
    assert _frames_by_id(remote) == local
    assert len(os.listdir(tmp_path / "cache")) == N_GOOD + 1  # every object cached, plus the lock file
    streamed = ClipDataset(gcs_db, **kwargs, cache_bytes=0)
    assert _frames_by_id(streamed) == local
    blob = ClipDataset(blob_db, **kwargs, source="blob")
    assert blob.from_blob.all()
    assert _frames_by_id(blob) == local


def test_cache_never_exceeds_its_limit(gcs_db: str, media, tmp_path: Path) -> None:
    sizes = [p.stat().st_size for p in media["good"]]
    limit = int(max(sizes) * 2.5)  # room for two objects, out of twelve
    cache_dir = tmp_path / "cache"
    peak = [0]
    stop = threading.Event()

    def size(entry: os.DirEntry[str]) -> int:
        try:
            return entry.stat().st_size if entry.is_file() else 0
        except FileNotFoundError:  # a part file renamed (or an object evicted) since the scan listed it
            return 0

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(size(e) for e in os.scandir(cache_dir)))
            time.sleep(0.002)

    ds = ClipDataset(gcs_db, num_frames=2, cache_dir=str(cache_dir), cache_bytes=limit, prefetch=4,
                     prefetch_threads=3)
    assert ByteCache(cache_dir, limit).used_bytes() == 0
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = [s["video_id"] for s in ds]
    finally:
        stop.set()
        watcher.join()
    assert sorted(ids) == sorted(GOOD_IDS)
    assert sum(sizes) > limit and 0 < peak[0] <= limit
    assert ByteCache(cache_dir, limit).used_bytes() <= limit
    # An object larger than the whole cache is streamed, not cached.
    tiny = tmp_path / "tiny"
    ds_small = ClipDataset(gcs_db, num_frames=2, cache_dir=str(tiny), cache_bytes=min(sizes) // 2)
    assert sorted(s["video_id"] for s in ds_small) == sorted(GOOD_IDS)
    assert ByteCache(tiny, 1).used_bytes() == 0


def test_broken_videos_skipped_and_counted_in_process(local_db: str) -> None:
    ds = ClipDataset(local_db, num_frames=2, seed=1)
    ids = [s["video_id"] for s in ds]
    assert sorted(ids) == sorted(GOOD_IDS)
    assert sorted(f.video_id for f in ds.failures) == sorted(BROKEN_IDS)
    assert all(f.error and f.worker == 0 for f in ds.failures)


def test_store_bytes_keeps_replaces_and_clears(tmp_path: Path, media) -> None:
    table = open_videos(connect(str(tmp_path / "db")))
    src = tmp_path / "v.mp4"
    src.write_bytes(media["good"][0].read_bytes())
    ingest(table, [str(src)])
    assert VIDEO_BLOB_COLUMN not in table.schema.names  # only added when bytes are stored
    ingest(table, [str(src)], store_bytes=True)

    def stored() -> bytes | None:
        blob = table.to_lance().take_blobs(VIDEO_BLOB_COLUMN, indices=[0])[0]
        return None if blob is None else blob.read()

    assert stored() == src.read_bytes()
    ingest(table, [str(src)])  # same file: bytes kept
    assert stored() == src.read_bytes()
    src.write_bytes(media["good"][1].read_bytes())
    ingest(table, [str(src)], store_bytes=True)  # replaced
    assert stored() == media["good"][1].read_bytes()
    src.write_bytes(media["good"][2].read_bytes())
    ingest(table, [str(src)])  # the file changed without --store-bytes: stale bytes cleared
    assert stored() is None
    with pytest.raises(ClipDatasetError, match="store no bytes"):
        ClipDataset(str(tmp_path / "db"), num_frames=1, source="blob")


def test_cli_ingest_store_bytes(tmp_path: Path, media) -> None:
    from typer.testing import CliRunner

    from jobs.cli import app

    db = str(tmp_path / "db")
    result = CliRunner().invoke(app, ["ingest", "--store-bytes", "--db", db, str(media["good"][3])])
    assert result.exit_code == 0, result.output
    ds = ClipDataset(db, num_frames=3, source="blob")
    (sample,) = list(ds)
    assert sample["video_id"] == "clip03" and _frame_indices(sample["frames"]) == [5, 16, 27]
    result = CliRunner().invoke(app, ["ingest", "--store-bytes", "--format", "msrvtt", "--db", db, "x.json"])
    assert result.exit_code == 2
