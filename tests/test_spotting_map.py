"""SoccerNet average-mAP: hand-computed cases, and parity with the official ``soccernet`` evaluation.

The parity tests write seeded synthetic games in the official layout
(``<root>/<league>/<season>/<game>/Labels-v2.json`` and ``results_spotting.json``), run
``SoccerNet.Evaluation.ActionSpotting.evaluate`` on them, and compare with the scores
:func:`jobs.ensemble.run_ensemble` computes from the same events stored in an ``events`` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.ensemble import (
    LOOSE_DELTAS_S,
    SOCCERNET_V2_CLASSES,
    TIGHT_DELTAS_S,
    Detection,
    EnsembleOptions,
    EnsembleResult,
    FusionOptions,
    average_map,
    run_ensemble,
)
from jobs.ensemble.metrics import grid_cell
from tables.connection import connect
from tables.events import open_events, write_events
from tests.soccernet_synth import (
    CLASSES_USED,
    NEVER_TRUE,
    UNPREDICTED,
    Prediction,
    events_of,
    synth_games,
    write_labels,
    write_predictions,
)

PARITY = 1e-3


def spot(time_s: float, label: str = "Goal", conf: float | None = None, video: str = "g/1",
         visible: bool = True, model: str = "m") -> Detection:
    return Detection(f"{model}-{video}-{label}-{time_s}", video, model, time_s, label, conf, visible=visible)


# ---------------------------------------------------------------- hand-computed


def test_grid_cells_follow_the_official_rounding() -> None:
    assert grid_cell(0.0) == 0 and grid_cell(0.499) == 0 and grid_cell(0.5) == 1 and grid_cell(12.34) == 24
    assert grid_cell(3 * 3600.0) == 14399  # clamped to the 2-hour grid


def test_perfect_and_offset_predictions() -> None:
    truths = [spot(100.0)]
    perfect = average_map(truths, [spot(100.2, conf=0.9)], classes=["Goal"], deltas_s=TIGHT_DELTAS_S)
    assert perfect.overall == 1.0 and perfect.per_class == {"Goal": 1.0}
    # Over the 17 SoccerNet classes the others have no ground truth and score 0.
    assert average_map(truths, [spot(100.2, conf=0.9)]).overall == pytest.approx(1 / 17)
    # 2 s late = 4 cells: matched only when delta * 2 / 2 >= 4, i.e. delta 4 and 5 -> mAP 0,0,0,1,1.
    late = average_map(truths, [spot(102.0, conf=0.9)], classes=["Goal"], deltas_s=TIGHT_DELTAS_S)
    assert late.overall == pytest.approx((0 + 0 + 0.5 + 1) / 4)
    assert average_map(truths, [spot(102.0, conf=0.9)], classes=["Goal"], deltas_s=LOOSE_DELTAS_S).overall == 1.0


def test_eleven_point_interpolation_and_thresholds() -> None:
    truths = [spot(100.0), spot(300.0)]
    # The true positive has the lower score: precision 1/2 at recall 1/2, so AP = 6 points x 0.5 / 11.
    preds = [spot(100.0, conf=0.3), spot(200.0, conf=0.8)]
    got = average_map(truths, preds, classes=["Goal"], deltas_s=[1])
    assert got.overall == pytest.approx(6 * 0.5 / 11)
    # A prediction below the first non-zero threshold (1/199) only counts at threshold 0.
    tiny = average_map([spot(100.0)], [spot(100.0, conf=0.001)], classes=["Goal"], deltas_s=[1])
    assert tiny.overall == 1.0
    # Two predictions in one half-second cell: the higher confidence is kept.
    same_cell = average_map([spot(100.0)], [spot(100.1, conf=0.2), spot(100.3, conf=0.9), spot(150.0, conf=0.5)],
                            classes=["Goal"], deltas_s=[1])
    assert same_cell.overall == 1.0


def test_visible_unshown_and_unscored_videos() -> None:
    truths = [spot(100.0), spot(300.0, visible=False), spot(50.0, video="g/2")]
    preds = [spot(100.0, conf=0.9), spot(300.0, conf=0.8), spot(10.0, conf=0.9, video="other/1")]
    got = average_map(truths, preds, classes=["Goal"], deltas_s=[1])
    # recall 2/3 at most (g/2 missed; the prediction on an unscored video is ignored)
    assert got.overall == pytest.approx(7 / 11)
    # visible: the prediction at 100 s (nearest ground truth visible) finds 1 of the 2 visible events;
    # not shown: the one at 300 s finds the only one
    assert got.per_class_visible == {"Goal": pytest.approx(6 / 11)} and got.per_class_unshown == {"Goal": 1.0}


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="needs ground-truth events"):
        average_map([], [spot(1.0, conf=0.5)])
    with pytest.raises(ValueError, match="has no confidence"):
        average_map([spot(1.0)], [spot(1.0)])
    with pytest.raises(ValueError, match="negative confidence"):
        average_map([spot(1.0)], [spot(1.0, conf=-0.5)])
    with pytest.raises(ValueError, match="duplicates"):
        average_map([spot(1.0)], [], classes=["Goal", "Goal"])


# ---------------------------------------------------------------- parity with the official evaluation


@dataclass
class ParityCase:
    labels: Path
    predictions: dict[str, Path]  # model -> predictions root
    result: EnsembleResult


def _predictions_of(detections: list[Detection]) -> dict[str, list[Prediction]]:
    """Detections of ``<game>/<half>`` videos as per-game official predictions."""
    games: dict[str, list[Prediction]] = {}
    for d in detections:
        game, half = d.video_id.rsplit("/", 1)
        games.setdefault(game, []).append(Prediction(int(half), round(d.time_s * 1000), d.label, d.confidence))
    return games


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda s: f"seed{s}")
def parity_case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ParityCase:
    seed = request.param
    root = tmp_path_factory.mktemp(f"soccernet{seed}")
    games = synth_games(seed)
    conn = connect(str(root / "warehouse"))
    write_events(open_events(conn), events_of(games))
    result = run_ensemble(conn, EnsembleOptions(models=["qwen", "llava"],
                                                    fusion=FusionOptions(nms="soft" if seed == 1 else "hard")),
                          write=False)
    predictions = {"qwen": write_predictions(root / "qwen", {g.path: g.predictions["qwen"] for g in games})}
    if seed == 1:
        predictions["ensemble"] = write_predictions(root / "ensemble", _predictions_of(result.fused_detections))
    return ParityCase(write_labels(root / "labels", games), predictions, result)


def _official(labels: Path, predictions: Path, metric: str) -> dict:
    from SoccerNet.Evaluation.ActionSpotting import evaluate
    from SoccerNet.Evaluation.utils import EVENT_DICTIONARY_V2

    return evaluate(str(labels), str(predictions), split=None, version=2, framerate=2, metric=metric,
                    dataset=None, EVENT_DICTIONARY=EVENT_DICTIONARY_V2, label_files="Labels-v2.json",
                    prediction_file="results_spotting.json")


@pytest.mark.parametrize("metric", ["tight", "loose"])
def test_average_map_matches_the_official_evaluation(parity_case: ParityCase, metric: str) -> None:
    for model, folder in parity_case.predictions.items():
        official = _official(parity_case.labels, folder, metric)
        score = parity_case.result.scores[model]
        mine = score.tight if metric == "tight" else score.loose
        assert mine.deltas_s == (TIGHT_DELTAS_S if metric == "tight" else LOOSE_DELTAS_S)
        # the synthetic games are neither trivial nor hopeless
        assert 0.05 < official["a_mAP"] < 0.9
        assert abs(mine.overall - official["a_mAP"]) < PARITY, model
        assert abs(mine.visible - official["a_mAP_visible"]) < PARITY, model
        assert abs(mine.unshown - official["a_mAP_unshown"]) < PARITY, model
        for i, label in enumerate(SOCCERNET_V2_CLASSES):
            assert abs(mine.per_class[label] - official["a_mAP_per_class"][i]) < PARITY, (model, label)
            assert abs(mine.per_class_visible[label] - official["a_mAP_per_class_visible"][i]) < PARITY
            assert abs(mine.per_class_unshown[label] - official["a_mAP_per_class_unshown"][i]) < PARITY
        # classes with ground truth score, the unpredicted and never-true ones score 0 in both
        assert all(mine.per_class[c] > 0 for c in CLASSES_USED if c != UNPREDICTED)
        assert mine.per_class[UNPREDICTED] == 0 and mine.per_class[NEVER_TRUE] == 0


def test_f1_at_a_threshold_and_the_best_threshold() -> None:
    from jobs.ensemble.frame import frame_from_detections, shared_vocab
    from jobs.ensemble.metrics import claim_truths

    truths = [spot(100.0, model="ground_truth"), spot(200.0, model="ground_truth"), spot(300.0, model="ground_truth")]
    preds = [spot(100.5, conf=0.9), spot(150.0, conf=0.8), spot(200.5, conf=0.6), spot(400.0, conf=0.3),
             spot(299.0, conf=0.1)]
    vocab = shared_vocab(truths, preds)
    claims = claim_truths(frame_from_detections(preds, vocab=vocab), frame_from_detections(truths, vocab=vocab), 3.0)
    everything = claims.counts_at(0.0)
    assert (everything.tp, everything.fp, everything.fn) == (3, 2, 0)
    half = claims.counts_at(0.5)
    assert (half.tp, half.fp, half.fn) == (2, 1, 1) and half.f1 == pytest.approx(4 / 6)
    # F1 by threshold: 0.9 -> 2/4, 0.8 -> 2/5, 0.6 -> 4/6, 0.3 -> 4/7, 0.1 -> 6/8: the best keeps all.
    threshold, best = claims.best_f1_threshold()
    assert threshold == pytest.approx(0.1) and best.f1 == pytest.approx(6 / 8)
    preds[-1] = spot(299.0, conf=0.05, model="m")
    preds.append(spot(500.0, conf=0.05))  # a tie at the lowest confidence: both come in together
    claims = claim_truths(frame_from_detections(preds, vocab=vocab), frame_from_detections(truths, vocab=vocab), 3.0)
    threshold, best = claims.best_f1_threshold()  # 0.6 -> 4/6 beats 0.05 -> 6/9
    assert threshold == pytest.approx(0.6) and best.f1 == pytest.approx(4 / 6)
