"""Functional faces of the dynamics, for hand-written loops (BlackJAX style).

Each ``mf.dynamics.<name>(energy, **params)`` returns a :class:`SamplingAlgorithm` with pure,
un-jitted ``init(position_or_key) -> state`` and ``step(rng_key, state) -> (state, info)``.  They
wrap exactly the ``build_kernel`` cores that the ``MCMCKernel`` classes wrap (one
implementation, two faces), so BlackJAX's ``run_inference_algorithm`` or a ten-line
``lax.scan`` runs them::

    import jax, mfsample as mf
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=3, num_data=256)
    energy = mf.energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": 128})
    algo = mf.dynamics.mean_field_langevin(energy, step_size=0.1, temperature=1e-4)

    @jax.jit
    def run(key, num_steps=500):
        def body(state, key):
            state, info = algo.step(key, state)
            return state, info.energy
        state = algo.init(key)
        return jax.lax.scan(body, state, jax.random.split(key, num_steps))

    state, energies = run(jax.random.PRNGKey(1))

Driving ``step`` with ``state.rng_key`` as the key (``algo.step(state.rng_key, state)``)
reproduces the MCMC kernel's draws exactly; independent keys give the same law.  ``state.time``
is ``k * step_size`` whatever the transport (heavy-ball users pass ``step_size=sqrt(eta)`` to read
kinetic time); with ``batch_size``, ``state.energy`` and ``info.energy`` are minibatch energies.

Particle-space optimisers (``transport=`` an optax transformation, applied coordinate-wise to
the velocity field of every particle; the noise and reaction steps are unchanged):

* ``optax.sgd(dt)``: exactly the Euler step of the Wasserstein flow
  ``d_t mu = div(mu grad V)`` (Langevin: plus noise) -- the default.
* ``optax.sgd(eta, momentum=beta)``: heavy-ball momentum, a discretisation of the kinetic
  (underdamped) mean-field dynamics ``theta'' + gamma theta' + grad V = 0`` with time step
  ``h = sqrt(eta)`` and friction ``gamma = (1 - beta) / sqrt(eta)`` (see
  :func:`kinetic_langevin` for the same dynamics with noise and a proper splitting).
* ``optax.adagrad``, ``optax.adam``, ``optax.rmsprop``: per-coordinate preconditioning by
  running gradient statistics.  **No Wasserstein gradient flow**: the per-coordinate
  normalisation is not the gradient of a functional of ``mu`` in any fixed metric, so the
  mean-field PDE, the Gibbs stationary law and the theory's guarantees do not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
from numpyro.util import is_prng_key

from . import validation
from .energy import ParticleEnergy
from .kernels import kinetic as _kinetic
from .kernels import langevin as _langevin
from .kernels import wasserstein as _wasserstein
from .kernels.base import initial_positions
from .validation import masses as check_masses

__all__ = [
    "SamplingAlgorithm",
    "StepInfo",
    "wasserstein_flow",
    "mean_field_langevin",
    "kinetic_langevin",
    "from_core",
]


class SamplingAlgorithm(NamedTuple):
    """``init(position_or_key) -> state`` and ``step(rng_key, state) -> (state, info)``."""

    init: Callable
    step: Callable


class StepInfo(NamedTuple):
    """What one step reports besides the new state."""

    energy: jax.Array
    grad_norm: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    time: jax.Array


def from_core(energy: ParticleEnergy, core, masses=None) -> SamplingAlgorithm:
    """Wrap a ``(init_fn(z, masses, key), step_fn(state))`` core into a :class:`SamplingAlgorithm`.

    ``init`` takes a PRNG key (particles drawn iid from ``mu0``, as the MCMC kernels do: the key
    is split into an initialisation key and the state's key) or unconstrained positions (a dict
    of sites, or one array for a single-site energy).  ``masses`` are validated as the kernels
    validate them (shape ``(n,)``, non-negative, summing to one).
    """
    init_fn, step_fn = core
    if masses is not None:
        masses = check_masses(masses, energy.width)

    def init(position_or_key, rng_key=None):
        if is_prng_key(position_or_key):
            key_init, key_run = jax.random.split(position_or_key)
            z = energy.sample_prior(key_init)
        else:
            z = initial_positions(energy, position_or_key, name="position_or_key")
            key_run = jax.random.PRNGKey(0) if rng_key is None else validation.prng_key("rng_key", rng_key)
        return init_fn(z, masses, key_run)

    def step(rng_key, state):
        new = step_fn(state._replace(rng_key=validation.prng_key("rng_key", rng_key)))
        return new, StepInfo(new.energy, new.grad_norm, new.accept_prob, new.diverging, new.time)

    return SamplingAlgorithm(init, step)


def wasserstein_flow(
    energy: ParticleEnergy, *, step_size, transport=None, batch_size=None, masses=None, shared_step_scale=1.0
) -> SamplingAlgorithm:
    """Particle gradient descent ``theta_j <- theta_j - dt grad V(theta_j; mu_n)``.

    The functional face of :class:`~mfsample.WassersteinFlow`.
    """
    core = _wasserstein.build_kernel(
        energy, step_size, transport=transport, batch_size=batch_size, shared_step_scale=shared_step_scale
    )
    return from_core(energy, core, masses)


def mean_field_langevin(
    energy: ParticleEnergy,
    *,
    step_size,
    temperature,
    adjusted=False,
    transport=None,
    batch_size=None,
    masses=None,
    shared_step_scale=1.0,
) -> SamplingAlgorithm:
    """Mean-field Langevin, optionally MALA-adjusted (see :class:`~mfsample.MeanFieldLangevin`)."""
    core = _langevin.build_kernel(
        energy,
        step_size,
        temperature,
        adjusted,
        transport=transport,
        batch_size=batch_size,
        shared_step_scale=shared_step_scale,
    )
    return from_core(energy, core, masses)


def kinetic_langevin(
    energy: ParticleEnergy, *, step_size, temperature, friction=1.0, masses=None, shared_step_scale=1.0
) -> SamplingAlgorithm:
    """Underdamped mean-field Langevin by BAOAB (see :class:`~mfsample.kernels.KineticLangevin`)."""
    core = _kinetic.build_kernel(energy, step_size, temperature, friction, shared_step_scale)
    return from_core(energy, core, masses)
