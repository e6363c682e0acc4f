"""Benchmark of the streaming clip reader: a GCS bucket with request latency vs local files vs a blob column.

::

    python -m bench.streaming_reader [--videos 96] [--seconds 6] [--latency-ms 20] [--workers 2] [--epochs 2]

The same videos (``testsrc2`` H.264, 320x240, 25 fps, a keyframe every second) are registered
three times: as local files, as objects of a ``gcp-storage-emulator`` bucket on loopback, and
with their bytes stored in the table (``ingest(store_bytes=True)``). The bucket is reached
through a TCP proxy that holds every request for ``--latency-ms`` before forwarding it, to stand
in for a real bucket's round trip. Each source is read by :class:`tables.clip_dataset.ClipDataset`
with the same sampling (8 frames spread uniformly, resized to 112x112) and the same
``DataLoader`` settings, for ``--epochs`` epochs. Per epoch: clips/s over the whole epoch
(including the start of the epoch's workers), the time to the first batch, and the steady
clips/s after the first batch; ratios to local files are over all epochs.
The bucket is read twice: through the byte cache (limited to a quarter of the
data set, so it evicts) and streamed (``cache_bytes=0``: fsspec range reads only).

Reported: clips/s, the ratio to local files, the peak size of the cache folder (sampled every
5 ms), the peak memory of the benchmark process, the forkserver and the DataLoader workers together
(summed PSS from ``/proc``, sampled every 200 ms; the emulator and the proxy processes are not
counted), and the load average. One unmeasured epoch of local files
runs first, so the forkserver start is in no measurement.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out" / "streaming_reader"
BUCKET = "vw-bench-stream"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    """Progress to stderr (stdout is reserved for the JSON result)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def make_videos(n: int, seconds: float, out: Path) -> list[Path]:
    """``n`` generated test videos (cached between runs)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out / f"clip{i:03d}_{seconds:g}s.mp4"
        if not path.exists():
            part = path.with_suffix(".part.mp4")
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                 "-i", f"testsrc2=size=320x240:rate=25,hue=h={i * 11}", "-t", str(seconds),
                 "-c:v", "libx264", "-preset", "superfast", "-crf", "23", "-g", "25", "-keyint_min", "25",
                 "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(part)],
                check=True,
            )
            part.rename(path)
        paths.append(path)
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator() -> Iterator[tuple[str, subprocess.Popen]]:
    """A ``gcp-storage-emulator`` on loopback; yields its URL and process."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the GCS emulator did not start") from None
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _proxy_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target_port: int,
                            delay: float) -> None:
    up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: float) -> None:
        try:
            while chunk := await src.read(1 << 16):
                if hold:
                    await asyncio.sleep(hold)
                dst.write(chunk)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_w, delay), pipe(up_r, writer, 0.0))


