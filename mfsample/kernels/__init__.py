"""Transition kernels acting on the whole particle system (one module per dynamic)."""

from . import langevin, steps, wasserstein
from .base import ParticleKernel, ParticleState
from .langevin import MeanFieldLangevin
from .wasserstein import WassersteinFlow

__all__ = ["ParticleKernel", "ParticleState", "WassersteinFlow", "MeanFieldLangevin", "steps", "langevin", "wasserstein"]
