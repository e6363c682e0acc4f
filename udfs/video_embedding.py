"""V-JEPA 2 video embeddings as a geneva column.

Two columns come from this stage:

``video_embedding`` (name from ``VIDEO_EMBEDDING_COL``)
    ``list<fixed_size_list<float32, D>>``: one vector per *time step*. ``NUM_FRAMES``
    frames (default 64) are sampled uniformly over the whole video (or the row's
    ``start_s``/``end_s`` range); V-JEPA 2 groups them into tubelets of 2 frames, so a
    row holds ``T = NUM_FRAMES / 2`` steps (32 by default). Each step vector is the mean of
    that tubelet's spatial patch tokens (16x16 patches for the 256 px model). Keeping the
    steps lets search pool at query time (mean, max, centre-weighted, segments).
``video_embedding_pooled``
    ``fixed_size_list<float32, D>``: mean over the steps, L2-normalised; the column the
    ANN index is built on.

``D`` is the model's width (1024 for ``facebook/vjepa2-vitl-fpc64-256``). The model name,
profile and whether the weights are random are recorded in each column's field metadata.

The numerical core (:class:`VJEPA2Embedder`, :func:`pool_steps`) runs without Ray; the
geneva UDF classes wrap it. Videos that cannot be opened or decoded raise
:class:`~udfs.decode.VideoDecodeError`; with ``on_error=skip_on_error()`` geneva isolates
those rows (NULL plus an error record) and the rest of the batch is still written. Results
of a failed batch are cached so geneva's bisection never decodes or embeds a row twice.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.arrays import embedding_steps_type, optional_float, steps_from_arrow, steps_to_arrow, vector_type
from udfs.batching import OutcomeCache, default_device, run_adaptive
from udfs.decode import SamplingPlan, decode
from udfs.errors import NotFoundError, SettingError
from udfs.models import (
    TINY_VJEPA2,
    VJEPA_ENV,
    ModelSpec,
    load_config,
    load_vjepa2,
    no_offline_model,
    resolve_profile,
    vjepa2_model_name,
)
from udfs.preprocess import ImageTransform, apply_transform
from udfs.stage import Stage, StageColumn, StageEnvironment, StageOptions
from udfs.trace import StageTrace, trace_path_from_env

#: The stage's name; also the default name of its main column.
NAME = "video_embedding"
#: Environment variable naming the step column (its pooled companion is ``<name>_pooled``).
COLUMN_ENV = "VIDEO_EMBEDDING_COL"
POOLED_SUFFIX = "_pooled"

NUM_FRAMES_ENV = "NUM_FRAMES"
DEFAULT_NUM_FRAMES = 64
#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"


def video_embedding_column() -> str:
    """Name of the per-step V-JEPA 2 column (``VIDEO_EMBEDDING_COL``, default ``video_embedding``)."""
    return os.environ.get(COLUMN_ENV, NAME)


def pooled_column(column: str) -> str:
    """Name of the pooled, L2-normalised companion of a per-step embedding column."""
    return column + POOLED_SUFFIX


def vjepa2_spec(profile: str | None = None, model: str | None = None) -> ModelSpec:
    """The spec of the V-JEPA 2 stage without loading weights (reads only the config)."""
    profile = resolve_profile(profile, NAME)
    if profile == "offline":
        raise no_offline_model(NAME, f"offline,{NAME}=tiny")
    name = vjepa2_model_name(profile, model)
    if profile == "tiny":
        dim = TINY_VJEPA2["hidden_size"]
    else:
        dim = load_config(name, VJEPA_ENV).hidden_size
    return ModelSpec(NAME, profile, name, int(dim), profile == "tiny")


def num_frames_from_env(num_frames: int | None = None) -> int:
    """Frames sampled per video: the argument, else ``$NUM_FRAMES``, else 64 (even, >= 2)."""
    n = int(num_frames or os.environ.get(NUM_FRAMES_ENV) or DEFAULT_NUM_FRAMES)
    if n < 2 or n % 2:
        raise SettingError(f"NUM_FRAMES must be an even number >= 2 (V-JEPA 2 tubelets of 2): {n}")
    return n


class VJEPA2Embedder:
    """Batched V-JEPA 2 inference over decoded clips, preprocessing on the model's device.

    ``embed(clips)`` takes uint8 clips ``[T, 3, H, W]`` (sizes may differ between clips) and
    returns float32 ``[B, T // tubelet, D]`` step embeddings on the CPU.
    """

    def __init__(
        self, profile: str | None = None, model: str | None = None, device: str | None = None
    ) -> None:
        self.profile = resolve_profile(profile, "video_embedding")
        self.model_name = model
        self.device = device or default_device()
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The loaded encoder (loaded on first use, once per process)."""
        if self._model is None:
            self._model = load_vjepa2(self.profile, self.model_name, self.device)
        return self._model

    @property
    def crop_size(self) -> int:
        """Side of the square crop fed to the model (256 for the released checkpoints)."""
        return int(self.model.config.crop_size)

    def preprocess(self, clips: Sequence[Any]) -> Any:
        """Short-side resize (crop * 256/224), centre crop, ImageNet normalisation, on device.

        Returns float ``[B, T, 3, crop, crop]``.
        """
        import torch

        crop = self.crop_size
        tf = ImageTransform(resize=int(crop * 256 / 224), crop=crop)
        return torch.stack([apply_transform(clip, tf, self.device) for clip in clips])

    def embed(self, clips: Sequence[Any]) -> np.ndarray:
        """Step embeddings ``[B, T // tubelet, D]`` (float32, CPU) for uint8 clips ``[T,3,H,W]``."""
        import torch

        if not clips:
            return np.zeros((0, 0, 0), np.float32)
        model = self.model
        cfg = model.config
        x = self.preprocess(clips)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.startswith("cuda")
            else torch.autocast("cpu", enabled=False)
        )
        with torch.inference_mode(), autocast:
            tokens = model(pixel_values_videos=x, skip_predictor=True).last_hidden_state
        b, n, d = tokens.shape
        steps = x.shape[1] // cfg.tubelet_size
        per_step = n // steps
        pooled = tokens.float().reshape(b, steps, per_step, d).mean(dim=2)
        return pooled.cpu().numpy()

    def embed_adaptive(self, clips: Sequence[Any], batch_size: int) -> np.ndarray:
        """:meth:`embed` in micro-batches; on CUDA out-of-memory halve the batch and retry."""
        results = run_adaptive(list(clips), batch_size, self.embed)
        return np.concatenate(results) if results else np.zeros((0, 0, 0), np.float32)


