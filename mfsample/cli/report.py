"""Diagnostics, figures and the self-contained HTML report of a run directory.

:func:`analyse` reads the saved draws of a run directory (``draws/width_<n>.nc``, or
``results.nc`` for ``f1_vs_f2``), recomputes the diagnostics the configuration asks for and writes
``summary.json`` (headline numbers, versions, device) and ``figures/*.png``:

* ``energy.png`` – ``E(t) - log(2 pi noise^2)/2`` against time, per width (mean over replicas), with
  the certified F1 optimum ``P*`` when ``baselines.f1_optimum`` (:func:`mfsample.baselines.f1_optimum`;
  the weight-decay energy minus that constant has infimum ``P*``);
  and, at ``temperature > 0``, the end of the burn-in marked;
* ``energy_trace.png`` – ``arviz.plot_trace`` of the energy after burn-in, the window of its ``ess``
  and ``r_hat`` (runs at ``temperature > 0``);
* ``fluctuations.png``, ``exponent.png`` – ``n E||f_n - f||^2`` and its fitted exponent in ``n``
  (:func:`mfsample.diagnostics.fluctuations`);
* ``chaos.png``, ``distances.png`` – pair covariances and marginal distances
  (:func:`mfsample.diagnostics.chaos`); ``marginals.png`` – one-particle marginals;
* ``function.png`` – for one-dimensional inputs: data, target, network functions (and ``P*``'s);
* ``f1_vs_f2.png`` – relative test error against dimension per method;
* of a ``[sweep]``: ``sweep.png`` – the final ``E - c`` (and, where recorded, the fluctuations and
  the excess over ``P*``) against the swept value, one line per width; ``energy.png`` – one line
  per configuration; ``sweep.csv`` – one row per configuration and width (each the width's
  headline numbers at that configuration's settings).

:func:`headline_table` prints the summary's headline numbers: per width the excess energy
``E - c`` with ``c = log(2 pi noise^2)/2`` (half the training mean squared error for the Gaussian
likelihood) at ``t = 0`` and at the end, and the squared relative errors
``||f - y||^2 / ||y||^2`` on the training data and ``||f - f*||^2 / ||f*||^2`` on the held-out
inputs; at ``temperature > 0`` also ArviZ's ``ess_bulk`` and ``r_hat`` of the energy after burn-in,
which measure mixing towards the stationary (Gibbs) law.  A Wasserstein flow has no stationary law,
so it gets no such statistics.  :func:`write_report` adds
``report.html``: the table, the run's environment, every figure embedded as base64 PNG and the
resolved configuration, in one file with no external reference.
"""

from __future__ import annotations

import base64
import csv
import html
import importlib.util
import io
import json
import math
from pathlib import Path
from typing import NamedTuple

import arviz as az
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..baselines import f1_optimum
from ..diagnostics import chaos, fluctuations, plots
from ..diagnostics import summary as diagnostic_summary
from ..diagnostics.fluctuations import common_times
from ..inference_data.layout import OBJECTIVE, objective
from .config import sweep_axes, sweep_points, to_toml, widths_of
from .errors import InputError
from .rundir import atomic_write, draws_path, read_run_record, results_path, saved_config

__all__ = ["Figure", "Analysis", "analyse", "write_report", "headline_table", "load_runs"]


class Figure(NamedTuple):
    name: str
    path: Path
    caption: str


class Analysis(NamedTuple):
    """What :func:`analyse` computed: the summary (as written to ``summary.json``), the figures
    and the headline table as text."""

    summary: dict
    figures: list
    table: str


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _save(fig, figdir: Path, name: str, caption: str) -> Figure:
    """Write ``fig`` to ``figdir/<name>.png`` (atomically) and close it."""
    path = figdir / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return Figure(name, path, caption)


def _clean(obj):
    """``obj`` with numpy scalars as Python numbers and NaN/inf as None (JSON-safe)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def load_runs(out, cfg) -> dict:
    """``{width: InferenceData}`` of a complete ``simulate`` run directory."""
    runs = {}
    for n in widths_of(cfg):
        path = draws_path(out, n)
        if not path.is_file():
            raise InputError(
                f"{out} has no draws for width {n} ({path} is missing): the run is not "
                f"complete; finish it with `mfsample run --resume {out}`"
            )
        runs[n] = az.from_netcdf(str(path))
    return runs


def _energy_offset(cfg) -> float:
    """``log(2 pi noise^2)/2``: the energy's constant (Gaussian likelihood)."""
    return 0.5 * math.log(2 * math.pi * cfg["model"]["noise"] ** 2)


def _select_times(times, k):
    idx = np.unique(np.linspace(0, len(times) - 1, min(k, len(times))).round().astype(int))
    return np.asarray(times)[idx]


# ---------------------------------------------------------------------------------------------
# simulate experiments: the numbers
# ---------------------------------------------------------------------------------------------
def _sq_relative_error(f, y) -> float:
    """``||f - y||^2 / ||y||^2`` over the last axis, mean over replicas (the leading axis)."""
    return float(np.mean(np.sum((f - y) ** 2, axis=-1) / max(float(np.sum(y**2)), 1e-300)))


