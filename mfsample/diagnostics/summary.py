"""Run summary: energy trajectory, divergences and, at stationarity, ArviZ's MCMC diagnostics.

A mean-field Langevin run (``temperature > 0``) is a Markov chain with a stationary law (the
Gibbs measure), so after a burn-in its scalar observables -- the energy ``E`` and
the network output at a few evaluation points -- have ArviZ's ``ess`` (bulk, tail), ``r_hat`` and
``mcse`` computed by :func:`arviz.summary` across the replicas.  A Wasserstein flow is a
deterministic transient: only its trajectory is summarised.
"""

from __future__ import annotations

from functools import partial

import arviz as az
import numpy as np
import xarray as xr

from .. import validation
from ..inference_data.layout import objective
from . import configs
from .fluctuations import _group, check_inference_data, replica_outputs

__all__ = ["summary", "scalar_observables"]


def scalar_observables(idata, *, var_name: str = "f", num_points: int = 3, config=None) -> xr.Dataset:
    """``energy`` ``(chain, draw)`` (the recorded objective ``E``, ``sample_stats.objective``) and
    ``var_name`` at the first ``num_points`` evaluation points ``(chain, draw, eval_point)``, with
    the ``time`` coordinate.  For a sweep, those of configuration ``config``
    (:mod:`~mfsample.diagnostics.configs`), or of every one along ``config`` (``None``)."""

    def observe(one):
        return _observables(one, objective(one.sample_stats), var_name, num_points)

    return configs.apply(idata, config, observe)


def _observables(idata, energy, var_name, num_points) -> xr.Dataset:
    """:func:`scalar_observables` with the objective already read (read once per summary)."""
    out = {"energy": energy}
    pred = _group(idata, "predictions")
    if var_name in idata.posterior or (pred is not None and var_name in pred):
        out[var_name] = replica_outputs(idata, var_name).isel(eval_point=slice(0, num_points))
    return xr.Dataset(out)


def summary(
    idata,
    *,
    config=None,
    var_name: str = "f",
    num_points: int = 3,
    burn_in: float = 0.5,
    stationary: bool | None = None,
) -> xr.Dataset:
    """Summarise one run (an ``InferenceData`` from :func:`~mfsample.diagnostics.to_inference_data`).

    :param config: for a sweep (a ``config`` dimension, :mod:`~mfsample.diagnostics.configs`): the
        configuration to summarise (index or ``{name: value}``); ``None``: every configuration,
        one summary per configuration stacked along ``config`` (labelled with the swept values;
        an attribute that differs between configurations, e.g. ``burn_in_time`` when the step
        size is swept, becomes a variable over ``config``).
    :param var_name: the output variable (``predictions`` if present, else ``posterior``).
    :param num_points: evaluation points whose output is diagnosed.
    :param burn_in: fraction of the draws discarded before the stationary diagnostics.
    :param stationary: compute ArviZ's ``ess``/``rhat``/``mcse`` (default: when the run's
        ``temperature`` attribute is positive, i.e. Langevin runs).
    :returns: Dataset with

        - ``energy_mean``, ``energy_sd`` ``(draw)`` (``time`` coordinate): ``E`` across replicas;
        - ``energy_final`` ``(chain)``: ``E`` at the last draw of each replica;
        - ``divergent_draws`` ``(chain)`` and ``first_divergence_time`` ``(chain)`` (NaN: none);
        - ``accept_rate`` ``(chain)`` when the kernel records ``accept_prob``;
        - when stationary: ``energy`` ``(metric)`` and ``var_name`` ``(metric, eval_point)`` from
          :func:`arviz.summary` on the draws after burn-in (metrics ``mean``, ``sd``, ``hdi``,
          ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``).
    """
    check_inference_data(idata, "posterior", "sample_stats", caller="summary")
    num_points = validation.positive_int("num_points", num_points)
    burn_in = validation.real("burn_in", burn_in, nonnegative=True)
    if burn_in >= 1:
        raise ValueError(f"burn_in must be a fraction of the draws in [0, 1), got {burn_in!r}")
    options = dict(var_name=var_name, num_points=num_points, burn_in=burn_in, stationary=stationary)
    return configs.apply(idata, config, partial(_summary, **options))


def _summary(idata, *, var_name, num_points, burn_in, stationary) -> xr.Dataset:
    """:func:`summary` of a run without a ``config`` dimension."""
    stats = idata.sample_stats
    recorded = objective(stats)
    energy = recorded.astype(np.float64)
    if stats.sizes.get("chain", 0) < 1 or stats.sizes.get("draw", 0) < 1:
        raise ValueError(f"summary needs at least one chain and one draw; sample_stats has sizes {dict(stats.sizes)}")
    time = idata.posterior["time"]
    out = {
        "energy_mean": energy.mean("chain"),
        "energy_sd": energy.std("chain", ddof=1) if energy.sizes["chain"] > 1 else energy.isel(chain=0) * np.nan,
        "energy_final": energy.isel(draw=-1, drop=True),
    }
    if "diverging" in stats:
        div = stats["diverging"].astype(bool)
        out["divergent_draws"] = div.sum("draw")
        first = div.argmax("draw")
        t_first = xr.DataArray(time.values[first.values], dims=["chain"])
        out["first_divergence_time"] = t_first.where(div.any("draw").values)
    if "accept_prob" in stats:
        out["accept_rate"] = stats["accept_prob"].astype(np.float64).mean("draw")
    ds = xr.Dataset(out).drop_vars("time", errors="ignore").assign_coords(time=time)

    attrs = dict(_group(idata, "posterior").attrs)
    if stationary is None:
        stationary = float(attrs.get("temperature", 0.0) or 0.0) > 0
    start = int(np.floor(burn_in * idata.posterior.sizes["draw"]))
    if stationary and idata.posterior.sizes["draw"] - start >= 4:
        obs = _observables(idata, recorded, var_name, num_points).isel(draw=slice(start, None))
        obs = obs.drop_vars("time", errors="ignore")
        diag = az.summary(obs, fmt="xarray", kind="all")
        ds = xr.merge([ds, diag], compat="override")
        ds.attrs["burn_in_time"] = float(time.values[start])
    ds.attrs.update(
        energy="E = -(1/N) sum_i log p(y_i | particles), not negated",
        stationary=int(bool(stationary)),
        burn_in=burn_in,
    )
    return ds
