"""`vw search`, `vw moments`, `vw index` and `vw sql`: the read paths on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jobs.cli.common import DbOpt, connect, echo_err, progress, split_names
from jobs.cli.output import OutputFormat
from tables.choices import MomentCandidates, SearchCandidates, TextMode

FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", help="Output: table, json, csv or parquet (parquet needs --out).")
]
OutOpt = Annotated[str | None, typer.Option("--out", help="Write the output to this file instead of stdout.")]
ColumnsOpt = Annotated[
    str | None, typer.Option("--columns", help="Comma-separated metadata columns to show, e.g. caption,uri.")
]


def parse_vector(value: str) -> Any:
    """A query vector (a numpy array) from a ``.npy`` file or a JSON list (``[..]`` or ``[[..], ..]``)."""
    import numpy as np

    path = Path(value)
    if value.endswith(".npy"):
        if not path.is_file():
            raise typer.BadParameter(f"--vector: no such file {value!r}")
        return np.load(path)
    try:
        return np.asarray(json.loads(value), dtype=np.float32)
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        raise typer.BadParameter(f"--vector: not a .npy file nor a JSON list of numbers ({err})") from err


def _emit(result: Any, fmt: str, out: str | None) -> None:
    from jobs.cli.output import write

    if fmt == "json":
        text = result.to_json() + "\n"
        if out:
            Path(out).write_text(text)
        else:
            typer.echo(text, nl=False)
        return
    plan = result.plan
    echo_err(f"plan: {json.dumps(plan, default=str)}")
    write(result.table, fmt, out)


def _params(nprobes: int | None, ef: int | None, refine_factor: int | None) -> Any:
    from tables.vector_search import SearchParams

    if nprobes is None and ef is None and refine_factor is None:
        return None
    return SearchParams(nprobes=nprobes, ef=ef, refine_factor=refine_factor)


def search_cmd(
    video_id: Annotated[str | None, typer.Option("--video-id", help="Query: a stored video.")] = None,
    video: Annotated[
        str | None, typer.Option("--video", help="Query: a video file or URI, embedded with the column's model.")
    ] = None,
    vector: Annotated[
        str | None, typer.Option("--vector", help="Query: a .npy file or a JSON list ([D] or [T, D]).")
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Query: text over captions (with a video query: fused by RRF).")
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(help="video_embedding (default), frame_features or caption_embedding."),
    ] = None,
    pooling: Annotated[
        str, typer.Option(help="mean, max, centre[:SIGMA], segment:A-B (fractions) or multivector.")
    ] = "mean",
    k: Annotated[int, typer.Option("-k", "--k", help="Results to return.")] = 10,
    where: Annotated[str | None, typer.Option(help="SQL filter on the table (a prefilter by default).")] = None,
    postfilter: Annotated[
        bool, typer.Option(help="Filter after the ANN search (faster, may return fewer than k).")
    ] = False,
    columns: ColumnsOpt = None,
    candidates: Annotated[
        SearchCandidates, typer.Option(help="auto, exact, pooled, frames or ann (how candidates are found).")
    ] = "auto",
    pool_size: Annotated[int | None, typer.Option(help="Candidates re-scored (default max(20k, 200)).")] = None,
    text_mode: Annotated[TextMode, typer.Option(help="auto, fts, semantic or hybrid.")] = "auto",
    include_query: Annotated[bool, typer.Option(help="Keep the query video in the results.")] = False,
    nprobes: Annotated[int | None, typer.Option(help="ANN partitions probed (default from the index).")] = None,
    ef: Annotated[int | None, typer.Option(help="HNSW search breadth (default from the index).")] = None,
    refine_factor: Annotated[int | None, typer.Option(help="Re-score refine_factor * k ANN hits exactly.")] = None,
    table: Annotated[str, typer.Option(help="Table to search.")] = "videos",
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    db: DbOpt = None,
) -> None:
    """Videos like a stored video, a video file, a vector and / or a text, with a pooling strategy."""
    from tables.search import search

    result = search(
        connect(db), video_id=video_id, video=video, vector=parse_vector(vector) if vector else None,
        text=text, table=table, column=column, pooling=pooling, k=k, where=where, prefilter=not postfilter,
        columns=split_names(columns), candidates=candidates, pool_size=pool_size, text_mode=text_mode,
        include_query=include_query, params=_params(nprobes, ef, refine_factor),
    )
    _emit(result, fmt, out)


def moments_cmd(
    video_id: Annotated[str | None, typer.Option("--video-id", help="Query: a stored video (with --time).")] = None,
    time_s: Annotated[float | None, typer.Option("--time", help="Query instant in seconds (with --video-id).")] = None,
    image: Annotated[str | None, typer.Option(help="Query: an image file, encoded with the column's model.")] = None,
    vector: Annotated[str | None, typer.Option(help="Query: a .npy file or a JSON list of D numbers.")] = None,
    column: Annotated[str | None, typer.Option(help="Per-frame column (default frame_features).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Moments to return.")] = 10,
    where: Annotated[str | None, typer.Option(help="SQL filter on videos.")] = None,
    gap: Annotated[float, typer.Option(help="Keep the best hit within this many seconds of a video.")] = 3.0,
    columns: ColumnsOpt = None,
    candidates: Annotated[MomentCandidates, typer.Option(help="auto, exact or frames.")] = "auto",
    include_query: Annotated[bool, typer.Option(help="Keep the query moment in the results.")] = False,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    db: DbOpt = None,
) -> None:
    """Moments (video, time) like a stored frame or an image, de-duplicated within --gap seconds."""
    from tables.moments import find_moments

    result = find_moments(
        connect(db), video_id=video_id, time_s=time_s, image=image,
        vector=parse_vector(vector) if vector else None, column=column, k=k, where=where, gap_s=gap,
        columns=split_names(columns), candidates=candidates, include_query=include_query,
    )
    _emit(result, fmt, out)


def index_cmd(
    table: Annotated[str, typer.Option(help="Table to index.")] = "videos",
    column: Annotated[str | None, typer.Option(help="One column (default: every indexable column).")] = None,
    index_type: Annotated[
        str | None, typer.Option(help="Vector index type (IVF_HNSW_SQ, IVF_PQ, IVF_FLAT, ...); default by size.")
    ] = None,
    num_partitions: Annotated[int | None, typer.Option(help="IVF partitions (default by size).")] = None,
    num_sub_vectors: Annotated[int | None, typer.Option(help="PQ sub-vectors (default dim/16).")] = None,
    min_rows: Annotated[int, typer.Option(help="Fewer vectors than this: no ANN index (exact search).")] = 5000,
    multivector: Annotated[bool, typer.Option(help="Also index per-step columns for multivector search.")] = False,
    measure: Annotated[bool, typer.Option(help="Measure recall@10 and latency after building.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOpt = None,
) -> None:
    """Build ANN, scalar and full-text indexes (and the frames table), then report recall@10 and latency."""
    from dataclasses import asdict

    from jobs.indexing import IndexOptions, run_index

    opts = IndexOptions(index_type=index_type, num_partitions=num_partitions, num_sub_vectors=num_sub_vectors,
                        min_rows=min_rows, multivector=multivector, measure=measure)
    reports = run_index(connect(db), table, column, opts, log=echo_err, progress=progress("frames"))
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in reports], indent=2, default=str))
        return
    for r in reports:
        line = f"{r.table}.{r.column}: {r.kind} {r.action}"
        if r.detail:
            line += f" ({r.detail})"
        if r.seconds:
            line += f" in {r.seconds:.1f}s"
        typer.echo(line)
        if r.recall_at_10 is not None:
            typer.echo(f"  recall@10 {r.recall_at_10:.3f} vs exact; p50 latency {r.ann_p50_ms:.1f} ms indexed, "
                       f"{r.exact_p50_ms:.1f} ms exact; search params {r.params}")


def sql_cmd(
    statement: Annotated[str, typer.Argument(help="One read-only SELECT over the warehouse tables.")],
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    max_rows: Annotated[int | None, typer.Option(help="Stop after this many rows.")] = None,
    db: DbOpt = None,
) -> None:
    """Read-only SQL (DuckDB) over every table: videos, events, windows, frames, ..."""
    from jobs.cli.output import write
    from tables.sql import run_sql

    # One row more than asked says whether --max-rows cut the result.
    table = run_sql(statement, connect(db), max_rows=None if max_rows is None else max_rows + 1)
    if max_rows is not None and table.num_rows > max_rows:
        table = table.slice(0, max_rows)
        echo_err(f"note: the result was cut at --max-rows {max_rows}; the statement returns more rows")
    write(table, fmt, out)


def register(app: typer.Typer) -> None:
    """Add ``vw search``, ``vw moments``, ``vw index`` and ``vw sql`` to ``app``."""
    app.command("search")(search_cmd)
    app.command("moments")(moments_cmd)
    app.command("index")(index_cmd)
    app.command("sql")(sql_cmd)
