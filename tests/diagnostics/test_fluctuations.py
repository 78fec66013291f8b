"""Fluctuations at Monte-Carlo scale.

Closed-form case: scalar particles, mu0 = N(0, 1), E = (kappa/2) (mean_j theta_j - c)^2, sampled by
Metropolis-adjusted mean-field Langevin (exact stationary law for any dt).  With s = kappa / tau
the Gibbs law is Gaussian and the particle mean f_n = mean_j theta_j has

    E f_n = s c / (1 + s),      n Var(f_n) = 1 / (1 + s)      for every n,

so the fluctuation n E|f_n - f|^2 is the constant 1/(1+s) and its exponent in n is exactly -1.
"""

import arviz as az
import jax
import numpy as np
import pytest
import xarray as xr

import mfsample as mf
from mfsample.diagnostics.fluctuations import (
    fit_power_law,
    fluctuations,
    unit_variance,
    weighted_dispersion,
)
from mfsample.experiments.replicate import replicate

KAPPA, TAU, C = 2.0, 1.0, 1.5
S = KAPPA / TAU
N_VAR = 1.0 / (1.0 + S)  # n Var(particle mean)
MEAN = S * C / (1.0 + S)
WIDTHS = (4, 16, 64)
BURN = 5.0  # the particle mean relaxes at rate kappa + tau = 3, the spread at rate tau = 1
# the runs: the session fixture ``gibbs_runs`` of tests/diagnostics/conftest.py (R = 128 replicas at
# n = 4, 16, 64 with these constants, draws every 5 time units, f_n = mean_j theta_j as the output)


@pytest.fixture(scope="module")
def fl(gibbs_runs):
    return fluctuations(gibbs_runs, num_bootstrap=1000, seed=1)


def test_recovers_n_var_of_the_particle_mean(fl):
    """n Var(mean_j theta_j) = 1/(1+s): the 95% bootstrap intervals cover it at >= 85% of the
    (width, late time) cells (nominal 95%; 30 cells), and the average over cells (3840 replicas
    in all, standard error ~2.3% for a Gaussian variance) is within 7% (3 standard errors)."""
    late = fl.sel(time=fl["time"] >= BURN)
    ci = late["fluctuation_ci"]
    covered = (ci.sel(bound="lower") <= N_VAR) & (N_VAR <= ci.sel(bound="upper"))
    assert float(covered.mean()) >= 0.85, late["fluctuation"].values
    assert abs(float(late["fluctuation"].mean()) / N_VAR - 1) < 0.07
    # at t = 0 the particles are iid N(0, 1): n Var = 1, not 1/(1+s) (the statistic can fail)
    assert abs(float(fl["fluctuation"].sel(time=0.0).mean()) - 1.0) < 0.15
    np.testing.assert_allclose(fl["static"], 1.0, rtol=0.15)  # Var_{mu0} theta = 1 from R n particles


def test_exponent_is_minus_one_within_its_interval(fl):
    """E|f_n - f|^2 ~ n^alpha with alpha = -1 exactly: it lies in the bootstrap interval at >= 80%
    of the late times, and the average fitted exponent is within 0.05 of -1."""
    late = fl.sel(time=fl["time"] >= BURN)
    ci = late["exponent_ci"]
    covered = (ci.sel(bound="lower") <= -1) & (-1 <= ci.sel(bound="upper"))
    assert float(covered.mean()) >= 0.8, late["exponent"].values
    assert abs(float(late["exponent"].mean()) + 1) < 0.05
    assert np.all(ci.sel(bound="upper") - ci.sel(bound="lower") < 0.5)  # informative intervals


