"""The ``windows`` table: one row per analysis window of every video (what detectors run on).

Grid
----
A video's range is ``[start, end)`` with ``start = videos.start_s`` (else 0) and ``end =
videos.end_s`` (else ``duration_s``), in seconds within the video file. Window ``k`` starts at
``start + k * step`` for every ``k`` whose start lies before ``end``, and ends at
``min(start_k + window, end)``: the last windows are partial (kept, as the earlier pipelines
did), and a video shorter than one window still gets its windows (``[0, 3)`` and ``[2, 3)`` for
a 3 s video with the default 4 s window and 2 s step). Detectors decode a window at ``fps``
(``udfs.decode.SamplingPlan.window``: instants ``start_k + i / fps`` before ``end_k``).

Rows
----
``window_id`` (int64, the key): a hash of the video id, the window index and its start and end
(so it is the same on every refresh, and a video whose clip range changed gets new ids);
``video_id``, ``uri``, ``window_index``, ``start_s``, ``end_s``; and the settings
``window_s``, ``step_s``, ``fps``. Detector columns (``detections_llava`` ...) are geneva UDF
columns added to this table by ``vw backfill``.

Refresh (:func:`refresh_windows`) is incremental and idempotent: windows of new videos are
added, windows whose video left ``videos`` (or whose clip range changed) are deleted, every
other row, with its computed detector cells, is left untouched. One table holds one setting of
``window``/``step``/``fps``: asking for other settings is refused (:class:`WindowSettingsError`)
unless ``recreate=True``, which drops the table, its detector columns included, and builds it
again.

Why a table and not a geneva chunker view: with geneva 0.17.0 a chunker view refreshes, but
once a UDF column (a detector) is added to the view, the next refresh fails (it looks for the
view's UDF column in the source table), and every refresh is a Ray job of ~10 s. Computing the
grid needs only ``videos``' columns, so a plain table kept in step with ``merge``-style writes
keyed on ``window_id`` does the same work without Ray.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tables.connection import open_videos, table_exists
from tables.filters import sql_quote
from tables.names import WINDOWS
from udfs.errors import NotFoundError, VwError

DEFAULT_WINDOW_S = 4.0
DEFAULT_STEP_S = 2.0
DEFAULT_FPS = 1.0
#: Starts closer than this to the end of the range open no window (float noise of k * step).
_EPS = 1e-6

WINDOWS_SCHEMA = pa.schema(
    [
        pa.field("window_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("window_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("window_s", pa.float64(), nullable=False),
        pa.field("step_s", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
    ]
)


class WindowSettingsError(VwError, ValueError):
    """Window settings that are invalid, or that differ from the ones the ``windows`` table was built with."""


@dataclass(frozen=True)
class WindowSettings:
    """Window length and step (seconds) and the frame rate detectors sample windows at."""

    window_s: float = DEFAULT_WINDOW_S
    step_s: float = DEFAULT_STEP_S
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        for name in ("window_s", "step_s", "fps"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise WindowSettingsError(f"window setting {name} must be a positive number, got {value!r}")
        if self.step_s > self.window_s:
            raise WindowSettingsError(
                f"the step ({self.step_s:g} s) is longer than the window ({self.window_s:g} s): "
                "parts of the videos would never be analysed"
            )

    def describe(self) -> str:
        """``window 4 s, step 2 s, 1 fps``."""
        return f"window {self.window_s:g} s, step {self.step_s:g} s, {self.fps:g} fps"


@dataclass(frozen=True)
class Window:
    """One analysis window of one video."""

    window_id: int
    video_id: str
    uri: str
    window_index: int
    start_s: float
    end_s: float

    @property
    def centre_s(self) -> float:
        """The middle of the window (the time of the events detected in it)."""
        return (self.start_s + self.end_s) / 2


def window_id(video_id: str, index: int, start_s: float, end_s: float) -> int:
    """The deterministic key of a window: 63 bits of a hash of video, index, start and end."""
    key = f"{video_id}\x1f{index}\x1f{start_s:.6f}\x1f{end_s:.6f}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def window_grid(start_s: float, end_s: float, window_s: float, step_s: float) -> list[tuple[float, float]]:
    """``(start, end)`` of every window over ``[start_s, end_s)`` (see the module documentation)."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
        raise ValueError(f"the range [{start_s}, {end_s}) is empty or not finite")
    out = []
    k = 0
    while True:
        begin = round(start_s + k * step_s, 6)
        if begin >= end_s - _EPS:
            return out
        out.append((begin, round(min(begin + window_s, end_s), 6)))
        k += 1


def video_range(row: dict[str, Any]) -> tuple[float, float]:
    """``(start, end)`` analysed for a ``videos`` row; raises ``ValueError`` naming the problem."""
    start = row.get("start_s")
    end = row.get("end_s")
    start = 0.0 if start is None else float(start)
    if end is None:
        duration = row.get("duration_s")
        if duration is None:
            raise ValueError("no duration_s and no end_s: the video's length is unknown")
        end = float(duration)
    if not end > start:
        raise ValueError(f"the range [{start:g}, {end:g}) s is empty")
    return start, float(end)


