"""Test videos for the GPU run, made with PyAV (its wheel bundles FFmpeg with libx264).

The GPU machine may have no ``ffmpeg`` command and no FFmpeg libraries of its own, so the
videos are encoded in-process through the FFmpeg that ships inside the PyAV wheel: an FFmpeg
filter graph renders a lavfi source (the same sources as :data:`bench.video_embedding.SOURCES`:
``testsrc2``, ``mandelbrot``, ``testsrc2`` + temporal noise) and libx264 encodes it to H.264
High profile, yuv420p, ``veryfast``, 2 B-frames, a fixed average bitrate (5 Mbit/s at 720p)
and an exact GOP (``keyint = keyint_min = gop``, no scene-cut keyframes). Several files are
encoded at once in worker processes.

Long videos (the 10-minute files of the 1-fps plan) are made honestly cheaply: a segment whose
length is a whole number of GOPs is encoded once and then *looped by packet copy* (the same
H.264 packets written again with shifted timestamps, no re-encode), so the file really is a
10-minute H.264 stream that a decoder must read and decode in full, but its pictures repeat
every segment. Decode cost per frame is the segment's; the report says so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench.video_embedding import SOURCES

ENCODER = "libx264"
PRESET = "veryfast"


@dataclass(frozen=True)
class VideoSpec:
    """One file to make: ``seconds`` of lavfi ``source`` at ``size``/``fps`` with GOP ``gop``.

    ``loop_of`` > 0 makes a segment of ``loop_of`` seconds and repeats it by packet copy up
    to ``seconds``.
    """

    path: str
    source: str
    seconds: float
    width: int
    height: int
    fps: int
    gop: int
    bitrate: int
    loop_of: float = 0.0


def _lavfi(source: str, width: int, height: int, fps: int) -> list[tuple[str, str]]:
    """The ``(filter, args)`` chain of a named source of :data:`SOURCES`."""
    template = dict(SOURCES)[source].format(w=width, h=height, fps=fps)
    chain = []
    for part in template.split(","):
        name, _, args = part.partition("=")
        chain.append((name, args))
    return chain


def encode(path: Path, source: str, seconds: float, width: int, height: int, fps: int, gop: int,
           bitrate: int, threads: int = 0) -> dict[str, Any]:
    """Encode ``seconds`` of ``source`` to H.264 at ``path`` (PyAV, in this process)."""
    import av
    from av.video.frame import PictureType

    graph = av.filter.Graph()
    nodes = [graph.add(name, args) for name, args in _lavfi(source, width, height, fps)]
    nodes += [graph.add("format", "pix_fmts=yuv420p"), graph.add("buffersink")]
    for a, b in zip(nodes, nodes[1:], strict=False):
        a.link_to(b)
    graph.configure()
    sink = nodes[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    frames = round(seconds * fps)
    start = time.perf_counter()
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream(ENCODER, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = threads
        stream.options = {"preset": PRESET, "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"}
        for _ in range(frames):
            frame = sink.pull()
            frame.pts = None
            frame.pict_type = PictureType.NONE  # the source marks every frame I: let x264 decide
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return {"frames": frames, "encode_s": round(time.perf_counter() - start, 2)}


def loop_copy(segment: Path, path: Path, seconds: float) -> dict[str, Any]:
    """Write ``segment``'s packets again and again (timestamps shifted) up to ``seconds``."""
    import av

    start = time.perf_counter()
    with av.open(str(segment)) as src:
        stream = src.streams.video[0]
        tb = stream.time_base
        packets = [p for p in src.demux(stream) if p.size]
        frames = len(packets)
        # The segment's exact length in stream time base: frames * frame duration.
        step = int(Fraction(frames, 1) / Fraction(stream.average_rate) / tb)
        keep = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in packets]
        copies = max(1, round(seconds * float(stream.average_rate) / frames))
        tmp = path.with_name(path.stem + ".part" + path.suffix)
        with av.open(str(tmp), "w") as out:
            ostream = out.add_stream_from_template(stream)
            for k in range(copies):
                for data, pts, dts, key in keep:
                    packet = av.Packet(data)
                    packet.stream = ostream
                    packet.time_base = tb
                    packet.pts = None if pts is None else pts + k * step
                    packet.dts = None if dts is None else dts + k * step
                    packet.is_keyframe = key
                    out.mux(packet)
    tmp.replace(path)
    return {"copies": copies, "frames": frames * copies, "loop_s": round(time.perf_counter() - start, 2)}


def make(spec: VideoSpec, threads: int = 0) -> dict[str, Any]:
    """Make one file (kept when it already exists); returns its facts."""
    path = Path(spec.path)
    facts: dict[str, Any] = {"cached": path.exists()}
    if not path.exists():
        if spec.loop_of:
            segment = path.with_name(path.stem + f".segment{spec.loop_of:g}s" + path.suffix)
            facts["segment"] = encode(segment, spec.source, spec.loop_of, spec.width, spec.height, spec.fps,
                                      spec.gop, spec.bitrate, threads)
            facts["loop"] = loop_copy(segment, path, spec.seconds)
            segment.unlink()
        else:
            facts |= encode(path, spec.source, spec.seconds, spec.width, spec.height, spec.fps, spec.gop,
                            spec.bitrate, threads)
    return asdict(spec) | facts | {"bytes": path.stat().st_size, **probe(path)}


def probe(path: Path) -> dict[str, Any]:
    """Frame count, duration, keyframe interval and bitrate read back from the file."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        flags = [p.is_keyframe for p in c.demux(s) if p.size]
        keys = [i for i, key in enumerate(flags) if key]
        n = len(flags)
        duration = float(c.duration / 1_000_000) if c.duration else None
    gaps = sorted({b - a for a, b in zip(keys, keys[1:], strict=False)})
    return {"probed_frames": n, "probed_duration_s": round(duration, 3) if duration else None,
            "keyframe_gaps": gaps[:4], "codec": "h264",
            "mbit_s": round(path.stat().st_size * 8 / duration / 1e6, 2) if duration else None}


def make_all(specs: Sequence[VideoSpec], workers: int | None = None) -> list[dict[str, Any]]:
    """Make every file, ``workers`` encodes at once (each with ``cpus / workers`` x264 threads)."""
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or max(1, cpus // 4), len(specs) or 1))
    threads = max(1, cpus // workers)
    if workers == 1:
        return [make(s, threads) for s in specs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(make, specs, [threads] * len(specs)))


def write_manifest(path: Path, made: list[dict[str, Any]]) -> None:
    """The facts of every file, as JSON."""
    path.write_text(json.dumps(made, indent=2))
