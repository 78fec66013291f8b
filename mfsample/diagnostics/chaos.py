"""Propagation of chaos: particles become independent as ``n -> inf``.

Two measurements on ``{n: InferenceData}`` with ``R`` replicas per width:

1. For an observable ``g`` of one particle, the covariance across replicas of ``g(theta_i(t))``
   and ``g(theta_j(t))`` for distinct particles, averaged over the pairs ``i != j`` and scaled by
   ``n``.  With unbiased across-replica (co)variances, the pair average is

       n Cov = n/(n-1) * ( n Var_r(gbar_r) - mean_j Var_r(g_rj) ),    gbar_r = (1/n) sum_j g_rj,

   which is ``O(1)`` when chaos propagates (the covariance itself is ``O(1/n)``).  Vector-valued
   observables (the unit function on several points) are averaged over their components.
2. The distance between the one-particle marginal at width ``n`` and at the reference (widest)
   width, each estimated by pooling particles over replicas (particles are exchangeable):

   * ``mmd``: the unbiased estimate of ``MMD^2`` with the Gaussian kernel
     ``k(x, y) = exp(-|x - y|^2 / (2 h^2))``, ``h`` the median pairwise distance of the reference
     sample at that time (median heuristic);
   * ``sliced_wasserstein``: the sliced 2-Wasserstein distance (POT's
     ``ot.sliced_wasserstein_distance``, random directions on the sphere; exact W2 between
     empirical measures costs O(n^3) and converges slowly in high dimension).

   Both are computed on at most ``max_points`` particles per side; their sampling-noise level is
   reported as ``*_floor``: the same distance from the reference sample to an independent sample
   of the reference marginal as large as width ``n``'s (small widths pool few particles, so their
   floor is higher).

Intervals for the covariances: percentile bootstrap over replicas; fitted decay ``|Cov| ~ n^alpha``
(chaos: ``alpha = -1``) per observable and time.  Distances: least-squares decay over the widths
below the reference, with a normal-theory (OLS) interval.

Theory: ``docs/theory/fluctuations.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import xarray as xr

from . import configs
from .fluctuations import (
    BOUND,
    _group,
    _select_times,
    _sorted_runs,
    bootstrap_weights,
    check_finite,
    check_replicas,
    common_times,
    fit_power_law,
    percentile_interval,
    weighted_dispersion,
)

__all__ = ["chaos", "default_observables", "pair_covariance", "mmd2", "sliced_wasserstein"]

SKIP = ("masses",)


# ---------------------------------------------------------------------------------------------
# observables
# ---------------------------------------------------------------------------------------------
def default_observables(idata) -> dict:
    """``{name: DataArray (chain, draw, particle, ...)}``: every particle site (vector sites by their
    Euclidean norm, ``w -> w_norm``) and the unit functions ``phi`` on ``x_eval`` when stored."""
    post = idata.posterior
    obs = {}
    for name, v in post.data_vars.items():
        if "particle" not in v.dims or name in SKIP:
            continue
        extra = [d for d in v.dims if d not in ("chain", "draw", "particle")]
        if extra:
            obs[f"{name}_norm"] = np.sqrt((v.astype(np.float64) ** 2).sum(extra))
        else:
            obs[name] = v
    pred = _group(idata, "predictions")
    if pred is not None and "phi" in pred:
        obs["phi"] = pred["phi"]
    return obs


def _observable(idata, spec):
    if callable(spec):
        return spec(idata)
    if isinstance(spec, str):
        obs = default_observables(idata)
        if spec in obs:
            return obs[spec]
        if spec not in idata.posterior:
            raise ValueError(
                f"no observable {spec!r}: the default ones are {sorted(obs)} and the posterior has "
                f"{list(idata.posterior.data_vars)}"
            )
        return idata.posterior[spec]
    raise TypeError(f"an observable is a name or a callable idata -> DataArray, got {spec!r}")


def _as_rtnk(da, times):
    """``(R, T, n, K)`` float64 array of an observable at the common times."""
    da = _select_times(da, times)
    extra = [d for d in da.dims if d not in ("chain", "draw", "particle")]
    da = da.transpose("chain", "draw", "particle", *extra)
    v = da.values.astype(np.float64)
    return v.reshape(v.shape[:3] + (-1,))


# ---------------------------------------------------------------------------------------------
# the statistics
# ---------------------------------------------------------------------------------------------
def pair_covariance(g, weights):
    """``n * Cov_r(g_i, g_j)`` averaged over pairs ``i != j`` (and components), per time, and the
    one-particle variance ``mean_j Var_r(g_j)``.

    ``g``: ``(R, T, n, K)``; ``weights``: ``(B, R)`` chain multiplicities (see
    :func:`~.fluctuations.weighted_dispersion`).  Returns ``(cov (T,), cov_boot (B, T), var (T,), var_boot (B, T))``;
    all NaN with one replica, and ``cov`` NaN with one particle (no pair).
    """
    r, t, n, k = g.shape
    if r < 2:
        nan, nan_b = np.full(t, np.nan), np.full((weights.shape[0], t), np.nan)
        return nan, nan_b, nan, nan_b

    def combine(w):  # w: (B, R) -> (B, T), (B, T)
        var_one = weighted_dispersion(g.reshape(r, t, n * k), w) / (r - 1)  # mean_j Var_r(g_j)
        if n < 2:  # no pair i != j
            return np.full_like(var_one, np.nan), var_one
        var_mean = weighted_dispersion(g.mean(2), w) / (r - 1)  # Var_r of the particle mean
        return n / (n - 1) * (n * var_mean - var_one), var_one

    (cov,), (var,) = combine(np.ones((1, r)))
    cov_boot, var_boot = combine(weights)
    return cov, cov_boot, var, var_boot


def mmd2(x, y, bandwidth):
    """Unbiased ``MMD^2`` between samples ``x (a, d)`` and ``y (b, d)`` with the Gaussian kernel
    ``exp(-|u - v|^2 / (2 h^2))`` (Gretton et al. 2012, eq. 3)."""

    def gram(u, v):
        d2 = np.sum(u**2, 1)[:, None] + np.sum(v**2, 1)[None] - 2 * u @ v.T
        return np.exp(-np.maximum(d2, 0.0) / (2 * bandwidth**2))

    a, b = len(x), len(y)
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    return (kxx.sum() - np.trace(kxx)) / (a * (a - 1)) + (kyy.sum() - np.trace(kyy)) / (b * (b - 1)) - 2 * kxy.mean()


def median_bandwidth(x):
    """Median pairwise distance of ``x`` (at most 1000 points), the median heuristic."""
    x = x[:1000]
    d2 = np.sum(x**2, 1)[:, None] + np.sum(x**2, 1)[None] - 2 * x @ x.T
    d = np.sqrt(np.maximum(d2[np.triu_indices(len(x), 1)], 0.0))
    h = float(np.median(d))
    return h if h > 0 else 1.0


def sliced_wasserstein(x, y, num_projections=200, seed=0):
    """Sliced 2-Wasserstein distance between the empirical measures of ``x`` and ``y`` (POT)."""
    import ot

    return float(ot.sliced_wasserstein_distance(x, y, n_projections=num_projections, p=2, seed=seed))


def _marginal_features(idata, times):
    """One-particle positions pooled over replicas: ``(T, R*n, D)`` and the masses ``(T, R*n)`` or None."""
    post = _select_times(idata.posterior, times) if "draw" in idata.posterior.dims else idata.posterior
    parts = []
    for name, v in post.data_vars.items():
        if "particle" not in v.dims or name in SKIP:
            continue
        extra = [d for d in v.dims if d not in ("chain", "draw", "particle")]
        a = v.transpose("draw", "chain", "particle", *extra).values.astype(np.float64)
        parts.append(a.reshape(a.shape[0], a.shape[1] * a.shape[2], -1))
    if not parts:
        raise ValueError(
            "the posterior has no particle site (no variable with a 'particle' dim): the marginal distances "
            "need the particles' positions; pass distances=False"
        )
    masses = None
    if "masses" in post:
        m = post["masses"].transpose("draw", "chain", "particle").values.astype(np.float64)
        masses = m.reshape(m.shape[0], -1)
    return np.concatenate(parts, axis=-1), masses


def _subsample(rng, x, masses, size):
    """``size`` points of the (weighted) empirical measure: without replacement when equally
    weighted, resampled proportionally to the masses otherwise."""
    if masses is not None:
        p = masses / masses.sum()
        return x[rng.choice(len(x), size=size, replace=True, p=p)]
    if len(x) <= size:
        return x
    return x[rng.choice(len(x), size=size, replace=False)]


def _ols_interval(widths, values, ci_prob):
    """Slope of ``log v`` on ``log n`` with a t-interval; ``values (W, T)`` -> ``(T,)``, ``(T, 2)``."""
    from scipy import stats as st

    x = np.log(np.asarray(widths, float))
    alpha, pref = fit_power_law(widths, values)
    w = len(x)
    if w < 3:
        return alpha, pref, np.full(alpha.shape + (2,), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
    resid = y - (np.log(pref)[None] + alpha[None] * x[:, None])
    se = np.sqrt(np.sum(resid**2, 0) / (w - 2) / np.sum((x - x.mean()) ** 2))
    q = st.t.ppf((1 + ci_prob) / 2, w - 2)
    return alpha, pref, np.stack([alpha - q * se, alpha + q * se], -1)


def chaos(
    runs: Mapping,
    *,
    config=None,
    observables: Mapping[str, str | Callable] | None = None,
    reference_width: int | None = None,
    times=None,
    distances: bool = True,
    max_points: int = 1000,
    num_projections: int = 200,
    ci_prob: float = 0.95,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """Across-replica pair covariances (scaled by ``n``) and marginal distances, over ``(width, time)``.

    :param runs: ``{n: InferenceData}`` with ``R >= 2`` chains each (one chain: ``ValueError``, there is
        no across-replica covariance) and common times.
    :param config: for runs of a sweep (a ``config`` dimension, :mod:`~mfsample.diagnostics.configs`):
        the configuration to analyse (index or ``{name: value}``; a callable observable then
        receives that configuration's InferenceData); ``None``: every configuration, the result
        stacked along ``config``.
    :param observables: ``{name: posterior variable name | callable(idata) -> DataArray (chain, draw,
        particle, ...)}``; default :func:`default_observables` (``a``, ``w_norm``, ``b``, ``phi``).
    :param reference_width: width of the reference marginal (default: the widest).
    :param times: the times to analyse (default: every time the runs share).
    :param distances: compute ``mmd`` and ``sliced_wasserstein`` (set ``False`` to skip them).
    :param max_points: particles per side for the distances (subsampled, seeded).
    :returns: Dataset with dims ``observable``, ``width``, ``time``, ``bound``:

        - ``covariance`` ``(observable, width, time)``: ``n Cov(g(theta_i), g(theta_j))``, ``i != j``,
          and ``covariance_ci``;
        - ``covariance_exponent``, ``covariance_exponent_ci`` ``(observable, time)``: ``|Cov| ~ n^alpha``;
        - ``marginal_variance`` ``(observable, width, time)``: one-particle ``mean_j Var_r(g(theta_j))``
          and ``marginal_variance_ci``;
        - ``mmd``, ``sliced_wasserstein`` ``(width, time)`` to the reference marginal, their noise
          floors ``mmd_floor``, ``sliced_wasserstein_floor`` ``(width, time)``, the kernel bandwidth
          ``mmd_bandwidth`` ``(time)`` and the fitted decay ``*_exponent``, ``*_exponent_ci`` ``(time)``.
    """
    options = dict(observables=observables, reference_width=reference_width, times=times, distances=distances)
    options.update(max_points=max_points, num_projections=num_projections, ci_prob=ci_prob)
    return configs.apply(runs, config, partial(_chaos, num_bootstrap=num_bootstrap, seed=seed, **options))


def _chaos(
    runs, *, observables, reference_width, times, distances, max_points, num_projections, ci_prob, num_bootstrap, seed
) -> xr.Dataset:
    """:func:`chaos` of runs without a ``config`` dimension."""
    runs = _sorted_runs(runs)
    widths = np.array(list(runs))
    shared = common_times(runs)
    if times is not None:
        wanted = np.round(np.atleast_1d(np.asarray(times, float)), 9)
        missing = sorted(set(wanted) - set(shared))
        if missing:
            raise ValueError(f"times {missing} are not shared by every run; shared: {shared.tolist()}")
        shared = wanted
    times = shared
    rng = np.random.default_rng(seed)
    ref_width = int(widths[-1] if reference_width is None else reference_width)
    if ref_width not in runs:
        raise ValueError(f"reference_width {ref_width} is not one of the widths {widths.tolist()}")
    first = runs[int(widths[0])]
    specs = dict(observables) if observables is not None else {k: k for k in default_observables(first)}
    names = list(specs)

    shape = (len(names), len(widths), len(times))
    cov, var = np.full(shape, np.nan), np.full(shape, np.nan)
    cov_boot, var_boot = np.full((num_bootstrap,) + shape, np.nan), np.full((num_bootstrap,) + shape, np.nan)
    for i, n in enumerate(widths):
        idata = runs[int(n)]
        check_replicas(int(n), idata.posterior.sizes.get("chain", 0))
        w = bootstrap_weights(rng, idata.posterior.sizes["chain"], num_bootstrap)
        for o, name in enumerate(names):
            g = _as_rtnk(_observable(idata, specs[name]), times)
            check_finite(g, f"the observable {name!r} of the run of width {n}")
            cov[o, i], cov_boot[:, o, i], var[o, i], var_boot[:, o, i] = pair_covariance(g, w)

    cov_scaled = widths[None, :, None] * 1.0
    raw = cov / cov_scaled  # Cov itself
    raw_boot = cov_boot / cov_scaled[None]
    sign = np.sign(np.nansum(raw, axis=1, keepdims=True))
    alpha, _ = fit_power_law(widths, np.moveaxis(sign * raw, 1, 0))
    alpha_boot, _ = fit_power_law(widths, np.moveaxis(sign[None] * raw_boot, 2, 0))
    data = {
        "covariance": (("observable", "width", "time"), cov),
        "covariance_ci": (("observable", "width", "time", "bound"), percentile_interval(cov_boot, ci_prob)),
        "covariance_exponent": (("observable", "time"), alpha),
        "marginal_variance": (("observable", "width", "time"), var),
        "marginal_variance_ci": (("observable", "width", "time", "bound"), percentile_interval(var_boot, ci_prob)),
        "covariance_exponent_ci": (("observable", "time", "bound"), percentile_interval(alpha_boot, ci_prob)),
    }

    attrs = {
        "covariance": "n * Cov_r(g(theta_i), g(theta_j)), i != j, averaged over pairs (O(1) under chaos)",
        "ci_prob": ci_prob,
        "interval": "percentile bootstrap over chains (replicas)",
        "reference_width": ref_width,
    }
    if distances:
        ref_x, ref_m = _marginal_features(runs[ref_width], times)
        shape = (len(widths), len(times))
        mmd, sw, mmd_floor, sw_floor = (np.full(shape, np.nan) for _ in range(4))
        bandwidth, reference = np.full(len(times), np.nan), []
        for t in range(len(times)):
            a = _subsample(rng, ref_x[t], None if ref_m is None else ref_m[t], 2 * max_points)
            a = a[rng.permutation(len(a))]
            half = len(a) // 2
            bandwidth[t] = median_bandwidth(a)
            reference.append((a[:half], a[half:]))  # the reference sample, and a disjoint null pool
        for i, n in enumerate(widths):
            if int(n) == ref_width:
                continue
            x, m = _marginal_features(runs[int(n)], times)
            for t in range(len(times)):
                xs = _subsample(rng, x[t], None if m is None else m[t], max_points)
                y, pool = reference[t]
                null = pool[: len(xs)]  # as many reference particles as xs: same sampling noise
                mmd[i, t], mmd_floor[i, t] = (mmd2(u, y, bandwidth[t]) for u in (xs, null))
                sw[i, t], sw_floor[i, t] = (sliced_wasserstein(u, y, num_projections, seed) for u in (xs, null))
        below = widths < ref_width
        for name, val in (("mmd", mmd), ("sliced_wasserstein", sw)):
            a_, _, a_ci = (
                _ols_interval(widths[below], val[below], ci_prob)
                if below.sum() >= 2
                else (np.full(len(times), np.nan), None, np.full((len(times), 2), np.nan))
            )
            data[name] = (("width", "time"), val)
            data[f"{name}_exponent"] = (("time",), a_)
            data[f"{name}_exponent_ci"] = (("time", "bound"), a_ci)
        data["mmd_floor"] = (("width", "time"), mmd_floor)
        data["sliced_wasserstein_floor"] = (("width", "time"), sw_floor)
        data["mmd_bandwidth"] = (("time",), bandwidth)
        attrs.update(
            mmd="unbiased MMD^2, Gaussian kernel exp(-|x-y|^2/(2h^2)), h = median pairwise distance of "
            "the reference marginal (median heuristic)",
            sliced_wasserstein=f"sliced W2 (POT), {num_projections} random directions",
            distance_samples=f"at most {max_points} particles per side, pooled over chains",
            floor="the same distance from the reference sample to another sample of the reference "
            "marginal of the same size as width n's (the value expected without finite-n bias)",
        )
    return xr.Dataset(
        data, coords={"observable": names, "width": widths, "time": times, "bound": list(BOUND)}, attrs=attrs
    )
