"""The layout of a run's ``arviz.InferenceData``: its groups' variables, dims, coordinates, attributes.

One ``chain`` is one independent replica of the whole particle system (interacting particles are
never on the ``chain`` axis).  The groups:

* ``posterior`` – the particle sites, dims ``(chain, draw, particle, ...)`` (``w``:
  ``(chain, draw, particle, input_dim)``), the model's deterministic sites (``f`` at the training
  inputs: ``(chain, draw, data)``) and, for weighted particles, ``masses``; a ``time`` coordinate
  on ``draw``, ``t = step * dt`` (mean-field time).
* ``sample_stats`` – the ``(chain, draw)`` statistics the kernel declares
  (:attr:`~mfsample.kernels.contract.ParticleDynamics.statistics`), each with its declared
  meaning and sign as ``description`` attribute (an undeclared one is described by its name),
  under the variable name it declares (:attr:`~mfsample.kernels.contract.Statistic.variable`);
  ``objective`` is the state's ``energy`` ``E = -(1/N) sum_i log p(y_i | particles)``, *not*
  negated (a game's value ``L``).  It is not named ``energy``: ArviZ reads a
  ``sample_stats.energy`` as HMC's Hamiltonian (``arviz.plot_energy``, ``arviz.bfmi``).  Files
  written before have ``energy``; :func:`objective` reads either.
* ``predictions`` – ``f_n(x) = n^(1-p) sum_j m_j phi(x; theta_j)`` at the evaluation points,
  dims ``(chain, draw, eval_point)``, and the unit functions ``phi``, dims
  ``(chain, draw, particle, unit_point)`` (computed by :mod:`~mfsample.inference_data.predict`);
  ``predictions_constant_data`` – ``x_eval``, dims ``(eval_point, input_dim)``.
* ``observed_data`` – the model's observed sites (``y``); ``constant_data`` – its array arguments
  (``x``, dims ``(data, input_dim)``).

Every group carries the attributes of the run: the kernel's class and its
:attr:`~mfsample.kernels.contract.ParticleDynamics.hyperparameters`, the width ``n``, the
scaling exponent ``p`` and ``N``.  A kernel is read only through the contract of
:mod:`mfsample.kernels.contract`.

The builders here take the draws (or one chunk of them, with their indices ``draw`` in the whole
run), so that :func:`~mfsample.inference_data.to_inference_data` and the streaming
:class:`~mfsample.inference_data.DrawWriter` write the same groups.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import numpy as np
import xarray as xr
from numpyro import handlers

from .. import validation
from ..kernels.contract import ParticleDynamics, describe

__all__ = [
    "Layout",
    "build_layout",
    "check_kernel",
    "model_trace",
    "times",
    "posterior_dataset",
    "sample_stats_dataset",
    "OBJECTIVE",
    "objective",
    "prediction_datasets",
    "data_groups",
    "group_attrs",
]

MASSES_DESCRIPTION = "particle masses m_j (sum_j m_j = 1)"
OUTPUT_DESCRIPTION = "network output f_n(x) = n^(1-p) sum_j m_j phi(x; theta_j) at the evaluation points"
UNITS_DESCRIPTION = "unit functions phi(x; theta_j) = n^(p-1) df/dm_j at the first unit_point evaluation points"
#: the ``sample_stats`` variable of the objective (``energy`` in files written before)
OBJECTIVE = "objective"
FORMER_OBJECTIVE = "energy"


class Layout(NamedTuple):
    """What fixes the names, dims and attributes of a run's groups (not its draws)."""

    model: Callable | None
    model_args: tuple
    model_kwargs: dict
    particle_sites: tuple
    shared_sites: tuple
    width: int
    exponent: float
    accepts_masses: bool
    x_arg: int | str | None
    num_data: int | None
    event_dims: dict
    dims: dict
    step_size: float | None
    single: bool
    descriptions: dict
    variables: dict
    attrs: dict


def check_kernel(kernel) -> None:
    """Refuse a kernel that does not implement :class:`~mfsample.kernels.contract.ParticleDynamics`."""
    if kernel is not None and not isinstance(kernel, ParticleDynamics):
        raise TypeError(
            f"the kernel must implement mfsample.kernels.contract.ParticleDynamics (model, model_args, "
            f"model_kwargs, build_energy, statistics, hyperparameters, ...); got {type(kernel).__name__}. "
            "Convert runs of other NumPyro kernels with arviz.from_numpyro"
        )


