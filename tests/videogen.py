"""Test videos whose frames encode their own index, plus broken files.

Every frame is a grid of ``GRID x GRID`` black or white blocks; block ``k`` (row-major) is white
when bit ``k`` of the frame index is set. The blocks are large, so the pattern survives H.264
compression and downscaling, and :func:`frame_index_of` reads the index back by thresholding
the mean of the centre of each block. Tests can therefore check exactly which frames a decoder
returned.

Videos are written with the ffmpeg CLI from raw frames on stdin (libx264, yuv420p, B-frames on,
scene-cut keyframes off so the GOP is exactly ``gop`` frames). :func:`make_rotated_video` remuxes
a video (the same H.264 bitstream) with a display-matrix rotation, as phones write them.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

GRID = 4
MAX_INDEX = 2 ** (GRID * GRID) - 1


@dataclass(frozen=True)
class GeneratedVideo:
    """A generated video and the presentation time (seconds) of each of its frames."""

    path: Path
    pts_s: tuple[float, ...]
    width: int  # displayed (upright) width
    height: int  # displayed (upright) height
    gop: int
    rotation: int = 0  # display matrix: degrees counter-clockwise that make the coded frames upright

    @property
    def num_frames(self) -> int:
        """Number of frames in the file."""
        return len(self.pts_s)

    @property
    def duration_s(self) -> float:
        """End of the last frame (its pts plus the previous frame interval)."""
        if len(self.pts_s) < 2:
            return self.pts_s[0] if self.pts_s else 0.0
        return self.pts_s[-1] + (self.pts_s[-1] - self.pts_s[-2])

    def index_at(self, t: float) -> int:
        """Index of the frame displayed at time ``t`` (the last frame whose pts <= t)."""
        pts = np.asarray(self.pts_s)
        return max(int(np.searchsorted(pts, t + 1e-9, side="right")) - 1, 0)


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB ``uint8`` frame ``[height, width, 3]`` encoding ``index`` as a block pattern."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"frame index {index} does not fit in {GRID * GRID} bits")
    bits = np.array([(index >> k) & 1 for k in range(GRID * GRID)], dtype=np.uint8)
    cells = bits.reshape(GRID, GRID) * 255
    rows = np.repeat(np.arange(GRID), -(-height // GRID))[:height]
    cols = np.repeat(np.arange(GRID), -(-width // GRID))[:width]
    grey = cells[rows[:, None], cols[None, :]]
    return np.repeat(grey[:, :, None], 3, axis=2)


def frame_index_of(frame: torch.Tensor) -> int:
    """Read back the index encoded by :func:`pattern_frame` from a ``[3, H, W]`` uint8 frame."""
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] frame, got shape {tuple(frame.shape)}")
    grey = frame.detach().cpu().numpy().mean(axis=0)
    height, width = grey.shape
    index = 0
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        # The centre half of the cell: away from the edges that compression and scaling blur.
        y0, y1 = _centre_half(r, height)
        x0, x1 = _centre_half(c, width)
        if float(grey[y0:y1, x0:x1].mean()) > 127.5:
            index |= 1 << k
    return index


def _centre_half(cell: int, size: int) -> tuple[int, int]:
    lo, hi = cell * size / GRID, (cell + 1) * size / GRID
    start = int(lo + (hi - lo) / 4)
    return start, max(int(hi - (hi - lo) / 4), start + 1)


def _run_ffmpeg(args: Sequence[str], frames: Sequence[int], width: int, height: int, turn: int = 0) -> None:
    """Pipe the pattern frames ``frames`` (``width`` x ``height``, turned ``turn`` degrees
    counter-clockwise) into ffmpeg with ``args``."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in frames:
            frame = pattern_frame(i, width, height)
            proc.stdin.write(np.ascontiguousarray(np.rot90(frame, turn // 90)).tobytes())
    except BrokenPipeError:
        pass  # ffmpeg exited early; its error is reported below
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(cmd)}): {err}")


def _x264_args(gop: int, lossless: bool = False) -> list[str]:
    # Lossless: 4:4:4 at qp 0, so decoding returns the frames exactly (up to the RGB/YUV round
    # trip, which is per pixel and so commutes with a rotation).
    quality = ["-qp", "0", "-pix_fmt", "yuv444p"] if lossless else ["-crf", "20", "-pix_fmt", "yuv420p"]
    return [
        "-c:v", "libx264", "-preset", "veryfast", *quality,
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "2",
    ]


def make_cfr_video(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    fps: int = 25,
    width: int = 320,
    height: int = 240,
    gop: int = 25,
    faststart: bool = False,
    lossless: bool = False,
    turn: int = 0,
) -> GeneratedVideo:
    """Write a constant-frame-rate H.264 video of ``num_frames`` index-pattern frames.

    The container follows the suffix of ``path`` (``.mp4``, ``.mkv``, ...). ``faststart`` moves
    the mp4 index to the front of the file. ``lossless`` encodes 4:4:4 at qp 0. ``turn`` (0, 90,
    180, 270) turns each ``width`` x ``height`` pattern frame counter-clockwise before encoding
    (the coded and displayed size is then swapped for 90 and 270).
    """
    if turn not in ROTATIONS:
        raise ValueError(f"turn must be one of {ROTATIONS}, got {turn}")
    path = Path(path)
    coded_w, coded_h = (height, width) if turn in (90, 270) else (width, height)
    args = [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{coded_w}x{coded_h}", "-r", str(fps),
        "-i", "-", *_x264_args(gop, lossless),
    ]
    if faststart:
        args += ["-movflags", "+faststart"]
    _run_ffmpeg([*args, str(path)], range(num_frames), width, height, turn)
    return GeneratedVideo(path, tuple(i / fps for i in range(num_frames)), coded_w, coded_h, gop)


# Frame durations (ms) of the variable-frame-rate video, repeated: 20, 40, 100, 40 ms.
VFR_PATTERN_MS = (20, 40, 100, 40)


def vfr_pts_ms(num_frames: int) -> list[int]:
    """Presentation times (ms) of the frames of :func:`make_vfr_video`."""
    pts, t = [], 0
    for i in range(num_frames):
        pts.append(t)
        t += VFR_PATTERN_MS[i % len(VFR_PATTERN_MS)]
    return pts


def make_vfr_video(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    width: int = 320,
    height: int = 240,
    gop: int = 25,
) -> GeneratedVideo:
    """Write a variable-frame-rate H.264 video (frame durations cycle 20/40/100/40 ms).

    ffmpeg's ``setpts`` assigns each frame its explicit timestamp and ``-fps_mode passthrough``
    keeps them, on a 1 ms time base.
    """
    path = Path(path)
    cycle = sum(VFR_PATTERN_MS)
    n = len(VFR_PATTERN_MS)
    offsets = [sum(VFR_PATTERN_MS[:k]) for k in range(n)]
    within = "+".join(f"{off}*eq(mod(N,{n}),{k})" for k, off in enumerate(offsets) if off)
    setpts = f"setpts='round(({cycle}*floor(N/{n})+{within})/1000/TB)'"
    args = [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "1000",
        "-i", "-", "-vf", setpts, "-fps_mode", "passthrough", *_x264_args(gop),
    ]
    if path.suffix == ".mp4":
        args += ["-video_track_timescale", "1000"]
    _run_ffmpeg([*args, str(path)], range(num_frames), width, height)
    pts = tuple(ms / 1000 for ms in vfr_pts_ms(num_frames))
    return GeneratedVideo(path, pts, width, height, gop)


ROTATIONS = (0, 90, 180, 270)


def make_rotated_video(
    path: str | os.PathLike[str], upright: GeneratedVideo, rotation: int
) -> GeneratedVideo:
    """``upright`` remuxed (stream copy: the same coded frames) with a display rotation.

    ``rotation`` is the angle, counter-clockwise, by which a player turns the coded frames to
    show them (FFmpeg's and torchcodec's convention: 90, 180 or 270; 270 is what phones write
    for a portrait video, "rotate 90 degrees clockwise"). A decoder that honours it returns
    ``rotate_upright(frame, rotation)`` for each frame of ``upright``; the displayed size is
    swapped for 90 and 270. Newer ffmpeg sets the matrix with the input option
    ``-display_rotation``; older ones (< 6.1) with the legacy ``rotate`` stream tag, whose sign
    is checked against what torchcodec reads back.
    """
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation}")
    path = Path(path)
    src = str(upright.path)
    attempts = [
        ["-display_rotation", str(rotation), "-i", src, "-c", "copy"],
        ["-i", src, "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}"],
        ["-i", src, "-c", "copy", "-metadata:s:v:0", f"rotate={(360 - rotation) % 360}"],
    ]
    errors = []
    for args in attempts:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()}")
            continue
        got = stream_rotation(path)
        if got == rotation:
            swap = rotation in (90, 270)
            width, height = (upright.height, upright.width) if swap else (upright.width, upright.height)
            return GeneratedVideo(path, upright.pts_s, width, height, upright.gop, rotation)
        errors.append(f"{' '.join(cmd)}: wrote a rotation of {got}")
    raise RuntimeError(f"could not write a {rotation} degree display rotation: {'; '.join(errors)}")


