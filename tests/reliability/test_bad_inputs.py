"""Bad input never corrupts or drops good data: a clear error naming the input and the problem,
and nothing else changes (other rows finish, stored data untouched, a re-run is idempotent).

Covered, each end to end through the public entry points (mostly the ``vw`` command):

* video files that are empty, random bytes, truncated, text, missing, a folder, or unreadable
  (``chmod 000``), at ingest time and at backfill time (the file changed after ingest);
* malformed annotation files of every ``vw ingest --format`` and of CSV / JSONL / JSON listings;
* an invalid ``--where`` for every command and reader that takes one, unknown models and
  profiles, query vectors of the wrong size, a ``videos`` table of an older schema;
* a full disk while exporting features.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tables.connection import STABLE_ROW_IDS, connect, open_videos
from tables.events import Event, open_events, write_events
from tables.schema import VIDEOS_SCHEMA
from tests.reliability import backfill_scenario as scenario
from tests.reliability.backfill_scenario import URI_SECRET
from tests.reliability.faults import as_nobody, ingest_as_nobody, open_to_everyone, run_cli, snapshot
from tests.videogen import make_broken_files, make_cfr_video
from udfs.arrays import steps_to_arrow

pytestmark = pytest.mark.reliability

ROOT = os.geteuid() == 0
BAD_WHERE = "source = = 'x' AND"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 1 s H.264 clips, an mkv, and the broken variants of ``make_broken_files``."""
    root = tmp_path_factory.mktemp("media")
    (root / "good").mkdir()
    good = make_cfr_video(root / "good" / "clip_a.mp4", num_frames=25, width=96, height=64).path
    other = make_cfr_video(root / "good" / "clip_b.mp4", num_frames=20, width=96, height=64).path
    mkv = make_cfr_video(root / "good" / "half.mkv", num_frames=25, width=96, height=64).path
    broken = make_broken_files(root / "broken", make_cfr_video(root / "valid.mp4", num_frames=50).path)
    (root / "broken" / "folder.mp4").mkdir()
    return {"good": good, "other": other, "mkv": mkv, "root": root, "folder": root / "broken" / "folder.mp4",
            **broken}


def _db(tmp_path: Path) -> str:
    return str(tmp_path / "wh")


def _failures(text: str) -> dict[str, str]:
    """``FAILED <input>: <reason>`` lines of a command's output, keyed by input."""
    out = {}
    for line in text.splitlines():
        if line.startswith("FAILED "):
            head, _, reason = line[len("FAILED "):].partition(": ")
            out[head] = reason
    return out


def _ids(db: str) -> list[str]:
    return sorted(open_videos(connect(db), create=False).to_arrow().column("video_id").to_pylist())


# --------------------------------------------------------------------------- video files at ingest


def test_bad_video_files_at_ingest(media: dict[str, Path], tmp_path: Path) -> None:
    db = _db(tmp_path)
    assert run_cli("ingest", media["good"], "--db", db, "--source", "first").code == 0
    table = open_videos(connect(db), create=False)
    stored_before = table.to_arrow().to_pylist()
    missing = media["root"] / "no-such-file.mp4"
    bad = {
        str(media["empty"]): "empty file (0 bytes)",
        str(media["random"]): "not a readable video container",
        str(media["truncated"]): "not a readable video container",
        str(media["text"]): "not a readable video container",
        str(media["folder"]): "no video files",
        str(missing): "no such file or folder",
    }
    res = run_cli("ingest", media["other"], *bad, "--db", db)
    assert res.code == 1, res.text
    failures = _failures(res.err)
    for path, problem in bad.items():
        assert path in failures, (path, res.err)
        assert problem in failures[path], (path, failures[path])
        if problem == "not a readable video container":
            assert "Invalid data" in failures[path] or "invalid data" in failures[path]
    assert "1 new, 0 updated, 6 failed" in res.out
    table.checkout_latest()
    rows = {r["video_id"]: r for r in table.to_arrow().to_pylist()}
    assert set(rows) == {"clip_a", "clip_b"}
    assert rows["clip_b"]["num_frames"] == 20
    assert [rows["clip_a"]] == stored_before  # the earlier row is untouched

    # re-running the same command: same failures, no duplicate, same rows
    again = run_cli("ingest", media["other"], *bad, "--db", db)
    assert again.code == 1 and _failures(again.err).keys() == _failures(res.err).keys()
    assert "0 new, 1 updated, 6 failed" in again.out
    assert _ids(db) == ["clip_a", "clip_b"]

    # nothing good at all: the table is not even given a new version
    before = snapshot(table)
    only_bad = run_cli("ingest", *bad, "--db", db)
    assert only_bad.code == 1 and "0 new, 0 updated, 6 failed" in only_bad.out
    assert snapshot(table) == before


