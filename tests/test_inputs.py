"""Wrong inputs to the Python entry points: each one a ``TypeError`` / ``ValueError`` naming the
argument and the remedy, raised before any computation (no obscure traceback from inside JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import mfsample as mf

SN = mf.models.shallow_network
RUN = dict(width=8, num_steps=20, save_every=5, progress_bar=False)


@pytest.fixture(scope="module")
def data():
    d = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
    return np.asarray(d.x), np.asarray(d.y)


def W():
    return mf.WassersteinFlow(SN, step_size=0.1)


def R(**kw):
    return mf.WassersteinFisherRao(SN, step_size=0.1, mode="weighted", **{"rate": 1.0, **kw})


def sim(kernel, *args, **kw):
    return mf.simulate(kernel, jax.random.PRNGKey(1), *args, **{**RUN, **kw})


@pytest.fixture(scope="module")
def last(data):
    """last_state of a one-chain run of width 8 on data of dimension 3."""
    return sim(W(), *data).last_state


# ---------------------------------------------------------------------------------------------
# init_state: a state of this kernel, chains, width and data shapes
# ---------------------------------------------------------------------------------------------
def test_init_state_that_is_not_a_state(data):
    with pytest.raises(TypeError, match=r"init_state must be the last_state.*dict has no z"):
        sim(W(), *data, init_state={"a": 1})


def test_init_state_of_another_kernel_type(data, last):
    with pytest.raises(TypeError, match=r"init_state is a ParticleState.*moves a WFRState"):
        sim(R(), *data, init_state=last)


def test_init_state_of_another_width(data, last):
    with pytest.raises(ValueError, match=r"init_state holds 8 particles but this call has width 16"):
        sim(W(), *data, init_state=last, width=16)


def test_init_state_of_another_chain_count(data, last):
    with pytest.raises(ValueError, match=r"init_state holds 1 chain\(s\) but num_chains=2; continue with num_chains=1"):
        sim(W(), *data, init_state=last, num_chains=2)


def test_init_state_on_data_of_another_dimension(last):
    d5 = mf.data.teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=2, num_data=32)
    with pytest.raises(ValueError, match=r"init_state\.z\['w'\] has shape \(8, 3\) but these arguments need \(8, 5\)"):
        sim(W(), d5.x, d5.y, init_state=last)


def test_init_state_continues_when_it_fits(data, last):
    """The checks let a genuine continuation through: 20 more steps continue the step count."""
    out = sim(W(), *data, init_state=last)
    np.testing.assert_array_equal(out.stats["step"][0], [25, 30, 35, 40])


def test_init_state_carries_its_own_keys(data, last):
    """rng_key may be None when continuing (the state's keys are used): the same draws as with a key."""
    with_key = sim(W(), *data, init_state=last)
    without = mf.simulate(W(), None, *data, init_state=last, **RUN)
    np.testing.assert_array_equal(without.samples["w"], with_key.samples["w"])


def test_init_state_and_init_params_together(data, last):
    with pytest.raises(ValueError, match="init_params .* or init_state .*not both"):
        sim(W(), *data, init_state=last, init_params=last.z)


# ---------------------------------------------------------------------------------------------
# data, keys, initial positions, models
# ---------------------------------------------------------------------------------------------
def test_empty_data(data):
    x, y = data
    with pytest.raises(ValueError, match=r"x has no rows \(shape \(0, 3\)\).*at least one datum"):
        sim(W(), x[:0], y[:0])


@pytest.mark.parametrize("key", [1, "seed", np.arange(3), None])
def test_a_key_that_is_not_a_prng_key(data, key):
    with pytest.raises(TypeError, match=r"rng_key must be a PRNG key such as jax.random.PRNGKey\(0\)"):
        mf.simulate(W(), key, *data, **RUN)


def test_a_typed_key_is_a_key(data):
    out = mf.simulate(W(), jax.random.key(1), *data, **RUN)
    assert out.samples["w"].shape == (1, 4, 8, 3)


def test_init_params_of_the_wrong_shape(data):
    z = {"a": np.zeros(8), "w": np.zeros((8, 2)), "b": np.zeros(8)}
    with pytest.raises(ValueError, match=r"init_params\['w'\] has shape \(8, 2\) but must have shape \(8, 3\)"):
        sim(W(), *data, init_params=z)
    with pytest.raises(ValueError, match=r"init_params must have the particle sites.*missing \['b'\]"):
        sim(W(), *data, init_params={"a": np.zeros(8), "w": np.zeros((8, 3))})
    with pytest.raises(ValueError, match=r"init_params\['a'\] has shape \(8,\) but must have shape \(2, 8\)"):
        sim(W(), *data, init_params={k: v[:, :3] if k == "w" else v for k, v in z.items()}, num_chains=2)


def test_init_params_with_nan(data):
    z = {"a": np.zeros(8), "w": np.zeros((8, 3)), "b": np.full(8, np.nan)}
    with pytest.raises(ValueError, match=r"init_params\['b'\] contains non-finite values"):
        sim(W(), *data, init_params=z)


def test_functional_face_checks_positions_and_keys(data):
    energy = mf.energy_from_model(SN, data, {"width": 8})
    algo = mf.dynamics.wasserstein_flow(energy, step_size=0.1)
    with pytest.raises(ValueError, match=r"position_or_key\['w'\] has shape \(8, 4\)"):
        algo.init({"a": jnp.zeros(8), "w": jnp.zeros((8, 4)), "b": jnp.zeros(8)})
    state = algo.init(jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="rng_key must be a PRNG key"):
        algo.step(3, state)


def _bernoulli_model(x, y=None, *, width):
    with numpyro.plate("particle", width):
        on = numpyro.sample("on", dist.Bernoulli(0.5))
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(jnp.mean(a * on) * x[:, 0], 1.0), obs=y)


def test_a_discrete_particle_site(data):
    with pytest.raises(TypeError, match=r"particle site 'on' has the discrete support.*continuous"):
        sim(mf.WassersteinFlow(_bernoulli_model, step_size=0.1), *data)
    with pytest.raises(TypeError, match=r"particle site 'theta' has the discrete support"):
        mf.energy_from_fn(lambda th, m: jnp.sum(th), dist.Poisson(1.0), width=4)


def test_an_empty_batch_of_keys_to_the_kernel(data):
    """MCMC does not pass num_chains to a kernel (num_chains=0 reaches it as one key); a batch of no
    keys does reach it, and is refused."""
    with pytest.raises(TypeError, match=r"rng_key must be .*batch of them"):
        W().init(jax.random.split(jax.random.PRNGKey(0), 0), 0, None, data, {"width": 8})


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------
def _plain_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def test_to_inference_data_of_nuts_on_a_non_particle_model(data):
    mcmc = MCMC(NUTS(_plain_model), num_warmup=5, num_samples=5, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), *data)
    with pytest.raises(TypeError, match=r"ParticleDynamics.*got NUTS.*arviz.from_numpyro"):
        mf.to_inference_data(mcmc)


def test_to_inference_data_without_a_kernel(data):
    run = sim(W(), *data)
    with pytest.raises(TypeError, match=r"this run has no kernel.*pass kernel="):
        mf.to_inference_data(run._replace(kernel=None))
    assert mf.to_inference_data(run._replace(kernel=None), kernel=W()).posterior["w"].shape == (1, 4, 8, 3)