def _test_errors(idata) -> dict:
    """Held-out ``mean (f - f*)^2`` and ``||f - f*||^2 / ||f*||^2`` at the last draw (teacher-student
    data), mean over replicas."""
    pcd = getattr(idata, "predictions_constant_data", None)
    if pcd is None or "f_target" not in pcd or "predictions" not in idata.groups():
        return {}
    target = pcd["f_target"].values.astype(np.float64)
    fe = idata.predictions["f"].values[:, -1].astype(np.float64)
    mse = np.mean((fe - target) ** 2, axis=-1)
    return {"test_mse": float(mse.mean()), "test_sq_relative_error": _sq_relative_error(fe, target)}


def _burn_in_start(idata, cfg) -> int:
    """Index of the first draw after ``diagnostics.burn_in`` (a fraction of the draws), as in
    :func:`mfsample.diagnostics.summary`."""
    return int(np.floor(cfg["diagnostics"]["burn_in"] * idata.posterior.sizes["draw"]))


def _stationary(cfg) -> bool:
    """Whether the dynamics has a stationary law (``temperature > 0``), so that ArviZ's ``ess`` and
    ``r_hat`` of the energy after burn-in mean what they mean for MCMC."""
    return cfg["dynamics"].get("temperature", 0) > 0


def _width_row(n, idata, cfg) -> dict:
    """One width's headline numbers: energies (and their constant ``c``), squared relative errors,
    divergences and, for a stationary dynamics, ess/r_hat of the energy after burn-in."""
    e = objective(idata.sample_stats).values.astype(np.float64)
    post = idata.posterior
    y = idata.observed_data["y"].values.astype(np.float64)
    f = post["f"].values[:, -1].astype(np.float64)
    row = {
        "width": n,
        "chains": int(e.shape[0]),
        "time_final": float(post["time"].values[-1]),
        "energy_initial": float(e[:, 0].mean()),
        "energy_final": float(e[:, -1].mean()),
        "energy_final_sd": float(e[:, -1].std(ddof=1)) if e.shape[0] > 1 else None,
        "energy_offset": _energy_offset(cfg),
        "divergent_chains": int(idata.sample_stats["diverging"].values.any(axis=1).sum()),
        "train_sq_relative_error": _sq_relative_error(f, y),
        **_test_errors(idata),
    }
    if cfg["diagnostics"]["summary"]:
        s = diagnostic_summary(idata, burn_in=cfg["diagnostics"]["burn_in"], stationary=_stationary(cfg))
        if "metric" in s.dims and "energy" in s:
            row["burn_in_time"] = float(s.attrs["burn_in_time"])
            for metric in ("ess_bulk", "ess_tail", "r_hat"):
                row[f"energy_{metric}"] = float(s["energy"].sel(metric=metric))
    return row


def _f1_solution(runs, cfg) -> tuple[dict, object]:
    """The certified F1 optimum ``P*`` of the data (``None`` without cvxpy) and its summary entry."""
    if importlib.util.find_spec("cvxpy") is None:
        return {"skipped": "cvxpy is not installed: pip install 'mfsample[f1]'"}, None
    first = runs[min(runs)]
    x = first.constant_data["x"].values.astype(np.float64)
    y = first.observed_data["y"].values.astype(np.float64)
    reg = cfg["model"]["weight_decay"]
    sol = f1_optimum(x, y, reg=reg, bias=cfg["model"]["bias"], method=cfg["baselines"]["f1_method"])
    out = {
        "value": sol.value,
        "lower_bound": sol.lower_bound,
        "gap": sol.gap,
        "exact": bool(sol.exact),
        "atoms": int(len(sol.weights)),
        "reg": reg,
        "definition": "P* = min 1/(2N) sum (f - y)^2 + reg |mu|_TV; compared with E - log(2 pi)/2",
    }
    return out, sol


def _f1_baseline(runs, cfg) -> tuple[dict, object]:
    """The certified F1 optimum ``P*`` of the data and the runs' final energies relative to it."""
    out, sol = _f1_solution(runs, cfg)
    if sol is None:
        return out, sol
    out.update(relative_excess={}, relative_excess_best_chain={})
    for n, idata in runs.items():
        e = objective(idata.sample_stats).values[:, -1].astype(np.float64) - _energy_offset(cfg)
        out["relative_excess"][n] = float((e.mean() - sol.value) / sol.value)
        out["relative_excess_best_chain"][n] = float((e.min() - sol.value) / sol.value)
    return out, sol


def _fluctuation_summary(fl, reference: str) -> dict:
    t = float(fl["time"].values[-1])
    widths = [int(n) for n in fl["width"].values]
    return {
        "time": t,
        "reference": reference,
        "definition": "n E||f_n(t) - f(t)||^2 over the held-out inputs (bounded in n at Monte-Carlo scale)",
        "fluctuation": {n: float(fl["fluctuation"].sel(width=n, time=t)) for n in widths},
        "fluctuation_ci": {n: [float(v) for v in fl["fluctuation_ci"].sel(width=n, time=t).values] for n in widths},
        "fluctuation_max_over_time": {n: float(fl["fluctuation"].sel(width=n).max()) for n in widths},
        "static": {int(n): float(v) for n, v in zip(fl["width"].values, fl["static"].values)},
        "exponent": float(fl["exponent"].sel(time=t)),
        "exponent_ci": [float(v) for v in fl["exponent_ci"].sel(time=t).values],
    }


