"""Hyper-parameters as data: the numeric settings of a dynamic enter its step as arrays.

A dynamic has two kinds of settings.  *Structural* ones (``mode``, ``birth``, ``adjusted``, the
transport, the scaling, the model) decide which operations a step performs; *numeric* ones (the
step size ``dt``, the temperature ``tau``, the reaction rate ``alpha``, the friction ``gamma``)
are numbers that the step multiplies by.  The numeric ones are handed to the functional core as
arrays, so that

* two kernels that differ only in their numbers share one compiled programme (the drivers cache
  compiled functions by :attr:`structure <mfsample.kernels.contract.SweepableDynamics.structure>`
  and pass the numbers as arguments);
* a batch of settings is one ``vmap`` (:func:`mfsample.sweep`), and a step can be differentiated
  in them.

One numeric fact is structural: whether a value is *exactly zero*.  At ``tau = 0`` the noise and
the prior's gradient drop out of the Langevin step, at ``alpha = 0`` the reaction is the
identity; a kernel built with a concrete zero leaves those operations out.  The drivers keep
that specialisation (:func:`zero_pattern` is part of their cache key, :func:`specialise` puts the
zeros back as constants), so a run gives the same numbers whichever driver runs it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_zero", "as_arrays", "zero_pattern", "specialise", "common_zeros"]


def is_zero(value) -> bool:
    """True for a concrete value equal to zero (never for a traced one, whose value is unknown)."""
    if isinstance(value, jax.core.Tracer):
        return False
    return bool(np.all(np.asarray(value) == 0))


def as_arrays(values: dict) -> dict:
    """``{name: value}`` with every leaf a JAX array of the default float dtype (tuples, such as
    a game's per-player pairs, stay tuples of scalars)."""
    dtype = jnp.result_type(float)
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), values)


def zero_pattern(values: dict) -> tuple:
    """A hashable description of which leaves of ``values`` are exactly zero."""
    leaves, treedef = jax.tree.flatten(values)
    return (str(treedef), tuple(is_zero(v) for v in leaves))


def common_zeros(points) -> tuple:
    """The :func:`zero_pattern` of leaves that are zero in *every* one of ``points`` (dicts of the
    same structure): what a batch of settings may leave out of its shared step."""
    patterns = [zero_pattern(p) for p in points]
    treedef = patterns[0][0]
    if any(p[0] != treedef for p in patterns):
        raise ValueError("the settings of a batch must have the same structure")
    return (treedef, tuple(all(z) for z in zip(*(p[1] for p in patterns))))


def specialise(values: dict, pattern: tuple) -> Any:
    """``values`` with the leaves that ``pattern`` marks as zero replaced by the constant ``0.0``."""
    leaves, treedef = jax.tree.flatten(values)
    if str(treedef) != pattern[0]:
        raise ValueError(f"settings {treedef} do not match the pattern {pattern[0]}")
    leaves = [0.0 if zero else v for v, zero in zip(leaves, pattern[1])]
    return jax.tree.unflatten(treedef, leaves)