def pool_steps(steps: np.ndarray) -> np.ndarray:
    """Mean over time steps, L2-normalised: ``[..., T, D] -> [..., D]`` (float32)."""
    v = np.asarray(steps, dtype=np.float32).mean(axis=-2)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


class VideoEmbedding:
    """geneva stateful UDF computing the per-step V-JEPA 2 column.

    Arguments default to the documented environment variables (``VW_MODELS``,
    ``VJEPA_MODEL``, ``NUM_FRAMES``, ``BLOCK_SIZE``). ``__init__`` is cheap; the model is
    loaded on the first call, once per worker.
    """

    def __init__(
        self,
        profile: str | None = None,
        model: str | None = None,
        num_frames: int | None = None,
        batch_size: int = 8,
        device: str | None = None,
        decode_threads: int | None = None,
        cache_rows: int = 4096,
        trace: str | None = None,
    ) -> None:
        self.profile = resolve_profile(profile, "video_embedding")
        self.model = model
        self.num_frames = num_frames_from_env(num_frames)
        self.batch_size = batch_size
        self.device = device
        # Decoding is the CPU-heavy part: on a GPU worker use every core to keep the model fed.
        self.decode_threads = decode_threads or (os.cpu_count() or 1)
        self.cache_rows = cache_rows
        self._embedder: VJEPA2Embedder | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._done = OutcomeCache(cache_rows)
        #: Pipeline events to ``trace`` (default ``$VW_TRACE``; see :mod:`udfs.trace`).
        self.trace = StageTrace(trace_path_from_env(trace), "video_embedding")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_embedder=None, _pool=None, _done=OutcomeCache(self.cache_rows))
        return state

    def _decode(self, uri: str, video_id: str, start: float | None, end: float | None) -> Any:
        """Decode one row's frames (runs in a decode thread; pins memory for a CUDA model)."""
        plan = SamplingPlan.uniform(self.num_frames, start_s=start, end_s=end)
        device = self._embedder.device if self._embedder else "cpu"
        # Decode on the CPU; NVDEC is used only when explicitly asked for (VW_DECODE_DEVICE).
        dec_device = os.environ.get("VW_DECODE_DEVICE", "cpu") if device != "cpu" else "cpu"
        self.trace.event("decode_start", [video_id])
        try:
            frames = decode(uri, plan, device=dec_device, name=f"{video_id} ({uri})").data
        except Exception as err:
            self.trace.event("decode_end", [video_id], error=type(err).__name__)
            raise
        self.trace.event("decode_end", [video_id])
        if device.startswith("cuda") and frames.device.type == "cpu":
            frames = frames.pin_memory()
        return frames

    def __call__(
        self, video_id: pa.Array, uri: pa.Array, start_s: pa.Array, end_s: pa.Array
    ) -> pa.Array:
        """Embed one batch of videos; raises the first row's error if any row failed.

        Decoding runs in a thread pool ahead of the model, with at most
        ``batch_size + decode_threads`` decoded clips held at once.
        """
        if self._embedder is None:
            self._embedder = VJEPA2Embedder(self.profile, self.model, self.device)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="vw-decode")
        keys = [
            (video_id[i].as_py(), uri[i].as_py(), optional_float(start_s, i), optional_float(end_s, i))
            for i in range(len(uri))
        ]
        self.trace.event("batch_start", [k[0] for k in keys])
        todo = iter([k for k in dict.fromkeys(keys) if k not in self._done])
        pending: deque[tuple[tuple, Future]] = deque()
        ready: list[tuple[tuple, Any]] = []
        window = self.batch_size + self.decode_threads
        while True:
            while len(pending) < window and (key := next(todo, None)) is not None:
                pending.append((key, self._pool.submit(self._decode, key[1], key[0], key[2], key[3])))
            if not pending:
                break
            key, fut = pending.popleft()
            try:
                ready.append((key, fut.result()))
            except Exception as err:  # noqa: BLE001 - kept and re-raised for this row
                self._done.put(key, err)
            del fut
            if len(ready) >= self.batch_size:
                self._embed_ready(ready)
                ready = []
        self._embed_ready(ready)
        self._done.raise_first_error(keys)
        steps = [self._done[k] for k in keys]
        for k in keys:
            self._done.pop(k)
        dim = int(steps[0].shape[-1]) if steps else vjepa2_spec(self.profile, self.model).dim
        out = steps_to_arrow(steps, dim)
        self.trace.event("batch_end", [k[0] for k in keys])
        return out

    def _embed_ready(self, ready: list[tuple[tuple, Any]]) -> None:
        if not ready or self._embedder is None:
            return
        ids = [key[0] for key, _ in ready]
        self.trace.event("model_start", ids, frames=sum(len(clip) for _, clip in ready))
        out = self._embedder.embed_adaptive([clip for _, clip in ready], self.batch_size)
        self.trace.event("model_end", ids)
        for (key, _), emb in zip(ready, out, strict=True):
            self._done.put(key, emb)