def _chaos_summary(ch, t: float) -> dict:
    observables, widths = [str(o) for o in ch["observable"].values], [int(n) for n in ch["width"].values]
    res = {
        "time": t,
        "definition": "n Cov(g(theta_i), g(theta_j)), i != j, across replicas (O(1) under chaos)",
        "covariance": {
            o: {n: float(ch["covariance"].sel(observable=o, width=n, time=t)) for n in widths} for o in observables
        },
        "covariance_exponent": {o: float(ch["covariance_exponent"].sel(observable=o, time=t)) for o in observables},
    }
    if "mmd" in ch:
        below = [n for n in widths if n < ch.attrs["reference_width"]]
        res["reference_width"] = int(ch.attrs["reference_width"])
        for name in ("mmd", "sliced_wasserstein"):
            res[name] = {n: float(ch[name].sel(width=n, time=t)) for n in below}
            res[f"{name}_floor"] = {n: float(ch[f"{name}_floor"].sel(width=n, time=t)) for n in below}
            res[f"{name}_exponent"] = float(ch[f"{name}_exponent"].sel(time=t))
    return res


# ---------------------------------------------------------------------------------------------
# simulate experiments: the sections (summary entries and figures)
# ---------------------------------------------------------------------------------------------
def _energy_figures(runs, cfg, figdir: Path, sol) -> list:
    widest = max(runs)
    fig, ax = plt.subplots(figsize=(6, 4))
    plots.plot_energy(runs if len(runs) > 1 else runs[widest], ax=ax, offset=_energy_offset(cfg), log=True)
    if sol is not None:
        ax.axhline(sol.value, color="k", ls="--", lw=1, label=f"F1 optimum P* = {sol.value:.4g}")
    burn_in = _burn_in_time(runs[widest], cfg)
    if burn_in is not None:
        ax.axvline(burn_in, color="0.4", ls=":", lw=1, label=f"end of burn-in, t = {burn_in:g}")
    if sol is not None or burn_in is not None:
        ax.legend(fontsize="small")
    ax.set_title(
        f"{cfg['experiment']['name']}: energy ({cfg['dynamics']['kernel']}, dt = {cfg['dynamics']['step_size']:g})",
        fontsize="medium",
    )
    caption = (
        "E(t) - log(2 pi noise^2)/2 against mean-field time"
        + (", mean over replicas per width" if len(runs) > 1 else ", one line per replica")
        + ("; dashed: the certified F1 optimum P*" if sol is not None else "")
        + ("; dotted: the end of the burn-in that ess / r_hat discard" if burn_in is not None else "")
    )
    figures = [_save(fig, figdir, "energy", caption)]
    if burn_in is not None:
        figures.append(_energy_trace_figure(runs[widest], widest, cfg, figdir, burn_in))
    return figures


def _burn_in_time(idata, cfg) -> float | None:
    """Mean-field time of the first draw after burn-in, for a stationary dynamics with at least 4
    draws after it (what ArviZ's diagnostics need); ``None`` otherwise."""
    start = _burn_in_start(idata, cfg)
    if not _stationary(cfg) or idata.posterior.sizes["draw"] - start < 4:
        return None
    return float(idata.posterior["time"].values[start])


def _energy_trace_figure(idata, width: int, cfg, figdir: Path, burn_in: float) -> Figure:
    """``arviz.plot_trace`` of the energy over the draws after burn-in: the window of ess / r_hat."""
    c = _energy_offset(cfg)
    window = idata.isel(draw=slice(_burn_in_start(idata, cfg), None))
    window.sample_stats[OBJECTIVE] = objective(window.sample_stats) - c  # ess and r_hat are shift-invariant
    axes = np.ravel(plots.plot_energy_trace(window))
    for ax in axes:
        ax.set_title(f"E - {c:.4f}")
    return _save(
        axes[0].figure,
        figdir,
        "energy_trace",
        f"arviz.plot_trace of E - log(2 pi noise^2)/2 after burn-in (t >= {burn_in:g}: the draws that ess and "
        f"r_hat use; x axis: draw index), width {width}, one line per replica",
    )


def _fluctuation_section(runs, cfg, figdir: Path) -> tuple[dict, list]:
    diag = cfg["diagnostics"]
    fl = fluctuations(runs, reference=diag["reference"], num_bootstrap=diag["num_bootstrap"], seed=0)
    figures = [
        _save(
            plots.plot_fluctuations(fl).figure,
            figdir,
            "fluctuations",
            "n E||f_n(t) - f(t)||^2 per width with bootstrap intervals; dashed: Var_mu0 phi (the value at t = 0)",
        )
    ]
    if len(runs) >= 2:
        figures.append(
            _save(
                plots.plot_exponent(fl).figure,
                figdir,
                "exponent",
                "fitted exponent alpha of E||f_n - f||^2 ~ n^alpha (Monte-Carlo scale: -1)",
            )
        )
    return _fluctuation_summary(fl, diag["reference"]), figures


def _chaos_section(runs, cfg, figdir: Path) -> tuple[dict, list]:
    times = _select_times(common_times(runs), 6)
    ch = chaos(
        runs,
        times=times,
        distances=len(runs) >= 2,
        num_bootstrap=cfg["diagnostics"]["num_bootstrap"],
        max_points=500,
        seed=0,
    )
    figures = [
        _save(
            plots.plot_chaos(ch),
            figdir,
            "chaos",
            "n Cov(g(theta_i), g(theta_j)) against width at several times, per observable",
        )
    ]
    if "mmd" in ch and len(runs) >= 2:
        figures.append(
            _save(
                plots.plot_distances(ch),
                figdir,
                "distances",
                "MMD^2 and sliced W2 of the one-particle marginal to the widest run's; dotted: sampling-noise floors",
            )
        )
    return _chaos_summary(ch, float(times[-1])), figures


