"""Propagation of chaos.

Closed-form case (as in test_fluctuations.py): scalar particles, mu0 = N(0, 1),
E = (kappa/2)(mean_j theta_j - c)^2, Metropolis-adjusted Langevin.  The Gibbs law is Gaussian with
precision I + (s/n) 1 1^T (s = kappa / tau), so for every n

    n Cov(theta_i, theta_j) = -s/(1+s)  (i != j),     Var(theta_j) = 1 - s/(n(1+s)),

and the one-particle marginal is N(s c/(1+s), 1 - s/(n(1+s))).
"""

import arviz as az
import numpy as np
import pytest
import xarray as xr

from mfsample.diagnostics.chaos import chaos, mmd2, pair_covariance, sliced_wasserstein

KAPPA, TAU, C = 2.0, 1.0, 1.5
S = KAPPA / TAU
N_COV = -S / (1 + S)
BURN = 5.0
# the runs: the session fixture ``gibbs_runs`` of tests/diagnostics/conftest.py (R = 128 replicas at
# n = 4, 16, 64 with these constants, draws every 5 time units, t = 0, ..., 50)


def one_particle_variance(n):
    return 1 - S / (n * (1 + S))


def gaussian_mmd2(var1, var2, h):
    """MMD^2 between N(m, var1) and N(m, var2) in 1-D for k = exp(-(x-y)^2/(2h^2)):
    E k(X, Y) = h / sqrt(h^2 + var_X + var_Y) for independent X, Y with equal means."""

    def ek(a, b):
        return h / np.sqrt(h**2 + a + b)

    return ek(var1, var1) + ek(var2, var2) - 2 * ek(var1, var2)


@pytest.fixture(scope="module")
def result(gibbs_runs):
    late = gibbs_runs[4].posterior["time"].values
    return chaos(gibbs_runs, times=late[[0, 2, 4, 6, 8, 10]], num_bootstrap=1000, seed=2)


def test_recovers_the_pair_covariance_and_the_marginal_variance(result):
    """n Cov(theta_i, theta_j) = -s/(1+s) and Var theta_j = 1 - s/(n(1+s)): the 95% intervals cover
    the truth at >= 80% of the (width, late time) cells (15 cells), and the averages over late
    times are within 0.05 of the truth (a few standard errors: the nCov estimate has SE ~0.09 at
    n = 4 and ~0.05 at n = 64 per time, 5 roughly independent times)."""
    late = result.sel(observable="theta").sel(time=result["time"] >= BURN)
    for name, truth in (
        ("covariance", N_COV + 0 * late["width"]),
        ("marginal_variance", one_particle_variance(late["width"])),
    ):
        ci = late[f"{name}_ci"]
        covered = (ci.sel(bound="lower") <= truth) & (truth <= ci.sel(bound="upper"))
        assert float(covered.mean()) >= 0.8, (name, late[name].values)
        np.testing.assert_allclose(late[name].mean("time"), truth, atol=0.05)
    # at t = 0 the particles are iid: no correlation (the statistic can tell)
    assert np.all(np.abs(result["covariance"].sel(observable="theta", time=0.0)) < 0.25)


def test_covariance_decays_as_one_over_n(result):
    """|Cov(theta_i, theta_j)| = (s/(1+s)) / n: fitted exponent -1 inside its interval at most late
    times, and on average within 0.05."""
    late = result.sel(observable="theta").sel(time=result["time"] >= BURN)
    ci = late["covariance_exponent_ci"]
    assert float(((ci.sel(bound="lower") <= -1) & (-1 <= ci.sel(bound="upper"))).mean()) >= 0.8
    assert abs(float(late["covariance_exponent"].mean()) + 1) < 0.05


def test_marginal_distances(result):
    """At t = 0 every marginal is mu0, so MMD^2 is zero up to noise (~1e-3 with 512 vs 1000
    points); at stationarity the n = 4 marginal N(m, 5/6) is farther from the n = 64 one
    N(m, 1 - 1/96) than the n = 16 marginal is, and its MMD^2 averaged over the (nearly
    independent) late times agrees with the closed form (~1.4e-3 at h ~ 1) within 3 standard
    errors of that average (the sliced W2, |sd_4 - sd_64| = 0.08, is below its noise floor here and
    is checked in closed form on larger samples in test_sliced_wasserstein_of_a_shift)."""
    assert np.all(np.abs(result["mmd"].sel(time=0.0, width=[4, 16])) < 3e-3)
    late = result.sel(time=result["time"] >= BURN)
    truth = gaussian_mmd2(one_particle_variance(4), one_particle_variance(64), late["mmd_bandwidth"])
    m4 = late["mmd"].sel(width=4)
    se = float(m4.std(ddof=1)) / np.sqrt(m4.sizes["time"])
    assert abs(float((m4 - truth).mean())) < 3 * se
    assert float(m4.mean()) > float(late["mmd"].sel(width=16).mean())
    # the noise floor is calibrated to each width's sample: n = 4 pools 512 particles, n = 16 pools
    # 2048 (capped at 1000), so the sliced W2 between two samples of mu0 is larger at n = 4; at
    # t = 0 (no finite-n bias) each distance is of the size of its floor
    sw, floor = result["sliced_wasserstein"], result["sliced_wasserstein_floor"]
    assert float(floor.sel(width=4).mean()) > float(floor.sel(width=16).mean())
    ratio = (sw / floor).sel(time=0.0, width=[4, 16])
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio.values
    assert np.all(np.isnan(result["mmd"].sel(width=64)))  # the reference itself