def model_trace(model, model_args, model_kwargs, params=None):
    """A trace of ``model`` (seeded; its latent sites set to ``params`` when given)."""
    m = handlers.seed(model, 0)
    if params is not None:
        m = handlers.substitute(m, data=params)
    return handlers.trace(m).get_trace(*model_args, **model_kwargs)


def resolve_x_arg(model, model_args, model_kwargs, x_arg):
    """The input's position in ``model_args`` or its keyword in ``model_kwargs`` (``None``: absent).

    A position beyond the positional arguments is looked up by the name the model's signature
    gives it (``shallow_network(x=..., y=...)`` called with keywords)."""
    if isinstance(x_arg, str):
        return x_arg if x_arg in model_kwargs else None
    if x_arg < len(model_args):
        return x_arg
    try:
        names = list(inspect.signature(model).parameters)
    except (TypeError, ValueError):
        return None
    return names[x_arg] if x_arg < len(names) and names[x_arg] in model_kwargs else None


def times(stats, step_size, num_draws, offset=0):
    """``t = step * dt`` in float64 (from ``step``, else from the recorded float32 ``time``; without
    either, the draw index counted from ``offset``).  Element-wise in the draws, so a run converted
    chunk by chunk gets the times of the whole run converted at once."""
    if "step" in stats and step_size is not None:
        steps = stats["step"][0].astype(np.int64)
    elif "time" in stats and step_size is not None:
        steps = np.rint(stats["time"][0].astype(np.float64) / step_size).astype(np.int64)
    elif "time" in stats:
        return stats["time"][0].astype(np.float64)
    else:
        return np.arange(offset, offset + num_draws, dtype=np.float64)
    return steps.astype(np.float64) * step_size


# ---------------------------------------------------------------------------------------------
# the layout of a run
# ---------------------------------------------------------------------------------------------
def _event_dims(model, model_args, model_kwargs):
    if model is None:
        return {}
    try:
        tr = model_trace(model, model_args, model_kwargs)
    except Exception:  # noqa: BLE001 - dims are cosmetic: fall back to generic names
        return {}
    return {
        k: list(s.get("infer", {}).get("event_dims", []))
        for k, s in tr.items()
        if s["type"] == "sample" and s.get("infer", {}).get("event_dims")
    }


def _particles(samples, energy):
    """``(particle sites, width n)``: the energy's, else every sampled site but ``masses``."""
    sites = tuple(energy.site_names) if energy is not None else tuple(k for k in samples if k != "masses")
    if energy is not None and energy.width is not None:
        return sites, int(energy.width)
    first = sites[0] if sites else next(k for k in samples if k != "masses")
    return sites, int(samples[first].shape[2])


def _num_data(model_args, model_kwargs, x_arg):
    """``N``, the rows of the model's input (``None`` without one)."""
    if x_arg is None:
        return None
    x = model_args[x_arg] if isinstance(x_arg, int) else model_kwargs[x_arg]
    return int(np.shape(x)[0])


def _attribute_values(values: dict) -> dict:
    """netCDF-storable attributes: ``bool`` -> ``int``; ``int``, ``float`` and ``str`` kept."""
    out = {}
    for name, v in values.items():
        if isinstance(v, (bool, np.bool_)):
            out[name] = int(v)
        elif isinstance(v, (int, float, str)):
            out[name] = v
    return out


def _run_attrs(kernel, energy, width, exponent) -> dict:
    attrs = {"created_by": "mfsample.to_inference_data", "inference_library": "mfsample"}
    if kernel is not None:
        attrs["kernel"] = type(kernel).__name__
        attrs.update(_attribute_values(kernel.hyperparameters))
    if energy is not None:
        attrs.update(width=width, scaling_exponent=exponent, num_data=float(energy.num_data))
    return attrs


