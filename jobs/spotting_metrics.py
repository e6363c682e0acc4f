"""Scores of spotted events against ground truth: precision / recall / F1 at a time tolerance,
and SoccerNet's average-mAP (tight and loose).

Precision / recall / F1 work on continuous times: per video and label, predictions are taken in
descending confidence and each claims the nearest unclaimed ground-truth event within the
tolerance (inclusive); claimed pairs are true positives, the other predictions false positives,
the unclaimed ground truth false negatives.

Average-mAP follows ``SoccerNet.Evaluation.ActionSpotting`` exactly:

- each video (one half of a game) is a grid of ``framerate`` cells per second, 2 hours long;
  an event at ``t`` seconds falls in cell ``int(framerate * t)`` (clamped to the last cell);
- a class keeps one prediction per cell (the highest confidence; the official script keeps the
  last one of its file) and one ground-truth event per cell (visible when any of those is);
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

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jobs.detections import Detection

#: SoccerNet-v2 action classes, in the order of the official ``EVENT_DICTIONARY_V2``.
SOCCERNET_V2_CLASSES: tuple[str, ...] = (
    "Penalty", "Kick-off", "Goal", "Substitution", "Offside", "Shots on target", "Shots off target",
    "Clearance", "Ball out of play", "Throw-in", "Foul", "Indirect free-kick", "Direct free-kick",
    "Corner", "Yellow card", "Red card", "Yellow->red card",
)
#: Cells per second of the official evaluation grid.
SOCCERNET_FRAMERATE = 2
#: Length of one half's grid in seconds (the official vectors are 120 minutes long).
GRID_SECONDS = 120 * 60
TIGHT_DELTAS_S: tuple[int, ...] = (1, 2, 3, 4, 5)
LOOSE_DELTAS_S: tuple[int, ...] = tuple(range(5, 65, 5))
#: The official confidence thresholds and 11 recall points.
THRESHOLDS = np.linspace(0, 1, 200)
RECALL_POINTS = np.arange(11) / 10
#: Tolerance comparisons are inclusive up to this many seconds (times are stored to the ms).
TIME_EPS = 1e-6
#: The official script rescales the overall unshown score of the 17 SoccerNet-v2 classes by 17/13.
UNSHOWN_RESCALE_V2 = 17 / 13


def _check_tolerance(tolerance_s: float) -> None:
    if not (isinstance(tolerance_s, int | float) and math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise ValueError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")


# ---------------------------------------------------------------- precision / recall / F1


@dataclass
class TruthMatch:
    """Predictions of one model matched one-to-one to ground truth."""

    pairs: list[tuple[Detection, Detection]] = field(default_factory=list)  # (prediction, truth)
    false_positives: list[Detection] = field(default_factory=list)
    missed: list[Detection] = field(default_factory=list)


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
    _check_tolerance(tolerance_s)
    result = TruthMatch()
    truth_buckets = _bucket(truths)
    pred_buckets = _bucket(predictions)
    for key in sorted(set(truth_buckets) | set(pred_buckets)):
        gts = sorted(truth_buckets.get(key, []), key=lambda d: (d.time_s, d.event_id))
        times = [g.time_s for g in gts]
        used = [False] * len(gts)
        preds = sorted(pred_buckets.get(key, []), key=lambda d: (-_score(d), d.time_s, d.event_id))
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


def _score(d: Detection) -> float:
    if d.confidence is None:
        raise ValueError(f"event {d.event_id} of model '{d.model}' on {d.video_id} has no confidence")
    return d.confidence


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


@dataclass
class _Track:
    """One class on one video: ground-truth cells and prediction cells (sorted)."""

    gt_cells: list[int] = field(default_factory=list)
    gt_values: list[int] = field(default_factory=list)  # +1 visible, -1 not shown
    pred_cells: list[int] = field(default_factory=list)
    pred_scores: list[float] = field(default_factory=list)
    pred_closest: list[int] = field(default_factory=list)  # value of the nearest ground truth, -1 if none


def grid_cell(time_s: float, framerate: int = SOCCERNET_FRAMERATE) -> int:
    """The official grid cell of an event at ``time_s`` seconds within its half."""
    return min(int(framerate * time_s), GRID_SECONDS * framerate - 1)


def _tracks(truths: Sequence[Detection], predictions: Sequence[Detection], classes: Sequence[str],
            framerate: int) -> list[dict[str, _Track]]:
    """Per scored video, per class: the official grid representation."""
    class_set = set(classes)
    gt_cells: dict[tuple[str, str], dict[int, int]] = {}
    videos: dict[str, None] = {}
    for g in truths:
        videos.setdefault(g.video_id)
        if g.label not in class_set:
            continue
        cells = gt_cells.setdefault((g.video_id, g.label), {})
        cell = grid_cell(g.time_s, framerate)
        cells[cell] = max(cells.get(cell, -1), 1 if g.visible else -1)
    pred_cells: dict[tuple[str, str], dict[int, float]] = {}
    for p in predictions:
        if p.video_id not in videos or p.label not in class_set:
            continue
        score = _score(p)
        if score < 0:
            raise ValueError(f"event {p.event_id} of model '{p.model}' has a negative confidence {score}")
        cells = pred_cells.setdefault((p.video_id, p.label), {})
        cell = grid_cell(p.time_s, framerate)
        cells[cell] = max(cells.get(cell, -1.0), score)
    out = []
    for video in sorted(videos):
        per_class = {}
        for c in classes:
            gts = gt_cells.get((video, c), {})
            preds = pred_cells.get((video, c), {})
            t = _Track(gt_cells=sorted(gts), pred_cells=sorted(preds))
            t.gt_values = [gts[k] for k in t.gt_cells]
            t.pred_scores = [preds[k] for k in t.pred_cells]
            # Nearest ground truth, split at the official integer midpoints.
            bounds = [(a + b) // 2 for a, b in zip(t.gt_cells, t.gt_cells[1:], strict=False)]
            t.pred_closest = [t.gt_values[bisect.bisect_right(bounds, k)] if t.gt_cells else -1
                              for k in t.pred_cells]
            per_class[c] = t
        out.append(per_class)
    return out


def _claim(track: _Track, half_window: float) -> list[bool]:
    """Official matching: ground truth in cell order each claims the best unclaimed prediction."""
    tp = [False] * len(track.pred_cells)
    cells, scores = track.pred_cells, track.pred_scores
    for g in track.gt_cells:
        lo = bisect.bisect_left(cells, g - half_window)
        hi = bisect.bisect_right(cells, g + half_window)
        best, best_score = None, -1.0
        for i in range(lo, hi):
            if not tp[i] and scores[i] > best_score:
                best, best_score = i, scores[i]
        if best is not None:
            tp[best] = True
    return tp


def _interpolated_ap(scores: np.ndarray, tp: np.ndarray, n_truth: int) -> float:
    """11-point interpolated AP from precision / recall at the official thresholds."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    tps_from = np.concatenate([np.cumsum(tp[order][::-1])[::-1], [0.0]])
    first = np.searchsorted(s, THRESHOLDS, side="left")
    n_sel = len(s) - first
    tp_sel = tps_from[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp_sel / n_sel)
        recall = np.nan_to_num(tp_sel / n_truth) if n_truth else np.zeros_like(tp_sel)
    ap = 0.0
    for j in RECALL_POINTS:
        reach = precision[recall >= j]
        ap += float(np.max(reach)) if reach.size else 0.0
    return ap / 11