def test_pair_covariance_equals_the_pairwise_sample_covariances():
    """The Gram-matrix formula equals the average over i != j of np.cov across replicas (times n),
    and the one-particle variance the average of np.var(ddof=1); also on a resample."""
    rng = np.random.default_rng(0)
    r, t, n, k = 7, 2, 5, 3
    g = rng.normal(size=(r, t, n, k)) + rng.normal(size=(r, 1, 1, 1))  # correlated particles
    idx = rng.integers(0, r, size=r)
    w = np.bincount(idx, minlength=r)[None].astype(float)
    cov, cov_b, var, var_b = pair_covariance(g, w)
    for gg, c, v in ((g, cov, var), (g[idx], cov_b[0], var_b[0])):
        for tt in range(t):
            pairs = [
                np.cov(gg[:, tt, i, kk], gg[:, tt, j, kk])[0, 1]
                for i in range(n)
                for j in range(n)
                if i != j
                for kk in range(k)
            ]
            np.testing.assert_allclose(c[tt], n * np.mean(pairs), rtol=1e-10)
            np.testing.assert_allclose(v[tt], np.mean(np.var(gg[:, tt], axis=0, ddof=1)), rtol=1e-10)


def test_mmd2_matches_the_gaussian_closed_form():
    """Unbiased MMD^2 between N(0, 1) and N(0, 2) samples (3000 each) matches the closed form
    (0.0277 at h = 1) within 0.004 (its standard error is ~1e-3), and is ~0 between two samples
    of the same law."""
    rng = np.random.default_rng(1)
    x, y, z = rng.normal(size=(3000, 1)), np.sqrt(2) * rng.normal(size=(3000, 1)), rng.normal(size=(3000, 1))
    assert abs(mmd2(x, y, 1.0) - gaussian_mmd2(1.0, 2.0, 1.0)) < 0.004
    assert abs(mmd2(x, z, 1.0)) < 0.003


def test_sliced_wasserstein_of_a_shift():
    """For a shift delta of an isotropic law in R^d, SW2^2 = E_u (u.delta)^2 = |delta|^2 / d:
    (1, 0, 0) in R^3 gives 1/sqrt(3) = 0.577 (within 0.03: 200 directions, 4000 points)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 3))
    y = rng.normal(size=(4000, 3)) + np.array([1.0, 0.0, 0.0])
    assert abs(sliced_wasserstein(x, y, 200, seed=0) - 1 / np.sqrt(3)) < 0.03


def test_times_must_be_shared(gibbs_runs):
    """Asking for a time no run has is an error that lists the shared times."""
    with pytest.raises(ValueError, match="not shared"):
        chaos(gibbs_runs, times=[1.234], distances=False)


def test_mmd2_is_the_u_statistic_summed_over_distinct_pairs():
    """On samples of sizes 4 and 5, mmd2 equals the brute-force unbiased estimate
    sum_{i != i'} k(x_i, x_i') / (a(a-1)) + sum_{j != j'} k(y_j, y_j') / (b(b-1)) - 2 mean_{i,j} k(x_i, y_j)."""
    rng = np.random.default_rng(3)
    x, y, h = rng.normal(size=(4, 2)), 0.5 + rng.normal(size=(5, 2)), 0.7

    def k(u, v):
        return np.exp(-np.sum((u - v) ** 2) / (2 * h**2))

    def within(s):
        m = len(s)
        return sum(k(s[i], s[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))

    cross = sum(k(u, v) for u in x for v in y) / (len(x) * len(y))
    np.testing.assert_allclose(mmd2(x, y, h), within(x) + within(y) - 2 * cross, rtol=1e-12)


def _particle_run(a, times):
    """InferenceData with one particle site ``a`` ``(chain, draw, particle)``."""
    return az.InferenceData(
        posterior=xr.Dataset({"a": (("chain", "draw", "particle"), a)}, coords={"time": ("draw", times)})
    )


def test_one_chain_per_width_is_refused():
    """One replica has no across-replica covariance: refused as fluctuations refuses it (before, the
    covariances and marginal variances came back all NaN without a word)."""
    rng = np.random.default_rng(4)
    runs = {n: _particle_run(rng.normal(size=(1, 2, n)), [0.0, 1.0]) for n in (4, 8)}
    with pytest.raises(ValueError, match=r"width 4 has 1 chain\(s\); replicas are needed \(num_chains >= 2\)"):
        chaos(runs, num_bootstrap=10)


def test_one_particle_has_a_marginal_variance_and_no_pair_covariance():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 2, 1))
    res = chaos(
        {1: _particle_run(a, [0.0, 1.0]), 2: _particle_run(rng.normal(size=(6, 2, 2)), [0.0, 1.0])},
        num_bootstrap=10,
        distances=False,
    )
    np.testing.assert_allclose(res["marginal_variance"].sel(observable="a", width=1), np.var(a[:, :, 0], 0, ddof=1))
    assert np.all(np.isnan(res["covariance"].sel(width=1)))
