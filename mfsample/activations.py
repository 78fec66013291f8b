"""Unit activations ``sigma`` of the shallow network ``phi(x; theta) = a * sigma(<w, x> + b)``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "get_activation"]


def _relu(u):
    return jnp.maximum(u, 0.0)


ACTIVATIONS: dict[str, Callable] = {
    "relu": _relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "identity": lambda u: u,
}


def get_activation(activation: str | Callable) -> Callable:
    """Return the elementwise function named by ``activation`` (or ``activation`` itself if callable).

    >>> get_activation("relu")(jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
    """
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(f"activation={activation!r} is not known; use one of {sorted(ACTIVATIONS)} or a callable")
