"""The warehouse location: local default, VW_DB, and a real s3:// warehouse on a local S3 server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tables.connection import connect, db_uri, open_videos, storage_options_from_env
from tables.ingest import ingest


def test_default_and_env_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VW_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert db_uri() == str(tmp_path / "warehouse")
    monkeypatch.setenv("VW_DB", "gs://bucket/wh")
    assert db_uri() == "gs://bucket/wh"
    assert db_uri("other") == str(tmp_path / "other")


def test_storage_options_must_be_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VW_STORAGE_OPTIONS", "{not json")
    with pytest.raises(ValueError, match="VW_STORAGE_OPTIONS is not valid JSON"):
        storage_options_from_env()
    monkeypatch.setenv("VW_STORAGE_OPTIONS", "[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        storage_options_from_env()
    monkeypatch.setenv("VW_STORAGE_OPTIONS", '{"allow_http": true}')
    assert storage_options_from_env() == {"allow_http": "True"}


def test_missing_videos_table_message(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="vw ingest"):
        open_videos(connect(str(tmp_path / "wh")), create=False)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on loopback with one bucket; credentials are dummies."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto S3 server did not start") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_warehouse_and_s3_videos(
    s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import s3fs

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VW_STORAGE_OPTIONS", json.dumps(
        {"aws_endpoint": s3_server, "allow_http": "true", "aws_region": "us-east-1"}))
    monkeypatch.setenv("VW_DB", "s3://vw-test/warehouse")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir("vw-test")
    video = tmp_path / "clip.mp4"
    subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=25", "-t", "2", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )
    fs.put(str(video), "vw-test/videos/clip.mp4")

    conn = connect()
    table = open_videos(conn)
    report = ingest(table, ["s3://vw-test/videos/"])
    assert report.inserted == 1 and not report.failures
    row = open_videos(connect(), create=False).to_arrow().to_pylist()[0]
    assert row["uri"] == "s3://vw-test/videos/clip.mp4"
    assert row["num_frames"] == 50 and row["width"] == 160
    assert any(p.endswith("videos.lance") for p in fs.ls("vw-test/warehouse"))


def test_unreachable_warehouse_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from jobs.cli import app

    # an S3 endpoint on a closed loopback port: nothing answers
    monkeypatch.setenv("VW_STORAGE_OPTIONS", json.dumps({
        "aws_endpoint": "http://127.0.0.1:9", "allow_http": "true", "aws_region": "us-east-1",
        "aws_access_key_id": "AKIAUNREACHABLE", "aws_secret_access_key": "secret-never-printed"}))
    result = CliRunner().invoke(app, ["status", "--db", "s3://bucket/wh"])
    assert result.exit_code == 2, result.output
    assert "cannot open the warehouse at s3://bucket/wh:" in result.output
    assert "127.0.0.1:9" in result.output and "Traceback" not in result.output
    assert "secret-never-printed" not in result.output
    assert ".rs:" not in result.output  # no Rust source location
