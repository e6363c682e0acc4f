"""Rows an ensemble run writes, built as Arrow columns: ``ensemble_matches`` rows and the fused
events for ``events``. Millions of rows are gathered with ``take`` and list offsets, never one
Python object per row."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from jobs.ensemble.arrow_build import constant, string_buffers, strings, texts
from jobs.ensemble.frame import EventFrame
from jobs.ensemble.fusion import Fused
from jobs.ensemble.kernels import first_max, json_ids_safe, json_sources, spread
from jobs.ensemble.matching import Matching, category_names
from jobs.ensemble.metrics import TruthClaims
from tables.ensemble_results import MATCHES_SCHEMA, SCOPE_GROUND_TRUTH, SCOPE_MODELS
from tables.events import EVENTS_SCHEMA


def _idx(positions: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(positions, dtype=np.int64), pa.int64())


def _names(values: Sequence[str], codes: np.ndarray) -> pa.Array:
    return pa.array(list(values), pa.string()).take(_idx(codes))


def _lists(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32), pa.int32()), values)


def _table(columns: dict[str, pa.Array], n: int, run_id: str) -> pa.Table:
    now = dt.datetime.now(dt.UTC)
    data = {}
    for f in MATCHES_SCHEMA:
        if f.name == "run_id":
            data[f.name] = constant(run_id, n, f.type)
        elif f.name == "created_at":
            data[f.name] = constant(now, n, f.type)
        else:
            data[f.name] = columns.get(f.name, pa.nulls(n, f.type))
    return pa.table(data, schema=MATCHES_SCHEMA)


def model_match_rows(run_id: str, matching: Matching) -> pa.Table:
    """Scope ``models``: every input event with its category, group and partners (group order)."""
    frame = matching.frame
    rows = matching.members  # events in group and model order
    sizes = matching.sizes
    row_group = matching.group[rows]
    row_size = sizes[row_group]
    # every member of the row's group, then the same without the row itself
    flat = rows[spread(matching.starts[row_group], row_size)] if len(rows) else rows
    row_of_flat = np.repeat(np.arange(len(rows)), row_size)
    is_partner = flat != rows[row_of_flat]
    partners = flat[is_partner]
    partner_offsets = np.concatenate([[0], np.cumsum(row_size - 1)]).astype(np.int64)
    # the partner time: the most confident other member (ties: the model listed first)
    lead = first_max(partners, partner_offsets, frame.conf)
    partner_time = np.where(lead >= 0, frame.time[np.maximum(lead, 0)], np.nan)
    take = _idx(rows)
    columns = {
        "scope": constant(SCOPE_MODELS, len(rows), pa.string()),
        "video_id": _names(frame.vocab.videos, frame.video[rows]),
        "model": _names(frame.models, frame.model[rows]),
        "label": _names(frame.vocab.labels, frame.label[rows]),
        "event_id": frame.event_id.take(take),
        "time_s": pa.array(frame.time[rows], pa.float64()),
        "confidence": pa.array(frame.conf[rows], pa.float64(), from_pandas=True),
        "category": _names(category_names(frame.models), matching.category[row_group]),
        "group_id": pa.array(row_group, pa.int64()),
        "matched_models": _lists(np.concatenate([[0], np.cumsum(row_size)]), _names(frame.models, frame.model[flat])),
        "partner_event_ids": _lists(partner_offsets, frame.event_id.take(_idx(partners))),
        "partner_labels": _lists(partner_offsets, _names(frame.vocab.labels, frame.label[partners])),
        "partner_time_s": pa.array(partner_time, pa.float64(), from_pandas=True),
    }
    return _table(columns, len(rows), run_id)


def truth_match_rows(run_id: str, model: str, claims: TruthClaims) -> pa.Table:
    """Scope ``ground_truth`` for one model: its predictions as ``tp`` / ``fp`` and the ground
    truth it missed as ``fn`` (with the ground truth's event id, time and label)."""
    preds, truths = claims.predictions, claims.truths
    order = claims.order
    claimed = claims.claimed[order]
    missed = claims.truth_order[~claims.used[claims.truth_order]]
    n_pred, n_missed = len(order), len(missed)
    n = n_pred + n_missed
    hit = claimed >= 0
    vocab = preds.vocab
    partner_offsets = np.concatenate([[0], np.cumsum(np.concatenate([hit.astype(np.int64),
                                                                     np.zeros(n_missed, np.int64)]))])
    partners = claimed[hit]
    category = np.concatenate([np.where(hit, 0, 1), np.full(n_missed, 2)])
    columns = {
        "scope": constant(SCOPE_GROUND_TRUTH, n, pa.string()),
        "video_id": _names(vocab.videos, np.concatenate([preds.video[order], truths.video[missed]])),
        "model": constant(model, n, pa.string()),
        "label": _names(vocab.labels, np.concatenate([preds.label[order], truths.label[missed]])),
        "event_id": pa.concat_arrays([preds.event_id.take(_idx(order)).cast(pa.string()),
                                      truths.event_id.take(_idx(missed)).cast(pa.string())]),
        "time_s": pa.array(np.concatenate([preds.time[order], truths.time[missed]]), pa.float64()),
        "confidence": pa.array(np.concatenate([preds.conf[order], np.full(n_missed, np.nan)]), pa.float64(),
                               from_pandas=True),
        "category": _names(["tp", "fp", "fn"], category),
        "matched_models": _lists(np.arange(n + 1), constant(model, n, pa.string())),
        "partner_event_ids": _lists(partner_offsets, truths.event_id.take(_idx(partners)).cast(pa.string())),
        "partner_labels": _lists(partner_offsets, _names(vocab.labels, truths.label[partners])),
        "partner_time_s": pa.array(np.concatenate([np.where(hit, truths.time[np.maximum(claimed, 0)], np.nan)
                                                   if n_pred else np.zeros(0), np.full(n_missed, np.nan)]),
                                   pa.float64(), from_pandas=True),
    }
    return _table(columns, n, run_id)


def _sources_json(fused: Fused) -> pa.Array:
    """Per fused event: ``{"category": ..., "source_models": [...], "sources": [<event ids>]}``."""
    inputs = fused.inputs
    src = fused.sources
    heads = texts([f'{{"category": {json.dumps(c)}, "source_models": [' for c in category_names(inputs.models)])
    models = texts([json.dumps(m) for m in inputs.models])
    ids = inputs.event_id
    id_starts, id_data = string_buffers(ids.base)
    source_id = src if ids.rows is None else ids.rows[src]
    quote = bool(json_ids_safe(id_data, id_starts, source_id))
    if not quote:  # ids that need escaping: quote them as Python's json does
        quoted = [json.dumps(v) for v in ids.base.take(pa.array(source_id, pa.int64())).to_pylist()]
        id_starts, id_data = texts(quoted)
        source_id = np.arange(len(src), dtype=np.int64)
    offsets, data = json_sources(heads[1], heads[0], np.asarray(fused.category, dtype=np.int64), models[1],
                                 models[0], inputs.model[src].astype(np.int64), id_data, id_starts, source_id,
                                 np.asarray(fused.source_starts, dtype=np.int64), quote)
    return strings(offsets, data)


def fused_event_rows(fused: Fused, frame: EventFrame, run_id: str) -> pa.Table:
    """The fused events as ``events`` rows (``frame``: :meth:`Fused.frame` of the ensemble model):
    ``details`` names the models fused, ``metadata`` holds the source event ids, their models and
    the category."""
    inputs = fused.inputs
    n = len(fused)
    src = fused.sources
    offsets = fused.source_starts
    # which models each fused event came from, as a bit mask
    mask = np.bitwise_or.reduceat(np.left_shift(1, inputs.model[src].astype(np.int64)), offsets[:-1]) if n \
        else np.zeros(0, np.int64)
    combos = ["fused from " + " + ".join(m for i, m in enumerate(inputs.models) if code >> i & 1)
              for code in range(1 << len(inputs.models))] if len(inputs.models) <= 16 else None
    details = _names(combos, mask) if combos is not None else pa.nulls(n, pa.string())
    metadata = _sources_json(fused)
    now = dt.datetime.now(dt.UTC)
    columns = {
        "event_id": frame.event_id.array(),
        "video_id": _names(inputs.vocab.videos, fused.video),
        "model": constant(frame.models[0], n, pa.string()),
        "run_id": constant(run_id, n, pa.string()),
        "time_s": pa.array(fused.time, pa.float64()),
        "label": _names(inputs.vocab.labels, fused.label),
        "team": fused.team.cast(pa.string()),
        "confidence": pa.array(fused.conf, pa.float64()),
        "details": details,
        "metadata": metadata,
        "created_at": constant(now, n, EVENTS_SCHEMA.field("created_at").type),
    }
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in EVENTS_SCHEMA}, schema=EVENTS_SCHEMA)
