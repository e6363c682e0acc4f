"""Dataset adapters: each format's annotation files -> ``videos`` rows (and SoccerNet events).

The annotation files under ``tests/fixtures/datasets`` follow each dataset's published layout
and each holds at least one malformed record; the video files are generated here (real H.264
clips) under a separate videos root.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from tables.connection import STABLE_ROW_IDS, connect, open_videos
from tables.datasets import DatasetOptions, ingest_dataset, read_dataset
from tables.datasets.records import clock_seconds, iso_duration_seconds, split_from_name
from tables.datasets.split import assign_split, limit_keys
from tables.datasets.vatex import parse_video_id
from tables.events import GROUND_TRUTH, open_events
from tables.names import VIDEOS
from tables.schema import VIDEOS_SCHEMA
from tests.videogen import make_cfr_video

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
GAME = "england_epl/2014-2015/2015-02-21 - 18-00 Chelsea 1 - 1 Burnley"
ALL = DatasetOptions(validation_ratio=0.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s mp4, a 6 s mp4 (clip ranges) and a 1 s mkv, all real H.264."""
    root = tmp_path_factory.mktemp("clips")
    return {
        "short": make_cfr_video(root / "short.mp4", num_frames=25, width=96, height=64).path,
        "long": make_cfr_video(root / "long.mp4", num_frames=60, fps=10, width=96, height=64).path,
        "mkv": make_cfr_video(root / "half.mkv", num_frames=25, width=96, height=64).path,
    }


def _place(clip: Path, root: Path, *names: str) -> Path:
    """Copies of ``clip`` at ``root/<name>`` for each name; returns ``root``."""
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, target)
    return root


@pytest.fixture()
def conn(tmp_path: Path):
    return connect(str(tmp_path / "wh"))


def _rows(conn) -> dict[str, dict]:
    return {r["video_id"]: r for r in open_videos(conn, create=False).to_arrow().to_pylist()}


def _reasons(report) -> dict[str, str]:
    return {f.input: f.reason for f in report.failures}


def _one(failures: dict[str, str], suffix: str) -> str:
    hits = [reason for origin, reason in failures.items() if origin.endswith(suffix)]
    assert len(hits) == 1, (suffix, failures)
    return hits[0]


# --------------------------------------------------------------------------- helpers


def test_value_parsers() -> None:
    assert iso_duration_seconds("PT00H00M11S", "duration") == 11.0
    assert iso_duration_seconds("PT1H2M3.5S", "duration") == 3723.5
    assert clock_seconds("0:00:05.005", "t") == pytest.approx(5.005)
    assert clock_seconds("01:02:03.250", "t") == pytest.approx(3723.25)
    assert parse_video_id("Ptf_2VRj-V0_000122_000132") == ("Ptf_2VRj-V0", 122, 132)
    assert parse_video_id("a_b_c_000001_000011") == ("a_b_c", 1, 11)
    assert split_from_name("results_2M_val.csv") == "validation"
    assert split_from_name("vatex_training_v1.0.json") == "train"
    assert split_from_name("panda70m_testing.csv") == "test"
    assert split_from_name("MSRVTT_data.json") is None
    for bad in ("PT", "11 seconds", "P1H"):
        with pytest.raises(ValueError, match="ISO 8601"):
            iso_duration_seconds(bad, "duration")
    with pytest.raises(ValueError, match="HH:MM:SS"):
        clock_seconds("5 s", "t")
    with pytest.raises(ValueError, match="videoID"):
        parse_video_id("Ptf_2VRj-V0_122_132")


