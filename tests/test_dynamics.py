"""Functional faces, optax transports and minibatches (mfsample/dynamics.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import MCMC

import mfsample as mf

KW = {"width": 16}


def _energy(data, **kw):
    return mf.energy_from_model(mf.models.shallow_network, (data.x, data.y), {**KW, **kw})


FACES = {
    "wasserstein": (
        lambda e: mf.dynamics.wasserstein_flow(e, step_size=0.2),
        lambda: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.2),
    ),
    "langevin": (
        lambda e: mf.dynamics.mean_field_langevin(e, step_size=0.05, temperature=1e-3),
        lambda: mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-3),
    ),
    "mala": (
        lambda e: mf.dynamics.mean_field_langevin(e, step_size=0.05, temperature=1e-2, adjusted=True),
        lambda: mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-2, adjusted=True),
    ),
    "kinetic": (
        lambda e: mf.dynamics.kinetic_langevin(e, step_size=0.1, temperature=1e-3, friction=2.0),
        lambda: mf.KineticLangevin(mf.models.shallow_network, step_size=0.1, temperature=1e-3, friction=2.0),
    ),
    "adam_sgld": (
        lambda e: mf.dynamics.mean_field_langevin(
            e, step_size=0.05, temperature=1e-3, transport=optax.adam(1e-2), batch_size=64
        ),
        lambda: mf.MeanFieldLangevin(
            mf.models.shallow_network, step_size=0.05, temperature=1e-3, transport=optax.adam(1e-2), batch_size=64
        ),
    ),
}


@pytest.mark.parametrize("name", list(FACES))
def test_functional_and_mcmc_faces_give_identical_draws(name, small_data):
    """A lax.scan over algo.step(state.rng_key, state) reproduces MCMC(kernel) draw for draw."""
    make_algo, make_kernel = FACES[name]
    algo = make_algo(_energy(small_data))
    mcmc = MCMC(make_kernel(), num_warmup=0, num_samples=30, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(3), small_data.x, small_data.y, **KW)

    @jax.jit
    def loop(key):
        def body(state, _):
            state, info = algo.step(state.rng_key, state)
            return state, (state.z["w"], info.energy)

        return jax.lax.scan(body, algo.init(key), None, length=30)[1]

    w, energy = loop(jax.random.PRNGKey(3))
    # the same step function inside another jitted loop: equal up to float32 rounding of fusion
    np.testing.assert_allclose(w, mcmc.get_samples()["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(energy, mcmc.get_extra_fields()["energy"], rtol=1e-5)


def test_blackjax_runs_the_dynamics(small_data):
    """BlackJAX's run_inference_algorithm drives mf.dynamics objects unchanged and the energy drops."""
    blackjax_util = pytest.importorskip("blackjax.util")
    algo = mf.dynamics.mean_field_langevin(_energy(small_data), step_size=0.2, temperature=1e-5)
    state, (states, infos) = blackjax_util.run_inference_algorithm(
        jax.random.PRNGKey(0),
        algo,
        200,
        initial_state=algo.init(jax.random.PRNGKey(1)),
        transform=lambda s, i: (s.z["a"], i),
    )
    assert states.shape == (200, 16)
    assert float(infos.energy[-1]) < float(infos.energy[0]) - 1e-3
    np.testing.assert_allclose(infos.time[-1], 200 * 0.2, rtol=1e-6)


def test_optax_sgd_is_the_euler_step(small_data):
    """transport=optax.sgd(dt) reproduces WassersteinFlow exactly (the Euler step is z + (-dt) v)."""
    ref = mf.simulate(
        mf.WassersteinFlow(mf.models.shallow_network, step_size=0.3),
        jax.random.PRNGKey(0),
        small_data.x,
        small_data.y,
        num_steps=50,
        save_every=10,
        progress_bar=False,
        **KW,
    )
    sgd = mf.simulate(
        mf.WassersteinFlow(mf.models.shallow_network, step_size=0.3, transport=optax.sgd(0.3)),
        jax.random.PRNGKey(0),
        small_data.x,
        small_data.y,
        num_steps=50,
        save_every=10,
        progress_bar=False,
        **KW,
    )
    for k in "awb":
        np.testing.assert_array_equal(sgd.samples[k], ref.samples[k])


def test_full_batch_is_a_no_op(small_data):
    """batch_size = num_data gives exactly the full-gradient draws (Langevin: same noise too)."""
    n_data = small_data.x.shape[0]
    run = lambda **kw: mf.simulate(  # noqa: E731
        mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=1e-3, **kw),
        jax.random.PRNGKey(0),
        small_data.x,
        small_data.y,
        num_steps=20,
        save_every=5,
        progress_bar=False,
        **KW,
    )
    a, b = run(), run(batch_size=n_data)
    for k in "awb":
        np.testing.assert_array_equal(a.samples[k], b.samples[k])


