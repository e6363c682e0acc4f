"""Soccer-event detections as geneva columns of the ``windows`` table.

One column per detector family (:mod:`udfs.detector_models`): ``detections_llava`` and
``detections_qwen``. Each cell is a struct (:data:`DETECTION_TYPE`):

``raw``
    the model's answer, always kept (the empty string when it generated nothing);
``label``, ``team``, ``confidence``, ``details``
    the answer's primary event (:attr:`udfs.detection_parser.ParsedAnswer.primary`: the most
    confident action, ``none`` when the model saw no action), NULL when nothing was parsed;
``parse_error``
    why no event could be read from ``raw`` (NULL when parsed);
``events``
    every event of the answer in answer order (an answer may list several actions);
``warnings``
    problems that did not stop the parse (an unknown label next to a known one, a cut-off
    answer, a confidence that is not a number).

A window that could not be analysed (its video cannot be decoded, or CUDA ran out of memory
even for that window alone) gets no answer: the UDF raises for that row and geneva records the
error (row, exception, message naming the window and video). geneva 0.17 stores such a struct
cell as a struct whose fields are all NULL (not as a NULL struct), so the test for "not
analysed" is ``raw IS NULL`` (:func:`not_analysed`), which also holds for windows never computed.
An answer that cannot be parsed is not an error: it is stored with its ``parse_error``.

Batching (one UDF call = the rows geneva hands over): decode threads read each window's frames
(``SamplingPlan.window`` at the row's ``fps``; overlapping windows of a video share one decode,
so each frame is decoded once) and resize them in the decoder (longest side ``max_side``) ahead
of the model; windows are grouped by frame count (partial windows at the end of a video
have fewer frames) and run through :class:`~udfs.video_detector.VideoDetector`, ``batch_size``
windows per ``generate`` call, each batch as soon as it is decoded. On CUDA out-of-memory the
batch is halved and retried (:func:`udfs.batching.run_adaptive`) and later batches start at
the smaller size; a window that fails alone becomes that row's error. Results of a failed
call are cached so that geneva's bisection never decodes or generates a window twice.

Column metadata (``vw.*``): model name, profile, ``random_weights``, the event model name
(``vw.event_model``), the prompt version and the generation settings.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from udfs.arrays import optional_float
from udfs.batching import OutcomeCache, default_device, run_adaptive
from udfs.decode import SamplingPlan, decode, plan_times, probe
from udfs.detection_parser import ParsedAnswer, parse_answer
from udfs.detector_models import FAMILIES, DetectorSettings, detector_spec, family, stage_name
from udfs.errors import SettingError, VwError
from udfs.models import ModelSpec, resolve_profile
from udfs.stage import Stage, StageColumn, StageEnvironment, StageOptions
from udfs.video_detector import VideoDetector, fit_within

#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"
#: Columns of ``windows`` the detector UDFs read.
INPUT_COLUMNS = ["window_id", "video_id", "uri", "start_s", "end_s", "fps"]

EVENT_TYPE = pa.struct([
    pa.field("label", pa.string()),
    pa.field("team", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("details", pa.string()),
])
DETECTION_TYPE = pa.struct([
    pa.field("raw", pa.string()),
    pa.field("label", pa.string()),
    pa.field("team", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("details", pa.string()),
    pa.field("parse_error", pa.string()),
    pa.field("events", pa.list_(EVENT_TYPE)),
    pa.field("warnings", pa.list_(pa.string())),
])


class WindowOutOfMemoryError(VwError, RuntimeError):
    """CUDA ran out of memory for one window alone (batch size 1)."""


def not_analysed(column: str) -> str:
    """SQL filter of the windows whose ``column`` holds no answer (failed or not computed yet)."""
    return f"{column}.raw IS NULL"


def analysed(cell: dict[str, Any] | None) -> bool:
    """Whether a detection cell holds an answer (see :func:`not_analysed`)."""
    return cell is not None and cell.get("raw") is not None


def detection_cell(parsed: ParsedAnswer) -> dict[str, Any]:
    """One struct value of :data:`DETECTION_TYPE` for a parsed answer."""
    primary = parsed.primary
    return {
        "raw": parsed.raw,
        "label": primary.label if primary else None,
        "team": primary.team if primary else None,
        "confidence": primary.confidence if primary else None,
        "details": primary.details if primary else None,
        "parse_error": parsed.parse_error,
        "events": [e.__dict__ for e in parsed.events],
        "warnings": list(parsed.warnings),
    }


def cells_to_arrow(cells: list[dict[str, Any] | None]) -> pa.Array:
    """The column chunk for ``cells`` (None -> NULL)."""
    return pa.array(cells, type=DETECTION_TYPE)


def _describe(key: tuple) -> str:
    wid, vid, uri, start, end, _ = key
    return f"window {wid} of video {vid} ({uri}, {start}-{end} s)"


class WindowDetections:
    """geneva stateful UDF filling one detector column of ``windows``.

    ``__init__`` is cheap; the model loads on the first call, once per worker. Arguments
    default to the environment (``VW_MODELS``, ``LLAVA_VIDEO_MODEL`` / ``QWEN_VL_MODEL``,
    ``DETECT_*``).
    """

    def __init__(self, key: str, profile: str | None = None, model: str | None = None,
                 settings: DetectorSettings | None = None, batch_size: int = 4, device: str | None = None,
                 decode_threads: int | None = None, cache_rows: int = 1024) -> None:
        self.key = family(key).key
        self.profile = resolve_profile(profile, stage_name(self.key))
        self.model = model
        self.settings = settings or DetectorSettings.from_env()
        if batch_size < 1:
            raise SettingError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._limit = batch_size  # lowered after CUDA out-of-memory
        self.device = device
        self.decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self.cache_rows = cache_rows
        self._detector: VideoDetector | None = None
        self._device = "cpu"
        self._done = OutcomeCache(cache_rows)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_detector=None, _done=OutcomeCache(self.cache_rows))
        return state

    @property
    def detector(self) -> VideoDetector:
        """The model wrapper (created on first use; the weights load on its first call)."""
        if self._detector is None:
            device = self.device or default_device()
            if self.settings.load_in_4bit:
                from udfs.detector_models import check_4bit

                check_4bit(device)
            self._detector = VideoDetector(self.key, self.profile, self.model, self.settings, device)
        return self._detector

    def __call__(self, window_id: pa.Array, video_id: pa.Array, uri: pa.Array, start_s: pa.Array,
                 end_s: pa.Array, fps: pa.Array) -> pa.Array:
        """Detections of one batch of windows; raises the first failed window's error, if any."""
        keys = [
            (window_id[i].as_py(), video_id[i].as_py(), uri[i].as_py(), optional_float(start_s, i),
             optional_float(end_s, i), optional_float(fps, i))
            for i in range(len(window_id))
        ]
        todo = [k for k in dict.fromkeys(keys) if k not in self._done]
        if todo:
            self.run(todo)
        self._done.raise_first_error(keys)
        cells = [self._done[k] for k in keys]
        for k in keys:
            self._done.pop(k)
        return cells_to_arrow(cells)

    # -- pipeline ----------------------------------------------------------------------------

    def _decode(self, key: tuple, short_side: int | None = None) -> Any:
        """Frames of one window (uint8 ``[T, 3, H, W]``, longest side at most ``max_side``)."""
        wid, vid, uri, start, end, fps = key
        frames = decode(uri, SamplingPlan.window(start, end, fps), resize_short_side=short_side,
                        name=f"{vid} ({uri})").data
        return self._ready(frames)

    def _ready(self, frames: Any) -> Any:
        frames = fit_within(frames, self.settings.max_side)  # a no-op when the decoder resized
        if self._device.startswith("cuda"):
            frames = frames.contiguous().pin_memory()
        return frames

    def _decode_run(self, run: list[tuple]) -> dict[tuple, Any]:
        """Frames (or the exception) of each window of ``run`` (overlapping windows of one video).

        The windows share one decode of their union when their instants fall on one grid (the
        usual 4 s / 2 s windows at 1 fps): every frame is decoded once instead of twice. The
        decoder resizes frames to the detector's size. When the shared decode fails, each window
        is decoded on its own so that only the windows that cannot be read fail.
        """
        _, vid, uri, _, _, fps = run[0]
        try:
            bad = [k for k in run if k[3] is None or k[4] is None or not k[4] > k[3]]
            if bad or fps is None or not fps > 0:
                k = (bad or run)[0]
                raise ValueError(f"{_describe(k)}: bad window (start_s, end_s, fps) = ({k[3]}, {k[4]}, {fps})")
            info = probe(uri, name=f"{vid} ({uri})")
        except Exception as err:  # noqa: BLE001 - the same failure for every window of the video
            return {k: err for k in run}
        short = _short_side(info.width, info.height, self.settings.max_side)
        if len(run) > 1:
            try:
                return self._shared_decode(run, short)
            except Exception:  # noqa: BLE001 - decoded one by one below, each window its own outcome
                pass
        out: dict[tuple, Any] = {}
        for k in run:
            try:
                out[k] = self._decode(k, short)
            except Exception as err:  # noqa: BLE001 - recorded for this window only
                out[k] = err
        return out

    def _shared_decode(self, run: list[tuple], short: int | None) -> dict[tuple, Any]:
        _, vid, uri, first, _, fps = run[0]
        last = max(k[4] for k in run)
        union = decode(uri, SamplingPlan.window(first, last, fps), resize_short_side=short, name=f"{vid} ({uri})")
        out: dict[tuple, Any] = {}
        for k in run:
            offset = round((k[3] - first) * fps)
            count = len(plan_times(SamplingPlan.window(k[3], k[4], fps), union.info))
            if offset + count > len(union.data):
                raise ValueError(f"{_describe(k)}: the shared decode holds too few frames")
            out[k] = self._ready(union.data[offset : offset + count])
        return out

    def run(self, keys: list[tuple]) -> None:
        """Decode and detect ``keys``; every key's outcome (a cell or an exception) is cached.

        Decode threads work ahead while the model runs (one task per run of overlapping windows
        of a video, see :func:`window_runs`): a batch of windows with the same frame count goes
        to the model as soon as it is full; partly filled batches go at the end.
        """
        self._device = self.detector.device  # chosen once, before the decode threads start
        runs = window_runs(keys)
        clips: dict[tuple, Any] = {}
        buckets: dict[int, list[tuple]] = {}
        with ThreadPoolExecutor(min(self.decode_threads, len(runs)), thread_name_prefix="vw-windows") as pool:
            futures = [pool.submit(self._decode_run, run) for run in runs]
            for fut in futures:
                for k, outcome in fut.result().items():
                    if isinstance(outcome, BaseException):
                        self._done.put(k, outcome)
                        continue
                    clips[k] = outcome
                    bucket = buckets.setdefault(int(outcome.shape[0]), [])
                    bucket.append(k)
                    if len(bucket) >= self._limit:
                        self._detect(bucket, clips)
                        for done in bucket:
                            clips.pop(done, None)
                        bucket.clear()
        for bucket in buckets.values():
            if bucket:
                self._detect(bucket, clips)

    def _detect(self, group: list[tuple], clips: dict[tuple, Any]) -> None:
        detector = self.detector

        def run_chunk(chunk: list[tuple]) -> list[Any]:
            try:
                answers = detector.answer([clips[k] for k in chunk], [k[5] for k in chunk])
            except Exception as err:
                if _is_oom(err):
                    if len(chunk) > 1:
                        self._limit = max(1, len(chunk) // 2)  # later batches start smaller
                        raise  # run_adaptive halves the batch and retries
                    _empty_cache()
                    return [WindowOutOfMemoryError(
                        f"{_describe(chunk[0])}: CUDA out of memory even with one window per generate call: {err}")]
                if len(chunk) == 1:
                    return [RuntimeError(f"{_describe(chunk[0])}: {type(err).__name__}: {err}")]
                # another failure of a batch: run its windows one by one so only the bad one fails
                return [o for k in chunk for o in run_chunk([k])]
            return [detection_cell(parse_answer(a)) for a in answers]

        try:
            results = run_adaptive(list(group), self._limit, run_chunk)
        except Exception as err:  # noqa: BLE001 - every window of the group gets the error
            for k in group:
                self._done.put(k, err)
            return
        outcomes = [o for part in results for o in part]
        for k, outcome in zip(group, outcomes, strict=True):
            self._done.put(k, outcome)


def _short_side(width: int, height: int, max_side: int) -> int | None:
    """The short side that makes the long side at most ``max_side`` (None: no resize needed)."""
    if max(width, height) <= max_side:
        return None
    return max(1, math.floor(min(width, height) * max_side / max(width, height)))


def window_runs(keys: list[tuple]) -> list[list[tuple]]:
    """Windows grouped into runs that can share one decode.

    A run holds windows of one video (same uri and fps), in start order, each starting before
    the end of the run so far, and whose starts lie on the run's frame grid (``(start - first)
    * fps`` a whole number).
    """
    by_video: dict[tuple, list[tuple]] = {}
    for k in keys:
        by_video.setdefault((k[1], k[2], k[5]), []).append(k)
    runs: list[list[tuple]] = []
    for (_, _, fps), windows in by_video.items():
        usable = fps is not None and fps > 0 and all(k[3] is not None and k[4] is not None for k in windows)
        if not usable:
            runs.extend([k] for k in windows)
            continue
        run: list[tuple] = []
        run_end = -math.inf
        for k in sorted(windows, key=lambda k: (k[3], k[4])):
            steps = (k[3] - run[0][3]) * fps if run else 0.0
            if run and k[3] <= run_end + 1e-9 and abs(steps - round(steps)) < 1e-6:
                run.append(k)
                run_end = max(run_end, k[4])
            else:
                if run:
                    runs.append(run)
                run, run_end = [k], k[4]
        runs.append(run)
    return runs


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError)


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def udf_version(spec: ModelSpec) -> str:
    """Version of a detector column: changes with the code, model, profile, prompt and settings.

    Short (geneva puts it into checkpoint file names): the profile plus a hash of the rest.
    """
    params = ",".join(f"{k}={v}" for k, v in spec.params)
    digest = hashlib.sha1(f"{CODE_VERSION}|{spec.name}|{params}".encode()).hexdigest()[:12]
    return f"detections-{CODE_VERSION}-{spec.profile}-{digest}"