def test_split_ratio_deterministic_and_stable_under_appends() -> None:
    ids = [f"video{i}" for i in range(20000)]
    splits = [assign_split(v, None, 0.1, seed=7) for v in ids]
    share = splits.count("validation") / len(ids)
    assert abs(share - 0.1) < 0.01  # binomial sd is 0.002 at this size
    assert set(splits) == {"train", "validation"}
    assert splits == [assign_split(v, None, 0.1, seed=7) for v in ids]  # deterministic
    other_seed = [assign_split(v, None, 0.1, seed=8) for v in ids]
    assert other_seed != splits and abs(other_seed.count("validation") / len(ids) - 0.1) < 0.01
    # ingesting the first 1000 first and the rest later gives every row the same split
    assert [assign_split(v, None, 0.1, seed=7) for v in ids[:1000]] == splits[:1000]
    # the dataset's own validation/test rows keep their split; the ratio only carves train
    assert {assign_split(v, "test", 0.5, seed=7) for v in ids[:100]} == {"test"}
    assert {assign_split(v, "validation", 0.0, seed=7) for v in ids[:100]} == {"validation"}
    assert {assign_split(v, "train", 0.0, seed=7) for v in ids[:100]} == {"train"}
    with pytest.raises(ValueError, match="validation-ratio"):
        assign_split("x", None, 1.0, seed=0)


def test_limit_is_a_deterministic_nested_subset() -> None:
    ids = [f"clip{i}" for i in range(500)]
    ten = limit_keys(ids, 10, seed=3)
    assert len(ten) == 10 and ten == limit_keys(reversed(ids), 10, seed=3)
    assert ten < limit_keys(ids, 50, seed=3)
    assert ten != limit_keys(ids, 10, seed=4)
    assert limit_keys(ids, None, seed=3) == set(ids)
    with pytest.raises(ValueError, match="--limit"):
        limit_keys(ids, 0, seed=3)


# --------------------------------------------------------------------------- adapters


def test_msrvtt(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "msrvtt" / "MSRVTT_data.json")
    videos = _place(clips["short"], tmp_path / "v", *(f"video{i}.mp4" for i in range(5)))
    opts = DatasetOptions(videos_root=str(videos), validation_ratio=0.0)
    report = ingest_dataset(conn, "msrvtt", path, opts)
    assert (report.records, report.missing, report.ingest.inserted) == (5, 1, 4)
    failures = _reasons(report)
    assert "caption" in _one(failures, "MSRVTT_data.json sentences item 5")
    assert "'category' must be a number from 0 to 19" in _one(failures, "MSRVTT_data.json videos item 5")
    assert "video5.mp4" in _one(failures, "MSRVTT_data.json videos item 6")
    rows = _rows(conn)
    assert set(rows) == {"video0", "video1", "video2", "video3"}
    v0 = rows["video0"]
    assert v0["source"] == "msrvtt" and v0["category"] == "vehicles/autos" and v0["split"] == "train"
    assert v0["caption"] == "a red sports car drives fast on the road"  # smallest sen_id first
    assert v0["captions"] == ["a red sports car drives fast on the road", "a car is shown driving on a highway"]
    assert json.loads(v0["metadata"])["url"] == "https://www.youtube.com/watch?v=9lZi22qLlEo"
    assert v0["start_s"] is None and v0["num_frames"] == 25  # cut clips: probed, no range
    assert rows["video2"]["split"] == "validation" and rows["video3"]["split"] == "test"
    assert rows["video3"]["category"] == "music"

    again = ingest_dataset(conn, "msrvtt", path, opts)
    assert (again.ingest.inserted, again.ingest.updated) == (0, 4)
    assert len(_rows(conn)) == 4


def test_vatex(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "vatex" / "vatex_training_v1.0.json")
    videos = _place(clips["short"], tmp_path / "v", "Ptf_2VRj-V0_000122_000132.mp4", "-0Xa8_dnUFY_000015_000025.mp4",
                    "a1B2c3D4e5F_000030_000040.mp4")
    report = ingest_dataset(conn, "vatex", path, DatasetOptions(videos_root=str(videos), validation_ratio=0.0))
    failures = _reasons(report)
    assert "badid-without-times" in _one(failures, "vatex_training_v1.0.json item 3")
    assert "'enCap' must be a list" in _one(failures, "vatex_training_v1.0.json item 4")
    assert len(failures) == 2
    rows = _rows(conn)
    assert set(rows) == {"Ptf_2VRj-V0_000122_000132", "-0Xa8_dnUFY_000015_000025"}
    row = rows["Ptf_2VRj-V0_000122_000132"]
    assert row["split"] == "train" and row["source"] == "vatex" and len(row["captions"]) == 2
    meta = json.loads(row["metadata"])
    assert meta["youtube_id"] == "Ptf_2VRj-V0" and (meta["source_start_s"], meta["source_end_s"]) == (122, 132)
    assert meta["captions_zh"][0].startswith("一个男人")
    assert ingest_dataset(conn, "vatex", path, DatasetOptions(videos_root=str(videos))).ingest.inserted == 0
    assert len(_rows(conn)) == 2


