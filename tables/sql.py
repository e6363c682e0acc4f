"""Read-only SQL over every table of the warehouse (DuckDB over the Lance datasets).

::

    from tables.sql import run_sql

    run_sql("SELECT label, model, count(*) AS n FROM events GROUP BY ALL ORDER BY n DESC")  # pyarrow.Table

Each table of the warehouse (``videos``, ``events``, ``windows``, ``frames``, ...) is registered
in an in-memory DuckDB under its own name as a Lance dataset: DuckDB scans it through Arrow,
pushing column selections and simple filters down to Lance, and streams it (aggregates over
tables larger than memory work). Joins across tables are plain SQL.

Lance's own SQL (``LanceDataset.sql``, DataFusion) queries one dataset at a time, so joins
between ``videos`` and ``events`` need an engine that sees several tables: DuckDB.

Read-only, and nothing outside the warehouse:

* exactly one statement, of type ``SELECT`` (``WITH``, ``FROM``-first, ``PIVOT``, ...) or
  ``EXPLAIN``; anything else (INSERT, UPDATE, DELETE, CREATE, DROP, COPY, ATTACH, ALTER, PRAGMA,
  SET, INSTALL, LOAD, EXPORT, ...) is refused before it runs;
* file-reading table functions (``read_csv``, ``read_parquet``, ``read_json``, ``glob``, ...)
  are refused by name;
* after the tables are registered the connection runs with ``enable_external_access = false``
  (no file system, no network, no extension loading) and ``lock_configuration = true`` (a query
  cannot turn it back on), and Python-variable replacement scans are off.

Errors from the engine come back as :class:`SqlError` with DuckDB's message and the query text.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from tables.catalog import user_table_names
from tables.connection import storage_options_from_env
from udfs.errors import VwError

ALLOWED_STATEMENTS = ("SELECT", "EXPLAIN")
#: Table functions that read files (or list them); refused by name with a clear message.
FILE_FUNCTIONS = re.compile(
    r"\b(read_\w+|glob|sniff_csv|parquet_\w+|\w+_scan|iceberg_\w+|delta_\w+|load_aws_credentials)\s*\(",
    re.IGNORECASE,
)
_STRINGS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)


class SqlError(VwError, ValueError):
    """A statement that was refused, or failed in the engine (message + the query text)."""


def _code_only(sql: str) -> str:
    """``sql`` with string literals, quoted identifiers and comments blanked out."""
    return _STRINGS_AND_COMMENTS.sub(lambda m: " " * len(m.group(0)), sql)


def check_read_only(sql: str) -> None:
    """Refuse anything but one SELECT / EXPLAIN statement without file-reading functions."""
    import duckdb

    if not sql or not sql.strip():
        raise SqlError("the SQL statement is empty")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise SqlError(f"{err}\nquery: {sql}") from err
    if len(statements) != 1:
        raise SqlError(f"give exactly one statement (got {len(statements)}); query: {sql}")
    kind = str(statements[0].type).rsplit(".", 1)[-1].upper()
    if kind not in ALLOWED_STATEMENTS:
        raise SqlError(
            f"refused: {kind} statements are not allowed; `vw sql` is read-only (SELECT / EXPLAIN only); "
            f"query: {sql}"
        )
    if m := FILE_FUNCTIONS.search(_code_only(sql)):
        raise SqlError(
            f"refused: {m.group(1)}() reads files; SQL here reads only the warehouse tables; query: {sql}"
        )


def _scan_dataset(ds: Any) -> Any:
    """``ds`` as a dataset DuckDB can scan with any filter.

    DuckDB pushes filters down as pyarrow expressions; Lance translates them through Substrait,
    which has no nested types, so a pushed-down predicate on a vector or list column
    (``video_embedding IS NULL``) fails. For such predicates the scan reads the needed columns
    from Lance unfiltered and pyarrow applies the predicate; every other predicate still goes to Lance.
    """
    import lance
    import pyarrow.dataset as pds

    nested = {f.name for f in ds.schema if pa.types.is_nested(f.type)}

    class _Dataset(lance.LanceDataset):
        def scanner(self, columns: list[str] | None = None, filter: Any = None, **kwargs: Any) -> Any:
            text = str(filter) if filter is not None else ""
            used = {n for n in nested if re.search(rf"\b{re.escape(n)}\b", text)}
            if not used:
                return super().scanner(columns=columns, filter=filter, **kwargs)
            wanted = list(columns) if columns is not None else list(self.schema.names)
            others = [n for n in self.schema.names if n not in nested and re.search(rf"\b{re.escape(n)}\b", text)]
            read = list(dict.fromkeys([*wanted, *used, *others]))
            reader = super().scanner(columns=read, **kwargs).to_reader()
            return pds.Scanner.from_batches(reader, columns=wanted, filter=filter)

    return _Dataset(ds.uri, version=ds.version, storage_options=storage_options_from_env() or None)


def sql_connection(conn: Any, tables: list[str] | None = None) -> Any:
    """A locked, read-only DuckDB connection with the warehouse tables registered by name."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET python_enable_replacements = false")
    for name in tables if tables is not None else user_table_names(conn):
        con.register(name, _scan_dataset(conn.open_table(name).to_lance()))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_sql(sql: str, db: Any = None, max_rows: int | None = None) -> pa.Table:
    """Run one read-only statement over the warehouse; the result as a pyarrow Table.

    ``max_rows`` caps the rows fetched (the statement itself is not rewritten).
    """
    from tables.search import connection

    check_read_only(sql)
    import duckdb

    con = sql_connection(connection(db))
    try:
        rel = con.sql(sql)
        if rel is None:
            return pa.table({})
        reader = rel.fetch_record_batch(rows_per_batch=65536) if max_rows is None else rel.limit(max_rows).arrow()
        table = reader.read_all() if hasattr(reader, "read_all") else reader
        return table
    except duckdb.Error as err:
        raise SqlError(f"{err}\nquery: {sql}") from err
    finally:
        con.close()
