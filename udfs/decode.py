"""Decoding sampled frames from a video: the one decoding module of the warehouse.

A :class:`SamplingPlan` says which instants of a video are wanted (``uniform``: N instants at
the centres of N equal segments of the range; ``fps``: one instant every 1/F s). Each instant is
mapped to the frame *displayed* at it (the last frame whose pts <= t), so sampling is by time
and variable-frame-rate files work.

Sources: a local path, ``file://``, any fsspec URI (opened through :mod:`udfs.storage`), raw
``bytes`` or a binary file-like object.

How frames are read
-------------------
Local sources (paths, ``bytes``, local file objects) are *scanned* first: the container's
packets are read without decoding (torchcodec ``Demuxer.scan``), which gives the exact pts of
every frame and the keyframe positions (~60 ms for a 600 s 720p file). Wanted instants are
mapped to exact frame indices from that table. Remote sources are not scanned (that would read
the whole object): the container header gives duration, frame rate and frame count, and frame
indices are derived from pts and the average frame rate (exact for constant-frame-rate streams).

Two methods decode the wanted frames:

``seek``
    A torchcodec ``VideoDecoder``. Local sources: ``seek_mode="approximate"`` (the scan
    already read the packets once; exact mode would scan again) and one ``get_frame_played_at``
    inside the display interval of each distinct wanted frame; for streams whose packets carry
    no durations (torchcodec's time lookups then return the following frame),
    ``seek_mode="exact"`` and ``get_frame_at`` on each scanned index. Remote sources:
    ``seek_mode="approximate"`` and one ``get_frame_played_at`` per distinct instant. Either
    way torchcodec seeks to the keyframe before a target only when decoding forward from the
    current position would cost more than the seek (targets in the same GOP are reached by
    decoding forward), and only the wanted frames are colour-converted. ``resize_short_side``
    runs inside the decoder (torchcodec ``Resize`` transform: swscale right after decoding;
    measured faster than resizing afterwards). Every returned frame is checked against the pts
    it should have.
``sequential``
    torchcodec's ``Demuxer`` / ``VideoPacketDecoder`` / ``ColorConverter`` blocks: one seek to
    the keyframe before the first wanted frame, then every packet of the range is decoded in
    order with no further seek; only wanted frames are converted (and resized right away).
    This does not depend on the container's seek index or on frame durations, so it is also the
    fallback when a seek returns another frame than the one asked for (e.g. MPEG-TS, or a
    remote variable-frame-rate stream without frame durations); the fallback is logged.

``auto`` estimates, in decoded frames, the cost of both from the plan and the keyframe layout:
the seek method pays ``p - k + 1`` for a target ``p`` whose keyframe ``k`` is ahead of the last
decoded frame by more than the decoder's in-flight window (B-frame reorder buffer plus frame
threads), plus a flush penalty, and ``p - last`` otherwise; the sequential method pays the whole
span from the keyframe before the first target to the last target, plus its per-packet Python
overhead (measured 4-15 %). Keyframe positions come from the scan for local sources. For remote
sources, containers whose header carries a per-frame index (it declares a frame count, e.g.
mp4) use ``seek``; for the others (e.g. Matroska, MPEG-TS) the keyframe spacing is unknown and
seeking may not be supported well, so plans denser than ``DENSE_PLAN`` of the range's frames
use ``sequential``. With torchcodec's seek avoidance the seek method rarely decodes more than
the sequential one, so ``auto`` mostly picks ``seek`` on indexed files.

Frames are stored as they are decoded (one output slot per distinct wanted frame, already at
the requested size), so memory is bounded by the output: with ``resize_short_side`` set, a
90-minute 1080p video sampled at 1 fps never holds more than a few full-size frames at once
(measured: 600 frames of a 600 s 720p file at short side 224 raise the peak RSS by ~200 MB
over the import baseline, for a 153 MiB output).

Rotation: a stream's display matrix (phones write one instead of rotating the pixels) is
honoured by every method, so frames come out upright, ``[3, H, W]`` with the *displayed* width
and height, which :class:`VideoInfo` (and so ingest) reports. torchcodec 0.17 does the rotation
(multiples of 90 degrees; read from its C++ sources and checked by tests/test_decode.py on CPU):

* ``VideoDecoder`` on CPU (``seek``, local and remote, exact and approximate modes, single and
  batch lookups) prepends a rotation step (``transpose=cclock`` / ``transpose=clock`` /
  ``hflip,vflip``) to its filter graph, *before* user transforms, so ``Resize(size)`` is a
  size of the upright frame;
* ``VideoDecoder`` on CUDA with the default NVDEC backend (``BetaCudaDeviceInterface``) rotates
  each RGB frame with ``rot90`` after colour conversion (no decoder transforms are used on CUDA
  here: frames are resized afterwards by :func:`_resize`, in upright coordinates). The
  ``"ffmpeg"`` CUDA backend (``set_cuda_backend``, not used here) ignores decoder transforms,
  where the CPU path's rotation step lives, so it may return frames in coded orientation;
* ``ColorConverter`` (``sequential``, CPU and CUDA) rotates each frame by the display matrix
  that ``VideoPacketDecoder`` copies from the container onto every frame (after seeks too);
* the stream metadata's ``width`` / ``height`` are the post-rotation sizes (swapped for 90 and
  270 degrees) and ``rotation`` is the counter-clockwise angle (90, -90 or 180, None without a
  matrix).

So the displayed size is the metadata's size as is. As a guard against a decoder that returns
a 90/270-degree stream in coded orientation (such as the ``"ffmpeg"`` CUDA backend), a frame
whose shape is the transposed displayed size is rotated upright before it is stored; a
180-degree rotation cannot be told from the shape and is left to torchcodec.

Threads: FFmpeg frame threading with one thread per usable CPU (``DECODE_THREADS`` overrides
it; else ``OMP_NUM_THREADS`` when set, which Ray sets to a task's CPU allocation). On 2 cores
this measured 4-14 % faster than FFmpeg's own choice (CPUs + 1 threads) and 24-56 % faster
than one thread, at 240p and 720p; one thread only wins when other processes already keep
every core busy.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from udfs import storage
from udfs.redact import redact

if TYPE_CHECKING:  # torch is imported where frames are made, so importing this module stays light
    import torch

PLAN_KINDS = ("uniform", "fps")
METHODS = ("auto", "seek", "sequential")
THREADS_ENV = "DECODE_THREADS"
# Upper bound on FFmpeg decoding threads (frame threading gains little beyond this).
MAX_THREADS = 16
# Frames in flight in a threaded H.264 decoder that a seek throws away (reorder + threads).
IN_FLIGHT_FRAMES = 4
# Extra cost of a seek beyond the frames it discards (flush, demuxer seek), in frames.
SEEK_PENALTY_FRAMES = 2
# Per-frame overhead of the sequential method (a Python round trip per packet).
SEQUENTIAL_OVERHEAD = 0.10
# Remote containers without a frame index: plans wanting at least this share of the range's
# frames are decoded sequentially.
DENSE_PLAN = 0.25
# Header frame counts above the scanned count by more than this share mean a truncated file.
TRUNCATION_TOLERANCE = 0.01
# Remote streams that end more than this before the header's duration are truncated.
END_TOLERANCE_S = 0.5
_TIME_EPS = 1e-6

_log = logging.getLogger(__name__)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


class VideoDecodeError(RuntimeError):
    """A video could not be decoded; the message names the video (URI or id) and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """Stream properties. ``fps`` is the average frame rate (frames / duration)."""

    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str | None


