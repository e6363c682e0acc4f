"""The user cache folder: computed arrays kept under what computed them (no Ray needed)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from udfs.user_cache import cache_path, cached_array, user_cache_dir


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("VW_CACHE_DIR", str(folder))
    return folder


class _Counted:
    def __init__(self, value: np.ndarray) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.value


def test_the_cache_folder_setting_wins_over_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VW_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir("logs") == tmp_path / "home" / ".cache" / "video-warehouse" / "logs"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "video-warehouse"
    monkeypatch.setenv("VW_CACHE_DIR", str(tmp_path / "mine"))
    assert user_cache_dir("a", "b") == tmp_path / "mine" / "a" / "b"


def test_values_are_computed_once_per_key(cache: Path) -> None:
    compute = _Counted(np.arange(6, dtype=np.float32).reshape(2, 3))
    first = cached_array("things", {"model": "m", "texts": ["a", "b"]}, compute)
    again = cached_array("things", {"texts": ["a", "b"], "model": "m"}, compute)  # same key, other order
    np.testing.assert_array_equal(first, again)
    assert again.dtype == np.float32 and compute.calls == 1
    assert list((cache / "things").iterdir()) == [cache_path("things", {"model": "m", "texts": ["a", "b"]})]
    cached_array("things", {"model": "m", "texts": ["a", "c"]}, compute)
    assert compute.calls == 2 and len(list((cache / "things").iterdir())) == 2


def test_an_unreadable_file_is_computed_again_and_replaced(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = {"model": "m"}
    compute = _Counted(np.ones(3))
    cached_array("things", key, compute)
    cache_path("things", key).write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="udfs.user_cache"):
        np.testing.assert_array_equal(cached_array("things", key, compute), np.ones(3))
    assert compute.calls == 2 and "cannot be read" in caplog.text and str(cache_path("things", key)) in caplog.text
    cached_array("things", key, compute)
    assert compute.calls == 2, "the replaced file is read"


def test_a_file_holding_another_key_is_not_used(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    compute = _Counted(np.zeros(2))
    cached_array("things", {"model": "other"}, _Counted(np.ones(2)))
    os.replace(cache_path("things", {"model": "other"}), cache_path("things", {"model": "m"}))
    with caplog.at_level(logging.WARNING, logger="udfs.user_cache"):
        np.testing.assert_array_equal(cached_array("things", {"model": "m"}, compute), np.zeros(2))
    assert compute.calls == 1 and "holds another key" in caplog.text


def test_a_cache_that_cannot_be_written_costs_only_the_recomputation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("VW_CACHE_DIR", str(blocker / "cache"))  # a folder inside a file: cannot be made
    compute = _Counted(np.ones(2))
    with caplog.at_level(logging.WARNING, logger="udfs.user_cache"):
        np.testing.assert_array_equal(cached_array("things", {"k": 1}, compute), np.ones(2))
        cached_array("things", {"k": 1}, compute)
    assert compute.calls == 2 and "could not keep computed values" in caplog.text
    assert blocker.read_text() == "x"


def test_text_embeddings_are_read_back_without_the_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from udfs.text_embedding import TextEncoder

    texts = ["people play football on a pitch", "a chef cooks in a kitchen"]
    encoder = TextEncoder("tiny", device="cpu")
    direct = encoder.encode(texts)
    np.testing.assert_array_equal(encoder.encode_cached(texts), direct)

    def no_model(self: TextEncoder, texts: list[str]) -> np.ndarray:
        raise AssertionError("the model ran although the values were cached")

    monkeypatch.setattr(TextEncoder, "encode", no_model)
    np.testing.assert_array_equal(TextEncoder("tiny", device="cpu").encode_cached(texts), direct)
    with pytest.raises(AssertionError, match="the model ran"):
        TextEncoder("tiny", device="cpu").encode_cached([*texts, "another sentence"])


def test_text_cache_keys_name_the_model_files_and_the_inputs(tmp_path: Path) -> None:
    from udfs.text_embedding import TextEncoder

    tiny = TextEncoder("tiny", device="cpu")
    assert tiny.cache_key(["a"]) != tiny.cache_key(["b"])
    assert tiny.cache_key(["a"]) != TextEncoder("tiny", device="cuda").cache_key(["a"])
    assert TextEncoder("full", model="someone/some-hub-model", device="cpu").cache_key(["a"]) is None
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * 16)
    local = TextEncoder("full", model=str(folder), device="cpu")
    before = local.cache_key(["a"])
    assert before is not None and before["model"]["files"] == [("model.safetensors", 16, weights.stat().st_mtime_ns)]
    weights.write_bytes(b"\1" * 17)  # new weights under the same name
    assert local.cache_key(["a"]) != before


def test_scenario_descriptions_are_embedded_once_per_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from udfs.scenarios import DescriptionEmbeddings, load_scenarios
    from udfs.text_embedding import TextEncoder

    config = load_scenarios(None)
    first = DescriptionEmbeddings(config, "tiny")()
    assert first.shape[0] == len(config.scenarios)
    monkeypatch.setattr(TextEncoder, "encode", lambda self, texts: (_ for _ in ()).throw(AssertionError("model ran")))
    later = DescriptionEmbeddings(config, "tiny")
    later.prefetch()
    np.testing.assert_array_equal(later(), first)
