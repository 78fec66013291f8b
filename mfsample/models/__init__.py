"""NumPyro models whose latent sites live in the particle plate."""

from .gibbs import gibbs_model
from .shallow import check_masses, shallow_network

__all__ = ["shallow_network", "gibbs_model", "check_masses"]
