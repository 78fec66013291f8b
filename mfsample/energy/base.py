"""The :class:`ParticleEnergy` record and the pieces both of its builders share.

Particles move in unconstrained coordinates ``z``; a site with constrained support is reached
through the bijection ``theta = T(z)`` of its support, so the reference measure in ``z`` has the
density

    log mu0(z_j) = sum_sites [ log p(T(z_j)) + log |det dT/dz (z_j)| ]

(as in NUTS), one value per particle ``j``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

__all__ = [
    "ParticleEnergy",
    "per_particle_sum",
    "check_frozen",
    "support_transforms",
    "constrain_sites",
    "unconstrain_sites",
    "prior_log_density",
    "shared_log_density",
]


class ParticleEnergy(NamedTuple):
    """The pieces every kernel needs, as pure functions of unconstrained particles ``z``.

    energy(z, masses=None) -> scalar ``E``
    log_prior(z) -> ``(n,)`` array of ``log mu0(theta_j)`` in unconstrained coordinates
    sample_prior(rng_key) -> ``z`` drawn iid from ``mu0``
    constrain(z) -> particle values in the model's (constrained) coordinates
    unconstrain(params) -> ``z`` for particle values in the model's coordinates
    subsample(rng_key, batch_size) -> the ParticleEnergy of a random minibatch of the data

    ``width`` is the number of particles ``n``, ``exponent`` the scaling ``p`` of
    ``f = n^-p sum_j phi_j``, ``num_data`` the ``N`` of ``E = -(1/N) sum_i log p(y_i | ...)``,
    ``frozen`` the sites that do not move and ``block_size`` the ``B`` of a blocked energy
    (``None``: one block).

    ``particle_block_size`` is the ``P`` of a model that sums its output over blocks of ``P``
    particles (its ``particle_block_size`` keyword; ``None``: none).

    ``value_and_grad(z, masses=None) -> (E, (dE/dz, dE/dm))``, when given, is ``energy``'s value
    and gradient in the particles and the masses (``None`` for ``masses=None``) from one pass
    over the data: a blocked energy's (:func:`mfsample.blocking.blocked_value_and_grad`), which
    differentiates each block while its activations are in cache instead of recomputing them in
    a second pass.  ``None``: ``jax.value_and_grad(energy)``.  An energy replaced in a copy of the
    record must have its ``value_and_grad`` replaced (or set to ``None``) with it.

    ``shared_names`` are the model's *shared* sites (latent sites outside the particle plate,
    e.g. a first layer): they are entries of ``z`` without a particle axis, drawn by
    ``sample_prior`` and moved by the kernels' shared gradient flow; ``shared_log_prior(z)`` is
    their prior log-density ``log p(s)`` in unconstrained coordinates (a scalar).  ``site_names``
    are the particle sites only.
    """

    energy: Callable
    log_prior: Callable
    sample_prior: Callable
    constrain: Callable
    unconstrain: Callable
    width: int
    exponent: float
    num_data: float
    accepts_masses: bool
    site_names: tuple
    frozen: tuple = ()
    subsample: Callable | None = None
    block_size: int | None = None
    shared_names: tuple = ()
    shared_log_prior: Callable | None = None
    value_and_grad: Callable | None = None
    particle_block_size: int | None = None

    def particle_part(self, tree: dict) -> dict:
        """The particle sites of a dict over all latent sites (the shared ones left out)."""
        if not self.shared_names:
            return tree
        return {k: v for k, v in tree.items() if k not in self.shared_names}

    def shared_part(self, tree: dict) -> dict:
        """The shared sites of a dict over all latent sites (``{}`` when there are none)."""
        return {k: tree[k] for k in self.shared_names}


def per_particle_sum(x, width: int):
    """Sum a per-particle array over every axis but the leading (particle) one; a scalar is
    broadcast to every particle."""
    x = jnp.asarray(x)
    if x.ndim == 0:
        return jnp.broadcast_to(x, (width,))
    return x.reshape(width, -1).sum(-1)


def check_frozen(frozen, names, shared=()) -> tuple:
    """The frozen sites as a tuple: each one a particle (or shared) site, and not every particle site."""
    frozen = (frozen,) if isinstance(frozen, str) else tuple(frozen or ())
    unknown = sorted(set(frozen) - set(names) - set(shared))
    if unknown:
        raise ValueError(f"frozen sites {unknown} are not particle sites; the sites are {list(names) + list(shared)}")
    if set(names) | set(shared) <= set(frozen):
        raise ValueError(
            f"every particle site is frozen ({list(names)}): nothing would move; leave at least "
            "one site out of `frozen`"
        )
    return frozen


def support_transforms(supports: dict) -> dict:
    """``{site: T}``, the bijection from unconstrained coordinates onto each site's support.

    Particles move by gradients, so every particle coordinate must be continuous: a discrete
    support (``Bernoulli``, ``Categorical``, ``Poisson``, ...) is refused."""
    out = {}
    for name, support in supports.items():
        if getattr(support, "is_discrete", False):
            raise TypeError(
                f"particle site {name!r} has the discrete support {support}: particles move by gradients in "
                "continuous coordinates; give it a continuous law (e.g. a relaxed or Normal one), or move it "
                "out of the particle plate and observe or condition it"
            )
        try:
            out[name] = biject_to(support)
        except NotImplementedError as err:
            raise TypeError(
                f"particle site {name!r} has the support {support}, which has no bijection from unconstrained "
                "coordinates (numpyro's biject_to): give the site a law with a standard continuous support"
            ) from err
    return out


def constrain_sites(transforms: dict, z) -> dict:
    """``theta = T(z)`` site by site."""
    return {name: transform(z[name]) for name, transform in transforms.items()}


def unconstrain_sites(transforms: dict, params) -> dict:
    """``z = T^-1(theta)`` site by site."""
    return {name: transform.inv(jnp.asarray(params[name])) for name, transform in transforms.items()}


def shared_log_density(priors: dict, transforms: dict, z):
    """``log p(s)`` of the shared sites (a scalar): each site's prior log-density at ``T(z)``
    plus the log-Jacobian of ``T``, summed over its coordinates."""
    out = 0.0
    for name, transform in transforms.items():
        value = transform(z[name])
        out = out + jnp.sum(priors[name].log_prob(value)) + jnp.sum(transform.log_abs_det_jacobian(z[name], value))
    return out


def prior_log_density(priors: dict, transforms: dict, z, width: int):
    """``log mu0(z_j)``, one value per particle: each site's prior log-density at ``T(z)`` plus
    the log-Jacobian of ``T``."""
    params = constrain_sites(transforms, z)
    out = jnp.zeros(width)
    for name, transform in transforms.items():
        log_p = priors[name].log_prob(params[name])
        log_jac = transform.log_abs_det_jacobian(z[name], params[name])
        out = out + per_particle_sum(log_p, width) + per_particle_sum(log_jac, width)
    return out
