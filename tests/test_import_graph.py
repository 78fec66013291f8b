"""mfsample's imports run one way: the module graph has no cycle and respects the layering rules.

A static check (``ast``; nothing is imported) over every import statement of the package, those
inside functions included.  The graph is built by ``benchmarks/import_graph.py`` (loaded from its
file: the benchmarks folder is not a package that tests import), whose docstring defines it.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mfsample"


def _load_graph_module():
    spec = importlib.util.spec_from_file_location("mfsample_import_graph", ROOT / "benchmarks" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


graph_tools = _load_graph_module()

#: (importers, forbidden target, reason): no module ``m`` with ``importers(m)`` imports the target
LAYERS = [
    (
        lambda m: graph_tools.within(m, "mfsample.models"),
        "mfsample.baselines",
        "models are the core; baselines compare against them, so baselines import models, never the reverse",
    ),
    (
        lambda m: not graph_tools.within(m, "mfsample.cli"),
        "mfsample.cli",
        "the CLI is the outermost shell: the library must import and run without it",
    ),
    (
        lambda m: graph_tools.within(m, "mfsample.diagnostics"),
        "mfsample.cli",
        "diagnostics analyse runs for library users; the CLI composes them, not the other way round",
    ),
    (
        lambda m: graph_tools.within(m, "mfsample.inference_data"),
        "mfsample.simulate",
        "the driver writes through the streaming writer; the conversion reads runs, never runs them",
    ),
    (
        lambda m: graph_tools.within(m, "mfsample.inference_data"),
        "mfsample.diagnostics",
        "diagnostics consume InferenceData; the package that builds it comes first",
    ),
    (
        lambda m: graph_tools.within(m, "mfsample.kernels"),
        "mfsample.simulate",
        "kernels state the contract that drivers use; a kernel never depends on a driver",
    ),
]


def check_acyclic(package_dir) -> None:
    """Raise ``AssertionError`` naming every import cycle of the package and the imports that close it."""
    imports = graph_tools.find_imports(package_dir)
    cycles = graph_tools.import_cycles(graph_tools.import_graph(package_dir, imports))
    report = "\n".join(graph_tools.describe_cycle(c, imports) for c in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) in {Path(package_dir).name}:\n{report}"


def test_no_import_cycles():
    """No strongly connected component of more than one module, counting imports inside functions."""
    check_acyclic(PACKAGE)


@pytest.mark.parametrize(
    "importers, forbidden, reason",
    LAYERS,
    ids=["models", "cli", "diagnostics", "inference_data-simulate", "inference_data-diagnostics", "kernels"],
)
def test_layering(importers, forbidden, reason):
    bad = [
        i
        for i in graph_tools.find_imports(PACKAGE)
        if i.target is not None and importers(i.source) and graph_tools.within(i.target, forbidden)
    ]
    lines = "\n".join(f"  {i.source}:{i.line} imports {i.target}" for i in bad)
    assert not bad, f"forbidden imports of {forbidden} ({reason}):\n{lines}"


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / next(iter(files)).split("/")[0]


FAKE = {
    "fakepkg/__init__.py": "from .a import f\n",
    "fakepkg/a.py": "from . import b\n\ndef f():\n    return b\n",
    "fakepkg/b.py": "import os\n\ndef g():\n    from .a import f   # closes the cycle a -> b -> a\n    return f\n",
    "fakepkg/c.py": "from fakepkg.sub import leaf\nimport fakepkg.sub.leaf as leaf2\n",
    "fakepkg/sub/__init__.py": "from .. import c\nfrom ..a import f\n",
    "fakepkg/sub/leaf.py": "from ...fakepkg import b\nx = 1\n",
}


def test_checker_resolves_imports_and_finds_a_cycle_through_a_function(tmp_path):
    """The checker on a known package: relative imports resolved, ``from pkg import module`` mapped to
    the submodule (``from pkg import name`` to ``pkg``), function-level imports counted, the cycle
    a <-> b found and named in the failure message, the acyclic rest left alone."""
    package = _write_package(tmp_path, FAKE)
    imports = graph_tools.find_imports(package)
    graph = graph_tools.import_graph(package, imports)
    assert graph == {
        "fakepkg": {"fakepkg.a"},
        "fakepkg.a": {"fakepkg.b"},
        "fakepkg.b": {"fakepkg.a"},
        "fakepkg.c": {"fakepkg.sub.leaf"},
        "fakepkg.sub": {"fakepkg.c", "fakepkg.a"},
        "fakepkg.sub.leaf": set(),  # `from ...fakepkg import b` climbs above the top package
    }
    assert [(i.source, i.target, i.line) for i in imports if i.in_function] == [("fakepkg.b", "fakepkg.a", 4)]
    assert graph_tools.Import("fakepkg.b", None, 1, False) in imports  # `import os`: no edge
    assert graph_tools.import_cycles(graph) == [["fakepkg.a", "fakepkg.b"]]
    with pytest.raises(AssertionError, match=r"(?s)fakepkg\.a <-> fakepkg\.b.*fakepkg\.b:4 imports fakepkg\.a"):
        check_acyclic(package)


def test_tarjan_on_long_cycles_and_self_loops():
    """Components of a chain of 5000 modules closed into one loop (no recursion limit), a self-loop
    (not a cycle) and a separate 3-cycle."""
    n = 5000
    graph = {f"m{i}": {f"m{(i + 1) % n}"} for i in range(n)}
    graph.update({"s": {"s"}, "x": {"y"}, "y": {"z"}, "z": {"x", "m0"}})
    cycles = graph_tools.import_cycles(graph)
    assert sorted(map(len, cycles)) == [3, n]
    assert ["x", "y", "z"] in cycles
    graph["m0"] = set()  # break the long loop
    assert graph_tools.import_cycles(graph) == [["x", "y", "z"]]
