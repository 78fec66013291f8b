"""The kernel contract (mfsample/kernels/contract.py) and the shared state (mfsample/kernels/state.py).

* every kernel of the package satisfies :class:`ParticleDynamics`, and its declared statistics are
  what MCMC collects, what ``simulate`` records and what ``sample_stats`` describes;
* a kernel written outside the package, only against the documented contract, runs through
  ``simulate``, ``MCMC`` and ``to_inference_data`` (and, being particle gradient descent, gives the
  draws of :class:`~mfsample.WassersteinFlow`);
* kernels and ``MCMC`` objects holding them pickle after a run, also into another process.
"""

import multiprocessing
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import constrain_fn

import mfsample as mf
from mfsample.games import GameState
from mfsample.kernels import KineticState, ParticleState, WFRState, contract
from mfsample.kernels.state import State, all_finite, commit

SN = mf.models.shallow_network
KW = {"width": 8}


@pytest.fixture(scope="module")
def tiny():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)


def circle_payoff(x, y):
    """The pursuit-evasion payoff of ``mf.games.examples.circle`` (kappa = 2), defined at module level
    so that the game pickles (a closure, like a model defined inside a function, does not)."""
    return jnp.exp(2.0 * (jnp.dot(x, y) - 1.0))


def _kernels():
    game = mf.games.Game(circle_payoff, mf.games.Sphere(2), mf.games.Sphere(2))
    return {
        "wasserstein": mf.WassersteinFlow(SN, step_size=0.1),
        "langevin": mf.MeanFieldLangevin(SN, step_size=0.05, temperature=1e-3, adjusted=True),
        "kinetic": mf.KineticLangevin(SN, step_size=0.1, temperature=1e-3),
        "wfr_weighted": mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0, mode="weighted"),
        "wfr_birth_death": mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0),
        "game": mf.games.DescentAscent(game, step_size=0.1, temperature=0.02, rate=1.0),
    }


def _run_args(name, tiny):
    if name == "game":
        return (), {"width": (8, 6)}
    return (tiny.x, tiny.y), dict(KW)


@pytest.mark.parametrize("name", list(_kernels()))
def test_every_kernel_satisfies_the_contract_and_records_its_statistics(name, tiny):
    """The declared statistics are MCMC's default fields, simulate's stats and the sample_stats
    variables (with their declared descriptions)."""
    kernel = _kernels()[name]
    assert isinstance(kernel, contract.ParticleDynamics)
    args, kwargs = _run_args(name, tiny)
    declared = contract.names(kernel.statistics)
    assert kernel.default_fields == (kernel.sample_field,) + declared
    assert "step_size" in kernel.hyperparameters
    sim = mf.simulate(
        kernel, jax.random.PRNGKey(1), *args, num_steps=4, save_every=2, num_chains=2, progress_bar=False, **kwargs
    )
    assert set(sim.stats) == set(declared)
    mcmc = MCMC(
        kernel, num_warmup=0, num_samples=4, thinning=2, num_chains=2, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(1), *args, **kwargs)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert set(declared) <= set(extra)
    np.testing.assert_allclose(extra["energy"], sim.stats["energy"], rtol=1e-5)
    idata = mf.to_inference_data(sim, kernel=kernel)
    for stat in kernel.statistics:
        if stat.name != "time":
            assert idata.sample_stats[stat.variable].attrs["description"] == stat.description


