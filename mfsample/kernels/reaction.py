"""The Fisher–Rao (reaction) half of the Wasserstein–Fisher–Rao dynamics.

    d_t mu = div(mu grad V) - alpha (V - Vbar) mu,          Vbar = ∫ V dmu,

splits into the transport step (:mod:`~mfsample.kernels.steps`) and the reaction
``d_t mu = -alpha (V - Vbar) mu``, which moves mass between particles without moving them.
Two particle discretisations of the reaction over a step ``dt`` with ``V`` frozen:

* :func:`fisher_rao_reweight` – weighted particles, the exact solution
  ``m_j <- m_j exp(-alpha dt (V_j - Vbar)) / Z``;
* :func:`birth_death_step` – equally weighted particles, killed or duplicated at rate
  ``alpha |V_j - Vbar|`` (Rotskoff, Jelassi, Bruna & Vanden-Eijnden, ICML 2019).

Each is a small pure function of the particle pytree ``z`` (particle axis leading), O(n) work
(plus one or two sorts of ``n`` packed keys in the birth–death step), un-jitted.

Theory: ``docs/theory/wfr.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from .. import validation
from . import threefry
from .ordering import argsort_uint24

__all__ = [
    "centered_first_variation",
    "fisher_rao_reweight",
    "valid_log_masses",
    "effective_sample_size",
    "fire_probability",
    "BirthDeath",
    "ReactionDraws",
    "quiet_slots",
    "reaction_draws",
    "birth_death_step",
    "MODES",
    "BIRTHS",
    "check_rate",
    "check_reaction_mode",
]


def centered_first_variation(v, masses=None):
    """``(V_j - Vbar, Vbar)`` with ``Vbar = sum_j m_j V_j`` (``m_j = 1/n`` when ``masses`` is None)."""
    vbar = jnp.mean(v) if masses is None else jnp.sum(masses * v)
    return v - vbar, vbar


def fisher_rao_reweight(log_masses, v_centered, rate, dt):
    """Exact reaction step for weighted particles, in log-space.

        log m_j <- log m_j - alpha dt (V_j - Vbar) - log sum_k m_k exp(-alpha dt (V_k - Vbar))

    The masses ``exp(log m)`` stay non-negative, finite and sum to one whatever ``alpha dt``
    (the normaliser is a log-sum-exp); a zero mass (``log m_j = -inf``) stays zero, and a mass may
    underflow to 0 while its log stays finite.
    """
    log_m = log_masses - rate * dt * v_centered
    return log_m - logsumexp(log_m)


def valid_log_masses(log_masses):
    """True when no log-mass is NaN or ``+inf``.  ``-inf`` is legal: a particle whose mass has died
    (``m_j = 0``, given or underflowed) keeps ``log m_j = -inf`` through every reweighting."""
    return jnp.all(~jnp.isnan(log_masses) & (log_masses < jnp.inf))


def effective_sample_size(masses):
    """``1 / sum_j m_j^2``: ``n`` for uniform masses, 1 when one particle holds all the mass."""
    return 1.0 / jnp.sum(masses**2)


def fire_probability(v_centered, rate, dt):
    """``1 - exp(-alpha dt |V_j - Vbar|)``: the chance that particle ``j``'s clock rings within ``dt``."""
    return -jnp.expm1(-rate * dt * jnp.abs(v_centered))


class BirthDeath(NamedTuple):
    """Result of :func:`birth_death_step`.

    - **z** – the particles after the step.
    - **source** – ``(n,)`` index: slot ``i`` holds a copy of pre-step particle ``source[i]``
      (meaningless where ``fresh``); gather any other per-particle array with it.  Null events
      (a particle replaced by itself) leave ``source[i] = i``.
    - **fresh** – ``(n,)`` slots refilled by a draw from the prior (``birth="prior"``).
    - **killed** – ``(n,)`` particles whose clock rang with ``V_j > Vbar``.
    - **duplicated** – ``(n,)`` particles whose clock rang with ``V_j < Vbar`` and were copied.
    - **births**, **deaths** – ``sum(duplicated)``, ``sum(killed)``.
    """

    z: Any
    source: jax.Array
    fresh: jax.Array
    killed: jax.Array
    duplicated: jax.Array
    births: jax.Array
    deaths: jax.Array


