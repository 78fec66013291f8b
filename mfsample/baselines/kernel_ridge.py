"""Kernel ridge regression and the ridge selected by GCV / leave-one-out from one eigendecomposition.

Convention shared by :class:`KernelRidge` and :class:`~mfsample.baselines.RandomFeatures`: the fit
minimises

    (1/N) sum_i (f(x_i) - y_i)^2 + lambda ||f||_H^2,     so   f(x) = k(x, X) (K + N lambda I)^-1 y

(scikit-learn's ``KernelRidge(alpha=N * lambda)`` / ``Ridge(alpha=N * lambda)``).  With the
eigendecomposition ``K = U diag(e) U^T`` the smoother is ``S_lambda = U diag(e / (e + N lambda)) U^T``
and, for every ``lambda`` of a grid at once (Golub, Heath & Wahba 1979; Allen 1974),

    GCV(lambda) = (1/N) |(I - S) y|^2 / (1 - tr(S)/N)^2,
    LOO(lambda) = (1/N) sum_i ((y - S y)_i / (1 - S_ii))^2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from .. import validation

__all__ = ["RidgeSelection", "ridge_grid", "select_ridge", "KernelRidge"]


class RidgeSelection(NamedTuple):
    """Result of :func:`select_ridge`: the chosen ``ridge``, the ``grid`` and its ``scores``."""

    ridge: float
    grid: np.ndarray
    scores: np.ndarray
    criterion: str


def ridge_grid(eigvals, num_data: int, num: int = 41):
    """Default grid: ``lambda = (tr K / N) * 10^[-8, 2]``, i.e. ``N lambda`` from far below to above
    the mean eigenvalue scale of ``K`` (whose largest eigenvalue is at most ``tr K``)."""
    scale = float(np.sum(np.asarray(eigvals))) / num_data
    scale = scale if scale > 0 else 1.0
    return scale * np.logspace(-8, 2, num)


def select_ridge(eigvecs, eigvals, y, ridges=None, *, criterion: str = "gcv") -> RidgeSelection:
    """Pick ``lambda`` minimising GCV or LOO (module docstring) over a grid, from ``K = U diag(e) U^T``.

    ``eigvecs`` is ``U`` of shape ``(N, r)`` with orthonormal columns (``r < N`` for a thin SVD of a
    feature matrix: the complement of its range is then smoothed to zero), ``eigvals`` is ``e``
    ``(r,)``.  No refit: every score comes from the same ``U`` and ``e``.
    """
    if criterion not in ("gcv", "loo"):
        raise ValueError(f"criterion must be 'gcv' or 'loo', got {criterion!r}")
    u, e, y = jnp.asarray(eigvecs), jnp.clip(jnp.asarray(eigvals), 0.0, None), jnp.asarray(y)
    n = y.shape[0]
    grid = np.asarray(ridge_grid(e, n) if ridges is None else ridges, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0):
        raise ValueError("ridges must be a non-empty 1-d array of positive numbers")
    lam = jnp.asarray(grid, u.dtype)[:, None]
    h = e[None, :] / (e[None, :] + n * lam)  # (L, r) shrinkage factors
    uty = u.T @ y  # (r,)
    resid = y[None, :] - (h * uty[None, :]) @ u.T  # (L, N) = (I - S) y
    eps = 10 * jnp.finfo(u.dtype).eps
    if criterion == "gcv":
        denom = 1.0 - jnp.sum(h, axis=1) / n
        scores = jnp.mean(resid**2, axis=1) / jnp.where(denom > eps, denom, jnp.nan) ** 2
    else:
        diag = h @ (u**2).T  # (L, N): S_ii
        denom = 1.0 - diag
        scores = jnp.mean((resid / jnp.where(denom > eps, denom, jnp.nan)) ** 2, axis=1)
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.where(np.isfinite(scores), scores, np.inf)
    if not np.any(np.isfinite(scores)):
        raise ValueError("no ridge of the grid gives a finite criterion; give larger `ridges`")
    return RidgeSelection(float(grid[int(np.argmin(scores))]), grid, scores, criterion)


class KernelRidge:
    """Kernel ridge regression ``f(x) = k(x, X) alpha``, ``alpha = (K + N lambda I)^-1 y`` (Cholesky).

    :param kernel: ``k(x1, x2) -> (n1, n2)``, e.g. :func:`~mfsample.baselines.kernels.random_feature_kernel`
        or ``functools.partial(relu_ntk, scaling="ntk")``.
    :param ridge: ``lambda`` (see the module docstring); ``None`` picks it by ``criterion``
        (``"gcv"`` or ``"loo"``) over ``ridges`` (default :func:`ridge_grid`) from one
        eigendecomposition of ``K``; the choice is in ``ridge_`` and the scores in ``selection_``.

    >>> import jax, jax.numpy as jnp
    >>> from mfsample.baselines import KernelRidge, random_feature_kernel
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (20, 3)); y = jnp.maximum(x[:, 0], 0)
    >>> kr = KernelRidge(random_feature_kernel("relu"), ridge=1e-3).fit(x, y)
    >>> kr.predict(x).shape
    (20,)
    """

    def __init__(self, kernel: Callable, ridge: float | None = None, *, criterion: str = "gcv", ridges=None):
        if ridge is not None and not ridge > 0:
            raise ValueError(f"ridge must be positive (or None to select it), got {ridge!r}")
        self.kernel = kernel
        self.ridge = ridge
        self.criterion = criterion
        self.ridges = ridges

    def fit(self, x, y):
        x, y = validation.finite_data("x", x), validation.finite_data("y", y)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
        gram = self.kernel(x, x)
        gram = 0.5 * (gram + gram.T)
        n = y.shape[0]
        self.selection_ = None
        if self.ridge is None:
            e, u = jnp.linalg.eigh(gram)
            self.selection_ = select_ridge(u, e, y, self.ridges, criterion=self.criterion)
            self.ridge_ = self.selection_.ridge
        else:
            self.ridge_ = float(self.ridge)
        chol = jsl.cho_factor(gram + n * self.ridge_ * jnp.eye(n, dtype=gram.dtype), lower=True)
        self.dual_coef_ = jsl.cho_solve(chol, y)
        self.x_train_ = x
        return self

    def predict(self, x):
        return self.kernel(jnp.asarray(x), self.x_train_) @ self.dual_coef_
