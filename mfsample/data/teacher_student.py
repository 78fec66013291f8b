"""Synthetic data sets: the teacher-student problem.

The teacher is a shallow network ``y = (1/m) sum_k a_k sigma(<w_k, x> + b_k)`` (mean-field
scaling, ``m = teacher_width``), optionally with Gaussian label noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..activations import get_activation
from ..validation import positive_int, real

__all__ = ["TeacherStudent", "teacher_student", "sample_inputs"]

INPUTS = ("gaussian", "sphere")


def _check_inputs(inputs: str) -> str:
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    return inputs


def sample_inputs(rng_key, num_data: int, dim: int, inputs: str = "gaussian"):
    """Inputs ``x ~ N(0, I_d)`` (``"gaussian"``) or uniform on the unit sphere (``"sphere"``)."""
    _check_inputs(inputs)
    x = jax.random.normal(rng_key, (num_data, dim))
    if inputs == "gaussian":
        return x
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class TeacherStudent(NamedTuple):
    """A teacher-student data set: ``x (N, d)``, ``y (N,)``, the teacher's particles and a sampler.

    ``teacher`` holds ``a (m,)``, ``w (m, d)``, ``b (m,)``; ``target(x)`` is the noiseless
    teacher function and ``sample(key, num_data)`` draws fresh ``(x, y)`` from the same law.
    """

    x: jax.Array
    y: jax.Array
    teacher: dict
    target: Callable
    sample: Callable


def teacher_student(
    rng_key,
    *,
    dim: int,
    teacher_width: int,
    num_data: int,
    activation="relu",
    inputs: str = "gaussian",
    noise: float = 0.0,
) -> TeacherStudent:
    """Draw a random shallow teacher and ``num_data`` labelled inputs.

    Teacher units: ``w_k`` uniform on the unit sphere, ``a_k = +-1`` with random signs (at least
    one positive), ``b_k = 0``, so ``f*(x) = (1/m) sum_k a_k sigma(<w_k, x>)`` is realisable by
    the student network.  Labels: ``y = f*(x) + noise * eps``.

    >>> import jax
    >>> data = teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=3, num_data=100)
    >>> data.x.shape, data.y.shape, data.teacher["w"].shape
    ((100, 5), (100,), (3, 5))
    >>> x_test, y_test = data.sample(jax.random.PRNGKey(1), 50)
    """
    dim = positive_int("dim", dim)
    teacher_width = positive_int("teacher_width", teacher_width)
    num_data = positive_int("num_data", num_data)
    noise = real("noise", noise, nonnegative=True)
    _check_inputs(inputs)
    sigma = get_activation(activation)
    k_w, k_a, k_data = jax.random.split(rng_key, 3)
    w = jax.random.normal(k_w, (teacher_width, dim))
    w = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    a = jnp.where(jax.random.bernoulli(k_a, 0.5, (teacher_width,)), 1.0, -1.0).at[0].set(1.0)
    b = jnp.zeros(teacher_width)
    teacher = {"a": a, "w": w, "b": b}

    def target(x):
        return sigma(x @ w.T + b) @ a / teacher_width

    def sample(key, n):
        k_x, k_eps = jax.random.split(key)
        x = sample_inputs(k_x, n, dim, inputs)
        y = target(x) + noise * jax.random.normal(k_eps, (n,))
        return x, y

    x, y = sample(k_data, num_data)
    return TeacherStudent(x=x, y=y, teacher=teacher, target=target, sample=sample)
