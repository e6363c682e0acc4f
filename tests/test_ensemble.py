"""Cross-model matching, fusion (weighted mean + NMS / soft-NMS) and P/R/F1 on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import pyarrow as pa
import pytest

from jobs.ensemble import (
    ALL,
    BOTH,
    DISAGREE,
    SEVERAL,
    Counts,
    Detection,
    EnsembleOptions,
    FusionOptions,
    Group,
    only,
)
from tables.events import Event, events_to_arrow
from tests.ensemble_records import (
    FusedEvent,
    counts_per_label,
    detections_from_arrow,
    fuse,
    fuse_group,
    match_models,
    match_to_truth,
    suppress,
)

_ids = itertools.count()


def det(model: str, time_s: float, label: str = "Goal", conf: float | None = 0.5, video: str = "g/1") -> Detection:
    return Detection(f"{model}-{next(_ids)}", video, model, time_s, label, conf)


def category_of(groups: list[Group]) -> dict[str, str]:
    return {d.event_id: g.category for g in groups for d in g.members}


def group_of(groups: list[Group], d: Detection) -> Group:
    return next(g for g in groups if d in g.members)


# ---------------------------------------------------------------- reading events


def test_detections_from_event_rows() -> None:
    rows = events_to_arrow([
        Event("league/season/game/2", "ground_truth", 754.3, "Goal", team="home",
              metadata={"gameTime": "2 - 12:34", "visibility": "not shown", "game": "league/season/game", "half": 2}),
        Event("league/season/game/2", "qwen", 755.0, "Goal", confidence=0.7, run_id="r"),
    ])
    truth, pred = sorted(detections_from_arrow(rows), key=lambda d: d.model)
    assert (truth.visible, truth.game, truth.half, truth.team, truth.confidence) == (
        False, "league/season/game", 2, "home", None)
    assert (pred.visible, pred.half, pred.confidence, pred.run_id) == (True, None, 0.7, "r")
    with pytest.raises(ValueError, match="time_s must be >= 0"):
        detections_from_arrow(events_to_arrow([Event("v", "qwen", -1.0, "Goal", confidence=0.5)]))
    with pytest.raises(ValueError, match="'half' must be an integer"):
        detections_from_arrow(events_to_arrow([Event("v", "ground_truth", 1.0, "Goal", metadata={"half": "second"})]))
    bad = events_to_arrow([Event("v", "ground_truth", 1.0, "Goal")])
    bad = bad.set_column(bad.schema.get_field_index("metadata"), "metadata", pa.array(["{not json"]))
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        detections_from_arrow(bad)


# ---------------------------------------------------------------- matching


def test_exact_pairs_and_lone_events() -> None:
    q1, l1 = det("qwen", 10.0, conf=0.9), det("llava", 10.0, conf=0.8)
    q2, l2 = det("qwen", 100.0, "Corner"), det("llava", 200.0, "Foul")
    groups = match_models([q1, l1, q2, l2], ["qwen", "llava"], 3.0)
    cats = category_of(groups)
    assert cats == {q1.event_id: BOTH, l1.event_id: BOTH, q2.event_id: only("qwen"), l2.event_id: only("llava")}
    pair = group_of(groups, q1)
    assert pair.models == ["qwen", "llava"] and pair.labels == ["Goal"] and pair.members == [q1, l1]
    # groups come in video / time order with stable ids
    assert [g.group_id for g in groups] == [0, 1, 2]
    assert [min(d.time_s for d in g.members) for g in groups] == [10.0, 100.0, 200.0]


def test_tolerance_is_inclusive_and_sharp() -> None:
    q = det("qwen", 10.0)
    at = det("llava", 13.0)
    past = det("llava", 13.002)
    assert category_of(match_models([q, at], ["qwen", "llava"], 3.0))[at.event_id] == BOTH
    cats = category_of(match_models([q, past], ["qwen", "llava"], 3.0))
    assert cats == {q.event_id: only("qwen"), past.event_id: only("llava")}
    # 10.1 - 7.1 is 3.0000000000000004 in floating point: still within 3 s
    a, b = det("qwen", 10.1), det("llava", 7.1)
    assert category_of(match_models([a, b], ["qwen", "llava"], 3.0))[a.event_id] == BOTH
    # other videos never match
    other = det("llava", 10.0, video="g/2")
    assert category_of(match_models([q, other], ["qwen", "llava"], 3.0))[other.event_id] == only("llava")


def test_one_to_one_greedy_by_confidence() -> None:
    # The most confident event seeds first and takes its partner, even when a later seed is as close.
    q_hi, q_lo, lone = det("qwen", 10.0, conf=0.9), det("qwen", 12.0, conf=0.8), det("llava", 11.0, conf=0.7)
    groups = match_models([q_lo, lone, q_hi], ["qwen", "llava"], 3.0)
    assert group_of(groups, lone).members == [q_hi, lone]
    assert category_of(groups)[q_lo.event_id] == only("qwen")
    # A seed takes the partner with the highest confidence, not the nearest one.
    seed, near, strong = det("llava", 11.0, conf=0.95), det("qwen", 11.2, conf=0.3), det("qwen", 13.5, conf=0.8)
    groups = match_models([seed, near, strong], ["qwen", "llava"], 3.0)
    assert group_of(groups, seed).members == [strong, seed]
    assert category_of(groups)[near.event_id] == only("qwen")
    # Equal confidence and equal distance: the earlier event is taken.
    q = det("qwen", 10.0, conf=0.9)
    before, after = det("llava", 9.0, conf=0.6), det("llava", 11.0, conf=0.6)
    groups = match_models([q, after, before], ["qwen", "llava"], 3.0)
    assert group_of(groups, q).members == [q, before]
    # Equal confidence of seeds: the model listed first seeds.
    a, b, c = det("qwen", 10.0, conf=0.7), det("llava", 12.5, conf=0.7), det("qwen", 15.0, conf=0.7)
    groups = match_models([c, b, a], ["qwen", "llava"], 3.0)
    assert group_of(groups, b).members == [a, b]
    groups = match_models([c, b, a], ["llava", "qwen"], 3.0)
    assert group_of(groups, b).members == [b, a]


def test_three_and_four_models() -> None:
    models = ["qwen", "llava", "gemma"]
    trio = [det("qwen", 10.0, conf=0.9), det("llava", 11.0, conf=0.8), det("gemma", 8.5, conf=0.6)]
    duo = [det("llava", 50.0, conf=0.7), det("gemma", 52.0, conf=0.4)]
    alone = det("gemma", 100.0)
    groups = match_models([*trio, *duo, alone], models, 3.0)
    cats = category_of(groups)
    assert {cats[d.event_id] for d in trio} == {ALL}
    assert group_of(groups, trio[0]).models == models
    assert {cats[d.event_id] for d in duo} == {BOTH}
    assert group_of(groups, duo[0]).models == ["llava", "gemma"]
    assert cats[alone.event_id] == only("gemma")
    # Members are taken within the tolerance of the seed (qwen at 10): gemma at 6.5 is too far.
    far = [det("qwen", 10.0, conf=0.9), det("llava", 12.0, conf=0.5), det("gemma", 6.5, conf=0.8)]
    groups = match_models(far, models, 3.0)
    assert group_of(groups, far[0]).models == ["qwen", "llava"]
    assert category_of(groups)[far[2].event_id] == only("gemma")
    # Four models, three agree: "several".
    four = ["qwen", "llava", "gemma", "videollama"]
    some = [det("qwen", 10.0), det("llava", 10.5), det("videollama", 9.5)]
    groups = match_models(some, four, 3.0)
    assert {g.category for g in groups} == {SEVERAL}
    assert groups[0].models == ["qwen", "llava", "videollama"]


def test_disagreements() -> None:
    goal, corner = det("qwen", 10.0, "Goal", 0.9), det("llava", 11.0, "Corner", 0.6)
    groups = match_models([goal, corner], ["qwen", "llava"], 3.0)
    assert len(groups) == 1 and groups[0].category == DISAGREE
    assert groups[0].labels == ["Corner", "Goal"] and groups[0].models == ["qwen", "llava"]
    # A model that agrees on one label does not disagree with its own extra event.
    q_goal, l_goal, l_corner = det("qwen", 30.0, "Goal"), det("llava", 31.0, "Goal"), det("llava", 30.5, "Corner")
    cats = category_of(match_models([q_goal, l_goal, l_corner], ["qwen", "llava"], 3.0))
    assert cats == {q_goal.event_id: BOTH, l_goal.event_id: BOTH, l_corner.event_id: only("llava")}
    # Different labels beyond the tolerance are lone events, not disagreements.
    a, b = det("qwen", 10.0, "Goal"), det("llava", 14.0, "Corner")
    cats = category_of(match_models([a, b], ["qwen", "llava"], 3.0))
    assert cats == {a.event_id: only("qwen"), b.event_id: only("llava")}
    # Three models, three labels at one moment: one disagreement group with everyone.
    three = [det("qwen", 10.0, "Goal", 0.9), det("llava", 10.5, "Corner", 0.5), det("gemma", 9.0, "Foul", 0.7)]
    groups = match_models(three, ["qwen", "llava", "gemma"], 3.0)
    assert [g.category for g in groups] == [DISAGREE] and groups[0].models == ["qwen", "llava", "gemma"]


def test_matching_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="name at least one model"):
        match_models([], [], 3.0)
    with pytest.raises(ValueError, match="more than once"):
        match_models([], ["qwen", "qwen"], 3.0)
    with pytest.raises(ValueError, match="tolerance must be a number of seconds >= 0"):
        match_models([], ["qwen", "llava"], -0.5)
    with pytest.raises(ValueError, match="has no confidence"):
        match_models([det("qwen", 1.0, conf=None), det("llava", 1.0)], ["qwen", "llava"], 3.0)


# ---------------------------------------------------------------- fusion


def test_fusion_averages_with_missing_models_as_zero() -> None:
    q, ll = det("qwen", 10.0, conf=0.8), det("llava", 12.0, conf=0.6)
    lone = det("qwen", 100.0, "Corner", conf=0.8)
    models = ["qwen", "llava"]
    fused = fuse(match_models([q, ll, lone], models, 3.0), models, FusionOptions())
    assert [(e.label, e.category) for e in fused] == [("Goal", BOTH), ("Corner", only("qwen"))]
    assert fused[0].confidence == pytest.approx(0.7)
    assert fused[0].time_s == pytest.approx((0.8 * 10 + 0.6 * 12) / 1.4, abs=1e-3)
    assert fused[0].sources == [q, ll]
    assert fused[1].confidence == pytest.approx(0.4) and fused[1].time_s == 100.0
    weighted = fuse(match_models([q, ll, lone], models, 3.0), models, FusionOptions(weights={"qwen": 3, "llava": 1}))
    assert weighted[0].confidence == pytest.approx((3 * 0.8 + 0.6) / 4)
    assert weighted[0].time_s == pytest.approx((2.4 * 10 + 0.6 * 12) / 3.0, abs=1e-3)
    assert weighted[1].confidence == pytest.approx(0.6)
    # three models: a pair counts the third as 0
    g = fuse_group([q, ll], ["qwen", "llava", "gemma"], FusionOptions())
    assert g.confidence == pytest.approx(1.4 / 3)
    # disagreeing events stay candidates of their own labels
    a, b = det("qwen", 10.0, "Goal", 0.9), det("llava", 11.0, "Corner", 0.5)
    fused = fuse(match_models([a, b], models, 3.0), models, FusionOptions())
    assert sorted((e.label, round(e.confidence, 6), e.category) for e in fused) == [
        ("Corner", 0.25, DISAGREE), ("Goal", 0.45, DISAGREE)]


def _candidate(time_s: float, conf: float, label: str = "Goal") -> FusedEvent:
    return FusedEvent("g/1", label, time_s, conf, None)


def test_hard_nms_per_class_and_window() -> None:
    events = [_candidate(10.0, 0.9), _candidate(12.0, 0.8), _candidate(15.0, 0.7), _candidate(11.0, 0.6, "Corner")]
    kept = suppress(events, "hard", window_s=3.0)
    assert sorted((e.label, e.time_s) for e in kept) == [("Corner", 11.0), ("Goal", 10.0), ("Goal", 15.0)]
    # 15 survives 10 (5 s away) and the suppressed 12 cannot suppress it; a 5 s window (inclusive) does.
    assert sorted(e.time_s for e in suppress(events, "hard", window_s=5.0) if e.label == "Goal") == [10.0]
    assert len(suppress(events, "none", window_s=3.0)) == 4


def test_soft_nms_decays_instead_of_dropping() -> None:
    events = [_candidate(10.0, 0.9), _candidate(11.5, 0.8), _candidate(20.0, 0.7)]
    kept = {e.time_s: e.confidence for e in suppress(events, "soft", window_s=3.0, sigma=0.5)}
    assert kept[10.0] == pytest.approx(0.9)
    assert kept[11.5] == pytest.approx(0.8 * math.exp(-(0.5 ** 2) / 0.5))
    assert kept[20.0] == pytest.approx(0.7)
    assert events[1].confidence == 0.8  # the inputs are not modified
    # through fuse(): min_confidence drops what soft-NMS decayed
    models = ["qwen", "llava"]
    dets = [det("qwen", 10.0, conf=1.0), det("llava", 10.0, conf=1.0), det("qwen", 14.0, conf=0.9)]
    groups = match_models(dets, models, 3.0)
    soft = fuse(groups, models, FusionOptions(nms="soft", nms_window_s=5.0, soft_nms_sigma=0.5))
    assert [round(e.confidence, 6) for e in soft] == [1.0, round(0.45 * math.exp(-(0.2 ** 2) / 0.5), 6)]
    assert len(fuse(groups, models, FusionOptions(nms="soft", nms_window_s=5.0, min_confidence=0.5))) == 1
    assert len(fuse(groups, models, FusionOptions(nms="hard", nms_window_s=5.0))) == 1


def test_fusion_options_are_checked() -> None:
    models = ["qwen", "llava"]
    with pytest.raises(ValueError, match="not inputs: \\['gemma'\\]"):
        FusionOptions(weights={"gemma": 1.0}).check(models)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        FusionOptions(weights={"qwen": -1.0}).check(models)
    with pytest.raises(ValueError, match="positive sum"):
        FusionOptions(weights={"qwen": 0.0, "llava": 0.0}).check(models)
    with pytest.raises(ValueError, match="nms must be one of"):
        FusionOptions(nms="fuzzy").check(models)
    with pytest.raises(ValueError, match="NMS window"):
        FusionOptions(nms_window_s=-1).check(models)
    with pytest.raises(ValueError, match="soft-NMS needs a positive window"):
        FusionOptions(nms="soft", nms_window_s=0).check(models)
    with pytest.raises(ValueError, match="also one of the input models"):
        FusionOptions(name="qwen").check(models)


def test_run_options() -> None:
    opts = EnsembleOptions(models=["qwen", "llava"])
    assert opts.resolved_run_id() == EnsembleOptions(models=["qwen", "llava"]).resolved_run_id()
    assert opts.resolved_run_id().startswith("ensemble-")
    assert opts.resolved_run_id() != EnsembleOptions(models=["qwen", "llava"], tolerance_s=2).resolved_run_id()
    assert EnsembleOptions(models=["qwen", "llava"], run_id="mine").resolved_run_id() == "mine"
    assert opts.fusion.nms_window(opts.tolerance_s) == 3.0
    with pytest.raises(ValueError, match="tolerance must be a number of seconds >= 0"):
        EnsembleOptions(models=["qwen", "llava"], tolerance_s=-1).check()
    with pytest.raises(ValueError, match="cannot also be an input model"):
        EnsembleOptions(models=["qwen", "ground_truth"]).check()


# ---------------------------------------------------------------- precision / recall / F1


def gt(time_s: float, label: str = "Goal", video: str = "g/1") -> Detection:
    return Detection(f"gt-{next(_ids)}", video, "ground_truth", time_s, label)


def test_precision_recall_f1_hand_computed() -> None:
    truths = [gt(10.0), gt(50.0), gt(100.0), gt(10.0, video="g/2")]
    preds = [det("qwen", 11.0, conf=0.9), det("qwen", 12.0, conf=0.8), det("qwen", 52.0, conf=0.5),
             det("qwen", 200.0, conf=0.3), det("qwen", 10.0, "Corner", conf=0.9)]
    match = match_to_truth(preds, truths, 3.0)
    per_label = counts_per_label(match)
    goal = per_label["Goal"]
    assert (goal.tp, goal.fp, goal.fn) == (2, 2, 2)
    assert goal.precision == pytest.approx(0.5) and goal.recall == pytest.approx(0.5) and goal.f1 == pytest.approx(0.5)
    corner = per_label["Corner"]
    assert (corner.tp, corner.fp, corner.fn, corner.precision, corner.recall, corner.f1) == (0, 1, 0, 0.0, None, 0.0)
    total = sum(per_label.values(), Counts())
    assert (total.tp, total.fp, total.fn) == (2, 3, 2)
    assert total.precision == pytest.approx(0.4) and total.recall == pytest.approx(0.5)
    assert total.f1 == pytest.approx(4 / 9)
    assert {(p.time_s, g.time_s) for p, g in match.pairs} == {(11.0, 10.0), (52.0, 50.0)}
    assert Counts().f1 is None and Counts().precision is None


def test_truth_matching_greedy_by_confidence_and_nearest() -> None:
    truths = [gt(10.0)]
    weak, strong = det("qwen", 10.5, conf=0.4), det("qwen", 12.0, conf=0.9)
    match = match_to_truth([weak, strong], truths, 3.0)
    assert match.pairs == [(strong, truths[0])] and match.false_positives == [weak]
    # nearest ground truth, the earlier one on a tie; the boundary is inclusive
    early, late = gt(13.0), gt(17.0)
    p = det("qwen", 15.0, conf=0.5)
    assert match_to_truth([p], [late, early], 3.0).pairs == [(p, early)]
    edge = det("qwen", 20.0, conf=0.5)
    assert match_to_truth([edge], [late], 3.0).pairs == [(edge, late)]
    assert match_to_truth([edge], [late], 2.999).false_positives == [edge]
    with pytest.raises(ValueError, match="tolerance must be a number of seconds >= 0"):
        match_to_truth([], truths, -1)


# ---------------------------------------------------------------- edge cases


def test_tolerance_zero_matches_the_same_time_only() -> None:
    q, same, later = det("qwen", 10.0, conf=0.9), det("llava", 10.0, conf=0.8), det("llava", 10.001, conf=0.7)
    groups = match_models([q, same, later], ["qwen", "llava"], 0.0)
    assert category_of(groups) == {q.event_id: BOTH, same.event_id: BOTH, later.event_id: only("llava")}
    corner = det("llava", 10.0, "Corner", conf=0.6)
    assert category_of(match_models([q, corner], ["qwen", "llava"], 0))[corner.event_id] == DISAGREE
    truths = [gt(10.0), gt(20.0)]
    match = match_to_truth([q, det("qwen", 20.001)], truths, 0)
    assert [(p.time_s, g.time_s) for p, g in match.pairs] == [(10.0, 10.0)]
    assert [g.time_s for g in match.missed] == [20.0]
    # a 0 s hard-NMS window only suppresses candidates at the same time
    kept = suppress([_candidate(10.0, 0.9), _candidate(10.0, 0.5), _candidate(10.001, 0.4)], "hard", 0.0)
    assert sorted((e.time_s, e.confidence) for e in kept) == [(10.0, 0.9), (10.001, 0.4)]


def test_thousands_of_events_every_event_in_one_group() -> None:
    import random

    rng = random.Random(3)
    labels = ["Goal", "Corner", "Foul", "Throw-in"]
    events = [Detection(f"{m}-{v}-{i}", f"g/{v}", m, round(rng.uniform(0, 2700), 3), rng.choice(labels),
                        round(rng.random(), 3))
              for m in ("qwen", "llava", "gemma") for v in range(3) for i in range(2000)]
    groups = match_models(events, ["qwen", "llava", "gemma"], 3.0)
    members = [d.event_id for g in groups for d in g.members]
    assert len(members) == len(events) == len(set(members))
    for g in groups:
        assert len(set(g.models)) == len(g.models) and len({d.video_id for d in g.members}) == 1
        assert max(d.time_s for d in g.members) - min(d.time_s for d in g.members) <= 6.0 + 1e-6
        if g.category == DISAGREE:
            assert len(g.labels) > 1
        elif len(g.members) > 1:
            assert len(g.labels) == 1
    fused = fuse(groups, ["qwen", "llava", "gemma"], FusionOptions(nms_window_s=3.0))
    by_key: dict[tuple[str, str], list[float]] = {}
    for e in fused:
        by_key.setdefault((e.video_id, e.label), []).append(e.time_s)
    for times in by_key.values():  # hard NMS leaves no two events of a class within the window
        times.sort()
        assert all(b - a > 3.0 for a, b in zip(times, times[1:], strict=False))
    truths = [gt(round(rng.uniform(0, 2700), 3), rng.choice(labels), f"g/{v}") for v in range(3) for _ in range(100)]
    match = match_to_truth([d for d in events if d.model == "qwen"], truths, 3.0)
    assert len(match.pairs) + len(match.false_positives) == 6000
    assert len(match.pairs) + len(match.missed) == 300
