"""Video latents for diffusion fine-tuning: a video VAE's latents of each video as a column.

This is the latent preprocessing of a LoRA fine-tune of a text-to-video diffusion model
(``preprocess_video_latents --fps 8 --size 720x480 --augment --encode-latents``), computed once
into the warehouse instead of into ``.npz`` files:

1. frames at ``fps`` (``vw backfill --fps``, default 8) from the start of the clip (or the row's
   ``start_s`` .. ``end_s``), in clips of ``num_frames`` frames (``--num-frames``, default 49 =
   4k+1, the CogVideoX VAE's frame count); ``LATENT_CLIPS`` (default 1) clips per video, the
   first ones; a video shorter than one clip repeats its last frame to fill it, a later clip
   needs all its frames;
2. each frame resized (bilinear, antialiased) to cover ``LATENT_SIZE`` (``WIDTHxHEIGHT``,
   default ``720x480``, CogVideoX's training size) and centre-cropped to it, scaled to [-1, 1];
3. encoded by ``AutoencoderKLCogVideoX`` (diffusers): ``full`` loads ``THUDM/CogVideoX-2b``,
   subfolder ``vae`` (``COGVIDEOX_VAE_MODEL`` / ``COGVIDEOX_VAE_SUBFOLDER`` to override, a
   local folder works), ``tiny`` builds the same class from a small config with seeded random
   weights (pipeline checks only, labelled ``vw.random_weights``). On CUDA the VAE runs in
   bf16 with tiled and sliced encoding (a 720x480x49 clip fits in a few GB); clips are batched
   (``--batch-size``) and a batch is halved on CUDA out-of-memory. The latent is the posterior
   mean times the VAE's scaling factor (what the transformer is trained on), stored as float16;
4. ``--augment`` (``LATENT_AUGMENT=1``, the default, as the seed's command): the horizontally
   flipped frames are encoded too and stored beside the plain latents, labelled ``flipped``.

Columns of ``videos``:

``video_latents``
    a Lance blob (``large_binary``, ``lance-encoding:blob``) holding the video's ``.npz`` file,
    the layout the seed's trainer reads: ``latents`` (float16 ``[C, T, H, W]`` of the first
    clip; CogVideoX: ``[16, 13, 60, 90]`` for 49 frames at 720x480), ``latents_1`` ... for
    further clips, ``latents_flipped`` (``latents_flipped_1`` ...) when augmented, and
    ``scaling_factor``, ``fps``, ``height``, ``width``, ``num_frames``, ``frame_times`` (the
    source times of the encoded frames) and ``key_frame`` (the PNG's bytes). The field metadata
    records the model, profile, fps, size, frames, clips, augmentation and the scaling factor.
``key_frame``
    the PNG of the frame at the first clip's centre, at the training size (derived from the main
    column: no decoding).

Storage, measured on 100 CogVideoX-size clips (``python -m bench.video_latents``, 2 cores): the
training reader reads this layout (a Lance blob per video holding its uncompressed ``.npz``,
arrays viewed in place) at 1.1x the rate of inline binary cells stored uncompressed, 3.3x the rate
of inline cells with Lance's default compression (which saves only 8% on float16 latents), and
as fast as the seed's ``.npz`` files (about 1,000 clips/s from the page cache). So the blob is the
``.npz`` itself: ``vw export-metadata --latents-dir DIR`` writes the cell's bytes as
``<latents dir>/<scenario>/<video_id>.npz`` (and ``--frames-dir DIR`` the key frames as
``<frames dir>/<video_id>.png``), each atomically (:data:`STAGE` declares both as files).

:class:`tables.latent_dataset.VideoLatentDataset` reads the column for a LoRA training loop:
``(latents, prompt)`` samples with filters, split, scenario, prompt variants, seeded shuffle and
rank sharding.
"""

from __future__ import annotations

import io
import json
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.arrays import optional_float
from udfs.batching import OutcomeCache, default_device, run_adaptive
from udfs.decode import SamplingPlan, decode
from udfs.errors import SettingError
from udfs.models import TINY_SEED, ModelSpec, from_pretrained, no_offline_model, resolve_profile
from udfs.stage import Stage, StageColumn, StageEnvironment, StageFiles, StageOptions
from udfs.unit_progress import UnitReporter

