"""Random features: the shallow network with its first layer frozen at a draw from ``mu0`` (the F2 baseline).

    f(x) = (1/n) sum_j a_j sigma(<w_j, x> + b_j),      (w_j, b_j) ~ mu0 iid, frozen,

is linear in the output weights, ``f = psi(x) . c`` with features ``psi_j(x) = sigma(<w_j,x>+b_j)/sqrt(n)``
and ``c = a / sqrt(n)``.  The fit is ridge regression in closed form,

    min_c (1/N) |Psi c - y|^2 + lambda |c|^2      =>   c = V diag(s / (s^2 + N lambda)) U^T y

from the thin SVD ``Psi = U diag(s) V^T`` (one eigendecomposition of the smaller of ``Psi^T Psi``,
``Psi Psi^T``); ``lambda |c|^2 = lambda (1/n) sum_j a_j^2`` is weight decay on
``a``.  ``Psi Psi^T`` is the Monte-Carlo estimate of the random-feature kernel
``k(x, x') = E_{mu0}[sigma sigma']`` (:func:`~mfsample.baselines.kernels.random_feature_kernel`), so
as ``n -> inf`` the predictions tend to :class:`~mfsample.baselines.KernelRidge`'s with the same
``lambda``, at the Monte-Carlo rate ``n^-1/2`` (Rahimi & Recht 2008).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation
from ..validation import positive_int
from .kernel_ridge import RidgeSelection, select_ridge
from .kernels import random_feature_kernel, sample_units, unit_activation

__all__ = ["RandomFeatures", "FeatureRidge", "feature_ridge"]


class FeatureRidge(NamedTuple):
    """Result of :func:`feature_ridge`: coefficients ``c``, the ``ridge`` used and its ``selection``
    (:class:`~mfsample.baselines.RidgeSelection`, or ``None`` when the ridge was given)."""

    coef: jax.Array
    ridge: float
    selection: RidgeSelection | None


def _thin_svd(psi):
    """``Psi = U diag(s) V^T``, the thin singular value decomposition.

    Returns ``(U, e = s^2, V, keep)``: ``keep`` marks the numerically non-zero singular values
    (``s > eps max(N, n) s_max``); the singular vectors of the others are set to zero.  The SVD is
    taken of ``Psi`` itself, not of its Gram matrix: squaring would lose every singular value below
    ``sqrt(eps) s_max`` (about ``3e-4 s_max`` in float32), the directions a small ridge needs.
    """
    num, width = psi.shape
    u, s, vt = jnp.linalg.svd(psi, full_matrices=False)
    keep = s > jnp.finfo(s.dtype).eps * max(num, width) * jnp.max(s)
    u, v = u * keep, vt.T * keep
    return u, jnp.where(keep, s**2, 0.0), v, keep


def feature_ridge(psi, y, ridge: float | None = None, *, ridges=None, criterion: str = "gcv") -> FeatureRidge:
    """Ridge regression on a feature matrix ``Psi (N, n)``: ``min_c (1/N) |Psi c - y|^2 + lambda |c|^2``.

    ``c = V diag(s / (s^2 + N lambda)) U^T y`` from the thin SVD of ``Psi`` (``ridge=0``: the
    pseudo-inverse, minimum-norm least squares); ``ridge=None`` selects ``lambda`` by GCV or LOO
    (``criterion``) over ``ridges`` (:func:`~mfsample.baselines.select_ridge`).
    """
    psi = jnp.asarray(psi)
    if psi.ndim != 2:
        raise ValueError(f"the feature matrix must have shape (num_data, num_features), got {psi.shape}")
    if psi.size == 0:
        raise ValueError(f"the feature matrix psi is empty (shape {psi.shape}): give data and features")
    psi = validation.finite_data("psi", psi)
    y = validation.finite_data("y", jnp.asarray(y, psi.dtype))
    if y.shape != (psi.shape[0],):
        raise ValueError(f"y must have shape ({psi.shape[0]},), got {y.shape}")
    if ridge is not None and not ridge >= 0:
        raise ValueError(f"ridge must be >= 0 (or None to select it), got {ridge!r}")
    u, e, v, keep = _thin_svd(psi)
    selection = None if ridge is not None else select_ridge(u, e, y, ridges, criterion=criterion)
    ridge = float(selection.ridge if selection is not None else ridge)
    denom = e + psi.shape[0] * ridge
    shrink = jnp.where(keep, jnp.sqrt(e) / jnp.where(keep, denom, 1.0), 0.0)
    return FeatureRidge(v @ (shrink * (u.T @ y)), ridge, selection)


class RandomFeatures:
    r"""Random-feature regression with the first layer drawn once from the shallow network's prior.

    :param int width: number of features ``n``.
    :param activation: unit activation (as :func:`mfsample.models.shallow_network`; also ``"step"``).
    :param prior: ``mu0``: ``None`` (the shallow network's prior: ``w ~ N(0, I/d)``, ``b ~ N(0, 1)``),
        a dict of its prior keywords (``a_scale``, ``w_scale``, ``b_scale``) or a model with the same
        sites (see :func:`~mfsample.baselines.kernels.prior_model`).  The units are drawn by a seeded
        trace of that model, so they are distributed exactly as the network's initial particles.
    :param bool bias: units ``sigma(<w,x>+b)`` (True) or ``sigma(<w,x>)``.
    :param rng_key: key of the draw (default ``PRNGKey(0)``); the draw happens at the first ``fit``.
    :param units: optional ``{"w": (n, d), "b": (n,)}`` to use instead of a draw (e.g. the initial
        particles of a mean-field run, for a like-for-like comparison).
    :param criterion, ridges: ridge selection (``"gcv"`` or ``"loo"``) when ``fit`` gets ``ridge=None``.

    After ``fit``: ``a_`` (output weights in the network's convention), ``ridge_``, ``selection_``
    (grid and scores, or None), and :attr:`params` (``a``, ``w``, ``b``: values of
    :func:`~mfsample.models.shallow_network`'s sites with the mean-field scaling).

    **Random-feature gradient flow.**  The same model trained by the particle kernels with the first
    layer frozen, ``mf.WassersteinFlow(mf.models.shallow_network, step_size=dt, frozen=("w", "b"))``
    started at ``init_params=rf.params``, moves only ``a``: with velocity ``n grad_a E`` and
    ``E = (1/2N) |f(X) - y|^2`` it is ``dc/dt = -(1/N) Psi^T (Psi c - y)``, gradient flow of least
    squares in ``c``, which converges to ``fit(x, y, ridge=0)`` (the least-squares / ridge -> 0
    solution, plus the null-space part of ``c(0)`` when ``n > N``).  ``MeanFieldLangevin`` at
    temperature ``tau`` with the same ``frozen`` adds weight decay ``tau a / s_a^2``: its stationary
    law is Gaussian with mean ``fit(x, y, ridge=tau / s_a^2)``.

    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (50, 3)); y = jnp.maximum(x[:, 0], 0)
    >>> rf = RandomFeatures(64).fit(x, y)
    >>> rf.predict(x).shape, rf.params["w"].shape
    ((50,), (64, 3))
    """

    def __init__(
        self,
        width: int,
        activation="relu",
        prior=None,
        bias: bool = True,
        *,
        rng_key=None,
        units: dict | None = None,
        criterion: str = "gcv",
        ridges=None,
    ):
        self.width = positive_int("width", width)
        self.activation = activation
        self.prior = prior
        self.bias = bool(bias)
        self.rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
        self.criterion = criterion
        self.ridges = ridges
        self._sigma = unit_activation(activation)
        self.units = None
        if units is not None:
            w = jnp.asarray(units["w"])
            b = jnp.asarray(units["b"]) if bias else jnp.zeros(w.shape[0], w.dtype)
            if w.ndim != 2 or w.shape[0] != self.width or b.shape != (self.width,):
                raise ValueError(f"units must hold w ({self.width}, d) and b ({self.width},)")
            self.units = {"w": w, "b": b}

    def draw(self, dim: int):
        """Draw the first layer ``(w_j, b_j) ~ mu0`` for inputs of dimension ``dim`` (once)."""
        if self.units is None:
            u = sample_units(self.rng_key, self.width, dim, prior=self.prior, bias=self.bias)
            self.units = {"w": u["w"], "b": u["b"]}
        elif self.units["w"].shape[1] != dim:
            raise ValueError(f"the features were drawn for dim {self.units['w'].shape[1]}, got inputs of dim {dim}")
        return self

    def features(self, x):
        """``Psi(x)`` of shape ``(N, n)``: ``psi_j(x) = sigma(<w_j, x> + b_j) / sqrt(n)``."""
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (num_data, dim), got {x.shape}")
        self.draw(x.shape[1])
        return self._sigma(x @ self.units["w"].T + self.units["b"]) / np.sqrt(self.width)

    def fit(self, x, y, ridge: float | None = None):
        """Ridge regression of ``y`` on ``Psi(x)`` (module docstring); ``ridge=None`` selects it by GCV/LOO.

        ``ridge=0`` gives the minimum-norm least-squares solution (pseudo-inverse).
        """
        solution = feature_ridge(self.features(x), y, ridge, ridges=self.ridges, criterion=self.criterion)
        self.ridge_, self.selection_ = solution.ridge, solution.selection
        self.a_ = solution.coef * np.sqrt(self.width)
        return self

    def predict(self, x):
        """``f(x) = (1/n) sum_j a_j sigma(<w_j, x> + b_j)``."""
        return self.features(x) @ (self.a_ / np.sqrt(self.width))

    @property
    def params(self) -> dict:
        """``{"a", "w", "b"}``: the network's particles (``a`` zeros before ``fit``; no ``b`` without bias)."""
        if self.units is None:
            raise ValueError("no features yet: call fit (or draw(dim)) first")
        a = getattr(self, "a_", jnp.zeros(self.width, self.units["w"].dtype))
        out = {"a": a, "w": self.units["w"]}
        if self.bias:
            out["b"] = self.units["b"]
        return out

    def kernel(self):
        """The infinite-width limit ``k(x1, x2) = E_{mu0}[sigma sigma']`` in closed form (ReLU / step)."""
        return random_feature_kernel(self.activation, prior=self.prior, bias=self.bias)
