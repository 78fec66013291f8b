"""mfsample: mean-field neural networks as particle measures moved by NumPyro transition kernels.

``import mfsample`` imports no subpackage (nor JAX): every public name below is loaded from its
module on first access (PEP 562 module ``__getattr__``), so ``mf.simulate`` imports
:mod:`mfsample.simulate` and ``mf.data`` imports :mod:`mfsample.data` when first used.
"""

import sys as _sys
import types as _types
from importlib import import_module as _import_module

__version__ = "0.1.0"

#: subpackages and modules reachable as ``mfsample.<name>``
_SUBMODULES = (
    "activations",
    "baselines",
    "blocking",
    "data",
    "diagnostics",
    "dynamics",
    "energy",
    "experiments",
    "games",
    "inference_data",
    "io",
    "kernels",
    "models",
    "scaling",
    "sharding",
    "sweeps",
    "validation",
)

#: re-exported name -> the module that defines it
_ATTRIBUTES = {
    "to_inference_data": "mfsample.inference_data",
    "ParticleEnergy": "mfsample.energy",
    "energy_and_velocity": "mfsample.energy",
    "energy_from_fn": "mfsample.energy",
    "energy_from_model": "mfsample.energy",
    "first_variation": "mfsample.energy",
    "velocity": "mfsample.energy",
    "KineticLangevin": "mfsample.kernels",
    "MeanFieldLangevin": "mfsample.kernels",
    "ParticleState": "mfsample.kernels",
    "WassersteinFisherRao": "mfsample.kernels",
    "WassersteinFlow": "mfsample.kernels",
    "gibbs_model": "mfsample.models",
    "Simulation": "mfsample.simulate",
    "simulate": "mfsample.simulate",
    "Sweep": "mfsample.sweeps",
    "sweep": "mfsample.sweeps",
}

__all__ = [
    "data",
    "baselines",
    "experiments",
    "diagnostics",
    "to_inference_data",
    "games",
    "dynamics",
    "models",
    "kernels",
    "energy",
    "activations",
    "scaling",
    "blocking",
    "sharding",
    "io",
    "inference_data",
    "validation",
    "WassersteinFlow",
    "MeanFieldLangevin",
    "KineticLangevin",
    "WassersteinFisherRao",
    "ParticleState",
    "ParticleEnergy",
    "energy_from_model",
    "energy_from_fn",
    "first_variation",
    "velocity",
    "energy_and_velocity",
    "gibbs_model",
    "simulate",
    "Simulation",
    "sweeps",
    "sweep",
    "Sweep",
]


def __getattr__(name: str):
    """Load ``mfsample.<name>`` on first access and keep it in the package namespace."""
    if name in _SUBMODULES:
        value = _import_module(f"{__name__}.{name}")
    elif name in _ATTRIBUTES:
        value = getattr(_import_module(_ATTRIBUTES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({name for name in globals() if not name.startswith("_")} | set(__all__) | {"__version__"})


class _Package(_types.ModuleType):
    """The package's module type: a re-exported name is never replaced by a submodule.

    Importing a submodule binds it as an attribute of its package; ``mfsample.simulate`` (the
    module) would then hide ``mfsample.simulate`` (the function) whenever another module imported it
    first.  Such bindings are dropped, so the name keeps resolving through :func:`__getattr__`.
    """

    def __setattr__(self, name, value):
        if name in _ATTRIBUTES and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