class ReactionDraws(NamedTuple):
    """The random numbers of one birth–death step, ``(n,)`` each.

    - **fire** – uniforms on ``[0, 1)`` deciding which clocks ring;
    - **source** – uniform indices in ``0..n-1``: the particle a dying slot copies;
    - **target** – uniform indices: the particle a birth overwrites (itself: a null event);
    - **order** – uniforms ordering the quiet slots;
    - **ranking** – the slots ranked by ``(order_j, j)``: a uniformly random permutation (up to
      the ties of 24-bit keys, broken by index), a function of ``order`` alone.
    """

    fire: jax.Array
    source: jax.Array
    target: jax.Array
    order: jax.Array
    ranking: jax.Array


def reaction_draws(rng_key, n: int) -> ReactionDraws:
    """:class:`ReactionDraws` from one call of the generator (``4 n`` random 32-bit words).

    Uniforms keep the top 24 bits, ``u = (bits >> 8) / 2^24`` (exact in float32, ``u < 1``);
    indices are ``bits mod n``, uniform up to a relative bias below ``n / 2^32`` (1.5e-5 at a
    million particles).  One call instead of one per kind matters on a CPU, where each call of
    JAX's counter-based generator is a loop of its own.  The ``ranking`` is
    :func:`~.ordering.argsort_uint24` of the order's 24-bit keys (one sort of packed 32-bit words
    up to 256 slots, two beyond: a seventh of ``jnp.argsort``'s time at 256 slots, half at 65,536).
    """
    bits = threefry.bits(rng_key, (4, n))
    unit = (bits[0::3] >> 8).astype(jnp.float32) * (1.0 / 2**24)  # rows 0 and 3
    index = (bits[1:3] % jnp.uint32(n)).astype(jnp.int32)
    ranking = argsort_uint24(bits[3] >> 8)
    return ReactionDraws(fire=unit[0], source=index[0], target=index[1], order=unit[1], ranking=ranking)


def quiet_slots(ranking, fire):
    """The quiet slots (``~fire``) in the order of ``ranking``, first; the entries after them are 0.

    With ``ranking`` the slots ranked by ``(order_j, j)`` (:class:`ReactionDraws`), entry
    ``r < #quiet`` is the ``r``-th quiet slot in that ranking: the same slots as a stable sort of
    the keys with the firing slots keyed last, without a sort that depends on ``fire`` (so the
    ranking can be drawn before the step's first variation is known).
    """
    n = ranking.shape[0]
    quiet_ranked = ~fire[ranking]
    place = jnp.where(quiet_ranked, jnp.cumsum(quiet_ranked) - 1, n)  # n: dropped
    return jnp.zeros((n,), ranking.dtype).at[place].set(ranking, mode="drop")


