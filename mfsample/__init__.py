"""mfsample: mean-field neural networks as particle measures moved by NumPyro transition kernels."""

from . import (activations, baselines, blocking, data, diagnostics, dynamics, energy, experiments, games, io,
               kernels, models, scaling, sharding)
from .diagnostics import to_inference_data
from .energy import (
    ParticleEnergy,
    energy_and_velocity,
    energy_from_fn,
    energy_from_model,
    first_variation,
    velocity,
)
from .kernels import KineticLangevin, MeanFieldLangevin, ParticleState, WassersteinFisherRao, WassersteinFlow
from .models import gibbs_model
from .simulate import Simulation, simulate

__version__ = "0.1.0"

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
]
