"""One ensemble analysis run over the ``events`` table: read, match, fuse, score, write.

:func:`run_ensemble` is what ``vw ensemble`` calls. It reads the events of the chosen models (and
of the ground truth) with an optional SQL filter, groups them across models
(:mod:`jobs.ensemble.matching`), fuses them into a new model written back to ``events`` under the
run id (:mod:`jobs.ensemble.fusion`), scores every model and the ensemble against the ground truth
(:mod:`jobs.ensemble.metrics`) and writes ``ensemble_matches`` / ``ensemble_metrics``
(:mod:`jobs.ensemble.rows`, :mod:`tables.ensemble_results`). The options are
:class:`~jobs.ensemble.options.EnsembleOptions`; :class:`EnsembleResult` is what a run returns.

Videos are the unit of matching and scoring. SoccerNet games are imported as one video per half
(the ground-truth events carry ``game`` and ``half`` in their metadata), so every half is scored
on its own grid, as the official evaluation does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.ensemble.errors import EnsembleDataError, EnsembleOptionsError
from jobs.ensemble.frame import EventFrame, frame_from_arrow
from jobs.ensemble.fusion import Fused, fuse_matching
from jobs.ensemble.heap import retained_heap
from jobs.ensemble.matching import DISAGREE, FIXED_CATEGORIES, Group, Matching, match_frame
from jobs.ensemble.metrics import (
    LOOSE_DELTAS_S,
    TIGHT_DELTAS_S,
    AverageMAP,
    Counts,
    TruthClaims,
    average_maps,
    claim_truths,
)
from jobs.ensemble.options import EnsembleOptions
from jobs.ensemble.records import DETECTION_COLUMNS, Detection
from jobs.ensemble.rows import fused_event_rows, model_match_rows, truth_match_rows
from tables.connection import lance_error_text
from tables.ensemble_results import (
    MATCHES_SCHEMA,
    OVERALL,
    SCOPE_GROUND_TRUTH,
    SCOPE_MODELS,
    MatchesWriter,
    MetricRow,
    write_metrics,
)
from tables.events import open_events, scope_filter, staged_events


@dataclass
class ModelScore:
    """The scores of one model (or the ensemble) against the ground truth."""

    model: str
    claims: TruthClaims
    per_label: dict[str, Counts]
    tight: AverageMAP
    loose: AverageMAP


@dataclass
class VideoEvents:
    """What one video's picture shows: events per row name, cross-model groups, true positives."""

    events: dict[str, list[Detection]]
    groups: list[Group]
    pairs: dict[str, list[tuple[Detection, Detection]]]  # per model: (prediction, ground truth)


