"""The ``MCMCKernel`` shell shared by every particle dynamic, and the particle state's helpers.

As in NumPyro's ``hmc()`` / ``HMC``, each dynamic is a functional core
``build_kernel(energy, ...) -> (init_fn, step_fn)`` of pure, un-jitted functions that validates its
own settings, and its kernel class only stores (and validates, with the same functions) the
settings, builds the core in ``init`` and calls it in ``sample``.  The class implements the
contract of :mod:`mfsample.kernels.contract` that the drivers rely on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import constrain_fn
from numpyro.util import is_prng_key

from .. import validation
from ..blocking import blocked_deterministic
from ..energy import ParticleEnergy, energy_from_fn, energy_from_model
from . import programs
from .contract import PARTICLE_STATISTICS, Statistic, describe, names
from .parameters import as_arrays, specialise, zero_pattern
from .start import Fresh, start_states
from .state import ParticleState, commit
from .steps import Drift, evaluate_drift

__all__ = [
    "ParticleState",
    "DynamicsKernel",
    "ParticleKernel",
    "init_particle_state",
    "initial_positions",
    "guarded_update",
    "minibatch_size",
    "check_step_size",
    "check_temperature",
    "check_batch_size",
    "check_block_size",
    "check_transport",
]

# deprecated aliases of the shared checks (mfsample.validation)
check_step_size = validation.step_size
check_temperature = validation.temperature
check_batch_size = validation.batch_size
check_block_size = validation.block_size
check_transport = validation.transport


def init_particle_state(
    energy: ParticleEnergy,
    z,
    masses,
    rng_key,
    temperature=0.0,
    *,
    transport=None,
    batch_size=None,
    shared_step_scale=1.0,
    drift: Drift | None = None,
) -> ParticleState:
    """Evaluate the drift at ``z`` and wrap everything in a :class:`ParticleState` at ``t = 0``.

    With ``batch_size`` the first drift is evaluated on a minibatch drawn from ``rng_key``
    (itself left unchanged in the state); ``transport`` (an optax transformation) gets its
    state initialised on ``z``.  ``drift``: the :class:`Drift` at ``z`` when the caller has
    evaluated it already (with the first variation, say), used as it is.
    """
    if masses is not None:
        masses = validation.masses(masses, energy.width)
    d = drift
    if d is None:
        key_batch = jax.random.fold_in(rng_key, 1) if batch_size else None
        d = evaluate_drift(
            energy,
            z,
            masses,
            temperature,
            rng_key=key_batch,
            batch_size=batch_size,
            shared_step_scale=shared_step_scale,
        )
    return ParticleState(
        z=z,
        masses=masses,
        energy=d.energy,
        log_prior=d.log_prior,
        drift=d.drift,
        grad_norm=d.grad_norm,
        time=jnp.zeros((), d.energy.dtype),
        step=jnp.zeros((), jnp.int32),
        diverging=jnp.array(False),
        divergence_step=jnp.array(-1, jnp.int32),
        accept_prob=jnp.ones((), d.energy.dtype),
        rng_key=rng_key,
        opt_state=None if transport is None else transport.init(z),
    )


def guarded_update(
    state: ParticleState, z, d: Drift, step_size, *, rng_key, accept=True, accept_prob=1.0, **fields
) -> ParticleState:
    """Commit the move to ``z`` (fields ``d`` evaluated there) unless it is rejected or non-finite.

    ``fields`` are further state fields of the proposal (``opt_state``, ``momentum``).  A
    proposal whose particles, energy or drift are non-finite sets ``diverging`` for good and
    leaves the particles where they were (see :func:`~mfsample.kernels.state.commit`).
    """
    proposal = state._replace(
        z=z,
        energy=d.energy,
        log_prior=d.log_prior,
        drift=d.drift,
        grad_norm=d.grad_norm,
        **fields,
    )
    ok = d.all_finite(z)
    new, _ = commit(state, proposal, ok, step_size, rng_key=rng_key, accept=accept, accept_prob=accept_prob)
    return new


def initial_positions(energy: ParticleEnergy, params, batch: tuple = (), *, name: str = "init_params"):
    """``params`` as unconstrained positions ``{site: array}`` for ``energy``, checked: the energy's
    particle sites, each of the shape of a draw from ``mu0`` (after ``batch``, the chain axis),
    finite (see :func:`mfsample.validation.positions`)."""
    expected = jax.eval_shape(energy.sample_prior, jax.random.PRNGKey(0))
    if not isinstance(expected, dict):
        expected = {energy.site_names[0]: expected}
    return validation.positions(name, params, {k: v.shape for k, v in expected.items()}, batch=batch)


def minibatch_key(rng_key, batch_size):
    """Split off a key for the minibatch when one is drawn (else leave the key chain unchanged)."""
    if not batch_size:
        return rng_key, None
    return tuple(jax.random.split(rng_key))


def minibatch_size(energy: ParticleEnergy, batch_size):
    """``batch_size`` if it subsamples the data, ``None`` for full-batch gradients (``>= N``)."""
    batch_size = validation.batch_size(batch_size)
    if batch_size is None:
        return None
    if energy.subsample is None:
        raise ValueError("batch_size needs a model (the data of an energy_fn cannot be subsampled)")
    return batch_size if batch_size < energy.num_data else None


def split_static_kwargs(kwargs):
    """Array keyword arguments become traced inputs of a compiled function; the rest is static."""
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    return arrays, static


def _hashable(value):
    """Lists and dicts of settings as tuples (for :attr:`DynamicsKernel.structure`)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _check_data(model_args, model_kwargs):
    """Refuse non-finite numeric data, naming the argument."""
    named = [(f"model_args[{i}]", a) for i, a in enumerate(model_args)]
    named += [(k, v) for k, v in model_kwargs.items()]
    for name, value in named:
        if isinstance(value, (jax.Array, np.ndarray)) and not isinstance(value, jax.core.Tracer):
            if jnp.issubdtype(value.dtype, jnp.inexact) and not np.all(np.isfinite(np.asarray(value))):
                raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _data_kwargs(model_kwargs):
    """The model's keyword arguments without ``masses`` (the initial masses are not data)."""
    return {k: v for k, v in dict(model_kwargs or {}).items() if k != "masses"}


