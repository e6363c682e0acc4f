"""One ensemble analysis run over the ``events`` table: read, match, fuse, score, write.

:func:`run_ensemble` is what ``vw ensemble`` calls. It reads the events of the chosen models (and
of the ground truth) with an optional SQL filter, groups them across models
(:mod:`jobs.ensemble`), fuses them into a new model written back to ``events`` under the run id,
scores every model and the ensemble against the ground truth (:mod:`jobs.spotting_metrics`) and
writes ``ensemble_matches`` / ``ensemble_metrics`` (:mod:`tables.ensemble_results`).

Videos are the unit of matching and scoring. SoccerNet games are imported as one video per half
(the ground-truth events carry ``game`` and ``half`` in their metadata), so every half is scored
on its own grid, as the official evaluation does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from jobs.detections import DETECTION_COLUMNS, Detection, detections_from_arrow
from jobs.ensemble import FusedEvent, FusionOptions, Group, check_models, fuse, match_models
from jobs.spotting_metrics import (
    LOOSE_DELTAS_S,
    SOCCERNET_V2_CLASSES,
    TIGHT_DELTAS_S,
    AverageMAP,
    Counts,
    TruthMatch,
    average_map,
    counts_per_label,
    match_to_truth,
)
from tables.ensemble_results import (
    OVERALL,
    SCOPE_GROUND_TRUTH,
    SCOPE_MODELS,
    MatchRow,
    MetricRow,
    write_matches,
    write_metrics,
)
from tables.events import GROUND_TRUTH, Event, open_events, scope_filter, write_events


@dataclass
class EnsembleOptions:
    """Everything that defines a run (its id defaults to a hash of the rest)."""

    models: Sequence[str]
    ground_truth: str = GROUND_TRUTH
    tolerance_s: float = 3.0
    where: str | None = None
    name: str = "ensemble"
    run_id: str | None = None
    weights: Mapping[str, float] | None = None
    nms: str = "hard"
    nms_window_s: float | None = None  # default: the tolerance
    soft_nms_sigma: float = 0.5
    min_confidence: float = 0.0
    classes: Sequence[str] = SOCCERNET_V2_CLASSES
    score: bool = True

    def fusion(self) -> FusionOptions:
        """The fusion settings of this run."""
        window = self.tolerance_s if self.nms_window_s is None else self.nms_window_s
        return FusionOptions(self.name, dict(self.weights or {}), self.nms, window, self.soft_nms_sigma,
                             self.min_confidence)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option that is invalid."""
        models = check_models(self.models)
        if not (isinstance(self.tolerance_s, int | float) and math.isfinite(self.tolerance_s)
                and self.tolerance_s >= 0):
            raise ValueError(f"tolerance must be a number of seconds >= 0, got {self.tolerance_s!r}")
        if not self.ground_truth:
            raise ValueError("the ground-truth model name is empty")
        if self.ground_truth in models:
            raise ValueError(f"the ground truth '{self.ground_truth}' cannot also be an input model")
        if self.name == self.ground_truth:
            raise ValueError(f"the ensemble cannot be named like the ground truth '{self.ground_truth}'")
        self.fusion().check(models)
        if self.run_id is not None and not self.run_id.strip():
            raise ValueError("the run id is empty")
        if not self.classes or len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise ValueError(f"the class list must be non-empty names without duplicates, got {list(self.classes)}")

    def params(self) -> dict[str, Any]:
        """The options as JSON-serialisable values (without the run id)."""
        return {
            "models": list(self.models), "ground_truth": self.ground_truth, "tolerance_s": self.tolerance_s,
            "where": self.where, "name": self.name,
            "weights": {m: self.fusion().weight(m) for m in self.models}, "nms": self.nms,
            "nms_window_s": self.fusion().window_s, "soft_nms_sigma": self.soft_nms_sigma,
            "min_confidence": self.min_confidence, "classes": list(self.classes), "score": self.score,
        }

    def resolved_run_id(self) -> str:
        """``run_id``, or ``<name>-<hash of the options>`` so re-running the same analysis replaces it."""
        if self.run_id:
            return self.run_id
        digest = hashlib.sha1(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.name}-{digest}"