def build_layout(
    samples, kernel, *, model=None, model_args=(), model_kwargs=None, dims=None, x_arg=0, single=False
) -> Layout:
    """The layout of a run of ``kernel`` (a :class:`~mfsample.kernels.contract.ParticleDynamics`
    or ``None``) on ``model_args``/``model_kwargs`` whose draws (or one chunk of them, or only
    their shapes) are ``samples``; ``model`` defaults to ``kernel.model``; ``dims`` override
    ``kernel.sample_dims``."""
    check_kernel(kernel)
    model_args, model_kwargs = tuple(model_args), dict(model_kwargs or {})
    model = kernel.model if model is None and kernel is not None else model
    energy = None if kernel is None else kernel.build_energy(model_args, model_kwargs)
    sites, width = _particles(samples, energy)
    exponent = float(energy.exponent) if energy is not None else 1.0
    x_arg = None if model is None else resolve_x_arg(model, model_args, model_kwargs, x_arg)
    return Layout(
        model=model,
        model_args=model_args,
        model_kwargs=model_kwargs,
        particle_sites=sites,
        shared_sites=tuple(getattr(energy, "shared_names", ())),  # a game's setup has none
        width=width,
        exponent=exponent,
        accepts_masses=bool(energy is not None and energy.accepts_masses),
        x_arg=x_arg,
        num_data=_num_data(model_args, model_kwargs, x_arg),
        event_dims=_event_dims(model, model_args, model_kwargs),
        dims={**(kernel.sample_dims if kernel is not None else {}), **dict(dims or {})},
        step_size=None if kernel is None else kernel.step_size,
        single=single,
        descriptions=describe(kernel.statistics) if kernel is not None else {},
        variables={s.name: s.variable for s in kernel.statistics} if kernel is not None else {},
        attrs=_run_attrs(kernel, energy, width, exponent),
    )


# ---------------------------------------------------------------------------------------------
# the groups
# ---------------------------------------------------------------------------------------------
def _site_dims(name, value, layout: Layout):
    """Dims of one posterior array after ``(chain, draw)``."""
    if name in layout.dims:
        return list(layout.dims[name])
    rest = value.shape[2:]
    if name in layout.particle_sites or (name == "masses" and rest[:1] == (layout.width,)):
        names = ["particle"] + list(layout.event_dims.get(name, []))
    elif layout.num_data is not None and rest[:1] == (layout.num_data,):
        names = ["data"]
    else:
        names = []
    names = names[: len(rest)]
    return names + [f"{name}_dim_{i}" for i in range(len(names), len(rest))]


def _draw_coords(layout: Layout, chains, draw, time):
    return {
        "chain": np.arange(chains),
        "draw": np.asarray(draw),
        "particle": np.arange(layout.width),
        "time": ("draw", np.asarray(time, dtype=np.float64)),
    }


def posterior_dataset(samples, layout: Layout, draw, time) -> xr.Dataset:
    """``posterior``: every site ``(chain, draw, ...)`` with the ``time`` coordinate on ``draw``
    (``draw`` holds the draws' indices in the whole run)."""
    chains = next(iter(samples.values())).shape[0]
    posterior = xr.Dataset(
        {name: (["chain", "draw"] + _site_dims(name, v, layout), v) for name, v in samples.items()},
        coords=_draw_coords(layout, chains, draw, time),
    )
    if "masses" in posterior:
        posterior["masses"].attrs["description"] = MASSES_DESCRIPTION
    return posterior


def _stat_variables(names, layout: Layout) -> dict:
    """``{field: variable name}`` of the recorded statistics; two fields may not share a name."""
    variables = {name: layout.variables.get(name, name) for name in names}
    clashes = sorted(v for v in set(variables.values()) if list(variables.values()).count(v) > 1)
    if clashes:
        raise ValueError(
            f"the statistics {sorted(variables)} would be recorded under the same sample_stats name "
            f"{clashes} ({variables}): rename the extra statistic"
        )
    return variables


def sample_stats_dataset(stats, layout: Layout, chains, draw, time) -> xr.Dataset:
    """``sample_stats``: the ``(chain, draw)`` statistics (``time`` is the coordinate instead),
    named and described as the kernel declares them."""
    coords = _draw_coords(layout, chains, draw, time)
    shape = (chains, len(coords["draw"]))
    kept = {name: v for name, v in stats.items() if name != "time" and v.shape == shape}
    variables = _stat_variables(kept, layout)
    stat_vars = {
        variables[name]: xr.Variable(["chain", "draw"], v, attrs={"description": layout.descriptions.get(name, name)})
        for name, v in kept.items()
    }
    return xr.Dataset(stat_vars, coords={k: coords[k] for k in ("chain", "draw", "time")})


