"""Matplotlib views of the fluctuation, chaos and convergence diagnostics (used by the notebooks and the CLI).

Every function draws on the ``ax`` (or ``axes``) it is given, or on a new figure, and returns the
Axes (or the Figure for multi-panel plots).  ArviZ's own plots are used where they fit
(:func:`plot_energy_trace` wraps ``arviz.plot_trace``, :func:`plot_ess` wraps ``arviz.plot_ess``).

Sweeps (a ``config`` dimension, :mod:`~mfsample.diagnostics.configs`): every function takes
``config=`` (an index or ``{name: value}``) to draw one configuration, titled with its swept
values; without it, each configuration gets its own line (:func:`plot_exponent`, a single run's
:func:`plot_energy`, the ArviZ plots) or its own row of panels (the others; ``axes`` then holds
one row per configuration), labelled with its swept values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import xarray as xr

from ..inference_data.layout import objective
from . import configs
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


def _own_times(ds):
    """A configuration of a result stacked over configurations without the times of the others
    (those where every variable is NaN, when the step size is swept)."""
    return ds.dropna("time", how="all") if "time" in ds.dims else ds


def _panels(data, config, axes, ncols: int, draw) -> np.ndarray:
    """``draw(one, row)`` on a row (array) of ``ncols`` Axes for configuration ``config`` of ``data``, or
    for every configuration (``config=None``), each panel titled with the swept values; data
    without a ``config`` dimension is drawn on one row, untitled.  Returns the Axes ``(rows, ncols)``."""
    parts = configs.each(data, config)
    grid = np.ravel(_axes(axes, ncols=ncols, nrows=len(parts)))
    if grid.size < len(parts) * ncols:
        raise ValueError(
            f"axes holds {grid.size} Axes but the plot needs {len(parts)} x {ncols} (one row of {ncols} per "
            "configuration): give as many, or select one configuration with config="
        )
    grid = grid[: len(parts) * ncols].reshape(len(parts), ncols)
    for row, (label, one) in zip(grid, parts):
        draw(one, row)
        if label is not None:
            for ax in row:
                title = ax.get_title()
                ax.set_title(f"{label}\n{title}" if title else label, fontsize="medium")
    return grid


def _one_or_figure(grid: np.ndarray):
    """The single Axes drawn on, or the Figure of several."""
    return grid[0, 0] if grid.size == 1 else grid[0, 0].figure


def plot_fluctuations(fl: xr.Dataset, ax=None, *, config=None, log: bool = True, logx: bool = False, band: bool = True):
    """``n E||f_n(t) - f(t)||^2`` against time, one line per width, with intervals; the static value
    ``Var_{mu0} phi`` (``t = 0``) as a dashed line.  ``logx``: log time axis (``t = 0`` dropped).
    A sweep's result: one panel per configuration (a Figure), or configuration ``config`` only."""

    def draw(one, row):
        _draw_fluctuations(_own_times(one), row[0], log=log, logx=logx, band=band)

    return _one_or_figure(_panels(fl, config, ax, 1, draw))


def _draw_fluctuations(fl: xr.Dataset, ax, *, log: bool, logx: bool, band: bool):
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


def plot_exponent(fl: xr.Dataset, ax=None, *, config=None, logx: bool = False):
    """Fitted exponent of ``E||f_n - f||^2`` in ``n`` against time, with its interval (MC scale: -1);
    a sweep's result: one line per configuration (or configuration ``config``), labelled with
    its swept values."""
    ax = _axes(ax)
    parts = configs.each(fl, config)
    colors = ["C0"] if len(parts) == 1 else _colors(len(parts))
    for color, (label, one) in zip(colors, parts):
        one = _log_time(_own_times(one), logx)
        ax.plot(one["time"], one["exponent"], color=color, label=label or "fitted exponent")
        ax.fill_between(
            one["time"],
            one["exponent_ci"].sel(bound="lower"),
            one["exponent_ci"].sel(bound="upper"),
            color=color,
            alpha=0.25,
            lw=0,
        )
    if logx:
        ax.set_xscale("log")
    ax.axhline(-1.0, color="k", ls="--", lw=1, label="Monte-Carlo scale (-1)")
    ax.set_xlabel("time t")
    ax.set_ylabel(r"exponent $\alpha$ in $E\|f_n - f\|^2 \sim n^\alpha$")
    ax.legend(fontsize="small")
    return ax


def _pick_times(times, k):
    times = np.asarray(times)
    return times[np.unique(np.linspace(0, len(times) - 1, min(k, len(times))).round().astype(int))]


def plot_chaos(ch: xr.Dataset, *, config=None, times: Sequence[float] | None = None, axes=None):
    """``n Cov(g(theta_i), g(theta_j))`` against width at several times, one panel per observable
    (a sweep's result: one row of them per configuration, or configuration ``config``)."""

    def draw(one, row):
        _draw_chaos(_own_times(one), row, times)

    return _panels(ch, config, axes, ch.sizes["observable"], draw)[0, 0].figure