def _inputs_1d(idata):
    """The held-out inputs ``(M, 1)`` of one-dimensional data, else ``None``."""
    x_eval = idata.predictions_constant_data["x_eval"].values if "predictions_constant_data" in idata.groups() else None
    return x_eval if x_eval is not None and x_eval.ndim == 2 and x_eval.shape[1] == 1 else None


def _function_figure(idata, width: int, figdir: Path, sol) -> list:
    """One-dimensional inputs: the network functions at the last draw, the data, the target."""
    if _inputs_1d(idata) is None:
        return []
    fe = idata.predictions["f"].values[:, -1]
    lines = [("C0", f"network, n = {width}" if k == 0 else None, fe[k]) for k in range(fe.shape[0])]
    return _plot_functions(idata, lines, figdir, sol, "the network function at the last draw (one line per replica)")


def _plot_functions(idata, lines, figdir: Path, sol, what: str) -> list:
    """``function.png``: the network functions ``lines`` (``(colour, label, f at x_eval)``), the
    data, the target and the F1 optimum's function (``sol``)."""
    x_eval = _inputs_1d(idata)
    fig, ax = plt.subplots(figsize=(6, 4))
    order = np.argsort(x_eval[:, 0])
    xs = x_eval[order, 0]
    for colour, label, fe in lines:
        ax.plot(xs, np.asarray(fe)[order], color=colour, lw=1, alpha=0.7, label=label)
    if "f_target" in idata.predictions_constant_data:
        ax.plot(xs, idata.predictions_constant_data["f_target"].values[order], color="k", ls=":", label="target f*")
    if sol is not None:
        ax.plot(xs, sol.predict(xs[:, None]), color="C3", ls="--", lw=1, label="F1 optimum")
    ax.scatter(
        idata.constant_data["x"].values[:, 0], idata.observed_data["y"].values, s=10, color="k", zorder=3, label="data"
    )
    ax.set(xlabel="x", ylabel="f(x)")
    ax.legend(fontsize="small")
    return [
        _save(
            fig, figdir, "function", f"{what}, the data" + (" and the F1 optimum's function" if sol is not None else "")
        )
    ]


def _analyse_simulate(out: Path, cfg, figdir: Path) -> tuple[dict, list]:
    if sweep_points(cfg):
        return _analyse_sweep(out, cfg, figdir)
    runs, diag = load_runs(out, cfg), cfg["diagnostics"]
    body, sol = {"widths": [_width_row(n, idata, cfg) for n, idata in runs.items()]}, None
    if cfg["baselines"].get("f1_optimum"):
        body["f1_optimum"], sol = _f1_baseline(runs, cfg)
    figures = _energy_figures(runs, cfg, figdir, sol)
    if diag["fluctuations"]:
        body["fluctuations"], more = _fluctuation_section(runs, cfg, figdir)
        figures += more
    if diag["chaos"]:
        body["chaos"], more = _chaos_section(runs, cfg, figdir)
        figures += more
    if diag["marginals"]:
        figures.append(
            _save(
                plots.plot_marginals(runs, "a"),
                figdir,
                "marginals",
                "histograms of the output weights a_j (pooled over replicas) per width and time",
            )
        )
    figures += _function_figure(runs[max(runs)], max(runs), figdir, sol)
    return body, figures


# ---------------------------------------------------------------------------------------------
# sweeps: the study against the swept values
# ---------------------------------------------------------------------------------------------
#: the columns of ``sweep.csv`` after the swept parameters: (row key, column name)
SWEEP_COLUMNS = (
    ("width", "width"),
    ("chains", "chains"),
    ("time_final", "t"),
    ("excess_initial", "E(0) - c"),
    ("excess_final", "E(t) - c"),
    ("energy_final_sd", "sd E(t)"),
    ("train_sq_relative_error", "train rel.err^2"),
    ("test_sq_relative_error", "test rel.err^2"),
    ("divergent_chains", "diverged"),
    ("fluctuation", "n E||f_n - f||^2"),
    ("f1_relative_excess", "(E(t) - c - P*) / P*"),
    ("energy_ess_bulk", "ess_bulk"),
    ("energy_r_hat", "r_hat"),
)


def _config_runs(runs: dict, c: int) -> dict:
    """``{width: InferenceData}`` of configuration ``c`` of every width's sweep."""
    return {n: idata.isel(config=c) for n, idata in runs.items()}


def _config_cfg(cfg: dict, point: dict) -> dict:
    """The configuration of one point of the sweep: ``[dynamics]`` with the point's values."""
    return {**cfg, "dynamics": {**cfg["dynamics"], **point}}


def _config_fluctuations(runs: dict, cfg) -> tuple[dict, dict]:
    """``({width: n E||f_n - f||^2 at the last time}, its summary entry)`` of one configuration."""
    diag = cfg["diagnostics"]
    fl = fluctuations(runs, reference=diag["reference"], num_bootstrap=diag["num_bootstrap"], seed=0)
    entry = _fluctuation_summary(fl, diag["reference"])
    return entry["fluctuation"], {k: entry[k] for k in ("time", "exponent", "exponent_ci")}


