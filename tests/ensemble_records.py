"""The ensemble analysis one record per event: the object-per-event API the tests use.

The analysis (:mod:`jobs.ensemble`) computes on columns; these functions take and return
:class:`~jobs.ensemble.records.Detection` / :class:`FusedEvent` records and run the columnar
implementation underneath, so hand-written cases read naturally and
``tests/ensemble_reference.py`` (the plain implementation) can be compared with the real one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from jobs.ensemble.frame import Vocab, frame_from_detections, shared_vocab
from jobs.ensemble.fusion import Fused, fuse_matching
from jobs.ensemble.kernels import bucket_starts, hard_nms, soft_nms
from jobs.ensemble.matching import BOTH, Group, Matching, category_names, match_frame, only
from jobs.ensemble.metrics import Counts, TruthClaims, claim_truths
from jobs.ensemble.options import FusionOptions, NmsMode, check_models, check_tolerance
from jobs.ensemble.records import DETECTION_COLUMNS, NOT_SHOWN, Detection, parse_half, parse_metadata
from udfs.errors import check_choice

#: What an unset NMS window stands for when fusing groups made elsewhere (they do not record the
#: tolerance they were matched with): the default tolerance of a run.
DEFAULT_TOLERANCE_S = 3.0


# ---------------------------------------------------------------- reading events


def detections_from_arrow(table: pa.Table) -> list[Detection]:
    """Rows of ``events`` (at least :data:`~jobs.ensemble.records.DETECTION_COLUMNS`) as detections.

    Raises ``ValueError`` naming the event when its time is negative or not finite, or its
    metadata is not a JSON object.
    """
    missing = [c for c in DETECTION_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"events rows lack the columns {missing}")
    out = []
    for row in table.select(DETECTION_COLUMNS).to_pylist():
        eid = row["event_id"]
        time_s = float(row["time_s"])
        if not math.isfinite(time_s) or time_s < 0:
            raise ValueError(f"event {eid} ({row['model']} on {row['video_id']}): time_s must be >= 0, got {time_s}")
        conf = row["confidence"]
        if conf is not None and not math.isfinite(conf):
            raise ValueError(f"event {eid} ({row['model']} on {row['video_id']}): confidence is {conf}")
        meta = parse_metadata(row["metadata"], eid)
        game = meta.get("game")
        out.append(Detection(
            event_id=eid,
            video_id=row["video_id"],
            model=row["model"],
            time_s=time_s,
            label=row["label"],
            confidence=conf,
            team=row["team"],
            visible=meta.get("visibility") != NOT_SHOWN,
            game=None if game is None else str(game),
            half=parse_half(meta.get("half"), eid),
            run_id=row["run_id"],
        ))
    return out


# ---------------------------------------------------------------- matching


def match_models(detections: Iterable[Detection], models: Sequence[str], tolerance_s: float) -> list[Group]:
    """Group the events of ``models`` across models (see :mod:`jobs.ensemble.matching`).

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
class FusedEvent:
    """One event of the ensemble model and the events it was fused from."""

    video_id: str
    label: str
    time_s: float
    confidence: float
    team: str | None
    sources: list[Detection] = field(default_factory=list)
    category: str = ""


def fused_events(fused: Fused, which: np.ndarray | None = None) -> list[FusedEvent]:
    """Fused events (all, or those at ``which``) as :class:`FusedEvent` records."""
    names = category_names(fused.inputs.models)
    which = np.arange(len(fused)) if which is None else np.asarray(which, dtype=np.int64)
    teams = fused.team.take(pa.array(which, pa.int64())).to_pylist()
    out = []
    for j, i in enumerate(which.tolist()):
        src = fused.sources[fused.source_starts[i]:fused.source_starts[i + 1]]
        out.append(FusedEvent(fused.inputs.vocab.videos[fused.video[i]], fused.inputs.vocab.labels[fused.label[i]],
                              float(fused.time[i]), float(fused.conf[i]), teams[j], fused.inputs.detections(src),
                              names[fused.category[i]]))
    return out


