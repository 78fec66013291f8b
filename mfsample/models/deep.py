"""A depth-three network whose last hidden layer is the particle measure and whose first is shared.

    h(x)  = sigma_1(U x / sqrt(d) + c)                     (k shared first-layer units)
    f(x)  = n^(1-p) sum_j m_j a_j sigma(<w_j, h(x)> + b_j)  (n particles, uniform m_j = 1/n)

with ``y_i ~ Normal(f(x_i), noise)``.  ``U`` (``(k, d)``) and ``c`` (``(k,)``) are latent sites
*outside* the particle plate: shared parameters, moved by their own gradient flow beside the
particles (time scale ``shared_step_scale`` of the kernels,
:func:`~mfsample.kernels.steps.shared_drift`).  With ``U`` frozen at its draw (``frozen=("U",
"c")``) the model is the shallow network on random features ``h(x)``.

Theory: ``docs/theory/depth.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .. import validation
from ..activations import get_activation
from ..scaling import SCALING_INFER_KEY, scaling_exponent
from .shallow import check_masses

__all__ = ["deep_network"]


def _first_layer(x, hidden: int, activation: Callable, bias: bool):
    """The shared sites ``U ~ N(0, I)``, ``c ~ N(0, I)`` and ``h = sigma_1(U x / sqrt(d) + c)``."""
    dim = x.shape[1]
    U = numpyro.sample("U", dist.Normal(0.0, 1.0).expand([hidden, dim]).to_event(2))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1)) if bias else 0.0
    return activation(x @ U.T / np.sqrt(dim) + c)


def _preactivation(h, w, b=None):
    """``<w_j, h(x_i)> + b_j``, the bias as the weight of one more feature equal to 1 (its gradient
    is then a row of the backward matmul, not a sum over the data: a step at (10, 256, 1024) 9%
    faster on XLA:CPU; the same values up to float summation order)."""
    if b is None:
        return h @ w.T
    h = jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)
    return h @ jnp.concatenate([w, b[:, None].astype(w.dtype)], axis=1).T


def deep_network(
    x,
    y=None,
    *,
    width: int,
    hidden: int | None = None,
    activation: str | Callable = "relu",
    first_activation: str | Callable = "relu",
    scaling: str = "mean_field",
    bias: bool = True,
    noise: float = 1.0,
    masses=None,
):
    """Depth-three network (module docstring) as a NumPyro model: ``width`` particles ``(a, w, b)``
    on top of ``hidden`` shared first-layer units ``(U, c)``.

    Priors: ``U, c ~ N(0, 1)`` entrywise (inputs scaled by ``1/sqrt(d)``), particles ``a ~ N(0, 1)``,
    ``w ~ N(0, I_k / k)``, ``b ~ N(0, 1)``.  ``hidden`` defaults to ``2 d``.  ``f`` is recorded as a
    deterministic site (dims ``data``).

    Example
    -------
    >>> import jax, numpyro
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(deep_network, 0)).get_trace(x, width=4)
    >>> tr["U"]["value"].shape, tr["w"]["value"].shape, tr["f"]["value"].shape
    ((6, 3), (4, 6), (8,))
    """
    width = validation.positive_int("width", width)
    x = validation.finite_data("x", x, ndim=2)
    num_data, dim = x.shape
    hidden = 2 * dim if hidden is None else validation.positive_int("hidden", hidden)
    noise = validation.real("noise", noise, positive=True)
    if y is not None:
        y = validation.finite_data("y", y, ndim=1)
        if y.shape != (num_data,):
            raise ValueError(f"x and y must have the same length: x has {num_data} rows, y has shape {y.shape}")
    if masses is not None:
        masses = check_masses(masses, width)
    p = scaling_exponent(scaling)
    h = _first_layer(x, hidden, get_activation(first_activation), bias)
    infer = {SCALING_INFER_KEY: p}
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0), infer=infer)
        w = numpyro.sample("w", dist.Normal(0.0, 1.0 / np.sqrt(hidden)).expand([hidden]).to_event(1), infer=infer)
        b = numpyro.sample("b", dist.Normal(0.0, 1.0), infer=infer) if bias else 0.0
    features = get_activation(activation)(_preactivation(h, w, b if bias else None))
    coef = a * width ** (-p) if masses is None else a * masses * width ** (1.0 - p)
    with numpyro.plate("data", num_data):
        f = numpyro.deterministic("f", features @ coef)
        numpyro.sample("y", dist.Normal(f, noise), obs=y)
    return f
