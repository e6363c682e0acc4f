"""Result tables of the soccer ensemble analysis: ``ensemble_matches`` and ``ensemble_metrics``.

Both are keyed by ``run_id`` so runs can be filtered and compared with SQL, e.g.
``model = 'ensemble' AND label = '__all__'`` on ``ensemble_metrics``. Writing a run replaces all
of that run's rows in one atomic commit (a new run is one append; a run written before is merged
on the row key, deleting its rows that are not in the new set), so re-running a run id never
duplicates rows and other runs are untouched.

``ensemble_matches`` has one row per event and *scope* (key: ``run_id``, ``scope``, ``model``,
``event_id``):

- scope ``models``: every input event with its cross-model category (``both``, ``all``,
  ``several``, ``disagree``, ``only_<model>``), its group and the models in that group;
- scope ``ground_truth``: every prediction of every scored model (the ensemble included) as
  ``tp`` or ``fp``, and every ground-truth event a model missed as ``fn`` (``model`` is then the
  model that missed it and ``event_id`` / ``time_s`` are the ground truth's).

``ensemble_metrics`` has one row per run, model and label (``label = '__all__'`` for the overall
scores): counts, precision / recall / F1 at the tolerance and SoccerNet average-mAP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tables.connection import table_exists
from tables.filters import sql_quote
from tables.staged_rows import StagedRows
from udfs.errors import NotFoundError

ENSEMBLE_MATCHES = "ensemble_matches"
ENSEMBLE_METRICS = "ensemble_metrics"

#: ``label`` of the overall (all classes) row of ``ensemble_metrics``.
OVERALL = "__all__"
SCOPE_MODELS = "models"
SCOPE_GROUND_TRUTH = "ground_truth"

MATCHES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("time_s", pa.float64(), nullable=False),
        pa.field("confidence", pa.float64()),
        pa.field("category", pa.string(), nullable=False),
        pa.field("group_id", pa.int64()),
        pa.field("matched_models", pa.list_(pa.string())),
        pa.field("partner_event_ids", pa.list_(pa.string())),
        pa.field("partner_labels", pa.list_(pa.string())),
        pa.field("partner_time_s", pa.float64()),  # time of the matched ground truth / the group's seed
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: The row key of ``ensemble_matches``.
MATCH_KEY = ["run_id", "scope", "model", "event_id"]

_AP_FIELDS = ["ap_tight", "ap_loose", "ap_tight_visible", "ap_loose_visible", "ap_tight_unshown", "ap_loose_unshown"]

METRICS_SCHEMA = pa.schema(
    [
        pa.field("metric_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("ground_truth", pa.string(), nullable=False),
        pa.field("tolerance_s", pa.float64(), nullable=False),
        pa.field("n_pred", pa.int64(), nullable=False),
        pa.field("n_gt", pa.int64(), nullable=False),
        pa.field("tp", pa.int64(), nullable=False),
        pa.field("fp", pa.int64(), nullable=False),
        pa.field("fn", pa.int64(), nullable=False),
        pa.field("precision", pa.float64()),
        pa.field("recall", pa.float64()),
        pa.field("f1", pa.float64()),
        *[pa.field(name, pa.float64()) for name in _AP_FIELDS],
        pa.field("params", pa.string()),  # the run's options as JSON text
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class MetricRow:
    """One row of ``ensemble_metrics`` (AP fields are None where not computed)."""

    run_id: str
    model: str
    label: str
    ground_truth: str
    tolerance_s: float
    n_pred: int
    n_gt: int
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    ap_tight: float | None = None
    ap_loose: float | None = None
    ap_tight_visible: float | None = None
    ap_loose_visible: float | None = None
    ap_tight_unshown: float | None = None
    ap_loose_unshown: float | None = None
    params: str | None = None

    @property
    def metric_id(self) -> str:
        """The row's key: run, model and label."""
        return "\x1f".join([self.run_id, self.model, self.label])


