"""Read tasks of a backfill job: whole fragments unless splitting them is what keeps the workers busy."""

from __future__ import annotations

from pathlib import Path

import lancedb
import pyarrow as pa
import pytest

from jobs.read_tasks import fragment_rows, task_size, whole_fragment_task_size


def test_whole_fragments_when_there_are_at_least_as_many_as_workers() -> None:
    assert whole_fragment_task_size([10], 1) == 10
    assert whole_fragment_task_size([8, 3, 5], 1) == 8
    assert whole_fragment_task_size([8, 3, 5], 3) == 8


def test_geneva_default_when_the_fragments_are_fewer_than_the_workers() -> None:
    assert whole_fragment_task_size([10], 2) is None
    assert whole_fragment_task_size([8, 3], 4) is None
    assert whole_fragment_task_size([], 1) is None


def test_empty_fragments_still_give_a_valid_size() -> None:
    assert whole_fragment_task_size([0], 1) == 1


def test_bad_concurrency_is_refused() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        whole_fragment_task_size([10], 0)


def test_fragments_of_a_real_table(tmp_path: Path) -> None:
    table = lancedb.connect(tmp_path / "db").create_table("t", pa.table({"k": list(range(7))}))
    table.add(pa.table({"k": list(range(7, 10))}))
    assert fragment_rows(table) == [7, 3]
    assert task_size(table, 1) == 7
    assert task_size(table, 2) == 7
    assert task_size(table, 3) is None
    # Deleted rows stay in their fragment's physical rows (a task covers the fragment's row range).
    table.delete("k < 2")
    assert fragment_rows(table) == [7, 3]
