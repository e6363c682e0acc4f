"""A change to the whole process, held while any block that asks for it is open."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ProcessSetting:
    """Applies a process-wide change when the first :meth:`held` block opens and undoes it when the
    last one closes; blocks may nest and may be opened from several threads at once."""

    def __init__(self, apply: Callable[[], None], restore: Callable[[], None]) -> None:
        self._apply = apply
        self._restore = restore
        self._lock = threading.Lock()
        self._depth = 0

    @property
    def active(self) -> bool:
        """Whether a block is open."""
        return self._depth > 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """The change is in effect inside the block."""
        with self._lock:
            if self._depth == 0:
                self._apply()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore()
