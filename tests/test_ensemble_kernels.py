"""Compiled kernels and Arrow builders of the ensemble analysis against plain NumPy / Python."""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from jobs.ensemble import Detection, FusionOptions, frame_from_detections, fuse_matching, match_frame
from jobs.ensemble import fusion as ensemble
from jobs.ensemble.arrow_build import constant, string_buffers, strings, texts
from jobs.ensemble.heap import _LIBC, heap_retained, retained_heap
from jobs.ensemble.kernels import grouped_order, json_ids_safe, json_sources, keyed_sha1_hex, sort_runs
from jobs.ensemble.rows import fused_event_rows
from tables.events import event_id


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_order_matches_lexsort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_codes = 20_000, 37
    # long runs (hundreds per code), coarse keys so that ties on k1 and on (k1, k2) are common,
    # and one code whose k1 is constant (a tie span far longer than the insertion-sort cut-off)
    codes = rng.integers(0, n_codes, n)
    k1 = rng.integers(0, 40, n).astype(np.float64) / 4
    k1[codes == 5] = 1.0
    k2 = rng.integers(0, 3, n).astype(np.float64)
    k3 = rng.integers(0, 4, n).astype(np.uint64)
    order, starts = grouped_order(codes, n_codes, k1, k2, k3)
    expected = np.lexsort((np.arange(n), k3, k2, k1, codes))  # stable: position breaks full ties
    assert np.array_equal(order, expected)
    assert np.array_equal(starts, np.searchsorted(codes[expected], np.arange(n_codes + 1)))


def test_sort_runs_leaves_sorted_runs_and_sorts_nearly_sorted_ones() -> None:
    k1 = np.arange(100, dtype=np.float64)
    zeros, keys = np.zeros(100), np.zeros(100, np.uint64)
    order = np.arange(100, dtype=np.int64)
    order[[40, 41]] = order[[41, 40]]  # one swap in the second run only
    starts = np.array([0, 30, 100], dtype=np.int64)
    sort_runs(order, starts, k1, zeros, keys)
    assert np.array_equal(order, np.arange(100))


def test_sort_runs_keeps_the_current_order_of_full_ties() -> None:
    rng = np.random.default_rng(3)
    order = rng.permutation(300).astype(np.int64)
    starts = np.array([0, 5, 5, 200, 300], dtype=np.int64)
    k1 = (np.arange(300) % 7).astype(np.float64)
    zeros = np.zeros(300)
    before = order.copy()
    sort_runs(order, starts, k1, zeros, np.zeros(300, np.uint64))
    for s, e in zip(starts[:-1], starts[1:], strict=True):
        run = before[s:e]
        assert np.array_equal(order[s:e], run[np.argsort(k1[run], kind="stable")])


def test_keyed_sha1_hex_is_sha1_of_the_key_text() -> None:
    heads = ["video/1|qwen|", "ü|"]
    tails = ["|Goal", "|Foul|x"]
    millis = np.array([0, 12_000, 12_500, 12_345, 3_600_001], dtype=np.int64)
    head = np.array([0, 1, 0, 1, 0], dtype=np.int64)
    tail = np.array([1, 0, 0, 1, 1], dtype=np.int64)
    h_starts, h_data = texts(heads)
    t_starts, t_data = texts(tails)
    out = keyed_sha1_hex(h_data, h_starts, head, millis, t_data, t_starts, tail, 16).tobytes().decode()
    expected = "".join(hashlib.sha1(f"{heads[h]}{m / 1000!r}{tails[t]}".encode()).hexdigest()[:16]
                       for h, m, t in zip(head, millis.tolist(), tail, strict=True))
    assert out == expected


def test_json_sources_writes_json() -> None:
    heads = texts(['{"category": "both", "source_models": [', '{"category": "only_qwen", "source_models": ['])
    models = texts(['"qwen"', '"llava"'])
    ids = pa.array(["a1", "b2", "c3"])
    id_starts, id_data = string_buffers(ids)
    offsets, data = json_sources(heads[1], heads[0], np.array([0, 1, 1]), models[1], models[0],
                                 np.array([0, 1, 0, 0]), id_data, id_starts, np.array([0, 1, 2, 2]),
                                 np.array([0, 2, 3, 4]), True)
    rows = [json.loads(v) for v in strings(offsets, data).to_pylist()]
    assert rows == [{"category": "both", "source_models": ["qwen", "llava"], "sources": ["a1", "b2"]},
                    {"category": "only_qwen", "source_models": ["qwen"], "sources": ["c3"]},
                    {"category": "only_qwen", "source_models": ["qwen"], "sources": ["c3"]}]
    assert json_ids_safe(id_data, id_starts, np.arange(3))
    for bad in ['say "hi"', "back\\slash", "tab\t", "é"]:
        starts, data = string_buffers(pa.array(["ok", bad]))
        assert json_ids_safe(data, starts, np.array([0]))
        assert not json_ids_safe(data, starts, np.array([0, 1]))


