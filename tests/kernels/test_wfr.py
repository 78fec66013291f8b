"""Wasserstein–Fisher–Rao kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import mfsample as mf
from mfsample.kernels.wfr import WassersteinFisherRao, WFRState


@pytest.fixture(scope="module")
def tiny():
    """dim 3, teacher width 2, 48 data: small enough to compile and run in a second."""
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=48)


def _dirichlet(n, seed=7):
    return jax.random.dirichlet(jax.random.PRNGKey(seed), jnp.ones(n))


@pytest.mark.parametrize("temperature", [0.0, 1e-2])
def test_rate_zero_birth_death_is_the_wasserstein_flow_or_langevin(tiny, temperature):
    """alpha = 0: no event fires and the gather is the identity, so the step is the Wasserstein
    flow's (tau = 0) or mean-field Langevin's (tau > 0, same keys and noise): simulate gives
    identical draws (positions and f) and energies."""
    kw = dict(width=16, num_steps=40, save_every=4, progress_bar=False)
    if temperature == 0:
        ref_kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.2)
    else:
        ref_kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.2, temperature=temperature)
    ref = mf.simulate(ref_kernel, jax.random.PRNGKey(1), tiny.x, tiny.y, **kw)
    sim = mf.simulate(
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.2, rate=0.0, temperature=temperature),
        jax.random.PRNGKey(1),
        tiny.x,
        tiny.y,
        **kw,
    )
    for site in ("a", "w", "b", "f"):
        np.testing.assert_array_equal(sim.samples[site], ref.samples[site])
    np.testing.assert_array_equal(sim.stats["energy"], ref.stats["energy"])
    assert np.all(np.asarray(sim.last_state.births) == 0) and np.all(np.asarray(sim.last_state.deaths) == 0)


def test_rate_zero_weighted_is_mean_field_langevin_under_mcmc(tiny):
    """alpha = 0, tau > 0, weighted mode: same keys, same noise, so numpyro MCMC (2 vectorised
    chains) gives the draws of MeanFieldLangevin run with the same (Dirichlet) masses, which stay
    fixed and are part of every draw.  (Birth–death at alpha = 0 takes the same transport and
    noise path, followed by an identity gather: see the simulate test above.)"""
    masses = _dirichlet(12)
    kw = {"width": 12, "masses": masses}
    draws = []
    for kernel in (
        mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-2),
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.05, rate=0.0, temperature=1e-2, mode="weighted"),
    ):
        mcmc = MCMC(
            kernel,
            num_warmup=0,
            num_samples=10,
            thinning=3,
            num_chains=2,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(2), tiny.x, tiny.y, **kw)
        draws.append(mcmc.get_samples(group_by_chain=True))
    ref, wfr = draws
    for site in ("a", "w", "b", "f"):
        np.testing.assert_array_equal(wfr[site], ref[site])
    np.testing.assert_array_equal(wfr["masses"], np.broadcast_to(masses, wfr["masses"].shape))


def test_weighted_masses_stay_on_the_simplex_across_chains(tiny):
    """Weighted mode under vmap (3 chains) with alpha dt = 30, so that alpha dt |V - Vbar| >> 1
    and exp(-alpha dt (V - Vbar)) spans many orders of magnitude: every draw's masses are finite,
    >= 0 and sum to one (float32: |sum - 1| < 1e-5); they move away from uniform (ESS < n), ESS
    is recorded, and f is computed with the drawn masses."""
    n = 10
    kernel = WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=300.0, mode="weighted")
    mcmc = MCMC(kernel, num_warmup=0, num_samples=30, num_chains=3, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(3), tiny.x, tiny.y, width=n, extra_fields=("ess", "vbar"))
    s = mcmc.get_samples(group_by_chain=True)
    m = np.asarray(s["masses"])
    assert m.shape == (3, 30, n) and np.all(np.isfinite(m)) and np.all(m >= 0)
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-5)
    ess = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["ess"])
    np.testing.assert_allclose(ess, 1.0 / np.sum(m**2, -1), rtol=1e-4)
    assert np.all(ess[:, -1] < n - 0.1)
    # f under the drawn masses: f(x) = sum_j m_j a_j relu(<w_j, x> + b_j)
    feats = np.maximum(np.einsum("nd,cskd->csnk", np.asarray(tiny.x), s["w"]) + s["b"][:, :, None, :], 0)
    f = np.einsum("csnk,csk->csn", feats, m * np.asarray(s["a"]))
    np.testing.assert_allclose(s["f"], f, rtol=1e-4, atol=1e-5)


def test_birth_death_keeps_n_and_records_events(tiny):
    """Birth–death: n constant, masses uniform (None), births/deaths >= 0 recorded and nonzero
    at alpha dt = 1 over 200 steps, every particle coordinate finite."""
    kernel = WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=10.0)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=200, num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(4), tiny.x, tiny.y, width=10, extra_fields=("births", "deaths"))
    s, extra = mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)
    assert s["w"].shape == (2, 200, 10, 3) and "masses" not in s
    assert np.all(np.isfinite(s["w"]))
    births, deaths = np.asarray(extra["births"]), np.asarray(extra["deaths"])
    assert np.all(births >= 0) and np.all(deaths >= 0) and births.sum() > 0 and deaths.sum() > 0
    state = mcmc.last_state
    assert isinstance(state, WFRState) and state.masses is None and state.log_masses is None
    # WFRState extends ParticleState (same leading fields), so simulate / MCMC read it unchanged
    assert WFRState._fields[: len(mf.ParticleState._fields)] == mf.ParticleState._fields


def _step_energy(theta, masses):
    """E = sum_j m_j floor(theta_j): V_j = floor(theta_j) and grad V = 0 (controlled example)."""
    return jnp.sum(masses * jnp.floor(theta))


def test_kernel_birth_and_death_frequencies_match_one_minus_exp():
    """One WFR step from 10 particles, one at V = 1 and nine at V = 0 (no transport: grad V = 0):
    Vbar = 0.1, so over 4000 independent chains E[deaths] = 1 - exp(-alpha dt 0.9) and
    E[births] = 9 (1 - exp(-alpha dt 0.1)) (5 standard errors)."""
    n, chains, alpha, dt = 10, 4000, 2.0, 0.4
    kernel = WassersteinFisherRao(
        energy_fn=_step_energy, prior=dist.Normal(0.0, 1.0), width=n, step_size=dt, rate=alpha
    )
    theta0 = jnp.array([1.5] + [0.5] * (n - 1))
    keys = jax.random.split(jax.random.PRNGKey(0), chains)
    state = kernel.init(keys, 0, jnp.broadcast_to(theta0, (chains, n)), (), {})
    np.testing.assert_allclose(state.vbar, 0.1, rtol=1e-6)
    new = jax.jit(lambda s: kernel.sample(s, (), {}))(state)
    p_death = 1 - np.exp(-alpha * dt * 0.9)
    p_birth = 1 - np.exp(-alpha * dt * 0.1)
    deaths, births = np.asarray(new.deaths), np.asarray(new.births)
    assert abs(deaths.mean() - p_death) < 5 * np.sqrt(p_death * (1 - p_death) / chains)
    sd_births = np.sqrt(9 * p_birth * (1 - p_birth) / chains)
    assert abs(births.mean() - 9 * p_birth) < 5 * sd_births
    # the particle at V = 1 is gone only if it died or a birth overwrote it
    changed = np.asarray(new.z["theta"][:, 0]) != 1.5
    assert np.all((deaths[changed] == 1) | (births[changed] >= 1))


def test_weighted_energy_change_matches_the_reaction_dissipation():
    """For E = sum_j m_j g(theta_j) with grad g = 0, one weighted step is the exact reaction:
    E' = sum_j m_j e^{-alpha dt V_j} V_j / Z, and for small alpha dt,
    E' - E = -alpha dt sum_j m_j (V_j - Vbar)^2 + O((alpha dt)^2)."""
    n, alpha, dt = 6, 0.5, 0.01
    kernel = WassersteinFisherRao(
        energy_fn=_step_energy, prior=dist.Normal(0.0, 1.0), width=n, step_size=dt, rate=alpha, mode="weighted"
    )
    theta0 = jnp.array([0.5, 1.5, 2.5, -0.5, 3.5, 1.2])
    m0 = _dirichlet(n)
    s0 = kernel.init(jax.random.PRNGKey(0), 0, theta0, (), {"masses": m0})
    s1 = kernel.sample(s0, (), {})
    v = np.floor(np.asarray(theta0))
    m = np.asarray(m0, np.float64)
    w = m * np.exp(-alpha * dt * v)
    np.testing.assert_allclose(s1.energy, np.sum(w * v) / w.sum(), rtol=1e-5)
    vbar = np.sum(m * v)
    dissipation = -alpha * dt * np.sum(m * (v - vbar) ** 2)
    np.testing.assert_allclose(s1.energy - s0.energy, dissipation, rtol=0.05)  # O(alpha dt |V|) ~ 2%


