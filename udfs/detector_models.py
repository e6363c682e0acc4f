"""The soccer-event detectors of the model registry: LLaVA-NeXT-Video and Qwen2.5-VL.

Families (the ``model`` value of their events and the suffix of their column):

``llava``
    ``LlavaNextVideoForConditionalGeneration``; ``full`` = ``llava-hf/LLaVA-NeXT-Video-7B-hf``
    (``LLAVA_VIDEO_MODEL`` overrides it: another hub id or a local checkpoint directory).
``qwen``
    ``Qwen2_5_VLForConditionalGeneration``; ``full`` = ``Qwen/Qwen2.5-VL-7B-Instruct``
    (``QWEN_VL_MODEL`` overrides it).

Profiles (:mod:`udfs.models`): ``full`` loads the checkpoint and its processor and fails with
:class:`~udfs.models.ModelUnavailableError` when they cannot be reached. ``tiny`` builds the same
model classes from small configs with seeded random weights, a processor with small frame sizes
and a byte-level BPE tokenizer trained in-process (deterministic, cached per process) whose
vocabulary comes from the prompt and example answers and which holds the special tokens the
processors expect (``<image>``/``<video>`` for LLaVA, ``<|video_pad|>`` and friends for Qwen):
pipeline checks only, every output is labelled as random weights. There is no ``offline``
profile for detectors (no vision-language model ships inside a PyPI package).

Settings that change the answers (:class:`DetectorSettings`, environment defaults in brackets):
``max_new_tokens`` [``DETECT_MAX_NEW_TOKENS``, 256], ``temperature`` [``DETECT_TEMPERATURE``,
0.7], ``top_p`` [``DETECT_TOP_P``, 0.9], ``do_sample`` [``DETECT_DO_SAMPLE``, true], ``seed``
[``DETECT_SEED``, 0], ``max_side`` (longest frame side after resizing) [``DETECT_MAX_SIDE``,
384], ``load_in_4bit`` (bitsandbytes NF4, CUDA only) [``DETECT_4BIT``, false].
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Literal

from udfs.detection_parser import LABELS
from udfs.detection_prompt import PROMPT_VERSION, prompt_text
from udfs.errors import SettingError, choices
from udfs.models import ModelSpec, ModelUnavailableError, from_pretrained, no_offline_model, resolve_profile

DetectorFamily = Literal["llava", "qwen"]
FAMILIES = choices(DetectorFamily)


@dataclass(frozen=True)
class Family:
    """What differs between the detector families."""

    key: str
    default_model: str
    env: str
    tiny_name: str


FAMILY = {
    "llava": Family("llava", "llava-hf/LLaVA-NeXT-Video-7B-hf", "LLAVA_VIDEO_MODEL", "llava-next-video-tiny-random"),
    "qwen": Family("qwen", "Qwen/Qwen2.5-VL-7B-Instruct", "QWEN_VL_MODEL", "qwen2.5-vl-tiny-random"),
}
TINY_SEED = 0
TINY_VOCAB = 640
#: Frame side of the tiny processors (LLaVA: resize + crop to this square; Qwen: pixel bounds).
TINY_FRAME_SIDE = 56


def family(key: str) -> Family:
    """The detector family ``key`` (``llava`` or ``qwen``); raises ``ValueError`` otherwise."""
    if key not in FAMILY:
        raise SettingError(f"unknown detector {key!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILY[key]


def stage_name(key: str) -> str:
    """The backfill stage (and column) of a family: ``detections_<key>``."""
    return f"detections_{family(key).key}"


# ------------------------------------------------------------------------------------ settings


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be true or false, got {raw!r}")


def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


@dataclass(frozen=True)
class DetectorSettings:
    """Generation and input settings of a detector (see the module documentation)."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    seed: int = 0
    max_side: int = 384
    load_in_4bit: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise SettingError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise SettingError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SettingError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_side < 16:
            raise SettingError(f"max_side must be >= 16 pixels, got {self.max_side}")

    @classmethod
    def from_env(cls, **overrides: Any) -> DetectorSettings:
        """Settings from the ``DETECT_*`` environment variables; ``overrides`` (not None) win."""
        values = {
            "max_new_tokens": _env_number("DETECT_MAX_NEW_TOKENS", cls.max_new_tokens, int),
            "temperature": _env_number("DETECT_TEMPERATURE", cls.temperature, float),
            "top_p": _env_number("DETECT_TOP_P", cls.top_p, float),
            "do_sample": _env_bool("DETECT_DO_SAMPLE", cls.do_sample),
            "seed": _env_number("DETECT_SEED", cls.seed, int),
            "max_side": _env_number("DETECT_MAX_SIDE", cls.max_side, int),
            "load_in_4bit": _env_bool("DETECT_4BIT", cls.load_in_4bit),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def params(self) -> tuple[tuple[str, str], ...]:
        """The settings as ``ModelSpec.params`` (recorded as ``vw.*`` column metadata)."""
        sampling = (("temperature", f"{self.temperature:g}"), ("top_p", f"{self.top_p:g}"), ("seed", str(self.seed)))
        return (
            ("prompt", PROMPT_VERSION),
            ("max_new_tokens", str(self.max_new_tokens)),
            ("do_sample", str(self.do_sample).lower()),
            *(sampling if self.do_sample else ()),
            ("max_side", str(self.max_side)),
            ("load_in_4bit", str(self.load_in_4bit).lower()),
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``model.generate`` for these settings."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


# ---------------------------------------------------------------------------------- the spec


def model_name(key: str, profile: str, model: str | None = None) -> str:
    """Model name of a family for ``profile`` (hub id or local directory for ``full``)."""
    fam = family(key)
    if profile == "tiny":
        return fam.tiny_name
    return model or os.environ.get(fam.env) or fam.default_model


def detector_spec(key: str, profile: str | None = None, model: str | None = None,
                  settings: DetectorSettings | None = None) -> ModelSpec:
    """The spec of a detector stage without loading weights (``full`` reads the config only).

    Raises ``ValueError`` for the ``offline`` profile and for 4-bit loading of random weights,
    :class:`~udfs.models.ModelUnavailableError` when a ``full`` checkpoint cannot be reached.
    """
    stage = stage_name(key)
    profile = resolve_profile(profile, stage)
    if profile == "offline":
        raise no_offline_model(stage, f"offline,{stage}=tiny")
    settings = settings or DetectorSettings.from_env()
    if settings.load_in_4bit and profile == "tiny":
        raise SettingError("4-bit loading (DETECT_4BIT) applies to full checkpoints, not to the tiny random models")
    name = model_name(key, profile, model)
    if profile == "tiny":
        dim = tiny_config(key).text_config.hidden_size
    else:
        from transformers import AutoConfig

        config = from_pretrained(AutoConfig, name, family(key).env)
        dim = getattr(getattr(config, "text_config", config), "hidden_size", 0)
    return ModelSpec(stage, profile, name, int(dim), profile == "tiny",
                     params=(("event_model", key), *settings.params()))


# -------------------------------------------------------------------------- tiny components

_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>", "<|im_start|>", "<|im_end|>",
             "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: prompts and answers in the expected shapes."""
    lines = [prompt_text(n, 1.0, float(n)) for n in (1, 2, 4)]
    teams = ("home", "away", None)
    for i, label in enumerate(LABELS):
        team = teams[i % 3]
        conf = round(0.5 + (i % 5) / 10, 2)
        lines.append(f'{{"label": "{label}", "team": {"null" if team is None else repr(team)}, '
                     f'"confidence": {conf}, "details": "The {team or "neutral"} side: {label.lower()} seen."}}')
        lines.append(f"{{'label': '{label}', 'team': {team!r}, 'confidence': {conf}, 'details': 'play goes on'}}")
    return lines


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    """The tiny profile's tokenizer (byte-level BPE trained on :func:`_tokenizer_corpus`; cached)."""
    return build_tiny_tokenizer()


def build_tiny_tokenizer() -> Any:
    """Train the tiny tokenizer (deterministic: same corpus, same settings, same vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB, special_tokens=list(_SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        padding_side="left",
    )


def _token_id(tokenizer: Any, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))


@functools.lru_cache(maxsize=4)
def tiny_config(key: str) -> Any:
    """A small config of the family's model class (2 text layers of 64, 2 vision layers of 32)."""
    tok = tiny_tokenizer()
    vocab = len(tok)
    ids = {t: _token_id(tok, t) for t in _SPECIALS}
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"])
    if family(key).key == "llava":
        from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=TINY_FRAME_SIDE, patch_size=14, projection_dim=32)
        return LlavaNextVideoConfig(
            vision_config=vision, text_config=LlamaConfig(**text, eos_token_id=ids["</s>"]),
            video_token_index=ids["<video>"], image_token_index=ids["<image>"],
            image_grid_pinpoints=[[TINY_FRAME_SIDE, TINY_FRAME_SIDE]],
            image_seq_length=(TINY_FRAME_SIDE // 14) ** 2, video_seq_length=(TINY_FRAME_SIDE // 28) ** 2,
        )
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(**text, eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )


_LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: {% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<video>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
_QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_processor(key: str, side: int = TINY_FRAME_SIDE) -> Any:
    """The processor of a tiny model (the real processor classes, small frame sizes, the tiny tokenizer).

    ``side`` is the frame side the vision tower expects (the bench builds full-size configs with 336).
    """
    tok = tiny_tokenizer()
    if family(key).key == "llava":
        from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor

        square = {"height": side, "width": side}
        return LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(size={"shortest_edge": side}, crop_size=square),
            image_processor=LlavaNextImageProcessor(size={"shortest_edge": side}, crop_size=square,
                                                    image_grid_pinpoints=[[side, side]]),
            tokenizer=tok, chat_template=_LLAVA_TEMPLATE, patch_size=14, vision_feature_select_strategy="default",
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    bounds = {"shortest_edge": side * side, "longest_edge": 4 * side * side}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=bounds),
        video_processor=Qwen2VLVideoProcessor(size=bounds, cap_pixels_per_frame=False),
        tokenizer=tok, chat_template=_QWEN_TEMPLATE,
    )


def model_class(key: str) -> Any:
    """The transformers class of a family."""
    if family(key).key == "llava":
        from transformers import LlavaNextVideoForConditionalGeneration

        return LlavaNextVideoForConditionalGeneration
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration


def build_tiny_model(key: str) -> Any:
    """The tiny model of a family with seeded random weights (float32, CPU, eval mode)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return model_class(key)(tiny_config(key)).eval()


# ------------------------------------------------------------------------------- full loading


class _WithKwargs:
    """``cls.from_pretrained`` with extra keyword arguments (for :func:`udfs.models.from_pretrained`)."""

    def __init__(self, cls: Any, **kwargs: Any) -> None:
        self.cls, self.kwargs = cls, kwargs

    def from_pretrained(self, name: str, **extra: Any) -> Any:
        return self.cls.from_pretrained(name, **self.kwargs, **extra)


def check_4bit(device: str) -> None:
    """Raise ``ValueError`` unless 4-bit loading can work here (CUDA and bitsandbytes)."""
    if not device.startswith("cuda"):
        raise SettingError(f"4-bit loading (DETECT_4BIT) needs a CUDA device; this detector runs on {device!r}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise SettingError(f"4-bit loading (DETECT_4BIT) needs the bitsandbytes package ({err})") from err


def load_full(key: str, name: str, device: str, load_in_4bit: bool = False) -> tuple[Any, Any]:
    """``(model, processor)`` of a real checkpoint on ``device`` (bf16 on CUDA, float32 on the CPU).

    Raises :class:`~udfs.models.ModelUnavailableError` when the checkpoint cannot be reached.
    """
    import torch
    from transformers import AutoProcessor

    fam = family(key)
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if device.startswith("cuda") else torch.float32}
    if load_in_4bit:
        check_4bit(device)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": device}
    model = from_pretrained(_WithKwargs(model_class(key), **kwargs), name, fam.env)
    if not load_in_4bit:
        model = model.to(device)
    processor = from_pretrained(AutoProcessor, name, fam.env)
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


def load_detector(key: str, profile: str, name: str, device: str, load_in_4bit: bool = False) -> tuple[Any, Any]:
    """``(model, processor)`` for a profile (not cached; see :class:`udfs.video_detector.VideoDetector`)."""
    if profile == "tiny":
        if load_in_4bit:
            raise SettingError("4-bit loading (DETECT_4BIT) applies to full checkpoints, not to the tiny random models")
        import torch

        model = build_tiny_model(key)
        if device.startswith("cuda"):
            model = model.to(device=device, dtype=torch.bfloat16)
        return model, tiny_processor(key)
    if profile != "full":
        raise ModelUnavailableError(f"detector {key!r} has no {profile!r} model")
    return load_full(key, name, device, load_in_4bit)
