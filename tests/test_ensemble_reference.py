"""The compiled columnar ensemble analysis equals the plain object-per-event implementation
(``tests/ensemble_reference.py``) on randomised inputs full of ties, near-tolerance gaps and
disagreements: groups, categories, fused events after each NMS mode, and truth matching."""

from __future__ import annotations

import random

import pytest

from jobs.ensemble import Detection, FusionOptions
from tests import ensemble_reference as ref
from tests.ensemble_records import fuse, match_models, match_to_truth

MODELS = ["qwen", "llava", "gemma"]
LABELS = ["Goal", "Corner", "Foul", "Throw-in", "Dance"]


def _events(seed: int, models: list[str], n: int) -> list[Detection]:
    rng = random.Random(seed)
    out = []
    for m in models:
        for i in range(n):
            # coarse times and confidences make ties and exact-tolerance gaps common
            out.append(Detection(f"{m[0]}{i:06d}", f"g/{rng.randrange(3)}", m, rng.randrange(0, 4000) / 20,
                                 rng.choice(LABELS), rng.randrange(1, 11) / 10,
                                 team=rng.choice([None, "home", "away"])))
    return out


def _groups(groups: list) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((g.category, tuple(d.event_id for d in g.members)) for g in groups)


def _fused(events: list) -> list[tuple]:
    return sorted((e.video_id, e.label, round(e.time_s, 3), round(e.confidence, 9), e.team or "", e.category,
                   tuple(d.event_id for d in e.sources)) for e in events)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("models", [MODELS[:2], MODELS], ids=["2 models", "3 models"])
def test_matching_and_fusion_equal_the_reference(seed: int, models: list[str]) -> None:
    events = _events(seed, models, 300)
    tolerance = [3.0, 0.0, 1.5][seed % 3]
    mine, theirs = match_models(events, models, tolerance), ref.match_models(events, models, tolerance)
    assert _groups(mine) == _groups(theirs)
    # group numbering: video, earliest time, label and first member
    assert [tuple(d.event_id for d in g.members) for g in mine] == \
        [tuple(d.event_id for d in g.members) for g in theirs]
    for nms in ("hard", "soft", "none"):
        options = FusionOptions(nms=nms, nms_window_s=2.0, weights={models[0]: 2.0}, min_confidence=0.05)
        assert _fused(fuse(mine, models, options)) == _fused(ref.fuse(theirs, models, options)), nms


@pytest.mark.parametrize("seed", range(4))
def test_truth_matching_equals_the_reference(seed: int) -> None:
    rng = random.Random(100 + seed)
    preds = _events(seed, ["qwen"], 500)
    truths = [Detection(f"t{i:06d}", f"g/{rng.randrange(4)}", "ground_truth", rng.randrange(0, 4000) / 20,
                        rng.choice(LABELS)) for i in range(150)]
    for tolerance in (0.0, 1.0, 3.0):
        mine, theirs = match_to_truth(preds, truths, tolerance), ref.match_to_truth(preds, truths, tolerance)
        assert [(p.event_id, g.event_id) for p, g in mine.pairs] == [(p.event_id, g.event_id) for p, g in theirs.pairs]
        assert [p.event_id for p in mine.false_positives] == [p.event_id for p in theirs.false_positives]
        assert sorted(g.event_id for g in mine.missed) == sorted(g.event_id for g in theirs.missed)
