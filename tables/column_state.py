"""The state of computed columns, read from the tables themselves: one place for all readers.

A computed column carries ``vw.*`` field metadata (model, profile, settings, UDF version; see
:func:`field_spec`); its missing rows are those matching :func:`missing_filter`; geneva's error
store holds the failures (:func:`recent_errors`, :func:`failed_rows`). The backfill runner,
``vw status``, the events jobs and the feature export all read columns through this module.
"""

from __future__ import annotations

from typing import Any

#: Field-metadata key holding the version of the UDF that computed a column's values.
UDF_VERSION_KEY = "vw.udf_version"


def field_spec(table: Any, column: str) -> dict[str, str]:
    """The ``vw.*`` field metadata of an existing column (empty when absent)."""
    schema = table.schema
    if column not in schema.names:
        return {}
    meta = schema.field(column).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"vw.")}


def is_blob(field: Any) -> bool:
    """Whether a Lance field is a blob column (v1: ``lance-encoding:blob`` metadata; v2: the extension type)."""
    if (field.metadata or {}).get(b"lance-encoding:blob") == b"true":
        return True
    return str(getattr(field.type, "extension_name", "")).startswith("lance.blob")


def missing_filter(table: Any, column: str) -> str:
    """SQL filter of the rows of ``table`` whose ``column`` holds no value (failed or not computed).

    ``col IS NULL``, unless the column's field metadata says otherwise (``vw.missing``): geneva
    stores a failed struct cell as a struct of NULL fields, so struct columns name a field.
    """
    return field_spec(table, column).get("vw.missing") or f"{column} IS NULL"


def recent_errors(table: Any, column: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest error records of ``column`` as dicts (video row, exception, message)."""
    try:
        errors = table.get_errors(column_name=column)
    except Exception:  # noqa: BLE001 - no error store yet means no errors
        return []
    errors = sorted(errors, key=lambda e: e.timestamp, reverse=True)[:limit]
    return [
        {
            "row_address": e.row_address,
            "error_type": e.error_type,
            "message": e.error_message,
            "job_id": e.job_id,
            "time": e.timestamp.isoformat(),
        }
        for e in errors
    ]


def computed_columns(table: Any) -> list[str]:
    """Columns produced by a UDF (they carry ``vw.*`` field metadata)."""
    return [name for name in table.schema.names if field_spec(table, name)]


def errors_of(table: Any, column: str) -> list[Any]:
    """Every error record of ``column`` (empty when the table has no error store yet)."""
    try:
        return list(table.get_errors(column_name=column))
    except Exception:  # noqa: BLE001 - no error store yet means no errors
        return []


def failed_rows(table: Any, column: str, errors: list[Any] | None = None,
                columns: tuple[str, ...] = ("video_id",)) -> list[dict[str, Any]]:
    """Rows whose ``column`` is still NULL and has an error record (the newest one per row).

    Each dict holds ``columns`` of the row, its ``_rowaddr``, ``error_type``, ``error`` (the
    message) and ``time``. A row that failed and was later computed is not listed.
    """
    errors = errors_of(table, column) if errors is None else errors
    newest: dict[int, Any] = {}
    for e in errors:
        if e.row_address is not None and (e.row_address not in newest
                                           or e.timestamp > newest[e.row_address].timestamp):
            newest[e.row_address] = e
    if not newest:
        return []
    ds = table.to_lance()
    wanted = [c for c in columns if c != column]
    out: list[dict[str, Any]] = []
    addresses = sorted(newest)
    for i in range(0, len(addresses), 1000):
        chunk = ",".join(str(a) for a in addresses[i : i + 1000])
        got = ds.to_table(columns=[*wanted, column], with_row_address=True,
                          filter=f"_rowaddr IN ({chunk}) AND ({missing_filter(table, column)})")
        for row in got.select([*wanted, "_rowaddr"]).to_pylist():
            e = newest[row["_rowaddr"]]
            out.append(row | {"error_type": e.error_type, "error": e.error_message,
                              "time": e.timestamp.isoformat()})
    return out


def row_keys(table: Any, addresses: list[int], key: str) -> dict[int, Any]:
    """``key`` of the rows at ``addresses`` (row address -> value; addresses no longer in the table are left out)."""
    out: dict[int, Any] = {}
    wanted = sorted({a for a in addresses if a is not None})
    ds = table.to_lance()
    for i in range(0, len(wanted), 1000):
        chunk = ",".join(str(a) for a in wanted[i : i + 1000])
        got = ds.to_table(columns=[key], with_row_address=True, filter=f"_rowaddr IN ({chunk})")
        out.update(zip(got.column("_rowaddr").to_pylist(), got.column(key).to_pylist(), strict=True))
    return out