@dataclass
class ModelScore:
    """The scores of one model (or the ensemble) against the ground truth."""

    model: str
    match: TruthMatch
    per_label: dict[str, Counts]
    tight: AverageMAP
    loose: AverageMAP


@dataclass
class EnsembleResult:
    """What one run read, computed and wrote."""

    run_id: str
    options: EnsembleOptions
    inputs: dict[str, list[Detection]]
    truths: list[Detection]
    groups: list[Group]
    fused: list[FusedEvent]
    fused_detections: list[Detection]
    scores: dict[str, ModelScore] = field(default_factory=dict)
    metrics: list[MetricRow] = field(default_factory=list)
    match_rows: list[MatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)  # seconds per phase of run_ensemble
    #: per model (ground truth included): events per label outside the class list
    outside_classes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: videos with events of the input models but no ground truth (matched and fused, not scored)
    unscored_videos: list[str] = field(default_factory=list)

    @property
    def scored_models(self) -> list[str]:
        """The input models followed by the ensemble."""
        return [*self.options.models, self.options.name]

    @property
    def scored_videos(self) -> list[str]:
        """The videos with ground truth (the ones scored)."""
        return sorted({g.video_id for g in self.truths})

    def category_counts(self) -> dict[str, int]:
        """Input events per cross-model category."""
        counts: Counter[str] = Counter()
        for g in self.groups:
            counts[g.category] += len(g.members)
        return dict(sorted(counts.items()))


_LANCE_LOCATION = re.compile(r",\s*/\S+\.rs:\d+:\d+\s*$")


def _models_present(table: Any) -> list[str]:
    if table.count_rows() == 0:
        return []
    column = table.to_lance().to_table(columns=["model"]).column("model")
    return sorted(pc.unique(column).to_pylist())


def load_events(conn: Any, options: EnsembleOptions) -> tuple[dict[str, list[Detection]], list[Detection], list[str]]:
    """The input models' events and the ground truth, read from ``events`` with ``options.where``.

    Returns ``(events per model, ground truth, notes)``. Raises ``LookupError`` without an
    ``events`` table and ``ValueError`` for unknown models, a bad filter or missing ground truth.
    """
    table = open_events(conn, create=False)
    present = _models_present(table)
    unknown = [m for m in options.models if m not in present]
    if unknown:
        raise ValueError(f"unknown models {unknown}: the events table has {present or 'no events'}")
    if options.score and options.ground_truth not in present:
        raise ValueError(f"no ground truth to score against: no events of model '{options.ground_truth}' "
                         f"(models present: {present})")
    wanted = [*options.models, *([options.ground_truth] if options.score else [])]
    condition = scope_filter(models=wanted)
    if options.where:
        condition = f"({condition}) AND ({options.where})"
    try:
        rows = table.to_lance().to_table(columns=DETECTION_COLUMNS, filter=condition)
    except ValueError as err:
        msg = _LANCE_LOCATION.sub("", str(err))
        raise ValueError(f"bad where filter {options.where!r} on the events table: {msg}") from None
    per_model: dict[str, list[Detection]] = {m: [] for m in wanted}
    for d in detections_from_arrow(rows):
        per_model[d.model].append(d)
    truths = per_model.pop(options.ground_truth, [])
    if options.score and not truths:
        raise ValueError(
            f"no ground truth to score against: the filter {options.where!r} leaves no events of model "
            f"'{options.ground_truth}' (ground-truth rows have no confidence: a confidence filter needs "
            f"`OR model = '{options.ground_truth}'`)")
    _check_halves(truths)
    for model, items in per_model.items():
        missing = [d.event_id for d in items if d.confidence is None]
        if missing:
            raise ValueError(f"{len(missing)} events of model '{model}' have no confidence (e.g. {missing[0]})")
    notes = [f"model '{m}' has no events in scope" for m, items in per_model.items() if not items]
    return per_model, truths, notes


