"""Reports on the scenario columns: counts per scenario and split, a bar chart, and the
``scenario_metadata.json`` export read by training scripts.

Export layout (one object per video, grouped by split)::

    {"train": [{"video_path": "...", "image_path": null, "caption": "...",
                "prompt_variants": ["...", "..."], "scenario": "press_room", "latent_path": null,
                "video_id": "...", "source": "msrvtt", "start_s": null, "end_s": null}, ...],
     "validation": [...]}

``image_path`` and ``latent_path`` are ``<frames dir>/<video_id>.png`` and
``<latents dir>/<scenario>/<video_id>.npz`` when those folders are given, else null. When a
stage declares files of that kind (:class:`udfs.stage.StageFiles`: ``video_latents`` declares
its ``.npz`` latents and ``key_frame`` PNGs) and its column exists, the export writes those files
too, each atomically; a row whose value is missing (failed or not computed) gets a null path and
an entry in ``<folder>/failed_videos.json`` (``video_id``, ``uri``, ``error_type``, ``error``), so
the metadata never points at a file that is not there. Without such a column the paths name
where an external step is expected to write. Ids and scenario names go through
:func:`jobs.file_names.safe_name` (plain ids unchanged; ``../x`` becomes ``%2E%2E%2Fx``), so these
paths always stay inside their folders. Rows without a scenario (no caption, or not computed
yet) and rows without a split are left out and counted.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.file_names import safe_name
from tables.connection import open_videos
from udfs.atomic_files import atomic_write
from udfs.errors import NotFoundError, VwError

SCENARIO = "scenario"
NO_CAPTION = "(no caption)"
NOT_COMPUTED = "(not computed)"
NO_SPLIT = "(no split)"
EXPORT_SPLITS = ("train", "validation")


@dataclass
class ScenarioCounts:
    """Rows per ``(scenario, split)``; unlabelled rows under :data:`NO_CAPTION` / :data:`NOT_COMPUTED`."""

    counts: Counter = field(default_factory=Counter)

    @property
    def scenarios(self) -> list[str]:
        """Labels, most rows first (unlabelled groups last)."""
        totals = Counter()
        for (scenario, _), n in self.counts.items():
            totals[scenario] += n
        special = (NO_CAPTION, NOT_COMPUTED)
        return sorted(totals, key=lambda s: (s in special, -totals[s], s))

    @property
    def splits(self) -> list[str]:
        """Splits in train, validation, test order, then others."""
        order = {"train": 0, "validation": 1, "test": 2}
        return sorted({sp for _, sp in self.counts}, key=lambda s: (order.get(s, 3), s))

    def get(self, scenario: str, split: str) -> int:
        """Rows of ``scenario`` in ``split``."""
        return int(self.counts.get((scenario, split), 0))

    def total(self) -> int:
        """All rows counted."""
        return int(sum(self.counts.values()))


class MetadataError(VwError, ValueError):
    """A scenario metadata export or count that cannot run as asked (bad filter, nothing to plot)."""


def _require_scenarios(table: Any) -> None:
    if SCENARIO not in table.schema.names:
        raise NotFoundError("the videos table has no 'scenario' column yet: run `vw backfill scenarios` first")


def _batches(table: Any, columns: list[str], where: str | None) -> Iterator[list[dict]]:
    present = set(table.schema.names)
    wanted = [c for c in columns if c in present]
    try:
        for batch in table.to_lance().to_batches(columns=wanted, filter=where):
            rows = batch.to_pylist()
            for row in rows:
                for c in columns:
                    row.setdefault(c, None)
            yield rows
    except ValueError as err:
        raise MetadataError(f"invalid --where {where!r}: {err}") from err


def scenario_counts(conn: Any, where: str | None = None) -> ScenarioCounts:
    """Counts of ``videos`` rows per scenario and split (``where``: an SQL filter)."""
    table = open_videos(conn, create=False)
    _require_scenarios(table)
    out = ScenarioCounts()
    for rows in _batches(table, ["scenario", "split", "caption"], where):
        for row in rows:
            label = row["scenario"]
            if label is None:
                has_caption = isinstance(row["caption"], str) and row["caption"].strip()
                label = NOT_COMPUTED if has_caption else NO_CAPTION
            out.counts[(label, row["split"] or NO_SPLIT)] += 1
    return out


def format_counts(counts: ScenarioCounts) -> str:
    """A text table: one line per scenario, one column per split, plus the total."""
    splits = counts.splits
    names = counts.scenarios
    width = max([len("scenario"), *(len(n) for n in names)])
    cols = [*splits, "total"]
    widths = [max(len(c), 6) for c in cols]
    lines = ["  ".join(["scenario".ljust(width), *(c.rjust(w) for c, w in zip(cols, widths, strict=True))])]
    for name in names:
        values = [counts.get(name, sp) for sp in splits]
        cells = [str(v).rjust(w) for v, w in zip([*values, sum(values)], widths, strict=True)]
        lines.append("  ".join([name.ljust(width), *cells]))
    totals = [sum(counts.get(n, sp) for n in names) for sp in splits]
    cells = [str(v).rjust(w) for v, w in zip([*totals, sum(totals)], widths, strict=True)]
    lines.append("  ".join(["total".ljust(width), *cells]))
    return "\n".join(lines)


def write_chart(counts: ScenarioCounts, out: Path, title: str = "videos per scenario and split") -> Path:
    """A grouped bar chart (PNG) of ``counts``, written atomically to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names, splits = counts.scenarios, counts.splits
    if not names:
        raise MetadataError("nothing to plot: no rows")
    x = np.arange(len(names))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4.5))
    try:
        for i, split in enumerate(splits):
            ax.bar(x + (i - (len(splits) - 1) / 2) * width, [counts.get(n, split) for n in names], width,
                   label=split)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylabel("videos")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        atomic_write(out, lambda fh: fig.savefig(fh, format="png", dpi=100))
    finally:
        plt.close(fig)
    return out


