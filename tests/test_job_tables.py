"""The tables that starting a job writes to exist before jobs start in parallel (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

from geneva.debug.error_store import ErrorStore

from jobs.job_drivers import DRIVERS_TABLE, ensure_job_tables
from tables.connection import connect
from tests.threads import at_once


def _error_tables(db: Path) -> list[str]:
    return sorted(p.name for p in db.iterdir() if p.name.endswith("geneva_errors"))


def test_job_drivers_starting_at_once_only_open_the_error_table(tmp_path: Path) -> None:
    # What geneva's job drivers do when they start: open the error table, creating it if missing.
    # Created beforehand, drivers starting together on a new warehouse never race to create it.
    for trial in range(4):
        db = tmp_path / f"db{trial}"
        ensure_job_tables(connect(str(db)))
        conns = [connect(str(db)) for _ in range(4)]
        assert at_once([lambda c=c: ErrorStore(c) for c in conns]) == []
        assert len(_error_tables(db)) == 1


def test_two_commands_creating_the_job_tables_at_once_both_succeed(tmp_path: Path) -> None:
    db = tmp_path / "db"
    conns = [connect(str(db)) for _ in range(3)]
    assert at_once([lambda c=c: ensure_job_tables(c) for c in conns]) == []
    conn = connect(str(db))
    assert DRIVERS_TABLE in conn.table_names()
    assert conn.list_jobs() == []
    assert len(_error_tables(db)) >= 1
