"""Wasserstein–Fisher–Rao dynamics: transport plus mass reaction.

    d_t mu = div(mu grad V) + tau Δ mu - tau div(mu grad log mu0) - alpha (V - Vbar) mu,

with ``V(theta; mu) = dE/dm`` the first variation (autodiff of ``E`` in the particle masses) and
``Vbar = ∫ V dmu``.  One step is the explicit (Lie) splitting of the two operators, both driven by
the fields of the current measure ``mu_k``:

1. transport: ``theta_j <- theta_j - dt drift_j (+ sqrt(2 tau dt) xi_j)`` exactly as
   :mod:`~mfsample.kernels.langevin` (``drift`` evaluated at ``mu_k``);
2. reaction with ``V_j - Vbar`` evaluated at ``mu_k``: :func:`~.reaction.fisher_rao_reweight`
   (``mode="weighted"``) or :func:`~.reaction.birth_death_step` (``mode="birth_death"``);
3. evaluate ``E``, the drift and ``V`` at the new measure (the forward pass is shared).

``alpha = 0`` is the Wasserstein flow / mean-field Langevin step, draw for draw.  In the
mean-field scaling with 1-homogeneous units and a full-support initialisation, WFR's stationary
points are global minimisers (Chizat 2022; Rotskoff et al. 2019).

Theory: ``docs/theory/wfr.md``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.infer.util import constrain_fn

from .. import validation
from ..energy import ParticleEnergy
from . import threefry
from .base import ParticleKernel, init_particle_state
from .contract import PARTICLE_STATISTICS, Statistic
from .parameters import is_zero
from .reaction import (
    birth_death_step,
    centered_first_variation,
    check_reaction_mode,
    effective_sample_size,
    fisher_rao_reweight,
    reaction_draws,
    valid_log_masses,
)
from .state import ParticleState, commit, state_class
from .steps import evaluate_drift, langevin_noise, noise_scales, transport_step

__all__ = ["WFRState", "build_kernel", "build_kernel_with_draws", "check_options", "WassersteinFisherRao"]


@state_class
class WFRState(ParticleState):
    """:class:`~mfsample.kernels.state.ParticleState` plus the reaction's fields:

    - **log_masses** – ``log m_j`` (``mode="weighted"``; ``None`` for birth–death); ``-inf`` for a
      particle of zero mass (legal: mass that has died).
    - **first_variation** – ``V_j = dE/dm_j`` at ``(z, masses)``.
    - **vbar** – ``Vbar = sum_j m_j V_j``.
    - **births**, **deaths** – birth–death events of the last step (0 in weighted mode).
    - **ess** – effective sample size of the masses ``1 / sum_j m_j^2`` (``n`` for birth–death).
    """

    log_masses: Any
    first_variation: jax.Array
    vbar: jax.Array
    births: jax.Array
    deaths: jax.Array
    ess: jax.Array


VBAR = Statistic("vbar", "Vbar = sum_j m_j V(theta_j; mu_n), the mean first variation")
ESS = Statistic("ess", "effective sample size of the masses 1 / sum_j m_j^2 (n for equal masses)")
BIRTHS = Statistic("births", "birth-death events of the last step: duplicated particles (>= 0)")
DEATHS = Statistic("deaths", "birth-death events of the last step: killed particles (>= 0)")


def check_options(step_size, rate, temperature=0.0, mode="birth_death", birth="clone"):
    """Validate the settings of both faces: ``(dt, alpha, tau, mode, birth)``."""
    mode, birth = check_reaction_mode(mode, birth)
    return (validation.step_size(step_size), validation.rate(rate), validation.temperature(temperature), mode, birth)


def check_reaction_energy(energy: ParticleEnergy):
    """The reaction needs ``dE/dm_j`` (a ``masses`` keyword) and the mean-field scaling."""
    if not energy.accepts_masses:
        raise TypeError(
            "Wasserstein-Fisher-Rao needs the first variation V_j = dE/dm_j, so the model must take "
            "a `masses` keyword (like mfsample.models.shallow_network); this one has none"
        )
    if abs(energy.exponent - 1.0) > 1e-12:
        raise ValueError(
            f"the Fisher-Rao reaction is defined for the mean-field scaling (p = 1); this energy has "
            f"p = {energy.exponent}: with f = n^(1-p) sum_j m_j phi_j the measure's output grows with "
            "n and V = dE/dm has no mean-field limit; use scaling='mean_field'"
        )


def _initial_masses(masses, n, weighted):
    """``(masses, log_masses)`` at ``t = 0``: uniform or given when weighted; none for birth–death."""
    if weighted:
        masses = jnp.full((n,), 1.0 / n) if masses is None else validation.masses(masses, n)
        return masses, jnp.log(masses)
    if masses is not None:
        raise ValueError(
            "mode='birth_death' moves equally weighted particles: pass no `masses` (or use mode='weighted')"
        )
    return None, None


def _reaction_fields(energy, z, masses, log_masses, v, ess, births, deaths) -> dict:
    """The reaction's state fields at ``(z, masses)`` (``ess`` as given for birth–death)."""
    _, vbar = centered_first_variation(v, masses)
    return dict(
        masses=masses,
        log_masses=log_masses,
        first_variation=v,
        vbar=vbar,
        births=births,
        deaths=deaths,
        ess=ess if log_masses is None else effective_sample_size(masses),
    )


