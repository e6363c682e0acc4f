"""Fusion of matched groups into one ensemble model, with per-class NMS over time.

Each agreement group (lone events included) becomes one candidate of its label whose confidence
is the weighted mean of its members' confidences over *all* models (a model missing from the
group counts as 0) and whose time is the members' mean time weighted by weight x confidence;
members of a disagreeing group are candidates of their own labels. Candidates then go through
per-class non-maximum suppression over time on each video (:data:`~jobs.ensemble.options.NmsMode`):
``hard`` drops candidates within the window of a stronger one, ``soft`` multiplies their
confidence by ``exp(-overlap**2 / sigma)`` with ``overlap = 1 - |dt| / window`` (Gaussian
soft-NMS), ``none`` keeps them all. The window is ``FusionOptions.nms_window_s``, by default the
matching tolerance. Candidates under ``min_confidence`` are dropped, and of candidates that
would share one event id (soft or no NMS) the strongest is kept.

The settings are :class:`~jobs.ensemble.options.FusionOptions`; :func:`fuse_matching` turns a
:class:`~jobs.ensemble.matching.Matching` into :class:`Fused` columns, and :meth:`Fused.frame`
gives the fused events their ``events`` ids (:func:`fused_event_ids`, hashed in bulk).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.ensemble.arrow_build import constant, texts
from jobs.ensemble.frame import Column, EventFrame, id_keys
from jobs.ensemble.kernels import first_max, grouped_order, hard_nms, keyed_sha1_hex, soft_nms, spread
from jobs.ensemble.matching import DISAGREE, FIXED_CATEGORIES, Matching
from jobs.ensemble.options import FusionOptions, check_models
from tables.events import event_id

_DISAGREE = FIXED_CATEGORIES.index(DISAGREE)


@dataclass
class Fused:
    """The ensemble model's events as columns, with the input events each was fused from.

    ``sources[source_starts[i]:source_starts[i + 1]]`` are the input events (positions in
    ``inputs``, in model order) of fused event ``i``. Events are in order of video, time, label.
    """

    inputs: EventFrame
    video: np.ndarray
    label: np.ndarray
    time: np.ndarray
    conf: np.ndarray
    team: pa.Array
    category: np.ndarray  # codes into category_names(inputs.models)
    sources: np.ndarray
    source_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    def frame(self, model: str, run_id: str | None) -> EventFrame:
        """The fused events as a frame of ``model`` (event ids as ``events`` keys them)."""
        ids = fused_event_ids(self, model, run_id)
        n = len(self)
        return EventFrame(self.inputs.vocab, (model,), self.video.copy(), self.label.copy(),
                          np.zeros(n, dtype=np.int32), self.time.copy(), self.conf.copy(),
                          id_keys(ids), np.ones(n, dtype=bool), Column(ids), Column(self.team),
                          Column(constant(run_id, n, pa.string())))


def round_ms(times: np.ndarray) -> np.ndarray:
    """``round(t, 3)`` of every time, exactly as Python rounds (NumPy's rounding differs on ties)."""
    out = np.round(times, 3)
    scaled = times * 1000
    near_tie = np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6)
    for i in near_tie.tolist():
        out[i] = round(float(times[i]), 3)
    return out


#: Fused events hashed per task when many are hashed on several cores.
_HASH_SLICE = 500_000


def fused_event_ids(fused: Fused, model: str, run_id: str | None) -> pa.Array:
    """:func:`tables.events.event_id` of every fused event (the same hash, computed in bulk)."""
    vocab = fused.inputs.vocab
    n = len(fused)
    if n == 0:
        return pa.array([], pa.string())
    if float(fused.time.max()) >= 1e12:  # beyond the compiled time formatting
        teams = fused.team.to_pylist()
        return pa.array([event_id(vocab.videos[v], model, run_id, t, vocab.labels[lab], team) for v, lab, t, team
                         in zip(fused.video.tolist(), fused.label.tolist(), fused.time.tolist(), teams, strict=True)],
                        pa.string())
    head_starts, head_data = texts([json.dumps([v, model, run_id or ""])[:-1] + ", " for v in vocab.videos])
    team_code = _team_codes(fused.team)
    team_names = pc.dictionary_encode(fused.team).dictionary.to_pylist()
    width = len(team_names) + 1
    tail = fused.label.astype(np.int64) * width + team_code + 1
    tail_starts, tail_data = texts([", " + json.dumps(label) + ", " + json.dumps(team or "") + "]"
                                    for label in vocab.labels for team in [None, *team_names]])
    millis = np.rint(fused.time * 1000).astype(np.int64)
    video = fused.video.astype(np.int64)

    def hashed(rows: slice) -> np.ndarray:
        return keyed_sha1_hex(head_data, head_starts, video[rows], millis[rows], tail_data, tail_starts, tail[rows],
                              20)

    # the kernel releases the GIL: large batches are hashed in slices on every core
    slices = [slice(s, s + _HASH_SLICE) for s in range(0, n, _HASH_SLICE)]
    if len(slices) > 1:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            digits = np.concatenate(list(pool.map(hashed, slices)))
    else:
        digits = hashed(slice(0, n))
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * 20).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(digits.tobytes()))