@dataclass(frozen=True)
class SamplingPlan:
    """Which instants of a video to sample.

    ``kind="uniform"``: ``num_frames`` instants at the centres of equal segments of the range.
    ``kind="fps"``: one instant every ``1 / fps`` seconds from the start of the range.
    ``start_s`` / ``end_s`` restrict the range (seconds from the start of the video); the
    default range is the whole video.
    """

    kind: str
    num_frames: int | None = None
    fps: float | None = None
    start_s: float | None = None
    end_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PLAN_KINDS:
            raise ValueError(f"plan kind must be one of {PLAN_KINDS}, got {self.kind!r}")
        if self.kind == "uniform" and (self.num_frames is None or self.num_frames < 1):
            raise ValueError(f"a uniform plan needs num_frames >= 1, got {self.num_frames}")
        if self.kind == "fps" and (self.fps is None or not self.fps > 0):
            raise ValueError(f"an fps plan needs fps > 0, got {self.fps}")
        if self.start_s is not None and self.start_s < 0:
            raise ValueError(f"start_s must be >= 0, got {self.start_s}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")

    @classmethod
    def uniform(
        cls, num_frames: int, start_s: float | None = None, end_s: float | None = None
    ) -> SamplingPlan:
        """``num_frames`` frames spread uniformly over the whole video (or the range)."""
        return cls("uniform", num_frames=num_frames, start_s=start_s, end_s=end_s)

    @classmethod
    def every(
        cls, fps: float, start_s: float | None = None, end_s: float | None = None
    ) -> SamplingPlan:
        """One frame every ``1 / fps`` seconds over the whole video (or the range)."""
        return cls("fps", fps=fps, start_s=start_s, end_s=end_s)

    @classmethod
    def window(cls, start_s: float, end_s: float, fps: float) -> SamplingPlan:
        """One frame every ``1 / fps`` seconds in ``[start_s, end_s)``."""
        return cls("fps", fps=fps, start_s=start_s, end_s=end_s)


