"""SoccerNet's results_spotting.json in and out: official files -> `vw import-predictions --format soccernet` ->
`vw ensemble` scores -> `vw export-predictions` -> the official evaluation gives the same average-mAP as the
official evaluation of the original files, for every model, tight and loose (randomised games)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.ensemble import EnsembleOptions, run_ensemble
from tables.connection import connect
from tables.events import GROUND_TRUTH, open_events, write_events
from tests.soccernet_synth import MODELS, events_of, synth_games, write_labels, write_predictions

PARITY = 1e-3


def _official(labels: Path, predictions: Path, metric: str) -> dict:
    from SoccerNet.Evaluation.ActionSpotting import evaluate
    from SoccerNet.Evaluation.utils import EVENT_DICTIONARY_V2

    return evaluate(str(labels), str(predictions), split=None, version=2, framerate=2, metric=metric,
                    dataset=None, EVENT_DICTIONARY=EVENT_DICTIONARY_V2, label_files="Labels-v2.json",
                    prediction_file="results_spotting.json")


def _vw(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip_equals_the_official_evaluation(tmp_path: Path, seed: int) -> None:
    games = synth_games(seed)
    labels = write_labels(tmp_path / "labels", games)
    originals = {m: write_predictions(tmp_path / m, {g.path: g.predictions[m] for g in games}) for m in MODELS}
    db = str(tmp_path / "wh")
    conn = connect(db)
    code, out = _vw("import-predictions", "--format", "soccernet", "--model", "qwen", originals["qwen"], "--db", db)
    assert code == 1 and "is not in the warehouse (looked for" in out and "--allow-unknown-videos" in out, out
    code, out = _vw("ingest", "--format", "soccernet", "--labels-only", labels, "--db", db)  # the ground truth
    assert code == 0, out
    assert open_events(conn).count_rows(f"model = '{GROUND_TRUTH}'") == sum(len(g.annotations) for g in games)
    for model in MODELS:
        expected = sum(len(g.predictions[model]) for g in games)
        for _ in range(2):  # importing twice does not duplicate
            code, out = _vw("import-predictions", "--format", "soccernet", "--model", model, originals[model],
                            "--db", db)
            assert code == 0, out
            assert f"{len(games)} files, {expected} predictions, {expected} events" in out, out
        stored = open_events(conn).count_rows(f"model = '{model}'")
        assert stored == expected
    result = run_ensemble(conn, EnsembleOptions(models=list(MODELS)), write=False)
    for model in MODELS:
        code, out = _vw("export-predictions", "--model", model, "--out", tmp_path / "out" / model, "--db", db)
        assert code == 0, out
        for metric in ("tight", "loose"):
            original = _official(labels, originals[model], metric)
            exported = _official(labels, tmp_path / "out" / model, metric)
            mine = getattr(result.scores[model], metric)
            assert abs(exported["a_mAP"] - original["a_mAP"]) < 1e-9, (model, metric)
            assert abs(mine.overall - original["a_mAP"]) < PARITY, (model, metric)
            for i, value in enumerate(original["a_mAP_per_class"]):
                assert abs(exported["a_mAP_per_class"][i] - value) < 1e-9


def test_malformed_predictions_are_named_and_the_rest_imported(tmp_path: Path) -> None:
    game = tmp_path / "preds" / "league" / "2020-2021" / "game one"
    game.mkdir(parents=True)
    good = {"gameTime": "2 - 01:02", "label": "Goal", "position": "62000", "half": "2", "confidence": "0.5"}
    items = [good, {**good, "position": "soon"}, {**good, "half": "1"}, {**good, "confidence": None},
             {"gameTime": "1 - 00:10", "label": "Corner", "position": 10500, "confidence": 0.25}, "junk"]
    (game / "results_spotting.json").write_text(json.dumps({"predictions": items}))  # no UrlLocal: the folder
    (tmp_path / "preds" / "broken").mkdir()
    (tmp_path / "preds" / "broken" / "results_spotting.json").write_text("{not json")
    db = str(tmp_path / "wh")
    code, out = _vw("import-predictions", "--format", "soccernet", "--model", "m", tmp_path / "preds", "--db", db,
                    "--allow-unknown-videos")
    assert code == 1
    file = game / "results_spotting.json"
    for i, reason in ((1, "'position' is not a number"), (2, "'half' '1' disagrees with gameTime '2 - 01:02'"),
                      (3, "'confidence' is not a number"), (5, "not an object")):
        assert f"NOT IMPORTED {file}: prediction {i}: {reason}" in out, out
    assert "broken/results_spotting.json: not readable as JSON" in out
    rows = {(r["video_id"], r["time_s"], r["label"], r["confidence"])
            for r in open_events(connect(db)).to_arrow().to_pylist()}
    assert rows == {("league/2020-2021/game one/2", 62.0, "Goal", 0.5),
                    ("league/2020-2021/game one/1", 10.5, "Corner", 0.25)}
    code, out = _vw("export-predictions", "--model", "nobody", "--out", tmp_path / "x", "--db", db)
    assert code == 2 and "no events of model 'nobody'" in out


def test_labels_without_videos_score_predictions(tmp_path: Path) -> None:
    games = synth_games(3, n_games=2)
    labels = write_labels(tmp_path / "SoccerNet", games)  # labels only: no video file anywhere
    predictions = write_predictions(tmp_path / "preds", {g.path: g.predictions["qwen"] for g in games})
    db = str(tmp_path / "wh")
    code, out = _vw("ingest", "--format", "soccernet", labels, "--db", db)
    assert code == 1 and "--labels-only registers the labels without videos" in out  # without the flag
    for _ in range(2):  # idempotent
        code, out = _vw("ingest", "--format", "soccernet", "--labels-only", labels, "--db", db)
        assert code == 0, out
    assert "registered from labels only" in out and "0 new" in out
    n_truth = sum(len(g.annotations) for g in games)
    assert f"events: {n_truth} ground-truth events written" in out
    code, out = _vw("status", "--db", db)
    assert "videos: 4 rows (4 without a video file: labels only, skipped by the stages)" in out, out
    code, out = _vw("backfill", "video_embedding", "--models", "tiny", "--db", db)
    assert code == 0, out
    assert "4 rows have no video file (registered from labels only): skipped" in out
    assert "nothing to compute (0 of 0 rows computed)" in out
    code, out = _vw("import-predictions", "--format", "soccernet", "--model", "qwen", predictions, "--db", db)
    assert code == 0, out
    code, out = _vw("ensemble", "--models", "qwen", "--db", db)
    assert code == 0 and "qwen scored alone" in out and "4 with ground truth" in out, out
    official = _official(labels, predictions, "loose")["a_mAP"]
    result = run_ensemble(connect(db), EnsembleOptions(models=["qwen"]), write=False)
    assert abs(result.scores["qwen"].loose.overall - official) < PARITY


def test_events_of_a_model_are_deleted_in_one_commit(tmp_path: Path) -> None:
    games = synth_games(4, n_games=1)
    db = str(tmp_path / "wh")
    conn = connect(db)
    write_events(open_events(conn), events_of(games))
    table = open_events(conn)
    qwen, llava = table.count_rows("model = 'qwen'"), table.count_rows("model = 'llava'")
    version = table.version
    code, out = _vw("events", "--delete", "--models", "qwen", "--where", "confidence < 0.5", "--db", db)
    low = sum(p.confidence < 0.5 for p in games[0].predictions["qwen"])
    assert code == 0 and f"deleted {low} events of qwen matching confidence < 0.5" in out, out
    table.checkout_latest()
    assert table.version == version + 1 and table.count_rows("model = 'qwen'") == qwen - low
    code, out = _vw("events", "--delete", "--models", "qwen", "--db", db)
    assert code == 0 and f"deleted {qwen - low} events of qwen" in out
    table.checkout_latest()
    assert table.count_rows("model = 'qwen'") == 0 and table.count_rows("model = 'llava'") == llava
    code, out = _vw("events", "--delete", "--models", "qwen", "--db", db)
    assert code == 2 and "no events of qwen; models with events: ground_truth, llava" in out
    code, out = _vw("events", "--delete", "--db", db)
    assert code == 2 and "--delete needs --models" in out


def test_same_cell_collisions_follow_the_file_order(tmp_path: Path) -> None:
    """Two predictions of one class in one half-second cell: the official script keeps the last one of
    the file, however confident; an import keeps both and the scoring follows the file's order."""
    import random

    games = synth_games(5, n_games=2)
    labels = write_labels(tmp_path / "labels", games)
    rng = random.Random(5)
    for game in games:
        items = []
        for p in game.predictions["qwen"]:
            item = {"gameTime": f"{p.half} - 00:00", "label": p.label, "position": str(p.position_ms),
                    "half": str(p.half), "confidence": str(p.confidence)}
            items.append(item)
            if rng.random() < 0.4:  # a late, less confident duplicate in the same cell (and a few more confident)
                cell_start = p.position_ms - p.position_ms % 500
                other = min(p.confidence, 1.0) * rng.uniform(0.05, 0.6) if rng.random() < 0.8 else rng.random()
                items.append({**item, "position": str(cell_start + rng.randint(0, 499)),
                              "confidence": str(round(other, 4))})
        rng.shuffle(items)  # any order: what counts is which one comes last in its cell
        folder = tmp_path / "preds" / game.path
        folder.mkdir(parents=True)
        (folder / "results_spotting.json").write_text(json.dumps({"UrlLocal": game.path, "predictions": items}))
    db = str(tmp_path / "wh")
    assert _vw("ingest", "--format", "soccernet", "--labels-only", labels, "--db", db)[0] == 0
    code, out = _vw("import-predictions", "--format", "soccernet", "--model", "qwen", tmp_path / "preds", "--db", db)
    assert code == 0, out
    result = run_ensemble(connect(db), EnsembleOptions(models=["qwen"]), write=False)
    assert _vw("export-predictions", "--model", "qwen", "--out", tmp_path / "out", "--db", db)[0] == 0
    for metric in ("tight", "loose"):
        official = _official(labels, tmp_path / "preds", metric)
        mine = getattr(result.scores["qwen"], metric)
        assert abs(mine.overall - official["a_mAP"]) < 1e-9, metric
        assert abs(mine.visible - official["a_mAP_visible"]) < 1e-9, metric
        exported = _official(labels, tmp_path / "out", metric)
        assert abs(exported["a_mAP"] - official["a_mAP"]) < 1e-9, metric
