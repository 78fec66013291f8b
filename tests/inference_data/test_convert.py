"""Runs as labelled InferenceData (mfsample/inference_data/convert.py and layout.py)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import mfsample as mf
from mfsample.inference_data import to_inference_data
from mfsample.kernels import contract
from mfsample.kernels.wfr import WassersteinFisherRao

WIDTH, CHAINS = 6, 2


@pytest.fixture(scope="module")
def problem():
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=24)
    x_eval, _ = data.sample(jax.random.PRNGKey(5), 7)
    return data, x_eval


@pytest.fixture(scope="module")
def mcmc_run(problem):
    data, _ = problem
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
    mcmc = MCMC(
        kernel,
        num_warmup=0,
        num_samples=8,
        thinning=2,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=WIDTH)
    return mcmc


def _network(a, w, b, x, masses=None):
    """f(x) = sum_j m_j a_j relu(<w_j, x> + b_j), the mean-field network written out by hand."""
    m = jnp.full(a.shape[-1], 1.0 / a.shape[-1]) if masses is None else masses
    return jax.nn.relu(x @ w.T + b) @ (a * m)


def test_layout_dims_time_and_stats(mcmc_run, problem):
    """Posterior dims (chain, draw, particle, ...), t = step * dt on draw, explicit sample_stats."""
    _, x_eval = problem
    idata = to_inference_data(mcmc_run, x_eval=x_eval)
    post = idata.posterior
    assert dict(post["w"].sizes) == {"chain": CHAINS, "draw": 4, "particle": WIDTH, "input_dim": 3}
    assert post["a"].dims == ("chain", "draw", "particle")
    assert post["f"].dims == ("chain", "draw", "data")
    # thinning 2 with dt = 0.05: draws after steps 2, 4, 6, 8
    np.testing.assert_allclose(post["time"].values, [0.1, 0.2, 0.3, 0.4], rtol=1e-12)
    assert post["time"].dims == ("draw",)
    stats = idata.sample_stats
    assert {"objective", "diverging", "grad_norm"} <= set(stats.data_vars)
    assert "time" not in stats.data_vars  # a coordinate, not a statistic
    assert stats["objective"].attrs["description"] == contract.ENERGY.description
    assert idata.predictions["f"].dims == ("chain", "draw", "eval_point")
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.asarray(problem[0].y))
    np.testing.assert_array_equal(idata.constant_data["x"].values, np.asarray(problem[0].x))
    assert idata.posterior.attrs["kernel"] == "MeanFieldLangevin"


def test_the_objective_is_not_recorded_as_arviz_hmc_energy(mcmc_run):
    """E is recorded as sample_stats.objective (described as ENERGY declares), never as ``energy``,
    which ArviZ reads as HMC's Hamiltonian: arviz.bfmi finds no such variable and refuses."""
    idata = to_inference_data(mcmc_run)
    assert contract.ENERGY.name == "energy" and contract.ENERGY.variable == "objective"
    assert "energy" not in idata.sample_stats
    assert idata.sample_stats["objective"].attrs["description"] == contract.ENERGY.description
    with pytest.raises(TypeError, match="Energy variable was not found"):
        az.bfmi(idata)


def test_an_extra_statistic_may_not_take_the_objective_name(problem):
    """An extra statistic named like the recorded objective would overwrite it: refused."""
    data, _ = problem
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.05)
    sim = mf.simulate(kernel, jax.random.PRNGKey(5), data.x, data.y, width=WIDTH, num_steps=2, progress_bar=False)
    extra = {**sim.stats, "objective": np.zeros_like(sim.stats["energy"])}
    with pytest.raises(ValueError, match=r"same sample_stats name \['objective'\]"):
        to_inference_data(sim._replace(stats=extra))


def test_energy_is_the_mean_negative_log_likelihood_not_negated(mcmc_run, problem):
    """sample_stats.objective = E = (1/2N) sum (f - y)^2 + log(2 pi)/2 for unit noise: positive, not -E."""
    data, _ = problem
    idata = to_inference_data(mcmc_run)
    f = idata.posterior["f"].values
    expected = 0.5 * np.mean((f - np.asarray(data.y)) ** 2, axis=-1) + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(idata.sample_stats["objective"].values, expected, rtol=1e-5)


