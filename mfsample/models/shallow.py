"""The shallow network as a NumPyro model whose particle plate holds the measure ``mu``.

    f(x) = n^(1-p) * sum_j m_j a_j sigma(<w_j, x> + b_j)      (uniform m_j = 1/n: f = n^-p sum_j ...)

with ``p = 1`` (mean field) or ``p = 1/2`` (NTK), and ``y_i ~ Normal(f(x_i), noise)``.

Theory: ``docs/theory/measure.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .. import validation
from ..activations import get_activation
from ..blocking import particle_blocked_sum
from ..scaling import SCALING_INFER_KEY, scaling_exponent

__all__ = ["shallow_network", "check_masses"]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_masses(masses, width: int, *, atol: float = 1e-4):
    """Validate particle masses (see :func:`mfsample.validation.masses`); returns a JAX array."""
    return validation.masses(masses, width, atol=atol)


def _output_of(x, w, coef, sigma, b=None):
    """``sum_j coef_j sigma(<w_j, x_i> + b_j)`` for every datum ``i`` (``b=None``: no bias).

    The bias is the weight of one more input coordinate equal to 1, ``<(w_j, b_j), (x_i, 1)>``,
    so that its gradient is one more row of the backward matmul instead of a sum of the
    ``N x n`` activations' gradient over the data, which cost XLA:CPU about as much as the
    matmul itself (a step 7-10% faster at every benchmarked size; same values up to float
    summation order).
    """
    if b is not None:
        x = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
        w = jnp.concatenate([w, b[:, None].astype(w.dtype)], axis=1)
    return sigma(x @ jax.lax.optimization_barrier(w.T)) @ coef


def shallow_network(
    x,
    y=None,
    *,
    width: int,
    activation: str | Callable = "relu",
    scaling: str = "mean_field",
    bias: bool = True,
    noise: float = 1.0,
    masses=None,
    a_scale: float = 1.0,
    w_scale: float | None = None,
    b_scale: float = 1.0,
    particle_block_size: int | None = None,
):
    """Two-layer network ``f(x) = n^(1-p) sum_j m_j a_j sigma(<w_j, x> + b_j)`` as a NumPyro model.

    The latent sites ``a`` (shape ``(n,)``), ``w`` (``(n, d)``) and ``b`` (``(n,)``) sit in
    ``numpyro.plate("particle", width)``; their prior is the reference measure ``mu0``:
    ``a ~ N(0, a_scale^2)``, ``w ~ N(0, w_scale^2 I_d)`` (default ``w_scale = 1/sqrt(d)``, so that
    ``<w, x>`` is O(1) for isotropic inputs) and ``b ~ N(0, b_scale^2)``.
    ``f`` is recorded as a deterministic site (dims ``data``) and ``y ~ Normal(f, noise)`` is
    observed under ``numpyro.plate("data", N)``.

    Parameters
    ----------
    x, y : arrays of shape ``(N, d)`` and ``(N,)`` (``y=None`` samples from the prior predictive).
    width : number of particles ``n`` (units).
    activation : ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"softplus"``, ``"gelu"``, ``"identity"``
        or a callable acting elementwise.
    scaling : ``"mean_field"`` (``f = (1/n) sum``) or ``"ntk"`` (``f = n^-1/2 sum``).
    bias : include the particle coordinate ``b``.
    noise : standard deviation of the Gaussian likelihood.
    masses : optional particle weights ``m_j >= 0``, ``sum_j m_j = 1`` (``None``: ``1/n``).
    particle_block_size : evaluate ``f`` as a sum over blocks of this many particles, each
        block's ``N x P`` activations recomputed in the backward pass (``jax.checkpoint``), so
        that the ``N x n`` activations are never held at once; ``None``: one block.  Same values
        up to float summation order.  Kernels with ``block_size="auto"`` set it, when it is not
        passed, on a CPU for wide problems (``n > N``, :func:`mfsample.blocking.auto_particle_block_size`).

    Example
    -------
    >>> import jax, numpyro
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(shallow_network, 0)).get_trace(x, width=4)
    >>> tr["w"]["value"].shape, tr["f"]["value"].shape
    ((4, 3), (8,))
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise TypeError(f"width must be an integer, got {type(width).__name__}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if noise is None or (np.ndim(noise) == 0 and _is_concrete(noise) and not float(noise) > 0):
        raise ValueError(f"noise must be positive, got {noise!r}")
    p = scaling_exponent(scaling)
    sigma = get_activation(activation)
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (num_data, dim), got {x.shape}")
    num_data, dim = x.shape
    if num_data == 0:
        raise ValueError(f"x has no rows (shape {x.shape}): the data plate needs at least one datum")
    if y is not None:
        y = jnp.asarray(y)
        if y.shape != (num_data,):
            raise ValueError(f"x and y must have the same length: x has {num_data} rows, y has shape {y.shape}")
    if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains non-finite values")
    if y is not None and _is_concrete(y) and not np.all(np.isfinite(np.asarray(y))):
        raise ValueError("y contains non-finite values")
    if masses is not None:
        masses = check_masses(masses, width)
    particle_block_size = validation.optional_positive_int("particle_block_size", particle_block_size)
    w_scale = 1.0 / np.sqrt(dim) if w_scale is None else w_scale

    infer = {SCALING_INFER_KEY: p}
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, a_scale), infer=infer)
        w = numpyro.sample(
            "w",
            dist.Normal(0.0, w_scale).expand([dim]).to_event(1),
            infer={**infer, "event_dims": ["input_dim"]},
        )
        b = numpyro.sample("b", dist.Normal(0.0, b_scale), infer=infer) if bias else 0.0
    # XLA folds a bare transpose into the dot, which makes the backward matmul G.T @ x with an
    # (n, d) result, ~4x slower on XLA:CPU than x.T @ G with a (d, n) one (benchmarks/step.py).
    # The barrier keeps w.T a (d, n) array, so the gradient is formed as x.T @ G and then
    # transposed (an n x d copy); the particle axis stays leading in the state.  `simulate` on a
    # CPU also asks XLA to keep the carried w column-major (mfsample.layout; faster at small sizes).
    if masses is None:
        coef = a * width ** (-p)
    else:
        coef = a * masses * width ** (1.0 - p)
    units = (w, coef, jnp.broadcast_to(b, (width,))) if bias else (w, coef)
    with numpyro.plate("data", num_data):
        f = numpyro.deterministic(
            "f", particle_blocked_sum(lambda q: _output_of(x, q[0], q[1], sigma, *q[2:]), units, particle_block_size)
        )
        numpyro.sample("y", dist.Normal(f, noise), obs=y)
    return f
