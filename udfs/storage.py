"""Opening any URI (local path, ``file://``, ``gs://``, ``s3://``, ``memory://``, ``https://``).

Local paths are opened with plain :func:`open`. Everything else goes through fsspec with a
block cache (``cache_type="block"``), which suits the random access pattern of a video demuxer:
the container index is read once, then each seek touches only the blocks it needs.

Environment:

``BLOCK_SIZE``
    Bytes per fsspec read block for remote files (default 16 MiB).
``STORAGE_EMULATOR_HOST``
    When set (a local GCS emulator) and no credentials are configured, ``gs://`` URIs are
    opened anonymously.
"""

from __future__ import annotations

import os
from typing import IO, Any

import fsspec
from fsspec.core import split_protocol, url_to_fs

DEFAULT_BLOCK_SIZE = 16 * 2**20
BLOCK_SIZE_ENV = "BLOCK_SIZE"
_LOCAL_PROTOCOLS = frozenset({None, "file", "local"})
_GCS_PROTOCOLS = frozenset({"gs", "gcs"})
# fsspec's block cache (fsspec.caching.BlockCache): fixed-size blocks, least recently used out.
CACHE_TYPE = "blockcache"
# Blocks kept per open remote file: bounds its cache at MAX_BLOCKS * block_size bytes.
MAX_BLOCKS = 8


def is_remote(uri: str) -> bool:
    """True when ``uri`` names a non-local filesystem (a scheme other than ``file://``)."""
    protocol, _ = split_protocol(os.fspath(uri))
    return protocol not in _LOCAL_PROTOCOLS


def block_size() -> int:
    """The remote read block size in bytes: env ``BLOCK_SIZE``, default 16 MiB."""
    return _block_size_from_env()


def _block_size_from_env() -> int:
    raw = os.environ.get(BLOCK_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_BLOCK_SIZE
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{BLOCK_SIZE_ENV} must be a number of bytes, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{BLOCK_SIZE_ENV} must be positive, got {value}")
    return value


def local_path(uri: str) -> str:
    """The filesystem path of a local ``uri`` (strips ``file://``)."""
    protocol, path = split_protocol(os.fspath(uri))
    if protocol not in _LOCAL_PROTOCOLS:
        raise ValueError(f"not a local path: {uri}")
    return path


def _storage_options(uri: str) -> dict[str, Any]:
    protocol, _ = split_protocol(uri)
    if protocol in _GCS_PROTOCOLS and _use_anonymous_gcs():
        return {"token": "anon"}
    return {}


def _use_anonymous_gcs() -> bool:
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return False
    return not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")


def filesystem_for(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem serving ``uri`` and the path inside it (for listing and globbing)."""
    uri = os.fspath(uri)
    return url_to_fs(uri, **_storage_options(uri))


def open_binary(uri: str, block_size: int | None = None) -> IO[bytes]:
    """Open ``uri`` for binary reading; use the result as a context manager.

    Local paths (and ``file://``) are opened with :func:`open`; remote URIs with fsspec and a
    block cache of ``block_size`` bytes per block (default :func:`block_size`).

    Raises:
        FileNotFoundError: the object does not exist; the message contains ``uri``.
    """
    uri = os.fspath(uri)
    if not is_remote(uri):
        try:
            return open(local_path(uri), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no such file: {uri}") from exc
    fs, path = filesystem_for(uri)
    size = block_size if block_size is not None else _block_size_from_env()
    try:
        return fs.open(
            path, "rb", block_size=size, cache_type=CACHE_TYPE,
            cache_options={"maxblocks": MAX_BLOCKS},
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no such file: {uri}") from exc
