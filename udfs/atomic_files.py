"""Files written whole or not at all, readable as the user's umask allows.

A file appears under its name only once it is complete (written to a temporary file in the same
folder, flushed to disk, then renamed), so a reader or a crash never sees half of it. The
temporary file's private mode (0600) is not kept: the file gets ``0666 & ~umask``, as a file made
with ``open()`` would, so a training job under another user or in a container can read it.
A missing parent folder is created; one that cannot be is a :class:`OutputPathError` naming it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from udfs.errors import VwError


class OutputPathError(VwError, OSError):
    """An output file's folder cannot be created, or the file cannot be written there."""


def current_umask() -> int:
    """This process's umask (read from /proc where it can be, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ensure_parent(path: Path) -> None:
    """Create ``path``'s folder if needed; :class:`OutputPathError` saying why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"cannot create the folder {path.parent} for {path.name}: "
                              f"{err.strerror or err}") from None


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], Any], make_parent: bool = True) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically.

    OS errors propagate as they are (callers that write many files say how far they got)."""
    if make_parent:
        ensure_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
