"""The particle state and the ``MCMCKernel`` shell shared by every mfsample dynamic.

As in NumPyro's ``hmc()`` / ``HMC``, each dynamic is a functional core
``build_kernel(energy, ...) -> (init_fn, step_fn)`` of pure, un-jitted functions, and its
kernel class only stores settings, builds the core in ``init`` and calls it in ``sample``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import constrain_fn
from numpyro.util import is_prng_key

from ..energy import ParticleEnergy, energy_from_fn, energy_from_model
from ..models.shallow import check_masses
from .steps import all_finite, evaluate_drift, mean_field_norm, tree_select

__all__ = [
    "ParticleState",
    "ParticleKernel",
    "init_particle_state",
    "guarded_update",
    "check_step_size",
    "check_temperature",
    "check_batch_size",
    "check_block_size",
    "check_transport",
]


class ParticleState(NamedTuple):
    """State of an interacting particle system (one replica).

    - **z** – particles, a dict of arrays with the particle axis leading (unconstrained).
    - **masses** – particle masses ``m_j`` (``None``: uniform ``1/n``).
    - **energy** – ``E(theta_1..n)`` at ``z`` (mean negative log-likelihood per datum).
    - **log_prior** – ``sum_j log mu0(theta_j)`` at ``z`` (0 when the kernel ignores the prior).
    - **drift** – the deterministic velocity field applied at ``z`` (see ``steps.Drift``).
    - **grad_norm** – ``||drift||_{L2(mu_n)}``: for the Wasserstein flow ``dE/dt = -grad_norm^2``.
    - **time** – mean-field time ``t = step * dt``.
    - **step** – number of steps taken since ``init``.
    - **diverging** – particles became non-finite; they are frozen from then on.
    - **divergence_step** – first diverging step (``-1`` if none).
    - **accept_prob** – Metropolis acceptance probability of the last step (1 when unadjusted).
    - **rng_key** – PRNG key for the next step.
    - **opt_state** – state of an optax ``transport`` transformation (``None`` for plain Euler).
    - **momentum** – particle momenta of kinetic (underdamped) dynamics (``None`` otherwise).
    """

    z: Any
    masses: Any
    energy: jax.Array
    log_prior: jax.Array
    drift: Any
    grad_norm: jax.Array
    time: jax.Array
    step: jax.Array
    diverging: jax.Array
    divergence_step: jax.Array
    accept_prob: jax.Array
    rng_key: jax.Array
    opt_state: Any = None
    momentum: Any = None

    @property
    def particles(self):
        """Positions and masses in one dict (``{**z, "masses": m}``; uniform when ``masses`` is None).

        Kernels whose masses evolve use this as their ``sample_field`` so that every draw
        carries the masses.
        """
        out = dict(self.z)
        if self.masses is None:
            batch = jnp.shape(self.energy)  # leading chain axes of a batched state
            n = jax.tree.leaves(self.z)[0].shape[len(batch)]
            out["masses"] = jnp.full(batch + (n,), 1.0 / n, self.energy.dtype)
        else:
            out["masses"] = self.masses
        return out


def init_particle_state(energy: ParticleEnergy, z, masses, rng_key, temperature=0.0, *,
                        transport=None, batch_size=None) -> ParticleState:
    """Evaluate the drift at ``z`` and wrap everything in a :class:`ParticleState` at ``t = 0``.

    With ``batch_size`` the first drift is evaluated on a minibatch drawn from ``rng_key``
    (itself left unchanged in the state); ``transport`` (an optax transformation) gets its
    state initialised on ``z``.
    """
    key_batch = jax.random.fold_in(rng_key, 1) if batch_size else None
    d = evaluate_drift(energy, z, masses, temperature, rng_key=key_batch, batch_size=batch_size)
    return ParticleState(
        z=z,
        masses=masses,
        energy=d.energy,
        log_prior=d.log_prior,
        drift=d.drift,
        grad_norm=mean_field_norm(d.drift, masses),
        time=jnp.zeros((), d.energy.dtype),
        step=jnp.zeros((), jnp.int32),
        diverging=jnp.array(False),
        divergence_step=jnp.array(-1, jnp.int32),
        accept_prob=jnp.ones((), d.energy.dtype),
        rng_key=rng_key,
        opt_state=None if transport is None else transport.init(z),
    )


def guarded_update(state: ParticleState, z, d, step_size, *, rng_key, accept=True,
                   accept_prob=1.0, opt_state=None, momentum=None) -> ParticleState:
    """Commit a proposed move unless it is rejected or non-finite.

    A proposal whose particles, energy or drift are non-finite sets ``diverging`` for good and
    leaves the particles where they were (no NaN ever enters the state); a frozen system stays
    frozen while time goes on.
    """
    ok = all_finite(z, d.energy, d.drift)
    diverging = state.diverging | ~ok
    move = ok & ~diverging & accept
    step = state.step + 1
    new = state._replace(z=z, energy=d.energy, log_prior=d.log_prior, drift=d.drift)
    if opt_state is not None:
        new = new._replace(opt_state=opt_state)
    if momentum is not None:
        new = new._replace(momentum=momentum)
    new = tree_select(move, new, state)
    return new._replace(
        grad_norm=mean_field_norm(new.drift, state.masses),
        time=(step * step_size).astype(state.time.dtype),
        step=step,
        diverging=diverging,
        divergence_step=jnp.where(
            (state.divergence_step < 0) & diverging, state.step, state.divergence_step
        ),
        accept_prob=jnp.where(ok, jnp.asarray(accept_prob, state.accept_prob.dtype), 0.0),
        rng_key=rng_key,
    )


def minibatch_key(rng_key, batch_size):
    """Split off a key for the minibatch when one is drawn (else leave the key chain unchanged)."""
    if not batch_size:
        return rng_key, None
    return tuple(jax.random.split(rng_key))


def split_static_kwargs(kwargs):
    """Array keyword arguments become traced inputs of a compiled function; the rest is static."""
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    return arrays, static


def check_step_size(step_size):
    if not isinstance(step_size, numbers.Real) or isinstance(step_size, bool):
        raise TypeError(f"step_size must be a real number, got {type(step_size).__name__}")
    if not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be positive and finite, got {step_size!r}")
    return float(step_size)


def check_batch_size(batch_size):
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    return int(batch_size)


def check_block_size(block_size):
    if block_size is None or block_size == "auto":
        return block_size
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, 'auto' or None, got {block_size!r}")
    return int(block_size)


def check_transport(transport):
    if transport is None:
        return None
    if not (hasattr(transport, "init") and hasattr(transport, "update")):
        raise TypeError(
            "transport must be an optax GradientTransformation (with init and update), e.g. "
            f"optax.sgd(step_size); got {type(transport).__name__}"
        )
    return transport


def check_temperature(temperature):
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be non-negative and finite, got {temperature!r}")
    return float(temperature)


def _check_data(model_args, model_kwargs):
    """Refuse non-finite numeric data, naming the argument."""
    named = [(f"model_args[{i}]", a) for i, a in enumerate(model_args)]
    named += [(k, v) for k, v in model_kwargs.items()]
    for name, value in named:
        if isinstance(value, (jax.Array, np.ndarray)) and not isinstance(value, jax.core.Tracer):
            if jnp.issubdtype(value.dtype, jnp.inexact) and not np.all(np.isfinite(np.asarray(value))):
                raise ValueError(f"{name} contains non-finite values (NaN or inf)")


class ParticleKernel(MCMCKernel):
    """Shell turning a ``build_kernel(energy) -> (init_fn, step_fn)`` core into an ``MCMCKernel``.

    Build it like NUTS, from a NumPyro ``model`` (latent sites in ``particle_plate``), or from
    ``energy_fn(particles, masses, *args, **kwargs)`` with a per-particle ``prior``.  Chains are
    independent replicas of the whole particle system (``vmap`` over the state).

    Common options: ``step_size`` (``dt`` > 0, mean-field time), ``particle_plate``, ``scaling``
    (only for models that do not declare theirs), ``width`` (with ``energy_fn``) and ``frozen``
    (particle sites kept at their initial draw, e.g. ``("w", "b")`` for random features),
    ``transport`` (an optax transformation replacing the Euler transport step) and
    ``batch_size`` (minibatch stochastic gradients; ``>= N`` means full batch) and
    ``block_size`` (evaluate the energy in blocks of that many data so that the ``N x n``
    activations are never held at once; ``"auto"``, the default, blocks only when they would
    not fit in a quarter of the free memory, see :mod:`mfsample.blocking`; ``None``: never).
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable | None = None,
        *,
        energy_fn: Callable | None = None,
        prior: Any = None,
        step_size: float,
        particle_plate: str = "particle",
        scaling: str | float | None = None,
        width: int | None = None,
        frozen: tuple = (),
        transport=None,
        batch_size: int | None = None,
        block_size: int | str | None = "auto",
    ):
        if (model is None) == (energy_fn is None):
            raise ValueError("give exactly one of `model` or `energy_fn`")
        if energy_fn is not None and prior is None:
            raise ValueError("`energy_fn` needs a per-particle `prior` (the reference measure mu0)")
        self._model = model
        self._energy_fn = energy_fn
        self._prior = prior
        self.step_size = check_step_size(step_size)
        self.particle_plate = particle_plate
        self.scaling = scaling
        self.width = width
        self.frozen = frozen
        self.transport = check_transport(transport)
        self.batch_size = check_batch_size(batch_size)
        self.block_size = check_block_size(block_size)
        self._energy: ParticleEnergy | None = None
        self._sample_fn = None
        self._model_args = ()
        self._model_kwargs = {}

    # -- what subclasses provide -------------------------------------------------------------
    def build(self, energy: ParticleEnergy):
        """Return ``(init_fn(z, masses, rng_key) -> state, step_fn(state) -> state)``."""
        raise NotImplementedError

    def effective_batch_size(self, energy: ParticleEnergy):
        """``batch_size`` if it subsamples the data, ``None`` for full-batch gradients."""
        if self.batch_size is None:
            return None
        if energy.subsample is None:
            raise ValueError("batch_size needs a model (the data of an energy_fn cannot be subsampled)")
        return self.batch_size if self.batch_size < energy.num_data else None

    # -- MCMCKernel interface ------------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def energy(self) -> ParticleEnergy:
        """The :class:`~mfsample.energy.ParticleEnergy` built at ``init`` (None before)."""
        return self._energy

    @property
    def default_fields(self):
        return ("z", "energy", "time", "grad_norm", "diverging")

    def build_energy(self, model_args=(), model_kwargs=None) -> ParticleEnergy:
        """The energy for these model arguments (``masses`` is not a data argument)."""
        model_kwargs = {k: v for k, v in dict(model_kwargs or {}).items() if k != "masses"}
        _check_data(model_args, model_kwargs)
        if self._model is not None:
            return energy_from_model(
                self._model, model_args, model_kwargs,
                particle_plate=self.particle_plate, scaling=self.scaling, frozen=self.frozen,
                block_size=self.block_size, num_replicas=getattr(self, "_num_replicas", 1),
            )
        width = self.width
        if width is None:
            raise ValueError("with `energy_fn`, give the kernel a `width` (number of particles)")
        return energy_from_fn(
            self._energy_fn, self._prior, model_args, model_kwargs,
            width=width, scaling="mean_field" if self.scaling is None else self.scaling,
            frozen=self.frozen,
        )

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        model_kwargs = dict(model_kwargs or {})
        masses = model_kwargs.get("masses")
        batched = not is_prng_key(rng_key)
        self._num_replicas = int(rng_key.shape[0]) if batched else 1
        energy = self.build_energy(model_args, model_kwargs)
        if masses is not None:
            if not energy.accepts_masses:
                raise TypeError("this model takes no `masses` keyword, so it cannot weight particles")
            masses = check_masses(masses, energy.width)
        self._energy = energy
        self._model_args, self._model_kwargs = tuple(model_args), model_kwargs
        init_fn, step_fn = self.build(energy)

        if init_params is not None:
            init_params = self._as_site_dict(init_params)
        self._sample_fn = jax.vmap(step_fn) if batched else step_fn
        if self._compile_init(energy) and not isinstance(rng_key, jax.core.Tracer):
            array_kwargs, static_kwargs = split_static_kwargs(
                {k: v for k, v in model_kwargs.items() if k != "masses"})
            run = self._compiled_init(batched, static_kwargs)
            return run(rng_key, init_params, masses, tuple(model_args), array_kwargs)
        return self._init_state(energy, batched, rng_key, init_params, masses)

    #: above this many activations (num_data * width) the first drift is evaluated by a compiled
    #: function (cached per shapes, data as arguments) instead of op by op: eager evaluation of
    #: a large step costs several compiled steps, a compilation costs more than a small one
    COMPILE_INIT_ABOVE = 2 ** 21

    def _compile_init(self, energy: ParticleEnergy) -> bool:
        return energy.num_data * energy.width > self.COMPILE_INIT_ABOVE

    def _init_state(self, energy, batched, rng_key, init_params, masses):
        init_fn, _ = self.build(energy)

        def init_one(key, z0):
            key_init, key_run = jax.random.split(key)
            z = energy.sample_prior(key_init) if z0 is None else z0
            return init_fn(z, masses, key_run)

        return jax.vmap(init_one)(rng_key, init_params) if batched else init_one(rng_key, init_params)

    def _compiled_init(self, batched, static_kwargs):
        cache = self.__dict__.setdefault("_mfsample_init_cache", {})
        key = (batched, static_kwargs)
        try:
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in cache:
            return cache[key]

        def run(rng_key, init_params, masses, args, array_kwargs):
            kwargs = {**dict(static_kwargs), **array_kwargs}
            energy = self.build_energy(args, kwargs)
            return self._init_state(energy, batched, rng_key, init_params, masses)

        fn = jax.jit(run)
        if key is not None:
            cache[key] = fn
        return fn

    def _as_site_dict(self, params):
        names = self._energy.site_names
        if not isinstance(params, dict):
            if len(names) != 1:
                raise TypeError(f"init_params must be a dict with keys {names}")
            params = {names[0]: params}
        missing = set(names) - set(params)
        if missing:
            raise ValueError(f"init_params misses the particle sites {sorted(missing)}")
        return {k: jnp.asarray(params[k]) for k in names}

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state)

    def postprocess_fn(self, model_args, model_kwargs):
        """Map unconstrained particles to the model's sites, adding its deterministic sites."""
        if self._model is None:
            if self._energy is None:
                return lambda z: z
            energy = self._energy
            single = isinstance(self._prior, dist.Distribution)
            return (lambda z: energy.constrain(z)["theta"]) if single else energy.constrain
        post = lambda z, a=tuple(model_args), kw=model_kwargs: constrain_fn(  # noqa: E731
            self._model, a, kw, z, return_deterministic=True
        )
        energy = self._energy
        if energy is None or energy.block_size is None:
            return post
        return self._blocked_postprocess(post, energy, tuple(model_args), dict(model_kwargs))

    def _blocked_postprocess(self, post, energy, model_args, model_kwargs):
        """The deterministic sites evaluated over blocks of data (``energy.block_size``)."""
        from ..blocking import blocked_map

        num_data = int(round(energy.num_data))
        site_names = set(energy.site_names)

        def is_per_datum(v):
            return isinstance(v, (jax.Array, np.ndarray)) and np.ndim(v) >= 1 and np.shape(v)[0] == num_data

        def run(z):
            shapes = jax.eval_shape(post, z)
            per_datum = {k for k, s in shapes.items()
                         if k not in site_names and len(s.shape) >= 1 and s.shape[0] == num_data}
            fixed = {k: v for k, v in model_kwargs.items() if k == "masses"}
            data_kwargs = {k: v for k, v in model_kwargs.items() if k != "masses"}
            return blocked_map(lambda a, kw: post(z, a, {**kw, **fixed}), model_args, data_kwargs,
                               energy.block_size, is_per_datum, lambda k: k in per_datum)

        return run

    def get_diagnostics_str(self, state):
        return "energy {:.5g}, |v| {:.3g}{}".format(
            float(state.energy), float(state.grad_norm),
            ", diverging" if bool(state.diverging) else "",
        )