@dataclass
class DecodedFrames:
    """Decoded frames with where they come from.

    ``data``: uint8 ``[N, 3, H, W]``. ``timestamps_s``: float64 ``[N]``, the pts of each
    returned frame. ``indices``: int64 ``[N]``, the frame index of each returned frame (from
    the scanned frame table for local sources; ``round(pts * fps)`` for remote ones).
    """

    data: torch.Tensor
    timestamps_s: np.ndarray
    indices: np.ndarray
    info: VideoInfo


# --------------------------------------------------------------------------------------------
# Sources


@dataclass
class _Opened:
    handle: str | bytes | IO[bytes]  # what torchcodec reads: a local path, bytes or a file
    label: str
    remote: bool


def _label(source: Any, name: str | None) -> str:
    """How errors name a source (credentials in URIs redacted)."""
    if isinstance(source, (str, os.PathLike)):
        uri = os.fspath(source)
        if not name or name == uri:
            return redact(uri)
        return redact(name if uri in name else f"{name} ({uri})")
    if name:
        return redact(name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "path", None) or getattr(source, "name", None) or "<file object>")


def _is_local_file_object(obj: Any) -> bool:
    return isinstance(obj, (io.BufferedReader, io.BytesIO, io.FileIO))


@contextmanager
def _open_source(source: Source, name: str | None, block_size: int | None) -> Iterator[_Opened]:
    label = _label(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoDecodeError(f"{label}: empty input (0 bytes)")
        yield _Opened(bytes(source), label, remote=False)
    elif isinstance(source, (str, os.PathLike)):
        uri = os.fspath(source)
        if storage.is_remote(uri):
            with storage.open_binary(uri, block_size) as handle:
                yield _Opened(handle, label, remote=True)
        else:
            path = storage.local_path(uri)
            if not os.path.exists(path):
                raise FileNotFoundError(f"no such file: {uri}")
            if os.path.isdir(path):
                raise VideoDecodeError(f"{label}: is a directory, not a video file")
            if os.path.getsize(path) == 0:
                raise VideoDecodeError(f"{label}: empty file (0 bytes)")
            try:
                with open(path, "rb"):
                    pass
            except PermissionError as exc:
                raise PermissionError(f"{label}: permission denied (this process may not read the file)") from exc
            yield _Opened(path, label, remote=False)
    elif isinstance(source, io.TextIOBase):
        raise TypeError(f"{label}: opened in text mode; open videos with 'rb'")
    elif hasattr(source, "read") and hasattr(source, "seek"):
        yield _Opened(source, label, remote=not _is_local_file_object(source))
    else:
        raise TypeError(
            f"unsupported video source {type(source).__name__}: expected a path or URI, "
            "bytes or a binary file object"
        )


def _rewind(opened: _Opened) -> None:
    if not isinstance(opened.handle, (str, bytes)):
        opened.handle.seek(0)


_CPP_LOCATION = re.compile(r"^.*?\.cpp:\d+,\s*")
_STATUS = re.compile(r"\(status (-?\d+)\)")
# FFmpeg error codes that torchcodec reports as numbers.
_AVERROR_TEXT = {
    -1094995529: "invalid data found when processing input",
    -541478725: "end of file",
}


def _describe(exc: BaseException) -> str:
    """The useful part of a torchcodec error (drops the C++ function and file location)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _CPP_LOCATION.sub("", text)
    return _STATUS.sub(lambda m: f"({_AVERROR_TEXT.get(int(m.group(1)), m.group(0)[1:-1])})", text)


# --------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True)
class _Header:
    info: VideoInfo
    begin_s: float
    declared_frames: int | None  # the container's own frame count, when it stores one
    rotation: int = 0  # display rotation, degrees counter-clockwise: 0, 90, 180 or 270


@dataclass(frozen=True)
class _FrameTable:
    """Exact per-frame pts (presentation order) and keyframe indices, from a scan."""

    pts: np.ndarray
    end: np.ndarray  # running max of pts + duration
    keyframes: np.ndarray
    durations: np.ndarray  # per-frame display durations as stored (0 where packets have none)

    @property
    def has_durations(self) -> bool:
        """Whether every frame but the last carries a display duration."""
        return bool(np.all(self.durations[:-1] > 0))

    def index_at(self, t: np.ndarray) -> np.ndarray:
        """Index of the frame displayed at each time (the last frame whose pts <= t)."""
        idx = np.searchsorted(self.pts, t + _TIME_EPS, side="right") - 1
        return np.clip(idx, 0, len(self.pts) - 1).astype(np.int64)

    def keyframe_before(self, idx: np.ndarray) -> np.ndarray:
        """The keyframe each frame index decodes from."""
        pos = np.searchsorted(self.keyframes, idx, side="right") - 1
        return self.keyframes[np.clip(pos, 0, len(self.keyframes) - 1)]


def _read_header(opened: _Opened) -> _Header:
    from torchcodec.decoders import get_container_metadata

    _rewind(opened)
    try:
        meta = get_container_metadata(opened.handle)
    except (RuntimeError, ValueError) as exc:
        raise VideoDecodeError(
            f"{opened.label}: not a readable video container ({_describe(exc)})"
        ) from exc
    if meta.best_video_stream_index is None:
        raise VideoDecodeError(f"{opened.label}: the file has no video stream")
    stream = meta.streams[meta.best_video_stream_index]
    return _header_from_stream(stream, meta.duration_seconds_from_header, opened.label)


def _header_from_stream(stream: Any, container_duration: float | None, label: str) -> _Header:
    begin = stream.begin_stream_seconds_from_header or 0.0
    duration = stream.duration_seconds_from_header
    if not duration and container_duration:
        duration = container_duration - begin
    declared = stream.num_frames_from_header or None
    rate = stream.average_fps_from_header
    if declared and duration:
        fps = declared / duration
    else:
        fps = rate
    if not duration or duration <= 0 or not fps or fps <= 0:
        raise VideoDecodeError(f"{label}: the header gives no duration or frame rate")
    num_frames = declared if declared else max(1, round(duration * fps))
    width, height = _displayed_size(stream)
    info = VideoInfo(
        duration_s=float(duration), fps=float(fps), num_frames=int(num_frames),
        width=width, height=height, codec=stream.codec,
    )
    return _Header(info, float(begin), declared, _rotation(stream))


def _displayed_size(stream: Any) -> tuple[int, int]:
    """Width and height of the upright frames, as displayed and as decoded.

    torchcodec 0.17 already reports the post-rotation size (width and height swapped for a
    90 or 270 degree display matrix), so it is used as is (see "Rotation" in the module doc).
    """
    return int(stream.width or 0), int(stream.height or 0)


def _rotation(stream: Any) -> int:
    """The stream's display rotation in degrees counter-clockwise: 0, 90, 180 or 270."""
    degrees = getattr(stream, "rotation", None)
    if degrees is None or not math.isfinite(degrees):
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def _scan(opened: _Opened, header: _Header) -> _FrameTable:
    from torchcodec.decoders import Demuxer

    _rewind(opened)
    try:
        index = Demuxer(opened.handle).streams[0].scan()
    except (RuntimeError, ValueError) as exc:
        raise VideoDecodeError(f"{opened.label}: reading packets failed ({_describe(exc)})") from exc
    if len(index) == 0:
        raise VideoDecodeError(f"{opened.label}: the video stream holds no frames")
    declared = header.declared_frames
    if declared and len(index) < declared * (1 - TRUNCATION_TOLERANCE) - 2:
        raise VideoDecodeError(
            f"{opened.label}: truncated file: the header declares {declared} frames, "
            f"the file holds {len(index)}"
        )
    pts = index.pts_seconds.numpy()
    stored = index.duration_seconds.numpy()
    durations = stored.copy()
    if durations[-1] <= 0 and len(pts) > 1:
        # Packets without durations: the last frame lasts a typical frame interval.
        steps = np.diff(pts)
        durations[-1] = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 0.0
    end = np.maximum.accumulate(pts + durations)
    keyframes = index.key_frame_indices.numpy().astype(np.int64)
    if len(keyframes) == 0 or keyframes[0] != 0:
        keyframes = np.concatenate([[0], keyframes]).astype(np.int64)
    return _FrameTable(pts=pts, end=end, keyframes=keyframes, durations=stored)


def _info_from_table(table: _FrameTable, header: _Header) -> VideoInfo:
    duration = float(table.end[-1] - table.pts[0])
    n = len(table.pts)
    fps = n / duration if duration > 0 else header.info.fps
    return VideoInfo(
        duration_s=duration, fps=fps, num_frames=n,
        width=header.info.width, height=header.info.height, codec=header.info.codec,
    )


def probe(
    source: Source, *, name: str | None = None, block_size: int | None = None
) -> VideoInfo:
    """Video properties from the container header only (no scan, no decoding).

    ``num_frames`` is the header's frame count when the container stores one (mp4), otherwise
    ``round(duration * fps)``; ``fps`` is ``num_frames / duration`` when both are stored.

    Raises:
        FileNotFoundError: a missing path or object (the message contains the URI).
        VideoDecodeError: the source is not a readable video.
    """
    with _open_source(source, name, block_size) as opened:
        return _read_header(opened).info


# --------------------------------------------------------------------------------------------
# Plans


def plan_times(plan: SamplingPlan, info: VideoInfo) -> np.ndarray:
    """Target instants (seconds from the start of the video) of ``plan`` on a video.

    The range is ``[start_s or 0, min(end_s, duration))``. ``uniform``:
    ``t_i = start + (i + 0.5) * (end - start) / N``. ``fps``: ``t_k = start + k / F`` for every
    ``k`` with ``t_k < end``.

    Raises:
        ValueError: the range starts at or after the end of the video.
    """
    start = float(plan.start_s or 0.0)
    end = info.duration_s if plan.end_s is None else min(float(plan.end_s), info.duration_s)
    if start >= end:
        raise ValueError(
            f"the sampling range starts at {start:.3f} s, at or after the end of the video "
            f"({info.duration_s:.3f} s)"
        )
    if plan.kind == "uniform":
        n = int(plan.num_frames or 0)
        return start + (np.arange(n, dtype=np.float64) + 0.5) * (end - start) / n
    fps = float(plan.fps or 0.0)
    count = math.floor((end - start) * fps) + 1
    times = start + np.arange(count, dtype=np.float64) / fps
    return times[times < end]


# --------------------------------------------------------------------------------------------
# Method choice


def _seek_cost(wanted: np.ndarray, keys: np.ndarray) -> float:
    """Frames decoded by the seek method for sorted distinct ``wanted`` frame indices."""
    first = float(wanted[0] - keys[0] + 1 + SEEK_PENALTY_FRAMES)
    if len(wanted) == 1:
        return first
    prev, cur, key = wanted[:-1], wanted[1:], keys[1:]
    forward = (key == keys[:-1]) | (key - prev <= IN_FLIGHT_FRAMES)
    steps = np.where(forward, cur - prev, cur - key + 1 + IN_FLIGHT_FRAMES + SEEK_PENALTY_FRAMES)
    return first + float(steps.sum())


def _sequential_cost(wanted: np.ndarray, keys: np.ndarray) -> float:
    """Frames decoded by the sequential method (the whole span), with its overhead."""
    span = float(wanted[-1] - keys[0] + 1 + SEEK_PENALTY_FRAMES)
    return span * (1.0 + SEQUENTIAL_OVERHEAD)


def _choose_method(
    table: _FrameTable | None, wanted: np.ndarray | None, header: _Header, density: float
) -> str:
    """``"seek"`` or ``"sequential"`` for ``auto`` (see the module documentation)."""
    if table is not None and wanted is not None:
        keys = table.keyframe_before(wanted)
        if _sequential_cost(wanted, keys) < _seek_cost(wanted, keys):
            return "sequential"
        return "seek"
    if header.declared_frames is None and density >= DENSE_PLAN:
        return "sequential"
    return "seek"


# --------------------------------------------------------------------------------------------
# Decoding


class _SeekMismatch(Exception):
    """A seek returned another frame than the one asked for (unreliable container index)."""


@dataclass
class _Job:
    opened: _Opened
    info: VideoInfo
    begin_s: float
    table: _FrameTable | None
    targets: np.ndarray  # absolute target times (stream pts), sorted
    size: tuple[int, int] | None  # (height, width) output size, or None for the source size
    device: str
    threads: int
    rotation: int = 0  # the stream's display rotation (degrees counter-clockwise)


class _Collector:
    """Stores distinct decoded frames (resized as they arrive) and which target each serves.

    Frames are stored channels-last (``[n, H, W, 3]``, the layout decoders produce, so storing
    one is a plain copy) and returned as an ``[N, 3, H, W]`` view, as torchcodec does.
    """

    def __init__(self, job: _Job, capacity: int) -> None:
        height, width = job.size or (job.info.height, job.info.width)
        self.job = job
        import torch

        self.hwc = torch.empty((capacity, height, width, 3), dtype=torch.uint8, device=job.device)
        self.pts: list[float] = []
        self.slot_of_target = np.full(len(job.targets), -1, dtype=np.int64)

    def add(self, frame: torch.Tensor, pts: float) -> int:
        """Store one ``[3, h, w]`` frame; returns its slot."""
        slot = len(self.pts)
        hwc = _resize(_upright(frame, self.job)[None], self.job.size)[0].permute(1, 2, 0)
        if hwc.device.type == "cpu":
            # A numpy copy: torch would run this small copy as a parallel region, which on a
            # busy machine waits a scheduler time slice for its second thread (measured
            # 0.05 ms -> 8 ms per 240p frame).
            self.hwc[slot].numpy()[...] = hwc.numpy()
        else:
            self.hwc[slot] = hwc
        self.pts.append(pts)
        return slot

    def result(self, index_of_pts: np.ndarray) -> DecodedFrames:
        """One frame per target, in target order."""
        slots = self.slot_of_target
        if np.array_equal(slots, np.arange(len(slots))):
            hwc = self.hwc[: len(slots)]  # no repeats: no copy
        elif self.hwc.device.type == "cpu":
            import torch

            hwc = torch.from_numpy(self.hwc.numpy()[slots])
        else:
            import torch

            hwc = self.hwc[torch.from_numpy(slots).to(self.hwc.device)]
        pts = np.asarray(self.pts, dtype=np.float64)[slots]
        return DecodedFrames(data=hwc.permute(0, 3, 1, 2), timestamps_s=pts,
                             indices=index_of_pts[slots], info=self.job.info)


def _upright(frame: torch.Tensor, job: _Job) -> torch.Tensor:
    """``frame`` rotated upright if a decoder returned a 90/270-degree stream unrotated.

    torchcodec rotates on every path this module uses, so this is a guard (see "Rotation" in
    the module doc): a full-size frame whose shape is the transposed displayed size.
    """
    if job.rotation not in (90, 270) or job.info.width == job.info.height:
        return frame
    if tuple(frame.shape[-2:]) != (job.info.width, job.info.height):
        return frame
    import torch

    return torch.rot90(frame, job.rotation // 90, dims=(-2, -1))


def _resize(frames: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize ``[n, 3, h, w]`` uint8 frames (bilinear, antialiased) unless already ``size``."""
    if size is None or tuple(frames.shape[-2:]) == size:
        return frames
    import torch

    src = frames if frames.device.type == "cpu" else frames.float()
    out = torch.nn.functional.interpolate(src, size=size, mode="bilinear", antialias=True)
    return out if out.dtype == torch.uint8 else out.round_().clamp_(0, 255).to(torch.uint8)


def _output_size(info: VideoInfo, short_side: int | None) -> tuple[int, int] | None:
    if short_side is None:
        return None
    if short_side < 1:
        raise ValueError(f"resize_short_side must be >= 1, got {short_side}")
    width, height = info.width, info.height
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _threads() -> int:
    """FFmpeg decoding threads: env ``DECODE_THREADS``, else ``OMP_NUM_THREADS`` (Ray sets it
    to a task's CPU allocation), else the number of usable CPUs (at most MAX_THREADS)."""
    for env in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = os.environ.get(env, "").strip()
        if raw:
            try:
                return max(0, int(raw))
            except ValueError:
                raise ValueError(f"{env} must be an integer, got {raw!r}") from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


def _decode_seek(job: _Job) -> _Collector:
    """Frame lookups on a torchcodec VideoDecoder (see module doc)."""
    from torchcodec.decoders import VideoDecoder

    transforms = None
    if job.size is not None and job.device == "cpu":
        from torchcodec.transforms import Resize

        transforms = [Resize(job.size)]
    by_index = job.table is not None and not job.table.has_durations
    _rewind(job.opened)
    decoder = VideoDecoder(
        job.opened.handle,
        seek_mode="exact" if by_index else "approximate",
        num_ffmpeg_threads=job.threads, device=job.device, transforms=transforms,
    )
    out = _Collector(job, len(job.targets))
    if job.table is None:
        _seek_by_time(job, decoder, out, decoder.metadata.end_stream_seconds)
    elif by_index:
        _seek_by_index(job, decoder, out)
    else:
        _seek_to_frames(job, decoder, out)
    return out


def _seek_to_frames(job: _Job, decoder: Any, out: _Collector) -> None:
    """Scanned frames fetched by time: a lookup inside each wanted frame's display interval.

    The decoder runs in approximate mode (no second scan of the file); every returned frame
    must carry the pts the scan gave.
    """
    table = job.table
    assert table is not None
    distinct, inverse = np.unique(table.index_at(job.targets), return_inverse=True)
    for idx in distinct.tolist():
        pts = float(table.pts[idx])
        span = float(table.durations[idx])
        if idx + 1 < len(table.pts):
            span = min(span, float(table.pts[idx + 1]) - pts) if span > 0 else span
        frame = decoder.get_frame_played_at(pts + max(span, 0.0) / 2)
        if abs(frame.pts_seconds - pts) > _TIME_EPS:
            raise _SeekMismatch(f"asked for the frame at {pts:.6f} s, got {frame.pts_seconds:.6f} s")
        out.add(frame.data, pts)
    out.slot_of_target = inverse.astype(np.int64).reshape(-1)


def _seek_by_index(job: _Job, decoder: Any, out: _Collector) -> None:
    """Exact frame indices from the scan, one ``get_frame_at`` each (exact-mode decoder).

    For streams whose packets carry no durations, where torchcodec's time lookups return the
    following frame: index lookups compare pts only. Single lookups, not the batch
    ``get_frames_at``: the batch path measured ~1.7x slower for frame widths that are not a
    multiple of 32 (torchcodec converts those through a filter graph, then copies).
    """
    table = job.table
    assert table is not None
    if decoder.metadata.num_frames != len(table.pts):
        raise _SeekMismatch(
            f"the decoder counts {decoder.metadata.num_frames} frames, the scan {len(table.pts)}"
        )
    distinct, inverse = np.unique(table.index_at(job.targets), return_inverse=True)
    for idx in distinct.tolist():
        frame = decoder.get_frame_at(idx)
        pts = float(table.pts[idx])
        if abs(frame.pts_seconds - pts) > _TIME_EPS:
            raise _SeekMismatch(f"asked for the frame at {pts:.6f} s, got {frame.pts_seconds:.6f} s")
        out.add(frame.data, pts)
    out.slot_of_target = inverse.astype(np.int64).reshape(-1)


def _seek_by_time(job: _Job, decoder: Any, out: _Collector, stream_end: float | None) -> None:
    last_pts, last_end = -math.inf, -math.inf
    for i, t in enumerate(job.targets):
        lookup = float(t) + _TIME_EPS  # a frame starting within _TIME_EPS after t counts
        if last_pts <= lookup < last_end:
            out.slot_of_target[i] = len(out.pts) - 1
            continue
        if stream_end is not None:
            lookup = min(lookup, stream_end - _TIME_EPS)
        frame = decoder.get_frame_played_at(lookup)
        if frame.pts_seconds > lookup + _TIME_EPS:
            raise _SeekMismatch(f"asked for the frame at {t:.6f} s, got {frame.pts_seconds:.6f} s")
        out.slot_of_target[i] = out.add(frame.data, frame.pts_seconds)
        last_pts = frame.pts_seconds
        last_end = frame.pts_seconds + max(frame.duration_seconds, 0.0)


def _decode_sequential(job: _Job, allow_seek: bool = True) -> _Collector:
    """Decode the range in order with torchcodec's demuxer/decoder blocks (see module doc)."""
    from torchcodec.decoders import ColorConverter, Demuxer

    _rewind(job.opened)
    demuxer = Demuxer(job.opened.handle)
    decoder = demuxer.streams[0].make_decoder(device=job.device, num_ffmpeg_threads=job.threads)
    converter = ColorConverter(device=job.device)
    seek_to = _sequential_start(job) if allow_seek else None
    if seek_to is not None:
        demuxer.seek(seek_to)
    out = _Collector(job, len(job.targets))
    matcher = _SequentialMatcher(job, out, converter, seeked=seek_to is not None)
    for packet in demuxer:
        for raw in decoder.decode(packet):
            matcher.feed(raw)
        if matcher.done:
            return out
    for raw in decoder.drain():
        matcher.feed(raw)
    matcher.finish()
    return out


def _sequential_start(job: _Job) -> float | None:
    first = float(job.targets[0])
    if job.table is not None:
        key = int(job.table.keyframe_before(job.table.index_at(np.array([first])))[0])
        start = float(job.table.pts[key])
    else:
        start = first
    return start if start > job.begin_s + _TIME_EPS else None


class _SequentialMatcher:
    """Assigns decoded frames (in presentation order) to target times."""

    def __init__(self, job: _Job, out: _Collector, converter: Any, seeked: bool) -> None:
        self.job, self.out, self.converter, self.seeked = job, out, converter, seeked
        self.next = 0  # next target to serve
        self.prev: Any = None  # last frame seen (a RawFrame), displayed until the next one
        self.prev_slot = -1
        if job.table is not None:
            self.want_pts = job.table.pts[job.table.index_at(job.targets)]
        else:
            self.want_pts = None

    @property
    def done(self) -> bool:
        return self.next >= len(self.job.targets)

    def feed(self, raw: Any) -> None:
        """Serve every target displayed before ``raw`` starts, then hold ``raw``."""
        if self.prev is None and not self.seeked:
            self.prev = raw  # targets before the first frame get the first frame
        while not self.done and self._before(self.next, raw.pts_seconds):
            self._serve_with_prev(self.next)
        if self.prev is not raw:
            self.prev, self.prev_slot = raw, -1

    def finish(self) -> None:
        """End of stream: the last frame serves the remaining targets it is displayed at."""
        if not self.done and self.prev is not None and self.want_pts is None:
            fps = self.job.info.fps
            last_end = self.prev.pts_seconds + max(self.prev.duration_seconds, 1.0 / fps)
            target = float(self.job.targets[-1])
            if target > last_end + max(END_TOLERANCE_S, 2.0 / fps):
                raise VideoDecodeError(
                    f"{self.job.opened.label}: the stream ends at {last_end:.3f} s, before "
                    f"{target:.3f} s (the header says {self.job.info.duration_s:.3f} s): "
                    "truncated file"
                )
        while not self.done:
            self._serve_with_prev(self.next)

    def _before(self, i: int, pts: float) -> bool:
        if self.want_pts is not None:
            return bool(self.want_pts[i] < pts - _TIME_EPS)
        return bool(self.job.targets[i] < pts - _TIME_EPS)

    def _serve_with_prev(self, i: int) -> None:
        if self.prev is None:
            if self.seeked:
                raise _SeekMismatch(f"the seek landed after the target {self.job.targets[i]:.6f} s")
            raise VideoDecodeError(
                f"{self.job.opened.label}: no frame decoded up to {self.job.targets[i]:.3f} s"
            )
        if self.want_pts is not None and abs(self.prev.pts_seconds - self.want_pts[i]) > _TIME_EPS:
            raise _SeekMismatch(
                f"expected the frame at {self.want_pts[i]:.6f} s, decoded {self.prev.pts_seconds:.6f} s"
            )
        if self.prev_slot < 0:
            frame = self.converter.convert(self.prev).data
            self.prev_slot = self.out.add(frame, self.prev.pts_seconds)
        self.out.slot_of_target[i] = self.prev_slot
        self.next += 1


def _run(job: _Job, method: str) -> _Collector:
    if method == "seek":
        try:
            return _decode_seek(job)
        except VideoDecodeError:
            raise
        except (_SeekMismatch, RuntimeError, IndexError) as exc:
            # A container whose seeks land elsewhere (or fail) still decodes in order; a
            # corrupt one fails again below and the error is reported.
            _log.info("%s: seeking failed (%s); decoding sequentially", job.opened.label,
                      _describe(exc))
    try:
        return _decode_sequential(job)
    except _SeekMismatch as exc:
        _log.info("%s: %s; decoding from the start", job.opened.label, exc)
        return _decode_sequential(job, allow_seek=False)


def _indices(job: _Job, pts: list[float]) -> np.ndarray:
    values = np.asarray(pts, dtype=np.float64)
    if job.table is not None:
        return job.table.index_at(values)
    estimate = np.rint((values - job.begin_s) * job.info.fps).astype(np.int64)
    return np.clip(estimate, 0, None)


def decode(
    source: Source,
    plan: SamplingPlan,
    *,
    resize_short_side: int | None = None,
    device: str = "cpu",
    method: str = "auto",
    name: str | None = None,
    block_size: int | None = None,
) -> DecodedFrames:
    """Decode the frames of ``source`` that ``plan`` asks for.

    Always returns one frame per plan instant (frames repeat when the range has fewer frames
    than the plan asks for). ``resize_short_side`` resizes every frame to that short side,
    keeping the aspect ratio (bilinear, antialiased). ``device="cuda"`` decodes with NVDEC
    through torchcodec. ``method`` is ``"auto"``, ``"seek"`` or ``"sequential"`` (see the module
    documentation). ``name`` identifies the video in error messages.

    Raises:
        FileNotFoundError: a missing path or object (the message contains the URI).
        VideoDecodeError: the source is not a decodable video, is truncated or corrupt, or the
            plan's range lies outside the video.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    with _open_source(source, name, block_size) as opened:
        job, chosen = _prepare(opened, plan, resize_short_side, device, method)
        return _run_checked(job, chosen)


def _run_checked(job: _Job, method: str) -> DecodedFrames:
    """:func:`_run` with decoder failures reported as :class:`VideoDecodeError`."""
    try:
        out = _run(job, method)
    except VideoDecodeError:
        raise
    except (RuntimeError, ValueError, IndexError, _SeekMismatch) as exc:
        raise VideoDecodeError(f"{job.opened.label}: decoding failed ({_describe(exc)})") from exc
    return out.result(_indices(job, out.pts))


def decode_chunks(
    source: Source,
    plan: SamplingPlan,
    chunk_size: int,
    *,
    resize_short_side: int | None = None,
    device: str = "cpu",
    method: str = "auto",
    name: str | None = None,
    block_size: int | None = None,
) -> Iterator[DecodedFrames]:
    """:func:`decode` in chunks of at most ``chunk_size`` plan instants, in time order.

    The source is opened, probed (and scanned) once and the method is chosen once for the
    whole plan; each chunk is then decoded on its own, so at most one chunk of frames is held
    at a time whatever the video's length (a 90-minute video at 1 fps is 5,400 frames). A
    chunk after the first re-reads at most one GOP before its first frame. The frames and
    timestamps of all chunks, concatenated, equal what :func:`decode` returns.

    Raises: as :func:`decode` (an error may come after earlier chunks were yielded).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with _open_source(source, name, block_size) as opened:
        job, chosen = _prepare(opened, plan, resize_short_side, device, method)
        for first in range(0, len(job.targets), chunk_size):
            yield _run_checked(replace(job, targets=job.targets[first : first + chunk_size]), chosen)


def _prepare(
    opened: _Opened, plan: SamplingPlan, short_side: int | None, device: str, method: str
) -> tuple[_Job, str]:
    header = _read_header(opened)
    table = None if opened.remote else _scan(opened, header)
    info = _info_from_table(table, header) if table is not None else header.info
    begin = float(table.pts[0]) if table is not None else header.begin_s
    try:
        times = plan_times(plan, info)
    except ValueError as exc:
        raise VideoDecodeError(f"{opened.label}: {exc}") from exc
    targets = begin + times
    job = _Job(
        opened=opened, info=info, begin_s=begin, table=table, targets=targets,
        size=_output_size(info, short_side), device=device, threads=_threads(),
        rotation=header.rotation,
    )
    if method != "auto":
        return job, method
    wanted = np.unique(table.index_at(targets)) if table is not None else None
    span_frames = max(1.0, (targets[-1] - targets[0]) * info.fps + 1)
    density = (len(wanted) if wanted is not None else len(targets)) / span_frames
    return job, _choose_method(table, wanted, header, density)
