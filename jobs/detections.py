"""Events as the analysis sees them: :class:`Detection` records read from the ``events`` table.

A detection is one row of ``events`` (a model's prediction or a ground-truth annotation). The unit
of time is the *video*: ``time_s`` is seconds from the start of ``video_id``. SoccerNet games are
imported as one video per half, so a video is a half and ``time_s`` is the time within the half;
the ground-truth rows carry ``game``, ``half`` and ``visibility`` in their metadata JSON, which is
where :attr:`Detection.visible`, :attr:`Detection.game` and :attr:`Detection.half` come from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

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
    """The metadata JSON of event ``event_id`` as a dict (``{}`` when empty); ``ValueError`` otherwise."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"event {event_id}: metadata is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"event {event_id}: metadata must be a JSON object, got {type(value).__name__}")
    return value


def parse_half(value: Any, event_id: str) -> int | None:
    """The ``half`` metadata value of event ``event_id`` as an int (None when absent)."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"event {event_id}: metadata 'half' must be an integer, got {value!r}") from None


def detections_from_arrow(table: pa.Table) -> list[Detection]:
    """Rows of ``events`` (at least :data:`DETECTION_COLUMNS`) as detections.

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


def by_model(detections: Iterable[Detection]) -> dict[str, list[Detection]]:
    """Detections grouped by model (each list in time order)."""
    out: dict[str, list[Detection]] = {}
    for d in detections:
        out.setdefault(d.model, []).append(d)
    for items in out.values():
        items.sort(key=lambda d: (d.video_id, d.time_s, d.label, d.event_id))
    return out
