"""Targets of the depth-separation literature (mfsample/data/depth.py): radial oscillatory targets,
the Bruna–Jelassi–Venturi target under Student-t inputs, random deep ReLU networks on the sphere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mfsample.data import (
    PROFILES,
    bjv_function,
    bjv_target,
    deep_relu_target,
    radial_inputs,
    radial_profile,
    radial_target,
    relu_network,
    student_t_inputs,
)


def random_rotation(dim, seed):
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


# -- radial targets ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_radial_target_is_invariant_under_rotations(profile):
    """f(Q x) = f(x) for random orthogonal Q: the target depends on |x| only.  Tolerance: float32
    norms (relative error ~1e-7 on r <= 2 sqrt(5)) times the profile's Lipschitz constant
    2 pi n / (r_max - r_min) ~ 14 gives ~1e-5; atol 1e-4."""
    data = radial_target(jax.random.PRNGKey(0), dim=5, num_data=512, profile=profile)
    for seed in range(3):
        q = random_rotation(5, seed)
        np.testing.assert_allclose(data.target(data.x @ q.T), data.y, atol=1e-4)
    # and it is not constant: the profile oscillates over the inputs' radii
    assert float(jnp.std(data.y)) > 0.3


def test_radial_cosine_profile_closed_form():
    """g(r) = cos(2 pi n (r - r_min) / (r_max - r_min)) at points r v (v a random unit vector)."""
    data = radial_target(jax.random.PRNGKey(1), dim=3, num_data=8, num_oscillations=4, radii=(1.0, 3.0))
    r = np.linspace(0.5, 3.5, 61)
    v = np.random.default_rng(0).normal(size=3)
    x = r[:, None] * v / np.linalg.norm(v)
    np.testing.assert_allclose(data.target(x), np.cos(2 * np.pi * 4 * (r - 1.0) / 2.0), atol=1e-5)
    assert data.params["signs"] is None and data.params["radii"] == (1.0, 3.0)


def test_radial_bumps_profile_closed_form():
    """Bumps: g = signs[i] at the middle of shell i, 0 on the shells' boundaries and outside
    [r_min, r_max], |g| = |sin(pi s)| inside; the signs are +-1 and not all equal (seeded)."""
    n, radii = 6, (2.0, 5.0)
    data = radial_target(jax.random.PRNGKey(2), dim=4, num_data=8, num_oscillations=n, profile="bumps", radii=radii)
    signs = np.asarray(data.params["signs"])
    assert set(np.unique(signs)) == {-1.0, 1.0}
    width = (radii[1] - radii[0]) / n
    middles = radii[0] + (np.arange(n) + 0.5) * width
    boundaries = radii[0] + np.arange(n + 1) * width
    outside = np.array([0.0, 1.0, 1.99, 5.01, 9.0])
    e1 = np.eye(4)[0]
    np.testing.assert_allclose(data.target(middles[:, None] * e1), signs, atol=1e-6)
    np.testing.assert_allclose(data.target(boundaries[:, None] * e1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(data.target(outside[:, None] * e1), 0.0)
    r = np.linspace(radii[0], radii[1], 301)[:-1]
    s = n * (r - radii[0]) / (radii[1] - radii[0])
    expect = signs[np.minimum(np.floor(s).astype(int), n - 1)] * np.abs(np.sin(np.pi * s))
    np.testing.assert_allclose(
        radial_profile(r, radii=radii, num_oscillations=n, profile="bumps", signs=signs), expect, atol=1e-5
    )


def test_radial_inputs_cover_the_range_uniformly():
    """|x| is uniform on [r_min, r_max] (default (sqrt(d), 2 sqrt(d))): Kolmogorov–Smirnov distance
    below 1.95 / sqrt(n) (the 0.1% critical value); directions x / |x| average to ~0 (each
    coordinate's mean has std 1/sqrt(n d), 5 std allowed)."""
    n, dim = 4000, 9
    x = np.asarray(radial_inputs(jax.random.PRNGKey(3), n, dim), np.float64)
    r = np.linalg.norm(x, axis=1)
    assert r.min() >= 3.0 - 1e-5 and r.max() <= 6.0 + 1e-5
    assert stats.kstest(r, stats.uniform(loc=3.0, scale=3.0).cdf).statistic < 1.95 / np.sqrt(n)
    assert np.abs((x / r[:, None]).mean(axis=0)).max() < 5 / np.sqrt(n * dim)


# -- the BJV target and Student-t inputs ---------------------------------------------------------


@pytest.mark.parametrize("frequency", [None, 7.0])
def test_bjv_target_equals_the_formula_in_numpy(frequency):
    """f(x) = cos(<omega, relu(U x + b)>) recomputed in float64 NumPy from the same U, b, omega, x.
    Tolerance: the standard bound on float32 sums of n terms (error <= n eps sum |terms|) gives a
    phase error <= eps (k sum_j |omega_j h_j| + (d + 1) sum_j |omega_j| (sum_i |U_ji x_i| + |b_j|))
    (outer sum, then the inner sums through the 1-Lipschitz relu); cos is 1-Lipschitz; factor 2."""
    dim = k = 4
    data = bjv_target(jax.random.PRNGKey(4), dim=dim, num_data=256, frequency=frequency)
    U, b, omega = (np.asarray(data.params[name], np.float64) for name in ("U", "b", "omega"))
    x = np.asarray(data.x, np.float64)
    h = np.maximum(x @ U.T + b, 0.0)
    inner = np.abs(x) @ np.abs(U).T + np.abs(b)
    bound = k * (np.abs(h) @ np.abs(omega)) + (dim + 1) * (inner @ np.abs(omega))
    atol = 2 * np.finfo(np.float32).eps * bound + 1e-6
    np.testing.assert_array_less(np.abs(np.asarray(data.y) - np.cos(h @ omega)), atol)
    np.testing.assert_array_equal(data.target(data.x), data.y)  # noise = 0: labels are the target
    np.testing.assert_array_equal(bjv_function(data.params, data.x), data.y)


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_bjv_frequency_has_the_documented_scale(dim):
    """|omega| = d^3 by default, the given frequency otherwise; inner width k = d by default; the
    rows of U are unit vectors."""
    data = bjv_target(jax.random.PRNGKey(dim), dim=dim, num_data=4)
    np.testing.assert_allclose(np.linalg.norm(data.params["omega"]), dim**3, rtol=1e-6)
    assert data.params["frequency"] == dim**3 and data.params["omega"].shape == (dim,)
    np.testing.assert_allclose(np.linalg.norm(data.params["U"], axis=1), 1.0, rtol=1e-6)
    other = bjv_target(jax.random.PRNGKey(dim), dim=dim, num_data=4, inner_width=5, frequency=2.5)
    np.testing.assert_allclose(np.linalg.norm(other.params["omega"]), 2.5, rtol=1e-6)
    assert other.params["U"].shape == (5, dim) and other.params["b"].shape == (5,)


def assert_quantiles(sample, law, probs, n_std=5.0):
    """Empirical quantiles of ``sample`` within ``n_std`` asymptotic standard deviations of
    ``law``'s: the empirical p-quantile is asymptotically normal with standard deviation
    sqrt(p (1 - p) / n) / density(x_p)."""
    n = sample.size
    for p in probs:
        x_p = law.ppf(p)
        std = np.sqrt(p * (1 - p) / n) / law.pdf(x_p)
        assert abs(np.quantile(sample, p) - x_p) < n_std * std, (p, np.quantile(sample, p), x_p, std)


def test_student_t_radii_have_the_f_law_and_its_heavy_tail():
    """|x|^2 / d ~ F(d, nu) and <w, x> ~ t(nu) for a unit w; quantiles up to 0.999 (the tail: the
    0.999 quantile of F(5, 3) is ~ 28, of a Gaussian input's chi^2_5 / 5 only ~ 4.1)."""
    n, dim, dof = 40000, 5, 3.0
    x = np.asarray(student_t_inputs(jax.random.PRNGKey(5), n, dim, dof), np.float64)
    probs = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
    assert_quantiles(np.sum(x**2, axis=1) / dim, stats.f(dim, dof), probs)
    w = np.random.default_rng(1).normal(size=dim)
    assert_quantiles(x @ (w / np.linalg.norm(w)), stats.t(dof), probs)
    data = bjv_target(jax.random.PRNGKey(6), dim=dim, num_data=n, dof=dof)  # the target's own inputs
    assert_quantiles(np.sum(np.asarray(data.x, np.float64) ** 2, axis=1) / dim, stats.f(dim, dof), probs)


# -- random deep ReLU networks on the sphere -----------------------------------------------------


def test_deep_relu_target_is_normalised_to_sup_one():
    """|f| = 1 at the estimation sample's best point, and on 2^18 fresh sphere points max |f| is 1
    within 1% (d = 3: 2^16 points leave gaps of ~0.01 on S^2, and the network is O(1)-Lipschitz
    relative to its sup).  The target is f_raw / sup with f_raw = relu_network(params, .)."""
    data = deep_relu_target(jax.random.PRNGKey(7), dim=3, num_data=64, depth=3, width=16)
    params = data.params
    assert params["sup_sample_size"] == 2**16 and params["sup"] > 0
    np.testing.assert_allclose(np.linalg.norm(params["sup_point"]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(abs(float(data.target(params["sup_point"][None])[0])), 1.0, rtol=1e-5)
    x, y = data.sample(jax.random.PRNGKey(8), 2**18)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert 0.99 <= float(jnp.max(jnp.abs(y))) <= 1.01
    np.testing.assert_allclose(relu_network(params, data.x) / params["sup"], data.y, rtol=1e-5, atol=1e-7)


def test_relu_network_by_hand_and_positive_homogeneity():
    """relu_network against a NumPy forward pass; without biases f(c x) = c f(x) for c > 0 (and the
    biases are zero), with biases it is not homogeneous."""
    # 9000 points: one full block of 8192 and a partial one
    data = deep_relu_target(jax.random.PRNGKey(9), dim=4, num_data=32, depth=3, width=8, sup_sample_size=9000)
    params = data.params
    np.testing.assert_allclose(abs(float(data.target(params["sup_point"][None])[0])), 1.0, rtol=1e-5)
    assert [w.shape for w in params["weights"]] == [(8, 4), (8, 8), (8, 8)]
    assert all(np.all(np.asarray(b) == 0) for b in params["biases"])
    h = np.asarray(data.x, np.float64)
    for w in params["weights"]:
        h = np.maximum(h @ np.asarray(w, np.float64).T, 0.0)
    np.testing.assert_allclose(relu_network(params, data.x), h @ np.asarray(params["a"]), rtol=1e-4, atol=1e-6)
    for c in (0.3, 2.0, 7.5):
        np.testing.assert_allclose(data.target(c * data.x), c * data.target(data.x), rtol=1e-5, atol=1e-6)
    biased = deep_relu_target(
        jax.random.PRNGKey(9), dim=4, num_data=32, depth=3, width=8, bias=True, sup_sample_size=1024
    )
    assert biased.params["bias"] and not np.allclose(biased.target(2.0 * biased.x), 2.0 * biased.y, atol=1e-3)


# -- shapes, determinism, noise, validation ------------------------------------------------------

BUILDERS = {
    "radial": lambda key, **kw: radial_target(key, dim=3, **kw),
    "bumps": lambda key, **kw: radial_target(key, dim=3, profile="bumps", **kw),
    "bjv": lambda key, **kw: bjv_target(key, dim=3, frequency=3.0, **kw),
    "deep_relu": lambda key, **kw: deep_relu_target(key, dim=3, sup_sample_size=2048, **kw),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_shapes_determinism_and_label_noise(name):
    """x (N, d), y (N,); the same key gives the same data; sample(key, num) gives fresh data of the
    requested size; with noise, y - f(x) has standard deviation ~noise (4000 draws: within 10%,
    more than 6 standard errors sqrt(1/(2n)) ~ 1.1%)."""
    build = BUILDERS[name]
    data = build(jax.random.PRNGKey(10), num_data=50)
    assert data.x.shape == (50, 3) and data.y.shape == (50,)
    np.testing.assert_array_equal(build(jax.random.PRNGKey(10), num_data=50).x, data.x)
    x, y = data.sample(jax.random.PRNGKey(11), 7)
    assert x.shape == (7, 3) and y.shape == (7,) and not np.allclose(x, data.x[:7])
    noisy = build(jax.random.PRNGKey(10), num_data=4000, noise=0.5)
    residual = np.asarray(noisy.y - noisy.target(noisy.x))
    assert abs(residual.std() - 0.5) < 0.05 and abs(residual.mean()) < 0.05
    with pytest.raises(ValueError, match="num must be an integer >= 1"):
        data.sample(jax.random.PRNGKey(0), 0)


@pytest.mark.parametrize(
    ("build", "kwargs", "error", "match"),
    [
        (radial_target, {"dim": 0}, ValueError, "dim must be an integer >= 1"),
        (radial_target, {"num_data": 2.0}, ValueError, "num_data must be an integer"),
        (radial_target, {"noise": -1.0}, ValueError, "noise must be non-negative"),
        (radial_target, {"profile": "square"}, ValueError, "profile must be one of"),
        (radial_target, {"radii": (2.0, 1.0)}, ValueError, "r_min < r_max"),
        (radial_target, {"radii": (1.0,)}, ValueError, "radii must be a pair"),
        (radial_target, {"num_oscillations": 0}, ValueError, "num_oscillations must be an integer"),
        (bjv_target, {"dof": 0.0}, ValueError, "dof must be positive"),
        (bjv_target, {"frequency": -1.0}, ValueError, "frequency must be positive"),
        (bjv_target, {"inner_width": 0}, ValueError, "inner_width must be an integer"),
        (bjv_target, {"dof": "3"}, TypeError, "dof must be a real number"),
        (deep_relu_target, {"depth": 0}, ValueError, "depth must be an integer >= 1"),
        (deep_relu_target, {"width": 1.5}, ValueError, "width must be an integer"),
        (deep_relu_target, {"sup_sample_size": 0}, ValueError, "sup_sample_size must be an integer"),
        (deep_relu_target, {"bias": "yes"}, TypeError, "bias must be True or False"),
    ],
)
def test_invalid_inputs_are_refused(build, kwargs, error, match):
    """Each builder names the bad value and the rule."""
    with pytest.raises(error, match=match):
        build(jax.random.PRNGKey(0), **{"dim": 3, "num_data": 10, **kwargs})


def test_radial_profile_and_student_t_inputs_validate():
    with pytest.raises(ValueError, match="signs of shape"):
        radial_profile(jnp.ones(3), radii=(1.0, 2.0), num_oscillations=3, profile="bumps", signs=jnp.ones(2))
    with pytest.raises(ValueError, match="radii must be a pair"):
        radial_profile(jnp.ones(3), radii=None, num_oscillations=3)
    with pytest.raises(ValueError, match="dof must be positive"):
        student_t_inputs(jax.random.PRNGKey(0), 10, 3, dof=-2.0)
