"""Synthetic data sets: the teacher-student problem.

The teacher is a shallow network ``y = (1/m) sum_k a_k sigma(<w_k, x> + b_k)`` (mean-field
scaling, ``m = teacher_width``), optionally with Gaussian label noise.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .activations import get_activation
from .data_symmetric import (
    SYMMETRIC_TARGETS,
    SymmetricData,
    pad_sets,
    sample_sets,
    set_function,
    symmetric_targets,
)

__all__ = [
    "TeacherStudent",
    "teacher_student",
    "sample_inputs",
    "SYMMETRIC_TARGETS",
    "SymmetricData",
    "pad_sets",
    "sample_sets",
    "set_function",
    "symmetric_targets",
]


def sample_inputs(rng_key, num_data: int, dim: int, inputs: str = "gaussian"):
    """Inputs ``x ~ N(0, I_d)`` (``"gaussian"``) or uniform on the unit sphere (``"sphere"``)."""
    x = jax.random.normal(rng_key, (num_data, dim))
    if inputs == "gaussian":
        return x
    if inputs == "sphere":
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    raise ValueError(f"inputs must be 'gaussian' or 'sphere', got {inputs!r}")


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
    for name, value in (("dim", dim), ("teacher_width", teacher_width), ("num_data", num_data)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative, got {noise!r}")
    if inputs not in ("gaussian", "sphere"):
        raise ValueError(f"inputs must be 'gaussian' or 'sphere', got {inputs!r}")
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
