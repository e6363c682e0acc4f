"""Parsing soccer-event answers of vision-language models into labelled events (pure Python).

Models are asked for JSON (``{"label", "team", "confidence", "details"}``, or a list of such
objects) but answer in many shapes: code fences, prose around the object, Python-literal dicts
with single quotes and ``True``/``None`` (what the earlier pipelines stored), several objects
in one answer, an ``{"events": [...]}`` wrapper, output cut off by the token limit, numbers as
strings (``"0.9"``, ``"90%"``), labels in another case or wording (``"goal!"``,
``"Yellow card"``, ``"corner kick"``).

:func:`parse_answer` never evaluates anything: a small lenient reader (:class:`_Reader`)
understands JSON and Python literals (strings in either quote, ``True/False/None``,
``true/false/null``, numbers and percentages, trailing commas, unquoted keys) and closes what a
truncated answer left open. It never raises on model output: an answer from which no event can
be read gives a :class:`ParsedAnswer` with ``parse_error`` set and the raw text kept.

Labels are normalised to the 17 SoccerNet-v2 action classes (:data:`SOCCERNET_V2_CLASSES`) or
:data:`NONE_LABEL` (no action in the window). A label outside the classes (``"dribble"``, or
the ambiguous ``"free kick"``) does not become an event; it is reported in ``warnings``, and
in ``parse_error`` when no event is left.

Which event is the *primary* one of an answer (the label/team/confidence/details of a
detection cell): the event with the highest confidence among the events that are not
``none`` (ties and missing confidences: the first in the answer); ``none`` only when the
answer holds nothing else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

#: The SoccerNet-v2 action-spotting classes (the order of the official ``EVENT_DICTIONARY_V2``).
SOCCERNET_V2_CLASSES: tuple[str, ...] = (
    "Penalty", "Kick-off", "Goal", "Substitution", "Offside", "Shots on target", "Shots off target",
    "Clearance", "Ball out of play", "Throw-in", "Foul", "Indirect free-kick", "Direct free-kick",
    "Corner", "Yellow card", "Red card", "Yellow->red card",
)
#: The label of "no action in this window".
NONE_LABEL = "none"
#: Every label a parsed event can carry.
LABELS: tuple[str, ...] = (*SOCCERNET_V2_CLASSES, NONE_LABEL)

#: Answers longer than this are cut before parsing (a model cannot mean more).
MAX_ANSWER_CHARS = 20_000
#: Nesting deeper than this is not an event answer.
MAX_DEPTH = 32


def _key(text: str) -> str:
    """Comparison key of a label: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


_SYNONYMS: dict[str, str] = {
    # every class under its own name
    **{_key(c): c for c in SOCCERNET_V2_CLASSES},
    "goalscored": "Goal", "scored": "Goal", "owngoal": "Goal", "goalcelebration": "Goal",
    "penaltykick": "Penalty", "spotkick": "Penalty", "penaltyawarded": "Penalty",
    "kickoff": "Kick-off", "kickoffrestart": "Kick-off",
    "sub": "Substitution", "playersubstitution": "Substitution", "playerchange": "Substitution",
    "offsides": "Offside", "offsideflag": "Offside",
    "shotontarget": "Shots on target", "shotongoal": "Shots on target", "shotsongoal": "Shots on target",
    "shotsaved": "Shots on target", "savedshot": "Shots on target",
    "shotofftarget": "Shots off target", "shotwide": "Shots off target", "missedshot": "Shots off target",
    "shotmissed": "Shots off target", "wideshot": "Shots off target",
    "clearances": "Clearance", "ballcleared": "Clearance",
    "outofplay": "Ball out of play", "ballout": "Ball out of play", "outofbounds": "Ball out of play",
    "balloutofbounds": "Ball out of play",
    "throwin": "Throw-in", "throw": "Throw-in",
    "foulcommitted": "Foul", "foulplay": "Foul",
    "indirectfreekick": "Indirect free-kick", "indirectkick": "Indirect free-kick",
    "directfreekick": "Direct free-kick",
    "cornerkick": "Corner", "corners": "Corner",
    "yellow": "Yellow card", "booking": "Yellow card", "caution": "Yellow card", "yellowcards": "Yellow card",
    "red": "Red card", "sendingoff": "Red card", "sentoff": "Red card", "redcards": "Red card",
    "secondyellow": "Yellow->red card", "secondyellowcard": "Yellow->red card", "yellowtored": "Yellow->red card",
    "yellowtoredcard": "Yellow->red card", "secondbooking": "Yellow->red card",
    # no action
    "none": NONE_LABEL, "noevent": NONE_LABEL, "noaction": NONE_LABEL, "nothing": NONE_LABEL,
    "null": NONE_LABEL, "na": NONE_LABEL, "noevents": NONE_LABEL, "noactions": NONE_LABEL,
    "noeventdetected": NONE_LABEL, "noactiondetected": NONE_LABEL, "normalplay": NONE_LABEL,
    "": NONE_LABEL,
}
#: Labels that name more than one class: reported, never guessed.
_AMBIGUOUS = {"freekick": "direct or indirect free-kick?", "card": "yellow or red card?",
              "shot": "on or off target?", "shots": "on or off target?"}

