"""Transition kernels acting on the whole particle system (one module per dynamic).

:mod:`~mfsample.kernels.contract` states what every kernel provides to the drivers and
:mod:`~mfsample.kernels.state` the state design shared by all dynamics.
"""

from . import contract, kinetic, langevin, reaction, start, state, steps, wasserstein, wfr
from .base import ParticleKernel
from .contract import ParticleDynamics, Statistic
from .kinetic import KineticLangevin, KineticState
from .langevin import MeanFieldLangevin
from .state import ParticleState, State
from .wasserstein import WassersteinFlow
from .wfr import WassersteinFisherRao, WFRState

__all__ = [
    "ParticleDynamics",
    "Statistic",
    "ParticleKernel",
    "State",
    "ParticleState",
    "KineticState",
    "WFRState",
    "WassersteinFlow",
    "MeanFieldLangevin",
    "KineticLangevin",
    "WassersteinFisherRao",
    "contract",
    "state",
    "start",
    "steps",
    "reaction",
    "wfr",
    "langevin",
    "wasserstein",
    "kinetic",
]
