"""The soccer ensemble analysis: match the events of several detectors, fuse them into one model,
score every model against the ground truth (``vw ensemble``; README, "Soccer ensemble analysis").

Modules, from the bottom of the import graph to the top, the order data flows through a run
(:func:`run_ensemble`):

``errors``       :class:`EnsembleOptionsError` (an option) and :class:`EnsembleDataError` (the
                 events read): ``VwError`` and ``ValueError``, exit status 2 in the CLI
``options``      :class:`EnsembleOptions` (a run) holding :class:`FusionOptions` (the fusion), and
                 the ``Literal`` choices (:data:`NmsMode`); the run id hashes the options.
                 Imports neither NumPy nor Arrow: the CLI imports it when it starts.
``records``      :class:`Detection`, one ``events`` row as a record, and the columns a run reads
``frame``        :class:`EventFrame`: events as NumPy columns with shared string vocabularies
``matching``     cross-model groups and their categories (``both``, ``all``, ``only_<model>``,
                 ``disagree`` ...) as columns: :func:`match_frame` -> :class:`Matching`
``fusion``       groups -> the ensemble model's events (weighted mean, NMS / soft-NMS):
                 :func:`fuse_matching` -> :class:`Fused`, and their ``events`` ids
``metrics``      P/R/F1 at the tolerance (:func:`claim_truths`) and SoccerNet average-mAP
                 (:func:`average_maps`; :func:`average_map` for lists of records)
``rows``         the rows a run writes (``ensemble_matches``, the fused ``events``) as Arrow columns
``run``          the driver: read ``events`` -> frame -> match -> fuse -> score -> rows -> write,
                 returning an :class:`EnsembleResult`
``report``       the terminal summary and table, the Markdown report, JSON summary and pictures
``review_data``  what the review page shows: the run's index and each video's events by timeline row
``review_clips`` short MP4 clips around the events (decoded and encoded with torchcodec)
``review_page``  the review page ``index.html`` (Plotly timeline, player, metrics, disagreements)
``warmup``       ``python -m jobs.ensemble.warmup`` (``make install``): two small runs compile the kernels
---------------
``kernels``      the compiled (numba, cached on disk) greedy loops the steps above run on
``arrow_build``  Arrow arrays built from NumPy buffers (constant and string columns)
``heap``         :func:`~jobs.ensemble.heap.retained_heap`: freed memory kept for reuse during a run

No import circles: every module imports only modules above it in this list and the three
helpers below the line (``kernels``, ``arrow_build`` and ``heap``, which import none of the
package), and no module imports the package itself. The names below are re-exported from their
modules on first use, so ``import jobs.ensemble`` (or its light ``options`` module) loads no
NumPy, Arrow, numba or Lance until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    # options
    "EnsembleOptions": "options", "FusionOptions": "options", "NmsMode": "options",
    "SOCCERNET_V2_CLASSES": "options", "check_models": "options",
    "EnsembleDataError": "errors", "EnsembleOptionsError": "errors",
    # records and frames
    "Detection": "records", "DETECTION_COLUMNS": "records",
    "EventFrame": "frame", "Vocab": "frame", "frame_from_arrow": "frame", "frame_from_detections": "frame",
    # matching and fusion
    "ALL": "matching", "BOTH": "matching", "DISAGREE": "matching", "SEVERAL": "matching",
    "Group": "matching", "Matching": "matching", "category_names": "matching", "match_frame": "matching",
    "only": "matching",
    "Fused": "fusion", "fuse_matching": "fusion",
    # metrics
    "AverageMAP": "metrics", "Counts": "metrics", "LOOSE_DELTAS_S": "metrics", "TIGHT_DELTAS_S": "metrics",
    "TruthClaims": "metrics", "average_map": "metrics", "average_maps": "metrics", "claim_truths": "metrics",
    # the run and its report
    "EnsembleResult": "run", "ModelScore": "run", "run_ensemble": "run",
    "format_summary": "report", "format_table": "report", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
