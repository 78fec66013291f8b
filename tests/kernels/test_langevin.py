"""Mean-field Langevin dynamics and its Gibbs measure."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import mfsample as mf

# Closed-form case: scalar particles, mu0 = N(0, 1), E = (kappa/2) (mean_j theta_j - c)^2.
# Gibbs measure prop. exp(-(n/tau) E) prod N(theta_j; 0, 1) is Gaussian with s = kappa / tau:
#   mean of theta_bar = s c / (1 + s),  Var(theta_bar) = 1 / (n (1 + s)),
#   one-particle variance = 1 - s / (n (1 + s)).
N_PART, KAPPA, TAU, C = 4, 2.0, 0.5, 1.0
S = KAPPA / TAU


def quadratic_energy(theta, masses, c):
    return 0.5 * KAPPA * (jnp.sum(masses * theta) - c) ** 2


def _gibbs_moments(step_size, adjusted, num_chains=2000, burn=40.0, horizon=100.0, key=0):
    kernel = mf.MeanFieldLangevin(
        energy_fn=quadratic_energy,
        prior=dist.Normal(0.0, 1.0),
        width=N_PART,
        step_size=step_size,
        temperature=TAU,
        adjusted=adjusted,
    )
    save = max(1, int(round(1.0 / step_size)))  # one draw per unit of time
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(key),
        C,
        num_steps=int(round(horizon / step_size)),
        save_every=save,
        num_chains=num_chains,
        progress_bar=False,
    )
    keep = sim.time > burn
    theta = sim.samples[:, keep]  # (chain, draw, particle)
    bar = theta.mean(-1)
    # batch means over independent chains give honest standard errors despite autocorrelation
    obs = {
        "mean_bar": bar.mean(1),
        "var_bar": ((bar - S * C / (1 + S)) ** 2).mean(1),
        "var_one": (theta**2).mean((1, 2)) - (S * C / (1 + S)) ** 2,
    }
    est = {k: v.mean() for k, v in obs.items()}
    se = {k: v.std(ddof=1) / np.sqrt(num_chains) for k, v in obs.items()}
    acc = sim.stats["accept_prob"][:, keep].mean()
    return est, se, acc


EXACT = {"mean_bar": S * C / (1 + S), "var_bar": 1 / (N_PART * (1 + S)), "var_one": 1 - S / (N_PART * (1 + S))}


def test_unadjusted_langevin_samples_the_gibbs_measure_at_small_dt():
    """At dt = 0.01 the Euler-Maruyama bias is O(lambda dt / 2) <= 1.25% of each variance; the
    moments match the closed form within 4 standard errors plus that bias."""
    est, se, _ = _gibbs_moments(0.01, adjusted=False, num_chains=1000, burn=20.0, horizon=60.0)
    for k in EXACT:
        assert abs(est[k] - EXACT[k]) < 4 * se[k] + 0.0125 * abs(EXACT[k]), (k, est[k], EXACT[k], se[k])


def test_adjusted_langevin_removes_the_discretisation_bias():
    """At dt = 0.2 the unadjusted chain overestimates Var(theta_bar) by ~ lambda dt / 2 = 25%
    (lambda = kappa + tau = 2.5); MALA matches the closed form within Monte-Carlo error."""
    est_u, se_u, _ = _gibbs_moments(0.2, adjusted=False)
    est_a, se_a, acc = _gibbs_moments(0.2, adjusted=True, key=1)
    assert 0.3 < acc < 1.0
    for k in EXACT:
        assert abs(est_a[k] - EXACT[k]) < 4 * se_a[k], (k, est_a[k], EXACT[k], se_a[k])
    bias_u = abs(est_u["var_bar"] - EXACT["var_bar"])
    bias_a = abs(est_a["var_bar"] - EXACT["var_bar"])
    assert bias_u > 8 * se_u["var_bar"]  # the unadjusted bias is resolved ...
    assert bias_a < bias_u / 3  # ... and the adjusted one is much smaller


def _observables(samples, x_test):
    """Permutation-invariant observables of a shallow network: f at test points, mean a^2, mean |w|^2."""
    a, w, b = samples["a"], samples["w"], samples["b"]
    f = (
        jnp.einsum("...j,...tj->...t", a, jax.nn.relu(jnp.einsum("td,...jd->...tj", x_test, w) + b[..., None, :]))
        / a.shape[-1]
    )
    return {"f0": f[..., 0], "f1": f[..., 1], "a2": (a**2).mean(-1), "w2": (w**2).sum(-1).mean(-1)}


def test_adjusted_langevin_agrees_with_nuts_on_the_gibbs_model():
    """MALA on prop. exp(-(n/tau) E) prod mu0 and NUTS on gibbs_model(shallow_network, tau, n) sample
    the same law: means of four observables agree within 4 combined standard errors (batch means
    over independent chains)."""
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=2, teacher_width=2, num_data=20)
    n, tau = 3, 0.05
    x_test = jnp.array([[0.5, -0.3], [-1.0, 0.8]])
    nuts = MCMC(
        NUTS(mf.gibbs_model(mf.models.shallow_network, tau, n)),
        num_warmup=500,
        num_samples=2000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    nuts.run(jax.random.PRNGKey(1), data.x, data.y)
    obs_nuts = _observables(nuts.get_samples(group_by_chain=True), x_test)

    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=tau, adjusted=True)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(2),
        data.x,
        data.y,
        num_steps=4000,
        save_every=10,
        num_chains=64,
        width=n,
        progress_bar=False,
    )
    keep = slice(sim.samples["a"].shape[1] // 4, None)
    obs_mala = _observables({k: v[:, keep] for k, v in sim.samples.items()}, x_test)
    assert 0.3 < sim.stats["accept_prob"].mean() < 0.99
    for k in obs_nuts:
        m1, m2 = np.asarray(obs_nuts[k]).mean(1), np.asarray(obs_mala[k]).mean(1)
        se = np.sqrt(m1.var(ddof=1) / m1.size + m2.var(ddof=1) / m2.size)
        assert abs(m1.mean() - m2.mean()) < 4 * se + 1e-3, (k, m1.mean(), m2.mean(), se)


def test_gibbs_model_likelihood_has_variance_N_tau_over_n():
    """For the shallow network, the tempered log-likelihood equals a Gaussian one of variance N tau / n
    (up to a constant): differences between two parameter values agree."""
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=2, teacher_width=2, num_data=10)
    n, tau, N = 4, 0.3, 10
    tempered = mf.gibbs_model(mf.models.shallow_network, tau, n)

    def loglik(model, params, **kw):
        tr = numpyro.handlers.trace(numpyro.handlers.substitute(model, data=params)).get_trace(
            data.x, data.y, width=n, **kw
        )
        return tr["y"]["fn"].log_prob(tr["y"]["value"]).sum() * (tr["y"]["scale"] or 1.0)

    pe = mf.energy_from_model(mf.models.shallow_network, (data.x, data.y), dict(width=n))
    p1 = pe.constrain(pe.sample_prior(jax.random.PRNGKey(1)))
    p2 = pe.constrain(pe.sample_prior(jax.random.PRNGKey(2)))
    noise = float(np.sqrt(N * tau / n))
    d_tempered = loglik(tempered, p1) - loglik(tempered, p2)
    d_gauss = loglik(mf.models.shallow_network, p1, noise=noise) - loglik(mf.models.shallow_network, p2, noise=noise)
    np.testing.assert_allclose(d_tempered, d_gauss, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(step_size=0.1, temperature=-1.0), ValueError, "temperature"),
        (dict(step_size=0.1, temperature=float("inf")), ValueError, "temperature"),
        (dict(step_size=0.0, temperature=0.1), ValueError, "step_size"),
        (dict(step_size=0.1, temperature=0.0, adjusted=True), ValueError, "temperature > 0"),
    ],
)
def test_bad_settings(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mf.MeanFieldLangevin(mf.models.shallow_network, **kwargs)


def test_temperature_zero_is_the_wasserstein_flow(small_data):
    """MeanFieldLangevin(tau=0) moves particles exactly as WassersteinFlow."""
    args = (small_data.x, small_data.y)
    a = mf.simulate(
        mf.WassersteinFlow(mf.models.shallow_network, step_size=0.3),
        jax.random.PRNGKey(0),
        *args,
        num_steps=30,
        save_every=10,
        width=8,
        progress_bar=False,
    )
    b = mf.simulate(
        mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.3, temperature=0.0),
        jax.random.PRNGKey(0),
        *args,
        num_steps=30,
        save_every=10,
        width=8,
        progress_bar=False,
    )
    for k in "awb":
        np.testing.assert_array_equal(a.samples[k], b.samples[k])


def test_noise_has_the_langevin_scale(small_data):
    """Without drift (dt tiny relative to noise) the one-step displacement variance is 2 tau dt."""
    tau, dt = 10.0, 1e-4
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=dt, temperature=tau)
    kw = dict(width=512)
    state = kernel.init(jax.random.PRNGKey(0), 0, None, (small_data.x, small_data.y), kw)
    new = kernel.sample(state, (small_data.x, small_data.y), kw)
    disp = np.asarray(new.z["w"] - state.z["w"] + dt * state.drift["w"]).ravel()
    # 2560 Gaussian coordinates: the sample variance is within 10% of 2 tau dt (about 4 standard errors)
    np.testing.assert_allclose(disp.var(), 2 * tau * dt, rtol=0.1)


def test_adjusted_kernel_refuses_weighted_particles(small_data):
    """MALA targets the uniformly weighted Gibbs measure: masses are refused, naming the argument."""
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=0.1, adjusted=True)
    with pytest.raises(ValueError, match="masses"):
        kernel.init(
            jax.random.PRNGKey(0), 0, None, (small_data.x, small_data.y), dict(width=2, masses=jnp.array([0.5, 0.5]))
        )


def test_noise_is_one_vector_cut_into_the_sites():
    """``standard_normal_like`` draws N(0, 1) for every site but the skipped ones (zeros), with no
    correlation between sites, and ``langevin_noise`` scales it by ``sqrt(2 tau dt)``."""
    from mfsample.kernels.steps import langevin_noise, standard_normal_like

    z = {"a": jnp.zeros(4000), "b": jnp.ones((2000, 3)), "w": jnp.zeros((1000, 5))}
    xi = standard_normal_like(jax.random.PRNGKey(3), z, skip=("b",))
    assert {k: v.shape for k, v in xi.items()} == {k: v.shape for k, v in z.items()}
    np.testing.assert_array_equal(xi["b"], 0.0)
    for k in ("a", "w"):
        v = np.asarray(xi[k]).ravel()
        assert abs(v.mean()) < 5 / np.sqrt(v.size) and abs(v.var() - 1) < 5 * np.sqrt(2 / v.size)
    # the sites are different pieces of the vector: uncorrelated
    assert abs(np.corrcoef(np.asarray(xi["a"]), np.asarray(xi["w"]).ravel()[:4000])[0, 1]) < 5 / np.sqrt(4000)
    noised, xi2 = langevin_noise(jax.random.PRNGKey(3), z, 2.0, 0.5, frozen=("b",))
    np.testing.assert_allclose(noised["w"], np.sqrt(2 * 2.0 * 0.5) * xi["w"], rtol=1e-6)
    np.testing.assert_array_equal(noised["b"], z["b"])
