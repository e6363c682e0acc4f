"""Scores of spotted events against ground truth: precision / recall / F1 at a time tolerance,
and SoccerNet's average-mAP (tight and loose).

Precision / recall / F1 work on continuous times: per video and label, predictions are taken in
descending confidence and each claims the nearest unclaimed ground-truth event within the
tolerance (inclusive); claimed pairs are true positives, the other predictions false positives,
the unclaimed ground truth false negatives.

Average-mAP follows ``SoccerNet.Evaluation.ActionSpotting`` exactly:

- each video (one half of a game) is a grid of ``framerate`` cells per second, 2 hours long;
  an event at ``t`` seconds falls in cell ``int(framerate * t)`` (clamped to the last cell);
- a class keeps one prediction per cell: the last one of its file for predictions imported from
  a file (as the official script, which overwrites cells in file order; the ``entry`` of the
  event's metadata), else the highest confidence; and one ground-truth event per cell (visible
  when any of those is);
- for each tolerance ``delta`` (seconds), ground-truth events in time order each claim the
  highest-scoring unclaimed prediction with ``|cell_pred - cell_gt| <= delta * framerate / 2``;
- precision and recall are computed at 200 confidence thresholds ``linspace(0, 1, 200)``
  (``confidence >= threshold``), AP is the 11-point interpolated precision, mAP the mean over
  *all* classes of the class list (a class without ground truth scores 0), and average-mAP
  the trapezoidal mean of mAP over the deltas: tight 1..5 s, loose 5..60 s (step 5);
- the *visible* / *unshown* variants keep the predictions whose nearest ground-truth event of
  their class (split at midpoints) is visible / not shown (a half without ground truth of a
  class counts as "not shown"), and divide by the number of visible / not-shown events; the
  overall unshown score is rescaled by 17/13 for the SoccerNet-v2 class list as the official
  script does (4 of its 17 classes have no "not shown" annotations).

Only the videos that have ground truth are scored; predictions on other videos are ignored, and
so are labels outside the class list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobs.ensemble.errors import EnsembleDataError, EnsembleOptionsError
from jobs.ensemble.frame import EventFrame, frame_from_detections, shared_vocab
from jobs.ensemble.kernels import bucket_starts, claim_cells, grouped_order, nearest_claims, nearest_truth_values
from jobs.ensemble.options import SOCCERNET_V2_CLASSES, check_tolerance
from jobs.ensemble.records import Detection

# SOCCERNET_V2_CLASSES, the official class list, is defined with the options (the default class list
# of a run) and imported from here as well.
#: Cells per second of the official evaluation grid.
SOCCERNET_FRAMERATE = 2
#: Length of one half's grid in seconds (the official vectors are 120 minutes long).
GRID_SECONDS = 120 * 60
TIGHT_DELTAS_S: tuple[int, ...] = (1, 2, 3, 4, 5)
LOOSE_DELTAS_S: tuple[int, ...] = tuple(range(5, 65, 5))
#: The official confidence thresholds and 11 recall points.
THRESHOLDS = np.linspace(0, 1, 200)
RECALL_POINTS = np.arange(11) / 10
#: The official script rescales the overall unshown score of the 17 SoccerNet-v2 classes by 17/13.
UNSHOWN_RESCALE_V2 = 17 / 13


# ---------------------------------------------------------------- precision / recall / F1


@dataclass
class Counts:
    """True positives, false positives and false negatives, with the scores they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); None without predictions."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); None without ground truth."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2 TP / (2 TP + FP + FN); None when there is neither prediction nor ground truth."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else None


def _check_scores(frame: EventFrame, rows: np.ndarray | None = None) -> None:
    """Raise :class:`~jobs.ensemble.errors.EnsembleDataError` naming the first event (of ``rows``,
    default all) without a valid score."""
    conf = frame.conf if rows is None else frame.conf[rows]
    bad = np.flatnonzero(np.isnan(conf) | (conf < 0))
    if rows is not None:
        bad = rows[bad]
    if bad.size:
        d = frame.detections(bad[:1])[0]
        if d.confidence is None:
            raise EnsembleDataError(f"event {d.event_id} of model '{d.model}' on {d.video_id} has no confidence")
        raise EnsembleDataError(f"event {d.event_id} of model '{d.model}' has a negative confidence {d.confidence}")


