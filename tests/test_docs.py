"""The documentation site (docs/) builds with warnings as errors, and the README links into it.

The build needs the ``docs`` extra (``pip install -e '.[docs]'``: Sphinx, myst-nb, furo; ``dev``
includes it) and is skipped without it.  It renders the notebooks from their stored outputs (never
executes them) and imports every documented module: about 30 s of CPU on 2 cores (50 s of wall
time when they are busy), so it is part of the default suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_readme_links_to_the_theory_pages_exist():
    """Every relative ``docs/...md`` link of the README names a page of the site."""
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", README.read_text())
    assert len(links) >= 10, "the README's concepts table links to the theory pages"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README links to missing pages: {missing}"


def test_every_module_has_an_api_page():
    """Each public module of the package is documented by an ``automodule`` of docs/api/."""
    documented = set()
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: ([\w.]+)\s*$", page.read_text(), re.M))
    modules = set()
    for path in (ROOT / "mfsample").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            modules.add(".".join(parts))
    missing = sorted(modules - documented)
    assert not missing, f"modules without an API page (add an automodule to docs/api/*.rst): {missing}"


#: how-to pages whose Python blocks form one runnable program (the others show fragments)
RUNNABLE_PAGES = ("howto/own_model.md", "howto/own_energy.md", "howto/arviz.md", "howto/own_kernel.md")


def python_blocks(page: Path) -> str:
    """The page's fenced ``python`` blocks, dedented to their fence, joined in order."""
    blocks = []
    for m in re.finditer(r"^( *)```python\n(.*?)\n *```", page.read_text(), re.S | re.M):
        indent = len(m.group(1))
        blocks.append("\n".join(line[indent:] for line in m.group(2).split("\n")))
    return "\n\n".join(blocks)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_howto_examples_run(page):
    """The code of a how-to page runs as written (10-30 s each on 2 cores)."""
    code = python_blocks(DOCS / page)
    assert code
    ns: dict = {"__name__": "__docs__"}
    exec(compile(code, f"docs/{page}", "exec"), ns)
    if page == "howto/own_energy.md":
        # the page's closed-form Gibbs law at tau = 1/2, c = 1, n = 32: the particle mean has mean
        # c / (1 + tau) = 2/3 and n Var = tau / (1 + tau) = 1/3 (seeded run; measured 0.667, 0.346)
        theta_bar = np.asarray(ns["sim"].samples)[:, 100:].mean(-1)
        assert abs(theta_bar.mean() - 2 / 3) < 0.03
        assert 0.25 < 32 * theta_bar.var() < 0.42


def test_every_notebook_is_a_tutorial_page():
    """docs/tutorials/ holds each notebook of notebooks/ (a link to it) and lists it."""
    index = (DOCS / "tutorials" / "index.md").read_text()
    assert NOTEBOOKS
    for nb in NOTEBOOKS:
        page = DOCS / "tutorials" / nb.name
        assert page.resolve() == nb.resolve(), f"{page} should be a link to {nb}"
        assert nb.stem in index, f"docs/tutorials/index.md does not list {nb.stem}"


def test_docs_build_with_warnings_as_errors(tmp_path):
    """``sphinx -W`` succeeds; the pages, the notebooks' stored figures and the equation-to-function
    links are in the HTML."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("furo")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*cmd, "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, f"sphinx failed:\n{result.stderr[-6000:]}"
    for page in ("index", "theory/energy", "howto/own_kernel", "api/kernels", "tutorials/01_quickstart"):
        assert (out / f"{page}.html").is_file(), page
    # the notebooks' stored outputs are rendered: their PNG figures are written out as images
    quickstart = (out / "tutorials" / "01_quickstart.html").read_text()
    assert re.search(r'<img [^>]*src="[^"]+\.png"', quickstart), "notebook figures are missing"
    # an equation of the theory links to the function that implements it (a re-exported name
    # resolved to its defining module)
    energy = (out / "theory" / "energy.html").read_text()
    assert 'href="../api/energy.html#mfsample.energy.fields.first_variation"' in energy
    kernels = (out / "api" / "kernels.html").read_text()
    assert 'id="mfsample.kernels.wasserstein.WassersteinFlow"' in kernels
