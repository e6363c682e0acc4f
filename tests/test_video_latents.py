"""The ``video_latents`` stage: frames -> VAE latents, key frames, the .npz / PNG export, the reader.

Unit tests call the stage's code in-process (tiny VAE, small sizes); the integration test runs
``vw backfill scenarios video_latents`` through geneva on the shared local Ray over an
MSR-VTT-style fixture with one broken video, then ``vw export-metadata --latents-dir
--frames-dir`` and the training reader.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from jobs.cli import app
from tables.column_state import is_blob
from tables.connection import connect, open_videos
from tables.datasets import DatasetOptions, ingest_dataset
from tables.latent_dataset import VideoLatentDataset
from tests.videogen import make_cfr_video
from udfs.decode import SamplingPlan, decode
from udfs.errors import SettingError
from udfs.video_latents import (
    LatentSettings,
    VideoLatents,
    clip_frames,
    frame_times_of,
    key_frame_of,
    latents_of,
    latents_spec,
    parse_size,
    prepare_frames,
)

MSRVTT = Path(__file__).parent / "fixtures" / "datasets" / "msrvtt" / "MSRVTT_data.json"
runner = CliRunner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s, 25 fps, 160x120 video (100 frames)."""
    return make_cfr_video(tmp_path_factory.mktemp("latents") / "clip.mp4", num_frames=100, fps=25, width=160,
                          height=120).path


def _run(udf: VideoLatents, uri: Path, start: float | None = None, end: float | None = None) -> bytes:
    none = pa.array([start], pa.float64()), pa.array([end], pa.float64())
    return udf(pa.array(["v"]), pa.array([str(uri)]), *none).to_pylist()[0]


@pytest.mark.parametrize(("frames", "clips", "start", "end", "shape_t", "n_clips"), [
    (9, 1, None, None, 3, 1),     # 9 frames at 8 fps: 1 + 8/4 latent frames
    (17, 1, None, None, 5, 1),
    (1, 1, None, None, 1, 1),     # one image
    (9, 3, None, None, 3, 3),     # 27 frames = 3.4 s of the 4 s video: three clips
    (17, 3, None, None, 5, 1),    # 4 s at 8 fps = 32 frames: one whole clip of 17, not two
    (49, 1, None, None, 13, 1),   # a clip longer than the video: its last frame repeats
    (9, 1, 3.0, 3.5, 3, 1),       # a row range shorter than a clip
])
def test_latent_shapes_for_clip_lengths(clip: Path, frames: int, clips: int, start: float | None,
                                        end: float | None, shape_t: int, n_clips: int) -> None:
    settings = LatentSettings(fps=8, width=96, height=64, frames=frames, clips=clips, augment=False)
    row = _run(VideoLatents("tiny", settings=settings, batch_size=2, device="cpu"), clip, start, end)
    plain, flipped = latents_of(row)
    assert plain.shape == (n_clips, 4, shape_t, 64 // 8, 96 // 8) and plain.dtype == np.float16
    assert flipped is None
    times = frame_times_of(row).tolist()
    assert len(times) == n_clips * frames
    assert times == sorted(times) and times[0] >= (start or 0) and times[-1] <= (end or 4.0)
    assert np.isfinite(plain.astype(np.float32)).all()
    png = Image.open(io.BytesIO(key_frame_of(row)))
    assert png.size == (96, 64) and png.format == "PNG"


def test_augment_encodes_the_flipped_frames(clip: Path) -> None:
    settings = LatentSettings(fps=8, width=96, height=64, frames=9, clips=1, augment=True)
    udf = VideoLatents("tiny", settings=settings, batch_size=1, device="cpu")
    plain, flipped = latents_of(_run(udf, clip))
    assert flipped is not None and flipped.shape == plain.shape
    assert not np.array_equal(plain, flipped)
    # the flipped latents are the VAE's latents of the mirrored frames
    frames = decode(str(clip), SamplingPlan.window(0, 9 / 8, 8)).data
    mirrored = prepare_frames(frames, 96, 64).flip(-1)
    assert udf._encoder is not None
    expected = udf._encoder.encode([mirrored])
    np.testing.assert_array_equal(flipped, expected)


def test_frames_fed_to_the_vae_equal_a_reference_resize(clip: Path) -> None:
    frames = decode(str(clip), SamplingPlan.window(0, 1, 8)).data  # [8, 3, 120, 160]
    for width, height in [(96, 64), (720, 480), (64, 64), (160, 96)]:
        got = prepare_frames(frames, width, height)
        assert got.shape == (len(frames), 3, height, width) and got.dtype == torch.float32
        # reference: PIL bilinear resize to cover the size, centre crop, scale to [-1, 1]
        h, w = frames.shape[-2:]
        scale = max(width / w, height / h)
        size = (max(width, int(np.ceil(w * scale - 1e-6))), max(height, int(np.ceil(h * scale - 1e-6))))
        for i in (0, len(frames) - 1):
            image = Image.fromarray(frames[i].permute(1, 2, 0).numpy()).resize(size, Image.BILINEAR)
            left, top = (size[0] - width) // 2, (size[1] - height) // 2
            ref = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) / 127.5 - 1
            diff = np.abs(got[i].permute(1, 2, 0).numpy() - ref)
            assert diff.mean() < 0.01 and diff.max() < 0.05, (width, height, diff.mean(), diff.max())


