"""Short clips around the events of a review page, cut with the project's decoding stack.

A browser can play a video from its ``uri`` only when it can reach and decode the file: a page
opened from disk reads local files, a page on a web server does not, and no browser reads
``gs://`` or ``s3://``. ``vw ensemble --report DIR --clips`` therefore cuts short H.264 clips
(MP4, yuv420p, played by every browser) into ``DIR/clips/``: frames are decoded with
:func:`udfs.decode.decode` (local or remote, as the stages read them) and encoded with
torchcodec's encoder over the same FFmpeg libraries, so no ``ffmpeg`` program is needed.

Clips are cut per *moment*: events of a video whose ``[t - pre, t + post]`` windows overlap
make one clip (at most ``MAX_CLIP_S`` long). When a run has more moments than ``max_clips``,
the moments worth a look come first: those with a disagreement, then those with missed ground
truth, then the most events; the rest play from the ``uri`` or not at all (the page says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.ensemble.review_data import Clip, VideoSource

#: Seconds of video a clip shows before / after its events.
PRE_S = 4.0
POST_S = 4.0
#: The longest clip; longer runs of overlapping events are cut into several clips.
MAX_CLIP_S = 40.0
#: Clips are encoded at most at this frame rate and with at most this short side (pixels).
CLIP_FPS = 25.0
CLIP_SHORT_SIDE = 360
CLIP_DIR = "clips"


@dataclass(frozen=True)
class Moment:
    """A stretch of one video to cut as a clip, and how much it is worth a look."""

    video_id: str
    start_s: float
    end_s: float
    events: int
    disagree: bool
    missed: bool

    @property
    def priority(self) -> tuple[int, int, int]:
        """Sort key (larger first): disagreement, missed ground truth, number of events."""
        return (int(self.disagree), int(self.missed), self.events)


def moments(video_id: str, document: dict[str, Any], pre_s: float = PRE_S, post_s: float = POST_S,
            max_clip_s: float = MAX_CLIP_S) -> list[Moment]:
    """The moments of one video's page document (events of every row, merged where windows overlap)."""
    points = sorted((t, cat) for row in document["rows"] for t, cat in zip(row["t"], row["cat"], strict=True))
    out: list[Moment] = []
    current: list[tuple[float, str]] = []

    def close() -> None:
        if current:
            cats = {c for _, c in current}
            out.append(Moment(video_id, max(0.0, current[0][0] - pre_s), current[-1][0] + post_s, len(current),
                              "disagree" in cats, "missed" in cats))

    for t, cat in points:
        if current and (t - pre_s > current[-1][0] + post_s or t + post_s - (current[0][0] - pre_s) > max_clip_s):
            close()
            current = []
        current.append((t, cat))
    close()
    return out


def choose(all_moments: Sequence[Moment], max_clips: int) -> list[Moment]:
    """At most ``max_clips`` moments, the ones worth a look first (see the module docstring)."""
    ranked = sorted(all_moments, key=lambda m: (-m.priority[0], -m.priority[1], -m.priority[2], m.video_id,
                                                m.start_s))
    return sorted(ranked[:max_clips], key=lambda m: (m.video_id, m.start_s))


def clip_name(slug: str, moment: Moment) -> str:
    """The clip's path inside the report folder."""
    return f"{CLIP_DIR}/{slug}-{int(moment.start_s * 1000):09d}.mp4"


def cut_clip(source: VideoSource, moment: Moment, path: Path) -> Clip:
    """Decode ``moment`` of ``source`` and write it to ``path`` as H.264 MP4; returns the clip's span.

    Raises :class:`FileNotFoundError` / :class:`udfs.decode.VideoDecodeError` naming the video.
    """
    from torchcodec.encoders import VideoEncoder

    from udfs.decode import SamplingPlan, decode, probe

    if source.uri is None:
        raise FileNotFoundError(f"{moment.video_id}: the video has no uri")
    fps = source.fps
    duration = source.duration_s
    if not fps or not duration:
        info = probe(source.uri, name=moment.video_id)
        fps, duration = info.fps, info.duration_s
    end = min(moment.end_s, duration)
    start = min(moment.start_s, max(0.0, end - 1.0 / fps))
    rate = min(fps, CLIP_FPS)
    frames = decode(source.uri, SamplingPlan.window(start, end, rate), resize_short_side=None,
                    name=moment.video_id)
    data = frames.data
    height, width = data.shape[-2:]
    scale = min(1.0, CLIP_SHORT_SIDE / min(height, width))
    if scale < 1.0 or height % 2 or width % 2:
        import torch.nn.functional as F

        size = (2 * max(1, math.floor(height * scale / 2)), 2 * max(1, math.floor(width * scale / 2)))
        data = F.interpolate(data.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        data = data.round().clamp(0, 255).to(frames.data.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    VideoEncoder(data.contiguous(), frame_rate=rate).to_file(str(tmp), codec="libx264", pixel_format="yuv420p",
                                                            crf=26, preset="veryfast")
    tmp.replace(path)
    return Clip(str(path), float(frames.timestamps_s[0]), float(frames.timestamps_s[-1] + 1.0 / rate))


def cut_clips(chosen: Sequence[Moment], sources: dict[str, VideoSource], slugs: dict[str, str], out_dir: Path,
              on_error: Callable[[str], None]) -> dict[str, list[Clip]]:
    """Cut every chosen moment into ``out_dir``; per video id its clips (paths relative to ``out_dir``).

    A video that cannot be read is reported once through ``on_error`` and its other moments
    are skipped; the other videos' clips are still cut.
    """
    out: dict[str, list[Clip]] = {}
    broken: set[str] = set()
    for moment in chosen:
        if moment.video_id in broken:
            continue
        source = sources.get(moment.video_id, VideoSource(None))
        relative = clip_name(slugs[moment.video_id], moment)
        try:
            clip = cut_clip(source, moment, out_dir / relative)
        except (OSError, RuntimeError, ValueError) as err:
            broken.add(moment.video_id)
            on_error(f"{moment.video_id}: no clips cut ({err})")
            continue
        out.setdefault(moment.video_id, []).append(Clip(relative, clip.start_s, clip.end_s))
    return out
