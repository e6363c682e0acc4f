"""Whole-array pooling and MaxSim over rows stored flat give what the per-row functions give."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tables import pooling as pooling_module
from tables.pooling import maxsim, maxsim_rows, parse_pooling
from tables.vector_search import steps_scores
from udfs.arrays import steps_to_arrow

SPECS = ("mean", "max", "centre", "centre:0.1", "segment:0-0.33", "segment:0.5-1", "segment:0.4-0.45")


def _rows(rng: np.random.Generator, lengths: list[int], dim: int = 8) -> list[np.ndarray]:
    return [rng.normal(size=(n, dim)).astype(np.float32) for n in lengths]


def _flat(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return np.concatenate(rows), offsets


@pytest.mark.parametrize("gather_max", [8192, 16])  # rows gathered by step count, or pooled one by one
@pytest.mark.parametrize("spec", SPECS)
def test_pool_rows_is_pool_row_by_row(spec: str, gather_max: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pooling_module, "GATHER_MAX_FLOATS", gather_max)
    rng = np.random.default_rng(0)
    # lengths 1 and 2 put no step centre in a narrow segment: the nearest step is used
    rows = _rows(rng, [1, 2, 3, 7, 32, 5, 1, 64])
    values, offsets = _flat(rows)
    pooling = parse_pooling(spec)
    got = pooling.pool_rows(values, offsets)
    want = np.stack([pooling.pool(r) for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_maxsim_rows_is_maxsim_row_by_row() -> None:
    rng = np.random.default_rng(1)
    rows = _rows(rng, [1, 4, 9, 32])
    query = rng.normal(size=(5, 8)).astype(np.float32)
    values, offsets = _flat(rows)
    np.testing.assert_allclose(maxsim_rows(query, values, offsets), [maxsim(query, r) for r in rows], rtol=1e-5)


def test_steps_scores_of_a_sliced_batch_with_empty_and_null_rows() -> None:
    rng = np.random.default_rng(2)
    rows = _rows(rng, [3, 5, 2, 4, 6])
    arr = steps_to_arrow([*rows[:2], None, np.zeros((0, 8), np.float32), *rows[2:]], 8)
    batch = pa.RecordBatch.from_arrays([arr], ["steps"]).slice(1)  # offsets no longer start at 0
    query = rng.normal(size=8).astype(np.float32)
    query /= np.linalg.norm(query)
    mean = parse_pooling("mean")
    got = steps_scores("steps", lambda v, o: mean.pool_rows(v, o) @ query)(batch)
    want = [float(mean.pool(r) @ query) for r in rows[1:]]
    assert got[1] == -np.inf and got[2] == -np.inf  # NULL, then no steps
    np.testing.assert_allclose(got[[0, 3, 4, 5]], want, rtol=1e-5)
    q_steps = rng.normal(size=(3, 8)).astype(np.float32)
    ms = steps_scores("steps", lambda v, o: maxsim_rows(q_steps, v, o))(batch)
    np.testing.assert_allclose(ms[[0, 3, 4, 5]], [maxsim(q_steps, r) for r in rows[1:]], rtol=1e-5)


def test_steps_scores_of_a_column_whose_steps_are_a_slice() -> None:
    rng = np.random.default_rng(3)
    rows = _rows(rng, [2, 3])
    steps = pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=(3 + 5) * 8).astype(np.float32)), 8)
    flat = np.concatenate(rows)
    steps = pa.concat_arrays([steps.slice(0, 3), pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 8)])
    arr = pa.ListArray.from_arrays(pa.array([0, 2, 5], pa.int32()), steps.slice(3))  # child starts at step 3
    query = rng.normal(size=8).astype(np.float32)
    query /= np.linalg.norm(query)
    mean = parse_pooling("mean")
    got = steps_scores("steps", lambda v, o: mean.pool_rows(v, o) @ query)(pa.RecordBatch.from_arrays([arr], ["steps"]))
    np.testing.assert_allclose(got, [float(mean.pool(r) @ query) for r in rows], rtol=1e-5)


def test_steps_from_arrow_of_a_column_whose_steps_are_a_slice() -> None:
    from udfs.arrays import steps_from_arrow

    rows = _rows(np.random.default_rng(4), [2, 3])
    lead = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3 * 8, np.float32)), 8)
    steps = pa.concat_arrays([lead, pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(rows).ravel()), 8)])
    arr = pa.ListArray.from_arrays(pa.array([0, 2, 5], pa.int32()), steps.slice(3))
    for got, want in zip(steps_from_arrow(arr), rows, strict=True):
        np.testing.assert_array_equal(got, want)
