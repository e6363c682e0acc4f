"""LLaVA-Video-178K: the conversation JSON files (``*_cap_processed.json``, ``*_qa_processed.json``).

Layout: a JSON list of ``{"id", "data_source", "video": "<relative path>", "conversations":
[{"from": "human" | "gpt", "value": "..."}, ...]}``. ``PATH`` is one such file or a folder,
searched recursively for ``*.json`` files (in sorted order).

One row per distinct ``video`` path, id: the path without its extension
(``academic_source/youcook2/201/abc/split_5``). Video file: ``<videos root>/<video>``.

A record is a *caption* record when its file name carries the token ``cap`` (the dataset's
caption files) or its first question asks for a description (``describe``, ``description``
or ``caption``); ``caption`` is the first answer of the first caption record of the video,
``captions`` every caption answer. The questions and answers of all other records go to
``metadata.qa`` (``[{"question", "answer"}]``, the ``<image>`` token removed), with the
record ids (``metadata.ids``) and ``data_source``. The dataset has no splits.
"""

from __future__ import annotations

import posixpath
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
)
from tables.ingest import IngestEntry

SOURCE = "llava-video-178k"
NAMING = "<videos root>/<video>"

_ASKS_DESCRIPTION = re.compile(r"\b(describe|description|caption)\b", re.IGNORECASE)
_MEDIA_TOKEN = re.compile(r"<(image|video)>\s*")


def annotation_files(path: str) -> list[str]:
    """``path`` itself, or every ``*.json`` file under the folder ``path`` (sorted)."""
    from udfs import storage

    fs, fs_path = storage.filesystem_for(path)
    if not fs.isdir(fs_path):
        return [path]
    found = sorted(p for p in fs.find(fs_path) if p.lower().endswith(".json"))
    if "://" in path:
        scheme = path.split("://", 1)[0]
        return [f"{scheme}://{p.lstrip('/')}" for p in found]
    return found


def is_caption_file(path: str) -> bool:
    """True when the file name has the token ``cap`` (``0_30_s_academic_v0_1_cap_processed.json``)."""
    return "cap" in re.split(r"[_.\-]+", posixpath.basename(path).lower())


def _turns(item: dict) -> list[tuple[str, str]]:
    """``(question, answer)`` pairs of a conversation (human turn, then gpt turn)."""
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise BadRecord("'conversations' must be a non-empty list of {from, value} turns")
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for position, turn in enumerate(conversations, start=1):
        if not isinstance(turn, dict) or turn.get("from") not in ("human", "gpt"):
            raise BadRecord(f"turn {position}: expected {{'from': 'human'|'gpt', 'value': ...}}, got {turn!r}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise BadRecord(f"turn {position}: 'value' must be a string")
        if turn["from"] == "human":
            question = _MEDIA_TOKEN.sub("", value).strip()
        elif question is None:
            raise BadRecord(f"turn {position}: a gpt answer without a question before it")
        else:
            pairs.append((question, value.strip()))
            question = None
    if not pairs:
        raise BadRecord("the conversation has no answer")
    return pairs


class _Video:
    """Everything gathered about one video path."""

    def __init__(self, video: str, origin: str, data_source: str | None) -> None:
        self.video = video
        self.origin = origin
        self.data_source = data_source
        self.ids: list[str] = []
        self.captions: list[str] = []
        self.qa: list[dict[str, str]] = []


def read(path: str, videos_root: str) -> ReadResult:
    """Records of a LLaVA-Video-178K file or folder (see the module docstring)."""
    out = ReadResult()
    try:
        files = annotation_files(path)
    except (OSError, ValueError) as exc:
        out.fail(path, f"cannot list: {describe_error(exc)}")
        return out
    if not files:
        out.fail(path, "no .json annotation files in this folder")
    videos: dict[str, _Video] = {}
    for file in files:
        _read_file(file, videos, out)
    for video in videos.values():
        try:
            out.records.append(_record(video, videos_root))
        except BadRecord as exc:
            out.fail(video.origin, describe_error(exc))
    return out


def _read_file(file: str, videos: dict[str, _Video], out: ReadResult) -> None:
    try:
        data = read_json(file)
        if not isinstance(data, list):
            raise BadFile(f"a LLaVA-Video annotation file is a JSON list, got {type(data).__name__}")
    except BadFile as exc:
        out.fail(file, describe_error(exc))
        return
    caption_file = is_caption_file(file)
    for number, item in enumerate(data, start=1):
        origin = f"{file} item {number}"
        try:
            if not isinstance(item, dict):
                raise BadRecord(f"expected an object, got {type(item).__name__}")
            video = require_str(item, "video")
            pairs = _turns(item)
        except BadRecord as exc:
            out.fail(origin, describe_error(exc))
            continue
        data_source = item.get("data_source") if isinstance(item.get("data_source"), str) else None
        entry = videos.setdefault(video, _Video(video, origin, data_source))
        if isinstance(item.get("id"), str) and item["id"] not in entry.ids:
            entry.ids.append(item["id"])
        if caption_file or _ASKS_DESCRIPTION.search(pairs[0][0]):
            entry.captions.append(pairs[0][1])
            pairs = pairs[1:]
        entry.qa.extend({"question": q, "answer": a} for q, a in pairs)


def _record(video: _Video, videos_root: str) -> DatasetRecord:
    vid = posixpath.splitext(video.video)[0]
    metadata: dict[str, object] = {"video": video.video, "ids": video.ids}
    if video.data_source:
        metadata["data_source"] = video.data_source
    if video.qa:
        metadata["qa"] = video.qa
    entry = IngestEntry(
        uri=join(videos_root, video.video),
        video_id=vid,
        source=SOURCE,
        caption=video.captions[0] if video.captions else None,
        captions=video.captions or None,
        metadata=metadata,
        origin=video.origin,
    )
    return DatasetRecord(entry=entry, group=vid)
