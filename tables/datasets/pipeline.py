"""``vw ingest --format NAME PATH``: a dataset's annotation files -> ``videos`` (and ``events``).

Steps, in order:

1. the format's adapter reads ``PATH`` (malformed records become failures naming the file and
   the record's position; the others go on);
2. ``--limit N`` keeps the N records with the smallest id hash for ``--seed`` (chosen before
   looking for video files, so the subset does not depend on what has been downloaded);
3. each record's video file is looked up under ``--videos-root`` (default: the folder holding
   ``PATH``, or ``PATH`` itself when it is a folder) following the format's naming rule; a
   missing file is one failure naming the record and the expected path, and the record is
   skipped;
4. splits are assigned (:mod:`tables.datasets.split`);
5. one :func:`tables.ingest.ingest` call probes and merges the rows (keyed on ``video_id``:
   re-ingesting never duplicates);
6. ground-truth events (SoccerNet) of the rows now in the table replace that scope's earlier
   ground truth in one commit.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from tables.datasets import llava_video, msrvtt, panda70m, soccernet, vatex, webvid
from tables.datasets.records import DatasetRecord, ReadResult, has_scheme, parent_of
from tables.datasets.split import assign_split, check_ratio, limit_keys
from tables.events import GROUND_TRUTH, open_events, scope_filter, write_events
from tables.ingest import (
    IngestFailure,
    IngestReport,
    canonical_uri,
    ingest,
    register_without_video,
    stored_video_ids,
)
from udfs.errors import SettingError

#: Format name -> adapter module (each has ``SOURCE``, ``NAMING`` and ``read(path, videos_root)``;
#: ``GROUND_TRUTH_EVENTS = True`` when its records carry the complete ground truth of their videos).
FORMATS: dict[str, ModuleType] = {
    "msrvtt": msrvtt,
    "vatex": vatex,
    "webvid": webvid,
    "panda70m": panda70m,
    "llava-video-178k": llava_video,
    "soccernet": soccernet,
}


@dataclass
class DatasetOptions:
    """How to ingest a dataset (the ``vw ingest --format`` options)."""

    videos_root: str | None = None
    limit: int | None = None
    validation_ratio: float = 0.1
    seed: int = 0
    labels_only: bool = False  # register rows and ground truth without looking for video files


@dataclass
class DatasetReport:
    """What one :func:`ingest_dataset` call did."""

    format: str
    records: int
    selected: int
    missing: int
    ingest: IngestReport
    events: int = 0
    failures: list[IngestFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures


def adapter(fmt: str) -> ModuleType:
    """The adapter module of format ``fmt``; ``ValueError`` naming the known formats otherwise."""
    if fmt not in FORMATS:
        raise SettingError(f"unknown dataset format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def default_videos_root(path: str) -> str:
    """Where videos are looked for when ``--videos-root`` is not given."""
    return path.rstrip("/") if _is_folder(path) else parent_of(path)


class FileIndex:
    """Which files exist, listing each folder once (one request per folder on object stores)."""

    def __init__(self) -> None:
        self._folders: dict[str, set[str]] = {}

    def exists(self, uri: str) -> bool:
        """True when the file ``uri`` exists."""
        folder, name = (posixpath if has_scheme(uri) else os.path).split(uri)
        if folder not in self._folders:
            self._folders[folder] = self._list(folder)
        return name in self._folders[folder]

    @staticmethod
    def _list(folder: str) -> set[str]:
        from udfs import storage

        fs, path = storage.filesystem_for(folder)
        try:
            fs.invalidate_cache(path)
            return {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
        except (FileNotFoundError, NotADirectoryError):
            return set()


def select(records: list[DatasetRecord], limit: int | None, seed: int) -> list[DatasetRecord]:
    """The ``--limit`` subset of ``records`` (by id hash for ``seed``), in file order."""
    keep = limit_keys((r.video_id for r in records), limit, seed)
    return [r for r in records if r.video_id in keep]


def locate(records: list[DatasetRecord], naming: str,
           index: FileIndex | None = None) -> tuple[list[DatasetRecord], list[IngestFailure]]:
    """Records whose video file exists, and one failure per record whose file is missing."""
    index = index or FileIndex()
    found: list[DatasetRecord] = []
    missing: list[IngestFailure] = []
    for record in records:
        if index.exists(record.entry.uri):
            found.append(record)
        else:
            reason = f"video file not found: {record.entry.uri} (expected at {naming})"
            if record.events:
                reason += (f"; its {len(record.events)} ground-truth events were not written (--labels-only "
                           "registers the labels without videos)")
            missing.append(IngestFailure(record.entry.origin or record.video_id, reason))
    return found, missing


def with_splits(records: list[DatasetRecord], validation_ratio: float, seed: int) -> list[DatasetRecord]:
    """Records with ``entry.split`` set from their group, dataset split, the ratio and the seed."""
    return [
        replace(r, entry=replace(r.entry, split=assign_split(r.group, r.dataset_split, validation_ratio, seed)))
        for r in records
    ]


def read_dataset(fmt: str, path: str, videos_root: str | None = None) -> ReadResult:
    """The records and read failures of ``path`` in format ``fmt`` (nothing is written)."""
    module = adapter(fmt)
    if videos_root:
        root = canonical_uri(videos_root)
        if not _is_folder(root):
            raise SettingError(f"--videos-root {videos_root}: no such folder")
    else:
        root = default_videos_root(canonical_uri(path))
    return module.read(path, root)


def _is_folder(uri: str) -> bool:
    from udfs import storage

    fs, path = storage.filesystem_for(uri)
    return bool(fs.isdir(path))


def ingest_dataset(
    conn: Any,
    fmt: str,
    path: str,
    options: DatasetOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    """Register the videos of a dataset (see the module docstring); returns counts and failures."""
    from tables.connection import open_videos

    options = options or DatasetOptions()
    check_ratio(options.validation_ratio)
    if options.limit is not None and options.limit < 1:
        raise SettingError(f"--limit must be a positive number, got {options.limit}")
    module = adapter(fmt)
    result = read_dataset(fmt, path, options.videos_root)
    chosen = select(result.records, options.limit, options.seed)
    table = open_videos(conn)
    if options.labels_only:
        if not getattr(module, "GROUND_TRUTH_EVENTS", False):
            raise SettingError(f"--labels-only applies to formats with ground-truth labels (soccernet), not {fmt!r}")
        present = with_splits(chosen, options.validation_ratio, options.seed)
        report = register_without_video(table, [r.entry for r in present])
        events = _write_ground_truth(conn, table, present)
        return DatasetReport(fmt, len(result.records), len(chosen), 0, report, events, [*result.failures])
    present, missing = locate(chosen, module.NAMING)
    present = with_splits(present, options.validation_ratio, options.seed)
    report = ingest(table, [r.entry for r in present], progress=progress)
    failures = [*result.failures, *missing, *report.failures]
    events = 0
    if getattr(module, "GROUND_TRUTH_EVENTS", False):
        events = _write_ground_truth(conn, table, present)
    return DatasetReport(fmt, len(result.records), len(chosen), len(missing), report, events, failures)


def _write_ground_truth(conn: Any, table: Any, records: list[DatasetRecord]) -> int:
    """Replace the ground-truth events of the rows now in ``videos`` with these records' events."""
    table.checkout_latest()
    stored = stored_video_ids(table, [r.video_id for r in records])
    written = [r for r in records if r.video_id in stored]
    if not written:
        return 0
    events = [e for r in written for e in r.events]
    scope = scope_filter([GROUND_TRUTH], [r.video_id for r in written])
    return write_events(open_events(conn), events, replace_scope=scope)