def _no_masses_model(x, y=None, *, width):
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    f = jax.nn.relu(x @ w.T) @ a / width
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0), obs=y)


def test_refuses_what_it_cannot_do(tiny):
    """Clear errors: a model without `masses` (no first variation), the NTK scaling (no
    mean-field V), masses in birth-death mode, prior births in weighted mode, a negative rate,
    an unknown mode, minibatches."""
    args = (tiny.x, tiny.y)
    with pytest.raises(TypeError, match="masses"):
        WassersteinFisherRao(_no_masses_model, step_size=0.1, rate=1.0).init(
            jax.random.PRNGKey(0), 0, None, args, {"width": 4}
        )
    with pytest.raises(ValueError, match="mean-field"):
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0).init(
            jax.random.PRNGKey(0), 0, None, args, {"width": 4, "scaling": "ntk"}
        )
    with pytest.raises(ValueError, match="equally weighted"):
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0).init(
            jax.random.PRNGKey(0), 0, None, args, {"width": 4, "masses": _dirichlet(4)}
        )
    with pytest.raises(ValueError, match="birth-death option"):
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0, mode="weighted", birth="prior")
    with pytest.raises(ValueError, match="rate"):
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=-1.0)
    with pytest.raises(ValueError, match="mode"):
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0, mode="jump")
    with pytest.raises(ValueError, match="batch_size"):  # V = dE/dm needs the full-data energy
        WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=1.0, batch_size=8)


