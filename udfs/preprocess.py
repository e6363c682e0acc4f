"""Image preprocessing on the model's device: short-side resize, centre crop, normalisation.

Works on uint8 ``[N, 3, H, W]`` tensors (decoded frames) with torchvision's tensor kernels, so
the same code runs on the CPU and on a GPU (frames are moved first, then resized there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTransform:
    """Resize the short side to ``resize``, centre-crop ``crop`` x ``crop``, scale to [0, 1],
    normalise with ``mean`` / ``std``. ``interpolation`` is ``bilinear`` or ``bicubic``
    (antialiased, as PIL does in Hugging Face image processors)."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"


def resize_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Output size of a short-side resize to ``short`` (long side truncated, as HF processors do)."""
    if height <= width:
        return short, max(short, int(short * width / height))
    return max(short, int(short * height / width)), short


def to_device(frames: Any, device: str) -> Any:
    """Move uint8 frames to ``device`` (pinned, asynchronous copy for CUDA)."""
    if device != "cpu" and frames.device.type == "cpu":
        return (frames if frames.is_pinned() else frames.pin_memory()).to(device, non_blocking=True)
    return frames.to(device)


def apply_transform(frames: Any, tf: ImageTransform, device: str) -> Any:
    """uint8 ``[N, 3, H, W]`` -> float ``[N, 3, crop, crop]`` on ``device``."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = to_device(frames, device)
    size = resize_size(int(x.shape[-2]), int(x.shape[-1]), tf.resize)
    mode = InterpolationMode.BICUBIC if tf.interpolation == "bicubic" else InterpolationMode.BILINEAR
    if tuple(x.shape[-2:]) != size:
        x = TF.resize(x, list(size), interpolation=mode, antialias=True)
    top, left = (size[0] - tf.crop) // 2, (size[1] - tf.crop) // 2
    x = x[:, :, top : top + tf.crop, left : left + tf.crop].float()
    mean = torch.tensor(tf.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(tf.std, device=x.device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std
