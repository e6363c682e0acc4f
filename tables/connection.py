"""The warehouse connection: an embedded local directory by default, or a ``gs://`` / ``s3://`` URI."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tables.names import DB_ENV, DEFAULT_DB, VIDEOS
from tables.schema import VIDEOS_SCHEMA

if TYPE_CHECKING:
    import geneva

#: Stable row ids let chunker views (windows) refresh incrementally; they cannot be added later.
STABLE_ROW_IDS = {"new_table_enable_stable_row_ids": "true"}


def db_uri(uri: str | None = None) -> str:
    """The warehouse location: ``uri``, else ``$VW_DB``, else ``./warehouse`` (made absolute)."""
    uri = uri or os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri


def storage_options_from_env() -> dict[str, str]:
    """Object-store options taken from the environment (emulator endpoints for tests, etc.)."""
    opts: dict[str, str] = {}
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        opts["google_storage_url"] = emulator
        opts["allow_http"] = "true"
        opts.setdefault("google_skip_signature", "true")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            opts["allow_http"] = "true"
    return opts


def connect(uri: str | None = None) -> geneva.db.Connection:
    """Open (creating if needed) the warehouse database with geneva."""
    import geneva

    target = db_uri(uri)
    if "://" not in target:
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
        raise LookupError(
            f"the warehouse at {conn.uri} has no '{VIDEOS}' table yet: run `vw ingest PATHS...` first"
        )
    return conn.create_table(
        VIDEOS, schema=VIDEOS_SCHEMA, storage_options=dict(STABLE_ROW_IDS)
    )
