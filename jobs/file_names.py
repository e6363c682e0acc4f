"""File names made from data (video ids, scenario names): never a path, never hidden, never colliding.

A value made only of ``A-Z a-z 0-9 _ - .`` (not starting with a dot) is used as is, so
``features/1008593641.npy`` keeps working; any other character is percent-encoded (UTF-8 bytes,
``%`` included), which keeps names injective and free of ``/``, ``\\``, NUL and ``..``; a name longer
than 200 bytes is cut and suffixed with a hash of the value.
"""

from __future__ import annotations

import hashlib
import re

_PLAIN = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_NAME_BYTES = 200


def _encoded(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def safe_name(value: str) -> str:
    """A file name for ``value`` (without extension): injective, never a path, never hidden."""
    if _PLAIN.fullmatch(value) and not value.startswith("."):
        name = value
    else:
        name = "".join(ch if _PLAIN.fullmatch(ch) and ch != "." else _encoded(ch) for ch in value)
        if not name:
            name = "%"  # the empty value; no other value encodes to a lone "%"
    if len(name.encode()) > _MAX_NAME_BYTES:
        digest = hashlib.sha1(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = name[: _MAX_NAME_BYTES - 17] + "~" + digest
    return name
