"""Energy, first variation and velocity field (mfsample/energy/)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.activations import get_activation

ACTIVATIONS = ["relu", "tanh", "sigmoid", "softplus", lambda u: jnp.sin(u) + 0.5 * u]


def _problem(dtype=jnp.float64, num_data=40, dim=3):
    kx, ky = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, (num_data, dim), dtype)
    y = jnp.sin(x[:, 0]) + 0.3 * jax.random.normal(ky, (num_data,), dtype)
    return x, y


@pytest.mark.parametrize("scaling,p", [("mean_field", 1.0), ("ntk", 0.5)])
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=["relu", "tanh", "sigmoid", "softplus", "callable"])
def test_velocity_matches_finite_differences(activation, scaling, p):
    """v_j = n^(2p-1) dE/dtheta_j: n grad E (mean field), grad E (NTK), vs central differences in float64."""
    with jax.enable_x64(True):
        x, y = _problem()
        n = 6
        pe = mf.energy_from_model(
            mf.models.shallow_network, (x, y), dict(width=n, activation=activation, scaling=scaling)
        )
        assert pe.exponent == p
        z = pe.sample_prior(jax.random.PRNGKey(1))
        v = mf.velocity(pe, z)
        h = 1e-6
        for site in ("a", "w", "b"):
            flat = np.asarray(z[site]).ravel()
            for idx in range(0, flat.size, max(1, flat.size // 7)):
                e = np.zeros_like(flat)
                e[idx] = h
                zp = {**z, site: jnp.asarray((flat + e).reshape(z[site].shape))}
                zm = {**z, site: jnp.asarray((flat - e).reshape(z[site].shape))}
                fd = (pe.energy(zp) - pe.energy(zm)) / (2 * h)
                expected = n ** (2 * p - 1) * fd
                # central differences in float64 have O(h^2 + eps/h) ~ 1e-10 error; ReLU kinks are
                # hit with probability 0 at these random points
                np.testing.assert_allclose(np.asarray(v[site]).ravel()[idx], expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("scaling", ["mean_field", "ntk"])
def test_first_variation_is_covariance_of_residual_and_unit(scaling):
    """V(theta_j; mu) = dE/dm_j equals E_nu[(f(x) - y) n^(1-p) a_j sigma(<w_j,x>+b_j)] (unit noise)."""
    with jax.enable_x64(True):
        x, y = _problem()
        n = 7
        pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=n, scaling=scaling))
        z = pe.sample_prior(jax.random.PRNGKey(2))
        m = jax.random.dirichlet(jax.random.PRNGKey(4), jnp.ones(n))
        V = mf.first_variation(pe, z, m)
        p = pe.exponent
        phi = jax.nn.relu(x @ z["w"].T + z["b"]) * z["a"] * n ** (1 - p)  # (N, n)
        f = phi @ m
        direct = jnp.mean((f - y)[:, None] * phi, axis=0)
        np.testing.assert_allclose(V, direct, rtol=1e-10, atol=1e-12)


def test_energy_is_mean_negative_log_likelihood():
    """E = -(1/N) sum_i log N(y_i | f(x_i), s^2) = mean (f-y)^2/(2 s^2) + log(s sqrt(2 pi))."""
    x, y = _problem(jnp.float32)
    pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=5, noise=0.5))
    z = pe.sample_prior(jax.random.PRNGKey(0))
    f = jax.nn.relu(x @ z["w"].T + z["b"]) @ z["a"] / 5
    expected = jnp.mean((f - y) ** 2) / (2 * 0.25) + jnp.log(0.5 * jnp.sqrt(2 * jnp.pi))
    np.testing.assert_allclose(pe.energy(z), expected, rtol=1e-5)
    assert pe.num_data == x.shape[0]


def test_masses_weight_the_output():
    """With masses m, f = sum_j m_j a_j sigma_j (mean field); uniform masses reproduce masses=None."""
    x, y = _problem(jnp.float32)
    n = 5
    pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=n))
    z = pe.sample_prior(jax.random.PRNGKey(0))
    np.testing.assert_allclose(pe.energy(z, jnp.full(n, 1 / n)), pe.energy(z), rtol=1e-6)
    m = jnp.array([1.0, 0, 0, 0, 0])
    f1 = z["a"][0] * jax.nn.relu(x @ z["w"][0] + z["b"][0])
    np.testing.assert_allclose(pe.energy(z, m), jnp.mean((f1 - y) ** 2) / 2 + 0.5 * jnp.log(2 * jnp.pi), rtol=1e-5)


def test_constrained_sites_move_in_unconstrained_space():
    """A positive site (LogNormal prior) is moved in log-space; the prior density gains the log-Jacobian."""

    def model(x, y=None, *, width, masses=None):
        with numpyro.plate("particle", width):
            s = numpyro.sample("s", dist.LogNormal(0.0, 1.0))
            c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        f = jnp.mean(c * jnp.exp(-s * x[:, None] ** 2), axis=1)
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(f, 1.0), obs=y)

    x = jnp.linspace(-1, 1, 10)
    pe = mf.energy_from_model(model, (x, jnp.zeros(10)), dict(width=4))
    z = pe.sample_prior(jax.random.PRNGKey(0))
    params = pe.constrain(z)
    assert np.all(np.asarray(params["s"]) > 0)
    np.testing.assert_allclose(params["s"], jnp.exp(z["s"]), rtol=1e-6)
    # log-density of u = log s under LogNormal(0,1) is N(u; 0, 1)
    expected = dist.Normal(0, 1).log_prob(z["s"]) + dist.Normal(0, 1).log_prob(z["c"])
    np.testing.assert_allclose(pe.log_prior(z), expected, rtol=1e-5, atol=1e-6)


def test_latent_site_outside_particle_plate_is_shared_or_refused():
    """A latent site outside the plate is a shared parameter (a scalar here: no particle axis,
    its own prior in unconstrained coordinates); with shared_sites=False it is refused by name."""

    def model(x, y=None, *, width):
        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        with numpyro.plate("particle", width):
            c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(jnp.mean(c) * x, scale), obs=y)

    pe = mf.energy_from_model(model, (jnp.ones(3), jnp.ones(3)), dict(width=4))
    assert pe.shared_names == ("scale",) and pe.site_names == ("c",)
    z = {"c": jnp.zeros(4), "scale": jnp.array(0.0)}  # scale = exp(0) = 1 after the log transform
    # log p(s) in unconstrained coordinates: HalfNormal(1) density at 1 plus the log-Jacobian log(1) = 0
    np.testing.assert_allclose(pe.shared_log_prior(z), dist.HalfNormal(1.0).log_prob(1.0), rtol=1e-6)
    assert pe.log_prior(z).shape == (4,)  # the particles' prior leaves the shared site out
    with pytest.raises(ValueError, match=r"\['scale'\].*outside the particle plate.*shared_step_scale"):
        mf.energy_from_model(model, (jnp.ones(3), jnp.ones(3)), dict(width=4), shared_sites=False)


def test_model_without_observations_is_refused():
    with pytest.raises(ValueError, match="no observed site"):
        mf.energy_from_model(mf.models.shallow_network, (jnp.ones((4, 2)),), dict(width=3))


def test_model_without_masses_keyword_cannot_weight():
    """A model without `masses` works without weights but refuses the first variation."""

    def model(x, y=None, *, width):
        with numpyro.plate("particle", width):
            c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(jnp.mean(c) * x, 1.0), obs=y)

    pe = mf.energy_from_model(model, (jnp.ones(3), jnp.ones(3)), dict(width=4))
    z = pe.sample_prior(jax.random.PRNGKey(0))
    assert np.isfinite(pe.energy(z))
    with pytest.raises(TypeError, match="masses"):
        mf.first_variation(pe, z)


def test_energy_fn_and_model_paths_agree():
    """energy_fn(particles, masses, x, y) + prior gives the same E and velocity as the model."""
    x, y = _problem(jnp.float32)
    n = 6
    sigma = get_activation("relu")

    def energy_fn(theta, masses, x, y):
        f = sigma(x @ theta["w"].T + theta["b"]) @ (theta["a"] * masses)
        return jnp.mean((f - y) ** 2) / 2 + 0.5 * jnp.log(2 * jnp.pi)

    d = x.shape[1]
    prior = {
        "a": dist.Normal(0.0, 1.0),
        "w": dist.Normal(0.0, 1 / np.sqrt(d)).expand([d]).to_event(1),
        "b": dist.Normal(0.0, 1.0),
    }
    pe_fn = mf.energy_from_fn(energy_fn, prior, (x, y), width=n)
    pe_model = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=n))
    z = pe_model.sample_prior(jax.random.PRNGKey(5))
    np.testing.assert_allclose(pe_fn.energy(z), pe_model.energy(z), rtol=1e-5)
    for k in "awb":
        np.testing.assert_allclose(mf.velocity(pe_fn, z)[k], mf.velocity(pe_model, z)[k], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pe_fn.log_prior(z), pe_model.log_prior(z), rtol=1e-5)


def test_kernel_scaling_must_agree_with_model():
    """The scaling is set once, on the model; a conflicting kernel setting is refused."""
    x, y = _problem(jnp.float32)
    with pytest.raises(ValueError, match="set the scaling once"):
        mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=3, scaling="ntk"), scaling="mean_field")


def test_bounded_supports_survive_the_abstract_metadata_trace():
    """energy_from_model reads the model's sites from an abstract trace (no N x n arithmetic); a
    support whose bounds are distribution parameters (Uniform(lo, hi)) needs their values, so
    the trace falls back to the eager one: the run keeps every particle inside its bounds."""

    def model(x, y=None, *, width):
        with numpyro.plate("particle", width):
            a = numpyro.sample("a", dist.Uniform(-1.0, 2.0))
            w = numpyro.sample("w", dist.Uniform(jnp.zeros(()) - 3.0, 3.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(jnp.tanh(x[:, None] * w) @ a / width, 1.0), obs=y)

    x = jnp.linspace(-1, 1, 32)
    sim = mf.simulate(
        mf.WassersteinFlow(model, step_size=0.5),
        jax.random.PRNGKey(0),
        x,
        jnp.sin(3 * x),
        width=16,
        num_steps=20,
        progress_bar=False,
    )
    a, w = sim.samples["a"], sim.samples["w"]
    assert np.all((a > -1) & (a < 2)) and np.all((w > -3) & (w < 3))
    pe = mf.energy_from_model(model, (x, jnp.sin(3 * x)), {"width": 16})
    z = pe.sample_prior(jax.random.PRNGKey(1))
    back = pe.unconstrain(pe.constrain(z))
    np.testing.assert_allclose(back["a"], z["a"], rtol=1e-4, atol=1e-5)


def _one_site_model(site, *, observe=True):
    """A model with the particle sites drawn by ``site(width)`` and (optionally) 3 observed data."""

    def model(x, y=None, *, width):
        c = site(width)
        if observe:
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("y", dist.Normal(jnp.mean(c) * x, 1.0), obs=y)

    return model


def test_particle_plate_must_lead_and_be_shared():
    def not_leading(width):
        with numpyro.plate("particle", width):
            return numpyro.sample("c", dist.Normal(0.0, 1.0).expand([2, width]))

    def two_sizes(width):
        with numpyro.plate("particle", width):
            c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        with numpyro.plate("particle", width + 1):
            return c + jnp.mean(numpyro.sample("d", dist.Normal(0.0, 1.0)))

    data = (jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"'c' has shape \(2, 4\).*must be its leading axis"):
        mf.energy_from_model(_one_site_model(not_leading), data, dict(width=4))
    with pytest.raises(ValueError, match=r"plate sizes \{'c': 4, 'd': 5\}"):
        mf.energy_from_model(_one_site_model(two_sizes), data, dict(width=4))


def test_particle_sites_must_declare_one_scaling():
    def site(width):
        with numpyro.plate("particle", width):
            a = numpyro.sample("a", dist.Normal(0.0, 1.0), infer={mf.scaling.SCALING_INFER_KEY: 1.0})
            b = numpyro.sample("b", dist.Normal(0.0, 1.0), infer={mf.scaling.SCALING_INFER_KEY: 0.5})
        return a * b

    with pytest.raises(ValueError, match=r"different scalings: \[0.5, 1.0\]"):
        mf.energy_from_model(_one_site_model(site), (jnp.ones(3), jnp.ones(3)), dict(width=4))


def test_declared_scaling_is_the_energys_exponent():
    def site(width):
        with numpyro.plate("particle", width):
            return numpyro.sample("c", dist.Normal(0.0, 1.0), infer={mf.scaling.SCALING_INFER_KEY: 0.5})

    pe = mf.energy_from_model(_one_site_model(site), (jnp.ones(3), jnp.ones(3)), dict(width=4))
    assert pe.exponent == 0.5 and pe.num_data == 3.0 and pe.site_names == ("c",)
    undeclared = _one_site_model(_normal_site)
    assert mf.energy_from_model(undeclared, (jnp.ones(3), jnp.ones(3)), dict(width=4)).exponent == 1.0
    assert mf.energy_from_model(undeclared, (jnp.ones(3), jnp.ones(3)), dict(width=4), scaling="ntk").exponent == 0.5


def _normal_site(width):
    with numpyro.plate("particle", width):
        return numpyro.sample("c", dist.Normal(0.0, 1.0))


def test_block_size_needs_per_datum_arguments():
    """The data are made inside the model: nothing to split into blocks."""

    def model(num, *, width):
        c = _normal_site(width)
        with numpyro.plate("data", num):
            numpyro.sample("y", dist.Normal(jnp.mean(c), 1.0), obs=jnp.zeros(num))

    assert mf.energy_from_model(model, (10,), dict(width=4), block_size=20).block_size is None
    with pytest.raises(ValueError, match="block_size=3 needs per-datum array arguments.*N = 10"):
        mf.energy_from_model(model, (10,), dict(width=4), block_size=3)


def test_frozen_sites_are_checked():
    x, y = _problem(jnp.float32)
    with pytest.raises(ValueError, match=r"frozen sites \['v'\] are not particle sites"):
        mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=3), frozen=("v",))
    with pytest.raises(ValueError, match="every particle site is frozen"):
        mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=3), frozen=("a", "w", "b"))
    pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=3), frozen="w")
    z = pe.sample_prior(jax.random.PRNGKey(0))
    v = mf.velocity(pe, z)
    assert pe.frozen == ("w",) and not np.any(v["w"]) and np.any(v["a"])


@pytest.mark.parametrize("width", [0, 2.0, True, "4"])
def test_energy_from_fn_width_is_a_positive_integer(width):
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        mf.energy_from_fn(lambda theta, m: jnp.sum(theta), dist.Normal(0.0, 1.0), width=width)


def test_subsample_is_the_energy_of_the_drawn_data():
    """subsample(key, B) is the energy of B rows drawn without replacement; B >= N is the energy itself."""
    x, y = _problem(jnp.float32)
    pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=5), block_size=16)
    z = pe.sample_prior(jax.random.PRNGKey(0))
    assert pe.subsample(jax.random.PRNGKey(1), 40) is pe
    sub = pe.subsample(jax.random.PRNGKey(1), 12)
    idx = jax.random.choice(jax.random.PRNGKey(1), 40, (12,), replace=False)
    direct = mf.energy_from_model(mf.models.shallow_network, (x[idx], y[idx]), dict(width=5))
    assert sub.num_data == 12 and sub.block_size is None and pe.block_size == 16
    np.testing.assert_allclose(sub.energy(z), direct.energy(z), rtol=1e-6)


def test_one_backward_pass_gives_energy_velocity_and_first_variation():
    """``energy_velocity_and_first_variation`` equals the separate passes (uniform and weighted masses)."""
    with jax.enable_x64(True):
        x, y = _problem()
        n = 6
        pe = mf.energy_from_model(mf.models.shallow_network, (x, y), dict(width=n))
        z = pe.sample_prior(jax.random.PRNGKey(5))
        for m in (None, jax.random.dirichlet(jax.random.PRNGKey(6), jnp.ones(n))):
            e, v, fv = mf.energy.energy_velocity_and_first_variation(pe, z, m)
            e0, v0 = mf.energy.energy_and_velocity(pe, z, m)
            np.testing.assert_allclose(e, e0, rtol=1e-12)
            for k in z:
                np.testing.assert_allclose(v[k], v0[k], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(fv, mf.first_variation(pe, z, m), rtol=1e-10, atol=1e-14)
