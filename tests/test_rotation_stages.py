"""Phone-style videos through the model stages on the shared local Ray: the latents and both detectors.

Each display rotation (90, 180, 270) is ingested twice: as a phone stores it (coded frames plus a
display matrix) and as its twin (the displayed frames themselves, stored upright). Both files are
lossless, so an upright decode gives the same frames, and every stage must store the same values
for both. (The frame-features and video-embedding integration tests hold the same pairs.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from jobs.backfill import BackfillOptions, run_backfill
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tables.windows import open_windows, refresh_windows
from tests.test_video_latents import latent_cells
from tests.videogen import RotationTwins, make_rotation_twins
from udfs.video_latents import latents_of

pytestmark = pytest.mark.integration

STAGES = ["video_latents", "detections_llava", "detections_qwen"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("rotwh")
    twins = make_rotation_twins(root / "videos")
    db = str(root / "db")
    conn = connect(db)
    files = [str(v.path) for pair in twins.values() for v in (pair.rotated, pair.twin)]
    assert ingest(open_videos(conn), files).inserted == 6
    refresh_windows(conn)  # one window per 2 s video
    env = {"DETECT_MAX_NEW_TOKENS": "8", "LATENT_SIZE": "96x64"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield {"db": db, "twins": twins}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)


def _pairs(twins: dict[int, RotationTwins]) -> Iterator[tuple[int, str, str]]:
    for rotation, pair in twins.items():
        yield rotation, pair.rotated.path.stem, pair.twin.path.stem


def test_every_model_stage_sees_rotated_videos_upright(warehouse: dict) -> None:
    conn = connect(warehouse["db"])
    # batch_size 1: each window is its own generate call, so sampling starts from the same seed for both twins.
    reports = run_backfill(conn, STAGES, BackfillOptions(profile="tiny", batch_size=1, num_frames=9), log=print)
    for r in reports:
        assert (r.failed, r.filled_after) == (0, r.rows), r

    videos = {r["video_id"]: r for r in open_videos(conn, create=False).to_arrow().drop_columns(
        ["video_latents"]).to_pylist()}
    cells = latent_cells(warehouse["db"])
    windows = open_windows(conn).to_arrow().to_pylist()
    assert sorted(w["video_id"] for w in windows) == sorted(videos)  # one window each
    by_video = {w["video_id"]: w for w in windows}
    for rotation, rotated, twin in _pairs(warehouse["twins"]):
        pair = warehouse["twins"][rotation]
        assert (videos[rotated]["width"], videos[rotated]["height"]) == (pair.twin.width, pair.twin.height)
        for got, want in zip(latents_of(cells[rotated]), latents_of(cells[twin]),
                             strict=True):
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3,
                                       err_msg=f"video_latents, rotation {rotation}")
        for column in ("detections_llava", "detections_qwen"):
            assert by_video[rotated][column] == by_video[twin][column], (column, rotation)
    # The stage sees the orientation: turned frames give other latents.
    assert not np.allclose(latents_of(cells["rot90"])[0].astype(np.float32),
                           latents_of(cells["rot270"])[0].astype(np.float32), atol=1e-2)
