"""Writing result tables for the command line: aligned text, CSV, JSON or Parquet."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from udfs.atomic_files import atomic_write
from udfs.errors import VwError, choices

if TYPE_CHECKING:
    import pyarrow as pa

#: Output formats of the read commands (``--format``).
OutputFormat = Literal["table", "json", "csv", "parquet"]
FORMATS = choices(OutputFormat)
_MAX_CELL = 60


class OutputError(VwError, ValueError):
    """An output request that cannot be met (format, destination)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        text = json.dumps(value, default=str).replace("\n", " ")
        return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."
    return shorten(str(value).replace("\n", " "), _MAX_CELL)


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle, so that both ends show: ids that differ only at
    the end (``.../game/1`` and ``.../game/2``) stay told apart."""
    if len(text) <= width:
        return text
    keep = width - 3
    tail = keep // 3
    return text[: keep - tail] + "..." + text[-tail:]


def text_table(table: pa.Table) -> str:
    """The table as aligned text columns (long values shortened, floats to 4 decimals)."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _flatten_nested(table: pa.Table) -> pa.Table:
    """Nested columns (lists, structs) as JSON text, for CSV."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            values = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(values, pa.string()))
    return table


def render(table: pa.Table, fmt: str) -> bytes:
    """The table encoded in ``fmt`` (table, csv, json, parquet)."""
    if fmt == "table":
        return (text_table(table) + "\n").encode()
    if fmt == "csv":
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(_flatten_nested(table), buf)
        return buf.getvalue()
    if fmt == "json":
        return (json.dumps(table.to_pylist(), indent=2, default=str) + "\n").encode()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    raise OutputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def write(table: pa.Table, fmt: str, out: str | None) -> None:
    """Write the table to ``out`` (atomically) or to stdout; Parquet needs ``out``."""
    if fmt == "parquet" and out is None:
        raise OutputError("--format parquet writes a binary file: give --out FILE")
    data = render(table, fmt)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    path = Path(out)
    try:
        atomic_write(path, data)
    except OSError as err:
        if isinstance(err, VwError):
            raise
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
