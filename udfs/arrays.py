"""Arrow layouts of vector columns (their types, and per-row ``[T, D]`` arrays <-> ``list<fixed_size_list>``).

Conversions go through flat numpy buffers (no Python lists of floats), so a row of a few
thousand vectors converts in well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def steps_to_arrow(steps: Sequence[np.ndarray | None], dim: int) -> pa.Array:
    """Arrow ``list<fixed_size_list<float32, dim>>`` from per-row ``[T, dim]`` arrays (None -> NULL)."""
    lengths = [0 if s is None else int(s.shape[0]) for s in steps]
    offsets = np.zeros(len(steps) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [s.reshape(-1, dim) for s in steps if s is not None]
    flat = np.concatenate(present).astype(np.float32).ravel() if present else np.zeros(0, np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
    mask = pa.array([s is None for s in steps]) if any(s is None for s in steps) else None
    return pa.ListArray.from_arrays(pa.array(offsets), vectors, mask=mask)


def steps_from_arrow(column: pa.Array | pa.ChunkedArray) -> list[np.ndarray | None]:
    """Inverse of :func:`steps_to_arrow`: a ``[T, D]`` float32 array per row (None for NULL)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    dim = column.type.value_type.list_size
    # Slice-aware: a sliced list array's offsets index its child's steps (flatten() honours a child
    # that is itself a slice).
    values = column.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    offsets = column.offsets.to_numpy()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return [
        values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(column))
    ]


def lists_to_arrow(rows: Sequence[np.ndarray | None], value_type: pa.DataType) -> pa.Array:
    """Arrow ``list<value_type>`` from per-row 1-d arrays (None -> NULL)."""
    lengths = [0 if r is None else len(r) for r in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(r) for r in rows if r is not None]
    flat = np.concatenate(present) if present else np.zeros(0)
    mask = pa.array([r is None for r in rows]) if any(r is None for r in rows) else None
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, value_type), mask=mask)


def optional_float(array: pa.Array, i: int) -> float | None:
    """Element ``i`` of a numeric Arrow array as a float (None for NULL)."""
    value = array[i].as_py()
    return None if value is None else float(value)


def embedding_steps_type(dim: int) -> pa.DataType:
    """``list<fixed_size_list<float32, dim>>``: one vector per time step (or frame)."""
    return pa.list_(pa.list_(pa.float32(), dim))


def vector_type(dim: int) -> pa.DataType:
    """``fixed_size_list<float32, dim>``: one vector per row (ANN-indexable)."""
    return pa.list_(pa.float32(), dim)
