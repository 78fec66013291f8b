"""Run summaries: energy trajectory, divergences, ArviZ's ess/rhat/mcse at stationarity
(mfsample/diagnostics/summary.py)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.diagnostics.summary import summary
from mfsample.inference_data import to_inference_data

KAPPA, TAU, C, N = 2.0, 1.0, 1.5, 8
S = KAPPA / TAU


def quadratic(theta, masses, c):
    return 0.5 * KAPPA * (jnp.sum(masses * theta) - c) ** 2


@pytest.fixture(scope="module")
def langevin_run():
    """MALA on the Gaussian Gibbs law (n = 8), 8 replicas, 200 draws every 0.5 time units."""
    kernel = mf.MeanFieldLangevin(
        energy_fn=quadratic, prior=dist.Normal(0.0, 1.0), width=N, step_size=0.25, temperature=TAU, adjusted=True
    )
    sim = mf.simulate(kernel, jax.random.PRNGKey(0), C, num_steps=400, save_every=2, num_chains=8, progress_bar=False)
    return to_inference_data(sim, kernel=kernel, output_fn=lambda theta, m, x: jnp.sum(m * theta))


def test_stationary_diagnostics_recover_the_gibbs_means(langevin_run):
    """After burn-in ArviZ's summary gives r_hat ~ 1 and the stationary means within 4 mcse:
    E[f] = s c/(1+s) and E[E] = (kappa/2)(1/(n(1+s)) + (c/(1+s))^2)."""
    res = summary(langevin_run)
    assert res.attrs["stationary"] == 1
    assert "metric" in res.dims
    mean_f, mcse_f = (float(res["f"].sel(metric=m, eval_point=0)) for m in ("mean", "mcse_mean"))
    assert abs(mean_f - S * C / (1 + S)) < 4 * mcse_f
    e_exact = 0.5 * KAPPA * (1 / (N * (1 + S)) + (C / (1 + S)) ** 2)
    mean_e, mcse_e = (float(res["energy"].sel(metric=m)) for m in ("mean", "mcse_mean"))
    assert abs(mean_e - e_exact) < 4 * mcse_e
    assert float(res["energy"].sel(metric="r_hat")) < 1.05
    assert float(res["f"].sel(metric="ess_bulk", eval_point=0)) > 100  # 8 chains x 100 kept draws
    assert 0.3 < float(res["accept_rate"].mean()) <= 1.0
    np.testing.assert_allclose(res["energy_mean"], langevin_run.sample_stats["objective"].mean("chain"), rtol=1e-6)
    assert res.attrs["burn_in_time"] == pytest.approx(50.5)  # first kept draw: index 100, t = 101 * 0.5


def test_a_file_written_with_the_former_name_energy_is_still_summarised(langevin_run, tmp_path):
    """A file written before the objective was renamed (``sample_stats.energy``) is read as the
    objective, with a DeprecationWarning naming the new name; the summary is the same."""
    path = tmp_path / "old.nc"
    old = langevin_run.copy()
    old.sample_stats = old.sample_stats.rename({"objective": "energy"})
    old.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert "objective" not in back.sample_stats
    with pytest.warns(DeprecationWarning, match=r"now written as sample_stats\['objective'\]"):
        res = mf.diagnostics.summary(back)
    ref = summary(langevin_run)
    np.testing.assert_allclose(res["energy_mean"], ref["energy_mean"], rtol=1e-6)
    np.testing.assert_allclose(res["energy"].sel(metric="mean"), ref["energy"].sel(metric="mean"), rtol=1e-6)


def test_wasserstein_flow_divergence_and_no_stationary_statistics():
    """A Wasserstein flow with dt * kappa = 25 > 2 diverges (Euler on the particle mean multiplies
    its error by 1 - 25); the summary counts diverging draws, dates the first one, and computes no
    stationary statistics for a temperature-0 run."""
    kernel = mf.WassersteinFlow(
        energy_fn=lambda th, m, c: 0.5 * 25.0 * (jnp.sum(m * th) - c) ** 2,
        prior=dist.Normal(0.0, 1.0),
        width=4,
        step_size=1.0,
    )
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sim = mf.simulate(
            kernel, jax.random.PRNGKey(1), 1.0, num_steps=60, save_every=2, num_chains=2, progress_bar=False
        )
    res = summary(to_inference_data(sim, kernel=kernel))
    assert "metric" not in res.dims and res.attrs["stationary"] == 0
    assert np.all(res["divergent_draws"] > 0)
    first = res["first_divergence_time"].values
    assert np.all(np.isfinite(first)) and np.all(first > 0)
    # diverging draws are exactly those at or after the first divergence
    div = to_inference_data(sim, kernel=kernel).sample_stats["diverging"].values
    times = sim.time
    for c in range(2):
        np.testing.assert_array_equal(div[c], times >= first[c])