@dataclass
class ExportReport:
    """What :func:`export_metadata` wrote and what it left out."""

    path: Path
    per_split: dict[str, int]
    without_scenario: int
    without_split: int
    #: per kind (``image`` / ``latent``) with a stage column: files written and rows without a value
    files: dict[str, dict[str, int]] = field(default_factory=dict)


FAILED_FILE = "failed_videos.json"
_FILE_BATCH = 16  # rows per read when writing files (a latents cell is a few MB)


def _file_source(table: Any, kind: str) -> Any:
    """The :class:`~udfs.stage.StageFiles` of ``kind`` whose column ``videos`` has (None without one)."""
    from udfs.stages import registry

    for stage in registry().values():
        for files in stage.files:
            if stage.table == "videos" and files.kind == kind and files.column in table.schema.names:
                return files
    return None


def _write_files(table: Any, files: Any, where: str | None, entries: dict[str, dict], key: str,
                 folder: str) -> dict[str, int]:
    """Write ``files`` for the exported rows (``entries`` by video id, their ``key`` path) under ``folder``."""
    from tables.column_state import failed_rows, field_spec, is_blob

    meta = field_spec(table, files.column)
    failed = {r["video_id"]: r for r in failed_rows(table, files.column, columns=("video_id", "uri"))}
    problems: list[dict[str, Any]] = []
    written = 0
    ds = table.to_lance()
    blob = is_blob(ds.schema.field(files.column))  # a scan gives blob descriptors: take the bytes
    present = f"{files.column} IS NOT NULL"
    rows = ds.to_table(columns=["video_id", "uri", "_rowoffset"], filter=f"({where}) AND {present}" if where
                       else present)
    with_value = set(rows.column("video_id").to_pylist())
    for vid, entry in entries.items():
        if vid not in with_value:
            entry[key] = None
            got = failed.get(vid)
            problems.append({"video_id": vid, "uri": entry["video_path"],
                             "error_type": got["error_type"] if got else "NotComputed",
                             "error": got["error"] if got else f"not computed (run `vw backfill {files.column}`)"})
    wanted = [(v, int(o)) for v, o in zip(rows.column("video_id").to_pylist(), rows.column("_rowoffset").to_pylist(),
                                          strict=True) if v in entries]
    for start in range(0, len(wanted), _FILE_BATCH):
        part = wanted[start:start + _FILE_BATCH]
        offsets = [o for _, o in part]
        if blob:
            values = [b.read() for b in ds.take_blobs(files.column, indices=offsets)]
        else:
            values = ds.take(offsets, columns=[files.column]).column(0).to_pylist()
        for (vid, _), value in zip(part, values, strict=True):
            path = Path(entries[vid][key])
            try:
                atomic_write(path, files.write(value, meta))
            except OSError as err:
                raise MetadataError(f"cannot write {path}: {err.strerror or err}; stopped after {written} files "
                                    "(each complete; earlier files unchanged)") from err
            written += 1
    text = json.dumps(problems, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(folder) / FAILED_FILE, lambda fh: fh.write(text.encode("utf-8")))
    return {"written": written, "missing": len(problems)}


def _entry(row: dict, frames_dir: str | None, latents_dir: str | None) -> dict[str, Any]:
    vid = row["video_id"]
    return {
        "video_path": row["uri"],
        "image_path": posixpath.join(frames_dir, f"{safe_name(vid)}.png") if frames_dir else None,
        "caption": row["caption"],
        "prompt_variants": row["prompt_variants"],
        "scenario": row["scenario"],
        "latent_path": (posixpath.join(latents_dir, safe_name(row["scenario"]), f"{safe_name(vid)}.npz")
                        if latents_dir else None),
        "video_id": vid,
        "source": row["source"],
        "start_s": row["start_s"],
        "end_s": row["end_s"],
    }


def export_metadata(
    conn: Any,
    out: Path,
    where: str | None = None,
    frames_dir: str | None = None,
    latents_dir: str | None = None,
) -> ExportReport:
    """Write the scenario metadata JSON (see the module docstring) atomically: temp file + rename."""
    table = open_videos(conn, create=False)
    _require_scenarios(table)
    columns = ["video_id", "uri", "caption", "prompt_variants", "scenario", "split", "source", "start_s", "end_s"]
    groups: dict[str, list[dict]] = {s: [] for s in EXPORT_SPLITS}
    without_scenario = without_split = 0
    for rows in _batches(table, columns, where):
        for row in rows:
            if row["scenario"] is None or row["prompt_variants"] is None:
                without_scenario += 1
            elif not row["split"]:
                without_split += 1
            else:
                groups.setdefault(row["split"], []).append(_entry(row, frames_dir, latents_dir))
    for entries in groups.values():
        entries.sort(key=lambda e: e["video_id"])
    by_id = {e["video_id"]: e for entries in groups.values() for e in entries}
    files: dict[str, dict[str, int]] = {}
    for kind, key, folder in (("image", "image_path", frames_dir), ("latent", "latent_path", latents_dir)):
        source = _file_source(table, kind) if folder else None
        if source is not None:
            files[kind] = _write_files(table, source, where, by_id, key, folder)
    text = json.dumps(groups, ensure_ascii=False, indent=2) + "\n"
    atomic_write(out, lambda fh: fh.write(text.encode("utf-8")))
    return ExportReport(out, {k: len(v) for k, v in groups.items()}, without_scenario, without_split, files)