def test_unreadable_video_file_at_ingest(media: dict[str, Path]) -> None:
    """``chmod 000``. As root the ingest runs with the file-system uid of ``nobody`` (in a
    separate interpreter), so the kernel really refuses the read; root would bypass the bits."""
    work = Path(tempfile.mkdtemp(prefix="vw-perm-"))  # under /tmp: traversable by nobody
    try:
        ok = Path(shutil.copy(media["good"], work / "readable.mp4"))
        denied = Path(shutil.copy(media["other"], work / "denied.mp4"))
        db = str(work / "wh")
        table = open_videos(connect(db))
        from tables.ingest import ingest

        first = ingest(table, [str(ok)])
        assert first.inserted == 1 and not first.failures
        before = table.to_arrow().to_pylist()
        denied.chmod(0)
        if ROOT:
            open_to_everyone(work)
            denied.chmod(0)
            with as_nobody(), pytest.raises(PermissionError):
                denied.open("rb")
            report = ingest_as_nobody(db, str(ok), [str(ok), str(denied)])
            failures = [tuple(f) for f in report["failures"]]
            counts = (report["inserted"], report["updated"])
        else:
            plain = ingest(table, [str(ok), str(denied)])
            failures = [(f.input, f.reason) for f in plain.failures]
            counts = (plain.inserted, plain.updated)
        assert [f[0] for f in failures] == [str(denied)]
        assert f"{denied}: permission denied" in failures[0][1]
        assert counts == (0, 1)
        table.checkout_latest()
        after = table.to_arrow().to_pylist()
        assert [r["video_id"] for r in after] == ["readable"]
        keep = ("video_id", "uri", "num_frames", "duration_s", "size_bytes", "codec")
        assert [{k: r[k] for k in keep} for r in after] == [{k: r[k] for k in keep} for r in before]
    finally:
        for here, dirs, files in os.walk(work):
            for name in dirs + files:
                os.chmod(os.path.join(here, name), 0o700)
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- listings


