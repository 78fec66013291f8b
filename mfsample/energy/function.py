"""The energy given as a function of the particles: :func:`energy_from_fn`.

For problems that are not written as a NumPyro model, the user supplies
``E(theta_1..n; m) = energy_fn(particles, masses, *args, **kwargs)`` and the per-particle
reference measure ``mu0``; the particles move in the unconstrained coordinates of ``mu0``'s
support, as for a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from .. import validation
from ..scaling import scaling_exponent
from .base import (
    ParticleEnergy,
    check_frozen,
    constrain_sites,
    prior_log_density,
    support_transforms,
    unconstrain_sites,
)

__all__ = ["energy_from_fn"]


def _particle_priors(prior: Any) -> dict:
    """``prior`` as a dict of per-particle laws (``{"theta": prior}`` for one distribution)."""
    priors = {"theta": prior} if isinstance(prior, dist.Distribution) else dict(prior)
    for name, law in priors.items():
        if not isinstance(law, dist.Distribution):
            raise TypeError(f"prior[{name!r}] must be a numpyro Distribution, got {type(law).__name__}")
        if law.batch_shape != ():
            raise ValueError(
                f"prior[{name!r}] must be the law of one particle (batch_shape ()), got "
                f"batch_shape {law.batch_shape}; use .to_event() for vector coordinates"
            )
    return {name: priors[name] for name in sorted(priors)}


def energy_from_fn(
    energy_fn: Callable,
    prior: Any,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    width: int,
    scaling: str | float = "mean_field",
    frozen: tuple = (),
) -> ParticleEnergy:
    """Build a :class:`ParticleEnergy` from ``energy_fn(particles, masses, *args, **kwargs)``.

    ``prior`` is the per-particle reference measure ``mu0``: a NumPyro distribution (then the
    particles are one array of shape ``(n, *event_shape)``) or a dict of distributions, one per
    particle coordinate.  ``masses`` is always passed (``1/n`` when uniform).
    """
    model_kwargs = dict(model_kwargs or {})
    width = validation.positive_int("width", width)
    single = isinstance(prior, dist.Distribution)
    priors = _particle_priors(prior)
    transforms = support_transforms({name: law.support for name, law in priors.items()})

    def unconstrain(params):
        params = {"theta": params} if single and not isinstance(params, dict) else params
        return unconstrain_sites(transforms, params)

    def energy(z, masses=None):
        masses = jnp.full((width,), 1.0 / width) if masses is None else masses
        params = constrain_sites(transforms, z)
        return energy_fn(params["theta"] if single else params, masses, *model_args, **model_kwargs)

    def sample_prior(rng_key):
        keys = dict(zip(priors, jax.random.split(rng_key, len(priors))))
        return unconstrain({name: law.sample(keys[name], (width,)) for name, law in priors.items()})

    return ParticleEnergy(
        energy=energy,
        log_prior=lambda z: prior_log_density(priors, transforms, z, width),
        sample_prior=sample_prior,
        constrain=lambda z: constrain_sites(transforms, z),
        unconstrain=unconstrain,
        width=width,
        exponent=scaling_exponent(scaling),
        num_data=1.0,
        accepts_masses=True,
        site_names=tuple(priors),
        frozen=check_frozen(frozen, tuple(priors)),
    )
