"""One experiment across widths with replicas (mfsample/experiments/replicate.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.experiments.replicate import initial_draw, initial_sweep_draw, replicate


@pytest.fixture(scope="module")
def data():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=16)


def test_draws_are_simulate_draws_after_the_initial_state(data):
    """Width n runs simulate(kernel, fold_in(key, n), ...) with width=n passed to the model: the
    kept draws are simulate's, preceded by the t = 0 draw, whose recorded energy is that of its
    own particles, E = (1/2N) sum (f - y)^2 + log(2 pi)/2."""
    key = jax.random.PRNGKey(7)
    runs = replicate(
        lambda n: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1),
        (data.x, data.y),
        widths=[8, 4],
        num_chains=3,
        num_steps=6,
        save_every=3,
        rng_key=key,
        x_eval=data.x[:5],
        progress_bar=False,
    )
    assert list(runs) == [4, 8]
    for n, idata in runs.items():
        np.testing.assert_allclose(idata.posterior["time"].values, [0.0, 0.3, 0.6], atol=1e-12)
        assert idata.posterior.sizes["particle"] == n and idata.posterior.sizes["chain"] == 3
        assert idata.predictions["f"].sizes["eval_point"] == 5
        f0 = idata.posterior["f"].values[:, 0]
        e0 = 0.5 * np.mean((f0 - np.asarray(data.y)) ** 2, axis=-1) + 0.5 * np.log(2 * np.pi)
        np.testing.assert_allclose(idata.sample_stats["objective"].values[:, 0], e0, rtol=1e-5)
        assert np.all(idata.sample_stats["step"].values[:, 0] == 0)
        assert np.all(idata.sample_stats["objective"].values[:, 1] < e0)  # gradient flow descends
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
    sim = mf.simulate(
        kernel,
        jax.random.fold_in(key, 4),
        data.x,
        data.y,
        width=4,
        num_steps=6,
        save_every=3,
        num_chains=3,
        progress_bar=False,
    )
    np.testing.assert_allclose(runs[4].posterior["w"].values[:, 1:], sim.samples["w"], rtol=1e-5, atol=1e-6)


def test_energy_fn_kernels_take_their_width_from_the_factory():
    """A kernel built from energy_fn gets no `width` model keyword (its energy_fn would reject it);
    without the initial draw the first time is one save interval."""

    def factory(n):
        return mf.MeanFieldLangevin(
            energy_fn=lambda th, m, c: 0.5 * (jnp.sum(m * th) - c) ** 2,
            prior=dist.Normal(0.0, 1.0),
            width=n,
            step_size=0.1,
            temperature=0.5,
        )

    runs = replicate(
        factory, (1.0,), widths=[3], num_chains=2, num_steps=4, save_every=2, include_initial=False, progress_bar=False
    )
    theta = runs[3].posterior["theta"]
    assert theta.dims == ("chain", "draw", "particle") and theta.sizes["particle"] == 3
    np.testing.assert_allclose(runs[3].posterior["time"].values, [0.2, 0.4])


def test_rejects_empty_widths():
    with pytest.raises(ValueError, match="widths"):
        replicate(lambda n: None, (), widths=[], num_chains=2, num_steps=1)


# one grid, width, chain count and schedule for the tests below, so that they share compiled programmes
GRID = mf.sweeps.product(temperature=[1e-3, 1e-2], step_size=[0.1, 0.05])
RUN = dict(widths=[4], num_chains=2, num_steps=6, save_every=3, grid=GRID, progress_bar=False)


def langevin(n):
    return mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=1e-3)


def simulate_config(data, c, key):
    """mf.simulate of configuration c of GRID at width 4, as RUN runs it."""
    kernel = langevin(4).replace(**GRID.points[c])
    return mf.simulate(
        kernel, key, data.x, data.y, width=4, num_steps=6, save_every=3, num_chains=2, progress_bar=False
    )


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_grid_runs_one_sweep_per_width_equal_to_simulate_per_configuration(data):
    """With a grid, width n runs sweep(kernel, fold_in(key, n), grid=...): configuration c equals
    simulate(kernel.replace(**point_c), split(fold_in(key, n), C)[c]) to float32 round-off, after
    the t = 0 draw of that configuration's own initial state; the InferenceData has a `config`
    dimension after (chain, draw) whose coordinates are the swept values, and each configuration
    its own times t = k * save_every * dt."""
    key = jax.random.PRNGKey(7)
    idata = replicate(langevin, (data.x, data.y), rng_key=key, x_eval=data.x[:5], **RUN)[4]
    w = idata.posterior["w"]
    assert w.dims == ("chain", "draw", "config", "particle", "input_dim")
    assert dict(w.sizes) == {"chain": 2, "draw": 3, "config": 4, "particle": 4, "input_dim": 3}
    assert idata.predictions["f"].dims == ("chain", "draw", "config", "eval_point")
    np.testing.assert_allclose(idata.posterior["temperature"].values, [1e-3, 1e-3, 1e-2, 1e-2])
    np.testing.assert_allclose(idata.posterior["step_size"].values, [0.1, 0.05, 0.1, 0.05])
    keys = jax.random.split(jax.random.fold_in(key, 4), GRID.num_configs)
    for c, point in enumerate(GRID.points):
        one = idata.posterior.isel(config=c)
        np.testing.assert_allclose(one["time"].values, [0.0, 3 * point["step_size"], 6 * point["step_size"]])
        sim = simulate_config(data, c, keys[c])
        for site in ("a", "w", "b", "f"):
            np.testing.assert_allclose(one[site].values[:, 1:], sim.samples[site], rtol=1e-5, atol=1e-6)
        objective = idata.sample_stats["objective"].isel(config=c).values
        np.testing.assert_allclose(objective[:, 1:], sim.stats["energy"], rtol=1e-5)
    kernel = langevin(4).replace(**GRID.points[3])
    _, sample0, _ = initial_draw(kernel, keys[3], (data.x, data.y), {"width": 4}, 2)
    np.testing.assert_array_equal(w.isel(config=3, draw=0).values, sample0["w"][:, 0])


def test_grid_with_common_keys_starts_every_configuration_alike(data):
    """common_keys=True: every configuration uses the width's key, so all start from the same
    particles (the t = 0 draws agree exactly) and configuration c is simulate(kernel_c, fold_in(key, n));
    without the initial draw the first time is one save interval of each configuration."""
    key = jax.random.PRNGKey(3)
    runs = replicate(langevin, (data.x, data.y), rng_key=key, common_keys=True, **RUN)
    w = runs[4].posterior["w"].values  # (chain, draw, config, ...)
    for c in range(1, GRID.num_configs):
        np.testing.assert_array_equal(w[:, 0, c], w[:, 0, 0])
    assert not np.allclose(w[:, -1, 2], w[:, -1, 0])  # the temperatures then move them apart
    sim = simulate_config(data, 2, jax.random.fold_in(key, 4))
    np.testing.assert_allclose(w[:, 1:, 2], sim.samples["w"], rtol=1e-5, atol=1e-6)
    later = replicate(langevin, (data.x, data.y), rng_key=key, common_keys=True, include_initial=False, **RUN)
    np.testing.assert_allclose(later[4].posterior["w"].values, w[:, 1:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(later[4].posterior["time"].values[0], [0.3, 0.15, 0.3, 0.15], rtol=1e-6)


def test_initial_sweep_draw_is_the_sweeps_initial_state(data):
    """initial_sweep_draw builds the states sweep builds itself: continuing from them gives the
    sweep's draws (plain and common keys), and its t = 0 draw is (config, chain, 1, ...)."""
    kernel = langevin(4)
    run = dict(grid=GRID, num_steps=6, save_every=3, num_chains=2, progress_bar=False, width=4)
    for common in (False, True):
        state, sample0, stats0 = initial_sweep_draw(
            kernel, jax.random.PRNGKey(1), GRID, (data.x, data.y), {"width": 4}, 2, common_keys=common
        )
        assert sample0["w"].shape == (4, 2, 1, 4, 3) and stats0["energy"].shape == (4, 2, 1)
        fresh = mf.sweep(kernel, jax.random.PRNGKey(1), data.x, data.y, common_keys=common, **run)
        cont = mf.sweep(kernel, jax.random.PRNGKey(1), data.x, data.y, init_state=state, **run)
        np.testing.assert_allclose(cont.samples["w"], fresh.samples["w"], rtol=1e-6, atol=1e-7)
