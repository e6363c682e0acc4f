"""Text search over captions: full text, semantic (real MiniLM weights, offline profile), hybrid (RRF)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tables.connection import connect
from tables.search import search
from tables.text_search import TextSearchError, rrf_scores
from udfs.text_embedding import TextEncoder, text_spec

CAPTIONS = {
    "dog": "a puppy runs across the grass chasing a ball",
    "cook": "a chef chops onions in a busy restaurant kitchen",
    "goal": "the striker scores a goal and the football crowd cheers",
    "car": "a red car drives along a coastal highway at sunset",
    "cat": "a kitten sleeps on a sofa next to the window",
    "bike": "cyclists ride bikes through a city street in traffic",
    "piano": "a pianist plays a piano concerto on stage",
    "surf": "a surfer rides a big wave at the beach",
}


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory):
    ids = list(CAPTIONS)
    texts = [CAPTIONS[i] for i in ids]
    vectors = TextEncoder("offline", device="cpu").encode(texts)
    spec = text_spec("offline", stage="scenarios")
    meta = spec.field_metadata() | {"vw.pooling": "mean-l2", "vw.source": "caption"}
    field = pa.field("caption_embedding", pa.list_(pa.float32(), spec.dim),
                     metadata={k.encode(): v.encode() for k, v in meta.items()})
    c = connect(str(tmp_path_factory.mktemp("text") / "db"))
    table = c.create_table("videos", pa.table([
        pa.array(ids), pa.array(texts), pa.array(["a" if i in ("dog", "cat", "goal") else "b" for i in ids]),
        pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), spec.dim),
    ], schema=pa.schema([pa.field("video_id", pa.string()), pa.field("caption", pa.string()),
                         pa.field("split", pa.string()), field])))
    table.create_fts_index("caption", replace=True)
    return c


def test_full_text(conn) -> None:
    res = search(conn, text="football goal", text_mode="fts", k=3)
    assert res.column("video_id")[0] == "goal" and len(res) == 1  # only one caption has these words
    assert res.column("score")[0] > 0 and res.column("distance") == [None]


def test_semantic_finds_paraphrases(conn) -> None:
    res = search(conn, text="a young dog playing on a lawn", text_mode="semantic", k=2)
    assert res.column("video_id")[0] == "dog"
    assert res.plan["text"]["semantic"]["model"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    res = search(conn, text="soccer match", text_mode="semantic", k=1, where="split = 'b'")
    assert res.column("video_id") != ["goal"] and len(res) == 1


def test_hybrid_is_rrf_of_both_lists(conn) -> None:
    text = "kitten sleeping on a sofa"
    hybrid = search(conn, text=text, k=8)
    assert hybrid.plan["text"]["mode"] == "hybrid"
    fts = search(conn, text=text, text_mode="fts", k=50).column("video_id")
    sem = search(conn, text=text, text_mode="semantic", k=50).column("video_id")
    expected = rrf_scores({"fts": fts, "semantic": sem})
    assert hybrid.column("video_id") == [key for key, _ in expected][:8]
    np.testing.assert_allclose(hybrid.column("score"), [s for _, s in expected][:8])
    assert hybrid.column("video_id")[0] == "cat"
    row = hybrid.to_list()[0]
    assert row["fts_rank"] == 1 + fts.index("cat") and row["semantic_rank"] == 1 + sem.index("cat")


def test_rrf_formula() -> None:
    fused = dict(rrf_scores({"x": ["a", "b"], "y": ["b", "c"]}))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61) and fused["a"] == pytest.approx(1 / 61)
    assert max(fused, key=fused.get) == "b"


def test_text_mode_needs_its_index(tmp_path) -> None:
    c = connect(str(tmp_path / "db"))
    c.create_table("videos", pa.table({"video_id": ["a"], "caption": ["hello"]}))
    with pytest.raises(TextSearchError, match="vw index --column caption"):
        search(c, text="hello")
    with pytest.raises(TextSearchError, match="vw backfill scenarios"):
        search(c, text="hello", text_mode="semantic")