def test_malformed_listings(media: dict[str, Path], tmp_path: Path) -> None:
    db = _db(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    good, other = media["good"], media["other"]
    (lists / "videos.csv").write_text(
        "uri,video_id,caption,start_s,end_s\n"
        f"{good},g1,a good row,,\n"                      # line 2
        f"{other},g2,extra,field,1,2,3\n"               # line 3: more fields than the header
        f"{other},g3,bad start,abc,\n"                   # line 4
        f"{other},g4,end before start,0.8,0.2\n"         # line 5
        ",g5,no uri,,\n"                                 # line 6
        f"{media['random']},g6,not a video,,\n"          # line 7
        f"{good},g1,duplicate id,,\n"                    # line 8
    )
    (lists / "more.jsonl").write_text(
        json.dumps({"uri": str(other), "video_id": "j1", "captions": ["x", "y"]}) + "\n"   # line 1
        + '{"uri": "broken json\n'                                                          # line 2
        + "[1, 2]\n"                                                                       # line 3
        + json.dumps({"uri": str(other), "video_id": "j4", "captions": "not a list"}) + "\n"  # line 4
        + "\n"
        + json.dumps({"uri": str(other), "video_id": "j6", "split": {"a": 1}}) + "\n"       # line 6
    )
    (lists / "whole.json").write_text('{"uri": "not a list"}')
    (lists / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x81\x82")
    (lists / "noheader.csv").write_text(f"{good},x\n")
    res = run_cli("ingest", *(lists / n for n in ("videos.csv", "more.jsonl", "whole.json", "binary.csv",
                                                  "noheader.csv")), "--db", db)
    assert res.code == 1
    fails = _failures(res.err)
    csv_, jsonl = str(lists / "videos.csv"), str(lists / "more.jsonl")
    expected = {
        f"{csv_} line 3": "more fields than the header",
        f"{csv_} line 4": "'start_s' must be a number",
        f"{csv_} line 5": "must be greater than start_s",
        f"{csv_} line 6": "missing 'uri'",
        f"{csv_} line 7": f"{media['random']}: not a readable video container",
        f"{csv_} line 8": f"{good}: duplicate video_id 'g1'",
        f"{jsonl} line 2": "invalid JSON object",
        f"{jsonl} line 3": "expected an object, got list",
        f"{jsonl} line 4": "'captions' must be",
        f"{jsonl} line 6": "'split' must be a string",
        str(lists / "whole.json"): "must be a list of objects",
        str(lists / "binary.csv"): "cannot read listing",
        str(lists / "noheader.csv"): "no 'uri' column",
    }
    for where, problem in expected.items():
        assert where in fails, (where, res.err)
        assert problem in fails[where], (where, fails[where])
    assert len(fails) == len(expected), res.err
    assert _ids(db) == ["g1", "j1"]
    rows = {r["video_id"]: r for r in open_videos(connect(db), create=False).to_arrow().to_pylist()}
    assert rows["g1"]["caption"] == "a good row" and rows["j1"]["captions"] == ["x", "y"]
    assert run_cli("ingest", lists / "videos.csv", lists / "more.jsonl", "--db", db).code == 1
    assert _ids(db) == ["g1", "j1"]  # idempotent


# --------------------------------------------------------------------------- dataset formats


def _place(src: Path, *targets: Path) -> None:
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, t)


def _dataset_case(fmt: str, base: Path, media: dict[str, Path]) -> tuple[Path, Path, dict[str, str], str]:
    """``(annotation path, videos root, {origin suffix: problem}, good id)`` of a format with
    one good record and malformed ones."""
    videos = base / "videos"
    base.mkdir(parents=True)
    good, mkv = media["good"], media["mkv"]
    if fmt == "msrvtt":
        path = base / "MSRVTT_data.json"
        path.write_text(json.dumps({
            "videos": [{"video_id": "video0", "category": 9, "split": "train", "id": 0},
                       {"video_id": "video1", "category": "cars", "split": "train", "id": 1},
                       "not an object",
                       {"video_id": "video3", "category": 1, "split": "somewhere", "id": 3}],
            "sentences": [{"caption": "a car drives", "video_id": "video0", "sen_id": 0},
                          {"caption": ["list"], "video_id": "video0", "sen_id": 1}]}))
        _place(good, videos / "video0.mp4", videos / "video1.mp4", videos / "video3.mp4")
        return path, videos, {"videos item 2": "'category' must be a number", "videos item 3": "expected an object",
                              "videos item 4": "unknown split", "sentences item 2": "caption"}, "video0"
    if fmt == "vatex":
        path = base / "vatex_training_v1.0.json"
        path.write_text(json.dumps([
            {"videoID": "abcdefghijk_000001_000011", "enCap": ["a man talks"], "chCap": []},
            {"videoID": "no-times-here", "enCap": ["x"]},
            {"videoID": "abcdefghijl_000001_000011", "enCap": "not a list"},
            17]))
        _place(good, videos / "abcdefghijk_000001_000011.mp4", videos / "abcdefghijl_000001_000011.mp4")
        return path, videos, {"item 2": "no-times-here", "item 3": "'enCap' must be a list",
                              "item 4": "expected an object"}, "abcdefghijk_000001_000011"
    if fmt == "webvid":
        path = base / "results_2M_val.csv"
        path.write_text("videoid,contentUrl,duration,page_dir,name\n"
                        "111,http://x/111.mp4,PT00H00M01S,p1,good clip\n"
                        "222,http://x/222.mp4,eleven seconds,p1,bad duration\n"
                        ",http://x/333.mp4,PT00H00M01S,p1,no id\n"
                        "444,http://x/444.mp4,PT00H00M01S,../../etc,escaping folder\n")
        _place(good, videos / "p1" / "111.mp4", videos / "p1" / "222.mp4")
        return path, videos, {"line 3": "ISO 8601", "line 4": "'videoid'",
                              "line 5": "inside it"}, "111"
    if fmt == "panda70m":
        path = base / "panda70m_validation.csv"
        path.write_text("videoID,url,timestamp,caption,matching_score\n"
                        "vidA,u,\"[['0:00:00.000', '0:00:00.500'], ['0:00:00.800', '0:00:00.300']]\","
                        "\"['good clip', 'ends before it starts']\",\"[0.5, 0.4]\"\n"
                        "vidB,u,\"[['0:00:00.000', 'soon']]\",\"['bad time']\",\"[0.5]\"\n"
                        "vidC,u,not a list literal,\"['x']\",\"[0.5]\"\n")
        _place(good, videos / "vidA.mp4", videos / "vidB.mp4", videos / "vidC.mp4")
        problems = {"line 2 clip 2": "ends", "line 3 clip 1": "HH:MM:SS", "line 4": "list literal"}
        return path, videos, problems, "vidA_0_500"
    if fmt == "llava-video-178k":
        path = base / "x_cap_processed.json"
        convo = [{"from": "human", "value": "<image>\nDescribe the video."}, {"from": "gpt", "value": "A cat."}]
        path.write_text(json.dumps([
            {"id": "1", "video": "src/good.mp4", "conversations": convo},
            {"id": "2", "video": "", "conversations": convo},
            {"id": "3", "video": "/abs/evil.mp4", "conversations": convo},
            {"id": "4", "video": "src/other.mp4", "conversations": "not a list"}]))
        _place(good, videos / "src" / "good.mp4", videos / "src" / "other.mp4")
        return path, videos, {"item 2": "'video'", "item 3": "inside it", "item 4": "conversations"}, "src/good"
    if fmt == "soccernet":
        game = "league/2020-2021/2021-01-01 - A 1 - 0 B"
        labels = base / "sn" / game / "Labels-v2.json"
        labels.parent.mkdir(parents=True)
        labels.write_text(json.dumps({"gameHomeTeam": "A", "gameAwayTeam": "B", "annotations": [
            {"gameTime": "1 - 00:01", "label": "Goal", "position": "500", "team": "home", "visibility": "visible"},
            {"gameTime": "3 - 00:01", "label": "Goal", "position": "500", "team": "home"},
            {"gameTime": "1 - 00:01", "label": "", "position": "500", "team": "home"},
            {"gameTime": "1 - 00:02", "label": "Goal", "position": "soon", "team": "away"}]}))
        _place(mkv, base / "sn" / game / "1_224p.mkv", base / "sn" / game / "2_224p.mkv")
        return base / "sn", base / "sn", {"annotations item 2": "gameTime", "annotations item 3": "label",
                                          "annotations item 4": "position"}, f"{game}/1"
    raise AssertionError(fmt)


FORMATS = ("msrvtt", "vatex", "webvid", "panda70m", "llava-video-178k", "soccernet")


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_dataset_records(fmt: str, media: dict[str, Path], tmp_path: Path) -> None:
    path, videos, problems, good_id = _dataset_case(fmt, tmp_path / "ds", media)
    db = _db(tmp_path)
    res = run_cli("ingest", "--format", fmt, path, "--videos-root", videos, "--validation-ratio", "0", "--db", db)
    assert res.code == 1, res.text
    fails = _failures(res.err)
    for suffix, problem in problems.items():
        hits = [(o, r) for o, r in fails.items() if o.endswith(suffix) and ("Labels-v2.json" in o or str(path) in o)]
        assert len(hits) == 1, (suffix, res.err)
        assert problem in hits[0][1], (suffix, hits[0][1])
    assert good_id in _ids(db), res.text
    rows = _ids(db)
    again = run_cli("ingest", "--format", fmt, path, "--videos-root", videos, "--validation-ratio", "0", "--db", db)
    assert again.code == 1 and _ids(db) == rows  # idempotent: nothing duplicated


def _break_file(fmt: str, base: Path) -> tuple[Path, str]:
    """An annotation file of ``fmt`` that cannot be read at all, and the expected problem."""
    base.mkdir(parents=True)
    if fmt in ("msrvtt", "llava-video-178k"):
        name = "MSRVTT_data.json" if fmt == "msrvtt" else "y_cap_processed.json"
        (base / name).write_text('{"videos": [{"video_id": "video0", ')  # truncated
        return base / name, "invalid JSON"
    if fmt == "vatex":
        (base / "vatex_training_v1.0.json").write_text('{"videoID": "not a list"}')
        return base / "vatex_training_v1.0.json", "list"
    if fmt == "webvid":
        (base / "results_2M_val.csv").write_text("id,url\n1,2\n")
        return base / "results_2M_val.csv", "missing column"
    if fmt == "panda70m":
        (base / "panda70m_validation.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\xfa")
        return base / "panda70m_validation.csv", "cannot read"
    labels = base / "l" / "s" / "g" / "Labels-v2.json"
    labels.parent.mkdir(parents=True)
    labels.write_text("{ not json")
    return base, "invalid JSON"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_dataset_file_changes_nothing(fmt: str, media: dict[str, Path], tmp_path: Path) -> None:
    db = _db(tmp_path)
    assert run_cli("ingest", media["good"], "--db", db).code == 0
    table = open_videos(connect(db), create=False)
    before = snapshot(table)
    path, problem = _break_file(fmt, tmp_path / "bad")
    res = run_cli("ingest", "--format", fmt, path, "--db", db)
    assert res.code == 1, res.text
    fails = _failures(res.err)
    assert len(fails) == 1, res.err
    (origin, reason), = fails.items()
    assert origin.startswith(str(path)) and problem.lower() in reason.lower(), (origin, reason)
    assert snapshot(table) == before


# --------------------------------------------------------------------------- filters, models, vectors


D = 8


@pytest.fixture()
def synthetic(tmp_path: Path) -> dict:
    """A warehouse with vector columns written directly (no model run) and an events table."""
    db = _db(tmp_path)
    conn = connect(db)
    rng = np.random.default_rng(0)
    steps = [rng.normal(size=(3, D)).astype(np.float32) for _ in range(4)]
    pooled = np.stack([s.mean(0) / np.linalg.norm(s.mean(0)) for s in steps]).astype(np.float32)
    conn.create_table("videos", pa.table({
        "video_id": ["a", "b", "c", "d"], "uri": [f"/nowhere/{v}.mp4" for v in "abcd"],
        "source": ["s", "s", "t", "t"], "split": ["train"] * 4, "caption": ["a cat", "a dog", "a car", "a cup"],
        "video_embedding": steps_to_arrow(steps, D),
        "video_embedding_pooled": pa.FixedSizeListArray.from_arrays(pa.array(pooled.ravel()), D),
        "frame_features": steps_to_arrow(steps, D),
    }), storage_options=dict(STABLE_ROW_IDS))
    write_events(open_events(conn), [Event("a", "ground_truth", 1.0, "Goal", confidence=1.0)])
    return {"db": db, "conn": conn, "steps": steps}


def _versions(conn) -> dict[str, tuple[int, str]]:
    return {name: snapshot(conn.open_table(name)) for name in sorted(conn.table_names()) if not name.startswith("_")}


def test_invalid_where_everywhere(synthetic: dict, tmp_path: Path) -> None:
    db, conn = synthetic["db"], synthetic["conn"]
    before = _versions(conn)
    out = tmp_path / "features"
    commands = {
        "backfill": ["backfill", "frame_features", "--models", "tiny", "--where", BAD_WHERE],
        "export-features": ["export-features", "--out", str(out), "--where", BAD_WHERE],
        "events": ["events", "--where", BAD_WHERE],
        "search": ["search", "--video-id", "a", "--where", BAD_WHERE],
        "moments": ["moments", "--video-id", "a", "--time", "0", "--where", BAD_WHERE],
        "unknown column": ["search", "--video-id", "a", "--where", "no_such_column > 1"],
    }
    for name, args in commands.items():
        res = run_cli(*args, "--db", db)
        assert res.code == 2, (name, res.text)
        err = res.err.strip()
        assert err.startswith("error:") and "Traceback" not in res.text, (name, res.text)
        assert ("where" in err.lower() or "filter" in err.lower()), (name, err)
        assert (BAD_WHERE in err or "no_such_column" in err), (name, err)
    assert not out.exists() or not any(out.iterdir())
    from tables.clip_dataset import ClipDataset, ClipDatasetError
    from tables.feature_dataset import FeatureDatasetError, FrameFeatureDataset

    with pytest.raises(FeatureDatasetError, match="invalid filter"):
        FrameFeatureDataset(db=db, where=BAD_WHERE)
    with pytest.raises(ClipDatasetError, match="filter"):
        ClipDataset(db=db, where=BAD_WHERE, num_frames=4)
    assert _versions(conn) == before  # nothing was written anywhere


def test_unknown_models_and_profiles(synthetic: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    db, conn = synthetic["db"], synthetic["conn"]
    before = _versions(conn)
    cases = [
        (["backfill", "frame_features", "--models", "bogus"], "unknown model profile 'bogus'"),
        (["backfill", "frame_features", "--models", "frame_features=nope"], "unknown model profile 'nope'"),
        (["backfill", "video_embedding", "--models", "offline"], "has no 'offline' model"),
        (["backfill", "no_such_stage", "--models", "tiny"], "unknown column 'no_such_stage'"),
    ]
    for args, problem in cases:
        res = run_cli(*args, "--db", db)
        assert res.code == 2 and problem in res.err, (args, res.text)
    monkeypatch.setenv("FRAME_MODEL", "/nonexistent/dinov2-checkpoint")
    res = run_cli("backfill", "frame_features", "--models", "full", "--db", db)
    assert res.code == 2, res.text
    assert "cannot load the weights of model '/nonexistent/dinov2-checkpoint'" in res.err
    assert "Fix:" in res.err and "random weights" in res.err  # the way out, never a silent fallback
    assert _versions(conn) == before
    assert "frame_features_times" not in open_videos(conn, create=False).schema.names


def test_bad_ray_settings_and_worker_counts_are_refused_before_anything_is_written(synthetic: dict,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    db, conn = synthetic["db"], synthetic["conn"]
    before = _versions(conn)
    for name, value, problem in [("VW_JOB_DRIVER", "thread", "VW_JOB_DRIVER must be one of command, task"),
                                 ("VW_LOCAL_RAY", "shared", "VW_LOCAL_RAY must be one of warm, per-command")]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            res = run_cli("backfill", "frame_features", "--models", "tiny", "--db", db)
        assert res.code == 2 and problem in res.err and repr(value) in res.err, (name, res.text)
    res = run_cli("backfill", "frame_features", "--models", "tiny", "--concurrency", "0", "--db", db)
    assert res.code == 2 and "--concurrency must be at least 1 (workers per job), got 0" in res.err, res.text
    assert _versions(conn) == before
    assert "frame_features_times" not in open_videos(conn, create=False).schema.names


def test_query_vectors_of_the_wrong_size(synthetic: dict, tmp_path: Path) -> None:
    db = synthetic["db"]
    npy = tmp_path / "q.npy"
    np.save(npy, np.ones((2, 3, D), np.float32))
    cases = [
        (["search", "--vector", "[1, 2, 3]"], "shape (3,)"),
        (["search", "--vector", json.dumps([[1.0] * (D + 1)] * 2)], f"shape (2, {D + 1})"),
        (["search", "--vector", str(npy)], "shape (2, 3, 8)"),
        (["search", "--vector", "[1, \"a\"]"], "not a .npy file nor a JSON list"),
        (["search", "--vector", str(tmp_path / "missing.npy")], "no such file"),
        (["moments", "--vector", "[1, 2]"], "shape (2,)"),
    ]
    for args, problem in cases:
        res = run_cli(*args, "--db", db)
        assert res.code == 2, (args, res.text)
        assert problem in res.err and "Traceback" not in res.text, (args, res.err)
    good = run_cli("search", "--vector", json.dumps(synthetic["steps"][0].mean(0).tolist()), "--format", "json",
                   "--db", db)
    assert good.code == 0, good.text
    assert json.loads(good.out)["results"][0]["video_id"] == "a"


# --------------------------------------------------------------------------- older tables


def test_table_of_an_older_schema(media: dict[str, Path], tmp_path: Path) -> None:
    """A ``videos`` table created before ``category``, ``codec``, ``captions``, clip ranges and
    any computed column existed: reads work or fail clearly, ingest adds what is missing."""
    db = _db(tmp_path)
    conn = connect(db)
    kept = ("video_id", "uri", "source", "split", "caption", "duration_s", "fps", "width", "height",
            "num_frames", "metadata", "ingested_at")
    old_schema = pa.schema([VIDEOS_SCHEMA.field(n) for n in kept])
    old_row = {"video_id": "old1", "uri": str(media["good"]), "caption": "kept caption", "source": "legacy",
               "metadata": json.dumps({"note": "from before"})}
    table = conn.create_table("videos", pa.Table.from_pylist([old_row], schema=old_schema),
                              storage_options=dict(STABLE_ROW_IDS))
    before = snapshot(table)

    status = run_cli("status", "--db", db)
    assert status.code == 0 and "videos: 1 rows" in status.out
    for args, problem in [
        (["search", "--video-id", "old1"], "no column 'video_embedding'"),
        (["moments", "--video-id", "old1", "--time", "0"], "no column 'frame_features'"),
        (["export-features", "--out", str(tmp_path / "f")], "no column 'frame_features'"),
        (["scenarios"], "no 'scenario' column"),
    ]:
        res = run_cli(*args, "--db", db)
        assert res.code == 2 and problem in res.err, (args, res.text)
    sql = run_cli("sql", "SELECT video_id, caption FROM videos", "--format", "json", "--db", db)
    assert sql.code == 0 and "kept caption" in sql.out
    from tables.feature_dataset import FeatureDatasetError, FrameFeatureDataset

    with pytest.raises(FeatureDatasetError, match="no column"):
        FrameFeatureDataset(db=db)
    assert snapshot(table) == before  # reading changed nothing

    lists = tmp_path / "l.jsonl"
    lists.write_text(json.dumps({"uri": str(media["other"]), "video_id": "new1", "category": "pets",
                                 "captions": ["one", "two"], "start_s": 0.1}) + "\n")
    res = run_cli("ingest", media["good"], lists, "--db", db)
    assert res.code == 0, res.text
    table.checkout_latest()
    rows = {r["video_id"]: r for r in table.to_arrow().to_pylist()}
    assert set(rows) == {"old1", "new1"}  # the file was already there as old1: matched by uri
    assert rows["old1"]["caption"] == "kept caption" and rows["old1"]["source"] == "legacy"
    assert json.loads(rows["old1"]["metadata"]) == {"note": "from before"}
    assert rows["old1"]["num_frames"] == 25 and rows["old1"]["codec"] == "h264"
    new = rows["new1"]
    assert (new["category"], new["captions"], new["start_s"]) == ("pets", ["one", "two"], 0.1)
    assert set(VIDEOS_SCHEMA.names) <= set(table.schema.names)
    assert run_cli("status", "--db", db).code == 0


# --------------------------------------------------------------------------- disk full


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """A folder on a 96 KiB tmpfs when this process may mount one; else a plain folder (the
    test then makes writes fail with ENOSPC itself). Yields ``(folder, real_disk)``."""
    target = tmp_path / "small"
    target.mkdir()
    mounted = False
    if ROOT and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(target)],
                                 capture_output=True, timeout=20).returncode == 0
    try:
        yield target, mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], capture_output=True, timeout=20)


