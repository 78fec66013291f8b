"""Hyper-parameters as data: one compiled programme per structure, and sweeps of configurations.

A sweep's configuration ``c`` is defined as ``simulate(kernel.replace(**point_c), keys[c], ...)``;
the sweep ``vmap``-s the same step over a configuration axis, so they agree to float32 rounding
(the batched matmuls may sum in another order): over a few steps of an O(1) system, 1e-5.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfsample as mf
from mfsample.kernels import parameters, programs
from mfsample.kernels.contract import SweepableDynamics
from mfsample.sweeps import Grid, product, zipped

KW = dict(width=16, progress_bar=False)
ATOL = 1e-5


@pytest.fixture(scope="module")
def data():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=64)


def langevin(**kw):
    return mf.MeanFieldLangevin(mf.models.shallow_network, **{"step_size": 0.05, "temperature": 1e-3, **kw})


def wfr(**kw):
    return mf.WassersteinFisherRao(mf.models.shallow_network, **{"step_size": 0.05, "rate": 1.0, **kw})


def kinetic(**kw):
    return mf.KineticLangevin(mf.models.shallow_network, **{"step_size": 0.05, "temperature": 1e-3, **kw})


# one run shape for most tests, so that they share compiled programmes
RUN = dict(num_chains=2, num_steps=10, save_every=5, **KW)

CASES = {
    "langevin": (langevin, {"temperature": [1e-4, 1e-2], "step_size": [0.05, 0.1]}),
    "wfr-weighted": (lambda: wfr(mode="weighted"), {"rate": [1.0, 5.0]}),
    "wfr-birth-death": (lambda: wfr(temperature=1e-3), {"rate": [0.5, 5.0]}),
    "kinetic": (kinetic, {"friction": [0.5, 2.0]}),
}
# the default suite runs Langevin (its weighted-WFR and zero cases run below); every dynamic in -m slow
SLOW_CASES = [pytest.param(name, marks=pytest.mark.slow) if name != "langevin" else name for name in CASES]


@pytest.mark.parametrize("name", SLOW_CASES)
def test_each_configuration_is_the_simulation_of_its_kernel(data, name):
    make, grid = CASES[name]
    kernel = make()
    sw = mf.sweep(kernel, jax.random.PRNGKey(1), data.x, data.y, grid=grid, **RUN)
    points = product(**grid).points
    assert sw.num_configs == len(points) and sw.stats["energy"].shape == (len(points), 2, 2)
    keys = jax.random.split(jax.random.PRNGKey(1), len(points))
    for c, point in enumerate(points):
        sim = mf.simulate(kernel.replace(**point), keys[c], data.x, data.y, **RUN)
        for site in sim.samples:
            np.testing.assert_allclose(sw.samples[site][c], sim.samples[site], atol=ATOL, err_msg=f"{point} {site}")
        np.testing.assert_allclose(sw.stats["energy"][c], sim.stats["energy"], atol=ATOL)
        np.testing.assert_allclose(sw.time[c], sim.time, rtol=1e-6)
        assert sw.config(c).kernel.parameters == kernel.replace(**point).parameters


@pytest.mark.slow
def test_game_sweep_equals_the_simulations():
    ex = mf.games.examples.circle(kappa=2.0)
    kernel = mf.games.DescentAscent(ex.game, step_size=0.1, temperature=0.02, rate=1.0)
    grid = [{"temperature": 0.02, "rate": 1.0}, {"temperature": (0.01, 0.05), "rate": (0.0, 2.0)}]
    sw = mf.sweep(
        kernel, jax.random.PRNGKey(2), grid=grid, width=(12, 10), num_steps=10, save_every=5, progress_bar=False
    )
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    for c, point in enumerate(grid):
        sim = mf.simulate(
            kernel.replace(**point), keys[c], width=(12, 10), num_steps=10, save_every=5, progress_bar=False
        )
        for site in sim.samples:
            np.testing.assert_allclose(sw.samples[site][c], sim.samples[site], atol=ATOL)
    np.testing.assert_array_equal(sw.grid.values("rate"), [[1.0, 1.0], [0.0, 2.0]])


def test_zero_temperature_inside_a_noisy_sweep_is_the_wasserstein_flow(data):
    """tau = 0 in a batch with tau > 0 runs the general step (noise times 0, prior gradient times
    0): it must give the particle gradient descent, and rate = 0 the masses unchanged, exactly."""
    sw = mf.sweep(langevin(), jax.random.PRNGKey(3), data.x, data.y, grid={"temperature": [0.0, 0.1]}, **RUN)
    key0 = jax.random.split(jax.random.PRNGKey(3), 2)[0]
    flow = mf.simulate(mf.WassersteinFlow(mf.models.shallow_network, step_size=0.05), key0, data.x, data.y, **RUN)
    np.testing.assert_allclose(sw.samples["w"][0], flow.samples["w"], atol=ATOL)
    assert np.max(np.abs(sw.samples["w"][1] - flow.samples["w"])) > 1e-2  # tau = 0.1 really is noisy
    weighted = mf.sweep(wfr(mode="weighted"), jax.random.PRNGKey(3), data.x, data.y, grid={"rate": [0.0, 3.0]}, **RUN)
    np.testing.assert_array_equal(weighted.samples["masses"][0], np.full((2, 2, 16), 1 / 16, np.float32))
    assert np.max(np.abs(weighted.samples["masses"][1] - 1 / 16)) > 1e-4


def test_new_kernels_of_one_structure_compile_nothing(data, count_compilations):
    """Kernels that differ only in numeric values share the compiled programmes of simulate and of
    the initialisation; a second sweep with new values compiles nothing either."""
    programs.clear()
    run = RUN
    for make, values in [(langevin, {"temperature": 0.02, "step_size": 0.07}), (wfr, {"rate": 3.0})]:
        mf.simulate(make(), jax.random.PRNGKey(0), data.x, data.y, **run)
        with count_compilations() as c:
            sim = mf.simulate(make(**values), jax.random.PRNGKey(0), data.x, data.y, **run)
        assert c.count == 0, make
        ref = mf.simulate(make(**values), jax.random.PRNGKey(0), data.x, data.y, **run)
        np.testing.assert_array_equal(sim.samples["w"], ref.samples["w"])  # the new values were used
    grid = {"temperature": [1e-3, 1e-2, 1e-1]}
    mf.sweep(langevin(), jax.random.PRNGKey(0), data.x, data.y, grid=grid, **run)
    with count_compilations() as c:
        mf.sweep(
            langevin(step_size=0.02),
            jax.random.PRNGKey(5),
            data.x,
            data.y,
            grid={"temperature": [2e-3, 2e-2, 0.2]},
            **run,
        )
    assert c.count == 0
    # a concrete zero is structural (it leaves the noise out): that is another programme
    with count_compilations() as c:
        mf.simulate(langevin(temperature=0.0), jax.random.PRNGKey(0), data.x, data.y, **run)
    assert c.count > 0


def test_continuing_a_sweep_equals_one_run(data):
    grid = {"temperature": [1e-3, 1e-2]}
    whole = mf.sweep(langevin(), jax.random.PRNGKey(4), data.x, data.y, grid=grid, **{**RUN, "num_steps": 20})
    half = mf.sweep(langevin(), jax.random.PRNGKey(4), data.x, data.y, grid=grid, **RUN)
    rest = mf.sweep(langevin(), None, data.x, data.y, grid=grid, init_state=half.last_state, **RUN)
    np.testing.assert_array_equal(np.concatenate([half.samples["w"], rest.samples["w"]], axis=2), whole.samples["w"])
    np.testing.assert_array_equal(rest.stats["step"][0, 0], [15, 20])
    with pytest.raises(ValueError, match="shape"):
        three = {"temperature": [1e-3, 1e-2, 0.1]}
        mf.sweep(langevin(), None, data.x, data.y, grid=three, init_state=half.last_state, **RUN)


def test_configurations_in_batches_equal_all_at_once(data):
    """``config_batch`` only changes how the compiled programme walks the configurations (one
    batch after another, each through all its steps): every configuration keeps its key, so the
    draws agree with the all-at-once ``vmap`` to float32 rounding, also when the batch size does
    not divide the number of configurations (3 of 4: a remainder batch of one)."""
    grid = {"temperature": [1e-4, 1e-3, 1e-2, 0.1]}
    run = dict(grid=grid, **RUN)
    at_once = mf.sweep(langevin(), jax.random.PRNGKey(5), data.x, data.y, config_batch=4, **run)
    assert np.max(np.abs(at_once.samples["w"][0] - at_once.samples["w"][3])) > 1e-2  # the values matter
    for size in (1, 3):
        batched = mf.sweep(langevin(), jax.random.PRNGKey(5), data.x, data.y, config_batch=size, **run)
        np.testing.assert_allclose(batched.samples["w"], at_once.samples["w"], atol=ATOL, err_msg=f"{size}")
        np.testing.assert_allclose(batched.stats["energy"], at_once.stats["energy"], atol=ATOL)
        np.testing.assert_array_equal(batched.stats["step"], at_once.stats["step"])
    for bad in (0, 1.5, "all"):
        with pytest.raises(ValueError, match='config_batch must be "auto" or an integer'):
            mf.sweep(langevin(), jax.random.PRNGKey(5), data.x, data.y, config_batch=bad, **run)


def test_common_keys_share_initial_particles_and_noise(data):
    grid = zipped(step_size=[0.01, 0.02])
    sw = mf.sweep(langevin(), jax.random.PRNGKey(6), data.x, data.y, grid=grid, common_keys=True, **RUN)
    for c, dt in enumerate((0.01, 0.02)):
        sim = mf.simulate(langevin(step_size=dt), jax.random.PRNGKey(6), data.x, data.y, **RUN)
        np.testing.assert_allclose(sw.samples["w"][c], sim.samples["w"], atol=ATOL)


def test_grids():
    g = product(temperature=[1, 2], step_size=[0.1, 0.2, 0.3])
    assert g.num_configs == 6 and g.points[1] == {"temperature": 1, "step_size": 0.2}  # the last axis fastest
    z = zipped(temperature=[1, 2], step_size=[0.1, 0.2])
    assert z.points == ({"temperature": 1, "step_size": 0.1}, {"temperature": 2, "step_size": 0.2})
    np.testing.assert_array_equal(z.values("step_size"), [0.1, 0.2])
    assert z.label(1) == "temperature=2, step_size=0.2"
    assert mf.sweeps.as_grid({"rate": [1.0]}) == Grid(("rate",), ({"rate": 1.0},))
    with pytest.raises(ValueError, match="one length"):
        zipped(temperature=[1, 2], step_size=[0.1])
    with pytest.raises(ValueError, match="non-empty"):
        product(temperature=[])
    with pytest.raises(TypeError, match="grid must be"):
        mf.sweeps.as_grid(3.0)
    with pytest.raises(ValueError, match="same hyper-parameters"):
        mf.sweeps.as_grid([{"rate": 1.0}, {"temperature": 1.0}])


def test_every_point_is_validated_as_the_constructor_validates(data):
    run = dict(num_steps=2, **KW)
    with pytest.raises(ValueError, match="temperature must be non-negative"):
        mf.sweep(langevin(), jax.random.PRNGKey(0), data.x, data.y, grid={"temperature": [1e-3, -1.0]}, **run)
    with pytest.raises(ValueError, match="no numeric hyper-parameter"):
        mf.sweep(langevin(), jax.random.PRNGKey(0), data.x, data.y, grid={"adjusted": [True, False]}, **run)
    with pytest.raises(ValueError, match="adjusted=True needs temperature > 0"):
        mf.sweep(
            langevin(adjusted=True), jax.random.PRNGKey(0), data.x, data.y, grid={"temperature": [1e-3, 0.0]}, **run
        )
    with pytest.raises(ValueError, match="configs"):
        mf.sweep(
            langevin(),
            jax.random.PRNGKey(0),
            data.x,
            data.y,
            grid={"temperature": [1e-3]},
            devices=1,
            shard="units",
            **run,
        )


def test_a_kernel_without_parameters_as_data_is_refused(data):
    class Plain:  # satisfies ParticleDynamics only through attribute lookup failures: not sweepable
        pass

    with pytest.raises(TypeError):
        mf.sweep(Plain(), jax.random.PRNGKey(0), data.x, data.y, grid={"step_size": [0.1]}, num_steps=2, **KW)
    for kernel in (langevin(), wfr(), kinetic(), mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)):
        assert isinstance(kernel, SweepableDynamics)


def test_a_diverging_configuration_is_named(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sw = mf.sweep(
            langevin(), jax.random.PRNGKey(0), data.x, data.y, grid={"step_size": [0.05, 1e6]}, num_steps=5, **KW
        )
    assert sw.first_divergence[0, 0] == -1 and sw.first_divergence[1, 0] >= 0
    text = " ".join(str(w.message) for w in caught)
    assert "config 1 (step_size=1e+06)" in text and "config 0" not in text


def test_inference_data_has_a_config_dimension(data):
    grid = {"temperature": [1e-3, 1e-2, 0.1]}
    sw = mf.sweep(langevin(), jax.random.PRNGKey(7), data.x, data.y, grid=grid, **RUN)
    x_test, _ = data.sample(jax.random.PRNGKey(8), 5)
    idata = mf.to_inference_data(sw, x_eval=x_test)
    assert idata.posterior["w"].dims == ("chain", "draw", "config", "particle", "input_dim")
    assert idata.predictions["f"].dims == ("chain", "draw", "config", "eval_point")
    np.testing.assert_array_equal(idata.posterior["temperature"].values, [1e-3, 1e-2, 0.1])
    assert idata.posterior.attrs["swept"] == "temperature" and "temperature" not in idata.sample_stats.attrs
    assert "config" not in idata.observed_data.dims  # the data are kept once
    one = mf.to_inference_data(sw.config(1), x_eval=x_test)
    picked = idata.posterior.sel(config=idata.posterior.temperature == 1e-2).squeeze("config", drop=True)
    np.testing.assert_array_equal(picked["w"].values, one.posterior["w"].values)
    np.testing.assert_array_equal(
        idata.sample_stats["objective"].isel(config=1).values, one.sample_stats["objective"].values
    )


def test_the_step_is_differentiable_in_its_parameters(data):
    """d E(T) / d dt of the functional face, by autodiff against a central finite difference (tanh
    units: E(T) is smooth in dt, so h = 1e-2 leaves an O(h^2) error far below the 1% tolerance,
    and float32 rounding of E ~ 1e-7 is 1e-5 of the difference quotient)."""
    energy = mf.energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": 16, "activation": "tanh"})

    def final_energy(dt):
        algo = mf.dynamics.wasserstein_flow(energy, step_size=dt)
        state = algo.init(jax.random.PRNGKey(0))
        state = jax.lax.fori_loop(0, 10, lambda i, s: algo.step(s.rng_key, s)[0], state)
        return state.energy

    dt, h = 0.05, 1e-2
    auto = jax.grad(final_energy)(jnp.float32(dt))
    finite = (final_energy(dt + h) - final_energy(dt - h)) / (2 * h)
    np.testing.assert_allclose(auto, finite, rtol=1e-2)
    assert abs(float(auto)) > 1e-3  # a real dependence, not 0 = 0


def test_zero_patterns():
    values = {"step_size": 0.1, "temperature": 0.0, "rate": (0.0, 2.0)}
    pattern = parameters.zero_pattern(values)
    assert pattern[1] == (True, False, False, True)  # rate_x, rate_y, step_size, temperature
    special = parameters.specialise(parameters.as_arrays(values), pattern)
    assert special["temperature"] == 0.0 and isinstance(special["temperature"], float)
    assert isinstance(special["step_size"], jax.Array)
    common = parameters.common_zeros([values, {**values, "temperature": 1.0}])
    assert sum(common[1]) == 1  # only rate_x is zero in both
    assert not parameters.is_zero(jnp.float32(1.0)) and parameters.is_zero(0.0)
    seen = []
    jax.jit(lambda x: seen.append(parameters.is_zero(x)) or x)(0.0)
    assert seen == [False]  # a traced value is never taken for a zero


@pytest.mark.parametrize("config_batch", [2, 1])
def test_birth_death_sweep_carries_each_configurations_draws(data, config_batch):
    """The sweep's step carries the next step's birth-death draws per configuration (vmapped, or
    one configuration at a time): each configuration is still its own simulation, events included."""
    grid = {"rate": [3.0, 30.0]}
    run = dict(num_chains=1, num_steps=12, save_every=3, **KW)
    sw = mf.sweep(wfr(), jax.random.PRNGKey(5), data.x, data.y, grid=grid, config_batch=config_batch, **run)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    for c, rate in enumerate(grid["rate"]):
        sim = mf.simulate(wfr(rate=rate), keys[c], data.x, data.y, **run)
        np.testing.assert_allclose(sw.samples["w"][c], sim.samples["w"], atol=ATOL)
        np.testing.assert_array_equal(sw.stats["births"][c], sim.stats["births"])
    assert sw.stats["births"][1].sum() + sw.stats["deaths"][1].sum() > 0
