"""The energy of a NumPyro model with fixed data: :func:`energy_from_model`.

For a model whose latent sites are the particles' coordinates and whose observed sites hold
``N`` data,

    E(theta_1..n; m) = -(1/N) sum_i log p(y_i | theta_1..n; m),

and the latent sites' prior is the reference measure ``mu0``.  The energy is built in five steps,
one function each:

1. read the model: one trace, abstract when possible (:func:`.sites.trace_model`);
2. check its plates and sites, name the particle sites and the width (:func:`.sites.particle_sites`);
3. resolve the scaling exponent ``p`` (:func:`_resolve_exponent`) and the data size ``N``
   (:func:`.sites.data_size`);
4. resolve the block size ``B`` (:func:`mfsample.blocking.resolve_block_size`);
5. build the pure functions of :class:`~.base.ParticleEnergy` (:func:`_build`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro import handlers

from .. import validation
from ..blocking import auto_particle_block_size, blocked_sum, blocked_value_and_grad, resolve_block_size
from ..scaling import scaling_exponent
from .base import (
    ParticleEnergy,
    check_frozen,
    constrain_sites,
    prior_log_density,
    shared_log_density,
    support_transforms,
    unconstrain_sites,
)
from .sites import data_size, particle_sites, trace_model

__all__ = ["energy_from_model"]


class _BoundModel(NamedTuple):
    """A model with its data and its particle sites: what the energy's functions evaluate."""

    model: Callable
    args: tuple
    kwargs: dict  # the data keywords, without ``masses``
    particle_plate: str
    latent: tuple
    observed: tuple
    transforms: dict  # latent site (particle or shared) -> bijection from R^k onto its support
    accepts_masses: bool
    shared: tuple = ()  # latent sites outside the particle plate