@dataclass
class TruthClaims:
    """Predictions matched to ground truth, as columns.

    ``claimed[i]`` is the ground-truth event (a position in ``truths``) prediction ``i`` claimed,
    ``-1`` for a false positive; ``used[j]`` says whether truth ``j`` was claimed. ``order`` is
    the order the predictions were taken in (per video and label, highest confidence first).
    """

    predictions: EventFrame
    truths: EventFrame
    claimed: np.ndarray
    used: np.ndarray
    order: np.ndarray
    truth_order: np.ndarray

    def counts_at(self, threshold: float) -> Counts:
        """TP / FP / FN over every label of the predictions with ``confidence >= threshold``.

        The claims are made in descending confidence, so dropping the less confident predictions
        leaves the claims of the others as they are: the counts at any threshold come from one pass.
        """
        keep = self.predictions.conf >= threshold
        hit = self.claimed >= 0
        tp = int(np.count_nonzero(hit & keep))
        return Counts(tp, int(np.count_nonzero(~hit & keep)), len(self.used) - tp)

    def best_f1_threshold(self) -> tuple[float, Counts]:
        """The confidence threshold with the highest overall F1 (the higher one on a tie) and its counts."""
        conf = self.predictions.conf
        if conf.size == 0:
            return 0.0, Counts(0, 0, len(self.used))
        order = np.argsort(-conf, kind="stable")
        hits = (self.claimed[order] >= 0).astype(np.int64)
        tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
        last = np.r_[np.flatnonzero(np.diff(conf[order]) != 0), conf.size - 1]  # last index of each confidence
        f1 = 2 * tp[last] / (2 * tp[last] + fp[last] + (len(self.used) - tp[last]))
        best = int(last[int(np.argmax(f1))])  # argmax takes the first maximum: the highest threshold
        return float(conf[order][best]), Counts(int(tp[best]), int(fp[best]), len(self.used) - int(tp[best]))

    def counts_per_label(self) -> dict[str, Counts]:
        """TP / FP / FN per label (labels without any left out)."""
        n_labels = len(self.predictions.vocab.labels)
        hit = self.claimed >= 0
        tp = np.bincount(self.predictions.label[hit], minlength=n_labels)
        fp = np.bincount(self.predictions.label[~hit], minlength=n_labels)
        fn = np.bincount(self.truths.label[~self.used], minlength=n_labels)
        return {self.predictions.vocab.labels[i]: Counts(int(tp[i]), int(fp[i]), int(fn[i]))
                for i in np.flatnonzero(tp + fp + fn).tolist()}


def _label_buckets(frame: EventFrame) -> np.ndarray:
    return frame.video.astype(np.int64) * max(len(frame.vocab.labels), 1) + frame.label


def claim_truths(predictions: EventFrame, truths: EventFrame, tolerance_s: float) -> TruthClaims:
    """One-to-one greedy matching of ``predictions`` to ``truths`` (same vocabulary) per video and
    label: predictions in descending confidence (ties: earlier time first) each claim the nearest
    unclaimed truth within ``tolerance_s`` seconds (ties: the earlier truth)."""
    check_tolerance(tolerance_s)
    if predictions.vocab != truths.vocab:
        raise ValueError("predictions and ground truth must share one vocabulary")
    _check_scores(predictions)
    n_buckets = max(len(truths.vocab.videos), 1) * max(len(truths.vocab.labels), 1)
    truth_order, starts = grouped_order(_label_buckets(truths), n_buckets, truths.time, np.zeros(len(truths)),
                                        truths.key)
    pred_bucket = _label_buckets(predictions)
    order, _ = grouped_order(pred_bucket, n_buckets, -predictions.conf, predictions.time, predictions.key)
    claimed = nearest_claims(order, pred_bucket, truth_order, starts, predictions.time, truths.time,
                             float(tolerance_s))
    used = np.zeros(len(truths), dtype=bool)
    used[claimed[claimed >= 0]] = True
    return TruthClaims(predictions, truths, claimed, used, order, truth_order)


# ---------------------------------------------------------------- SoccerNet average-mAP


@dataclass
class AverageMAP:
    """Average-mAP over ``deltas_s``, overall and per class, for all / visible / unshown events."""

    deltas_s: tuple[float, ...]
    overall: float
    per_class: dict[str, float]
    visible: float
    per_class_visible: dict[str, float]
    unshown: float
    per_class_unshown: dict[str, float]


def grid_cell(time_s: float, framerate: int = SOCCERNET_FRAMERATE) -> int:
    """The official grid cell of an event at ``time_s`` seconds within its half."""
    return min(int(framerate * time_s), GRID_SECONDS * framerate - 1)


