"""The report of an ensemble run: a terminal table, a JSON summary, a Markdown report and pictures.

``report.md`` holds the run's settings and notes, the metrics table (P / R / F1 at the tolerance
and tight / loose average-mAP per model and class), links to the pictures, and the top
disagreements between models with the times to look at.

Pictures (matplotlib, Agg backend): ``f1_per_class.png`` and ``ap_per_class.png`` (tight and loose
average-mAP) with one bar per model and class, ``pr_<model>.png``: precision and recall
per class of one model (the ensemble included), and ``timelines/<video>.png``: the events of
the ground truth and of every model along the video's time, coloured by label, with lines
between events matched across models (grey: same label, red dashed: disagreeing labels) and
from each true positive to its ground-truth event (green).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.ensemble.matching import DISAGREE
from jobs.ensemble.run import EnsembleResult
from tables.ensemble_results import OVERALL, MetricRow

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
PR_PREFIX = "pr_"
F1_FILE = "f1_per_class.png"
AP_FILE = "ap_per_class.png"
TIMELINE_DIR = "timelines"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _shown_labels(result: EnsembleResult) -> list[str]:
    """Labels with ground truth or predictions for some model, in class-list order first."""
    active = {r.label for r in result.metrics if r.label != OVERALL and (r.n_gt or r.n_pred)}
    ordered = [c for c in result.options.classes if c in active]
    return ordered + sorted(active - set(ordered))


def _by_model_label(rows: Sequence[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    return {(r.model, r.label): r for r in rows}


def format_summary(result: EnsembleResult) -> str:
    """Run id, inputs, cross-model categories and fused events as a few lines of text."""
    opts = result.options
    fusion = opts.fusion
    videos = result.input_videos()
    into = f"{opts.models[0]} scored alone" if result.single else f"models {', '.join(opts.models)} -> '{fusion.name}'"
    lines = [
        f"run {result.run_id}: {into}, tolerance {opts.tolerance_s:g} s, "
        f"{len(videos)} videos with predictions, {len(result.scored_videos)} with ground truth",
        "events: " + ", ".join(f"{m} {n}" for m, n in result.event_counts().items()),
    ]
    if not result.single:
        lines += [
            "categories: " + (", ".join(f"{k} {v}" for k, v in result.category_counts().items()) or "none"),
            f"fused: {len(result.fused)} events of '{fusion.name}' (nms {fusion.nms}, "
            f"window {fusion.nms_window(opts.tolerance_s):g} s)",
        ]
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def format_table(result: EnsembleResult) -> str:
    """Per-class F1 at the tolerance and tight / loose average-mAP for every model, as text."""
    if not result.metrics:
        return "no scores (run without ground truth)"
    models = result.scored_models
    cells = _by_model_label(result.metrics)
    labels = _shown_labels(result)
    width = max([len(label) for label in labels] + [len("overall"), 8])
    col = 22
    head = f"{'label':<{width}}  {'gt':>5}  " + "".join(f"{m[:col - 2]:<{col}}" for m in models)
    sub = f"{'':<{width}}  {'':>5}  " + "".join(f"{'F1    AP-t  AP-l':<{col}}" for _ in models)
    lines = [head, sub, "-" * len(head)]
    for label in [*labels, OVERALL]:
        any_row = cells.get((models[0], label))
        n_gt = any_row.n_gt if any_row else 0
        shown = "overall" if label == OVERALL else label
        parts = []
        for m in models:
            r = cells.get((m, label))
            parts.append(f"{_fmt(r.f1 if r else None):<6}{_fmt(r.ap_tight if r else None):<6}"
                         f"{_fmt(r.ap_loose if r else None):<{col - 12}}")
        if label == OVERALL:
            lines.append("-" * len(head))
        lines.append(f"{shown:<{width}}  {n_gt:>5}  " + "".join(parts))
    lines.append(f"F1 at {result.options.tolerance_s:g} s over every prediction (no confidence threshold); AP-t / "
                 f"AP-l: SoccerNet average-mAP tight (1-5 s) / loose (5-60 s); overall AP is the mean over the "
                 f"{len(result.options.classes)} classes of the class list (a class without ground truth scores 0)")
    for m, entry in f1_thresholds(result).items():
        fixed, best = entry["fixed"], entry["best"]
        lines.append(f"F1 of {m}: {_fmt(fixed['f1'])} at confidence >= {fixed['threshold']:g}; best "
                     f"{_fmt(best['f1'])} at confidence >= {best['threshold']:.4g}")
    return "\n".join(line.rstrip() for line in lines)


#: The fixed confidence threshold F1 is also reported at (beside the best one per model).
F1_FIXED_THRESHOLD = 0.5


def f1_thresholds(result: EnsembleResult) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per scored model, overall F1 at :data:`F1_FIXED_THRESHOLD` and at its best-F1 threshold."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for m in result.scored_models:
        score = result.scores.get(m)
        if score is None:
            continue
        threshold, counts = score.claims.best_f1_threshold()
        fixed = score.claims.counts_at(F1_FIXED_THRESHOLD)
        out[m] = {"fixed": {"threshold": F1_FIXED_THRESHOLD, "f1": fixed.f1, "precision": fixed.precision,
                            "recall": fixed.recall},
                  "best": {"threshold": threshold, "f1": counts.f1, "precision": counts.precision,
                           "recall": counts.recall}}
    return out


def summary(result: EnsembleResult, files: Sequence[str] = ()) -> dict[str, Any]:
    """The run as a JSON-serialisable dictionary."""
    metrics: dict[str, Any] = {}
    for r in result.metrics:
        entry = {k: getattr(r, k) for k in ("n_pred", "n_gt", "tp", "fp", "fn", "precision", "recall", "f1",
                                            "ap_tight", "ap_loose", "ap_tight_visible", "ap_loose_visible",
                                            "ap_tight_unshown", "ap_loose_unshown")}
        per_model = metrics.setdefault(r.model, {"overall": None, "per_class": {}})
        if r.label == OVERALL:
            per_model["overall"] = entry
        else:
            per_model["per_class"][r.label] = entry
    return {
        "f1_thresholds": f1_thresholds(result),
        "run_id": result.run_id,
        "params": result.options.params(),
        "videos": {"with_predictions": len(result.input_videos()), "scored": len(result.scored_videos)},
        "events": result.event_counts(),
        "ground_truth_events": len(result.truth_frame),
        "categories": result.category_counts(),
        "disagreements": len(result.disagreement_groups()),
        "fused_events": len(result.fused),
        "outside_class_list": result.outside_classes,
        "unscored_videos": list(result.unscored_videos),
        "timings_s": dict(result.timings_s),
        "metrics": metrics,
        "notes": list(result.notes),
        "written": dict(result.written),
        "files": list(files),
    }


def file_slug(video_id: str) -> str:
    """A file name for ``video_id``: its safe characters and a short hash (unique per id)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id).strip("_")[:80]
    return f"{clean}-{hashlib.sha1(video_id.encode()).hexdigest()[:6]}"


