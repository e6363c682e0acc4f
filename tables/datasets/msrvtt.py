"""MSR-VTT: ``MSRVTT_data.json`` (the MSR-VTT 10k annotation file).

Layout::

    {"videos": [{"video_id": "video0", "category": 9, "url": "https://www.youtube.com/watch?v=...",
                 "start time": 137.72, "end time": 149.44, "split": "train", "id": 0}, ...],
     "sentences": [{"caption": "a car is shown", "video_id": "video0", "sen_id": 0}, ...]}

One row per ``videos`` item, id ``video_id``. Video file: ``<videos root>/<video_id>.mp4``
(MSR-VTT distributes the clips already cut, so ``start time`` / ``end time`` locate the clip
in its YouTube source and are kept in ``metadata``, not as ``start_s`` / ``end_s``).
``caption`` is the sentence with the smallest ``sen_id``, ``captions`` all of them in
``sen_id`` order. ``category`` is the category's name (:data:`CATEGORIES`), its number is kept
as ``metadata.category_id``. Splits: ``train`` -> train, ``validate`` -> validation,
``test`` -> test.
"""

from __future__ import annotations

from tables.datasets.records import (
    BadFile,
    BadRecord,
    DatasetRecord,
    ReadResult,
    describe_error,
    join,
    read_json,
    require_number,
    require_str,
)
from tables.ingest import IngestEntry

SOURCE = "msrvtt"
NAMING = "<videos root>/<video_id>.mp4"

#: MSR-VTT's 20 categories (the dataset's ``category.txt``), by number.
CATEGORIES = (
    "music", "people", "gaming", "sports/actions", "news/events/politics", "education",
    "tv shows", "movie/comedy", "animation", "vehicles/autos", "howto", "travel",
    "science/technology", "animals/pets", "kids/family", "documentary", "food/drink", "cooking",
    "beauty/fashion", "advertisement",
)
SPLITS = {"train": "train", "validate": "validation", "test": "test"}


def read(path: str, videos_root: str) -> ReadResult:
    """Records of an ``MSRVTT_data.json`` file (see the module docstring)."""
    out = ReadResult()
    try:
        data = _document(path)
    except BadFile as exc:
        out.fail(path, describe_error(exc))
        return out
    sentences = _sentences(path, data["sentences"], out)
    known = {item.get("video_id") for item in data["videos"] if isinstance(item, dict)}
    for number, item in enumerate(data["videos"], start=1):
        origin = f"{path} videos item {number}"
        try:
            out.records.append(_video(item, sentences, videos_root, origin))
        except BadRecord as exc:
            out.fail(origin, describe_error(exc))
    for vid, entries in sentences.items():
        if vid not in known:
            out.fail(f"{path} sentences item {entries[0][2]}", f"video_id {vid!r} is not among the 'videos'")
    return out


def _document(path: str) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise BadFile("not an MSR-VTT annotation file: expected an object with a 'videos' list")
    if not isinstance(data.get("sentences", []), list):
        raise BadFile("'sentences' must be a list")
    data.setdefault("sentences", [])
    return data


def _sentences(path: str, items: list, out: ReadResult) -> dict[str, list[tuple[float, str, int]]]:
    """``video_id -> [(sen_id, caption, item number)]`` sorted by ``sen_id``."""
    by_video: dict[str, list[tuple[float, str, int]]] = {}
    for number, item in enumerate(items, start=1):
        try:
            if not isinstance(item, dict):
                raise BadRecord(f"expected an object, got {type(item).__name__}")
            vid = require_str(item, "video_id")
            caption = require_str(item, "caption")
            sen_id = require_number(item, "sen_id") if "sen_id" in item else float(number)
        except BadRecord as exc:
            out.fail(f"{path} sentences item {number}", describe_error(exc))
            continue
        by_video.setdefault(vid, []).append((sen_id, caption, number))
    for entries in by_video.values():
        entries.sort()
    return by_video


def _video(item: object, sentences: dict, videos_root: str, origin: str) -> DatasetRecord:
    if not isinstance(item, dict):
        raise BadRecord(f"expected an object, got {type(item).__name__}")
    vid = require_str(item, "video_id")
    raw_split = require_str(item, "split")
    if raw_split not in SPLITS:
        raise BadRecord(f"unknown split {raw_split!r} (expected {', '.join(SPLITS)})")
    category_id = item.get("category")
    if category_id is not None:
        if isinstance(category_id, bool) or not isinstance(category_id, int) or not 0 <= category_id < 20:
            raise BadRecord(f"'category' must be a number from 0 to 19, got {category_id!r}")
    start = require_number(item, "start time") if "start time" in item else None
    end = require_number(item, "end time") if "end time" in item else None
    if start is not None and end is not None and end <= start:
        raise BadRecord(f"'end time' ({end}) must be after 'start time' ({start})")
    captions = [c for _, c, _ in sentences.get(vid, [])]
    metadata = {
        "url": item.get("url"),
        "source_start_s": start,
        "source_end_s": end,
        "category_id": category_id,
        "msrvtt_id": item.get("id"),
        "msrvtt_split": raw_split,
    }
    entry = IngestEntry(
        uri=join(videos_root, f"{vid}.mp4"),
        video_id=vid,
        source=SOURCE,
        caption=captions[0] if captions else None,
        captions=captions or None,
        category=None if category_id is None else CATEGORIES[category_id],
        metadata={k: v for k, v in metadata.items() if v is not None},
        origin=origin,
    )
    return DatasetRecord(entry=entry, group=vid, dataset_split=SPLITS[raw_split])