_LABEL_KEYS = ("label", "event", "action", "event_type", "eventtype", "type", "class", "category")
_TEAM_KEYS = ("team", "side")
_CONFIDENCE_KEYS = ("confidence", "conf", "score", "probability", "prob", "certainty")
_DETAILS_KEYS = ("details", "detail", "description", "reason", "explanation", "evidence", "notes")
_LIST_KEYS = ("events", "detections", "predictions", "actions", "results")
_NO_TEAM = {"", "none", "null", "na", "n/a", "unknown", "notapplicable", "neither", "both", "-", "unclear"}


def normalize_label(value: Any) -> tuple[str | None, str | None]:
    """``(class or 'none', None)`` for a label the class list knows, else ``(None, problem)``."""
    if value is None:
        return NONE_LABEL, None
    if not isinstance(value, str):
        return None, f"label {value!r} is not text"
    key = _key(value)
    if key in _SYNONYMS:
        return _SYNONYMS[key], None
    if key in _AMBIGUOUS:
        return None, f"ambiguous label {value!r} ({_AMBIGUOUS[key]})"
    if key.endswith("s") and key[:-1] in _SYNONYMS:  # plurals: "goals", "fouls"
        return _SYNONYMS[key[:-1]], None
    return None, f"unknown label {value!r} (not a SoccerNet-v2 class)"


def normalize_team(value: Any) -> str | None:
    """``home``/``away``/``left``/``right`` in lower case, other names stripped, unknowns None."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    key = text.lower()
    if key.replace(" ", "") in _NO_TEAM or _key(text) in _NO_TEAM:
        return None
    for side in ("home", "away", "left", "right"):
        if key in (side, f"{side} team", f"the {side} team"):
            return side
    return text


def normalize_confidence(value: Any) -> tuple[float | None, str | None]:
    """A confidence in [0, 1] from a number, ``"0.9"``, ``"90%"`` or ``90``; else ``(None, problem)``."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, f"confidence {value!r} is not a number"
    percent = False
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            return None, f"confidence {value!r} is not a number"
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None, f"confidence {value!r} is not a number"
    if not math.isfinite(number):
        return None, f"confidence {value!r} is not finite"
    if percent or 1.0 < number <= 100.0:
        number /= 100.0
    if not 0.0 <= number <= 1.0:
        return None, f"confidence {value!r} is outside [0, 1] (and not a percentage)"
    return number, None


@dataclass(frozen=True)
class ParsedEvent:
    """One event read from an answer (``label`` is a class of :data:`LABELS`)."""

    label: str
    team: str | None = None
    confidence: float | None = None
    details: str | None = None


@dataclass
class ParsedAnswer:
    """What :func:`parse_answer` read from one raw answer.

    ``events``: every event read, in answer order (``none`` included). ``parse_error``: why no
    event could be read (None when at least one was). ``warnings``: problems that did not stop
    the parse (an object without a label, a confidence that is not a number, a cut-off answer).
    """

    raw: str
    events: list[ParsedEvent] = field(default_factory=list)
    parse_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def primary(self) -> ParsedEvent | None:
        """The event the cell shows (see the module documentation), None when nothing parsed."""
        actions = [e for e in self.events if e.label != NONE_LABEL]
        if not actions:
            return self.events[0] if self.events else None
        best = actions[0]
        for e in actions[1:]:
            if _rank(e) > _rank(best):
                best = e
        return best

    @property
    def actions(self) -> list[ParsedEvent]:
        """The events that are actions (``none`` left out)."""
        return [e for e in self.events if e.label != NONE_LABEL]


def _rank(event: ParsedEvent) -> float:
    return -1.0 if event.confidence is None else event.confidence


# ------------------------------------------------------------------------------ lenient reader


class _Fail(ValueError):
    """The text at a position is not a literal."""


_BARE = {"true": True, "false": False, "null": None, "none": None, "nan": math.nan}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_ \-]*")
_BARE_WORD = re.compile(r"[^,}\]\n]+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", "'": "'", '"': '"'}


