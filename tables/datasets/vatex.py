"""VATEX: ``vatex_training_v1.0.json``, ``vatex_validation_v1.0.json``, ``vatex_public_test_*.json``.

Layout: a JSON list of ``{"videoID": "<youtube_id>_<start>_<end>", "enCap": [...], "chCap": [...]}``
where ``start`` / ``end`` are the clip's bounds in its YouTube video, in seconds, zero-padded
to 6 digits (``Ptf_2VRj-V0_000122_000132``). YouTube ids may contain ``_``: the last two
``_``-separated fields are the bounds.

One row per item, id ``videoID``. Video file: ``<videos root>/<videoID>.mp4`` (the 10 s
clip, already cut). ``caption`` is the first English caption, ``captions`` all English
captions; the Chinese captions, the YouTube id and the clip bounds go to ``metadata``
(``captions_zh``, ``youtube_id``, ``source_start_s``, ``source_end_s``). The split comes from
the file name (``training`` / ``validation`` / ``test``); the test files have no ``enCap``.
"""

from __future__ import annotations

import re

from tables.datasets.records import (
    BadFile,
    BadRecord,
    DatasetRecord,
    ReadResult,
    describe_error,
    join,
    read_json,
    require_str,
    split_from_name,
    string_list,
)
from tables.ingest import IngestEntry

SOURCE = "vatex"
NAMING = "<videos root>/<videoID>.mp4"

_VIDEO_ID = re.compile(r"^(?P<youtube_id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


def parse_video_id(video_id: str) -> tuple[str, int, int]:
    """``(youtube_id, start_s, end_s)`` of a VATEX ``videoID``; :class:`BadRecord` when malformed."""
    match = _VIDEO_ID.match(video_id)
    if not match:
        raise BadRecord(f"'videoID' must look like <youtube_id>_<start:6 digits>_<end:6 digits>, got {video_id!r}")
    start, end = int(match["start"]), int(match["end"])
    if end <= start:
        raise BadRecord(f"'videoID' {video_id!r}: the clip ends ({end} s) before it starts ({start} s)")
    return match["youtube_id"], start, end


def read(path: str, videos_root: str) -> ReadResult:
    """Records of a VATEX annotation file (see the module docstring)."""
    out = ReadResult()
    try:
        data = read_json(path)
        if not isinstance(data, list):
            raise BadFile(f"a VATEX annotation file is a JSON list, got {type(data).__name__}")
    except BadFile as exc:
        out.fail(path, describe_error(exc))
        return out
    split = split_from_name(path)
    for number, item in enumerate(data, start=1):
        origin = f"{path} item {number}"
        try:
            out.records.append(_record(item, split, videos_root, origin))
        except BadRecord as exc:
            out.fail(origin, describe_error(exc))
    return out


def _record(item: object, split: str | None, videos_root: str, origin: str) -> DatasetRecord:
    if not isinstance(item, dict):
        raise BadRecord(f"expected an object, got {type(item).__name__}")
    vid = require_str(item, "videoID")
    youtube_id, start, end = parse_video_id(vid)
    english = string_list(item["enCap"], "enCap") if "enCap" in item else []
    chinese = string_list(item["chCap"], "chCap") if "chCap" in item else []
    metadata = {"youtube_id": youtube_id, "source_start_s": start, "source_end_s": end}
    if chinese:
        metadata["captions_zh"] = chinese
    entry = IngestEntry(
        uri=join(videos_root, f"{vid}.mp4"),
        video_id=vid,
        source=SOURCE,
        caption=english[0] if english else None,
        captions=english or None,
        metadata=metadata,
        origin=origin,
    )
    return DatasetRecord(entry=entry, group=vid, dataset_split=split)
