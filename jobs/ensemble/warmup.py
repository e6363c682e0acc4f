"""Compile the analysis's numba kernels ahead of the first ``vw ensemble`` (``python -m jobs.ensemble.warmup``).

numba compiles the greedy loops on first use and caches them on disk (next to the modules, or in the
user's cache folder when the installation is read-only), a minute or two on 2 cores. ``make install``
runs this module once, so the first real run takes seconds: it runs two small analyses (hard and
soft NMS, scored and written) on generated events in a temporary warehouse, which goes through every
kernel with the argument types a real run has, then removes the warehouse.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path


def _events(seed: int = 0) -> list:
    from tables.events import GROUND_TRUTH, Event

    rng = random.Random(seed)
    labels = ("Goal", "Corner", "Foul")
    out = []
    for video in ("warmup/game/1", "warmup/game/2"):
        for i in range(30):
            t = rng.uniform(0, 2700)
            label = rng.choice(labels)
            out.append(Event(video_id=video, model=GROUND_TRUTH, time_s=round(t, 3), label=label,
                             metadata={"game": "warmup/game", "half": int(video[-1]),
                                       "visibility": "visible" if i % 4 else "not shown"}))
            for model in ("a", "b"):
                if rng.random() < 0.7:
                    out.append(Event(video_id=video, model=model, time_s=round(t + rng.gauss(0, 2), 3),
                                     label=label, confidence=round(rng.random(), 4)))
    return out


def warm_up() -> float:
    """Run the small analyses (compiling what is not cached yet); returns the seconds it took."""
    from jobs.ensemble.options import EnsembleOptions, FusionOptions
    from jobs.ensemble.run import run_ensemble
    from tables.connection import connect
    from tables.events import open_events, write_events

    start = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="vw-ensemble-warmup-"))
    try:
        conn = connect(str(folder))
        write_events(open_events(conn), _events())
        for nms in ("hard", "soft"):
            run_ensemble(conn, EnsembleOptions(models=["a", "b"], fusion=FusionOptions(nms=nms)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return time.monotonic() - start


if __name__ == "__main__":
    from jobs.ensemble.kernels import kernels_to_compile

    pending, cache = kernels_to_compile()
    print(f"ensemble kernels: {len(pending)} to compile (cache: {cache})", flush=True)
    seconds = warm_up()
    left, _ = kernels_to_compile()
    note = f"; not cached (they compile on first use): {', '.join(left)}" if left else ""
    print(f"ensemble kernels: compiled in {seconds:.0f} s{note}")
