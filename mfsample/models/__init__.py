"""NumPyro models whose latent sites live in the particle plate (and shared sites beside it)."""

from .deep import deep_network
from .gibbs import gibbs_model
from .shallow import check_masses, shallow_network
from .symmetric import nested_init_params, symmetric_frozen_params, symmetric_network, symmetric_predict

__all__ = [
    "shallow_network",
    "deep_network",
    "gibbs_model",
    "check_masses",
    "symmetric_network",
    "symmetric_frozen_params",
    "nested_init_params",
    "symmetric_predict",
]
