"""A streaming PyTorch dataset of decoded video clips, straight from a warehouse table.

::

    from tables.clip_dataset import ClipDataset

    ds = ClipDataset(split="train", columns=["caption", "scenario"], clip_seconds=2.0, clip_fps=8,
                     size=(224, 224), seed=0)
    loader = ds.loader(batch_size=8, num_workers=4)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            batch["frames"]      # uint8 [B, T, 3, H, W]
            batch["timestamps"]  # float64 [B, T], seconds
            batch["caption"]     # list of B strings; numeric columns become tensors
        print(loader.failures)   # videos skipped this epoch, with their errors

What is read
    The rows of ``table`` (default ``videos``) matching ``where`` / ``split``, at one pinned table
    version. Each sample is one clip of a row: ``num_frames`` frames spread uniformly over the
    video (or over its ``start_s`` / ``end_s`` segment), or a random window of ``clip_seconds`` at
    ``clip_fps`` (start drawn from ``(seed, epoch, row)``, so an epoch is reproducible and every
    epoch sees other windows; a video shorter than the window repeats its last frame), resized
    to ``resize_short_side`` or to ``size`` ``(H, W)``, with the requested metadata columns.

Where the bytes come from
    ``source="auto"`` reads the Lance blob column ``video`` of rows that store their bytes
    (``vw ingest --store-bytes``; lazy file objects from ``take_blobs``: only the byte ranges the
    decoder asks for are read), and ``uri`` for the others; ``"blob"`` / ``"uri"`` force one.
    Local paths are decoded in place. Remote URIs (``gs://``, ``s3://``, ``https://``) go
    through the local :class:`~tables.clip_cache.ByteCache` (whole objects, least recently used
    out, hard limit ``cache_bytes`` for the whole folder whatever the number of processes); an
    object that cannot be cached (larger than the limit, ``cache_bytes=0``, or the room is in
    use) is streamed with fsspec range reads instead. Local disk use is therefore bounded by
    ``cache_bytes`` whatever the dataset size.

Order, sharding, prefetch
    The epoch's order is :func:`tables.sharding.epoch_order` of the selected rows (seeded by
    ``seed`` and the epoch, :meth:`set_epoch`); rank ``r`` of ``w`` takes positions
    ``r, r + w, ...`` (:func:`tables.sharding.shard`) and DataLoader worker ``k`` of ``K`` takes
    positions ``k, k + K, ...`` of the rank's part. Each process then passes its rows through a
    seeded shuffle buffer of ``shuffle_buffer`` rows (applied to row ids before reading, so it
    costs no clip memory and its order is known in advance). Every selected row is read exactly
    once per epoch across all ranks and workers. Inside each process ``prefetch_threads``
    threads fetch and decode the next ``prefetch`` clips in the background (a bounded window:
    at most ``prefetch`` decoded clips wait in memory); clips are yielded in sequence order.

Resume
    A process's sequence is a pure function of ``(seed, epoch, rank, world_size, worker,
    num_workers)``. Every sample carries ``_worker`` and ``_seq`` (its index in its worker's
    sequence); :class:`ClipLoader` records, per worker, the sequence index after the last
    sample it handed out, and :meth:`ClipLoader.state_dict` returns those counters with the
    epoch. :meth:`ClipLoader.load_state_dict` makes every worker start at its counter, so the
    rest of the epoch is exactly what an uninterrupted run would have produced (clips prefetched
    but never handed out are read again). Resuming needs the same seed, world size and
    ``num_workers`` (checked). Iterating the dataset directly (no workers) keeps the same
    counters in :meth:`ClipDataset.state_dict`.

Failures
    A video that cannot be read or decoded is skipped: it is logged with its id and the error,
    recorded as a :class:`ClipFailure` (with the worker and sequence index), and the epoch goes
    on. Workers send their failures to the loader over a queue as they happen;
    :attr:`ClipLoader.failures` lists the epoch's failures of all workers (deduplicated by
    worker and sequence index, so a failure re-read after a resume counts once) and
    :meth:`ClipLoader.failure_counts` counts them per worker. Without workers they are in
    :attr:`ClipDataset.failures`.

Workers are started with ``forkserver`` (Lance is not fork-safe once used) and anew each epoch
(so the epoch and the resume point reach them). Storage settings of the environment that
builds the dataset (``STORAGE_EMULATOR_HOST``, ``BLOCK_SIZE``, ...) are applied in the workers.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from tables.filters import combine, literal
from tables.names import VIDEOS
from tables.sharding import dist_info, epoch_order, shard
from tables.snapshot import pin_table
from tables.video_blobs import VIDEO_BLOB_COLUMN

_log = logging.getLogger(__name__)

SOURCES = ("auto", "blob", "uri")
#: Environment variables that configure storage and decoding, copied into DataLoader workers.
WORKER_ENV = ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "BLOCK_SIZE", "DECODE_THREADS",
              "VW_STORAGE_OPTIONS")
#: Modules the forkserver imports once, before it forks DataLoader workers (missing ones are skipped).
WORKER_PRELOAD = ("torch", "torchcodec.decoders", "lance", "fsspec", "gcsfs", "tables.clip_dataset", "udfs.decode",
                  "udfs.storage")
DEFAULT_CACHE_BYTES = 4 * 2**30
_ROW_COLUMNS = ("video_id", "uri", "duration_s", "start_s", "end_s", "size_bytes")
_SCAN_BATCH = 8192


class ClipDatasetError(ValueError):
    """The dataset cannot be built or resumed as asked (unknown table or column, bad filter or state)."""


@dataclass(frozen=True)
class ClipFailure:
    """A video skipped in an epoch: which one, where in the sequence, and why."""

    video_id: str
    error: str
    epoch: int
    worker: int
    seq: int


def buffer_shuffle(items: np.ndarray, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """``items`` passed through a shuffle buffer of ``buffer_size`` (1 keeps the order)."""
    if buffer_size <= 1 or len(items) <= 1:
        return items.copy()
    out = np.empty_like(items)
    buf: list[int] = []
    n = 0
    for item in items.tolist():
        if len(buf) < buffer_size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        out[n], buf[j] = buf[j], item
        n += 1
    for j in rng.permutation(len(buf)).tolist():
        out[n] = buf[j]
        n += 1
    return out


class ClipDataset(IterableDataset):
    """``torch.utils.data.IterableDataset`` of decoded clips of the rows of a table query.

    Args:
        db: warehouse location (default ``$VW_DB`` or ``./warehouse``).
        where: SQL filter on the table; ``split``: shortcut for ``split = '<split>'``.
        columns: metadata columns returned with each clip (caption, prompt variants, scenario,
            labels, precomputed features, ...).
        table: table name (default ``videos``); ``version``: table version (default latest).
        num_frames: frames spread uniformly over each video (or segment).
        clip_seconds, clip_fps: a random window of ``clip_seconds`` sampled at ``clip_fps``
            (exclusive with ``num_frames``).
        resize_short_side: resize frames to this short side (aspect kept); ``size``: resize to
            exactly ``(H, W)`` (needed to batch videos of different aspect ratios).
        source: ``"auto"`` (blob column when the row stores bytes, else ``uri``), ``"blob"``
            or ``"uri"``.
        seed, shuffle: the per-epoch order; ``shuffle_buffer``: rows in the shuffle buffer.
        rank, world_size: sharding (default :func:`tables.sharding.dist_info`).
        prefetch: clips fetched ahead per process; ``prefetch_threads``: threads doing it.
        cache_dir, cache_bytes: the byte cache of remote objects (default a folder under the
            system temporary directory, 4 GiB; 0 streams everything).
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        where: str | None = None,
        split: str | None = None,
        columns: Sequence[str] = (),
        table: str = VIDEOS,
        version: int | None = None,
        num_frames: int | None = None,
        clip_seconds: float | None = None,
        clip_fps: float | None = None,
        resize_short_side: int | None = None,
        size: tuple[int, int] | None = None,
        source: str = "auto",
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 16,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 4,
        prefetch_threads: int = 2,
        cache_dir: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:

        if (num_frames is None) == (clip_seconds is None):
            raise ClipDatasetError("give either num_frames (uniform) or clip_seconds with clip_fps (a window)")
        if clip_seconds is not None and (clip_fps is None or clip_fps <= 0 or clip_seconds <= 0):
            raise ClipDatasetError(f"a window needs clip_seconds > 0 and clip_fps > 0, got {clip_seconds}, {clip_fps}")
        if num_frames is not None and num_frames < 1:
            raise ClipDatasetError(f"num_frames must be >= 1, got {num_frames}")
        if source not in SOURCES:
            raise ClipDatasetError(f"source must be one of {SOURCES}, got {source!r}")
        if prefetch < 1 or prefetch_threads < 1 or shuffle_buffer < 1:
            raise ClipDatasetError("prefetch, prefetch_threads and shuffle_buffer must be >= 1")
        if cache_bytes < 0:
            raise ClipDatasetError(f"cache_bytes must be >= 0, got {cache_bytes}")
        self.snapshot, lance_ds = pin_table(db, table, version, columns, ClipDatasetError)
        self.version = self.snapshot.version
        names = self.snapshot.names
        self.has_blob_column = VIDEO_BLOB_COLUMN in names
        if source == "blob" and not self.has_blob_column:
            raise ClipDatasetError(
                f"table {table!r} has no {VIDEO_BLOB_COLUMN!r} blob column (vw ingest --store-bytes)")
        self.columns = [c for c in dict.fromkeys(columns) if c not in ("video_id", VIDEO_BLOB_COLUMN)]
        self.where = combine(where, split and f"split = {literal(split)}")
        self.num_frames, self.clip_seconds, self.clip_fps = num_frames, clip_seconds, clip_fps
        self.resize_short_side, self.size, self.source = resize_short_side, size, source
        self.seed, self.shuffle, self.shuffle_buffer = seed, shuffle, shuffle_buffer
        self.rank, self.world_size = dist_info(rank, world_size)
        self.prefetch, self.prefetch_threads = prefetch, prefetch_threads
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "vw-clip-cache")
        self.cache_bytes = cache_bytes
        self.env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
        self._select(lance_ds, names)
        self.epoch = 0
        self._start: dict[int, int] = {}  # worker -> first sequence index of the epoch (resume)
        self._consumed: dict[int, int] = {}
        self.failures: list[ClipFailure] = []
        self._report_queue: Any = None
        self._cache: Any = None
        self._pid: int | None = None

    def _select(self, lance_ds: Any, names: set[str]) -> None:
        cols = [c for c in _ROW_COLUMNS if c in names]
        try:
            got = lance_ds.to_table(columns=[*cols, "_rowoffset"], filter=self.where)
            blob_rows: set[int] = set()
            if self.has_blob_column and self.source != "uri":
                flt = f"({self.where}) AND {VIDEO_BLOB_COLUMN} IS NOT NULL" if self.where else \
                    f"{VIDEO_BLOB_COLUMN} IS NOT NULL"
                blob_rows = set(lance_ds.to_table(columns=["_rowoffset"], filter=flt).column(0).to_pylist())
        except Exception as err:  # noqa: BLE001 - surfaced as a clear message
            raise ClipDatasetError(f"invalid filter {self.where!r}: {err}") from err
        self.positions = got.column("_rowoffset").to_numpy().astype(np.int64)
        self.video_ids: list[str] = got.column("video_id").to_pylist()
        self.uris: list[str] = got.column("uri").to_pylist()

        def floats(name: str) -> np.ndarray:
            if name not in got.column_names:
                return np.full(len(self.positions), np.nan)
            return np.array([np.nan if v is None else float(v) for v in got.column(name).to_pylist()])

        self.durations, self.starts, self.ends = floats("duration_s"), floats("start_s"), floats("end_s")
        self.sizes = floats("size_bytes")
        self.from_blob = np.array([int(p) in blob_rows for p in self.positions], dtype=bool)
        if self.source == "blob" and not self.from_blob.all():
            missing = [v for v, b in zip(self.video_ids, self.from_blob, strict=True) if not b]
            raise ClipDatasetError(
                f"{len(missing)} selected rows store no bytes (e.g. {missing[:3]}); use source='auto'")

    # -- pickling and per-process state --------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_cache=None, _pid=None)
        return state

    def __len__(self) -> int:
        """Rows this rank reads per epoch."""
        return len(shard(np.arange(len(self.positions)), self.rank, self.world_size))

    def _process_setup(self) -> None:
        if self._pid == os.getpid():
            return
        for key, value in self.env.items():
            os.environ.setdefault(key, value)
        self._cache, self._pid = None, os.getpid()

    @property
    def dataset(self) -> Any:
        """The Lance dataset at the pinned version, opened once per process."""
        self._process_setup()
        return self.snapshot.dataset

    @property
    def cache(self) -> Any:
        """The byte cache of remote objects (``None`` when ``cache_bytes`` is 0)."""
        self._process_setup()
        if self._cache is None and self.cache_bytes > 0:
            from tables.clip_cache import ByteCache

            self._cache = ByteCache(self.cache_dir, self.cache_bytes)
        return self._cache

    # -- epochs and resume --------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` (and forget any resume point and failures)."""
        self.epoch = int(epoch)
        self._start, self._consumed, self.failures = {}, {}, []

    def sequence(self, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        """Indices (into the selected rows) that ``worker`` of ``num_workers`` reads this epoch, in order."""
        order = epoch_order(len(self.positions), self.seed, self.epoch, self.shuffle)
        part = shard(order, self.rank, self.world_size)[worker::num_workers]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, num_workers, 1])
        return buffer_shuffle(part, self.shuffle_buffer, rng)

    def state_dict(self, num_workers: int = 1) -> dict[str, Any]:
        """Where direct iteration of this epoch stands (see the module documentation)."""
        return self._state(self._consumed, num_workers)

    def _state(self, consumed: dict[int, int], num_workers: int) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "num_workers": num_workers, "next_seq": {str(k): int(v) for k, v in sorted(consumed.items())}}

    def load_state_dict(self, state: dict[str, Any], num_workers: int = 1) -> None:
        """Continue the epoch of ``state`` where it stopped.

        Raises:
            ClipDatasetError: the state comes from another seed, world size or worker count.
        """
        for key, mine in (("seed", self.seed), ("world_size", self.world_size), ("num_workers", num_workers),
                          ("rank", self.rank)):
            if state.get(key) != mine:
                raise ClipDatasetError(f"cannot resume: the state has {key}={state.get(key)!r}, this reader {mine!r}")
        self.set_epoch(int(state["epoch"]))
        self._start = {int(k): int(v) for k, v in state["next_seq"].items()}
        self._consumed = dict(self._start)

    # -- reading ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self._process_setup()
        seq = self.sequence(worker, num_workers)
        first = self._start.get(worker, 0)
        pending: deque[tuple[int, Future]] = deque()
        with ThreadPoolExecutor(self.prefetch_threads, thread_name_prefix="clip-prefetch") as pool:
            next_i = first
            while next_i < len(seq) or pending:
                while next_i < len(seq) and len(pending) < self.prefetch:
                    pending.append((next_i, pool.submit(self._read, int(seq[next_i]))))
                    next_i += 1
                i, future = pending.popleft()
                row = int(seq[i])
                try:
                    sample = future.result()
                except Exception as exc:  # noqa: BLE001 - a bad video is skipped, counted and logged
                    self._report(ClipFailure(self.video_ids[row], _describe(exc), self.epoch, worker, i))
                    continue
                sample.update(_worker=worker, _seq=i)
                self._consumed[worker] = i + 1
                yield sample

    def _report(self, failure: ClipFailure) -> None:
        _log.warning("skipping video %s (epoch %d, worker %d): %s", failure.video_id, failure.epoch,
                     failure.worker, failure.error)
        if self._report_queue is not None:
            self._report_queue.put(failure)
        else:
            self.failures.append(failure)

    def plan(self, row: int) -> Any:
        """The sampling plan of selected row ``row`` in the current epoch."""
        from udfs.decode import SamplingPlan

        lo = 0.0 if math.isnan(self.starts[row]) else float(self.starts[row])
        hi = float(self.ends[row]) if not math.isnan(self.ends[row]) else float(self.durations[row])
        if self.num_frames is not None:
            return SamplingPlan.uniform(self.num_frames, start_s=lo or None, end_s=None if math.isnan(hi) else hi)
        assert self.clip_seconds is not None and self.clip_fps is not None
        span = 0.0 if math.isnan(hi) else max(0.0, hi - lo - self.clip_seconds)
        rng = np.random.default_rng([self.seed, self.epoch, int(self.positions[row]), 2])
        start = lo + float(rng.uniform(0.0, span)) if span > 0 else lo
        return SamplingPlan.window(start, start + self.clip_seconds, self.clip_fps)

    def _read(self, row: int) -> dict[str, Any]:
        """Fetch and decode one clip with its metadata (runs in a prefetch thread)."""
        import torch

        frames = self._decode(row, self.plan(row))
        data, times = frames.data, torch.from_numpy(np.asarray(frames.timestamps_s, dtype=np.float64))
        if self.clip_seconds is not None:
            data, times = _fixed_length(data, times, round(self.clip_seconds * float(self.clip_fps or 0)))
        if self.size is not None:
            data = _resize(data, self.size)
        sample: dict[str, Any] = {"video_id": self.video_ids[row], "frames": data, "timestamps": times}
        if self.columns:
            got = self.dataset.take([int(self.positions[row])], columns=self.columns)
            for c in self.columns:
                sample[c] = got.column(c)[0].as_py()
        return sample

    def _decode(self, row: int, plan: Any) -> Any:
        from udfs import storage
        from udfs.decode import decode

        vid = self.video_ids[row]
        kwargs = {"resize_short_side": self.resize_short_side, "name": vid}
        if self.from_blob[row]:
            blob = self.dataset.take_blobs(VIDEO_BLOB_COLUMN, indices=[int(self.positions[row])])[0]
            if blob is None:
                raise ClipDatasetError(f"{vid}: no stored bytes at table version {self.version}")
            with blob:
                return decode(blob, plan, **kwargs)
        uri = self.uris[row]
        cache = self.cache if storage.is_remote(uri) else None
        if cache is None:
            return decode(uri, plan, **kwargs)
        fs, path = storage.filesystem_for(uri)
        size = fs.size(path) if math.isnan(self.sizes[row]) else self.sizes[row]
        with cache.open(uri, int(size), lambda start, end: fs.cat_file(path, start=start, end=end)) as local:
            return decode(local if local is not None else uri, plan, **kwargs)

    # -- loading ------------------------------------------------------------------------------

    def loader(self, batch_size: int = 8, *, num_workers: int = 0, **kwargs: Any) -> ClipLoader:
        """A :class:`ClipLoader` (a resumable ``DataLoader``) with :func:`clip_collate`."""
        return ClipLoader(self, batch_size=batch_size, num_workers=num_workers, **kwargs)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _fixed_length(data: Any, times: Any, count: int) -> tuple[Any, Any]:
    """Exactly ``count`` frames: extra frames dropped, a short clip padded with its last frame."""
    import torch

    if len(data) >= count:
        return data[:count], times[:count]
    pad = count - len(data)
    return (torch.cat([data, data[-1:].expand(pad, *data.shape[1:])]),
            torch.cat([times, times[-1:].expand(pad)]))


