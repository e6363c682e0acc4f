"""The tables of a warehouse connection: listing all of them, opening one with a clear error."""

from __future__ import annotations

from typing import Any

from udfs.errors import NotFoundError

_PAGE = 1000


def all_table_names(conn: Any) -> list[str]:
    """Every table name of the connection (the listing is paged: at most ``limit`` names per call)."""
    names: list[str] = []
    token: str | None = None
    while True:
        page = list(conn.table_names(page_token=token, limit=_PAGE))
        names.extend(page)
        if len(page) < _PAGE:
            return names
        token = page[-1]


def user_table_names(conn: Any) -> list[str]:
    """The warehouse's own tables, sorted (names starting with ``_`` are system tables)."""
    return sorted(n for n in all_table_names(conn) if not n.startswith("_"))


def open_existing(conn: Any, name: str) -> Any:
    """Open table ``name``; a LookupError naming the warehouse and its tables when it is missing."""
    names = all_table_names(conn)
    if name not in names:
        have = ", ".join(sorted(n for n in names if not n.startswith("_"))) or "none"
        raise NotFoundError(f"the warehouse at {conn.uri} has no table {name!r} (tables: {have})")
    return conn.open_table(name)


_OPEN: dict[tuple[str, str], Any] = {}


def open_cached(conn: Any, name: str) -> Any:
    """Table ``name``, reusing this process's open handle (its index caches stay warm between searches).

    A reused handle is moved to the latest version first, so writes made since are seen. A
    missing table raises LookupError as :func:`open_existing` does.
    """
    key = (str(conn.uri), name)
    table = _OPEN.get(key)
    if table is not None:
        try:
            table.checkout_latest()
            return table
        except Exception:  # noqa: BLE001 - the table was dropped or replaced: open it again below
            _OPEN.pop(key, None)
            _DATASETS.pop(id(table), None)
    table = open_existing(conn, name)
    _OPEN[key] = table
    return table


def forget(conn: Any, name: str) -> None:
    """Drop the cached handle of ``name`` (after the table was dropped or recreated)."""
    table = _OPEN.pop((str(conn.uri), name), None)
    if table is not None:
        _DATASETS.pop(id(table), None)


_DATASETS: dict[int, tuple[Any, int, Any]] = {}
_MAX_DATASETS = 64


def cached_dataset(table: Any) -> Any:
    """The Lance dataset of an open table handle, reused while the table version is unchanged.

    A Lance dataset object holds the index caches: reusing it keeps ANN searches warm (a fresh
    dataset reloads the index, tens of milliseconds). The cache holds the handle itself, so an
    entry can never be mistaken for another table's.
    """
    version = int(table.version)
    hit = _DATASETS.get(id(table))
    if hit is not None and hit[0] is table and hit[1] == version:
        return hit[2]
    ds = table.to_lance()
    if len(_DATASETS) >= _MAX_DATASETS:
        _DATASETS.pop(next(iter(_DATASETS)))
    _DATASETS[id(table)] = (table, version, ds)
    return ds
