"""Cross-model matching of spotted events, and their fusion into one ensemble model.

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

Fusion: each agreement group (lone events included) becomes one candidate of its label whose
confidence is the weighted mean of its members' confidences over *all* models (a model missing
from the group counts as 0) and whose time is the members' mean time weighted by weight x
confidence. Candidates then go through per-class non-maximum suppression over time on each
video: ``hard`` drops candidates within ``window_s`` of a stronger one, ``soft`` multiplies their
confidence by ``exp(-overlap**2 / sigma)`` with ``overlap = 1 - |dt| / window_s`` (Gaussian
soft-NMS), ``none`` keeps them all.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.arrow_build import constant, texts
from jobs.detections import Detection
from jobs.ensemble_kernels import (
    bucket_starts,
    first_max,
    greedy_groups,
    grouped_order,
    hard_nms,
    keyed_sha1_hex,
    soft_nms,
    sort_runs,
    spread,
)
from jobs.event_frame import Column, EventFrame, Vocab, frame_from_detections, id_keys, shared_vocab
from tables.events import event_id

BOTH = "both"
ALL = "all"
SEVERAL = "several"
DISAGREE = "disagree"
ONLY_PREFIX = "only_"
NMS_MODES = ("hard", "soft", "none")
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


def check_models(models: Sequence[str]) -> list[str]:
    """``models`` as a list, after checking there are at least two distinct non-empty names."""
    models = list(models)
    if any(not m for m in models):
        raise ValueError(f"model names must be non-empty: {models}")
    dup = sorted({m for m in models if models.count(m) > 1})
    if dup:
        raise ValueError(f"models are listed more than once: {dup}")
    if len(models) < 2:
        raise ValueError(f"matching needs at least two models, got {models}")
    return models


def check_confidences(frame: EventFrame) -> None:
    """Raise ``ValueError`` naming the first event of ``frame`` without a confidence."""
    missing = np.flatnonzero(np.isnan(frame.conf))
    if missing.size:
        d = frame.detections(missing[:1])[0]
        raise ValueError(f"event {d.event_id} of model '{d.model}' on {d.video_id} has no confidence")


@dataclass
class Matching:
    """The groups of one analysis as columns.

    ``group[i]`` is the group of input event ``i``; groups are numbered in order of video,
    earliest member time, label and first member. ``members`` lists the events sorted by group
    and model rank, group ``g`` spanning ``members[starts[g]:starts[g + 1]]``.
    """

    frame: EventFrame
    group: np.ndarray
    category: np.ndarray  # per group: a code into category_names(frame.models)
    members: np.ndarray
    starts: np.ndarray

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
        raise ValueError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")
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
    return Matching(frame, group, category[first][rank].astype(np.int64), members, starts)


def match_models(detections: Iterable[Detection], models: Sequence[str], tolerance_s: float) -> list[Group]:
    """Group the events of ``models`` across models (see the module docstring).

    Events of other models are ignored. A tolerance of 0 matches events at the same time only
    (times are kept to the millisecond). Returns the groups in order of video, time and label.
    """
    models = check_models(models)
    if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise ValueError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")
    chosen = [d for d in detections if d.model in set(models)]
    return match_frame(frame_from_detections(chosen, models), tolerance_s).groups()


# ---------------------------------------------------------------- fusion


@dataclass
class FusionOptions:
    """How groups become the ensemble model's events."""

    name: str = "ensemble"
    weights: Mapping[str, float] | None = None  # per model; missing models weigh 1
    nms: str = "hard"
    window_s: float = 3.0
    soft_sigma: float = 0.5
    min_confidence: float = 0.0  # fused events below this confidence (after NMS) are dropped

    def check(self, models: Sequence[str]) -> None:
        """Raise ``ValueError`` naming the option that is out of range."""
        if not self.name:
            raise ValueError("the ensemble model needs a name")
        if self.name in models:
            raise ValueError(f"the ensemble name '{self.name}' is also one of the input models {list(models)}")
        unknown = sorted(set(self.weights or {}) - set(models))
        if unknown:
            raise ValueError(f"weights given for models that are not inputs: {unknown} (inputs: {list(models)})")
        weights = [self.weight(m) for m in models]
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(zip(models, weights, strict=True))}")
        if self.nms not in NMS_MODES:
            raise ValueError(f"nms must be one of {NMS_MODES}, got {self.nms!r}")
        if not (math.isfinite(self.window_s) and self.window_s >= 0):
            raise ValueError(f"the NMS window must be a number of seconds >= 0, got {self.window_s!r}")
        if self.nms == "soft" and self.window_s == 0:
            raise ValueError("soft-NMS needs a positive window (a 0 s window only works with hard or no NMS)")
        if not (math.isfinite(self.soft_sigma) and self.soft_sigma > 0):
            raise ValueError(f"the soft-NMS sigma must be positive, got {self.soft_sigma!r}")
        if not math.isfinite(self.min_confidence):
            raise ValueError(f"min_confidence must be a number, got {self.min_confidence!r}")

    def weight(self, model: str) -> float:
        """The weight of ``model`` (1 unless configured)."""
        return float((self.weights or {}).get(model, 1.0))


