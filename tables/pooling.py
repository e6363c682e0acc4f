"""Query-time pooling of per-step (or per-frame) vectors, applied identically to queries and candidates.

A per-step column holds ``[T, D]`` per video (V-JEPA 2 time steps, or frames at 1 fps). Search
compares videos through one of these strategies:

``mean``
    Mean over the steps, L2-normalised. The same vector as the stored ``<column>_pooled``
    column, so on ``video_embedding`` this strategy is a plain (ANN-indexable) vector search.
``max``
    Element-wise maximum over the steps, L2-normalised.
``centre`` / ``centre:SIGMA``
    Gaussian weights over time centred on the middle of the video,
    ``w_t = exp(-0.5 * ((t - (T - 1) / 2) / (SIGMA * T)) ** 2)`` for step ``t = 0 .. T-1``;
    ``SIGMA`` is a fraction of the video's length (default 0.25: a quarter of the steps). The
    weighted mean is L2-normalised.
``segment:A-B``
    Mean over the steps whose centre ``(t + 0.5) / T`` lies in ``[A, B)`` (``B = 1`` includes the
    last step), L2-normalised: ``segment:0-0.33`` is the first third of the video. When no step
    centre falls in the range (a very short video), the step nearest to the range is used.
``multivector``
    No pooling: late interaction over the steps. The score of a candidate ``d`` for a query
    ``q`` is the mean over query steps of the best cosine similarity among the candidate's
    steps, ``(1 / |q|) * sum_i max_j cos(q_i, d_j)`` (MaxSim, as LanceDB's multivector search).

Every score is a cosine similarity in ``[-1, 1]`` and ``distance = 1 - score``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from udfs.errors import VwError

DEFAULT_SIGMA = 0.25
STRATEGIES = ("mean", "max", "centre", "segment:A-B", "multivector")
_SEGMENT = re.compile(r"^segment:\s*([0-9]*\.?[0-9]+)\s*-\s*([0-9]*\.?[0-9]+)$")
_CENTRE = re.compile(r"^cent(?:re|er)(?::\s*([0-9]*\.?[0-9]+))?$")


class PoolingError(VwError, ValueError):
    """A pooling specification that cannot be used (names the specification and the problem)."""


@dataclass(frozen=True)
class Pooling:
    """A parsed pooling strategy (see the module documentation)."""

    kind: str  # mean | max | centre | segment | multivector
    sigma: float = DEFAULT_SIGMA
    start: float = 0.0
    end: float = 1.0

    @property
    def name(self) -> str:
        """The canonical specification string (``segment:0-0.33``, ``centre:0.25``, ...)."""
        if self.kind == "centre":
            return f"centre:{self.sigma:g}"
        if self.kind == "segment":
            return f"segment:{self.start:g}-{self.end:g}"
        return self.kind

    @property
    def is_multivector(self) -> bool:
        """True for late interaction (no pooled vector)."""
        return self.kind == "multivector"

    def weights(self, steps: int) -> np.ndarray:
        """Per-step weights (summing to 1) of the linear strategies ``mean``, ``centre``, ``segment``."""
        if steps < 1:
            raise PoolingError("cannot pool a video with no steps")
        t = np.arange(steps, dtype=np.float64)
        if self.kind == "mean":
            w = np.ones(steps)
        elif self.kind == "centre":
            w = np.exp(-0.5 * ((t - (steps - 1) / 2.0) / (self.sigma * steps)) ** 2)
        elif self.kind == "segment":
            centres = (t + 0.5) / steps
            w = ((centres >= self.start) & ((centres < self.end) | (self.end >= 1.0))).astype(np.float64)
            if not w.any():
                middle = (self.start + self.end) / 2.0
                w[int(np.argmin(np.abs(centres - middle)))] = 1.0
        else:
            raise PoolingError(f"pooling {self.name!r} has no per-step weights")
        return w / w.sum()

    def pool(self, steps: np.ndarray) -> np.ndarray:
        """``[T, D] -> [D]`` float32, L2-normalised (a zero vector stays zero)."""
        x = np.asarray(steps, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise PoolingError(f"pooling {self.name!r} needs a [T, D] array with T >= 1, got shape {x.shape}")
        if self.kind == "multivector":
            raise PoolingError("multivector search does not pool: compare the steps with maxsim()")
        v = x.max(axis=0) if self.kind == "max" else self.weights(len(x)).astype(np.float32) @ x
        return l2_normalise(v)

    def pool_many(self, rows: list[np.ndarray]) -> np.ndarray:
        """``[N, D]`` pooled vectors of ``N`` per-step arrays (lengths may differ)."""
        if not rows:
            return np.zeros((0, 0), np.float32)
        return np.stack([self.pool(r) for r in rows])


def parse_pooling(spec: str | Pooling | None) -> Pooling:
    """A :class:`Pooling` from ``mean``, ``max``, ``centre[:SIGMA]``, ``segment:A-B`` or ``multivector``."""
    if isinstance(spec, Pooling):
        return spec
    text = (spec or "mean").strip().lower()
    if text in ("mean", "max", "multivector"):
        return Pooling(text)
    if m := _CENTRE.match(text):
        sigma = float(m.group(1)) if m.group(1) else DEFAULT_SIGMA
        if not sigma > 0:
            raise PoolingError(f"pooling {spec!r}: sigma must be > 0 (a fraction of the video's length)")
        return Pooling("centre", sigma=sigma)
    if m := _SEGMENT.match(text):
        start, end = float(m.group(1)), float(m.group(2))
        if not 0.0 <= start < end <= 1.0:
            raise PoolingError(f"pooling {spec!r}: the segment must be a fraction range 0 <= A < B <= 1")
        return Pooling("segment", start=start, end=end)
    raise PoolingError(f"unknown pooling {spec!r}: use one of {', '.join(STRATEGIES)} (e.g. segment:0-0.33)")


def l2_normalise(v: np.ndarray) -> np.ndarray:
    """``v / ||v||`` along the last axis (float32; zero vectors stay zero)."""
    v = np.asarray(v, dtype=np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


def maxsim(query: np.ndarray, candidate: np.ndarray) -> float:
    """Late-interaction score: mean over query steps of the best cosine similarity with a candidate step."""
    q = l2_normalise(np.asarray(query, np.float32).reshape(-1, np.shape(query)[-1]))
    d = l2_normalise(np.asarray(candidate, np.float32))
    if len(q) == 0 or len(d) == 0:
        raise PoolingError("multivector scoring needs at least one step on both sides")
    return float((q @ d.T).max(axis=1).mean())