def windows_of(row: dict[str, Any], settings: WindowSettings) -> list[Window]:
    """The windows of one ``videos`` row (``video_id``, ``uri``, ``start_s``, ``end_s``, ``duration_s``)."""
    start, end = video_range(row)
    vid, uri = row["video_id"], row["uri"]
    return [
        Window(window_id(vid, i, s, e), vid, uri, i, s, e)
        for i, (s, e) in enumerate(window_grid(start, end, settings.window_s, settings.step_s))
    ]


def windows_to_arrow(windows: Iterable[Window], settings: WindowSettings) -> pa.Table:
    """Windows as rows of :data:`WINDOWS_SCHEMA`."""
    rows = [
        {"window_id": w.window_id, "video_id": w.video_id, "uri": w.uri, "window_index": w.window_index,
         "start_s": w.start_s, "end_s": w.end_s, "window_s": float(settings.window_s),
         "step_s": float(settings.step_s), "fps": float(settings.fps)}
        for w in windows
    ]
    return pa.Table.from_pylist(rows, schema=WINDOWS_SCHEMA)


@dataclass
class WindowsReport:
    """What one refresh did."""

    settings: WindowSettings
    videos: int = 0
    added: int = 0
    removed: int = 0
    moved: int = 0  # videos whose uri changed (their windows now point at the new location)
    total: int = 0
    version: int = 0
    recreated: bool = False
    #: ``(video_id, problem)`` of videos that got no windows.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def stored_settings(table: Any) -> WindowSettings | None:
    """The settings the rows of ``table`` were built with (None for an empty table)."""
    if table.count_rows() == 0:
        return None
    first = table.search().select(["window_s", "step_s", "fps"]).limit(1).to_arrow().to_pylist()[0]
    return WindowSettings(first["window_s"], first["step_s"], first["fps"])


def open_windows(conn: Any, create: bool = False) -> Any:
    """Open the ``windows`` table (created empty when missing and ``create``)."""
    if table_exists(conn, WINDOWS):
        return conn.open_table(WINDOWS)
    if not create:
        raise NotFoundError(f"the warehouse at {conn.uri} has no '{WINDOWS}' table yet: run `vw windows` first")
    return conn.create_table(WINDOWS, schema=WINDOWS_SCHEMA)


def _expected(conn: Any, settings: WindowSettings, report: WindowsReport) -> dict[int, Window]:
    videos = open_videos(conn, create=False)
    rows = videos.to_lance().to_table(columns=["video_id", "uri", "start_s", "end_s", "duration_s"]).to_pylist()
    report.videos = len(rows)
    out: dict[int, Window] = {}
    for row in rows:
        try:
            for w in windows_of(row, settings):
                out[w.window_id] = w
        except ValueError as err:
            report.skipped.append((row["video_id"], str(err)))
    return out


def refresh_windows(conn: Any, settings: WindowSettings | None = None, recreate: bool = False) -> WindowsReport:
    """Bring ``windows`` in step with ``videos`` (see the module documentation)."""
    settings = settings or WindowSettings()
    report = WindowsReport(settings)
    if recreate and table_exists(conn, WINDOWS):
        conn.drop_table(WINDOWS)
        report.recreated = True
    table = open_windows(conn, create=True)
    stored = stored_settings(table)
    if stored is not None and stored != settings:
        raise WindowSettingsError(
            f"the '{WINDOWS}' table was built with {stored.describe()}, not {settings.describe()}; "
            f"changing them would invalidate every detection: run `vw windows` with the stored settings, or "
            f"add --recreate to drop the table (with its detector columns) and rebuild it"
        )
    expected = _expected(conn, settings, report)
    stored_uri = dict(zip(*table.to_lance().to_table(columns=["window_id", "uri"]).to_pydict().values(), strict=True))
    have = set(stored_uri)
    new = [w for wid, w in expected.items() if wid not in have]
    stale = sorted(have - set(expected))
    moved = {w.video_id: w.uri for wid, w in expected.items() if wid in have and stored_uri[wid] != w.uri}
    for vid, uri in sorted(moved.items()):  # a re-ingested file at another location: same windows
        table.update(where=f"video_id = {sql_quote(vid)}", values={"uri": uri})
    if new:
        table.add(windows_to_arrow(sorted(new, key=lambda w: (w.video_id, w.window_index)), settings))
    for i in range(0, len(stale), 1000):
        table.delete(f"window_id IN ({', '.join(str(w) for w in stale[i : i + 1000])})")
    report.added, report.removed, report.moved = len(new), len(stale), len(moved)
    report.total = table.count_rows()
    report.version = table.version
    return report
