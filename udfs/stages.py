"""The stage registry: every :class:`~udfs.stage.Stage` declaration, by name.

Declarations come from three places, in this order (a later one with the same name replaces an
earlier one):

1. the built-in stage modules of this package (:data:`BUILTIN_MODULES`), each ending with
   ``STAGE = Stage(...)`` or ``STAGES = [...]``;
2. installed packages, through the ``video_warehouse.stages`` entry-point group: an entry point
   names a module (its ``STAGE`` / ``STAGES`` are read) or a ``Stage`` object, e.g. in the
   package's ``pyproject.toml``::

       [project.entry-points."video_warehouse.stages"]
       whisper = "my_package.whisper_stage"

3. modules named in ``$VW_STAGE_MODULES`` (comma-separated import names), for stages that are not
   packaged (a notebook's module, a test);
4. :func:`register`, for a stage declared at run time.

Stage modules are imported on first use of the registry, not when this module is imported.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from udfs.errors import NotFoundError, VwError
from udfs.stage import Stage

#: The stage modules shipped with the warehouse.
BUILTIN_MODULES = ("udfs.video_embedding", "udfs.frame_features", "udfs.scenarios", "udfs.detections")
#: The entry-point group other packages add stages through.
ENTRY_POINT_GROUP = "video_warehouse.stages"
#: Environment variable naming extra stage modules (comma-separated import names).
MODULES_ENV = "VW_STAGE_MODULES"

_REGISTERED: dict[str, Stage] = {}
_LOADED: dict[str, Stage] | None = None


class StageDeclarationError(VwError, TypeError):
    """A stage module or entry point that does not declare stages properly."""


def declared_in(obj: Any, where: str) -> list[Stage]:
    """The stages ``obj`` declares: a :class:`Stage`, or a module with ``STAGE`` and/or ``STAGES``."""
    if isinstance(obj, Stage):
        return [obj]
    if isinstance(obj, ModuleType):
        found = [obj.STAGE] if hasattr(obj, "STAGE") else []
        found += list(getattr(obj, "STAGES", ()))
        if found and all(isinstance(s, Stage) for s in found):
            return found
    raise StageDeclarationError(f"{where} declares no stage: expected a Stage, or a module with STAGE or STAGES")


def _load() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    for name in BUILTIN_MODULES:
        for stage in declared_in(importlib.import_module(name), name):
            stages[stage.name] = stage
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plug-in is named, not a traceback
            raise StageDeclarationError(f"{where} cannot be loaded: {type(err).__name__}: {err}") from err
        for stage in declared_in(obj, where):
            stages[stage.name] = stage
    for name in filter(None, (m.strip() for m in os.environ.get(MODULES_ENV, "").split(","))):
        where = f"module {name} (from ${MODULES_ENV})"
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise StageDeclarationError(f"{where} cannot be imported: {err}") from err
        for stage in declared_in(module, where):
            stages[stage.name] = stage
    return stages


def registry() -> dict[str, Stage]:
    """Every declared stage by name (built-in, entry points, then registered)."""
    global _LOADED
    if _LOADED is None:
        _LOADED = _load()
    return _LOADED | _REGISTERED


def register(stage: Stage) -> Stage:
    """Add ``stage`` to the registry for this process (replacing one of the same name); returns it."""
    if not isinstance(stage, Stage):
        raise StageDeclarationError(f"register() takes a Stage, got {type(stage).__name__}")
    _REGISTERED[stage.name] = stage
    return stage


def unregister(name: str) -> None:
    """Remove a stage added with :func:`register` (no effect on built-in or entry-point stages)."""
    _REGISTERED.pop(name, None)


def get_stage(name: str) -> Stage:
    """The stage called ``name``; :class:`~udfs.errors.NotFoundError` listing the stages otherwise."""
    stages = registry()
    if name not in stages:
        raise NotFoundError(f"no stage {name!r}: the stages are {', '.join(sorted(stages))}")
    return stages[name]


def stage_for_column(column: str) -> Stage:
    """The stage named ``column``, or the stage that owns a column of that name."""
    stages = registry()
    if column in stages:
        return stages[column]
    for stage in stages.values():
        if column in stage.column_names():
            return stage
    known = sorted({c for s in stages.values() for c in [s.name, *s.column_names()]})
    raise NotFoundError(f"unknown column {column!r}: backfillable columns are {', '.join(known)}")
