"""A sweep's configurations as one labelled InferenceData: a ``config`` dimension.

Each configuration of a :func:`mfsample.sweep` result is converted as a run of its own (the
groups of :mod:`~mfsample.inference_data.layout`); the groups whose values differ between
configurations (``posterior``, ``sample_stats``, ``predictions``, ...) are then stacked along a
new dimension ``config`` placed after ``(chain, draw)``, so that ArviZ still finds its chain and
draw dimensions first.  Every swept hyper-parameter becomes a coordinate of ``config`` (a game's
per-player pair a coordinate over ``(config, player)``), so a study is selected with
``idata.posterior.sel(config=idata.posterior.temperature == 1e-3)`` or grouped with
``groupby("temperature")``.  Groups equal in every configuration (the data) are kept once.
The swept names are listed in the attribute ``swept`` (comma-separated) of every group and
are no longer separate attributes.
"""

from __future__ import annotations

from collections.abc import Callable

import arviz as az
import numpy as np
import xarray as xr

__all__ = ["CONFIG_DIM", "is_sweep", "stack_configs", "config_coords"]

#: the dimension of a sweep's configurations
CONFIG_DIM = "config"

#: the fields of :class:`mfsample.Sweep` read here (it is recognised by them: this package does
#: not import :mod:`mfsample.sweeps`, which imports the drivers)
_SWEEP_FIELDS = frozenset({"samples", "stats", "kernel", "grid", "model_args", "model_kwargs"})


def is_sweep(run) -> bool:
    """Whether ``run`` is a :func:`mfsample.sweep` result."""
    return isinstance(run, tuple) and _SWEEP_FIELDS <= set(getattr(type(run), "_fields", ()))


def config_coords(grid) -> dict:
    """``{name: (dims, values)}``: the coordinates of the ``config`` dimension of ``grid``."""
    coords = {CONFIG_DIM: np.arange(grid.num_configs)}
    for name, values in grid.coords().items():
        coords[name] = ((CONFIG_DIM,), values) if values.ndim == 1 else ((CONFIG_DIM, "player"), values)
    if any(np.ndim(v) == 2 for v in grid.coords().values()):
        coords["player"] = ["x", "y"]
    return coords


def stack_configs(sweep, convert: Callable[..., az.InferenceData]) -> az.InferenceData:
    """``convert(simulation)`` of every configuration, stacked along ``config`` (see the module
    docstring)."""
    parts = [convert(sim) for sim in sweep.simulations()]
    coords = config_coords(sweep.grid)
    swept = ",".join(sweep.grid.names)
    groups = {}
    for group in parts[0].groups():
        datasets = [p[group] for p in parts]
        if all(ds.equals(datasets[0]) for ds in datasets[1:]):
            out = datasets[0].copy()
        else:
            out = xr.concat(datasets, dim=CONFIG_DIM, coords="different", compat="equals", combine_attrs="override")
            out = out.assign_coords(coords)
            out = out.transpose(*_leading(out), ...)
        out.attrs = {k: v for k, v in datasets[0].attrs.items() if k not in sweep.grid.names}
        out.attrs["swept"] = swept
        groups[group] = out
    return az.InferenceData(**groups)


def _leading(ds: xr.Dataset) -> tuple:
    """``chain``, ``draw`` (those the dataset has), then ``config``."""
    return tuple(d for d in ("chain", "draw") if d in ds.dims) + (CONFIG_DIM,)