def _trapezoid(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])
    total = 0.0
    for a, b in zip(values, values[1:], strict=False):
        total += (a + b) / 2
    return total / (len(values) - 1)


def average_map(truths: Sequence[Detection], predictions: Sequence[Detection],
                classes: Sequence[str] = SOCCERNET_V2_CLASSES, deltas_s: Sequence[float] = TIGHT_DELTAS_S,
                framerate: int = SOCCERNET_FRAMERATE) -> AverageMAP:
    """SoccerNet average-mAP of ``predictions`` against ``truths`` (see the module docstring).

    ``truths`` define the scored videos (each one half of a game); ``classes`` is the class list
    whose mean is taken (SoccerNet-v2's 17 classes by default).
    """
    if not classes:
        raise ValueError("average-mAP needs a non-empty class list")
    if len(set(classes)) != len(classes):
        raise ValueError(f"the class list has duplicates: {list(classes)}")
    if not deltas_s or any(not (d > 0) for d in deltas_s):
        raise ValueError(f"deltas must be positive seconds, got {list(deltas_s)}")
    if not truths:
        raise ValueError("average-mAP needs ground-truth events")
    tracks = _tracks(truths, predictions, classes, framerate)
    n_visible = {c: sum(v > 0 for t in tracks for v in t[c].gt_values) for c in classes}
    n_unshown = {c: sum(v < 0 for t in tracks for v in t[c].gt_values) for c in classes}
    scores = {c: np.array([s for t in tracks for s in t[c].pred_scores], dtype=np.float64) for c in classes}
    closest = {c: np.array([k for t in tracks for k in t[c].pred_closest], dtype=np.float64) for c in classes}

    per_delta: list[tuple[dict[str, float], dict[str, float], dict[str, float]]] = []
    for delta in deltas_s:
        half_window = delta * framerate / 2
        ap_all, ap_vis, ap_uns = {}, {}, {}
        for c in classes:
            tp = np.array([x for t in tracks for x in _claim(t[c], half_window)], dtype=np.float64)
            vis = closest[c] > 0.5
            uns = closest[c] < -0.5
            ap_all[c] = _interpolated_ap(scores[c], tp, n_visible[c] + n_unshown[c])
            ap_vis[c] = _interpolated_ap(scores[c][vis], tp[vis], n_visible[c])
            ap_uns[c] = _interpolated_ap(scores[c][uns], tp[uns], n_unshown[c])
        per_delta.append((ap_all, ap_vis, ap_uns))

    def summarise(k: int) -> tuple[float, dict[str, float]]:
        overall = _trapezoid([float(np.mean([d[k][c] for c in classes])) for d in per_delta])
        per_class = {c: _trapezoid([d[k][c] for d in per_delta]) for c in classes}
        return overall, per_class

    overall, per_class = summarise(0)
    visible, per_class_visible = summarise(1)
    unshown, per_class_unshown = summarise(2)
    if tuple(classes) == SOCCERNET_V2_CLASSES and len(deltas_s) > 1:
        unshown *= UNSHOWN_RESCALE_V2
    return AverageMAP(tuple(deltas_s), overall, per_class, visible, per_class_visible, unshown, per_class_unshown)
