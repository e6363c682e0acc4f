"""WebVid: ``results_2M_train.csv``, ``results_2M_val.csv``, ``results_10M_train.csv``.

Columns: ``videoid``, ``contentUrl``, ``duration`` (ISO 8601, ``PT00H00M11S``), ``page_dir``,
``name`` (the caption).

One row per line, id ``videoid``. Video file: ``<videos root>/<page_dir>/<videoid>.mp4`` (the
layout of the WebVid download scripts). ``caption`` is ``name``; ``contentUrl``, ``page_dir``
and the listed duration (``listed_duration_s``) go to ``metadata`` (the probed duration is
``duration_s``). The split comes from the file name (``_train`` / ``_val``).
"""

from __future__ import annotations

from tables.datasets.records import (
    BadFile,
    BadRecord,
    DatasetRecord,
    ReadResult,
    csv_rows,
    describe_error,
    iso_duration_seconds,
    join,
    require_str,
    split_from_name,
)
from tables.ingest import IngestEntry

SOURCE = "webvid"
NAMING = "<videos root>/<page_dir>/<videoid>.mp4"
COLUMNS = ("videoid", "contentUrl", "duration", "page_dir", "name")


def read(path: str, videos_root: str) -> ReadResult:
    """Records of a WebVid CSV file (see the module docstring)."""
    out = ReadResult()
    split = split_from_name(path)
    try:
        for line, row in csv_rows(path, COLUMNS):
            origin = f"{path} line {line}"
            try:
                if isinstance(row, BadRecord):
                    raise row
                out.records.append(_record(row, split, videos_root, origin))
            except BadRecord as exc:
                out.fail(origin, describe_error(exc))
    except BadFile as exc:
        out.fail(path, describe_error(exc))
    return out


def _record(row: dict[str, str], split: str | None, videos_root: str, origin: str) -> DatasetRecord:
    vid = require_str(row, "videoid")
    page_dir = require_str(row, "page_dir")
    caption = require_str(row, "name")
    metadata: dict[str, object] = {"page_dir": page_dir}
    if row.get("duration"):
        metadata["listed_duration_s"] = iso_duration_seconds(row["duration"], "duration")
    if row.get("contentUrl"):
        metadata["content_url"] = row["contentUrl"]
    entry = IngestEntry(
        uri=join(videos_root, page_dir, f"{vid}.mp4"),
        video_id=vid,
        source=SOURCE,
        caption=caption,
        captions=[caption],
        metadata=metadata,
        origin=origin,
    )
    return DatasetRecord(entry=entry, group=vid, dataset_split=split)
