"""Baselines to compare mean-field training against (DESIGN.md §4): random features (F2), the
infinite-width kernels of ``mu0`` (arc-cosine, NTK, Monte Carlo), kernel ridge regression and the
lazy / NTK regime."""

from . import kernel_ridge, kernels, lazy, random_features
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
from .random_features import RandomFeatures

# >>> exact F1 optimum (mfsample/baselines/exact_f1.py, another issue): wire it here, e.g.
# from .exact_f1 import f1_optimum
# <<<

__all__ = [
    "RandomFeatures",
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
]