def test_simulate_records_masses_and_reaction_stats(tiny):
    """mf.simulate gives the weighted kernel's MCMC draws (masses and f with them) and records
    vbar / ess (births / deaths for birth-death)."""
    kernel = WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=2.0, mode="weighted")
    sim = mf.simulate(
        kernel, jax.random.PRNGKey(5), tiny.x, tiny.y, width=8, num_steps=20, save_every=2, progress_bar=False
    )
    mcmc = MCMC(kernel, num_warmup=0, num_samples=20, thinning=2, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(5), tiny.x, tiny.y, width=8)
    ref = mcmc.get_samples(group_by_chain=True)
    for site in ("masses", "a", "f"):
        np.testing.assert_allclose(sim.samples[site], ref[site], rtol=1e-5, atol=1e-6)
    assert {"vbar", "ess"} <= set(sim.stats)


# -- global convergence -----------------------------------------------------------


def weight_decay_energy(theta, masses, x, y, reg):
    """1/(2N) |sum_j m_j a_j relu(w_j x + b_j) - y|^2 + reg/2 sum_j m_j (a_j^2 + |w_j|^2 + b_j^2)."""
    f = jax.nn.relu(x @ theta["w"].T + theta["b"]) @ (masses * theta["a"])
    penalty = theta["a"] ** 2 + jnp.sum(theta["w"] ** 2, -1) + theta["b"] ** 2
    return 0.5 * jnp.mean((f - y) ** 2) + 0.5 * reg * jnp.sum(masses * penalty)


def _standard_prior(dim):
    return {
        "a": dist.Normal(0.0, 1.0),
        "w": dist.Normal(0.0, 1.0).expand([dim]).to_event(1),
        "b": dist.Normal(0.0, 1.0),
    }


def _one_dim_problem(num_data=20):
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-1, 1, num_data))[:, None]
    y = np.maximum(x[:, 0] - 0.3, 0) - 1.2 * np.maximum(-x[:, 0] - 0.4, 0) + 0.5 * np.maximum(x[:, 0] + 0.1, 0) - 0.2
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize(
    "mode,birth", [("weighted", "clone"), pytest.param("birth_death", "prior", marks=pytest.mark.slow)]
)
def test_wfr_reaches_the_f1_optimum_in_dimension_one(mode, birth):
    """from a full-support initialisation (the prior N(0, I)), WFR on the
    weight-decay energy (whose infimum is the F1 optimum, 1-homogeneous relu) reaches
    f1_optimum's certified value within 1% by t = 400 (4000 steps of dt = 0.1, 100 particles,
    20 data, reg = 1e-2, seeds fixed); the energy never goes below the optimum (up to float32)."""
    pytest.importorskip("cvxpy")
    from mfsample.baselines.exact_f1 import f1_optimum

    x, y = _one_dim_problem()
    reg = 1e-2
    opt = f1_optimum(x, y, reg=reg)
    assert opt.gap < 1e-6 * opt.value
    kernel = WassersteinFisherRao(
        energy_fn=weight_decay_energy,
        prior=_standard_prior(1),
        width=100,
        step_size=0.1,
        rate=1.0,
        mode=mode,
        birth=birth,
    )
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(0),
        jnp.asarray(x),
        jnp.asarray(y),
        reg,
        num_steps=4000,
        save_every=100,
        progress_bar=False,
        collect_deterministic=False,
    )
    energy = np.asarray(sim.stats["energy"][0], np.float64)
    assert np.all(energy >= opt.lower_bound * (1 - 1e-5))  # float32 evaluation of E
    assert (energy[-1] - opt.value) / opt.value < 0.01, energy[-1] / opt.value - 1