NAME = "video_latents"
#: What the stage counts inside a row for the progress display: frames through the VAE.
PROGRESS_UNIT = "frames"
KEY_FRAME = "key_frame"
VAE_ENV = "COGVIDEOX_VAE_MODEL"
DEFAULT_VAE = "THUDM/CogVideoX-2b"
SUBFOLDER_ENV = "COGVIDEOX_VAE_SUBFOLDER"
DEFAULT_SUBFOLDER = "vae"
SIZE_ENV = "LATENT_SIZE"
AUGMENT_ENV = "LATENT_AUGMENT"
CLIPS_ENV = "LATENT_CLIPS"
DEFAULT_FPS = 8.0
DEFAULT_FRAMES = 49
DEFAULT_SIZE = (720, 480)  # width, height
#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"
#: The ``tiny`` profile's VAE: CogVideoX's layout (4 blocks: 8x spatial, 4x temporal compression)
#: with narrow layers. Random weights: for pipeline checks only.
TINY_VAE: dict[str, Any] = {"block_out_channels": (8, 16, 16, 16), "latent_channels": 4, "layers_per_block": 1,
                            "norm_num_groups": 4}

#: The column: a Lance blob (read lazily, as files are) holding the video's ``.npz``.
LATENT_TYPE = pa.large_binary()
BLOB_METADATA = {"lance-encoding:blob": "true"}


# ------------------------------------------------------------------------------------ settings


def parse_size(text: str) -> tuple[int, int]:
    """``"720x480"`` as ``(720, 480)`` (width, height; both even and >= 8)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SettingError(f"{SIZE_ENV} must be WIDTHxHEIGHT, e.g. 720x480, got {text!r}") from None
    if width < 8 or height < 8 or width % 8 or height % 8:
        raise SettingError(f"{SIZE_ENV} {text!r}: width and height must be multiples of 8 (the VAE's "
                           "spatial compression), at least 8")
    return width, height


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be 1 or 0, got {value!r}")


@dataclass(frozen=True)
class LatentSettings:
    """How frames become latents: sampling, size, clips and augmentation."""

    fps: float = DEFAULT_FPS
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    frames: int = DEFAULT_FRAMES
    clips: int = 1
    augment: bool = True

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise SettingError(f"the latents' fps must be > 0, got {self.fps}")
        if self.frames < 1 or (self.frames - 1) % 4:
            raise SettingError(f"frames per clip must be 4k+1 (the VAE compresses time 4x after the first "
                               f"frame), e.g. 49, got {self.frames}")
        if self.clips < 1:
            raise SettingError(f"{CLIPS_ENV} must be >= 1, got {self.clips}")

    @classmethod
    def from_env(cls, fps: float | None = None, frames: int | None = None) -> LatentSettings:
        """Settings from the arguments (``--fps``, ``--num-frames``) and ``LATENT_*`` variables."""
        width, height = parse_size(os.environ.get(SIZE_ENV) or f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}")
        try:
            clips = int(os.environ.get(CLIPS_ENV) or 1)
        except ValueError:
            raise SettingError(f"{CLIPS_ENV} must be a whole number, got {os.environ.get(CLIPS_ENV)!r}") from None
        return cls(fps=float(fps or DEFAULT_FPS), width=width, height=height, frames=int(frames or DEFAULT_FRAMES),
                   clips=clips, augment=_flag(AUGMENT_ENV, True))

    def params(self) -> tuple[tuple[str, str], ...]:
        """What the settings record in the column's field metadata (``vw.<name>``)."""
        return (("fps", f"{self.fps:g}"), ("size", f"{self.width}x{self.height}"), ("num_frames", str(self.frames)),
                ("clips", str(self.clips)), ("augment", str(self.augment).lower()))


def vae_name(profile: str, model: str | None = None) -> str:
    """The VAE checkpoint of a profile: ``model``, else ``$COGVIDEOX_VAE_MODEL``, else CogVideoX-2b."""
    if profile == "tiny":
        return "tiny-cogvideox-vae"
    return model or os.environ.get(VAE_ENV) or DEFAULT_VAE


