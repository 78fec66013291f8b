"""The exact F1 optimum and the weight-decay <-> TV map."""

import numpy as np
import pytest

cp = pytest.importorskip("cvxpy")

from mfsample.baselines.exact_f1 import (  # noqa: E402
    activation_patterns,
    atoms_from_particles,
    balance,
    cube_sphere_grid,
    dual_sup,
    f1_objective,
    f1_optimum,
    particles_from_atoms,
    weight_decay_objective,
)


def _one_dim(num_data=15, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1, 1, num_data))[:, None]
    y = np.maximum(x[:, 0] - 0.3, 0) - 0.8 * np.maximum(-x[:, 0] - 0.2, 0) + 0.1 * rng.normal(size=num_data)
    return x, y


def _two_dim(num_data=20, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_data, 2))
    y = np.maximum(x @ np.array([1.0, -0.5]) + 0.2, 0) - np.maximum(x @ np.array([-0.3, 1.0]), 0)
    return x, y + 0.05 * rng.normal(size=num_data)


def _lift(x):
    return np.c_[x, np.ones(len(x))]


def _sampled_patterns(xt, num=200000, seed=0):
    u = np.random.default_rng(seed).normal(size=(num, xt.shape[1]))
    pats = np.unique((xt @ u.T > 0).T, axis=0)
    return {tuple(p) for p in pats if p.any()}


@pytest.mark.parametrize("reg", [1e-1, 1e-2, 1e-3])
def test_dimension_one_matches_a_brute_force_grid_with_a_tight_certificate(reg):
    """d = 1: f1_optimum equals the lasso over 20000 neurons equally spaced in angle on the circle
    of (w, b), solved independently here, up to the grid's discretisation (the grid's value lies
    above, by at most 3e-4 relative: measured 5e-5 at reg = 1e-3, where kinks sit between grid
    angles); the duality gap is below 1e-7 relative, the dual residual has sup norm reg on
    the sphere and <r, relu(X~ u_k)> = reg sign(c_k) on every atom (complementary slackness)."""
    x, y = _one_dim()
    sol = f1_optimum(x, y, reg=reg)
    assert sol.exact and sol.gap >= -1e-12 and sol.gap < 1e-7 * sol.value
    assert abs(sol.dual_norm - 1.0) < 1e-5
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    units = np.stack([np.cos(theta), np.sin(theta)], 1)
    phi = np.maximum(_lift(x) @ units.T, 0)
    c = cp.Variable(len(theta))
    grid = cp.Problem(cp.Minimize(cp.sum_squares(phi @ c - y) / (2 * len(y)) + reg * cp.norm1(c)))
    grid.solve(solver="CLARABEL")
    assert grid.value >= sol.lower_bound - 1e-9  # a feasible measure cannot beat the dual bound
    assert (grid.value - sol.value) / sol.value < 3e-4
    value = f1_objective(x, y, sol.directions, sol.weights, reg=reg)
    np.testing.assert_allclose(value, sol.value, rtol=1e-12)
    on_atoms = np.maximum(_lift(x) @ sol.directions.T, 0).T @ sol.dual
    np.testing.assert_allclose(on_atoms, reg * np.sign(sol.weights), rtol=1e-4)


def test_dimension_two_is_exact_and_below_every_grid():
    """d = 2: the enumerated cones give a certified optimum (relative gap < 1e-6) which lies below
    the cube-sphere grid lasso's value (a feasible measure) and above the grid's rigorous lower
    bound; the grid (m = 40, covering radius 0.035) is within 1e-3 of it."""
    x, y = _two_dim()
    sol = f1_optimum(x, y, reg=1e-2)
    assert sol.exact and sol.gap < 1e-6 * sol.value
    grid = f1_optimum(x, y, reg=1e-2, method="grid", grid_size=40)
    assert not grid.exact and grid.resolution == pytest.approx(np.sqrt(2) / 40)
    assert grid.lower_bound <= sol.value + 1e-9 and sol.lower_bound <= grid.value + 1e-9
    assert (grid.value - sol.value) / sol.value < 1e-3


