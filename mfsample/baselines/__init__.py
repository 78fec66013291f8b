"""Baselines to compare mean-field training against: random features (F2), the
infinite-width kernels of ``mu0`` (arc-cosine, NTK, Monte Carlo), kernel ridge regression, the
lazy / NTK regime, and the S3 network on sets in closed form.

Baselines are built on :mod:`mfsample.models` (never the other way round).

Theory: ``docs/theory/f1_f2.md``.
"""

from .exact_f1 import (
    F1Solution,
    atoms_from_particles,
    balance,
    f1_objective,
    f1_optimum,
    particles_from_atoms,
    weight_decay_objective,
)
from .kernel_ridge import KernelRidge, RidgeSelection, ridge_grid, select_ridge
from .kernels import (
    GaussianPrior,
    arc_cosine_kernel,
    gaussian_prior,
    monte_carlo_kernel,
    prior_model,
    random_feature_kernel,
    relu_ntk,
    sample_units,
)
from .lazy import kernel_gradient_flow, network_predict, relative_displacement
from .random_features import FeatureRidge, RandomFeatures, feature_ridge
from .symmetric import SymmetricRandomFeatures

__all__ = [
    "RandomFeatures",
    "FeatureRidge",
    "feature_ridge",
    "SymmetricRandomFeatures",
    "KernelRidge",
    "RidgeSelection",
    "ridge_grid",
    "select_ridge",
    "GaussianPrior",
    "prior_model",
    "gaussian_prior",
    "sample_units",
    "arc_cosine_kernel",
    "random_feature_kernel",
    "relu_ntk",
    "monte_carlo_kernel",
    "kernel_gradient_flow",
    "network_predict",
    "relative_displacement",
    "F1Solution",
    "f1_optimum",
    "f1_objective",
    "weight_decay_objective",
    "atoms_from_particles",
    "particles_from_atoms",
    "balance",
]
