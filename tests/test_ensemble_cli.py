"""`vw ensemble` on a small warehouse: tables written, idempotent re-runs, report files, clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from tables.connection import connect
from tables.ensemble_results import ENSEMBLE_MATCHES, ENSEMBLE_METRICS, OVERALL, read_results
from tables.events import Event, open_events, write_events
from tests.soccernet_synth import events_of, synth_games

runner = CliRunner()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("warehouse")
    write_events(open_events(connect(str(path))), events_of(synth_games(7, n_games=1)))
    return path


def count(path: Path, table: str, where: str | None = None) -> int:
    """Rows of ``table`` as stored now (a fresh connection sees the latest version)."""
    return connect(str(path)).open_table(table).count_rows(where)


def vw(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_ensemble_command_writes_tables_and_report(warehouse: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    code, out = vw("ensemble", "--models", "qwen,llava", "--run-id", "r1", "--report", str(report),
                   "--db", str(warehouse))
    assert code == 0, out
    assert "run r1: models qwen, llava -> 'ensemble'" in out
    assert "categories: both" in out and "overall" in out and "Goal" in out

    conn = connect(str(warehouse))
    metrics = read_results(conn, ENSEMBLE_METRICS, "run_id = 'r1'")
    assert set(metrics.column("model").to_pylist()) == {"qwen", "llava", "ensemble"}
    overall = {r["model"]: r for r in read_results(conn, ENSEMBLE_METRICS, f"label = '{OVERALL}'").to_pylist()}
    assert set(overall) == {"qwen", "llava", "ensemble"}
    for row in overall.values():
        assert row["tp"] + row["fn"] == row["n_gt"] > 0
        assert 0 < row["f1"] < 1 and 0 < row["ap_tight"] < row["ap_loose"] < 1
    by_model = read_results(conn, ENSEMBLE_MATCHES, "run_id = 'r1' AND scope = 'models'")
    assert {"both", "only_qwen", "only_llava"} <= set(by_model.column("category").to_pylist())
    assert by_model.num_rows == open_events(conn).count_rows("model IN ('qwen', 'llava')")
    for model, row in overall.items():
        mine = read_results(conn, ENSEMBLE_MATCHES, f"run_id = 'r1' AND scope = 'ground_truth' AND model = '{model}'")
        mine = mine.column("category").to_pylist()
        assert (mine.count("tp"), mine.count("fp"), mine.count("fn")) == (row["tp"], row["fp"], row["fn"])

    fused = count(warehouse, "events", "model = 'ensemble' AND run_id = 'r1'")
    assert fused == overall["ensemble"]["n_pred"] > 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["run_id"] == "r1" and summary["fused_events"] == fused
    assert summary["metrics"]["ensemble"]["overall"]["f1"] == pytest.approx(overall["ensemble"]["f1"])
    assert summary["timelines"] == {"videos": 2, "drawn": 2}
    assert summary["files"][0] == "report.md"
    for name in ["f1_per_class.png", "ap_per_class.png", *summary["files"][1:]]:
        assert (report / name).stat().st_size > 5000, name
    assert len(list((report / "timelines").glob("*.png"))) == 2
    for model in ("qwen", "llava", "ensemble"):
        assert (report / f"pr_{model}-{hashlib.sha1(model.encode()).hexdigest()[:6]}.png").exists()
    markdown = (report / "report.md").read_text()
    assert "| ensemble | **overall** |" in markdown and "| qwen | Goal |" in markdown
    assert markdown.count("](timelines/") == 2 and "](f1_per_class.png)" in markdown
    assert markdown.count("![precision / recall of") == 3
    assert "## Top disagreements" in markdown
    top = summary["top_disagreements"]
    assert top and top[0]["start_s"] <= top[0]["end_s"] and len({e["model"] for e in top[0]["events"]}) > 1
    assert f"| {top[0]['video_id']} | " in markdown

    # The same run id again replaces its rows; another run id adds its own.
    tables = ("events", ENSEMBLE_MATCHES, ENSEMBLE_METRICS)
    sizes = [count(warehouse, t) for t in tables]
    assert vw("ensemble", "--models", "qwen,llava", "--run-id", "r1", "--db", str(warehouse))[0] == 0
    assert [count(warehouse, t) for t in tables] == sizes
    code, out = vw("ensemble", "--models", "llava,qwen", "--run-id", "r2", "--nms", "soft", "--weights",
                   "qwen=2,llava=1", "--tolerance", "2", "--db", str(warehouse))
    assert code == 0, out
    assert count(warehouse, "events", "run_id = 'r1'") == fused
    assert count(warehouse, "events", "model = 'ensemble' AND run_id = 'r2'") > 0
    assert count(warehouse, ENSEMBLE_MATCHES) > sizes[1]
    assert count(warehouse, ENSEMBLE_METRICS, "run_id = 'r2'") == metrics.num_rows
    params = json.loads(read_results(conn, ENSEMBLE_METRICS, "run_id = 'r2'").column("params")[0].as_py())
    assert params["weights"] == {"llava": 1.0, "qwen": 2.0} and params["nms"] == "soft"


def test_ensemble_command_errors(warehouse: Path, tmp_path: Path) -> None:
    db = str(warehouse)
    code, out = vw("ensemble", "--models", "qwen,gemma", "--db", db)
    assert code == 2 and "unknown models ['gemma']" in out and "'llava'" in out and "'qwen'" in out
    code, out = vw("ensemble", "--models", "qwen,llava", "--where", "confidnce > 0.5", "--db", db)
    assert code == 2 and "bad where filter 'confidnce > 0.5'" in out
    code, out = vw("ensemble", "--models", "qwen,llava", "--tolerance", "-1", "--db", db)
    assert code == 2 and "tolerance must be a number of seconds >= 0" in out
    code, out = vw("ensemble", "--models", "qwen,llava", "--where", "confidence > 0.5", "--db", db)
    assert code == 2 and "leaves no events of model 'ground_truth'" in out
    code, out = vw("ensemble", "--models", "qwen", "--db", db)  # one model is scored alone, nothing fused
    assert code == 0 and "qwen scored alone" in out and "fused:" not in out, out
    assert "ensemble_metrics: " in out and "events: " not in out.strip().splitlines()[-1]  # no fused events
    code, out = vw("ensemble", "--models", "qwen,llava", "--weights", "qwen:2", "--db", db)
    assert code == 2 and "MODEL=NUMBER" in out

    bare = tmp_path / "no-truth"
    write_events(open_events(connect(str(bare))), [Event("v/1", "qwen", 1.0, "Goal", confidence=0.9),
                                                   Event("v/1", "llava", 1.5, "Goal", confidence=0.8)])
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(bare))
    assert code == 2 and "no ground truth to score against" in out
    code, out = vw("ensemble", "--models", "qwen,llava", "--no-score", "--run-id", "x", "--db", str(bare))
    assert code == 0 and "categories: both 2" in out and "no scores" in out
    mixed = tmp_path / "mixed-halves"
    write_events(open_events(connect(str(mixed))), [
        Event("g", "qwen", 1.0, "Goal", confidence=0.9), Event("g", "llava", 1.5, "Goal", confidence=0.8),
        Event("g", "ground_truth", 1.0, "Goal", metadata={"game": "a/b/c", "half": 1}),
        Event("g", "ground_truth", 9.0, "Goal", metadata={"game": "a/b/c", "half": 2})])
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(mixed))
    assert code == 2 and "ground truth of video 'g' names several game halves" in out
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(tmp_path / "mistyped"))
    assert code == 2 and f"no warehouse at {tmp_path / 'mistyped'} (from --db)" in out
    assert not (tmp_path / "mistyped").exists()  # a read command never creates a warehouse
    (tmp_path / "empty").mkdir()
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(tmp_path / "empty"))
    assert code == 2 and "no 'events' table" in out


def test_silent_model_outside_labels_and_videos_without_truth(tmp_path: Path) -> None:
    from jobs.ensemble import EnsembleOptions, average_map, run_ensemble

    def truth(video: str, t: float, label: str) -> Event:
        return Event(video, "ground_truth", t, label, metadata={"game": video[:-2], "half": int(video[-1])})

    events = [
        truth("g/1", 10.0, "Goal"), truth("g/1", 50.0, "Corner"), truth("g/1", 80.0, "Dive"),
        truth("g/2", 30.0, "Foul"),
        Event("g/1", "qwen", 10.5, "Goal", confidence=0.9), Event("g/1", "llava", 11.0, "Goal", confidence=0.7),
        Event("g/1", "qwen", 200.0, "Dance", confidence=0.8), Event("g/1", "llava", 50.0, "Corner", confidence=0.6),
        Event("g/2", "qwen", 30.5, "Foul", confidence=0.8),  # llava has no events on g/2
        Event("x/1", "qwen", 5.0, "Goal", confidence=0.5), Event("x/1", "llava", 6.0, "Goal", confidence=0.5),
    ]
    conn = connect(str(tmp_path / "wh"))
    write_events(open_events(conn), events)
    result = run_ensemble(conn, EnsembleOptions(models=["qwen", "llava"], tolerance_s=0, run_id="z"))
    # tolerance 0: nothing at different times matches; g/2's foul is qwen's alone, x/1 is matched but not scored
    cats = {(d.video_id, d.model, d.time_s): g.category for g in result.groups for d in g.members}
    assert cats[("g/2", "qwen", 30.5)] == "only_qwen" and cats[("g/1", "llava", 50.0)] == "only_llava"
    assert result.unscored_videos == ["x/1"] and result.scored_videos == ["g/1", "g/2"]
    assert result.outside_classes["qwen"] == {"Dance": 1} and result.outside_classes["ground_truth"] == {"Dive": 1}
    notes = "\n".join(result.notes)
    assert "qwen: 1 events with labels outside the class list ('Dance' 1)" in notes
    assert "1 videos have no ground truth (x/1)" in notes
    assert "model 'llava' has no events on 1 of 3 videos" in notes
    rows = {(r.model, r.label): r for r in result.metrics}
    dance, dive = rows[("qwen", "Dance")], rows[("qwen", "Dive")]
    assert (dance.fp, dance.ap_tight, dance.ap_loose) == (1, None, None)
    assert (dive.fn, dive.n_gt, dive.ap_tight) == (1, 1, None)
    qwen = rows[("qwen", OVERALL)]
    assert (qwen.tp, qwen.fp, qwen.fn) == (0, 3, 4)  # 0 s tolerance: no prediction is at a truth's time
    # out-of-list labels leave average-mAP as it is without them
    inside = [d for d in result.truths if d.label != "Dive"]
    preds = [d for d in result.inputs["qwen"] if d.label != "Dance"]
    assert qwen.ap_loose == pytest.approx(result.scores["qwen"].loose.overall)
    assert result.scores["qwen"].loose.overall == pytest.approx(
        average_map(inside, preds, deltas_s=tuple(range(5, 65, 5))).overall)
    assert result.scores["qwen"].loose.overall > 0

    report = tmp_path / "report"
    code, out = vw("ensemble", "--models", "qwen,llava", "--tolerance", "0", "--run-id", "z", "--report",
                   str(report), "--db", str(tmp_path / "wh"))
    assert code == 0, out
    assert "labels outside the class list" in out and "have no ground truth" in out
    summary = json.loads((report / "summary.json").read_text())
    assert summary["outside_class_list"]["qwen"] == {"Dance": 1} and summary["unscored_videos"] == ["x/1"]


def test_the_first_run_says_it_compiles(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.ensemble import kernels

    monkeypatch.setattr(kernels, "kernels_to_compile", lambda: (["greedy_groups", "hard_nms"], "/some/cache"))
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(warehouse))
    assert code == 0 and "compiling the analysis kernels (2 numba functions; once per installation, cached in " \
        "/some/cache)" in out
    monkeypatch.undo()
    names, folder = kernels.kernels_to_compile()
    assert names == [] and folder is not None  # compiled and cached by the runs above
    code, out = vw("ensemble", "--models", "qwen,llava", "--db", str(warehouse))
    assert "compiling" not in out


def test_fused_events_of_two_runs_are_told_apart(warehouse: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "two-runs")
    shutil.copytree(warehouse, db)
    vw("events", "--delete", "--models", "ensemble", "--db", db)  # fused events of the earlier tests' runs, if any
    for run, tolerance in (("run-a", "3"), ("run-b", "5")):
        code, out = vw("ensemble", "--models", "qwen,llava", "--run-id", run, "--tolerance", tolerance, "--db", db)
        assert code == 0, out
    code, out = vw("ensemble", "--models", "ensemble,qwen", "--name", "meta", "--db", db)
    assert code == 2 and "model 'ensemble' has events of 2 runs in scope ('run-a', 'run-b')" in out, out
    code, out = vw("ensemble", "--models", "ensemble,qwen", "--name", "meta", "--where",
                   "model != 'ensemble' OR run_id = 'run-b'", "--db", db)
    assert code == 0, out