class PooledEmbedding:
    """geneva UDF: the pooled, L2-normalised vector of a per-step embedding column."""

    def __call__(self, steps: pa.Array) -> pa.Array:
        """``list<fixed_size_list<float32, D>>`` -> ``fixed_size_list<float32, D>`` (NULL stays NULL)."""
        steps = steps.combine_chunks() if isinstance(steps, pa.ChunkedArray) else steps
        dim = steps.type.value_type.list_size
        rows = steps_from_arrow(steps)
        out = np.zeros((len(rows), dim), np.float32)
        for i, r in enumerate(rows):
            if r is not None and len(r):
                out[i] = pool_steps(r)
        mask = pa.array([r is None or not len(r) for r in rows])
        flat = pa.array(out.ravel(), pa.float32())
        return pa.FixedSizeListArray.from_arrays(flat, dim, mask=mask)


def udf_version(spec: ModelSpec, num_frames: int) -> str:
    """Version string of the step column: changes when anything that alters values changes."""
    return f"vjepa2-steps:{CODE_VERSION}:{spec.profile}:{spec.name}:{num_frames}"


def video_embedding_udf(
    profile: str | None = None,
    model: str | None = None,
    num_frames: int | None = None,
    batch_size: int = 8,
    num_gpus: float | None = None,
    device: str | None = None,
    checkpoint_size: int | None = None,
) -> Any:
    """The geneva UDF for the per-step column, typed and labelled from the model profile."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    spec = vjepa2_spec(profile, model)
    frames = num_frames_from_env(num_frames)
    meta = spec.field_metadata() | {"vw.num_frames": str(frames), "vw.steps": str(frames // 2)}
    gpus = num_gpus if num_gpus is not None else 0.0
    # Larger checkpoints on a GPU keep decode threads ahead of the model across batches.
    size = checkpoint_size or (max(4 * batch_size, 32) if gpus else max(batch_size, 8))
    return udf(
        VideoEmbedding(spec.profile, model, frames, batch_size, device),
        data_type=embedding_steps_type(spec.dim),
        version=udf_version(spec, frames),
        field_metadata=meta,
        num_cpus=1,
        num_gpus=gpus,
        checkpoint_size=size,
        # geneva grows checkpoints adaptively up to the read task size; capping them keeps what a
        # killed run can lose to one checkpoint of `size` rows.
        max_checkpoint_size=size,
        on_error=skip_on_error(),
    )


def pooled_udf(steps_column: str, spec: ModelSpec) -> Any:
    """The geneva UDF for ``<steps_column>_pooled`` (reads the step column, no decoding)."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    return udf(
        PooledEmbedding(),
        data_type=vector_type(spec.dim),
        version=f"mean-l2:{CODE_VERSION}",
        input_columns=[steps_column],
        field_metadata=spec.field_metadata() | {"vw.pooling": "mean-l2", "vw.source": steps_column},
        num_cpus=1,
        on_error=skip_on_error(),
    )


