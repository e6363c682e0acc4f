"""A PyTorch dataset of precomputed per-frame features, straight from a warehouse table.

::

    from tables.feature_dataset import FrameFeatureDataset, pad_collate

    ds = FrameFeatureDataset(where="source = 'webvid'", split="train", columns=["caption", "scenario"])
    loader = ds.loader(batch_size=32, num_workers=4, seed=0)   # shuffled, sharded by rank
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            batch["features"]   # float32 [B, T_max, D], zero-padded
            batch["mask"]       # bool [B, T_max], True where a frame exists
            batch["lengths"]    # int64 [B]
            batch["times"]      # float32 [B, T_max], seconds (0 where padded)
            batch["caption"]    # list of B strings; numeric columns become tensors

The dataset is pinned to one table version (a backfill committing meanwhile does not change
what an epoch reads) and holds only row positions in memory. Rows are read with one Lance
``take`` per batch (``__getitems__``). The Lance dataset is opened lazily in each process and
never pickled. Lance itself is not fork-safe once a process has used it, so :meth:`loader`
starts workers with ``forkserver`` (pass ``multiprocessing_context="spawn"`` to a plain
``DataLoader`` for the same effect). Rows whose features are missing (failed or not computed) are left out and listed in
:attr:`FrameFeatureDataset.missing`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tables.filters import combine, literal
from tables.names import VIDEOS
from tables.sharding import ShardedSampler, epoch_loader
from tables.snapshot import pin_table
from udfs.errors import VwError
from udfs.frame_features import frame_features_column, times_column

_SCAN_BATCH = 8192


class FeatureDatasetError(VwError, ValueError):
    """The dataset cannot be built as asked (unknown table or column, bad filter)."""


class FrameFeatureDataset:
    """Map-style ``torch.utils.data.Dataset`` over rows of a table that have ``column`` computed.

    Args:
        db: warehouse location (default ``$VW_DB`` or ``./warehouse``).
        column: the per-frame vector column (default ``frame_features``).
        where: SQL filter on the table.
        split: shortcut for ``split = '<split>'`` (combined with ``where``).
        columns: extra columns returned with each sample (caption, scenario, labels, ...).
        table: table name (default ``videos``).
        version: table version to read (default: the latest when the dataset is built).
        with_times: also return each frame's timestamp when the table has ``<column>_times``.
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        column: str | None = None,
        where: str | None = None,
        split: str | None = None,
        columns: Sequence[str] = (),
        table: str = VIDEOS,
        version: int | None = None,
        with_times: bool = True,
    ) -> None:
        self.column = column or frame_features_column()
        self.snapshot, lance_ds = pin_table(db, table, version, [self.column, *columns], FeatureDatasetError)
        self.version = self.snapshot.version
        names = self.snapshot.names
        times = times_column(self.column)
        self.times_column = times if with_times and times in names else None
        self.columns = [c for c in dict.fromkeys(columns) if c not in ("video_id", self.column)]
        self.where = combine(where, split and f"split = {literal(split)}")
        self.positions, self.video_ids, self.missing = self._select(lance_ds)

    def _select(self, lance_ds: Any) -> tuple[np.ndarray, list[str], list[str]]:
        """Row positions with a value, their ids, and the ids of selected rows without one."""
        try:
            scan = lance_ds.to_batches(columns=["video_id", "_rowoffset"], filter=self._filter(True),
                                       batch_size=_SCAN_BATCH)
            positions, ids = [], []
            for batch in scan:
                positions.append(batch.column("_rowoffset").to_numpy())
                ids.extend(batch.column("video_id").to_pylist())
            missing = lance_ds.to_table(columns=["video_id"], filter=self._filter(False)).column(0).to_pylist()
        except Exception as err:  # noqa: BLE001 - surfaced as a clear message
            raise FeatureDatasetError(f"invalid filter {self.where!r}: {err}") from err
        pos = np.concatenate(positions).astype(np.int64) if positions else np.zeros(0, np.int64)
        return pos, ids, missing

    def _filter(self, present: bool) -> str:
        cond = f"{self.column} IS {'NOT ' if present else ''}NULL"
        return f"({self.where}) AND {cond}" if self.where else cond

    # -- reading ----------------------------------------------------------------------------

    @property
    def dataset(self) -> Any:
        """The Lance dataset at the pinned version, opened once per process."""
        return self.snapshot.dataset

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Samples for ``indices`` (dataset positions) with one read of the table."""
        import torch

        from udfs.arrays import steps_from_arrow

        idx = [int(i) for i in indices]
        for i in idx:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for a dataset of {len(self)} rows")
        cols = ["video_id", self.column, *self.columns] + ([self.times_column] if self.times_column else [])
        got = self.dataset.take(self.positions[idx].tolist(), columns=cols)
        feats = steps_from_arrow(got.column(self.column))
        times = got.column(self.times_column).to_pylist() if self.times_column else None
        meta = {c: got.column(c).to_pylist() for c in self.columns}
        samples = []
        for j, vid in enumerate(got.column("video_id").to_pylist()):
            sample: dict[str, Any] = {"video_id": vid, "features": torch.from_numpy(np.array(feats[j]))}
            if times is not None:
                sample["times"] = torch.tensor(times[j] or [], dtype=torch.float32)
            for c in self.columns:
                sample[c] = meta[c][j]
            samples.append(sample)
        return samples

    # -- loading ----------------------------------------------------------------------------

    def sampler(self, seed: int = 0, shuffle: bool = True, rank: int | None = None,
                world_size: int | None = None, even: bool = False) -> ShardedSampler:
        """A sampler shuffling by ``seed`` per epoch and sharding by rank (see :mod:`tables.sharding`)."""
        return ShardedSampler(len(self), seed, shuffle, rank, world_size, even)

    def loader(self, batch_size: int = 32, *, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
               rank: int | None = None, world_size: int | None = None, even: bool = False,
               **kwargs: Any) -> Any:
        """A ``DataLoader`` with :meth:`sampler` and :func:`pad_collate` (extra kwargs pass through)."""
        return epoch_loader(self, batch_size, self.sampler(seed, shuffle, rank, world_size, even), num_workers,
                            collate_fn=pad_collate, **kwargs)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) and not (isinstance(value, float) and math.isnan(value))


def pad_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples of different frame counts: zero padding plus a boolean mask.

    ``features`` ``[B, T_max, D]``, ``mask`` ``[B, T_max]``, ``lengths`` ``[B]`` and, when present,
    ``times`` ``[B, T_max]``; other keys become a tensor when every value is a number, else a
    list (strings, lists, None).
    """
    import torch

    if not samples:
        raise ValueError("pad_collate needs at least one sample")
    lengths = torch.tensor([len(s["features"]) for s in samples], dtype=torch.int64)
    t_max = int(lengths.max())
    dim = int(samples[0]["features"].shape[-1])
    feats = torch.zeros((len(samples), t_max, dim), dtype=torch.float32)
    mask = torch.zeros((len(samples), t_max), dtype=torch.bool)
    for i, s in enumerate(samples):
        n = len(s["features"])
        feats[i, :n] = s["features"]
        mask[i, :n] = True
    out: dict[str, Any] = {"features": feats, "mask": mask, "lengths": lengths}
    if all("times" in s for s in samples):
        times = torch.zeros((len(samples), t_max), dtype=torch.float32)
        for i, s in enumerate(samples):
            times[i, : len(s["times"])] = s["times"]
        out["times"] = times
    for key in samples[0]:
        if key in out:
            continue
        values = [s.get(key) for s in samples]
        out[key] = torch.tensor(values) if all(_is_number(v) for v in values) else values
    return out
