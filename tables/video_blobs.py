"""Video bytes stored in the ``videos`` table: the nullable Lance blob column ``video``.

``vw ingest --store-bytes`` copies each video's bytes into ``video`` so the warehouse can be the
only copy. The column uses Lance's blob encoding (``lance.blob.v2``, which needs data storage
format 2.2, the default of tables created by this warehouse): values are stored out of line and
read back lazily as file objects (``take_blobs``), so a reader fetches only the byte ranges a
decoder asks for.

Consistency rule
    * The column is added (all NULL) the first time bytes are stored; tables that never store
      bytes do not get it.
    * ``--store-bytes`` always replaces the stored bytes with the file's current bytes, like the
      probed facts (``size_bytes``) that ingest always replaces.
    * A re-ingest without ``--store-bytes`` keeps the stored bytes when the row's ``uri`` and
      ``size_bytes`` are unchanged, and clears them (NULL) when either changed, so the table
      never serves the bytes of another file than the one ``uri`` names. Readers then fall back
      to ``uri``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from tables.commits import retry_on_conflict
from udfs.errors import VwError

#: Name of the blob column holding video bytes.
VIDEO_BLOB_COLUMN = "video"
#: Lance data storage versions that can hold the blob v2 encoding.
_BLOB_STORAGE_VERSIONS = ("2.2", "2.3", "2.4")
#: Bytes of video data per merge-insert (bounds the memory of one write).
WRITE_CHUNK_BYTES = 256 * 2**20


class BlobColumnError(VwError, ValueError):
    """The table cannot hold a blob column (storage format too old)."""


def has_video_column(table: Any) -> bool:
    """True when ``table`` has the ``video`` blob column."""
    return VIDEO_BLOB_COLUMN in set(table.schema.names)


def ensure_video_column(table: Any) -> bool:
    """Add the nullable ``video`` blob column (all NULL) when missing; True when it was added.

    Raises:
        BlobColumnError: the table's data storage format predates blob v2 (format 2.2).
    """
    def add() -> bool:
        if has_video_column(table):
            return False
        import lance.blob

        ds = table.to_lance()
        version = str(ds.data_storage_version)
        if version not in _BLOB_STORAGE_VERSIONS:
            raise BlobColumnError(
                f"table {table.name!r} uses Lance data storage format {version}; storing video bytes needs "
                f"a blob v2 column, i.e. format 2.2 or later (recreate the table to store bytes)"
            )
        ds.add_columns(lance.blob.blob_field(VIDEO_BLOB_COLUMN, nullable=True))
        table.checkout_latest()
        return True

    return retry_on_conflict(add, table, f"adding the {VIDEO_BLOB_COLUMN!r} blob column")


def read_bytes(uri: str) -> bytes:
    """The whole content of ``uri`` (local path or fsspec URI)."""
    from udfs import storage

    with storage.open_binary(uri) as fh:
        return fh.read()


def write_video_bytes(table: Any, items: Iterable[tuple[str, bytes | None]]) -> int:
    """Set ``video`` of the rows ``video_id`` to the given bytes (``None`` clears); returns rows written.

    Rows are written with ``merge_insert("video_id")`` of the key and the blob column only, in
    chunks of about :data:`WRITE_CHUNK_BYTES`; other columns are untouched.
    """
    import lance.blob

    ensure_video_column(table)
    written = 0
    chunk: list[tuple[str, bytes | None]] = []
    size = 0
    for video_id, data in items:
        chunk.append((video_id, data))
        size += len(data or b"")
        if size >= WRITE_CHUNK_BYTES:
            written += _merge(table, chunk, lance.blob)
            chunk, size = [], 0
    if chunk:
        written += _merge(table, chunk, lance.blob)
    return written


def _merge(table: Any, chunk: list[tuple[str, bytes | None]], blob: Any) -> int:
    data = pa.table({
        "video_id": pa.array([vid for vid, _ in chunk], pa.string()),
        VIDEO_BLOB_COLUMN: blob.blob_array([value for _, value in chunk]),
    })
    result = table.merge_insert("video_id").when_matched_update_all().execute(data)
    return int(result.num_updated_rows)


def stale_ids(stored: dict[str, dict], rows: Sequence[dict]) -> list[str]:
    """Ids whose stored ``uri`` or ``size_bytes`` differ from the rows being written."""
    out = []
    for row in rows:
        old = stored.get(row["video_id"])
        if old and (old.get("uri") != row.get("uri") or old.get("size_bytes") != row.get("size_bytes")):
            out.append(row["video_id"])
    return out