def _cells(frame: EventFrame, rows: np.ndarray, class_of: np.ndarray, n_classes: int, framerate: int,
           values: np.ndarray, priority: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (video, class, cell) of ``rows``: (track = video * n_classes + class, cell, value),
    sorted by track and cell. The value is the maximum of ``values`` in the cell, or, with
    ``priority`` (per event, NaN where unknown), the value of the event of highest priority (ties
    and unknown priorities: the highest value)."""
    n_cells = GRID_SECONDS * framerate
    cell = np.minimum(np.floor(framerate * frame.time[rows]).astype(np.int64), n_cells - 1)
    track = frame.video[rows].astype(np.int64) * n_classes + class_of[frame.label[rows]]
    key = track * n_cells + cell
    if len(key) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), values[:0]
    if priority is None:
        order = np.argsort(key, kind="stable")
        starts = bucket_starts(key[order])
        best = np.maximum.reduceat(values[order], starts[:-1])
    else:
        rank = np.nan_to_num(priority[rows], nan=-np.inf)
        order = np.lexsort((values[rows], rank, key))  # by key, then priority, then value: the last one wins
        starts = bucket_starts(key[order])
        best = values[rows][order][starts[1:] - 1]
    firsts = key[order][starts[:-1]]
    return firsts // n_cells, firsts % n_cells, best


def _interpolated_aps(tp_at: np.ndarray, n_at: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    """11-point interpolated AP per class from precision / recall at the official thresholds.

    ``tp_at[c, j]`` / ``n_at[c, j]``: true positives / predictions of class ``c`` with a score
    >= ``THRESHOLDS[j]``; ``n_truth[c]``: its ground-truth events."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp_at / n_at)
        recall = np.nan_to_num(tp_at / n_truth[:, None])
    recall[n_truth == 0] = 0.0
    ap = np.zeros(len(n_truth))
    for j in RECALL_POINTS:
        reach = np.where(recall >= j, precision, -np.inf).max(axis=1)
        ap += np.where(np.isfinite(reach), reach, 0.0)
    return ap / 11


def _at_thresholds(variant_bins: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Per variant (all, visible, unshown): per class and threshold, the predictions of
    ``variant_bins`` (``(class * width + score bin) * 3 + variant``) at or above the threshold."""
    width = len(THRESHOLDS) + 1
    counts = np.bincount(variant_bins, minlength=n_classes * width * 3).reshape(n_classes, width, 3)
    at = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return [at.sum(axis=2), at[:, :, 1], at[:, :, 2]]


def _trapezoid(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])
    total = 0.0
    for a, b in zip(values, values[1:], strict=False):
        total += (a + b) / 2
    return total / (len(values) - 1)


def _check_map_args(classes: Sequence[str], deltas_s: Sequence[float]) -> None:
    if not classes:
        raise EnsembleOptionsError("average-mAP needs a non-empty class list")
    if len(set(classes)) != len(classes):
        raise EnsembleOptionsError(f"the class list has duplicates: {list(classes)}")
    if not deltas_s or any(not (d > 0) for d in deltas_s):
        raise EnsembleOptionsError(f"deltas must be positive seconds, got {list(deltas_s)}")


def average_maps(truths: EventFrame, predictions: EventFrame, classes: Sequence[str] = SOCCERNET_V2_CLASSES,
                 delta_sets: Sequence[Sequence[float]] = (TIGHT_DELTAS_S, LOOSE_DELTAS_S),
                 framerate: int = SOCCERNET_FRAMERATE) -> list[AverageMAP]:
    """SoccerNet average-mAP of ``predictions`` against ``truths`` (frames sharing one vocabulary),
    one result per set of deltas (the grid and the matching set-up are shared)."""
    for deltas_s in delta_sets:
        _check_map_args(classes, deltas_s)
    if len(truths) == 0:
        raise ValueError("average-mAP needs ground-truth events")
    if predictions.vocab != truths.vocab:
        raise ValueError("predictions and ground truth must share one vocabulary")
    n_classes = len(classes)
    position = {c: i for i, c in enumerate(classes)}
    class_of = np.array([position.get(label, -1) for label in truths.vocab.labels], dtype=np.int64)
    scored = np.zeros(len(truths.vocab.videos), dtype=bool)
    scored[truths.video] = True
    gt_rows = np.flatnonzero(class_of[truths.label] >= 0) if len(class_of) else np.zeros(0, np.int64)
    gt_track, gt_cell, gt_value = _cells(truths, gt_rows, class_of, n_classes, framerate,
                                         np.where(truths.visible, 1, -1).astype(np.int64))
    pred_rows = np.flatnonzero(scored[predictions.video] & (class_of[predictions.label] >= 0)) \
        if len(class_of) else np.zeros(0, np.int64)
    _check_scores(predictions, pred_rows)
    # one prediction per cell and class: the last of its file where it was imported from one (as the
    # official script, which overwrites the cell in file order), else the most confident
    pred_track, pred_cell, pred_score = _cells(predictions, pred_rows, class_of, n_classes, framerate,
                                               predictions.conf, predictions.order)
    n_tracks = len(truths.vocab.videos) * n_classes
    gt_starts = np.searchsorted(gt_track, np.arange(n_tracks + 1)).astype(np.int64)
    pred_starts = np.searchsorted(pred_track, np.arange(n_tracks + 1)).astype(np.int64)
    closest = nearest_truth_values(pred_track, pred_cell, gt_starts, gt_cell, gt_value)
    gt_class = gt_track % n_classes
    n_visible = np.bincount(gt_class[gt_value > 0], minlength=n_classes)
    n_unshown = np.bincount(gt_class[gt_value < 0], minlength=n_classes)
    totals = [n_visible + n_unshown, n_visible, n_unshown]
    # each prediction counts for the thresholds at or below its score, in its variant
    # (0: no ground truth near, 1: nearest one visible, 2: nearest one not shown)
    width = len(THRESHOLDS) + 1
    variant = np.where(closest > 0, 1, np.where(closest < 0, 2, 0))
    bins = ((pred_track % n_classes) * width + np.searchsorted(THRESHOLDS, pred_score, side="right")) * 3 + variant
    selected = _at_thresholds(bins, n_classes)
    results = []
    for deltas_s in delta_sets:
        per_delta = []  # per delta: per variant, AP per class
        for delta in deltas_s:
            tp = claim_cells(pred_starts, pred_cell, pred_score, gt_starts, gt_cell, delta * framerate / 2)
            per_delta.append([_interpolated_aps(hits.astype(np.float64), selected[k].astype(np.float64),
                                                totals[k].astype(np.float64))
                              for k, hits in enumerate(_at_thresholds(bins[tp], n_classes))])

        def summarise(k: int, per_delta: list = per_delta) -> tuple[float, dict[str, float]]:
            overall = _trapezoid([float(np.mean(d[k])) for d in per_delta])
            per_class = {c: _trapezoid([float(d[k][i]) for d in per_delta]) for i, c in enumerate(classes)}
            return overall, per_class

        overall, per_class = summarise(0)
        visible, per_class_visible = summarise(1)
        unshown, per_class_unshown = summarise(2)
        if tuple(classes) == SOCCERNET_V2_CLASSES and len(deltas_s) > 1:
            unshown *= UNSHOWN_RESCALE_V2
        results.append(AverageMAP(tuple(deltas_s), overall, per_class, visible, per_class_visible, unshown,
                                  per_class_unshown))
    return results


def average_map_frames(truths: EventFrame, predictions: EventFrame, classes: Sequence[str] = SOCCERNET_V2_CLASSES,
                       deltas_s: Sequence[float] = TIGHT_DELTAS_S,
                       framerate: int = SOCCERNET_FRAMERATE) -> AverageMAP:
    """SoccerNet average-mAP of ``predictions`` against ``truths`` (frames sharing one vocabulary)."""
    return average_maps(truths, predictions, classes, [deltas_s], framerate)[0]


def average_map(truths: Sequence[Detection], predictions: Sequence[Detection],
                classes: Sequence[str] = SOCCERNET_V2_CLASSES, deltas_s: Sequence[float] = TIGHT_DELTAS_S,
                framerate: int = SOCCERNET_FRAMERATE) -> AverageMAP:
    """SoccerNet average-mAP of ``predictions`` against ``truths`` (see the module docstring).

    ``truths`` define the scored videos (each one half of a game); ``classes`` is the class list
    whose mean is taken (SoccerNet-v2's 17 classes by default).
    """
    _check_map_args(classes, deltas_s)
    if not truths:
        raise ValueError("average-mAP needs ground-truth events")
    vocab = shared_vocab(truths, predictions)
    return average_map_frames(frame_from_detections(truths, vocab=vocab),
                              frame_from_detections(predictions, vocab=vocab), classes, deltas_s, framerate)