@pytest.mark.parametrize("odd_id", ["plain-id", 'quote " and \\ back', "tab\there", "ümlaut ☃"])
def test_fused_event_metadata_names_sources_with_any_id(odd_id: str) -> None:
    dets = [Detection(odd_id, "g/1", "qwen", 10.0, "Goal", 0.9),
            Detection("llava-1", "g/1", "llava", 11.0, "Goal", 0.7),
            Detection("llava-2", "g/1", "llava", 40.0, "Foul", 0.4)]
    frame = frame_from_detections(dets, ["qwen", "llava"])
    fused = fuse_matching(match_frame(frame, 3.0), FusionOptions())
    rows = fused_event_rows(fused, fused.frame("ensemble", "r1"), "r1").to_pylist()
    by_label = {r["label"]: r for r in rows}
    assert json.loads(by_label["Goal"]["metadata"]) == {
        "category": "both", "source_models": ["qwen", "llava"], "sources": [odd_id, "llava-1"]}
    assert json.loads(by_label["Foul"]["metadata"]) == {
        "category": "only_llava", "source_models": ["llava"], "sources": ["llava-2"]}
    assert by_label["Goal"]["details"] == "fused from qwen + llava"
    assert {r["run_id"] for r in rows} == {"r1"} and {r["model"] for r in rows} == {"ensemble"}


def test_arrow_builders() -> None:
    for value in ["run-7", "", "é☃"]:
        built = constant(value, 4, pa.string())
        built.validate(full=True)
        assert built.to_pylist() == [value] * 4
    assert constant("x", 0, pa.string()).to_pylist() == []
    assert constant(None, 2, pa.string()).to_pylist() == [None, None]
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    stamp = pa.timestamp("us", tz="UTC")
    assert constant(now, 3, stamp).equals(pa.array([now] * 3, stamp))
    sliced = pa.array(["zero", "one", None, "three"]).slice(1)
    offsets, data = string_buffers(sliced)
    assert strings(offsets - offsets[0], data[offsets[0]:offsets[-1]]).to_pylist() == ["one", "", "three"]
    assert string_buffers(pa.chunked_array([["a"], ["bc"]]))[0].tolist() == [0, 1, 3]
    starts, raw = texts(["ab", "", "c"])
    assert starts.tolist() == [0, 2, 2, 3] and raw[:3].tobytes() == b"abc"


def test_retained_heap_nests_and_restores() -> None:
    assert not heap_retained()
    pool = pa.default_memory_pool().backend_name
    with retained_heap():
        if _LIBC is not None:
            assert pa.default_memory_pool().backend_name == "system"
        kept = pa.array(np.arange(1_000_000))
        with retained_heap():
            assert heap_retained() == (_LIBC is not None)
            big = np.ones(8_000_000)  # above glibc's largest mmap threshold
            assert big.sum() == 8_000_000
        assert heap_retained() == (_LIBC is not None)
    assert not heap_retained()
    assert pa.default_memory_pool().backend_name == pool
    assert kept.sum().as_py() == 999_999 * 1_000_000 // 2  # arrays made inside stay valid
    if _LIBC is not None:
        assert isinstance(_LIBC, ctypes.CDLL)


@pytest.mark.parametrize("slice_rows", [2, 500_000])
def test_fused_event_ids_are_the_events_table_ids(monkeypatch: pytest.MonkeyPatch, slice_rows: int) -> None:
    monkeypatch.setattr(ensemble, "_HASH_SLICE", slice_rows)  # 2: hashed in slices on a thread pool
    rng = np.random.default_rng(5)
    dets = [Detection(f"{m}-{i}", f"g/{i % 3}", m, round(float(rng.uniform(0, 3000)), 3), ["Goal", "Foul"][i % 2],
                      round(float(rng.uniform(0.1, 1)), 4), team=[None, "home", "away"][i % 3])
            for m in ("qwen", "llava") for i in range(40)]
    fused = fuse_matching(match_frame(frame_from_detections(dets, ["qwen", "llava"]), 3.0), FusionOptions())
    got = fused.frame("ensemble", "run-1").event_id.to_pylist()
    vocab = fused.inputs.vocab
    teams = fused.team.to_pylist()
    assert got == [event_id(vocab.videos[v], "ensemble", "run-1", t, vocab.labels[lab], team)
                   for v, lab, t, team in zip(fused.video.tolist(), fused.label.tolist(), fused.time.tolist(), teams,
                                              strict=True)]