def _matching_of(groups: Sequence[Group], models: Sequence[str], tolerance_s: float) -> Matching:
    """A :class:`~jobs.ensemble.matching.Matching` holding ``groups`` as they are."""
    members = [d for g in groups for d in g.members]
    frame = frame_from_detections(members, models, shared_vocab(members))
    sizes = [len(g.members) for g in groups]
    group = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
    names = category_names(models)
    category = np.array([names.index(g.category) for g in groups], dtype=np.int64)
    order = np.lexsort((frame.model, group))
    return Matching(frame, group, category, order, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                    tolerance_s)


def fuse_group(members: Sequence[Detection], models: Sequence[str], options: FusionOptions,
               category: str = "") -> FusedEvent:
    """The weighted-mean candidate of one agreement group (members share one label)."""
    labels = {d.label for d in members}
    if len(labels) != 1:
        raise ValueError(f"a fused group needs one label, got {sorted(labels)}")
    models = check_models(models)
    group = Group(0, members[0].video_id, list(members), category or (BOTH if len(members) > 1
                                                                        else only(members[0].model)))
    no_nms = FusionOptions(options.name, options.weights, "none", options.nms_window_s, options.soft_nms_sigma,
                           -sys.float_info.max)
    fused = fused_events(fuse_matching(_matching_of([group], models, DEFAULT_TOLERANCE_S), no_nms))
    fused[0].category = category
    return fused[0]


def suppress(events: Sequence[FusedEvent], mode: NmsMode, window_s: float, sigma: float = 0.5) -> list[FusedEvent]:
    """Per-class non-maximum suppression over time on each video (``hard``, ``soft`` or ``none``)."""
    check_choice(mode, NmsMode, "nms")
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


def fuse(groups: Sequence[Group], models: Sequence[str], options: FusionOptions,
         tolerance_s: float = DEFAULT_TOLERANCE_S) -> list[FusedEvent]:
    """The ensemble model's events from the groups of :func:`match_models`.

    Agreement groups and lone events become candidates; members of a disagreeing group are
    candidates of their own labels. Candidates go through NMS (an unset window: ``tolerance_s``),
    then those under ``options.min_confidence`` are dropped. Returned in order of video and time.
    """
    models = check_models(models)
    options.check(models, tolerance_s)
    return fused_events(fuse_matching(_matching_of(groups, models, tolerance_s), options))


# ---------------------------------------------------------------- matching to the ground truth


@dataclass
class TruthMatch:
    """Predictions of one model matched one-to-one to ground truth."""

    pairs: list[tuple[Detection, Detection]] = field(default_factory=list)  # (prediction, truth)
    false_positives: list[Detection] = field(default_factory=list)
    missed: list[Detection] = field(default_factory=list)


def truth_match(claims: TruthClaims) -> TruthMatch:
    """The matching as :class:`Detection` records (pairs and false positives in matching order)."""
    preds = claims.predictions.detections(claims.order)
    claimed = claims.claimed[claims.order]
    hits = claimed[claimed >= 0]
    truths = iter(claims.truths.detections(hits))
    result = TruthMatch()
    for p, c in zip(preds, claimed.tolist(), strict=True):
        if c >= 0:
            result.pairs.append((p, next(truths)))
        else:
            result.false_positives.append(p)
    missed = claims.truth_order[~claims.used[claims.truth_order]]
    result.missed = claims.truths.detections(missed)
    return result


def match_to_truth(predictions: Sequence[Detection], truths: Sequence[Detection], tolerance_s: float) -> TruthMatch:
    """One-to-one greedy matching of ``predictions`` to ``truths`` per video and label.

    Predictions in descending confidence (ties: earlier time first) each claim the nearest
    unclaimed truth within ``tolerance_s`` seconds (ties: the earlier truth).
    """
    check_tolerance(tolerance_s)
    vocab = shared_vocab(predictions, truths)
    return truth_match(claim_truths(frame_from_detections(predictions, vocab=vocab),
                                    frame_from_detections(truths, vocab=vocab), tolerance_s))


def counts_per_label(match: TruthMatch) -> dict[str, Counts]:
    """TP / FP / FN per label of a :class:`TruthMatch`."""
    out: dict[str, Counts] = {}
    for p, _ in match.pairs:
        out.setdefault(p.label, Counts()).tp += 1
    for p in match.false_positives:
        out.setdefault(p.label, Counts()).fp += 1
    for g in match.missed:
        out.setdefault(g.label, Counts()).fn += 1
    return out