# ---------------------------------------------------------------------------------------------
# a kernel written only against the documented contract
# ---------------------------------------------------------------------------------------------
class ThirdPartyFlow(MCMCKernel):
    """Particle gradient descent ``z <- z - dt * v(z)`` built from the public pieces only:
    ``energy_from_model``, ``energy_and_velocity``, the shared ``State`` and ``commit``."""

    sample_field = "z"
    statistics = (contract.ENERGY, contract.TIME, contract.STEP, contract.DIVERGING)
    sample_dims = {}

    def __init__(self, model, step_size):
        self._model, self.step_size = model, float(step_size)
        self._step, self._energy, self._args = None, None, ((), {})

    model = property(lambda self: self._model)
    model_args = property(lambda self: self._args[0])
    model_kwargs = property(lambda self: dict(self._args[1]))
    hyperparameters = property(lambda self: {"step_size": self.step_size})
    default_fields = property(lambda self: (self.sample_field,) + contract.names(self.statistics))

    def build_energy(self, model_args=(), model_kwargs=None, *, num_replicas=1):
        return mf.energy_from_model(self._model, tuple(model_args), dict(model_kwargs or {}))

    def build(self, energy):
        dt = self.step_size

        def init_fn(z, masses, rng_key):
            e, v = mf.energy_and_velocity(energy, z, masses)
            zero = jnp.zeros((), e.dtype)
            return State(
                z=z,
                masses=masses,
                energy=e,
                drift=v,
                grad_norm=zero,
                time=zero,
                step=jnp.zeros((), jnp.int32),
                diverging=jnp.array(False),
                divergence_step=jnp.array(-1, jnp.int32),
                accept_prob=jnp.ones((), e.dtype),
                rng_key=rng_key,
            )

        def step_fn(state):
            z = jax.tree.map(lambda a, b: a - dt * b, state.z, state.drift)
            e, v = mf.energy_and_velocity(energy, z, state.masses)
            proposal = state._replace(z=z, energy=e, drift=v)
            return commit(state, proposal, all_finite(z, e, v), dt, rng_key=state.rng_key)[0]

        return init_fn, step_fn

    def draw_fn(self, energy, model_args, model_kwargs, *, deterministic=True):
        if not deterministic:
            return energy.constrain
        return lambda z: constrain_fn(self._model, tuple(model_args), dict(model_kwargs), z, return_deterministic=True)

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        self._args = (tuple(model_args), dict(model_kwargs))
        self._energy = self.build_energy(model_args, model_kwargs)
        init_fn, step_fn = self.build(self._energy)
        batched = rng_key.ndim > 1

        def one(key):  # the key split of the package's kernels: init key, then the state's key
            key_init, key_run = jax.random.split(key)
            return init_fn(self._energy.sample_prior(key_init), None, key_run)

        self._step = jax.vmap(step_fn) if batched else step_fn
        return jax.vmap(one)(rng_key) if batched else one(rng_key)

    def sample(self, state, model_args, model_kwargs):
        return self._step(state)

    def postprocess_fn(self, model_args, model_kwargs):
        return self.draw_fn(self._energy, model_args, model_kwargs)


def test_a_third_party_kernel_runs_through_simulate_mcmc_and_to_inference_data(tiny):
    """Written only against the contract, it gives WassersteinFlow's draws (the same maths, the same
    keys) through simulate and MCMC, and converts to InferenceData with the declared statistics."""
    kernel = ThirdPartyFlow(SN, step_size=0.1)
    assert isinstance(kernel, contract.ParticleDynamics)
    run = dict(num_steps=6, save_every=2, num_chains=2, progress_bar=False)
    sim = mf.simulate(kernel, jax.random.PRNGKey(3), tiny.x, tiny.y, **run, **KW)
    ref = mf.simulate(mf.WassersteinFlow(SN, step_size=0.1), jax.random.PRNGKey(3), tiny.x, tiny.y, **run, **KW)
    for site in ("w", "a", "b", "f"):
        np.testing.assert_allclose(sim.samples[site], ref.samples[site], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sim.stats["energy"], ref.stats["energy"], rtol=1e-5)
    assert set(sim.stats) == {"energy", "time", "step", "diverging"}

    mcmc = MCMC(
        kernel, num_warmup=0, num_samples=6, thinning=2, num_chains=2, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(3), tiny.x, tiny.y, **KW)
    np.testing.assert_allclose(mcmc.get_samples(group_by_chain=True)["w"], sim.samples["w"], rtol=1e-5, atol=1e-6)

    x_test, _ = tiny.sample(jax.random.PRNGKey(4), 5)
    for source in (sim, mcmc):
        idata = mf.to_inference_data(source, kernel=kernel, x_eval=x_test)
        assert dict(idata.posterior["w"].sizes) == {"chain": 2, "draw": 3, "particle": 8, "input_dim": 3}
        np.testing.assert_allclose(idata.posterior["time"], [0.2, 0.4, 0.6], rtol=1e-6)
        assert idata.sample_stats["objective"].attrs["description"] == contract.ENERGY.description
        assert idata.predictions["f"].shape == (2, 3, 5)
        assert idata.posterior.attrs["step_size"] == 0.1


# ---------------------------------------------------------------------------------------------
# pickling
# ---------------------------------------------------------------------------------------------
def _sample_in_child(blob):
    """Unpickle an MCMC in a fresh process and run it again (its kernel rebuilds what it dropped)."""
    mcmc = pickle.loads(blob)
    mcmc.run(jax.random.PRNGKey(5), *mcmc._args, **mcmc._kwargs)
    return np.asarray(mcmc.get_samples()["w"])


