"""Loading a checkpoint off a terminal draws no progress bar into the log (no Ray, no network)."""

from __future__ import annotations

import io
import sys

import pytest
from transformers import AutoConfig
from transformers.utils import logging as hf_logging

from udfs.models import from_pretrained
from udfs.text_embedding import bundled_minilm_dir


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_bars():
    was = hf_logging.is_progress_bar_enabled()
    yield
    (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def test_no_progress_bars_when_stderr_is_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_logging.enable_progress_bar()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    from_pretrained(AutoConfig, bundled_minilm_dir(), "VW_TEXT_MODEL")
    assert not hf_logging.is_progress_bar_enabled()


def test_progress_bars_stay_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_logging.enable_progress_bar()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    from_pretrained(AutoConfig, bundled_minilm_dir(), "VW_TEXT_MODEL")
    assert hf_logging.is_progress_bar_enabled()
