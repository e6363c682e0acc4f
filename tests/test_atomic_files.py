"""Output files: written whole, with the umask's mode (not the temporary file's 0600), parent folders
created, and a folder that cannot be created named in a clear error (CLI: `vw sql --out`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from udfs.atomic_files import OutputPathError, atomic_write, current_umask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_follow_the_umask_and_get_their_folder(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        target = tmp_path / "a" / "b" / "x.json"
        atomic_write(target, b"{}")
        assert target.read_bytes() == b"{}" and _mode(target) == 0o644
        os.umask(0o002)
        atomic_write(target, lambda fh: fh.write(b"[]"))
        assert target.read_bytes() == b"[]" and _mode(target) == 0o664
        assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]
    finally:
        os.umask(old)


def test_a_folder_that_cannot_be_created_is_named() -> None:
    with pytest.raises(OutputPathError, match="cannot create the folder /proc/nope for x.npy"):
        atomic_write(Path("/proc/nope/x.npy"), b"1")


def test_vw_sql_out_into_a_new_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jobs.cli import app

    db = tmp_path / "wh"
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", "--db", str(db), str(tmp_path / "none.mp4")])
    assert done.exit_code != 0  # nothing ingested, but the warehouse exists
    out = tmp_path / "results" / "deeper" / "q.parquet"
    done = runner.invoke(app, ["sql", "--db", str(db), "--format", "parquet", "--out", str(out), "SELECT 1 AS one"])
    assert done.exit_code == 0, done.output
    assert out.exists() and _mode(out) == 0o666 & ~current_umask()
    done = runner.invoke(app, ["sql", "--db", str(db), "--format", "csv", "--out", "/proc/nope/q.csv", "SELECT 1"])
    assert done.exit_code == 2 and "cannot create the folder /proc/nope for q.csv" in done.output, done.output


def test_table_cells_keep_both_ends_of_long_ids() -> None:
    from jobs.cli.output import shorten

    halves = [f"england_epl/2015-2016/2016-02-13 - 20-30 Chelsea 2 - 2 Swansea/{h}" for h in (1, 2)]
    cut = [shorten(h, 40) for h in halves]
    assert cut[0] != cut[1]
    assert all(len(c) == 40 and c.endswith(f"Swansea/{h}") for c, h in zip(cut, (1, 2), strict=True))
    assert cut[0].startswith("england_epl/2015-2016/2") and "..." in cut[0]
    assert shorten("short", 40) == "short"