def build_kernel(
    energy: ParticleEnergy,
    step_size: float,
    rate: float,
    temperature: float = 0.0,
    mode: str = "birth_death",
    birth: str = "clone",
    shared_step_scale=1.0,
):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``, pure and un-jitted.

    The settings are validated by :func:`check_options` (both faces).  The model's shared sites
    are transported (time scale ``shared_step_scale``) and never take part in the reaction, which
    acts on the particles' masses only.
    """
    init_fn, draws_fn, step_with_draws = build_kernel_with_draws(
        energy, step_size, rate, temperature, mode, birth, shared_step_scale
    )
    return init_fn, lambda state: step_with_draws(state, draws_fn(state))


def build_kernel_with_draws(
    energy: ParticleEnergy,
    step_size: float,
    rate: float,
    temperature: float = 0.0,
    mode: str = "birth_death",
    birth: str = "clone",
    shared_step_scale=1.0,
):
    """``(init_fn, draws_fn(state) -> draws, step_fn(state, draws) -> state)``: :func:`build_kernel`
    with the reaction's random numbers drawn by a function of their own.

    ``draws_fn`` reads ``state.rng_key`` only: the birth–death step's
    :class:`~.reaction.ReactionDraws` (its uniforms, indices and the ranking of the slots, the
    reaction's sort), ``()`` in weighted mode.  ``step_fn(state, draws_fn(state))`` is
    :func:`build_kernel`'s step, number for number; a driver running many steps in one programme
    can draw the next step's numbers beside the current step, off its critical path.
    """
    dt, rate, tau, mode, birth = check_options(step_size, rate, temperature, mode, birth)
    check_reaction_energy(energy)
    n, weighted = energy.width, mode == "weighted"
    eta = validation.real("shared_step_scale", shared_step_scale, positive=True)
    scales = noise_scales(energy, eta)

    def init_fn(z, masses, rng_key):
        masses, log_masses = _initial_masses(masses, n, weighted)
        d = evaluate_drift(energy, z, masses, tau, shared_step_scale=eta, with_first_variation=True)
        base = init_particle_state(energy, z, masses, rng_key, tau, shared_step_scale=eta, drift=d)
        zero = jnp.zeros((), jnp.int32)
        ess = jnp.asarray(float(n), base.energy.dtype)
        fields = _reaction_fields(energy, z, masses, log_masses, d.first_variation, ess, zero, zero)
        fields["ess"] = fields["ess"].astype(base.energy.dtype)
        return WFRState(**{**base._asdict(), **fields})

    def reaction_keys(rng_key):
        """``(key of the birth-death draws, key of the fresh particles)`` of a step from ``rng_key``
        (the keys are those of MeanFieldLangevin plus the reaction's)."""
        key_react = threefry.split(rng_key, 3)[2]
        if birth != "prior":
            return key_react, None
        key, key_prior = jax.random.split(key_react)
        return key, key_prior

    def draws_fn(state):
        if weighted:
            return ()
        return reaction_draws(reaction_keys(state.rng_key)[0], n)

    def react(state, z, draws):
        """Reaction with ``V - Vbar`` of ``mu_k``: ``(z, masses, log_masses, births, deaths)``."""
        u, _ = centered_first_variation(state.first_variation, state.masses)
        zero = jnp.zeros((), jnp.int32)
        if weighted:
            if is_zero(rate):  # alpha = 0 keeps the masses bit for bit
                return z, state.masses, state.log_masses, zero, zero
            log_masses = fisher_rao_reweight(state.log_masses, u, rate, dt)
            # a traced alpha may be 0 too: keep the masses bit for bit then as well
            log_masses = jnp.where(rate == 0, state.log_masses, log_masses)
            masses = jnp.where(rate == 0, state.masses, jnp.exp(log_masses))
            return z, masses, log_masses, zero, zero
        prior = None
        if birth == "prior":  # fresh particles from mu0, from a key of their own
            prior = energy.particle_part(energy.sample_prior(reaction_keys(state.rng_key)[1]))
        # the events' random numbers are the step's `draws` (draws_fn), so no key is passed
        bd = birth_death_step(None, energy.particle_part(z), u, rate, dt, birth=birth, prior_sample=prior, draws=draws)
        return {**z, **bd.z}, None, None, bd.births, bd.deaths

    def step_fn(state, draws):
        rng_key, key_noise, _ = threefry.split(state.rng_key, 3)
        # 1. transport with the drift of mu_k (the keys are those of MeanFieldLangevin)
        z = transport_step(state.z, state.drift, dt)
        if not is_zero(tau):
            z, _ = langevin_noise(key_noise, z, tau, dt, energy.frozen, scales)
        # 2. reaction with V - Vbar of mu_k
        z, masses, log_masses, births, deaths = react(state, z, draws)
        # 3. fields of mu_{k+1}; a non-finite V or mass is a divergence (a zero mass is not:
        #    its log-mass is -inf for good)
        d = evaluate_drift(energy, z, masses, tau, shared_step_scale=eta, with_first_variation=True)
        v = d.first_variation
        proposal = state._replace(
            z=z,
            energy=d.energy,
            log_prior=d.log_prior,
            drift=d.drift,
            grad_norm=d.grad_norm,
            **_reaction_fields(energy, z, masses, log_masses, v, state.ess, births, deaths),
        )
        ok = d.all_finite(z, v) & (True if log_masses is None else valid_log_masses(log_masses))
        new, moved = commit(state, proposal, ok, dt, rng_key=rng_key)
        return new._replace(births=jnp.where(moved, births, 0), deaths=jnp.where(moved, deaths, 0))

    return init_fn, draws_fn, step_fn


def _with_masses(constrain, p):
    """Apply ``constrain`` to the positions of ``{**z, "masses": m}`` and keep the masses."""
    p = dict(p)
    m = p.pop("masses")
    out = constrain(p)
    out = dict(out) if isinstance(out, dict) else {"theta": out}
    return {**out, "masses": m}


class WassersteinFisherRao(ParticleKernel):
    r"""Wasserstein–Fisher–Rao dynamics of a mean-field particle system, as a NumPyro kernel.

    Transport along ``-grad V`` (with Langevin noise at temperature ``tau > 0``) composed with
    the Fisher–Rao reaction ``d_t mu = -alpha (V - Vbar) mu`` (see the module docstring).

    * ``mode="weighted"``: ``m_j <- m_j exp(-alpha dt (V_j - Vbar)) / Z`` (log-space).  Every
      draw carries the masses (``samples["masses"]``) and the deterministic sites computed with
      them; the state records their effective sample size ``ess``.
    * ``mode="birth_death"``: equally weighted particles are killed (``V_j > Vbar``) or
      duplicated (``V_j < Vbar``) with probability ``1 - exp(-alpha dt |V_j - Vbar|)``, the
      other side of each event being a uniformly chosen other particle; ``birth="prior"``
      refills a killed slot with a fresh draw from ``mu0`` instead of a clone (full support).
      Conflicts are resolved as in :func:`~mfsample.kernels.reaction.birth_death_step`.  The
      state records ``births`` and ``deaths`` of the last step.

    Both record ``vbar`` (``∫ V dmu``).  ``rate=0`` reproduces :class:`~mfsample.WassersteinFlow`
    (``temperature=0``) / :class:`~mfsample.MeanFieldLangevin` run with the same masses, draw for
    draw.  The model must take a ``masses`` keyword and use the mean-field scaling.

    References: Rotskoff, Jelassi, Bruna & Vanden-Eijnden (ICML 2019); Chizat (2022), "Sparse
    optimization on measures with over-parameterized gradient descent"; Liero, Mielke & Savaré (2018).

    :param model: NumPyro model with latent sites in ``particle_plate`` and a ``masses`` keyword;
        or ``energy_fn(particles, masses, *args, **kwargs)`` + ``prior`` + ``width``.
    :param float step_size: ``dt`` (> 0), mean-field time.
    :param float rate: reaction rate ``alpha`` (>= 0).
    :param float temperature: ``tau`` (>= 0).
    :param str mode: ``"birth_death"`` or ``"weighted"``.
    :param str birth: ``"clone"`` or ``"prior"`` (birth–death only).

    Example::

        >>> import jax, mfsample as mf
        >>> from mfsample.kernels.wfr import WassersteinFisherRao
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=64)
        >>> kernel = WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0)
        >>> sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, width=16,
        ...                   num_steps=20, progress_bar=False)
        >>> sim.samples["w"].shape
        (1, 20, 16, 3)
    """

    hyperparameter_names = ("step_size", "rate", "temperature", "mode", "birth", "shared_step_scale")
    parameter_names = ("step_size", "rate", "temperature", "shared_step_scale")

    def __init__(self, model=None, *, step_size, rate, temperature=0.0, mode="birth_death", birth="clone", **kwargs):
        super().__init__(model, step_size=step_size, **kwargs)
        if self.transport is not None or self.batch_size is not None:
            raise ValueError(
                "WassersteinFisherRao takes the Euler transport on the full data: `transport` (optax) "
                "and `batch_size` (minibatches) are not supported (V = dE/dm needs the full energy)"
            )
        self.rate, self.temperature, self.mode, self.birth = rate, temperature, mode, birth
        self._check_parameters()

    def _check_parameters(self):
        self.step_size, self.rate, self.temperature, self.mode, self.birth = check_options(
            self.step_size, self.rate, self.temperature, self.mode, self.birth
        )

    @property
    def sample_field(self):
        return "particles" if self.mode == "weighted" else "z"

    @property
    def statistics(self):
        """The particle statistics, then ``vbar`` and ``ess`` (weighted) or ``births``/``deaths``."""
        return PARTICLE_STATISTICS + ((VBAR, ESS) if self.mode == "weighted" else (VBAR, BIRTHS, DEATHS))

    def build(self, energy, parameters=None):
        p = self.step_parameters(parameters)
        return build_kernel(
            energy, p["step_size"], p["rate"], p["temperature"], self.mode, self.birth, p["shared_step_scale"]
        )

    def build_with_draws(self, energy, parameters=None):
        """``(draws_fn, step_fn(state, draws))`` of :func:`build_kernel_with_draws` for birth–death,
        whose step draws uniforms, indices and a ranking of the slots; ``None`` in weighted mode
        (nothing worth drawing ahead)."""
        if self.mode == "weighted":
            return None
        p = self.step_parameters(parameters)
        _, draws_fn, step_fn = build_kernel_with_draws(
            energy, p["step_size"], p["rate"], p["temperature"], self.mode, self.birth, p["shared_step_scale"]
        )
        return draws_fn, step_fn

    def draw_fn(self, energy, model_args, model_kwargs, *, deterministic: bool = True):
        """Birth–death: as the other kernels.  Weighted: ``{**z, "masses": m}`` -> constrained
        sites, ``masses`` and the deterministic sites computed with those masses."""
        if self.mode != "weighted":
            return super().draw_fn(energy, model_args, model_kwargs, deterministic=deterministic)
        if self._model is None or not deterministic:
            constrain = super().draw_fn(energy, model_args, model_kwargs, deterministic=deterministic)
            return lambda p: _with_masses(constrain, p)
        model, args, kwargs = self._model, tuple(model_args), dict(model_kwargs or {})

        def post_model(p):
            p = dict(p)
            m = p.pop("masses")
            out = constrain_fn(model, args, {**kwargs, "masses": m}, p, return_deterministic=True)
            return {**out, "masses": m}

        return post_model

    def get_diagnostics_str(self, state):
        extra = (
            f", ess {float(state.ess):.3g}"
            if self.mode == "weighted"
            else f", +{int(state.births)}/-{int(state.deaths)}"
        )
        return "energy {:.5g}, Vbar {:.3g}{}{}".format(
            float(state.energy), float(state.vbar), extra, ", diverging" if bool(state.diverging) else ""
        )