def _sweep_row(c: int, point: dict, n: int, idata, cfg, extra: dict) -> dict:
    """One (configuration, width) row: the width's headline numbers at the point's settings."""
    row = {"config": c, **point, **_width_row(n, idata, _config_cfg(cfg, point)), **extra}
    row["excess_initial"] = row["energy_initial"] - row["energy_offset"]
    row["excess_final"] = row["energy_final"] - row["energy_offset"]
    return row


def _sweep_rows(runs: dict, cfg, points: list, sol) -> tuple[list, list]:
    """Every (configuration, width) row, and per configuration its fluctuation exponent entry
    (``[sweep]`` with ``diagnostics.fluctuations``)."""
    rows, exponents = [], []
    for c, point in enumerate(points):
        one = _config_runs(runs, c)
        fluct = {}
        if cfg["diagnostics"]["fluctuations"]:
            fluct, entry = _config_fluctuations(one, cfg)
            exponents.append({"config": c, **point, **entry})
        for n, idata in one.items():
            extra = {"fluctuation": fluct[n]} if fluct else {}
            if sol is not None:
                e = objective(idata.sample_stats).values[:, -1].astype(np.float64).mean() - _energy_offset(cfg)
                extra["f1_relative_excess"] = float((e - sol.value) / sol.value)
            rows.append(_sweep_row(c, point, n, idata, cfg, extra))
    return rows, exponents


def _x_scale(ax, values):
    """A log axis for positive values over a decade or more, symlog when zero is among them."""
    v = np.asarray(values, dtype=float)
    pos = v[v > 0]
    if pos.size < 2 or pos.max() < 10 * pos.min():
        return
    if pos.size == v.size:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=pos.min())


def _sweep_groups(rows: list, names: list, combine: str) -> tuple[str, dict]:
    """``(x parameter, {line label: rows in increasing x})``: the x axis is the first parameter that
    varies; one line per width (and, for a product, per value of the other parameters)."""
    x = next((k for k in names if len({r[k] for r in rows}) > 1), names[0])
    others = [k for k in names if k != x] if combine == "product" else []
    groups: dict = {}
    for r in rows:
        label = ", ".join([f"n = {r['width']}"] + [f"{k} = {r[k]:g}" for k in others])
        groups.setdefault(label, []).append(r)
    return x, {label: sorted(rs, key=lambda r: r[x]) for label, rs in groups.items()}


def _sweep_panel(ax, x: str, groups: dict, key: str, sd: str | None, ylabel: str):
    """One panel of ``sweep.png``: ``key`` (± ``sd``) against ``x``, one line per group."""
    for i, (label, rs) in enumerate(groups.items()):
        xs, ys = [r[x] for r in rs], [r[key] for r in rs]
        err = [r[sd] or 0.0 for r in rs] if sd else None
        ax.errorbar(xs, ys, yerr=err, color=f"C{i % 10}", marker="o", ms=3, capsize=2, label=label)
    _x_scale(ax, [r[x] for rs in groups.values() for r in rs])
    if all(r[key] is not None and r[key] > 0 for rs in groups.values() for r in rs):
        ax.set_yscale("log")
    ax.set(xlabel=x, ylabel=ylabel)
    ax.legend(fontsize="small")


def _sweep_figure(rows: list, cfg, figdir: Path, sol) -> Figure:
    """``sweep.png``: the final excess energy (and, where recorded, the fluctuations and the excess
    over the F1 optimum) against the swept value, one line per width."""
    names, combine = list(sweep_axes(cfg)), cfg["sweep"]["combine"]
    x, groups = _sweep_groups(rows, names, combine)
    panels = [("excess_final", "energy_final_sd", "E(t) - c at the last draw")]
    if "fluctuation" in rows[0]:
        panels.append(("fluctuation", None, "n E||f_n - f||^2 at the last draw"))
    if sol is not None:
        panels.append(("f1_relative_excess", None, "(E(t) - c - P*) / P*"))
    fig, axes = plt.subplots(1, len(panels), figsize=(1 + 5 * len(panels), 4), squeeze=False, layout="constrained")
    for ax, (key, sd, label) in zip(axes[0], panels):
        _sweep_panel(ax, x, groups, key, sd, label)
    others = [k for k in names if k != x]
    zipped_with = f" (zipped with {', '.join(others)})" if combine == "zipped" and others else ""
    caption = (
        f"against {x}{zipped_with}, at the last draw: E(t) - log(2 pi noise^2)/2 (mean ± sd over replicas)"
        + ("; n E||f_n(t) - f(t)||^2 over the held-out inputs" if "fluctuation" in rows[0] else "")
        + ("; the excess over the certified F1 optimum P*, relative to P*" if sol is not None else "")
        + "; one line per width"
    )
    return _save(fig, figdir, "sweep", caption)