def _accepts_kwarg(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _names_parameter(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _resolve_exponent(declared: frozenset, scaling: str | float | None) -> float:
    """The scaling exponent ``p``: the model's declared one, or ``scaling``, which must agree with
    it when both are given (``p = 1``, mean field, when neither is)."""
    if len(declared) > 1:
        raise ValueError(
            f"particle sites declare different scalings: {sorted(declared)}; declare one "
            "exponent on every particle site"
        )
    model_p = next(iter(declared), None)
    if scaling is None:
        return 1.0 if model_p is None else model_p
    p = scaling_exponent(scaling)
    if model_p is not None and abs(p - model_p) > 1e-12:
        raise ValueError(
            f"the kernel's scaling (exponent {p}) disagrees with the model's (exponent "
            f"{model_p}); set the scaling once, on the model (e.g. scaling='ntk')"
        )
    return p


def _trace_at(bound: _BoundModel, params: dict, masses, args: tuple, kwargs: dict):
    """The model's trace with its particle sites set to ``params`` (and its ``masses``)."""
    kwargs = dict(kwargs)
    if masses is not None:
        if not bound.accepts_masses:
            raise TypeError(
                "this model does not take a `masses` keyword, so it cannot weight "
                "particles; add `masses=None` to its signature"
            )
        kwargs["masses"] = masses
    model = handlers.substitute(handlers.seed(bound.model, 0), data=params)
    return handlers.trace(model).get_trace(*args, **kwargs)


def _log_likelihood_sum(bound: _BoundModel, params: dict, masses, args: tuple, kwargs: dict):
    """``sum_i log p(y_i | particles)`` over the data in ``args``/``kwargs`` (all of them or one
    block), each observed site's terms weighted by its plate scale."""
    tr = _trace_at(bound, params, masses, args, kwargs)
    total = 0.0
    for name in bound.observed:
        site = tr[name]
        log_p = site["fn"].log_prob(site["value"])
        if site["scale"] is not None:
            log_p = log_p * site["scale"]
        total = total + jnp.sum(log_p)
    return total


def _energy_fn(bound: _BoundModel, num_data: float, block_size: int | None) -> Callable:
    """``E(z, masses) = -(1/N) sum_b sum_{i in block b} log p(y_i | particles)``."""
    is_per_datum = functools.partial(validation.is_per_datum, num_data=num_data)

    def energy(z, masses=None):
        params = constrain_sites(bound.transforms, z)
        log_likelihood = functools.partial(_log_likelihood_sum, bound, params, masses)
        return -blocked_sum(log_likelihood, bound.args, bound.kwargs, block_size, is_per_datum) / num_data

    return energy


def _value_and_grad_fn(bound: _BoundModel, num_data: float, block_size: int | None) -> Callable | None:
    """``(E, (dE/dz, dE/dm))`` of a blocked energy in one pass over its blocks (``None`` unblocked).

    The particles are mapped to the model's coordinates once, ``theta = T(z)``; the blocks'
    gradients in ``theta`` (and the masses) are summed (:func:`mfsample.blocking.blocked_value_and_grad`)
    and pulled back through ``T`` once."""
    if block_size is None:
        return None
    is_per_datum = functools.partial(validation.is_per_datum, num_data=num_data)

    def log_likelihood(params_and_masses, args, kwargs):
        return _log_likelihood_sum(bound, *params_and_masses, args, kwargs)

    def value_and_grad(z, masses=None):
        params, pullback = jax.vjp(functools.partial(constrain_sites, bound.transforms), z)
        total, (g_params, g_masses) = blocked_value_and_grad(
            log_likelihood, (params, masses), bound.args, bound.kwargs, block_size, is_per_datum
        )
        (g_z,) = pullback(g_params)
        return -total / num_data, jax.tree.map(lambda g: -g / num_data, (g_z, g_masses))

    return value_and_grad


def _log_prior_fn(bound: _BoundModel, width: int) -> Callable:
    """``log mu0(z_j)`` per particle; the priors are read from a trace at ``theta = T(z)`` (they
    may depend on other particle sites)."""

    particle_transforms = {name: bound.transforms[name] for name in bound.latent}

    def log_prior(z):
        tr = _trace_at(bound, constrain_sites(bound.transforms, z), None, bound.args, bound.kwargs)
        return prior_log_density({name: tr[name]["fn"] for name in bound.latent}, particle_transforms, z, width)

    return log_prior


def _shared_log_prior_fn(bound: _BoundModel) -> Callable | None:
    """``log p(s)`` of the shared sites (a scalar), read from a trace as the particles' prior is."""
    if not bound.shared:
        return None
    shared_transforms = {name: bound.transforms[name] for name in bound.shared}

    def shared_log_prior(z):
        tr = _trace_at(bound, constrain_sites(bound.transforms, z), None, bound.args, bound.kwargs)
        return shared_log_density({name: tr[name]["fn"] for name in bound.shared}, shared_transforms, z)

    return shared_log_prior


def _sample_prior_fn(bound: _BoundModel) -> Callable:
    """``z`` drawn from ``mu0``: the model's own draws, mapped to unconstrained coordinates."""

    def sample_prior(rng_key):
        tr = handlers.trace(handlers.seed(bound.model, rng_key)).get_trace(*bound.args, **bound.kwargs)
        return unconstrain_sites(bound.transforms, {name: tr[name]["value"] for name in bound.transforms})

    return sample_prior


def _with_subsample(pe: ParticleEnergy, bound: _BoundModel) -> ParticleEnergy:
    """``pe`` with its ``subsample(rng_key, batch_size)``: the energy of a minibatch."""
    num_data = int(round(pe.num_data))

    def subsample(rng_key, batch_size):
        """Energy of ``batch_size`` data drawn without replacement: ``-(1/B) sum_{i in batch} log p``.

        Every per-datum argument of the model (an array whose leading axis has the data size
        ``N``: ``x``, ``y``, per-datum noise ...) is subsampled along that axis;
        ``batch_size >= N`` is the full energy itself.
        """
        if batch_size >= num_data:
            return full
        idx = jax.random.choice(rng_key, num_data, (batch_size,), replace=False)

        def take(v):
            return jnp.take(jnp.asarray(v), idx, axis=0) if validation.is_per_datum(v, num_data) else v

        args, kwargs = jax.tree.map(take, (bound.args, bound.kwargs))
        return energy_from_model(
            bound.model,
            args,
            kwargs,
            particle_plate=bound.particle_plate,
            scaling=pe.exponent,
            frozen=pe.frozen,
            block_size=pe.block_size,
            shared_sites=bool(pe.shared_names),
        )

    full = pe._replace(subsample=subsample)
    return full


def _build(
    bound: _BoundModel, *, width: int, exponent: float, num_data: float, frozen: tuple, block_size: int | None
) -> ParticleEnergy:
    """Step 5: the :class:`ParticleEnergy` of a checked model."""
    transforms = bound.transforms
    pe = ParticleEnergy(
        energy=_energy_fn(bound, num_data, block_size),
        log_prior=_log_prior_fn(bound, width),
        sample_prior=_sample_prior_fn(bound),
        constrain=lambda z: constrain_sites(transforms, z),
        unconstrain=lambda params: unconstrain_sites(transforms, params),
        width=int(width),
        exponent=float(exponent),
        num_data=num_data,
        accepts_masses=bound.accepts_masses,
        site_names=bound.latent,
        frozen=frozen,
        block_size=block_size,
        shared_names=bound.shared,
        shared_log_prior=_shared_log_prior_fn(bound),
        value_and_grad=_value_and_grad_fn(bound, num_data, block_size),
        particle_block_size=bound.kwargs.get("particle_block_size"),
    )
    return _with_subsample(pe, bound)


def _particle_blocks(model, data_kwargs: dict, block_size, num_data: float, width: int, num_replicas: int):
    """``(data_kwargs, block_size)``: with ``block_size="auto"``, a model that takes a
    ``particle_block_size`` keyword (not passed: a given value, ``None`` included, is kept) and a
    wide problem (:func:`mfsample.blocking.auto_particle_block_size`), blocks over particles
    instead of data."""
    if validation.block_size(block_size) != "auto" or "particle_block_size" in data_kwargs:
        return data_kwargs, block_size
    if not _names_parameter(model, "particle_block_size"):  # not through **kwargs: it must mean this
        return data_kwargs, block_size
    num_chains = validation.positive_int("num_replicas", num_replicas)
    block = auto_particle_block_size(int(round(num_data)), width, num_chains=num_chains)
    if block is None:
        return data_kwargs, block_size
    return {**data_kwargs, "particle_block_size": block}, None


def energy_from_model(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    particle_plate: str = "particle",
    scaling: str | float | None = None,
    frozen: tuple = (),
    block_size: int | str | None = None,
    num_replicas: int = 1,
    shared_sites: bool = True,
) -> ParticleEnergy:
    """Build the :class:`ParticleEnergy` of a NumPyro ``model`` for fixed data.

    The particle sites sit in ``numpyro.plate(particle_plate, n)`` with the particle axis
    leading; sites with constrained support are moved in unconstrained coordinates (the prior
    picks up the log-Jacobian, as in NUTS).  Latent sites outside the plate are *shared*
    parameters (``ParticleEnergy.shared_names``: a first layer of a deeper network, an input
    scaling), moved beside the particles by the kernels' shared gradient flow;
    ``shared_sites=False`` refuses them.  Observed sites give the energy
    ``E = -(1/N) sum log p(y | particles)`` with ``N`` the number of observed data (the size
    of the observed sites' batch, times the plate's subsampling scale).

    The model's width scaling is read from ``infer={"mfsample_scaling_exponent": p}`` on its
    particle sites; ``scaling`` may be given for models that do not declare one, and must
    agree with the model's if both are given.  Sites named in ``frozen`` keep their initial
    draw from ``mu0`` (zero velocity, no noise): e.g. ``frozen=("w", "b")`` trains only the
    output weights, the random-feature gradient flow.

    ``block_size`` evaluates the energy as a sum over blocks of ``B`` data,

        E = -(1/N) sum_b sum_{i in block b} log p(y_i | particles),

    one block at a time (``lax.scan``; the drift takes each block's value and gradient in one
    pass, ``ParticleEnergy.value_and_grad``), so that the ``N x n`` activations are never held at
    once: the peak is about ``B x n`` activations (see :func:`mfsample.blocking.activation_bytes`).
    Every per-datum argument (an array whose leading axis has the data size ``N``) is split along
    that axis (the likelihood must factorise over it, as for ``batch_size``).  ``None`` (or
    ``B >= N``): one block, the plain energy; ``"auto"``: the largest ``B`` whose activations, for
    ``num_replicas`` replicas evaluated at once (vectorised chains), fit in a fraction of the free
    memory (:func:`mfsample.blocking.auto_block_size`).  Results agree with the unblocked energy to
    float32 summation order.
    """
    model_kwargs = dict(model_kwargs or {})
    trace = trace_model(model, model_args, model_kwargs)
    sites = particle_sites(trace, particle_plate, shared_sites=shared_sites)
    exponent = _resolve_exponent(sites.declared_exponents, scaling)
    num_data = data_size(trace, sites.observed)
    if num_data == 0:
        raise ValueError(
            f"the model's observed sites {list(sites.observed)} hold no data (N = 0), so the energy "
            "-(1/N) sum_i log p(y_i | particles) is undefined: pass at least one datum"
        )
    frozen = check_frozen(frozen, sites.latent, sites.shared)
    data_kwargs = {k: v for k, v in model_kwargs.items() if k != "masses"}
    data_kwargs, block_size = _particle_blocks(model, data_kwargs, block_size, num_data, sites.width, num_replicas)
    block_size = resolve_block_size(
        block_size, model_args, data_kwargs, num_data=num_data, width=sites.width, num_replicas=num_replicas
    )
    hidden = sites.latent + sites.shared
    transforms = support_transforms({name: trace.sites[name]["fn"].support for name in hidden})
    bound = _BoundModel(
        model,
        tuple(model_args),
        data_kwargs,
        particle_plate,
        sites.latent,
        sites.observed,
        transforms,
        _accepts_kwarg(model, "masses"),
        sites.shared,
    )
    return _build(bound, width=sites.width, exponent=exponent, num_data=num_data, frozen=frozen, block_size=block_size)