class _Reader:
    """A recursive-descent reader of JSON / Python literals that tolerates model mistakes.

    ``value()`` reads one value at ``pos``. At the end of the text it closes open strings,
    lists and objects and sets ``truncated``. It raises :class:`_Fail` where the text is not a
    literal at all.
    """

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos
        self.truncated = False

    def _ws(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in " \t\r\n":
            self.pos += 1

    def _eof(self) -> bool:
        self._ws()
        return self.pos >= len(self.text)

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _Fail("nested too deeply")
        if self._eof():
            self.truncated = True
            return None
        ch = self.text[self.pos]
        if ch == "{":
            return self._object(depth)
        if ch == "[":
            return self._list(depth)
        if ch in "\"'":
            return self._string(ch, in_container=depth > 0)
        return self._scalar()

    def _object(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        while True:
            if self._eof():
                self.truncated = True
                return out
            ch = self.text[self.pos]
            if ch == "}":
                self.pos += 1
                return out
            if ch == ",":
                self.pos += 1
                continue
            key = self._key()
            if self._eof():
                self.truncated = True
                return out
            if self.text[self.pos] not in ":=":
                raise _Fail(f"expected ':' after key {key!r}")
            self.pos += 1
            out[key] = self.value(depth + 1)
            if self._eof():
                self.truncated = True
                return out
            if self.text[self.pos] not in ",}":
                raise _Fail(f"expected ',' or '}}' after the value of {key!r}")

    def _key(self) -> str:
        ch = self.text[self.pos]
        if ch in "\"'":
            return str(self._string(ch, in_container=True, is_key=True))
        match = _BARE_KEY.match(self.text, self.pos)
        if not match:
            raise _Fail(f"unexpected {ch!r} where a key should be")
        self.pos = match.end()
        return match.group(0).strip()

    def _list(self, depth: int) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        while True:
            if self._eof():
                self.truncated = True
                return out
            ch = self.text[self.pos]
            if ch == "]":
                self.pos += 1
                return out
            if ch == ",":
                self.pos += 1
                continue
            out.append(self.value(depth + 1))
            if self._eof():
                self.truncated = True
                return out
            if self.text[self.pos] not in ",]":
                raise _Fail("expected ',' or ']' in a list")

    def _string(self, quote: str, in_container: bool, is_key: bool = False) -> str:
        """A quoted string. A single quote that is not followed by a delimiter is an apostrophe."""
        text, n = self.text, len(self.text)
        self.pos += 1
        parts: list[str] = []
        while self.pos < n:
            ch = text[self.pos]
            if ch == "\\" and self.pos + 1 < n:
                nxt = text[self.pos + 1]
                if nxt == "u" and _HEX4.fullmatch(text[self.pos + 2 : self.pos + 6]):
                    parts.append(chr(int(text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                parts.append(_ESCAPES.get(nxt, "\\" + nxt))
                self.pos += 2
                continue
            if ch == quote:
                if quote == "'" and in_container and not self._closes(self.pos + 1, is_key):
                    parts.append(ch)  # an apostrophe inside a single-quoted string
                    self.pos += 1
                    continue
                self.pos += 1
                return _fix_surrogates("".join(parts))
            parts.append(ch)
            self.pos += 1
        self.truncated = True
        return _fix_surrogates("".join(parts))

    def _closes(self, pos: int, is_key: bool) -> bool:
        text, n = self.text, len(self.text)
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        return pos >= n or text[pos] in ((":",) if is_key else (",", "}", "]"))

    def _scalar(self) -> Any:
        text = self.text
        match = _NUMBER.match(text, self.pos)
        if match:
            self.pos = match.end()
            raw = match.group(0)
            if self.pos < len(text) and text[self.pos] == "%":
                self.pos += 1
                return raw + "%"
            try:
                return int(raw) if _INTEGER.fullmatch(raw) else float(raw)
            except ValueError as err:
                raise _Fail(f"bad number {raw!r}") from err
        # A bare word or phrase up to the next delimiter: true/None/... or unquoted text.
        match = _BARE_WORD.match(text, self.pos)
        if not match or not match.group(0)[0].isalpha():
            raise _Fail(f"unexpected {text[self.pos]!r}")
        word = match.group(0).strip()
        self.pos = match.end()
        if word.lower() in _BARE:
            return _BARE[word.lower()]
        return word


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs written as two ``\\u`` escapes; drop lone surrogates."""
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return text.encode("utf-8", "replace").decode("utf-8", "replace")


# ---------------------------------------------------------------------------- answer parsing

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)


def _segments(text: str) -> tuple[list[Any], bool]:
    """Every literal object or list found in ``text`` (prose around them skipped), in order."""
    found: list[Any] = []
    truncated = False
    pos = 0
    n = len(text)
    while pos < n:
        start = min((i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0), default=-1)
        if start < 0:
            break
        reader = _Reader(text, start)
        try:
            value = reader.value()
        except (_Fail, RecursionError):
            pos = start + 1
            continue
        if isinstance(value, dict | list) and value:
            found.append(value)
            truncated = truncated or reader.truncated
        pos = max(reader.pos, start + 1)
    return found, truncated


def _lookup(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    lowered = {_key(k): v for k, v in obj.items()}
    for k in keys:
        if _key(k) in lowered:
            return True, lowered[_key(k)]
    return False, None


def _event(obj: dict[str, Any], warnings: list[str], problems: list[str]) -> ParsedEvent | None:
    has_label, label_value = _lookup(obj, _LABEL_KEYS)
    if not has_label:
        problems.append(f"an object without a label: {_short(obj)}")
        return None
    label, problem = normalize_label(label_value)
    if label is None:
        problems.append(str(problem))
        return None
    _, conf_value = _lookup(obj, _CONFIDENCE_KEYS)
    confidence, problem = normalize_confidence(conf_value)
    if problem:
        warnings.append(problem)
    _, team_value = _lookup(obj, _TEAM_KEYS)
    _, details_value = _lookup(obj, _DETAILS_KEYS)
    details = None if details_value is None else str(details_value).strip() or None
    return ParsedEvent(label, normalize_team(team_value), confidence, details)


def _collect(value: Any, events: list[ParsedEvent], warnings: list[str], problems: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect(item, events, warnings, problems)
        return
    if isinstance(value, str):  # a list of bare labels: ["Goal", "Corner"]
        label, problem = normalize_label(value)
        if label is None:
            problems.append(str(problem))
        else:
            events.append(ParsedEvent(label))
        return
    if not isinstance(value, dict):
        problems.append(f"not an object: {_short(value)}")
        return
    has_list, inner = _lookup(value, _LIST_KEYS)
    has_label, _ = _lookup(value, _LABEL_KEYS)
    if has_list and not has_label and isinstance(inner, list):
        if not inner:
            events.append(ParsedEvent(NONE_LABEL))  # {"events": []}: nothing happened
        _collect(inner, events, warnings, problems)
        return
    event = _event(value, warnings, problems)
    if event is not None:
        events.append(event)


_LINE = re.compile(r"^[\s*_#>-]*([A-Za-z][A-Za-z _]{0,20}?)[\s*_]*[:=]\s*(.+?)\s*$")


def _key_value_lines(text: str) -> dict[str, Any] | None:
    """``Label: Goal`` / ``**Team**: home`` lines as one object, when a label line is present."""
    obj: dict[str, Any] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            obj.setdefault(match.group(1).strip(), match.group(2).strip().strip("*").strip())
    return obj if _lookup(obj, _LABEL_KEYS)[0] else None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_answer(raw: str | None) -> ParsedAnswer:
    """Read the events of one model answer (never raises; see the module documentation)."""
    if raw is None:
        return ParsedAnswer("", parse_error="no answer (NULL)")
    if not isinstance(raw, str):
        return ParsedAnswer(str(raw), parse_error=f"the answer is a {type(raw).__name__}, not text")
    out = ParsedAnswer(raw)
    text = raw[:MAX_ANSWER_CHARS]
    if len(raw) > MAX_ANSWER_CHARS:
        out.warnings.append(f"answer cut to its first {MAX_ANSWER_CHARS} characters")
    if not text.strip():
        out.parse_error = "empty answer"
        return out
    fenced = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    body = "\n".join(fenced) if fenced else text
    values, truncated = _segments(body)
    if not values and fenced:
        values, truncated = _segments(text)
    if not values:
        lines = _key_value_lines(text)
        values = [lines] if lines else []
    if not values:
        stripped = _key(text)
        if stripped in _SYNONYMS and _SYNONYMS[stripped] == NONE_LABEL and len(text) < 40:
            out.events.append(ParsedEvent(NONE_LABEL))  # a bare "None" / "No event"
            return out
        out.parse_error = "no JSON object or Python dict in the answer"
        return out
    if truncated:
        out.warnings.append("the answer is cut off (unclosed string, object or list)")
    problems: list[str] = []
    for value in values:
        _collect(value, out.events, out.warnings, problems)
    if not out.events:
        if truncated:
            problems.append("the answer is cut off")
        out.parse_error = "; ".join(dict.fromkeys(problems)) or "no event in the answer"
    else:
        out.warnings.extend(problems)
    out.warnings = list(dict.fromkeys(out.warnings))
    return out


def answer_to_json(parsed: ParsedAnswer) -> str:
    """A canonical JSON rendering of a parsed answer (for logs and fixtures)."""
    return json.dumps({
        "events": [e.__dict__ for e in parsed.events],
        "parse_error": parsed.parse_error,
        "warnings": parsed.warnings,
    }, sort_keys=True)
