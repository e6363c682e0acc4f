"""Arrow arrays built from their buffers: constant columns, string columns from NumPy byte
buffers, and the ``(offsets, data)`` buffers of a string array for compiled kernels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def constant(value: object, n: int, type_: pa.DataType) -> pa.Array:
    """``n`` times ``value`` as an array of ``type_`` (strings and timestamps without a gather)."""
    if type_ == pa.string() and isinstance(value, str):
        raw = value.encode()
        offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
        if offsets[-1] < 2**31:
            data = np.frombuffer(raw * n, dtype=np.uint8) if raw else np.zeros(0, np.uint8)
            return strings(offsets, data)
    if pa.types.is_timestamp(type_) and value is not None:
        return pa.array(np.full(n, pa.scalar(value, type_).value, dtype=np.int64)).view(type_)
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int64)))


def strings(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A string array whose value ``i`` is ``data[offsets[i]:offsets[i + 1]]`` (UTF-8 bytes);
    ``large_string`` when the data does not fit 32-bit offsets."""
    n = len(offsets) - 1
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)),
                                                      pa.py_buffer(data)])
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets.astype(np.int64)),
                                                        pa.py_buffer(data)])


def string_buffers(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)`` of a string array as NumPy arrays (int64 offsets, uint8 bytes; nulls
    read as empty strings)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if values.type not in (pa.string(), pa.large_string()):
        values = pc.cast(values, pa.string())
    if len(values) == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.uint8)
    _, offsets_buf, data_buf = values.buffers()
    width = np.int64 if values.type == pa.large_string() else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[values.offset:values.offset + len(values) + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(1, np.uint8)
    return offsets, data


def texts(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, data)`` of a few Python strings."""
    raw = [v.encode() for v in values]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype(np.int64)
    return offsets, np.frombuffer(b"".join(raw) + b"\0", dtype=np.uint8)