def test_short_videos_repeat_their_last_frame() -> None:
    frames = torch.arange(5).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    settings = LatentSettings(fps=8, width=8, height=8, frames=9, clips=2, augment=False)
    out, times = clip_frames(frames, np.arange(5) / 8, settings)
    assert out[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4] and times[-1] == 4 / 8
    long = torch.zeros(20, 3, 2, 2)
    assert clip_frames(long, np.arange(20) / 8, settings)[0].shape[0] == 18


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("720x480") == (720, 480)
    for bad in ("720", "721x480", "axb", "0x0"):
        with pytest.raises(SettingError, match="LATENT_SIZE"):
            parse_size(bad)
    with pytest.raises(SettingError, match="4k\\+1"):
        LatentSettings(frames=48)
    monkeypatch.setenv("LATENT_AUGMENT", "maybe")
    with pytest.raises(SettingError, match="LATENT_AUGMENT"):
        LatentSettings.from_env()
    monkeypatch.setenv("LATENT_AUGMENT", "0")
    monkeypatch.setenv("LATENT_CLIPS", "2")
    assert LatentSettings.from_env(4, 17) == LatentSettings(fps=4, frames=17, clips=2, augment=False)
    spec = latents_spec("tiny", settings=LatentSettings())
    meta = spec.field_metadata()
    assert meta["vw.random_weights"] == "true" and meta["vw.size"] == "720x480" and meta["vw.fps"] == "8"
    assert float(meta["vw.scaling_factor"]) == pytest.approx(1.15258426) and spec.dim == 4
    with pytest.raises(SettingError, match="offline"):
        latents_spec("offline")


def test_a_broken_video_raises_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    udf = VideoLatents("tiny", settings=LatentSettings(fps=8, width=96, height=64, frames=9), device="cpu")
    with pytest.raises(Exception, match="broken.mp4"):
        _run(udf, bad)


# ------------------------------------------------------------------------------------ end to end


def latent_cells(db: str) -> dict[str, bytes]:
    """The ``video_latents`` blob (the .npz bytes) of every row that has one."""
    ds = open_videos(connect(db), create=False).to_lance()
    got = ds.to_table(columns=["video_id", "_rowoffset"], filter="video_latents IS NOT NULL")
    blobs = ds.take_blobs("video_latents", indices=got.column("_rowoffset").to_pylist())
    return {v: b.read() for v, b in zip(got.column("video_id").to_pylist(), blobs, strict=True)}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, clip: Path, local_ray: None) -> dict:
    root = tmp_path_factory.mktemp("latents-wh")
    videos = root / "videos"
    videos.mkdir()
    for i in range(4):
        shutil.copy(clip, videos / f"video{i}.mp4")
    db = str(root / "db")
    report = ingest_dataset(connect(db), "msrvtt", str(MSRVTT),
                            DatasetOptions(videos_root=str(videos), validation_ratio=0.0))
    assert report.ingest.inserted == 4
    (videos / "video3.mp4").write_bytes(b"\x00" * 4096)  # broken after ingest: its latents fail
    return {"db": db, "root": root}