def column_metadata(spec: ModelSpec) -> dict[str, str]:
    """Field metadata of a detector column."""
    return spec.field_metadata() | {
        "vw.time": "events of a window are placed at its centre, (start_s + end_s) / 2",
        "vw.missing": not_analysed(spec.stage),  # the column is named after its stage
    }


def detections_spec(key: str, profile: str | None = None, model: str | None = None) -> ModelSpec:
    """The spec of a detector stage (settings from the ``DETECT_*`` environment)."""
    return detector_spec(key, profile, model, DetectorSettings.from_env())


def detections_udf(key: str, spec: ModelSpec, model: str | None = None, batch_size: int = 4,
                   num_gpus: float | None = None, checkpoint_size: int | None = None) -> Any:
    """The geneva UDF of a detector column (``detections_<key>``) for ``spec``.

    ``batch_size``: windows per ``generate`` call. ``checkpoint_size``: windows per UDF call
    (geneva checkpoint; default ``4 * batch_size``, at least 8).
    """
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    settings = DetectorSettings.from_env()
    gpus = num_gpus if num_gpus is not None else 0.0
    return udf(
        WindowDetections(key, spec.profile, model, settings, batch_size),
        data_type=DETECTION_TYPE,
        version=udf_version(spec),
        field_metadata=column_metadata(spec),
        input_columns=list(INPUT_COLUMNS),
        num_cpus=1,
        num_gpus=gpus,
        checkpoint_size=checkpoint_size or max(4 * batch_size, 8),
        # a fixed size (no adaptive growth): a killed run loses at most one checkpoint
        max_checkpoint_size=checkpoint_size or max(4 * batch_size, 8),
        on_error=skip_on_error(),
    )


# ------------------------------------------------------------------------------------ the stages


def _detector_stage(key: str) -> Stage:
    """The stage filling ``detections_<key>`` on ``windows`` (one soccer-event detector family)."""
    column = stage_name(key)

    def spec(opts: StageOptions) -> ModelSpec:
        return detections_spec(key, opts.profile, opts.model)

    def udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
        return [(column, detections_udf(key, spec, opts.model, opts.batch_size, opts.num_gpus))]

    def columns() -> tuple[StageColumn, ...]:
        return (StageColumn(column, lambda spec: DETECTION_TYPE,
                            description="the detector's answer per window: raw text and parsed event"),)

    return Stage(
        name=column,
        table="windows",
        description=f"{family(key).default_model} soccer-event answers per analysis window",
        columns=columns,
        spec=spec,
        udfs=udfs,
        environment=StageEnvironment(
            "detectors", ("accelerate", "bitsandbytes"), gpu=True,
            description="LLaVA-NeXT-Video / Qwen2.5-VL soccer event detectors (bf16 or 4-bit)",
        ),
    )


STAGES = [_detector_stage(key) for key in FAMILIES]
