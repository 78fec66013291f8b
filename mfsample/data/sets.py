"""Finite sets of points as padded arrays, and the element laws of Zweig & Bruna (2020)'s experiments.

A set ``X = (x_1..x_k)`` has elements drawn iid uniformly from a box: ``[-1, 1]^d``
(``sampling="narrow"``), or, per set, a random sub-box ``prod_l [lo_l, hi_l]`` with
``lo_l < hi_l`` uniform in ``[-1, 1]`` (``sampling="wide"``, so that ``mu_X`` does not concentrate
on one law as ``k`` grows).  Sets of different sizes are stacked as a padded array ``(N, K, d)``
with a mask ``(N, K)`` that is true on the elements; padded entries are zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..validation import optional_positive_int, positive_int

__all__ = ["SAMPLINGS", "check_set_size", "sample_sets", "pad_sets"]

SAMPLINGS = ("narrow", "wide")


def check_set_size(set_size) -> tuple[int, int]:
    """``set_size`` (an integer ``k`` or an inclusive range ``(low, high)``) as ``(low, high)``."""
    if np.ndim(set_size) == 0:
        k = positive_int("set_size", set_size)
        return k, k
    low, high = (positive_int("each end of the set_size range", v) for v in set_size)
    if low > high:
        raise ValueError(f"the set_size range (low, high) must have low <= high, got {tuple(set_size)!r}")
    return low, high


def sample_sets(
    rng_key, num_sets: int, set_size, dim: int, *, max_set_size: int | None = None, sampling: str = "narrow"
):
    """Padded sets of iid elements uniform in ``[-1, 1]^d`` (``"narrow"``) or in a random sub-box per set
    (``"wide"``); returns ``(sets (N, K, d), mask (N, K))``, padding zero.

    Set sizes are uniform on ``set_size``'s range; ``K = max_set_size`` (default: the largest size).
    """
    low, high = check_set_size(set_size)
    K = optional_positive_int("max_set_size", max_set_size) or high
    if K < high:
        raise ValueError(
            f"max_set_size={max_set_size} is below the largest set size {high}; pass max_set_size >= {high} or None"
        )
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return _sample_sets(rng_key, positive_int("num_sets", num_sets), low, high, K, positive_int("dim", dim), sampling)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _sample_sets(rng_key, num_sets, low, high, K, dim, sampling):
    k_size, k_x, k_box = jax.random.split(rng_key, 3)
    sizes = jax.random.randint(k_size, (num_sets,), low, high + 1)
    mask = jnp.arange(K)[None, :] < sizes[:, None]
    u = jax.random.uniform(k_x, (num_sets, K, dim))
    if sampling == "narrow":
        x = 2.0 * u - 1.0
    else:
        ends = jax.random.uniform(k_box, (2, num_sets, 1, dim), minval=-1.0, maxval=1.0)
        lo, hi = jnp.min(ends, axis=0), jnp.max(ends, axis=0)
        x = lo + (hi - lo) * u
    return jnp.where(mask[..., None], x, 0.0), mask


def pad_sets(sets, max_set_size: int | None = None):
    """Stack a list of ``(k_i, d)`` arrays into ``(sets (N, K, d), mask (N, K))`` with zero padding."""
    sets = [np.asarray(s, dtype=np.float32) for s in sets]
    if not sets or any(s.ndim != 2 or s.shape[0] < 1 for s in sets):
        raise ValueError("pad_sets needs a non-empty list of (k_i, d) arrays with k_i >= 1")
    largest = max(s.shape[0] for s in sets)
    K = optional_positive_int("max_set_size", max_set_size) or largest
    if largest > K:
        raise ValueError(f"a set of size {largest} exceeds max_set_size={K}; pass max_set_size >= {largest}")
    out = np.zeros((len(sets), K, sets[0].shape[1]), np.float32)
    mask = np.zeros((len(sets), K), bool)
    for i, s in enumerate(sets):
        out[i, : s.shape[0]], mask[i, : s.shape[0]] = s, True
    return jnp.asarray(out), jnp.asarray(mask)