class DynamicsKernel(MCMCKernel):
    """The parts of the contract (:mod:`~mfsample.kernels.contract`) that every kernel states alike.

    A subclass sets ``hyperparameter_names``, ``sample_field`` and :attr:`statistics`, and records
    the arguments of its last ``init`` / ``bind`` and its (vectorised) step with :meth:`_record_run`.
    """

    #: attributes of the kernel that define the dynamic (recorded with every run)
    hyperparameter_names: tuple = ("step_size",)
    #: the numeric ones among them, handed to the step as arrays (:mod:`~.parameters`)
    parameter_names: tuple = ("step_size",)
    #: the state attribute recorded as the draw
    sample_field = "z"
    _model_args: tuple = ()
    _model_kwargs: dict = {}
    _sample_fn = None

    @property
    def model_args(self) -> tuple:
        """Positional model arguments of the last ``init`` (``()`` before)."""
        return self._model_args

    @property
    def model_kwargs(self) -> dict:
        """Keyword model arguments of the last ``init`` (``{}`` before)."""
        return dict(self._model_kwargs)

    @property
    def hyperparameters(self) -> dict:
        """``{name: value}`` of the settings that define the dynamic."""
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    @property
    def parameters(self) -> dict:
        """``{name: value}`` of the numeric hyper-parameters (``step_size``, ``temperature``, ...)."""
        return {name: getattr(self, name) for name in self.parameter_names}

    @property
    def structure(self) -> tuple:
        """Everything but the numeric hyper-parameters that fixes the step: kernels with equal
        structures share compiled programmes (:mod:`~mfsample.kernels.programs`)."""
        structural = tuple(getattr(self, n) for n in self.hyperparameter_names if n not in self.parameter_names)
        return (type(self),) + self._settings() + structural

    def _settings(self) -> tuple:
        """The kernel's structural settings besides its hyper-parameters (model, transport, ...)."""
        return ()

    def _check_parameters(self) -> None:
        """Validate (and normalise) the numeric hyper-parameters held by the kernel."""

    def replace(self, **values):
        """A copy of the kernel with other numeric hyper-parameters (validated), e.g.
        ``kernel.replace(temperature=1e-3)``; its structure, hence its compiled programmes, are
        this kernel's."""
        unknown = sorted(set(values) - set(self.parameter_names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no numeric hyper-parameter {unknown}; "
                f"it has {list(self.parameter_names)} (structural settings such as mode make another kernel)"
            )
        new = copy.copy(self)
        new.__dict__ = self.__getstate__()
        new._set_parameters(values)
        return new

    def _set_parameters(self, values: dict) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self._check_parameters()

    def step_parameters(self, parameters=None) -> dict:
        """What :meth:`build` hands to the functional core: ``parameters`` when given (arrays,
        possibly traced, zeros already specialised by the driver), else the kernel's own values
        as arrays with their exact zeros as constants (:func:`~.parameters.specialise`)."""
        if parameters is not None:
            return dict(parameters)
        values = self.parameters
        return specialise(as_arrays(values), zero_pattern(values))

    @property
    def sample_dims(self) -> dict:
        return {}

    @property
    def stat_descriptions(self) -> dict:
        """``{statistic: description}`` (kept for older code; see :attr:`statistics`)."""
        return describe(self.statistics)

    @property
    def default_fields(self):
        return (self.sample_field,) + names(self.statistics)

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state)

    def _record_run(self, model_args, model_kwargs, energy, batched: bool) -> None:
        """What ``bind`` records of a run: its arguments and the step ``sample`` takes (built for
        ``energy``, ``vmap``-ped over a leading chain axis when ``batched``)."""
        self._model_args, self._model_kwargs = tuple(model_args), dict(model_kwargs or {})
        _, step_fn = self.build(energy)
        self._sample_fn = jax.vmap(step_fn) if batched else step_fn

    def __getstate__(self):
        """Drop what was compiled (rebuilt by the next ``init``), as NumPyro's ``HMC`` does, so that
        a kernel and an ``MCMC`` holding it pickle after a run."""
        state = {k: v for k, v in self.__dict__.items() if not k.endswith("_cache")}
        state["_sample_fn"] = None
        return state


