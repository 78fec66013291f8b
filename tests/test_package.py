"""``import mfsample`` is lazy: it imports no subpackage and no JAX; every public name loads its
module on first access (PEP 562), and a submodule never hides the function of the same name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mfsample

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "numpyro", "arviz", "xarray", "numpy", "scipy", "optax", "matplotlib")


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (repository root as working directory); it prints JSON."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_mfsample_imports_nothing_heavy():
    out = _fresh(
        "import json, sys, mfsample\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'version': mfsample.__version__}))"
    )
    top = {m.split(".")[0] for m in out["modules"]}
    assert not top & set(HEAVY), f"import mfsample imported {sorted(top & set(HEAVY))}"
    assert [m for m in out["modules"] if m.startswith("mfsample")] == ["mfsample"]
    assert out["version"] == mfsample.__version__ == "0.1.0"


def test_every_public_name_resolves_in_a_fresh_process():
    """Each name of ``__all__`` loads: subpackages as ``mfsample.<name>``, the rest as objects defined
    in the package; the first access imports the module (JAX comes in with it)."""
    out = _fresh(
        "import json, sys, types, mfsample as mf\n"
        "res = {}\n"
        "for name in mf.__all__:\n"
        "    value = getattr(mf, name)\n"
        "    res[name] = [isinstance(value, types.ModuleType), getattr(value, '__name__', ''),\n"
        "                 getattr(value, '__module__', None) or '']\n"
        "print(json.dumps({'names': res, 'jax': 'jax' in sys.modules,\n"
        "                  'teacher_student': mf.data.teacher_student.__module__}))"
    )
    names = out["names"]
    assert set(names) == set(mfsample.__all__)
    for name, (is_module, qualname, module) in names.items():
        if name in mfsample._SUBMODULES:
            assert is_module and qualname == f"mfsample.{name}", name
        else:
            assert not is_module and qualname == name and module.startswith("mfsample."), (name, module)
    assert out["jax"]
    assert out["teacher_student"] == "mfsample.data.teacher_student"


@pytest.mark.parametrize("first", ["import mfsample.simulate", "import mfsample.experiments"])
def test_a_submodule_imported_first_does_not_hide_the_function(first):
    """``mfsample.simulate`` is both a module and the function it defines; importing the module
    (directly or through another module) before ``mf.simulate`` is read must not make
    ``mf.simulate`` the module."""
    out = _fresh(
        f"import json, sys, types\n{first}\nimport mfsample as mf\n"
        "from mfsample import simulate\n"
        "print(json.dumps([isinstance(mf.simulate, types.ModuleType), mf.simulate is simulate,\n"
        "                  mf.simulate is sys.modules['mfsample.simulate'].simulate]))"
    )
    assert out == [False, True, True]


def test_dir_and_unknown_names():
    assert set(mfsample.__all__) | {"__version__"} <= set(dir(mfsample))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        getattr(mfsample, "not_a_name")  # noqa: B009 (an attribute read is the point)
