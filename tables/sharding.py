"""Epoch order and sharding shared by the training readers.

One rule everywhere: the epoch's order is a permutation of ``range(n)`` drawn from
``(seed, epoch)`` (or the identity without shuffling); rank ``r`` of ``w`` takes positions
``r, r + w, r + 2w, ...`` of it. Every row is read exactly once per epoch across all ranks;
ranks differ by at most one row (``even=True`` pads the short ones by wrapping around, as
``DistributedSampler`` does, for collectives that need equal step counts).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from udfs.errors import SettingError


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments, else torch.distributed when initialised, else the
    ``RANK`` / ``WORLD_SIZE`` environment variables, else ``(0, 1)``. Validated."""
    if rank is None or world_size is None:
        r, w = 0, 1
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                r, w = dist.get_rank(), dist.get_world_size()
            elif "WORLD_SIZE" in os.environ:
                r, w = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
        except ImportError:
            pass
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise SettingError(f"invalid sharding: rank {rank} of world size {world_size}")
    return rank, world_size


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of ``range(n)`` for ``epoch``: a seeded permutation, or the identity."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    return rng.permutation(n).astype(np.int64)


def shard(order: np.ndarray, rank: int, world_size: int, even: bool = False) -> np.ndarray:
    """Rank ``rank``'s part of ``order`` (strided); ``even`` pads by wrapping to equal lengths."""
    if even and len(order) % world_size:
        pad = world_size - len(order) % world_size
        order = np.concatenate([order, np.resize(order, pad)]) if len(order) else order
    return order[rank::world_size]


class ShardedSampler:
    """A ``torch.utils.data.Sampler`` of row positions: seeded per-epoch shuffle, rank sharding.

    DataLoader workers split the sampled indices among themselves (map-style datasets), so
    every row is read once per epoch across ranks and workers. Call :meth:`set_epoch` before
    each epoch (a different order per epoch, the same order for the same seed and epoch).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None, even: bool = False) -> None:
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world_size = dist_info(rank, world_size)
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """This rank's row positions for the current epoch, in order."""
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle)
        return shard(order, self.rank, self.world_size, self.even)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices())


_EPOCH_LOADER: Any = None


def epoch_loader_class() -> Any:
    """``DataLoader`` with ``set_epoch`` (as :class:`~tables.clip_dataset.ClipLoader` has), made on first
    use so that importing a reader does not import torch."""
    global _EPOCH_LOADER
    if _EPOCH_LOADER is None:
        from torch.utils.data import DataLoader

        class EpochLoader(DataLoader):
            """A ``DataLoader`` over a :class:`ShardedSampler`; ``set_epoch`` selects the epoch's order."""

            def set_epoch(self, epoch: int) -> None:
                """Shuffle (and shard) for ``epoch``: the same order for a seed and epoch on every run."""
                self.sampler.set_epoch(epoch)

        _EPOCH_LOADER = EpochLoader
    return _EPOCH_LOADER


def epoch_loader(dataset: Any, batch_size: int, sampler: ShardedSampler, num_workers: int = 0,
                 **kwargs: Any) -> Any:
    """A :func:`epoch_loader_class` loader over ``dataset`` with ``sampler``. With workers, they persist
    across epochs and start with ``forkserver``: Lance is not fork-safe once used in the parent."""
    if num_workers > 0:
        kwargs.setdefault("persistent_workers", True)
        kwargs.setdefault("multiprocessing_context", "forkserver")
    return epoch_loader_class()(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, **kwargs)
