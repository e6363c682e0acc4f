"""A stage declared in a test module only (tests/stage_mean_colour.py) works everywhere a built-in one does.

Ingest, backfill (one geneva job; the derived timestamps are computed in-process), ``vw status``,
search by a query video, the ``.npy`` export, and the manifests: nothing else is changed for it.
The same stage on an existing Ray cluster is in tests/test_cluster_backfill.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jobs.backfill import BackfillOptions, run_backfill
from jobs.export_features import export_features
from jobs.status import warehouse_status
from manifests.environments import environment_for_stage
from tables.connection import connect, open_videos
from tables.ingest import ingest
from tables.search import search
from tests import stage_mean_colour
from udfs.arrays import steps_from_arrow
from udfs.stages import register, registry, unregister

pytestmark = pytest.mark.integration


def _solid(path: Path, colour: str, seconds: float) -> Path:
    """A video of one solid colour (H.264, 160x120, 25 fps)."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"color=c={colour}:s=160x120:r=25",
                    "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def stage():
    register(stage_mean_colour.STAGE)
    yield stage_mean_colour.STAGE
    unregister(stage_mean_colour.NAME)


def test_a_stage_declared_in_a_test_module(tmp_path: Path, stage, local_ray: None) -> None:
    assert registry()["mean_colour"] is stage
    assert environment_for_stage("mean_colour").name == "mean-colour"
    videos = tmp_path / "videos"
    videos.mkdir()
    made = {name: _solid(videos / f"{name}.mp4", colour, seconds)
            for name, colour, seconds in (("a", "red", 2.4), ("b", "green", 1.2), ("c", "blue", 3.2))}
    conn = connect(str(tmp_path / "db"))
    report = ingest(open_videos(conn), [str(videos)])
    assert report.inserted == 3 and not report.failures

    logs: list[str] = []
    main, times = run_backfill(conn, ["mean_colour"], BackfillOptions(profile="tiny"), log=logs.append)
    assert (main.column, main.computed, main.failed) == ("mean_colour", 3, 0)
    assert (times.column, times.computed) == ("mean_colour_times", 3)
    assert any("rows computed from mean_colour in this process" in line for line in logs), logs

    table = open_videos(conn, create=False)
    rows = table.to_arrow().sort_by("video_id")
    got = dict(zip(rows["video_id"].to_pylist(), steps_from_arrow(rows["mean_colour"]), strict=True))
    for name, video in made.items():
        expected = stage_mean_colour.mean_colours(str(video))
        assert got[name].shape == (len(expected), 3)
        np.testing.assert_array_equal(got[name], expected)
    assert rows["mean_colour_times"].to_pylist()[1] == [0.0, 1.0]  # b: 1.2 s
    assert got["c"][:, 2].min() > 0.5 > got["c"][:, 0].max()  # blue

    status = {c.column: c for t in warehouse_status(conn) for c in t.columns}
    assert (status["mean_colour"].filled, status["mean_colour"].missing) == (3, 0)
    assert status["mean_colour_times"].filled == 3

    hits = search(conn, video=str(made["c"]), column="mean_colour", k=3, include_query=True)
    assert hits.column("video_id")[0] == "c"

    out = tmp_path / "export"
    done = export_features(table, "mean_colour", out)
    assert done.written == 3
    np.testing.assert_array_equal(np.load(out / "a.npy"), got["a"])
    assert json.loads((out / "index.json").read_text())["column"] == "mean_colour"

    again = run_backfill(conn, ["mean_colour"], BackfillOptions(profile="tiny"), log=logs.append)
    assert [r.computed for r in again] == [0, 0]