def _check_halves(truths: Sequence[Detection]) -> None:
    """Each video must be one half of one game when the ground truth says which."""
    seen: dict[str, set[tuple[str | None, int | None]]] = {}
    for g in truths:
        if g.game is not None or g.half is not None:
            seen.setdefault(g.video_id, set()).add((g.game, g.half))
    for video, keys in seen.items():
        if len(keys) > 1:
            raise ValueError(f"ground truth of video '{video}' names several game halves {sorted(keys, key=str)}: "
                             "each video must hold one half")


def _model_rows(run_id: str, groups: Sequence[Group]) -> list[MatchRow]:
    rows = []
    for g in groups:
        for d in g.members:
            others = [o for o in g.members if o is not d]
            lead = max(others, key=lambda o: o.confidence or 0.0) if others else None
            rows.append(MatchRow(
                run_id, SCOPE_MODELS, d.video_id, d.model, d.label, d.event_id, d.time_s, d.confidence,
                g.category, g.group_id, g.models, [o.event_id for o in others], [o.label for o in others],
                None if lead is None else lead.time_s,
            ))
    return rows


def _truth_rows(run_id: str, model: str, match: TruthMatch) -> list[MatchRow]:
    rows = []
    for p, g in match.pairs:
        rows.append(MatchRow(run_id, SCOPE_GROUND_TRUTH, p.video_id, model, p.label, p.event_id, p.time_s,
                             p.confidence, "tp", None, [model], [g.event_id], [g.label], g.time_s))
    for p in match.false_positives:
        rows.append(MatchRow(run_id, SCOPE_GROUND_TRUTH, p.video_id, model, p.label, p.event_id, p.time_s,
                             p.confidence, "fp", None, [model]))
    for g in match.missed:
        rows.append(MatchRow(run_id, SCOPE_GROUND_TRUTH, g.video_id, model, g.label, g.event_id, g.time_s,
                             None, "fn", None, [model]))
    return rows


def score_model(model: str, predictions: Sequence[Detection], truths: Sequence[Detection],
                options: EnsembleOptions) -> ModelScore:
    """P/R/F1 at the tolerance and tight / loose average-mAP of one model on the scored videos."""
    videos = {g.video_id for g in truths}
    preds = [p for p in predictions if p.video_id in videos]
    match = match_to_truth(preds, truths, options.tolerance_s)
    tight = average_map(truths, preds, options.classes, TIGHT_DELTAS_S)
    loose = average_map(truths, preds, options.classes, LOOSE_DELTAS_S)
    return ModelScore(model, match, counts_per_label(match), tight, loose)


def metric_rows(run_id: str, score: ModelScore, options: EnsembleOptions, params: str) -> list[MetricRow]:
    """``ensemble_metrics`` rows of one model: every class of the list, other labels seen, and overall."""
    labels = list(options.classes) + sorted(set(score.per_label) - set(options.classes))
    rows = []

    def row(label: str, c: Counts, aps: list[float | None]) -> MetricRow:
        return MetricRow(run_id, score.model, label, options.ground_truth, float(options.tolerance_s),
                         c.tp + c.fp, c.tp + c.fn, c.tp, c.fp, c.fn, c.precision, c.recall, c.f1, *aps,
                         params=params)

    for label in labels:
        c = score.per_label.get(label, Counts())
        in_list = label in options.classes
        aps = [m.get(label) if in_list else None for m in (
            score.tight.per_class, score.loose.per_class, score.tight.per_class_visible,
            score.loose.per_class_visible, score.tight.per_class_unshown, score.loose.per_class_unshown)]
        rows.append(row(label, c, aps))
    total = sum(score.per_label.values(), Counts())
    rows.append(row(OVERALL, total, [score.tight.overall, score.loose.overall, score.tight.visible,
                                     score.loose.visible, score.tight.unshown, score.loose.unshown]))
    return rows


