"""Degenerate runs warn (mfsample/kernels/health.py): as NumPyro warns about divergences, a
particle run that collapsed, stopped accepting, lost its mass diversity or was non-finite from the
start says so, with the cause and the remedy."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import mfsample as mf
from mfsample.kernels import health

SN = mf.models.shallow_network
RUN = dict(width=32, num_steps=20, save_every=5, progress_bar=False)


@pytest.fixture(scope="module")
def data():
    d = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
    return np.asarray(d.x), np.asarray(d.y)


def sim(kernel, *args, **kw):
    return mf.simulate(kernel, jax.random.PRNGKey(1), *args, **{**RUN, **kw})


def quiet(kernel, *args, **kw):
    """Run and assert that no warning at all was given."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sim(kernel, *args, **kw)


def _distinct(z):
    return len(np.unique(np.concatenate([np.asarray(v).reshape(32, -1) for v in z.values()], 1), axis=0))


def test_birth_death_with_rate_times_dt_far_above_one_warns(data):
    """rate * dt = 10: a fifth of the particles fire at every step and the clones never separate at
    temperature 0 -- 4 distinct particles of 32 after 20 steps.  At rate 1 the same run is quiet
    (no event most steps, 30 distinct particles)."""
    kernel = mf.WassersteinFisherRao(SN, step_size=0.1, rate=100.0, birth="clone")
    with pytest.warns(RuntimeWarning, match=r"birth-death events replaced .* of the particles per step") as record:
        out = sim(kernel, *data)
    message = next(str(w.message) for w in record if "birth-death events" in str(w.message))
    distinct = _distinct(out.last_state.z)
    assert distinct <= 8 and f"only [{distinct}] of the 32 particles are distinct" in message
    assert "reduce rate or step_size" in message
    quiet(mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0), *data)


def test_collapse_without_the_reaction_statistics_warns():
    """The final state alone: a state whose particles are copies of one particle (as birth-death
    with clones leaves it after a long run) is reported from its positions."""
    z = {"a": np.ones(32), "w": np.ones((32, 3))}
    state = mf.kernels.State(
        z=z,
        masses=None,
        energy=np.zeros(()),
        drift=z,
        grad_norm=np.zeros(()),
        time=np.zeros(()),
        step=np.zeros((), np.int32),
        diverging=np.zeros((), bool),
        divergence_step=np.array(-1),
        accept_prob=np.ones(()),
        rng_key=np.zeros(2, np.uint32),
    )
    messages = health.run_messages({"births": np.zeros((1, 3))}, state, sample_field="z", step_size=0.1)
    assert len(messages) == 1 and "only [1] of the 32 particles are distinct" in messages[0]
    assert "birth='prior'" in messages[0]


def test_mala_with_acceptance_near_zero_warns(data):
    """dt = 10 at tau = 1e-4: the proposal jumps so far in the sharp Gibbs measure exp(-n E / tau)
    that MALA accepts nothing; dt = 1e-3 accepts every proposal and is quiet."""
    kernel = mf.MeanFieldLangevin(SN, step_size=10.0, temperature=1e-4, adjusted=True)
    with pytest.warns(RuntimeWarning, match=r"acceptance rate of chain\(s\) \[0\].*reduce step_size"):
        out = sim(kernel, *data)
    assert out.stats["accept_prob"].mean() < health.MIN_ACCEPT_RATE
    quiet(mf.MeanFieldLangevin(SN, step_size=1e-3, temperature=1e-4, adjusted=True), *data)


def test_weighted_masses_concentrated_on_one_particle_warn(data):
    """rate * dt = 1000: the masses collapse onto the particle of least V within a few steps."""
    kernel = mf.WassersteinFisherRao(SN, step_size=0.1, rate=1e4, mode="weighted")
    with pytest.warns(RuntimeWarning, match=r"effective sample size of the masses fell to.*reduce rate"):
        out = sim(kernel, *data)
    assert out.stats["ess"].min() < health.MIN_MASS_ESS
    quiet(mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0, mode="weighted"), *data)


# ---------------------------------------------------------------------------------------------
# divergences: at initialisation the step size is not the cause
# ---------------------------------------------------------------------------------------------
def _divergence_warning(run):
    with pytest.warns(RuntimeWarning) as record:
        out = run()
    messages = [str(w.message) for w in record if "non-finite" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in record]
    return out, messages[0]


def test_data_that_overflow_at_initialisation(data):
    x, y = data
    out, message = _divergence_warning(lambda: sim(mf.WassersteinFlow(SN, step_size=0.1), x * 1e30, y))
    assert out.first_divergence[0] == 0
    assert "initial state of chain(s) [0] is already non-finite (energy, drift)" in message
    assert "step_size is not the cause" in message and re.search(r"largest magnitude \d(\.\d+)?e\+30", message)
    assert "smaller step_size" not in message


def test_temperature_that_overflows(data):
    """tau = 1e30 makes the drift ~1e30: the first step overflows, or the initial state already
    does; either way the message names the drift's size or what is non-finite, and the temperature."""
    kernel = mf.MeanFieldLangevin(SN, step_size=0.1, temperature=1e30)
    out, message = _divergence_warning(lambda: sim(kernel, *data))
    assert out.first_divergence[0] == 0
    assert "temperature" in message
    assert ("already non-finite" in message) or ("||drift|| = " in message)


def test_energy_fn_returning_nan():
    nan_energy = lambda th, m: jnp.nan * jnp.sum(th)  # noqa: E731
    kernel = mf.WassersteinFlow(energy_fn=nan_energy, prior=dist.Normal(0, 1), width=4, step_size=0.1)
    out, message = _divergence_warning(
        lambda: mf.simulate(kernel, jax.random.PRNGKey(0), num_steps=4, progress_bar=False)
    )
    assert "already non-finite (energy, drift)" in message and "energy_fn" in message


def test_a_step_size_too_large_still_blames_the_step_size(data):
    out, message = _divergence_warning(lambda: sim(mf.WassersteinFlow(SN, step_size=1e30), *data))
    assert "try a smaller step_size" in message and "already non-finite" not in message
    assert "the first step already overflowed" in message and "dt * ||drift|| = " in message


def test_mcmc_runs_warn_when_converted(data):
    """MCMC has no hook after a run: its divergences are reported when to_inference_data converts it."""
    mcmc = MCMC(mf.WassersteinFlow(SN, step_size=1e30), num_warmup=0, num_samples=4, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *data, width=8)
    assert bool(mcmc.get_extra_fields()["diverging"][-1])
    with pytest.warns(
        RuntimeWarning, match=r"particles became non-finite in chain\(s\) \[0\], first at step\(s\) \[0\]"
    ):
        mf.to_inference_data(mcmc)


def test_collapse_counts_distinct_rows_over_the_sites():
    """Two particles equal in one site but not in the other are distinct; chains are counted apart."""
    z = {"a": np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]]), "w": np.zeros((2, 4, 2))}
    state = mf.kernels.State(
        z=z,
        masses=None,
        energy=np.zeros(2),
        drift=z,
        grad_norm=np.zeros(2),
        time=np.zeros(2),
        step=np.zeros(2, np.int32),
        diverging=np.zeros(2, bool),
        divergence_step=np.full(2, -1),
        accept_prob=np.ones(2),
        rng_key=np.zeros((2, 2), np.uint32),
    )
    messages = health.collapse_messages(state, sample_field="z")
    assert len(messages) == 1 and "only [1] of the 4 particles are distinct at the end of chain(s) [0]" in messages[0]
