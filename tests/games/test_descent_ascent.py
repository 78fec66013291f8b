"""Mean-field descent–ascent kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

import mfsample as mf
from mfsample import games
from mfsample.games.descent_ascent import VALUE, build_kernel


def _circle_points(angles):
    return np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)


@pytest.fixture(scope="module")
def bilinear():
    return games.examples.bilinear(2, matrix=[[1.0, 0.5], [-0.5, 1.0]], x_star=[0.3, -0.2], y_star=[-0.1, 0.4])


def test_one_step_transport_and_weighted_reaction(bilinear):
    """One weighted WFR step on l = (x - x*)^T A (y - y*) with masses m (x) and m' (y):
    transport with the fields of mu_k, x_i <- clip(x_i - dt A(m'_y - y*)), y_j <- clip(y_j +
    dt A^T(m_x - x*)) (x descends, y ascends; m_x, m'_y the weighted means), and reaction with V
    and L of mu_k, m_i <- m_i exp(-alpha dt (V_x(x_i) - L)) / Z, m'_j <- m'_j exp(+alpha dt
    (V_y(y_j) - L)) / Z.  Float32: 1e-6 absolute on positions, 1e-5 relative on masses."""
    a, xs, ys = np.array([[1.0, 0.5], [-0.5, 1.0]]), np.array([0.3, -0.2]), np.array([-0.1, 0.4])
    rng = np.random.default_rng(0)
    z = {"x": rng.uniform(-1, 1, size=(6, 2)), "y": rng.uniform(-1, 1, size=(4, 2))}
    z["y"][0] = 0.99  # pushed out of the box: the projection acts
    mx, my = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(4))
    dt, alpha = 0.05, 3.0
    init_fn, step_fn = build_kernel(bilinear.game, dt, rate=(alpha, alpha), mode="weighted")
    s0 = jax.jit(init_fn)(z, {"x": mx, "y": my}, jax.random.PRNGKey(1))
    s1 = jax.jit(step_fn)(s0)
    mean_x, mean_y = mx @ z["x"], my @ z["y"]
    np.testing.assert_allclose(s1.z["x"], np.clip(z["x"] - dt * (a @ (mean_y - ys)), -1, 1), atol=1e-6)
    np.testing.assert_allclose(s1.z["y"], np.clip(z["y"] + dt * (a.T @ (mean_x - xs)), -1, 1), atol=1e-6)
    vx, vy = (z["x"] - xs) @ a @ (mean_y - ys), (mean_x - xs) @ a @ (z["y"] - ys).T
    value = mx @ vx
    np.testing.assert_allclose(s0.energy, value, rtol=1e-5)
    wx, wy = mx * np.exp(-alpha * dt * (vx - value)), my * np.exp(alpha * dt * (vy - value))
    np.testing.assert_allclose(s1.masses["x"], wx / wx.sum(), rtol=1e-5)
    np.testing.assert_allclose(s1.masses["y"], wy / wy.sum(), rtol=1e-5)
    assert float(s1.time) == pytest.approx(dt) and int(s1.step) == 1


def test_birth_death_at_rate_zero_is_gda(bilinear):
    """alpha = 0 in birth–death mode: no clock rings, so the step is projected Euler GDA with
    uniform masses, x_i <- clip(x_i - dt A(mean(y) - y*)), y_j <- clip(y_j + dt A^T(mean(x) - x*))."""
    a, xs, ys = np.array([[1.0, 0.5], [-0.5, 1.0]]), np.array([0.3, -0.2]), np.array([-0.1, 0.4])
    rng = np.random.default_rng(5)
    z = {"x": rng.uniform(-1, 1, size=(5, 2)), "y": rng.uniform(-1, 1, size=(3, 2))}
    dt = 0.05
    init_fn, step_fn = build_kernel(bilinear.game, dt, mode="birth_death")
    s1 = jax.jit(lambda z: step_fn(init_fn(z, None, jax.random.PRNGKey(1))))(z)
    np.testing.assert_allclose(s1.z["x"], np.clip(z["x"] - dt * (a @ (z["y"].mean(0) - ys)), -1, 1), atol=1e-6)
    np.testing.assert_allclose(s1.z["y"], np.clip(z["y"] + dt * (a.T @ (z["x"].mean(0) - xs)), -1, 1), atol=1e-6)
    np.testing.assert_array_equal(s1.masses["x"], np.full(5, 1 / 5, np.float32))


def _circle_runs():
    """Circle game, x ~ von Mises(0, 2), y ~ von Mises(pi/2, 2) (n_x = 256, n_y = 192), dt = 0.1,
    t = 100: GDA, and WFR descent-ascent with small noise (tau = 0.05, alpha = 1) in both modes."""
    ex = games.examples.circle(2.0)
    rng = np.random.default_rng(0)
    init = {"x": _circle_points(rng.vonmises(0.0, 2.0, 256)), "y": _circle_points(rng.vonmises(np.pi / 2, 2.0, 192))}
    kr = jax.random.PRNGKey(0)
    runs = {}
    for name, kw in {
        "gda": {},
        "wfr_weighted": dict(temperature=0.05, rate=1.0, mode="weighted"),
        "wfr_birth_death": dict(temperature=0.05, rate=1.0, mode="birth_death"),
    }.items():
        kernel = games.DescentAscent(ex.game, step_size=0.1, **kw)
        sim = mf.simulate(kernel, kr, init_params=init, num_steps=1000, save_every=50, progress_bar=False)
        last = {k: v[0, -8:] for k, v in sim.samples.items()}  # t in [65, 100]
        runs[name] = dict(
            sim=sim,
            gap=np.asarray(games.nash_gap(ex.game, last).gap),
            dist=np.asarray(ex.distance(last["x"], last["y"], last["masses_x"], last["masses_y"])),
        )
    return ex, init, runs


@pytest.fixture(scope="module")
def circle_runs():
    return _circle_runs()


def test_wfr_descent_ascent_finds_the_circle_equilibrium_and_gda_cycles(circle_runs):
    """The uniform pair is the unique equilibrium (and, by rotation invariance, that of the
    entropic game for every tau).  Linearised, mode k of GDA rotates without decay while noise
    damps it at rate tau k^2: by t = 60 the initial mode-1 amplitude ~0.6 has decayed by
    e^{-3}, and over t in [65, 100] what remains is the n-particle fluctuation, whose gap for
    n = 256 iid uniform particles is 0.05 +- 0.012 (8 replicas).  Stated thresholds, on the mean
    over the last 8 draws: WFR gap < 0.15 and circular-W1 distance (sum of both players, radians)
    < 0.4 (initially ~0.45 and ~1.2; measured 0.06-0.10 and 0.19-0.30 on 4 seeds).  GDA on the same
    seeds never gets below gap 0.2 or distance 0.5 (measured minima 0.23-0.31 and 0.64-0.91) while
    its particles keep moving (it cycles: a compact trajectory that neither rests nor converges)."""
    ex, init, runs = circle_runs
    g0 = float(games.nash_gap(ex.game, (init["x"], init["y"])).gap)
    assert g0 > 0.35
    for name in ("wfr_weighted", "wfr_birth_death"):
        r = runs[name]
        assert r["gap"].mean() < 0.15, name
        assert r["dist"].mean() < 0.4, name
    gda = runs["gda"]
    assert gda["gap"].min() > 0.2
    assert gda["dist"].min() > 0.5
    # ... and GDA is not at rest: its velocity field keeps at least half its norm at t = 5
    speed = gda["sim"].stats["grad_norm"][0]
    assert speed[-8:].min() > 0.5 * speed[0]


def test_birth_death_kills_high_x_and_duplicates_high_y():
    """Birth–death signs (the weighted ones are checked exactly above).  l(x, y) = x + y on
    [-1, 1]: V_x(x) = x + const, V_y(y) = y + const.  With alpha dt = 0.5 and a transport of
    dt = 1e-3 per step (0.03 in 30 steps) the reaction dominates: x-particles with large x die and
    y-particles with large y duplicate, so the mean of x must fall and that of y rise by far more
    than transport can (from ~0, uniform draws, to beyond -/+0.3).  So much reaction collapses the
    x-population onto a few copies, which the health check reports."""
    game = games.Game(lambda x, y: x[0] + y[0], games.Box(1), games.Box(1))
    kernel = games.DescentAscent(game, step_size=1e-3, rate=500.0, mode="birth_death")
    with pytest.warns(RuntimeWarning, match="particles are distinct"):
        sim = mf.simulate(
            kernel, jax.random.PRNGKey(3), width=(100, 80), num_steps=30, save_every=30, progress_bar=False
        )
    assert sim.samples["x"][0, -1, :, 0].mean() < -0.3 and sim.samples["y"][0, -1, :, 0].mean() > 0.3


def test_particle_count_and_mass_simplex_preserved(circle_runs):
    """Both populations keep their sizes (256 and 192), stay on the circle, and the masses stay
    on the simplex (non-negative, sum 1 to float32 rounding); birth–death masses stay uniform and
    its events happen; weighted masses really moved (ESS below n)."""
    _, _, runs = circle_runs
    for r in runs.values():
        s = r["sim"].samples
        assert s["x"].shape[2:] == (256, 2) and s["y"].shape[2:] == (192, 2)
        np.testing.assert_allclose(np.linalg.norm(s["x"], axis=-1), 1.0, atol=1e-5)
        for k in ("masses_x", "masses_y"):
            assert np.all(s[k] >= 0)
            np.testing.assert_allclose(s[k].sum(-1), 1.0, atol=1e-5)
    bd = runs["wfr_birth_death"]
    np.testing.assert_array_equal(bd["sim"].samples["masses_x"], 1 / 256)
    assert bd["sim"].stats["births_x"].sum() > 0 and bd["sim"].stats["deaths_y"].sum() > 0
    assert runs["wfr_weighted"]["sim"].stats["ess_x"][0, -1] < 256


@pytest.mark.slow  # ~4 s (two more compilations); the circle test above makes the same claim by default
def test_noisy_descent_ascent_converges_on_the_bilinear_game_where_gda_spirals_out():
    """Bilinear game on [-1, 1]^2 (A = I, x* = y* = 0, where the entropic equilibrium is the exact
    one), 64 particles each started in small squares far from the equilibrium (exact gap 2.4):
    GDA's means rotate and Euler spirals them out to the faces (exact gap > 1.5 for all t in
    [50, 100]; measured minima 2.0 on 4 seeds); WFR descent–ascent with tau = 0.05, alpha = 1
    reaches a mean exact gap < 0.45 over t in [50, 100] (the mean of 64 particles fluctuates by
    ~0.07 per coordinate, a gap of ~0.25; measured 0.24-0.31 on 4 seeds)."""
    ex = games.examples.bilinear(2)
    rng = np.random.default_rng(1)
    init = {"x": rng.uniform(0.5, 0.7, size=(64, 2)), "y": rng.uniform(-0.7, -0.5, size=(64, 2))}
    gaps = {}
    for name, kw in {"gda": {}, "wfr": dict(temperature=0.05, rate=1.0)}.items():
        kernel = games.DescentAscent(ex.game, step_size=0.1, **kw)
        sim = mf.simulate(
            kernel, jax.random.PRNGKey(0), init_params=init, num_steps=1000, save_every=50, progress_bar=False
        )
        s = sim.samples
        gaps[name] = np.asarray(ex.exact_gap(s["x"], s["y"], s["masses_x"], s["masses_y"])[0])
    assert float(ex.exact_gap(init["x"], init["y"])) > 2.0
    assert gaps["gda"][-10:].min() > 1.5
    assert gaps["wfr"][-10:].mean() < 0.45


def test_numpyro_mcmc_and_arviz():
    """The kernel runs under numpyro MCMC unchanged (2 vectorised chains; mf.simulate, which
    makes the same draws as MCMC by construction, drives it in the other tests): each draw
    carries both populations (sizes 16 and 8) and their masses on the simplex, the extra fields
    are collected, and mf.to_inference_data labels the draws with kernel.sample_dims."""
    ex = games.examples.circle()
    kernel = games.DescentAscent(ex.game, step_size=0.1, temperature=0.02, rate=1.0)
    mcmc = MCMC(
        kernel, num_warmup=0, num_samples=20, thinning=10, num_chains=2, chain_method="vectorized", progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(1), width=(16, 8))
    draws = mcmc.get_samples(group_by_chain=True)
    assert draws["x"].shape == (2, 2, 16, 2) and draws["masses_y"].shape == (2, 2, 8)
    np.testing.assert_allclose(np.asarray(draws["masses_x"]).sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(np.asarray(draws["masses_x"]), 1 / 16)  # the reaction acted
    assert set(kernel.stat_fields) <= set(mcmc.get_extra_fields())
    idata = mf.to_inference_data(mcmc, dims=kernel.sample_dims)
    assert dict(idata.posterior["x"].sizes) == {"chain": 2, "draw": 2, "particle_x": 16, "x_dim": 2}
    assert dict(idata.posterior["masses_y"].sizes) == {"chain": 2, "draw": 2, "particle_y": 8}
    np.testing.assert_allclose(idata.posterior["time"], [1.0, 2.0])
    assert "support_gap" in idata.sample_stats
    assert idata.sample_stats["objective"].attrs["description"] == VALUE.description  # the value L
    assert "energy" not in idata.sample_stats


def test_divergence_freezes_the_particles():
    """Bilinear x.y on R^2: explicit GDA multiplies |z| by sqrt(1 + dt^2) per step; with dt = 1 the
    payoff overflows float32 within ~130 steps.  The guard flags the divergence, keeps the last
    finite particles and warns, as the other kernels do."""
    game = games.Game(lambda x, y: jnp.dot(x, y), games.Euclidean(2), games.Euclidean(2))
    kernel = games.DescentAscent(game, step_size=1.0)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sim = mf.simulate(kernel, jax.random.PRNGKey(0), width=4, num_steps=400, save_every=100, progress_bar=False)
    assert bool(sim.last_state.diverging) and 0 < int(sim.first_divergence[0]) < 400
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(sim.last_state.z))


def test_validation():
    """Bad settings are refused with a message."""
    game = games.examples.circle().game
    with pytest.raises(ValueError):
        games.DescentAscent(game, step_size=0.1, mode="gda")
    with pytest.raises(ValueError):
        games.DescentAscent(game, step_size=0.1, mode="weighted", birth="prior")
    with pytest.raises(ValueError):
        games.DescentAscent(game, step_size=0.1, rate=-1.0)
    with pytest.raises(ValueError):
        games.DescentAscent(game, step_size=0.1, temperature=(0.1, 0.2, 0.3))
    with pytest.raises(TypeError):
        games.DescentAscent(None, step_size=0.1)
    kernel = games.DescentAscent(game, step_size=0.1, mode="birth_death")
    with pytest.raises(ValueError, match="width"):
        kernel.init(jax.random.PRNGKey(0), 0, None, (), {})
    with pytest.raises(TypeError, match="unexpected"):
        kernel.init(jax.random.PRNGKey(0), 0, None, (), {"width": 4, "n": 3})
    with pytest.raises(ValueError, match="birth_death"):
        kernel.init(jax.random.PRNGKey(0), 0, None, (), {"width": 4, "masses_x": jnp.full(4, 0.25)})
    weighted = games.DescentAscent(game, step_size=0.1, temperature=(0.0, 0.1), rate=(1.0, 0.0))
    assert weighted.temperatures == (0.0, 0.1) and weighted.rates == (1.0, 0.0)
    with pytest.raises(ValueError, match="masses_x"):
        weighted.init(jax.random.PRNGKey(0), 0, None, (), {"width": 4, "masses_x": jnp.full(4, 0.5)})


def test_sweep_of_a_game_started_from_init_params():
    """A game whose sizes come from its initial particles (no ``width``) sweeps on a CPU's default
    ``config_batch="auto"`` and gives, configuration by configuration, the simulate runs."""
    ex = games.examples.circle(kappa=2.0)
    kx, ky = jax.random.split(jax.random.PRNGKey(5))
    init = {
        "x": games.examples.von_mises_points(kx, 12, 0.0, 2.0),
        "y": games.examples.von_mises_points(ky, 10, 1.0, 2.0),
    }
    kernel = games.DescentAscent(ex.game, step_size=0.1, temperature=0.02, mode="weighted", rate=1.0)
    grid = {"rate": [0.0, 2.0]}
    run = dict(init_params=init, num_steps=4, save_every=2, progress_bar=False)
    sw = mf.sweep(kernel, jax.random.PRNGKey(6), grid=grid, common_keys=True, **run)
    for c, rate in enumerate(grid["rate"]):
        sim = mf.simulate(kernel.replace(rate=rate), jax.random.PRNGKey(6), **run)
        for site in sim.samples:
            np.testing.assert_allclose(sw.samples[site][c], sim.samples[site], atol=1e-5)
    assert np.max(np.abs(sw.samples["x"][1] - sw.samples["x"][0])) > 1e-4  # the rates matter
