"""The interactive review page of an ensemble run: ``index.html`` in the report folder.

One self-contained folder that opens from disk (``file://``) and from any static web server,
offline: nothing is loaded from a CDN.

- ``index.html``: the run, the filters, the timeline, the player, the metrics table, the
  per-class charts and the disagreements, with the run's index embedded;
- ``assets/``: plotly.js (copied from the pinned ``plotly`` package), ``review.js`` and
  ``review.css``;
- ``data/<video>.js``: one file per video (match half) with its events by timeline row,
  loaded when the video is picked (a script tag, which also works from ``file://`` where
  ``fetch`` does not);
- ``clips/``: with ``clips=True``, short MP4 clips around the events
  (:mod:`jobs.ensemble.review_clips`), played where the browser cannot read the ``uri``.

The timeline is drawn with Plotly (plotly.js): it ships inside a PyPI wheel, so the page needs
no npm step and works offline; it has zoom, pan, a range slider, hover boxes and click events
built in, and draws a few thousand markers per half as SVG, which a test can click. Vega-Lite
would need three JavaScript bundles vendored from npm, Bokeh a matching BokehJS and its
Python document model for a page that is otherwise plain HTML.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jobs.ensemble.report import f1_thresholds, file_slug, timeline_videos, top_disagreements
from jobs.ensemble.review_clips import CLIP_DIR, POST_S, PRE_S, choose, cut_clips, moments
from jobs.ensemble.review_data import Clip, EventText, PageData, PageEvents, VideoSource, page_index
from jobs.ensemble.run import EnsembleResult
from udfs import storage

INDEX_FILE = "index.html"
ASSET_DIR = "assets"
DATA_DIR = "data"
#: Disagreements listed on the page (both sides confident first).
PAGE_DISAGREEMENTS = 50
#: Seconds the player starts before an event and stops after it.
PLAY_BEFORE_S = 3.0
PLAY_AFTER_S = 3.0
_ASSETS = ("review.js", "review.css")


def _in_script(value: Any) -> str:
    """JSON safe inside an HTML ``<script>`` element (every ``<`` escaped: no ``</script>``, no ``<!--``)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def browser_href(uri: str | None) -> str | None:
    """The URL a browser would play ``uri`` from: ``file://`` for a local path, the URL for
    ``http(s)://``; ``None`` for object stores (``gs://``, ``s3://``, ...) that browsers cannot read."""
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        return uri
    if storage.is_remote(uri):
        return None
    return Path(os.path.abspath(storage.local_path(uri))).as_uri()


def event_texts(conn: Any, models: Iterable[str]) -> dict[str, EventText]:
    """``details`` and ``raw`` of the events of ``models`` (by event id), for the hover boxes."""
    from tables.events import open_events
    from tables.filters import in_list

    table = open_events(conn, create=False)
    rows = table.to_lance().to_table(columns=["event_id", "details", "raw"],
                                     filter=f"{in_list('model', list(models))} AND "
                                            "(details IS NOT NULL OR raw IS NOT NULL)")
    return {i: EventText(d, r) for i, d, r in zip(rows.column("event_id").to_pylist(),
                                                  rows.column("details").to_pylist(),
                                                  rows.column("raw").to_pylist(), strict=True)}


def video_sources(conn: Any, video_ids: Sequence[str]) -> dict[str, VideoSource]:
    """The ``uri``, duration and frame rate of each video of ``video_ids`` registered with a file."""
    from tables.connection import open_videos
    from tables.filters import in_list

    if not video_ids:
        return {}
    try:
        table = open_videos(conn, create=False)
    except LookupError:  # no videos table: events imported without videos
        return {}
    rows = table.to_lance().to_table(columns=["video_id", "uri", "duration_s", "fps", "has_video"],
                                     filter=in_list("video_id", list(video_ids))).to_pylist()
    return {r["video_id"]: VideoSource(None if r["has_video"] is False else r["uri"], r["duration_s"], r["fps"])
            for r in rows}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _copy_assets(out: Path) -> list[Path]:
    import plotly

    assets = out / ASSET_DIR
    assets.mkdir(parents=True, exist_ok=True)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not plotly_js.is_file():
        raise FileNotFoundError(f"plotly.js is missing from the plotly package ({plotly_js}); reinstall plotly")
    target = assets / "plotly.min.js"
    if not target.exists() or target.stat().st_size != plotly_js.stat().st_size:
        shutil.copyfile(plotly_js, target)
    files = [target]
    here = resources.files("jobs.ensemble") / "review_assets"
    for name in _ASSETS:
        _write(assets / name, (here / name).read_text(encoding="utf-8"))
        files.append(assets / name)
    return files


