"""Asking a video-language model about windows: frames in, one raw answer per window out.

:class:`VideoDetector` is the numerical core of the detector columns, usable without Ray:
``answer(clips, fps)`` takes uint8 clips ``[T, 3, H, W]`` (one per window; every clip of one
call must have the same ``T``, which the UDF guarantees by grouping windows by frame count,
because LLaVA-NeXT-Video's processor stacks the clips) and returns the decoded answers.

* Frames larger than ``max_side`` are resized (bilinear, antialiased) so that their longest
  side is ``max_side``, keeping the aspect ratio.
* All clips of a call go through the processor together (text padded on the left, as decoder-
  only generation needs) and through one ``generate`` call.
* Sampling starts from ``seed`` at every call (the global RNG is left alone), so the same
  windows in the same batches give the same answers.
* Only the generated tokens are decoded (the prompt is cut off), special tokens skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.batching import default_device
from udfs.detection_prompt import conversation, prompt_text
from udfs.detector_models import DetectorSettings, family, load_detector, model_name
from udfs.models import cached_model, resolve_profile


def fit_within(frames: Any, max_side: int) -> Any:
    """uint8 ``[T, 3, H, W]`` resized so that ``max(H, W) <= max_side`` (aspect ratio kept)."""
    import torch

    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames [T, 3, H, W], got shape {tuple(frames.shape)}")
    height, width = int(frames.shape[2]), int(frames.shape[3])
    longest = max(height, width)
    if longest <= max_side:
        return frames
    scale = max_side / longest
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    out = torch.nn.functional.interpolate(frames.float(), size=size, mode="bilinear", antialias=True,
                                          align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class VideoDetector:
    """One detector family + profile on one device; the model loads on first use, once per process."""

    def __init__(self, key: str, profile: str | None = None, model: str | None = None,
                 settings: DetectorSettings | None = None, device: str | None = None) -> None:
        self.key = family(key).key
        self.profile = resolve_profile(profile, f"detections_{self.key}")
        self.name = model_name(self.key, self.profile, model)
        self.settings = settings or DetectorSettings.from_env()
        self.device = device or default_device()
        #: Extra ``generate`` keyword arguments (benchmarks set ``min_new_tokens`` to time fixed lengths).
        self.extra_generate: dict[str, Any] = {}
        self._parts: tuple[Any, Any] | None = None

    @classmethod
    def from_parts(cls, key: str, model: Any, processor: Any, settings: DetectorSettings,
                   device: str, profile: str = "tiny", name: str | None = None) -> VideoDetector:
        """A detector around an already built model and processor (benchmarks)."""
        det = cls(key, profile, name, settings, device)
        if name:
            det.name = name
        det._parts = (model, processor)
        return det

    def _load(self) -> tuple[Any, Any]:
        if self._parts is None:
            key, profile, name, device = self.key, self.profile, self.name, self.device
            four = self.settings.load_in_4bit
            self._parts = cached_model(
                ("detector", key, profile, name, device, str(four)),
                lambda: load_detector(key, profile, name, device, four),
            )
        return self._parts

    @property
    def model(self) -> Any:
        """The loaded model."""
        return self._load()[0]

    @property
    def processor(self) -> Any:
        """The loaded processor."""
        return self._load()[1]

    def inputs(self, clips: Sequence[Any], fps: Sequence[float]) -> Any:
        """The processor's batch for ``clips`` (sampled at ``fps``), on the model's device."""
        import torch

        if not clips:
            raise ValueError("no clips to run")
        if len(clips) != len(fps):
            raise ValueError(f"{len(clips)} clips but {len(fps)} frame rates")
        counts = {int(c.shape[0]) for c in clips}
        if len(counts) != 1:
            raise ValueError(f"clips of one call must have the same number of frames, got {sorted(counts)}")
        model, processor = self._load()
        clips = [fit_within(c, self.settings.max_side) for c in clips]
        texts = [processor.apply_chat_template(conversation(prompt_text(len(c), f, len(c) / f)),
                                               add_generation_prompt=True) for c, f in zip(clips, fps, strict=True)]
        kwargs: dict[str, Any] = {}
        if self.key == "qwen":
            kwargs["video_metadata"] = [
                {"fps": float(f), "total_num_frames": len(c), "frames_indices": list(range(len(c)))}
                for c, f in zip(clips, fps, strict=True)
            ]
        processor.tokenizer.padding_side = "left"
        batch = processor(text=texts, videos=list(clips), padding=True, return_tensors="pt", **kwargs)
        dtype = next(model.parameters()).dtype
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if v.is_floating_point():
                    v = v.to(dtype)
            out[k] = v
        return out

    def generate(self, inputs: dict[str, Any], **overrides: Any) -> Any:
        """Generated token ids ``[B, new]`` (prompt removed) for a batch from :meth:`inputs`."""
        import torch

        model, processor = self._load()
        tok = processor.tokenizer
        kwargs = self.settings.generate_kwargs() | self.extra_generate | overrides
        kwargs.setdefault("pad_token_id", tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.settings.seed)
            out = model.generate(**inputs, **kwargs)
        return out[:, inputs["input_ids"].shape[1]:]

    def answer(self, clips: Sequence[Any], fps: Sequence[float]) -> list[str]:
        """One raw answer per clip (see the module documentation)."""
        new_tokens = self.generate(self.inputs(clips, fps))
        texts = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]