def _sweep_energy_figure(runs: dict, cfg, points: list, figdir: Path, sol) -> Figure:
    """``energy.png`` of a sweep: ``E(t) - c`` of the widest width, one line per configuration."""
    n, c0 = max(runs), _energy_offset(cfg)
    fig, ax = plt.subplots(figsize=(6, 4))
    for c, point in enumerate(points):
        one = runs[n].isel(config=c)
        e = objective(one.sample_stats).astype(float).mean("chain") - c0
        label = ", ".join(f"{k} = {v:g}" for k, v in point.items())
        ax.plot(one.posterior["time"].values, e.values, color=f"C{c % 10}", label=label)
    if sol is not None:
        ax.axhline(sol.value, color="k", ls="--", lw=1, label=f"F1 optimum P* = {sol.value:.4g}")
    ax.set_yscale("log")
    ax.set(xlabel="time t", ylabel=f"E - {c0:.4g}")
    ax.legend(fontsize="small")
    ax.set_title(f"{cfg['experiment']['name']}: energy of width {n} per configuration", fontsize="medium")
    return _save(
        fig,
        figdir,
        "energy",
        f"E(t) - log(2 pi noise^2)/2 against mean-field time, width {n}, mean over replicas, one line per "
        "configuration" + ("; dashed: the certified F1 optimum P*" if sol is not None else ""),
    )


