"""The worker environment of each stage, as geneva manifests (pip pins from :mod:`manifests.versions`).

Each stage declares its environment (:attr:`udfs.stage.Stage.environment`: a name shared by a
stage family, its packages beyond the core and torch stacks, its GPU need): ``video-embedding``
(V-JEPA 2), ``frame-features`` (DINOv2 / EfficientNet), ``detectors`` (LLaVA-NeXT-Video /
Qwen2.5-VL, 4-bit capable) and ``scenario-labels`` (MiniLM text embeddings). A manifest pins the
packages its workers install and ships this project's packages (``udfs``, ``tables``, ``jobs``, ``manifests``) as Ray
``py_modules``. Manifests are only used on KubeRay and existing Ray clusters: geneva rejects
them on the embedded local Ray, where workers share the driver's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifests.versions import PINS, TORCH_INDEX_URL, pinned
from udfs.errors import VwError
from udfs.stage import Stage
from udfs.stages import registry

#: Packages every worker needs (geneva itself is added by geneva at cluster start).
CORE = ("lancedb", "pylance", "pyarrow", "numpy", "pyyaml", "gcsfs", "fsspec")
#: Decoding and the torch stack shared by every model stage.
TORCH = ("torch", "torchvision", "torchcodec", "transformers", "tokenizers", "safetensors", "huggingface-hub",
         "pillow")

#: This project's packages, shipped to the workers with every manifest.
CODE_PACKAGES = ("udfs", "tables", "jobs", "manifests")


class EnvironmentNotFoundError(VwError, KeyError):
    """A stage name with no declared stage, hence no worker environment."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WorkerEnvironment:
    """What the workers of one environment need: packages, and whether its model columns want a GPU.

    Built from the stages' declarations (:attr:`udfs.stage.Stage.environment`): stages that name the
    same environment share it, with the union of their packages.
    """

    name: str
    packages: tuple[str, ...]
    gpu: bool
    description: str

    def requirements(self) -> list[str]:
        """The pinned pip requirements of this environment."""
        return pinned(*dict.fromkeys((*CORE, *self.packages)))


def _of(stage: Stage) -> WorkerEnvironment:
    env = stage.environment
    return WorkerEnvironment(env.name, (*(TORCH if env.torch else ()), *env.packages), env.gpu,
                             env.description or stage.description)


def environments() -> dict[str, WorkerEnvironment]:
    """Every worker environment of the declared stages, by name."""
    out: dict[str, WorkerEnvironment] = {}
    for stage in registry().values():
        env = _of(stage)
        have = out.get(env.name)
        if have is not None:
            env = WorkerEnvironment(env.name, tuple(dict.fromkeys((*have.packages, *env.packages))),
                                    have.gpu or env.gpu, have.description)
        out[env.name] = env
    return out


def environment_for_stage(stage: str) -> WorkerEnvironment:
    """The worker environment of the stage named ``stage`` (e.g. ``detections_llava``)."""
    stages = registry()
    if stage not in stages:
        raise EnvironmentNotFoundError(
            f"stage {stage!r} has no worker environment: it is not a declared stage "
            f"(stages: {', '.join(sorted(stages))})"
        )
    return environments()[stages[stage].environment.name]


def code_modules() -> list[str]:
    """Directories of this project's packages, as Ray ``py_modules`` entries."""
    root = Path(__file__).resolve().parent.parent
    paths = [root / name for name in CODE_PACKAGES]
    missing = [str(p) for p in paths if not (p / "__init__.py").is_file()]
    if missing:
        raise FileNotFoundError(f"project packages not found for shipping to workers: {', '.join(missing)}")
    return [str(p) for p in paths]


def build_manifest(envs: list[WorkerEnvironment], install: bool = True) -> Any:
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
