"""What the review page shows, as plain JSON-ready data (see :mod:`jobs.ensemble.review_page`).

The page has one *index* (the run, the metrics rows, the videos and the top disagreements) and
one document per video (match half): its events by timeline row, column-wise. Rows are the
ground truth, each input model and the fused model (a model scored alone has no fused row).

Each event carries a *category* the page filters on:

- input models: ``agree`` (matched with an event of the same label of another model),
  ``only`` (no other model has an event within the tolerance) or ``disagree`` (another
  model has an event of a different label within the tolerance);
- the fused model: the category of the group it was fused from;
- ground truth: ``found`` when some input model's prediction claimed it at the tolerance,
  ``missed`` otherwise.

and, for predictions scored against ground truth, ``tp`` (1: it claimed a ground-truth
event, 0: a false positive; ``null`` on videos without ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from jobs.ensemble.frame import EventFrame
from jobs.ensemble.matching import DISAGREE, ONLY_PREFIX, category_names
from jobs.ensemble.run import EnsembleResult
from tables.ensemble_results import OVERALL

Category = Literal["agree", "only", "disagree", "found", "missed"]
#: Every category, in the order the page lists its filters.
CATEGORIES: tuple[Category, ...] = ("agree", "only", "disagree", "found", "missed")
#: Characters of an event's ``details`` / ``raw`` text kept for its hover box.
TEXT_LIMIT = 600


@dataclass(frozen=True)
class EventText:
    """The free-text columns of one event (the hover box shows them)."""

    details: str | None = None
    raw: str | None = None


@dataclass(frozen=True)
class VideoSource:
    """Where the page may play a video from: its ``uri`` (as stored) and its frame rate / duration."""

    uri: str | None
    duration_s: float | None = None
    fps: float | None = None


@dataclass(frozen=True)
class Clip:
    """A short clip cut from a video into the report folder: ``file`` (relative) covers ``start_s`` .. ``end_s``."""

    file: str
    start_s: float
    end_s: float


@dataclass
class PageData:
    """The page's index and its per-video documents (keyed by the video's file-name slug)."""

    index: dict[str, Any]
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _group_category(name: str) -> Category:
    if name == DISAGREE:
        return "disagree"
    return "only" if name.startswith(ONLY_PREFIX) else "agree"


def _tp_flags(result: EnsembleResult, model: str) -> dict[str, bool]:
    """Per prediction event id of ``model``: whether it claimed a ground-truth event."""
    score = result.scores.get(model)
    if score is None:
        return {}
    ids = score.claims.predictions.event_id.to_pylist()
    return dict(zip(ids, (score.claims.claimed >= 0).tolist(), strict=True))


def _found_truths(result: EnsembleResult) -> set[str]:
    """Ground-truth event ids claimed by a prediction of some input model."""
    found: set[str] = set()
    for model in result.options.models:
        score = result.scores.get(model)
        if score is not None:
            ids = score.claims.truths.event_id.to_pylist()
            found.update(i for i, used in zip(ids, score.claims.used.tolist(), strict=True) if used)
    return found


def _columns(frame: EventFrame, idx: np.ndarray, categories: Sequence[str], tp: Mapping[str, bool] | None,
             texts: Mapping[str, EventText]) -> dict[str, list[Any]]:
    """One timeline row's events (``idx`` into ``frame``, with their ``categories``) column-wise."""
    ids = frame.event_id.take(idx).to_pylist()
    conf = [None if math.isnan(c) else round(c, 4) for c in frame.conf[idx].tolist()]
    found = [texts.get(i, EventText()) for i in ids]
    return {
        "id": ids,
        "t": [round(t, 3) for t in frame.time[idx].tolist()],
        "label": [frame.vocab.labels[c] for c in frame.label[idx].tolist()],
        "conf": conf,
        "team": frame.team.take(idx).to_pylist(),
        "visible": frame.visible[idx].tolist(),
        "cat": list(categories),
        "tp": [None if tp is None else tp.get(i) for i in ids],
        "details": [_short(x.details) for x in found],
        "raw": [_short(x.raw) for x in found],
    }


def _by_video(frame: EventFrame) -> dict[int, np.ndarray]:
    """Positions of the events of each video (by video code), in time order."""
    order = np.lexsort((frame.time, frame.video))
    codes, starts = np.unique(frame.video[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)]
    return {int(c): order[s:e] for c, s, e in zip(codes.tolist(), starts.tolist(), ends, strict=True)}


