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

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from jobs.detections import Detection
from jobs.spotting_metrics import TIME_EPS
from tables.events import event_id

BOTH = "both"
ALL = "all"
SEVERAL = "several"
DISAGREE = "disagree"
ONLY_PREFIX = "only_"
NMS_MODES = ("hard", "soft", "none")


def only(model: str) -> str:
    """The category of an event that only ``model`` reported."""
    return ONLY_PREFIX + model


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


def _confidence(d: Detection) -> float:
    if d.confidence is None:
        raise ValueError(f"event {d.event_id} of model '{d.model}' on {d.video_id} has no confidence")
    return d.confidence


def _greedy(events: list[Detection], rank: Mapping[str, int], tolerance_s: float,
            same_label: bool) -> list[list[Detection]]:
    """Seed-based one-to-one grouping of ``events`` (one video) as described in the module docstring."""
    per_model: dict[str, list[Detection]] = {}
    for d in sorted(events, key=lambda d: (d.time_s, d.event_id)):
        per_model.setdefault(d.model, []).append(d)
    times = {m: [d.time_s for d in items] for m, items in per_model.items()}
    taken: set[int] = set()
    groups = []
    for seed in sorted(events, key=lambda d: (-_confidence(d), rank[d.model], d.time_s, d.event_id)):
        if id(seed) in taken:
            continue
        taken.add(id(seed))
        group = [seed]
        for model in sorted(per_model, key=rank.__getitem__):
            if model == seed.model:
                continue
            lo = bisect.bisect_left(times[model], seed.time_s - tolerance_s - TIME_EPS)
            hi = bisect.bisect_right(times[model], seed.time_s + tolerance_s + TIME_EPS)
            candidates = [d for d in per_model[model][lo:hi]
                          if id(d) not in taken and (d.label == seed.label) == same_label]
            if candidates:
                best = min(candidates, key=lambda d: (-_confidence(d), abs(d.time_s - seed.time_s), d.time_s,
                                                      d.event_id))
                taken.add(id(best))
                group.append(best)
        groups.append(sorted(group, key=lambda d: rank[d.model]))
    return groups


def _category(n_models_in_group: int, n_models: int, lone_model: str) -> str:
    if n_models_in_group == 1:
        return only(lone_model)
    if n_models_in_group == n_models and n_models > 2:
        return ALL
    if n_models_in_group == 2:
        return BOTH
    return SEVERAL


def match_models(detections: Iterable[Detection], models: Sequence[str], tolerance_s: float) -> list[Group]:
    """Group the events of ``models`` across models (see the module docstring).

    Events of other models are ignored. A tolerance of 0 matches events at the same time only
    (times are kept to the millisecond). Returns the groups in order of video, time and label.
    """
    models = check_models(models)
    if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise ValueError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")
    rank = {m: i for i, m in enumerate(models)}
    per_video: dict[str, list[Detection]] = {}
    for d in detections:
        if d.model in rank:
            per_video.setdefault(d.video_id, []).append(d)
    raw: list[tuple[str, list[Detection], str]] = []
    for video, events in per_video.items():
        per_label: dict[str, list[Detection]] = {}
        for d in events:
            per_label.setdefault(d.label, []).append(d)
        lone: list[Detection] = []
        for items in per_label.values():
            for group in _greedy(items, rank, tolerance_s, same_label=True):
                if len(group) == 1:
                    lone.extend(group)
                else:
                    raw.append((video, group, _category(len(group), len(models), group[0].model)))
        for group in _greedy(lone, rank, tolerance_s, same_label=False):
            raw.append((video, group, DISAGREE if len(group) > 1 else only(group[0].model)))
    raw.sort(key=lambda g: (g[0], min(d.time_s for d in g[1]), g[1][0].label, g[1][0].event_id))
    return [Group(i, video, members, category) for i, (video, members, category) in enumerate(raw)]


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


def fuse_group(members: Sequence[Detection], models: Sequence[str], options: FusionOptions,
               category: str = "") -> FusedEvent:
    """The weighted-mean candidate of one agreement group (members share one label)."""
    weights = {m: options.weight(m) for m in models}
    return _fuse_members(members, weights, sum(weights.values()), {m: i for i, m in enumerate(models)}, category)