def test_predictions_rerun_the_output_site_at_x_eval(mcmc_run, problem):
    """predictions.f at x_eval equals the network formula with the draw's particles; at the
    training inputs it equals the posterior's deterministic f."""
    data, x_eval = problem
    idata = to_inference_data(mcmc_run, x_eval=x_eval)
    post = idata.posterior
    for c in range(CHAINS):
        for d in (0, 3):
            a, w, b = (post[k].values[c, d] for k in ("a", "w", "b"))
            np.testing.assert_allclose(
                idata.predictions["f"].values[c, d], _network(a, w, b, x_eval), rtol=1e-5, atol=1e-6
            )
    same = to_inference_data(mcmc_run, x_eval=data.x)
    np.testing.assert_allclose(same.predictions["f"].values, post["f"].values, rtol=1e-5, atol=1e-6)


def test_unit_functions_are_the_units_of_the_mean_field_sum(mcmc_run, problem):
    """phi_j(x) = n^(p-1) df/dm_j = a_j relu(<w_j, x> + b_j), and f = (1/n) sum_j phi_j."""
    _, x_eval = problem
    idata = to_inference_data(mcmc_run, x_eval=x_eval, unit_points=4)
    phi = idata.predictions["phi"]
    assert phi.dims == ("chain", "draw", "particle", "unit_point") and phi.sizes["unit_point"] == 4
    post = idata.posterior
    a, w, b = (post[k].values[1, 2] for k in ("a", "w", "b"))
    units = a[:, None] * jax.nn.relu(w @ np.asarray(x_eval[:4]).T + b[:, None])
    np.testing.assert_allclose(phi.values[1, 2], units, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        phi.mean("particle").values, idata.predictions["f"].values[..., :4], rtol=1e-5, atol=1e-6
    )


def test_simulate_result_matches_mcmc(mcmc_run, problem):
    """simulate(kernel, key, ...) and MCMC(..., thinning) give the same draws, hence the same
    InferenceData (posterior, times, energy)."""
    data, x_eval = problem
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(1),
        data.x,
        data.y,
        width=WIDTH,
        num_steps=8,
        save_every=2,
        num_chains=CHAINS,
        progress_bar=False,
    )
    a = to_inference_data(sim, kernel=kernel, x_eval=x_eval)
    b = to_inference_data(mcmc_run, x_eval=x_eval)
    np.testing.assert_allclose(a.posterior["w"].values, b.posterior["w"].values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.posterior["time"].values, b.posterior["time"].values)
    np.testing.assert_allclose(a.sample_stats["objective"].values, b.sample_stats["objective"].values, rtol=1e-5)
    np.testing.assert_allclose(a.predictions["f"].values, b.predictions["f"].values, rtol=1e-5, atol=1e-6)
    assert "step" in a.sample_stats and "accept_prob" in a.sample_stats


def test_netcdf_round_trip(mcmc_run, problem, tmp_path):
    """to_netcdf / from_netcdf keep every group, the time coordinate, booleans and attributes."""
    _, x_eval = problem
    idata = to_inference_data(mcmc_run, x_eval=x_eval)
    path = tmp_path / "run.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        original, loaded = getattr(idata, group), getattr(back, group)
        for name in original.data_vars:
            np.testing.assert_array_equal(loaded[name].values, original[name].values)
            assert loaded[name].dims == original[name].dims
    np.testing.assert_array_equal(back.posterior["time"].values, idata.posterior["time"].values)
    assert back.sample_stats["diverging"].dtype == bool
    assert back.posterior.attrs["step_size"] == 0.05


def test_energy_fn_kernel_with_output_fn():
    """Kernels built from energy_fn: particles under 'theta', predictions from output_fn, and a
    single-prior energy passes the particle array (not a dict) to output_fn."""
    kernel = mf.WassersteinFlow(
        energy_fn=lambda th, m, c: 0.5 * (jnp.sum(m * th) - c) ** 2, prior=dist.Normal(0.0, 1.0), width=5, step_size=0.1
    )
    sim = mf.simulate(kernel, jax.random.PRNGKey(0), 1.0, num_steps=4, num_chains=3, progress_bar=False)
    idata = to_inference_data(sim, kernel=kernel, output_fn=lambda th, m, x: jnp.sum(m * th))
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "particle")
    np.testing.assert_allclose(idata.predictions["f"].values[..., 0], theta.mean("particle").values, rtol=1e-5)
    np.testing.assert_allclose(idata.predictions["phi"].values[..., 0], theta.values, rtol=1e-5)
    assert "observed_data" not in idata.groups()