def _draw_chaos(ch: xr.Dataset, axes, times):
    names = list(ch["observable"].values)
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


def plot_distances(ch: xr.Dataset, *, config=None, times: Sequence[float] | None = None, axes=None):
    """MMD² (linear axis: its unbiased estimate can be negative) and sliced W2 (log axis) between the
    one-particle marginal at ``n`` and at the reference width, against ``n``, at several times;
    dotted lines: the sampling-noise floors (same sample sizes, no finite-``n`` bias).  A sweep's
    result: one row of the two panels per configuration, or configuration ``config``."""

    def draw(one, row):
        _draw_distances(_own_times(one), row, times)

    return _panels(ch, config, axes, 2, draw)[0, 0].figure


def _draw_distances(ch: xr.Dataset, axes, times):
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


def plot_marginals(
    runs: Mapping,
    var_name: str = "a",
    *,
    config=None,
    times: Sequence[float] | None = None,
    widths: Sequence[int] | None = None,
    bins: int = 40,
    axes=None,
):
    """Histograms of one particle coordinate (pooled over replicas) at several widths (colours) and
    times (panels).  Vector sites are shown by their Euclidean norm.  Runs of a sweep: one row of
    panels per configuration, or configuration ``config``."""
    widths = sorted(runs) if widths is None else list(widths)
    num_draws = runs[widths[0]].posterior.sizes["draw"]
    ncols = len(_pick_times(np.arange(num_draws), 3)) if times is None else len(np.atleast_1d(times))

    def draw(one, row):
        _draw_marginals(one, row, var_name, times, widths, bins)

    return _panels(runs, config, axes, ncols, draw)[0, 0].figure


def _draw_marginals(runs: Mapping, axes, var_name, times, widths, bins):
    t_all = runs[widths[0]].posterior["time"].values
    times = _pick_times(t_all, 3) if times is None else np.asarray(times)
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


def plot_energy(runs, ax=None, *, config=None, log: bool = True, logx: bool = False, offset: float = 0.0):
    """Energy ``E - offset`` against time: mean over replicas per width (a dict of runs) or one line
    per chain (a single run).  For a Gaussian likelihood of unit noise, ``offset = log(2 pi)/2``
    leaves the half mean squared error.  A sweep: one line per configuration (mean over replicas)
    for a single run, one panel per configuration for a dict of runs, or configuration ``config``."""
    single = isinstance(runs, az.InferenceData) or not isinstance(runs, Mapping)
    if single and config is None and configs.has_configs(runs):
        ax = _axes(ax)
        _draw_energy(ax, configs.each(runs), log=log, logx=logx, offset=offset)
        return ax

    def draw(one, row):
        items = [(None, one)] if single else [(f"n = {n}", idata) for n, idata in sorted(one.items())]
        _draw_energy(row[0], items, log=log, logx=logx, offset=offset)

    return _one_or_figure(_panels(runs, config, ax, 1, draw))


def _draw_energy(ax, items, *, log: bool, logx: bool, offset: float):
    """One line per ``(label, run)`` of ``items``, the mean over replicas; a single unlabelled run:
    one line per chain."""
    for c, (label, idata) in zip(_colors(len(items)), items):
        e = objective(idata.sample_stats).astype(float) - offset
        t = idata.posterior["time"].values
        keep = t > 0 if logx else np.ones_like(t, bool)
        if label is not None:
            ax.plot(t[keep], e.mean("chain").values[keep], color=c, label=label)
        else:
            for k in range(e.sizes["chain"]):
                ax.plot(t[keep], e.isel(chain=k).values[keep], lw=0.8, alpha=0.7)
    if label is not None:
        ax.legend(fontsize="small")
    if log:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel("energy E" if not offset else f"E - {offset:.4g}")


def _labelled(obj):
    """A sweep's variables with their ``config`` coordinate the swept values, as ArviZ titles panels."""
    return configs.labelled(obj.drop_vars("time", errors="ignore")) if configs.has_configs(obj) else obj


def plot_energy_trace(idata, *, config=None, **kwargs):
    """``arviz.plot_trace`` of the energy (``sample_stats.objective``), one line per replica; a
    sweep: one row per configuration (titled with its swept values), or configuration ``config``."""
    energy = configs.apply(idata, config, lambda one: objective(one.sample_stats))
    if configs.has_configs(energy):
        kwargs.setdefault("compact", False)  # compact would overlay the configurations in one row
    return az.plot_trace(xr.Dataset({"energy": _labelled(energy)}), **kwargs)


def plot_ess(idata, *, config=None, var_name: str = "f", num_points: int = 3, kind: str = "evolution", **kwargs):
    """``arviz.plot_ess`` of the energy and the output at a few points (Langevin runs); a sweep:
    panels per configuration (titled with its swept values), or configuration ``config``."""
    obs = scalar_observables(idata, var_name=var_name, num_points=num_points, config=config)
    return az.plot_ess(_labelled(obs.drop_vars("time", errors="ignore")), kind=kind, **kwargs)