@dataclass
class EnsembleResult:
    """What one run read, computed and wrote (as columns; records on demand)."""

    run_id: str
    options: EnsembleOptions
    input_frame: EventFrame  # events of the input models (model codes in options.models order)
    truth_frame: EventFrame
    matching: Matching
    fused: Fused  # the ensemble model's events with the input events each was fused from
    fused_frame: EventFrame  # the ensemble model's events with their event ids
    scores: dict[str, ModelScore] = field(default_factory=dict)
    metrics: list[MetricRow] = field(default_factory=list)
    matches: pa.Table = field(default_factory=MATCHES_SCHEMA.empty_table)
    notes: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)  # seconds per phase of run_ensemble
    #: per model (ground truth included): events per label outside the class list
    outside_classes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: videos with events of the input models but no ground truth (matched and fused, not scored)
    unscored_videos: list[str] = field(default_factory=list)

    @property
    def single(self) -> bool:
        """True when one model is scored alone (no ensemble is made of it)."""
        return len(self.options.models) == 1

    @property
    def scored_models(self) -> list[str]:
        """The input models followed by the ensemble (the model alone when there is one)."""
        return list(self.options.models) if self.single else [*self.options.models, self.options.fusion.name]

    @cached_property
    def scored_videos(self) -> list[str]:
        """The videos with ground truth (the ones scored)."""
        return self.truth_frame.video_ids()

    def event_counts(self) -> dict[str, int]:
        """Events per input model."""
        counts = np.bincount(self.input_frame.model, minlength=len(self.options.models))
        return {m: int(n) for m, n in zip(self.options.models, counts.tolist(), strict=True)}

    def input_videos(self) -> list[str]:
        """The videos with events of the input models."""
        return self.input_frame.video_ids()

    def category_counts(self) -> dict[str, int]:
        """Input events per cross-model category."""
        return self.matching.category_counts()

    @cached_property
    def inputs(self) -> dict[str, list[Detection]]:
        """Events per input model as records (millions of events make millions of records)."""
        out: dict[str, list[Detection]] = {m: [] for m in self.options.models}
        for d in self.input_frame.detections():
            out[d.model].append(d)
        return out

    @cached_property
    def truths(self) -> list[Detection]:
        """The ground truth as records."""
        return self.truth_frame.detections()

    @cached_property
    def groups(self) -> list[Group]:
        """Every cross-model group as a record."""
        return self.matching.groups()

    @cached_property
    def fused_detections(self) -> list[Detection]:
        """The ensemble's events as records of the ensemble model."""
        return self.fused_frame.detections()

    def disagreement_groups(self) -> np.ndarray:
        """Numbers of the groups whose members disagree on the label."""
        return np.flatnonzero(self.matching.category == FIXED_CATEGORIES.index(DISAGREE))

    def video_events(self, video_id: str) -> VideoEvents:
        """The events, groups and true positives of one video (for its timeline)."""
        code = self.input_frame.vocab.video_code(video_id)
        opts = self.options
        events = {opts.ground_truth: self.truth_frame.detections(np.flatnonzero(self.truth_frame.video == code))}
        for i, m in enumerate(opts.models):
            events[m] = self.input_frame.detections(
                np.flatnonzero((self.input_frame.video == code) & (self.input_frame.model == i)))
        events[opts.fusion.name] = self.fused_frame.detections(np.flatnonzero(self.fused_frame.video == code))
        m = self.matching
        first = m.members[m.starts[:-1]]
        groups = m.groups(np.flatnonzero((self.input_frame.video[first] == code) & (m.sizes > 1)))
        pairs = {}
        for model, score in self.scores.items():
            c = score.claims
            hit = np.flatnonzero((c.predictions.video == code) & (c.claimed >= 0))
            pairs[model] = list(zip(c.predictions.detections(hit), c.truths.detections(c.claimed[hit]), strict=True))
        return VideoEvents(events, groups, pairs)


def _models_present(table: Any) -> list[str]:
    if table.count_rows() == 0:
        return []
    column = table.to_lance().to_table(columns=["model"]).column("model")
    return sorted(pc.unique(column).to_pylist())


def _check_models_present(table: Any, options: EnsembleOptions) -> None:
    """Raise :class:`~jobs.ensemble.errors.EnsembleOptionsError` when an input model (or the ground
    truth to score against) has no events in the whole table."""
    present = _models_present(table)
    unknown = [m for m in options.models if m not in present]
    if unknown:
        raise EnsembleOptionsError(f"unknown models {unknown}: the events table has {present or 'no events'}")
    if options.score and options.ground_truth not in present:
        raise EnsembleOptionsError(f"no ground truth to score against: no events of model "
                                   f"'{options.ground_truth}' (models present: {present})")


def _check_one_run_per_model(table: Any, models: Sequence[str], condition: str) -> None:
    """Raise :class:`~jobs.ensemble.errors.EnsembleOptionsError` when an input model has events of several
    runs in scope (two ensemble runs both write their fused events as the ensemble's name, say)."""
    rows = table.to_lance().to_table(columns=["model", "run_id"], filter=f"({condition}) AND ({scope_filter(models)})")
    pairs = pa.TableGroupBy(rows, ["model", "run_id"]).aggregate([]).to_pylist()
    runs: dict[str, list[str]] = {}
    for pair in pairs:
        runs.setdefault(pair["model"], []).append(pair["run_id"] or "")
    for model in models:
        found = sorted(runs.get(model, []))
        if len(found) > 1:
            raise EnsembleOptionsError(
                f"model '{model}' has events of {len(found)} runs in scope ({', '.join(map(repr, found))}): choose "
                f"one, e.g. --where \"model != '{model}' OR run_id = '{found[0]}'\", or delete the others with "
                f"`vw events --delete --models {model} --where \"run_id = '...'\"`")