def _sweep_csv(rows: list, names: list) -> bytes:
    """The rows as CSV: the configuration, its swept values, then :data:`SWEEP_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["config", *names, *(name for _, name in SWEEP_COLUMNS)])
    for r in rows:
        writer.writerow(
            [r["config"], *(r[k] for k in names), *("" if r.get(k) is None else r[k] for k, _ in SWEEP_COLUMNS)]
        )
    return buf.getvalue().encode()


def _analyse_sweep(out: Path, cfg, figdir: Path) -> tuple[dict, list]:
    """A ``[sweep]`` run: one row per (configuration, width), ``sweep.png``, ``energy.png``,
    ``sweep.csv`` and (one-dimensional inputs) ``function.png``."""
    runs, points, names = load_runs(out, cfg), sweep_points(cfg), list(sweep_axes(cfg))
    body, sol = {}, None
    if cfg["baselines"].get("f1_optimum"):
        body["f1_optimum"], sol = _f1_solution(runs, cfg)
    rows, exponents = _sweep_rows(runs, cfg, points, sol)
    body["sweep"] = {
        "parameters": names,
        "combine": cfg["sweep"]["combine"],
        "common_keys": cfg["sweep"]["common_keys"],
        "points": points,
        "definition": "per configuration and width, at the last draw: E(t) - c with c = log(2 pi noise^2)/2 "
        "(mean and sd over replicas), squared relative errors, and where recorded n E||f_n - f||^2",
        "rows": rows,
        **({"fluctuations": exponents} if exponents else {}),
    }
    atomic_write(out / "sweep.csv", lambda f: f.write(_sweep_csv(rows, names)))
    body["tables"] = ["sweep.csv"]
    figures = [_sweep_figure(rows, cfg, figdir, sol), _sweep_energy_figure(runs, cfg, points, figdir, sol)]
    widest = runs[max(runs)]
    if _inputs_1d(widest) is not None:
        fe = widest.predictions["f"].isel(chain=0, draw=-1).values  # (config, eval_point)
        lines = [(f"C{c % 10}", ", ".join(f"{k} = {v:g}" for k, v in p.items()), fe[c]) for c, p in enumerate(points)]
        what = f"the network function at the last draw (width {max(runs)}, first replica) per configuration"
        figures += _plot_functions(widest, lines, figdir, sol, what)
    return body, figures


# ---------------------------------------------------------------------------------------------
# f1_vs_f2 experiments
# ---------------------------------------------------------------------------------------------
def _f1f2_figure(ds, mean, sd, sweep: str, figdir: Path) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = ["-", "--", ":", "-."]
    for i, m in enumerate(ds["method"].values):
        for j, v in enumerate(ds[sweep].values):
            where = {"method": m, sweep: v}
            label = str(m) if ds.sizes[sweep] == 1 else f"{m}, {sweep} = {int(v)}"
            ax.errorbar(
                ds["dim"].values,
                mean.sel(where).values,
                yerr=sd.sel(where).values,
                color=f"C{i}",
                ls=styles[j % 4],
                marker="o",
                ms=3,
                capsize=2,
                label=label,
            )
    ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="input dimension d", ylabel="relative test error")
    ax.legend(fontsize="small")
    return _save(
        fig,
        figdir,
        "f1_vs_f2",
        "relative test error against the dimension (mean ± sd over seeds): "
        "mean-field training against random features and the kernel limit",
    )


def _analyse_f1_vs_f2(out: Path, cfg, figdir: Path) -> tuple[dict, list]:
    path = results_path(out)
    if not path.is_file():
        raise InputError(
            f"{out} has no results.nc: the run is not complete; finish it with `mfsample run --resume {out}`"
        )
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    sweep = "num_data" if "num_data" in ds.dims else "width"
    err = ds["relative_error"]
    mean, sd = err.mean("seed"), err.std("seed", ddof=1) if ds.sizes["seed"] > 1 else err.std("seed")

    def cell(m, d, v):
        where = {"method": m, "dim": d, sweep: v}
        return [float(mean.sel(where)), float(sd.sel(where))]

    body = {
        "f1_vs_f2": {
            "definition": "relative test error: mean (f(x) - f*(x))^2 / Var f*(x) on fresh inputs, "
            "mean and sd over seeds",
            "sweep": sweep,
            "seeds": [int(s) for s in ds["seed"].values],
            "relative_error": {
                str(m): {
                    f"dim={int(d)},{sweep}={int(v)}": cell(m, d, v) for d in ds["dim"].values for v in ds[sweep].values
                }
                for m in ds["method"].values
            },
        }
    }
    return body, [_f1f2_figure(ds, mean, sd, sweep, figdir)]


#: the analysis of each experiment kind: ``analysis(out, cfg, figdir) -> (summary entries, figures)``
ANALYSES = {"simulate": _analyse_simulate, "f1_vs_f2": _analyse_f1_vs_f2}


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
def _fmt(v, spec=".4g"):
    return "-" if v is None else format(v, spec)


def _width_lines(rows) -> list[str]:
    head = (
        f"{'width':>6} {'chains':>6} {'t':>8} {'E(0) - c':>10} {'E(t) - c':>10} {'train rel.err^2':>16} "
        f"{'test rel.err^2':>15} {'diverged':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        c = r["energy_offset"]
        lines.append(
            f"{r['width']:>6} {r['chains']:>6} {r['time_final']:>8.4g} {r['energy_initial'] - c:>10.4g} "
            f"{r['energy_final'] - c:>10.4g} {r['train_sq_relative_error']:>16.4g} "
            f"{_fmt(r.get('test_sq_relative_error')):>15} {r['divergent_chains']:>8}"
        )
    return lines + _energy_notes(rows[0]["energy_offset"]) + _stationary_lines(rows)


def _energy_notes(offset: float) -> list[str]:
    """What the columns ``E - c`` and ``rel.err^2`` are."""
    return [
        f"E - c: energy less c = log(2 pi noise^2)/2 = {offset:.4f}, i.e. mean (f - y)^2 / "
        "(2 noise^2) (plus the weight decay term, if any); mean over replicas",
        "rel.err^2: squared relative L2 error at the last draw, ||f - y||^2 / ||y||^2 on the training data and "
        "||f - f*||^2 / ||f*||^2 on the held-out inputs; mean over replicas",
    ]


def _stationary_lines(rows) -> list[str]:
    """ess / r_hat of the energy after burn-in (stationary dynamics only), with what they measure."""
    rows = [r for r in rows if "energy_ess_bulk" in r]
    if not rows:
        return []
    cells = (
        f"n={r['width']}, t >= {r['burn_in_time']:g}: ess_bulk {_fmt(r['energy_ess_bulk'], '.0f')}, "
        f"r_hat {_fmt(r['energy_r_hat'], '.3f')}"
        for r in rows
    )
    return [
        "energy after burn-in: " + "; ".join(cells),
        "  (ArviZ's effective sample size and split R-hat across replicas: whether the replicas sample one "
        "stationary Gibbs law; r_hat > 1.01 means they have not mixed yet)",
    ]


def _fluctuation_lines(fl) -> list[str]:
    lo, hi = fl["exponent_ci"]
    return [
        f"fluctuations n E||f_n - f||^2 at t = {fl['time']:g}: "
        + ", ".join(f"{_fmt(v)} (n={n})" for n, v in fl["fluctuation"].items())
        + f"; exponent {_fmt(fl['exponent'], '.3f')} [{_fmt(lo, '.3f')}, {_fmt(hi, '.3f')}] "
        "(Monte-Carlo scale: -1)"
    ]


def _chaos_lines(ch) -> list[str]:
    lines = [
        f"chaos at t = {ch['time']:g}: fitted exponent of |Cov(g(theta_i), g(theta_j))| in n: "
        + ", ".join(f"{o} {_fmt(v, '.3f')}" for o, v in ch["covariance_exponent"].items())
        + " (chaos: -1)"
    ]
    if "mmd" in ch:
        lines.append(
            f"  sliced W2 to n = {ch['reference_width']}: "
            + ", ".join(f"{_fmt(v)} (n={n})" for n, v in ch["sliced_wasserstein"].items())
        )
    return lines


def _f1_optimum_lines(f1) -> list[str]:
    if "skipped" in f1:
        return [f"F1 optimum: skipped ({f1['skipped']})"]
    line = f"F1 optimum P* = {f1['value']:.6g} (certified gap {f1['gap']:.2g})"
    if "relative_excess" not in f1:  # a sweep: a column of its table
        return [line + "; (E(t) - c - P*) / P*: E(t) - log(2 pi)/2 relative to P*, mean over replicas"]
    return [
        line
        + "; E(t) - log(2 pi)/2 relative to P*: "
        + ", ".join(f"{v:+.3%} (n={n})" for n, v in f1["relative_excess"].items())
    ]


def _sweep_lines(sw) -> list[str]:
    """One line per (configuration, width): the swept values, then the columns that have values."""
    rows, names = sw["rows"], sw["parameters"]
    cols = [(k, h) for k, h in SWEEP_COLUMNS if k != "chains" and any(r.get(k) is not None for r in rows)]
    cells = [[f"{r[k]:g}" for k in names] + [_cell(r.get(k)) for k, _ in cols] for r in rows]
    heads = names + [h for _, h in cols]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    head = " ".join(f"{h:>{w}}" for h, w in zip(heads, widths))
    n_widths = len({r["width"] for r in rows})
    lines = [
        f"sweep of {', '.join(names)} ({sw['combine']}{', common keys' if sw['common_keys'] else ''}): "
        f"{len(sw['points'])} configurations x {n_widths} width(s), {rows[0]['chains']} replicas each",
        head,
        "-" * len(head),
    ]
    lines += [" ".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in cells]
    lines += _energy_notes(rows[0]["energy_offset"]) + ["sd E(t): standard deviation over replicas"]
    if "fluctuations" in sw:
        lines.append(
            "n E||f_n - f||^2: fluctuation over the held-out inputs at the last draw (Monte-Carlo scale: O(1) "
            "in n); exponent of E||f_n - f||^2 in n (-1): "
            + "; ".join(_exponent_cell(e, names) for e in sw["fluctuations"])
        )
    if any("energy_r_hat" in r for r in rows):
        lines.append(
            "ess_bulk, r_hat: ArviZ's effective sample size and split R-hat of the energy after burn-in across "
            "replicas (temperature > 0: whether they sample one stationary Gibbs law; r_hat > 1.01: not yet)"
        )
    return lines


def _cell(v) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, (int, np.integer)) else format(v, ".4g")


def _exponent_cell(entry: dict, names: list) -> str:
    lo, hi = entry["exponent_ci"]
    where = ", ".join(f"{k}={entry[k]:g}" for k in names)
    return f"{where}: {_fmt(entry['exponent'], '.3f')} [{_fmt(lo, '.3f')}, {_fmt(hi, '.3f')}]"


def _f1_vs_f2_lines(f) -> list[str]:
    cells = list(next(iter(f["relative_error"].values())))
    head = f"{'method':<16} " + " ".join(f"{c:>22}" for c in cells)
    lines = [f"relative test error (mean ± sd over seeds {f['seeds']})", head, "-" * len(head)]
    for m, vals in f["relative_error"].items():
        lines.append(
            f"{m:<16} " + " ".join(f"{_fmt(vals[c][0], '.3g') + ' ± ' + _fmt(vals[c][1], '.2g'):>22}" for c in cells)
        )
    return lines


#: summary entry -> its lines of the headline table, in the table's order
TABLE_LINES = {
    "widths": _width_lines,
    "sweep": _sweep_lines,
    "fluctuations": _fluctuation_lines,
    "chaos": _chaos_lines,
    "f1_optimum": _f1_optimum_lines,
    "f1_vs_f2": _f1_vs_f2_lines,
}


def headline_table(summary: dict) -> str:
    """The summary's headline numbers as a text table (printed by ``run`` and ``report``)."""
    return "\n".join(line for key, lines in TABLE_LINES.items() if key in summary for line in lines(summary[key]))


