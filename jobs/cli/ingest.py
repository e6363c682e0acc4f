"""``vw ingest``: register videos from files, folders, globs, fsspec URLs, listings or a dataset's
annotations."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jobs.cli.common import DbOpt, OptionError, connect, echo_err, progress


def ingest(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Files, folders, globs, fsspec URLs (gs://bucket/prefix/) or CSV/JSONL listings."),
    ],
    source: Annotated[str | None, typer.Option(help="Value of the `source` column for these videos.")] = None,
    split: Annotated[str | None, typer.Option(help="Value of the `split` column (unless a listing gives one).")] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Read PATH as a dataset's annotations: msrvtt, vatex, webvid, panda70m, "
                     "llava-video-178k or soccernet."),
    ] = None,
    videos_root: Annotated[
        str | None, typer.Option(help="With --format: folder or URI holding the videos (default: PATH's folder).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="With --format: a deterministic subset of N clips.")] = None,
    validation_ratio: Annotated[
        float, typer.Option(help="With --format: share of train clips moved to the validation split.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="With --format: seed of the split and --limit hashes.")] = 0,
    store_bytes: Annotated[
        bool, typer.Option("--store-bytes", help="Also store each video's bytes in the table (blob column `video`).")
    ] = False,
    labels_only: Annotated[
        bool, typer.Option("--labels-only", help="With --format soccernet: register each half and its ground truth "
                           "without video files (the video stages skip such rows).")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Register videos in the `videos` table (probing container headers; re-ingest is idempotent)."""
    if store_bytes and fmt is not None:
        raise OptionError("--store-bytes applies to plain ingest, not to --format")
    if fmt is not None:
        code = ingest_dataset(connect(db, create=True), fmt, inputs, source, split, videos_root, limit,
                              validation_ratio, seed, labels_only)
        raise typer.Exit(code)
    if labels_only:
        raise OptionError("--labels-only applies with --format (a dataset's labels)")
    if videos_root is not None or limit is not None:
        raise OptionError("--videos-root and --limit apply only with --format")
    from tables.connection import open_videos
    from tables.ingest import ingest as ingest_videos

    table = open_videos(connect(db, create=True))
    report = ingest_videos(table, inputs, source=source, split=split, progress=progress("probing"),
                           store_bytes=store_bytes)
    for failure in report.failures:
        echo_err(f"FAILED {failure.input}: {failure.reason}")
    typer.echo(
        f"ingest: {report.inserted} new, {report.updated} updated, "
        f"{len(report.failures)} failed; videos table version {report.table_version}"
    )
    raise typer.Exit(0 if not report.failures else 1)


def ingest_dataset(
    conn: Any,
    fmt: str,
    inputs: list[str],
    source: str | None,
    split: str | None,
    videos_root: str | None,
    limit: int | None,
    validation_ratio: float,
    seed: int,
    labels_only: bool = False,
) -> int:
    """`vw ingest --format NAME PATH`: prints one line per failure and a summary; returns the exit code."""
    from tables.datasets import DatasetOptions
    from tables.datasets import ingest_dataset as ingest_annotations

    if len(inputs) != 1:
        raise OptionError(f"--format {fmt} reads exactly one PATH (its annotation file or folder), got {len(inputs)}")
    if source is not None or split is not None:
        raise OptionError("--source and --split do not apply with --format (the dataset decides them)")
    options = DatasetOptions(videos_root=videos_root, limit=limit, validation_ratio=validation_ratio, seed=seed,
                             labels_only=labels_only)
    report = ingest_annotations(conn, fmt, inputs[0], options, progress=progress("probing"))
    for failure in report.failures:
        echo_err(f"FAILED {failure.input}: {failure.reason}")
    missing = "registered from labels only (no video files)" if labels_only else \
        f"{report.missing} without a video file"
    typer.echo(
        f"ingest {fmt}: {report.records} records read, {report.selected} selected, {missing}; "
        f"{report.ingest.inserted} new, {report.ingest.updated} updated, "
        f"{len(report.failures)} failed; videos table version {report.ingest.table_version}"
    )
    if report.events:
        typer.echo(f"events: {report.events} ground-truth events written")
    return 0 if report.ok else 1


def register(app: typer.Typer) -> None:
    """Add ``vw ingest`` to ``app``."""
    app.command()(ingest)
