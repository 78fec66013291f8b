"""One experiment across widths with replicas (mfsample/experiments/replicate.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.experiments.replicate import replicate


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