@dataclass
class FusedEvent:
    """One event of the ensemble model and the events it was fused from."""

    video_id: str
    label: str
    time_s: float
    confidence: float
    team: str | None
    sources: list[Detection] = field(default_factory=list)
    category: str = ""

    def detection(self, model: str, run_id: str | None) -> Detection:
        """This event as a :class:`Detection` of ``model`` (its id as ``events`` would key it)."""
        eid = event_id(self.video_id, model, run_id, self.time_s, self.label, self.team)
        return Detection(eid, self.video_id, model, self.time_s, self.label, self.confidence, self.team,
                         run_id=run_id)


@dataclass
class Fused:
    """The ensemble model's events as columns, with the input events each was fused from.

    ``sources[source_starts[i]:source_starts[i + 1]]`` are the input events (positions in
    ``inputs``, in model order) of fused event ``i``. Events are in order of video, time, label.
    """

    inputs: EventFrame
    video: np.ndarray
    label: np.ndarray
    time: np.ndarray
    conf: np.ndarray
    team: pa.Array
    category: np.ndarray  # codes into category_names(inputs.models)
    sources: np.ndarray
    source_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    def frame(self, model: str, run_id: str | None) -> EventFrame:
        """The fused events as a frame of ``model`` (event ids as ``events`` keys them)."""
        ids = fused_event_ids(self, model, run_id)
        n = len(self)
        return EventFrame(self.inputs.vocab, (model,), self.video.copy(), self.label.copy(),
                          np.zeros(n, dtype=np.int32), self.time.copy(), self.conf.copy(),
                          id_keys(ids), np.ones(n, dtype=bool), Column(ids), Column(self.team),
                          Column(constant(run_id, n, pa.string())))

    def events(self, which: np.ndarray | None = None) -> list[FusedEvent]:
        """Fused events (all, or those at ``which``) as :class:`FusedEvent` records."""
        names = category_names(self.inputs.models)
        which = np.arange(len(self)) if which is None else np.asarray(which, dtype=np.int64)
        teams = self.team.take(pa.array(which, pa.int64())).to_pylist()
        out = []
        for j, i in enumerate(which.tolist()):
            src = self.sources[self.source_starts[i]:self.source_starts[i + 1]]
            out.append(FusedEvent(self.inputs.vocab.videos[self.video[i]], self.inputs.vocab.labels[self.label[i]],
                                  float(self.time[i]), float(self.conf[i]), teams[j], self.inputs.detections(src),
                                  names[self.category[i]]))
        return out


def round_ms(times: np.ndarray) -> np.ndarray:
    """``round(t, 3)`` of every time, exactly as Python rounds (NumPy's rounding differs on ties)."""
    out = np.round(times, 3)
    scaled = times * 1000
    near_tie = np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6)
    for i in near_tie.tolist():
        out[i] = round(float(times[i]), 3)
    return out


#: Fused events hashed per task when many are hashed on several cores.
_HASH_SLICE = 500_000


