"""Synthetic symmetric (set) functions: the targets of Zweig & Bruna (2020)'s experiments.

Sets come from :mod:`mfsample.data.sets` (padded ``(N, K, d)`` with a mask ``(N, K)``).  Targets,
with the element feature ``r_i = 1/|x_i|`` (``feature="inverse_norm"``, the default, as the
experiments' specification states) or ``r_i = |x_i|`` (``feature="norm"``, as in the authors' code,
whose values are bounded on the box):

* ``"neuron"``: a teacher of the network's own architecture with one outer unit,
  ``f*(X) = relu(<mu_X, psi*>)``, ``psi*(x) = sum_k c_k relu(<w_k, x>)`` with ``w_k`` uniform on the
  sphere and ``c_k ~ N(0, 1)`` (``teacher_width`` inner units), then centred and scaled to zero mean
  and unit variance under the narrow element law (so the neuron is active on about half the sets and
  neither degenerate nor linear on the domain; the shift is a constant inner unit);
* ``"smooth_neuron"``: the same with smooth activations, ``softplus(<mu_X, psi*>)`` and
  ``psi*`` built from ``tanh`` units;
* ``"mean"``, ``"max"``, ``"second_largest"``: ``(1/k) sum_i r_i``, ``max_i r_i``, and the
  second largest ``r_i`` (the only one for a set of one element);
* ``"softmax"``: ``lambda log((1/k) sum_i exp(r_i / lambda))`` (``lambda = 0.1``), a smooth maximum that,
  unlike ``max``, is a weakly continuous function of ``mu_X``;
* ``"potential"``: a pairwise interaction energy, minus the mean inverse distance
  ``-(1/(k(k-1))) sum_{i != j} 1/|x_i - x_j|`` (0 for one element).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..validation import positive_int, real
from .sets import check_set_size, sample_sets

__all__ = [
    "SYMMETRIC_TARGETS",
    "FEATURES",
    "SymmetricData",
    "symmetric_targets",
    "set_function",
]

SYMMETRIC_TARGETS = ("neuron", "smooth_neuron", "mean", "max", "second_largest", "softmax", "potential")
FEATURES = ("inverse_norm", "norm")


class SymmetricData(NamedTuple):
    """A symmetric-function data set: padded ``sets (N, K, d)``, ``mask (N, K)``, labels ``y (N,)``.

    ``target(sets, mask=None)`` is the noiseless set function, ``teacher`` the teacher's parameters
    (``None`` for the closed-form targets) and ``sample(key, num_sets, set_size, max_set_size=None)``
    draws fresh ``(sets, mask, y)`` from the same law, with ``set_size`` an integer or an inclusive
    range ``(low, high)`` of sizes drawn uniformly (``max_set_size``: padded length, default the
    largest size).
    """

    sets: jax.Array
    mask: jax.Array
    y: jax.Array
    target: Callable
    teacher: dict | None
    sample: Callable


def _masked(sets, mask):
    sets = jnp.asarray(sets)
    mask = jnp.ones(sets.shape[:2], bool) if mask is None else jnp.asarray(mask, bool)
    return jnp.where(mask[..., None], sets, 0.0), mask


def _mean(values, mask):
    """``<mu_X, g> = (1/k) sum_{i: mask_i} g(x_i)`` along axis 1."""
    return jnp.sum(jnp.where(mask, values, 0.0), axis=1) / jnp.sum(mask, axis=1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _teacher_arrays(rng_key, dim, teacher_width, smooth):
    k_w, k_c, k_ref = jax.random.split(rng_key, 3)
    w = jax.random.normal(k_w, (teacher_width, dim))
    w = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    c = jax.random.normal(k_c, (teacher_width,))
    ref = jax.random.uniform(k_ref, (8192, dim), minval=-1.0, maxval=1.0)
    raw = (jnp.tanh(ref @ w.T) if smooth else jnp.maximum(ref @ w.T, 0.0)) @ c
    return w, c, jnp.mean(raw), jnp.std(raw)


def _teacher(rng_key, dim, teacher_width, smooth):
    """Draw the neuron teacher and its normalisation (zero mean, unit variance of psi* under U[-1,1]^d)."""
    w, c, shift, scale = _teacher_arrays(rng_key, dim, teacher_width, bool(smooth))
    return {
        "w": w,
        "c": c,
        "shift": shift,
        "scale": scale,
        "activation": "softplus" if smooth else "relu",
        "inner_activation": "tanh" if smooth else "relu",
    }


@functools.partial(jax.jit, static_argnums=(0,))
def _neuron(smooth, w, c, shift, scale, sets, mask):
    x, m = _masked(sets, mask)
    u = x @ w.T
    psi = ((jnp.tanh(u) if smooth else jnp.maximum(u, 0.0)) @ c - shift) / scale
    pooled = _mean(psi, m)
    return jax.nn.softplus(pooled) if smooth else jnp.maximum(pooled, 0.0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _closed_form(name, lam, feature, sets, mask):
    x, m = _masked(sets, mask)
    r = jnp.linalg.norm(x, axis=-1)
    if feature == "inverse_norm":
        r = 1.0 / r
    k = jnp.sum(m, axis=1)
    if name == "mean":
        return _mean(r, m)
    if name == "max":
        return jnp.max(jnp.where(m, r, -jnp.inf), axis=1)
    if name == "second_largest":
        top = -jnp.sort(-jnp.where(m, r, -jnp.inf), axis=1)
        return jnp.where(k >= 2, top[:, min(1, top.shape[1] - 1)], top[:, 0])
    if name == "softmax":
        return lam * (jax.nn.logsumexp(jnp.where(m, r / lam, -jnp.inf), axis=1) - jnp.log(k))
    # potential: -(1/(k(k-1))) sum_{i != j} 1/|x_i - x_j|
    diff = x[:, :, None, :] - x[:, None, :, :]
    pair = m[:, :, None] & m[:, None, :] & ~jnp.eye(x.shape[1], dtype=bool)
    dist = jnp.sqrt(jnp.sum(diff**2, axis=-1) + jnp.where(pair, 0.0, 1.0))
    total = jnp.sum(jnp.where(pair, 1.0 / dist, 0.0), axis=(1, 2))
    return jnp.where(k >= 2, -total / jnp.maximum(k * (k - 1), 1), 0.0)


def set_function(
    name: str,
    rng_key=None,
    *,
    dim: int,
    teacher_width: int = 10,
    softmax_temperature: float = 0.1,
    feature: str = "inverse_norm",
):
    """The set function ``name`` (see the module docstring) as ``(target(sets, mask=None) -> (N,), teacher)``.

    ``rng_key`` draws the teacher of ``"neuron"`` / ``"smooth_neuron"`` (ignored otherwise); the
    teacher dict holds ``w (m, d)``, ``c (m,)``, ``shift``, ``scale`` and the two activations.
    """
    if name not in SYMMETRIC_TARGETS:
        raise ValueError(f"unknown target {name!r}; choose among {SYMMETRIC_TARGETS}")
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    if name in ("neuron", "smooth_neuron"):
        if rng_key is None:
            raise ValueError(f"target {name!r} needs an rng_key to draw its teacher; pass rng_key=")
        smooth = name == "smooth_neuron"
        teacher = _teacher(rng_key, positive_int("dim", dim), positive_int("teacher_width", teacher_width), smooth)
        arrays = tuple(teacher[k] for k in ("w", "c", "shift", "scale"))

        def target(sets, mask=None):
            return _neuron(smooth, *arrays, jnp.asarray(sets), mask)

        return target, teacher
    lam = real("softmax_temperature", softmax_temperature, positive=True)

    def target(sets, mask=None):
        return _closed_form(name, lam, feature, jnp.asarray(sets), mask)

    return target, None


def _labelled(target, noise, dim, sampling):
    """``sample(key, n, size, max_size=None) -> (sets, mask, y)`` with ``y = f*(X) + noise * eps``."""

    def sample(key, n, size, max_size=None):
        k_x, k_eps = jax.random.split(key)
        sets, mask = sample_sets(k_x, n, size, dim, max_set_size=max_size, sampling=sampling)
        y = target(sets, mask)
        if noise > 0:
            y = y + noise * jax.random.normal(k_eps, y.shape)
        return sets, mask, y

    return sample


def symmetric_targets(
    rng_key,
    target: str = "neuron",
    *,
    dim: int,
    num_sets: int,
    set_size,
    max_set_size: int | None = None,
    sampling: str = "narrow",
    noise: float = 0.0,
    teacher_width: int = 10,
    softmax_temperature: float = 0.1,
    feature: str = "inverse_norm",
) -> SymmetricData:
    """Draw a symmetric target and ``num_sets`` labelled training sets of size ``set_size``.

    ``set_size`` is an integer or an inclusive range ``(low, high)``; test sets of other sizes come
    from ``data.sample(key, num_sets, set_size)`` (same teacher, same element law).  Labels are
    ``y = f*(X) + noise * eps``.  The key fixes the teacher (sub-key 0), the training sets (1) and
    the label noise (2).

    >>> import jax
    >>> data = symmetric_targets(jax.random.PRNGKey(0), "neuron", dim=3, num_sets=64, set_size=4)
    >>> data.sets.shape, data.mask.shape, data.y.shape
    ((64, 4, 3), (64, 4), (64,))
    >>> sets, mask, y = data.sample(jax.random.PRNGKey(1), 32, (2, 10))
    >>> sets.shape
    (32, 10, 3)
    """
    dim, num_sets = positive_int("dim", dim), positive_int("num_sets", num_sets)
    teacher_width = positive_int("teacher_width", teacher_width)
    noise = real("noise", noise, nonnegative=True)
    check_set_size(set_size)
    k_teacher, k_sets, k_noise = jax.random.split(rng_key, 3)
    fn, teacher = set_function(
        target,
        k_teacher,
        dim=dim,
        teacher_width=teacher_width,
        softmax_temperature=softmax_temperature,
        feature=feature,
    )
    sample = _labelled(fn, noise, dim, sampling)
    sets, mask = sample_sets(k_sets, num_sets, set_size, dim, max_set_size=max_set_size, sampling=sampling)
    y = fn(sets, mask)
    if noise > 0:
        y = y + noise * jax.random.normal(k_noise, y.shape)
    return SymmetricData(sets=sets, mask=mask, y=y, target=fn, teacher=teacher, sample=sample)