def test_analytic_and_widest_references(gibbs_runs, fl):
    """With an analytic f, the statistic is mean_r |f_r - f|^2 = (R-1)/R Var_hat + (fbar - f)^2
    (an identity); with the exact mean s c/(1+s) it matches the replica-mean statistic within
    sampling error, while a wrong limit c inflates it by n (c - E f_n)^2."""
    exact = fluctuations(gibbs_runs, reference=MEAN, num_bootstrap=200)
    wrong = fluctuations(gibbs_runs, reference=C, num_bootstrap=200)
    late = fl["time"] >= BURN
    for n in WIDTHS:
        f = gibbs_runs[n].predictions["f"].isel(eval_point=0).values.astype(np.float64)  # (chain, draw)
        identity = np.mean((f - MEAN) ** 2, axis=0) * n
        np.testing.assert_allclose(exact["fluctuation"].sel(width=n), identity, rtol=1e-10)
        bias = n * (C - MEAN) ** 2
        np.testing.assert_allclose(wrong["fluctuation"].sel(width=n).where(late, drop=True), bias + N_VAR, rtol=0.25)
    ratio = exact["fluctuation"].where(late, drop=True).mean() / fl["fluctuation"].where(late, drop=True).mean()
    assert abs(float(ratio) - 1) < 0.05
    widest = fluctuations(gibbs_runs, reference="widest", num_bootstrap=200)
    # the widest run against its own replica mean: n times the unbiased variance over replicas
    f64 = gibbs_runs[64].predictions["f"].transpose("chain", "draw", "eval_point").values.astype(np.float64)
    own = 64 * np.mean(np.var(f64, axis=0, ddof=1), axis=-1)
    np.testing.assert_allclose(widest["fluctuation"].sel(width=64), own, rtol=1e-10)
    assert abs(float(widest["fluctuation"].where(late, drop=True).mean()) / N_VAR - 1) < 0.1


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_static_value_at_t0_for_the_wasserstein_flow():
    """At t = 0 (particles iid from mu0) the fluctuation equals Var_{mu0} phi(x; theta) within 10%.

    For the ReLU network with a ~ N(0,1), w ~ N(0, I/d), b ~ N(0,1):
    Var phi(x) = E a^2 E relu(z)^2 = (|x|^2/d + 1)/2 (z ~ N(0, |x|^2/d + 1), E a = 0).  With 2048
    replicas the estimate's standard error is ~3.3% (heavy-tailed units), so 10% is 3 SE.
    """
    d = 5
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=d, teacher_width=2, num_data=64)
    x_eval, _ = data.sample(jax.random.PRNGKey(9), 32)
    runs = replicate(
        lambda n: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1),
        (data.x, data.y),
        widths=[64],
        num_chains=2048,
        num_steps=1,
        x_eval=x_eval,
        unit_points=32,
        rng_key=jax.random.PRNGKey(1),
        progress_bar=False,
    )
    res = fluctuations(runs, num_bootstrap=300)
    exact = float(np.mean((np.sum(np.asarray(x_eval) ** 2, 1) / d + 1) / 2))
    at0 = res.sel(time=0.0)
    assert abs(float(at0["fluctuation"].mean()) / exact - 1) < 0.1
    assert abs(float(at0["static"].mean()) / exact - 1) < 0.1
    assert abs(float(at0["fluctuation"].mean() / at0["static"].mean()) - 1) < 0.1
    phi = runs[64].predictions["phi"].isel(draw=0).transpose("chain", "particle", "unit_point").values
    pooled = np.mean(np.var(phi.reshape(-1, phi.shape[-1]).astype(np.float64), axis=0, ddof=1))
    np.testing.assert_allclose(at0["static"], [pooled], rtol=1e-10)  # over 2048 * 64 units
    lo, hi = at0["fluctuation_ci"].sel(bound="lower"), at0["fluctuation_ci"].sel(bound="upper")
    assert bool(np.all((lo <= exact) & (exact <= hi)))


