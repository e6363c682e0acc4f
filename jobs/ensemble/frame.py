"""Events as columns: the form the ensemble analysis computes on.

An :class:`EventFrame` holds events of any number of models as NumPy arrays (integer codes for
video, label and model, times, confidences, visibility) next to the Arrow columns that are only
carried through (event ids, teams). Millions of events cost a few arrays, not millions of Python
objects; :class:`~jobs.ensemble.records.Detection` records are made only for the few events a
picture or a test looks at.

Codes index sorted vocabularies (:class:`Vocab`) shared by every frame of one analysis, so codes
compare across frames and code order is string order. Model codes index the frame's own model
list, whose order is the models' rank in the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.ensemble.arrow_build import string_buffers
from jobs.ensemble.errors import EnsembleDataError
from jobs.ensemble.records import DETECTION_COLUMNS, NOT_SHOWN, Detection, parse_half, parse_metadata


@dataclass(frozen=True)
class Vocab:
    """Sorted video ids and labels; codes are positions in these lists."""

    videos: tuple[str, ...]
    labels: tuple[str, ...]

    def video_code(self, video_id: str) -> int:
        """The code of ``video_id`` (``-1`` when the vocabulary lacks it)."""
        i = int(np.searchsorted(np.array(self.videos, dtype=object), video_id))
        return i if i < len(self.videos) and self.videos[i] == video_id else -1


class Column:
    """An Arrow column seen through an optional row selection (taking rows composes indices and
    copies nothing until values are asked for)."""

    def __init__(self, base: pa.Array, rows: np.ndarray | None = None) -> None:
        self.base = base
        self.rows = rows

    def __len__(self) -> int:
        return len(self.base) if self.rows is None else len(self.rows)

    def subset(self, positions: np.ndarray) -> Column:
        """The rows at ``positions`` (no copy of the values)."""
        positions = np.asarray(positions, dtype=np.int64)
        return Column(self.base, positions if self.rows is None else self.rows[positions])

    def take(self, positions: np.ndarray | pa.Array) -> pa.Array:
        """The values at ``positions`` as an Arrow array."""
        if isinstance(positions, pa.Array | pa.ChunkedArray):
            positions = positions.to_numpy(zero_copy_only=False)
        positions = np.asarray(positions, dtype=np.int64)
        rows = positions if self.rows is None else self.rows[positions]
        return self.base.take(pa.array(rows, pa.int64()))

    def array(self) -> pa.Array:
        """All values as an Arrow array."""
        return self.base if self.rows is None else self.base.take(pa.array(self.rows, pa.int64()))

    def to_pylist(self) -> list:
        """All values as Python objects."""
        return self.array().to_pylist()


@dataclass
class EventFrame:
    """Events as columns (see the module docstring). All arrays have one entry per event."""

    vocab: Vocab
    models: tuple[str, ...]
    video: np.ndarray  # int32 codes into vocab.videos
    label: np.ndarray  # int32 codes into vocab.labels
    model: np.ndarray  # int32 codes into models
    time: np.ndarray  # float64 seconds from the start of the video
    conf: np.ndarray  # float64, NaN where the event has no confidence
    key: np.ndarray  # uint64: the first 8 bytes of the event id, big-endian (a tie-break in id order)
    visible: np.ndarray  # bool: False for ground truth marked "not shown"
    event_id: Column
    team: Column
    run_id: Column
    game: pa.Array | None = None  # per event (ground truth only): the game in the metadata
    half: np.ndarray | None = None  # per event (ground truth only): the half, -1 where not given
    #: per event: its position in the file it was imported from (the ``entry`` of its metadata), NaN where it
    #: has none; the official grid keeps the last prediction of a file in a cell, so the order matters there
    order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.time)

    def take(self, idx: np.ndarray) -> EventFrame:
        """The events at positions ``idx`` (a new frame, same vocabulary and models)."""
        idx = np.asarray(idx, dtype=np.int64)
        arrow = pa.array(idx, pa.int64())
        return replace(
            self, video=self.video[idx], label=self.label[idx], model=self.model[idx], time=self.time[idx],
            conf=self.conf[idx], key=self.key[idx], visible=self.visible[idx],
            event_id=self.event_id.subset(idx), team=self.team.subset(idx), run_id=self.run_id.subset(idx),
            game=None if self.game is None else self.game.take(arrow),
            half=None if self.half is None else self.half[idx],
            order=None if self.order is None else self.order[idx],
        )

    def detections(self, idx: np.ndarray | None = None) -> list[Detection]:
        """Events (all, or those at ``idx``) as :class:`Detection` records."""
        idx = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        ids = self.event_id.take(idx).to_pylist()
        teams = self.team.take(idx).to_pylist()
        runs = self.run_id.take(idx).to_pylist()
        games = [None] * len(idx) if self.game is None else self.game.take(pa.array(idx, pa.int64())).to_pylist()
        out = []
        for j, i in enumerate(idx.tolist()):
            conf = float(self.conf[i])
            out.append(Detection(
                ids[j], self.vocab.videos[self.video[i]], self.models[self.model[i]], float(self.time[i]),
                self.vocab.labels[self.label[i]], None if math.isnan(conf) else conf, teams[j],
                bool(self.visible[i]), games[j],
                None if self.half is None or self.half[i] < 0 else int(self.half[i]), runs[j]))
        return out

    def video_ids(self) -> list[str]:
        """The distinct videos of the events, in id order."""
        return [self.vocab.videos[c] for c in np.unique(self.video).tolist()]


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column into its sorted distinct values."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], pa.dictionary(pa.int32(),
                                                                                                   pa.string()))
    values = encoded.dictionary.to_pylist()
    order = sorted(range(len(values)), key=values.__getitem__)
    remap = np.empty(len(values), dtype=np.int32)
    remap[order] = np.arange(len(values), dtype=np.int32)
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return remap[indices] if len(values) else np.zeros(0, np.int32), [values[i] for i in order]


@numba.njit(cache=True, nogil=True)
def _prefix_keys(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = len(offsets) - 1
    out = np.zeros(n, dtype=np.uint64)
    for i in range(n):
        start, end = offsets[i], offsets[i + 1]
        key = np.uint64(0)
        for j in range(8):
            byte = np.uint64(data[start + j]) if start + j < end else np.uint64(0)
            key = (key << np.uint64(8)) | byte
        out[i] = key
    return out


def id_keys(ids: pa.Array) -> np.ndarray:
    """The first 8 bytes of each string as a big-endian ``uint64`` (orders like the strings' prefixes)."""
    offsets, data = string_buffers(ids)
    return _prefix_keys(offsets, data)


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(pc.cast(column, pa.float64()), float("nan")).to_numpy(zero_copy_only=False).astype(
        np.float64, copy=False)


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    return column


def _first_bad(table: pa.Table, mask: np.ndarray) -> dict[str, Any]:
    i = int(np.flatnonzero(mask)[0])
    return table.slice(i, 1).to_pylist()[0]


def frame_from_arrow(table: pa.Table, models: Sequence[str], vocab: Vocab | None = None,
                     ground_truth: str | None = None) -> EventFrame:
    """Rows of ``events`` (at least :data:`~jobs.ensemble.records.DETECTION_COLUMNS`) as a frame.

    ``models`` is the rank order of the models (rows of other models are an error); ``vocab``
    defaults to the videos and labels of ``table``. The metadata of ``ground_truth`` rows gives
    visibility, game and half. Raises :class:`~jobs.ensemble.errors.EnsembleDataError` (a
    ``ValueError``) naming the first event whose time is negative or not finite, whose confidence
    is not finite, or whose metadata is not a JSON object.
    """
    missing = [c for c in DETECTION_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"events rows lack the columns {missing}")
    video, videos = _codes(table.column("video_id"))
    label, labels = _codes(table.column("label"))
    if vocab is None:
        vocab = Vocab(tuple(videos), tuple(labels))
    else:
        video = _recode(video, videos, vocab.videos, "video")
        label = _recode(label, labels, vocab.labels, "label")
    model_codes, model_names = _codes(table.column("model"))
    unknown = sorted(set(model_names) - set(models))
    if unknown:
        raise ValueError(f"events of models {unknown} given, expected only {list(models)}")
    model = _recode(model_codes, model_names, tuple(models), "model", sorted_target=False)
    time_s = _floats(table.column("time_s"))
    bad = ~np.isfinite(time_s) | (time_s < 0)
    if bad.any():
        row = _first_bad(table, bad)
        raise EnsembleDataError(f"event {row['event_id']} ({row['model']} on {row['video_id']}): time_s must be >= 0, "
                         f"got {row['time_s']}")
    conf_col = table.column("confidence")
    conf = _floats(conf_col)
    bad = np.isinf(conf) | (np.isnan(conf) & pc.is_valid(conf_col).to_numpy(zero_copy_only=False))
    if bad.any():
        row = _first_bad(table, bad)
        raise EnsembleDataError(f"event {row['event_id']} ({row['model']} on {row['video_id']}): confidence is "
                         f"{row['confidence']}")
    event_ids = _flat(table.column("event_id"))
    frame = EventFrame(vocab, tuple(models), video, label, model, time_s, conf, id_keys(event_ids),
                       np.ones(len(time_s), dtype=bool), Column(event_ids), Column(_flat(table.column("team"))),
                       Column(_flat(table.column("run_id"))))
    if ground_truth is not None and ground_truth in models:
        _read_truth_metadata(frame, table, models.index(ground_truth))
    frame.order = file_order(table.column("metadata"))
    return frame


_ENTRY = r'"entry": (?P<entry>\d+)'


def file_order(metadata: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Per event, the ``entry`` (position in the imported file) its metadata JSON records, NaN where
    none; ``None`` when no event has one. Read with a regular expression over the JSON text (the
    metadata is written with sorted keys), not by parsing every row."""
    if len(metadata) == 0:
        return None
    if isinstance(metadata, pa.ChunkedArray):
        metadata = metadata.combine_chunks()
    matched = pc.match_substring_regex(metadata, _ENTRY)  # null metadata: null
    if not pc.any(matched).as_py():
        return None
    found = pc.extract_regex(metadata, _ENTRY).field("entry")
    found = pc.if_else(pc.fill_null(matched, False), found, pa.scalar(None, pa.string()))
    return pc.cast(found, pa.float64()).to_numpy(zero_copy_only=False)


def _recode(codes: np.ndarray, values: Sequence[str], target: Sequence[str], what: str,
            sorted_target: bool = True) -> np.ndarray:
    """Codes into ``values`` as codes into ``target`` (every value must be in ``target``)."""
    position = {v: i for i, v in enumerate(target)}
    missing = [v for v in values if v not in position]
    if missing:
        raise ValueError(f"{what} {missing[0]!r} is not in the vocabulary")
    remap = np.array([position[v] for v in values], dtype=np.int32)
    return remap[codes] if len(values) else codes.astype(np.int32)


def _read_truth_metadata(frame: EventFrame, table: pa.Table, code: int) -> None:
    """Visibility, game and half of the ground-truth rows from their metadata JSON."""
    rows = np.flatnonzero(frame.model == code)
    games: list[str] = []
    game_of = np.full(len(frame), -1, dtype=np.int64)  # per event: its position in games, -1 for none
    half = np.full(len(frame), -1, dtype=np.int64)
    if rows.size:
        metadata = table.column("metadata").take(pa.array(rows)).to_pylist()
        ids = frame.event_id.take(rows).to_pylist()
        for i, raw, eid in zip(rows.tolist(), metadata, ids, strict=True):
            meta = parse_metadata(raw, eid)
            frame.visible[i] = meta.get("visibility") != NOT_SHOWN
            if meta.get("game") is not None:
                game_of[i] = len(games)
                games.append(str(meta["game"]))
            value = parse_half(meta.get("half"), eid)
            half[i] = -1 if value is None else value
    frame.game = pa.array(games, pa.string()).take(pa.array(game_of, pa.int64(), mask=game_of < 0))
    frame.half = half


def frame_from_detections(detections: Sequence[Detection], models: Sequence[str] | None = None,
                          vocab: Vocab | None = None) -> EventFrame:
    """Detections as a frame (``models``: rank order, default the models in order of appearance)."""
    if models is None:
        models = list(dict.fromkeys(d.model for d in detections))
    table = pa.table({
        "event_id": pa.array([d.event_id for d in detections], pa.string()),
        "video_id": pa.array([d.video_id for d in detections], pa.string()),
        "model": pa.array([d.model for d in detections], pa.string()),
        "run_id": pa.array([d.run_id for d in detections], pa.string()),
        "time_s": pa.array([d.time_s for d in detections], pa.float64()),
        "label": pa.array([d.label for d in detections], pa.string()),
        "team": pa.array([d.team for d in detections], pa.string()),
        "confidence": pa.array([d.confidence for d in detections], pa.float64()),
        "metadata": pa.nulls(len(detections), pa.string()),
    })
    frame = frame_from_arrow(table, list(models), vocab)
    frame.visible = np.array([d.visible for d in detections], dtype=bool)
    frame.game = pa.array([d.game for d in detections], pa.string())
    frame.half = np.array([-1 if d.half is None else d.half for d in detections], dtype=np.int64)
    return frame


def shared_vocab(*groups: Sequence[Detection]) -> Vocab:
    """The vocabulary of all videos and labels of ``groups`` of detections."""
    videos = sorted({d.video_id for g in groups for d in g})
    labels = sorted({d.label for g in groups for d in g})
    return Vocab(tuple(videos), tuple(labels))