def test_minibatch_velocity_is_unbiased_with_finite_population_variance(small_data):
    """E_batch[v_B] = v and Var(v_B) = Var_i(v_i) (N - B) / (B (N - 1)) coordinate-wise
    (sampling without replacement), checked over 2000 minibatches."""
    energy = _energy(small_data)
    z = energy.sample_prior(jax.random.PRNGKey(1))
    full = mf.velocity(energy, z)["a"]
    N, B = small_data.x.shape[0], 32
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)
    vb = jax.vmap(lambda k: mf.velocity(energy.subsample(k, B), z)["a"])(keys)
    # per-datum velocities: v = (1/N) sum_i v_i with v_i the velocity of the one-datum energy
    per_datum = jax.vmap(
        lambda i: mf.velocity(
            mf.energy_from_model(mf.models.shallow_network, (small_data.x[i][None], small_data.y[i][None]), KW), z
        )["a"]
    )(jnp.arange(N))
    np.testing.assert_allclose(per_datum.mean(0), full, rtol=1e-4, atol=1e-6)
    var_theory = per_datum.var(0, ddof=1) * (N - B) / (B * N)
    se = np.sqrt(var_theory / keys.shape[0])
    assert np.all(np.abs(vb.mean(0) - full) < 5 * se + 1e-7)
    # variance of a variance estimate from 2000 draws: relative SE ~ sqrt(2/2000) = 3%; allow 15%
    np.testing.assert_allclose(vb.var(0), var_theory, rtol=0.15)


# --- time discretisation on the closed-form Gibbs measure (see tests/kernels/test_langevin.py) ---
N_PART, KAPPA, TAU, C = 4, 2.0, 0.5, 1.0
S = KAPPA / TAU
VAR_BAR = 1 / (N_PART * (1 + S))


def quadratic_energy(theta, masses, c):
    return 0.5 * KAPPA * (jnp.sum(masses * theta) - c) ** 2


def _var_bar(kernel, dt, num_chains=3000, burn=15.0, horizon=45.0):
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(int(1000 * dt)),
        C,
        num_steps=int(round(horizon / dt)),
        save_every=max(1, int(round(0.5 / dt))),
        num_chains=num_chains,
        progress_bar=False,
    )
    bar = sim.samples[:, sim.time > burn].mean(-1)
    per_chain = ((bar - S * C / (1 + S)) ** 2).mean(1)
    return per_chain.mean(), per_chain.std(ddof=1) / np.sqrt(num_chains)


def _closed_form_kernel(cls, dt, **kw):
    return cls(
        energy_fn=quadratic_energy, prior=dist.Normal(0.0, 1.0), width=N_PART, step_size=dt, temperature=TAU, **kw
    )


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_euler_maruyama_bias_is_linear_in_dt_and_mala_has_none():
    """The relative bias of Var(theta_bar) under Euler-Maruyama is (lambda dt/2)/(1 - lambda dt/2)
    (lambda = kappa + tau): the fitted log-log slope over dt in {0.025, 0.05, 0.1} is 1 (+-0.25);
    the MALA bias stays within Monte-Carlo error at every dt."""
    dts = np.array([0.025, 0.05, 0.1])
    biases, mala = [], []
    for dt in dts:
        v, se = _var_bar(_closed_form_kernel(mf.MeanFieldLangevin, dt), dt)
        biases.append(v / VAR_BAR - 1)
        assert se / VAR_BAR < 0.01
        va, sea = _var_bar(_closed_form_kernel(mf.MeanFieldLangevin, dt, adjusted=True), dt)
        mala.append((va - VAR_BAR, sea))
    slope = np.polyfit(np.log(dts), np.log(biases), 1)[0]
    assert 0.75 < slope < 1.25, (slope, biases)
    lam = KAPPA + TAU
    np.testing.assert_allclose(biases, (lam * dts / 2) / (1 - lam * dts / 2), rtol=0.25, atol=0.01)
    for bias, se in mala:
        assert abs(bias) < 4 * se + 1e-9, (bias, se)


def test_baoab_is_more_accurate_than_euler_maruyama():
    """Kinetic Langevin by BAOAB has the same Gibbs law and O(dt^2) configurational bias: at dt=0.1
    its Var(theta_bar) bias is below a third of Euler-Maruyama's (15%) and within 2% of exact."""
    v_em, _ = _var_bar(_closed_form_kernel(mf.MeanFieldLangevin, 0.1), 0.1)
    v_k, se_k = _var_bar(_closed_form_kernel(mf.KineticLangevin, 0.1, friction=2.0), 0.1)
    assert abs(v_k / VAR_BAR - 1) < abs(v_em / VAR_BAR - 1) / 3
    assert abs(v_k - VAR_BAR) < 4 * se_k + 0.02 * VAR_BAR


