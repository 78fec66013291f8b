"""The contract between a dynamic and the drivers that run, record and convert it.

A *dynamic* is an ``MCMCKernel`` whose state is a whole interacting particle system (one replica).
:func:`mfsample.simulate`, ``numpyro.infer.MCMC``, :func:`mfsample.to_inference_data`, the
streaming writer and :func:`mfsample.experiments.replicate` use a kernel only through what
:class:`ParticleDynamics` declares; nothing else of a kernel (no private attribute) is read.

What a kernel declares
----------------------
``model``
    The NumPyro model it was built from (``None`` for kernels built from an energy function or a
    game): the converter traces it for the data groups and predictions.
``model_args``, ``model_kwargs``
    The arguments of its last ``init`` (empty before): what a run was given.
``step_size``
    ``dt``; a draw's time is ``t = step * dt``.
``hyperparameters``
    ``{name: value}`` of the settings that define the dynamic (``step_size``, ``temperature``,
    ``rate``, ``mode``, ...), recorded as attributes of every InferenceData group.
``sample_field``
    The state attribute recorded as the draw (``"z"``, or ``"particles"`` when masses move).
``statistics``
    The :class:`Statistic` s recorded at every kept draw, each with the description of its
    meaning and sign.  One declaration serves MCMC's ``default_fields``, ``simulate``'s
    ``stats`` and the ``sample_stats`` variables of the InferenceData (named ``recorded_as``
    where that differs from the state field: the energy is recorded as ``objective``) with
    their descriptions.
``sample_dims``
    ``{site: [dims after (chain, draw)]}`` for sites whose dims the converter cannot infer.
``build_energy(model_args, model_kwargs, *, num_replicas=1)``
    The energy for these data, a pure object (nothing stored on the kernel): anything with
    ``width``, ``exponent``, ``num_data``, ``site_names``, ``accepts_masses`` and
    ``constrain`` (:class:`~mfsample.energy.ParticleEnergy`, or
    :class:`~mfsample.games.GameSetup` for games).  Called inside compiled functions with traced
    data, so it must not depend on data values.
``build(energy)``
    The functional core ``(init_fn(z, masses, rng_key) -> state, step_fn(state) -> state)``,
    pure and un-jitted (BlackJAX's ``build_kernel``).
``draw_fn(energy, model_args, model_kwargs, *, deterministic=True)``
    Maps the sample field of a state to the recorded draw: a dict of arrays in the model's
    coordinates, plus the model's deterministic sites (``f``) when ``deterministic``.
``init(rng_key, num_warmup, init_params, model_args, model_kwargs)``
    NumPyro's ``MCMCKernel.init``: the initial state (a leading chain axis when ``rng_key`` is a
    batch of keys).

Hyper-parameters as data
------------------------
A kernel that also implements :class:`SweepableDynamics` hands its numeric hyper-parameters to
its step as arrays (:mod:`~mfsample.kernels.parameters`), so that the drivers compile one
programme per *structure* and run batches of settings (:func:`mfsample.sweep`):

``parameter_names``, ``parameters``
    The numeric hyper-parameters (``step_size``, ``temperature``, ``rate``, ``friction``) and
    their values.
``structure``
    A hashable description of everything else that fixes the step (the class, the model, the
    structural settings such as ``mode`` or ``adjusted``); kernels with equal structures share
    compiled programmes.
``replace(**values)``
    A copy with other (validated) numeric values and the same structure.
``build(energy, parameters=None)``
    As above, with the numeric values taken from ``parameters`` (arrays, possibly traced) when
    given.
``initial_masses(energy, model_kwargs)``, ``initializer(energy)``
    The validated initial masses of a run, and a pure
    ``start(rng_key, z0, masses, parameters=None) -> state`` of one replica (particles drawn from
    ``mu0`` when ``z0`` is ``None``), traceable in ``parameters``.  The drivers start fresh runs
    with it (:mod:`~mfsample.kernels.start`: ``simulate`` inside its first compiled chunk,
    ``sweep`` for every configuration), so ``init`` must give the state that ``start`` gives.
``bind(model_args, model_kwargs, *, num_replicas=None, init_params=None)`` (optional)
    What ``init`` records of a run (``model_args``, ``model_kwargs``, the step ``sample`` takes),
    without computing a state; returns the energy.  ``simulate`` starts a fresh run of a kernel
    that has it inside its first compiled chunk (and calls ``init`` on one that has not).
``build_with_draws(energy, parameters=None)`` (optional)
    ``(draws_fn(state) -> draws, step_fn(state, draws) -> state)``, or ``None``: the step with its
    random numbers drawn by a function of their own.  ``draws_fn`` reads nothing of a state but
    its ``rng_key``, and ``step_fn(state, draws_fn(state))`` is ``build``'s step, number for
    number.  ``simulate`` then draws the numbers of step ``k + 1`` inside step ``k`` and carries
    them, so that they are computed beside the step's gradient instead of before the next one
    (birth–death WFR: its uniforms, indices and the sorted ranking of the slots).

What a state provides
---------------------
A JAX pytree (see :mod:`mfsample.kernels.state`) with an attribute for the sample field and for
every declared statistic, and ``rng_key``, ``energy`` (shown by progress bars) and
``divergence_step`` (first step at which the system stopped being finite, ``-1`` if never;
drivers warn about it).

Pickling: kernels drop what they compile or build from data in ``__getstate__`` (as NumPyro's
``HMC`` does), so a kernel, and an ``MCMC`` holding one, pickle after a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Statistic",
    "ParticleDynamics",
    "SweepableDynamics",
    "ENERGY",
    "TIME",
    "GRAD_NORM",
    "DIVERGING",
    "ACCEPT_PROB",
    "STEP",
    "LOG_PRIOR",
    "PARTICLE_STATISTICS",
    "describe",
    "names",
]


class Statistic(NamedTuple):
    """A state field recorded at every kept draw, with the meaning and sign of its values.

    ``name`` is the state field (and the key of ``simulate``'s ``stats``); ``recorded_as`` the
    name of its ``sample_stats`` variable in InferenceData when it differs (``None``: ``name``).
    """

    name: str
    description: str
    recorded_as: str | None = None

    @property
    def variable(self) -> str:
        """The name of its ``sample_stats`` variable in InferenceData."""
        return self.name if self.recorded_as is None else self.recorded_as


# recorded as ``objective``: ArviZ reads a ``sample_stats.energy`` as the Hamiltonian energy of
# HMC (``arviz.plot_energy``, ``arviz.bfmi``), which E is not
ENERGY = Statistic(
    "energy",
    "E = -(1/N) sum_i log p(y_i | particles): mean negative log-likelihood per datum "
    "(not negated; lower is a better fit; a Gaussian likelihood includes log(2 pi)/2 = 0.919)",
    recorded_as="objective",
)
TIME = Statistic("time", "mean-field time t = step * dt")
GRAD_NORM = Statistic("grad_norm", "||drift||_{L2(mu_n)}, the mean-field norm of the velocity field (>= 0)")
DIVERGING = Statistic("diverging", "the particles became non-finite at or before this draw (they are then frozen)")
ACCEPT_PROB = Statistic("accept_prob", "Metropolis acceptance probability of the last step (1 when unadjusted)")
STEP = Statistic("step", "number of kernel steps taken since init (t = step * dt)")
LOG_PRIOR = Statistic("log_prior", "sum_j log mu0(theta_j) in unconstrained coordinates")

#: recorded by every particle dynamic
PARTICLE_STATISTICS = (ENERGY, TIME, GRAD_NORM, DIVERGING, ACCEPT_PROB, STEP)


def names(statistics) -> tuple[str, ...]:
    """The field names of a sequence of :class:`Statistic`."""
    return tuple(s.name for s in statistics)


def describe(statistics) -> dict[str, str]:
    """``{name: description}`` of a sequence of :class:`Statistic`."""
    return {s.name: s.description for s in statistics}


@runtime_checkable
class ParticleDynamics(Protocol):
    """What :func:`~mfsample.simulate`, ``MCMC``, :func:`~mfsample.to_inference_data`, the
    streaming writer and ``replicate`` use of a kernel (see the module docstring)."""

    step_size: float

    @property
    def model(self) -> Callable | None: ...

    @property
    def model_args(self) -> tuple: ...

    @property
    def model_kwargs(self) -> dict: ...

    @property
    def hyperparameters(self) -> dict[str, Any]: ...

    @property
    def sample_field(self) -> str: ...

    @property
    def statistics(self) -> tuple[Statistic, ...]: ...

    @property
    def sample_dims(self) -> dict[str, list[str]]: ...

    def build_energy(self, model_args=(), model_kwargs=None, *, num_replicas: int = 1) -> Any: ...

    def build(self, energy) -> tuple[Callable, Callable]: ...

    def draw_fn(self, energy, model_args, model_kwargs, *, deterministic: bool = True) -> Callable: ...

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs): ...


@runtime_checkable
class SweepableDynamics(ParticleDynamics, Protocol):
    """A :class:`ParticleDynamics` whose numeric hyper-parameters are data (see the module
    docstring): what :func:`~mfsample.sweep` needs, and what lets :func:`~mfsample.simulate`
    share compiled programmes between kernels of one structure."""

    parameter_names: tuple

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def structure(self) -> tuple: ...

    def replace(self, **values) -> SweepableDynamics: ...

    def build(self, energy, parameters=None) -> tuple[Callable, Callable]: ...

    def initial_masses(self, energy, model_kwargs=None) -> Any: ...

    def initializer(self, energy) -> Callable: ...
