"""Transition kernels acting on the whole particle system (one module per dynamic)."""

from . import kinetic, langevin, steps, wasserstein
from .base import ParticleKernel, ParticleState
from .kinetic import KineticLangevin
from .langevin import MeanFieldLangevin
from .wasserstein import WassersteinFlow

__all__ = [
    "ParticleKernel",
    "ParticleState",
    "WassersteinFlow",
    "MeanFieldLangevin",
    "KineticLangevin",
    "steps",
    "langevin",
    "wasserstein",
    "kinetic",
]