def test_webvid(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "webvid" / "results_2M_val.csv")
    videos = _place(clips["short"], tmp_path / "v", "006001_006050/31353427.mp4", "006051_006100/18502412.mp4")
    report = ingest_dataset(conn, "webvid", path, DatasetOptions(videos_root=str(videos)))
    failures = _reasons(report)
    assert "ISO 8601" in _one(failures, "results_2M_val.csv line 4")
    assert "006001_006050/14781349.mp4" in _one(failures, "results_2M_val.csv line 3")
    rows = _rows(conn)
    assert set(rows) == {"31353427"}
    row = rows["31353427"]
    assert row["caption"].startswith("Merida, mexico") and row["split"] == "validation"
    assert json.loads(row["metadata"])["listed_duration_s"] == 15.0
    assert row["uri"].endswith("006001_006050/31353427.mp4")


def test_panda70m_clips_keep_their_range(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "panda70m" / "panda70m_validation.csv")
    videos = _place(clips["long"], tmp_path / "v", "--R8VrcuKEs.mp4", "0-NqRqRIhoo.mp4")
    report = ingest_dataset(conn, "panda70m", path, DatasetOptions(videos_root=str(videos)))
    failures = _reasons(report)
    assert "ends" in _one(failures, "panda70m_validation.csv line 2 clip 3")
    assert "list literal" in _one(failures, "panda70m_validation.csv line 4")
    past_end = [r for o, r in failures.items() if "line 3 clip 2" in o]
    assert len(past_end) == 1 and "past the end" in past_end[0]  # 600 s into a 6 s video
    rows = _rows(conn)
    assert set(rows) == {"--R8VrcuKEs_0_2500", "--R8VrcuKEs_2500_5000", "0-NqRqRIhoo_1000_3000"}
    clip = rows["--R8VrcuKEs_2500_5000"]
    assert (clip["start_s"], clip["end_s"]) == (2.5, 5.0)
    assert clip["caption"] == "Passengers walk along the platform next to the train."
    assert json.loads(clip["metadata"])["matching_score"] == pytest.approx(0.4101)
    assert rows["--R8VrcuKEs_0_2500"]["uri"] == clip["uri"]  # one source file, two ranges
    assert clip["split"] == "validation" and clip["duration_s"] == pytest.approx(6.0, abs=0.2)
    again = ingest_dataset(conn, "panda70m", path, DatasetOptions(videos_root=str(videos)))
    assert (again.ingest.inserted, again.ingest.updated) == (0, 3)


def test_panda70m_clips_of_one_video_share_a_split(tmp_path: Path) -> None:
    result = read_dataset("panda70m", str(FIXTURES / "panda70m" / "panda70m_validation.csv"), str(tmp_path))
    groups = {r.video_id: r.group for r in result.records}
    assert groups["--R8VrcuKEs_0_2500"] == groups["--R8VrcuKEs_2500_5000"] == "--R8VrcuKEs"
    for seed in range(20):
        pair = {assign_split(groups[v], None, 0.5, seed) for v in ("--R8VrcuKEs_0_2500", "--R8VrcuKEs_2500_5000")}
        assert len(pair) == 1


