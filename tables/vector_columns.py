"""What a vector column of a table holds: per-step or single vectors, width, model, companions.

Computed columns carry ``vw.*`` field metadata (model name, profile, sampling settings); a
per-step column may have a pooled companion (``<column>_pooled``, mean-L2) and a timestamps
companion (``<column>_times``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from udfs.errors import VwError
from udfs.frame_features import times_column
from udfs.video_embedding import pooled_column


class ColumnError(VwError, ValueError):
    """A column that is missing or cannot be used the way it was asked (names table and column)."""


@dataclass(frozen=True)
class VectorColumn:
    """A vector column: ``steps`` (``list<fixed_size_list<float32, D>>``) or ``vector`` (``fixed_size_list``)."""

    table: str
    name: str
    kind: str  # "steps" | "vector"
    dim: int
    metadata: dict[str, str] = field(default_factory=dict)
    pooled: str | None = None  # mean-L2 companion of a steps column
    times: str | None = None  # per-step timestamps companion

    @property
    def is_steps(self) -> bool:
        """True for a per-step (per-frame) column."""
        return self.kind == "steps"

    def model_label(self) -> str:
        """``name [profile]`` of the model that computed the column (``?`` when unknown)."""
        return f"{self.metadata.get('vw.name', '?')} [{self.metadata.get('vw.profile', '?')}]"


def field_metadata(schema: pa.Schema, column: str) -> dict[str, str]:
    """The ``vw.*`` metadata of ``column`` in ``schema`` (empty when there is none)."""
    meta = schema.field(column).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"vw.")}


def _fixed_size(dtype: pa.DataType) -> int | None:
    if pa.types.is_fixed_size_list(dtype) and pa.types.is_floating(dtype.value_type):
        return int(dtype.list_size)
    return None


def vector_columns(table: Any) -> list[str]:
    """Names of the columns of ``table`` usable for vector search (per-step or single vectors)."""
    out = []
    for f in table.schema:
        if _fixed_size(f.type) or (pa.types.is_list(f.type) and _fixed_size(f.type.value_type)):
            out.append(f.name)
    return out


def describe_column(table: Any, column: str, table_name: str = "videos") -> VectorColumn:
    """The :class:`VectorColumn` for ``column`` of ``table``; a clear error when it is not a vector column."""
    schema = table.schema
    if column not in schema.names:
        raise ColumnError(
            f"table {table_name!r} has no column {column!r}; vector columns: "
            f"{', '.join(vector_columns(table)) or 'none yet (run a backfill first)'}"
        )
    dtype = schema.field(column).type
    meta = field_metadata(schema, column)
    if (dim := _fixed_size(dtype)) is not None:
        return VectorColumn(table_name, column, "vector", dim, meta)
    if pa.types.is_list(dtype) and (dim := _fixed_size(dtype.value_type)) is not None:
        pooled = pooled_column(column)
        times = times_column(column)
        return VectorColumn(
            table_name, column, "steps", dim, meta,
            pooled=pooled if pooled in schema.names and _fixed_size(schema.field(pooled).type) == dim else None,
            times=times if times in schema.names else None,
        )
    raise ColumnError(
        f"column {column!r} of table {table_name!r} is {dtype}, not a vector column; "
        f"vector columns: {', '.join(vector_columns(table)) or 'none'}"
    )