def _units(matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    """Candidate units: agreement groups whole, disagreeing groups one per member.

    Returns (events sorted by unit and model, unit starts)."""
    order = matching.members
    boundary = matching.event_category()[order] == _DISAGREE
    boundary = np.concatenate([boundary, [True]])
    boundary[matching.starts] = True
    return order, np.flatnonzero(boundary).astype(np.int64)


def fuse_matching(matching: Matching, options: FusionOptions) -> Fused:
    """The ensemble model's events from a :class:`~jobs.ensemble.matching.Matching` (see the
    module docstring); an unset NMS window is the matching's tolerance."""
    frame = matching.frame
    models = check_models(frame.models)
    options.check(models, matching.tolerance_s)
    window_s = float(options.nms_window(matching.tolerance_s))
    weight = np.array([options.weight(m) for m in models], dtype=np.float64)
    total = float(weight.sum())
    order, starts = _units(matching)
    heads = starts[:-1]
    n_units = len(heads)
    if n_units == 0:
        empty = np.zeros(0, np.int64)
        return Fused(frame, empty.astype(np.int32), empty.astype(np.int32), np.zeros(0), np.zeros(0),
                     pa.array([], pa.string()), empty, empty, np.zeros(1, np.int64))
    w = weight[frame.model[order]]
    c = frame.conf[order]
    t = frame.time[order]
    mass = np.add.reduceat(w * c, heads)
    conf = mass / total
    sizes = np.diff(starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        time_s = np.where(mass > 0, np.add.reduceat(w * c * t, heads) / mass, np.add.reduceat(t, heads) / sizes)
    time_s = round_ms(time_s)
    lead = first_max(order, starts, frame.conf)
    first = order[heads]
    video, label = frame.video[first], frame.label[first]
    category = matching.event_category()[first]
    team = frame.team.take(pa.array(lead, pa.int64()))
    # per-class NMS over time on each video, strongest first
    n_labels = max(len(frame.vocab.labels), 1)
    n_videos = max(len(frame.vocab.videos), 1)
    bucket = video.astype(np.int64) * n_labels + label
    nms_order, nms_starts = grouped_order(bucket, n_videos * n_labels, -conf, time_s, np.zeros(n_units, np.uint64))
    if options.nms == "hard":
        keep = hard_nms(nms_order, nms_starts, time_s, window_s)
    else:
        keep = np.ones(n_units, dtype=bool)
        if options.nms == "soft":
            conf = soft_nms(nms_order, nms_starts, time_s, conf, window_s, float(options.soft_nms_sigma))
    keep &= conf >= options.min_confidence
    kept = np.flatnonzero(keep)
    if options.nms != "hard":
        kept = _strongest_per_id(kept, bucket, time_s, _team_codes(team), conf, n_videos * n_labels)
    final = kept[grouped_order(video[kept].astype(np.int64), n_videos, time_s[kept], label[kept].astype(np.float64),
                               np.zeros(len(kept), np.uint64))[0]]
    src_sizes = sizes[final]
    src_starts = np.concatenate([[0], np.cumsum(src_sizes)]).astype(np.int64)
    src = order[spread(starts[final], src_sizes)]
    return Fused(frame, video[final], label[final], time_s[final], conf[final],
                 team.take(pa.array(final, pa.int64())), category[final], src, src_starts)


def _strongest_per_id(kept: np.ndarray, bucket: np.ndarray, time_s: np.ndarray, team: np.ndarray, conf: np.ndarray,
                      n_buckets: int) -> np.ndarray:
    """Of candidates that would share one event id (video, label, millisecond, team), the strongest.

    Hard NMS never keeps two such candidates; soft or no NMS can."""
    order, _ = grouped_order(bucket[kept], n_buckets, time_s[kept], team[kept].astype(np.float64),
                             np.zeros(len(kept), np.uint64))
    ordered = kept[order]
    if len(ordered) < 2:
        return ordered
    same = ((bucket[ordered][1:] == bucket[ordered][:-1]) & (time_s[ordered][1:] == time_s[ordered][:-1])
            & (team[ordered][1:] == team[ordered][:-1]))
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1, [len(ordered)]]).astype(np.int64)
    return first_max(ordered, starts, conf)


def _team_codes(team: pa.Array) -> np.ndarray:
    """Integer codes of team names (null is -1)."""
    encoded = pc.dictionary_encode(team)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return np.where(pc.is_valid(team).to_numpy(zero_copy_only=False), codes, -1).astype(np.int64) \
        if len(team) else np.zeros(0, np.int64)