def _resize(data: Any, size: tuple[int, int]) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812

    if tuple(data.shape[-2:]) == tuple(size):
        return data
    out = F.interpolate(data.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) and not (isinstance(value, float) and math.isnan(value))


def clip_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips: ``frames`` ``[B, T, 3, H, W]``, ``timestamps`` ``[B, T]``; numbers become
    tensors, other values lists (strings, lists, None).

    Raises:
        ValueError: clips of different shapes (set ``size`` on the dataset to batch them).
    """
    import torch

    if not samples:
        raise ValueError("clip_collate needs at least one sample")
    shapes = {tuple(s["frames"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"clips of different shapes {sorted(shapes)} cannot be batched: set size=(H, W)")
    out: dict[str, Any] = {
        "frames": torch.stack([s["frames"] for s in samples]),
        "timestamps": torch.stack([s["timestamps"] for s in samples]),
    }
    for key in samples[0]:
        if key in out:
            continue
        values = [s.get(key) for s in samples]
        out[key] = torch.tensor(values) if all(_is_number(v) for v in values) else values
    return out


class ClipLoader:
    """A resumable ``DataLoader`` over a :class:`ClipDataset` (see the module documentation).

    Extra keyword arguments go to ``torch.utils.data.DataLoader``. Workers start with
    ``forkserver`` and anew each epoch.
    """

    def __init__(self, dataset: ClipDataset, batch_size: int = 8, num_workers: int = 0, **kwargs: Any) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.kwargs = kwargs
        self._consumed: dict[int, int] = {}
        self._failures: dict[tuple[int, int], ClipFailure] = {}
        self._queue: Any = None

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``; forgets the resume point and the failures."""
        self.dataset.set_epoch(epoch)
        self._consumed, self._failures = {}, {}

    def state_dict(self) -> dict[str, Any]:
        """The epoch and, per worker, the sequence index after the last sample handed out."""
        state = self.dataset._state(self._consumed, max(1, self.num_workers))
        self._drain()
        state["failures"] = [vars(f) for f in self._failures.values()]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the epoch of ``state`` where it stopped (same seed, world size, workers)."""
        self.dataset.load_state_dict(state, max(1, self.num_workers))
        self._consumed = {int(k): int(v) for k, v in state["next_seq"].items()}
        self._failures = {(f["worker"], f["seq"]): ClipFailure(**f) for f in state.get("failures", [])}

    @property
    def failures(self) -> list[ClipFailure]:
        """This epoch's skipped videos, all workers, in (worker, sequence) order."""
        self._drain()
        return [self._failures[k] for k in sorted(self._failures)]

    def failure_counts(self) -> dict[int, int]:
        """Skipped videos per worker this epoch."""
        counts: dict[int, int] = {}
        for f in self.failures:
            counts[f.worker] = counts.get(f.worker, 0) + 1
        return counts

    def _drain(self) -> None:
        if self._queue is not None:
            while not self._queue.empty():
                f = self._queue.get()
                self._failures[(f.worker, f.seq)] = f
        for f in self.dataset.failures:
            self._failures[(f.worker, f.seq)] = f
        self.dataset.failures = []

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import multiprocessing

        from torch.utils.data import DataLoader

        kwargs = dict(self.kwargs)
        if self.num_workers > 0:
            ctx = multiprocessing.get_context(kwargs.pop("multiprocessing_context", "forkserver"))
            if ctx.get_start_method() == "forkserver":
                # Workers are forked from a server that has imported the heavy modules once (no
                # Lance dataset is opened there), so a new epoch's workers start quickly.
                ctx.set_forkserver_preload(list(WORKER_PRELOAD))
            self._queue = ctx.SimpleQueue()
            kwargs["multiprocessing_context"] = ctx
            kwargs["persistent_workers"] = False
        self.dataset._report_queue = self._queue
        try:
            loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                                collate_fn=clip_collate, **kwargs)
            for batch in loader:
                for w, s in zip(batch["_worker"].tolist(), batch["_seq"].tolist(), strict=True):
                    self._consumed[w] = max(self._consumed.get(w, 0), s + 1)
                yield batch
            self._drain()
        finally:
            self.dataset._report_queue = None
