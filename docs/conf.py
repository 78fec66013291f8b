"""Sphinx configuration of the mfsample documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Markdown pages and the notebooks are read by myst-nb; the notebooks are rendered with the outputs
stored in them (never executed here).  The API pages document every public object once, in the
module that defines it; a reference to a re-exported name (``mfsample.simulate``,
``mfsample.kernels.WassersteinFlow``) is resolved to that definition by :func:`resolve_reexport`.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not

import mfsample  # noqa: E402  (cheap: the package loads its subpackages on first access)

project = "mfsample"
author = "the mfsample developers"
copyright = "2026, the mfsample developers"
release = version = mfsample.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks; brings myst_parser
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the NumPy-style "Parameters" sections of a few docstrings
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# -- MyST and notebooks -----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebooks carry their outputs; building never runs them
nb_merge_streams = True

# -- autodoc ----------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"ignore-module-all": True}
autosummary_generate = False  # the API pages are written by hand: no generated stub files
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
add_module_names = False

# -- HTML -------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"mfsample {release}"
html_static_path: list[str] = []


def _defined_in_all(app, what, name, obj, skip, options):
    """Keep a module's member only if it is in the ``__all__`` of the module defining it.

    With ``ignore-module-all`` autodoc documents the objects a module defines (not those it
    imports); this adds the module's declared public surface, so each object appears once.
    """
    if what != "module" or skip:
        return None
    home = getattr(obj, "__module__", None)
    module = sys.modules.get(home) if isinstance(home, str) else None
    public = getattr(module, "__all__", None)
    if public is not None and name not in public:
        return True
    return None


_INLINE_LITERAL = re.compile(r"(``.*?``)")
_SHARED_PARAM = re.compile(r"^(\s*:param\s+)(\w+(?:,\s*\w+)+):")
_LIST_ITEM = re.compile(r"^([-*+]|\d+\.|#\.)\s+")
_NOT_PROSE = re.compile(r"^(:[^:]+:|\.\. |>>>)")


def _escape_bars(line: str) -> str:
    """``|`` escaped outside inline literals (a line with an unclosed literal is left alone)."""
    if line.count("``") % 2:
        return line
    parts = _INLINE_LITERAL.split(line)
    return "".join(part if part.startswith("``") else part.replace("|", "\\|") for part in parts)


def _text_indent(line: str) -> int:
    """Where the text of ``line`` starts (after a list marker, if any)."""
    stripped = line.lstrip()
    marker = _LIST_ITEM.match(stripped)
    return len(line) - len(stripped) + (marker.end() if marker else 0)


def _opens_display(before: str, line: str) -> bool:
    """``line`` (after a blank line) starts an indented display below the prose line ``before``."""
    head, text = before.lstrip(), line.lstrip()
    return (
        _text_indent(line) == len(line) - len(text)  # the display is not a list
        and len(line) - len(text) > _text_indent(before)
        and not _NOT_PROSE.match(head)
        and not _NOT_PROSE.match(text)
        and not head.endswith("::")
    )


def _plain_text_docstring(app, what, name, obj, options, lines):
    """Render the docstrings' plain-text maths as written.

    The docstrings display equations as indented blocks of plain text (``E = -(1/N) sum_i ...``),
    which reStructuredText would read as block quotes: their line breaks would be lost and a norm
    ``|x|`` would be taken for a substitution reference.  Such a block is shown as a block of plain
    text (a ``code-block:: text``); elsewhere, outside inline literals, literal blocks and
    doctests, ``|`` is escaped.  ``:param a, b:`` (one description for several parameters) is
    written ``:param a,b:`` so that ``a`` is not read as a type.
    """
    out = []
    literal_indent = None  # indentation of the paragraph that opened a literal block
    doctest = False  # inside a ``>>>`` block (it ends at a blank line)
    prose, blank_before = None, False  # the last prose line; a blank line since it
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        doctest = bool(stripped) and (doctest or stripped.startswith(">>>"))
        if literal_indent is not None and stripped and indent <= literal_indent:
            literal_indent = None
        if literal_indent is None and stripped and blank_before and prose is not None:
            if _opens_display(prose, line):
                literal_indent = _text_indent(prose)
                out += [" " * literal_indent + ".. code-block:: text", ""]
        if literal_indent is None and stripped and not doctest:
            line = _SHARED_PARAM.sub(lambda m: m.group(1) + re.sub(r",\s*", ",", m.group(2)) + ":", line)
            line = _escape_bars(line)
            if stripped.endswith("::"):
                literal_indent = indent
        out.append(line)
        if stripped:
            prose = line if literal_indent is None and not doctest else None
        blank_before = not stripped
    lines[:] = out


def _import_object(path: str):
    """The object named by the dotted ``path`` (module prefix imported), or ``None``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001  (any failure: not a module path)
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _canonical_name(obj) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(obj, type(sys)):
        return obj.__name__
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        return f"{module}.{qualname}"
    return None


def resolve_reexport(app, env, node, contnode):
    """Resolve a Python reference to a re-exported name through the object's defining module.

    ``mfsample.simulate``, ``mf.first_variation`` or ``mfsample.kernels.WassersteinFlow`` name the
    objects documented as ``mfsample.simulate.simulate``, ``mfsample.energy.fields.
    first_variation`` and ``mfsample.kernels.wasserstein.WassersteinFlow``; a bare name used in
    another module's docstring (``shallow_network``) resolves when one documented object has it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    if target.startswith("mf."):
        target = "mfsample." + target[3:]
    candidates = [target]
    module = node.get("py:module")
    if module:
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    targets = [_canonical_name(_import_object(c)) for c in candidates if c.startswith("mfsample")]
    # a short name used in another module's docstring: the one documented object of that name
    suffix = "." + target
    same_name = [name for name in domain.objects if name.startswith("mfsample.") and name.endswith(suffix)]
    targets += same_name if len(same_name) == 1 else []
    for canonical in targets:
        if canonical is None or canonical not in domain.objects:
            continue
        new = node.deepcopy()
        new["reftarget"] = canonical
        new["refspecific"] = False
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, new, contnode)
        if found is not None:
            return found
    return None


def setup(app):
    app.connect("autodoc-skip-member", _defined_in_all)
    app.connect("autodoc-process-docstring", _plain_text_docstring)
    app.connect("missing-reference", resolve_reexport)
