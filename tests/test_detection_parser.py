"""The answer parser against a corpus of realistic model answers, plus its building blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from udfs.detection_parser import (
    LABELS,
    NONE_LABEL,
    SOCCERNET_V2_CLASSES,
    ParsedEvent,
    normalize_confidence,
    normalize_label,
    normalize_team,
    parse_answer,
)

CORPUS = Path(__file__).parent / "fixtures" / "detection_answers.jsonl"


def _corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_is_large_and_varied() -> None:
    cases = _corpus()
    assert len(cases) >= 40
    assert len({c["id"] for c in cases}) == len(cases)
    assert sum(c["parse_error"] is not None for c in cases) >= 10
    assert sum(len(c["events"]) > 1 for c in cases) >= 5


@pytest.mark.parametrize("case", _corpus(), ids=lambda c: c["id"])
def test_corpus_answer(case: dict) -> None:
    parsed = parse_answer(case["raw"])
    assert parsed.raw == case["raw"]
    assert [[e.label, e.team, e.confidence] for e in parsed.events] == case["events"]
    if case["parse_error"] is None:
        assert parsed.parse_error is None
    else:
        assert parsed.parse_error and case["parse_error"] in parsed.parse_error
        assert parsed.primary is None
    if "primary" in case:
        assert parsed.primary is not None and parsed.primary.label == case["primary"]


def test_every_prefix_of_every_answer_parses_without_raising() -> None:
    """Truncation anywhere (the token limit) never crashes and never invents a label."""
    for case in _corpus():
        raw = case["raw"]
        for cut in range(len(raw) + 1):
            parsed = parse_answer(raw[:cut])
            assert parsed.raw == raw[:cut]
            assert (parsed.parse_error is None) == bool(parsed.events)
            assert all(e.label in LABELS for e in parsed.events)
            assert all(e.confidence is None or 0.0 <= e.confidence <= 1.0 for e in parsed.events)


def test_nothing_is_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    raw = f"{{'label': open({str(marker)!r}, 'w').write('x'), 'confidence': 0.9}}"
    parsed = parse_answer(raw)
    assert not marker.exists()
    assert parsed.parse_error and not parsed.events


def test_class_list_matches_the_scoring_code() -> None:
    from jobs.ensemble import SOCCERNET_V2_CLASSES as SCORED

    assert SOCCERNET_V2_CLASSES == SCORED
    assert LABELS == (*SOCCERNET_V2_CLASSES, NONE_LABEL)
    for c in SOCCERNET_V2_CLASSES:
        assert normalize_label(c) == (c, None)
        assert normalize_label(c.upper()) == (c, None)


@pytest.mark.parametrize(("value", "expected"), [
    (0.5, 0.5), ("0.9", 0.9), ("90%", 0.9), (" 75 % ", 0.75), (85, 0.85), (1, 1.0), (0, 0.0), (None, None),
    ("high", None), (True, None), (-0.1, None), (101, None), (float("inf"), None), ([0.5], None),
])
def test_normalize_confidence(value: object, expected: float | None) -> None:
    got, problem = normalize_confidence(value)
    assert got == pytest.approx(expected) if expected is not None else got is None
    assert (problem is None) == (expected is not None or value is None)


@pytest.mark.parametrize(("value", "expected"), [
    ("Goal!", "Goal"), ("goals", "Goal"), ("THROW IN", "Throw-in"), ("throw_in", "Throw-in"),
    ("Yellow->Red Card", "Yellow->red card"), ("second yellow", "Yellow->red card"), ("kick off", "Kick-off"),
    ("Indirect free kick", "Indirect free-kick"), ("direct-free-kick", "Direct free-kick"),
    ("no action", NONE_LABEL), (None, NONE_LABEL),
])
def test_normalize_label(value: object, expected: str) -> None:
    assert normalize_label(value) == (expected, None)


@pytest.mark.parametrize("value", ["free kick", "card", "shot", "dribble", 3])
def test_labels_that_are_not_guessed(value: object) -> None:
    label, problem = normalize_label(value)
    assert label is None and problem


def test_normalize_team() -> None:
    assert [normalize_team(v) for v in ["Home", "the away team", "RIGHT", "n/a", None, "", "Chelsea"]] == [
        "home", "away", "right", None, None, None, "Chelsea"]


def test_primary_prefers_the_most_confident_action() -> None:
    parsed = parse_answer('[{"label": "none", "confidence": 0.99}, {"label": "Foul", "confidence": 0.4},'
                          ' {"label": "Goal", "confidence": 0.4}, {"label": "Corner"}]')
    assert parsed.primary == ParsedEvent("Foul", None, 0.4, None)
    assert [e.label for e in parsed.actions] == ["Foul", "Goal", "Corner"]


def test_warnings_keep_what_was_not_used() -> None:
    parsed = parse_answer('[{"label": "Dribble"}, {"label": "Foul", "confidence": "very"}]')
    assert parsed.parse_error is None
    assert any("Dribble" in w for w in parsed.warnings) and any("very" in w for w in parsed.warnings)


def test_non_text_and_huge_answers() -> None:
    assert parse_answer(None).parse_error == "no answer (NULL)"
    assert "not text" in str(parse_answer(42).parse_error)  # type: ignore[arg-type]
    huge = '{"label": "Goal", "details": "' + "x" * 50_000 + '"}'
    parsed = parse_answer(huge)
    assert [e.label for e in parsed.events] == ["Goal"] and parsed.warnings