def birth_death_step(
    rng_key, z, v_centered, rate, dt, *, birth="clone", prior_sample=None, draws: ReactionDraws | None = None
) -> BirthDeath:
    """Birth–death reaction step for ``n`` equally weighted particles (``n`` stays constant).

    Every particle's clock rings independently with probability
    ``p_j = 1 - exp(-alpha dt |V_j - Vbar|)`` (:func:`fire_probability`); then

    * ``V_j > Vbar`` (**death**): slot ``j`` is refilled by a copy of a particle chosen uniformly
      among all ``n`` (``birth="clone"``) or by a fresh draw from ``mu0`` (``birth="prior"``, taken
      from ``prior_sample``, which restores full support);
    * ``V_j < Vbar`` (**birth**): particle ``j`` is copied over a uniformly chosen particle.

    Each event changes the empirical measure by ``(delta_copy - delta_removed) / n``; choosing
    the other side uniformly among *all* ``n`` particles (itself being a null event, still counted)
    makes the first-order drift exact for every ``n``:
    ``E[Δmu_n] = -alpha dt (V - Vbar) mu_n + O((alpha dt)^2)`` (``birth="clone"``), the reaction
    term of the WFR equation (choosing among the ``n - 1`` others would speed it up by ``n/(n-1)``).

    **Conflicts.**  All events are decided from the pre-step state and applied at once through
    one gather (every copy reads the pre-step particles), so their order is irrelevant.  A slot
    may be written once only; this is guaranteed, with no event discarded, by drawing the slots
    that births overwrite (when not themselves) *without replacement* among the quiet particles
    (those whose clock did not ring): a random permutation of the quiet slots (ranked by ``n``
    uniform keys, :func:`quiet_slots`) is assigned to the duplicating particles in index order.  Dying and
    duplicating particles are therefore never overwritten by a birth; this changes the law of
    the overwritten particle by ``O(alpha dt)`` in an event of probability ``O(alpha dt)``: the
    bias on ``E[Δmu_n]`` is ``O((alpha dt)^2)``, the order of the splitting error, and no
    particle, index or event type is favoured.  If more particles duplicate than there are quiet
    slots (only when ``alpha dt |V - Vbar|`` is O(1)), the surplus births (highest indices) are
    dropped and not counted.

    :param rng_key: PRNG key.
    :param z: particles, a pytree with the particle axis leading.
    :param v_centered: ``(n,)`` array ``V_j - Vbar``.
    :param rate: ``alpha >= 0``.  ``alpha = 0`` returns ``z`` unchanged (identity gather).
    :param dt: step size.
    :param birth: ``"clone"`` or ``"prior"``.
    :param prior_sample: with ``birth="prior"``, particles drawn iid from ``mu0`` (same pytree
        structure and shapes as ``z``); slot ``j`` takes ``prior_sample``'s particle ``j``.
    :param draws: the step's :class:`ReactionDraws` when drawn ahead (they must be
        ``reaction_draws(rng_key, n)``); ``None`` draws them from ``rng_key``.
    """
    if birth not in ("clone", "prior"):
        raise ValueError(f"birth must be 'clone' or 'prior', got {birth!r}")
    if birth == "prior" and prior_sample is None:
        raise ValueError("birth='prior' needs prior_sample (particles drawn from mu0)")
    n = v_centered.shape[0]
    draws = reaction_draws(rng_key, n) if draws is None else draws
    idx = jnp.arange(n)
    fire = draws.fire < fire_probability(v_centered, rate, dt)
    killed = fire & (v_centered > 0)
    dup = fire & (v_centered < 0)
    # deaths: a uniformly chosen particle (among all n; itself = a null event) is cloned into the slot
    source = jnp.where(killed, draws.source, idx)
    # births: overwrite a uniformly chosen particle; itself (probability 1/n) is a null event, the
    # others are drawn without replacement among the quiet slots: the r-th moving birth takes the
    # r-th slot of a random permutation of the quiet slots (ranked by their uniform keys)
    moving = dup & (draws.target != idx)
    rank = jnp.cumsum(moving) - 1
    num_quiet = n - jnp.sum(fire)
    placed = moving & (rank < num_quiet)
    duplicated = dup & (placed | ~moving)
    victim = jnp.where(placed, quiet_slots(draws.ranking, fire)[jnp.clip(rank, 0, n - 1)], n)  # n: dropped
    source = source.at[victim].set(idx, mode="drop")
    fresh = killed if birth == "prior" else jnp.zeros((n,), bool)

    def gather(x, x_prior=None):
        out = jnp.take(x, source, axis=0)
        if x_prior is None:
            return out
        mask = fresh.reshape((n,) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x_prior, out)

    if birth == "prior":
        z_new = jax.tree.map(gather, z, prior_sample)
    else:
        z_new = jax.tree.map(gather, z)
    return BirthDeath(
        z=z_new,
        source=source,
        fresh=fresh,
        killed=killed,
        duplicated=duplicated,
        births=jnp.sum(duplicated).astype(jnp.int32),
        deaths=jnp.sum(killed).astype(jnp.int32),
    )


MODES = ("birth_death", "weighted")
BIRTHS = ("clone", "prior")


#: the reaction rate ``alpha``: a finite real number >= 0 (the shared check)
check_rate = validation.rate


def check_reaction_mode(mode: str, birth: str):
    """``mode`` in :data:`MODES`, ``birth`` in :data:`BIRTHS`, and ``birth="prior"`` only with birth-death."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if birth not in BIRTHS:
        raise ValueError(f"birth must be one of {BIRTHS}, got {birth!r}")
    if mode == "weighted" and birth != "clone":
        raise ValueError("birth='prior' is a birth-death option; weighted particles are never reborn")
    return mode, birth
