"""Mean-field Langevin dynamics, optionally Metropolis-adjusted.

    theta_j <- theta_j - dt * (grad_theta V(theta_j; mu_n) - tau grad log mu0(theta_j))
               + sqrt(2 tau dt) xi_j,                xi_j ~ N(0, I)  iid,

which minimises ``E[mu] + tau KL(mu | mu0)``.  As ``dt -> 0`` the n-particle chain is
stationary for the Gibbs measure

    pi(theta_1..n)  prop.  exp(-(n^(2p-1) / tau) E(theta_1..n)) prod_j mu0(theta_j)

(``n/tau`` in the mean-field scaling): the posterior of :func:`mfsample.gibbs_model`.  With
``adjusted=True`` each step is a MALA proposal on the whole system, accepted with probability
``min(1, pi(z') q(z | z') / (pi(z) q(z' | z)))``, so that ``pi`` is sampled exactly for any
``dt`` (uniform masses).  Its drift ``dt * tau * grad log pi`` equals the unadjusted one.

Theory: ``docs/theory/langevin.md``.
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import validation
from ..energy import ParticleEnergy
from ..scaling import time_scale
from . import threefry
from .base import ParticleKernel, guarded_update, init_particle_state, minibatch_key, minibatch_size
from .parameters import is_zero
from .steps import evaluate_drift, langevin_noise, noise_scales, optax_transport_step, transport_step

__all__ = ["build_kernel", "check_options", "MeanFieldLangevin"]


def check_options(step_size, temperature, adjusted=False, transport=None, batch_size=None):
    """Validate the settings of both faces: ``(dt, tau, adjusted, transport, batch_size)``.

    ``adjusted=True`` (MALA) needs ``tau > 0`` (the Gibbs measure is ``exp(-n E / tau)``) and the
    exact Euler proposal on the full data (no ``transport``, no ``batch_size``).
    """
    step_size, temperature = validation.step_size(step_size), validation.temperature(temperature)
    transport, batch_size = validation.transport(transport), validation.batch_size(batch_size)
    adjusted = bool(adjusted)
    if adjusted and is_zero(temperature):
        raise ValueError("adjusted=True needs temperature > 0 (the Gibbs measure is exp(-n E / tau))")
    if adjusted and (transport is not None or batch_size is not None):
        raise ValueError("adjusted=True (MALA) needs the exact Euler proposal: no transport or batch_size")
    return step_size, temperature, adjusted, transport, batch_size


def _check_uniform(adjusted, masses):
    if adjusted and masses is not None:
        raise ValueError(
            "adjusted=True samples the Gibbs measure of uniformly weighted particles; "
            "drop `masses` or use adjusted=False"
        )


def build_kernel(
    energy: ParticleEnergy,
    step_size: float,
    temperature: float,
    adjusted: bool = False,
    *,
    transport=None,
    batch_size=None,
    shared_step_scale=1.0,
):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``, pure and un-jitted.

    ``transport`` (optax) replaces the Euler transport of the drift; the noise is unchanged.
    ``batch_size`` evaluates the drift on minibatches.  Neither combines with ``adjusted``
    (:func:`check_options` validates the settings).  The model's shared sites move with time
    scale ``shared_step_scale`` and noise ``sqrt(2 tau dt eta / c)``
    (:func:`~mfsample.kernels.steps.shared_drift`), so MALA samples their joint Gibbs measure too.
    """
    dt, tau, adjusted, transport, batch_size = check_options(step_size, temperature, adjusted, transport, batch_size)
    batch_size = minibatch_size(energy, batch_size)
    noisy = not is_zero(tau)  # a concrete tau = 0 leaves the noise (and MALA) out
    beta = time_scale(energy.width, energy.exponent) / tau if noisy else None
    eta = validation.real("shared_step_scale", shared_step_scale, positive=True)
    scales = noise_scales(energy, eta)
    variances = {k: v**2 for k, v in (scales or {}).items()}  # relative noise variance per site

    def init_fn(z, masses, rng_key):
        _check_uniform(adjusted, masses)
        return init_particle_state(
            energy, z, masses, rng_key, tau, transport=transport, batch_size=batch_size, shared_step_scale=eta
        )

    def log_target(d):
        return -beta * d.energy + d.log_prior

    def log_proposal(z_to, z_from, drift_from):
        # log q(z_to | z_from) up to a constant: z_to ~ N(z_from - dt drift, 2 tau dt s I), with the
        # relative variance s = 1 for the particles and eta / c for the shared sites
        sq = sum(jnp.sum((z_to[k] - z_from[k] + dt * drift_from[k]) ** 2) / variances.get(k, 1.0) for k in z_to)
        return -sq / (4.0 * tau * dt)

    def step_fn(state):
        rng_key, key_noise, key_accept = threefry.split(state.rng_key, 3)
        rng_key, key_batch = minibatch_key(rng_key, batch_size)
        if transport is None:
            z, opt_state = transport_step(state.z, state.drift, dt), None
        else:
            z, opt_state = optax_transport_step(transport, state.z, state.drift, state.opt_state)
        if noisy:
            z, _ = langevin_noise(key_noise, z, tau, dt, energy.frozen, scales)
        d = evaluate_drift(
            energy, z, state.masses, tau, rng_key=key_batch, batch_size=batch_size, shared_step_scale=eta
        )
        if not adjusted:
            return guarded_update(state, z, d, dt, rng_key=rng_key, opt_state=opt_state)
        log_ratio = (
            log_target(d)
            - log_target(state)
            + log_proposal(state.z, z, d.drift)
            - log_proposal(z, state.z, state.drift)
        )
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accept = threefry.uniform(key_accept) < accept_prob
        return guarded_update(state, z, d, dt, rng_key=rng_key, accept=accept, accept_prob=accept_prob)

    return init_fn, step_fn


