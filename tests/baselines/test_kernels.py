"""Tests of mfsample/baselines/kernels.py: mu0 read from the model, closed-form kernels, Monte Carlo."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.baselines import kernels as K
from mfsample.baselines.lazy import network_predict

DIM = 3


@pytest.fixture(scope="module")
def inputs():
    x1 = jax.random.normal(jax.random.PRNGKey(1), (8, DIM))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (6, DIM))
    return x1, x2


def _relu_sq(u):
    return jnp.maximum(u, 0.0) ** 2


CASES = [  # (name, closed form, Monte-Carlo keywords)
    ("step", functools.partial(K.arc_cosine_kernel, order=0, bias=True), dict(activation="step", bias=True)),
    ("step_nobias", functools.partial(K.arc_cosine_kernel, order=0, bias=False), dict(activation="step", bias=False)),
    ("relu", functools.partial(K.arc_cosine_kernel, order=1, bias=True), dict(activation="relu", bias=True)),
    ("relu_nobias", functools.partial(K.arc_cosine_kernel, order=1, bias=False), dict(activation="relu", bias=False)),
    ("relu_sq", functools.partial(K.arc_cosine_kernel, order=2, bias=True), dict(activation=_relu_sq, bias=True)),
    ("ntk", functools.partial(K.relu_ntk, bias=True), dict(activation="relu", bias=True, tangent=True)),
    ("ntk_nobias", functools.partial(K.relu_ntk, bias=False), dict(activation="relu", bias=False, tangent=True)),
]


@pytest.mark.parametrize("name,closed,mc_kwargs", CASES, ids=[c[0] for c in CASES])
def test_closed_forms_equal_monte_carlo_with_1e6_features(inputs, name, closed, mc_kwargs):
    """Arc-cosine kernels (orders 0, 1, 2; with/without bias) and the ReLU NTK Theta equal
    ``(1/M) sum_m [...]`` over M = 10^6 units from mu0 within 1e-2 (relative to the kernel's size
    when it exceeds 1).  The per-unit products have standard deviation <~ 2 |K|, so the Monte-Carlo
    standard error is <~ 2e-3 |K|: 1e-2 is ~5 standard errors, while a wrong constant (Cho & Saul's
    factor 2, a missing bias coordinate, a missing a^2 term in the NTK) is off by >= 10%."""
    x1, x2 = inputs
    exact = closed(x1, x2)
    mc = K.monte_carlo_kernel(jax.random.PRNGKey(0), 10**6, chunk_size=2**18, **mc_kwargs)(x1, x2)
    err = float(jnp.max(jnp.abs(mc - exact)))
    assert err <= 1e-2 * max(1.0, float(jnp.max(jnp.abs(exact)))), (name, err)


def test_closed_form_follows_the_prior(inputs):
    """The kernel reads mu0 from the model: with b ~ N(0, 2^2) the closed form still equals the
    Monte-Carlo kernel of that prior, and differs from the default-prior kernel by far more than
    the Monte-Carlo error (so the previous test would catch a prior ignored by either side)."""
    x1, x2 = inputs
    prior = {"b_scale": 2.0}
    exact = K.arc_cosine_kernel(x1, x2, 1, prior=prior)
    mc = K.monte_carlo_kernel(jax.random.PRNGKey(3), 2 * 10**5, prior=prior, chunk_size=2**18)(x1, x2)
    # 2e5 units: standard error <~ 2 * 3 / sqrt(2e5) ~ 1.3e-2 on entries of size ~3
    assert float(jnp.max(jnp.abs(mc - exact))) < 5e-2
    assert float(jnp.max(jnp.abs(exact - K.arc_cosine_kernel(x1, x2, 1)))) > 0.5


def test_monte_carlo_kernel_any_activation_matches_quadrature():
    """For tanh units in d = 1 with bias, ``k(x, x') = E[tanh(w x + b) tanh(w x' + b)]`` with
    w, b ~ N(0, 1) is a 2-d Gaussian integral: Gauss-Hermite quadrature (60^2 nodes, exact to
    ~1e-6 for this smooth integrand) must agree with the Monte-Carlo kernel (2e5 units; standard
    error <= 1/sqrt(2e5) ~ 2.2e-3 since |tanh tanh| <= 1) within 1e-2."""
    x = jnp.array([[-1.5], [0.3], [2.0]])
    mc = K.monte_carlo_kernel(jax.random.PRNGKey(4), 2 * 10**5, activation="tanh")(x, x)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    w, b = np.meshgrid(nodes, nodes, indexing="ij")
    wts = np.outer(weights, weights)
    xs = np.asarray(x)[:, 0]
    units = np.tanh(w[None] * xs[:, None, None] + b[None])  # (3, 60, 60)
    quad = np.einsum("ikl,jkl,kl->ij", units, units, wts)
    np.testing.assert_allclose(np.asarray(mc), quad, atol=1e-2)


@pytest.mark.parametrize(
    "name,kernel",
    [
        ("step", functools.partial(K.arc_cosine_kernel, order=0)),
        ("relu", functools.partial(K.arc_cosine_kernel, order=1)),
        ("relu_nobias", functools.partial(K.arc_cosine_kernel, order=1, bias=False)),
        ("relu_sq", functools.partial(K.arc_cosine_kernel, order=2)),
        ("ntk", K.relu_ntk),
        ("ntk_mean_field", functools.partial(K.relu_ntk, scaling="mean_field", width=64)),
    ],
)
def test_kernels_symmetric_positive_semidefinite(name, kernel):
    """Gram matrices of the kernels on 40 points (with a repeated point, the hardest case for the
    arccos near cos = 1) are symmetric and PSD: eigenvalues >= -1e-5 * the largest (float32
    round-off of a 40x40 eigendecomposition is ~1e-6 relative)."""
    x = jax.random.normal(jax.random.PRNGKey(5), (40, 4))
    x = x.at[-1].set(x[0])
    g = np.asarray(kernel(x, x), dtype=np.float64)
    np.testing.assert_allclose(g, g.T, rtol=1e-6, atol=1e-6)
    eig = np.linalg.eigvalsh(g)
    assert eig[0] >= -1e-5 * eig[-1], (name, eig[0], eig[-1])


def test_gaussian_prior_is_read_from_the_model():
    """mu0's scales come from a trace of shallow_network: (1, 1/sqrt(d), 1) by default, its keywords
    when given; a non-Gaussian prior model has no closed form (ValueError) but works by Monte Carlo."""
    s = K.gaussian_prior(9)
    assert s == pytest.approx((1.0, 1.0 / 3.0, 1.0))
    assert K.gaussian_prior(9, {"w_scale": 0.5, "a_scale": 2.0}, bias=False) == pytest.approx((2.0, 0.5, 0.0))

    def laplace_prior(x, y=None, *, width, bias=True):
        with numpyro.plate("particle", width):
            numpyro.sample("a", dist.Normal(0.0, 1.0))
            numpyro.sample("w", dist.Laplace(0.0, 1.0).expand([x.shape[1]]).to_event(1))
            if bias:
                numpyro.sample("b", dist.Normal(0.0, 1.0))

    x = jnp.ones((2, 2))
    with pytest.raises(ValueError, match="not a Normal"):
        K.arc_cosine_kernel(x, x, 1, prior=laplace_prior)
    mc = K.monte_carlo_kernel(jax.random.PRNGKey(0), 1000, prior=laplace_prior)(x, x)
    assert mc.shape == (2, 2) and bool(jnp.all(jnp.isfinite(mc)))


def test_sample_units_is_the_network_prior():
    """Units drawn by sample_units have the moments of mu0: std(w) = 1/sqrt(d), std(b) = std(a) = 1
    (n * d = 8e4 draws: relative standard error of a std ~ 1/sqrt(2 n) = 0.5% for b; tolerance 3%)."""
    u = K.sample_units(jax.random.PRNGKey(0), 20000, 4)
    assert float(jnp.std(u["w"])) == pytest.approx(0.5, rel=3e-2)
    assert float(jnp.std(u["b"])) == pytest.approx(1.0, rel=3e-2)
    assert float(jnp.std(u["a"])) == pytest.approx(1.0, rel=3e-2)
    nob = K.sample_units(jax.random.PRNGKey(0), 5, 4, bias=False)
    assert float(jnp.max(jnp.abs(nob["b"]))) == 0.0


@pytest.mark.parametrize("scaling", ["ntk", "mean_field"])
def test_tangent_kernel_of_the_network_converges_to_the_ntk(scaling):
    """The tangent kernel of the actual model, ``K_n = sum_j grad_{theta_j} f grad_{theta_j} f^T`` (by
    autodiff of shallow_network's ``f``), satisfies ``n^(2p-1) K_n -> Theta`` in both scalings and
    ``K_n -> relu_ntk(scaling, width=n)``.  n = 2^15 units: the relative Monte-Carlo error is
    ~ 2/sqrt(n) ~ 1.1e-2; tolerance 4e-2 relative to max |Theta|."""
    n, p = 2**15, mf.scaling.scaling_exponent(scaling)
    x = jax.random.normal(jax.random.PRNGKey(6), (6, DIM))
    params = K.sample_units(jax.random.PRNGKey(7), n, DIM)
    jac = jax.jit(jax.jacrev(lambda q: network_predict(q, x, scaling=scaling)))(params)
    flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jac.values()], axis=1)
    tangent = flat @ flat.T
    theta = K.relu_ntk(x, x)
    scale = float(jnp.max(jnp.abs(theta)))
    assert float(jnp.max(jnp.abs(n ** (2 * p - 1) * tangent - theta))) < 4e-2 * scale
    limit = K.relu_ntk(x, x, scaling=scaling, width=n)
    assert float(jnp.max(jnp.abs(tangent - limit))) < 4e-2 * scale * n ** (1 - 2 * p)


def test_relu_ntk_mean_field_needs_width():
    """In the mean-field scaling the tangent kernel vanishes like Theta/n, so a width is required."""
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="width"):
        K.relu_ntk(x, x, scaling="mean_field")
    np.testing.assert_allclose(K.relu_ntk(x, x, scaling="mean_field", width=10), K.relu_ntk(x, x) / 10, rtol=1e-6)


def test_random_feature_kernel_names():
    """ReLU -> order 1, step -> order 0; other activations have no closed form here."""
    x = jax.random.normal(jax.random.PRNGKey(8), (4, 2))
    np.testing.assert_allclose(K.random_feature_kernel("relu")(x, x), K.arc_cosine_kernel(x, x, 1))
    np.testing.assert_allclose(K.random_feature_kernel("step")(x, x), K.arc_cosine_kernel(x, x, 0))
    with pytest.raises(ValueError, match="monte_carlo_kernel"):
        K.random_feature_kernel("tanh")