def build_page_data(result: EnsembleResult, texts: dict[str, EventText], sources: dict[str, VideoSource],
                    clips: dict[str, list[Clip]] | None = None) -> PageData:
    """The page's index and per-video documents (no files written)."""
    videos = timeline_videos(result)
    slugs = [(v, file_slug(v)) for v in videos]
    index = page_index(result, slugs, top_disagreements(result, PAGE_DISAGREEMENTS), f1_thresholds(result))
    index["play"] = {"before_s": PLAY_BEFORE_S, "after_s": PLAY_AFTER_S}
    data = PageData(index)
    events = PageEvents(result, texts)
    for video, slug in slugs:
        doc = events.document(video, sources.get(video), (clips or {}).get(video, ()))
        doc["href"] = browser_href(doc["uri"])
        data.videos[slug] = doc
    return data


def write_review_page(result: EnsembleResult, out_dir: str | Path, conn: Any = None, clips: bool = False,
                      max_clips: int = 100, on_note: Callable[[str], None] = print) -> list[Path]:
    """Write ``index.html`` and its folders into ``out_dir``; returns the files written.

    ``conn`` (a warehouse connection) gives the hover boxes the events' ``details`` / ``raw``
    and the player the videos' ``uri``; without it the page has neither. ``clips`` cuts up to
    ``max_clips`` clips around the events (see :mod:`jobs.ensemble.review_clips`); problems
    with a video's clips are reported through ``on_note`` and leave the rest of the page intact.
    """
    if max_clips < 0:
        raise ValueError(f"max_clips must be >= 0, got {max_clips}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = timeline_videos(result)
    models = [result.options.ground_truth, *result.options.models]
    texts = event_texts(conn, models) if conn is not None else {}
    sources = video_sources(conn, videos) if conn is not None else {}
    data = build_page_data(result, texts, sources)
    cut: dict[str, list[Clip]] = {}
    if clips:
        found = [m for doc in data.videos.values() if doc["uri"] for m in moments(doc["video_id"], doc, PRE_S, POST_S)]
        chosen = choose(found, max_clips)
        slugs = {doc["video_id"]: slug for slug, doc in data.videos.items()}
        cut = cut_clips(chosen, sources, slugs, out, on_note)
        for video, items in cut.items():
            data.videos[slugs[video]]["clips"] = [{"file": c.file, "start_s": c.start_s, "end_s": c.end_s}
                                                  for c in items]
        note = f"clips: {sum(len(c) for c in cut.values())} cut around {len(found)} moments (--max-clips {max_clips})"
        if len(found) > len(chosen):
            note += "; moments without a clip play from the video's uri where the browser can read it"
        data.index["notes"].append(note)
    files = _copy_assets(out)
    (out / DATA_DIR).mkdir(exist_ok=True)
    for slug, doc in data.videos.items():
        path = out / DATA_DIR / f"{slug}.js"
        _write(path, f"window.VW_REVIEW.loaded({_in_script(slug)}, {_in_script(doc)});\n")
        files.append(path)
    template = (resources.files("jobs.ensemble") / "review_assets" / "index.html").read_text(encoding="utf-8")
    page = template.replace("{{title}}", f"Ensemble run {result.run_id}".replace("<", "&lt;"))
    page = page.replace("{{index}}", _in_script(_finite(data.index)))
    _write(out / INDEX_FILE, page)
    files += [out / CLIP_DIR / Path(c.file).name for items in cut.values() for c in items]
    return [out / INDEX_FILE, *files]
