"""The Nikaido–Isoda error and its best responses (DESIGN.md §3 "Games"; mfsample/games/nash_gap.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

from mfsample import games


def _simplex(rng, shape):
    m = rng.uniform(0.1, 1.0, size=shape)
    return m / m.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def bilinear():
    """A non-symmetric 2x2 bilinear game with an off-centre interior equilibrium."""
    return games.examples.bilinear(2, matrix=[[1.0, 0.5], [-0.5, 1.0]], x_star=[0.3, -0.2], y_star=[-0.1, 0.4])


@pytest.mark.parametrize("method", ["grid", "optimize"])
def test_bilinear_gap_is_exact(bilinear, method):
    """For l = (x - x*)^T A (y - y*) each deviation problem is linear on a box, maximised at a
    vertex: NI = r|u|_1 - u.y* + r|w|_1 + x*.w (u = A^T(m_x - x*), w = A(m_y - y*)).  The grid
    contains the vertices and projected ascent reaches one exactly, so both methods must match the
    closed form to float32 rounding of O(1) sums (1e-5); the best responses are vertices."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(6, 10, 2))  # 6 draws of 10 x-particles
    y = rng.uniform(-1, 1, size=(6, 7, 2))
    mx, my = _simplex(rng, (6, 10)), _simplex(rng, (6, 7))
    draws = {"x": x, "y": y, "masses_x": mx, "masses_y": my}
    res = games.nash_gap(bilinear.game, draws, method=method)
    exact = bilinear.exact_gap(x, y, mx, my)
    assert res.gap.shape == (6,)
    assert float(jnp.min(exact)) > 0.1  # not a vacuous comparison at the equilibrium
    np.testing.assert_allclose(res.gap, exact, rtol=1e-5, atol=1e-5)
    value = np.einsum("bi,bj,bij->b", mx, my, np.einsum("bik,kl,bjl->bij", x - [0.3, -0.2],
                                                        np.array([[1.0, 0.5], [-0.5, 1.0]]), y - [-0.1, 0.4]))
    np.testing.assert_allclose(res.value, value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.abs(res.best_x), 1.0, atol=1e-6)
    np.testing.assert_allclose(jnp.abs(res.best_y), 1.0, atol=1e-6)


def test_bilinear_gap_exact_without_grid():
    """A 3-d box has no grid: multi-start projected ascent alone still solves the linear deviation
    problems exactly (closed form, 1e-5)."""
    ex = games.examples.bilinear(3, x_star=[0.1, 0.2, -0.3], y_star=[0.0, -0.4, 0.5])
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, size=(4, 8, 3)), rng.uniform(-1, 1, size=(4, 8, 3))
    res = games.nash_gap(ex.game, (x, y))
    np.testing.assert_allclose(res.gap, ex.exact_gap(x, y), rtol=1e-5, atol=1e-5)
    # at an equilibrium (means (x*, y*)) the gap is zero
    eq = games.nash_gap(ex.game, (np.array([[[0.1, 0.2, -0.3]] * 8]), np.array([[[0.0, -0.4, 0.5]] * 8])))
    assert abs(float(eq.gap[0])) < 1e-6


@pytest.mark.parametrize("n", [3, 5])
def test_circle_gap_of_equispaced_particles(n):
    """Circle game f(t) = exp(kappa (cos t - 1)) = sum_k c_k e^{ikt}, c_k = e^{-kappa} I_k(kappa).
    For n equispaced x's, V_y(t) = c_0 + 2 sum_m c_{mn} cos(mn (t - t_x)): maximal at the
    particles; likewise V_x is minimal half-way between the y's, so NI = 4 (c_n + c_{3n} + ...)
    exactly, and L = c_0 + 2 sum_m c_{mn} cos(mn Delta) for an offset Delta between the two
    combs.  Grid + polish must recover both to 1e-5 (float32 of O(1) sums)."""
    kappa, delta = 2.0, 0.37
    ex = games.examples.circle(kappa)
    t = 2 * np.pi * np.arange(n) / n
    x = jnp.stack([jnp.cos(t), jnp.sin(t)], -1)
    y = jnp.stack([jnp.cos(t + delta), jnp.sin(t + delta)], -1)
    c = lambda k: ive(k, kappa)  # noqa: E731
    gap = 4 * sum(c(m * n) for m in range(1, 20, 2))
    value = c(0) + 2 * sum(c(m * n) * np.cos(m * n * delta) for m in range(1, 20))
    res = games.nash_gap(ex.game, (x, y))
    np.testing.assert_allclose(res.gap, gap, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.value, value, rtol=1e-5)
    # best responses: y' on an x-particle, x' half-way between two y-particles (angles mod 2pi/n)
    ay = float(games.examples.circle_angles(res.best_y)) % (2 * np.pi / n)
    ax = (float(games.examples.circle_angles(res.best_x)) - delta) % (2 * np.pi / n)
    assert min(ay, 2 * np.pi / n - ay) < 1e-2
    assert abs(ax - np.pi / n) < 1e-2
    # the uniform value of the example is c_0
    assert ex.value == pytest.approx(c(0))


def test_lower_bound_on_a_polynomial_game():
    """Non-concave deviation problems (quadratic game on S^9): the reported optima are attained at
    the reported best responses (so the gap is a lower bound of the true one), lie on the sphere,
    bracket the value (max_y >= L >= min_x, since the particles are among the starts), dominate the
    particles' own best (support gap), and beat a brute-force search over 5000 uniform points."""
    ex = games.examples.polynomial(jax.random.PRNGKey(0), 10)
    g = ex.game
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 10)), rng.normal(size=(16, 10))
    x, y = x / np.linalg.norm(x, axis=-1, keepdims=True), y / np.linalg.norm(y, axis=-1, keepdims=True)
    res = games.nash_gap(g, (x, y))
    np.testing.assert_allclose(g.potential_y(x, res.best_y[None]), res.max_y, rtol=1e-5)
    np.testing.assert_allclose(g.potential_x(res.best_x[None], y), res.min_x, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(res.best_x), 1.0, atol=1e-5)
    assert float(res.max_y) >= float(res.value) >= float(res.min_x)
    support = jnp.max(g.potential_y(x, y)) - jnp.min(g.potential_x(x, y))
    assert float(res.gap) >= float(support) - 1e-6
    pts = rng.normal(size=(5000, 10))
    pts = pts / np.linalg.norm(pts, axis=-1, keepdims=True)
    brute = jnp.max(g.potential_y(x, pts)) - jnp.min(g.potential_x(pts, y))
    assert float(res.gap) >= float(brute) - 1e-6


def test_input_forms_agree():
    """A GameState, a draws dict and a tuple give the same gap (leading axes are kept: see the
    bilinear test); unknown inputs and a grid without one are refused."""
    ex = games.examples.circle()
    kernel = games.DescentAscent(ex.game, step_size=0.1)
    state = kernel.init(jax.random.PRNGKey(0), 0, None, (), {"width": (5, 4)})
    a = games.nash_gap(ex.game, state)
    b = games.nash_gap(ex.game, state.strategies)
    c = games.nash_gap(ex.game, (state.z["x"], state.z["y"]))
    np.testing.assert_allclose(a.gap, b.gap, rtol=1e-6)
    np.testing.assert_allclose(a.gap, c.gap, rtol=1e-6)
    with pytest.raises(TypeError):
        games.nash_gap(ex.game, 3.0)
    with pytest.raises(ValueError):
        games.nash_gap(games.examples.polynomial(jax.random.PRNGKey(0), 3).game, (state.z["x"], state.z["y"]),
                       method="grid")
