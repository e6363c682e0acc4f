"""Security: read-only SQL that cannot touch files, file names that cannot leave their folder,
and credentials that never show in messages, logs or status."""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tables.connection import STABLE_ROW_IDS, connect
from tests.reliability.faults import run_cli, snapshot
from tests.videogen import make_cfr_video
from udfs.arrays import steps_to_arrow

pytestmark = pytest.mark.reliability

D = 4


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small warehouse (videos with a per-frame column) and a folder outside it holding a secret file."""
    root = tmp_path_factory.mktemp("sec")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("password\nhunter2-outside\n")
    db = str(root / "wh")
    conn = connect(db)
    conn.create_table("videos", pa.table({
        "video_id": ["v1", "v2"], "uri": ["/x/v1.mp4", "/x/v2.mp4"], "source": ["a", "b"],
        "frame_features": steps_to_arrow([np.ones((2, D), np.float32), np.zeros((1, D), np.float32)], D),
    }), storage_options=dict(STABLE_ROW_IDS))
    return {"db": db, "conn": conn, "outside": outside, "root": root}


# --------------------------------------------------------------------------- SQL

#: Statements that must be refused: writes, file reads outside the tables, settings, extensions.
SQL_PROBES = [
    "COPY videos TO '{out}/copy.csv'",
    "COPY (SELECT * FROM videos) TO '{out}/copy2.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{out}/export'",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM \"read_text\"('/etc/passwd')",
    "SELECT * FROM read_text/**/('/etc/passwd')",
    "SELECT * FROM READ_BLOB('/etc/passwd')",
    "SELECT * FROM read_parquet('{out}/*.parquet')",
    "SELECT * FROM read_json_objects('/etc/passwd')",
    "SELECT * FROM parquet_metadata('{out}/x.parquet')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM '{secret}'",
    "FROM '/etc/passwd'",
    "SELECT * FROM 'https://example.invalid/x.csv'",
    "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
    "WITH t AS (SELECT 1) SELECT * FROM read_csv('{secret}')",
    "SUMMARIZE SELECT * FROM '{secret}'",
    "EXPLAIN COPY videos TO '{out}/explained.csv'",
    "ATTACH '{out}/evil.duckdb' AS evil",
    "DETACH memory",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SET allowed_directories = ['/']",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "CREATE TABLE t AS SELECT * FROM videos",
    "INSERT INTO videos SELECT * FROM videos",
    "DELETE FROM videos",
    "DROP VIEW videos",
    "SELECT 1; COPY videos TO '{out}/second.csv'",
    "SELECT * FROM videos; DROP VIEW videos",
    "VACUUM",
    "CHECKPOINT",
    "USE system",
]


@pytest.mark.parametrize("probe", SQL_PROBES)
def test_sql_cannot_write_or_read_outside(warehouse: dict, probe: str, tmp_path: Path) -> None:
    from tables.sql import SqlError, run_sql

    out = tmp_path / "written"
    out.mkdir()
    query = probe.format(out=out, secret=warehouse["outside"] / "secret.csv")
    before = snapshot(warehouse["conn"].open_table("videos"))
    with pytest.raises(SqlError) as info:
        run_sql(query, warehouse["db"])
    message = str(info.value)
    assert query in message  # the refusal quotes the statement
    assert "hunter2" not in message and "root:x:" not in message
    assert list(out.iterdir()) == []
    assert snapshot(warehouse["conn"].open_table("videos")) == before


def test_sql_engine_is_locked_even_without_the_statement_check(warehouse: dict, tmp_path: Path) -> None:
    """The connection itself refuses file access, settings and extensions (defence in depth)."""
    import duckdb

    from tables.sql import sql_connection

    con = sql_connection(warehouse["conn"])
    try:
        for statement in (f"COPY videos TO '{tmp_path}/x.csv'",
                          f"SELECT * FROM read_csv('{warehouse['outside'] / 'secret.csv'}')",
                          "SELECT * FROM read_text('/etc/passwd')",
                          f"ATTACH '{tmp_path}/evil.duckdb' AS evil",
                          "SET enable_external_access = true",
                          "SET lock_configuration = false",
                          "INSTALL httpfs",
                          "LOAD httpfs"):
            with pytest.raises(duckdb.Error):
                con.execute(statement)
        assert con.execute("SELECT count(*) FROM videos").fetchone() == (2,)
    finally:
        con.close()
    assert list(tmp_path.iterdir()) == []


def test_sql_reads_the_tables(warehouse: dict) -> None:
    res = run_cli("sql", "SELECT video_id, source FROM videos ORDER BY video_id", "--format", "json",
                  "--db", warehouse["db"])
    assert res.code == 0, res.text
    assert [r["video_id"] for r in json.loads(res.out)] == ["v1", "v2"]
    refused = run_cli("sql", f"COPY videos TO '{warehouse['root']}/cli.csv'", "--db", warehouse["db"])
    assert refused.code == 2 and "refused: COPY statements are not allowed" in refused.err
    assert not (warehouse["root"] / "cli.csv").exists()


# --------------------------------------------------------------------------- file names from data

HOSTILE_IDS = [
    "../escaped", "../../etc/cron.d/evil", "/abs/path", "a/b/c", "a\\b", "..", ".", ".hidden", "",
    "nul\x00byte", "tab\tand\nnewline", "ünïcødé-ид", "emoji-😀", "x" * 1000, "%2E%2E%2Fescaped",
    "CON", "semi;colon|pipe&amp", "space name",
]


def test_export_features_names_stay_inside(tmp_path: Path) -> None:
    db = str(tmp_path / "wh")
    conn = connect(db)
    n = len(HOSTILE_IDS)
    values = [np.full((2, D), i, np.float32) for i in range(n)]
    conn.create_table("videos", pa.table({
        "video_id": HOSTILE_IDS, "uri": [f"/x/{i}.mp4" for i in range(n)],
        "frame_features": steps_to_arrow(values, D),
    }))
    out = tmp_path / "deep" / "out"
    res = run_cli("export-features", "--out", str(out), "--db", db)
    assert res.code == 0, res.text
    files = list(out.iterdir())
    assert all(f.is_file() and f.parent == out for f in files)
    assert {f.name for f in tmp_path.rglob("*") if f.is_file()} <= {f.name for f in files} | _db_files(tmp_path)
    assert all(not f.name.startswith(".") and len(f.name.encode()) <= 255 for f in files)
    index = json.loads((out / "index.json").read_text())
    assert set(index["files"]) == set(HOSTILE_IDS)
    assert len(set(index["files"].values())) == n  # no two ids share a file
    for i, vid in enumerate(HOSTILE_IDS):
        path = out / index["files"][vid]
        assert path.parent == out
        np.testing.assert_array_equal(np.load(path), values[i])


def _db_files(root: Path) -> set[str]:
    return {f.name for f in (root / "wh").rglob("*") if f.is_file()}


def test_export_metadata_paths_stay_inside(tmp_path: Path) -> None:
    db = str(tmp_path / "wh")
    conn = connect(db)
    n = len(HOSTILE_IDS)
    conn.create_table("videos", pa.table({
        "video_id": HOSTILE_IDS, "uri": [f"/x/{i}.mp4" for i in range(n)], "caption": ["c"] * n,
        "split": ["train"] * n, "source": ["s"] * n,
        "scenario": ["../../outside" if i % 2 else "press_room" for i in range(n)],
        "prompt_variants": [["p"]] * n,
        "start_s": pa.array([None] * n, pa.float64()), "end_s": pa.array([None] * n, pa.float64()),
    }))
    out = tmp_path / "meta.json"
    frames, latents = tmp_path / "frames", tmp_path / "latents"
    res = run_cli("export-metadata", "--out", str(out), "--frames-dir", str(frames), "--latents-dir", str(latents),
                  "--db", db)
    assert res.code == 0, res.text
    entries = json.loads(out.read_text())["train"]
    assert len(entries) == n
    image_paths = set()
    for e in entries:
        image = Path(e["image_path"])
        latent = Path(e["latent_path"])
        assert image.parent == frames and not image.name.startswith("."), e
        assert latent.parent.parent == latents and ".." not in latent.parts, e
        image_paths.add(image)
    assert len(image_paths) == n
    plain = next(e for e in entries if e["video_id"] == "CON")
    assert plain["image_path"] == f"{frames}/CON.png"  # ordinary ids keep their usual name


# --------------------------------------------------------------------------- credentials

SECRETS = {
    "url_password": "urlPa55-9f8e7d",
    "signature": "goog-sig-0a1b2c3d4e5f",
    "credential": "goog-cred-ab12cd34",
    "aws_secret": "aws-SECRET-zz9yy8xx7",
    "session_token": "aws-session-tok-5566",
    "option_secret": "opt-secret-44aa55bb",
    "private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def secrets_in_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Credentials set the usual ways: AWS variables, storage options, a service-account file."""
    account = {"type": "service_account", "project_id": "p", "private_key_id": "kid-123456",
               "private_key": f"-----BEGIN PRIVATE KEY-----\n{SECRETS['private_key']}\n-----END PRIVATE KEY-----\n",
               "client_email": "svc@p.iam.gserviceaccount.com"}
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(account))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["aws_secret"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRETS["session_token"])
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS_JSON", json.dumps(account))
    monkeypatch.setenv("VW_STORAGE_OPTIONS", json.dumps({
        "aws_endpoint": f"http://127.0.0.1:{_closed_port()}", "allow_http": "true", "aws_region": "us-east-1",
        "aws_secret_access_key": SECRETS["option_secret"]}))
    port = _closed_port()
    return {
        "password_uri": f"https://reader:{SECRETS['url_password']}@127.0.0.1:{port}/a.mp4",
        "signed_uri": (f"https://127.0.0.1:{port}/b.mp4?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                       f"&X-Goog-Credential={SECRETS['credential']}&X-Goog-Signature={SECRETS['signature']}"),
        "key_file": key_file,
    }


def _assert_clean(text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} leaked: ...{text[max(0, text.find(secret) - 80):][:200]}"


def test_credentials_never_in_ingest_output_or_logs(secrets_in_env: dict, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    good = make_cfr_video(tmp_path / "ok.mp4", num_frames=10, width=64, height=48).path
    listing = tmp_path / "list.csv"
    listing.write_text(f"uri,video_id\n{secrets_in_env['password_uri']},p1\n\"{secrets_in_env['signed_uri']}\",s1\n"
                       f"{good},ok\n")
    caplog.set_level(logging.DEBUG)
    res = run_cli("ingest", secrets_in_env["password_uri"], secrets_in_env["signed_uri"], listing,
                  "--db", str(tmp_path / "wh"))
    assert res.code == 1
    fails = [line for line in res.err.splitlines() if line.startswith("FAILED")]
    assert len(fails) == 4, res.err
    assert "https://***@127.0.0.1" in res.err and "X-Goog-Signature=***" in res.err  # still says which input
    assert "1 new" in res.out
    _assert_clean(res.text)
    _assert_clean(caplog.text)
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # the libraries did log these URLs


def test_credentials_never_in_decode_errors(secrets_in_env: dict) -> None:
    from udfs.decode import SamplingPlan, decode, probe

    for uri in (secrets_in_env["password_uri"], secrets_in_env["signed_uri"]):
        for call in (lambda u: probe(u), lambda u: decode(u, SamplingPlan.uniform(2))):
            with pytest.raises(Exception) as info:
                call(uri)
            text = "".join(traceback.format_exception(info.value))
            assert "127.0.0.1" in str(info.value)
            _assert_clean(text)


def test_credentials_never_in_storage_errors_or_status(secrets_in_env: dict, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """An object store that cannot be reached while AWS keys, storage options and a service
    account are set: the error and the logs never show them."""
    caplog.set_level(logging.DEBUG)
    try:
        res = run_cli("status", "--db", "s3://vw-no-bucket/warehouse")
        text = res.text
        assert res.code != 0
    except Exception as err:  # noqa: BLE001 - the error itself is what is checked
        text = "".join(traceback.format_exception(err))
    assert "vw-no-bucket" in text or "127.0.0.1" in text
    _assert_clean(text)
    _assert_clean(caplog.text)
    local = str(tmp_path / "wh")
    res = run_cli("ingest", str(tmp_path / "missing.mp4"), "--db", local)
    assert res.code == 1
    status = run_cli("status", "--json", "--db", local)
    assert status.code == 0
    _assert_clean(res.text + status.text + caplog.text)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRETS["aws_secret"]  # redaction never edits the settings


@pytest.mark.parametrize("text, hidden, kept", [
    ("https://u:pw-123456@host/x.mp4", "pw-123456", "https://***@host/x.mp4"),
    ("gs://b/x.mp4?X-Goog-Signature=abcdef123456&X-Goog-Date=20240101", "abcdef123456", "X-Goog-Date=20240101"),
    ("s3://b/x?X-Amz-Credential=AKIA%2F1234&X-Amz-Security-Token=tok-987654", "tok-987654", "s3://b/x?"),
    ("https://acct.blob.core.windows.net/c/x.mp4?sv=2020&sig=azsig-5544", "azsig-5544", "sv=2020"),
    ('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIabc\\n-----END PRIVATE KEY-----\\n"}', "MIIabc",
     '"private_key": "***"'),
    ("aws_secret_access_key=verysecret99 region=eu", "verysecret99", "region=eu"),
    ("token: bearer-xyz-123", "bearer-xyz-123", "token: ***"),
])
def test_redact_helper(text: str, hidden: str, kept: str) -> None:
    from udfs.redact import redact

    out = redact(text)
    assert hidden not in out and kept in out
    plain = "video_id=abc keyframe at 2.0 s: decoding failed"
    assert redact(plain) == plain