def load_events(conn: Any, options: EnsembleOptions) -> tuple[EventFrame, EventFrame, list[str]]:
    """The input models' events and the ground truth, read from ``events`` with ``options.where``.

    Returns ``(input events, ground truth, notes)`` as frames sharing one vocabulary. Raises
    :class:`~udfs.errors.NotFoundError` (a ``LookupError``) without an ``events`` table,
    :class:`~jobs.ensemble.errors.EnsembleOptionsError` for unknown models, a bad filter or missing
    ground truth and :class:`~jobs.ensemble.errors.EnsembleDataError` for events that cannot be
    analysed (all ``ValueError``).
    """
    table = open_events(conn, create=False)
    wanted = [*options.models, *([options.ground_truth] if options.score else [])]
    condition = scope_filter(models=wanted)
    if options.where:
        condition = f"({condition}) AND ({options.where})"
    try:
        rows = table.to_lance().to_table(columns=DETECTION_COLUMNS, filter=condition)
    except ValueError as err:
        _check_models_present(table, options)
        msg = lance_error_text(err, limit=2000)
        raise EnsembleOptionsError(f"bad where filter {options.where!r} on the events table: {msg}") from None
    _check_one_run_per_model(table, options.models, condition)
    frame = frame_from_arrow(rows, wanted, ground_truth=options.ground_truth if options.score else None)
    if not np.bincount(frame.model, minlength=len(wanted)).all():
        _check_models_present(table, options)  # some model has no rows in scope: is it in the table at all?
    n_models = len(options.models)
    # game and half come from the ground truth's metadata: the input models' events carry neither
    inputs = replace(replace(frame, game=None, half=None).take(np.flatnonzero(frame.model < n_models)),
                     models=tuple(options.models))
    truth_rows = np.flatnonzero(frame.model == n_models)
    truths = replace(frame.take(truth_rows), models=(options.ground_truth,))
    truths.model = np.zeros(len(truths), dtype=np.int32)
    if options.score and len(truths) == 0:
        raise EnsembleOptionsError(
            f"no ground truth to score against: the filter {options.where!r} leaves no events of model "
            f"'{options.ground_truth}' (ground-truth rows have no confidence: a confidence filter needs "
            f"`OR model = '{options.ground_truth}'`)")
    _check_halves(truths)
    counts = np.bincount(inputs.model, minlength=n_models)
    for i, model in enumerate(options.models):
        missing = np.flatnonzero(np.isnan(inputs.conf) & (inputs.model == i))
        if missing.size:
            first = inputs.event_id.take(pa.array(missing[:1])).to_pylist()[0]
            raise EnsembleDataError(f"{missing.size} events of model '{model}' have no confidence (e.g. {first})")
    notes = [f"model '{m}' has no events in scope" for m, n in zip(options.models, counts.tolist(), strict=True)
             if not n]
    return inputs, truths, notes


def _check_halves(truths: EventFrame) -> None:
    """Each video must be one half of one game when the ground truth says which."""
    if truths.game is None or truths.half is None:
        return
    seen: dict[int, set[tuple[str | None, int | None]]] = {}
    for video, game, half in zip(truths.video.tolist(), truths.game.to_pylist(), truths.half.tolist(), strict=True):
        if game is not None or half >= 0:
            seen.setdefault(video, set()).add((game, half if half >= 0 else None))
    for video, keys in seen.items():
        if len(keys) > 1:
            raise EnsembleDataError(f"ground truth of video '{truths.vocab.videos[video]}' names several game halves "
                             f"{sorted(keys, key=str)}: each video must hold one half")


def _in_scored_videos(frame: EventFrame, truths: EventFrame) -> EventFrame:
    scored = np.zeros(len(truths.vocab.videos), dtype=bool)
    scored[truths.video] = True
    inside = scored[frame.video]
    return frame if inside.all() else frame.take(np.flatnonzero(inside))


def score_model(model: str, predictions: EventFrame, truths: EventFrame, options: EnsembleOptions) -> ModelScore:
    """P/R/F1 at the tolerance and tight / loose average-mAP of one model on the scored videos."""
    preds = _in_scored_videos(predictions, truths)
    claims = claim_truths(preds, truths, options.tolerance_s)
    tight, loose = average_maps(truths, preds, options.classes, [TIGHT_DELTAS_S, LOOSE_DELTAS_S])
    return ModelScore(model, claims, claims.counts_per_label(), tight, loose)


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


def _outside(frame: EventFrame, classes: Sequence[str]) -> dict[str, int]:
    known = set(classes)
    counts = np.bincount(frame.label, minlength=len(frame.vocab.labels))
    return {label: int(n) for label, n in zip(frame.vocab.labels, counts.tolist(), strict=True)
            if n and label not in known}


