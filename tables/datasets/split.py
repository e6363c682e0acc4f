"""Deterministic, append-stable split assignment and ``--limit`` subsets.

Every key (a video id, or the source video a clip was cut from) gets a fixed number in
``[0, 1)``: the first 8 bytes of ``sha256("<purpose>:<seed>:<key>")`` divided by ``2**64``.
Decisions compare that number with a threshold or rank keys by it, so

* a key's split depends only on the seed, the key, its dataset split and the ratio; rows
  added later never move earlier rows to another split;
* the validation share is ``validation_ratio`` in expectation (each train key is drawn
  independently), not an exact count: exact counts would need a permutation of the whole
  set, which changes when rows are added.

Splits are ``train``, ``validation`` and ``test``. A dataset's own ``validation`` / ``test``
rows keep their split; ``train`` rows, and rows of datasets without splits, are ``train``
except the share ``validation_ratio`` that goes to ``validation``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from udfs.errors import SettingError

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
SPLITS = (TRAIN, VALIDATION, TEST)


def unit_hash(key: str, seed: int, purpose: str) -> float:
    """A number in ``[0, 1)`` fixed by ``purpose``, ``seed`` and ``key``."""
    digest = hashlib.sha256(f"{purpose}:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_ratio(validation_ratio: float) -> float:
    """``validation_ratio`` validated: a number in ``[0, 1)``."""
    ratio = float(validation_ratio)
    if not 0.0 <= ratio < 1.0:
        raise SettingError(f"--validation-ratio must be in [0, 1), got {validation_ratio}")
    return ratio


def assign_split(key: str, dataset_split: str | None, validation_ratio: float, seed: int) -> str:
    """The split of ``key``: the dataset's own validation/test split, else train or validation."""
    if dataset_split is not None and dataset_split not in SPLITS:
        raise SettingError(f"unknown split {dataset_split!r}: expected one of {', '.join(SPLITS)}")
    if dataset_split in (VALIDATION, TEST):
        return dataset_split
    return VALIDATION if unit_hash(key, seed, "split") < check_ratio(validation_ratio) else TRAIN


def limit_keys(keys: Iterable[str], limit: int | None, seed: int) -> set[str]:
    """The ``limit`` keys with the smallest hash for ``seed`` (all keys when ``limit`` is None)."""
    unique = set(keys)
    if limit is None:
        return unique
    if limit < 1:
        raise SettingError(f"--limit must be a positive number, got {limit}")
    ranked = sorted(unique, key=lambda k: (unit_hash(k, seed, "limit"), k))
    return set(ranked[:limit])
