"""The simulate driver and the kernels under numpyro.infer.MCMC (mfsample/simulate.py, kernels/base.py)."""

import os
import subprocess
import sys
import textwrap

import arviz
import jax
import numpy as np
import pytest
from numpyro.infer import MCMC

import mfsample as mf
from mfsample.kernels import programs

KW = dict(width=16)


def _kernel(kind):
    if kind == "wasserstein":
        return mf.WassersteinFlow(mf.models.shallow_network, step_size=0.2)
    if kind == "langevin":
        return mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
    return mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-2, adjusted=True)


@pytest.mark.parametrize("kind", ["wasserstein", "langevin", "mala"])
def test_chain_methods_and_simulate_give_identical_draws(kind, small_data):
    """Same key, same draws: MCMC vectorized / sequential / parallel and simulate (3 chains, thinning 5).

    simulate and vectorized MCMC run the same vmapped step: bitwise equal.  Sequential and parallel
    (which falls back to sequential on one device) run the unbatched step: bitwise equal to each
    other, and equal to the vectorized draws up to float32 rounding (a batched matmul sums in
    another order; 40 steps of a contracting flow keep the difference at the 1e-6 level)."""
    args = (small_data.x, small_data.y)
    draws = {}
    for method in ("vectorized", "sequential", "parallel"):
        mcmc = MCMC(
            _kernel(kind),
            num_warmup=0,
            num_samples=40,
            thinning=5,
            num_chains=3,
            chain_method=method,
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(7), *args, **KW)
        draws[method] = mcmc.get_samples(group_by_chain=True)
    sim = mf.simulate(
        _kernel(kind), jax.random.PRNGKey(7), *args, num_steps=40, save_every=5, num_chains=3, progress_bar=False, **KW
    )
    draws["simulate"] = sim.samples
    assert draws["simulate"]["w"].shape == (3, 8, 16, 5)
    for k in ("a", "w", "b", "f"):
        np.testing.assert_array_equal(draws["simulate"][k], np.asarray(draws["vectorized"][k]), err_msg=k)
        np.testing.assert_array_equal(np.asarray(draws["parallel"][k]), np.asarray(draws["sequential"][k]), err_msg=k)
        np.testing.assert_allclose(
            np.asarray(draws["sequential"][k]), np.asarray(draws["vectorized"][k]), rtol=1e-5, atol=1e-5, err_msg=k
        )