def serve_proxy(listen_port: int, target_port: int, delay: float) -> None:
    """Run a loopback TCP proxy that holds each client-to-server chunk (an HTTP request) for ``delay`` s."""

    async def run() -> None:
        server = await asyncio.start_server(
            lambda r, w: _proxy_connection(r, w, target_port, delay), "127.0.0.1", listen_port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


@contextmanager
def latency_proxy(target_port: int, delay: float) -> Iterator[int]:
    """:func:`serve_proxy` in its own process (it competes for no lock of the reader); yields its port."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.streaming_reader", "--serve-proxy",
                             f"{port}:{target_port}:{delay}"], cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the latency proxy did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _children_named(marker: str) -> list[int]:
    """Pids of this process's children whose command line contains ``marker``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if ppid == os.getpid() and marker.encode() in cmd:
            out.append(int(name))
    return out


def _pss(pid: int) -> int:
    """Proportional set size (bytes) of ``pid``: shared pages split between their users."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree_memory(root: int, exclude: set[int]) -> int:
    """Summed PSS (bytes) of ``root`` and its descendants, minus the ``exclude`` subtrees."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in exclude:
            continue
        try:
            total += _pss(pid)
        except OSError:
            continue
        stack.extend(children.get(pid, []))
    return total


class Sampler:
    """Samples a value in a background thread and keeps the peak."""

    def __init__(self, probe: Callable[[], int], every: float) -> None:
        self.probe, self.every, self.peak = probe, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.probe())
            except OSError:
                pass
            time.sleep(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _dir_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(e.stat().st_size for e in os.scandir(path) if e.is_file())


def run_reader(db: str, args: argparse.Namespace, exclude: set[int], **kwargs: Any) -> dict[str, Any]:
    """Read every clip for ``args.epochs`` epochs; clips/s per epoch, peaks of cache size and RSS."""
    from tables.clip_dataset import ClipDataset

    cache_dir = OUT_DIR / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    ds = ClipDataset(db, num_frames=8, size=(112, 112), seed=0, cache_dir=str(cache_dir), prefetch=args.prefetch,
                     prefetch_threads=args.prefetch_threads, **kwargs)
    loader = ds.loader(batch_size=args.batch, num_workers=args.workers)
    rates, steady, first_batch_s, failures = [], [], [], 0
    with Sampler(lambda: _dir_size(cache_dir), 0.005) as disk, \
            Sampler(lambda: _tree_memory(os.getpid(), exclude), 0.2) as mem:
        for epoch in range(args.epochs):
            loader.set_epoch(epoch)
            start = time.perf_counter()
            clips, first, first_clips = 0, 0.0, 0
            for batch in loader:
                clips += len(batch["video_id"])
                if not first:
                    first, first_clips = time.perf_counter(), clips
            end = time.perf_counter()
            rates.append(round(clips / (end - start), 2))
            steady.append(round((clips - first_clips) / (end - first), 2))
            first_batch_s.append(round(first - start, 2))
            failures += len(loader.failures)
    return {"clips_per_s": rates, "steady_clips_per_s": steady, "first_batch_s": first_batch_s,
            "clips": clips, "failures": failures, "peak_cache_bytes": disk.peak,
            "peak_pss_mb": round(mem.peak / 2**20), "load_avg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-proxy", help=argparse.SUPPRESS)  # internal: LISTEN:TARGET:DELAY
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=8, help="clips fetched ahead per worker")
    parser.add_argument("--prefetch-threads", type=int, default=4, help="fetching threads per worker")
    args = parser.parse_args(argv)
    if args.serve_proxy:
        listen, target, delay = args.serve_proxy.split(":")
        serve_proxy(int(listen), int(target), float(delay))
        return
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import gcsfs

    from tables.connection import connect, open_videos
    from tables.ingest import ingest

    videos = make_videos(args.videos, args.seconds, OUT_DIR / "videos")
    total_bytes = sum(p.stat().st_size for p in videos)
    dbs = OUT_DIR / "db"
    shutil.rmtree(dbs, ignore_errors=True)
    with emulator() as (url, emu), latency_proxy(int(url.rsplit(":", 1)[1]), args.latency_ms / 1000) as proxy:
        fs = gcsfs.GCSFileSystem(endpoint_url=url, token="anon", project="bench")
        fs.mkdir(BUCKET)
        for p in videos:
            fs.put(str(p), f"{BUCKET}/{p.name}")
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy}"  # reads pay the latency
        log(f"{len(videos)} videos, {total_bytes / 2**20:.1f} MiB; registering ...")
        for name, inputs, store in (("local", [str(p) for p in videos], False),
                                    ("gcs", [f"gs://{BUCKET}/"], False),
                                    ("blob", [str(p) for p in videos], True)):
            report = ingest(open_videos(connect(str(dbs / name))), inputs, store_bytes=store)
            if report.failures or report.inserted != len(videos):
                raise RuntimeError(f"{name}: ingest failed: {report.failures}")
        exclude = {emu.pid, *_children_named("--serve-proxy")}
        results: dict[str, Any] = {}
        cache_limit = total_bytes // 4
        log("warm-up epoch (starts the forkserver) ...")
        run_reader(str(dbs / "local"), argparse.Namespace(**{**vars(args), "epochs": 1}), exclude)
        for label, db, kwargs in (
            ("local_files", "local", {}),
            ("gcs_cached", "gcs", {"cache_bytes": cache_limit}),
            ("gcs_streamed", "gcs", {"cache_bytes": 0}),
            ("blob_column", "blob", {"source": "blob"}),
        ):
            log(f"reading {label} ...")
            results[label] = run_reader(str(dbs / db), args, exclude, **kwargs)
    base = results["local_files"]
    for res in results.values():
        res["ratio_to_local"] = round(sum(res["clips_per_s"]) / sum(base["clips_per_s"]), 3)
        res["steady_ratio_to_local"] = round(sum(res["steady_clips_per_s"]) / sum(base["steady_clips_per_s"]), 3)
    print(json.dumps({
        "benchmark": "streaming_reader",
        "videos": len(videos), "seconds_each": args.seconds, "dataset_mib": round(total_bytes / 2**20, 1),
        "latency_ms": args.latency_ms, "workers": args.workers, "prefetch": args.prefetch,
        "prefetch_threads": args.prefetch_threads, "batch": args.batch, "epochs": args.epochs,
        "sampling": "8 frames uniform, 112x112", "cache_limit_bytes": cache_limit,
        "cpus": os.cpu_count(), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
