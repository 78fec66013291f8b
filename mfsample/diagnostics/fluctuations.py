"""Fluctuations of the network function at Monte-Carlo scale: the dynamic CLT.

For ``R`` independent replicas (chains) of the ``n``-particle system,

    fluctuation(n, t) = n * E || f_n(t) - f(t) ||^2_nu,      ||g||^2_nu = mean_{x in x_eval} g(x)^2,

which stays bounded in ``n`` and ``t`` when fluctuations are at Monte-Carlo scale (Rotskoff,
Chen, Bruna & Vanden-Eijnden 2020).  At ``t = 0`` the particles are iid from ``mu0`` and, in the
mean-field scaling, ``n Var f_n(x) = Var_{theta ~ mu0} phi(x; theta)``: the Monte-Carlo variance of
one unit (:func:`unit_variance`, reported as ``static``).

The reference ``f(t)`` is one of

* ``"replica_mean"``: the mean of the ``R`` replicas at the same width.  The sample variance with
  the ``1/(R-1)`` factor removes the bias of estimating the mean; what remains,
  ``n ||E f_n(t) - f(t)||^2 = O(1/n)`` (the finite-``n`` bias of the mean, squared, times ``n``),
  is not included: the statistic is ``n * trace Var(f_n(t))``.
* ``"widest"``: the replica mean of the widest run (same times).  Its own sampling variance
  ``Var(f_N)/R_N`` (estimated without bias) is subtracted; the widest run itself is compared with
  its own replica mean.
* an analytic limit: an array ``(eval_point,)`` / ``(time, eval_point)``, an ``xarray.DataArray``
  with dims among ``(time, eval_point)``, or a callable ``f(time) -> (time, eval_point)``.

Intervals are percentile bootstrap intervals over chains (replicas are iid; particles are not
resampled because they interact).  The exponent ``alpha`` of ``E||f_n - f||^2 ~ C n^alpha`` is fitted
per time by least squares in log-log over the widths (Monte-Carlo scale: ``alpha = -1``), with
the interval from refitting on every bootstrap replicate.

Theory: ``docs/theory/fluctuations.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import xarray as xr

from .. import validation
from . import configs

__all__ = ["fluctuations", "unit_variance", "replica_outputs", "common_times", "check_inference_data"]

BOUND = ("lower", "upper")


# ---------------------------------------------------------------------------------------------
# small statistics shared with chaos.py
# ---------------------------------------------------------------------------------------------
def bootstrap_weights(rng, num_chains: int, num_bootstrap: int) -> np.ndarray:
    """Multiplicities ``(B, R)`` of the chains in ``B`` resamples with replacement (rows sum to ``R``)."""
    return rng.multinomial(num_chains, np.full(num_chains, 1.0 / num_chains), size=num_bootstrap).astype(float)


def percentile_interval(replicates: np.ndarray, ci_prob: float, axis: int = 0) -> np.ndarray:
    """``(lower, upper)`` percentile interval on the last axis (NaN-aware)."""
    q = 100 * np.array([(1 - ci_prob) / 2, (1 + ci_prob) / 2])
    with warnings.catch_warnings():  # all-NaN slices (e.g. no positive value to fit) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanpercentile(replicates, q, axis=axis)
    return np.moveaxis(out, 0, -1)


def fit_power_law(widths, values):
    """Least-squares ``log v = log C + alpha log n`` along the first axis of ``values`` ``(W, ...)``.

    Returns ``(alpha, C)`` of shape ``values.shape[1:]``; NaN where a value is not positive.
    """
    x = np.log(np.asarray(widths, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
    xc = x - x.mean()
    shape = (-1,) + (1,) * (y.ndim - 1)
    alpha = np.sum(xc.reshape(shape) * (y - y.mean(0)), axis=0) / np.sum(xc**2)
    log_c = y.mean(0) - alpha * x.mean()
    return alpha, np.exp(log_c)


# ---------------------------------------------------------------------------------------------
# reading runs
# ---------------------------------------------------------------------------------------------
def _group(idata, name):
    return getattr(idata, name) if name in idata.groups() else None


def check_inference_data(idata, *groups: str, caller: str):
    """``idata`` must be an ``arviz.InferenceData`` holding ``groups`` (``TypeError`` /
    ``ValueError`` naming what ``caller`` needs otherwise); returns it."""
    if not callable(getattr(idata, "groups", None)):
        raise TypeError(
            f"{caller} reads an arviz.InferenceData (convert a run with mf.to_inference_data); "
            f"got {type(idata).__name__}"
        )
    missing = [g for g in groups if g not in idata.groups()]
    if missing:
        raise ValueError(
            f"{caller} needs the group(s) {missing} of a run converted with mf.to_inference_data; this "
            f"InferenceData has {list(idata.groups())}"
        )
    return idata


def check_replicas(width: int, num_chains: int) -> None:
    """Across-replica statistics need two replicas (chains) at least."""
    if num_chains < 2:
        raise ValueError(f"width {width} has {num_chains} chain(s); replicas are needed (num_chains >= 2)")


def check_finite(values, what: str) -> None:
    """Refuse non-finite values of an input (a diverged or hand-made run)."""
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"{what} holds non-finite values (NaN or inf): the statistics need finite draws; drop the "
            "diverged chains or draws (isel) before the analysis"
        )


def replica_outputs(idata, var_name: str = "f", group: str | None = None) -> xr.DataArray:
    """The output variable as ``(chain, draw, eval_point)`` with the ``time`` coordinate.

    ``group=None`` takes ``predictions[var_name]`` (held-out ``x_eval``) when present, else
    ``posterior[var_name]`` (training inputs, ``data`` renamed ``eval_point``); ``ValueError``
    when the group has no such variable.
    """
    if group is None:
        pred = _group(idata, "predictions")
        group = "predictions" if pred is not None and var_name in pred else "posterior"
    ds = _group(idata, group)
    if ds is None or var_name not in ds:
        raise ValueError(
            f"no output variable {var_name!r} in the {group} group (it has "
            f"{[] if ds is None else list(ds.data_vars)}): give var_name= / group= of the network output"
        )
    da = ds[var_name]
    if configs.CONFIG_DIM in da.dims:
        raise ValueError(
            f"{group}[{var_name!r}] has a {configs.CONFIG_DIM!r} dimension (a sweep): take one configuration "
            "first, mf.diagnostics.configs.select(idata, config)"
        )
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if len(extra) == 0:
        da = da.expand_dims(eval_point=[0], axis=-1)
    elif len(extra) == 1:
        da = da.rename({extra[0]: "eval_point"}) if extra[0] != "eval_point" else da
    else:
        da = da.stack(eval_point=extra).reset_index("eval_point", drop=True)
    return da.transpose("chain", "draw", "eval_point")


def _time_key(t):
    return np.round(np.asarray(t, float), 9)


def common_times(runs: Mapping) -> np.ndarray:
    """Times present in every run (draws are matched on their ``time`` coordinate)."""
    keys = None
    for idata in runs.values():
        t = _time_key(idata.posterior["time"].values)
        keys = set(t) if keys is None else keys & set(t)
    if not keys:
        raise ValueError("the runs share no time: give them the same step size and save_every")
    return np.array(sorted(keys))


def _select_times(da, times):
    t = _time_key(da["time"].values)
    index = {v: i for i, v in enumerate(t)}
    return da.isel(draw=[index[v] for v in times])


def _sorted_runs(runs: Mapping):
    if hasattr(runs, "groups") or not isinstance(runs, Mapping):
        raise TypeError("runs must be a dict {width: InferenceData} (e.g. from mf.experiments.replicate)")
    if not runs:
        raise ValueError("runs is empty: give a dict {width: InferenceData}")
    out = {}
    for n, idata in runs.items():
        n = validation.positive_int("every key of runs (a width)", n)
        check_inference_data(idata, "posterior", caller=f"the run of width {n}")
        out[n] = idata
    for n, idata in sorted(out.items()):
        post = idata.posterior
        if "particle" in post.sizes and post.sizes["particle"] != int(n):
            raise ValueError(f"the run keyed {n} has {post.sizes['particle']} particles: key each run by its width")
    return dict(sorted(out.items()))


def _reference_array(reference, times, num_points):
    """An analytic reference as ``(T, M)``."""
    if callable(reference) and not isinstance(reference, xr.DataArray):
        ref = np.asarray(reference(np.asarray(times)), float)
    elif isinstance(reference, xr.DataArray):
        ref = reference
        if "time" in ref.dims:
            ref = ref.sel(time=times, method="nearest")
        else:
            ref = ref.expand_dims(time=len(times))
        if "eval_point" not in ref.dims:
            ref = ref.expand_dims(eval_point=num_points, axis=-1)
        ref = np.asarray(ref.transpose("time", "eval_point").values, float)
    else:
        ref = np.asarray(reference, float)
    ref = np.broadcast_to(ref if ref.ndim == 2 else ref.reshape(1, -1), (len(times), num_points))
    return np.asarray(ref)


# ---------------------------------------------------------------------------------------------
# the statistics
# ---------------------------------------------------------------------------------------------
def weighted_dispersion(x, weights):
    """``sum_r w_r ||x_r - xbar_w||^2 / P`` for each row ``w`` of ``weights`` ``(B, R)``; ``x``: ``(R, T, P)``.

    ``xbar_w = sum_r w_r x_r / R`` (rows of ``weights`` sum to ``R``).  Either directly, or through the
    Gram matrix ``G_rs = <x_r, x_s> / P`` (``w.diag(G) - w^T G w / R``), whichever costs less.
    Returns ``(B, T)``.
    """
    r, t, p = x.shape
    b = weights.shape[0]
    x = x - x.mean(0, keepdims=True)  # translation invariant; better conditioned
    sq = np.einsum("rtp,rtp->rt", x, x) / p  # (R, T)
    if b * r * p <= r * r * (p + b):
        xbar = np.einsum("br,rtp->btp", weights, x) / r
        return weights @ sq - r * np.einsum("btp,btp->bt", xbar, xbar) / p
    gram = np.einsum("rtp,stp->trs", x, x) / p
    return weights @ sq - np.einsum("br,trs,bs->bt", weights, gram, weights) / r


def _variance_stats(f, weights):
    """Unbiased ``trace Var_r f_r / M`` at each time, and on each bootstrap resample (``f``: ``(R, T, M)``)."""
    r = f.shape[0]
    point = weighted_dispersion(f, np.ones((1, r)))[0] / (r - 1)
    return point, weighted_dispersion(f, weights) / (r - 1)


def _distance_stats(f, ref, weights, correction):
    """``mean_r ||f_r - ref||^2 - correction`` at each time, and on each bootstrap resample."""
    r = f.shape[0]
    d2 = np.mean((f - ref[None]) ** 2, axis=2)  # (R, T)
    return d2.mean(0) - correction, weights @ d2 / r - correction[None]


def unit_variance(idata, draw: int = 0, *, config=None) -> float | xr.DataArray:
    """``n^(2-2p) * mean_x Var_{theta ~ mu_n} phi(x; theta)`` at one draw, pooled over chains and particles.

    At a draw with ``t = 0`` the particles are iid from ``mu0`` and this is the Monte-Carlo
    variance of one unit, ``Var_{mu0} phi`` (mean-field scaling ``p = 1``), averaged over the
    ``unit_point`` evaluation points (needs ``predictions["phi"]``, see ``to_inference_data``).
    For a sweep, ``config`` selects a configuration (:mod:`~mfsample.diagnostics.configs`);
    ``None``: a ``DataArray`` over ``config``.
    """
    check_inference_data(idata, caller="unit_variance")
    return configs.apply(idata, config, partial(_unit_variance, draw=draw))


def _unit_variance(idata, draw: int) -> float:
    pred = _group(idata, "predictions")
    if pred is None or "phi" not in pred:
        raise ValueError("no unit functions: convert the run with to_inference_data(..., unit_points=k)")
    if pred["phi"].sizes["chain"] * pred["phi"].sizes["particle"] < 2:
        raise ValueError("unit_variance needs two units at least (chains * particles >= 2)")
    phi = pred["phi"].isel(draw=draw).transpose("chain", "particle", "unit_point").values
    phi = phi.reshape(-1, phi.shape[-1]).astype(np.float64)
    p = float(pred.attrs.get("scaling_exponent", 1.0))
    n = pred.sizes["particle"]
    return float(n ** (2 - 2 * p) * np.mean(np.var(phi, axis=0, ddof=1)))


def fluctuations(
    runs: Mapping,
    *,
    config=None,
    reference: str | np.ndarray | xr.DataArray | Callable = "replica_mean",
    var_name: str = "f",
    group: str | None = None,
    ci_prob: float = 0.95,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """``n * E||f_n(t) - f(t)||^2_nu`` over ``(width, time)``, with bootstrap intervals and the fitted exponent.

    :param runs: ``{n: InferenceData}`` from :func:`~mfsample.diagnostics.to_inference_data`
        (or :func:`mfsample.experiments.replicate`), each with ``R >= 2`` chains and common times.
    :param config: for runs of a sweep (a ``config`` dimension, :mod:`~mfsample.diagnostics.configs`):
        the configuration to analyse (index or ``{name: value}``); ``None``: every configuration,
        the result stacked along ``config`` (times not shared by all configurations are NaN in
        the others).
    :param reference: ``"replica_mean"``, ``"widest"`` or an analytic limit (module docstring);
        an analytic ``DataArray`` may have a ``config`` dimension (one limit per configuration).
    :param var_name, group: the output variable (``predictions["f"]`` by default, see
        :func:`replica_outputs`).
    :param ci_prob: probability of the percentile intervals.
    :param num_bootstrap: resamples of the chains.
    :returns: Dataset with dims ``width``, ``time``, ``bound``:

        - ``fluctuation`` ``(width, time)``: ``n E||f_n - f||^2_nu``; ``fluctuation_ci`` its interval;
        - ``variance`` ``(width, time)``: ``E||f_n - f||^2_nu`` (= fluctuation / n);
        - ``exponent``, ``exponent_ci``, ``prefactor`` ``(time)``: ``variance ~ prefactor * n^exponent``;
        - ``static`` ``(width)``: :func:`unit_variance` at the draw with ``t = 0`` (NaN without one
          or without unit functions), the value the fluctuation must equal at ``t = 0``;
        - ``num_chains`` ``(width)``.
    """
    options = dict(var_name=var_name, group=group, ci_prob=ci_prob, num_bootstrap=num_bootstrap, seed=seed)
    return configs.apply(runs, config, partial(_fluctuations, **options), reference=reference)


def _fluctuations(runs, *, reference, var_name, group, ci_prob, num_bootstrap, seed) -> xr.Dataset:
    """:func:`fluctuations` of runs without a ``config`` dimension."""
    runs = _sorted_runs(runs)
    widths = np.array(list(runs))
    times = common_times(runs)
    rng = np.random.default_rng(seed)
    outputs = {n: _select_times(replica_outputs(idata, var_name, group), times) for n, idata in runs.items()}
    for n, da in outputs.items():
        check_replicas(n, da.sizes["chain"])
        check_finite(da.values, f"{var_name} of the run of width {n}")
    num_points = {da.sizes["eval_point"] for da in outputs.values()}
    if len(num_points) != 1:
        raise ValueError("the runs are evaluated on different numbers of points")
    num_points = num_points.pop()
    if num_points == 0:
        raise ValueError(f"the output {var_name!r} has no evaluation point: convert the runs with x_eval of >= 1 point")

    widest = int(widths[-1])
    ref, correction, description = None, None, None
    if isinstance(reference, str):
        if reference == "widest":
            fw = outputs[widest].values.astype(np.float64)
            ref = fw.mean(0)
            correction = np.mean(np.var(fw, axis=0, ddof=1), axis=-1) / fw.shape[0]
            description = (
                f"replica mean of the widest run (n={widest}); its sampling variance Var(f_N)/R_N is subtracted"
            )
        elif reference == "replica_mean":
            description = (
                "replica mean at each width; unbiased 1/(R-1) variance, i.e. n trace Var(f_n(t)) "
                "(omits n||E f_n - f||^2 = O(1/n))"
            )
        else:
            raise ValueError(f"reference must be 'replica_mean', 'widest' or an analytic limit, got {reference!r}")
    else:
        ref = _reference_array(reference, times, num_points)
        correction = np.zeros(len(times))
        description = "analytic reference given by the caller"

    var_point = np.empty((len(widths), len(times)))
    var_boot = np.empty((num_bootstrap, len(widths), len(times)))
    chains = np.empty(len(widths), int)
    for i, n in enumerate(widths):
        f = outputs[int(n)].values.astype(np.float64)
        chains[i] = f.shape[0]
        w = bootstrap_weights(rng, f.shape[0], num_bootstrap)
        if ref is None or (reference == "widest" and int(n) == widest):
            var_point[i], var_boot[:, i] = _variance_stats(f, w)
        else:
            var_point[i], var_boot[:, i] = _distance_stats(f, ref, w, correction)

    fluct = widths[:, None] * var_point
    fluct_ci = percentile_interval(widths[None, :, None] * var_boot, ci_prob)
    if len(widths) >= 2:
        alpha, pref = fit_power_law(widths, var_point)
        alpha_boot, _ = fit_power_law(widths, np.moveaxis(var_boot, 1, 0))
        alpha_ci = percentile_interval(alpha_boot, ci_prob)
    else:
        alpha = pref = np.full(len(times), np.nan)
        alpha_ci = np.full((len(times), 2), np.nan)

    static = np.full(len(widths), np.nan)
    for i, n in enumerate(widths):
        idata = runs[int(n)]
        t = idata.posterior["time"].values
        pred = _group(idata, "predictions")
        if len(t) and abs(float(t[0])) < 1e-12 and pred is not None and "phi" in pred:
            static[i] = unit_variance(idata, 0)

    ds = xr.Dataset(
        {
            "fluctuation": (("width", "time"), fluct),
            "fluctuation_ci": (("width", "time", "bound"), fluct_ci),
            "variance": (("width", "time"), var_point),
            "exponent": (("time",), alpha),
            "exponent_ci": (("time", "bound"), alpha_ci),
            "prefactor": (("time",), pref),
            "static": (("width",), static),
            "num_chains": (("width",), chains),
        },
        coords={"width": widths, "time": times, "bound": list(BOUND)},
        attrs={
            "definition": "fluctuation = n * E||f_n(t) - f(t)||^2_nu, ||g||^2_nu = mean over evaluation points",
            "reference": description,
            "ci_prob": ci_prob,
            "interval": "percentile bootstrap over chains (replicas)",
            "num_bootstrap": num_bootstrap,
            "exponent_fit": "least squares of log variance on log n over all widths (Monte-Carlo scale: -1)",
            "static": "Var_{theta~mu0} phi(x; theta) averaged over unit points, from the t = 0 draw",
        },
    )
    ds["fluctuation"].attrs["description"] = "n * E||f_n(t) - f(t)||^2_nu"
    ds["exponent"].attrs["description"] = "alpha in E||f_n - f||^2 ~ prefactor * n^alpha"
    return ds