# ------------------------------------------------------------------------------------ the stage


class VideoEmbeddingQuery:
    """Embeds a query video exactly as the stored column was computed (its model and frame count)."""

    def video(self, meta: dict[str, str], uri: str, device: str) -> np.ndarray | None:
        """The ``[T, D]`` step vectors of the video at ``uri`` (None when it gave no vectors)."""
        if "vw.num_frames" not in meta:
            raise NotFoundError("the column does not record vw.num_frames")
        embed = VideoEmbedding(meta["vw.profile"], meta["vw.name"], int(meta["vw.num_frames"]),
                               batch_size=1, device=device, decode_threads=1)
        none = pa.array([None], pa.float64())
        return steps_from_arrow(embed(pa.array([uri]), pa.array([uri]), none, none))[0]

    def image(self, meta: dict[str, str], frames: Any, device: str) -> np.ndarray:
        """Not supported: the column holds clip embeddings."""
        raise NotImplementedError("clip embeddings are not computed from single images")

    def text(self, meta: dict[str, str], text: str, device: str) -> np.ndarray:
        """Not supported: the column holds video embeddings."""
        raise NotImplementedError("V-JEPA 2 does not embed text")


def _stage_udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    col = video_embedding_column()
    steps = video_embedding_udf(spec.profile, opts.model, opts.num_frames, opts.batch_size, opts.num_gpus)
    return [(col, steps), (pooled_column(col), pooled_udf(col, spec))]


def _stage_columns() -> tuple[StageColumn, ...]:
    col = video_embedding_column()
    return (
        StageColumn(col, lambda spec: embedding_steps_type(spec.dim),
                    description="one vector per time step (tubelet of 2 frames) of NUM_FRAMES frames over the video"),
        StageColumn(pooled_column(col), lambda spec: vector_type(spec.dim), derived=True,
                    description="mean over the steps, L2-normalised (the ANN-indexed vector)"),
    )


STAGE = Stage(
    name=NAME,
    table="videos",
    description="V-JEPA 2 clip embeddings: per-step vectors and a pooled, L2-normalised vector",
    columns=_stage_columns,
    spec=lambda opts: vjepa2_spec(opts.profile, opts.model),
    udfs=_stage_udfs,
    environment=StageEnvironment("video-embedding", gpu=True, description="V-JEPA 2 clip embeddings"),
    query=VideoEmbeddingQuery(),
)
