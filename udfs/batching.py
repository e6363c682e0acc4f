"""What every model-backed UDF shares: device choice, OOM-adaptive batches, an outcome cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_adaptive(items: Any, batch_size: int, fn: Callable[[Any], np.ndarray]) -> list[np.ndarray]:
    """``fn`` over consecutive slices of ``items`` (anything sliceable with ``len``).

    On CUDA out-of-memory the slice size is halved and the slice retried; only a failure at
    size 1 propagates. Returns the per-slice outputs in order.
    """
    import torch

    results: list[np.ndarray] = []
    i = 0
    bs = max(1, batch_size)
    while i < len(items):
        chunk = items[i : i + bs]
        try:
            results.append(fn(chunk))
        except torch.cuda.OutOfMemoryError:
            if bs == 1:
                raise
            torch.cuda.empty_cache()
            bs = max(1, bs // 2)
            continue
        i += len(chunk)
    return results


class OutcomeCache:
    """Bounded (LRU) map from a row key to its result or its exception.

    geneva retries a failed batch by bisecting it; remembering each row's outcome means no row
    is decoded or run through a model twice.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __getitem__(self, key: Hashable) -> Any:
        return self._items[key]

    def put(self, key: Hashable, outcome: Any) -> None:
        """Remember ``outcome`` (a result or an exception) for ``key``."""
        self._items[key] = outcome
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        """Forget ``key`` (after its result was returned)."""
        self._items.pop(key, None)

    def raise_first_error(self, keys: list[Hashable]) -> None:
        """Raise the exception stored for the first of ``keys`` that failed, if any."""
        for key in keys:
            outcome = self._items[key]
            if isinstance(outcome, BaseException):
                raise outcome
