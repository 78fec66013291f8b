"""The reference measure ``mu0`` of the first layer and the infinite-width kernels it defines.

A random unit is ``sigma(<w, x> + b)`` with ``(a, w, b) ~ mu0``, the prior of
:func:`mfsample.models.shallow_network` (``a ~ N(0, s_a^2)``, ``w ~ N(0, s_w^2 I_d)`` with
``s_w = 1/sqrt(d)`` by default, ``b ~ N(0, s_b^2)``).  The law is always *read from the model*
(a seeded trace), never restated here, so random features, kernels and the trained network
share one ``mu0``.

Kernels, all functions of two input batches ``x1 (n1, d)``, ``x2 (n2, d)``:

* random-feature kernel ``k(x, x') = E_{mu0}[sigma(<w,x>+b) sigma(<w,x'>+b)]`` — the RKHS ``F2``;
  for Gaussian ``(w, b)`` the pre-activations are jointly Gaussian with covariance
  ``s_w^2 <x, x'> + s_b^2``, i.e. standard Gaussian weights on the augmented inputs
  ``x~ = (s_w x, s_b)``, and (Cho & Saul 2009, without their factor 2)

      k_n(x, x') = E[(u)_+^n (u')_+^n] = |x~|^n |x~'|^n J_n(theta) / (2 pi),
      J_0 = pi - theta,   J_1 = sin(theta) + (pi - theta) cos(theta),
      J_2 = 3 sin(theta) cos(theta) + (pi - theta)(1 + 2 cos(theta)^2),

  ``theta`` the angle between ``x~`` and ``x~'``; order 0 is the step unit, order 1 the ReLU;
* the two-layer ReLU neural tangent kernel (Jacot, Gabriel & Hongler 2018),
  see :func:`relu_ntk`;
* a Monte-Carlo kernel for any activation and any prior, see :func:`monte_carlo_kernel`.

Theory: ``docs/theory/f1_f2.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers

from .. import validation
from ..activations import get_activation
from ..models.shallow import shallow_network
from ..scaling import scaling_exponent

__all__ = [
    "GaussianPrior",
    "prior_model",
    "gaussian_prior",
    "sample_units",
    "unit_activation",
    "arc_cosine_kernel",
    "random_feature_kernel",
    "relu_ntk",
    "monte_carlo_kernel",
]


# -- mu0, read from the model --------------------------------------------------------------------
def prior_model(prior=None) -> Callable:
    """The NumPyro model whose particle sites ``a``, ``w``, ``b`` define ``mu0``.

    ``prior`` is ``None`` (the shallow network's own prior), a dict of the shallow network's
    prior keywords (``{"a_scale": .., "w_scale": .., "b_scale": ..}``), or a NumPyro model
    ``model(x, *, width, bias)`` with the same sites (e.g. ``functools.partial(shallow_network,
    w_scale=0.5)``).
    """
    if prior is None:
        return shallow_network
    if isinstance(prior, dict):
        return functools.partial(shallow_network, **prior)
    if callable(prior):
        return prior
    raise TypeError(f"prior must be None, a dict of shallow_network keywords or a model, got {prior!r}")


def sample_units(rng_key, width: int, dim: int, *, prior=None, bias: bool = True) -> dict:
    """Draw ``width`` iid units ``(a_j, w_j, b_j) ~ mu0`` by a seeded trace of the prior model.

    Returns ``{"a": (n,), "w": (n, d), "b": (n,)}`` (``b = 0`` when ``bias=False``).
    """
    frozen = _freeze_prior(prior)
    try:
        hash(frozen)
    except TypeError:  # an unhashable prior model: trace it eagerly
        return _sample_units(rng_key, int(width), int(dim), prior, bool(bias))
    return _sample_units_jit(rng_key, int(width), int(dim), frozen, bool(bias))


def _sample_units(rng_key, width, dim, prior, bias):
    model = prior_model(_thaw_prior(prior))
    tr = handlers.trace(handlers.seed(model, rng_key)).get_trace(jnp.zeros((1, dim)), width=width, bias=bias)
    units = {k: tr[k]["value"] for k in ("a", "w")}
    units["b"] = tr["b"]["value"] if bias else jnp.zeros(width, units["w"].dtype)
    return units


_sample_units_jit = jax.jit(_sample_units, static_argnums=(1, 2, 3, 4))


class GaussianPrior(NamedTuple):
    """Standard deviations of a centred Gaussian ``mu0``: ``a ~ N(0, a^2)``, ``w ~ N(0, w^2 I)``, ``b ~ N(0, b^2)``."""

    a_scale: float
    w_scale: float
    b_scale: float


def _centred_normal_scale(fn, name):
    while not isinstance(fn, dist.Normal) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    if not isinstance(fn, dist.Normal):
        raise ValueError(f"the prior of {name!r} is {type(fn).__name__}, not a Normal: no closed-form kernel")
    loc, scale = np.asarray(fn.loc), np.asarray(fn.scale)
    if np.any(loc != 0) or np.ptp(scale) > 0:
        raise ValueError(f"the prior of {name!r} must be a centred isotropic Normal for a closed-form kernel")
    return float(scale.reshape(-1)[0])


def _freeze_prior(prior):
    """A hashable stand-in for ``prior`` (dicts become sorted item tuples)."""
    return tuple(sorted(prior.items())) if isinstance(prior, dict) else prior


def _thaw_prior(prior):
    return dict(prior) if isinstance(prior, tuple) else prior


def gaussian_prior(dim: int, prior=None, *, bias: bool = True) -> GaussianPrior:
    """The scales of ``mu0`` in input dimension ``dim``, read from a trace of the prior model.

    Raises ``ValueError`` when ``mu0`` is not a centred isotropic Gaussian (use
    :func:`monte_carlo_kernel` then).  ``b_scale`` is 0 when ``bias=False``.
    """
    try:
        return _gaussian_prior_cached(int(dim), _freeze_prior(prior), bool(bias))
    except TypeError:  # an unhashable prior model
        return _gaussian_prior(int(dim), prior, bool(bias))


@functools.lru_cache(maxsize=256)
def _gaussian_prior_cached(dim, prior, bias):
    return _gaussian_prior(dim, _thaw_prior(prior), bias)


def _gaussian_prior(dim, prior, bias):
    model = prior_model(prior)
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(np.zeros((1, dim)), width=1, bias=bias)
    return GaussianPrior(
        a_scale=_centred_normal_scale(tr["a"]["fn"], "a"),
        w_scale=_centred_normal_scale(tr["w"]["fn"], "w"),
        b_scale=_centred_normal_scale(tr["b"]["fn"], "b") if bias else 0.0,
    )


def _step(u):
    return (u > 0).astype(u.dtype)


def unit_activation(activation) -> Callable:
    """``get_activation`` plus ``"step"`` (the Heaviside unit of the order-0 arc-cosine kernel)."""
    return _step if activation == "step" else get_activation(activation)


# -- closed forms ----------------------------------------------------------------------------------
def _check_inputs(x1, x2):
    x1 = validation.finite_data("x1", x1, allow_empty=True)
    x2 = validation.finite_data("x2", x2, allow_empty=True)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"inputs must have shapes (n1, d) and (n2, d), got {x1.shape} and {x2.shape}")
    return x1, x2


def _augment(x, s: GaussianPrior, bias: bool):
    """``x~ = (s_w x, s_b)``: then ``<w, x> + b = <g, x~>`` with ``g ~ N(0, I_{d+1})``."""
    xt = s.w_scale * x
    if bias:
        xt = jnp.concatenate([xt, jnp.full((x.shape[0], 1), s.b_scale, xt.dtype)], axis=1)
    return xt


def _angle_and_norms(x1, x2):
    n1 = jnp.linalg.norm(x1, axis=1)
    n2 = jnp.linalg.norm(x2, axis=1)
    prod = n1[:, None] * n2[None, :]
    tiny = jnp.finfo(prod.dtype).tiny
    cos = jnp.clip((x1 @ x2.T) / jnp.maximum(prod, tiny), -1.0, 1.0)
    return jnp.arccos(cos), cos, n1, n2


@functools.partial(jax.jit, static_argnames=("order", "scales", "bias"))
def _arc_cosine_inputs(x1, x2, *, order, scales, bias):
    return _arc_cosine(_augment(x1, scales, bias), _augment(x2, scales, bias), order)


@functools.partial(jax.jit, static_argnames=("scales", "bias"))
def _ntk_inputs(x1, x2, *, scales, bias):
    xt1, xt2 = _augment(x1, scales, bias), _augment(x2, scales, bias)
    k1, k0 = _arc_cosine(xt1, xt2, 1), _arc_cosine(xt1, xt2, 0)
    return k1 + scales.a_scale**2 * (x1 @ x2.T + float(bias)) * k0


def _arc_cosine(x1, x2, order):
    theta, cos, n1, n2 = _angle_and_norms(x1, x2)
    sin = jnp.sqrt(jnp.clip(1.0 - cos**2, 0.0, 1.0))
    if order == 0:
        j = jnp.pi - theta
    elif order == 1:
        j = sin + (jnp.pi - theta) * cos
    elif order == 2:
        j = 3.0 * sin * cos + (jnp.pi - theta) * (1.0 + 2.0 * cos**2)
    else:
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    return (n1[:, None] * n2[None, :]) ** order * j / (2.0 * jnp.pi)


def arc_cosine_kernel(x1, x2, order: int = 1, *, prior=None, bias: bool = True):
    """``k_n(x, x') = E_{mu0}[(<w,x>+b)_+^n (<w,x'>+b)_+^n]`` in closed form (module docstring).

    ``order=0``: step units, ``k_0 = (pi - theta)/(2 pi)``; ``order=1``: ReLU units,
    ``k_1 = |x~||x~'| (sin theta + (pi - theta) cos theta)/(2 pi)``, with ``x~ = (s_w x, s_b)``
    (``x~ = s_w x`` without bias) and ``theta`` the angle between ``x~`` and ``x~'``.
    This is Cho & Saul's kernel divided by 2 (they integrate against ``2 N(0, I)``).

    >>> import jax.numpy as jnp
    >>> x = jnp.eye(2)
    >>> arc_cosine_kernel(x, x, order=0, bias=False)          # orthogonal inputs: (pi - pi/2)/(2 pi)
    Array([[0.5 , 0.25],
           [0.25, 0.5 ]], dtype=float32)
    """
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    x1, x2 = _check_inputs(x1, x2)
    s = gaussian_prior(x1.shape[-1], prior, bias=bias)
    return _arc_cosine_inputs(x1, x2, order=int(order), scales=s, bias=bool(bias))


def random_feature_kernel(activation="relu", *, prior=None, bias: bool = True) -> Callable:
    """The closed-form kernel ``k(x1, x2)`` of random features with this activation and ``mu0``.

    ``"relu"`` gives the order-1 and ``"step"`` the order-0 arc-cosine kernel; any other
    activation has no closed form here (use :func:`monte_carlo_kernel`).
    """
    order = {"relu": 1, "step": 0}.get(activation if isinstance(activation, str) else None)
    if order is None:
        raise ValueError(f"no closed-form kernel for activation={activation!r}; use monte_carlo_kernel")
    return functools.partial(arc_cosine_kernel, order=order, prior=prior, bias=bias)


def relu_ntk(x1, x2, *, scaling="ntk", width: int | None = None, prior=None, bias: bool = True):
    r"""Infinite-width tangent kernel of the two-layer ReLU network ``f = n^-p sum_j a_j (<w_j,x>+b_j)_+``.

    The tangent kernel ``K_n(x, x') = sum_j <grad_{theta_j} f(x), grad_{theta_j} f(x')>`` over
    ``theta_j = (a_j, w_j, b_j)`` is ``n^-2p sum_j [sigma_j sigma'_j + a_j^2 1_j 1'_j (<x,x'> + 1)]``
    (``sigma_j = (<w_j,x>+b_j)_+``, ``1_j`` its step; drop the ``+1`` without bias).  By the law
    of large numbers ``n^(1-2p) K_n -> Theta`` with

        Theta(x, x') = k_1(x, x') + s_a^2 (<x, x'> + 1) k_0(x, x')

    (:func:`arc_cosine_kernel` of orders 1 and 0 under the same ``mu0``).  Hence

    * ``scaling="ntk"`` (``p = 1/2``): ``K_n -> Theta``, the NTK proper; the returned kernel;
    * ``scaling="mean_field"`` (``p = 1``): ``K_n = Theta / n + O(n^-3/2) -> 0``; the returned
      kernel is ``Theta / width`` (``width`` required).

    Time scale.  mfsample moves particles with velocity ``n^(2p-1) grad_{theta_j} E`` (plain
    ``grad E`` for NTK, ``n grad E`` for mean field) and ``E = (1/N) sum_i (f(x_i) - y_i)^2 / 2``
    (unit noise, up to a constant), so ``d f_t(x)/dt = -(1/N) n^(2p-1) K_n(x, X) (f_t(X) - y)``:
    in both scalings the kernel driving ``f`` at ``t = 0`` is ``Theta``.  In the NTK scaling it
    stays ``Theta`` for all ``t`` as ``n -> inf`` (particles move ``O(n^-1/2)``: kernel gradient
    flow, :func:`~mfsample.baselines.lazy.kernel_gradient_flow`); in the mean-field scaling the
    particles move ``O(1)`` and the kernel evolves with them (feature learning).
    """
    p = scaling_exponent(scaling)
    x1, x2 = _check_inputs(x1, x2)
    s = gaussian_prior(x1.shape[-1], prior, bias=bias)
    theta = _ntk_inputs(x1, x2, scales=s, bias=bool(bias))
    if p == 0.5:
        return theta
    if width is None:
        raise ValueError(
            "the tangent kernel of a non-NTK scaling vanishes as n -> inf; give `width` to get "
            "its leading term n^(1-2p) Theta (in mfsample's time n^(2p-1) K_n -> Theta)"
        )
    return theta * float(width) ** (1.0 - 2.0 * p)


# -- Monte Carlo ------------------------------------------------------------------------------------
def monte_carlo_kernel(
    rng_key,
    num_features: int,
    *,
    activation="relu",
    prior=None,
    bias: bool = True,
    tangent: bool = False,
    chunk_size: int = 2**16,
) -> Callable:
    """A Monte-Carlo kernel ``k_M(x1, x2)`` from ``M = num_features`` units drawn from ``mu0``.

    ``tangent=False``: ``k_M(x, x') = (1/M) sum_m sigma(<w_m,x>+b_m) sigma(<w_m,x'>+b_m)``, the
    random-feature kernel (any activation, any prior model).  ``tangent=True``: the tangent kernel
    in mfsample time, ``(1/M) sum_m [sigma_m sigma'_m + a_m^2 s_m s'_m (<x,x'> + 1)]`` with
    ``s = sigma'`` (by autodiff), which estimates :func:`relu_ntk`'s ``Theta`` for ReLU.
    The error is ``O(M^-1/2)``.  Units are drawn in equal chunks of at most ``chunk_size`` with keys
    ``fold_in(rng_key, i)``, so the kernel is a fixed function (the same draws on every call).
    """
    num_features = validation.positive_int("num_features", num_features)
    sigma = unit_activation(activation)
    num_chunks = -(-int(num_features) // chunk_size)
    size = -(-int(num_features) // num_chunks)  # equal chunks: one compilation
    try:
        frozen_prior = _freeze_prior(prior)
        hash(frozen_prior)
    except TypeError:
        frozen_prior = prior
    static = dict(size=size, sigma=sigma, prior=frozen_prior, bias=bool(bias), tangent=bool(tangent))

    def kernel(x1, x2):
        x1, x2 = _check_inputs(x1, x2)
        total = 0.0
        for i in range(num_chunks):
            count = min(size, num_features - i * size)
            total = total + _monte_carlo_chunk(jax.random.fold_in(rng_key, i), x1, x2, count, **static)
        return total / num_features

    return kernel


@functools.partial(jax.jit, static_argnames=("size", "sigma", "prior", "bias", "tangent"))
def _monte_carlo_chunk(key, x1, x2, count, *, size, sigma, prior, bias, tangent):
    """Sum over one chunk of ``size`` units (the first ``count`` of them) of the kernel's summand."""
    u = _sample_units(key, size, x1.shape[-1], prior, bias)
    keep = (jnp.arange(size) < count).astype(x1.dtype)
    u1 = x1 @ u["w"].T + u["b"]
    u2 = x2 @ u["w"].T + u["b"]
    k = (sigma(u1) * keep) @ sigma(u2).T
    if tangent:
        ds1 = jax.jvp(sigma, (u1,), (jnp.ones_like(u1),))[1]
        ds2 = jax.jvp(sigma, (u2,), (jnp.ones_like(u2),))[1]
        k = k + ((ds1 * u["a"] ** 2 * keep) @ ds2.T) * (x1 @ x2.T + float(bias))
    return k
