"""The package's import graph has no cycle, imports inside functions included.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from … import`` anywhere in a module is an edge. Module names follow the installed layout
(pyproject's package-dir): ``mirprobe.X`` lives in ``benchmark/X``, ``mirprobe.tasks.X`` in
``tasks/X``. A cycle is found with Tarjan's strongly connected components.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, Path]:
    """pyproject's package-dir: import prefix → folder (the source of truth for the mapping)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in tool["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Dotted module name → source file, for every module the wheel installs."""
    found: dict[str, Path] = {}
    for prefix, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([prefix, *parts])
            # a nested mapped package (mirprobe.tasks) is read from its own folder only
            if not any(name.startswith(p + ".") or name == p for p in package_dirs()
                       if p != prefix and p.startswith(prefix + ".")):
                found[name] = path
    return found


def imported_names(path: Path, module: str, is_package: bool) -> set[str]:
    """Every dotted name a module imports, at any depth (lazy imports inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: anchor at this module's package
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}".strip(".")
            # `from pkg import x` depends on the submodule pkg.x when there is one, else on pkg
            # (resolve() walks an attribute's name back to its module)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = {resolve(n) for n in imported_names(path, name, path.name == "__init__.py")}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
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
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def collapse(graph: dict[str, set[str]], packages: set[str]) -> dict[str, set[str]]:
    """The graph with every module of each package in ``packages`` merged into one node."""
    def node(name: str) -> str:
        return next((p for p in sorted(packages, key=len, reverse=True)
                     if name == p or name.startswith(p + ".")), name)

    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        out.setdefault(node(name), set()).update(node(t) for t in targets)
    return {k: v - {k} for k, v in out.items()}


def test_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a known cycle is reported, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_graph_reads_lazy_and_relative_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from mirprobe.pipeline import run\n    from . import sibling\n"
                   "    import mirprobe.tasks.key\n")
    names = imported_names(src, "mirprobe.report.m", is_package=False)
    assert {"mirprobe.pipeline.run", "mirprobe.report.sibling", "mirprobe.tasks.key"} <= names


def test_modules_follow_the_package_dir_mapping() -> None:
    mods = modules()
    assert mods["mirprobe.pipeline"] == ROOT / "benchmark" / "pipeline.py"
    assert mods["mirprobe.tasks.key"] == ROOT / "tasks" / "key.py"
    assert mods["mirprobe.tasks"] == ROOT / "tasks" / "__init__.py"
    assert "mirprobe.tasks.base" in import_graph()["mirprobe.probing"]


def test_no_import_cycle_between_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycle_between_subpackages() -> None:
    """Each subpackage (tasks, probes, report, ...) as one node: its modules may depend on the
    engine's top-level modules, and those on it, but never both ways round."""
    graph = import_graph()
    packages = {m for m, p in modules().items() if p.name == "__init__.py" and m != "mirprobe"}
    found = cycles(collapse(graph, packages))
    assert not found, "subpackage import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_task_plugins_do_not_import_the_engine() -> None:
    """The engine builds tasks; the task plugins stand alone (mirprobe.tasks → the engine would
    make the two packages depend on each other)."""
    graph = import_graph()
    back = {(m, t) for m, targets in graph.items() if m.startswith("mirprobe.tasks")
            for t in targets if not t.startswith("mirprobe.tasks") and t != "mirprobe"}
    assert not back, f"task plugins import the engine: {sorted(back)}"
