"""How a benchmark hands its result over: one JSON document on stdout, and the same in a file when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(report: dict[str, Any], out: Path | None = None) -> None:
    """Print ``report`` as indented JSON (the only thing on stdout) and write it to ``out`` too."""
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
