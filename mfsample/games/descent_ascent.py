"""Mean-field descent–ascent on two particle measures, with Langevin noise and WFR reaction.

For ``L[mu_x, mu_y] = ∬ l dmu_x dmu_y`` (DESIGN.md §3, "Games"), with ``V_x = ∫ l(., y) dmu_y``
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
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import is_prng_key

from ..kernels.base import check_step_size, check_temperature
from ..kernels.reaction import (
    birth_death_step,
    centered_first_variation,
    check_rate,
    check_reaction_mode,
    effective_sample_size,
    fisher_rao_reweight,
)
from ..kernels.steps import all_finite, langevin_noise, mean_field_norm, transport_step, tree_select
from .game import Game

__all__ = ["GameState", "GameSetup", "build_kernel", "DescentAscent"]



class GameState(NamedTuple):
    """State of the two interacting particle systems (one replica).

    - **z** – ``{"x": (nx, dx), "y": (ny, dy)}`` particle positions (on their spaces).
    - **masses** – ``{"x": (nx,), "y": (ny,)}`` masses (uniform and constant in birth–death mode).
    - **log_masses** – their logarithms (the weighted reaction works in log-space).
    - **energy** – the value ``L[mu_x, mu_y]`` (named ``energy`` for the drivers).
    - **potential** – ``{"x": V_x(x_i), "y": V_y(y_j)}``, the first variations at the particles.
    - **drift** – ``{"x": ..., "y": ...}``: the transport moves ``z <- z - dt * drift``.
    - **grad_norm** – ``sqrt(||drift_x||^2_{L2(mu_x)} + ||drift_y||^2_{L2(mu_y)})``.
    - **support_gap** – ``max_j V_y(y_j) - min_i V_x(x_i)``: the Nash gap with deviations restricted
      to the particles' own positions (a cheap lower bound of :func:`~mfsample.games.nash_gap`).
    - **time**, **step**, **diverging**, **divergence_step**, **accept_prob**, **rng_key** – as in
      :class:`~mfsample.kernels.base.ParticleState`.
    - **ess_x**, **ess_y** – effective sample sizes ``1 / sum m^2`` of the masses.
    - **births_x**, **deaths_x**, **births_y**, **deaths_y** – birth–death events of the last step.
    """

    z: Any
    masses: Any
    log_masses: Any
    energy: jax.Array
    potential: Any
    drift: Any
    grad_norm: jax.Array
    support_gap: jax.Array
    time: jax.Array
    step: jax.Array
    diverging: jax.Array
    divergence_step: jax.Array
    accept_prob: jax.Array
    rng_key: jax.Array
    ess_x: jax.Array
    ess_y: jax.Array
    births_x: jax.Array
    deaths_x: jax.Array
    births_y: jax.Array
    deaths_y: jax.Array

    @property
    def strategies(self):
        """``{"x", "y", "masses_x", "masses_y"}``: the two particle measures (the kernel's sample)."""
        return {"x": self.z["x"], "y": self.z["y"],
                "masses_x": self.masses["x"], "masses_y": self.masses["y"]}


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
    if tx > 0:
        gx = gx - tx * xs.grad_log_reference(x)
    if ty > 0:
        gy = gy + ty * ys.grad_log_reference(y)
    drift = {"x": xs.tangent(x, gx), "y": -ys.tangent(y, gy)}
    return _Fields(value, {"x": vx, "y": vy}, drift)


def _support_gap(potential):
    return jnp.max(potential["y"]) - jnp.min(potential["x"])


def _grad_norm(drift, masses):
    nx = mean_field_norm({"x": drift["x"]}, masses["x"])
    ny = mean_field_norm({"y": drift["y"]}, masses["y"])
    return jnp.sqrt(nx**2 + ny**2)


def build_kernel(game: Game, step_size: float, temperature=(0.0, 0.0), rate=(0.0, 0.0),
                 mode: str = "weighted", birth: str = "clone"):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``, pure and un-jitted.

    ``z = {"x": (nx, dx), "y": (ny, dy)}`` (projected onto the spaces by their retraction);
    ``masses = {"x": ..., "y": ...}`` (entries ``None``: uniform).  ``temperature`` and ``rate`` are
    pairs ``(for_x, for_y)``.
    """
    check_reaction_mode(mode, birth)
    dt = step_size
    (tx, ty), (ax, ay) = temperature, rate
    weighted = mode == "weighted"
    spaces = {"x": game.x_space, "y": game.y_space}
    taus = {"x": tx, "y": ty}

    def init_fn(z, masses, rng_key):
        z = {k: spaces[k].retract(jnp.asarray(z[k])) for k in ("x", "y")}  # onto the spaces
        dtype = jnp.result_type(z["x"].dtype, z["y"].dtype)
        full = {}
        for k in ("x", "y"):
            n = z[k].shape[0]
            m = masses.get(k) if masses else None
            if m is not None and not weighted:
                raise ValueError("mode='birth_death' moves equally weighted particles: pass no masses "
                                 "(or use mode='weighted')")
            full[k] = jnp.full((n,), 1.0 / n, dtype) if m is None else jnp.asarray(m, dtype)
        f = game_fields(game, z, full, (tx, ty))
        zero = jnp.zeros((), jnp.int32)
        return GameState(
            z=z, masses=full, log_masses=jax.tree.map(jnp.log, full),
            energy=f.value, potential=f.potential, drift=f.drift,
            grad_norm=_grad_norm(f.drift, full), support_gap=_support_gap(f.potential),
            time=jnp.zeros((), f.value.dtype), step=zero,
            diverging=jnp.array(False), divergence_step=jnp.array(-1, jnp.int32),
            accept_prob=jnp.ones((), f.value.dtype), rng_key=rng_key,
            ess_x=effective_sample_size(full["x"]), ess_y=effective_sample_size(full["y"]),
            births_x=zero, deaths_x=zero, births_y=zero, deaths_y=zero,
        )

    def step_fn(state: GameState) -> GameState:
        rng_key, k_noise_x, k_noise_y, k_react_x, k_react_y = jax.random.split(state.rng_key, 5)
        # 1. transport with the drift of mu_k, noise, retraction onto the spaces
        moved = transport_step(state.z, state.drift, dt)
        z = {}
        for k, key in (("x", k_noise_x), ("y", k_noise_y)):
            if taus[k] > 0:
                noised, _ = langevin_noise(key, {k: moved[k]}, taus[k], dt)
                z[k] = spaces[k].retract_diffusion(noised[k])
            else:
                z[k] = spaces[k].retract(moved[k])
        # 2. reaction with the signed centred first variations of mu_k (x descends, y ascends)
        ux, _ = centered_first_variation(state.potential["x"], state.masses["x"])
        uy, _ = centered_first_variation(state.potential["y"], state.masses["y"])
        signed = {"x": (ux, ax, k_react_x), "y": (-uy, ay, k_react_y)}
        masses, log_masses = state.masses, state.log_masses
        events = {}
        if weighted:
            log_masses, masses = dict(log_masses), dict(masses)
            for k, (u, a, _) in signed.items():
                if a > 0:  # alpha = 0 keeps the masses bit for bit
                    log_masses[k] = fisher_rao_reweight(state.log_masses[k], u, a, dt)
                    masses[k] = jnp.exp(log_masses[k])
        else:
            for k, (u, a, key) in signed.items():
                if a == 0:  # no clock rings: the identity gather, skipped
                    continue
                key_bd, key_prior = jax.random.split(key)
                prior = {k: spaces[k].sample(key_prior, z[k].shape[0])} if birth == "prior" else None
                bd = birth_death_step(key_bd, {k: z[k]}, u, a, dt, birth=birth, prior_sample=prior)
                z[k] = bd.z[k]
                events[k] = (bd.births, bd.deaths)
        # 3. fields of mu_{k+1}; a non-finite proposal freezes the system for good
        f = game_fields(game, z, masses, (tx, ty))
        ok = all_finite(z, f.value, f.potential, f.drift, masses)
        diverging = state.diverging | ~ok
        move = ok & ~diverging
        step = state.step + 1
        proposal = state._replace(z=z, masses=masses, log_masses=log_masses, energy=f.value,
                                  potential=f.potential, drift=f.drift)
        new = tree_select(move, proposal, state)
        zero = jnp.zeros((), jnp.int32)
        bx, dx_ = events.get("x", (zero, zero))
        by, dy_ = events.get("y", (zero, zero))
        return new._replace(
            grad_norm=_grad_norm(new.drift, new.masses),
            support_gap=_support_gap(new.potential),
            time=(step * dt).astype(state.time.dtype),
            step=step,
            diverging=diverging,
            divergence_step=jnp.where((state.divergence_step < 0) & diverging, state.step,
                                      state.divergence_step),
            accept_prob=jnp.where(ok, 1.0, 0.0).astype(state.accept_prob.dtype),
            rng_key=rng_key,
            ess_x=effective_sample_size(new.masses["x"]),
            ess_y=effective_sample_size(new.masses["y"]),
            births_x=jnp.where(move, bx, 0), deaths_x=jnp.where(move, dx_, 0),
            births_y=jnp.where(move, by, 0), deaths_y=jnp.where(move, dy_, 0),
        )

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

    @property
    def width(self):
        return self.num_x

    def constrain(self, strategies):
        return strategies


def _sizes(width):
    if width is None:
        return None, None
    pair = tuple(width) if isinstance(width, (tuple, list)) else (width, width)
    if len(pair) != 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                             for n in pair):
        raise ValueError(f"width must be an integer >= 1 or a pair (nx, ny), got {width!r}")
    return int(pair[0]), int(pair[1])


class DescentAscent(MCMCKernel):
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

    def __init__(self, game: Game, *, step_size, temperature=0.0, rate=0.0, mode="weighted",
                 birth="clone"):
        if not isinstance(game, Game):
            raise TypeError(f"game must be a mfsample.games.Game, got {type(game).__name__}")
        check_reaction_mode(mode, birth)
        self.game = game
        self.step_size = check_step_size(step_size)
        self.temperatures = _pair("temperature", temperature, check_temperature)
        self.rates = _pair("rate", rate, check_rate)
        self.mode, self.birth = mode, birth
        self._setup: GameSetup | None = None
        self._sample_fn = None

    # scalar views for reports (ArviZ attributes); the pairs are in `temperatures` / `rates`
    @property
    def temperature(self):
        return self.temperatures[0] if self.temperatures[0] == self.temperatures[1] else self.temperatures

    @property
    def rate(self):
        return self.rates[0] if self.rates[0] == self.rates[1] else self.rates

    @property
    def model(self):
        return None

    @property
    def energy(self) -> GameSetup | None:
        """The :class:`GameSetup` of the last ``init`` (``None`` before)."""
        return self._setup

    @property
    def stat_fields(self):
        """State fields recorded at every draw besides ``energy``, ``time``, ``grad_norm``..."""
        if self.mode == "weighted":
            return ("support_gap", "ess_x", "ess_y")
        return ("support_gap", "births_x", "deaths_x", "births_y", "deaths_y")

    @property
    def default_fields(self):
        return (self.sample_field, "energy", "time", "grad_norm", "diverging") + self.stat_fields

    @property
    def sample_dims(self):
        """Dims for :func:`mfsample.to_inference_data` (``dims=kernel.sample_dims``)."""
        return {"x": ["particle_x", "x_dim"], "y": ["particle_y", "y_dim"],
                "masses_x": ["particle_x"], "masses_y": ["particle_y"]}

    @property
    def stat_descriptions(self):
        """Meaning of the recorded statistics (for ``sample_stats`` attributes)."""
        return {
            "energy": "value L[mu_x, mu_y] = sum_ij m_i l(x_i, y_j) m'_j of the two particle measures",
            "support_gap": "max_j V_y(y_j) - min_i V_x(x_i): Nash gap with deviations restricted to "
                           "the particles (a lower bound of the Nikaido-Isoda error)",
            "ess_x": "effective sample size 1 / sum_i m_i^2 of the x-masses",
            "ess_y": "effective sample size 1 / sum_j m_j^2 of the y-masses",
        }

    def build_energy(self, model_args=(), model_kwargs=None) -> GameSetup:
        """Sizes (``width``) and initial masses from the run's arguments."""
        if model_args:
            raise TypeError("DescentAscent takes no positional model arguments (the game holds everything)")
        kwargs = dict(model_kwargs or {})
        unknown = set(kwargs) - {"width", "masses_x", "masses_y"}
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)}; DescentAscent takes width=(nx, ny), "
                            "masses_x, masses_y")
        nx, ny = _sizes(kwargs.get("width"))
        return GameSetup(self.game, nx, ny, kwargs.get("masses_x"), kwargs.get("masses_y"))

    def build(self, setup: GameSetup):
        return build_kernel(setup.game, self.step_size, self.temperatures, self.rates, self.mode, self.birth)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        setup = self.build_energy(model_args, model_kwargs)
        batched = not is_prng_key(rng_key)
        if init_params is not None:
            init_params = {k: jnp.asarray(init_params[k]) for k in ("x", "y")}
            lead = 1 if batched else 0
            nx, ny = init_params["x"].shape[lead], init_params["y"].shape[lead]
            if setup.num_x is not None and (setup.num_x, setup.num_y) != (nx, ny):
                raise ValueError(f"init_params have sizes {(nx, ny)} but width={(setup.num_x, setup.num_y)}")
            setup = setup._replace(num_x=nx, num_y=ny)
        elif setup.num_x is None:
            raise ValueError("give the population sizes, width=n or width=(nx, ny), or init_params")
        masses = {}
        for k, n in (("x", setup.num_x), ("y", setup.num_y)):
            m = getattr(setup, f"masses_{k}")
            if m is not None:
                m = jnp.asarray(m)
                if m.shape != (n,) or not bool(jnp.all(m >= 0)) or abs(float(jnp.sum(m)) - 1) > 1e-5:
                    raise ValueError(f"masses_{k} must be ({n},) non-negative and sum to 1")
            masses[k] = m
        self._setup = setup
        init_fn, step_fn = self.build(setup)
        game = self.game

        def init_one(key, z0):
            key_x, key_y, key_run = jax.random.split(key, 3)
            if z0 is None:
                z0 = {"x": game.x_space.sample(key_x, setup.num_x),
                      "y": game.y_space.sample(key_y, setup.num_y)}
            return init_fn(z0, masses, key_run)

        if batched:  # compiled once rather than dispatched op by op
            state = jax.jit(jax.vmap(init_one))(rng_key, init_params)
            self._sample_fn = jax.vmap(step_fn)
        else:
            state = jax.jit(init_one)(rng_key, init_params)
            self._sample_fn = step_fn
        return state

    def sample(self, state, model_args, model_kwargs):
        return self._sample_fn(state)

    def postprocess_fn(self, model_args, model_kwargs):
        """The identity: the particles are recorded as they are (already on their spaces)."""
        return lambda strategies: strategies

    def get_diagnostics_str(self, state):
        return "L {:.5g}, support gap {:.3g}{}".format(
            float(state.energy), float(state.support_gap), ", diverging" if bool(state.diverging) else "")
