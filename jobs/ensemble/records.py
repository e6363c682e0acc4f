"""One event as a record: :class:`Detection`, a row of the ``events`` table, and what reading rows needs.

A detection is one row of ``events`` (a model's prediction or a ground-truth annotation; not the
detector's output cell of :mod:`udfs.detections`). The analysis computes on columns
(:mod:`jobs.ensemble.frame`) and makes records only for the few events a picture, a report or a
test looks at.

The unit of time is the *video*: ``time_s`` is seconds from the start of ``video_id``. SoccerNet
games are imported as one video per half, so a video is a half and ``time_s`` is the time within
the half; the ground-truth rows carry ``game``, ``half`` and ``visibility`` in their metadata
JSON, which is where :attr:`Detection.visible`, :attr:`Detection.game` and :attr:`Detection.half`
come from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.ensemble.errors import EnsembleDataError

#: Columns of ``events`` the analysis reads.
DETECTION_COLUMNS = ["event_id", "video_id", "model", "run_id", "time_s", "label", "team", "confidence", "metadata"]

#: Value of the ``visibility`` metadata key of a ground-truth event that happened off screen.
NOT_SHOWN = "not shown"


@dataclass(frozen=True)
class Detection:
    """One event of one model (or of the ground truth) on one video."""

    event_id: str
    video_id: str
    model: str
    time_s: float
    label: str
    confidence: float | None = None
    team: str | None = None
    visible: bool = True
    game: str | None = None
    half: int | None = None
    run_id: str | None = None


def parse_metadata(raw: str | None, event_id: str) -> dict[str, Any]:
    """The metadata JSON of event ``event_id`` as a dict (``{}`` when empty); else
    :class:`~jobs.ensemble.errors.EnsembleDataError` (a ``ValueError``)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise EnsembleDataError(f"event {event_id}: metadata is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise EnsembleDataError(f"event {event_id}: metadata must be a JSON object, got {type(value).__name__}")
    return value


def parse_half(value: Any, event_id: str) -> int | None:
    """The ``half`` metadata value of event ``event_id`` as an int (None when absent)."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EnsembleDataError(f"event {event_id}: metadata 'half' must be an integer, got {value!r}") from None
