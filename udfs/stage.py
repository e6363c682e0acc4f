"""What a stage is: one declaration, in the stage's own module, that everything else reads.

A stage module (``udfs/video_embedding.py``, ...) ends with ``STAGE = Stage(...)`` (or ``STAGES``
for a module that declares several, like the two detector families). A declaration holds

* ``name``, the ``table`` it fills and a one-line ``description``;
* ``columns``: its output columns (names may come from the environment, so this is a function)
  with their Arrow types for a model and whether each is *derived* from the stage's main column;
* ``spec``: the model spec a profile resolves to (no weights are loaded);
* ``udfs``: the geneva UDF(s) that fill the columns, from the options and the spec;
* ``environment``: the worker environment (name, extra packages, GPU need) its manifest pins;
* ``query`` (optional): a :class:`QueryEmbedder` that embeds a query video, image or text with
  the same code, so search can take a file as the query;
* ``files`` (optional): :class:`StageFiles`, the files ``vw export-metadata`` writes from its
  columns for training scripts that read files (key frames, latents).

:mod:`udfs.stages` collects the declarations (built-in modules, then the ``video_warehouse.stages``
entry-point group of installed packages, then any :func:`udfs.stages.register` call); the backfill
runner, the manifests, search's query embedding, ``vw status`` and the command line read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from udfs.models import ModelSpec


@dataclass
class StageOptions:
    """The settings a stage's UDF factory reads (``vw backfill`` options; None = the stage's default)."""

    profile: str | None = None
    model: str | None = None
    batch_size: int = 8
    num_frames: int | None = None
    num_gpus: float | None = None
    fps: float | None = None  # frame sampling rate of per-frame stages (default $FRAME_FPS, then 1)
    scenarios: str | None = None  # scenarios YAML file of the `scenarios` stage (default $VW_SCENARIOS)


@dataclass(frozen=True)
class StageColumn:
    """One output column of a stage: its name, its Arrow type for a model, and whether it is derived
    from the stage's main column (computed from it, no decoding or model call of its own)."""

    name: str
    arrow_type: Callable[[ModelSpec], pa.DataType]
    derived: bool = False
    description: str = ""


@dataclass(frozen=True)
class StageEnvironment:
    """What the workers of a stage need: the environment's name (stages may share one), the packages
    beyond the core and torch stacks (pinned in :mod:`manifests.versions`), and whether the stage's
    model column wants a GPU."""

    name: str
    packages: tuple[str, ...] = ()
    gpu: bool = False
    torch: bool = True
    description: str = ""


@dataclass(frozen=True)
class StageFiles:
    """Files ``vw export-metadata`` writes from one of a stage's columns, for a training script.

    ``kind`` says which path of the metadata the files back: ``image`` (``image_path``, written
    under ``--frames-dir`` as ``<video_id><suffix>``) or ``latent`` (``latent_path``, under
    ``--latents-dir`` as ``<scenario>/<video_id><suffix>``). ``write`` turns one row's cell (as
    Python values) and the column's ``vw.*`` field metadata into the file's bytes.
    """

    kind: Literal["image", "latent"]
    column: str
    write: Callable[[Any, dict[str, str]], bytes]
    suffix: str


class QueryEmbedder(Protocol):
    """Embeds a search query with the code that computed a stored column.

    ``meta`` is the column's ``vw.*`` field metadata (model, profile, settings). A stage implements
    the kinds of query it can embed; the others raise :class:`NotImplementedError`.
    """

    def video(self, meta: dict[str, str], uri: str, device: str) -> np.ndarray:
        """Per-step (or per-frame) vectors ``[T, D]`` of the video at ``uri``."""
        ...

    def image(self, meta: dict[str, str], frames: Any, device: str) -> np.ndarray:
        """The ``[D]`` vector of one image (uint8 ``[1, 3, H, W]`` tensor)."""
        ...

    def text(self, meta: dict[str, str], text: str, device: str) -> np.ndarray:
        """The ``[D]`` vector of a text."""
        ...


@dataclass(frozen=True)
class Stage:
    """The declaration of a stage (see the module docstring)."""

    name: str
    table: str
    description: str
    columns: Callable[[], Sequence[StageColumn]]
    spec: Callable[[StageOptions], ModelSpec]
    udfs: Callable[[StageOptions, ModelSpec], list[tuple[str, Any]]]
    environment: StageEnvironment
    query: QueryEmbedder | None = None
    #: Stages whose columns this stage reads (they are filled first in one command).
    after: tuple[str, ...] = field(default=())
    #: Files ``vw export-metadata`` writes from the stage's columns (key frames, latents).
    files: tuple[StageFiles, ...] = field(default=())
    #: What the stage's UDF counts inside a row (``"frames"``) for the progress of long rows
    #: (:mod:`udfs.unit_progress`); ``None`` when a row is short.
    progress_unit: str | None = None

    def column_names(self) -> list[str]:
        """The names of the stage's columns, main column first."""
        return [c.name for c in self.columns()]

    def main_column(self) -> str:
        """The stage's first (main) column."""
        return self.column_names()[0]
