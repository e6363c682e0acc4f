"""A process-wide change held while any block asks for it."""

from __future__ import annotations

import pytest

from udfs.process_setting import ProcessSetting


def test_applied_by_the_first_block_and_restored_by_the_last() -> None:
    calls: list[str] = []
    setting = ProcessSetting(lambda: calls.append("apply"), lambda: calls.append("restore"))
    assert not setting.active
    with setting.held():
        with setting.held():
            assert setting.active and calls == ["apply"]
        assert calls == ["apply"]
    assert calls == ["apply", "restore"] and not setting.active


def test_restored_when_a_block_raises() -> None:
    calls: list[str] = []
    setting = ProcessSetting(lambda: calls.append("apply"), lambda: calls.append("restore"))
    with pytest.raises(KeyError), setting.held():
        raise KeyError("x")
    assert calls == ["apply", "restore"] and not setting.active