def test_grid_bracket_contains_the_exact_optimum_in_dimension_three():
    """d = 3 (the grid's regime): without bias the sphere is S^2, so the exact solver applies too;
    the grid's [lower_bound, value] bracket (m = 12) contains the exact certified optimum."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(14, 3))
    y = np.maximum(x @ np.array([1.0, -0.5, 0.3]), 0) - 0.5 * np.maximum(x @ np.array([0.2, 0.9, -0.4]), 0)
    exact = f1_optimum(x, y, reg=1e-2, bias=False)
    grid = f1_optimum(x, y, reg=1e-2, bias=False, method="grid", grid_size=12)
    assert exact.gap < 1e-6 * exact.value
    assert grid.lower_bound <= exact.value + 1e-9 <= grid.value + 2e-9
    with_bias = f1_optimum(x, y, reg=1e-2, grid_size=6)  # D = 4: the grid is the default
    assert not with_bias.exact and with_bias.lower_bound <= with_bias.value


@pytest.mark.parametrize("case", ["d1", "d2", "d2_collinear", "d2_nobias"])
def test_activation_patterns_are_every_cell_of_the_arrangement(case):
    """The enumeration equals the set of patterns hit by 2e5 random directions (every cell of
    these small arrangements is hit) and its size is the number of cells minus the all-off one:
    2N - 1 for lines in R^2, N(N-1) + 2 - 1 for N great circles in general position on S^2
    (with bias all x~ lie in a half-space, so the all-off cell exists)."""
    rng = np.random.default_rng(3)
    if case == "d1":
        x, bias = rng.uniform(-1, 1, (9, 1)), True
    elif case == "d2":
        x, bias = rng.normal(size=(7, 2)), True
    elif case == "d2_collinear":  # three collinear points: three circles through one vertex pair
        x, bias = np.r_[rng.normal(size=(4, 2)), [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]], True
    else:
        x, bias = rng.normal(size=(6, 2)), False
    pats, points = activation_patterns(x, bias=bias)
    xt = _lift(x) if bias else x
    np.testing.assert_array_equal(xt @ points.T > 0, pats.T)  # the interior points realise them
    assert {tuple(p) for p in pats} == _sampled_patterns(xt)
    n = len(x)
    if case == "d1":
        assert len(pats) == 2 * n - 1
    elif case == "d2":
        assert len(pats) == n * (n - 1) + 1
    elif case == "d2_nobias":
        assert len(pats) == 2 * n  # lines through 0 in R^2; no all-off cell


def test_dual_sup_is_the_maximum_over_the_sphere():
    """sup_u |<r, relu(X~ u)>| from the cell / edge / vertex candidates is >= the max over 2e5
    random directions and exceeds it by less than the sampling resolution allows (1e-3 relative)."""
    x, _ = _two_dim(12)
    r = np.random.default_rng(4).normal(size=12)
    s, u = dual_sup(x, r)
    np.testing.assert_allclose(abs(np.maximum(_lift(x) @ u, 0) @ r), s, rtol=1e-12)
    dirs = np.random.default_rng(5).normal(size=(200000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    sampled = np.max(np.abs(np.maximum(_lift(x) @ dirs.T, 0).T @ r))
    assert sampled <= s * (1 + 1e-12) and s - sampled < 1e-3 * s


def test_weight_decay_energy_is_bounded_below_by_the_f1_optimum_and_attains_it():
    """AM-GM: reg/2 (a^2 + |u|^2) >= reg |a||u|, so every network's weight-decay energy is
    >= P* (200 random networks); balanced particles built from the optimal atoms attain P*
    exactly, with masses proportional to |c| or uniform."""
    x, y = _one_dim()
    reg = 1e-2
    sol = f1_optimum(x, y, reg=reg)
    rng = np.random.default_rng(6)
    for _ in range(200):
        n = 8
        a, w, b = rng.normal(size=n), rng.normal(size=(n, 1)), rng.normal(size=n)
        m = rng.dirichlet(np.ones(n))
        assert weight_decay_objective(x, y, a, w, b, m, reg=reg) >= sol.lower_bound
    for uniform in (False, True):
        p = particles_from_atoms(sol.directions, sol.weights, uniform=uniform)
        value = weight_decay_objective(x, y, p["a"], p["w"], p["b"], p["masses"], reg=reg)
        np.testing.assert_allclose(value, sol.value, rtol=1e-10)
        np.testing.assert_allclose(np.abs(p["a"]), np.linalg.norm(np.c_[p["w"], p["b"]], axis=1), rtol=1e-12)


def test_atoms_and_balance_keep_the_function_and_turn_weight_decay_into_tv():
    """atoms_from_particles keeps f and gives TV = sum_j m_j |a_j||(w_j, b_j)| <= the weight decay
    /reg; after balance() the weight-decay penalty equals reg * TV and f is unchanged."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 2))
    y = rng.normal(size=30)
    a, w, b, m = rng.normal(size=6), rng.normal(size=(6, 2)), rng.normal(size=6), rng.dirichlet(np.ones(6))
    f = np.maximum(x @ w.T + b, 0) @ (m * a)
    u, c = atoms_from_particles(a, w, b, m)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0)
    np.testing.assert_allclose(np.maximum(_lift(x) @ u.T, 0) @ c, f, rtol=1e-12)
    reg = 0.3
    loss = 0.5 * np.mean((f - y) ** 2)
    assert weight_decay_objective(x, y, a, w, b, m, reg=reg) >= loss + reg * np.abs(c).sum()
    a2, w2, b2 = balance(a, w, b)
    np.testing.assert_allclose(np.maximum(x @ w2.T + b2, 0) @ (m * a2), f, rtol=1e-12)
    np.testing.assert_allclose(
        weight_decay_objective(x, y, a2, w2, b2, m, reg=reg), f1_objective(x, y, u, c, reg=reg), rtol=1e-12
    )


def test_cube_sphere_grid_covering_radius():
    """Every point of the sphere is within sqrt(D-1)/m (chordal) of the grid (checked on 2e4 random
    points, D = 3 and 4), and the grid has 2 D m^(D-1) unit vectors."""
    rng = np.random.default_rng(8)
    for dim, m in ((3, 8), (4, 5)):
        g, delta = cube_sphere_grid(dim, m)
        assert g.shape == (2 * dim * m ** (dim - 1), dim)
        np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0)
        p = rng.normal(size=(20000, dim))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        dist = np.sqrt(np.maximum(2 - 2 * np.max(p @ g.T, axis=1), 0))
        assert dist.max() <= delta


def test_rejects_bad_input():
    """reg > 0, matching shapes, finite data; exact enumeration only for D <= 3."""
    x, y = _one_dim()
    with pytest.raises(ValueError, match="reg"):
        f1_optimum(x, y, reg=0.0)
    with pytest.raises(ValueError, match="shape"):
        f1_optimum(x, y[:-1], reg=1e-2)
    with pytest.raises(ValueError, match="finite"):
        f1_optimum(np.r_[x[:-1], [[np.nan]]], y, reg=1e-2)
    with pytest.raises(ValueError, match="D = d \\+ bias <= 3"):
        f1_optimum(np.zeros((5, 3)) + np.arange(15).reshape(5, 3), y[:5], reg=1e-2, method="exact")
