"""The warehouse connection: an embedded local directory by default, or a ``gs://`` / ``s3://`` URI."""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING

from tables.names import DB_ENV, DEFAULT_DB, VIDEOS
from tables.schema import VIDEOS_SCHEMA
from udfs.errors import NotFoundError, SettingError

if TYPE_CHECKING:
    import geneva

STORAGE_OPTIONS_ENV = "VW_STORAGE_OPTIONS"

#: Stable row ids let chunker views (windows) refresh incrementally; they cannot be added later.
STABLE_ROW_IDS = {"new_table_enable_stable_row_ids": "true"}


_RUST_LOCATION = re.compile(r"(,\s*/\S+\.rs:\d+:\d+\s*$)|(,?\s*location: Location \{.*$)", re.DOTALL)


def lance_error_text(err: BaseException, limit: int = 500) -> str:
    """The message of a Lance / object-store error without the Rust source location (and its
    debug dump) that ends it, cut to ``limit`` characters."""
    text = _RUST_LOCATION.sub("", str(err)).strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def db_uri(uri: str | None = None) -> str:
    """The warehouse location: ``uri``, else ``$VW_DB``, else ``./warehouse`` (made absolute)."""
    uri = uri or os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri


def storage_options_from_env() -> dict[str, str]:
    """Object-store options for the tables from ``$VW_STORAGE_OPTIONS`` (a JSON object).

    Lance reads ``gs://`` / ``s3://`` with the usual credentials of the environment
    (``GOOGLE_APPLICATION_CREDENTIALS``, ``AWS_*``); extra settings such as an S3 endpoint go
    here, e.g. ``{"aws_endpoint": "http://127.0.0.1:9000", "allow_http": "true"}``.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SettingError(f"{STORAGE_OPTIONS_ENV} is not valid JSON: {err}") from err
    if not isinstance(opts, dict):
        raise SettingError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of strings")
    return {str(k): str(v) for k, v in opts.items()}


def connect(uri: str | None = None, create: bool = True) -> geneva.db.Connection:
    """Open the warehouse database with geneva; a missing local folder is created, or with
    ``create=False`` (read commands) is a :class:`~udfs.errors.NotFoundError` naming it."""
    import geneva

    target = db_uri(uri)
    if "://" not in target:
        if not create and not os.path.isdir(target):
            source = "--db" if uri else ("$VW_DB" if os.environ.get("VW_DB") else "the default ./warehouse")
            raise NotFoundError(f"no warehouse at {target} (from {source}): check the path, or create one with "
                                "`vw ingest`")
        os.makedirs(target, exist_ok=True)
    opts = storage_options_from_env()
    if opts:
        return geneva.connect(target, storage_options=opts)
    return geneva.connect(target)


def table_exists(conn: geneva.db.Connection, name: str) -> bool:
    """True when ``name`` is a table of the warehouse."""
    return name in set(conn.table_names())


def open_videos(conn: geneva.db.Connection, create: bool = True) -> geneva.table.Table:
    """Open the ``videos`` table, creating it empty (with stable row ids) when missing."""
    if table_exists(conn, VIDEOS):
        return conn.open_table(VIDEOS)
    if not create:
        raise NotFoundError(
            f"the warehouse at {conn.uri} has no '{VIDEOS}' table yet: run `vw ingest PATHS...` first"
        )
    return conn.create_table(
        VIDEOS, schema=VIDEOS_SCHEMA, storage_options=dict(STABLE_ROW_IDS)
    )
