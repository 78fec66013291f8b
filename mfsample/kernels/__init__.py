"""Transition kernels acting on the whole particle system (one module per dynamic)."""

from . import kinetic, langevin, reaction, steps, wasserstein, wfr
from .base import ParticleKernel, ParticleState
from .kinetic import KineticLangevin
from .langevin import MeanFieldLangevin
from .wasserstein import WassersteinFlow
from .wfr import WassersteinFisherRao, WFRState

__all__ = [
    "ParticleKernel",
    "ParticleState",
    "WassersteinFlow",
    "MeanFieldLangevin",
    "KineticLangevin",
    "WassersteinFisherRao",
    "WFRState",
    "steps",
    "reaction",
    "wfr",
    "langevin",
    "wasserstein",
    "kinetic",
]