def metrics_to_arrow(rows: Sequence[MetricRow]) -> pa.Table:
    """``rows`` as an Arrow table of :data:`METRICS_SCHEMA`."""
    now = dt.datetime.now(dt.UTC)
    data: dict[str, pa.Array] = {}
    for f in METRICS_SCHEMA:
        if f.name == "created_at":
            data[f.name] = pa.array([now] * len(rows), f.type)
        else:
            data[f.name] = pa.array([getattr(r, f.name) for r in rows], f.type)
    return pa.table(data, schema=METRICS_SCHEMA)


def _open(conn: Any, name: str, schema: pa.Schema) -> Any:
    if not table_exists(conn, name):
        return conn.create_table(name, schema=schema)
    table = conn.open_table(name)
    if name == ENSEMBLE_MATCHES and "row_id" in table.schema.names:
        # tables written before the key became (run_id, scope, model, event_id) carry a hashed row_id
        table.drop_columns(["row_id"])
    return table


def _check_run(run_id: str, data: pa.Table) -> None:
    runs = pc.unique(data.column("run_id")).to_pylist()
    bad = sorted(r for r in runs if r != run_id)
    if bad:
        raise ValueError(f"rows of runs {bad} given while writing run '{run_id}'")


def _run_scope(run_id: str) -> str:
    return f"run_id = {sql_quote(run_id)}"


def _replace_run(table: Any, key: str | list[str], run_id: str, data: pa.Table) -> int:
    """Write ``data`` as run ``run_id``'s rows, replacing the run's earlier rows, in one commit."""
    _check_run(run_id, data)
    scope = _run_scope(run_id)
    if table.count_rows(scope) == 0:
        if data.num_rows:
            table.add(data)
        return data.num_rows
    (table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
     .when_not_matched_by_source_delete(scope).execute(data))
    return data.num_rows


class MatchesWriter(StagedRows):
    """One run's ``ensemble_matches`` rows written part by part while the run is computed and
    made visible in one commit (:class:`~tables.staged_rows.StagedRows`): a new run id is one
    append, a run written before is replaced in one merge, as :func:`write_matches` does."""

    def __init__(self, conn: Any, run_id: str) -> None:
        table = _open(conn, ENSEMBLE_MATCHES, MATCHES_SCHEMA)
        super().__init__(table, MATCHES_SCHEMA, _run_scope(run_id),
                         lambda rows: _replace_run(table, MATCH_KEY, run_id, rows))
        self.run_id = run_id

    def check(self, rows: pa.Table) -> None:
        """Rows of other runs are refused."""
        _check_run(self.run_id, rows)


def write_matches(conn: Any, run_id: str, rows: pa.Table) -> int:
    """Replace run ``run_id``'s rows of ``ensemble_matches`` with ``rows`` (a table of
    :data:`MATCHES_SCHEMA`); returns the rows written."""
    writer = MatchesWriter(conn, run_id)
    writer.add(rows)
    return writer.commit()


def write_metrics(conn: Any, run_id: str, rows: Sequence[MetricRow]) -> int:
    """Replace run ``run_id``'s rows of ``ensemble_metrics`` with ``rows``; returns the rows written."""
    return _replace_run(_open(conn, ENSEMBLE_METRICS, METRICS_SCHEMA), "metric_id", run_id, metrics_to_arrow(rows))


def read_results(conn: Any, name: str, where: str | None = None) -> pa.Table:
    """Rows of ``ensemble_matches`` or ``ensemble_metrics`` (optionally filtered with SQL)."""
    if name not in (ENSEMBLE_MATCHES, ENSEMBLE_METRICS):
        raise ValueError(f"'{name}' is not an ensemble result table ({ENSEMBLE_MATCHES}, {ENSEMBLE_METRICS})")
    if not table_exists(conn, name):
        raise NotFoundError(f"the warehouse at {conn.uri} has no '{name}' table yet: run `vw ensemble` first")
    return conn.open_table(name).to_lance().to_table(filter=where)
