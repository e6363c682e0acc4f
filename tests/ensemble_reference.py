"""The straightforward object-per-event implementation of matching, fusion, NMS and truth
matching, kept as the oracle the compiled columnar implementation is compared with."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

from jobs.ensemble.matching import ALL, BOTH, DISAGREE, SEVERAL, Group, only
from jobs.ensemble.options import FusionOptions, NmsMode, check_models
from jobs.ensemble.records import Detection
from tests.ensemble_records import DEFAULT_TOLERANCE_S, FusedEvent, TruthMatch
from udfs.errors import check_choice

TIME_EPS = 1e-6


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


def suppress(events: Sequence[FusedEvent], mode: NmsMode, window_s: float, sigma: float = 0.5) -> list[FusedEvent]:
    """Per-class non-maximum suppression over time on each video (``hard``, ``soft`` or ``none``)."""
    check_choice(mode, NmsMode, "nms")
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


def fuse(groups: Sequence[Group], models: Sequence[str], options: FusionOptions,
         tolerance_s: float = DEFAULT_TOLERANCE_S) -> list[FusedEvent]:
    """The ensemble model's events from the groups of :func:`match_models`.

    Agreement groups and lone events become candidates; members of a disagreeing group are
    candidates of their own labels. Candidates go through NMS (an unset window: ``tolerance_s``),
    then those under ``options.min_confidence`` are dropped. Returned in order of video and time.
    """
    models = check_models(models)
    options.check(models, tolerance_s)
    weights = {m: options.weight(m) for m in models}
    total = sum(weights.values())
    order = {m: i for i, m in enumerate(models)}
    candidates = []
    for g in groups:
        if g.category == DISAGREE:
            candidates.extend(_fuse_members([d], weights, total, order, DISAGREE) for d in g.members)
        else:
            candidates.append(_fuse_members(g.members, weights, total, order, g.category))
    kept = suppress(candidates, options.nms, options.nms_window(tolerance_s), options.soft_nms_sigma)
    kept = [e for e in kept if e.confidence >= options.min_confidence]
    # Two candidates of a label at the same millisecond would share one event id: keep the stronger.
    unique: dict[tuple[str, str, float, str | None], FusedEvent] = {}
    for e in sorted(kept, key=lambda e: -e.confidence):
        unique.setdefault((e.video_id, e.label, e.time_s, e.team), e)
    return sorted(unique.values(), key=lambda e: (e.video_id, e.time_s, e.label))


def _bucket(items: Iterable[Detection]) -> dict[tuple[str, str], list[Detection]]:
    out: dict[tuple[str, str], list[Detection]] = {}
    for d in items:
        out.setdefault((d.video_id, d.label), []).append(d)
    return out


def match_to_truth(predictions: Sequence[Detection], truths: Sequence[Detection], tolerance_s: float) -> TruthMatch:
    """One-to-one greedy matching of ``predictions`` to ``truths`` per video and label.

    Predictions in descending confidence (ties: earlier time first) each claim the nearest
    unclaimed truth within ``tolerance_s`` seconds (ties: the earlier truth).
    """

    result = TruthMatch()
    truth_buckets = _bucket(truths)
    pred_buckets = _bucket(predictions)
    for key in sorted(set(truth_buckets) | set(pred_buckets)):
        gts = sorted(truth_buckets.get(key, []), key=lambda d: (d.time_s, d.event_id))
        times = [g.time_s for g in gts]
        used = [False] * len(gts)
        preds = sorted(pred_buckets.get(key, []), key=lambda d: (-_confidence(d), d.time_s, d.event_id))
        for p in preds:
            lo = bisect.bisect_left(times, p.time_s - tolerance_s - TIME_EPS)
            hi = bisect.bisect_right(times, p.time_s + tolerance_s + TIME_EPS)
            best = None
            for i in range(lo, hi):
                if used[i]:
                    continue
                if best is None or abs(times[i] - p.time_s) < abs(times[best] - p.time_s):
                    best = i
            if best is None:
                result.false_positives.append(p)
            else:
                used[best] = True
                result.pairs.append((p, gts[best]))
        result.missed.extend(g for g, u in zip(gts, used, strict=True) if not u)
    return result




