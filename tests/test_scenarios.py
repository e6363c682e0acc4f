"""Scenario labels and caption embeddings without Ray: config, labelling accuracy, UDF cores, reports.

The accuracy test labels ``tests/fixtures/scenario_captions.csv`` (hand-labelled captions in
the style of MSR-VTT, several per scenario of the default file plus ``other``) with the
keyword-only, embedding-only and combined labellers, using the real all-MiniLM-L6-v2 weights.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.scenario_metadata import (
    NO_CAPTION,
    NOT_COMPUTED,
    export_metadata,
    format_counts,
    scenario_counts,
    write_chart,
)
from tables.connection import connect
from udfs.models import ModelUnavailableError
from udfs.scenarios import (
    SCORES_TYPE,
    PromptVariants,
    ScenarioConfigError,
    ScenarioLabel,
    ScenarioLabeller,
    ScenarioScores,
    default_scenarios_text,
    embed_descriptions,
    keyword_pattern,
    load_scenarios,
    prompt_variants,
    stage_spec,
)
from udfs.text_embedding import CaptionEmbedding, TextEncoder, text_spec, vectors_from_arrow

CAPTIONS = Path(__file__).parent / "fixtures" / "scenario_captions.csv"
SEED_CAPTION = "A presenter discussing the latest headlines."


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    """The real all-MiniLM-L6-v2 (offline profile), on the CPU."""
    return TextEncoder("offline", device="cpu")


@pytest.fixture(scope="module")
def config():
    return load_scenarios()


# --------------------------------------------------------------------------- config


def test_default_file_covers_the_seed_scenarios(config) -> None:
    assert len(config.scenarios) >= 10
    assert {"press_room", "urban", "nature", "transport", "crowd"} <= set(config.names)
    assert config.other == "other"
    assert all(s.description and s.keywords and s.prompts for s in config.scenarios)
    assert config.source.endswith("(default)") and len(config.digest) == 16


def test_prompt_variants_follow_the_seed_example(config) -> None:
    variants = prompt_variants(SEED_CAPTION, "press_room", config)
    assert variants[:2] == [
        "A presenter discussing the latest headlines.",
        "Press room camera shot capturing a press room briefing with A presenter discussing the latest headlines.",
    ]
    assert len(variants) == 1 + len(config.prompts_for("press_room"))
    assert prompt_variants("a man is talking", "other", config) == ["a man is talking",
                                                                   "A video clip showing a man is talking"]


def test_config_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    base = default_scenarios_text()
    cases = {
        "dup.yaml": (base + "\n  - name: urban\n    description: again\n    keywords: [x]\n", "duplicate"),
        "template.yaml": (base.replace("briefing with {caption}", "briefing with {title}"), "press_room"),
        "nodesc.yaml": ("scenarios:\n  - name: a\n    keywords: [x]\n", "scenario 'a': description"),
        "badname.yaml": ("scenarios:\n  - name: Big Name\n    description: d\n", "lower_snake_case"),
        "notyaml.yaml": ("scenarios: [\n", "invalid YAML"),
        "empty.yaml": ("other: {name: other}\n", "non-empty 'scenarios' list"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ScenarioConfigError) as err:
            load_scenarios(str(path))
        assert str(path) in str(err.value) and expected in str(err.value), (name, str(err.value))
    with pytest.raises(ScenarioConfigError, match="cannot read"):
        load_scenarios(str(tmp_path / "absent.yaml"))
    with pytest.raises(ScenarioConfigError, match="absent.yaml"):
        stage_spec("offline", str(tmp_path / "absent.yaml"))


def test_digest_follows_the_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = default_scenarios_text()
    path = tmp_path / "s.yaml"
    path.write_text(text)
    same = load_scenarios(str(path))
    assert same.digest == load_scenarios().digest
    path.write_text(text.replace("min_score: 0.15", "min_score: 0.2"))
    changed = load_scenarios(str(path))
    assert changed.digest != same.digest and changed.min_score == 0.2
    monkeypatch.setenv("VW_SCENARIOS", str(path))
    assert load_scenarios().digest == changed.digest


def test_keyword_patterns() -> None:
    assert keyword_pattern("car").search("two cars race")
    assert not keyword_pattern("car").search("a cartoon dog")
    assert keyword_pattern("press conference").search("a Press  Conference at noon")
    assert keyword_pattern("bus").search("the buses stop")
    assert not keyword_pattern("news").search("a newspaper")


# --------------------------------------------------------------------------- labelling accuracy


def _labelled() -> tuple[list[str], list[str]]:
    with CAPTIONS.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["caption"] for r in rows], [r["scenario"] for r in rows]


def test_combined_labeller_beats_keywords_and_embeddings(encoder, config, record_property) -> None:
    captions, gold = _labelled()
    assert len(captions) >= 60
    assert set(gold) == {*config.names, config.other}  # every scenario and `other` is represented
    labeller = ScenarioLabeller(config, embed_descriptions(config, encoder))
    embeddings = encoder.encode(captions)

    def accuracy(labels: list[str]) -> float:
        return float(np.mean([a == b for a, b in zip(labels, gold, strict=True)]))

    keyword_only = accuracy(labeller.label_keywords(captions))
    embedding_only = accuracy(labeller.label_embeddings(embeddings))
    combined = accuracy(labeller.label(captions, embeddings))
    print(f"\nscenario accuracy on {len(captions)} captions: keyword-only {keyword_only:.3f}, "
          f"embedding-only {embedding_only:.3f}, combined {combined:.3f}")
    for name, value in (("keyword_only", keyword_only), ("embedding_only", embedding_only),
                        ("combined", combined)):
        record_property(f"scenario_accuracy_{name}", round(value, 4))
    assert combined > keyword_only
    assert combined > embedding_only
    assert combined >= 0.8


# --------------------------------------------------------------------------- UDF cores


def test_caption_embedding_udf(encoder) -> None:
    udf = CaptionEmbedding("offline", device="cpu")
    captions = pa.array(["a man is playing a guitar", None, "   ", "a person plays music on stage",
                         "a car drives on the highway"])
    out = udf(captions)
    assert out.type == pa.list_(pa.float32(), 384)
    vectors, valid = vectors_from_arrow(out)
    assert valid.tolist() == [True, False, False, True, True]
    np.testing.assert_allclose(np.linalg.norm(vectors[valid], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], encoder.encode(["a man is playing a guitar"])[0], atol=1e-5)
    assert vectors[0] @ vectors[3] > vectors[0] @ vectors[4] + 0.2


def test_full_profile_with_an_unreachable_model_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXT_EMBEDDING_MODEL", "example-org/no-such-text-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="example-org/no-such-text-model") as err:
        text_spec("full")
    assert "TEXT_EMBEDDING_MODEL" in str(err.value)
    assert text_spec("offline").name == "sentence-transformers/all-MiniLM-L6-v2"  # offline ignores it


def test_tiny_profile_is_labelled_random() -> None:
    spec = text_spec("tiny")
    assert spec.random_weights and spec.dim == 32 and spec.field_metadata()["vw.random_weights"] == "true"
    real = text_spec("offline")
    assert not real.random_weights and real.dim == 384 and real.name == "sentence-transformers/all-MiniLM-L6-v2"
    out = CaptionEmbedding("tiny", device="cpu")(pa.array(["a dog", None]))
    assert out.type.list_size == 32 and out.null_count == 1


def test_scenario_udfs_chain(encoder, config) -> None:
    captions = pa.array(["A presenter discussing the latest headlines.", None, "", "a dog is running in the grass",
                         "a close up of a clock ticking"])
    embeddings = CaptionEmbedding("offline", device="cpu")(captions)
    scores = ScenarioScores(config, embed_descriptions(config, encoder))(captions, embeddings)
    assert scores.type == SCORES_TYPE
    rows = scores.to_pylist()
    assert rows[1] is None and rows[2] is None
    assert [s["scenario"] for s in rows[0]][0] == "press_room" and len(rows[0]) == len(config.scenarios)
    assert all(a["score"] >= b["score"] for a, b in zip(rows[0], rows[0][1:], strict=False))
    top = rows[0][0]
    assert top["score"] == pytest.approx(top["similarity"] + config.keyword_weight * min(top["keyword_hits"], 2),
                                         abs=1e-5)
    labels = ScenarioLabel(config)(scores)
    assert labels.to_pylist() == ["press_room", None, None, "animals", "other"]
    variants = PromptVariants(config)(captions, labels).to_pylist()
    assert variants[0] == prompt_variants(SEED_CAPTION, "press_room", config)
    assert variants[1] is None and variants[2] is None
    assert variants[4] == ["a close up of a clock ticking", "A video clip showing a close up of a clock ticking"]


# --------------------------------------------------------------------------- reports


@pytest.fixture()
def labelled_db(tmp_path: Path):
    """A warehouse whose videos table already holds scenario columns (written directly)."""
    conn = connect(str(tmp_path / "wh"))
    rows = [
        ("a", "train", "a news anchor", "press_room"),
        ("b", "train", "a city street", "urban"),
        ("c", "validation", "a forest", "nature"),
        ("d", "train", "a man is talking", "other"),
        ("e", "test", "a bus", "transport"),
        ("f", "train", None, None),
        ("g", None, "a river", "nature"),
        ("h", "train", "a car", None),
    ]
    table = pa.Table.from_pylist([
        {"video_id": v, "uri": f"/videos/{v}.mp4", "split": sp, "caption": cap, "scenario": sc, "source": "msrvtt",
         "start_s": None, "end_s": None,
         "prompt_variants": None if sc is None else [cap, f"{sc}: {cap}"]}
        for v, sp, cap, sc in rows
    ])
    conn.create_table("videos", table)
    return conn


def test_counts_chart_and_export(labelled_db, tmp_path: Path) -> None:
    counts = scenario_counts(labelled_db)
    assert counts.get("nature", "validation") == 1 and counts.get("nature", "(no split)") == 1
    assert counts.get(NO_CAPTION, "train") == 1 and counts.get(NOT_COMPUTED, "train") == 1
    assert counts.total() == 8 and counts.splits[:3] == ["train", "validation", "test"]
    text = format_counts(counts)
    assert text.splitlines()[-1].split() == ["total", "5", "1", "1", "1", "8"]
    chart = write_chart(counts, tmp_path / "out" / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = tmp_path / "scenario_metadata.json"
    report = export_metadata(labelled_db, out, frames_dir="data/frames", latents_dir="data/latents")
    data = json.loads(out.read_text())
    assert set(data) == {"train", "validation", "test"}
    assert [e["video_id"] for e in data["train"]] == ["a", "b", "d"]
    first = data["train"][0]
    assert list(first)[:6] == ["video_path", "image_path", "caption", "prompt_variants", "scenario", "latent_path"]
    assert first["image_path"] == "data/frames/a.png"
    assert first["latent_path"] == "data/latents/press_room/a.npz"
    assert (report.without_scenario, report.without_split) == (2, 1)
    assert not list(tmp_path.glob(".scenario_metadata.json.*"))  # the temp file was renamed
    only = export_metadata(labelled_db, out, where="source = 'msrvtt' AND split = 'validation'")
    assert only.per_split == {"train": 0, "validation": 1}
    assert json.loads(out.read_text())["validation"][0]["image_path"] is None


def test_reports_need_the_scenario_columns(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "wh"))
    conn.create_table("videos", pa.Table.from_pylist([{"video_id": "a", "uri": "/a.mp4"}]))
    with pytest.raises(LookupError, match="vw backfill scenarios"):
        scenario_counts(conn)
