"""Register videos in the ``videos`` table: ``vw ingest PATHS_OR_URIS...``.

Inputs
    * a video file (any extension: the probe decides whether it is a video);
    * a folder, walked recursively for files with a video extension (:data:`VIDEO_EXTENSIONS`);
      hidden files and folders (names starting with ``.``) are skipped;
    * a glob (``data/*.mp4``, ``gs://bucket/clips/**/*.mkv``): every match is taken as if it
      had been named, except that files without a video extension are skipped unless the
      pattern itself names their extension (``lists/*.csv``, ``raw/*.bin``), and hidden
      names are skipped unless the pattern's last part starts with ``.``;
    * an fsspec URL (``gs://bucket/prefix/``, ``s3://...``, ``memory://...``, ``file://...``)
      of any of the above; ``file://`` URLs are stored as plain local paths;
    * a listing ``.csv`` / ``.jsonl`` / ``.json`` (a list of objects) with a ``uri`` column and
      optional ``video_id``, ``caption``, ``captions`` (a list; in CSV a JSON array),
      ``split``, ``source``, ``category``, ``start_s``, ``end_s``. Any other column goes to ``metadata``
      (JSON text in the table). A relative ``uri`` is resolved against the listing's folder.
      Empty CSV cells count as "not given".

Video ids
    An entry without an explicit ``video_id`` gets one derived from its file name stem, made
    unique deterministically:

    1. when the table already has a row for the same ``uri`` (and the same ``start_s`` /
       ``end_s``), that row's id is reused, so re-ingesting never duplicates a video (unless
       an explicit id of this ingest takes that id over for another file);
    2. otherwise the id is the stem (``clip`` for ``/data/a/clip.mp4``), unless that stem is
       already taken by a different video (in the table, by an explicit id of this ingest, or
       by another file with the same stem in this ingest): then every such video gets
       ``<stem>-<h>`` where ``<h>`` is the first 8 hex digits of the SHA-1 of its ``uri``
       (plus ``#t=start,end`` for a segment). Two folders holding ``clip.mp4`` thus give
       ``clip-1a2b3c4d`` and ``clip-5e6f7a8b`` whatever the input order.

    Explicit ids are taken as given. An explicit id that appears twice in one ingest is a
    failure of the later entries; the same file listed twice without ids keeps its first entry.

Re-ingest (field-merge rule)
    Rows are written with ONE ``merge_insert("video_id")`` of the base columns only
    (:data:`tables.schema.VIDEOS_SCHEMA`), so columns computed by UDFs are never touched.
    For a video already in the table: ``uri``, the probed facts (``duration_s``, ``fps``,
    ``num_frames``, ``width``, ``height``, ``codec``, ``size_bytes``) and ``ingested_at`` are
    always replaced; ``caption``, ``captions``, ``split``, ``source``, ``category``, ``start_s``
    and ``end_s`` are replaced only when the new entry gives a value (or ``ingest(source=...,
    split=...)`` does), otherwise the stored value is kept; ``metadata`` is merged key by key
    (new keys win, stored keys the entry does not mention are kept). A plain file re-ingest
    therefore refreshes the probe and keeps the captions of an earlier listing ingest.

Older tables
    A ``videos`` table created before a base column existed (for example ``category``) gets
    that column added, all NULL, the first time something is written to it; stored values
    are not rewritten.

Video bytes (``store_bytes=True``, ``vw ingest --store-bytes``)
    The bytes of every ingested video are also stored in the nullable blob column ``video``
    (added on first use); see :mod:`tables.video_blobs` for when stored bytes are kept, replaced
    or cleared on re-ingest. A video whose bytes cannot be read is reported as a failure; its
    base row is still written.

Failures
    Every input or entry that cannot be used (missing, empty, not a video, unreadable, a bad
    listing row, a duplicate id) becomes one :class:`IngestFailure`; all good entries are
    still written. Nothing is written when no entry is good: the table version is unchanged.
    A table with a NOT NULL column beyond the base schema can only have existing rows
    updated; new videos are then reported as failures.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import posixpath
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from tables.commits import retry_on_conflict
from tables.filters import sql_quote
from tables.schema import VIDEOS_SCHEMA
from udfs.redact import redact

#: File extensions taken as videos when walking folders and expanding globs.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"}
)
#: File extensions read as listings.
LISTING_EXTENSIONS = frozenset({".csv", ".jsonl", ".json"})

#: Listing columns with a column of their own; every other column goes to ``metadata``.
KNOWN_COLUMNS = ("uri", "video_id", "caption", "captions", "split", "source", "category", "start_s", "end_s")
#: Entry fields that overwrite a stored value only when the new entry gives one.
KEPT_WHEN_MISSING = ("source", "split", "caption", "captions", "category", "start_s", "end_s")
#: Probed columns: always replaced on re-ingest.
PROBED_COLUMNS = ("duration_s", "fps", "num_frames", "width", "height", "codec", "size_bytes")

_GLOB_CHARS = "*?["
_ID_HASH_LEN = 8
_QUERY_CHUNK = 500


@dataclass
class IngestEntry:
    """One video to register (a row of ``videos`` before probing)."""

    uri: str
    video_id: str | None = None
    caption: str | None = None
    split: str | None = None
    source: str | None = None
    captions: list[str] | None = None
    start_s: float | None = None
    end_s: float | None = None
    metadata: dict | None = None
    origin: str = ""  # where the entry came from, e.g. "listing.csv line 7"
    category: str | None = None


@dataclass
class IngestFailure:
    """An input or entry that was not ingested, and why (credentials in both are redacted)."""

    input: str
    reason: str

    def __post_init__(self) -> None:
        self.input = redact(self.input)
        self.reason = redact(self.reason)


@dataclass
class IngestReport:
    """What one :func:`ingest` call did."""

    inserted: int
    updated: int
    failures: list[IngestFailure] = field(default_factory=list)
    table_version: int = 0

    @property
    def ok(self) -> bool:
        """True when every input was ingested."""
        return not self.failures


@dataclass
class _Probed:
    """A good entry with its final id and probed facts."""

    entry: IngestEntry
    video_id: str
    facts: dict[str, Any]


class _BadRow(ValueError):
    """A listing row that cannot become an entry."""


# --------------------------------------------------------------------------- URIs


def _storage():
    """The storage helpers (imported lazily: they pull in fsspec implementations)."""
    from udfs import storage

    return storage


def _has_scheme(uri: str) -> bool:
    return "://" in uri


def _protocol_of(fs: Any) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else str(proto)


def canonical_uri(uri: str) -> str:
    """One spelling per file: absolute local paths, ``scheme://path`` for object stores.

    ``file://`` URLs become local paths; ``http(s)://`` URLs are kept as given.
    """
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if not _has_scheme(uri):
        return os.path.abspath(os.path.expanduser(uri))
    scheme = uri.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        return uri
    fs, path = _storage().filesystem_for(uri)
    return f"{_protocol_of(fs)}://{path.lstrip('/')}"


def _join_uri(base_uri: str, path: str) -> str:
    """``base_uri`` (a canonical file URI) with its last component replaced by ``path``."""
    if not _has_scheme(base_uri):
        return os.path.normpath(os.path.join(os.path.dirname(base_uri), path))
    scheme, rest = base_uri.split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"


def _to_uri(fs: Any, path: str, like: str) -> str:
    """A path returned by ``fs`` (find/glob) as a URI of the same kind as ``like``."""
    if not _has_scheme(like):
        return os.path.abspath(path)
    return f"{_protocol_of(fs)}://{path.lstrip('/')}"


def _suffix(path: str) -> str:
    return posixpath.splitext(path.rstrip("/"))[1].lower()


def _is_hidden(path: str, root: str) -> bool:
    rel = path[len(root) :] if path.startswith(root) else path
    return any(part.startswith(".") for part in rel.replace("\\", "/").split("/") if part)


# --------------------------------------------------------------------------- expansion


def expand_inputs(inputs: Sequence[str]) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Turn files, folders, globs, URLs and listings into entries (nothing is probed yet).

    Returns the entries in input order and one failure per unusable input or listing row.
    """
    return _collect([str(raw) for raw in inputs])


