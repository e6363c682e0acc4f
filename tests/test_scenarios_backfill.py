"""End to end on a real local Ray: a dataset ingest, then the `scenarios` stage through geneva.

One warehouse, tests in file order: the first backfill (Python API) fills caption_embedding,
scenario_scores, scenario and prompt_variants with the real all-MiniLM-L6-v2; then the
scenarios file is edited and `vw backfill scenarios` recomputes the scenario columns (their
UDF version follows the file's content); the report commands read the result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jobs.backfill import BackfillOptions, run_backfill
from jobs.cli import app
from tables.connection import connect, open_videos
from tables.datasets import DatasetOptions, ingest_dataset
from tables.ingest import ingest
from tests.videogen import make_cfr_video
from udfs.scenarios import default_scenarios_text, load_scenarios, prompt_variants
from udfs.text_embedding import TextEncoder, vectors_from_arrow

pytestmark = pytest.mark.integration

MSRVTT = Path(__file__).parent / "fixtures" / "datasets" / "msrvtt" / "MSRVTT_data.json"
COLUMNS = ["caption_embedding", "scenario_scores", "scenario", "prompt_variants"]
EXPECTED = {"video0": "transport", "video1": "cooking", "video2": "press_room", "video3": "music"}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> dict:
    root = tmp_path_factory.mktemp("scenarios")
    clip = make_cfr_video(root / "clip.mp4", num_frames=25, width=96, height=64).path
    videos = root / "videos"
    videos.mkdir()
    for i in range(4):
        shutil.copy(clip, videos / f"video{i}.mp4")
    db = str(root / "db")
    conn = connect(db)
    report = ingest_dataset(conn, "msrvtt", str(MSRVTT), DatasetOptions(videos_root=str(videos),
                                                                         validation_ratio=0.0))
    assert report.ingest.inserted == 4
    # a row without a caption: its scenario columns stay NULL
    shutil.copy(clip, root / "uncaptioned.mp4")
    assert ingest(open_videos(conn), [str(root / "uncaptioned.mp4")], split="train").inserted == 1
    scenarios = root / "scenarios.yaml"
    scenarios.write_text(default_scenarios_text())
    return {"db": db, "root": root, "scenarios": scenarios}


def _columns(db: str) -> dict[str, dict]:
    table = open_videos(connect(db), create=False).to_arrow()
    return {r["video_id"]: r for r in table.select(["video_id", "caption", "scenario", "scenario_scores",
                                                    "prompt_variants"]).to_pylist()}


def test_backfill_fills_the_scenario_columns(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    opts = BackfillOptions(profile="offline", scenarios=str(warehouse["scenarios"]))
    reports = run_backfill(conn, ["scenarios"], opts, log=print)
    assert [r.column for r in reports] == COLUMNS
    assert [r.computed for r in reports] == [4, 4, 4, 4] and all(r.failed == 0 for r in reports)

    table = open_videos(conn, create=False)
    data = table.to_arrow()
    ids = data.column("video_id").to_pylist()
    vectors, valid = vectors_from_arrow(data.column("caption_embedding"))
    assert dict(zip(ids, valid.tolist(), strict=True)) == {**dict.fromkeys(EXPECTED, True), "uncaptioned": False}
    captions = data.column("caption").to_pylist()
    expected = TextEncoder("offline", device="cpu").encode([c for c in captions if c])
    np.testing.assert_allclose(vectors[valid], expected, atol=1e-4)

    config = load_scenarios(str(warehouse["scenarios"]))
    rows = _columns(warehouse["db"])
    assert {v: r["scenario"] for v, r in rows.items()} == {**EXPECTED, "uncaptioned": None}
    assert rows["uncaptioned"]["scenario_scores"] is None and rows["uncaptioned"]["prompt_variants"] is None
    press = rows["video2"]
    assert press["prompt_variants"] == prompt_variants(press["caption"], "press_room", config)
    assert press["prompt_variants"][1] == ("Press room camera shot capturing a press room briefing with "
                                           "a presenter discussing the latest headlines")
    assert [s["scenario"] for s in press["scenario_scores"]][0] == "press_room"
    assert len(press["scenario_scores"]) == len(config.scenarios)
    meta = table.schema.field("scenario").metadata
    assert meta[b"vw.scenarios_digest"] == config.digest.encode() and meta[b"vw.random_weights"] == b"false"
    assert table.schema.field("caption_embedding").metadata[b"vw.name"] == b"sentence-transformers/all-MiniLM-L6-v2"


def test_editing_the_scenarios_file_recomputes_via_cli(warehouse: dict) -> None:
    before = open_videos(connect(warehouse["db"]), create=False).to_arrow()
    path: Path = warehouse["scenarios"]
    text = path.read_text()
    edited = text.replace("- name: cooking", "- name: kitchen").replace(
        "Press room camera shot capturing a press room briefing with {caption}",
        "Newsroom footage of {caption}")
    assert edited != text
    path.write_text(edited)
    runner = CliRunner()
    result = runner.invoke(app, ["backfill", "scenarios", "--models", "offline", "--scenarios", str(path),
                                 "--db", warehouse["db"]])
    assert result.exit_code == 0, result.output

    after = open_videos(connect(warehouse["db"]), create=False)
    rows = _columns(warehouse["db"])
    assert rows["video1"]["scenario"] == "kitchen" and rows["video0"]["scenario"] == "transport"
    assert rows["video2"]["prompt_variants"][1] == "Newsroom footage of a presenter discussing the latest headlines"
    assert after.schema.field("scenario_scores").metadata[b"vw.scenarios_digest"] == \
        load_scenarios(str(path)).digest.encode()
    assert after.to_arrow().column("caption_embedding").equals(before.column("caption_embedding"))

    chart = warehouse["root"] / "chart.png"
    result = runner.invoke(app, ["scenarios", "--out", str(chart), "--db", warehouse["db"]])
    assert result.exit_code == 0, result.output
    assert "kitchen" in result.stdout and chart.read_bytes()[:4] == b"\x89PNG"
    out = warehouse["root"] / "scenario_metadata.json"
    result = runner.invoke(app, ["export-metadata", "--out", str(out), "--db", warehouse["db"]])
    assert result.exit_code == 0, result.output
    exported = json.loads(out.read_text())
    assert [e["video_id"] for e in exported["train"]] == ["video0", "video1"]
    assert [e["video_id"] for e in exported["validation"]] == ["video2"]
    assert exported["train"][1]["scenario"] == "kitchen"
    assert exported["train"][1]["video_path"].endswith("video1.mp4")