class ParticleKernel(DynamicsKernel):
    """Shell turning a ``build_kernel(energy) -> (init_fn, step_fn)`` core into an ``MCMCKernel``.

    Build it like NUTS, from a NumPyro ``model`` (latent sites in ``particle_plate``), or from
    ``energy_fn(particles, masses, *args, **kwargs)`` with a per-particle ``prior``.  Chains are
    independent replicas of the whole particle system (``vmap`` over the state).

    Common options: ``step_size`` (``dt`` > 0, mean-field time), ``shared_step_scale`` (``eta`` > 0,
    the time scale of the model's shared sites, latent sites outside the particle plate such as a
    first layer: ``d s / dt = -eta grad_s E`` plus, with a temperature, noise against their prior,
    see :func:`~mfsample.kernels.steps.shared_drift`; ``shared_sites=False`` refuses such sites),
    ``particle_plate``, ``scaling``
    (only for models that do not declare theirs), ``width`` (with ``energy_fn``) and ``frozen``
    (particle sites kept at their initial draw, e.g. ``("w", "b")`` for random features),
    ``transport`` (an optax transformation replacing the Euler transport step) and
    ``batch_size`` (minibatch stochastic gradients; ``>= N`` means full batch) and
    ``block_size`` (evaluate the energy in blocks of that many data so that the ``N x n``
    activations are never held at once; ``"auto"``, the default, blocks only when they would
    not fit in a quarter of the free memory, see :mod:`mfsample.blocking`; ``None``: never).

    Subclasses provide :meth:`build` and declare ``hyperparameter_names`` and, when they record
    more than :data:`~mfsample.kernels.contract.PARTICLE_STATISTICS`, :attr:`statistics`.
    """

    hyperparameter_names = ("step_size", "shared_step_scale")
    parameter_names = ("step_size", "shared_step_scale")

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
        shared_step_scale: float = 1.0,
        shared_sites: bool = True,
    ):
        if (model is None) == (energy_fn is None):
            raise ValueError("give exactly one of `model` or `energy_fn`")
        if energy_fn is not None and prior is None:
            raise ValueError("`energy_fn` needs a per-particle `prior` (the reference measure mu0)")
        self._model = model
        self._energy_fn = energy_fn
        self._prior = prior
        self.step_size = step_size
        self.shared_step_scale = shared_step_scale
        self.shared_sites = bool(shared_sites)
        ParticleKernel._check_parameters(self)
        self.particle_plate = particle_plate
        self.scaling = scaling
        self.width = validation.optional_positive_int("width", width)
        self.frozen = tuple(frozen) if isinstance(frozen, list) else frozen
        self.transport = validation.transport(transport)
        self.batch_size = validation.batch_size(batch_size)
        self.block_size = validation.block_size(block_size)
        self._energy: ParticleEnergy | None = None
        self._sample_fn = None
        self._model_args = ()
        self._model_kwargs = {}

    # -- the contract (mfsample.kernels.contract) ------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def statistics(self) -> tuple[Statistic, ...]:
        """The statistics recorded at every kept draw."""
        return PARTICLE_STATISTICS

    @property
    def stat_fields(self) -> tuple[str, ...]:
        """Names of the statistics beyond the common particle ones (kept for older code)."""
        common = names(PARTICLE_STATISTICS)
        return tuple(n for n in names(self.statistics) if n not in common)

    @property
    def energy(self) -> ParticleEnergy | None:
        """The :class:`~mfsample.energy.ParticleEnergy` of the last ``init`` (None before)."""
        return self._energy

    def build(self, energy: ParticleEnergy, parameters=None):
        """Return ``(init_fn(z, masses, rng_key) -> state, step_fn(state) -> state)``; the numeric
        hyper-parameters are ``parameters`` when given (see :meth:`step_parameters`)."""
        raise NotImplementedError

    def _settings(self) -> tuple:
        return (
            self._model,
            self._energy_fn,
            _hashable(self._prior),
            self.particle_plate,
            self.scaling,
            self.width,
            _hashable(self.frozen),
            self.transport,
            self.batch_size,
            self.block_size,
            self.shared_sites,
        )

    def _check_parameters(self) -> None:
        self.step_size = validation.step_size(self.step_size)
        self.shared_step_scale = validation.real("shared_step_scale", self.shared_step_scale, positive=True)

    def effective_batch_size(self, energy: ParticleEnergy):
        """``batch_size`` if it subsamples the data, ``None`` for full-batch gradients."""
        return minibatch_size(energy, self.batch_size)

    def build_energy(self, model_args=(), model_kwargs=None, *, num_replicas: int = 1) -> ParticleEnergy:
        """The energy for these model arguments (``masses`` is not a data argument); pure."""
        model_kwargs = _data_kwargs(model_kwargs)
        _check_data(model_args, model_kwargs)
        if self._model is not None:
            return energy_from_model(
                self._model,
                model_args,
                model_kwargs,
                particle_plate=self.particle_plate,
                scaling=self.scaling,
                frozen=self.frozen,
                block_size=self.block_size,
                num_replicas=num_replicas,
                shared_sites=self.shared_sites,
            )
        if self.width is None:
            raise ValueError("with `energy_fn`, give the kernel a `width` (number of particles)")
        return energy_from_fn(
            self._energy_fn,
            self._prior,
            model_args,
            model_kwargs,
            width=self.width,
            scaling="mean_field" if self.scaling is None else self.scaling,
            frozen=self.frozen,
        )

    def draw_fn(self, energy, model_args, model_kwargs, *, deterministic: bool = True):
        """Unconstrained sample field -> the draw: the model's sites (and its deterministic
        sites when ``deterministic``), evaluated over blocks of data when the energy is blocked."""
        if not deterministic:
            return energy.constrain
        if self._model is None:
            single = isinstance(self._prior, dist.Distribution)
            return (lambda z: energy.constrain(z)["theta"]) if single else energy.constrain
        args, kwargs = tuple(model_args), dict(model_kwargs or {})
        if energy.block_size is None:
            return lambda z: constrain_fn(self._model, args, kwargs, z, return_deterministic=True)

        def post(z, a, kw):
            return constrain_fn(self._model, a, kw, z, return_deterministic=True)

        return blocked_deterministic(
            post, args, kwargs, num_data=energy.num_data, block_size=energy.block_size, site_names=energy.site_names
        )

    # -- MCMCKernel interface ----------------------------------------------------------------------
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        validation.prng_key("rng_key", rng_key, batch=True)
        model_kwargs = dict(model_kwargs or {})
        batched = not is_prng_key(rng_key)
        num_replicas = int(rng_key.shape[0]) if batched else 1
        energy = self.bind(model_args, model_kwargs, num_replicas=num_replicas if batched else None)
        masses = self.initial_masses(energy, model_kwargs)
        if init_params is not None:
            init_params = initial_positions(energy, init_params, (num_replicas,) if batched else ())
        if self._compile_init(energy) and not isinstance(rng_key, jax.core.Tracer):
            array_kwargs, static_kwargs = split_static_kwargs(_data_kwargs(model_kwargs))
            values = self.parameters
            pattern = zero_pattern(values)
            run = self._compiled_init(batched, num_replicas, static_kwargs, pattern)
            return run(as_arrays(values), rng_key, init_params, masses, tuple(model_args), array_kwargs)
        return self._init_state(energy, batched, rng_key, init_params, masses)

    def bind(self, model_args, model_kwargs, *, num_replicas: int | None = None, init_params=None) -> ParticleEnergy:
        """Record a run's arguments as ``init`` does, without computing a state; returns its energy.

        After it, :attr:`model_args`, :attr:`model_kwargs` and :attr:`energy` describe the run and
        ``sample`` takes its steps (``vmap``-ped over a leading chain axis of ``num_replicas``
        replicas; ``None``: one unbatched replica).  Drivers that start runs inside their own
        compiled programmes (:func:`mfsample.simulate`) call it in place of ``init``.
        ``init_params`` is not needed by particle kernels (a game's sizes may come from it).
        """
        energy = self.build_energy(model_args, model_kwargs, num_replicas=num_replicas or 1)
        self._energy = energy
        self._record_run(model_args, model_kwargs, energy, batched=num_replicas is not None)
        return energy

    def initial_masses(self, energy, model_kwargs=None):
        """The initial masses of a run (``model_kwargs["masses"]``, validated; ``None``: uniform)."""
        masses = dict(model_kwargs or {}).get("masses")
        if masses is None:
            return None
        if not energy.accepts_masses:
            raise TypeError("this model takes no `masses` keyword, so it cannot weight particles")
        return validation.masses(masses, energy.width)

    def initializer(self, energy: ParticleEnergy):
        """``start(rng_key, z0, masses, parameters=None) -> state`` of one replica, pure: the
        particles ``z0`` (drawn iid from ``mu0`` with half of the key when ``None``) and the core's
        ``init_fn`` with the other half.  Traceable, also in ``parameters``."""

        def start(rng_key, z0, masses, parameters=None):
            init_fn, _ = self.build(energy, parameters)
            key_init, key_run = jax.random.split(rng_key)
            z = energy.sample_prior(key_init) if z0 is None else z0
            return init_fn(z, masses, key_run)

        return start

    #: above this many activations (num_data * width) the first drift is evaluated by a compiled
    #: function (cached per kernel structure and shapes, settings and data as arguments) instead of
    #: op by op.  0: always.  Measured on 2 cores at (d, n, N) = (3, 16, 64): a first call of
    #: ``simulate`` in a fresh process took 3.9-4.8 s compiled against 8.4-11.7 s op by op (each
    #: eager primitive compiles on its own), a later call 0.01 s against 0.13-0.31 s.
    COMPILE_INIT_ABOVE = 0

    def _compile_init(self, energy: ParticleEnergy) -> bool:
        return energy.num_data * energy.width > self.COMPILE_INIT_ABOVE

    def _init_state(self, energy, batched, rng_key, init_params, masses, parameters=None):
        return start_states(self, energy, Fresh(rng_key, init_params, masses), parameters, batched=batched)

    def _compiled_init(self, batched, num_replicas, static_kwargs, pattern):
        """The initialisation compiled once per structure (settings and data are arguments)."""

        def make():
            def run(values, rng_key, init_params, masses, args, array_kwargs):
                kwargs = {**dict(static_kwargs), **array_kwargs}
                energy = self.build_energy(args, kwargs, num_replicas=num_replicas)
                parameters = specialise(values, pattern)
                return self._init_state(energy, batched, rng_key, init_params, masses, parameters)

            return jax.jit(run)

        return programs.cached(self, ("init", batched, num_replicas, static_kwargs, pattern), make)

    def postprocess_fn(self, model_args, model_kwargs):
        """Map unconstrained particles to the model's sites, adding its deterministic sites."""
        if self._energy is None:
            return lambda z: z
        return self.draw_fn(self._energy, model_args, model_kwargs)

    def __getstate__(self):
        """Also drop the energy built from the last ``init``'s data (closures over the model)."""
        return {**super().__getstate__(), "_energy": None}

    def get_diagnostics_str(self, state):
        return "energy {:.5g}, |v| {:.3g}{}".format(
            float(state.energy),
            float(state.grad_norm),
            ", diverging" if bool(state.diverging) else "",
        )