class PageEvents:
    """A run's events arranged once (per video, with categories and true-positive flags), so that
    each video's document takes time in proportion to its own events."""

    def __init__(self, result: EnsembleResult, texts: Mapping[str, EventText]) -> None:
        self.result = result
        self.texts = texts
        self.scored = set(result.scored_videos)
        self.found = _found_truths(result)
        self.tp = {m: _tp_flags(result, m) for m in result.scored_models}
        names = np.array([_group_category(n) for n in category_names(result.options.models)])
        self.input_category = names[result.matching.event_category()] if len(result.input_frame) else names[:0]
        self.fused_category = names[result.fused.category] if len(result.fused) else names[:0]
        self.truths = _by_video(result.truth_frame)
        self.inputs = _by_video(result.input_frame)
        self.fused = _by_video(result.fused_frame)

    def document(self, video_id: str, source: VideoSource | None, clips: Sequence[Clip] = ()) -> dict[str, Any]:
        """The events of one video by timeline row, with its playable sources, for the page."""
        result, opts = self.result, self.result.options
        code = result.input_frame.vocab.video_code(video_id)
        scored = video_id in self.scored
        none = np.zeros(0, np.int64)
        truth = result.truth_frame
        t_idx = self.truths.get(code, none)
        t_ids = truth.event_id.take(t_idx).to_pylist()
        rows = [{"name": opts.ground_truth, "kind": "truth",
                 **_columns(truth, t_idx, ["found" if i in self.found else "missed" for i in t_ids], None,
                            self.texts)}]
        frame = result.input_frame
        mine = self.inputs.get(code, none)
        for i, model in enumerate(opts.models):
            idx = mine[frame.model[mine] == i]
            rows.append({"name": model, "kind": "model",
                         **_columns(frame, idx, self.input_category[idx].tolist(),
                                    self.tp.get(model) if scored else None, self.texts)})
        if not result.single:
            idx = self.fused.get(code, none)
            rows.append({"name": opts.fusion.name, "kind": "fused",
                         **_columns(result.fused_frame, idx, self.fused_category[idx].tolist(),
                                    self.tp.get(opts.fusion.name) if scored else None, self.texts)})
        games: set[tuple[str, int]] = set()
        if truth.game is not None and truth.half is not None and len(t_idx):
            games = {(g, h) for g, h in zip(truth.game.take(pa.array(t_idx, pa.int64())).to_pylist(),
                                             truth.half[t_idx].tolist(), strict=True) if g is not None}
        game, half = games.pop() if len(games) == 1 else (None, None)
        return {
            "video_id": video_id,
            "game": game,
            "half": None if half is None or half < 0 else int(half),
            "scored": scored,
            "uri": None if source is None else source.uri,
            "duration_s": None if source is None else source.duration_s,
            "clips": [{"file": c.file, "start_s": c.start_s, "end_s": c.end_s} for c in clips],
            "rows": rows,
        }


def _metric(row: Any) -> dict[str, Any]:
    keys = ("model", "label", "n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "ap_tight",
            "ap_loose")
    out = {k: getattr(row, k) for k in keys}
    out["label"] = "overall" if row.label == OVERALL else row.label
    return out


def page_index(result: EnsembleResult, videos: Sequence[tuple[str, str]], disagreements: Sequence[dict[str, Any]],
               f1_thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """The run, its metrics rows, the videos (``(video_id, slug)``) and the top disagreements."""
    opts = result.options
    rows = [opts.ground_truth, *opts.models] + ([] if result.single else [opts.fusion.name])
    labels = sorted({r.label for r in result.metrics if r.label != OVERALL and (r.n_gt or r.n_pred)},
                    key=lambda x: (x not in opts.classes, opts.classes.index(x) if x in opts.classes else 0, x))
    slugs = dict(videos)
    return {
        "run_id": result.run_id,
        "rows": rows,
        "models": list(opts.models),
        "fused": None if result.single else opts.fusion.name,
        "ground_truth": opts.ground_truth,
        "tolerance_s": opts.tolerance_s,
        "classes": list(opts.classes),
        "labels": labels,
        "categories": list(CATEGORIES),
        "metrics": [_metric(r) for r in result.metrics],
        "f1_thresholds": dict(f1_thresholds),
        "notes": list(result.notes),
        "videos": [{"video_id": v, "slug": s} for v, s in videos],
        "disagreements": [{**d, "slug": slugs.get(d["video_id"])} for d in disagreements],
    }