@pytest.mark.parametrize("name", list(_kernels()))
def test_kernels_and_mcmc_pickle_after_a_run(name, tiny):
    """After a run, the kernel and the MCMC holding it pickle (compiled closures are dropped, as
    NumPyro's HMC does) and the unpickled copies keep the settings and the draws."""
    kernel = _kernels()[name]
    args, kwargs = _run_args(name, tiny)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=3, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), *args, **kwargs)
    back = pickle.loads(pickle.dumps(mcmc))
    assert back.sampler.hyperparameters == kernel.hyperparameters
    assert back.sampler.statistics == kernel.statistics
    for site, value in mcmc.get_samples().items():
        np.testing.assert_array_equal(back.get_samples()[site], value)
    k2 = pickle.loads(pickle.dumps(kernel))
    sim1 = mf.simulate(kernel, jax.random.PRNGKey(7), *args, num_steps=2, progress_bar=False, **kwargs)
    sim2 = mf.simulate(k2, jax.random.PRNGKey(7), *args, num_steps=2, progress_bar=False, **kwargs)
    np.testing.assert_array_equal(sim1.stats["energy"], sim2.stats["energy"])


def test_mcmc_runs_again_after_pickling_into_another_process(tiny, monkeypatch):
    """An MCMC pickled after a run is rebuilt in a spawned process, which runs it again and gets
    the draws this process gets from the same key."""
    mcmc = MCMC(mf.WassersteinFlow(SN, step_size=0.1), num_warmup=0, num_samples=3, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), tiny.x, tiny.y, **KW)
    blob = pickle.dumps(mcmc)
    # the child imports this module by name (tests.kernels...): the repository root on its path,
    # whichever test modules this process imported before; a worker that fails to start would
    # leave the pool waiting, hence the timeout
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply_async(_sample_in_child, (blob,)).get(timeout=300)
    mcmc.run(jax.random.PRNGKey(5), tiny.x, tiny.y, **KW)
    np.testing.assert_allclose(child, mcmc.get_samples()["w"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# the shared state
# ---------------------------------------------------------------------------------------------
def test_states_extend_the_common_fields_in_one_order():
    """Every dynamic's state starts with the fields of State, in the same order, so drivers read
    them alike; each extension only adds its own fields."""
    for cls in (ParticleState, KineticState, WFRState, GameState):
        assert cls._fields[: len(State._fields)] == State._fields
    assert set(KineticState._fields) - set(ParticleState._fields) == {"momentum"}
    assert "momentum" not in ParticleState._fields


def test_commit_refuses_a_non_finite_proposal_for_good():
    """commit keeps the old fields on a non-finite proposal, records the step, and stays frozen."""
    zero = jnp.zeros(())
    s0 = State(
        z={"t": jnp.ones(3)},
        masses=None,
        energy=zero,
        drift={"t": jnp.zeros(3)},
        grad_norm=zero,
        time=zero,
        step=jnp.zeros((), jnp.int32),
        diverging=jnp.array(False),
        divergence_step=jnp.array(-1, jnp.int32),
        accept_prob=jnp.ones(()),
        rng_key=jax.random.PRNGKey(0),
    )
    bad = s0._replace(z={"t": jnp.array([1.0, jnp.nan, 0.0])})
    s1, moved = commit(s0, bad, all_finite(bad.z), 0.5, rng_key=s0.rng_key)
    assert not bool(moved) and bool(s1.diverging) and int(s1.divergence_step) == 0
    np.testing.assert_array_equal(s1.z["t"], 1.0)
    good = s1._replace(z={"t": jnp.full(3, 2.0)})
    s2, moved = commit(s1, good, all_finite(good.z), 0.5, rng_key=s0.rng_key)
    assert not bool(moved) and int(s2.divergence_step) == 0 and float(s2.time) == 1.0
    np.testing.assert_array_equal(s2.z["t"], 1.0)


def test_finite_check_is_one_sum_per_leaf_and_catches_every_bad_value():
    """``all_finite`` is False for one inf, -inf or NaN anywhere and True for huge finite values
    (a sum of zeros cannot overflow), inside ``jit`` too; ``Drift.all_finite`` adds the shared
    sites' drift, which the drift's norm leaves out."""
    from mfsample.kernels.steps import Drift

    z = {"a": jnp.ones(5), "w": jnp.full((5, 3), 3e38)}
    check = jax.jit(all_finite)
    assert bool(check(z, jnp.float32(1.0)))
    for bad in (jnp.inf, -jnp.inf, jnp.nan):
        assert not bool(check({**z, "w": z["w"].at[4, 2].set(bad)}, jnp.float32(1.0)))
        assert not bool(check(z, jnp.float32(bad)))
    assert bool(all_finite({"i": jnp.arange(3)}))  # integer leaves are always finite
    d = Drift(jnp.float32(1.0), jnp.float32(0.0), {"s": jnp.array([jnp.nan])}, jnp.float32(1.0), jnp.array(True))
    assert bool(d.all_finite(z))  # `finite` is the evaluator's word for the energy and the drift
    assert not bool(d._replace(finite=None).all_finite(z))  # without it the drift is checked here