@dataclass(frozen=True)
class RotationTwins:
    """A phone-style video and its twin: the same displayed frames, stored two ways.

    ``rotated`` holds coded frames plus a display rotation; ``twin`` holds the displayed
    (upright) frames themselves, with no rotation. Both are lossless, so a decoder that honours
    the rotation returns exactly the same frames for both, and any stage computes the same
    values for both.
    """

    rotated: GeneratedVideo
    twin: GeneratedVideo


def make_rotation_twins(
    folder: str | os.PathLike[str], rotations: Sequence[int] = (90, 180, 270), *, num_frames: int = 50,
    fps: int = 25, width: int = 160, height: int = 96,
) -> dict[int, RotationTwins]:
    """For each rotation: ``rot<r>.mp4`` (``width`` x ``height`` coded, displayed turned by ``r``)
    and ``rot<r>_twin.mp4`` (the displayed frames encoded upright)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    coded = make_cfr_video(folder / "coded.mp4", num_frames=num_frames, fps=fps, width=width, height=height,
                           lossless=True)
    twins = {}
    for r in rotations:
        rotated = make_rotated_video(folder / f"rot{r}.mp4", coded, r)
        twin = make_cfr_video(folder / f"rot{r}_twin.mp4", num_frames=num_frames, fps=fps, width=width,
                              height=height, lossless=True, turn=r)
        assert (twin.width, twin.height) == (rotated.width, rotated.height)
        twins[r] = RotationTwins(rotated, twin)
    (folder / "coded.mp4").unlink()
    return twins


def stream_rotation(path: str | os.PathLike[str]) -> int:
    """The display rotation torchcodec reads from the file (0, 90, 180 or 270)."""
    from torchcodec.decoders import get_container_metadata

    meta = get_container_metadata(str(path))
    degrees = meta.streams[meta.best_video_stream_index].rotation
    return 0 if degrees is None else int(round(degrees / 90.0)) % 4 * 90


def rotate_upright(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """Coded ``[..., H, W]`` frames turned ``rotation`` degrees counter-clockwise (displayed)."""
    return torch.rot90(frames, rotation // 90, dims=(-2, -1))


def rotate_back(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """Displayed ``[..., H, W]`` frames turned back to the coded orientation."""
    return torch.rot90(frames, -(rotation // 90), dims=(-2, -1))


def make_broken_files(directory: str | os.PathLike[str], valid: Path) -> dict[str, Path]:
    """Broken inputs derived from the valid mp4 ``valid`` (index at the end, no faststart).

    Returns ``{kind: path}`` for: ``empty`` (0 bytes), ``random`` (random bytes), ``truncated``
    (the first 40 % of ``valid``: the mp4 index is lost), ``corrupt_middle`` (the index is
    intact but the middle half of the media data is overwritten with random bytes) and ``text``
    (a text file named ``.mp4``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    data = valid.read_bytes()
    out = {
        "empty": directory / "empty.mp4",
        "random": directory / "random.mp4",
        "truncated": directory / "truncated.mp4",
        "corrupt_middle": directory / "corrupt_middle.mp4",
        "text": directory / "notes.mp4",
    }
    out["empty"].write_bytes(b"")
    out["random"].write_bytes(rng.randbytes(200_000))
    out["truncated"].write_bytes(data[: int(len(data) * 0.4)])
    lo, hi = len(data) // 4, len(data) * 3 // 4
    moov = data.rfind(b"moov")
    if moov != -1 and moov - 4 < hi:
        hi = max(lo + 1, moov - 4 - 1024)
    out["corrupt_middle"].write_bytes(data[:lo] + rng.randbytes(hi - lo) + data[hi:])
    out["text"].write_text("This is not a video.\n" * 200)
    return out