def test_weighted_dispersion_matches_direct_resampling():
    """The Gram-matrix and direct routes equal the dispersion of explicitly resampled chains."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 4))
    idx = rng.integers(0, 6, size=(5, 6))
    weights = np.stack([np.bincount(i, minlength=6) for i in idx]).astype(float)
    direct = np.array([[np.sum((x[i, t] - x[i, t].mean(0)) ** 2) / 4 for t in range(3)] for i in idx])
    np.testing.assert_allclose(weighted_dispersion(x, weights), direct, rtol=1e-10)  # direct route
    big_b = np.repeat(weights, 40, axis=0)  # B * R * P > R^2 (P + B): the Gram route
    np.testing.assert_allclose(weighted_dispersion(x, big_b), np.repeat(direct, 40, axis=0), rtol=1e-10)


def test_fit_power_law_recovers_an_exact_law():
    """log-log least squares returns alpha and C of v = C n^alpha exactly, NaN for v <= 0."""
    n = np.array([4, 16, 64])
    alpha, c = fit_power_law(n, np.stack([3.0 * n**-1.0, 0.5 * n**-2.0], axis=1))
    np.testing.assert_allclose(alpha, [-1.0, -2.0])
    np.testing.assert_allclose(c, [3.0, 0.5])
    assert np.isnan(fit_power_law(n, np.array([1.0, -1.0, 2.0]))[0])


def test_needs_replicas():
    """One chain per width has no across-replica variance, and one run is not a width sweep:
    both refused with a message."""
    da = xr.Dataset(
        {"f": (("chain", "draw", "eval_point"), np.zeros((1, 2, 3)))}, coords={"time": ("draw", [0.0, 1.0])}
    )
    idata = az.InferenceData(posterior=da)
    with pytest.raises(ValueError, match="replicas"):
        fluctuations({4: idata})
    with pytest.raises(TypeError, match="dict"):  # one run is not a dict of runs across widths
        fluctuations(idata)


# ---------------------------------------------------------------------------------------------
# exact values on hand-built runs
# ---------------------------------------------------------------------------------------------
def _hand_run(f, times, phi=None, exponent=1.0):
    """An InferenceData holding ``f`` ``(chain, draw, eval_point)`` (and ``phi`` ``(chain, draw,
    particle, unit_point)``) with the ``time`` coordinate, as to_inference_data lays it out."""
    coords = {"time": ("draw", np.asarray(times, float))}
    groups = {"posterior": xr.Dataset({"f": (("chain", "draw", "data"), f)}, coords=coords)}
    if phi is not None:
        groups["predictions"] = xr.Dataset(
            {"phi": (("chain", "draw", "particle", "unit_point"), phi)},
            coords=coords,
            attrs={"scaling_exponent": exponent},
        )
    return az.InferenceData(**groups)


def test_fluctuation_is_n_times_the_unbiased_variance_averaged_over_points():
    """n * mean_x var_r(f_r(x), ddof=1) at every (width, time), to rounding (rtol 1e-12)."""
    rng = np.random.default_rng(5)
    times = [0.0, 0.5, 1.0]
    f = {4: rng.normal(size=(5, 3, 6)), 9: 3.0 + 0.2 * rng.normal(size=(7, 3, 6))}
    res = fluctuations({n: _hand_run(v, times) for n, v in f.items()}, num_bootstrap=20)
    for n, v in f.items():
        expected = n * np.mean(np.var(v, axis=0, ddof=1), axis=-1)
        np.testing.assert_allclose(res["fluctuation"].sel(width=n), expected, rtol=1e-12)
        np.testing.assert_allclose(res["variance"].sel(width=n), expected / n, rtol=1e-12)


def test_unit_variance_is_the_pooled_unbiased_variance():
    """n^(2-2p) * mean over unit points of var(phi, ddof=1) pooled over chains and particles."""
    rng = np.random.default_rng(6)
    phi = rng.normal(size=(3, 2, 4, 5)) * np.arange(1, 6)  # (chain, draw, particle, unit_point)
    for p, factor in ((1.0, 1.0), (0.5, 4.0)):  # n = 4: n^(2-2p) = 1 or 4
        run = _hand_run(rng.normal(size=(3, 2, 6)), [0.0, 1.0], phi=phi, exponent=p)
        for draw in (0, 1):
            pooled = phi[:, draw].reshape(12, 5)
            expected = factor * np.mean(np.var(pooled, axis=0, ddof=1))
            np.testing.assert_allclose(unit_variance(run, draw), expected, rtol=1e-12)


def test_refuses_runs_that_are_not_inference_data_or_not_finite():
    good = _hand_run(np.ones((3, 2, 4)), [0.0, 1.0])
    with pytest.raises(TypeError, match="the run of width 4 reads an arviz.InferenceData"):
        fluctuations({4: "not a run"})
    with pytest.raises(ValueError, match="every key of runs"):
        fluctuations({"four": good})
    bad = np.ones((3, 2, 4))
    bad[1, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"f of the run of width 4 holds non-finite values"):
        fluctuations({4: _hand_run(bad, [0.0, 1.0])})
    with pytest.raises(ValueError, match=r"no output variable 'g'"):
        fluctuations({4: good}, var_name="g")
