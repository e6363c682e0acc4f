"""Cross-model matching of spotted events: which events of different models are the same event.

Matching (any number of models, per video):

1. *Agreement*, per label: events of all models in descending confidence (ties: the order of
   ``models``, then time) each seed a group unless already taken; the seed takes from every other
   model its best untaken event of the same label within the tolerance of the seed (highest
   confidence, then nearest, then earliest). Every event lands in exactly one group, with at most
   one event per model.
2. *Disagreement*: events left alone after step 1 are grouped the same way across labels: an
   event with another model's lone event of a different label within the tolerance disagrees.

Categories per event: ``both`` (a group of two models), ``all`` (every model, when there are more
than two), ``several`` (3 or more models but not all), ``disagree`` and ``only_<model>``. Each
group records the models in it.

:func:`match_frame` computes the groups of an :class:`~jobs.ensemble.frame.EventFrame` as
columns (:class:`Matching`); :class:`Group` records are made only for the groups a picture or a
report looks at. Fusion of the groups is :mod:`jobs.ensemble.fusion`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobs.ensemble.errors import EnsembleDataError, EnsembleOptionsError
from jobs.ensemble.frame import EventFrame
from jobs.ensemble.kernels import greedy_groups, grouped_order, sort_runs, spread
from jobs.ensemble.options import check_models
from jobs.ensemble.records import Detection

BOTH = "both"
ALL = "all"
SEVERAL = "several"
DISAGREE = "disagree"
ONLY_PREFIX = "only_"
#: Category codes 0..3; ``only_<model>`` is ``len(FIXED_CATEGORIES) + model code``.
FIXED_CATEGORIES = (BOTH, ALL, SEVERAL, DISAGREE)
_DISAGREE = FIXED_CATEGORIES.index(DISAGREE)


def only(model: str) -> str:
    """The category of an event that only ``model`` reported."""
    return ONLY_PREFIX + model


def category_names(models: Sequence[str]) -> list[str]:
    """Category names by code for an analysis of ``models``."""
    return [*FIXED_CATEGORIES, *(only(m) for m in models)]


@dataclass
class Group:
    """Events of different models matched together (one event per model)."""

    group_id: int
    video_id: str
    members: list[Detection]
    category: str

    @property
    def models(self) -> list[str]:
        """The models in the group, in member order."""
        return [d.model for d in self.members]

    @property
    def labels(self) -> list[str]:
        """The distinct labels of the members (one label unless the group disagrees)."""
        return sorted({d.label for d in self.members})


def check_confidences(frame: EventFrame) -> None:
    """Raise :class:`~jobs.ensemble.errors.EnsembleDataError` naming the first event of ``frame``
    without a confidence."""
    missing = np.flatnonzero(np.isnan(frame.conf))
    if missing.size:
        d = frame.detections(missing[:1])[0]
        raise EnsembleDataError(f"event {d.event_id} of model '{d.model}' on {d.video_id} has no confidence")


@dataclass
class Matching:
    """The groups of one analysis as columns.

    ``group[i]`` is the group of input event ``i``; groups are numbered in order of video,
    earliest member time, label and first member. ``members`` lists the events sorted by group
    and model rank, group ``g`` spanning ``members[starts[g]:starts[g + 1]]``. ``tolerance_s`` is
    the matching tolerance (an unset NMS window of the fusion is that long).
    """

    frame: EventFrame
    group: np.ndarray
    category: np.ndarray  # per group: a code into category_names(frame.models)
    members: np.ndarray
    starts: np.ndarray
    tolerance_s: float  # the tolerance the groups were formed with

    @property
    def n_groups(self) -> int:
        """The number of groups."""
        return len(self.starts) - 1

    @property
    def sizes(self) -> np.ndarray:
        """Members per group."""
        return np.diff(self.starts)

    def event_category(self) -> np.ndarray:
        """The category code of every input event."""
        return self.category[self.group]

    def category_counts(self) -> dict[str, int]:
        """Input events per category (categories without events left out)."""
        names = category_names(self.frame.models)
        counts = np.bincount(self.event_category(), minlength=len(names))
        return {names[c]: int(n) for c, n in sorted(enumerate(counts.tolist()), key=lambda x: names[x[0]]) if n}

    def groups(self, which: np.ndarray | None = None) -> list[Group]:
        """Groups (all, or the group numbers ``which``) as :class:`Group` records."""
        names = category_names(self.frame.models)
        which = np.arange(self.n_groups) if which is None else np.asarray(which, dtype=np.int64)
        spans = [(int(self.starts[g]), int(self.starts[g + 1])) for g in which.tolist()]
        idx = np.concatenate([self.members[s:e] for s, e in spans]) if spans else np.zeros(0, np.int64)
        records = iter(self.frame.detections(idx))
        out = []
        for g, (s, e) in zip(which.tolist(), spans, strict=True):
            members = [next(records) for _ in range(e - s)]
            out.append(Group(g, members[0].video_id, members, names[self.category[g]]))
        return out


def _grouping(frame: EventFrame, idx: np.ndarray, bucket: np.ndarray, n_buckets: int, tolerance_s: float,
              same_label: bool) -> np.ndarray:
    """The seed (a position into the frame) of each event of ``idx`` after one greedy pass."""
    n_models = len(frame.models)
    model, time, conf, key = frame.model[idx], frame.time[idx], frame.conf[idx], frame.key[idx]
    zeros = np.zeros(len(idx))
    by_time, starts = grouped_order(bucket * n_models + model, n_buckets * n_models, time, zeros, key)
    bucket_start = starts[::n_models]
    by_seed = by_time.copy()
    sort_runs(by_seed, bucket_start, -conf, zeros, np.zeros(len(idx), np.uint64))
    seeds = greedy_groups(by_time, by_seed, bucket_start, model, n_models, time, conf, frame.label[idx], key,
                          float(tolerance_s), same_label)
    return idx[seeds]


def match_frame(frame: EventFrame, tolerance_s: float) -> Matching:
    """Group the events of ``frame`` across its models (see the module docstring)."""
    models = check_models(frame.models)
    if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise EnsembleOptionsError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")
    check_confidences(frame)
    n = len(frame)
    n_labels = max(len(frame.vocab.labels), 1)
    n_videos = max(len(frame.vocab.videos), 1)
    everything = np.arange(n, dtype=np.int64)
    per_label = frame.video.astype(np.int64) * n_labels + frame.label
    seed = _grouping(frame, everything, per_label, n_videos * n_labels, tolerance_s, same_label=True)
    size = np.bincount(seed, minlength=n)[seed] if n else np.zeros(0, np.int64)
    lone = np.flatnonzero(size == 1)
    if lone.size:
        seed[lone] = _grouping(frame, lone, frame.video[lone].astype(np.int64), n_videos, tolerance_s,
                               same_label=False)
    size = np.bincount(seed, minlength=n)[seed] if n else np.zeros(0, np.int64)
    was_lone = np.zeros(n, dtype=bool)
    was_lone[lone] = True
    category = np.where(size == 1, len(FIXED_CATEGORIES) + frame.model, 0)
    category = np.where(was_lone & (size > 1), _DISAGREE, category)
    agreed = ~was_lone & (size > 1)
    all_models = len(models) > 2
    category = np.where(agreed & (size == len(models)) & all_models, FIXED_CATEGORIES.index(ALL), category)
    category = np.where(agreed & (size == 2), FIXED_CATEGORIES.index(BOTH), category)
    category = np.where(agreed & (size > 2) & ~((size == len(models)) & all_models),
                        FIXED_CATEGORIES.index(SEVERAL), category)
    # members of each seed's group in model order
    model_f = frame.model.astype(np.float64)
    by_seed, seed_starts = grouped_order(seed, n, model_f, np.zeros(n), np.zeros(n, np.uint64))
    sizes = np.diff(seed_starts)
    heads = seed_starts[:-1][sizes > 0]
    sizes = sizes[sizes > 0]
    first = by_seed[heads]
    earliest = np.minimum.reduceat(frame.time[by_seed], heads) if n else np.zeros(0)
    # number the groups: by video, earliest member time, the first member's label and id
    rank, _ = grouped_order(frame.video[first].astype(np.int64), n_videos, earliest,
                            frame.label[first].astype(np.float64), frame.key[first])
    members = by_seed[spread(heads[rank], sizes[rank])]
    group = np.empty(n, dtype=np.int64)
    group[members] = np.repeat(np.arange(len(rank)), sizes[rank])
    starts = np.concatenate([[0], np.cumsum(sizes[rank])]).astype(np.int64)
    return Matching(frame, group, category[first][rank].astype(np.int64), members, starts, tolerance_s)
