"""Matplotlib views of the fluctuation, chaos and convergence diagnostics (used by the notebooks and the CLI).

Every function draws on the ``ax`` (or ``axes``) it is given, or on a new figure, and returns the
Axes (or the Figure for multi-panel plots).  ArviZ's own plots are used where they fit
(:func:`plot_energy_trace` wraps ``arviz.plot_trace``, :func:`plot_ess` wraps ``arviz.plot_ess``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import xarray as xr

from ..inference_data.layout import objective
from .summary import scalar_observables

__all__ = [
    "plot_fluctuations",
    "plot_exponent",
    "plot_chaos",
    "plot_distances",
    "plot_marginals",
    "plot_energy",
    "plot_energy_trace",
    "plot_ess",
]


def _axes(ax, ncols=1, nrows=1, **kw):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    fig, ax = plt.subplots(nrows, ncols, figsize=kw.get("figsize", (5 * ncols, 3.6 * nrows)), squeeze=False)
    return ax if (ncols, nrows) != (1, 1) else ax[0, 0]


def _colors(k):
    import matplotlib.pyplot as plt

    return plt.cm.viridis(np.linspace(0.05, 0.9, max(k, 1)))


def _log_time(ds, logx):
    """Drop ``t = 0`` when time is drawn on a log axis."""
    return ds.sel(time=ds["time"] > 0) if logx else ds


def plot_fluctuations(fl: xr.Dataset, ax=None, *, log: bool = True, logx: bool = False, band: bool = True):
    """``n E||f_n(t) - f(t)||^2`` against time, one line per width, with intervals; the static value
    ``Var_{mu0} phi`` (``t = 0``) as a dashed line.  ``logx``: log time axis (``t = 0`` dropped)."""
    ax = _axes(ax)
    static_values = fl["static"].values
    fl = _log_time(fl, logx)
    for c, n in zip(_colors(fl.sizes["width"]), fl["width"].values):
        sel = fl.sel(width=n)
        ax.plot(fl["time"], sel["fluctuation"], color=c, label=f"n = {int(n)}")
        if band:
            ax.fill_between(
                fl["time"],
                sel["fluctuation_ci"].sel(bound="lower"),
                sel["fluctuation_ci"].sel(bound="upper"),
                color=c,
                alpha=0.2,
                lw=0,
            )
    static = np.nanmean(static_values) if np.isfinite(static_values).any() else None
    if static is not None:
        ax.axhline(static, color="k", ls="--", lw=1, label=r"Var$_{\mu_0}\,\varphi$ (t = 0)")
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel(r"$n\,E\|f_n(t) - f(t)\|^2_\nu$")
    ax.legend(fontsize="small")
    return ax


def plot_exponent(fl: xr.Dataset, ax=None, *, logx: bool = False):
    """Fitted exponent of ``E||f_n - f||^2`` in ``n`` against time, with its interval (MC scale: -1)."""
    ax = _axes(ax)
    fl = _log_time(fl, logx)
    if logx:
        ax.set_xscale("log")
    ax.plot(fl["time"], fl["exponent"], color="C0", label="fitted exponent")
    ax.fill_between(
        fl["time"],
        fl["exponent_ci"].sel(bound="lower"),
        fl["exponent_ci"].sel(bound="upper"),
        color="C0",
        alpha=0.25,
        lw=0,
    )
    ax.axhline(-1.0, color="k", ls="--", lw=1, label="Monte-Carlo scale (-1)")
    ax.set_xlabel("time t")
    ax.set_ylabel(r"exponent $\alpha$ in $E\|f_n - f\|^2 \sim n^\alpha$")
    ax.legend(fontsize="small")
    return ax


def _pick_times(times, k):
    times = np.asarray(times)
    return times[np.unique(np.linspace(0, len(times) - 1, min(k, len(times))).round().astype(int))]


def plot_chaos(ch: xr.Dataset, *, times: Sequence[float] | None = None, axes=None):
    """``n Cov(g(theta_i), g(theta_j))`` against width at several times, one panel per observable."""
    names = list(ch["observable"].values)
    axes = _axes(axes, ncols=len(names))
    axes = np.ravel(axes)
    times = _pick_times(ch["time"].values, 4) if times is None else np.asarray(times)
    for ax, name in zip(axes, names):
        for c, t in zip(_colors(len(times)), times):
            sel = ch.sel(observable=name).sel(time=t, method="nearest")
            ax.errorbar(
                ch["width"],
                sel["covariance"],
                yerr=np.abs(sel["covariance_ci"].values.T - sel["covariance"].values),
                color=c,
                marker="o",
                ms=3,
                capsize=2,
                label=f"t = {float(sel['time']):.3g}",
            )
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width n")
        ax.set_title(f"{name}: n Cov(g(θ_i), g(θ_j))", fontsize="medium")
    axes[0].legend(fontsize="small")
    return axes[0].figure


def plot_distances(ch: xr.Dataset, *, times: Sequence[float] | None = None, axes=None):
    """MMD² (linear axis: its unbiased estimate can be negative) and sliced W2 (log axis) between the
    one-particle marginal at ``n`` and at the reference width, against ``n``, at several times;
    dotted lines: the sampling-noise floors (same sample sizes, no finite-``n`` bias)."""
    axes = np.ravel(_axes(axes, ncols=2))
    times = _pick_times(ch["time"].values, 4) if times is None else np.asarray(times)
    below = ch["width"] < ch.attrs["reference_width"]
    for ax, name, label in zip(axes, ("mmd", "sliced_wasserstein"), ("unbiased MMD² (Gaussian kernel)", "sliced W2")):
        for c, t in zip(_colors(len(times)), times):
            sel = ch.sel(time=t, method="nearest")
            v = sel[name].where(below, drop=True)
            ax.plot(v["width"], v, marker="o", color=c, label=f"t = {float(sel['time']):.3g}")
            floor = sel[f"{name}_floor"].where(below, drop=True)
            ax.plot(floor["width"], floor, color=c, ls=":", lw=1)
        ax.set_xscale("log", base=2)
        if name == "mmd":
            ax.axhline(0.0, color="k", lw=0.8)
        else:
            ax.set_yscale("log")
        ax.set_xlabel("width n")
        ax.set_title(f"{label} to n = {ch.attrs['reference_width']}", fontsize="medium")
    axes[0].legend(fontsize="small")
    return axes[0].figure


def plot_marginals(
    runs: Mapping,
    var_name: str = "a",
    *,
    times: Sequence[float] | None = None,
    widths: Sequence[int] | None = None,
    bins: int = 40,
    axes=None,
):
    """Histograms of one particle coordinate (pooled over replicas) at several widths (colours) and
    times (panels).  Vector sites are shown by their Euclidean norm."""
    widths = sorted(runs) if widths is None else list(widths)
    t_all = runs[widths[0]].posterior["time"].values
    times = _pick_times(t_all, 3) if times is None else np.asarray(times)
    axes = np.ravel(_axes(axes, ncols=len(times)))
    for ax, t in zip(axes, times):
        for c, n in zip(_colors(len(widths)), widths):
            v = runs[n].posterior[var_name].sel(draw=int(np.argmin(np.abs(runs[n].posterior["time"].values - t))))
            extra = [d for d in v.dims if d not in ("chain", "particle")]
            if extra:
                v = np.sqrt((v**2).sum(extra))
            ax.hist(np.ravel(v.values), bins=bins, density=True, histtype="step", color=c, label=f"n = {n}")
        ax.set_title(f"t = {t:.3g}", fontsize="medium")
        ax.set_xlabel(var_name if not extra else f"|{var_name}|")
    axes[0].legend(fontsize="small")
    return axes[0].figure


def plot_energy(runs, ax=None, *, log: bool = True, logx: bool = False, offset: float = 0.0):
    """Energy ``E - offset`` against time: mean over replicas per width (a dict of runs) or one line
    per chain (a single run).  For a Gaussian likelihood of unit noise, ``offset = log(2 pi)/2``
    leaves the half mean squared error."""
    ax = _axes(ax)
    single = isinstance(runs, az.InferenceData) or not isinstance(runs, Mapping)
    items = [(None, runs)] if single else sorted(runs.items())
    for c, (n, idata) in zip(_colors(len(items)), items):
        e = objective(idata.sample_stats).astype(float) - offset
        t = idata.posterior["time"].values
        keep = t > 0 if logx else np.ones_like(t, bool)
        if n is not None:
            ax.plot(t[keep], e.mean("chain").values[keep], color=c, label=f"n = {n}")
        else:
            for k in range(e.sizes["chain"]):
                ax.plot(t[keep], e.isel(chain=k).values[keep], lw=0.8, alpha=0.7)
    if n is not None:
        ax.legend(fontsize="small")
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel("energy E" if not offset else f"E - {offset:.4g}")
    return ax


def plot_energy_trace(idata, **kwargs):
    """``arviz.plot_trace`` of the energy (``sample_stats.objective``), one line per replica."""
    return az.plot_trace(xr.Dataset({"energy": objective(idata.sample_stats)}), **kwargs)


def plot_ess(idata, *, var_name: str = "f", num_points: int = 3, kind: str = "evolution", **kwargs):
    """``arviz.plot_ess`` of the energy and the output at a few points (Langevin runs)."""

    obs = scalar_observables(idata, var_name=var_name, num_points=num_points).drop_vars("time", errors="ignore")
    return az.plot_ess(obs, kind=kind, **kwargs)
