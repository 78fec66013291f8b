"""Warnings about a run that went wrong without failing, read from what the run recorded.

A particle run can end with finite numbers and still be meaningless.  NumPyro warns when HMC
diverges; these checks do the same for the ways a particle dynamic degenerates.  Each one is a
pure function of the recorded statistics (``(chain, draw)`` arrays named as the kernel declares
them, :mod:`~mfsample.kernels.contract`) or of the final state, and returns messages (none when
the run is healthy):

* :func:`divergence_messages` – chains whose particles became non-finite (frozen there).  When the
  *initial* state is already non-finite the step size is not the cause: the message says what is
  non-finite at initialisation (positions, energy, drift) and the size of the data;
* :func:`acceptance_messages` – Metropolis acceptance averaging below :data:`MIN_ACCEPT_RATE`
  over the run: the chain barely moves;
* :func:`mass_messages` – the effective sample size ``1 / sum_j m_j^2`` of the masses falling
  below :data:`MIN_MASS_ESS`: one particle holds nearly all the mass;
* :func:`reaction_messages` – birth–death steps replacing :data:`MAX_EVENT_FRACTION` of the
  particles or more: ``rate * dt * |V - Vbar|`` is not small, the step no longer resolves the
  reaction and clones take over the system;
* :func:`collapse_messages` – at most ``max(1, MIN_DISTINCT_FRACTION * n)`` distinct particles in
  the final state: the measure collapsed onto a few atoms (birth–death clones at temperature 0
  never separate).

:func:`run_messages` collects them and :func:`warn` issues them as ``RuntimeWarning`` s;
:func:`mfsample.simulate` checks every run, :func:`mfsample.to_inference_data` every ``MCMC``
run it converts (``MCMC`` itself offers kernels no hook after a run).  All of it is host-side
NumPy on the final state and on ``(chain, draw)`` statistics: negligible next to a run.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

__all__ = [
    "MIN_ACCEPT_RATE",
    "MIN_MASS_ESS",
    "MIN_DISTINCT_FRACTION",
    "MAX_EVENT_FRACTION",
    "WATCHED_STATISTICS",
    "data_scale",
    "divergence_messages",
    "acceptance_messages",
    "mass_messages",
    "reaction_messages",
    "collapse_messages",
    "run_messages",
    "warn",
]

#: a chain whose Metropolis acceptance averages below this over the run is reported
MIN_ACCEPT_RATE = 0.05
#: weighted particles whose mass ESS falls below this are reported (1: one particle holds all)
MIN_MASS_ESS = 1.5
#: a final state with at most ``max(1, fraction * n)`` distinct particles is reported
MIN_DISTINCT_FRACTION = 0.1
#: birth-death steps replacing this fraction of the particles or more (on average) are reported
MAX_EVENT_FRACTION = 0.1
#: the statistics these checks read (a driver that streams its draws keeps only these)
WATCHED_STATISTICS = ("accept_prob", "ess", "births", "deaths")


def _chains(x) -> list[int]:
    return [int(c) for c in np.nonzero(x)[0]]


def _per_chain(x, num_chains: int) -> np.ndarray:
    """``x`` as ``(num_chains, -1)`` host array (a single chain has no chain axis)."""
    return np.asarray(x).reshape(num_chains, -1)


def _finite_per_chain(tree, num_chains: int) -> np.ndarray:
    ok = np.ones(num_chains, bool)
    for leaf in jax.tree.leaves(tree):
        leaf = _per_chain(leaf, num_chains)
        if np.issubdtype(leaf.dtype, np.inexact):
            ok &= np.all(np.isfinite(leaf), axis=1)
    return ok


def data_scale(model_args=(), model_kwargs=None) -> float | None:
    """The largest magnitude among the finite floating-point data arguments (``None``: none)."""
    values = list(model_args) + [v for k, v in dict(model_kwargs or {}).items() if k != "masses"]
    scales = [
        float(np.max(np.abs(a)))
        for a in (np.asarray(v) for v in values if isinstance(v, (np.ndarray, jax.Array)))
        if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.isfinite(a))
    ]
    return max(scales) if scales else None


def _initial_causes(state, sample_field: str, chain: int, num_chains: int) -> list[str]:
    """What is non-finite in one chain of a state frozen at initialisation."""
    causes = []
    for label, field in (("particle positions", sample_field), ("energy", "energy"), ("drift", "drift")):
        value = getattr(state, field, None)
        if value is not None and not _finite_per_chain(value, num_chains)[chain]:
            causes.append(label)
    return causes


def divergence_messages(state, *, sample_field: str, step_size: float, scale: float | None = None) -> list[str]:
    """Chains that diverged (``state.divergence_step >= 0``), and why when it can be told.

    A non-finite proposal is refused, so a chain keeps its last finite state; a final state that
    is itself non-finite was so at initialisation, before any step."""
    first = np.atleast_1d(np.asarray(state.divergence_step))
    num_chains = first.shape[0]
    if not np.any(first >= 0):
        return []
    finite = _finite_per_chain(getattr(state, sample_field), num_chains) & _finite_per_chain(state.energy, num_chains)
    if getattr(state, "drift", None) is not None:
        finite &= _finite_per_chain(state.drift, num_chains)
    messages = []
    at_init = _chains((first >= 0) & ~finite)
    if at_init:
        causes = list(
            dict.fromkeys(c for chain in at_init for c in _initial_causes(state, sample_field, chain, num_chains))
        )
        data = "" if scale is None else f" (the data are finite, largest magnitude {scale:.3g}: rescale them if large)"
        messages.append(
            f"the initial state of chain(s) {at_init} is already non-finite ({', '.join(causes)}), so no step "
            "was taken and step_size is not the cause: check the data" + data + ", the temperature, the model "
            "or energy_fn (it must be finite at the initial particles) and init_params"
        )
    later = _chains((first >= 0) & finite)
    if later:
        message = (
            f"particles became non-finite in chain(s) {later}, first at step(s) {[int(first[c]) for c in later]}; "
            "they were frozen there (try a smaller step_size)"
        )
        grad_norm = getattr(state, "grad_norm", None)
        at_zero = [c for c in later if first[c] == 0]
        if at_zero and grad_norm is not None:  # frozen at step 0: the state is the initial one
            g = float(np.max(_per_chain(grad_norm, num_chains)[at_zero]))
            message += (
                f"; the first step already overflowed, from a finite initial state with ||drift|| = {g:.3g} "
                f"(dt * ||drift|| = {step_size * g:.3g}): reduce step_size, or the data scale or temperature "
                "that make the drift this large"
            )
        messages.append(message)
    return messages


def acceptance_messages(stats: dict, *, exclude=()) -> list[str]:
    """Chains whose Metropolis acceptance averages below :data:`MIN_ACCEPT_RATE` over the run."""
    if "accept_prob" not in stats or np.size(stats["accept_prob"]) == 0:
        return []
    rate = np.mean(np.asarray(stats["accept_prob"], np.float64), axis=1)
    low = [c for c in _chains(rate < MIN_ACCEPT_RATE) if c not in exclude]
    if not low:
        return []
    return [
        f"the Metropolis acceptance rate of chain(s) {low} averaged {[round(float(rate[c]), 4) for c in low]} over "
        f"the run (below {MIN_ACCEPT_RATE}): the chain barely moves; reduce step_size (MALA's acceptance "
        "falls as dt grows; aim for 0.5 to 0.8)"
    ]


def mass_messages(stats: dict) -> list[str]:
    """Chains whose mass ESS ``1 / sum_j m_j^2`` falls below :data:`MIN_MASS_ESS`."""
    if "ess" not in stats or np.size(stats["ess"]) == 0:
        return []
    ess = np.min(np.asarray(stats["ess"], np.float64), axis=1)
    low = _chains(ess < MIN_MASS_ESS)
    if not low:
        return []
    return [
        f"the effective sample size of the masses fell to {[round(float(ess[c]), 3) for c in low]} in chain(s) "
        f"{low}: one particle holds nearly all the mass, and the weighted measure is a single atom; reduce rate "
        "(or step_size) so that the reaction rate * dt * |V - Vbar| stays small"
    ]


def _spans_other_processes(x) -> bool:
    """A ``jax.Array`` split over devices of other processes (its values cannot be read here)."""
    return isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated)


def _distinct_particles(tree, num_chains: int) -> tuple[np.ndarray, int]:
    """Per chain, the number of distinct particles along the widest particle axis of ``tree``
    (leaves of that size joined column-wise, so a particle is one row), and that ``n``."""
    leaves = jax.tree.leaves(tree)
    if any(_spans_other_processes(leaf) for leaf in leaves):  # a multi-process run: not readable here
        return np.zeros(num_chains, int), 0
    groups = {}
    for leaf in leaves:
        leaf = np.asarray(leaf)
        leaf = leaf[None] if num_chains == 1 else leaf
        if leaf.ndim >= 2:
            groups.setdefault(leaf.shape[1], []).append(leaf.reshape(num_chains, leaf.shape[1], -1))
    if not groups:
        return np.zeros(num_chains, int), 0
    n = max(groups)
    rows = np.concatenate(groups[n], axis=2)
    return np.array([len(np.unique(_row_keys(r))) for r in rows]), n


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """One float64 number per row, its projection on a fixed direction with no zero entry: equal
    rows give equal keys and distinct rows distinct ones (but on a set of measure zero), and
    counting distinct keys is a sort of ``n`` numbers instead of ``n`` rows."""
    direction = np.random.default_rng(0).uniform(1.0, 2.0, rows.shape[-1])
    return rows.astype(np.float64) @ direction


def _event_fraction(stats: dict | None, state, sample_field: str) -> np.ndarray:
    """Per chain, the mean fraction of the particles that a birth–death step replaced (0 without
    recorded ``births`` and ``deaths``), over the kept draws (each records its last step)."""
    num_chains = np.atleast_1d(np.asarray(state.divergence_step)).shape[0]
    if not stats or "births" not in stats or "deaths" not in stats or np.size(stats["births"]) == 0:
        return np.zeros(num_chains)
    n = _distinct_particles(getattr(state, sample_field), num_chains)[1]
    events = np.asarray(stats["births"], np.float64) + np.asarray(stats["deaths"], np.float64)
    return np.mean(events, axis=1) / max(n, 1)


def reaction_messages(stats: dict, state, *, sample_field: str) -> list[str]:
    """Chains whose birth–death steps replaced :data:`MAX_EVENT_FRACTION` of the particles or more."""
    fraction = _event_fraction(stats, state, sample_field)
    high = _chains(fraction >= MAX_EVENT_FRACTION)
    if not high:
        return []
    distinct, n = _distinct_particles(getattr(state, sample_field), len(fraction))
    return [
        f"birth-death events replaced {[round(float(fraction[c]), 3) for c in high]} of the particles per step "
        f"in chain(s) {high} (at most {MAX_EVENT_FRACTION} expected): rate * step_size * |V - Vbar| is not "
        "small, so the step no longer resolves the reaction and copies take over the system (only "
        f"{[int(distinct[c]) for c in high]} of the {n} particles are distinct at the end); reduce rate or "
        "step_size (birth='prior' or a temperature > 0 also let copies separate)"
    ]


def collapse_messages(state, *, sample_field: str, stats: dict | None = None, exclude=()) -> list[str]:
    """Chains whose final state holds at most ``max(1, MIN_DISTINCT_FRACTION * n)`` distinct particles."""
    num_chains = np.atleast_1d(np.asarray(state.divergence_step)).shape[0]
    distinct, n = _distinct_particles(getattr(state, sample_field), num_chains)
    low = _chains(distinct <= max(1, int(MIN_DISTINCT_FRACTION * n))) if n >= 2 else []
    low = [c for c in low if c not in exclude]
    if not low:
        return []
    if stats is not None and "births" in stats:
        remedy = (
            "birth-death with birth='clone' copies particles, and at temperature 0 copies never separate: "
            "use birth='prior' or a temperature > 0, or a smaller rate"
        )
    else:
        remedy = "copies of a particle move together for good: check the dynamic's settings and init_params"
    return [
        f"only {[int(distinct[c]) for c in low]} of the {n} particles are distinct at the end of chain(s) {low}: "
        f"the measure collapsed onto a few atoms; {remedy}"
    ]


def run_messages(stats: dict | None, state, *, sample_field: str, step_size: float, scale=None) -> list[str]:
    """Every message of the checks above (``stats``: ``{name: (chain, draw)}``, or ``None`` when
    the run kept none)."""
    messages = divergence_messages(state, sample_field=sample_field, step_size=step_size, scale=scale)
    diverged = _chains(np.atleast_1d(np.asarray(state.divergence_step)) >= 0)  # said above: frozen there
    if stats:
        messages += acceptance_messages(stats, exclude=diverged) + mass_messages(stats)
        messages += reaction_messages(stats, state, sample_field=sample_field)
    reported = _chains(_event_fraction(stats, state, sample_field) >= MAX_EVENT_FRACTION)  # said above
    return messages + collapse_messages(
        state, sample_field=sample_field, stats=stats, exclude=sorted(set(reported) | set(diverged))
    )


def warn(messages, *, stacklevel: int = 2) -> None:
    """Issue each message as a ``RuntimeWarning`` (``stacklevel`` counted from the caller)."""
    for message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
