"""The project's import graph: circles and imports that run back up a layer.

Walks ``wsb_gpu/`` and ``benchmarks/`` with :mod:`ast` and collects every import of a
project module, at module level and inside functions (a deferred import is still a
dependency), but not inside ``if TYPE_CHECKING:`` blocks (those never run). ``from x import
y`` counts as an import of the module ``x.y`` when that is a module, else of ``x``.

Two rules, each printed with the file and line of every import that breaks it:

* **no circle**: no strongly connected component of more than one module, and no module
  that imports itself;
* **no upward import**: ``wsb_gpu/stages``, ``wsb_gpu/pipeline``, ``wsb_gpu/cli.py`` and
  ``wsb_gpu/demo.py`` are the top layer (commands and stages); no other ``wsb_gpu`` module
  (the library) imports from them.

Run ``python scripts/import_graph.py``: exit status 0 when both rules hold, 1 otherwise.
``tests/test_import_graph.py`` runs the same :func:`check`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wsb_gpu", "benchmarks")
TOP_LAYER = ("wsb_gpu.stages", "wsb_gpu.pipeline", "wsb_gpu.cli", "wsb_gpu.demo")


@dataclass(frozen=True)
class Import:
    """One import of a project module: who imports what, where."""

    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}  ({self.path}:{self.line})"


@dataclass
class Graph:
    """The import graph of the project's modules and what breaks its two rules."""

    modules: dict[str, Path]
    imports: list[Import]
    circles: list[list[str]] = field(default_factory=list)
    upward: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            out[imp.source].add(imp.target)
        return out

    def circle_imports(self, circle: list[str]) -> list[Import]:
        """The imports that run between the modules of one circle."""
        inside = set(circle)
        return [i for i in self.imports if i.source in inside and i.target in inside]

    def report(self) -> str:
        lines = [f"{len(self.modules)} modules, {len(self.edges_flat())} imports between them"]
        if self.circles:
            lines.append(f"{len(self.circles)} circle(s):")
            for circle in self.circles:
                lines.append("  " + " <-> ".join(circle))
                lines += [f"    {i}" for i in self.circle_imports(circle)]
        else:
            lines.append("no circle")
        if self.upward:
            lines.append(f"{len(self.upward)} upward import(s) (library -> {', '.join(TOP_LAYER)}):")
            lines += [f"  {i}" for i in self.upward]
        else:
            lines.append("no upward import")
        return "\n".join(lines)

    def edges_flat(self) -> set[tuple[str, str]]:
        return {(i.source, i.target) for i in self.imports}


def module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted name of a file under ``root``.

    >>> module_name(ROOT / "wsb_gpu" / "stages" / "__init__.py")
    'wsb_gpu.stages'
    >>> module_name(ROOT / "benchmarks" / "common.py")
    'benchmarks.common'
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """``{dotted name: file}`` of every ``.py`` file of the packages."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "data" in path.relative_to(root / package).parts[:-1]:
                continue
            out[module_name(path, root)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                if isinstance(other, (ast.Import, ast.ImportFrom)):
                    yield other
                else:
                    yield from _import_nodes(other)
        else:
            yield from _import_nodes(child)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that ``name`` starts with (``a.b.c`` -> ``a.b`` when ``c``
    is no module), or None for a module outside the project."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _base(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module ``from <base> import ...`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path = ROOT) -> list[Import]:
    """The project modules that ``module`` imports (one entry per import statement and target)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(root))
    out: list[Import] = []
    for node in _import_nodes(tree):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_resolve(alias.name, modules) for alias in node.names]
        else:
            base = _base(module, node, path.name == "__init__.py")
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in modules else _resolve(base, modules))
        for target in dict.fromkeys(targets):
            if target is not None:
                out.append(Import(module, target, rel, node.lineno))
    return out


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in a stable order.

    >>> strongly_connected({"a": {"b"}, "b": {"a", "c"}, "c": set()})
    [['a', 'b'], ['c']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def is_top_layer(module: str) -> bool:
    """Whether ``module`` is a command or a stage (the layer nothing in the library imports).

    >>> is_top_layer("wsb_gpu.stages.links"), is_top_layer("wsb_gpu.cli"), is_top_layer("wsb_gpu.cluster")
    (True, True, False)
    """
    return any(module == top or module.startswith(top + ".") for top in TOP_LAYER)


def is_library(module: str) -> bool:
    """A ``wsb_gpu`` module outside the top layer (the benchmarks are outside both).

    >>> is_library("wsb_gpu.models.har"), is_library("wsb_gpu.stages.train"), is_library("benchmarks.common")
    (True, False, False)
    """
    return (module == "wsb_gpu" or module.startswith("wsb_gpu.")) and not is_top_layer(module)


def check(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Graph:
    """The import graph of ``packages`` under ``root``, with its circles and upward imports."""
    modules = find_modules(root, packages)
    imports = [imp for name, path in modules.items() for imp in imports_of(name, path, modules, root)]
    graph = Graph(modules, imports)
    edges = graph.edges()
    graph.circles = [c for c in strongly_connected(edges) if len(c) > 1 or c[0] in edges[c[0]]]
    graph.upward = [i for i in imports if is_library(i.source) and is_top_layer(i.target)]
    return graph


def main() -> int:
    graph = check()
    print(graph.report())
    return 1 if graph.circles or graph.upward else 0


if __name__ == "__main__":
    sys.exit(main())