def test_disk_full_while_exporting(synthetic: dict, small_disk: tuple[Path, bool],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db, conn = synthetic["db"], synthetic["conn"]
    out, real_disk = small_disk
    first = run_cli("export-features", "--out", str(out), "--db", db)
    assert first.code == 0, first.text
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"a.npy", "b.npy", "c.npy", "d.npy", "index.json", "failed_videos.json"} == set(old)

    # new, larger features: the second export runs out of space part way
    big = [np.full((1500, D), i + 1, np.float32) for i in range(4)]  # 48 KB each
    table = open_videos(conn, create=False)
    table.to_lance().merge(pa.table({"video_id": ["a", "b", "c", "d"],
                                     "frame_features_new": steps_to_arrow(big, D)}), "video_id")
    table.checkout_latest()
    table.to_lance().drop_columns(["frame_features"])
    table.checkout_latest()
    table.to_lance().alter_columns({"path": "frame_features_new", "name": "frame_features"})
    table.checkout_latest()
    if not real_disk:
        import jobs.export_features as ex

        real_fdopen = os.fdopen
        written = {"files": 0}

        def failing_fdopen(fd: int, *args, **kwargs):  # the third file write hits a full disk
            handle = real_fdopen(fd, *args, **kwargs)
            written["files"] += 1
            if written["files"] >= 3:
                real_write = handle.write

                def write(data: bytes) -> int:
                    real_write(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                handle.write = write
            return handle

        monkeypatch.setattr(ex.os, "fdopen", failing_fdopen)
    res = run_cli("export-features", "--out", str(out), "--db", db)
    assert res.code == 2, res.text
    assert "No space left on device" in res.err and str(out) in res.err and "Traceback" not in res.text
    now = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(now) == set(old), "a partial or temporary file was left behind"
    for name, data in now.items():
        if data != old[name]:  # rewritten completely with the new values, never half
            assert name.endswith(".npy")
            vid = name[:-4]
            arr = np.load(out / name)
            np.testing.assert_array_equal(arr, big["abcd".index(vid)])
    assert now["index.json"] == old["index.json"] and now["failed_videos.json"] == old["failed_videos.json"]
    assert sum(now[n] != old[n] for n in now) < 4  # it did stop part way


# --------------------------------------------------------------------------- files changed after ingest


@pytest.fixture(scope="module")
def backfilled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shared backfill over files broken after ingest (see :mod:`backfill_scenario`)."""
    return scenario.run_once(request, tmp_path_factory)


@pytest.mark.integration
def test_files_broken_after_ingest_fail_alone(backfilled: dict) -> None:
    res = backfilled["backfill"]
    assert res.code == 1, res.text  # some rows failed: exit 1, the others are computed
    n, bad = backfilled["rows"], len(scenario.LOCAL_BAD) + len(scenario.GCS_BAD)
    assert f"frame_features: {n - bad} computed, {n - bad}/{n} filled, {bad} failed" in res.out, res.text
    values = scenario.column_values(backfilled["db"])
    assert values["good1"] is not None and values["good1"] == values["good2"]
    assert len(values["good1"]) == 1  # a 1 s clip at 1 fps
    assert all(values[v] is None for v in scenario.LOCAL_BAD)
    errors = scenario.errors_by_id(backfilled["db"])
    assert set(scenario.LOCAL_BAD) <= set(errors)
    expected = {
        "corrupt_middle": ("VideoDecodeError", "decoding failed"),
        "emptied": ("VideoDecodeError", "empty file (0 bytes)"),
        "randomized": ("VideoDecodeError", "not a readable video container"),
        "truncated": ("VideoDecodeError", "not a readable video container"),
        "texted": ("VideoDecodeError", "not a readable video container"),
        "deleted": ("FileNotFoundError", "no such file"),
        "now_a_folder": ("VideoDecodeError", "is a directory"),
        "credentialed": ("FileNotFoundError", "https://***@127.0.0.1:"),
        "denied": ("PermissionError", "permission denied"),
    }
    for vid in scenario.LOCAL_BAD:
        kind, problem = expected[vid]
        err = errors[vid]
        assert err["error_type"] == kind and problem in err["error"], (vid, err)
        assert f"{vid}.mp4" in err["error"], (vid, err)  # the message names the file
        assert err["error"].count(f"{vid}.mp4") <= 2, err  # the path is not repeated over and over
    assert URI_SECRET not in json.dumps([e["error"] for e in errors.values()])
    records = open_videos(connect(backfilled["db"]), create=False).get_errors(column_name="frame_features")
    assert records and all(URI_SECRET not in f"{r.error_message}{r.error_trace}" for r in records)


@pytest.mark.integration
def test_broken_files_change_nothing_else_and_rerun_is_idempotent(backfilled: dict) -> None:
    table = open_videos(connect(backfilled["db"]), create=False)
    after = table.to_arrow().select(backfilled["base"]).sort_by("video_id")
    assert after.equals(backfilled["before"])  # no stored value changed
    rerun = backfilled["rerun"]
    assert "nothing to compute" in rerun.text and "--retry-failed retries them" in rerun.text, rerun.text
    n, bad = backfilled["rows"], len(scenario.LOCAL_BAD) + len(scenario.GCS_BAD)
    status = backfilled["status"]
    assert status.code == 0, status.text
    assert f"frame_features: {n - bad} filled, {bad} missing, {bad} failed" in status.out, status.out
    assert "VideoDecodeError" in status.out
    for res in (backfilled["backfill"], status, rerun):
        assert URI_SECRET not in res.text


@pytest.mark.integration
def test_unreadable_file_at_backfill(backfilled: dict) -> None:
    if scenario.ROOT:
        pytest.skip("running as root: Ray workers read chmod 000 files, so permission denied cannot happen "
                    "at backfill time (covered at ingest with the file-system uid of 'nobody')")
    err = scenario.errors_by_id(backfilled["db"])["denied"]
    assert err["error_type"] == "PermissionError" and "denied.mp4" in err["error"]
