"""SQL filter text for Lance scans and searches: quoting, ``IN`` lists, combining predicates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from udfs.errors import VwError


class FilterError(VwError, ValueError):
    """A filter that the table cannot evaluate (names the filter and the engine's message)."""


def sql_quote(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def literal(value: Any) -> str:
    """``value`` as a SQL literal (strings quoted, numbers as they are)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return sql_quote(str(value))


def in_list(column: str, values: Sequence[Any]) -> str:
    """``column IN (v1, v2, ...)``; ``false`` for an empty list."""
    if not values:
        return "false"
    return f"{column} IN ({', '.join(literal(v) for v in values)})"


def combine(*parts: str | None) -> str | None:
    """The conjunction of the non-empty predicates (each parenthesised), or None."""
    present = [p.strip() for p in parts if p and p.strip()]
    if not present:
        return None
    return " AND ".join(f"({p})" for p in present)


def count_matching(table: Any, where: str | None) -> int:
    """Rows of ``table`` matching ``where`` (all rows when None); a bad filter raises :class:`FilterError`."""
    try:
        return int(table.count_rows(where) if where else table.count_rows())
    except Exception as err:  # noqa: BLE001 - surfaced with the filter text
        raise FilterError(f"invalid filter {where!r}: {err}") from err
