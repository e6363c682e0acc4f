"""Read-only SQL over the warehouse: joins and aggregates, refusals, no file access, engine errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from tables.connection import connect, open_videos
from tables.events import Event, open_events, write_events
from tables.sql import SqlError, run_sql
from udfs.arrays import steps_to_arrow


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = str(tmp_path_factory.mktemp("sql") / "db")
    conn = connect(db)
    videos = open_videos(conn)
    rows = [{"video_id": f"m{i}", "uri": f"/v/m{i}.mp4", "source": "soccernet" if i < 3 else "msrvtt",
             "split": "train", "caption": f"clip {i}", "duration_s": 10.0 * (i + 1)} for i in range(5)]
    videos.add(pa.Table.from_pylist(rows, schema=videos.schema))
    events = open_events(conn)
    write_events(events, [
        Event("m0", "llava", 12.0, "Goal", confidence=0.9), Event("m0", "qwen", 12.5, "Goal", confidence=0.7),
        Event("m0", "ground_truth", 12.2, "Goal"), Event("m1", "llava", 30.0, "Foul", confidence=0.6),
        Event("m1", "qwen", 31.0, "Goal", confidence=0.85), Event("m2", "llava", 5.0, "Corner", confidence=0.95),
    ])
    # a computed column, filled for some rows only
    emb = [np.ones((2, 4), np.float32) if i % 2 == 0 else None for i in range(5)]
    conn.create_table("embedded", pa.table({"video_id": [f"m{i}" for i in range(5)],
                                            "video_embedding": steps_to_arrow(emb, 4)}))
    return {"db": db, "conn": conn}


def test_join_and_aggregate(wh: dict) -> None:
    got = run_sql(
        "SELECT v.source, e.model, count(*) AS n, round(avg(e.confidence), 3) AS mean_conf "
        "FROM events e JOIN videos v USING (video_id) WHERE e.model <> 'ground_truth' "
        "GROUP BY ALL ORDER BY v.source, e.model", wh["conn"])
    assert got.to_pylist() == [
        {"source": "soccernet", "model": "llava", "n": 3, "mean_conf": 0.817},
        {"source": "soccernet", "model": "qwen", "n": 2, "mean_conf": 0.775},
    ]
    per_label = run_sql("SELECT label, model, count(*) AS n FROM events GROUP BY ALL ORDER BY n DESC, label, model",
                        wh["conn"], max_rows=2)
    assert per_label.to_pylist() == [{"label": "Goal", "model": "qwen", "n": 2},
                                     {"label": "Corner", "model": "llava", "n": 1}]
    missing = run_sql("SELECT video_id FROM embedded WHERE video_embedding IS NULL ORDER BY 1", wh["conn"])
    assert missing.column(0).to_pylist() == ["m1", "m3"]
    no_events = run_sql("SELECT video_id FROM videos WHERE video_id NOT IN (SELECT video_id FROM events) ORDER BY 1",
                        wh["conn"])
    assert no_events.column(0).to_pylist() == ["m3", "m4"]


@pytest.mark.parametrize("statement", [
    "DELETE FROM events", "INSERT INTO events SELECT * FROM events", "UPDATE videos SET caption = 'x'",
    "CREATE TABLE t AS SELECT 1", "DROP TABLE videos", "COPY videos TO 'out.csv'", "ATTACH 'other.db'",
    "ALTER TABLE videos ADD COLUMN x INT", "PRAGMA database_list", "INSTALL httpfs", "LOAD httpfs",
    "EXPORT DATABASE 'dir'", "SET enable_external_access = true", "SELECT 1; SELECT 2",
])
def test_writes_and_settings_refused(wh: dict, statement: str) -> None:
    with pytest.raises(SqlError, match="refused|exactly one statement"):
        run_sql(statement, wh["conn"])
    assert run_sql("SELECT count(*) AS n FROM events", wh["conn"]).to_pylist() == [{"n": 6}]


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_parquet('x.parquet')",
    "SELECT * FROM read_json_auto('x.json')", "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text /* hidden */ ('/etc/hostname')",
])
def test_file_functions_refused(wh: dict, statement: str) -> None:
    with pytest.raises(SqlError, match=r"refused: \w+\(\) reads files"):
        run_sql(statement, wh["conn"])


def test_file_access_blocked_by_the_engine(wh: dict, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    with pytest.raises(SqlError, match="disabled by configuration"):
        run_sql(f"SELECT * FROM '{secret}'", wh["conn"])
    # the literal text of a function name inside a string is not a call
    assert run_sql("SELECT 'read_csv(' AS s", wh["conn"]).to_pylist() == [{"s": "read_csv("}]


def test_bad_sql_reports_engine_message_and_query(wh: dict) -> None:
    with pytest.raises(SqlError, match=r"(?s)Binder Error.*no_such_col.*query: SELECT no_such_col FROM videos"):
        run_sql("SELECT no_such_col FROM videos", wh["conn"])
    with pytest.raises(SqlError, match=r"(?s)Parser Error.*query: SELEC 1"):
        run_sql("SELEC 1", wh["conn"])


def test_cli_formats(wh: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    q = "SELECT video_id, label FROM events WHERE model = 'llava' ORDER BY time_s"
    res = runner.invoke(app, ["sql", q, "--format", "csv", "--db", wh["db"]])
    assert res.exit_code == 0, res.output
    assert list(csv.DictReader(io.StringIO(res.stdout))) == [
        {"video_id": "m2", "label": "Corner"}, {"video_id": "m0", "label": "Goal"}, {"video_id": "m1", "label": "Foul"}]
    res = runner.invoke(app, ["sql", q, "--format", "json", "--db", wh["db"]])
    assert json.loads(res.stdout)[0] == {"video_id": "m2", "label": "Corner"}
    out = tmp_path / "r.parquet"
    res = runner.invoke(app, ["sql", q, "--format", "parquet", "--out", str(out), "--db", wh["db"]])
    assert res.exit_code == 0 and pq.read_table(out).num_rows == 3
    res = runner.invoke(app, ["sql", q, "--db", wh["db"]])
    assert res.stdout.splitlines()[0].split() == ["video_id", "label"] and "Corner" in res.stdout
    res = runner.invoke(app, ["sql", "DROP TABLE events", "--db", wh["db"]])
    assert res.exit_code == 2 and "read-only" in res.output
    res = runner.invoke(app, ["sql", q, "--format", "parquet", "--db", wh["db"]])
    assert res.exit_code == 2 and "--out" in res.output