def _fuse_members(members: Sequence[Detection], weights: Mapping[str, float], total_weight: float,
                  order: Mapping[str, int], category: str) -> FusedEvent:
    labels = {d.label for d in members}
    if len(labels) != 1:
        raise ValueError(f"a fused group needs one label, got {sorted(labels)}")
    conf = sum(weights[d.model] * _confidence(d) for d in members) / total_weight
    mass = sum(weights[d.model] * _confidence(d) for d in members)
    if mass > 0:
        time_s = sum(weights[d.model] * _confidence(d) * d.time_s for d in members) / mass
    else:
        time_s = sum(d.time_s for d in members) / len(members)
    lead = max(members, key=lambda d: (_confidence(d), -order[d.model]))
    return FusedEvent(members[0].video_id, labels.pop(), round(time_s, 3), conf, lead.team, list(members), category)


def suppress(events: Sequence[FusedEvent], mode: str, window_s: float, sigma: float = 0.5) -> list[FusedEvent]:
    """Per-class non-maximum suppression over time on each video (``hard``, ``soft`` or ``none``)."""
    if mode not in NMS_MODES:
        raise ValueError(f"nms must be one of {NMS_MODES}, got {mode!r}")
    if mode == "none":
        return list(events)
    buckets: dict[tuple[str, str], list[FusedEvent]] = {}
    for e in events:
        buckets.setdefault((e.video_id, e.label), []).append(e)
    kept: list[FusedEvent] = []
    for items in buckets.values():
        # strongest first (ties: the earlier event), as repeatedly taking the maximum would
        order = sorted(items, key=lambda e: (-e.confidence, e.time_s))
        if mode == "hard":
            kept_times: list[float] = []
            for e in order:
                i = bisect.bisect_left(kept_times, e.time_s - window_s - TIME_EPS)
                if i < len(kept_times) and kept_times[i] <= e.time_s + window_s + TIME_EPS:
                    continue  # within the window of a stronger kept event
                bisect.insort(kept_times, e.time_s)
                kept.append(FusedEvent(e.video_id, e.label, e.time_s, e.confidence, e.team, e.sources, e.category))
            continue
        remaining = [FusedEvent(e.video_id, e.label, e.time_s, e.confidence, e.team, e.sources, e.category)
                     for e in order]
        while remaining:
            top = max(remaining, key=lambda e: (e.confidence, -e.time_s))
            remaining.remove(top)
            kept.append(top)
            for e in remaining:
                overlap = max(0.0, 1.0 - abs(e.time_s - top.time_s) / window_s)
                e.confidence *= math.exp(-(overlap ** 2) / sigma)
    return kept


def fuse(groups: Sequence[Group], models: Sequence[str], options: FusionOptions) -> list[FusedEvent]:
    """The ensemble model's events from the groups of :func:`match_models`.

    Agreement groups and lone events become candidates; members of a disagreeing group are
    candidates of their own labels. Candidates go through NMS, then those under
    ``options.min_confidence`` are dropped. Returned in order of video and time.
    """
    models = check_models(models)
    options.check(models)
    weights = {m: options.weight(m) for m in models}
    total = sum(weights.values())
    order = {m: i for i, m in enumerate(models)}
    candidates = []
    for g in groups:
        if g.category == DISAGREE:
            candidates.extend(_fuse_members([d], weights, total, order, DISAGREE) for d in g.members)
        else:
            candidates.append(_fuse_members(g.members, weights, total, order, g.category))
    kept = suppress(candidates, options.nms, options.window_s, options.soft_sigma)
    kept = [e for e in kept if e.confidence >= options.min_confidence]
    # Two candidates of a label at the same millisecond would share one event id: keep the stronger.
    unique: dict[tuple[str, str, float, str | None], FusedEvent] = {}
    for e in sorted(kept, key=lambda e: -e.confidence):
        unique.setdefault((e.video_id, e.label, e.time_s, e.team), e)
    return sorted(unique.values(), key=lambda e: (e.video_id, e.time_s, e.label))