def objective(sample_stats: Mapping) -> xr.DataArray:
    """The objective ``(chain, draw)`` of a ``sample_stats`` group: ``E`` of a particle run, the
    value ``L`` of a game.

    Its variable is ``objective``; in a file written before it was renamed, ``energy`` (read with
    a :class:`DeprecationWarning`)."""
    if OBJECTIVE in sample_stats:
        return sample_stats[OBJECTIVE]
    if FORMER_OBJECTIVE in sample_stats:
        warnings.warn(
            f"sample_stats[{FORMER_OBJECTIVE!r}] is now written as sample_stats[{OBJECTIVE!r}] (ArviZ reads a "
            f"variable {FORMER_OBJECTIVE!r} as HMC's Hamiltonian energy); read as the objective. Convert the "
            "run again with mf.to_inference_data to write the new name",
            DeprecationWarning,
            stacklevel=2,
        )
        return sample_stats[FORMER_OBJECTIVE]
    raise ValueError(
        f"sample_stats has no {OBJECTIVE!r} variable (nor {FORMER_OBJECTIVE!r}, its former name); it has "
        f"{sorted(map(str, sample_stats))}: convert the run of an mfsample kernel with mf.to_inference_data"
    )


def _x_eval_dims(ndim):
    """``(eval_point, input_dim)`` for a matrix of inputs, generic names beyond."""
    if ndim == 2:
        return ["eval_point", "input_dim"]
    return ["eval_point"] + [f"x_eval_dim_{i}" for i in range(ndim - 1)]


def prediction_datasets(f, phi, output_site, layout: Layout, draw, time, x_eval) -> dict:
    """``predictions`` (``f`` ``(chain, draw, eval_point)`` and ``phi`` ``(chain, draw, particle,
    unit_point)``) and ``predictions_constant_data`` (``x_eval``)."""
    coords = {**_draw_coords(layout, f.shape[0], draw, time), "eval_point": np.arange(f.shape[-1])}
    pred = {output_site: xr.Variable(["chain", "draw", "eval_point"], f, attrs={"description": OUTPUT_DESCRIPTION})}
    if phi is not None:
        pred["phi"] = xr.Variable(
            ["chain", "draw", "particle", "unit_point"], phi, attrs={"description": UNITS_DESCRIPTION}
        )
        coords["unit_point"] = np.arange(phi.shape[-1])
    groups = {"predictions": xr.Dataset(pred, coords=coords)}
    if x_eval is not None:
        xe = np.asarray(x_eval)
        groups["predictions_constant_data"] = xr.Dataset(
            {"x_eval": (_x_eval_dims(xe.ndim), xe)}, coords={"eval_point": np.arange(xe.shape[0])}
        )
    return groups


def _data_dims(name, v, num_data, matrix_input):
    """``data`` for a per-datum array (and ``input_dim`` after it for a matrix), generic beyond."""
    d = ["data"] if validation.is_per_datum(v, num_data) else []
    d += ["input_dim"] if matrix_input and d and v.ndim == 2 else []
    return d + [f"{name}_dim_{i}" for i in range(len(d), v.ndim)]


def _bound_arguments(model, model_args, model_kwargs):
    try:
        return inspect.signature(model).bind_partial(*model_args, **model_kwargs).arguments
    except TypeError:
        return {f"arg{i}": a for i, a in enumerate(model_args)}


def data_groups(layout: Layout) -> dict:
    """``observed_data`` (the model's observed sites) and ``constant_data`` (its array arguments),
    those that are not empty."""
    if layout.model is None:
        return {}
    observed, constant = {}, {}
    for name, site in model_trace(layout.model, layout.model_args, layout.model_kwargs).items():
        if site["type"] == "sample" and site["is_observed"]:
            v = np.asarray(site["value"])
            observed[name] = (_data_dims(name, v, layout.num_data, False), v)
    for name, v in _bound_arguments(layout.model, layout.model_args, layout.model_kwargs).items():
        if isinstance(v, (jax.Array, np.ndarray)) and name not in observed:
            v = np.asarray(v)
            constant[name] = (_data_dims(name, v, layout.num_data, True), v)
    groups = {"observed_data": xr.Dataset(observed), "constant_data": xr.Dataset(constant)}
    return {g: ds for g, ds in groups.items() if ds.data_vars}


def group_attrs(layout: Layout, output_site) -> dict:
    """The attributes of every group of the run."""
    return {**layout.attrs, "output_site": output_site}