class MeanFieldLangevin(ParticleKernel):
    r"""Mean-field Langevin dynamics of a particle system, as a NumPyro kernel.

    Noisy particle gradient descent at temperature ``tau`` with the model's prior ``mu0`` as
    entropic reference (see the module docstring for the update and its stationary law).
    ``temperature=0`` is the Wasserstein flow.  ``adjusted=True`` adds a Metropolis-Hastings
    correction (MALA on the n-particle Gibbs measure); its ``accept_prob`` is in the state.

    Reference: Mei, Montanari & Nguyen (2018); Hu, Ren, Siska & Szpruch (2021); Chizat (2022).

    :param model: NumPyro model with latent sites in ``particle_plate``; or ``energy_fn`` + ``prior``.
    :param float step_size: ``dt`` (> 0), mean-field time.
    :param float temperature: ``tau`` (>= 0).
    :param bool adjusted: Metropolis-adjust each step (needs ``temperature > 0``).
    :param transport: optional optax transformation replacing the Euler transport of the drift.
    :param int batch_size: optional minibatch size (stochastic-gradient Langevin).

    Example::

        >>> import jax, mfsample as mf
        >>> from numpyro.infer import MCMC
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=64)
        >>> kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
        >>> mcmc = MCMC(kernel, num_warmup=0, num_samples=20, progress_bar=False)
        >>> mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=16)
        >>> mcmc.get_samples()["a"].shape
        (20, 16)
    """

    hyperparameter_names = ("step_size", "temperature", "adjusted", "shared_step_scale")
    parameter_names = ("step_size", "temperature", "shared_step_scale")

    def __init__(self, model=None, *, step_size, temperature, adjusted=False, **kwargs):
        super().__init__(model, step_size=step_size, **kwargs)
        self.temperature, self.adjusted = temperature, adjusted
        self._check_parameters()

    def _check_parameters(self):
        self.step_size, self.temperature, self.adjusted, _, _ = check_options(
            self.step_size, self.temperature, self.adjusted, self.transport, self.batch_size
        )

    def build(self, energy, parameters=None):
        p = self.step_parameters(parameters)
        return build_kernel(
            energy,
            p["step_size"],
            p["temperature"],
            self.adjusted,
            transport=self.transport,
            batch_size=self.batch_size,
            shared_step_scale=p["shared_step_scale"],
        )
