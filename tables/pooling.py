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
from collections.abc import Iterator
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
        return l2_normalise(self._pool_raw(x))

    def pool_rows(self, values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[N, D]`` pooled vectors of ``N`` rows stored flat (row ``i`` is
        ``values[offsets[i]:offsets[i + 1]]``, as in an Arrow list column), in whole-array operations
        over the rows of each length: the same vectors as :meth:`pool` row by row. A row with no
        steps gives a zero vector."""
        if self.kind == "multivector":
            raise PoolingError("multivector search does not pool: compare the steps with maxsim_rows()")
        values = np.asarray(values, np.float32)
        out = np.zeros((len(offsets) - 1, values.shape[-1]), np.float32)
        for rows, steps in _length_groups(values, offsets, gather_max=GATHER_MAX_FLOATS):
            if steps is None:  # rows too large to gather cheaply: one by one, on views
                for r in rows:
                    out[r] = self._pool_raw(values[offsets[r] : offsets[r + 1]])
            elif self.kind == "max":
                out[rows] = steps.max(axis=1)
            else:
                out[rows] = self.weights(steps.shape[1]).astype(np.float32) @ steps
        return l2_normalise(out)

    def _pool_raw(self, x: np.ndarray) -> np.ndarray:
        return x.max(axis=0) if self.kind == "max" else self.weights(len(x)).astype(np.float32) @ x


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


#: Floats per row up to which rows of one step count are gathered into one array (a copy) for
#: whole-array pooling; larger rows of mixed counts are pooled one by one on views, where the copy
#: would cost more than the per-row call (measured: 2,000 rows of 10-120 steps x 384-d pool 1.8x
#: slower gathered, 10,000 rows of 2 x 64-d 6x faster).
GATHER_MAX_FLOATS = 8192


def _length_groups(values: np.ndarray, offsets: np.ndarray, gather_max: int | None = None
                   ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """For each step count of the rows stored flat: those rows' indices and their ``[m, T, ...]`` steps:
    a view when every row has the same count and the rows are contiguous, else gathered, or None
    when a row holds more than ``gather_max`` values (the caller takes those rows one by one)."""
    offsets = np.asarray(offsets, np.int64)
    lengths = np.diff(offsets)
    counts = np.unique(lengths[lengths > 0])
    width = int(np.prod(values.shape[1:]))
    if len(counts) == 1 and (lengths > 0).all():
        t = int(counts[0])
        yield np.arange(len(lengths)), values[offsets[0] : offsets[-1]].reshape(len(lengths), t, *values.shape[1:])
        return
    for t in counts:
        rows = np.nonzero(lengths == t)[0]
        if gather_max is not None and t * width > gather_max:
            yield rows, None
            continue
        idx = (offsets[rows][:, None] + np.arange(t)).ravel()
        yield rows, values[idx].reshape(len(rows), int(t), *values.shape[1:])


def maxsim_rows(query: np.ndarray, values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`maxsim` of ``query`` against each of ``N`` rows stored flat (as :meth:`Pooling.pool_rows`),
    in whole-array operations; ``-inf`` for a row with no steps."""
    q = l2_normalise(np.asarray(query, np.float32).reshape(-1, np.shape(query)[-1]))
    if len(q) == 0:
        raise PoolingError("multivector scoring needs at least one step on both sides")
    offsets = np.asarray(offsets, np.int64)
    out = np.full(len(offsets) - 1, -np.inf)
    steps = np.asarray(values[offsets[0] : offsets[-1]], np.float32)
    if len(steps):
        # cosines [steps, query steps]: dot products over the step norms, without a normalised copy
        norms = np.sqrt(np.einsum("ij,ij->i", steps, steps))
        sims = (steps @ q.T) / np.maximum(norms, 1e-12)[:, None]
        for rows, s in _length_groups(sims, offsets - offsets[0]):
            out[rows] = s.max(axis=1).mean(axis=1)  # type: ignore[union-attr]  # never None without gather_max
    return out


def maxsim(query: np.ndarray, candidate: np.ndarray) -> float:
    """Late-interaction score: mean over query steps of the best cosine similarity with a candidate step."""
    q = l2_normalise(np.asarray(query, np.float32).reshape(-1, np.shape(query)[-1]))
    d = l2_normalise(np.asarray(candidate, np.float32))
    if len(q) == 0 or len(d) == 0:
        raise PoolingError("multivector scoring needs at least one step on both sides")
    return float((q @ d.T).max(axis=1).mean())
