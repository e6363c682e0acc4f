"""The ``jobs.ensemble`` package: run ids of stored runs, its exports, its import graph, its option errors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import jobs.ensemble
from jobs.ensemble import EnsembleDataError, EnsembleOptions, EnsembleOptionsError, FusionOptions, NmsMode
from udfs.errors import ChoiceError, VwError, choices

PACKAGE = Path(jobs.ensemble.__file__).parent


# Run ids computed by the code before the package existed (EnsembleOptions with the fusion
# settings flat: name, weights, nms, nms_window_s, soft_nms_sigma, min_confidence). Warehouses
# hold runs under these ids: the same settings must keep giving them.
@pytest.mark.parametrize(("options", "run_id"), [
    (EnsembleOptions(models=["qwen", "llava"]), "ensemble-107337151b"),
    (EnsembleOptions(models=["qwen", "llava"], tolerance_s=2), "ensemble-279655f852"),
    (EnsembleOptions(models=["qwen", "llava", "gemma"], ground_truth="gt", tolerance_s=2.5,
                     where="video_id LIKE 'g/%'", classes=("Goal", "Corner"), score=False,
                     fusion=FusionOptions(name="fused", weights={"qwen": 2, "llava": 0.5}, nms="soft",
                                          nms_window_s=4.0, soft_nms_sigma=0.25, min_confidence=0.1)),
     "fused-bd7c68c4dd"),
    (EnsembleOptions(models=["qwen", "llava"], fusion=FusionOptions(nms="none", nms_window_s=0.0)),
     "ensemble-0e24467304"),
])
def test_run_ids_of_stored_runs_are_unchanged(options: EnsembleOptions, run_id: str) -> None:
    assert options.resolved_run_id() == run_id


def test_params_name_every_setting_once() -> None:
    opts = EnsembleOptions(models=["qwen", "llava"], tolerance_s=2.0)
    assert opts.params() == {
        "models": ["qwen", "llava"], "ground_truth": "ground_truth", "tolerance_s": 2.0, "where": None,
        "name": "ensemble", "weights": {"qwen": 1.0, "llava": 1.0}, "nms": "hard", "nms_window_s": 2.0,
        "soft_nms_sigma": 0.5, "min_confidence": 0.0, "classes": list(opts.classes), "score": True}


def test_closed_choices_and_option_errors() -> None:
    assert choices(NmsMode) == ("hard", "soft", "none")
    with pytest.raises(ChoiceError, match="nms must be one of hard, soft, none; got 'fuzzy'"):
        EnsembleOptions(models=["qwen", "llava"], fusion=FusionOptions(nms="fuzzy")).check()  # type: ignore[arg-type]
    for error in (EnsembleOptionsError, EnsembleDataError):  # the CLI prints them, exit status 2
        assert issubclass(error, VwError) and issubclass(error, ValueError) and error.exit_code == 2
    with pytest.raises(EnsembleOptionsError, match="the ensemble cannot be named like the ground truth"):
        EnsembleOptions(models=["qwen", "llava"], fusion=FusionOptions(name="ground_truth")).check()
    # an unset window is the tolerance: a 0 s tolerance leaves soft-NMS no window
    with pytest.raises(EnsembleOptionsError, match="soft-NMS needs a positive window"):
        EnsembleOptions(models=["qwen", "llava"], tolerance_s=0, fusion=FusionOptions(nms="soft")).check()
    with pytest.raises(EnsembleOptionsError, match="name at least one model"):
        EnsembleOptions(models=[]).check()


def test_exports_resolve_to_their_modules() -> None:
    for name in jobs.ensemble.__all__:
        value = getattr(jobs.ensemble, name)
        module = jobs.ensemble._EXPORTS[name]
        assert value is getattr(sys.modules[f"jobs.ensemble.{module}"], name), name
    with pytest.raises(AttributeError):
        jobs.ensemble.no_such_name  # noqa: B018


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          cwd=PACKAGE.parent.parent).stdout.strip()


def test_package_and_options_import_light() -> None:
    """The command line imports the options when it starts: no NumPy, Arrow, numba, Lance, Ray."""
    heavy = ("numpy", "pyarrow", "numba", "lance", "lancedb", "geneva", "ray", "matplotlib")
    loaded = _run(f"import sys, jobs.ensemble, jobs.ensemble.options; "
                  f"print([m for m in {heavy!r} if m in sys.modules])")
    assert loaded == "[]"
    # a run needs the compiled kernels, Arrow and Lance, never geneva, Ray or matplotlib
    loaded = _run("import sys; from jobs.ensemble import run_ensemble, write_report; "
                  "print([m for m in ('geneva', 'ray', 'lancedb', 'matplotlib') if m in sys.modules])")
    assert loaded == "[]"


def _package_imports(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports (at any depth of its code)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            if name == "jobs.ensemble":
                out.add("__init__")
            elif name.startswith("jobs.ensemble."):
                out.add(name.split(".")[2])
    return out


def test_no_import_circles() -> None:
    graph = {p.stem: _package_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert all("__init__" not in deps for deps in graph.values()), "a module imports the package itself"
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    # the layering the package docstring shows: each module imports only modules listed above it,
    # and the three helpers below the line, which import none of the package
    helpers = {"kernels", "arrow_build", "heap"}
    layers = ["errors", "options", "records", "frame", "matching", "fusion", "metrics", "rows", "run", "report",
              "review_data", "review_clips", "review_page", "warmup"]
    assert set(graph) == helpers | set(layers)
    for helper in helpers:
        assert graph[helper] == set(), helper
    for i, module in enumerate(layers):
        assert graph[module] <= helpers | set(layers[:i]), (module, graph[module] - helpers - set(layers[:i]))
