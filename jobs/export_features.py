"""`vw export-features`: one ``.npy`` per video from a per-frame column, for scripts that read files.

The layout is what feature-preloading training scripts read today::

    OUT/<video_id>.npy        float32 [num_frames, D], equal to the column's value
    OUT/failed_videos.json    [{"video_id", "uri", "error_type", "error"}, ...]
    OUT/index.json            {"column", "model", "fps", "files": {video_id: file name}}

File names: a video id made only of ``A-Z a-z 0-9 _ - .`` (not starting with a dot) is used as
is, so ``features/1008593641.npy`` keeps working; any other character is percent-encoded
(UTF-8 bytes, ``%`` included), which keeps names injective and inside ``OUT``; a name longer
than 200 bytes is cut and suffixed with a hash of the id. ``index.json`` maps ids to names.

Every file is written to a temporary name in ``OUT`` and renamed into place, so a reader sees
the old file or the new one, never a partial one; a failure (disk full, ...) removes the
temporary file and leaves the earlier files untouched.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.file_names import safe_name
from tables.column_state import failed_rows, field_spec
from udfs.arrays import steps_from_arrow
from udfs.atomic_files import atomic_write
from udfs.errors import VwError

FAILED_FILE = "failed_videos.json"
INDEX_FILE = "index.json"
_READ_BATCH = 256


class ExportError(VwError, RuntimeError):
    """The export cannot run (unknown column, not a per-frame column, bad filter)."""


@dataclass
class ExportReport:
    """What one export wrote."""

    written: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    not_computed: list[str] = field(default_factory=list)
    out: str = ""


def _write(path: Path, data: bytes, report: ExportReport) -> None:
    """:func:`atomic_write`, with a failure (disk full, read-only folder) as an :class:`ExportError`."""
    try:
        atomic_write(path, data)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ExportError(
            f"cannot write {path}: {reason}; stopped after {report.written} files (each complete; "
            "files of earlier exports that were not rewritten are unchanged)"
        ) from err


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _check_column(table: Any, column: str) -> dict[str, str]:
    if column not in table.schema.names:
        raise ExportError(f"table has no column {column!r}; columns: {', '.join(table.schema.names)}")
    typ = table.schema.field(column).type
    import pyarrow as pa

    if not (pa.types.is_list(typ) and pa.types.is_fixed_size_list(typ.value_type)):
        raise ExportError(f"column {column!r} is {typ}, not a per-frame vector column (list of vectors)")
    return field_spec(table, column)


def export_features(
    table: Any,
    column: str,
    out: str | os.PathLike[str],
    where: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write ``out/<video_id>.npy`` for every row of ``table`` (matching ``where``) with a value.

    Rows whose computation failed are listed in ``failed_videos.json`` with their error; rows
    not computed yet are listed there too (error ``not computed``), so a training script that
    checks that file never looks for a missing ``.npy``.
    """
    meta = _check_column(table, column)
    try:
        total = table.count_rows(where) if where else table.count_rows()
    except Exception as err:  # noqa: BLE001 - surfaced as a clear message
        raise ExportError(f"invalid --where {where!r}: {err}") from err
    target = Path(out)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot create the output folder {target}: {err.strerror or err}") from None
    report = ExportReport(out=str(target))
    names: dict[str, str] = {}
    failed = {r["video_id"]: r for r in failed_rows(table, column, columns=("video_id", "uri"))}
    done = 0
    batches = table.to_lance().to_batches(columns=["video_id", "uri", column], filter=where,
                                          batch_size=_READ_BATCH)
    for batch in batches:
        ids = batch.column("video_id").to_pylist()
        uris = batch.column("uri").to_pylist()
        for vid, uri, value in zip(ids, uris, steps_from_arrow(batch.column(column)), strict=True):
            done += 1
            if value is None:
                report.failed.append(failed.get(vid) or {"video_id": vid, "uri": uri, "error_type": "NotComputed",
                                                         "error": f"not computed (run `vw backfill {column}`)"})
                if vid not in failed:
                    report.not_computed.append(vid)
                continue
            name = safe_name(vid)
            _write(target / f"{name}.npy", _npy_bytes(value), report)
            names[vid] = f"{name}.npy"
            report.written += 1
        if progress:
            progress(done, total)
    for entry in report.failed:
        entry.pop("time", None)
        entry.pop("_rowaddr", None)
    _write(target / FAILED_FILE, json.dumps(report.failed, indent=2, ensure_ascii=False).encode(), report)
    index = {"column": column, "model": meta.get("vw.name"), "profile": meta.get("vw.profile"),
             "random_weights": meta.get("vw.random_weights") == "true", "fps": meta.get("vw.fps"),
             "files": names}
    _write(target / INDEX_FILE, json.dumps(index, indent=2, ensure_ascii=False).encode(), report)
    return report