def fused_event_ids(fused: Fused, model: str, run_id: str | None) -> pa.Array:
    """:func:`tables.events.event_id` of every fused event (the same hash, computed in bulk)."""
    vocab = fused.inputs.vocab
    n = len(fused)
    if n == 0:
        return pa.array([], pa.string())
    if float(fused.time.max()) >= 1e12:  # beyond the compiled time formatting
        teams = fused.team.to_pylist()
        return pa.array([event_id(vocab.videos[v], model, run_id, t, vocab.labels[lab], team) for v, lab, t, team
                         in zip(fused.video.tolist(), fused.label.tolist(), fused.time.tolist(), teams, strict=True)],
                        pa.string())
    head_starts, head_data = texts([json.dumps([v, model, run_id or ""])[:-1] + ", " for v in vocab.videos])
    team_code = _team_codes(fused.team)
    team_names = pc.dictionary_encode(fused.team).dictionary.to_pylist()
    width = len(team_names) + 1
    tail = fused.label.astype(np.int64) * width + team_code + 1
    tail_starts, tail_data = texts([", " + json.dumps(label) + ", " + json.dumps(team or "") + "]"
                                    for label in vocab.labels for team in [None, *team_names]])
    millis = np.rint(fused.time * 1000).astype(np.int64)
    video = fused.video.astype(np.int64)

    def hashed(rows: slice) -> np.ndarray:
        return keyed_sha1_hex(head_data, head_starts, video[rows], millis[rows], tail_data, tail_starts, tail[rows],
                              20)

    # the kernel releases the GIL: large batches are hashed in slices on every core
    slices = [slice(s, s + _HASH_SLICE) for s in range(0, n, _HASH_SLICE)]
    if len(slices) > 1:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            digits = np.concatenate(list(pool.map(hashed, slices)))
    else:
        digits = hashed(slice(0, n))
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * 20).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(digits.tobytes()))


def _units(matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    """Candidate units: agreement groups whole, disagreeing groups one per member.

    Returns (events sorted by unit and model, unit starts)."""
    order = matching.members
    boundary = matching.event_category()[order] == _DISAGREE
    boundary = np.concatenate([boundary, [True]])
    boundary[matching.starts] = True
    return order, np.flatnonzero(boundary).astype(np.int64)


def fuse_matching(matching: Matching, options: FusionOptions) -> Fused:
    """The ensemble model's events from a :class:`Matching` (see :func:`fuse`)."""
    frame = matching.frame
    models = check_models(frame.models)
    options.check(models)
    weight = np.array([options.weight(m) for m in models], dtype=np.float64)
    total = float(weight.sum())
    order, starts = _units(matching)
    heads = starts[:-1]
    n_units = len(heads)
    if n_units == 0:
        empty = np.zeros(0, np.int64)
        return Fused(frame, empty.astype(np.int32), empty.astype(np.int32), np.zeros(0), np.zeros(0),
                     pa.array([], pa.string()), empty, empty, np.zeros(1, np.int64))
    w = weight[frame.model[order]]
    c = frame.conf[order]
    t = frame.time[order]
    mass = np.add.reduceat(w * c, heads)
    conf = mass / total
    sizes = np.diff(starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        time_s = np.where(mass > 0, np.add.reduceat(w * c * t, heads) / mass, np.add.reduceat(t, heads) / sizes)
    time_s = round_ms(time_s)
    lead = first_max(order, starts, frame.conf)
    first = order[heads]
    video, label = frame.video[first], frame.label[first]
    category = matching.event_category()[first]
    team = frame.team.take(pa.array(lead, pa.int64()))
    # per-class NMS over time on each video, strongest first
    n_labels = max(len(frame.vocab.labels), 1)
    n_videos = max(len(frame.vocab.videos), 1)
    bucket = video.astype(np.int64) * n_labels + label
    nms_order, nms_starts = grouped_order(bucket, n_videos * n_labels, -conf, time_s, np.zeros(n_units, np.uint64))
    if options.nms == "hard":
        keep = hard_nms(nms_order, nms_starts, time_s, float(options.window_s))
    else:
        keep = np.ones(n_units, dtype=bool)
        if options.nms == "soft":
            conf = soft_nms(nms_order, nms_starts, time_s, conf, float(options.window_s), float(options.soft_sigma))
    keep &= conf >= options.min_confidence
    kept = np.flatnonzero(keep)
    if options.nms != "hard":
        kept = _strongest_per_id(kept, bucket, time_s, _team_codes(team), conf, n_videos * n_labels)
    final = kept[grouped_order(video[kept].astype(np.int64), n_videos, time_s[kept], label[kept].astype(np.float64),
                               np.zeros(len(kept), np.uint64))[0]]
    src_sizes = sizes[final]
    src_starts = np.concatenate([[0], np.cumsum(src_sizes)]).astype(np.int64)
    src = order[spread(starts[final], src_sizes)]
    return Fused(frame, video[final], label[final], time_s[final], conf[final],
                 team.take(pa.array(final, pa.int64())), category[final], src, src_starts)


def _strongest_per_id(kept: np.ndarray, bucket: np.ndarray, time_s: np.ndarray, team: np.ndarray, conf: np.ndarray,
                      n_buckets: int) -> np.ndarray:
    """Of candidates that would share one event id (video, label, millisecond, team), the strongest.

    Hard NMS never keeps two such candidates; soft or no NMS can."""
    order, _ = grouped_order(bucket[kept], n_buckets, time_s[kept], team[kept].astype(np.float64),
                             np.zeros(len(kept), np.uint64))
    ordered = kept[order]
    if len(ordered) < 2:
        return ordered
    same = ((bucket[ordered][1:] == bucket[ordered][:-1]) & (time_s[ordered][1:] == time_s[ordered][:-1])
            & (team[ordered][1:] == team[ordered][:-1]))
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1, [len(ordered)]]).astype(np.int64)
    return first_max(ordered, starts, conf)


