"""Similarity search on synthetic tables: every pooling against a numpy reference, filters, indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.indexing import IndexOptions, run_index
from tables.connection import connect
from tables.pooling import PoolingError, parse_pooling
from tables.search import SearchError, search
from tables.vector_search import vector_index
from udfs.arrays import steps_to_arrow

N, D = 1000, 16
RARE = 10  # 1% of the rows have source = 'rare'


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _make_steps(rng: np.random.Generator) -> list[np.ndarray]:
    """Videos of 4-12 steps drifting over time around one of 20 themes (so poolings disagree)."""
    themes = rng.normal(size=(20, D))
    out = []
    for i in range(N):
        t = int(rng.integers(4, 13))
        start, end = themes[i % 20], themes[(i * 7 + 3) % 20]
        w = np.linspace(0, 1, t)[:, None]
        out.append(((1 - w) * start + w * end + 0.8 * rng.normal(size=(t, D))).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(7)
    steps = _make_steps(rng)
    pooled = np.stack([_unit(s.mean(0)) for s in steps]).astype(np.float32)
    db = str(tmp_path_factory.mktemp("search") / "db")
    conn = connect(db)
    sources = ["rare" if i % (N // RARE) == 0 else "common" for i in range(N)]
    conn.create_table("videos", pa.table({
        "video_id": [f"v{i:04d}" for i in range(N)],
        "uri": [f"/videos/v{i:04d}.mp4" for i in range(N)],
        "split": ["test" if i % 3 == 0 else "train" for i in range(N)],
        "source": sources,
        "caption": [f"caption of video {i}" for i in range(N)],
        "video_embedding": steps_to_arrow(steps, D),
        "video_embedding_pooled": pa.FixedSizeListArray.from_arrays(pa.array(pooled.ravel()), D),
    }))
    return {"db": db, "conn": conn, "steps": steps, "pooled": pooled, "sources": np.array(sources)}


# -- an independent numpy reference of each strategy -------------------------------------------


def ref_pool(kind: str, x: np.ndarray) -> np.ndarray:
    t = len(x)
    if kind == "mean":
        v = x.mean(0)
    elif kind == "max":
        v = x.max(0)
    elif kind.startswith("centre"):
        sigma = float(kind.split(":")[1]) if ":" in kind else 0.25
        idx = np.arange(t)
        w = np.exp(-0.5 * ((idx - (t - 1) / 2) / (sigma * t)) ** 2)
        v = (w[:, None] * x).sum(0) / w.sum()
    elif kind.startswith("segment"):
        a, b = (float(p) for p in kind.split(":")[1].split("-"))
        centres = (np.arange(t) + 0.5) / t
        sel = (centres >= a) & ((centres < b) | (b >= 1))
        if not sel.any():
            sel[np.argmin(np.abs(centres - (a + b) / 2))] = True
        v = x[sel].mean(0)
    else:
        raise AssertionError(kind)
    return _unit(v.astype(np.float64))


def ref_scores(kind: str, query: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
    if kind == "multivector":
        q = _unit(query.astype(np.float64))
        return np.array([(q @ _unit(s.astype(np.float64)).T).max(1).mean() for s in steps])
    qv = ref_pool(kind, query)
    return np.array([ref_pool(kind, s) @ qv for s in steps])


POOLINGS = ["mean", "max", "centre", "centre:0.1", "segment:0-0.33", "segment:0.5-1", "multivector"]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_each_pooling_matches_numpy_reference(wh: dict, pooling: str) -> None:
    qi = 17
    res = search(wh["conn"], video_id=f"v{qi:04d}", pooling=pooling, k=8, candidates="exact", columns=["split"])
    scores = ref_scores(pooling, wh["steps"][qi], wh["steps"])
    scores[qi] = -np.inf  # the query video itself is left out
    order = np.argsort(-scores)[:8]
    assert res.column("video_id") == [f"v{i:04d}" for i in order]
    np.testing.assert_allclose(res.column("score"), scores[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.column("distance"), 1 - scores[order], rtol=1e-5, atol=1e-5)
    assert res.column("rank") == list(range(1, 9)) and len(res.column("split")) == 8


def test_poolings_really_differ(wh: dict) -> None:
    tops = {p: tuple(search(wh["conn"], video_id="v0017", pooling=p, k=5, candidates="exact").column("video_id"))
            for p in ("mean", "max", "segment:0-0.33", "segment:0.5-1")}
    assert len(set(tops.values())) >= 3


def test_pooling_specs() -> None:
    assert parse_pooling("segment:0-0.33").name == "segment:0-0.33"
    assert parse_pooling("centre").sigma == 0.25 and parse_pooling("center:0.5").sigma == 0.5
    for bad in ("segment:0.5-0.2", "segment:0-1.5", "median", "centre:0"):
        with pytest.raises(PoolingError, match="pooling|segment|sigma"):
            parse_pooling(bad)


def test_mean_uses_pooled_column_and_query_by_vector(wh: dict) -> None:
    q = wh["pooled"][3]
    res = search(wh["conn"], vector=q, k=5)
    assert res.plan["video"]["column"] == "video_embedding_pooled"
    ref = wh["pooled"] @ _unit(q)
    assert res.column("video_id") == [f"v{i:04d}" for i in np.argsort(-ref)[:5]]
    # [T, D] per-step vectors are pooled like the candidates
    res2 = search(wh["conn"], vector=wh["steps"][3], pooling="max", k=3, candidates="exact")
    ref2 = ref_scores("max", wh["steps"][3], wh["steps"])
    assert res2.column("video_id") == [f"v{i:04d}" for i in np.argsort(-ref2)[:3]]


def test_wrong_vector_size_names_the_expected_size(wh: dict) -> None:
    with pytest.raises(SearchError, match=r"shape \(15,\).*16-d vectors"):
        search(wh["conn"], vector=np.ones(15))
    with pytest.raises(SearchError, match="no video 'nope'"):
        search(wh["conn"], video_id="nope")
    with pytest.raises(SearchError, match="one video query"):
        search(wh["conn"], video_id="v0001", vector=np.ones(16))


def test_filters_respected_and_bad_filter_reported(wh: dict) -> None:
    for pooling in ("mean", "max", "multivector"):
        res = search(wh["conn"], video_id="v0005", pooling=pooling, k=20, where="split = 'test'", columns=["split"])
        assert len(res) == 20 and set(res.column("split")) == {"test"}
    from tables.filters import FilterError

    with pytest.raises(FilterError, match="no_such_column"):
        search(wh["conn"], video_id="v0005", where="no_such_column = 1")


@pytest.fixture(scope="module")
def indexed(wh: dict) -> dict:
    reports = run_index(wh["conn"], "videos", None, IndexOptions(min_rows=500, recall_queries=10), log=print)
    by_col = {(r.column, r.kind): r for r in reports}
    return {"reports": by_col}


def test_index_build_reports_recall(wh: dict, indexed: dict) -> None:
    rep = indexed["reports"][("video_embedding_pooled", "vector")]
    assert rep.action == "built" and rep.detail.startswith("IVF_HNSW_SQ")
    assert rep.recall_at_10 is not None and rep.recall_at_10 >= 0.9
    assert indexed["reports"][("caption", "fts")].action == "built"
    assert indexed["reports"][("source", "scalar")].detail == "BITMAP"
    assert indexed["reports"][("video_id", "scalar")].detail == "BTREE"
    table = wh["conn"].open_table("videos")
    assert vector_index(table, "video_embedding_pooled").index_type.upper().startswith("IVF")


def test_selective_filter_still_returns_k(wh: dict, indexed: dict) -> None:
    rare = [f"v{i:04d}" for i in np.nonzero(wh["sources"] == "rare")[0]]
    for candidates in ("ann", "auto"):
        res = search(wh["conn"], vector=wh["pooled"][1], k=RARE, where="source = 'rare'", candidates=candidates)
        assert sorted(res.column("video_id")) == sorted(rare)
    res = search(wh["conn"], video_id="v0001", pooling="max", k=RARE - 1, where="source = 'rare'",
                 candidates="pooled")
    assert len(res) == RARE - 1 and set(res.column("video_id")) <= set(rare)


def test_auto_picks_the_path_by_cost(wh: dict, indexed: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import tables.vector_search as vs

    q = wh["pooled"][7]
    small = search(wh["conn"], vector=q, k=10)  # a small table: exact beats the index
    assert small.plan["video"]["method"] == "exact" and "<=" in small.plan["video"]["chosen_because"]
    monkeypatch.setattr(vs, "EXACT_BUDGET", 1000)
    big = search(wh["conn"], vector=q, k=10)  # past the budget: the HNSW index
    assert big.plan["video"]["method"] == "ann" and ">" in big.plan["video"]["chosen_because"]
    rare = search(wh["conn"], vector=q, k=5, where="source = 'rare'")  # a selective filter: exact again
    assert rare.plan["video"]["method"] == ("exact" if RARE * q.shape[-1] <= 1000 else "ann")
    assert len(set(small.column("video_id")) & set(big.column("video_id"))) >= 9


def test_ann_paths_agree_with_exact(wh: dict, indexed: dict) -> None:
    q = wh["pooled"][42]
    ann_res = search(wh["conn"], vector=q, k=10, candidates="ann")
    assert ann_res.plan["video"]["method"] == "ann"
    exact_res = search(wh["conn"], vector=q, k=10, candidates="exact")
    assert len(set(ann_res.column("video_id")) & set(exact_res.column("video_id"))) >= 9
    # re-ranking a pool that holds every row is exact
    pooled = search(wh["conn"], video_id="v0042", pooling="centre", k=10, candidates="pooled", pool_size=N)
    exact_c = search(wh["conn"], video_id="v0042", pooling="centre", k=10, candidates="exact")
    assert pooled.column("video_id") == exact_c.column("video_id")
    mv = search(wh["conn"], video_id="v0042", pooling="multivector", k=5, candidates="ann")
    mv_exact = search(wh["conn"], video_id="v0042", pooling="multivector", k=5, candidates="exact")
    assert mv.column("video_id") == mv_exact.column("video_id")
    np.testing.assert_allclose(mv.column("score"), mv_exact.column("score"), rtol=1e-5)


def test_cli_search_and_status(wh: dict, indexed: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["search", "--video-id", "v0003", "-k", "3", "--pooling", "segment:0-0.33",
                              "--columns", "caption", "--db", wh["db"]])
    assert res.exit_code == 0, res.output
    assert "caption of video" in res.stdout and res.stdout.splitlines()[0].split()[:4] == [
        "rank", "video_id", "score", "distance"]
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["search", "--video-id", "v0003", "-k", "2", "--format", "json", "--out", str(out),
                              "--db", wh["db"]])
    assert res.exit_code == 0, res.output
    import json

    doc = json.loads(out.read_text())
    assert len(doc["results"]) == 2 and doc["plan"]["pooling"] == "mean"
    res = runner.invoke(app, ["search", "--vector", "[1, 2]", "--db", wh["db"]])
    assert res.exit_code == 2 and "16-d vectors" in res.output
    res = runner.invoke(app, ["status", "--json", "--db", wh["db"]])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    kinds = {i["type"] for i in status[0]["indexes"]}
    assert {"BTree", "Bitmap"} <= kinds and any("Hnsw" in k for k in kinds)


def test_cli_index_skips_small_tables(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "db"))
    vecs = _unit(np.random.default_rng(0).normal(size=(50, D))).astype(np.float32)
    conn.create_table("videos", pa.table({
        "video_id": [f"x{i}" for i in range(50)], "split": ["a"] * 50,
        "video_embedding_pooled": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), D)}))
    res = CliRunner().invoke(app, ["index", "--db", str(tmp_path / "db")])
    assert res.exit_code == 0, res.output
    assert "videos.video_embedding_pooled: vector skipped (50 vectors < 5000: no index" in res.stdout
    assert "videos.split: scalar built (BITMAP)" in res.stdout
    # exact search stays correct without an index
    got = search(conn, vector=vecs[4], column="video_embedding_pooled", k=1)
    assert got.column("video_id") == ["x4"] and got.plan["video"]["method"] == "exact"
    res = CliRunner().invoke(app, ["index", "--column", "nope", "--db", str(tmp_path / "db")])
    assert res.exit_code == 2 and "no column 'nope'" in res.output


def test_video_and_text_queries_are_fused(wh: dict, indexed: dict) -> None:
    from tables.text_search import rrf_scores

    fused = search(wh["conn"], video_id="v0003", text="video 5", k=5)
    assert fused.plan["text"]["mode"] == "fts" and "reciprocal rank fusion" in fused.plan["fusion"]
    video = search(wh["conn"], video_id="v0003", k=50).column("video_id")
    fts = search(wh["conn"], text="video 5", k=50).column("video_id")
    expected = rrf_scores({"video": video, "fts": fts})[:5]
    assert fused.column("video_id") == [key for key, _ in expected]
    assert set(fused.table.column_names) >= {"video_rank", "video_score", "fts_rank", "fts_score"}
