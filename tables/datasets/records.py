"""What a dataset adapter produces, and the helpers every adapter shares.

An adapter reads a dataset's own annotation files and returns a :class:`ReadResult`: one
:class:`DatasetRecord` per warehouse row (an :class:`~tables.ingest.IngestEntry` with its
video location resolved, the key that decides its split, and any ground-truth events), plus
one :class:`~tables.ingest.IngestFailure` per malformed record, naming the file and the
record's position (``line N`` of a CSV, ``item N`` of a JSON list, 1-based).
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tables.events import Event
from tables.ingest import IngestEntry, IngestFailure
from udfs.errors import VwError


class BadRecord(VwError, ValueError):
    """A record of an annotation file that cannot become a warehouse row."""


class BadFile(VwError, ValueError):
    """An annotation file that cannot be read at all (missing, not JSON, wrong layout)."""


@dataclass
class DatasetRecord:
    """One warehouse row to register.

    ``group`` is the key its split is drawn from: records cut from one source video (Panda-70M
    clips, the two halves of a SoccerNet game) share it, so they always land in the same split.
    ``dataset_split`` is the split the dataset itself assigns (already normalised), if any.
    """

    entry: IngestEntry
    group: str
    dataset_split: str | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def video_id(self) -> str:
        """The row's ``video_id`` (adapters always set one)."""
        assert self.entry.video_id is not None
        return self.entry.video_id


@dataclass
class ReadResult:
    """Records of a dataset and the failures met while reading it."""

    records: list[DatasetRecord] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        """Append ``other``'s records and failures."""
        self.records.extend(other.records)
        self.failures.extend(other.failures)

    def fail(self, origin: str, reason: str) -> None:
        """Record one failure."""
        self.failures.append(IngestFailure(origin, reason))


# --------------------------------------------------------------------------- files


def _storage():
    from udfs import storage

    return storage


def has_scheme(uri: str) -> bool:
    """True for ``scheme://...`` URIs (object stores, ``file://``)."""
    return "://" in uri


def read_text(uri: str) -> str:
    """The UTF-8 text of a local path or fsspec URI; :class:`BadFile` when unreadable."""
    try:
        with _storage().open_binary(uri) as fh:
            return fh.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise BadFile("no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(f"cannot read: {exc}") from None


def read_json(uri: str) -> Any:
    """The parsed JSON document at ``uri``; :class:`BadFile` when unreadable or invalid."""
    text = read_text(uri)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadFile(f"invalid JSON: {exc}") from None


def csv_rows(uri: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str] | BadRecord]]:
    """``(line number, row)`` pairs of a CSV file with a header naming ``required`` columns.

    A row with more fields than the header is yielded as a :class:`BadRecord`.
    """
    reader = csv.DictReader(io.StringIO(read_text(uri)))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise BadFile(f"missing column(s) {', '.join(missing)} (columns: {', '.join(header) or 'none'})")
    for row in reader:
        if None in row:
            yield reader.line_num, BadRecord(f"row has more fields than the header ({len(header)})")
        else:
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}


def join(root: str, *parts: str) -> str:
    """``root`` joined with relative ``parts`` (``/``-separated) for local paths and URIs."""
    rel = posixpath.join(*parts)
    if posixpath.isabs(rel) or has_scheme(rel) or ".." in rel.split("/"):
        raise BadRecord(f"video path {rel!r} must be relative to the videos root, inside it")
    rel = posixpath.normpath(rel)
    if rel == ".":
        raise BadRecord("the video path is empty")
    if has_scheme(root):
        return root.rstrip("/") + "/" + rel
    return os.path.join(root, *rel.split("/"))


def parent_of(uri: str) -> str:
    """The folder holding a local path or URI."""
    if has_scheme(uri):
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(os.path.abspath(uri))


def split_from_name(uri: str) -> str | None:
    """The split named by an annotation file's name (``*_train*``, ``*_val*``, ``*test*``), if any.

    Tokens are separated by ``_``, ``-`` and ``.``: ``results_2M_val.csv`` -> ``validation``,
    ``vatex_training_v1.0.json`` -> ``train``, ``panda70m_testing.csv`` -> ``test``.
    """
    tokens = set(re.split(r"[_.\-]+", posixpath.basename(uri.rstrip("/")).lower()))
    found = {SPLIT_TOKENS[t] for t in tokens if t in SPLIT_TOKENS}
    return found.pop() if len(found) == 1 else None


#: Name tokens that say which split a file holds.
SPLIT_TOKENS = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validate": "validation", "validation": "validation",
    "test": "test", "testing": "test",
}


# --------------------------------------------------------------------------- values


def require_str(obj: dict, key: str) -> str:
    """``obj[key]`` as a non-empty string; :class:`BadRecord` naming the key otherwise."""
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"{key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def optional_str(obj: dict, key: str) -> str | None:
    """``obj[key]`` as a string, or None when absent or empty."""
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return require_str(obj, key)


def require_number(obj: dict, key: str) -> float:
    """``obj[key]`` as a finite number >= 0 (numbers or numeric strings)."""
    value = obj.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRecord(f"{key!r} must be a number, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise BadRecord(f"{key!r} must be a finite number >= 0, got {value!r}")
    return number


def string_list(value: Any, key: str) -> list[str]:
    """``value`` as a list of strings (blank ones dropped); :class:`BadRecord` otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRecord(f"{key!r} must be a list of strings")
    return [v.strip() for v in value if v.strip()]


_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def clock_seconds(text: str, key: str) -> float:
    """Seconds of a ``[H:]MM:SS[.fff]`` clock string (``00:01:02.500`` -> 62.5)."""
    match = _CLOCK.match(str(text).strip())
    if not match:
        raise BadRecord(f"{key!r} must be a time like HH:MM:SS.mmm, got {text!r}")
    hours, minutes, seconds = match.groups()
    if int(minutes) >= 60 or float(seconds) >= 60:
        raise BadRecord(f"{key!r} is not a valid time: {text!r}")
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


_ISO_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def iso_duration_seconds(text: str, key: str) -> float:
    """Seconds of an ISO 8601 duration (``PT00H00M11S`` -> 11.0, ``PT1M2.5S`` -> 62.5)."""
    match = _ISO_DURATION.match(str(text).strip().upper())
    if not match or not any(match.groups()) or str(text).strip().upper().endswith("T"):
        raise BadRecord(f"{key!r} must be an ISO 8601 duration like PT00H00M11S, got {text!r}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def milliseconds(seconds: float) -> int:
    """``seconds`` rounded to whole milliseconds (the unit of clip ids)."""
    return int(round(seconds * 1000))


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure."""
    return str(exc).strip() or type(exc).__name__