class _CogVideoXVae:
    """``from_pretrained`` of the VAE in its subfolder (for :func:`udfs.models.from_pretrained`)."""

    @staticmethod
    def _subfolder(name: str) -> str | None:
        sub = os.environ.get(SUBFOLDER_ENV, DEFAULT_SUBFOLDER) or None
        if sub and os.path.isdir(name) and not os.path.isdir(os.path.join(name, sub)):
            return None  # a local folder holding the VAE itself
        return sub

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> Any:
        from diffusers import AutoencoderKLCogVideoX

        return AutoencoderKLCogVideoX.from_pretrained(name, subfolder=cls._subfolder(name), **kwargs)

    @classmethod
    def load_config(cls, name: str, **kwargs: Any) -> Any:
        from diffusers import AutoencoderKLCogVideoX

        return AutoencoderKLCogVideoX.load_config(name, subfolder=cls._subfolder(name), **kwargs)


class _VaeConfig:
    @staticmethod
    def from_pretrained(name: str, **kwargs: Any) -> dict[str, Any]:
        return dict(_CogVideoXVae.load_config(name, **kwargs))


def vae_config(profile: str, model: str | None = None) -> dict[str, Any]:
    """The VAE's config (no weights read): ``latent_channels``, ``scaling_factor``, ..."""
    if profile == "tiny":
        return _tiny_config()
    return from_pretrained(_VaeConfig, vae_name(profile, model), VAE_ENV)


def _tiny_config() -> dict[str, Any]:
    import inspect

    from diffusers import AutoencoderKLCogVideoX

    params = inspect.signature(AutoencoderKLCogVideoX.__init__).parameters
    return {k: v.default for k, v in params.items() if k != "self"} | TINY_VAE


def load_vae(profile: str, model: str | None, device: str) -> Any:
    """The VAE on ``device`` (bf16 with tiling and slicing on CUDA), in eval mode."""
    import torch

    if profile == "tiny":
        from diffusers import AutoencoderKLCogVideoX

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            vae = AutoencoderKLCogVideoX(**TINY_VAE)
    else:
        vae = from_pretrained(_CogVideoXVae, vae_name(profile, model), VAE_ENV)
    vae = vae.eval().requires_grad_(False)
    if device.startswith("cuda"):
        vae = vae.to(device=device, dtype=torch.bfloat16)
        vae.enable_tiling()
        vae.enable_slicing()
    else:
        vae = vae.to(device)
    return vae


def latents_spec(profile: str | None = None, model: str | None = None,
                 settings: LatentSettings | None = None) -> ModelSpec:
    """The stage's spec without loading weights (reads the VAE's config for ``full``)."""
    profile = resolve_profile(profile, NAME)
    if profile == "offline":
        raise no_offline_model(NAME, f"offline,{NAME}=tiny")
    settings = settings or LatentSettings.from_env()
    config = vae_config(profile, model)
    params = (*settings.params(), ("scaling_factor", repr(float(config["scaling_factor"]))))
    return ModelSpec(NAME, profile, vae_name(profile, model), int(config["latent_channels"]), profile == "tiny",
                     params)


# ------------------------------------------------------------------------------------ computing


