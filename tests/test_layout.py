"""The generic top-level import names resolve to this project, not to other packages."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["udfs", "tables", "manifests", "jobs"])
def test_top_level_packages_are_ours(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == ROOT / name


def test_tables_is_not_pytables() -> None:
    import tables

    assert tables.PROJECT == "video-warehouse"




# --- the import graph: no circles, imports go downwards only -------------------------------------

#: Layer of each package: a module may import its own package and packages of a lower layer.
#: ``udfs`` (the computation) is the bottom; ``tables`` (tables and read paths) and ``manifests``
#: (worker environments, clusters) sit on it side by side; ``jobs`` (runner, jobs, CLI) is the top.
LAYERS = {"udfs": 0, "tables": 1, "manifests": 1, "jobs": 2}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")}


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every project module each module imports, at module level or inside functions."""
    import ast

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update(r for a in node.names if (r := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in modules else resolve(base)
                    if target:
                        out.add(target)
        out.discard(name)
        graph[name] = out
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    graph = _imports(_project_modules())
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_go_downwards_only() -> None:
    graph = _imports(_project_modules())
    upward = sorted(
        f"{src} -> {dst}"
        for src, targets in graph.items()
        for dst in targets
        if (a := src.split(".")[0]) != (b := dst.split(".")[0]) and LAYERS[b] >= LAYERS[a]
    )
    assert upward == []


def test_command_groups_do_not_import_the_cli_root() -> None:
    graph = _imports(_project_modules())
    offenders = sorted(m for m, targets in graph.items() if m.startswith("jobs.cli.") and "jobs.cli" in targets)
    assert offenders == []


def test_building_the_command_line_imports_nothing_heavy() -> None:
    """``vw --help`` stays fast: building every command imports no data or model library."""
    import subprocess
    import sys

    code = (
        "import sys, typer.main, jobs.cli\n"
        "typer.main.get_command(jobs.cli.app)\n"
        "heavy = ('torch', 'torchcodec', 'ray', 'geneva', 'lance', 'lancedb', 'pyarrow', 'pandas', 'numpy', "
        "'numba', 'duckdb', 'transformers', 'matplotlib')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_status_reads_the_tables_without_ray_torch_or_model_code(tmp_path) -> None:
    """``vw status`` answers from the tables: it imports neither Ray, torch nor a model library."""
    import subprocess
    import sys

    from tables.connection import connect, open_videos
    from tables.ingest import ingest
    from tests.videogen import make_cfr_video

    clip = make_cfr_video(tmp_path / "clip.mp4", num_frames=25, width=64, height=48)
    assert ingest(open_videos(connect(str(tmp_path / "db"))), [str(clip.path)]).inserted == 1
    code = (
        "import sys\n"
        "from jobs.cli import main\n"
        f"sys.argv = ['vw', 'status', '--db', {str(tmp_path / 'db')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('torch', 'torchcodec', 'ray', 'transformers', 'diffusers', 'timm')\n"
        "print('HEAVY:' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("videos: 1 rows"), out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:", out.stdout


def _docstring_nodes(tree: object) -> set[int]:
    import ast

    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_stage_name_is_spelled_outside_its_own_module() -> None:
    """A stage is declared once: its name appears as a string only in the module that declares it."""
    import ast
    import sys

    from udfs.stages import registry

    homes = {name: sys.modules[stage.spec.__module__].__file__ for name, stage in registry().items()}
    found = []
    for path in sorted(p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in homes
                    and id(node) not in docs and Path(homes[node.value]).resolve() != path.resolve()):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []
