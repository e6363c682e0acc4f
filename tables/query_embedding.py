"""Embed a search query (a video file, an image, a text) exactly as a stored column was computed.

The column's field metadata says how it was made (``vw.stage``, ``vw.profile``, ``vw.name`` and
the sampling settings ``vw.num_frames`` / ``vw.fps``); the query runs through the query embedder
of that stage's declaration (:attr:`udfs.stage.Stage.query`), the same UDF code with those settings,
so a stored video and the same file given as a query get the same vectors.
When the column's model cannot be loaded here (no weights for the ``full`` profile, a missing
package for ``offline``), the query is refused with the reason; nothing is replaced by another
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from tables.vector_columns import VectorColumn
from udfs.errors import NotFoundError, VwError


class QueryEmbeddingError(VwError, RuntimeError):
    """A query could not be embedded for a column (names the query, the column and the reason)."""


def _require(column: VectorColumn, *keys: str) -> dict[str, str]:
    meta = column.metadata
    missing = [k for k in ("vw.stage", "vw.profile", "vw.name", *keys) if k not in meta]
    if missing:
        raise QueryEmbeddingError(
            f"column {column.name!r} has no model metadata ({', '.join(missing)}): it was not computed by a "
            "stage of this warehouse, so a query cannot be embedded for it; query by video_id or by vector"
        )
    return meta


def _model_error(column: VectorColumn, what: str, err: Exception) -> QueryEmbeddingError:
    return QueryEmbeddingError(
        f"cannot embed {what} for column {column.name!r}: its model {column.model_label()} cannot be loaded "
        f"here ({type(err).__name__}: {err})"
    )


def _load_errors() -> tuple[type[BaseException], ...]:
    from udfs.frame_models import ModelLoadError
    from udfs.models import ModelUnavailableError

    return (ModelUnavailableError, ModelLoadError, ImportError, OSError)


def _check_dim(column: VectorColumn, vectors: np.ndarray, what: str) -> np.ndarray:
    if vectors.ndim != 2 or vectors.shape[1] != column.dim or len(vectors) == 0:
        raise QueryEmbeddingError(
            f"embedding {what} gave vectors of shape {vectors.shape}, but column {column.name!r} holds "
            f"{column.dim}-d vectors: the column metadata does not describe the model that computed it"
        )
    return vectors.astype(np.float32)


Kind = Literal["video", "image", "text"]
_KIND_NEEDS = {"video": "a per-step or per-frame video column", "image": "a per-frame features column",
               "text": "a text-embedding column"}


def _embed(column: VectorColumn, kind: Kind, query: Any, what: str, device: str | None) -> Any:
    """Run the query embedder of the stage that computed ``column`` on ``query``."""
    from udfs.decode import VideoDecodeError
    from udfs.stages import registry

    meta = _require(column)
    stage = registry().get(meta["vw.stage"])
    embedder = None if stage is None else stage.query
    refused = QueryEmbeddingError(
        f"column {column.name!r} comes from stage {meta['vw.stage']!r}, which does not embed a {kind} query "
        f"({_KIND_NEEDS[kind]} does); query it by video_id or by vector"
    )
    if embedder is None:
        raise refused
    try:
        return getattr(embedder, kind)(meta, query, device or "cpu")
    except NotImplementedError:
        raise refused from None
    except NotFoundError as err:  # a setting the column's metadata does not record
        raise QueryEmbeddingError(f"column {column.name!r}: {err}") from err
    except VideoDecodeError as err:
        raise QueryEmbeddingError(f"cannot decode {what}: {err}") from err
    except (*_load_errors(), ValueError) as err:  # ValueError: e.g. a profile without a model for the stage
        raise _model_error(column, what, err) from err


def embed_video(column: VectorColumn, uri: str, device: str | None = None) -> np.ndarray:
    """Per-step vectors ``[T, D]`` of the video at ``uri`` for a per-step column (clip or frame vectors)."""
    what = f"the query video {uri!r}"
    if "://" not in uri and not Path(uri).is_file():
        raise QueryEmbeddingError(f"{what} does not exist or is not a file")
    steps = _embed(column, "video", uri, what, device)
    if steps is None:
        raise QueryEmbeddingError(f"the query video {uri!r} gave no vectors for column {column.name!r}")
    return _check_dim(column, np.asarray(steps), what)


def read_image(path: str | Path) -> Any:
    """An image file as uint8 ``[3, H, W]`` RGB (torchvision's decoder; PIL for formats it lacks)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise QueryEmbeddingError(f"the query image {str(path)!r} does not exist or is not a file")
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file

        return decode_image(read_file(str(p)), mode=ImageReadMode.RGB)
    except Exception as tv_err:  # noqa: BLE001 - PIL reads formats torchvision does not
        try:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
            return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
        except Exception as pil_err:  # noqa: BLE001 - both decoders' messages are reported
            raise QueryEmbeddingError(
                f"cannot decode the query image {str(path)!r}: torchvision: {tv_err}; PIL: {pil_err}"
            ) from pil_err


def embed_image(column: VectorColumn, path: str | Path, device: str | None = None) -> np.ndarray:
    """The ``[D]`` vector of an image file for a per-frame column (the column's frame encoder)."""
    _require(column)
    frames = read_image(path)
    what = f"the image {str(path)!r}"
    return _check_dim(column, np.asarray(_embed(column, "image", frames[None], what, device))[None], what)[0]


def embed_text(column: VectorColumn, text: str, device: str | None = None) -> np.ndarray:
    """The ``[D]`` vector of ``text`` for a text-embedding column (``caption_embedding``)."""
    _require(column)
    if not text or not text.strip():
        raise QueryEmbeddingError("the text query is empty")
    what = f"the text {text!r}"
    return _check_dim(column, np.asarray(_embed(column, "text", text.strip(), what, device))[None], what)[0]