def _team_codes(team: pa.Array) -> np.ndarray:
    """Integer codes of team names (null is -1)."""
    encoded = pc.dictionary_encode(team)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return np.where(pc.is_valid(team).to_numpy(zero_copy_only=False), codes, -1).astype(np.int64) \
        if len(team) else np.zeros(0, np.int64)


def _matching_of(groups: Sequence[Group], models: Sequence[str]) -> Matching:
    """A :class:`Matching` holding ``groups`` as they are."""
    members = [d for g in groups for d in g.members]
    frame = frame_from_detections(members, models, shared_vocab(members))
    sizes = [len(g.members) for g in groups]
    group = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
    names = category_names(models)
    category = np.array([names.index(g.category) for g in groups], dtype=np.int64)
    order = np.lexsort((frame.model, group))
    return Matching(frame, group, category, order, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


def fuse_group(members: Sequence[Detection], models: Sequence[str], options: FusionOptions,
               category: str = "") -> FusedEvent:
    """The weighted-mean candidate of one agreement group (members share one label)."""
    labels = {d.label for d in members}
    if len(labels) != 1:
        raise ValueError(f"a fused group needs one label, got {sorted(labels)}")
    models = check_models(models)
    group = Group(0, members[0].video_id, list(members), category or (BOTH if len(members) > 1
                                                                        else only(members[0].model)))
    fused = fuse_matching(_matching_of([group], models), FusionOptions(
        options.name, options.weights, "none", options.window_s, options.soft_sigma, -sys.float_info.max)).events()
    fused[0].category = category
    return fused[0]


def suppress(events: Sequence[FusedEvent], mode: str, window_s: float, sigma: float = 0.5) -> list[FusedEvent]:
    """Per-class non-maximum suppression over time on each video (``hard``, ``soft`` or ``none``)."""
    if mode not in NMS_MODES:
        raise ValueError(f"nms must be one of {NMS_MODES}, got {mode!r}")
    if mode == "none" or not events:
        return [FusedEvent(e.video_id, e.label, e.time_s, e.confidence, e.team, e.sources, e.category)
                for e in events]
    vocab = Vocab(tuple(sorted({e.video_id for e in events})), tuple(sorted({e.label for e in events})))
    video = np.searchsorted(np.array(vocab.videos, dtype=object), [e.video_id for e in events])
    label = np.searchsorted(np.array(vocab.labels, dtype=object), [e.label for e in events])
    time_s = np.array([e.time_s for e in events], dtype=np.float64)
    conf = np.array([e.confidence for e in events], dtype=np.float64)
    bucket = video.astype(np.int64) * len(vocab.labels) + label
    order = np.lexsort((time_s, -conf, bucket))
    starts = bucket_starts(bucket[order])
    if mode == "hard":
        keep = hard_nms(order, starts, time_s, float(window_s))
    else:
        conf = soft_nms(order, starts, time_s, conf, float(window_s), float(sigma))
        keep = np.ones(len(events), dtype=bool)
    return [FusedEvent(e.video_id, e.label, e.time_s, float(conf[i]), e.team, e.sources, e.category)
            for i, e in ((int(i), events[int(i)]) for i in order) if keep[i]]


def fuse(groups: Sequence[Group], models: Sequence[str], options: FusionOptions) -> list[FusedEvent]:
    """The ensemble model's events from the groups of :func:`match_models`.

    Agreement groups and lone events become candidates; members of a disagreeing group are
    candidates of their own labels. Candidates go through NMS, then those under
    ``options.min_confidence`` are dropped. Returned in order of video and time.
    """
    models = check_models(models)
    options.check(models)
    return fuse_matching(_matching_of(groups, models), options).events()