def test_parallel_chains_on_several_devices_match_vectorized():
    """With 3 host devices, chain_method='parallel' really uses pmap and still gives the same draws
    (run in a subprocess because the device count is fixed at JAX start-up)."""
    code = textwrap.dedent("""
        import jax, numpy as np
        from numpyro.infer import MCMC
        import mfsample as mf
        assert jax.local_device_count() == 3
        data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=64)
        out = {}
        for method in ("vectorized", "parallel"):
            k = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3)
            m = MCMC(k, num_warmup=0, num_samples=20, thinning=4, num_chains=3, chain_method=method, progress_bar=False)
            m.run(jax.random.PRNGKey(3), data.x, data.y, width=8)
            out[method] = m.get_samples(group_by_chain=True)["w"]
        # XLA may fuse differently inside pmap: allow float32 rounding only
        np.testing.assert_allclose(out["parallel"], out["vectorized"], rtol=1e-5, atol=1e-6)
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


def test_simulate_keeps_the_same_steps_as_mcmc_thinning(small_data):
    """num_steps not divisible by save_every: MCMC keeps the states after steps T - k*(D-1) ... T."""
    args = (small_data.x, small_data.y)
    mcmc = MCMC(_kernel("langevin"), num_warmup=0, num_samples=23, thinning=5, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), *args, extra_fields=("step",), **KW)
    sim = mf.simulate(
        _kernel("langevin"), jax.random.PRNGKey(2), *args, num_steps=23, save_every=5, progress_bar=False, **KW
    )
    np.testing.assert_array_equal(np.asarray(mcmc.get_extra_fields()["step"]), [8, 13, 18, 23])
    np.testing.assert_array_equal(sim.stats["step"][0], [8, 13, 18, 23])
    np.testing.assert_allclose(sim.time, np.array([8, 13, 18, 23]) * 0.05, rtol=1e-6)
    np.testing.assert_array_equal(sim.samples["w"][0], np.asarray(mcmc.get_samples()["w"]))


def test_simulate_does_not_recompile_for_new_data_of_the_same_shape(small_data, count_compilations):
    """The compiled scan takes the data as arguments: a second call with new arrays compiles nothing."""
    programs.clear()  # other tests of this process may have compiled this structure already
    kernel = _kernel("langevin")
    with count_compilations() as first:
        mf.simulate(
            kernel,
            jax.random.PRNGKey(0),
            small_data.x,
            small_data.y,
            num_steps=20,
            save_every=5,
            progress_bar=False,
            **KW,
        )
    assert first.count > 0  # the counter sees compilations
    x2, y2 = small_data.sample(jax.random.PRNGKey(9), small_data.x.shape[0])
    with count_compilations() as second:
        sim2 = mf.simulate(kernel, jax.random.PRNGKey(1), x2, y2, num_steps=20, save_every=5, progress_bar=False, **KW)
    assert second.count == 0
    assert first.traces > 0 and second.traces == 0  # nor traces anything (model, init, step, draw size)
    # and the new data were really used: same key + new data = same draws as a fresh kernel
    ref = mf.simulate(
        _kernel("langevin"), jax.random.PRNGKey(1), x2, y2, num_steps=20, save_every=5, progress_bar=False, **KW
    )
    np.testing.assert_array_equal(sim2.samples["w"], ref.samples["w"])


@pytest.mark.filterwarnings("ignore:birth-death events replaced")  # a fast reaction, on purpose
def test_a_fresh_run_starts_inside_its_first_compiled_chunk(small_data, count_compilations):
    """A fresh start is evaluated in the programme of the first chunk (one programme, not an init
    programme and a run programme), and its states are those of ``kernel.init``: the draws equal
    MCMC's, which starts with ``kernel.init`` (two chains: the start is vmapped as init's is)."""
    num_chains = 2

    def wfr():  # birth-death with noise: the start draws particles, the steps draw noise and events
        return mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=5.0, temperature=1e-3)

    kernel = wfr()
    run = dict(num_steps=6, save_every=1, num_chains=num_chains, progress_bar=False, **KW)
    args = (small_data.x, small_data.y)
    mf.simulate(kernel, jax.random.PRNGKey(0), *args, **run)  # JAX's own eager caches warmed
    programs.clear()
    with count_compilations() as fresh:
        sim = mf.simulate(kernel, jax.random.PRNGKey(1), *args, **run)
    assert fresh.count == 1
    # the kernel still reports the run it made (what init records: arguments, energy, step)
    assert kernel.energy.width == 16 and kernel.model_kwargs == KW and len(kernel.model_args) == 2
    np.testing.assert_array_equal(kernel.sample(sim.last_state, (), KW).step, sim.last_state.step + 1)
    mcmc = MCMC(
        wfr(),
        num_warmup=0,
        num_samples=6,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), *args, **KW)
    np.testing.assert_array_equal(sim.samples["w"], np.asarray(mcmc.get_samples(group_by_chain=True)["w"]))
    events = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    for k in ("births", "deaths"):
        np.testing.assert_array_equal(sim.stats[k], events[k])
    assert events["births"].sum() + events["deaths"].sum() > 0  # the reaction ran


def test_warmup_then_post_warmup_state_continues_the_trajectory(small_data):
    """MCMC.warmup + post_warmup_state continuation equals one uninterrupted run."""
    args = (small_data.x, small_data.y)
    whole = MCMC(_kernel("wasserstein"), num_warmup=0, num_samples=30, progress_bar=False)
    whole.run(jax.random.PRNGKey(4), *args, **KW)
    split = MCMC(_kernel("wasserstein"), num_warmup=10, num_samples=20, progress_bar=False)
    split.warmup(jax.random.PRNGKey(4), *args, **KW)
    split.post_warmup_state = split.last_state
    split.run(split.post_warmup_state.rng_key, *args, **KW)
    np.testing.assert_array_equal(np.asarray(split.get_samples()["w"]), np.asarray(whole.get_samples()["w"])[10:])
    t = np.asarray(split.get_extra_fields()["time"])
    np.testing.assert_allclose(t, 0.2 * np.arange(11, 31), rtol=1e-5)
    # simulate continues from a state as well
    sim = mf.simulate(
        _kernel("wasserstein"), None, *args, num_steps=20, init_state=split.post_warmup_state, progress_bar=False, **KW
    )
    np.testing.assert_array_equal(sim.samples["w"][0], np.asarray(whole.get_samples()["w"])[10:])


def test_arviz_conversion_names_the_particle_dimension(small_data, capsys):
    """arviz.from_numpyro: dims (chain, draw, particle[, input_dim]); f on (chain, draw, data);
    kernel statistics in sample_stats; print_summary runs."""
    mcmc = MCMC(
        _kernel("mala"),
        num_warmup=0,
        num_samples=20,
        thinning=2,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), small_data.x, small_data.y, extra_fields=("log_prior",), **KW)
    idata = arviz.from_numpyro(mcmc)
    post = idata.posterior
    assert post["w"].dims == ("chain", "draw", "particle", "input_dim")
    assert post["a"].dims == ("chain", "draw", "particle")
    assert post["f"].dims == ("chain", "draw", "data")
    assert post.sizes["particle"] == 16 and post.sizes["draw"] == 10
    for stat in ("energy", "time", "grad_norm", "diverging", "log_prior"):
        assert stat in idata.sample_stats
    assert "acceptance_rate" in idata.sample_stats  # numpyro's accept_prob, renamed by ArviZ
    # f is the deterministic network output of the kept particles
    a, w, b = (np.asarray(post[k].values) for k in ("a", "w", "b"))
    f = (
        np.einsum(
            "cdj,cdnj->cdn",
            a,
            np.maximum(np.einsum("nk,cdjk->cdnj", np.asarray(small_data.x), w) + b[:, :, None, :], 0),
        )
        / 16
    )
    np.testing.assert_allclose(post["f"].values, f, rtol=1e-4, atol=1e-5)
    mcmc.print_summary()
    assert "w[15,4]" in capsys.readouterr().out


def test_simulate_argument_checks(small_data):
    k = _kernel("wasserstein")
    args = (small_data.x, small_data.y)
    for bad in (
        dict(num_steps=0),
        dict(num_steps=10, save_every=0),
        dict(num_steps=5, save_every=10),
        dict(num_steps=10, num_chains=0),
    ):
        with pytest.raises(ValueError):
            mf.simulate(k, jax.random.PRNGKey(0), *args, progress_bar=False, **bad, **KW)


def test_init_params_override_the_prior_draw(small_data):
    """init_params (unconstrained, NumPyro convention) set the initial particles of every chain."""
    pe = mf.energy_from_model(mf.models.shallow_network, (small_data.x, small_data.y), KW)
    z0 = pe.sample_prior(jax.random.PRNGKey(11))
    batched = jax.tree.map(lambda v: np.stack([v, 2 * v]), z0)
    mcmc = MCMC(
        _kernel("wasserstein"), num_warmup=1, num_samples=1, num_chains=2, chain_method="vectorized", progress_bar=False
    )
    mcmc.warmup(jax.random.PRNGKey(0), small_data.x, small_data.y, init_params=batched, **KW)
    state = mcmc.last_state
    one = _kernel("wasserstein")
    s0 = one.init(jax.random.PRNGKey(0), 0, z0, (small_data.x, small_data.y), KW)
    s1 = one.sample(s0, (), {})
    np.testing.assert_allclose(state.z["w"][0], s1.z["w"], rtol=1e-6)


def test_compiled_init_equals_eager_init(small_data, count_compilations):
    """The first drift is evaluated in a compiled function (data as arguments, cached): same state
    as the eager path up to float32 rounding, and a second init does not recompile."""
    eager = _kernel("langevin")
    eager.COMPILE_INIT_ABOVE = 2**62  # force the op-by-op path
    compiled = _kernel("langevin")
    args = (small_data.x, small_data.y)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    s_e = eager.init(keys, 0, None, args, KW)
    s_c = compiled.init(keys, 0, None, args, KW)
    for a, b in zip(jax.tree.leaves(s_e), jax.tree.leaves(s_c)):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-5, atol=1e-6)
    new_data = small_data.sample(jax.random.PRNGKey(5), 256)
    with count_compilations() as again:
        compiled.init(jax.random.split(jax.random.PRNGKey(4), 2), 0, None, new_data, KW)
    assert again.count == 0


class _DrawsAheadSpy(mf.WassersteinFisherRao):
    """Birth-death WFR that records whether a driver took its step with draws carried ahead."""

    taken = False

    def build_with_draws(self, energy, parameters=None):
        type(self).taken = True
        return super().build_with_draws(energy, parameters)


@pytest.mark.filterwarnings("ignore:birth-death events replaced")  # a fast reaction, on purpose
@pytest.mark.parametrize("birth", ["clone", "prior"])
def test_birth_death_draws_carried_ahead_are_the_steps_own(small_data, birth):
    """simulate draws step k + 1's reaction numbers inside step k (build_with_draws) and carries
    them across steps and kept draws; MCMC draws them inside each step (build).  Same states,
    same events, for one chain and for two (vmapped), with dozens of events on the way."""
    args = (small_data.x, small_data.y)
    settings = dict(step_size=0.1, rate=40.0, temperature=1e-3, birth=birth)
    for num_chains in (1, 2):
        _DrawsAheadSpy.taken = False
        sim = mf.simulate(
            _DrawsAheadSpy(mf.models.shallow_network, **settings),
            jax.random.PRNGKey(11),
            *args,
            num_steps=40,
            save_every=2,
            num_chains=num_chains,
            progress_bar=False,
            **KW,
        )
        assert _DrawsAheadSpy.taken
        mcmc = MCMC(
            mf.WassersteinFisherRao(mf.models.shallow_network, **settings),
            num_warmup=0,
            num_samples=40,
            thinning=2,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(11), *args, **KW)
        ref = mcmc.get_samples(group_by_chain=True)
        for site in ("a", "w", "b"):
            np.testing.assert_array_equal(sim.samples[site], np.asarray(ref[site]), err_msg=f"{num_chains} {site}")
        np.testing.assert_array_equal(sim.last_state.z["w"], np.asarray(mcmc.last_state.z["w"]))
        np.testing.assert_array_equal(
            sim.stats["births"], np.asarray(mcmc.get_extra_fields(group_by_chain=True)["births"])
        )
        assert sim.stats["births"].sum() + sim.stats["deaths"].sum() >= 10  # dozens in 40 steps


def test_build_with_draws_keeps_the_contract(small_data):
    """draws_fn reads the key alone and step_fn(state, draws_fn(state)) is build's step; weighted
    WFR, which draws nothing, offers no draws (None)."""
    args = (small_data.x, small_data.y)
    weighted = mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0, mode="weighted")
    assert weighted.build_with_draws(weighted.build_energy(args, KW)) is None
    kernel = mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=20.0, temperature=1e-3)
    state = kernel.init(jax.random.PRNGKey(0), 0, None, args, KW)
    energy = kernel.build_energy(args, KW)
    draws_fn, step_fn = kernel.build_with_draws(energy)
    moved = state._replace(z=jax.tree.map(lambda v: v + 1.0, state.z), first_variation=-state.first_variation)
    for got, expected in zip(draws_fn(moved), draws_fn(state)):
        np.testing.assert_array_equal(got, expected)
    _, plain_step = kernel.build(energy)
    ahead, plain = step_fn(state, draws_fn(state)), plain_step(state)
    for got, expected in zip(jax.tree.leaves(ahead), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(got, expected)
    assert int(plain.births) + int(plain.deaths) > 0


class _InitCounter(mf.WassersteinFlow):
    calls = 0

    def init(self, *args, **kwargs):
        type(self).calls += 1
        return super().init(*args, **kwargs)


def test_a_continuation_checks_its_state_without_tracing_init_again(small_data):
    """The expected state shapes of a continuation are traced once per kernel structure and data
    shapes (the trace runs the model and its gradient); a later continuation on new data of the
    same shapes records that data on the kernel, and a state of another width is still refused."""
    kernel = _InitCounter(mf.models.shallow_network, step_size=0.1)
    args = (small_data.x, small_data.y)
    first = mf.simulate(kernel, jax.random.PRNGKey(0), *args, num_steps=3, progress_bar=False, **KW)
    mf.simulate(kernel, None, *args, num_steps=3, init_state=first.last_state, progress_bar=False, **KW)
    traced = _InitCounter.calls
    new_y = small_data.y + 1.0
    again = mf.simulate(
        kernel, None, small_data.x, new_y, num_steps=3, init_state=first.last_state, progress_bar=False, **KW
    )
    assert _InitCounter.calls == traced  # nothing traced for the second continuation
    np.testing.assert_array_equal(kernel.model_args[1], new_y)
    assert again.last_state.step == 6
    with pytest.raises(ValueError, match="particles but this call has width"):
        mf.simulate(kernel, None, *args, num_steps=3, init_state=first.last_state, progress_bar=False, width=8)