def test_bad_dynamics_settings(small_data):
    e = _energy(small_data)
    with pytest.raises(TypeError, match="optax"):
        mf.dynamics.wasserstein_flow(e, step_size=0.1, transport="adam")
    with pytest.raises(ValueError, match="batch_size"):
        mf.dynamics.wasserstein_flow(e, step_size=0.1, batch_size=0)
    with pytest.raises(ValueError, match="MALA"):
        mf.dynamics.mean_field_langevin(e, step_size=0.1, temperature=0.1, adjusted=True, batch_size=8)
    with pytest.raises(ValueError, match="friction"):
        mf.KineticLangevin(mf.models.shallow_network, step_size=0.1, temperature=0.1, friction=0.0)
    with pytest.raises(ValueError, match="energy_fn"):
        k = mf.WassersteinFlow(
            energy_fn=quadratic_energy, prior=dist.Normal(0.0, 1.0), width=3, step_size=0.1, batch_size=2
        )
        k.init(jax.random.PRNGKey(0), 0, None, (C,), {})


# ---------------------------------------------------------------------------------------------
# both faces accept and refuse the same settings (validation lives in the functional cores)
# ---------------------------------------------------------------------------------------------
_BAD_SETTINGS = {
    "wasserstein": [
        dict(step_size=0.0),
        dict(step_size=-1.0),
        dict(step_size=float("nan")),
        dict(step_size=float("inf")),
        dict(step_size="0.1"),
        dict(step_size=True),
        dict(step_size=0.1, transport=object()),
        dict(step_size=0.1, batch_size=0),
        dict(step_size=0.1, batch_size=2.5),
        dict(step_size=0.1, batch_size=True),
    ],
    "langevin": [
        dict(step_size=0.1, temperature=-1.0),
        dict(step_size=0.1, temperature=float("nan")),
        dict(step_size=0.1, temperature=float("inf")),
        dict(step_size=0.1, temperature="hot"),
        dict(step_size=0.1, temperature=0.0, adjusted=True),
        dict(step_size=0.1, temperature=1e-3, adjusted=True, batch_size=8),
        dict(step_size=0.1, temperature=1e-3, adjusted=True, transport=optax.sgd(0.1)),
        dict(step_size=0.0, temperature=1e-3),
    ],
    "kinetic": [
        dict(step_size=0.1, temperature=1e-3, friction=float("inf")),
        dict(step_size=0.1, temperature=1e-3, friction=0.0),
        dict(step_size=0.1, temperature=1e-3, friction=-2.0),
        dict(step_size=0.1, temperature=1e-3, friction=float("nan")),
        dict(step_size=0.1, temperature=-1e-3, friction=1.0),
    ],
}
_FACE_PAIRS = {
    "wasserstein": (mf.dynamics.wasserstein_flow, mf.WassersteinFlow),
    "langevin": (mf.dynamics.mean_field_langevin, mf.MeanFieldLangevin),
    "kinetic": (mf.dynamics.kinetic_langevin, mf.KineticLangevin),
}


def _raised(fn):
    try:
        fn()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("name,settings", [(n, s) for n, bad in _BAD_SETTINGS.items() for s in bad])
def test_both_faces_refuse_the_same_settings_with_the_same_message(name, settings, small_data):
    """The functional face and the kernel class raise the same error type and message."""
    face, klass = _FACE_PAIRS[name]
    functional = _raised(lambda: face(_energy(small_data), **settings))
    shell = _raised(lambda: klass(mf.models.shallow_network, **settings))
    assert functional is not None and functional == shell


@pytest.mark.parametrize("masses", [np.full(16, 1 / 16), np.full(16, 1 / 8), np.full(8, 1 / 8)])
def test_both_faces_treat_masses_alike(masses, small_data):
    """Masses that do not sum to one or have the wrong shape are refused by both faces; MALA refuses
    any masses (it samples the Gibbs measure of uniform weights) in both faces."""

    def functional(**kw):
        algo = mf.dynamics.mean_field_langevin(
            _energy(small_data), step_size=0.05, temperature=1e-2, masses=masses, **kw
        )
        algo.init(jax.random.PRNGKey(0))

    def shell(**kw):
        kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.05, temperature=1e-2, **kw)
        MCMC(kernel, num_warmup=0, num_samples=1, progress_bar=False).run(
            jax.random.PRNGKey(0), small_data.x, small_data.y, masses=masses, **KW
        )

    valid = masses.shape == (16,) and abs(masses.sum() - 1) < 1e-6
    assert (_raised(functional) is None) == valid and (_raised(shell) is None) == valid
    if not valid:
        assert _raised(functional)[0] is _raised(shell)[0] is ValueError
    assert _raised(lambda: functional(adjusted=True)) == _raised(lambda: shell(adjusted=True))
    assert _raised(lambda: functional(adjusted=True)) is not None