# ---------------------------------------------------------------------------------------------
# the summary and the page
# ---------------------------------------------------------------------------------------------
def analyse(out, cfg=None, *, write: bool = True) -> Analysis:
    """Recompute the diagnostics and figures of the run directory ``out`` and write ``summary.json``.

    :param cfg: the resolved configuration (default: the one stored in ``out``).
    :raises InputError: ``out`` holds no complete run.
    """
    out = Path(out)
    cfg = saved_config(out) if cfg is None else cfg
    matplotlib.use("Agg")  # the figures are written to files, never shown
    body, figures = ANALYSES[cfg["experiment"]["kind"]](out, cfg, out / "figures")
    run = read_run_record(out)
    summary = _clean(
        {
            "experiment": cfg["experiment"],
            "fingerprint": run.get("fingerprint"),
            "environment": run.get("environment"),
            "wall_time_s": run.get("wall_time_s"),
            **body,
            "figures": [f.path.name for f in figures],
        }
    )
    if write:
        atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    return Analysis(summary, figures, headline_table(summary))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>mfsample report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
pre {{ background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }}
figure {{ margin: 1.5rem 0; }} figure img {{ max-width: 100%; }}
figcaption {{ font-size: 0.9rem; color: #555; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }} td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; }}
</style></head><body>
<h1>{title}</h1>
<p>{description}</p>
<h2>Summary</h2>
<pre>{table}</pre>
<h2>Environment</h2>
<table>{environment}</table>
<h2>Figures</h2>
{figures}
<h2>Configuration</h2>
<pre>{config}</pre>
</body></html>
"""


def _environment_html(summary: dict) -> str:
    env = summary.get("environment") or {}
    rows = {k: v for k, v in env.items() if k != "device"}
    if "device" in env:
        rows["device"] = f"{env['device']['kind']} ({env['device']['platform']}, {env['device']['count']})"
    if summary.get("wall_time_s") is not None:
        rows["wall time"] = f"{summary['wall_time_s']:.1f} s"
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    return (
        f'<figure id="{html.escape(fig.name)}"><img alt="{html.escape(fig.name)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(fig.caption)}</figcaption></figure>'
    )


def write_report(out, cfg=None) -> tuple[Path, Analysis]:
    """Run :func:`analyse` and write ``out/report.html`` (figures embedded as base64 PNG)."""
    out = Path(out)
    cfg = saved_config(out) if cfg is None else cfg
    analysis = analyse(out, cfg)
    page = PAGE.format(
        title=html.escape(cfg["experiment"]["name"]),
        description=html.escape(cfg["experiment"].get("description", "")),
        table=html.escape(analysis.table),
        environment=_environment_html(analysis.summary),
        figures="\n".join(map(_figure_html, analysis.figures)),
        config=html.escape(to_toml(cfg)),
    )
    path = out / "report.html"
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path, analysis