def _bars(path: Path, result: EnsembleResult, panels: Sequence[tuple[str, str]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = result.scored_models
    cells = _by_model_label(result.metrics)
    labels = [*_shown_labels(result), OVERALL]
    y = np.arange(len(labels))
    height = 0.8 / len(models)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 1.2 + 0.45 * len(labels)), squeeze=False)
    for ax, (attr, panel_title) in zip(axes[0], panels, strict=True):
        for i, m in enumerate(models):
            values = [getattr(cells[(m, label)], attr) if (m, label) in cells else None for label in labels]
            ax.barh(y + i * height, [0.0 if v is None else v for v in values], height=height, label=m)
        ax.set_yticks(y + height * (len(models) - 1) / 2)
        ax.set_yticklabels(["overall" if label == OVERALL else label for label in labels])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(panel_title)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _precision_recall(path: Path, result: EnsembleResult, model: str) -> None:
    """Precision and recall per class of one model at the tolerance (horizontal bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = _by_model_label(result.metrics)
    labels = [*_shown_labels(result), OVERALL]
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.4 * len(labels)))
    for offset, (attr, colour) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"))):
        values = [getattr(cells[(model, label)], attr) if (model, label) in cells else None for label in labels]
        ax.barh(y + offset * 0.4, [0.0 if v is None else v for v in values], height=0.4, color=colour, label=attr)
    ax.set_yticks(y + 0.2)
    ax.set_yticklabels(["overall" if label == OVERALL else label for label in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"{model}: precision / recall per class at {result.options.tolerance_s:g} s (run {result.run_id})",
                 fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _timeline(path: Path, result: EnsembleResult, video_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = result.options
    rows = [opts.ground_truth, *opts.models, opts.fusion.name]
    level = {name: len(rows) - 1 - i for i, name in enumerate(rows)}
    view = result.video_events(video_id)
    events = view.events
    labels = sorted({d.label for items in events.values() for d in items})
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colour = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}

    fig, ax = plt.subplots(figsize=(14, 1.2 + 0.8 * len(rows)))
    for g in view.groups:
        style = {"color": "red", "linestyle": "--"} if g.category == DISAGREE else {"color": "grey"}
        ax.plot([d.time_s for d in g.members], [level[d.model] for d in g.members], linewidth=0.8, alpha=0.7,
                **style)
    true_positives = set()
    for model, pairs in view.pairs.items():
        for p, g in pairs:
            true_positives.add(p.event_id)
            ax.plot([p.time_s, g.time_s], [level[model], level[opts.ground_truth]], color="green",
                    linewidth=0.5, alpha=0.4)
    scored_video = bool(result.scores) and video_id in set(result.scored_videos)
    points: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for name, items in events.items():
        for d in items:
            scored = name != opts.ground_truth and scored_video
            marker = "x" if scored and d.event_id not in true_positives else "o"
            if name == opts.ground_truth:
                marker = "o" if d.visible else "s"
            alpha = 1.0 if d.confidence is None else max(0.25, min(1.0, d.confidence))
            points.setdefault((name, d.label, marker), []).append((d.time_s, alpha))
    for (name, label, marker), items in points.items():
        rgba = [(*colour[label][:3], alpha) for _, alpha in items]
        xs, ys = [t for t, _ in items], [level[name]] * len(items)
        if marker == "s":  # hollow squares: ground truth that was not shown
            ax.scatter(xs, ys, marker=marker, s=40, facecolors="none", edgecolors=rgba)
        else:
            ax.scatter(xs, ys, c=rgba, marker=marker, s=40)
    handles = [plt.Line2D([], [], color=colour[label], marker="o", linestyle="", label=label) for label in labels]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_yticks([level[r] for r in rows])
    ax.set_yticklabels(rows)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("time in video (s)")
    halves = {(g.game, g.half) for g in events[opts.ground_truth] if g.game is not None}
    where = ""
    if len(halves) == 1:
        game, half = halves.pop()
        where = f" ({game}, half {half})"
    ax.set_title(f"{video_id}{where}: o matched / x unmatched prediction; square: ground truth not shown; "
                 f"green: true positive, grey: models agree, red: models disagree", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def timeline_videos(result: EnsembleResult) -> list[str]:
    """The videos a timeline is drawn for: every video with predictions or ground truth, in id order."""
    return sorted(set(result.input_videos()) | set(result.scored_videos))


def write_report(result: EnsembleResult, out_dir: str | Path, max_timelines: int | None = None) -> list[Path]:
    """Write the JSON summary, the Markdown report and the pictures into ``out_dir``; returns the files.

    ``max_timelines`` caps the number of timeline pictures (videos in id order); ``None`` draws
    one per video.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"report folder {out} exists and is not a folder")
    if max_timelines is not None and max_timelines < 0:
        raise ValueError(f"max_timelines must be >= 0, got {max_timelines}")
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if result.metrics:
        _bars(out / F1_FILE, result, [("f1", f"F1 at {result.options.tolerance_s:g} s")],
              f"run {result.run_id}: F1 per class")
        _bars(out / AP_FILE, result, [("ap_tight", "tight average-mAP (1-5 s)"),
                                      ("ap_loose", "loose average-mAP (5-60 s)")],
              f"run {result.run_id}: average-mAP per class")
        files += [out / F1_FILE, out / AP_FILE]
        for model in result.scored_models:
            path = out / f"{PR_PREFIX}{file_slug(model)}.png"
            _precision_recall(path, result, model)
            files.append(path)
    videos = timeline_videos(result)
    if max_timelines is not None:
        videos = videos[:max_timelines]
    if videos:
        (out / TIMELINE_DIR).mkdir(exist_ok=True)
    for video in videos:
        path = out / TIMELINE_DIR / f"{file_slug(video)}.png"
        _timeline(path, result, video)
        files.append(path)
    names = [str(p.relative_to(out)) for p in files]
    pictures = {"bars": [n for n in names if n in (F1_FILE, AP_FILE)],
                "pr": [n for n in names if n.startswith(PR_PREFIX)],
                "timelines": [n for n in names if n.startswith(TIMELINE_DIR + "/")]}
    (out / REPORT_FILE).write_text(markdown_report(result, pictures))
    document = summary(result, [REPORT_FILE, *names])
    document["timelines"] = {"videos": len(timeline_videos(result)), "drawn": len(videos)}
    document["top_disagreements"] = top_disagreements(result)
    (out / SUMMARY_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return [out / SUMMARY_FILE, out / REPORT_FILE, *files]


def clock(time_s: float) -> str:
    """Seconds as ``m:ss.s`` (time within the video, i.e. within the match half)."""
    minutes, seconds = divmod(time_s, 60)
    return f"{int(minutes)}:{seconds:04.1f}"


def top_disagreements(result: EnsembleResult, limit: int = 20) -> list[dict[str, Any]]:
    """The disagreements most worth a look: both sides confident (highest lowest confidence first).

    Each entry has the video, the time span to look at (``start_s`` .. ``end_s``) and the events.
    """
    import numpy as np

    matching = result.matching
    which = result.disagreement_groups()
    if which.size == 0:
        return []
    conf = matching.frame.conf[matching.members]
    lowest = np.minimum.reduceat(conf, matching.starts[:-1])[which]
    highest = np.maximum.reduceat(conf, matching.starts[:-1])[which]
    video = matching.frame.video[matching.members[matching.starts[:-1]]][which]
    top = which[np.lexsort((which, video, -highest, -lowest))[:limit]]
    groups = matching.groups(top)
    return [{"video_id": g.video_id, "start_s": min(d.time_s for d in g.members),
             "end_s": max(d.time_s for d in g.members),
             "events": [{"model": d.model, "label": d.label, "time_s": d.time_s, "confidence": d.confidence}
                        for d in g.members]} for g in groups]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown_report(result: EnsembleResult, pictures: dict[str, list[str]], disagreements: int = 20) -> str:
    """The Markdown report of a run; ``pictures`` maps ``bars`` / ``pr`` / ``timelines`` to relative paths."""
    opts = result.options
    lines = [f"# Ensemble run `{result.run_id}`", "", "```", format_summary(result), "```", ""]
    lines += ["## Metrics", ""]
    if result.metrics:
        lines += [f"Precision, recall and F1 at {opts.tolerance_s:g} s; AP-t / AP-l: SoccerNet average-mAP tight "
                  f"(1-5 s) / loose (5-60 s), averaged over the {len(opts.classes)} classes of the class list "
                  "(a class without ground truth scores 0; labels outside the list have no AP).", ""]
        lines += ["| model | label | ground truth | predictions | TP | FP | FN | precision | recall | F1 | AP-t "
                  "| AP-l |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        cells = _by_model_label(result.metrics)
        for model in result.scored_models:
            for label in [OVERALL, *_shown_labels(result)]:
                r = cells.get((model, label))
                if r is None:
                    continue
                name = "**overall**" if label == OVERALL else label
                lines.append(f"| {model} | {name} | {r.n_gt} | {r.n_pred} | {r.tp} | {r.fp} | {r.fn} | "
                             f"{_cell(r.precision)} | {_cell(r.recall)} | {_cell(r.f1)} | {_cell(r.ap_tight)} | "
                             f"{_cell(r.ap_loose)} |")
    else:
        lines.append("No scores: the run did not score against ground truth.")
    lines.append("")
    if pictures.get("bars") or pictures.get("pr"):
        lines += ["## Charts", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in pictures.get("bars", [])]
        lines += [f"![precision / recall of {Path(p).stem[len(PR_PREFIX):]}]({p})" for p in pictures.get("pr", [])]
        lines.append("")
    lines += ["## Timelines", ""]
    drawn = pictures.get("timelines", [])
    total = len(timeline_videos(result))
    lines.append(f"One picture per match half (video): ground truth, each model and `{opts.fusion.name}`; "
                 f"{len(drawn)} of {total} drawn.")
    lines.append("")
    lines += [f"![{p}]({p})" for p in drawn]
    lines += ["", "## Top disagreements", ""]
    top = top_disagreements(result, disagreements)
    n_all = len(result.disagreement_groups())
    if top:
        lines += [f"{len(top)} of {n_all} disagreements, both sides confident first; times are within the half.", "",
                  "| video | look at | events |", "|---|---|---|"]
        for item in top:
            events = "; ".join(f"{e['model']}: {e['label']} {e['confidence']:.2f} at {clock(e['time_s'])}"
                               for e in item["events"])
            lines.append(f"| {item['video_id']} | {clock(item['start_s'])} - {clock(item['end_s'])} | {events} |")
    else:
        lines.append("The models never disagree within the tolerance.")
    return "\n".join(lines) + "\n"
