"""The ensemble review page (``index.html`` of ``vw ensemble --report``), tested in Chromium.

A warehouse with one real 60 s video, its ground truth and two models' events: the page's
data (unit tests), the clips cut around the events, and the page itself in the system's
headless Chromium driven by Playwright, opened from disk (the player reads the video's file)
and from a local web server (the player falls back to the report's clips). The browser tests
keep a screenshot under ``test-artifacts/`` (``VW_TEST_ARTIFACTS`` to move it).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.ensemble import EnsembleOptions, run_ensemble
from jobs.ensemble.review_clips import Moment, choose, moments
from jobs.ensemble.review_data import VideoSource
from jobs.ensemble.review_page import browser_href, build_page_data, event_texts, video_sources
from tables.connection import connect
from tables.events import Event, open_events, write_events
from tables.names import GROUND_TRUTH
from tests.videogen import make_cfr_video

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = Path(os.environ.get("VW_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))

TRUTH = [(10.0, "Goal", True), (20.0, "Foul", True), (30.0, "Corner", False), (45.0, "Shots on target", True),
         (55.0, "Goal", True)]
QWEN = [(10.5, "Goal", 0.9), (21.0, "Foul", 0.8), (40.0, "Corner", 0.6), (45.5, "Shots on target", 0.85)]
LLAVA = [(9.8, "Goal", 0.7), (20.4, "Foul", 0.5), (45.2, "Shots off target", 0.75)]
RAW = "</script><b>not markup</b> the answer: Foul at 0:21"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("review")
    video = make_cfr_video(root / "match_half.mp4", num_frames=600, fps=10, width=160, height=120, gop=20)
    db = root / "warehouse"
    result = runner.invoke(app, ["ingest", str(video.path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    conn = connect(str(db))
    video_id = conn.open_table("videos").to_arrow().column("video_id")[0].as_py()
    events = [Event(video_id, GROUND_TRUTH, t, label, metadata={"visibility": "visible" if shown else "not shown",
                                                                "game": "league/season/home - away", "half": 1})
              for t, label, shown in TRUTH]
    events += [Event(video_id, "qwen", t, label, confidence=c, details=f"qwen saw {label}", raw=RAW)
               for t, label, c in QWEN]
    events += [Event(video_id, "llava", t, label, confidence=c) for t, label, c in LLAVA]
    write_events(open_events(conn), events)
    return db, video_id


def test_page_data_rows_categories_and_sources(warehouse: tuple[Path, str]) -> None:
    db, video_id = warehouse
    conn = connect(str(db))
    result = run_ensemble(conn, EnsembleOptions(models=["qwen", "llava"], run_id="page"), write=False)
    texts = event_texts(conn, [GROUND_TRUTH, "qwen", "llava"])
    sources = video_sources(conn, [video_id, "nowhere"])
    assert set(sources) == {video_id} and sources[video_id].uri.endswith("match_half.mp4")
    data = build_page_data(result, texts, sources)
    assert data.index["rows"] == [GROUND_TRUTH, "qwen", "llava", "ensemble"]
    assert [v["video_id"] for v in data.index["videos"]] == [video_id]
    doc = next(iter(data.videos.values()))
    rows = {r["name"]: r for r in doc["rows"]}
    assert [len(rows[m]["t"]) for m in (GROUND_TRUTH, "qwen", "llava")] == [len(TRUTH), len(QWEN), len(LLAVA)]
    assert rows["qwen"]["t"] == sorted(rows["qwen"]["t"])
    qwen = dict(zip(rows["qwen"]["t"], rows["qwen"]["cat"], strict=True))
    assert qwen == {10.5: "agree", 21.0: "agree", 40.0: "only", 45.5: "disagree"}
    assert dict(zip(rows["qwen"]["t"], rows["qwen"]["tp"], strict=True)) == {10.5: True, 21.0: True, 40.0: False,
                                                                           45.5: True}
    truth = dict(zip(rows[GROUND_TRUTH]["t"], rows[GROUND_TRUTH]["cat"], strict=True))
    assert truth == {10.0: "found", 20.0: "found", 30.0: "missed", 45.0: "found", 55.0: "missed"}
    assert rows[GROUND_TRUTH]["visible"] == [True, True, False, True, True]
    assert rows["qwen"]["details"][0] == "qwen saw Goal" and rows["qwen"]["raw"][0] == RAW
    assert rows["llava"]["details"] == [None] * len(LLAVA)
    assert len(rows["ensemble"]["t"]) == len(result.fused_frame) > 0
    assert doc["game"] == "league/season/home - away" and doc["half"] == 1 and doc["scored"]
    assert doc["href"] == Path(sources[video_id].uri).resolve().as_uri()
    assert data.index["disagreements"][0]["slug"] in data.videos


def test_browser_hrefs() -> None:
    assert browser_href("gs://bucket/a.mp4") is None and browser_href(None) is None
    assert browser_href("https://host/a.mp4") == "https://host/a.mp4"
    assert browser_href("/data/a b.mp4") == "file:///data/a%20b.mp4"
    assert browser_href("file:///data/a.mp4") == "file:///data/a.mp4"


def test_moments_merge_overlapping_events_and_rank_disagreements_first() -> None:
    doc = {"rows": [{"t": [10.0, 12.0, 30.0, 100.0], "cat": ["agree", "agree", "missed", "only"]},
                    {"t": [31.0, 200.0], "cat": ["disagree", "only"]}]}
    found = moments("v", doc, pre_s=4, post_s=4, max_clip_s=40)
    assert [(m.start_s, m.end_s, m.events) for m in found] == [(6.0, 16.0, 2), (26.0, 35.0, 2), (96.0, 104.0, 1),
                                                                (196.0, 204.0, 1)]
    assert found[1].disagree and found[1].missed
    assert [m.start_s for m in choose(found, 2)] == [6.0, 26.0]
    long = {"rows": [{"t": [float(t) for t in range(0, 100, 5)], "cat": ["agree"] * 20}]}
    assert all(m.end_s - m.start_s <= 40 for m in moments("v", long, 4, 4, 40))
    assert choose([Moment("v", 0, 1, 1, False, False)], 0) == []


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_clips_cover_their_moments(warehouse: tuple[Path, str], tmp_path: Path) -> None:
    from torchcodec.decoders import VideoDecoder

    from jobs.ensemble.review_clips import cut_clip
    from tests.videogen import frame_index_of

    db, video_id = warehouse
    source = video_sources(connect(str(db)), [video_id])[video_id]
    clip = cut_clip(source, Moment(video_id, 16.0, 25.0, 2, False, False), tmp_path / "c.mp4")
    decoder = VideoDecoder(str(tmp_path / "c.mp4"))
    assert clip.start_s == pytest.approx(16.0) and clip.end_s == pytest.approx(25.0)
    assert decoder.metadata.num_frames == 90 and decoder.metadata.codec == "h264"
    # the clip's frames are the source's frames at those times (the pattern encodes the index)
    assert frame_index_of(decoder[0]) == 160
    assert frame_index_of(decoder[89]) == 249
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        cut_clip(VideoSource(str(tmp_path / "nowhere.mp4")), Moment("x", 0, 2, 1, False, False), tmp_path / "d.mp4")


def test_page_without_warehouse_text_is_still_written(warehouse: tuple[Path, str], tmp_path: Path) -> None:
    from jobs.ensemble.review_page import write_review_page

    db, _ = warehouse
    result = run_ensemble(connect(str(db)), EnsembleOptions(models=["qwen"], run_id="one"), write=False)
    files = write_review_page(result, tmp_path / "r")
    assert (tmp_path / "r" / "index.html") in files and (tmp_path / "r" / "assets" / "plotly.min.js").stat().st_size
    page = (tmp_path / "r" / "index.html").read_text()
    assert "cdn" not in page.lower() and '"fused":null' in page
    data = next((tmp_path / "r" / "data").glob("*.js")).read_text()
    assert "</script>" not in data


# ------------------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.fail("the review page test needs Chromium (`apt-get install chromium`; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required",
                                                              "--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_function("window.VW_REVIEW && window.VW_REVIEW.state.marks", timeout=60_000)
    return page, errors


def _points(page: Any) -> dict[str, int]:
    """Rendered markers per timeline row (SVG points of each trace, by trace name)."""
    return page.evaluate("""() => {
        const gd = document.getElementById('timeline');
        const out = {};
        gd.data.forEach((t) => { out[t.name] = 0; });
        gd.querySelectorAll('.scatterlayer .trace').forEach((layer) => {
            out[layer.__data__[0].trace.name] = layer.querySelectorAll('path.point').length; });
        return out; }""")


def _click_event(page: Any, row: str, t: float) -> None:
    """Click the marker of ``row`` at time ``t`` with the mouse (as a user would)."""
    box = page.evaluate("""([row, t]) => {
        const gd = document.getElementById('timeline');
        const trace = gd.data.find((d) => d.name === row);
        const times = Object.values(window.VW_REVIEW.docs)[0].rows[trace.meta.row].t;
        const j = trace.meta.index.findIndex((i) => Math.abs(times[i] - t) < 1e-6);
        const layer = [...gd.querySelectorAll('.scatterlayer .trace')].find((l) => l.__data__[0].trace.name === row);
        const point = layer.querySelectorAll('path.point')[j];
        const r = point.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; }""", [row, t])
    page.mouse.move(box[0], box[1])
    page.mouse.click(box[0], box[1])


def _played_to(page: Any, t: float, before: float) -> None:
    """The player seeked to ``t - before`` (within 0.5 s), plays, and reaches the event at ``t``."""
    page.wait_for_function("s => { const p = window.VW_REVIEW.state.playing; return p && p.t === s; }", arg=t,
                           timeout=30_000)
    page.wait_for_function("() => window.VW_REVIEW.state.playing.seekedAt !== undefined", timeout=60_000)
    state = page.evaluate("() => window.VW_REVIEW.state.playing")
    assert state["target"] == pytest.approx(t - before)
    assert abs(state["seekedAt"] - (t - before)) <= 0.5, state
    page.wait_for_function("""t => { const v = document.getElementById('player');
        return !v.paused && v.currentTime + window.VW_REVIEW.state.playing.offset >= t - 0.5; }""", arg=t,
                           timeout=60_000)
    reached = page.evaluate("() => document.getElementById('player').currentTime + "
                            "window.VW_REVIEW.state.playing.offset")
    assert abs(reached - t) <= 0.5, reached


def test_review_page_in_chromium_from_disk(warehouse: tuple[Path, str], tmp_path: Path, browser: Any) -> None:
    db, _ = warehouse
    report = tmp_path / "report"
    out = _cli("ensemble", "--models", "qwen,llava", "--run-id", "browser", "--report", str(report), "--db", str(db))
    assert "index.html" in out
    page, errors = _open(browser, (report / "index.html").as_uri())
    fused = connect(str(db)).open_table("events").count_rows("model = 'ensemble' AND run_id = 'browser'")
    expected = {GROUND_TRUTH: len(TRUTH), "qwen": len(QWEN), "llava": len(LLAVA), "ensemble": fused}
    assert page.evaluate("window.VW_REVIEW.state.marks") == expected
    assert _points(page) == expected
    assert page.locator("#metrics tbody tr").count() > 10
    # sorting the metrics table by F1 (descending, then ascending)
    page.locator("#metrics th[data-key=f1]").click()
    values = [v for v in page.locator("#metrics tbody td:nth-child(10)").all_inner_texts() if v != "-"]
    assert values == sorted(values, key=float, reverse=True)

    _click_event(page, "qwen", 21.0)
    _played_to(page, 21.0, 3.0)
    assert page.evaluate("window.VW_REVIEW.state.playing.source") == "uri"
    assert "Foul" in page.locator("#now-playing").inner_text()

    # filters: only the disagreements, then one class
    page.locator("#categories input[value=agree]").uncheck()
    page.locator("#categories input[value=only]").uncheck()
    page.locator("#categories input[value=found]").uncheck()
    page.locator("#categories input[value=missed]").uncheck()
    fused_disagreeing = page.evaluate("() => Object.values(window.VW_REVIEW.docs)[0].rows[3].cat"
                                      ".filter((c) => c === 'disagree').length")
    assert fused_disagreeing > 0
    assert _points(page) == {GROUND_TRUTH: 0, "qwen": 1, "llava": 1, "ensemble": fused_disagreeing}
    for box in ("agree", "only", "found", "missed"):
        page.locator(f"#categories input[value={box}]").check()
    page.locator("#classes input[value=Goal]").uncheck()
    assert _points(page)["qwen"] == len(QWEN) - 1 and _points(page)[GROUND_TRUTH] == len(TRUTH) - 2

    # hover shows the event's details and raw answer as text, not markup
    page.locator("#classes input[value=Goal]").check()
    _click_event(page, "qwen", 45.5)
    hover = page.locator("#timeline .hoverlayer").text_content()
    assert "Shots on target" in hover and "qwen saw Shots on target" in hover and "<b>not markup</b>" in hover

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_page.png"), full_page=True)
    assert errors == [], sorted(set(errors))
    page.close()


def test_review_page_served_over_http_plays_clips(warehouse: tuple[Path, str], tmp_path: Path, browser: Any) -> None:
    db, _ = warehouse
    report = tmp_path / "served"
    out = _cli("ensemble", "--models", "qwen,llava", "--run-id", "served", "--report", str(report), "--clips",
               "--db", str(db))
    clips = sorted((report / "clips").glob("*.mp4"))
    assert clips, out
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(report))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page, errors = _open(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        # a disagreement from the list: the page picks its moment, and plays it from a clip
        page.locator("#disagreements button").first.click()
        page.wait_for_function("() => window.VW_REVIEW.state.playing", timeout=30_000)
        t = page.evaluate("window.VW_REVIEW.state.playing.t")
        _played_to(page, t, 3.0)
        assert page.evaluate("window.VW_REVIEW.state.playing.source") == "clip"
        assert errors == []
        page.close()
    finally:
        server.shutdown()
