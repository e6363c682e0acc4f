"""Keep freed memory in the process heap while an analysis churns through large arrays.

NumPy allocates its arrays with the C library's ``malloc``. glibc serves every block above 32 MB
(millions of events make many) with a fresh ``mmap`` and returns it to the system on ``free``, so
each new temporary array is faulted in page by page again: in the ensemble analysis that cost
more system time than the computing did. :func:`retained_heap` makes ``malloc`` serve large
blocks from the heap and keep what is freed for the next block, and makes Arrow allocate with
``malloc`` too (its default pool returns freed memory to the system as well), so NumPy and Arrow
reuse one another's freed memory. On leaving, the free memory goes back to the system
(``malloc_trim``), Arrow's pool is restored and ``malloc`` gets its default limits back (but
not glibc's dynamic mmap threshold, which any ``mallopt`` of these settings turns off for the
rest of the process). It changes the whole process while it is active; on C libraries other
than glibc it changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from udfs.process_setting import ProcessSetting

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_KEEP_BYTES = 1 << 30

_arrow_pool: pa.MemoryPool | None = None  # Arrow's pool before the outermost block


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # only glibc has gnu_get_libc_version; mallopt and malloc_trim are what is used
    return libc if all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")) else None


_LIBC = _glibc()


def _retain() -> None:
    global _arrow_pool
    assert _LIBC is not None
    _LIBC.mallopt(_M_MMAP_MAX, 0)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
    _arrow_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    log.debug("malloc keeps freed memory in the heap; Arrow allocates with malloc")


def _release() -> None:
    global _arrow_pool
    assert _LIBC is not None
    if _arrow_pool is not None:
        pa.set_memory_pool(_arrow_pool)
        _arrow_pool = None
    _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    _LIBC.malloc_trim(0)


_SETTING = ProcessSetting(_retain, _release)


@contextmanager
def retained_heap() -> Iterator[None]:
    """Within the block, ``malloc`` keeps freed memory for reuse instead of unmapping it (see
    the module docstring); nested and concurrent uses share one setting."""
    if _LIBC is None:
        yield
        return
    with _SETTING.held():
        yield


def heap_retained() -> bool:
    """Whether a :func:`retained_heap` block is active (always False without glibc)."""
    return _SETTING.active
