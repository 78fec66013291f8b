"""Where the compiled driver asks XLA to keep the carried particles coordinate-major.

A state holds a particle site as an ``(n, d)`` array, the particle axis first (row-major: one
particle's ``d`` coordinates side by side).  The step's two matmuls with the data ``x`` (``N x d``)
are ``x w^T`` (the pre-activations, ``N x n``) and ``x^T G`` (the gradient, a ``d x n`` result),
and on a CPU both run fastest on ``w`` stored coordinate-major, ``d`` rows of ``n`` particles:
the layout of a hand-written scan that carries ``W = w^T``.  Since the update
``w <- w - dt drift`` is one generic expression for every site, the driver cannot carry the
transpose itself; it can ask XLA to store the carried ``(n, d)`` arrays (the positions and their
drift) column-major (:func:`jax.experimental.layout.with_layout_constraint`: a layout, the values
unchanged), so that the matmuls read them without a transposing copy.

Measured on 2 CPU cores (``python -m benchmarks`` alternatives, one process): the Wasserstein
flow at ``(d, n, N) = (10, 256, 1024)`` 1.12 -> 0.97 of the hand scan a step, ``(20, 1024, 4096)``
1.04 -> 0.98, ``(50, 4096, 8192)`` 0.70 -> 0.68; ``deep_network`` (Langevin, ``(10, 256, 1024)``)
1.94 -> 1.13 ms a step; but 7% slower where the model sums over blocks of particles
(``(10, 65536, 1024)``; the cause not established).  Hence :func:`prefers_column_major`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.layout import Layout, with_layout_constraint

__all__ = ["prefers_column_major", "column_major_particles"]

_COLUMN_MAJOR = Layout(major_to_minor=(1, 0))


def prefers_column_major(energy, *, num_chains: int, batched: bool) -> bool:
    """True for a run on a CPU of one chain, not batched over configurations, whose model does
    not block over particles (``energy.particle_block_size is None``)."""
    return (
        jax.default_backend() == "cpu"
        and num_chains == 1
        and not batched
        and getattr(energy, "particle_block_size", None) is None
    )


def _column_major(x):
    return with_layout_constraint(x, _COLUMN_MAJOR) if jnp.ndim(x) == 2 else x


def column_major_particles(state, shared=()):
    """``state`` with the 2-D leaves of its positions ``z`` and its ``drift`` laid out column-major,
    but for the top-level sites named in ``shared`` (no particle axis); a state without both
    fields (say a user's kernel's) as it is."""
    if not all(hasattr(state, f) for f in ("_replace", "z", "drift")):
        return state
    return state._replace(z=_particle_leaves(state.z, shared), drift=_particle_leaves(state.drift, shared))


def _particle_leaves(tree, shared):
    if isinstance(tree, dict):
        return {k: v if k in shared else jax.tree.map(_column_major, v) for k, v in tree.items()}
    return jax.tree.map(_column_major, tree)
