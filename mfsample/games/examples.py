"""Example games: known equilibria for tests, polynomial games on spheres for benchmarks.

* :func:`bilinear` – ``l(x, y) = (x - x*)^T A (y - y*)`` on boxes, interior equilibrium, Nash gap
  in closed form;
* :func:`circle` – ``l(x, y) = exp(kappa (<x, y> - 1))`` on the circle (a pursuit–evasion game:
  y wants to be where x is, x to flee), whose unique equilibrium is uniform–uniform;
* :func:`polynomial` – random quadratic games on spheres ``S^{d-1}`` (Domingo-Enrich, Jelassi,
  Mensch, Rotskoff & Bruna, NeurIPS 2020, §5), non-convex–non-concave, mixed equilibria unknown,
  Nash gap exact (each best response is a trust-region subproblem).

Each returns an :class:`Example`: the :class:`~mfsample.games.Game` plus what is known about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from scipy.special import ive

from .game import Box, Game, Sphere

__all__ = [
    "Example",
    "bilinear",
    "circle",
    "polynomial",
    "circle_angles",
    "circle_w1_to_uniform",
    "von_mises_points",
    "sphere_quadratic_max",
]


class Example(NamedTuple):
    """A game with what is known about its equilibria.

    - **game** – the :class:`~mfsample.games.Game`.
    - **name** – a short label.
    - **value** – the game's value ``min max L = max min L`` (``None``: unknown).
    - **distance** – ``distance(x, y, masses_x=None, masses_y=None)``: distance of the pair of
      particle measures to the set of equilibria, in the metric the docstring of the example
      states (``None``: unknown).  Accepts leading batch axes.
    - **exact_gap** – ``exact_gap(x, y, masses_x=None, masses_y=None)``: the Nash gap in closed
      form (``None``: none known).
    - **equilibrium** – the equilibria in words.
    """

    game: Game
    name: str
    value: float | None
    distance: Callable | None
    exact_gap: Callable | None
    equilibrium: str


def _mean(points, masses):
    points = jnp.asarray(points)
    n = points.shape[-2]
    m = jnp.full(points.shape[:-1], 1.0 / n, points.dtype) if masses is None else jnp.asarray(masses)
    return jnp.sum(m[..., None] * points, axis=-2)


def bilinear(dim: int = 2, *, matrix=None, x_star=None, y_star=None, radius: float = 1.0) -> Example:
    """Bilinear game ``l(x, y) = (x - x*)^T A (y - y*)`` on ``x in [-r, r]^dx``, ``y in [-r, r]^dy``.

    ``L[mu_x, mu_y] = (m_x - x*)^T A (m_y - y*)`` depends on the means ``m`` only.  With ``A``
    invertible (default ``A = I``) and ``x*``, ``y*`` interior (default 0), the equilibria are the
    pairs of measures with means ``(x*, y*)`` (the pure one: ``(delta_x*, delta_y*)``), the value
    is 0 and the Nash gap is, with ``u = A^T (m_x - x*)`` and ``w = A (m_y - y*)``,

        NI = max_{y'} u.(y' - y*) - min_{x'} (x' - x*).w = r|u|_1 - u.y* + r|w|_1 + x*.w

    (a linear function on a box is extremal at a vertex).  ``distance``: ``|m_x - x*|_2 + |m_y - y*|_2``
    (the distance to the equilibrium set in the means).

    GDA rotates the means around ``(x*, y*)`` (``d m_x/dt = -A(m_y - y*)``, ``d m_y/dt =
    A^T(m_x - x*)``) and explicit Euler spirals them out to the faces.
    """
    a = jnp.eye(dim) if matrix is None else jnp.asarray(matrix, float)
    if a.ndim != 2:
        raise ValueError("matrix must be 2-d (dx, dy)")
    dx, dy = a.shape
    xs = jnp.zeros(dx) if x_star is None else jnp.asarray(x_star, float)
    ys = jnp.zeros(dy) if y_star is None else jnp.asarray(y_star, float)
    if xs.shape != (dx,) or ys.shape != (dy,):
        raise ValueError(f"x_star must be ({dx},) and y_star ({dy},)")
    if not (np.all(np.abs(np.asarray(xs)) < radius) and np.all(np.abs(np.asarray(ys)) < radius)):
        raise ValueError("x_star and y_star must be interior points of the box [-radius, radius]^d")

    def payoff(x, y):
        return (x - xs) @ a @ (y - ys)

    payoff.__name__ = "bilinear"
    game = Game(payoff, Box(dx, -radius, radius), Box(dy, -radius, radius))

    def exact_gap(x, y, masses_x=None, masses_y=None):
        u = (_mean(x, masses_x) - xs) @ a
        w = (_mean(y, masses_y) - ys) @ a.T
        return (radius * jnp.sum(jnp.abs(u), -1) - u @ ys) + (radius * jnp.sum(jnp.abs(w), -1) + w @ xs)

    def distance(x, y, masses_x=None, masses_y=None):
        return jnp.linalg.norm(_mean(x, masses_x) - xs, axis=-1) + jnp.linalg.norm(_mean(y, masses_y) - ys, axis=-1)

    return Example(
        game,
        f"bilinear (dim {dx}x{dy})",
        0.0,
        distance,
        exact_gap,
        "every pair of measures with means (x*, y*) (A invertible)",
    )


def circle_angles(points):
    """Angles in ``[0, 2 pi)`` of points ``(..., 2)`` on the circle."""
    return jnp.mod(jnp.arctan2(points[..., 1], points[..., 0]), 2 * jnp.pi)


def _w1_one(theta, masses):
    """Exact ``W1`` between ``sum_i m_i delta_{theta_i}`` and the uniform law on the circle.

    ``W1 = min_c ∫_0^{2pi} |F(t) - t/(2pi) - c| dt`` (Rabin, Delon & Gousseau 2011).  On each arc
    between consecutive sorted angles ``G(t) = F(t) - t/(2pi)`` is linear from ``a_k`` down to
    ``b_k``; the optimal ``c`` is the median of ``G`` under ``dt`` (bisection on the piecewise
    linear distribution function) and the integral is summed in closed form.
    """
    order = jnp.argsort(theta)
    th, m = theta[order], masses[order]
    s = jnp.concatenate([jnp.zeros(1, m.dtype), jnp.cumsum(m)])  # S_0..S_n
    left = jnp.concatenate([jnp.zeros(1, th.dtype), th]) / (2 * jnp.pi)  # arc starts / 2pi
    right = jnp.concatenate([th, jnp.full(1, 2 * jnp.pi, th.dtype)]) / (2 * jnp.pi)
    a, b = s - left, s - right  # G at both ends
    length = a - b  # sums to 1

    def below(c):
        return jnp.sum(jnp.clip(c - b, 0.0, length))

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        go_up = below(mid) < 0.5
        return jnp.where(go_up, mid, lo), jnp.where(go_up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 60, bisect, (jnp.min(b), jnp.max(a)))
    c = 0.5 * (lo + hi)
    inside = ((a - c) ** 2 + (c - b) ** 2) / 2
    above = length * ((a + b) / 2 - c)
    under = length * (c - (a + b) / 2)
    piece = jnp.where(c <= b, above, jnp.where(c >= a, under, inside))
    return 2 * jnp.pi * jnp.sum(piece)


def circle_w1_to_uniform(points, masses=None):
    """Wasserstein-1 distance (arc length, radians) from particles ``(..., n, 2)`` on the circle to
    the uniform law; ``n`` equispaced particles are at ``pi / (2 n)``."""
    theta = circle_angles(jnp.asarray(points))
    lead, n = theta.shape[:-1], theta.shape[-1]
    m = jnp.full(theta.shape, 1.0 / n, theta.dtype) if masses is None else jnp.broadcast_to(masses, theta.shape)
    flat = _w1_batch(theta.reshape(-1, n), m.reshape(-1, n))
    return flat.reshape(lead)


_w1_batch = jax.jit(jax.vmap(_w1_one))


def circle(kappa: float = 2.0) -> Example:
    """Pursuit–evasion on the circle: ``l(x, y) = exp(kappa (<x, y> - 1))``, ``x, y in S^1``.

    The payoff depends on the angle difference only, ``f(t) = exp(kappa (cos t - 1)) = sum_k c_k
    e^{ikt}`` with ``c_k = e^{-kappa} I_k(kappa) > 0`` for every ``k``.  Against the uniform
    ``mu_y`` every ``x`` pays ``c_0``; conversely ``mu_x`` is optimal only if ``f * mu_x`` is
    constant, i.e. every Fourier coefficient of ``mu_x`` but the 0-th vanishes (all ``c_k != 0``):
    the unique equilibrium is uniform–uniform, with value ``c_0 = e^{-kappa} I_0(kappa)``.

    ``distance``: the sum of the two circular Wasserstein-1 distances to the uniform law
    (:func:`circle_w1_to_uniform`, radians).  Linearised at the equilibrium, mode ``k`` of the
    two densities obeys ``d(a, b)/dt = k^2 [[-tau, -c_k], [c_k, -tau]] (a, b)``: GDA (``tau = 0``)
    rotates without decay (it cycles), Langevin descent–ascent decays at rate ``tau k^2``.
    """
    kappa = float(kappa)
    if not kappa > 0:
        raise ValueError(f"kappa must be positive, got {kappa!r}")

    def payoff(x, y):
        return jnp.exp(kappa * (jnp.dot(x, y) - 1.0))

    payoff.__name__ = "circle"
    game = Game(payoff, Sphere(2), Sphere(2))

    def distance(x, y, masses_x=None, masses_y=None):
        return circle_w1_to_uniform(x, masses_x) + circle_w1_to_uniform(y, masses_y)

    return Example(
        game,
        f"circle (kappa={kappa:g})",
        float(ive(0, kappa)),
        distance,
        None,
        "both players uniform on the circle (unique)",
    )


def sphere_quadratic_max(b_mat, b_vec, iters: int = 80):
    """Global maximum of ``q(u) = u^T B u + b.u`` over the unit sphere (the trust-region subproblem).

    With ``B = Q diag(lambda) Q^T`` and ``c = Q^T b``, the maximiser is ``u = sum_i c_i q_i /
    (2 (mu - lambda_i))`` for the ``mu >= lambda_max`` with ``|u| = 1``.  Easy case: ``mu >
    lambda_max``, found by bisection on ``(lambda_max, lambda_max + |b|/2]`` where ``|u(mu)|``
    decreases to ``<= 1``.  Hard case (``c`` orthogonal to the top eigenvector, which is what a
    mixed equilibrium's flat best-response set looks like): ``mu = lambda_max`` and ``u = r +/- t
    q_top``, ``r`` the other components, ``t = sqrt(1 - |r|^2)``.  Every candidate is normalised
    onto the sphere and the best value is returned, so the answer is a feasible point, exact up to
    float32 rounding in both cases.  Returns ``(u*, q(u*))``.
    """
    b_mat = 0.5 * (b_mat + b_mat.T)
    lam, q = jnp.linalg.eigh(b_mat)
    c = q.T @ b_vec
    top = lam[-1]
    scale = 1.0 + jnp.abs(lam).max() + jnp.linalg.norm(b_vec)

    def norm2(mu):
        return jnp.sum(c**2 / (4 * (mu - lam) ** 2))

    def bisect(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        big = norm2(mid) > 1.0  # root above mid
        return jnp.where(big, mid, lo), jnp.where(big, hi, mid)

    tiny = 1e-7 * scale
    lo, hi = jax.lax.fori_loop(0, iters, bisect, (top + tiny, top + 0.5 * jnp.linalg.norm(b_vec) + tiny))
    mu = 0.5 * (lo + hi)
    easy = q @ (c / (2 * (mu - lam)))
    # hard case: the components off the top eigenspace, completed along the top eigenvector
    gap = top - lam
    off = gap > 1e-6 * scale
    rest = q @ jnp.where(off, c / (2 * jnp.where(off, gap, 1.0)), 0.0)
    t = jnp.sqrt(jnp.clip(1.0 - rest @ rest, 0.0, 1.0))
    cands = jnp.stack([easy, rest + t * q[:, -1], rest - t * q[:, -1]])
    cands = cands / jnp.linalg.norm(cands, axis=-1, keepdims=True)
    vals = jnp.einsum("kd,de,ke->k", cands, b_mat, cands) + cands @ b_vec
    vals = jnp.where(jnp.isnan(vals), -jnp.inf, vals)
    best = jnp.argmax(vals)
    return cands[best], vals[best]


def polynomial(rng_key, dim: int, *, dim_y: int | None = None) -> Example:
    """Random quadratic game on spheres: ``x in S^{dx-1}``, ``y in S^{dy-1}`` (``dy = dx = dim`` by default),

        l(x, y) = x^T A_0 x + x^T A_1 y + y^T A_2 y + a_0^T x + a_1^T y,

    the family of polynomial games of Domingo-Enrich et al. (NeurIPS 2020, §5), entries iid
    ``N(0, 1/dim)`` (our scaling: spectral norms and ``|a|`` are O(1), so the payoff range stays
    O(1) as ``dim`` grows).  Non-convex–non-concave: no pure equilibrium in general, mixed
    equilibria unknown (``distance`` is ``None``).

    ``exact_gap``: each deviation problem is a quadratic on a sphere, ``max_{|y|=1} y^T A_2 y +
    y.(A_1^T m_x + a_1) + const`` and ``min_{|x|=1} x^T A_0 x + x.(A_1 m_y + a_0) + const``
    (``m`` the means), solved globally by :func:`sphere_quadratic_max`: the Nash gap is exact here,
    which makes these games a check of :func:`~mfsample.games.nash_gap`'s multi-start search.
    """
    dx = int(dim)
    dy = dx if dim_y is None else int(dim_y)
    sizes = [dx * dx, dx * dy, dy * dy, dx, dy]
    flat = np.asarray(jax.random.normal(rng_key, (sum(sizes),)))  # one draw, sliced
    a0, a1, a2, b0, b1 = np.split(flat, np.cumsum(sizes)[:-1])
    a0 = jnp.asarray(a0.reshape(dx, dx) / np.sqrt(dx))
    a1 = jnp.asarray(a1.reshape(dx, dy) / np.sqrt(max(dx, dy)))
    a2 = jnp.asarray(a2.reshape(dy, dy) / np.sqrt(dy))
    b0, b1 = jnp.asarray(b0 / np.sqrt(dx)), jnp.asarray(b1 / np.sqrt(dy))

    def payoff(x, y):
        return x @ a0 @ x + x @ a1 @ y + y @ a2 @ y + b0 @ x + b1 @ y

    payoff.__name__ = "polynomial"
    game = Game(payoff, Sphere(dx), Sphere(dy))

    def gap_one(x, y, mx, my):
        mean_x, mean_y = mx @ x, my @ y
        const_y = b0 @ mean_x + jnp.sum(mx * jnp.einsum("id,de,ie->i", x, a0, x))  # E_x[x^T A0 x + a0.x]
        const_x = b1 @ mean_y + jnp.sum(my * jnp.einsum("id,de,ie->i", y, a2, y))
        _, max_y = sphere_quadratic_max(a2, a1.T @ mean_x + b1)
        _, neg_min_x = sphere_quadratic_max(-a0, -(a1 @ mean_y + b0))
        return (max_y + const_y) + (neg_min_x - const_x)

    gap_batch = jax.jit(jax.vmap(gap_one))

    def exact_gap(x, y, masses_x=None, masses_y=None):
        x, y = jnp.asarray(x), jnp.asarray(y)
        lead = x.shape[:-2]
        mx = (
            jnp.full(x.shape[:-1], 1.0 / x.shape[-2], x.dtype)
            if masses_x is None
            else jnp.broadcast_to(jnp.asarray(masses_x, x.dtype), x.shape[:-1])
        )
        my = (
            jnp.full(y.shape[:-1], 1.0 / y.shape[-2], y.dtype)
            if masses_y is None
            else jnp.broadcast_to(jnp.asarray(masses_y, y.dtype), y.shape[:-1])
        )
        out = gap_batch(
            x.reshape((-1,) + x.shape[-2:]),
            y.reshape((-1,) + y.shape[-2:]),
            mx.reshape((-1, x.shape[-2])),
            my.reshape((-1, y.shape[-2])),
        )
        return out.reshape(lead)

    return Example(game, f"polynomial on spheres (dim {dx}x{dy})", None, None, exact_gap, "unknown (mixed)")


def von_mises_points(rng_key, n: int, mean_angle: float, concentration: float):
    """``n`` points on the circle ``(n, 2)`` with angles iid von Mises(``mean_angle``, ``concentration``)."""
    t = dist.VonMises(mean_angle, concentration).sample(rng_key, (n,))
    return jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
