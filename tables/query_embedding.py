"""Embed a search query (a video file, an image, a text) exactly as a stored column was computed.

The column's field metadata says how it was made (``vw.stage``, ``vw.profile``, ``vw.name`` and
the sampling settings ``vw.num_frames`` / ``vw.fps``); the query runs through the same UDF code
with those settings, so a stored video and the same file given as a query get the same vectors.
When the column's model cannot be loaded here (no weights for the ``full`` profile, a missing
package for ``offline``), the query is refused with the reason; nothing is replaced by another
model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tables.vector_columns import VectorColumn
from udfs.errors import VwError


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


def embed_video(column: VectorColumn, uri: str, device: str | None = None) -> np.ndarray:
    """Per-step vectors ``[T, D]`` of the video at ``uri`` for a per-step column (V-JEPA 2 or frames)."""
    from udfs.decode import VideoDecodeError

    meta = _require(column)
    stage = meta["vw.stage"]
    what = f"the video {uri!r}"
    try:
        if stage == "video_embedding":
            from udfs.arrays import steps_from_arrow
            from udfs.video_embedding import VideoEmbedding

            if "vw.num_frames" not in meta:
                raise QueryEmbeddingError(f"column {column.name!r} does not record vw.num_frames")
            udf = VideoEmbedding(meta["vw.profile"], meta["vw.name"], int(meta["vw.num_frames"]),
                                 batch_size=1, device=device or "cpu", decode_threads=1)
            none = pa.array([None], pa.float64())
            out = udf(pa.array([uri]), pa.array([uri]), none, none)
            steps = steps_from_arrow(out)[0]
        elif stage == "frame_features":
            from udfs.frame_features import FrameFeatures

            if "vw.fps" not in meta:
                raise QueryEmbeddingError(f"column {column.name!r} does not record vw.fps")
            steps = FrameFeatures(meta["vw.profile"], meta["vw.name"], float(meta["vw.fps"]),
                                  device=device or "cpu", decode_threads=1).features(uri)
        else:
            raise QueryEmbeddingError(
                f"column {column.name!r} comes from stage {stage!r}, which does not embed videos; "
                "query it by video_id or by vector"
            )
    except VideoDecodeError as err:
        raise QueryEmbeddingError(f"cannot decode the query video {uri!r}: {err}") from err
    except _load_errors() as err:
        raise _model_error(column, what, err) from err
    except ValueError as err:  # e.g. a profile that has no model for this stage
        raise _model_error(column, what, err) from err
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
    meta = _require(column)
    if meta["vw.stage"] != "frame_features":
        raise QueryEmbeddingError(
            f"column {column.name!r} comes from stage {meta['vw.stage']!r}: an image query needs a per-frame "
            "features column (frame_features)"
        )
    frames = read_image(path)
    try:
        from udfs.frame_models import FrameEncoder

        vectors = FrameEncoder(meta["vw.profile"], meta["vw.name"], device or "cpu").encode(frames[None])
    except (*_load_errors(), ValueError) as err:
        raise _model_error(column, f"the image {str(path)!r}", err) from err
    return _check_dim(column, np.asarray(vectors), f"the image {str(path)!r}")[0]


def embed_text(column: VectorColumn, text: str, device: str | None = None) -> np.ndarray:
    """The ``[D]`` vector of ``text`` for a text-embedding column (``caption_embedding``)."""
    meta = _require(column)
    if not text or not text.strip():
        raise QueryEmbeddingError("the text query is empty")
    try:
        from udfs.text_embedding import TextEncoder

        vectors = TextEncoder(meta["vw.profile"], meta["vw.name"], device or "cpu").encode([text.strip()])
    except (*_load_errors(), ValueError) as err:
        raise _model_error(column, f"the text {text!r}", err) from err
    return _check_dim(column, np.asarray(vectors), f"the text {text!r}")[0]
