"""The project's folder in the user's cache, and arrays kept there under the description of what computed them.

``$VW_CACHE_DIR``, else ``$XDG_CACHE_HOME/video-warehouse``, else ``~/.cache/video-warehouse``.
Nothing in it is needed: deleting the folder only makes the next command compute again.

:func:`cached_array` keeps a small computed array (e.g. the scenario descriptions embedded by a text
model) in ``<cache>/<kind>/<sha256 of the key>.npz``, with the key itself beside the values: a
file whose key differs, or that cannot be read, is computed again and replaced. The key must name
everything the values depend on (the code's version, the model and a fingerprint of its files, the
inputs); a caller that cannot say that must not use the cache. Files are written to a temporary
name and renamed (:func:`udfs.atomic_files.atomic_write`), so concurrent commands never read
half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udfs.atomic_files import atomic_write

if TYPE_CHECKING:
    import numpy as np

CACHE_ENV = "VW_CACHE_DIR"
_LOG = logging.getLogger(__name__)


def user_cache_dir(*parts: str) -> Path:
    """``<the project's cache folder>/<parts...>`` (not created)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        root = Path(configured).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video-warehouse"
    return root.joinpath(*parts)


def key_text(key: Mapping[str, Any]) -> str:
    """The canonical JSON of ``key`` (sorted keys, no spaces): what is hashed and stored."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_path(kind: str, key: Mapping[str, Any]) -> Path:
    """Where the values of ``key`` are kept."""
    return user_cache_dir(kind) / f"{hashlib.sha256(key_text(key).encode()).hexdigest()}.npz"


def _read(path: Path, text: str) -> np.ndarray | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != text:
                _LOG.warning("cache file %s holds another key: computing again", path)
                return None
            return np.array(stored["value"])
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - an unreadable cache file is recomputed, and said so
        _LOG.warning("cache file %s cannot be read (%s): computing again", path, err)
        return None


def _write(path: Path, text: str, value: np.ndarray) -> None:
    import numpy as np

    try:
        atomic_write(path, lambda fh: np.savez(fh, key=np.array(text), value=value))
    except OSError as err:
        _LOG.warning("could not keep computed values in %s (%s): the next command computes them again", path, err)


def cached_array(kind: str, key: Mapping[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array kept for ``key`` under ``kind``, else ``compute()``'s, kept for next time.

    A cache that cannot be written (read-only home, full disk) costs only the recomputation: the
    value is returned and a warning names the file.
    """
    import numpy as np

    text = key_text(key)
    path = cache_path(kind, key)
    found = _read(path, text)
    if found is not None:
        return found
    value = np.asarray(compute())
    _write(path, text, value)
    return value
