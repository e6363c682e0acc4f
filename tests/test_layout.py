"""The generic top-level import names resolve to this project, not to other packages."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["udfs", "tables", "manifests", "jobs"])
def test_top_level_packages_are_ours(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == ROOT / name


def test_tables_is_not_pytables() -> None:
    import tables

    assert tables.PROJECT == "video-warehouse"


def test_udf_modules_do_not_import_jobs() -> None:
    for path in (ROOT / "udfs").glob("*.py"):
        text = path.read_text()
        assert "from jobs" not in text and "import jobs" not in text, path.name