def test_weighted_particles_carry_their_masses(problem):
    """WFR in weighted mode: masses (chain, draw, particle) in the posterior, and predictions are
    f = sum_j m_j phi_j with those masses."""
    data, x_eval = problem
    kernel = WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=5.0, mode="weighted")
    mcmc = MCMC(kernel, num_warmup=0, num_samples=3, num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), data.x, data.y, width=WIDTH)
    idata = to_inference_data(mcmc, x_eval=x_eval)
    m = idata.posterior["masses"]
    assert m.dims == ("chain", "draw", "particle")
    assert np.std(m.values[:, -1]) > 1e-4  # the reaction moved the masses away from 1/n
    post = idata.posterior
    a, w, b, mm = (post[k].values[1, 2] for k in ("a", "w", "b", "masses"))
    np.testing.assert_allclose(idata.predictions["f"].values[1, 2], _network(a, w, b, x_eval, mm), rtol=1e-5, atol=1e-6)
    phi = idata.predictions["phi"].values[1, 2]  # (particle, unit_point)
    np.testing.assert_allclose(mm @ phi, idata.predictions["f"].values[1, 2, : phi.shape[1]], rtol=1e-5, atol=1e-6)
    assert {"vbar", "ess"} <= set(idata.sample_stats.data_vars)


def test_rejects_what_is_not_a_run():
    """A plain array is neither an MCMC object nor a simulate result."""
    with pytest.raises(TypeError, match="MCMC object or an mfsample.simulate result"):
        to_inference_data(np.zeros((2, 3)))


def test_x_eval_matrix_has_the_input_dim(mcmc_run, problem):
    """predictions_constant_data.x_eval of an (M, d) matrix has dims (eval_point, input_dim), the
    input_dim of the posterior's w and of constant_data.x, and holds x_eval."""
    _, x_eval = problem
    idata = to_inference_data(mcmc_run, x_eval=x_eval)
    xe = idata.predictions_constant_data["x_eval"]
    assert xe.dims == ("eval_point", "input_dim")
    assert xe.sizes["input_dim"] == idata.posterior.sizes["input_dim"] == 3
    assert idata.constant_data["x"].dims == ("data", "input_dim")
    np.testing.assert_array_equal(xe.values, np.asarray(x_eval))


@pytest.mark.parametrize("unit_points", [-3, 2.0, True])
def test_unit_points_must_be_a_count(mcmc_run, problem, unit_points):
    """A negative or non-integer unit_points is refused with its value (it used to write no phi)."""
    _, x_eval = problem
    with pytest.raises(ValueError, match=f"unit_points must be an integer >= 0, got {unit_points!r}"):
        to_inference_data(mcmc_run, x_eval=x_eval, unit_points=unit_points)


def test_unit_points_zero_or_none_store_no_phi(mcmc_run, problem):
    _, x_eval = problem
    for units in (0, None):
        idata = to_inference_data(mcmc_run, x_eval=x_eval, unit_points=units)
        assert "phi" not in idata.predictions and "f" in idata.predictions


def test_statistics_and_attributes_come_from_the_contract(problem):
    """sample_stats names and descriptions are the kernel's declared statistics (an undeclared one is
    described by its name); the group attributes are its hyperparameters (bool -> int) and the
    energy's width, exponent and N; the model arguments default to the kernel's last init."""
    data, _ = problem
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(3),
        data.x,
        data.y,
        width=WIDTH,
        num_steps=4,
        save_every=2,
        num_chains=CHAINS,
        progress_bar=False,
    )
    extra = {**sim.stats, "custom": np.ones((CHAINS, 2), np.float32)}
    idata = to_inference_data(sim._replace(stats=extra, model_args=None, model_kwargs=None))
    declared = {s.variable: s.description for s in kernel.statistics}  # recorded under the declared name
    assert "objective" in declared and "energy" not in idata.sample_stats
    for name, var in idata.sample_stats.data_vars.items():
        assert var.attrs["description"] == declared.get(name, name)
    assert idata.sample_stats["custom"].attrs["description"] == "custom"
    attrs = idata.posterior.attrs
    assert attrs["kernel"] == "MeanFieldLangevin" and attrs["adjusted"] == 0 and attrs["temperature"] == 1e-3
    assert attrs["width"] == WIDTH and attrs["scaling_exponent"] == 1.0 and attrs["num_data"] == 24.0
    np.testing.assert_array_equal(idata.constant_data["x"].values, np.asarray(data.x))


def test_rejects_a_kernel_outside_the_contract(mcmc_run):
    """A kernel that does not implement ParticleDynamics is refused, naming the contract."""
    with pytest.raises(TypeError, match="must implement mfsample.kernels.contract.ParticleDynamics.*object"):
        to_inference_data(mcmc_run, kernel=object())