def prepare_frames(frames: Any, width: int, height: int, device: str = "cpu") -> Any:
    """uint8 ``[T, 3, h, w]`` -> float32 ``[T, 3, height, width]`` in [-1, 1]: resized (bilinear,
    antialiased) to cover ``width x height`` keeping the aspect ratio, then centre-cropped."""
    import math

    import torch
    import torch.nn.functional as F

    x = frames.to(device).float()
    h, w = int(x.shape[-2]), int(x.shape[-1])
    scale = max(width / w, height / h)
    size = (max(height, math.ceil(h * scale - 1e-6)), max(width, math.ceil(w * scale - 1e-6)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=size[0] < h, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[..., top:top + height, left:left + width]
    return (x.clamp(0, 255) / 127.5 - 1.0).to(torch.float32)


def clip_frames(frames: Any, times: np.ndarray, settings: LatentSettings) -> tuple[Any, np.ndarray]:
    """The frames of whole clips: ``[clips * F, ...]`` and their times (a short video's last frame repeats)."""
    import torch

    n = int(frames.shape[0])
    f = settings.frames
    if n < f:
        pad = [n - 1] * (f - n)
        idx = torch.tensor(list(range(n)) + pad)
        return frames[idx], np.concatenate([times, times[pad]])
    clips = min(settings.clips, n // f)
    return frames[: clips * f], times[: clips * f]


def png_bytes(frame: Any) -> bytes:
    """PNG of a uint8 ``[3, H, W]`` frame."""
    from torchvision.io import encode_png

    return bytes(encode_png(frame.cpu().contiguous()).numpy().tobytes())


class VaeEncoder:
    """Batched VAE encoding of prepared clips (float ``[T, 3, H, W]`` in [-1, 1])."""

    def __init__(self, profile: str, model: str | None = None, device: str | None = None) -> None:
        self.profile = profile
        self.model_name = model
        self.device = device or default_device()
        self._vae: Any = None

    @property
    def vae(self) -> Any:
        """The loaded VAE (once per process)."""
        if self._vae is None:
            self._vae = load_vae(self.profile, self.model_name, self.device)
        return self._vae

    def encode(self, clips: Sequence[Any]) -> np.ndarray:
        """float16 ``[B, C, T', H', W']``: posterior mean times the scaling factor."""
        import torch

        vae = self.vae
        dtype = next(vae.parameters()).dtype
        x = torch.stack([c.permute(1, 0, 2, 3) for c in clips]).to(self.device, dtype)  # [B, 3, T, H, W]
        with torch.inference_mode():
            mean = vae.encode(x).latent_dist.mean
        return (mean.float() * float(vae.config.scaling_factor)).to(torch.float16).cpu().numpy()

    def encode_adaptive(self, clips: Sequence[Any], batch_size: int,
                        on_frames: Callable[[int], None] | None = None) -> np.ndarray:
        """:meth:`encode` in micro-batches; on CUDA out-of-memory halve the batch and retry.
        ``on_frames`` is told the frames of each micro-batch encoded."""

        def encode(chunk: Sequence[Any]) -> np.ndarray:
            out = self.encode(chunk)
            if on_frames is not None:
                on_frames(sum(len(c) for c in chunk))
            return out

        return np.concatenate(run_adaptive(list(clips), batch_size, encode))


@dataclass
class _Prepared:
    clips: list[Any]  # float [F, 3, H, W] per clip (plain, then flipped)
    times: np.ndarray
    key_frame: bytes


class VideoLatents:
    """geneva stateful UDF computing the ``video_latents`` struct column (see the module docstring)."""

    def __init__(self, profile: str | None = None, model: str | None = None, settings: LatentSettings | None = None,
                 batch_size: int = 2, device: str | None = None, decode_threads: int | None = None,
                 cache_rows: int = 256) -> None:
        self.profile = resolve_profile(profile, NAME)
        self.model = model
        self.settings = settings or LatentSettings.from_env()
        self.batch_size = batch_size
        self.device = device
        self.decode_threads = decode_threads or min(os.cpu_count() or 1, 8)
        self.cache_rows = cache_rows
        self._encoder: VaeEncoder | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._done = OutcomeCache(cache_rows)
        #: Frames through the VAE, for the command's progress display (see :mod:`udfs.unit_progress`).
        self.progress = UnitReporter(NAME, PROGRESS_UNIT)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_encoder=None, _pool=None, _done=OutcomeCache(self.cache_rows))
        return state

    def prepare(self, uri: str, video_id: str, start: float | None, end: float | None) -> _Prepared:
        """Decode one row's frames and prepare its clips (runs in a decode thread)."""
        import torch

        s = self.settings
        first = float(start or 0.0)
        stop = first + s.clips * s.frames / s.fps
        plan = SamplingPlan.window(first, stop if end is None else min(stop, float(end)), s.fps)
        decoded = decode(uri, plan, name=f"{video_id} ({uri})")
        frames, times = clip_frames(decoded.data, decoded.timestamps_s, s)
        device = self._encoder.device if self._encoder else "cpu"
        prepared = prepare_frames(frames, s.width, s.height, device)
        clips = list(prepared.split(s.frames))
        if s.augment:
            clips += [c.flip(-1) for c in clips]
        centre = ((prepared[s.frames // 2] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return _Prepared(clips, times, png_bytes(centre))

    def __call__(self, video_id: pa.Array, uri: pa.Array, start_s: pa.Array, end_s: pa.Array) -> pa.Array:
        """Latents of one batch of videos; raises the first row's error if any row failed."""
        if self._encoder is None:
            self._encoder = VaeEncoder(self.profile, self.model, self.device)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="vw-latents")
        keys = [(video_id[i].as_py(), uri[i].as_py(), optional_float(start_s, i), optional_float(end_s, i))
                for i in range(len(uri))]
        todo = iter([k for k in dict.fromkeys(keys) if k not in self._done])
        pending: deque[tuple[tuple, Future]] = deque()
        window = self.decode_threads + 1
        while True:
            while len(pending) < window and (key := next(todo, None)) is not None:
                pending.append((key, self._pool.submit(self.prepare, key[1], key[0], key[2], key[3])))
            if not pending:
                break
            key, fut = pending.popleft()
            try:
                self._done.put(key, self._encode(fut.result()))
            except Exception as err:  # noqa: BLE001 - kept and re-raised for this row
                self._done.put(key, err)
        self.progress.flush()
        self._done.raise_first_error(keys)
        rows = [self._done[k] for k in keys]
        for k in keys:
            self._done.pop(k)
        return pa.array(rows, LATENT_TYPE)

    def _encode(self, prepared: _Prepared) -> bytes:
        assert self._encoder is not None
        latents = self._encoder.encode_adaptive(prepared.clips, self.batch_size, self.progress.add)
        n = len(prepared.clips) // (2 if self.settings.augment else 1)
        plain, flipped = latents[:n], latents[n:] if self.settings.augment else None
        return npz_of(plain, flipped, prepared.times, prepared.key_frame, self.settings,
                      float(self._encoder.vae.config.scaling_factor))


class KeyFrame:
    """geneva UDF: the ``key_frame`` PNG kept in each ``video_latents`` cell (no decoding)."""

    def __call__(self, latents: pa.Array) -> pa.Array:
        """``.npz`` blobs (bytes, or blob files) -> PNG ``binary`` (NULL stays NULL)."""
        values = latents.to_pylist() if isinstance(latents, (pa.Array, pa.ChunkedArray)) else list(latents)
        return pa.array([None if v is None else key_frame_of(v) for v in values], pa.binary())


# ------------------------------------------------------------------------------------ reading


def npz_of(plain: np.ndarray, flipped: np.ndarray | None, times: np.ndarray, key_frame: bytes,
           settings: LatentSettings, scaling_factor: float) -> bytes:
    """The ``.npz`` of one video (the keys in the module docstring), uncompressed."""
    arrays: dict[str, np.ndarray] = {}
    for i in range(plain.shape[0]):
        arrays["latents" if i == 0 else f"latents_{i}"] = plain[i]
        if flipped is not None:
            arrays["latents_flipped" if i == 0 else f"latents_flipped_{i}"] = flipped[i]
    arrays |= {"scaling_factor": np.float32(scaling_factor), "fps": np.float32(settings.fps),
               "height": np.int32(settings.height), "width": np.int32(settings.width),
               "num_frames": np.int32(settings.frames), "frame_times": np.asarray(times, np.float64),
               "key_frame": np.frombuffer(key_frame, np.uint8)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _bytes(value: Any) -> bytes:
    """A cell's bytes: bytes as they are, a Lance blob file read whole."""
    return value if isinstance(value, (bytes, bytearray, memoryview)) else value.read()


def npz_arrays(value: Any) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` cell by name. Stored (uncompressed) members, as :func:`npz_of` writes
    them, are read-only views of the cell's bytes (no copy); compressed members are decompressed."""
    import struct
    import zipfile

    data = _bytes(value)
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                out[name] = np.load(io.BytesIO(archive.read(info)))
                continue
            head = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[head + 26:head + 30])
            start = head + 30 + name_len + extra_len
            header = io.BytesIO(data[start:start + 4096])
            version = np.lib.format.read_magic(header)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(header)
            count = int(np.prod(shape)) if shape else 1
            array = np.frombuffer(data, dtype, count=count, offset=start + header.tell())
            out[name] = array.reshape(shape, order="F" if fortran else "C")
    return out


def latents_of(value: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The float16 ``[clips, C, T, H, W]`` latents of one ``video_latents`` cell, and its flipped twin."""
    arrays = npz_arrays(value)
    clips = 1 + sum(1 for k in arrays if k.startswith("latents_") and k[8:].isdigit())
    plain = np.stack([arrays["latents" if i == 0 else f"latents_{i}"] for i in range(clips)])
    if "latents_flipped" not in arrays:
        return plain, None
    return plain, np.stack([arrays["latents_flipped" if i == 0 else f"latents_flipped_{i}"] for i in range(clips)])


def clip_latents(arrays: dict[str, np.ndarray], clip: int, flipped: bool) -> np.ndarray | None:
    """One clip's ``[C, T, H, W]`` latents from :func:`npz_arrays` (None when the cell has no such clip)."""
    name = ("latents_flipped" if flipped else "latents") + ("" if clip == 0 else f"_{clip}")
    return arrays.get(name)


def key_frame_of(value: Any) -> bytes:
    """The key frame's PNG bytes kept in one ``video_latents`` cell."""
    return npz_arrays(value)["key_frame"].tobytes()


def frame_times_of(value: Any) -> np.ndarray:
    """The source times (s) of the frames encoded in one ``video_latents`` cell."""
    return np.array(npz_arrays(value)["frame_times"])


def npz_file(value: bytes, meta: dict[str, str]) -> bytes:
    """The ``.npz`` file of one video: the cell as it is."""
    return bytes(value)


def png_file(value: bytes, meta: dict[str, str]) -> bytes:
    """The key frame's PNG file (the cell as it is)."""
    return bytes(value)


# ------------------------------------------------------------------------------------ the stage


def udf_version(spec: ModelSpec) -> str:
    """Version of the column: changes with the code, the VAE and every setting (hashed: geneva puts
    the version into checkpoint file names, which have a length limit)."""
    import hashlib

    settings = json.dumps([spec.name, list(spec.params)])
    return f"cogvideox-vae:{CODE_VERSION}:{spec.profile}:{hashlib.sha1(settings.encode()).hexdigest()[:16]}"


def video_latents_udf(opts: StageOptions, spec: ModelSpec) -> Any:
    """The geneva UDF of the ``video_latents`` column."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    settings = LatentSettings.from_env(opts.fps, opts.num_frames)
    gpus = opts.num_gpus if opts.num_gpus is not None else 0.0
    size = max(opts.batch_size, 4)
    return udf(
        VideoLatents(spec.profile, opts.model, settings, opts.batch_size),
        data_type=LATENT_TYPE,
        version=udf_version(spec),
        field_metadata=spec.field_metadata() | BLOB_METADATA | {"vw.dtype": "float16", "vw.format": "npz"},
        num_cpus=1, num_gpus=gpus, checkpoint_size=size, max_checkpoint_size=size, on_error=skip_on_error(),
    )


def key_frame_udf(spec: ModelSpec) -> Any:
    """The geneva UDF of the ``key_frame`` column (reads ``video_latents``, no decoding)."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    return udf(KeyFrame(), data_type=pa.binary(), version=f"key-frame:{CODE_VERSION}", input_columns=[NAME],
               field_metadata=spec.field_metadata() | {"vw.format": "png", "vw.source": NAME}, num_cpus=1,
               on_error=skip_on_error())


def _stage_udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    return [(NAME, video_latents_udf(opts, spec)), (KEY_FRAME, key_frame_udf(spec))]


STAGE = Stage(
    name=NAME,
    table="videos",
    description="video VAE latents (CogVideoX) of clips at 8 fps, 720x480, plain and flipped, and a key frame",
    columns=lambda: (
        StageColumn(NAME, lambda spec: LATENT_TYPE,
                    description="the video's .npz (Lance blob): float16 VAE latents, flipped twins, key frame"),
        StageColumn(KEY_FRAME, lambda spec: pa.binary(), derived=True,
                    description="PNG of the frame at the first clip's centre, at the training size"),
    ),
    spec=lambda opts: latents_spec(opts.profile, opts.model, LatentSettings.from_env(opts.fps, opts.num_frames)),
    udfs=_stage_udfs,
    environment=StageEnvironment("video-latents", packages=("diffusers",), gpu=True,
                                 description="CogVideoX VAE latents"),
    progress_unit=PROGRESS_UNIT,
    files=(StageFiles("latent", NAME, npz_file, ".npz"), StageFiles("image", KEY_FRAME, png_file, ".png")),
)
