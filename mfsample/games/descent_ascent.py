"""Mean-field descent–ascent on two particle measures, with Langevin noise and WFR reaction.

For ``L[mu_x, mu_y] = ∬ l dmu_x dmu_y``, with ``V_x = ∫ l(., y) dmu_y``
and ``V_y = ∫ l(x, .) dmu_x`` (:class:`~mfsample.games.Game`), temperatures ``tau_x, tau_y``,
reaction rates ``alpha_x, alpha_y`` and reference measures ``mu0`` of the spaces:

    d_t mu_x = div(mu_x grad V_x) + tau_x Δmu_x - tau_x div(mu_x grad log mu0) - alpha_x (V_x - L) mu_x,
    d_t mu_y = -div(mu_y grad V_y) + tau_y Δmu_y - tau_y div(mu_y grad log mu0) + alpha_y (V_y - L) mu_y,

(``∫ V_x dmu_x = ∫ V_y dmu_y = L``): x descends its potential, y ascends its own, both on the
Riemannian manifold of their space.  ``tau = alpha = 0`` is gradient descent–ascent (GDA);
``tau > 0`` is Langevin descent–ascent, the dynamics of the entropy-regularised game
``L + tau_x KL(mu_x|mu0) - tau_y KL(mu_y|mu0)``; ``alpha > 0`` adds the Fisher–Rao reaction
(WFR descent–ascent; Domingo-Enrich, Jelassi, Mensch, Rotskoff & Bruna, NeurIPS 2020).

One step is the Lie splitting of :mod:`~mfsample.kernels.wfr`, every field taken at ``mu_k``:

1. transport (:func:`~mfsample.kernels.steps.transport_step`): ``x_i <- x_i - dt P(grad V_x(x_i)
   - tau_x grad log mu0)``, ``y_j <- y_j + dt P(grad V_y(y_j) + tau_y grad log mu0)`` with ``P``
   the tangent projection; then :func:`~mfsample.kernels.steps.langevin_noise` and the space's
   retraction (normalisation on the sphere, clipping / reflection on a box);
2. reaction with ``V - L`` at ``mu_k`` (:func:`~mfsample.kernels.reaction.centered_first_variation`):
   :func:`~mfsample.kernels.reaction.fisher_rao_reweight` of ``(V_x - L)`` and of ``-(V_y - L)``
   (``mode="weighted"``), or :func:`~mfsample.kernels.reaction.birth_death_step` with the same
   signed first variations (``mode="birth_death"``: x-particles with ``V_x > L`` die, y-particles
   with ``V_y > L`` duplicate);
3. the payoff matrix, value and fields at ``mu_{k+1}`` (one forward pass, two backward).

Theory: ``docs/theory/games.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.util import is_prng_key

from .. import validation
from ..kernels import programs, threefry
from ..kernels.base import DynamicsKernel
from ..kernels.contract import ACCEPT_PROB, DIVERGING, GRAD_NORM, STEP, TIME, Statistic, names
from ..kernels.parameters import as_arrays, is_zero, specialise, zero_pattern
from ..kernels.reaction import (
    birth_death_step,
    centered_first_variation,
    check_reaction_mode,
    effective_sample_size,
    fisher_rao_reweight,
)
from ..kernels.start import Fresh, start_states
from ..kernels.state import State, all_finite, commit, state_class
from ..kernels.steps import langevin_noise, mean_field_norm, transport_step
from .game import Game

__all__ = ["GameState", "GameSetup", "build_kernel", "check_options", "DescentAscent"]


@state_class
class GameState(State):
    """:class:`~mfsample.kernels.state.State` of the two interacting particle systems (one replica).

    The shared fields hold both players: **z** ``{"x": (nx, dx), "y": (ny, dy)}`` (on their
    spaces), **masses** ``{"x": (nx,), "y": (ny,)}`` (uniform and constant in birth–death mode),
    **energy** the value ``L[mu_x, mu_y]``, **drift** ``{"x": ..., "y": ...}`` (the transport moves
    ``z <- z - dt * drift``), **grad_norm** ``sqrt(||drift_x||^2_{L2(mu_x)} + ||drift_y||^2_{L2(mu_y)})``.
    The game's own fields:

    - **log_masses** – the masses' logarithms (the weighted reaction works in log-space).
    - **potential** – ``{"x": V_x(x_i), "y": V_y(y_j)}``, the first variations at the particles.
    - **support_gap** – ``max_j V_y(y_j) - min_i V_x(x_i)``: the Nash gap with deviations restricted
      to the particles' own positions (a cheap lower bound of :func:`~mfsample.games.nash_gap`).
    - **ess_x**, **ess_y** – effective sample sizes ``1 / sum m^2`` of the masses.
    - **births_x**, **deaths_x**, **births_y**, **deaths_y** – birth–death events of the last step.
    """

    log_masses: Any
    potential: Any
    support_gap: jax.Array
    ess_x: jax.Array
    ess_y: jax.Array
    births_x: jax.Array
    deaths_x: jax.Array
    births_y: jax.Array
    deaths_y: jax.Array

    @property
    def strategies(self):
        """``{"x", "y", "masses_x", "masses_y"}``: the two particle measures (the kernel's sample)."""
        return {"x": self.z["x"], "y": self.z["y"], "masses_x": self.masses["x"], "masses_y": self.masses["y"]}


VALUE = Statistic(
    "energy",
    "value L[mu_x, mu_y] = sum_ij m_i l(x_i, y_j) m'_j of the two particle measures",
    recorded_as="objective",
)
SUPPORT_GAP = Statistic(
    "support_gap",
    "max_j V_y(y_j) - min_i V_x(x_i): Nash gap with deviations restricted "
    "to the particles (a lower bound of the Nikaido-Isoda error)",
)
ESS_X = Statistic("ess_x", "effective sample size 1 / sum_i m_i^2 of the x-masses")
ESS_Y = Statistic("ess_y", "effective sample size 1 / sum_j m_j^2 of the y-masses")
EVENTS = tuple(
    Statistic(
        f"{kind}_{player}",
        f"birth-death events of the last step: {'duplicated' if kind == 'births' else 'killed'} {player}-particles",
    )
    for player in ("x", "y")
    for kind in ("births", "deaths")
)
#: recorded by every descent-ascent run (the value in place of the particle energy)
GAME_STATISTICS = (VALUE, TIME, GRAD_NORM, DIVERGING, ACCEPT_PROB, STEP, SUPPORT_GAP)


def check_options(step_size, temperature=0.0, rate=0.0, mode="weighted", birth="clone"):
    """Validate the settings of both faces: ``(dt, (tau_x, tau_y), (alpha_x, alpha_y), mode, birth)``."""
    mode, birth = check_reaction_mode(mode, birth)
    return (
        validation.step_size(step_size),
        _pair("temperature", temperature, validation.temperature),
        _pair("rate", rate, validation.rate),
        mode,
        birth,
    )


class _Fields(NamedTuple):
    value: jax.Array
    potential: dict
    drift: dict


def _pair(name, value, check):
    """A setting given once for both players or as ``(for_x, for_y)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair (for_x, for_y), got {value!r}")
        return check(value[0]), check(value[1])
    v = check(value)
    return v, v


def game_fields(game: Game, z, masses, temperature) -> _Fields:
    """Value ``L``, first variations and the drifts ``P(grad V_x - tau_x grad log mu0)`` (x) and
    ``-P(grad V_y + tau_y grad log mu0)`` (y) at ``(z, masses)``."""
    tx, ty = temperature
    xs, ys = game.x_space, game.y_space
    x, y = z["x"], z["y"]
    value, vx, vy, gx, gy = game.fields(x, y, masses["x"], masses["y"])
    if not is_zero(tx):
        gx = gx - tx * xs.grad_log_reference(x)
    if not is_zero(ty):
        gy = gy + ty * ys.grad_log_reference(y)
    drift = {"x": xs.tangent(x, gx), "y": -ys.tangent(y, gy)}
    return _Fields(value, {"x": vx, "y": vy}, drift)


def _support_gap(potential):
    return jnp.max(potential["y"]) - jnp.min(potential["x"])


def _grad_norm(drift, masses):
    nx = mean_field_norm({"x": drift["x"]}, masses["x"])
    ny = mean_field_norm({"y": drift["y"]}, masses["y"])
    return jnp.sqrt(nx**2 + ny**2)


def _initial_masses(z, masses, weighted):
    """Uniform masses where none are given; birth–death refuses given ones."""
    dtype = jnp.result_type(z["x"].dtype, z["y"].dtype)
    full = {}
    for k in ("x", "y"):
        n = z[k].shape[0]
        m = masses.get(k) if masses else None
        if m is not None and not weighted:
            raise ValueError(
                "mode='birth_death' moves equally weighted particles: pass no masses (or use mode='weighted')"
            )
        full[k] = jnp.full((n,), 1.0 / n, dtype) if m is None else jnp.asarray(m, dtype)
    return full


def _derived(f: _Fields, masses, events) -> dict:
    """The state fields that follow from the fields of a measure and the last step's events."""
    (bx, dx), (by, dy) = events
    return dict(
        energy=f.value,
        potential=f.potential,
        drift=f.drift,
        grad_norm=_grad_norm(f.drift, masses),
        support_gap=_support_gap(f.potential),
        ess_x=effective_sample_size(masses["x"]),
        ess_y=effective_sample_size(masses["y"]),
        births_x=bx,
        deaths_x=dx,
        births_y=by,
        deaths_y=dy,
    )


def build_kernel(
    game: Game, step_size: float, temperature=(0.0, 0.0), rate=(0.0, 0.0), mode: str = "weighted", birth: str = "clone"
):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``, pure and un-jitted.

    ``z = {"x": (nx, dx), "y": (ny, dy)}`` (projected onto the spaces by their retraction);
    ``masses = {"x": ..., "y": ...}`` (entries ``None``: uniform).  ``temperature`` and ``rate`` are
    numbers or pairs ``(for_x, for_y)``, validated by :func:`check_options`.
    """
    dt, taus, rates, mode, birth = check_options(step_size, temperature, rate, mode, birth)
    weighted = mode == "weighted"
    spaces = {"x": game.x_space, "y": game.y_space}
    taus, rates = dict(zip("xy", taus)), dict(zip("xy", rates))
    no_events = ((jnp.zeros((), jnp.int32),) * 2,) * 2

    def init_fn(z, masses, rng_key):
        z = {k: spaces[k].retract(jnp.asarray(z[k])) for k in ("x", "y")}  # onto the spaces
        full = _initial_masses(z, masses, weighted)
        f = game_fields(game, z, full, (taus["x"], taus["y"]))
        return GameState(
            z=z,
            masses=full,
            log_masses=jax.tree.map(jnp.log, full),
            time=jnp.zeros((), f.value.dtype),
            step=jnp.zeros((), jnp.int32),
            diverging=jnp.array(False),
            divergence_step=jnp.array(-1, jnp.int32),
            accept_prob=jnp.ones((), f.value.dtype),
            rng_key=rng_key,
            **_derived(f, full, no_events),
        )

    def move(state, keys):
        """Transport with the drift of ``mu_k``, Langevin noise, retraction onto the spaces."""
        moved = transport_step(state.z, state.drift, dt)
        z = {}
        for k, key in zip(("x", "y"), keys):
            if not is_zero(taus[k]):
                noised, _ = langevin_noise(key, {k: moved[k]}, taus[k], dt)
                z[k] = spaces[k].retract_diffusion(noised[k])
            else:
                z[k] = spaces[k].retract(moved[k])
        return z

    def react(state, z, keys):
        """Reaction with the signed centred first variations of ``mu_k`` (x descends, y ascends)."""
        ux, _ = centered_first_variation(state.potential["x"], state.masses["x"])
        uy, _ = centered_first_variation(state.potential["y"], state.masses["y"])
        masses, log_masses, events = dict(state.masses), dict(state.log_masses), dict(zip("xy", no_events))
        for k, u, key in (("x", ux, keys[0]), ("y", -uy, keys[1])):
            if is_zero(rates[k]):  # alpha = 0: masses kept bit for bit, no clock rings
                continue
            if weighted:  # (a traced alpha may be 0 too: the masses are then kept bit for bit)
                reweighted = fisher_rao_reweight(state.log_masses[k], u, rates[k], dt)
                log_masses[k] = jnp.where(rates[k] == 0, state.log_masses[k], reweighted)
                masses[k] = jnp.where(rates[k] == 0, state.masses[k], jnp.exp(log_masses[k]))
            else:
                key_bd, key_prior = jax.random.split(key)
                prior = {k: spaces[k].sample(key_prior, z[k].shape[0])} if birth == "prior" else None
                bd = birth_death_step(key_bd, {k: z[k]}, u, rates[k], dt, birth=birth, prior_sample=prior)
                z = {**z, k: bd.z[k]}
                events[k] = (bd.births, bd.deaths)
        return z, masses, log_masses, (events["x"], events["y"])

    def step_fn(state: GameState) -> GameState:
        rng_key, k_noise_x, k_noise_y, k_react_x, k_react_y = threefry.split(state.rng_key, 5)
        z = move(state, (k_noise_x, k_noise_y))
        z, masses, log_masses, events = react(state, z, (k_react_x, k_react_y))
        # fields of mu_{k+1}; a non-finite proposal freezes the system for good
        f = game_fields(game, z, masses, (taus["x"], taus["y"]))
        proposal = state._replace(z=z, masses=masses, log_masses=log_masses, **_derived(f, masses, events))
        ok = all_finite(z, f.value, f.potential, f.drift, masses)
        new, moved = commit(state, proposal, ok, dt, rng_key=rng_key)
        counts = {name: jnp.where(moved, getattr(new, name), 0) for name in names(EVENTS)}
        return new._replace(**counts)

    return init_fn, step_fn


class GameSetup(NamedTuple):
    """What :meth:`DescentAscent.build_energy` extracts from the run's arguments.

    Plays the part of :class:`~mfsample.energy.ParticleEnergy` for the drivers
    (:func:`mfsample.simulate`, :func:`mfsample.to_inference_data`): ``constrain`` is the identity
    (particles already live on their spaces), ``width`` is ``nx``, there are no data.
    """

    game: Game
    num_x: int | None = None
    num_y: int | None = None
    masses_x: Any = None
    masses_y: Any = None
    exponent: float = 1.0
    num_data: int = 0
    site_names: tuple = ()
    accepts_masses: bool = False
    block_size: int | None = None

    @property
    def width(self):
        return self.num_x

    def constrain(self, strategies):
        return strategies


def _sizes(width):
    if width is None:
        return None, None
    pair = tuple(width) if isinstance(width, (tuple, list)) else (width, width)
    if len(pair) != 2:
        raise ValueError(f"width must be an integer >= 1 or a pair (nx, ny), got {width!r}")
    return validation.positive_int("width (nx)", pair[0]), validation.positive_int("width (ny)", pair[1])


def _with_sizes(setup: GameSetup, init_params, batched) -> GameSetup:
    """The population sizes from ``width`` or from the initial particles (which must agree)."""
    if init_params is None:
        if setup.num_x is None:
            raise ValueError("give the population sizes, width=n or width=(nx, ny), or init_params")
        return setup
    lead = 1 if batched else 0
    nx, ny = init_params["x"].shape[lead], init_params["y"].shape[lead]
    if setup.num_x is not None and (setup.num_x, setup.num_y) != (nx, ny):
        raise ValueError(f"init_params have sizes {(nx, ny)} but width={(setup.num_x, setup.num_y)}")
    return setup._replace(num_x=nx, num_y=ny)


def _player_masses(player, masses, n):
    """One player's initial masses (``None``: uniform), validated as particle masses."""
    if masses is None:
        return None
    try:
        return validation.masses(masses, n, atol=1e-5)
    except ValueError as exc:
        raise ValueError(f"masses_{player}: {exc}") from None


class DescentAscent(DynamicsKernel):
    r"""Mean-field descent–ascent for a two-player zero-sum :class:`~mfsample.games.Game`, as a NumPyro kernel.

    The two populations ``{"x": (nx, dx), "y": (ny, dy)}`` (sizes may differ) follow the
    dynamics of the module docstring: GDA (``temperature=0, rate=0``), Langevin descent–ascent
    (``temperature > 0``), WFR descent–ascent (``rate > 0``; ``mode="weighted"`` moves masses,
    ``mode="birth_death"`` kills and duplicates equally weighted particles, ``birth="prior"``
    refilling from the space's reference measure).  ``temperature`` and ``rate`` are numbers or
    pairs ``(for_x, for_y)``.

    Run it as any mfsample kernel: ``MCMC(kernel, num_warmup=0, num_samples=T).run(key,
    width=(nx, ny))`` or ``mf.simulate(kernel, key, width=(nx, ny), num_steps=T)`` (``width=n``:
    both populations of size ``n``).  Optional keywords: ``masses_x``, ``masses_y`` (weighted
    mode); ``init_params={"x": ..., "y": ...}`` sets the initial particles (else iid draws from
    the spaces' reference measures).  Each draw is ``{"x", "y", "masses_x", "masses_y"}``; the
    state's ``energy`` is the value ``L``, and ``support_gap`` (plus ``ess_*`` or ``births_*`` /
    ``deaths_*``) is recorded at every draw.  Measure the Nash gap with :func:`~mfsample.games.nash_gap`.

    :param game: the :class:`~mfsample.games.Game`.
    :param float step_size: ``dt`` > 0.
    :param temperature: ``tau >= 0`` (entropic regularisation relative to the spaces' ``mu0``).
    :param rate: reaction rate ``alpha >= 0``.
    :param str mode: ``"weighted"`` or ``"birth_death"``.
    :param str birth: ``"clone"`` or ``"prior"`` (birth–death only).

    Example::

        >>> import jax, mfsample as mf
        >>> ex = mf.games.examples.circle()
        >>> kernel = mf.games.DescentAscent(ex.game, step_size=0.1, temperature=0.02, rate=1.0)
        >>> sim = mf.simulate(kernel, jax.random.PRNGKey(0), width=(32, 16), num_steps=20,
        ...                   save_every=10, progress_bar=False)
        >>> sim.samples["x"].shape, sim.samples["masses_y"].shape
        ((1, 2, 32, 2), (1, 2, 16))
    """

    sample_field = "strategies"
    hyperparameter_names = ("step_size", "temperature", "rate", "mode", "birth")
    parameter_names = ("step_size", "temperature", "rate")

    def __init__(self, game: Game, *, step_size, temperature=0.0, rate=0.0, mode="weighted", birth="clone"):
        if not isinstance(game, Game):
            raise TypeError(f"game must be a mfsample.games.Game, got {type(game).__name__}")
        self.game = game
        self.step_size, self.temperatures, self.rates, self.mode, self.birth = check_options(
            step_size, temperature, rate, mode, birth
        )
        self._setup: GameSetup | None = None
        self._sample_fn = None
        self._model_args, self._model_kwargs = (), {}

    # scalar views for reports (ArviZ attributes); the pairs are in `temperatures` / `rates`
    @property
    def temperature(self):
        return self.temperatures[0] if self.temperatures[0] == self.temperatures[1] else self.temperatures

    @property
    def rate(self):
        return self.rates[0] if self.rates[0] == self.rates[1] else self.rates

    # -- the contract (mfsample.kernels.contract) ------------------------------------------------
    @property
    def model(self):
        return None

    @property
    def parameters(self) -> dict:
        """``step_size`` and the per-player pairs ``temperature = (tau_x, tau_y)``, ``rate``."""
        return {"step_size": self.step_size, "temperature": self.temperatures, "rate": self.rates}

    def _settings(self) -> tuple:
        return (self.game,)

    def _set_parameters(self, values: dict) -> None:
        merged = {**self.parameters, **values}
        self.step_size, self.temperatures, self.rates, _, _ = check_options(
            merged["step_size"], merged["temperature"], merged["rate"], self.mode, self.birth
        )

    @property
    def energy(self) -> GameSetup | None:
        """The :class:`GameSetup` of the last ``init`` (``None`` before)."""
        return self._setup

    @property
    def statistics(self):
        """The value and the common statistics, the support gap, then ``ess_*`` (weighted) or the
        birth–death counts."""
        return GAME_STATISTICS + ((ESS_X, ESS_Y) if self.mode == "weighted" else EVENTS)

    @property
    def stat_fields(self):
        """Names of the game's own statistics (kept for older code; see :attr:`statistics`)."""
        return names(self.statistics[len(GAME_STATISTICS) - 1 :])

    @property
    def sample_dims(self):
        """Dims for :func:`mfsample.to_inference_data` (``dims=kernel.sample_dims``)."""
        return {
            "x": ["particle_x", "x_dim"],
            "y": ["particle_y", "y_dim"],
            "masses_x": ["particle_x"],
            "masses_y": ["particle_y"],
        }

    def build_energy(self, model_args=(), model_kwargs=None, *, num_replicas: int = 1) -> GameSetup:
        """Sizes (``width``) and initial masses from the run's arguments (``num_replicas`` unused)."""
        if model_args:
            raise TypeError("DescentAscent takes no positional model arguments (the game holds everything)")
        kwargs = dict(model_kwargs or {})
        unknown = set(kwargs) - {"width", "masses_x", "masses_y"}
        if unknown:
            raise TypeError(
                f"unexpected arguments {sorted(unknown)}; DescentAscent takes width=(nx, ny), masses_x, masses_y"
            )
        nx, ny = _sizes(kwargs.get("width"))
        return GameSetup(self.game, nx, ny, kwargs.get("masses_x"), kwargs.get("masses_y"))

    def build(self, setup: GameSetup, parameters=None):
        p = self.step_parameters(parameters)
        return build_kernel(setup.game, p["step_size"], p["temperature"], p["rate"], self.mode, self.birth)

    def draw_fn(self, energy, model_args, model_kwargs, *, deterministic: bool = True):
        """The identity: the particles are recorded as they are (already on their spaces)."""
        return lambda strategies: strategies

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        batched = not is_prng_key(rng_key)
        if init_params is not None:
            init_params = {k: jnp.asarray(init_params[k]) for k in ("x", "y")}
        num_replicas = int(rng_key.shape[0]) if batched else None
        setup = self.bind(model_args, model_kwargs, num_replicas=num_replicas, init_params=init_params)
        masses = self.initial_masses(setup)
        values = self.parameters
        pattern = zero_pattern(values)

        def make():  # compiled once per structure and sizes rather than dispatched op by op
            def run(values, keys, z0, masses):
                return start_states(self, setup, Fresh(keys, z0, masses), specialise(values, pattern), batched=batched)

            return jax.jit(run)

        run = programs.cached(self, ("init", batched, setup.num_x, setup.num_y, pattern), make)
        return run(as_arrays(values), rng_key, init_params, masses)

    def bind(self, model_args, model_kwargs, *, num_replicas: int | None = None, init_params=None) -> GameSetup:
        """Record a run's arguments as ``init`` does, without computing a state; returns its setup
        (the players' sizes from ``init_params`` when the call gives no ``width``)."""
        batched = num_replicas is not None
        if init_params is not None:
            init_params = {k: jnp.asarray(init_params[k]) for k in ("x", "y")}
        setup = _with_sizes(self.build_energy(model_args, model_kwargs), init_params, batched)
        self._setup = setup
        self._record_run(model_args, model_kwargs, setup, batched)
        return setup

    def initial_masses(self, setup: GameSetup, model_kwargs=None):
        """``{"x": m_x or None, "y": m_y or None}`` from the setup (``masses_x``, ``masses_y``), validated."""
        return {
            k: _player_masses(k, getattr(setup, f"masses_{k}"), n) for k, n in (("x", setup.num_x), ("y", setup.num_y))
        }

    def initializer(self, setup: GameSetup):
        """``start(rng_key, z0, masses, parameters=None) -> state`` of one replica, pure (particles
        drawn from the spaces' reference measures when ``z0`` is ``None``)."""
        game = self.game

        def start(key, z0, masses, parameters=None):
            init_fn, _ = self.build(setup, parameters)
            key_x, key_y, key_run = jax.random.split(key, 3)
            if z0 is None:
                z0 = {"x": game.x_space.sample(key_x, setup.num_x), "y": game.y_space.sample(key_y, setup.num_y)}
            return init_fn(z0, masses, key_run)

        return start

    def postprocess_fn(self, model_args, model_kwargs):
        """The identity: the particles are recorded as they are (already on their spaces)."""
        return self.draw_fn(self._setup, model_args, model_kwargs)

    def get_diagnostics_str(self, state):
        return "L {:.5g}, support gap {:.3g}{}".format(
            float(state.energy), float(state.support_gap), ", diverging" if bool(state.diverging) else ""
        )