def test_llava_video(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "llava_video")
    videos = _place(clips["short"], tmp_path / "v", "academic_source/activitynet/v_-4wsuPCjDBc.mp4",
                    "academic_source/activitynet/v_0LqXeTnEhSs.mp4")
    report = ingest_dataset(conn, "llava-video-178k", path, DatasetOptions(videos_root=str(videos)))
    failures = _reasons(report)
    assert "turn 1" in _one(failures, "0_30_s_academic_v0_1_cap_processed.json item 3")
    assert len(failures) == 1
    rows = _rows(conn)
    cooking = rows["academic_source/activitynet/v_-4wsuPCjDBc"]
    assert cooking["caption"].startswith("The video shows a man in a kitchen")
    meta = json.loads(cooking["metadata"])
    assert meta["qa"] == [{"question": "What does the man put into the pan?", "answer": "Sliced vegetables."},
                          {"question": "Where is the pan?", "answer": "On the stove."}]
    assert cooking["source"] == "llava-video-178k" and cooking["split"] in ("train", "validation")
    assert rows["academic_source/activitynet/v_0LqXeTnEhSs"]["caption"].startswith("A group of people play")


def test_soccernet_halves_and_ground_truth_events(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "soccernet"
    shutil.copytree(FIXTURES / "soccernet", root)
    _place(clips["mkv"], root, f"{GAME}/1_224p.mkv", f"{GAME}/2_224p.mkv")
    report = ingest_dataset(conn, "soccernet", str(root), ALL)
    failures = _reasons(report)
    assert "'position'" in _one(failures, "Labels-v2.json annotations item 3")
    assert "'gameTime'" in _one(failures, "Labels-v2.json annotations item 5")
    assert report.ingest.inserted == 2 and report.events == 3
    rows = _rows(conn)
    assert set(rows) == {f"{GAME}/1", f"{GAME}/2"}
    assert json.loads(rows[f"{GAME}/2"]["metadata"])["home_team"] == "Chelsea"
    assert rows[f"{GAME}/1"]["split"] == rows[f"{GAME}/2"]["split"]

    events = open_events(conn, create=False).to_arrow().to_pylist()
    assert {e["model"] for e in events} == {GROUND_TRUTH}
    by_label = {(e["video_id"], e["label"]): e for e in events}
    goal = by_label[(f"{GAME}/2", "Goal")]
    assert goal["time_s"] == 1.6 and goal["team"] == "away"
    assert json.loads(goal["metadata"]) == {"gameTime": "2 - 00:01", "position_ms": 1600, "team": "away",
                                            "visibility": "not shown"}
    assert by_label[(f"{GAME}/1", "Kick-off")]["time_s"] == 1.2

    # re-ingest after an annotation was removed: no duplicates, the removed one is gone
    labels_path = root / GAME / "Labels-v2.json"
    labels = json.loads(labels_path.read_text())
    labels["annotations"] = [a for a in labels["annotations"] if a["label"] != "Kick-off"]
    labels_path.write_text(json.dumps(labels))
    again = ingest_dataset(conn, "soccernet", str(root), ALL)
    assert again.ingest.inserted == 0 and again.events == 2
    events = open_events(conn, create=False).to_arrow().to_pylist()
    assert sorted(e["label"] for e in events) == ["Ball out of play", "Goal"]
    labels["annotations"] = [a for a in labels["annotations"] if not a["gameTime"].startswith("2 ")]
    labels_path.write_text(json.dumps(labels))
    assert ingest_dataset(conn, "soccernet", str(root), ALL).events == 1  # half 2 has none left
    events = open_events(conn, create=False).to_arrow().to_pylist()
    assert [(e["video_id"], e["label"]) for e in events] == [(f"{GAME}/1", "Ball out of play")]


def test_soccernet_missing_half_is_reported_with_its_events(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "soccernet"
    shutil.copytree(FIXTURES / "soccernet", root)
    _place(clips["mkv"], root, f"{GAME}/1_224p.mkv")
    report = ingest_dataset(conn, "soccernet", str(root), ALL)
    reason = _one(_reasons(report), "Labels-v2.json half 2")
    assert "2_224p.mkv" in reason and "1 ground-truth events were not written" in reason
    assert {e["video_id"] for e in open_events(conn, create=False).to_arrow().to_pylist()} == {f"{GAME}/1"}


def test_limit_and_unreadable_annotation_file(conn, clips: dict[str, Path], tmp_path: Path) -> None:
    path = str(FIXTURES / "msrvtt" / "MSRVTT_data.json")
    videos = _place(clips["short"], tmp_path / "v", *(f"video{i}.mp4" for i in range(6)))
    report = ingest_dataset(conn, "msrvtt", path, DatasetOptions(videos_root=str(videos), limit=2, seed=1))
    assert report.selected == 2 and report.ingest.inserted == 2
    first = set(_rows(conn))
    other = connect(str(tmp_path / "wh2"))
    ingest_dataset(other, "msrvtt", path, DatasetOptions(videos_root=str(videos), limit=2, seed=1))
    assert set(_rows(other)) == first
    broken = tmp_path / "MSRVTT_data.json"
    broken.write_text("{not json")
    bad = ingest_dataset(conn, "msrvtt", str(broken), DatasetOptions(videos_root=str(videos)))
    assert [f.input for f in bad.failures] == [str(broken)] and "invalid JSON" in bad.failures[0].reason
    with pytest.raises(ValueError, match="unknown dataset format"):
        ingest_dataset(conn, "kinetics", path)
    with pytest.raises(ValueError, match="no such folder"):
        ingest_dataset(conn, "msrvtt", path, DatasetOptions(videos_root=str(tmp_path / "nowhere")))


def test_older_table_gets_the_category_column(tmp_path: Path, clips: dict[str, Path]) -> None:
    conn = connect(str(tmp_path / "wh"))
    old_schema = pa.schema([f for f in VIDEOS_SCHEMA if f.name != "category"])
    old = conn.create_table(VIDEOS, schema=old_schema, storage_options=dict(STABLE_ROW_IDS))
    old.add(pa.Table.from_pylist([{"video_id": "kept", "uri": "/somewhere/kept.mp4", "caption": "kept"}],
                                 schema=old_schema))
    videos = _place(clips["short"], tmp_path / "v", *(f"video{i}.mp4" for i in range(4)))
    report = ingest_dataset(conn, "msrvtt", str(FIXTURES / "msrvtt" / "MSRVTT_data.json"),
                            DatasetOptions(videos_root=str(videos)))
    assert report.ingest.inserted == 4
    rows = _rows(conn)
    assert rows["kept"]["caption"] == "kept" and rows["kept"]["category"] is None
    assert rows["video3"]["category"] == "music"


def test_cli_ingest_format(tmp_path: Path, clips: dict[str, Path]) -> None:
    db = str(tmp_path / "wh")
    videos = _place(clips["short"], tmp_path / "v", *(f"video{i}.mp4" for i in range(4)))
    args = ["ingest", "--format", "msrvtt", str(FIXTURES / "msrvtt" / "MSRVTT_data.json"),
            "--videos-root", str(videos), "--db", db]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 3 and any("videos item 6" in line and "video5.mp4" in line for line in failed)
    assert "4 new" in result.stdout
    result = CliRunner().invoke(app, [*args, "--validation-ratio", "1.5"])
    assert result.exit_code == 2 and "--validation-ratio" in result.stderr
    result = CliRunner().invoke(app, ["ingest", str(videos), "--limit", "3", "--db", db])
    assert result.exit_code == 2 and "--format" in result.stderr


def test_annotations_and_videos_on_an_object_store(conn, clips: dict[str, Path]) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/vw-datasets/results_2M_val.csv", (FIXTURES / "webvid" / "results_2M_val.csv").read_bytes())
    fs.pipe("/vw-datasets/006001_006050/14781349.mp4", clips["short"].read_bytes())
    try:
        report = ingest_dataset(conn, "webvid", "memory://vw-datasets/results_2M_val.csv")
        assert report.ingest.inserted == 1
        assert "memory://vw-datasets/006001_006050/31353427.mp4" in _one(_reasons(report), "line 2")
        row = _rows(conn)["14781349"]
        assert row["uri"] == "memory://vw-datasets/006001_006050/14781349.mp4" and row["num_frames"] == 25
    finally:
        fs.rm("/vw-datasets", recursive=True)
