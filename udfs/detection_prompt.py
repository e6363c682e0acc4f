"""The question the soccer-event detectors are asked about each window.

Both detectors get the same text: the window's frames as one video, then the instruction to
answer with JSON naming one SoccerNet-v2 action class (or ``none``), the team, a confidence
and a short description; several actions may be answered as a JSON list. The prompt text is
versioned (:data:`PROMPT_VERSION`, a hash of the template): it is part of the detector
columns' UDF version, so editing it recomputes the detections.
"""

from __future__ import annotations

import hashlib
from typing import Any

from udfs.detection_parser import NONE_LABEL, SOCCERNET_V2_CLASSES

PROMPT_TEMPLATE = (
    "You are a soccer video analyst. The video shows {frames} frames sampled at {fps:g} frame(s) per "
    "second from a {duration:g}-second clip of a soccer match. Which action happens in this clip? "
    "Choose the label from this list: {classes}, or \"{none}\" when none of them happens. "
    "Answer with JSON only, in this format: "
    "{{\"label\": \"<label>\", \"team\": \"home\" or \"away\" or null, \"confidence\": <number between 0 and 1>, "
    "\"details\": \"<one short sentence on what you see>\"}}. "
    "If several actions happen, answer with a JSON list of such objects."
)

#: Changes whenever the template or the class list changes.
PROMPT_VERSION = hashlib.sha1(
    (PROMPT_TEMPLATE + "|".join(SOCCERNET_V2_CLASSES) + NONE_LABEL).encode()
).hexdigest()[:8]


def prompt_text(frames: int, fps: float, duration_s: float) -> str:
    """The instruction for one window of ``frames`` frames at ``fps`` covering ``duration_s`` seconds."""
    if frames < 1:
        raise ValueError(f"a window needs at least one frame, got {frames}")
    return PROMPT_TEMPLATE.format(
        frames=frames, fps=fps, duration=round(duration_s, 3),
        classes=", ".join(f'"{c}"' for c in SOCCERNET_V2_CLASSES), none=NONE_LABEL,
    )


def conversation(text: str) -> list[dict[str, Any]]:
    """One user turn holding the video and ``text`` (the processors' chat-template format)."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
