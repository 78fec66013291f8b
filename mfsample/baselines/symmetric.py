"""The S3 network on sets in closed form: ridge regression on its frozen set features.

The S3 class of :func:`mfsample.models.symmetric_network` trains only the outer weights,

    f(X) = (1/n) sum_j a_j h_j(X),      h_j(X) = sigma(<mu_X, psi_j>)  frozen,

so it is linear in ``a``: with ``Psi = H / sqrt(n)`` and ``c = a / sqrt(n)`` the fit is the ridge
regression of :class:`~mfsample.baselines.RandomFeatures` (:func:`feature_ridge`; only the features
differ),

    min_c (1/N) |Psi c - y|^2 + lambda |c|^2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..activations import get_activation
from ..models.symmetric import frozen_layers, set_features
from ..validation import positive_int
from .random_features import feature_ridge

__all__ = ["SymmetricRandomFeatures"]


class SymmetricRandomFeatures:
    r"""S3 in closed form: ridge regression on the frozen set features ``h_j(X) = sigma(<mu_X, psi_j>)``.

    The Wasserstein flow of ``symmetric_network(klass="S3")`` (unit noise) is
    ``dc/dt = -(1/N) Psi^T (Psi c - y)``: it converges to ``fit(ridge=0)`` (least squares of minimum
    norm) plus the part of ``c(0)`` in the null space of ``Psi``; mean-field Langevin at temperature
    ``tau`` has a Gaussian stationary law with mean ``fit(ridge=tau * noise^2 / a_scale^2)``.

    :param int width, inner_width: ``n`` and ``m`` of the S3 network.
    :param activation, inner_activation: ``sigma`` and ``sigma_in``, as the model's.
    :param frozen_params: ``{"c", "w", "b"}``; default: :func:`~mfsample.models.symmetric_frozen_params`
        drawn from ``frozen_key`` (default ``PRNGKey(0)``, the model's default) once the dimension is known.
    :param criterion, ridges: ridge selection (``"gcv"`` or ``"loo"``) when ``fit`` gets ``ridge=None``.

    After ``fit(sets, y, ridge=None, mask=None)``: ``a_`` (the S3 particles ``a``), ``ridge_``,
    ``selection_``; ``predict(sets, mask=None)`` is the network's ``f``.

    >>> import jax
    >>> sets = jax.random.uniform(jax.random.PRNGKey(0), (40, 4, 3), minval=-1, maxval=1)
    >>> rf = SymmetricRandomFeatures(16, 8).fit(sets, sets.sum((1, 2)))
    >>> rf.predict(sets).shape, rf.params["a"].shape
    ((40,), (16,))
    """

    def __init__(
        self,
        width: int,
        inner_width: int,
        activation="relu",
        inner_activation="relu",
        *,
        frozen_key=None,
        frozen_params: dict | None = None,
        c_scale: float = 1.0,
        w_scale: float | None = None,
        b_scale: float = 1.0,
        bias: bool = True,
        criterion: str = "gcv",
        ridges=None,
    ):
        self.width = positive_int("width", width)
        self.inner_width = positive_int("inner_width", inner_width)
        get_activation(activation)
        get_activation(inner_activation)
        self.activation, self.inner_activation = activation, inner_activation
        self.frozen_key = frozen_key
        self.frozen_params = frozen_params
        self.scales = dict(c_scale=c_scale, w_scale=w_scale, b_scale=b_scale, bias=bias)
        self.criterion, self.ridges = criterion, ridges

    def _params(self, dim):
        """The frozen layers for elements of dimension ``dim`` (drawn at the first call, then kept)."""
        self.frozen_params = frozen_layers(
            "S3",
            width=self.width,
            inner_width=self.inner_width,
            dim=dim,
            frozen_params=self.frozen_params,
            frozen_key=self.frozen_key,
            **self.scales,
        )
        return self.frozen_params

    def features(self, sets, mask=None):
        """``Psi = H / sqrt(n)`` of shape ``(N, n)``."""
        sets = jnp.asarray(sets)
        fp = self._params(sets.shape[-1])
        h = set_features(
            sets,
            mask,
            c=fp["c"],
            w=fp["w"],
            b=fp["b"],
            activation=self.activation,
            inner_activation=self.inner_activation,
        )
        return h / np.sqrt(self.width)

    def fit(self, sets, y, ridge: float | None = None, mask=None):
        """Ridge regression of ``y`` on ``Psi`` (``ridge=0``: minimum-norm least squares; ``None``: GCV/LOO)."""
        solution = feature_ridge(self.features(sets, mask), y, ridge, ridges=self.ridges, criterion=self.criterion)
        self.ridge_, self.selection_ = solution.ridge, solution.selection
        self.a_ = solution.coef * np.sqrt(self.width)
        return self

    def predict(self, sets, mask=None):
        """``f(X) = (1/n) sum_j a_j h_j(X)``."""
        if not hasattr(self, "a_"):
            raise ValueError("SymmetricRandomFeatures has no weights yet: call fit(sets, y) before predict")
        return self.features(sets, mask) @ (self.a_ / np.sqrt(self.width))

    @property
    def params(self) -> dict:
        """``{"a"}``: the S3 network's particle site, for ``init_params`` or
        :func:`~mfsample.models.symmetric_predict`."""
        return {"a": getattr(self, "a_", jnp.zeros(self.width))}