def _fused_event(e: FusedEvent, d: Detection, run_id: str) -> Event:
    details = "fused from " + ", ".join(f"{s.model} {s.confidence:.3f} at {s.time_s:.3f}s" for s in e.sources)
    return Event(video_id=d.video_id, model=d.model, time_s=d.time_s, label=d.label, team=d.team,
                 confidence=d.confidence, details=details, run_id=run_id,
                 metadata={"sources": [s.event_id for s in e.sources], "source_models": [s.model for s in e.sources],
                           "category": e.category})


def outside_class_list(events: dict[str, Sequence[Detection]], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per model, the number of events per label that is not in ``classes`` (models without any left out)."""
    known = set(classes)
    out = {}
    for model, items in events.items():
        counts = Counter(d.label for d in items if d.label not in known)
        if counts:
            out[model] = dict(sorted(counts.items()))
    return out


def coverage_notes(result: EnsembleResult) -> list[str]:
    """Notes on labels outside the class list, videos without ground truth and models silent on a video."""
    notes = []
    for model, counts in result.outside_classes.items():
        listed = ", ".join(f"'{label}' {n}" for label, n in counts.items())
        notes.append(f"{model}: {sum(counts.values())} events with labels outside the class list ({listed}): "
                     "counted in precision / recall / F1, excluded from average-mAP")
    if result.unscored_videos:
        shown = ", ".join(result.unscored_videos[:5]) + (" ..." if len(result.unscored_videos) > 5 else "")
        notes.append(f"{len(result.unscored_videos)} videos have no ground truth ({shown}): "
                     "agreement and fusion only, not scored")
    videos = sorted({d.video_id for m in result.options.models for d in result.inputs[m]})
    for model in result.options.models:
        silent = len(videos) - len({d.video_id for d in result.inputs[model]})
        if result.inputs[model] and silent:
            notes.append(f"model '{model}' has no events on {silent} of {len(videos)} videos: "
                         f"the other models' events there are only_<model> and fused with {model} as 0")
    return notes


def run_ensemble(conn: Any, options: EnsembleOptions, write: bool = True) -> EnsembleResult:
    """Run the analysis; with ``write``, store the fused events and the result tables.

    Re-running with the same run id replaces that run's fused events and result rows.
    """
    options.check()
    run_id = options.resolved_run_id()
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    per_model, truths, notes = load_events(conn, options)
    lap("read")
    models = list(options.models)
    inputs = [d for m in models for d in per_model[m]]
    groups = match_models(inputs, models, options.tolerance_s)
    lap("match")
    fused = fuse(groups, models, options.fusion())
    fused_detections = [e.detection(options.name, run_id) for e in fused]
    lap("fuse")
    result = EnsembleResult(run_id, options, per_model, truths, groups, fused, fused_detections, notes=notes,
                            timings_s=timings)
    params = json.dumps(options.params(), sort_keys=True)

    result.match_rows = _model_rows(run_id, groups)
    if options.score:
        for model in result.scored_models:
            preds = fused_detections if model == options.name else per_model[model]
            score = score_model(model, preds, truths, options)
            result.scores[model] = score
            result.match_rows.extend(_truth_rows(run_id, model, score.match))
            result.metrics.extend(metric_rows(run_id, score, options, params))
    if options.score:
        scored = set(result.scored_videos)
        predictions = {m: [d for d in (fused_detections if m == options.name else per_model[m]) if d.video_id in scored]
                       for m in result.scored_models}
        result.outside_classes = outside_class_list({options.ground_truth: truths, **predictions}, options.classes)
        result.unscored_videos = sorted({d.video_id for m in models for d in per_model[m]}
                                        - set(result.scored_videos))
    result.notes.extend(coverage_notes(result))
    lap("score")
    if write:
        events = open_events(conn)
        result.written["events"] = write_events(
            events, [_fused_event(e, d, run_id) for e, d in zip(fused, fused_detections, strict=True)],
            replace_scope=scope_filter(models=[options.name], run_id=run_id))
        result.written["ensemble_matches"] = write_matches(conn, run_id, result.match_rows)
        result.written["ensemble_metrics"] = write_metrics(conn, run_id, result.metrics)
        lap("write")
    return result
