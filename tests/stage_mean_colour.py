"""A stage declared outside the warehouse's packages: the mean colour of each frame, 1 frame per second.

It is what a user writes to add a stage (the README's "Adding a stage" shows it): one module
with the numerical core, a geneva UDF class, a query embedder and the ``STAGE`` declaration. The
tests load it through ``$VW_STAGE_MODULES`` (or :func:`udfs.stages.register`) and then ingest,
backfill, search, export and read its status without changing any other file.
"""

from __future__ import annotations

import sys
from typing import Any

import geneva.cloudpickle
import numpy as np
import pyarrow as pa

from udfs.arrays import embedding_steps_type, optional_float, steps_to_arrow
from udfs.decode import SamplingPlan, decode
from udfs.frame_features import FrameTimes
from udfs.models import ModelSpec, resolve_profile
from udfs.stage import Stage, StageColumn, StageEnvironment, StageOptions

NAME = "mean_colour"
FPS = 1.0

# The UDFs are pickled with their code (by geneva's own cloudpickle, which stores them in the table),
# so Ray workers that cannot import this test module, such as an existing cluster's, run them.
geneva.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def mean_colours(uri: str, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """``[num_frames, 3]`` mean RGB (0..1) of one frame every second of the video."""
    frames = decode(uri, SamplingPlan.every(FPS, start_s, end_s), name=uri)
    return frames.data.float().mean(dim=(2, 3)).div(255.0).numpy().astype(np.float32)


class MeanColour:
    """The geneva UDF: one ``[T, 3]`` row per video."""

    def __call__(self, uri: pa.Array, start_s: pa.Array, end_s: pa.Array) -> pa.Array:
        rows = [mean_colours(uri[i].as_py(), optional_float(start_s, i), optional_float(end_s, i))
                for i in range(len(uri))]
        return steps_to_arrow(rows, 3)


class MeanColourQuery:
    """Query embedder: the same mean colours for a query video."""

    def video(self, meta: dict[str, str], uri: str, device: str) -> np.ndarray:
        return mean_colours(uri)

    def image(self, meta: dict[str, str], frames: Any, device: str) -> np.ndarray:
        return frames.float().mean(dim=(2, 3)).div(255.0).numpy()[0]

    def text(self, meta: dict[str, str], text: str, device: str) -> np.ndarray:
        raise NotImplementedError("colours of a text")


def spec(opts: StageOptions) -> ModelSpec:
    profile = resolve_profile(opts.profile, NAME)
    return ModelSpec(NAME, profile, "mean-colour", 3, random_weights=False, params=(("fps", f"{FPS:g}"),))


def udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    meta = spec.field_metadata()
    return [
        (NAME, udf(MeanColour(), data_type=embedding_steps_type(3), version="1", field_metadata=meta,
                   input_columns=["uri", "start_s", "end_s"], num_cpus=1, checkpoint_size=4,
                   on_error=skip_on_error())),
        (f"{NAME}_times", udf(FrameTimes(FPS), data_type=pa.list_(pa.float64()), version="1",
                              field_metadata=meta | {"vw.source": NAME}, input_columns=[NAME, "start_s"],
                              num_cpus=1, on_error=skip_on_error())),
    ]


STAGE = Stage(
    name=NAME,
    table="videos",
    description="mean RGB colour of one frame per second",
    columns=lambda: (
        StageColumn(NAME, lambda spec: embedding_steps_type(3)),
        StageColumn(f"{NAME}_times", lambda spec: pa.list_(pa.float64()), derived=True),
    ),
    spec=spec,
    udfs=udfs,
    environment=StageEnvironment("mean-colour", description="frame decoding only"),
    query=MeanColourQuery(),
)
