"""Panda-70M: ``panda70m_training_2m.csv``, ``panda70m_validation.csv``, ``panda70m_testing.csv``.

Columns: ``videoID``, ``url``, ``timestamp`` (a Python list literal of ``[start, end]`` pairs,
``"[['0:00:00.000', '0:00:05.005'], ...]"``), ``caption`` (a list literal, one caption per
clip), ``matching_score`` (a list literal, one score per clip; optional). Extra columns of the
full training file are ignored.

One row per *clip*: id ``<videoID>_<start ms>_<end ms>`` (``abc_0_5005``), ``start_s`` /
``end_s`` set to the clip's bounds. Video file: ``<videos root>/<videoID>.mp4``, the whole
source video (the stages decode only the clip's range). ``caption`` is the clip's caption;
``url``, the clip's index and its ``matching_score`` go to ``metadata``. All clips of one
source video share a split. The split comes from the file name (``training`` /
``validation`` / ``testing``).
"""

from __future__ import annotations

import ast

from tables.datasets.records import (
    BadFile,
    BadRecord,
    DatasetRecord,
    ReadResult,
    clock_seconds,
    csv_rows,
    describe_error,
    join,
    milliseconds,
    require_str,
    split_from_name,
)
from tables.ingest import IngestEntry

SOURCE = "panda70m"
NAMING = "<videos root>/<videoID>.mp4 (clips are time ranges of it)"
COLUMNS = ("videoID", "timestamp", "caption")


def clip_id(video_id: str, start_s: float, end_s: float) -> str:
    """The stable id of a clip: ``<videoID>_<start ms>_<end ms>``."""
    return f"{video_id}_{milliseconds(start_s)}_{milliseconds(end_s)}"


def read(path: str, videos_root: str) -> ReadResult:
    """Records of a Panda-70M CSV file (see the module docstring)."""
    out = ReadResult()
    split = split_from_name(path)
    try:
        for line, row in csv_rows(path, COLUMNS):
            origin = f"{path} line {line}"
            try:
                if isinstance(row, BadRecord):
                    raise row
                _clips(row, split, videos_root, origin, out)
            except BadRecord as exc:
                out.fail(origin, describe_error(exc))
    except BadFile as exc:
        out.fail(path, describe_error(exc))
    return out


def _literal_list(row: dict[str, str], key: str) -> list:
    try:
        value = ast.literal_eval(row[key])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise BadRecord(f"{key!r} must be a list literal, got {row[key][:80]!r}") from None
    if not isinstance(value, list):
        raise BadRecord(f"{key!r} must be a list, got {type(value).__name__}")
    return value


def _clips(row: dict[str, str], split: str | None, videos_root: str, origin: str, out: ReadResult) -> None:
    """Append one record per clip of a row; a bad clip fails alone."""
    vid = require_str(row, "videoID")
    stamps = _literal_list(row, "timestamp")
    captions = _literal_list(row, "caption")
    scores = _literal_list(row, "matching_score") if row.get("matching_score") else None
    if len(captions) != len(stamps):
        raise BadRecord(f"{len(stamps)} timestamps but {len(captions)} captions")
    if scores is not None and len(scores) != len(stamps):
        raise BadRecord(f"{len(stamps)} timestamps but {len(scores)} matching scores")
    uri = join(videos_root, f"{vid}.mp4")
    for index, (stamp, caption) in enumerate(zip(stamps, captions, strict=True)):
        clip_origin = f"{origin} clip {index + 1}"
        try:
            if not (isinstance(stamp, (list, tuple)) and len(stamp) == 2):
                raise BadRecord(f"timestamp must be a [start, end] pair, got {stamp!r}")
            start = clock_seconds(stamp[0], "timestamp start")
            end = clock_seconds(stamp[1], "timestamp end")
            if end <= start:
                raise BadRecord(f"the clip ends ({stamp[1]}) before it starts ({stamp[0]})")
            if not isinstance(caption, str) or not caption.strip():
                raise BadRecord(f"caption must be a non-empty string, got {caption!r}")
            metadata: dict[str, object] = {"youtube_id": vid, "clip_index": index}
            if row.get("url"):
                metadata["url"] = row["url"]
            if scores is not None:
                metadata["matching_score"] = float(scores[index])
        except (BadRecord, TypeError, ValueError) as exc:
            out.fail(clip_origin, describe_error(exc))
            continue
        entry = IngestEntry(
            uri=uri,
            video_id=clip_id(vid, start, end),
            source=SOURCE,
            caption=caption.strip(),
            captions=[caption.strip()],
            start_s=start,
            end_s=end,
            metadata=metadata,
            origin=clip_origin,
        )
        out.records.append(DatasetRecord(entry=entry, group=vid, dataset_split=split))
