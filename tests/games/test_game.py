"""Strategy spaces, payoff, value and first variations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

import mfsample as mf
from mfsample import games


def test_sphere_tangent_and_retraction():
    """On S^{d-1}: P g = (I - x x^T) g is orthogonal to x and P is a projection (P P g = P g);
    x / |x| lands on the sphere; uniform draws have mean ~0 (|mean| <= 4 / sqrt(n d) per
    coordinate, n = 4000 draws of coordinates with variance 1/d: 4 standard errors)."""
    s = games.Sphere(5)
    x = s.sample(jax.random.PRNGKey(0), 4000)
    np.testing.assert_allclose(jnp.linalg.norm(x, axis=-1), 1.0, atol=1e-6)
    assert np.all(np.abs(np.asarray(x.mean(0))) < 4 / np.sqrt(4000 * 5))
    g = np.random.default_rng(1).normal(size=x.shape)
    pg = s.tangent(x, g)
    np.testing.assert_allclose(jnp.sum(pg * x, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.tangent(x, pg), pg, atol=1e-5)
    moved = s.retract(x + 0.3 * pg)
    np.testing.assert_allclose(jnp.linalg.norm(moved, axis=-1), 1.0, atol=1e-6)
    # the circle grid is equispaced on S^1
    grid = games.Sphere(2).grid(8)
    np.testing.assert_allclose(grid[2], [0.0, 1.0], atol=1e-6)


def test_box_projection_reflection_and_grid():
    """Box [-1, 1]: clipping is the projection; reflection folds the line onto the box
    (1.2 -> 0.8, -1.5 -> -0.5, 3.5 -> -0.5 after two bounces) and is the identity inside; the grid
    contains the vertices (where linear best responses sit)."""
    b = games.Box(1)
    x = jnp.array([[0.3], [1.2], [-1.5], [3.5]])
    np.testing.assert_allclose(b.retract(x)[:, 0], [0.3, 1.0, -1.0, 1.0])
    np.testing.assert_allclose(b.retract_diffusion(x)[:, 0], [0.3, 0.8, -0.5, -0.5], atol=1e-6)
    grid = games.Box(2, low=[-1, 0], high=[1, 2]).grid(3)  # 3 points per axis
    assert grid.shape == (9, 2)
    for v in ([-1, 0], [-1, 2], [1, 0], [1, 2]):
        assert np.any(np.all(np.isclose(grid, v), axis=-1))
    with pytest.raises(NotImplementedError):
        games.Box(3).grid(27)
    with pytest.raises(ValueError):
        games.Box(2, low=1.0, high=0.0)


def test_value_potentials_and_gradients():
    """L = sum_ij m_i l(x_i, y_j) m'_j (against numpy); ∫V_x dmu_x = ∫V_y dmu_y = L; and
    dL/dx_i = m_i grad V_x(x_i), dL/dy_j = m'_j grad V_y(y_j) (autodiff of the value against
    Game.fields).  Float32 sums of ~50 O(1) terms: 1e-5 relative."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 2))
    game = games.Game(lambda x, y: jnp.tanh(x @ a @ y) + x[0] * y[1] ** 2, games.Euclidean(3), games.Box(2))
    x, y = rng.normal(size=(7, 3)), rng.uniform(-1, 1, size=(5, 2))
    mx, my = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(5))
    p = np.tanh(x @ a @ y.T) + x[:, :1] * y[None, :, 1] ** 2
    expected = mx @ p @ my

    @jax.jit
    def everything(x, y, mx, my):
        value, vx, vy, gx, gy = game.fields(x, y, mx, my)
        dx, dy = jax.grad(lambda u, v: game.value(u, v, mx, my), argnums=(0, 1))(x, y)
        return dict(
            value=value,
            vx=vx,
            vy=vy,
            gx=gx,
            gy=gy,
            dx=dx,
            dy=dy,
            pm=game.payoff_matrix(x, y),
            value2=game.value(x, y, mx, my),
            px=game.potential_x(x, y, my),
            py=game.potential_y(x, y, mx),
            uniform=game.value(x, y),
        )

    r = everything(x, y, mx, my)
    np.testing.assert_allclose(r["pm"], p, rtol=1e-5, atol=1e-6)
    for v in (r["value"], r["value2"], mx @ r["vx"], my @ r["vy"]):
        np.testing.assert_allclose(v, expected, rtol=1e-5)
    np.testing.assert_allclose(r["vx"], r["px"], rtol=1e-6)
    np.testing.assert_allclose(r["vy"], r["py"], rtol=1e-6)
    np.testing.assert_allclose(r["dx"], mx[:, None] * r["gx"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["dy"], my[:, None] * r["gy"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["uniform"], p.mean(), rtol=1e-5)


def _langevin_function(k):
    return 1.0 / np.tanh(k) - 1.0 / k


@pytest.mark.parametrize(
    "x_space, y_space, expected",
    [
        # exp(-kappa x.e1) on S^2 and on [-1, 1]: E[x.e1] = -(coth kappa - 1/kappa), kappa = 1/tau = 2
        (games.Sphere(3), games.Box(1), (-_langevin_function(2.0), -_langevin_function(2.0))),
        # R with mu0 = N(0, 1/4): exp(-x/tau - 2 x^2) = N(-1/2, 1/4); circle: E[cos] = -I_1(2)/I_0(2)
        (games.Euclidean(1, scale=0.5), games.Sphere(2), (-0.5, -ive(1, 2.0) / ive(0, 2.0))),
    ],
    ids=["sphere-box", "euclidean-circle"],
)
def test_noisy_retraction_samples_the_gibbs_law(x_space, y_space, expected):
    """l(x, y) = x_1 - y_1 separates: V_x = x_1 + c and V_y = c' - y_1 whatever the other measure,
    so at temperature tau = 0.5 each particle runs Langevin dynamics on its space for
    exp(-x_1/tau) mu0 (x descends) and exp(+V_y/tau) mu0 = exp(-y_1/tau) mu0 (y ascends).  The
    sphere's normalised noise (Itô drift -tau (d-1) x), the box's reflection and the Gaussian
    confinement must all give these Gibbs laws.  1000 independent particles per player, 20 draws
    over t in [6.5, 16] (relaxation rates >= ~0.5: the initial bias has decayed by e^-3 or more);
    the standard error of the mean of x_1 is <= 0.01 and the Euler bias O(dt = 0.01) ~ 0.01:
    tolerance 0.04."""
    game = games.Game(lambda x, y: x[0] - y[0], x_space, y_space)
    kernel = games.DescentAscent(game, step_size=0.01, temperature=0.5)
    sim = mf.simulate(kernel, jax.random.PRNGKey(0), width=1000, num_steps=1600, save_every=50, progress_bar=False)
    for k, space, mean in (("x", x_space, expected[0]), ("y", y_space, expected[1])):
        first = sim.samples[k][0, -20:, :, 0]
        assert abs(float(np.mean(first)) - mean) < 0.04, k
        if isinstance(space, games.Sphere):
            np.testing.assert_allclose(np.linalg.norm(sim.samples[k][0, -1], axis=-1), 1.0, atol=1e-5)
        if isinstance(space, games.Box):
            assert np.all(np.abs(first) <= 1.0)


def test_circle_distance_to_uniform():
    """Circular W1 to the uniform law (examples.circle_w1_to_uniform): pi / (2n) for n equispaced
    points (the CDF gap is a sawtooth of height 1/n), pi / 2 for a point mass (1e-5: bisection to
    float32 precision), and a point mass carrying all the weight of a weighted measure counts as one."""
    n = np.array([4, 16, 64])
    combs = [
        np.stack([np.cos(2 * np.pi * np.arange(k) / k + 0.1), np.sin(2 * np.pi * np.arange(k) / k + 0.1)], -1)
        for k in n
    ]
    for k, c in zip(n, combs):
        assert float(games.examples.circle_w1_to_uniform(c)) == pytest.approx(np.pi / (2 * k), rel=1e-4)
    dirac = np.array([[0.6, 0.8], [1.0, 0.0]])
    assert float(games.examples.circle_w1_to_uniform(dirac, np.array([1.0, 0.0]))) == pytest.approx(np.pi / 2, rel=1e-5)


def test_game_validation():
    """Spaces and payoff are checked at construction."""
    with pytest.raises(TypeError):
        games.Game(lambda x, y: 0.0, "sphere", games.Sphere(2))
    with pytest.raises(TypeError):
        games.Game(None, games.Sphere(2), games.Sphere(2))
    with pytest.raises(ValueError):
        games.Sphere(1)
    with pytest.raises(ValueError):
        games.Euclidean(0)
