"""Shared parameters (latent sites outside the particle plate) moved beside the particles.

The depth-three network's first layer ``(U, c)`` is shared; its particles ``(a, w, b)`` form the
measure.  Its gradient flow is ``theta_j <- theta_j - dt n grad_{theta_j} E`` for the particles and
``s <- s - dt eta grad_s E`` for the shared sites: written out by hand below, with the energy
``E = (1/2N) sum_i (f(x_i) - y_i)^2 + log(2 pi)/2`` computed without the model.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import mfsample as mf


@pytest.fixture(scope="module")
def data():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=40)


def _hand_energy(params, x, y):
    d = x.shape[1]
    h = jax.nn.relu(x @ params["U"].T / np.sqrt(d) + params["c"])
    units = jax.nn.relu(h @ params["w"].T + params["b"])
    f = units @ params["a"] / params["a"].shape[0]
    return 0.5 * jnp.mean((f - y) ** 2) + 0.5 * np.log(2 * np.pi)


def _hand_flow(params, x, y, dt, eta, num_steps):
    """Euler steps of the mean-field gradient flow, particles at speed n, shared sites at eta."""
    n = params["a"].shape[0]
    out = []
    for _ in range(num_steps):
        g = jax.grad(_hand_energy)(params, x, y)
        params = {k: v - dt * (eta if k in ("U", "c") else n) * g[k] for k, v in params.items()}
        out.append(params)
    return out


def test_depth_three_flow_equals_the_hand_written_gradient_flow(data):
    """Same updates, step by step, to float32 tolerance (20 steps of an O(1) system: 2e-5)."""
    n, dt, eta, steps = 16, 0.2, 0.5, 20
    energy = mf.energy_from_model(mf.models.deep_network, (data.x, data.y), {"width": n})
    assert energy.shared_names == ("U", "c") and energy.site_names == ("a", "w", "b")
    z0 = energy.sample_prior(jax.random.PRNGKey(3))
    kernel = mf.WassersteinFlow(mf.models.deep_network, step_size=dt, shared_step_scale=eta)
    sim = mf.simulate(kernel, jax.random.PRNGKey(4), data.x, data.y, width=n, num_steps=steps, init_params=z0,
                      progress_bar=False)  # fmt: skip
    hand = _hand_flow(dict(z0), data.x, data.y, dt, eta, steps)
    for site in ("U", "c", "a", "w", "b"):
        want = np.stack([p[site] for p in hand])
        np.testing.assert_allclose(sim.samples[site][0], want, atol=2e-5, err_msg=site)
    e_hand = [float(_hand_energy(p, data.x, data.y)) for p in hand]
    np.testing.assert_allclose(sim.stats["energy"][0], e_hand, rtol=1e-5)
    assert e_hand[-1] < e_hand[0] - 1e-3  # the flow really moved


def test_shared_step_scale_is_the_shared_sites_time_scale(data):
    """eta = 0.5 vs 1: the shared sites' first step halves; the particles' first step is the same
    (the steps are differences of O(1) float32 positions: atol 5e-7 is 4 ulps)."""
    z0 = mf.energy_from_model(mf.models.deep_network, (data.x, data.y), {"width": 8}).sample_prior(
        jax.random.PRNGKey(1)
    )
    steps = {}
    for eta in (0.5, 1.0):
        k = mf.WassersteinFlow(mf.models.deep_network, step_size=0.1, shared_step_scale=eta)
        s = mf.simulate(
            k, jax.random.PRNGKey(0), data.x, data.y, width=8, num_steps=1, init_params=z0, progress_bar=False
        )
        steps[eta] = {site: s.samples[site][0, 0] - z0[site] for site in z0}
    np.testing.assert_allclose(steps[0.5]["U"], 0.5 * steps[1.0]["U"], rtol=1e-4, atol=5e-7)
    np.testing.assert_allclose(steps[0.5]["w"], steps[1.0]["w"], rtol=1e-5, atol=5e-7)
    assert np.abs(steps[1.0]["U"]).max() > 1e-4


def _tiny(x, y=None, *, width, masses=None):
    """One shared scalar (an output offset s ~ N(0, 1)) beside particles (a, w)."""
    s = numpyro.sample("s", dist.Normal(0.0, 1.0))
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    m = jnp.full((width,), 1.0 / width) if masses is None else masses
    f = numpyro.deterministic("f", jnp.tanh(x @ w.T) @ (m * a) + s)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0), obs=y)


def test_adjusted_langevin_with_a_shared_site_agrees_with_nuts():
    """MALA on exp(-(n/tau) E) prod mu0(theta_j) p(s) and NUTS on gibbs_model(_tiny, tau, n) sample the
    same law: the means of s, s^2, a^2 and f at a point agree within 4 combined standard errors
    (batch means over independent chains).  A wrong shared drift or noise scale (e.g. noise
    sqrt(2 tau dt) instead of sqrt(2 tau dt eta / n)) moves the law of s by several errors."""
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 2))
    y = jnp.tanh(x[:, 0]) + 0.3 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (12,))
    n, tau = 3, 0.1
    nuts = MCMC(NUTS(mf.gibbs_model(_tiny, tau, n)), num_warmup=500, num_samples=1500, num_chains=4,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    nuts.run(jax.random.PRNGKey(2), x, y)
    kernel = mf.MeanFieldLangevin(_tiny, step_size=0.05, temperature=tau, adjusted=True, shared_step_scale=2.0)
    sim = mf.simulate(kernel, jax.random.PRNGKey(3), x, y, width=n, num_steps=3000, save_every=10, num_chains=64,
                      progress_bar=False)  # fmt: skip
    assert 0.3 < sim.stats["accept_prob"].mean() < 0.99
    keep = slice(sim.samples["a"].shape[1] // 4, None)

    def observables(s):
        return {"s": s["s"], "s2": s["s"] ** 2, "a2": (s["a"] ** 2).mean(-1), "f0": s["f"][..., 0]}

    ref = observables(nuts.get_samples(group_by_chain=True))
    got = observables({k: v[:, keep] for k, v in sim.samples.items()})
    for k in ref:
        m1, m2 = np.asarray(ref[k]).mean(1), np.asarray(got[k]).mean(1)
        se = np.sqrt(m1.var(ddof=1) / m1.size + m2.var(ddof=1) / m2.size)
        assert abs(m1.mean() - m2.mean()) < 4 * se + 1e-3, (k, m1.mean(), m2.mean(), se)


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_shared_sites_in_every_driver_and_dynamic(data):
    """Chains, MCMC, the reaction (which leaves the shared sites out), InferenceData dims."""
    run = dict(width=8, num_steps=4, save_every=2, progress_bar=False)
    kernels = {
        "langevin": mf.MeanFieldLangevin(mf.models.deep_network, step_size=0.1, temperature=1e-3),
        "kinetic": mf.KineticLangevin(mf.models.deep_network, step_size=0.1, temperature=1e-3),
        "birth_death": mf.WassersteinFisherRao(mf.models.deep_network, step_size=0.1, rate=5.0),
        "weighted": mf.WassersteinFisherRao(mf.models.deep_network, step_size=0.1, rate=5.0, mode="weighted"),
    }
    for name, kernel in kernels.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no divergence or degeneracy warning
            sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, num_chains=2, **run)
        assert sim.samples["U"].shape == (2, 2, 6, 3) and np.all(np.isfinite(sim.samples["U"])), name
        assert np.any(sim.samples["U"][:, 1] != sim.samples["U"][:, 0]), name  # the shared sites move
    mcmc = MCMC(kernels["langevin"], num_warmup=0, num_samples=4, thinning=2, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=8)
    single = mf.simulate(kernels["langevin"], jax.random.PRNGKey(1), data.x, data.y, **run)
    np.testing.assert_allclose(mcmc.get_samples()["U"], single.samples["U"][0], atol=1e-6)
    idata = mf.to_inference_data(single)
    assert "particle" not in idata.posterior["U"].dims and "particle" in idata.posterior["w"].dims


def test_rate_zero_with_shared_sites_is_the_flow(data):
    run = dict(width=8, num_steps=5, progress_bar=False)
    flow = mf.simulate(mf.WassersteinFlow(mf.models.deep_network, step_size=0.1), jax.random.PRNGKey(2), data.x, data.y,
                       **run)  # fmt: skip
    wfr = mf.WassersteinFisherRao(mf.models.deep_network, step_size=0.1, rate=0.0, mode="weighted")
    react = mf.simulate(wfr, jax.random.PRNGKey(2), data.x, data.y, **run)
    for site in ("U", "c", "w"):
        np.testing.assert_allclose(react.samples[site], flow.samples[site], atol=1e-6)


def test_shared_sites_can_be_refused(data):
    kernel = mf.WassersteinFlow(mf.models.deep_network, step_size=0.1, shared_sites=False)
    with pytest.raises(ValueError, match=r"\['U', 'c'\].*outside the particle plate.*shared_step_scale"):
        mf.simulate(kernel, jax.random.PRNGKey(0), data.x, data.y, width=8, num_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="shared_step_scale must be positive"):
        mf.WassersteinFlow(mf.models.deep_network, step_size=0.1, shared_step_scale=0.0)


def test_blocked_and_streamed_runs_with_shared_sites(data, tmp_path):
    """Blocks of data (the shared first layer sees every block) give the unblocked draws to float32
    summation order; a streamed run stores the shared sites without a particle dimension."""
    run = dict(width=8, num_steps=6, save_every=3, progress_bar=False)
    flow = mf.WassersteinFlow(mf.models.deep_network, step_size=0.1)
    plain = mf.simulate(flow, jax.random.PRNGKey(1), data.x, data.y, **run)
    blocked = mf.WassersteinFlow(mf.models.deep_network, step_size=0.1, block_size=8)
    sim = mf.simulate(blocked, jax.random.PRNGKey(1), data.x, data.y, **run)
    for site in plain.samples:
        np.testing.assert_allclose(sim.samples[site], plain.samples[site], atol=1e-6)
    streamed = mf.simulate(flow, jax.random.PRNGKey(1), data.x, data.y, output=tmp_path / "run.nc", **run)
    idata = mf.to_inference_data(streamed)
    assert idata.posterior["U"].dims == ("chain", "draw", "U_dim_0", "U_dim_1")
    np.testing.assert_array_equal(idata.posterior["U"].values, plain.samples["U"])
