"""One state design for every dynamic: common fields declared once, extensions by inheritance.

A state is a frozen dataclass registered as a JAX pytree (:func:`state_class`).  :class:`State`
holds what every dynamic has (positions, masses, energy, drift, time, divergence bookkeeping, the
PRNG key); a dynamic that needs more declares a subclass with only its own fields:

* :class:`ParticleState` (Wasserstein flow, mean-field Langevin): ``log_prior`` and the state of an
  optional optax ``transport``;
* ``KineticState`` (:mod:`~mfsample.kernels.kinetic`): ``momentum``;
* ``WFRState`` (:mod:`~mfsample.kernels.wfr`): the reaction's fields;
* ``GameState`` (:mod:`~mfsample.games.descent_ascent`): the two players' fields.

States keep the NamedTuple conveniences that NumPyro's ``MCMC`` and user code rely on
(``_replace``, ``_asdict``, ``_fields``).  :func:`commit` is the divergence bookkeeping, written
once for every dynamic: a proposal whose fields are not all finite is refused for good.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["state_class", "State", "ParticleState", "commit", "all_finite", "tree_select"]


class _NamedFields:
    """NamedTuple-style access for dataclass states."""

    __slots__ = ()

    def _replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def _asdict(self) -> dict:
        return {name: getattr(self, name) for name in self._fields}


def state_class(cls):
    """Make ``cls`` a frozen, keyword-only dataclass registered as a JAX pytree (every field is data)."""
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    cls._fields = tuple(f.name for f in dataclasses.fields(cls))
    return jax.tree_util.register_dataclass(cls)


@state_class
class State(_NamedFields):
    """Fields shared by every dynamic (one replica of the particle system).

    - **z** – particles, a dict of arrays with the particle axis leading (unconstrained).
    - **masses** – particle masses ``m_j`` (``None``: uniform ``1/n``).
    - **energy** – the objective at ``z``: ``E(theta_1..n)``, the mean negative log-likelihood per
      datum (a game's value ``L``).
    - **drift** – the deterministic velocity field applied at ``z``: ``z <- z - dt * drift``.
    - **grad_norm** – ``||drift||_{L2(mu_n)}``: for the Wasserstein flow ``dE/dt = -grad_norm^2``.
    - **time** – mean-field time ``t = step * dt``.
    - **step** – number of steps taken since ``init``.
    - **diverging** – the system became non-finite; it is frozen from then on.
    - **divergence_step** – first diverging step (``-1`` if none).
    - **accept_prob** – Metropolis acceptance probability of the last step (1 when unadjusted).
    - **rng_key** – PRNG key for the next step.
    """

    z: Any
    masses: Any
    energy: jax.Array
    drift: Any
    grad_norm: jax.Array
    time: jax.Array
    step: jax.Array
    diverging: jax.Array
    divergence_step: jax.Array
    accept_prob: jax.Array
    rng_key: jax.Array


@state_class
class ParticleState(State):
    """:class:`State` of a particle dynamic driven by a model's energy and prior.

    - **log_prior** – ``sum_j log mu0(theta_j)`` at ``z`` (0 when the dynamic ignores the prior).
    - **opt_state** – state of an optax ``transport`` transformation (``None`` for the Euler step).
    """

    log_prior: jax.Array
    opt_state: Any = None

    @property
    def particles(self):
        """Positions and masses in one dict (``{**z, "masses": m}``; uniform when ``masses`` is None).

        Dynamics whose masses evolve use this as their ``sample_field`` so that every draw
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


def all_finite(*trees):
    """True when every entry of every floating leaf of the trees is finite (other leaves always are).

    One reduction per leaf and no boolean array: ``x * 0`` is ``0`` for a finite ``x`` and NaN
    for ``+-inf`` and NaN, so the sum of the products is ``0`` exactly when every entry is finite
    (a sum of zeros cannot overflow, as a sum of the entries could).
    """
    total = jnp.zeros((), jnp.float32)
    for x in jax.tree.leaves(trees):
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            total = total + jnp.sum(x * 0).astype(jnp.float32)
    return total == 0


def tree_select(pred, on_true, on_false):
    """``pred ? on_true : on_false`` leafwise, for a scalar predicate."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def commit(state: State, proposal: State, ok, step_size, *, rng_key, accept=True, accept_prob=1.0):
    """Take one step: ``proposal`` replaces ``state`` unless it is rejected or not finite.

    ``ok`` says the proposal is finite.  A non-finite proposal sets ``diverging`` for good and
    leaves every field where it was (no NaN ever enters the state), and a system that diverged
    stays frozen while time goes on.  ``accept`` / ``accept_prob`` are a Metropolis decision
    (``accept_prob`` is recorded as 0 for a non-finite proposal).  The step counter, the time
    ``t = step * dt``, the divergence record and the key are set here, whatever the proposal says.

    Returns ``(new_state, moved)``, ``moved`` the scalar flag that the proposal was taken.
    """
    diverging = state.diverging | ~ok
    moved = ok & ~diverging & accept
    step = state.step + 1
    new = tree_select(moved, proposal, state)
    new = new._replace(
        time=(step * step_size).astype(state.time.dtype),
        step=step,
        diverging=diverging,
        divergence_step=jnp.where((state.divergence_step < 0) & diverging, state.step, state.divergence_step),
        accept_prob=jnp.where(ok, jnp.asarray(accept_prob, state.accept_prob.dtype), 0.0),
        rng_key=rng_key,
    )
    return new, moved