@pytest.mark.integration
def test_backfill_export_and_reader(warehouse: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    db, root = warehouse["db"], warehouse["root"]
    monkeypatch.setenv("LATENT_SIZE", "96x64")
    result = runner.invoke(app, ["backfill", "scenarios", "--models", "offline", "--db", db])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["backfill", "video_latents", "--models", "tiny", "--num-frames", "9", "--db", db])
    assert result.exit_code != 0 or "1 failed" in result.output, result.output
    assert "video3" in result.output, result.output

    table = open_videos(connect(db), create=False)
    cells = latent_cells(db)
    assert set(cells) == {"video0", "video1", "video2"}  # video3 failed: NULL
    keys = {r["video_id"]: r["key_frame"] for r in table.to_arrow().select(["video_id", "key_frame"]).to_pylist()}
    assert keys["video3"] is None
    field = table.to_lance().schema.field("video_latents")
    meta = {k.decode(): v.decode() for k, v in field.metadata.items()}
    assert is_blob(field), field  # written by geneva as a Lance blob
    assert meta["vw.size"] == "96x64" and meta["vw.num_frames"] == "9" and meta["vw.random_weights"] == "true"
    for vid, cell in cells.items():
        plain, flipped = latents_of(cell)
        assert plain.shape == (1, 4, 3, 8, 12) and flipped is not None
        assert keys[vid] == key_frame_of(cell)

    out = root / "scenario_metadata.json"
    latents_dir, frames_dir = root / "latents", root / "frames"
    result = runner.invoke(app, ["export-metadata", "--out", str(out), "--latents-dir", str(latents_dir),
                                 "--frames-dir", str(frames_dir), "--db", db])
    assert result.exit_code == 0, result.output
    assert "latent files: 3 written" in result.output and "image files: 3 written" in result.output
    metadata = json.loads(out.read_text())
    entries = {e["video_id"]: e for split in metadata.values() for e in split}
    assert set(entries) == {"video0", "video1", "video2", "video3"}
    assert entries["video3"]["latent_path"] is None and entries["video3"]["image_path"] is None
    for vid in ("video0", "video1", "video2"):
        entry = entries[vid]
        assert entry["latent_path"] == str(latents_dir / entry["scenario"] / f"{vid}.npz")
        # every file the metadata points at exists, and equals the column
        assert Path(entry["latent_path"]).read_bytes() == cells[vid]  # the file is the cell
        with np.load(entry["latent_path"]) as npz:
            plain, flipped = latents_of(cells[vid])
            np.testing.assert_array_equal(npz["latents"], plain[0])
            np.testing.assert_array_equal(npz["latents_flipped"], flipped[0])
            assert npz["latents"].dtype == np.float16 and float(npz["fps"]) == 8 and int(npz["width"]) == 96
            assert float(npz["scaling_factor"]) == pytest.approx(float(meta["vw.scaling_factor"]))
        assert Path(entry["image_path"]).read_bytes() == keys[vid]
    failed = json.loads((latents_dir / "failed_videos.json").read_text())
    assert [f["video_id"] for f in failed] == ["video3"] and "video3" in failed[0]["uri"]
    # the row's error record: what geneva kept when the video failed to decode
    assert failed[0]["error_type"] != "NotComputed" and "video3" in failed[0]["error"]

    ds = VideoLatentDataset(db)
    variants = {r["video_id"]: r["prompt_variants"] for r in table.to_arrow().to_pylist()}
    assert ds.missing == ["video3"]
    assert len(ds) == sum(2 * len(variants[v]) for v in ("video0", "video1", "video2"))
    batch = next(iter(ds.loader(batch_size=4, seed=1)))
    assert batch["latents"].shape == (4, 4, 3, 8, 12) and batch["latents"].dtype == torch.float16
    assert len(batch["prompt"]) == 4 and all(isinstance(p, str) and p for p in batch["prompt"])
    one = VideoLatentDataset(db, flipped="none", prompts="caption", where="video_id = 'video1'")
    captions = {r["video_id"]: r["caption"] for r in table.to_arrow().to_pylist()}
    assert len(one) == 1 and one[0]["prompt"] == captions["video1"]
    np.testing.assert_array_equal(one[0]["latents"].numpy(), latents_of(cells["video1"])[0][0])
    # rank sharding: two ranks see disjoint halves of one seeded order
    orders = [list(VideoLatentDataset(db).loader(batch_size=1, seed=3, rank=r, world_size=2).sampler)
              for r in (0, 1)]
    assert not set(orders[0]) & set(orders[1]) and len(orders[0]) + len(orders[1]) == len(ds)
    assert orders[0] == list(VideoLatentDataset(db).loader(batch_size=1, seed=3, rank=0, world_size=2).sampler)


def test_npz_arrays_are_views_of_stored_members_and_read_compressed_ones() -> None:
    from udfs.video_latents import npz_arrays

    arrays = {"latents": np.arange(24, dtype=np.float16).reshape(2, 3, 4), "fps": np.float32(8),
              "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))}
    for save in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, **arrays)
        got = npz_arrays(buf.getvalue())
        assert set(got) == set(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(got[name], value)
            assert got[name].dtype == value.dtype and got[name].shape == np.shape(value)
