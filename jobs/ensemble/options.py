"""What an ensemble run is asked to do: :class:`FusionOptions`, :class:`EnsembleOptions` and their checks.

Every setting has one name, in one place: the fusion settings (the ensemble model's name, the
per-model weights, the NMS mode, window and soft-NMS sigma, the confidence floor) live in
:class:`FusionOptions`; :class:`EnsembleOptions` holds one of them next to what only a run
needs (the input models, the ground truth, the tolerance, the filter, the run id, the class list).
A run id defaults to a hash of :meth:`EnsembleOptions.params`, whose keys and values are fixed:
stored runs are found again by that id.

Options with a closed set of values are ``Literal`` types (:data:`NmsMode`), checked at run time
with :func:`udfs.errors.check_choice`; the command line takes its choices from them. Any other
option out of range raises :class:`~jobs.ensemble.errors.EnsembleOptionsError` naming it.

This module imports no NumPy, Arrow or numba: the command line imports it when it starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jobs.ensemble.errors import EnsembleOptionsError
from tables.names import GROUND_TRUTH
from udfs.errors import check_choice

#: Non-maximum suppression of the fused candidates: ``hard`` drops candidates within the window of
#: a stronger one, ``soft`` decays their confidence (Gaussian soft-NMS), ``none`` keeps them all.
NmsMode = Literal["hard", "soft", "none"]

#: SoccerNet-v2 action classes, in the order of the official ``EVENT_DICTIONARY_V2``: the class
#: list a run scores by default.
SOCCERNET_V2_CLASSES: tuple[str, ...] = (
    "Penalty", "Kick-off", "Goal", "Substitution", "Offside", "Shots on target", "Shots off target",
    "Clearance", "Ball out of play", "Throw-in", "Foul", "Indirect free-kick", "Direct free-kick",
    "Corner", "Yellow card", "Red card", "Yellow->red card",
)


def check_models(models: Sequence[str]) -> list[str]:
    """``models`` as a list, after checking there is at least one and the names are distinct and non-empty."""
    models = list(models)
    if any(not m for m in models):
        raise EnsembleOptionsError(f"model names must be non-empty: {models}")
    dup = sorted({m for m in models if models.count(m) > 1})
    if dup:
        raise EnsembleOptionsError(f"models are listed more than once: {dup}")
    if not models:
        raise EnsembleOptionsError("name at least one model")
    return models


def check_tolerance(tolerance_s: float) -> None:
    """Raise :class:`~jobs.ensemble.errors.EnsembleOptionsError` unless ``tolerance_s`` is seconds >= 0."""
    if not (isinstance(tolerance_s, int | float) and math.isfinite(tolerance_s) and tolerance_s >= 0):
        raise EnsembleOptionsError(f"tolerance must be a number of seconds >= 0, got {tolerance_s!r}")


@dataclass
class FusionOptions:
    """How groups become the ensemble model's events (see :mod:`jobs.ensemble.fusion`)."""

    name: str = "ensemble"  # the ensemble model's name in ``events``
    weights: Mapping[str, float] | None = None  # per model; missing models weigh 1
    nms: NmsMode = "hard"
    nms_window_s: float | None = None  # None: the matching tolerance
    soft_nms_sigma: float = 0.5
    min_confidence: float = 0.0  # fused events below this confidence (after NMS) are dropped

    def nms_window(self, tolerance_s: float) -> float:
        """The NMS window in seconds: ``nms_window_s``, or the matching tolerance when it is unset."""
        return tolerance_s if self.nms_window_s is None else self.nms_window_s

    def check(self, models: Sequence[str], tolerance_s: float | None = None) -> None:
        """Raise :class:`~jobs.ensemble.errors.EnsembleOptionsError` (:class:`~udfs.errors.ChoiceError` for ``nms``)
        naming the option that is out of range. ``tolerance_s`` is the matching tolerance an unset
        window stands for; without either, the window is not checked."""
        if not self.name:
            raise EnsembleOptionsError("the ensemble model needs a name")
        if self.name in models:
            raise EnsembleOptionsError(
                f"the ensemble name '{self.name}' is also one of the input models {list(models)}")
        unknown = sorted(set(self.weights or {}) - set(models))
        if unknown:
            raise EnsembleOptionsError(
                f"weights given for models that are not inputs: {unknown} (inputs: {list(models)})")
        weights = [self.weight(m) for m in models]
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise EnsembleOptionsError(
                f"weights must be >= 0 with a positive sum, got {dict(zip(models, weights, strict=True))}")
        check_choice(self.nms, NmsMode, "nms")
        window = self.nms_window_s if tolerance_s is None else self.nms_window(tolerance_s)
        if window is not None:
            if not (math.isfinite(window) and window >= 0):
                raise EnsembleOptionsError(f"the NMS window must be a number of seconds >= 0, got {window!r}")
            if self.nms == "soft" and window == 0:
                raise EnsembleOptionsError(
                    "soft-NMS needs a positive window (a 0 s window only works with hard or no NMS)")
        if not (math.isfinite(self.soft_nms_sigma) and self.soft_nms_sigma > 0):
            raise EnsembleOptionsError(f"the soft-NMS sigma must be positive, got {self.soft_nms_sigma!r}")
        if not math.isfinite(self.min_confidence):
            raise EnsembleOptionsError(f"min_confidence must be a number, got {self.min_confidence!r}")

    def weight(self, model: str) -> float:
        """The weight of ``model`` (1 unless configured)."""
        return float((self.weights or {}).get(model, 1.0))


