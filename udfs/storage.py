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

Failures: the filesystems retry transient errors themselves (gcsfs retries HTTP 408, 429 and
500-504 and connection errors 6 times with exponential backoff, about 18 s in all; s3fs and
the HTTP filesystem have their own policies). What still fails after that surfaces as
:class:`StorageError` naming the URI (credentials redacted) and the HTTP status, both when a
remote file is opened and on every later read or seek; a missing object is a
``FileNotFoundError`` naming the URI.
"""

from __future__ import annotations

import os
from typing import IO, Any

import fsspec
from fsspec.core import split_protocol, url_to_fs

from udfs.errors import SettingError, VwError
from udfs.redact import install_log_redaction, redact

install_log_redaction()  # libraries log the URIs they open; keep credentials out of those lines

DEFAULT_BLOCK_SIZE = 16 * 2**20
BLOCK_SIZE_ENV = "BLOCK_SIZE"
_LOCAL_PROTOCOLS = frozenset({None, "file", "local"})
_GCS_PROTOCOLS = frozenset({"gs", "gcs"})
# fsspec's block cache (fsspec.caching.BlockCache): fixed-size blocks, least recently used out.
CACHE_TYPE = "blockcache"
# Blocks kept per open remote file: bounds its cache at MAX_BLOCKS * block_size bytes.
MAX_BLOCKS = 8


class StorageError(VwError, OSError):
    """Reading a remote object failed after the filesystem's own retries (message names the URI)."""


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a storage failure: the HTTP status and message when there is one."""
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    message = str(getattr(exc, "message", "") or exc).strip() or type(exc).__name__
    if isinstance(code, int) and 100 <= code <= 599:
        return redact(f"HTTP {code} from the storage service ({message.removesuffix(f', {code}')})")
    return redact(message)


def _storage_error(uri: str, doing: str, exc: BaseException) -> OSError:
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"no such file: {redact(uri)}")  # raised without its cause (credentials)
    return StorageError(f"{redact(uri)}: {doing} failed: {describe_error(exc)}")


class _RemoteReader:
    """A remote file whose read / seek failures are :class:`StorageError` naming the URI."""

    def __init__(self, handle: Any, uri: str) -> None:
        self._handle = handle
        self._uri = uri

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all when negative)."""
        try:
            return self._handle.read(size)
        except StorageError:
            raise
        except Exception as exc:
            raise _storage_error(self._uri, "reading", exc) from None  # the cause may quote credentials

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; returns the number of bytes read."""
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset`` (``whence`` as in :meth:`io.IOBase.seek`)."""
        try:
            return self._handle.seek(offset, whence)
        except Exception as exc:
            raise _storage_error(self._uri, "seeking", exc) from None

    def tell(self) -> int:
        """The current position."""
        return self._handle.tell()

    def seekable(self) -> bool:
        """Always True (fsspec files support random access)."""
        return True

    def readable(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Close the underlying file."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        """True once closed."""
        return bool(self._handle.closed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _RemoteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        raise SettingError(f"{BLOCK_SIZE_ENV} must be a number of bytes, got {raw!r}") from None
    if value <= 0:
        raise SettingError(f"{BLOCK_SIZE_ENV} must be positive, got {value}")
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
        StorageError: the object cannot be read (after the filesystem's retries); reads and
            seeks of the returned file raise it too.
        PermissionError: a local file that this process may not read.
    """
    uri = os.fspath(uri)
    if not is_remote(uri):
        try:
            return open(local_path(uri), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no such file: {uri}") from exc
        except PermissionError as exc:
            raise PermissionError(f"permission denied: cannot read {uri}") from exc
    fs, path = filesystem_for(uri)
    size = block_size if block_size is not None else _block_size_from_env()
    try:
        handle = fs.open(
            path, "rb", block_size=size, cache_type=CACHE_TYPE,
            cache_options={"maxblocks": MAX_BLOCKS},
        )
    except Exception as exc:
        raise _storage_error(uri, "opening", exc) from None  # the cause may quote credentials
    return _RemoteReader(handle, uri)  # type: ignore[return-value]