def outside_class_list(frames: Mapping[str, EventFrame], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per model, the number of events per label that is not in ``classes`` (models without any left out)."""
    out = {}
    for model, frame in frames.items():
        counts = _outside(frame, classes)
        if counts:
            out[model] = counts
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
    frame = result.input_frame
    videos = len(np.unique(frame.video))
    for i, model in enumerate(result.options.models):
        own = np.unique(frame.video[frame.model == i])
        silent = videos - len(own)
        if len(own) and silent:
            notes.append(f"model '{model}' has no events on {silent} of {videos} videos: "
                         f"the other models' events there are only_<model> and fused with {model} as 0")
    return notes


def _model_events(inputs: EventFrame, i: int, model: str) -> EventFrame:
    """The events of input model ``i`` as a frame of that model alone."""
    preds = replace(inputs.take(np.flatnonzero(inputs.model == i)), models=(model,))
    preds.model = np.zeros(len(preds), dtype=np.int32)
    return preds


def run_ensemble(conn: Any, options: EnsembleOptions, write: bool = True) -> EnsembleResult:
    """Run the analysis; with ``write``, store the fused events and the result tables.

    Re-running with the same run id replaces that run's fused events and result rows. Scoring the
    input models, building result rows and writing their data files run on a thread pool while
    matching and fusion go on (the compiled kernels, Arrow and Lance release the GIL). Nothing
    becomes visible in a table before every part of the analysis has succeeded: the tables are
    committed at the end, ``events`` first, then ``ensemble_matches`` and ``ensemble_metrics``.
    ``timings_s`` gives the seconds from the end of one phase to the end of the next (read,
    match, fuse, score, write); work of later phases overlaps earlier ones.
    """
    options.check()
    with retained_heap():  # millions of events make many large temporary arrays
        return _run(conn, options, write)


def _run(conn: Any, options: EnsembleOptions, write: bool) -> EnsembleResult:
    run_id = options.resolved_run_id()
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    inputs, truths, notes = load_events(conn, options)
    lap("read")
    matches_writer = MatchesWriter(conn, run_id) if write else None
    name = options.fusion.name
    single = len(options.models) == 1  # one model is scored alone: nothing is fused or written to `events`
    events_writer = staged_events(open_events(conn), scope_filter(models=[name], run_id=run_id)) \
        if write and not single else None
    parts: dict[tuple[str, str], pa.Table] = {}  # (scope, model): ensemble_matches rows
    writes: list[Future] = []

    # one more worker than cores: writing parts must not wait behind scoring
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:

        def keep(part: tuple[str, str], rows: pa.Table) -> None:
            parts[part] = rows
            if matches_writer is not None:
                writes.append(pool.submit(matches_writer.add, rows))

        def scored(model: str, preds: EventFrame) -> ModelScore:
            score = score_model(model, preds, truths, options)
            keep((SCOPE_GROUND_TRUTH, model), truth_match_rows(run_id, model, score.claims))
            return score

        scoring = {m: pool.submit(scored, m, _model_events(inputs, i, m))
                   for i, m in enumerate(options.models)} if options.score else {}
        matching = match_frame(inputs, options.tolerance_s)
        lap("match")
        model_rows = pool.submit(lambda: keep((SCOPE_MODELS, ""), model_match_rows(run_id, matching)))
        fused = fuse_matching(matching, options.fusion)
        fused_frame = fused.frame(name, run_id)  # the event ids hash every fused event
        lap("fuse")
        if options.score and not single:
            scoring[name] = pool.submit(scored, name, fused_frame)
        if events_writer is not None:
            writes.append(pool.submit(events_writer.add, fused_event_rows(fused, fused_frame, run_id)))
        result = EnsembleResult(run_id, options, inputs, truths, matching, fused, fused_frame, notes=notes,
                                timings_s=timings)
        params = json.dumps(options.params(), sort_keys=True)
        for model in result.scored_models if options.score else []:
            result.scores[model] = scoring[model].result()
            result.metrics.extend(metric_rows(run_id, result.scores[model], options, params))
        model_rows.result()
        result.matches = pa.concat_tables([parts[SCOPE_MODELS, ""],
                                           *(parts[SCOPE_GROUND_TRUTH, m] for m in result.scores)])
        if options.score:
            frames = {options.ground_truth: truths,
                      **{m: result.scores[m].claims.predictions for m in result.scored_models}}
            result.outside_classes = outside_class_list(frames, options.classes)
            result.unscored_videos = sorted(set(result.input_videos()) - set(result.scored_videos))
        result.notes.extend(coverage_notes(result))
        lap("score")
        for job in writes:  # every part is written (or kept, for a run written before) ...
            job.result()
        if matches_writer is not None:  # ... before any is committed
            if events_writer is not None:
                result.written["events"] = events_writer.commit()
            result.written["ensemble_matches"] = matches_writer.commit()
            result.written["ensemble_metrics"] = write_metrics(conn, run_id, result.metrics)
            lap("write")
    return result
