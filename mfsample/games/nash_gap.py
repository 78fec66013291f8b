"""The Nash gap (Nikaido–Isoda error) of a pair of particle measures.

    NI(mu_x, mu_y) = max_{y'} ∫ l(x, y') dmu_x(x) - min_{x'} ∫ l(x', y) dmu_y(y)
                   = [max_{y'} V_y(y') - L] + [L - min_{x'} V_x(x')]  >= 0,

zero exactly at a mixed Nash equilibrium; each bracket is what one player gains by deviating to
its best pure response.  The inner problems are optimisations over the strategy spaces, solved
here by multi-start projected (Riemannian) gradient ascent with a per-start adaptive step, from
the player's best particles plus random draws of the reference measure (``method="optimize"``),
or from the best points of a grid of the space and of the particles (``method="grid"``, low
dimension only).

**A lower bound.**  Every reported optimum is the objective at a point actually visited, so the
computed maximum never exceeds the true one and the computed minimum is never below the true
one: the returned gap is a lower bound of the true gap, exact when the inner problems are solved
globally (a concave inner problem, e.g. a payoff linear in the deviation; or a grid fine enough to
land in the global optimum's basin, which the ascent then polishes).  For non-concave inner
problems in high dimension (the polynomial games on spheres) it may miss the best response.
Because the particles are among the starts, it is never below the ``support_gap``
``max_j V_y(y_j) - min_i V_x(x_i)`` that :class:`~mfsample.games.DescentAscent` records.

Theory: ``docs/theory/games.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .game import Game, Space, Sphere

__all__ = ["NashGap", "nash_gap", "best_response"]

METHODS = ("auto", "grid", "optimize")


class NashGap(NamedTuple):
    """Result of :func:`nash_gap` (leading axes: those of the draws, e.g. ``(chain, draw)``).

    - **gap** – ``max_y - min_x`` (a lower bound of the Nikaido–Isoda error, see module docstring).
    - **value** – ``L[mu_x, mu_y]``.
    - **max_y** – ``max_{y'} ∫ l(x, y') dmu_x``: the y-player's best-response payoff found.
    - **min_x** – ``min_{x'} ∫ l(x', y) dmu_y``: the x-player's best-response loss found.
    - **best_x**, **best_y** – the best responses found, ``(..., dx)`` and ``(..., dy)``.
    """

    gap: Any
    value: Any
    max_y: Any
    min_x: Any
    best_x: Any
    best_y: Any


def best_response(objective, space: Space, starts, num_steps: int, step_size: float):
    """Maximise ``objective`` (``(S, d) -> (S,)``, one value per point) on ``space`` from ``starts``.

    Each start runs ``num_steps`` projected gradient-ascent steps
    ``z <- retract(z + eta P grad objective(z))`` (``P`` the tangent projection), accepting a step
    only if it increases the objective; its own step ``eta`` (from ``step_size``) grows by 1.5
    after an accepted step and halves after a rejected one.  Returns ``(z*, objective(z*))`` of the
    best point visited.
    """
    grad = jax.grad(lambda z: jnp.sum(objective(z)))

    def body(carry, _):
        z, v, eta = carry
        g = space.tangent(z, grad(z))
        z_try = space.retract(z + eta[:, None] * g)
        v_try = objective(z_try)
        better = v_try > v  # NaN never wins
        z = jnp.where(better[:, None], z_try, z)
        v = jnp.where(better, v_try, v)
        eta = jnp.where(better, 1.5 * eta, 0.5 * eta)
        return (z, v, eta), None

    v0 = objective(starts)
    v0 = jnp.where(jnp.isnan(v0), -jnp.inf, v0)
    eta0 = jnp.full(v0.shape, step_size, v0.dtype)
    (z, v, _), _ = jax.lax.scan(body, (starts, v0, eta0), None, length=num_steps)
    i = jnp.argmax(v)
    return z[i], v[i]


def _starts(space, own, objective, method, num_starts, resolution, rng_key):
    """Starting points: the best ``num_starts`` of the grid and the player's particles (grid), or
    ``num_starts`` random draws plus the best ``num_starts`` particles (optimize).  The best
    particle is always a start, so the result is never below the particles' own best."""
    if method == "grid":
        pool = jnp.concatenate([own, space.grid(resolution).astype(own.dtype)], axis=0)
        _, top = jax.lax.top_k(objective(pool), min(num_starts, pool.shape[0]))
        return pool[top]
    _, top = jax.lax.top_k(objective(own), min(num_starts, own.shape[0]))
    return jnp.concatenate([own[top], space.sample(rng_key, num_starts).astype(own.dtype)], axis=0)


def _grid_resolution(space, resolution):
    """``resolution`` points in all (per axis: its ``dim``-th root for a box)."""
    if space.dim == 1 or isinstance(space, Sphere):
        return resolution
    return max(2, int(round(resolution ** (1.0 / space.dim))))


def _resolve(method, space):
    if method == "auto":
        return "grid" if space.has_grid else "optimize"
    if method == "grid" and not space.has_grid:
        raise ValueError(f"method='grid' needs spaces with a grid (the circle, boxes of dim <= 2); {space!r} has none")
    return method


