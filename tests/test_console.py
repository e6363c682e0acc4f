"""The quiet command output (jobs/console.py): the libraries' output goes to the log file, native writes
included; the display prints few lines off a terminal; `vw backfill --help` lists the stages."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import console
from jobs.console import Display, log_path_for, quiet_console, verbose_requested


def test_off_a_terminal_a_long_job_prints_a_few_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    display = Display(out, live=False)
    display.start("j1", "videos.frame_features", 1000)
    for done in range(1001):
        display.update("j1", done, failed=done // 500)
    display.finish("j1")
    lines = out.getvalue().splitlines()
    assert lines[0] == "videos.frame_features: started, 1000 rows to do"
    assert 9 <= len(lines) <= 11, lines  # a line per 10 %, none for the last row (the summary says it)
    assert "1 failed" in lines[-1] and "/1000 rows" in lines[-1]


def test_off_a_terminal_a_slow_job_prints_every_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    display = Display(out, live=False)
    display.start("j", "windows.detections_llava", 10_000)
    for minute in range(1, 6):  # 5 minutes, 1 % of the rows a minute, 2 updates a minute
        for half in range(2):
            clock[0] = minute * 60 + half * 30
            display.update("j", minute * 100)
    assert len(out.getvalue().splitlines()) == 1 + 10
    assert "windows.detections_llava: 500/10000 rows (1.5/s, ETA 6270s, 330s)" in out.getvalue()


def test_a_job_with_long_rows_shows_the_frames_inside_them(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    display = Display(out, live=False)
    display.start("j", "videos.frame_features", 3, inner_unit="frames")
    for step in range(1, 5):  # 2 minutes in: no row done yet, the frames go on
        clock[0] = step * 30
        display.update("j", None if step == 2 else 0, inner=step * 900)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 4, lines
    assert lines[-1] == "videos.frame_features: 0/3 rows (0.0/s, ETA --, 120s); 3,600 frames (30.0 frames/s)"
    display.update("j", 1, inner=100)  # a late (lower) count never moves the frames back
    assert "3,600 frames" in display._jobs["j"].line()


def test_unit_reporter_without_ray_drops_counts_and_pickles_small() -> None:
    import pickle

    from udfs.unit_progress import UnitCounter, UnitReporter

    reporter = UnitReporter("frame_features", "frames")
    reporter.add(10, flush=True)  # no Ray in this process: nothing to send, nothing raised
    copy = pickle.loads(pickle.dumps(reporter))
    assert (copy.key, copy.unit) == ("frame_features", "frames")
    counter = UnitCounter()
    counter.add("frame_features", 3)
    counter.add("frame_features", 4)
    assert (counter.get("frame_features"), counter.get("video_latents")) == (7, 0)


SCRIPT = """
import os, sys
from pathlib import Path
from jobs.console import quiet_console
with quiet_console(Path(sys.argv[1])) as display:
    os.write(1, b"native stdout\\n")
    os.write(2, b"native stderr\\n")
    print("python stdout")
    print("python stderr", file=sys.stderr)
    display.echo("the command's own line")
print("after")
"""


def test_quiet_console_sends_native_and_python_output_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the command's own line\nafter\n" and done.stderr == ""
    text = log.read_text()
    for line in ("native stdout", "native stderr", "python stdout", "python stderr"):
        assert line in text
    assert "the command's own line" not in text


def test_silent_console_keeps_even_the_display_in_the_log(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    log = tmp_path / "run.log"
    with quiet_console(log, silent=True) as display:
        display.echo("progress")
    assert capfd.readouterr().out == ""
    assert "progress" in log.read_text()


def test_log_locations_and_verbosity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VW_LOG", raising=False)
    local = log_path_for(str(tmp_path / "wh"), "backfill")
    assert local.parent == tmp_path / "wh" / "logs" and local.name.startswith("vw-backfill-")
    monkeypatch.delenv("VW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert log_path_for("gs://bucket/wh", "demo").parent == tmp_path / "cache" / "video-warehouse" / "logs"
    monkeypatch.setenv("VW_CACHE_DIR", str(tmp_path / "vw-cache"))
    assert log_path_for("gs://bucket/wh", "demo").parent == tmp_path / "vw-cache" / "logs"
    monkeypatch.setenv("VW_LOG", str(tmp_path / "mine.log"))
    assert log_path_for("gs://bucket/wh", "demo") == tmp_path / "mine.log"
    monkeypatch.delenv("VW_LOG_LEVEL", raising=False)
    assert not verbose_requested() and verbose_requested(True)
    monkeypatch.setenv("VW_LOG_LEVEL", "DEBUG")
    assert verbose_requested()


def test_backfill_help_lists_the_registered_stages() -> None:
    from typer.testing import CliRunner

    from jobs.cli import app
    from udfs.stages import registry

    out = CliRunner().invoke(app, ["backfill", "--help"], terminal_width=200).stdout
    assert "Stages:" in out
    for name in registry():
        assert name in out
