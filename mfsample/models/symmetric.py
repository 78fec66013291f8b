"""Symmetric (set) functions as mean-field networks on measures.

A set ``X = (x_1..x_k)``, ``x_i in R^d``, is read as the measure ``mu_X = (1/k) sum_i delta_{x_i}``.
A unit is ``a * sigma(<mu_X, psi>)`` with a test function ``psi`` that is itself a shallow network
of ``m`` (``inner_width``) units on set elements,

    psi(x) = m^(-1/2) sum_k c_k sigma_in(<w_k, x> + b_k),      <mu_X, psi> = (1/k) sum_i psi(x_i),

and the network is the mean-field average of ``n`` (``width``) such units,

    f(X) = n^(1-p) sum_j m_j a_j sigma(<mu_X, psi_j>)           (uniform m_j = 1/n: n^-p sum_j ...).

Three nested classes, by which layers are trained (the particle ``theta_j`` is what moves):

* ``S1``: ``theta_j = (a_j, c_j, w_j, b_j)``, every unit has its own test function, all trained;
* ``S2``: ``theta_j = (a_j, c_j)``; the inner layer ``(w_k, b_k)_{k<m}`` is a frozen draw of random
  features shared by all units, so ``psi_j`` ranges over their span (an RKHS ball of test functions);
* ``S3``: ``theta_j = a_j``; the inner layer and the coefficients ``c_j`` are frozen, so
  ``f = (1/n) sum_j a_j h_j(X)`` with frozen set features ``h_j(X) = sigma(<mu_X, psi_j>)``: a kernel
  method, solved in closed form by :class:`mfsample.baselines.SymmetricRandomFeatures`.

**Nesting.**  Every frozen quantity is drawn from the same prior ``mu0`` as the trained particle
coordinate it replaces (:func:`symmetric_frozen_params`), so S3 is S2 with ``c`` kept at its
initial draw and S2 is S1 whose units all share one initial inner layer that is never moved:
``symmetric_network(klass="S3")`` trained by any kernel equals ``klass="S2"`` trained with the
kernel option ``frozen=("c",)`` from the same ``c``, and ``klass="S2"`` equals ``klass="S1"`` with
``frozen=("w", "b")`` started from ``w_j = w``, ``b_j = b`` for every ``j`` (:func:`nested_init_params`
starts the three classes at one network; the tests check that energies and velocities coincide on
these slices).  Frozen layers
are constants of the model, not latent sites (the particle plate holds every latent site), drawn
from ``frozen_key`` (default ``PRNGKey(0)``) or given as ``frozen_params``.

Padding: sets of different sizes are stacked as ``(N, K, d)`` with a mask ``(N, K)`` (true for the
elements); padded entries never enter the output (they are zeroed before use, so even NaN padding
is harmless) and a set must hold at least one element.

Theory: ``docs/theory/symmetric.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..activations import get_activation
from ..scaling import SCALING_INFER_KEY, scaling_exponent
from ..validation import positive_int
from .shallow import _is_concrete, check_masses

__all__ = [
    "KLASSES",
    "TRAINED_SITES",
    "symmetric_network",
    "symmetric_frozen_params",
    "nested_init_params",
    "symmetric_predict",
    "check_sets",
    "pooled_features",
    "set_features",
    "frozen_layers",
]

KLASSES = ("S1", "S2", "S3")
#: the particle sites of each class (everything else is frozen)
TRAINED_SITES = {"S1": ("a", "c", "w", "b"), "S2": ("a", "c"), "S3": ("a",)}


def _check_klass(klass):
    if klass not in KLASSES:
        raise ValueError(f"klass must be one of {KLASSES}, got {klass!r}")
    return klass


def check_sets(sets, mask=None):
    """Validate a padded batch of sets; return ``(sets, mask)`` with padded entries zeroed.

    ``sets`` has shape ``(N, K, d)``; ``mask`` (``(N, K)``, bool or 0/1; ``None``: every entry is an
    element) marks the elements.  Checks values only when they are concrete (not under ``jit``):
    every set holds at least one element and its elements are finite.
    """
    sets = jnp.asarray(sets)
    if sets.ndim != 3:
        raise ValueError(f"sets must have shape (num_sets, max_set_size, dim), got {sets.shape}")
    if mask is None:
        mask = jnp.ones(sets.shape[:2], bool)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != sets.shape[:2]:
            raise ValueError(f"mask must have shape {sets.shape[:2]} (num_sets, max_set_size), got {mask.shape}")
        mask = mask.astype(bool)
    if _is_concrete(mask) and _is_concrete(sets):
        m = np.asarray(mask)
        if not np.all(m.any(axis=1)):
            raise ValueError("every set must hold at least one element (a row of the mask is all False)")
        if not np.all(np.isfinite(np.asarray(sets)[m])):
            raise ValueError("sets contain non-finite values among their elements")
    return jnp.where(mask[..., None], sets, 0.0), mask


def _masked_mean(values, mask):
    """``<mu_X, g> = (1/k) sum_{i: mask_i} g(x_i)`` along axis 1 of ``values (N, K, ...)``."""
    m = mask.reshape(mask.shape + (1,) * (values.ndim - 2)).astype(values.dtype)
    return jnp.sum(jnp.where(m > 0, values, 0.0), axis=1) / jnp.sum(m, axis=1)


def symmetric_frozen_params(
    rng_key,
    klass: str,
    *,
    width: int,
    inner_width: int,
    dim: int,
    c_scale: float = 1.0,
    w_scale: float | None = None,
    b_scale: float = 1.0,
    bias: bool = True,
) -> dict:
    """Draw the frozen layers of ``klass`` from the prior of the sites they replace.

    ``S1``: ``{}``; ``S2``: shared inner layer ``w (m, d) ~ N(0, w_scale^2)``, ``b (m,) ~ N(0, b_scale^2)``
    (``w_scale = 1/sqrt(d)`` by default); ``S3``: the same plus ``c (n, m) ~ N(0, c_scale^2)``.
    The draw depends on ``rng_key`` only through fixed sub-keys, so ``S2`` and ``S3`` built from the
    same key share their inner layer.
    """
    _check_klass(klass)
    if klass == "S1":
        return {}
    w_scale = 1.0 / np.sqrt(dim) if w_scale is None else w_scale
    k_w, k_b, k_c = jax.random.split(rng_key, 3)
    out = {"w": w_scale * jax.random.normal(k_w, (inner_width, dim))}
    out["b"] = b_scale * jax.random.normal(k_b, (inner_width,)) if bias else jnp.zeros(inner_width)
    if klass == "S3":
        out["c"] = c_scale * jax.random.normal(k_c, (width, inner_width))
    return out


def nested_init_params(
    rng_key,
    klass: str,
    *,
    width: int,
    inner_width: int,
    dim: int,
    frozen_key=None,
    a_scale: float = 1.0,
    c_scale: float = 1.0,
    w_scale: float | None = None,
    b_scale: float = 1.0,
    bias: bool = True,
) -> dict:
    """Initial particles that start ``S1``, ``S2`` and ``S3`` at one and the same network.

    ``a ~ N(0, a_scale^2)`` is drawn from ``rng_key``; ``c``, ``w``, ``b`` are the S3 frozen layers of
    ``frozen_key`` (:func:`symmetric_frozen_params`), copied into the trained sites of ``klass``
    (``S1``: ``w_j = w``, ``b_j = b`` for every unit).  Started from these (``init_params=``) with the
    same ``frozen_key``, the three classes differ only by which coordinates move: the honest
    comparison of the nested classes S3 ⊂ S2 ⊂ S1.
    """
    _check_klass(klass)
    key = jax.random.PRNGKey(0) if frozen_key is None else frozen_key
    fp = symmetric_frozen_params(
        key,
        "S3",
        width=width,
        inner_width=inner_width,
        dim=dim,
        c_scale=c_scale,
        w_scale=w_scale,
        b_scale=b_scale,
        bias=bias,
    )
    out = {"a": a_scale * jax.random.normal(rng_key, (width,))}
    if klass in ("S1", "S2"):
        out["c"] = fp["c"]
    if klass == "S1":
        out["w"] = jnp.broadcast_to(fp["w"], (width, inner_width, dim))
        if bias:
            out["b"] = jnp.broadcast_to(fp["b"], (width, inner_width))
    return out


def frozen_layers(
    klass: str,
    *,
    width: int,
    inner_width: int,
    dim: int,
    frozen_params: dict | None = None,
    frozen_key=None,
    c_scale: float = 1.0,
    w_scale: float | None = None,
    b_scale: float = 1.0,
    bias: bool = True,
) -> dict:
    """The frozen layers of ``klass``: ``frozen_params`` checked against the network's shapes, or,
    when it is ``None``, :func:`symmetric_frozen_params` drawn from ``frozen_key`` (default ``PRNGKey(0)``).

    ``S1``: ``{}``; ``S2``: ``w (m, d)``, ``b (m,)``; ``S3``: also ``c (n, m)``.
    """
    if frozen_params is None:
        key = jax.random.PRNGKey(0) if frozen_key is None else frozen_key
        return symmetric_frozen_params(
            key,
            klass,
            width=width,
            inner_width=inner_width,
            dim=dim,
            c_scale=c_scale,
            w_scale=w_scale,
            b_scale=b_scale,
            bias=bias,
        )
    need = {"S1": (), "S2": ("w", "b"), "S3": ("w", "b", "c")}[_check_klass(klass)]
    missing = [k for k in need if k not in frozen_params]
    if missing:
        raise ValueError(f"frozen_params for {klass} must hold {need}; missing {missing}")
    out = {k: jnp.asarray(frozen_params[k]) for k in need}
    if klass != "S1" and (out["w"].shape != (inner_width, dim) or out["b"].shape != (inner_width,)):
        raise ValueError(
            f"frozen w, b must have shapes ({inner_width}, {dim}) and ({inner_width},), "
            f"got {out['w'].shape} and {out['b'].shape}"
        )
    if klass == "S3" and out["c"].shape != (width, inner_width):
        raise ValueError(f"frozen c must have shape ({width}, {inner_width}), got {out['c'].shape}")
    return out


def pooled_features(sets, mask, w, b, inner_activation="relu"):
    """Pooled inner features ``P = <mu_X, sigma_in(<w_k, .> + b_k)>``.

    Shared inner layer ``w (m, d)``, ``b (m,)``: ``P`` has shape ``(N, m)``; one inner layer per unit
    ``w (n, m, d)``, ``b (n, m)``: ``(N, n, m)``.  ``sets`` must already have zeroed padding.
    """
    sigma_in = get_activation(inner_activation)
    if w.ndim == 2:
        return _masked_mean(sigma_in(jnp.einsum("nkd,md->nkm", sets, w) + b), mask)
    return _masked_mean(sigma_in(jnp.einsum("nkd,jmd->nkjm", sets, w) + b), mask)


def set_features(sets, mask=None, *, c, w, b, activation="relu", inner_activation="relu"):
    """The S3 (frozen) set features ``h_j(X) = sigma(<mu_X, psi_j>)``, shape ``(N, n)``.

    ``psi_j(x) = m^(-1/2) sum_k c_jk sigma_in(<w_k, x> + b_k)`` with ``c (n, m)``, ``w (m, d)``, ``b (m,)``.
    """
    sets, mask = check_sets(sets, mask)
    c = jnp.asarray(c)
    pooled = pooled_features(sets, mask, jnp.asarray(w), jnp.asarray(b), inner_activation)
    return get_activation(activation)(pooled @ c.T / np.sqrt(c.shape[1]))


def symmetric_network(
    sets,
    y=None,
    *,
    width: int,
    inner_width: int,
    klass: str = "S1",
    activation: str | Callable = "relu",
    inner_activation: str | Callable = "relu",
    mask=None,
    scaling: str = "mean_field",
    bias: bool = True,
    noise: float = 1.0,
    masses=None,
    a_scale: float = 1.0,
    c_scale: float = 1.0,
    w_scale: float | None = None,
    b_scale: float = 1.0,
    frozen_key=None,
    frozen_params: dict | None = None,
):
    """Network on sets ``f(X) = n^(1-p) sum_j m_j a_j sigma(<mu_X, psi_j>)`` as a NumPyro model.

    ``psi_j(x) = m^(-1/2) sum_k c_jk sigma_in(<w_jk, x> + b_jk)`` (module docstring), pooled by the
    masked mean over each set.  The trained coordinates of ``klass`` (:data:`TRAINED_SITES`) are
    latent sites in ``numpyro.plate("particle", width)`` with the particle axis leading and prior
    ``mu0``: ``a ~ N(0, a_scale^2)``, ``c ~ N(0, c_scale^2 I_m)``, ``w ~ N(0, w_scale^2 I_{m x d})``
    (default ``w_scale = 1/sqrt(d)``), ``b ~ N(0, b_scale^2 I_m)``; the other layers are constants
    drawn once from the same law (:func:`symmetric_frozen_params` with ``frozen_key``, default
    ``PRNGKey(0)``) or given as ``frozen_params``.  ``f`` is a deterministic site (plate ``data``)
    and ``y ~ Normal(f, noise)`` is observed, so mfsample's energy is
    ``E = (1/(2 N noise^2)) sum_i (f(X_i) - y_i)^2 + const`` and the core kernels
    (:class:`~mfsample.WassersteinFlow`, :class:`~mfsample.MeanFieldLangevin`,
    :class:`~mfsample.WassersteinFisherRao`) train it in the mean-field scaling.

    Parameters
    ----------
    sets : ``(N, K, d)`` padded batch of sets; ``mask`` ``(N, K)`` marks the elements (``None``: all).
    y : ``(N,)`` labels (``None``: prior predictive).
    width, inner_width : ``n`` units (particles) and ``m`` inner units per test function.
    klass : ``"S1"``, ``"S2"`` or ``"S3"``.
    activation, inner_activation : ``sigma`` and ``sigma_in`` (names as :func:`shallow_network`).
    scaling : ``"mean_field"`` (``p = 1``) or ``"ntk"`` (``p = 1/2``) for the outer average.
    bias : inner biases ``b``.
    masses : optional particle weights (``None``: ``1/n``), as in :func:`shallow_network`.

    Example
    -------
    >>> import jax, numpyro
    >>> sets = jax.random.uniform(jax.random.PRNGKey(0), (8, 5, 3), minval=-1, maxval=1)
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(symmetric_network, 0)).get_trace(
    ...     sets, width=4, inner_width=6, klass="S1")
    >>> tr["w"]["value"].shape, tr["c"]["value"].shape, tr["f"]["value"].shape
    ((4, 6, 3), (4, 6), (8,))
    """
    klass = _check_klass(klass)
    width = positive_int("width", width)
    inner_width = positive_int("inner_width", inner_width)
    if noise is None or (np.ndim(noise) == 0 and _is_concrete(noise) and not float(noise) > 0):
        raise ValueError(f"noise must be positive, got {noise!r}")
    p = scaling_exponent(scaling)
    sigma = get_activation(activation)
    get_activation(inner_activation)
    sets, mask = check_sets(sets, mask)
    num_sets, _, dim = sets.shape
    if num_sets == 0:
        raise ValueError(f"sets has no rows (shape {sets.shape}): the data plate needs at least one set")
    if y is not None:
        y = jnp.asarray(y)
        if y.shape != (num_sets,):
            raise ValueError(f"y must have shape (num_sets,) = ({num_sets},), got {y.shape}")
        if _is_concrete(y) and not np.all(np.isfinite(np.asarray(y))):
            raise ValueError("y contains non-finite values")
    if masses is not None:
        masses = check_masses(masses, width)
    w_scale = 1.0 / np.sqrt(dim) if w_scale is None else w_scale
    frozen = frozen_layers(
        klass,
        width=width,
        inner_width=inner_width,
        dim=dim,
        frozen_params=frozen_params,
        frozen_key=frozen_key,
        c_scale=c_scale,
        w_scale=w_scale,
        b_scale=b_scale,
        bias=bias,
    )

    infer = {SCALING_INFER_KEY: p}
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, a_scale), infer=infer)
        if klass == "S3":
            c = frozen["c"]
        else:
            c = numpyro.sample(
                "c",
                dist.Normal(0.0, c_scale).expand([inner_width]).to_event(1),
                infer={**infer, "event_dims": ["inner_unit"]},
            )
        if klass == "S1":
            w = numpyro.sample(
                "w",
                dist.Normal(0.0, w_scale).expand([inner_width, dim]).to_event(2),
                infer={**infer, "event_dims": ["inner_unit", "input_dim"]},
            )
            if bias:
                b = numpyro.sample(
                    "b",
                    dist.Normal(0.0, b_scale).expand([inner_width]).to_event(1),
                    infer={**infer, "event_dims": ["inner_unit"]},
                )
            else:
                b = jnp.zeros((width, inner_width))
        else:
            w, b = frozen["w"], frozen["b"]

    pooled = pooled_features(sets, mask, w, b, inner_activation)  # (N, m) or (N, n, m)
    if klass == "S1":
        inner = jnp.einsum("njm,jm->nj", pooled, c)
    else:
        inner = pooled @ c.T
    features = sigma(inner / np.sqrt(inner_width))  # h_j(X) = sigma(<mu_X, psi_j>)
    coef = a * width ** (-p) if masses is None else a * masses * width ** (1.0 - p)
    with numpyro.plate("data", num_sets):
        f = numpyro.deterministic("f", features @ coef)
        numpyro.sample("y", dist.Normal(f, noise), obs=y)
    return f


def symmetric_predict(params: dict, sets, mask=None, **model_kwargs):
    """``f(X)`` of :func:`symmetric_network` at given particles ``params`` (its trained sites).

    ``model_kwargs`` are the model's keywords (``width``, ``inner_width``, ``klass``, activations,
    ``frozen_key`` ...), which must match those of training for the frozen layers to be the same.

    >>> import jax, jax.numpy as jnp
    >>> sets = jnp.ones((2, 3, 4))
    >>> symmetric_predict({"a": jnp.ones(5)}, sets, width=5, inner_width=3, klass="S3").shape
    (2,)
    """
    klass = _check_klass(model_kwargs.get("klass", "S1"))
    need = [k for k in TRAINED_SITES[klass] if not (k == "b" and not model_kwargs.get("bias", True))]
    missing = [k for k in need if k not in params]
    if missing:
        raise ValueError(f"params of a {klass} network must hold {need}; missing {missing}")
    model = numpyro.handlers.substitute(numpyro.handlers.seed(symmetric_network, 0), data=params)
    return numpyro.handlers.trace(model).get_trace(sets, mask=mask, **model_kwargs)["f"]["value"]