@dataclass
class EnsembleOptions:
    """Everything that defines a run (its id defaults to a hash of the rest)."""

    models: Sequence[str]
    ground_truth: str = GROUND_TRUTH
    tolerance_s: float = 3.0  # matching across models, and to the ground truth for P/R/F1
    where: str | None = None
    run_id: str | None = None
    fusion: FusionOptions = field(default_factory=FusionOptions)
    classes: Sequence[str] = SOCCERNET_V2_CLASSES
    score: bool = True

    def check(self) -> None:
        """Raise :class:`~jobs.ensemble.errors.EnsembleOptionsError` (a ``ValueError``; ``ChoiceError`` for
        ``nms``) naming the first option that is invalid."""
        models = check_models(self.models)
        check_tolerance(self.tolerance_s)
        if not self.ground_truth:
            raise EnsembleOptionsError("the ground-truth model name is empty")
        if self.ground_truth in models:
            raise EnsembleOptionsError(f"the ground truth '{self.ground_truth}' cannot also be an input model")
        if self.fusion.name == self.ground_truth:
            raise EnsembleOptionsError(f"the ensemble cannot be named like the ground truth '{self.ground_truth}'")
        self.fusion.check(models, self.tolerance_s)
        if self.run_id is not None and not self.run_id.strip():
            raise EnsembleOptionsError("the run id is empty")
        if not self.classes or len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise EnsembleOptionsError(
                f"the class list must be non-empty names without duplicates, got {list(self.classes)}")

    def params(self) -> dict[str, Any]:
        """The options as JSON-serialisable values (without the run id).

        The keys and values are those of every run so far: the default run id hashes them."""
        fusion = self.fusion
        return {
            "models": list(self.models), "ground_truth": self.ground_truth, "tolerance_s": self.tolerance_s,
            "where": self.where, "name": fusion.name,
            "weights": {m: fusion.weight(m) for m in self.models}, "nms": fusion.nms,
            "nms_window_s": fusion.nms_window(self.tolerance_s), "soft_nms_sigma": fusion.soft_nms_sigma,
            "min_confidence": fusion.min_confidence, "classes": list(self.classes), "score": self.score,
        }

    def resolved_run_id(self) -> str:
        """``run_id``, or ``<name>-<hash of the options>`` so re-running the same analysis replaces it."""
        if self.run_id:
            return self.run_id
        digest = hashlib.sha1(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.fusion.name}-{digest}"
