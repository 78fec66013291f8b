"""Figures of mfsample's module import graph, read statically (``ast``: nothing is imported).

``python benchmarks/import_graph.py [PACKAGE_DIR]`` prints the number of modules, of import edges,
of imports made inside functions, the import cycles and the longest function of the package
(default: ``mfsample/`` next to this folder).  ``tests/test_import_graph.py`` loads this file and
checks the same graph: no cycles, and the layering rules.

The graph.  Nodes are the package's modules (``pkg/a/b.py`` is ``pkg.a.b``, ``pkg/a/__init__.py``
is ``pkg.a``).  Every import statement counts, wherever it stands (module level, inside a function,
under ``if TYPE_CHECKING``); relative imports are resolved against the importing module's package.
``import pkg.a.b`` and ``from pkg.a.b import name`` give an edge to ``pkg.a.b``; ``from pkg.a import
name`` gives an edge to the submodule ``pkg.a.name`` when it is a module, else to ``pkg.a``.  A name
that is no module of the package maps to its longest prefix that is one (outside the package: no
edge).  Two things are left out: the implicit import of parent packages (``import pkg.a.b`` runs
``pkg/a/__init__.py`` too; counting it would put every package ``__init__`` on a cycle with the
modules it re-exports) and ``importlib.import_module`` calls (lazy attribute loading, which runs on
first access, not at import).  A cycle is a strongly connected component of more than one module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "Import",
    "module_files",
    "find_imports",
    "import_graph",
    "strongly_connected_components",
    "import_cycles",
    "describe_cycle",
    "longest_function",
    "within",
]

DEFAULT_PACKAGE = Path(__file__).resolve().parents[1] / "mfsample"


class Import(NamedTuple):
    """One imported name of one import statement: ``source`` imports ``target`` (``None`` outside the
    package) at ``line``, inside a function body or not."""

    source: str
    target: str | None
    line: int
    in_function: bool


def within(module: str, package: str) -> bool:
    """Whether ``module`` is ``package`` or one of its submodules."""
    return module == package or module.startswith(package + ".")


def module_files(package_dir) -> dict[str, Path]:
    """``{module name: file}`` of every ``.py`` file of the package (``__init__.py`` names its package)."""
    package_dir = Path(package_dir)
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _in_package(name: str, modules) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package (``None``: none is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in modules:
            return prefix
    return None


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module a ``from ... import`` reads from (``None``: relative beyond the top)."""
    if node.level == 0:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 >= len(package):
        return None
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _targets(node, module: str, is_package: bool, modules) -> list[str | None]:
    """The package modules named by one import statement (``None`` for each name outside it)."""
    if isinstance(node, ast.Import):
        return [_in_package(alias.name, modules) for alias in node.names]
    base = _base_of(node, module, is_package)
    if base is None:
        return [None]
    return [
        _in_package(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, modules)
        for alias in node.names
    ]


class _ImportVisitor(ast.NodeVisitor):
    """Collects every import statement of a module, noting whether it stands inside a function."""

    def __init__(self):
        self.found = []  # (node, in_function)
        self._depth = 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _import(self, node):
        self.found.append((node, self._depth > 0))

    visit_Import = visit_ImportFrom = _import


def find_imports(package_dir) -> list[Import]:
    """Every import of the package, one :class:`Import` per imported name."""
    modules = module_files(package_dir)
    out = []
    for module, path in modules.items():
        visitor = _ImportVisitor()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        is_package = path.name == "__init__.py"
        for node, in_function in visitor.found:
            for target in _targets(node, module, is_package, modules):
                out.append(Import(module, target, node.lineno, in_function))
    return out


def import_graph(package_dir, imports: list[Import] | None = None) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``: every module is a key; no self-loops."""
    graph = {module: set() for module in module_files(package_dir)}
    for imp in find_imports(package_dir) if imports is None else imports:
        if imp.target is not None and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion; each component sorted, components in discovery order."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            node, successors = work[-1]
            child = next((s for s in successors if s not in index or s in on_stack), None)
            if child is not None and child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
                continue
            if child is not None:  # an edge back into the current stack
                low[node] = min(low[node], index[child])
                continue
            work.pop()  # every successor of node is done
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
                components.append(sorted(component))
    return components


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, sorted."""
    return sorted(c for c in strongly_connected_components(graph) if len(c) > 1)


def describe_cycle(component: list[str], imports: list[Import]) -> str:
    """The component's modules and the import statements that join them (``file:line``)."""
    members = set(component)
    lines = [" <-> ".join(component)]
    seen = set()
    for imp in sorted(imports, key=lambda i: (i.source, i.line)):
        key = (imp.source, imp.target, imp.line)
        if imp.source in members and imp.target in members and imp.source != imp.target and key not in seen:
            seen.add(key)
            where = " (inside a function)" if imp.in_function else ""
            lines.append(f"    {imp.source}:{imp.line} imports {imp.target}{where}")
    return "\n".join(lines)


def longest_function(package_dir) -> tuple[str, int]:
    """``("module:Qualified.name", number of lines)`` of the longest function (``def`` to its last line)."""
    best = ("", 0)
    for module, path in module_files(package_dir).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo = [(tree, "")]
        while todo:
            node, prefix = todo.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    size = child.end_lineno - child.lineno + 1
                    if not isinstance(child, ast.ClassDef) and size > best[1]:
                        best = (f"{module}:{name}", size)
                    todo.append((child, name + "."))
                else:
                    todo.append((child, prefix))
    return best


def main(argv=None):
    package_dir = Path((argv if argv is not None else sys.argv[1:] or [DEFAULT_PACKAGE])[0])
    imports = find_imports(package_dir)
    graph = import_graph(package_dir, imports)
    in_functions = [i for i in imports if i.in_function]
    statements = {(i.source, i.line) for i in in_functions}
    internal = {(i.source, i.line) for i in in_functions if i.target is not None}
    cycles = import_cycles(graph)
    name, size = longest_function(package_dir)
    print(f"package: {package_dir}")
    print(f"modules: {len(graph)}")
    print(f"import edges (distinct module pairs): {sum(len(t) for t in graph.values())}")
    print(f"function-level imports: {len(statements)} statements ({len(internal)} of package modules)")
    print(f"cycles: {len(cycles)}")
    for component in cycles:
        print("  " + describe_cycle(component, imports).replace("\n", "\n  "))
    print(f"longest function: {name} ({size} lines)")


if __name__ == "__main__":
    main()