def _expand_one(raw: str) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Expand one input (file, folder, glob or listing)."""
    storage = _storage()
    try:
        uri = canonical_uri(raw)
        fs, path = storage.filesystem_for(uri)
        fs.invalidate_cache(path.rstrip("/"))  # see files added since an earlier listing
        if _may_glob(uri) and any(c in path for c in _GLOB_CHARS) and not fs.exists(path):
            return _expand_glob(raw, uri, fs, path)
        if raw.endswith("/") or fs.isdir(path):
            return _expand_folder(raw, uri, fs, path)
        if not fs.exists(path):
            return [], [IngestFailure(raw, f"no such file or folder: {uri}")]
        if _suffix(path) in LISTING_EXTENSIONS:
            return read_listing(uri, label=raw)
        return [IngestEntry(uri=uri)], []
    except Exception as exc:  # any storage error is reported per input
        return [], [IngestFailure(raw, f"cannot read: {_describe_exc(exc)}")]


def _may_glob(uri: str) -> bool:
    """False for ``http(s)://`` URLs: their ``?`` starts a query (signed URLs), never a pattern."""
    return uri.split("://", 1)[0].lower() not in ("http", "https") if _has_scheme(uri) else True


def _expand_folder(
    raw: str, uri: str, fs: Any, path: str
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Every video file under a folder or prefix, recursively, in sorted order."""
    root = path.rstrip("/")
    fs.invalidate_cache(root)
    found = sorted(
        p
        for p in fs.find(root)
        if _suffix(p) in VIDEO_EXTENSIONS and not _is_hidden(p, root)
    )
    if not found:
        if not fs.exists(root):
            return [], [IngestFailure(raw, f"no such file or folder: {uri}")]
        return [], [IngestFailure(raw, f"no video files ({_ext_list()}) under {uri}")]
    return [IngestEntry(uri=_to_uri(fs, p, uri)) for p in found], []


def _expand_glob(
    raw: str, uri: str, fs: Any, pattern: str
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Every match of a glob; folders are walked, listings read, other files filtered."""
    named_ext = _suffix(pattern)
    named_ext = "" if any(c in named_ext for c in _GLOB_CHARS) else named_ext
    entries: list[IngestEntry] = []
    failures: list[IngestFailure] = []
    fs.invalidate_cache()
    wants_hidden = posixpath.basename(pattern).startswith(".")
    for match in sorted(fs.glob(pattern)):
        if posixpath.basename(match.rstrip("/")).startswith(".") and not wants_hidden:
            continue
        match_uri = _to_uri(fs, match, uri)
        if fs.isdir(match):
            got, failed = _expand_folder(match_uri, match_uri, fs, match)
        elif _suffix(match) in LISTING_EXTENSIONS and _suffix(match) == named_ext:
            got, failed = read_listing(match_uri, label=match_uri)
        elif _suffix(match) in VIDEO_EXTENSIONS or (named_ext and _suffix(match) == named_ext):
            got, failed = [IngestEntry(uri=match_uri)], []
        else:
            continue
        entries.extend(got)
        failures.extend(failed)
    if not entries and not failures:
        failures.append(IngestFailure(raw, "no video files match this pattern"))
    return entries, failures


def _ext_list() -> str:
    return " ".join(sorted(VIDEO_EXTENSIONS))


# --------------------------------------------------------------------------- listings


def read_listing(
    uri: str, *, label: str | None = None
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Entries of a ``.csv`` / ``.jsonl`` / ``.json`` listing at ``uri`` (canonical).

    Each entry's ``origin`` is ``"<label> line N"`` (``item N`` for a ``.json`` list).
    """
    label = label or uri
    try:
        with _storage().open_binary(uri) as fh:
            text = fh.read().decode("utf-8-sig")
    except Exception as exc:
        return [], [IngestFailure(label, f"cannot read listing: {_describe_exc(exc)}")]
    suffix = _suffix(uri)
    try:
        if suffix == ".csv":
            rows = _csv_rows(text, label)
        elif suffix == ".jsonl":
            rows = _jsonl_rows(text, label)
        else:
            rows = _json_rows(text, label)
    except _BadRow as exc:
        return [], [IngestFailure(label, str(exc))]
    return _rows_to_entries(rows, uri)


def _csv_rows(text: str, label: str) -> Iterable[tuple[str, dict | Exception]]:
    """``(origin, row)`` pairs of a CSV listing; a malformed row is an exception."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "uri" not in header:
        raise _BadRow(f"listing has no 'uri' column (columns: {', '.join(header) or 'none'})")
    out: list[tuple[str, dict | Exception]] = []
    for row in reader:
        origin = f"{label} line {reader.line_num}"
        if None in row:
            out.append((origin, _BadRow(f"row has more fields than the header ({len(header)})")))
            continue
        out.append((origin, {k: (v if v != "" else None) for k, v in row.items()}))
    return out


def _jsonl_rows(text: str, label: str) -> Iterable[tuple[str, dict | Exception]]:
    """``(origin, row)`` pairs of a JSON-lines listing; blank lines are skipped."""
    out: list[tuple[str, dict | Exception]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        origin = f"{label} line {number}"
        try:
            out.append((origin, _as_object(json.loads(line))))
        except (ValueError, _BadRow) as exc:
            out.append((origin, _BadRow(f"invalid JSON object: {exc}")))
    return out


def _json_rows(text: str, label: str) -> Iterable[tuple[str, dict | Exception]]:
    """``(origin, row)`` pairs of a JSON listing (a list of objects)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _BadRow(f"invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise _BadRow(f"a .json listing must be a list of objects, got {type(data).__name__}")
    out: list[tuple[str, dict | Exception]] = []
    for number, item in enumerate(data, start=1):
        try:
            out.append((f"{label} item {number}", _as_object(item)))
        except _BadRow as exc:
            out.append((f"{label} item {number}", exc))
    return out


def _as_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _BadRow(f"expected an object, got {type(value).__name__}")
    return value


def _rows_to_entries(
    rows: Iterable[tuple[str, dict | Exception]], listing_uri: str
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    entries: list[IngestEntry] = []
    failures: list[IngestFailure] = []
    for origin, row in rows:
        try:
            if isinstance(row, Exception):
                raise row
            entries.append(row_to_entry(row, listing_uri, origin))
        except _BadRow as exc:
            failures.append(IngestFailure(origin, str(exc)))
    return entries, failures


def row_to_entry(row: dict, listing_uri: str, origin: str = "") -> IngestEntry:
    """One listing row as an entry; raises ``ValueError`` for a bad row."""
    raw_uri = _opt_str(row.get("uri"), "uri")
    if not raw_uri:
        raise _BadRow("missing 'uri'")
    uri = canonical_uri(_resolve(raw_uri, listing_uri))
    start_s = _opt_float(row.get("start_s"), "start_s")
    end_s = _opt_float(row.get("end_s"), "end_s")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise _BadRow(f"end_s ({end_s}) must be greater than start_s ({start_s})")
    extras = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS and v is not None}
    return IngestEntry(
        uri=uri,
        video_id=_opt_str(row.get("video_id"), "video_id"),
        caption=_opt_str(row.get("caption"), "caption"),
        split=_opt_str(row.get("split"), "split"),
        source=_opt_str(row.get("source"), "source"),
        category=_opt_str(row.get("category"), "category"),
        captions=_opt_captions(row.get("captions")),
        start_s=start_s,
        end_s=end_s,
        metadata=extras or None,
        origin=origin,
    )


def _resolve(raw_uri: str, listing_uri: str) -> str:
    """A listing's ``uri`` value, resolved against the listing's folder when relative."""
    if _has_scheme(raw_uri):
        return raw_uri
    expanded = os.path.expanduser(raw_uri)
    if not _has_scheme(listing_uri) and os.path.isabs(expanded):
        return expanded
    return _join_uri(listing_uri, raw_uri)


def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise _BadRow(f"'{name}' must be a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _opt_float(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _BadRow(f"'{name}' must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise _BadRow(f"'{name}' must be a finite number >= 0, got {value!r}")
    return number


def _opt_captions(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _BadRow("'captions' must be a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise _BadRow("'captions' must be a list of strings")
    return value


# --------------------------------------------------------------------------- ids


def _segment_key(entry: IngestEntry) -> str:
    """What identifies a video when no id is given: its uri, plus the segment if any."""
    if entry.start_s is None and entry.end_s is None:
        return entry.uri
    return f"{entry.uri}#t={_num(entry.start_s)},{_num(entry.end_s)}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _stem(uri: str) -> str:
    name = posixpath.basename(uri.split("?", 1)[0].rstrip("/")) or uri
    return posixpath.splitext(name)[0] or name


def hashed_id(stem: str, key: str) -> str:
    """``<stem>-<first 8 hex digits of sha1(key)>``: the id of a video whose stem is taken."""
    return f"{stem}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:_ID_HASH_LEN]}"


def _drop_duplicates(
    entries: list[IngestEntry],
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Explicit ids seen twice fail (later ones); the same file listed twice keeps the first."""
    seen_ids: dict[str, IngestEntry] = {}
    explicit_keys = {_segment_key(e) for e in entries if e.video_id}
    seen_keys: dict[str, IngestEntry] = {}
    kept: list[IngestEntry] = []
    failures: list[IngestFailure] = []
    for entry in entries:
        if entry.video_id:
            first = seen_ids.get(entry.video_id)
            if first is not None:
                where = first.origin or first.uri
                reason = f"duplicate video_id '{entry.video_id}' (also at {where})"
                failures.append(IngestFailure(_describe(entry), reason))
                continue
            seen_ids[entry.video_id] = entry
        else:
            key = _segment_key(entry)
            if key in explicit_keys or key in seen_keys:
                continue
            seen_keys[key] = entry
        kept.append(entry)
    return kept, failures


def assign_ids(entries: list[IngestEntry], table: Any) -> list[str]:
    """The final ``video_id`` of each entry (see the module docstring for the rule)."""
    derived = [e for e in entries if not e.video_id]
    keys = [_segment_key(e) for e in derived]
    stems = [_stem(e.uri) for e in derived]
    existing = _existing_ids(table, stems, [e.uri for e in derived])
    explicit = {e.video_id for e in entries if e.video_id}
    # a stored id that an explicit entry of this ingest takes over cannot be reused
    by_key = {k: v for k, v in _ids_by_key(existing).items() if v not in explicit}
    taken = {row["video_id"]: _row_key(row) for row in existing}
    taken.update({vid: f"explicit:{vid}" for vid in explicit})
    stem_keys: dict[str, set[str]] = {}
    for stem, key in zip(stems, keys, strict=True):
        if key not in by_key:
            stem_keys.setdefault(stem, set()).add(key)
    chosen: dict[str, str] = {}
    for stem, key in zip(stems, keys, strict=True):
        if key in by_key:
            chosen[key] = by_key[key]
        elif len(stem_keys[stem]) > 1 or taken.get(stem, key) != key:
            chosen[key] = hashed_id(stem, key)
        else:
            chosen[key] = stem
    return [e.video_id or chosen[_segment_key(e)] for e in entries]


def _unique_ids(
    entries: list[IngestEntry], ids: list[str]
) -> tuple[list[IngestEntry], list[str], list[IngestFailure]]:
    """Last guard before writing: one entry per id (later entries with a taken id fail)."""
    first: dict[str, IngestEntry] = {}
    kept: list[tuple[IngestEntry, str]] = []
    failures: list[IngestFailure] = []
    for entry, vid in zip(entries, ids, strict=True):
        if vid in first:
            where = first[vid].origin or first[vid].uri
            failures.append(
                IngestFailure(_describe(entry), f"duplicate video_id '{vid}' (also at {where})")
            )
            continue
        first[vid] = entry
        kept.append((entry, vid))
    return [e for e, _ in kept], [v for _, v in kept], failures


def _row_key(row: dict) -> str:
    entry = IngestEntry(uri=row["uri"], start_s=row.get("start_s"), end_s=row.get("end_s"))
    return _segment_key(entry)


def _ids_by_key(rows: list[dict]) -> dict[str, str]:
    """Stored id per segment key (the smallest id when several rows share a key)."""
    out: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["video_id"]):
        out.setdefault(_row_key(row), row["video_id"])
    return out


def _existing_ids(table: Any, ids: list[str], uris: list[str]) -> list[dict]:
    """Stored ``video_id, uri, start_s, end_s`` rows whose id or uri is one of those given."""
    present = set(table.schema.names)  # an older table may lack start_s / end_s
    columns = [c for c in ("video_id", "uri", "start_s", "end_s") if c in present]
    rows = _query_in(table, "video_id", ids, columns) + _query_in(table, "uri", uris, columns)
    unique = {row["video_id"]: row for row in rows}
    return list(unique.values())


def _query_in(table: Any, column: str, values: Iterable[str], columns: list[str]) -> list[dict]:
    """Rows of ``table`` whose ``column`` is in ``values`` (queried in chunks)."""
    wanted = sorted(set(values))
    if not wanted or table.count_rows() == 0:
        return []
    dataset = table.to_lance()
    rows: list[dict] = []
    for start in range(0, len(wanted), _QUERY_CHUNK):
        chunk = wanted[start : start + _QUERY_CHUNK]
        where = f"{column} IN ({', '.join(sql_quote(v) for v in chunk)})"
        rows.extend(dataset.to_table(columns=columns, filter=where).to_pylist())
    return rows


def stored_video_ids(table: Any, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that are rows of ``table``."""
    return {row["video_id"] for row in _query_in(table, "video_id", ids, ["video_id"])}




# --------------------------------------------------------------------------- probing


def _describe(entry: IngestEntry) -> str:
    """How a failure names an entry: its uri, with the listing row when it came from one."""
    return f"{entry.origin}: {entry.uri}" if entry.origin else entry.uri


def _describe_exc(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return f"file not found ({text})"
    if isinstance(exc, PermissionError) and "permission denied" not in text.lower():
        return f"permission denied ({text})"
    if not isinstance(exc, (ValueError, RuntimeError, OSError)) or getattr(exc, "code", None) is not None:
        return _storage().describe_error(exc)  # e.g. an HTTP error of an object store
    return text


def probe_entry(entry: IngestEntry) -> dict[str, Any]:
    """Probed facts of one entry (container headers only) plus ``size_bytes``.

    Raises ``ValueError`` with a clear reason when the file is empty or not a usable video.
    """
    from udfs.decode import probe

    fs, path = _storage().filesystem_for(entry.uri)
    size = int(fs.size(path))
    if size == 0:
        raise ValueError("empty file (0 bytes)")
    info = probe(entry.uri)  # VideoDecodeError names the file and what is wrong with it
    if info.num_frames is not None and info.num_frames <= 0:
        raise ValueError("no video frames")
    if entry.start_s is not None and info.duration_s and entry.start_s >= info.duration_s:
        raise ValueError(f"start_s {entry.start_s:g} is past the end ({info.duration_s:g} s)")
    return {
        "duration_s": _float_or_none(info.duration_s),
        "fps": _float_or_none(info.fps),
        "num_frames": _int_or_none(info.num_frames),
        "width": _int_or_none(info.width),
        "height": _int_or_none(info.height),
        "codec": info.codec,
        "size_bytes": size,
    }


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def probe_entries(
    entries: list[IngestEntry],
    workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any] | None], list[IngestFailure]]:
    """Probe entries in parallel threads; ``None`` marks an entry that failed.

    ``progress(done, total)`` is called once before probing and after each entry.
    """
    total = len(entries)
    results: list[dict[str, Any] | None] = [None] * total
    failures: dict[int, IngestFailure] = {}
    if progress:
        progress(0, total)
    if not entries:
        return results, []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(probe_entry, e): i for i, e in enumerate(entries)}
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as exc:  # every probe error is a per-entry failure
                failures[index] = IngestFailure(_describe(entries[index]), _describe_exc(exc))
            if progress:
                progress(done, total)
    return results, [failures[i] for i in sorted(failures)]


# --------------------------------------------------------------------------- writing


def _stored_rows(table: Any, ids: list[str]) -> dict[str, dict]:
    """Stored base columns of the rows with these ids."""
    columns = [n for n in VIDEOS_SCHEMA.names if n in set(table.schema.names)]
    return {r["video_id"]: r for r in _query_in(table, "video_id", ids, columns)}


def merge_row(
    probed: _Probed, stored: dict | None, now: dt.datetime
) -> dict[str, Any]:
    """The base-column row to write for one video (the field-merge rule)."""
    entry = probed.entry
    stored = stored or {}
    row: dict[str, Any] = {"video_id": probed.video_id, "uri": entry.uri, "ingested_at": now, "has_video": True}
    row.update(probed.facts)
    for name in KEPT_WHEN_MISSING:
        value = getattr(entry, name)
        row[name] = value if value is not None else stored.get(name)
    row["metadata"] = _merge_metadata(stored.get("metadata"), entry.metadata)
    return row


def _merge_metadata(stored: str | None, new: dict | None) -> str | None:
    if new is None:
        return stored
    try:
        old = json.loads(stored) if stored else {}
    except ValueError:
        old = {}
    merged = {**old, **new} if isinstance(old, dict) else dict(new)
    return json.dumps(merged, ensure_ascii=False, sort_keys=True, default=str)


def ensure_base_columns(table: Any) -> list[str]:
    """Add the nullable base columns an older ``videos`` table lacks (all NULL, in one commit that
    rewrites no data; stored values untouched); returns their names."""
    def add_missing() -> list[str]:
        present = set(table.schema.names)
        missing = [f for f in VIDEOS_SCHEMA if f.name not in present and f.nullable]
        if missing:
            table.to_lance().add_columns(pa.schema(missing))
            table.checkout_latest()
        return [f.name for f in missing]

    return retry_on_conflict(add_missing, table, "adding the base columns")


def _required_extra_columns(table: Any) -> list[str]:
    """Non-nullable columns beyond the base schema (new rows cannot be inserted then)."""
    base = set(VIDEOS_SCHEMA.names)
    return [f.name for f in table.schema if f.name not in base and not f.nullable]


def _write(table: Any, rows: list[dict], allow_insert: bool) -> tuple[int, int]:
    """One ``merge_insert`` of the base columns; returns ``(inserted, updated)``."""
    present = set(table.schema.names)
    schema = pa.schema([f for f in VIDEOS_SCHEMA if f.name in present])
    data = pa.Table.from_pylist(rows, schema=schema)
    builder = table.merge_insert("video_id").when_matched_update_all()
    if allow_insert:
        builder = builder.when_not_matched_insert_all()
    result = builder.execute(data)
    return int(result.num_inserted_rows), int(result.num_updated_rows)


# --------------------------------------------------------------------------- ingest


def _collect(
    inputs: Sequence[str] | Sequence[IngestEntry],
) -> tuple[list[IngestEntry], list[IngestFailure]]:
    """Expand string inputs; entries given directly are taken as they are (uri made canonical)."""
    entries: list[IngestEntry] = []
    failures: list[IngestFailure] = []
    for item in inputs:
        if isinstance(item, IngestEntry):
            try:
                entries.append(replace(item, uri=canonical_uri(item.uri)))
            except Exception as exc:
                failures.append(IngestFailure(_describe(item), _describe_exc(exc)))
        else:
            got, failed = _expand_one(str(item))
            entries.extend(got)
            failures.extend(failed)
    return entries, failures


def _with_defaults(
    entries: list[IngestEntry], source: str | None, split: str | None
) -> list[IngestEntry]:
    return [
        replace(e, source=e.source if e.source is not None else source,
                split=e.split if e.split is not None else split)
        for e in entries
    ]


def ingest(
    table: Any,
    inputs: Sequence[str] | Sequence[IngestEntry],
    *,
    source: str | None = None,
    split: str | None = None,
    probe_workers: int = 4,
    progress: Callable[[int, int], None] | None = None,
    store_bytes: bool = False,
) -> IngestReport:
    """Probe and register videos in ``table`` (the ``videos`` table) with one merge-insert.

    ``inputs`` are paths/URIs/globs/listings (see the module docstring) or ready
    :class:`IngestEntry` objects. ``source`` / ``split`` fill entries that do not give their
    own. ``store_bytes`` also stores each video's bytes in the ``video`` blob column. Returns
    counts, one failure per unusable input, and the table version afterwards.
    """
    entries, failures = _collect(inputs)
    entries, dup_failures = _drop_duplicates(_with_defaults(entries, source, split))
    failures.extend(dup_failures)
    ids = assign_ids(entries, table) if entries else []
    entries, ids, clash_failures = _unique_ids(entries, ids)
    failures.extend(clash_failures)
    facts, probe_failures = probe_entries(entries, probe_workers, progress)
    failures.extend(probe_failures)
    good = [
        _Probed(entry, vid, f)
        for entry, vid, f in zip(entries, ids, facts, strict=True)
        if f is not None
    ]
    if not good:
        return IngestReport(0, 0, failures, int(table.version))
    ensure_base_columns(table)
    stored = _stored_rows(table, [p.video_id for p in good])
    good, blocked = _split_blocked(table, good, stored)
    failures.extend(blocked)
    if not good:
        return IngestReport(0, 0, failures, int(table.version))
    now = dt.datetime.now(dt.UTC)
    rows = [merge_row(p, stored.get(p.video_id), now) for p in good]
    inserted, updated = _write(table, rows, allow_insert=not _required_extra_columns(table))
    failures.extend(_sync_video_bytes(table, rows, stored, store_bytes))
    return IngestReport(inserted, updated, failures, int(table.version))


def register_without_video(table: Any, entries: Sequence[IngestEntry]) -> IngestReport:
    """Register ``entries`` (each with its ``video_id``) as rows without a video file: ``has_video`` false,
    no probed facts. Rows already in the table are left as they are (a video ingested earlier stays);
    re-running inserts nothing twice."""
    entries = [e for e in entries if e.video_id]
    if not entries:
        return IngestReport(0, 0, [], int(table.version))
    ensure_base_columns(table)
    stored = _stored_rows(table, [e.video_id for e in entries])
    now = dt.datetime.now(dt.UTC)
    rows = [{"video_id": e.video_id, "uri": e.uri, "source": e.source, "split": e.split, "caption": e.caption,
             "captions": e.captions, "category": e.category, "start_s": e.start_s, "end_s": e.end_s,
             "metadata": _merge_metadata(None, e.metadata), "ingested_at": now, "has_video": False}
            for e in entries if e.video_id not in stored]
    if not rows or _required_extra_columns(table):
        return IngestReport(0, 0, [], int(table.version))
    present = set(table.schema.names)
    data = pa.Table.from_pylist(rows, schema=pa.schema([f for f in VIDEOS_SCHEMA if f.name in present]))
    result = table.merge_insert("video_id").when_not_matched_insert_all().execute(data)
    return IngestReport(int(result.num_inserted_rows), 0, [], int(table.version))


def _sync_video_bytes(table: Any, rows: list[dict], stored: dict[str, dict], store_bytes: bool) -> list[IngestFailure]:
    """Store (``store_bytes``) or clear stale video bytes of the written rows (see :mod:`tables.video_blobs`)."""
    from tables import video_blobs

    if not store_bytes:
        stale = video_blobs.stale_ids(stored, rows) if video_blobs.has_video_column(table) else []
        if stale:
            video_blobs.write_video_bytes(table, [(vid, None) for vid in stale])
        return []
    failures: list[IngestFailure] = []

    def payloads() -> Iterable[tuple[str, bytes | None]]:
        for row in rows:
            try:
                yield row["video_id"], video_blobs.read_bytes(row["uri"])
            except Exception as exc:  # a per-video failure; the bytes stay as they were
                failures.append(IngestFailure(row["uri"], f"bytes not stored: {_describe_exc(exc)}"))

    video_blobs.write_video_bytes(table, payloads())
    return failures


def _split_blocked(
    table: Any, good: list[_Probed], stored: dict[str, dict]
) -> tuple[list[_Probed], list[IngestFailure]]:
    """New videos cannot be inserted when the table has NOT NULL computed columns."""
    required = _required_extra_columns(table)
    if not required:
        return good, []
    reason = (
        f"cannot add a new row: the table's column(s) {', '.join(required)} are NOT NULL "
        "and have no value for it"
    )
    kept = [p for p in good if p.video_id in stored]
    blocked = [IngestFailure(_describe(p.entry), reason) for p in good if p.video_id not in stored]
    return kept, blocked
