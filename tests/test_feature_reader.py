"""The features dataset and the .npy export on a table written directly (no Ray)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from jobs.export_features import ExportError, export_features, safe_name
from tables.connection import connect
from tables.feature_dataset import FeatureDatasetError, FrameFeatureDataset, pad_collate
from tables.sharding import ShardedSampler, epoch_order, shard
from udfs.arrays import steps_to_arrow
from udfs.atomic_files import atomic_write

DIM = 4
N = 37


def _features(i: int) -> np.ndarray | None:
    if i % 9 == 4:
        return None  # not computed / failed
    rng = np.random.default_rng(i)
    return rng.standard_normal((1 + i % 5, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("reader-db"))
    feats = [_features(i) for i in range(N)]
    times = [None if f is None else [float(k) for k in range(len(f))] for f in feats]
    table = pa.table({
        "video_id": [f"v{i:03d}" for i in range(N)],
        "uri": [f"/videos/v{i:03d}.mp4" for i in range(N)],
        "split": ["train" if i % 4 else "validation" for i in range(N)],
        "caption": [f"caption {i}" for i in range(N)],
        "label": [i % 3 for i in range(N)],
        "frame_features": steps_to_arrow(feats, DIM),
        "frame_features_times": pa.array(times, pa.list_(pa.float64())),
    })
    connect(root).create_table("videos", data=table)
    return root


def _ids(loader) -> list[str]:
    return [vid for batch in loader for vid in batch["video_id"]]


def test_every_row_once_per_epoch_across_ranks_and_workers(db: str) -> None:
    ds = FrameFeatureDataset(db, split="train", columns=["caption", "label"])
    expected = {f"v{i:03d}" for i in range(N) if i % 4 and _features(i) is not None}
    assert set(ds.video_ids) == expected
    assert set(ds.missing) == {f"v{i:03d}" for i in range(N) if i % 4 and _features(i) is None}
    seen: list[str] = []
    per_rank = []
    for rank in range(2):
        loader = ds.loader(batch_size=3, num_workers=2, seed=7, rank=rank, world_size=2)
        loader.set_epoch(1)  # as ClipLoader.set_epoch
        ids = _ids(loader)
        per_rank.append(ids)
        seen.extend(ids)
    assert sorted(seen) == sorted(expected)  # exactly once: no repeats, nothing missing
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1


def test_shuffle_is_seeded_per_epoch() -> None:
    assert np.array_equal(epoch_order(50, 3, 0), epoch_order(50, 3, 0))
    assert not np.array_equal(epoch_order(50, 3, 0), epoch_order(50, 3, 1))
    assert not np.array_equal(epoch_order(50, 3, 0), epoch_order(50, 4, 0))
    assert sorted(epoch_order(50, 3, 2)) == list(range(50))
    padded = [shard(np.arange(5), r, 2, even=True) for r in range(2)]
    assert [len(p) for p in padded] == [3, 3]
    sampler = ShardedSampler(10, seed=1, rank=1, world_size=3)
    assert len(sampler) == 3 and list(sampler) == epoch_order(10, 1, 0)[1::3].tolist()
    with pytest.raises(ValueError, match="rank 3 of world size 2"):
        ShardedSampler(10, rank=3, world_size=2)


def test_samples_padding_and_mask(db: str) -> None:
    ds = FrameFeatureDataset(db, where="label = 1", columns=["caption", "label"])
    assert all(int(v[1:]) % 3 == 1 for v in ds.video_ids)
    samples = ds.__getitems__(list(range(len(ds))))
    for s in samples:
        i = int(s["video_id"][1:])
        np.testing.assert_array_equal(s["features"].numpy(), _features(i))
        assert s["caption"] == f"caption {i}" and s["label"] == 1
        assert s["times"].tolist() == list(range(len(s["features"])))
    batch = pad_collate(samples)
    lengths = [len(s["features"]) for s in samples]
    assert batch["features"].shape == (len(samples), max(lengths), DIM)
    assert batch["lengths"].tolist() == lengths
    assert batch["mask"].sum(1).tolist() == lengths
    for j, s in enumerate(samples):
        n = lengths[j]
        assert torch.equal(batch["features"][j, :n], s["features"])
        assert not batch["features"][j, n:].any() and not batch["mask"][j, n:].any()
    assert batch["label"].dtype == torch.int64 and batch["caption"][0].startswith("caption")


def test_dataset_pickles_without_an_open_handle(db: str) -> None:
    import pickle

    ds = FrameFeatureDataset(db)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.snapshot._ds is None and clone[0]["video_id"] == ds[0]["video_id"]


def test_clear_errors(db: str) -> None:
    with pytest.raises(FeatureDatasetError, match="no column.*'scenario'"):
        FrameFeatureDataset(db, columns=["scenario"])
    with pytest.raises(FeatureDatasetError, match="invalid filter"):
        FrameFeatureDataset(db, where="nonsense ===")
    with pytest.raises(IndexError):
        FrameFeatureDataset(db)[10_000]


def test_export_round_trip(db: str, tmp_path: Path) -> None:
    table = connect(db).open_table("videos")
    report = export_features(table, "frame_features", tmp_path, where="split = 'train'")
    expected = {i for i in range(N) if i % 4}
    good = {i for i in expected if _features(i) is not None}
    assert report.written == len(good)
    for i in good:
        np.testing.assert_array_equal(np.load(tmp_path / f"v{i:03d}.npy"), _features(i))
    failed = json.loads((tmp_path / "failed_videos.json").read_text())
    assert {f["video_id"] for f in failed} == {f"v{i:03d}" for i in expected - good}
    assert all(f["error_type"] == "NotComputed" for f in failed)
    index = json.loads((tmp_path / "index.json").read_text())
    assert len(index["files"]) == len(good)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    with pytest.raises(ExportError, match="not a per-frame vector column"):
        export_features(table, "caption", tmp_path)
    with pytest.raises(ExportError, match="invalid --where"):
        export_features(table, "frame_features", tmp_path, where="split ==== 1")


def test_safe_names_never_escape_and_never_collide() -> None:
    hostile = ["../x", "a/b", "..", ".", "", "ünïcödé", "%2E%2E", "a%2Fb", "con", "x" * 400, "x" * 401,
               "a\\b", "a\x00b", " lead", "-n", "1008593641"]
    names = [safe_name(v) for v in hostile]
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".") and len(name.encode()) <= 200
    assert safe_name("1008593641") == "1008593641"


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "v.npy"
    atomic_write(target, b"old")

    def full_disk(fd: int, mode: str):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["v.npy"]