def _gap_fn(game: Game, method, num_starts, num_steps, step_size, resolution):
    cache = game.__dict__.setdefault("_nash_gap_cache", {})
    key = (method, num_starts, num_steps, step_size, resolution)
    if key in cache:
        return cache[key]
    mx_method, my_method = _resolve(method, game.x_space), _resolve(method, game.y_space)
    res_x = _grid_resolution(game.x_space, resolution)
    res_y = _grid_resolution(game.y_space, resolution)

    def one(x, y, mx, my, rng_key):
        key_x, key_y = jax.random.split(rng_key)
        value = game.value(x, y, mx, my)

        def obj_y(yy):  # the y-player's payoff for deviating to y'
            return game.potential_y(x, yy, mx)

        def obj_x(xx):  # minus the x-player's loss for deviating to x'
            return -game.potential_x(xx, y, my)

        sy = _starts(game.y_space, y, obj_y, my_method, num_starts, res_y, key_y)
        sx = _starts(game.x_space, x, obj_x, mx_method, num_starts, res_x, key_x)
        best_y, max_y = best_response(obj_y, game.y_space, sy, num_steps, step_size)
        best_x, neg_min_x = best_response(obj_x, game.x_space, sx, num_steps, step_size)
        return NashGap(max_y + neg_min_x, value, max_y, -neg_min_x, best_x, best_y)

    def batched(x, y, mx, my, rng_key, batch_size):
        return jax.lax.map(lambda a: one(*a, rng_key), (x, y, mx, my), batch_size=batch_size)

    fn = jax.jit(batched, static_argnames="batch_size")
    cache[key] = fn
    return fn


def _unpack(obj):
    """``(x, y, masses_x, masses_y)`` from a state, a draws dict, a Simulation or a tuple."""
    if hasattr(obj, "z") and hasattr(obj, "masses") and isinstance(obj.z, dict):  # GameState
        return obj.z["x"], obj.z["y"], obj.masses["x"], obj.masses["y"]
    if hasattr(obj, "samples") and hasattr(obj, "stats"):  # Simulation
        obj = obj.samples
    if isinstance(obj, dict):
        return obj["x"], obj["y"], obj.get("masses_x"), obj.get("masses_y")
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 4):
        return tuple(obj) + (None,) * (4 - len(obj))
    raise TypeError(
        "state_or_draws must be a GameState, a dict {'x', 'y'[, 'masses_x', 'masses_y']}, "
        f"a Simulation or a tuple (x, y[, masses_x, masses_y]); got {type(obj).__name__}"
    )


def nash_gap(
    game: Game,
    state_or_draws,
    *,
    method: str = "auto",
    num_starts: int = 32,
    num_steps: int = 100,
    step_size: float = 0.1,
    resolution: int = 1024,
    rng_key=None,
    batch_size: int | None = None,
) -> NashGap:
    """Nikaido–Isoda error ``max_{y'} ∫l(x,y')dmu_x - min_{x'} ∫l(x',y)dmu_y`` with the best responses found.

    A lower bound of the true gap (exact when the inner problems are solved globally; see the
    module docstring).

    :param game: the :class:`~mfsample.games.Game`.
    :param state_or_draws: a :class:`~mfsample.games.GameState` (of one replica or a batch of
        chains), draws ``{"x": (..., nx, dx), "y": (..., ny, dy)[, "masses_x", "masses_y"]}``
        (e.g. ``Simulation.samples`` or ``MCMC.get_samples()``), a ``Simulation``, or a tuple
        ``(x, y[, masses_x, masses_y])``.  Leading axes are kept in the result.
    :param method: ``"grid"`` (start from the ``num_starts`` best of the ``resolution`` grid
        points and the player's particles: the circle, boxes of dim <= 2), ``"optimize"`` (start
        from ``num_starts`` random draws of the space's reference measure and the player's
        ``num_starts`` best particles), or ``"auto"`` (grid where the space has one).
    :param num_starts: number of starts of each kind.
    :param num_steps: projected-gradient steps per start (see :func:`best_response`).
    :param step_size: initial step of each start.
    :param resolution: number of grid points (for a 2-d box, its square root per axis).
    :param rng_key: key of the random starts (default ``PRNGKey(0)``).
    :param batch_size: draws evaluated at once (default: all).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x, y, mx, my = _unpack(state_or_draws)
    x, y = jnp.asarray(x), jnp.asarray(y)
    lead = x.shape[:-2]
    if y.shape[:-2] != lead:
        raise ValueError(f"x and y have different leading axes {lead} and {y.shape[:-2]}")
    nx, ny = x.shape[-2], y.shape[-2]
    dtype = jnp.result_type(x.dtype, y.dtype)
    mx = (
        jnp.full(lead + (nx,), 1.0 / nx, dtype)
        if mx is None
        else jnp.broadcast_to(jnp.asarray(mx, dtype), lead + (nx,))
    )
    my = (
        jnp.full(lead + (ny,), 1.0 / ny, dtype)
        if my is None
        else jnp.broadcast_to(jnp.asarray(my, dtype), lead + (ny,))
    )
    num = 1
    for s in lead:
        num *= s

    def flat(a):
        return a.reshape((num,) + a.shape[len(lead) :])

    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    fn = _gap_fn(game, method, int(num_starts), int(num_steps), float(step_size), int(resolution))
    out = fn(flat(x), flat(y), flat(mx), flat(my), key, batch_size)
    return NashGap(*(a.reshape(lead + a.shape[1:]) for a in out))
