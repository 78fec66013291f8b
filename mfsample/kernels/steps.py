"""Small pure steps that the kernels compose (transport, prior drift, Langevin noise, guards).

Each acts on a particle pytree ``z`` (dict of arrays, particle axis leading) and is un-jitted;
the driver jits the composed step once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..energy import ParticleEnergy, energy_and_velocity, energy_velocity_and_first_variation, freeze
from ..scaling import time_scale
from . import threefry
from .state import all_finite, tree_select

__all__ = [
    "Drift",
    "evaluate_drift",
    "total_log_prior",
    "shared_drift",
    "noise_scales",
    "transport_step",
    "optax_transport_step",
    "standard_normal_like",
    "langevin_noise",
    "mean_field_norm",
    "all_finite",
    "tree_select",
]


class Drift(NamedTuple):
    """Energy ``E``, total prior log-density ``sum_j log mu0(theta_j) (+ log p(s))``, the drift field
    and its norm over the particles ``||drift||_{L2(mu_n)}``; whether the energy and the drift are
    finite (``finite``); the first variation ``V_j = dE/dm_j`` when asked for.

    ``drift_j = v_j - tau * grad log mu0(theta_j)`` with ``v_j = n^(2p-1) grad_{theta_j} E / (n m_j)``;
    the deterministic part of every kernel's update is ``theta_j <- theta_j - dt * drift_j``.  A
    shared site ``s`` (see :func:`shared_drift`) has ``drift_s = eta (grad_s E - (tau / c) grad log p(s))``.
    """

    energy: jax.Array
    log_prior: jax.Array
    drift: dict
    grad_norm: jax.Array | None = None
    finite: jax.Array | None = None
    first_variation: jax.Array | None = None

    def all_finite(self, *trees):
        """True when the energy, the drift and every tree in ``trees`` (e.g. the particles) are finite.

        :attr:`finite` (set by :func:`evaluate_drift`) already says it for the energy and the
        drift without a pass of its own: the drift's norm is a sum of its squares, non-finite
        when one entry is (or when one exceeds ~1e19 in float32, counted as a divergence too).
        """
        if self.finite is None:
            return all_finite(self.energy, self.drift, *trees)
        return self.finite & all_finite(*trees)


def total_log_prior(pe: ParticleEnergy, z):
    """``sum_j log mu0(theta_j)``, plus ``log p(s)`` of the shared sites when there are some."""
    lp = jnp.sum(pe.log_prior(z))
    return lp if pe.shared_log_prior is None else lp + pe.shared_log_prior(z)


def shared_drift(pe: ParticleEnergy, drift, grad_log_prior, temperature, shared_step_scale):
    """The drift of the shared sites: ``eta (grad_s E - (tau / c) grad_s log p(s))``, ``c = n^(2p-1)``.

    With noise ``sqrt(2 tau dt eta / c) xi`` (:func:`noise_scales`) the shared sites and the
    particles have one stationary law, the Gibbs measure ``exp(-(c / tau) E) prod_j mu0(theta_j)
    p(s)``; ``eta`` (the kernels' ``shared_step_scale``) is their time scale relative to the
    particles' (``d s / dt = -eta grad_s E`` at ``tau = 0``).
    """
    if not pe.shared_names:
        return drift
    c = time_scale(pe.width, pe.exponent)
    out = dict(drift)
    for name in pe.shared_names:
        g = drift[name]
        if grad_log_prior is not None:
            g = g - (temperature / c) * grad_log_prior[name]
        out[name] = shared_step_scale * g
    return out


def noise_scales(pe: ParticleEnergy, shared_step_scale):
    """``{site: factor}`` of the Langevin noise's standard deviation: ``sqrt(eta / c)`` for the
    shared sites (see :func:`shared_drift`); ``None`` when there are none."""
    if not pe.shared_names:
        return None
    c = time_scale(pe.width, pe.exponent)
    return {name: jnp.sqrt(shared_step_scale / c) for name in pe.shared_names}


def evaluate_drift(
    pe: ParticleEnergy,
    z,
    masses,
    temperature,
    *,
    rng_key=None,
    batch_size=None,
    shared_step_scale=1.0,
    with_first_variation=False,
) -> Drift:
    """Evaluate :class:`Drift` at ``z`` (one backward pass through ``E``, one through the prior).

    With ``batch_size`` the energy is that of a minibatch of ``batch_size`` data drawn without
    replacement with ``rng_key`` (see ``ParticleEnergy.subsample``): an unbiased estimate of ``E``
    and of the velocity field (stochastic gradients).  Shared sites get :func:`shared_drift`.
    ``with_first_variation`` also returns ``V_j = dE/dm_j`` from the same backward pass
    (:func:`~mfsample.energy.energy_velocity_and_first_variation`).
    """
    if batch_size is not None:
        pe = pe.subsample(rng_key, batch_size)
    if with_first_variation:
        e, v, fv = energy_velocity_and_first_variation(pe, z, masses)
    else:
        (e, v), fv = energy_and_velocity(pe, z, masses), None
    if temperature is None or (isinstance(temperature, (int, float)) and temperature == 0):
        drift = shared_drift(pe, v, None, 0.0, shared_step_scale)
        return _drift(pe, e, jnp.zeros_like(e), drift, masses, fv)
    lp, glp = jax.value_and_grad(lambda zz: total_log_prior(pe, zz))(z)
    glp = freeze(pe, glp)
    particles = jax.tree.map(lambda vi, gi: vi - temperature * gi, pe.particle_part(v), pe.particle_part(glp))
    drift = shared_drift(pe, {**v, **particles} if pe.shared_names else particles, glp, temperature, shared_step_scale)
    return _drift(pe, e, lp, drift, masses, fv)


def _drift(pe: ParticleEnergy, energy, log_prior, drift, masses, first_variation=None) -> Drift:
    """:class:`Drift` with its norm and its finiteness (the norm's and the energy's, and the shared
    sites' drift, which the norm leaves out)."""
    norm = mean_field_norm(pe.particle_part(drift), masses)
    finite = jnp.isfinite(energy + norm) & all_finite(pe.shared_part(drift))
    return Drift(energy, log_prior, drift, norm, finite, first_variation)


def transport_step(z, drift, step_size):
    """Euler step of the continuity equation: ``theta_j <- theta_j - dt * drift_j``."""
    return jax.tree.map(lambda zi, di: zi - step_size * di, z, drift)


def optax_transport_step(transport, z, drift, opt_state):
    """Transport by an optax transformation of the drift, applied particle-wise.

    ``updates, opt_state = transport.update(drift, opt_state, z)``; ``z <- z + updates``.
    ``optax.sgd(dt)`` is exactly :func:`transport_step`; other transformations discretise other
    dynamics (see ``mfsample.dynamics``).  The optimiser's statistics are kept per particle
    coordinate, so the particle axis stays exchangeable.
    """
    updates, opt_state = transport.update(drift, opt_state, z)
    return jax.tree.map(lambda zi, ui: zi + ui, z, updates), opt_state


def standard_normal_like(rng_key, z, skip=()):
    """``xi`` shaped like ``z``, entries iid ``N(0, 1)``; zeros for the top-level sites in ``skip``.

    The numbers are drawn by one call of the generator, as one vector cut into the leaves in
    their tree order (sorted site names): on a CPU each call of JAX's counter-based generator
    is a loop of its own, so one call for every site costs a fraction of one per site.
    """
    named = jax.tree_util.tree_flatten_with_path(z)[0]
    leaves, treedef = jax.tree.flatten(z)
    drawn = [i for i, (path, _) in enumerate(named) if _site(path) not in skip]
    if not drawn:
        return jax.tree.map(jnp.zeros_like, z)
    sizes = [int(np.prod(jnp.shape(leaves[i]))) for i in drawn]
    flat = threefry.normal(rng_key, (sum(sizes),), jnp.result_type(*(leaves[i] for i in drawn)))
    pieces = dict(zip(drawn, jnp.split(flat, np.cumsum(sizes)[:-1])))
    xi = [
        pieces[i].reshape(jnp.shape(x)).astype(jnp.result_type(x)) if i in pieces else jnp.zeros_like(x)
        for i, x in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, xi)


def _site(path):
    """The top-level site name of a leaf's path (``None`` for a bare array)."""
    return getattr(path[0], "key", None) if path else None


def langevin_noise(rng_key, z, temperature, step_size, frozen=(), scales=None):
    """Add ``sqrt(2 tau dt) xi_j``, ``xi_j ~ N(0, I)`` iid over particles and coordinates.

    Sites named in ``frozen`` get no noise; a site in ``scales`` gets its noise multiplied by
    that factor (the shared sites, :func:`noise_scales`).  ``xi`` is drawn by
    :func:`standard_normal_like` (one call of the generator).  Returns the noised particles and ``xi``.
    """
    xi = standard_normal_like(rng_key, z, frozen)
    if scales:
        xi = {k: (v * scales[k] if k in scales else v) for k, v in xi.items()}
    scale = jnp.sqrt(2.0 * temperature * step_size)
    return jax.tree.map(lambda zi, e: zi + scale * e, z, xi), xi


def mean_field_norm(field, masses=None):
    """``||u||_{L2(mu_n)} = sqrt(sum_j m_j |u_j|^2)`` (``m_j = 1/n`` when ``masses`` is None)."""
    sq = sum(jnp.sum(jnp.reshape(u, (u.shape[0], -1)) ** 2, axis=-1) for u in jax.tree.leaves(field))
    w = jnp.mean(sq) if masses is None else jnp.sum(masses * sq)
    return jnp.sqrt(w)
