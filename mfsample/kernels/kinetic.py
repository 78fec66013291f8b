"""Kinetic (underdamped) mean-field Langevin dynamics, integrated by the BAOAB splitting.

    d theta_j = p_j dt,
    d p_j     = -drift_j dt - gamma p_j dt + sqrt(2 gamma tau) dW_j,
    drift_j   = grad_theta V(theta_j; mu_n) - tau grad log mu0(theta_j)

(unit mass).  For uniform weights ``drift = tau grad U`` with
``U = (n^(2p-1)/tau) E - sum_j log mu0(theta_j)``, so the stationary law is the Gibbs measure of
:class:`~mfsample.MeanFieldLangevin` times Maxwellian momenta ``N(0, tau I)``; as
``gamma -> inf`` (time rescaled by ``gamma``) it reduces to the overdamped dynamics, and at
``tau = 0`` it is the damped heavy-ball flow.  One BAOAB step (Leimkuhler & Matthews 2013)::

    B: p <- p - (dt/2) drift(theta)     A: theta <- theta + (dt/2) p
    O: p <- e^(-gamma dt) p + sqrt(tau (1 - e^(-2 gamma dt))) xi
    A: theta <- theta + (dt/2) p        B: p <- p - (dt/2) drift(theta)

costs one drift evaluation (the last B's drift is stored for the next step's first B), and its
configurational bias is O(dt^2) (second order), against O(dt) for Euler-Maruyama.

Theory: ``docs/theory/kinetic.md``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import validation
from ..energy import ParticleEnergy
from . import threefry
from .base import ParticleKernel, guarded_update, init_particle_state
from .parameters import is_zero
from .state import ParticleState, state_class
from .steps import evaluate_drift, langevin_noise, noise_scales

__all__ = ["KineticState", "build_kernel", "check_options", "KineticLangevin"]


@state_class
class KineticState(ParticleState):
    """:class:`~mfsample.kernels.state.ParticleState` plus **momentum**, the particles' momenta ``p_j``."""

    momentum: Any


def check_options(step_size, temperature, friction):
    """Validate the settings of both faces: ``(dt, tau, gamma)``, ``gamma`` positive and finite."""
    return validation.step_size(step_size), validation.temperature(temperature), validation.friction(friction)


def _axpy(a, x, y):
    return jax.tree.map(lambda xi, yi: a * xi + yi, x, y)


def build_kernel(energy: ParticleEnergy, step_size: float, temperature: float, friction: float, shared_step_scale=1.0):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``; momenta in ``state.momentum``.

    The model's shared sites have drift ``eta (grad_s E - (tau / c) grad log p(s))`` and Maxwellian
    momenta ``N(0, tau eta / c)`` (:func:`~mfsample.kernels.steps.shared_drift`): the same stationary
    law for the positions as the overdamped dynamics.
    """
    dt, tau, gamma = check_options(step_size, temperature, friction)
    eta = validation.real("shared_step_scale", shared_step_scale, positive=True)
    scales = noise_scales(energy, eta)
    half = 0.5 * dt
    c1 = jnp.exp(-gamma * dt)
    # O-step noise variance tau (1 - c1^2), written as 2 tau' dt' for langevin_noise
    o_var = tau * (1.0 - c1**2)
    noisy = not is_zero(tau)  # a concrete tau = 0 leaves the noise out

    def init_fn(z, masses, rng_key):
        state = init_particle_state(energy, z, masses, rng_key, tau, shared_step_scale=eta)
        zero = jax.tree.map(jnp.zeros_like, z)
        if noisy:  # Maxwellian momenta N(0, tau)
            p, _ = langevin_noise(jax.random.fold_in(rng_key, 2), zero, 0.5 * tau, 1.0, energy.frozen, scales)
        else:
            p = zero
        return KineticState(**state._asdict(), momentum=p)

    def step_fn(state):
        rng_key, key_noise = threefry.split(state.rng_key)
        p = _axpy(-half, state.drift, state.momentum)  # B
        z = _axpy(half, p, state.z)  # A
        p = jax.tree.map(lambda v: c1 * v, p)  # O
        if noisy:
            p, _ = langevin_noise(key_noise, p, 0.5 * o_var, 1.0, energy.frozen, scales)
        z = _axpy(half, p, z)  # A
        d = evaluate_drift(energy, z, state.masses, tau, shared_step_scale=eta)
        p = _axpy(-half, d.drift, p)  # B
        return guarded_update(state, z, d, dt, rng_key=rng_key, momentum=p)

    return init_fn, step_fn


class KineticLangevin(ParticleKernel):
    r"""Underdamped mean-field Langevin dynamics (BAOAB), as a NumPyro kernel.

    Same stationary law as :class:`~mfsample.MeanFieldLangevin` (uniform weights) with a
    second-order accurate integrator; ``temperature=0`` gives damped heavy-ball particle dynamics.
    Momenta are in ``state.momentum``.

    :param float step_size: ``dt`` (> 0).
    :param float temperature: ``tau`` (>= 0).
    :param float friction: ``gamma`` (> 0).
    """

    hyperparameter_names = ("step_size", "temperature", "friction", "shared_step_scale")
    parameter_names = hyperparameter_names

    def __init__(self, model=None, *, step_size, temperature, friction=1.0, **kwargs):
        super().__init__(model, step_size=step_size, **kwargs)
        self.temperature, self.friction = temperature, friction
        self._check_parameters()
        if self.transport is not None or self.batch_size is not None:
            raise ValueError("KineticLangevin has its own integrator: no transport or batch_size")

    def _check_parameters(self):
        self.step_size, self.temperature, self.friction = check_options(self.step_size, self.temperature, self.friction)

    def build(self, energy, parameters=None):
        p = self.step_parameters(parameters)
        return build_kernel(energy, p["step_size"], p["temperature"], p["friction"], p["shared_step_scale"])
