"""A local cache of whole remote video objects with a hard size limit (shared by processes).

The cache is a folder of complete objects (``<sha1 of the URI>.bin``) plus a lock file. Every
change happens under an exclusive ``flock`` on ``.lock`` (processes and threads alike), and the
folder's size is the sum of its files' sizes:

* an object is only admitted when it fits: room is made by deleting the least recently used
  complete objects that nobody is reading; if it still does not fit (the object is larger than
  the limit, or the rest is in use) :meth:`ByteCache.open` returns ``None`` and the caller
  streams the object instead;
* the download goes to a ``.part`` file whose full size is allocated before the first byte is
  written (``posix_fallocate``), so space in flight is counted from the start;
* a reader holds a shared ``flock`` on the object's file while it reads, and eviction only
  deletes files it can lock exclusively, so the blocks of an unlinked-but-open file never
  exist outside the accounting.

Hence the total size of the folder never exceeds ``limit_bytes``, whatever the number of objects,
readers or processes. ``.part`` files left by a killed process are removed when the next cache
object is created on the folder (only those no live process holds).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from udfs.errors import SettingError

_LOCK = ".lock"
_OBJ = ".bin"
_PART = ".part"
#: Bytes per range request when downloading an object.
CHUNK_BYTES = 8 * 2**20


class ByteCache:
    """Whole-object cache in ``directory`` holding at most ``limit_bytes`` bytes of files."""

    def __init__(self, directory: str | os.PathLike[str], limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise SettingError(f"the cache limit must be >= 0 bytes, got {limit_bytes}")
        self.directory = os.fspath(directory)
        self.limit_bytes = int(limit_bytes)
        os.makedirs(self.directory, exist_ok=True)
        with self._locked():
            self._drop_stale_parts()

    # -- accounting ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.directory, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _entries(self) -> list[os.DirEntry[str]]:
        return [e for e in os.scandir(self.directory) if e.is_file() and e.name != _LOCK]

    def used_bytes(self) -> int:
        """Bytes currently held by the cache folder (complete objects and downloads in flight)."""
        return sum(e.stat().st_size for e in self._entries())

    def _drop_stale_parts(self) -> None:
        for entry in self._entries():
            if entry.name.endswith(_PART):
                _try_exclusive(entry.path, unlink=True)

    def _make_room(self, size: int) -> bool:
        """Evict least recently used idle objects until ``size`` more bytes fit (lock held)."""
        entries = self._entries()
        used = sum(e.stat().st_size for e in entries)
        if used + size <= self.limit_bytes:
            return True
        candidates = sorted((e for e in entries if e.name.endswith(_OBJ)), key=lambda e: e.stat().st_mtime)
        for entry in candidates:
            freed = entry.stat().st_size
            if _try_exclusive(entry.path, unlink=True):
                used -= freed
                if used + size <= self.limit_bytes:
                    return True
        return False

    # -- reading ------------------------------------------------------------------------------

    def path_for(self, key: str) -> str:
        """The cache file of ``key`` (a URI)."""
        return os.path.join(self.directory, hashlib.sha1(key.encode()).hexdigest() + _OBJ)

    @contextmanager
    def open(self, key: str, size: int, read_range: Callable[[int, int], bytes]) -> Iterator[str | None]:
        """A local path holding the object ``key`` of ``size`` bytes, pinned while the block runs.

        On a miss the object is downloaded into the cache with ``read_range(start, end)`` calls
        (bytes ``[start, end)``; one request of at most :data:`CHUNK_BYTES` each). Yields ``None``
        when the object cannot be cached (larger than the limit, or the room is taken by objects
        being read): the caller then reads it from its source.

        Raises:
            OSError: the download failed or returned another size than ``size`` (nothing is
                left in the cache).
        """
        path = self.path_for(key)
        fd = self._pin_existing(path)
        if fd is None:
            fd = self._download(path, size, read_range)
        if fd is None:
            yield None
            return
        try:
            yield path
        finally:
            os.close(fd)

    def _pin_existing(self, path: str) -> int | None:
        with self._locked():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.utime(path)  # most recently used
            return fd

    def _download(self, path: str, size: int, read_range: Callable[[int, int], bytes]) -> int | None:
        if size > self.limit_bytes:
            return None
        with self._locked():
            if not self._make_room(size):
                return None
            part = f"{path}.{os.getpid()}.{threading.get_ident():x}{_PART}"
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if size:
                os.posix_fallocate(fd, 0, size)
        try:
            _copy(read_range, fd, size)
        except BaseException:
            with self._locked():
                os.unlink(part)
            os.close(fd)
            raise
        with self._locked():
            if os.path.exists(path):  # downloaded meanwhile by another reader: keep that copy
                os.unlink(part)
                os.close(fd)
                fd = os.open(path, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_SH)
            else:
                os.rename(part, path)
        return fd


def _copy(read_range: Callable[[int, int], bytes], fd: int, size: int) -> None:
    """Copy bytes ``[0, size)`` into ``fd``. The last request asks for one byte more, so an object
    that is longer or shorter than ``size`` (changed since it was listed) raises ``OSError``."""
    for start in range(0, max(size, 1), CHUNK_BYTES):
        end = min(size, start + CHUNK_BYTES)
        chunk = read_range(start, end + 1 if end == size else end)
        if len(chunk) != end - start:
            raise OSError(f"expected {end - start} bytes at offset {start}, read {len(chunk)}: "
                          f"the object is not {size} bytes long (changed?)")
        os.pwrite(fd, chunk, start)


def _try_exclusive(path: str, unlink: bool = False) -> bool:
    """Delete-safety check: True when nobody holds ``path`` (then unlinked when ``unlink``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if unlink:
            os.unlink(path)
        return True
    finally:
        os.close(fd)
