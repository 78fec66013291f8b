"""Runs of the particle kernels as labelled ``arviz.InferenceData`` (issue 4, DESIGN.md §4).

Layout of :func:`to_inference_data`'s result (one ``chain`` = one independent replica of the
whole particle system; interacting particles are never on the ``chain`` axis):

* ``posterior`` – the particle sites, dims ``(chain, draw, particle, ...)`` (``w``:
  ``(chain, draw, particle, input_dim)``), the model's deterministic sites (``f`` at the training
  inputs: ``(chain, draw, data)``) and, for weighted particles, ``masses``; a ``time`` coordinate
  on ``draw``, ``t = step * dt`` (mean-field time).
* ``predictions`` – the output ``f_n(x) = n^(1-p) sum_j m_j phi(x; theta_j)`` at the evaluation
  points ``x_eval``, dims ``(chain, draw, eval_point)``, computed by re-running the model's
  deterministic output site (``f`` by default) with its input replaced by ``x_eval``; and the unit
  functions ``phi(x; theta_j) = n^(p-1) df/dm_j`` at the first ``unit_points`` evaluation
  points, dims ``(chain, draw, particle, unit_point)`` (exact for every model linear in the
  masses, i.e. every mean-field model ``f = ∫ phi dmu``).
* ``sample_stats`` – per ``(chain, draw)``, under explicit names whose signs are documented in
  each variable's ``description`` attribute (ArviZ's converter renames are not used):
  ``energy`` = ``E = -(1/N) sum_i log p(y_i | particles)`` (*not* negated), ``diverging``,
  ``grad_norm``, ``accept_prob`` and any kernel statistic recorded (``births``, ``deaths``,
  ``vbar``, ``ess``, ``step``).
* ``observed_data`` – the model's observed sites (``y``); ``constant_data`` – its array arguments
  (``x``); ``predictions_constant_data`` – ``x_eval``.

Everything round-trips through ``to_netcdf`` / ``arviz.from_netcdf``.  The layout is built by small
helpers (``_layout``, ``_posterior_dataset``, ``_sample_stats_dataset``, ``_prediction_datasets``,
``_data_groups``, ``_group_attrs``) that :mod:`mfsample.io` reuses to write the same groups chunk by
chunk.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

__all__ = ["to_inference_data", "STAT_DESCRIPTIONS"]

#: meaning and sign of each ``sample_stats`` variable (stored as its ``description`` attribute)
STAT_DESCRIPTIONS = {
    "energy": "E = -(1/N) sum_i log p(y_i | particles): mean negative log-likelihood per datum "
              "(not negated; lower is a better fit)",
    "diverging": "the particles became non-finite at or before this draw (they are then frozen)",
    "grad_norm": "||drift||_{L2(mu_n)}, the mean-field norm of the velocity field (>= 0)",
    "accept_prob": "Metropolis acceptance probability of the last step (1 when unadjusted)",
    "births": "birth-death events of the last step: duplicated particles (>= 0)",
    "deaths": "birth-death events of the last step: killed particles (>= 0)",
    "vbar": "Vbar = sum_j m_j V(theta_j; mu_n), the mean first variation",
    "ess": "effective sample size of the masses 1 / sum_j m_j^2 (n for equal masses)",
    "step": "number of kernel steps taken since init (t = step * dt)",
    "log_prior": "sum_j log mu0(theta_j) in unconstrained coordinates",
}


# ---------------------------------------------------------------------------------------------
# what a run provides
# ---------------------------------------------------------------------------------------------
def _as_numpy_tree(tree):
    return {k: np.asarray(v) for k, v in tree.items()}


def _unpack_run(run, kernel, model_args, model_kwargs):
    """``(samples, stats, kernel, model_args, model_kwargs)`` of an ``MCMC`` or a ``Simulation``."""
    if hasattr(run, "get_samples") and hasattr(run, "sampler"):  # numpyro.infer.MCMC
        kernel = run.sampler if kernel is None else kernel
        samples = run.get_samples(group_by_chain=True)
        stats = run.get_extra_fields(group_by_chain=True)
        model_args = tuple(run._args) if model_args is None else tuple(model_args)
        model_kwargs = dict(run._kwargs) if model_kwargs is None else dict(model_kwargs)
    elif hasattr(run, "samples") and hasattr(run, "stats"):  # mfsample.Simulation
        samples, stats = run.samples, run.stats
        kernel = getattr(run, "kernel", None) if kernel is None else kernel
        if model_args is None:
            model_args = getattr(run, "model_args", None)
        if model_kwargs is None:
            model_kwargs = getattr(run, "model_kwargs", None)
        if model_args is None and kernel is not None:  # the arguments of the kernel's last init
            model_args = getattr(kernel, "_model_args", ())
        if model_kwargs is None and kernel is not None:
            model_kwargs = getattr(kernel, "_model_kwargs", {})
        model_args = tuple(model_args or ())
        model_kwargs = dict(model_kwargs or {})
    else:
        raise TypeError(
            "run must be a numpyro MCMC object or an mfsample.simulate result, got "
            f"{type(run).__name__}"
        )
    single = not isinstance(samples, dict)
    if single:  # energy_fn with a single prior: one array of particles
        samples = {"theta": samples}
    stats = {k: v for k, v in dict(stats).items() if not isinstance(v, dict)}
    return _as_numpy_tree(samples), _as_numpy_tree(stats), kernel, model_args, model_kwargs, single


def _times(stats, step_size, num_chains, num_draws, offset=0):
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
# the model's output at new inputs
# ---------------------------------------------------------------------------------------------
def _model_trace(model, model_args, model_kwargs, params=None):
    m = handlers.seed(model, 0)
    if params is not None:
        m = handlers.substitute(m, data=params)
    return handlers.trace(m).get_trace(*model_args, **model_kwargs)


def _resolve_x_arg(model, model_args, model_kwargs, x_arg):
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


def _eval_arguments(model_args, model_kwargs, x_eval, x_arg):
    """Arguments with the input replaced by ``x_eval`` and the other per-datum arrays (labels) set
    to ``None`` (they are unknown at evaluation points)."""
    args, kwargs = list(model_args), dict(model_kwargs)
    x = args[x_arg] if isinstance(x_arg, int) else kwargs[x_arg]
    num_data = np.shape(x)[0]

    def per_datum(v):
        return isinstance(v, (jax.Array, np.ndarray)) and np.ndim(v) >= 1 and np.shape(v)[0] == num_data

    args = [None if per_datum(a) else a for a in args]
    kwargs = {k: (None if per_datum(v) else v) for k, v in kwargs.items()}
    if isinstance(x_arg, int):
        args[x_arg] = x_eval
    else:
        kwargs[x_arg] = x_eval
    # drop trailing positional Nones so that keyword-only defaults apply
    while args and args[-1] is None and len(args) - 1 != x_arg:
        args.pop()
    return tuple(args), kwargs


def _output_function(model, model_args, model_kwargs, x_eval, output_site, output_fn, x_arg, single):
    """``out(params, masses) -> (M,)`` (``masses=None``: uniform) or ``None`` when no output can
    be computed."""
    if output_fn is not None:
        xe = None if x_eval is None else jnp.asarray(x_eval)

        def out(params, masses):
            user = params["theta"] if single else params
            if masses is None:
                n = jax.tree.leaves(params)[0].shape[0]
                masses = jnp.full((n,), 1.0 / n)
            return jnp.atleast_1d(output_fn(user, masses, xe))

        return out
    if model is None or x_eval is None:
        return None
    if x_arg is None:
        raise ValueError("x_eval was given but the model's input was not found in its arguments; set x_arg")
    args, kwargs = _eval_arguments(model_args, model_kwargs, jnp.asarray(x_eval), x_arg)
    kwargs = {k: v for k, v in kwargs.items() if k != "masses"}

    def out(params, masses):
        kw = dict(kwargs) if masses is None else {**kwargs, "masses": masses}
        tr = _model_trace(model, args, kw, params)
        if output_site not in tr:
            raise KeyError(f"the model has no site {output_site!r}; set output_site=...")
        return jnp.atleast_1d(tr[output_site]["value"])

    return out


def _flatten_draws(params, masses):
    """``(chain, draw, ...)`` -> ``(chain * draw, ...)`` for the particle sites and the masses."""
    chains, draws = jax.tree.leaves(params)[0].shape[:2]
    flat = jax.tree.map(lambda v: jnp.asarray(v).reshape((chains * draws,) + v.shape[2:]), params)
    m_flat = None if masses is None else jnp.asarray(masses).reshape(chains * draws, -1)
    return flat, m_flat


def _evaluator(out, item, num_items, width, exponent, unit_points, accepts_masses, batch_size):
    """A compiled ``fn((flat_params, flat_masses)) -> (f (items, M), phi (items, n, U) or None)``
    mapping ``out`` (and the unit functions) over a flat axis of draws; ``item`` is one draw
    (its shapes fix the compiled programme: calls with the same number of items reuse it)."""
    units = unit_points > 0 and accepts_masses

    def one(it):
        p, m = it
        mm = jnp.full((width,), 1.0 / width) if m is None else m
        f = out(p, None if m is None else m)
        if not units:
            return f, None
        # phi_j(x) = n^(p-1) df/dm_j: exact when f is linear in the masses (f = n^(1-p) sum m_j phi_j)
        jac = jax.jacfwd(lambda mv: out(p, mv)[:unit_points])(mm)  # (U, n)
        return f, (width ** (exponent - 1.0)) * jac.T

    probe = jax.eval_shape(lambda it: one(it)[0], item)
    num_eval = int(np.prod(probe.shape)) if probe.shape else 1
    if batch_size is None:  # keep one batch's activations near 2^24 numbers
        batch_size = max(1, min(num_items, 2 ** 24 // max(1, num_eval * width)))
    return jax.jit(lambda xs: jax.lax.map(one, xs, batch_size=batch_size))


def _evaluate(out, params, masses, width, exponent, unit_points, accepts_masses, batch_size):
    """Map ``out`` (and the unit functions) over the flattened ``(chain, draw)`` axis."""
    chains, draws = jax.tree.leaves(params)[0].shape[:2]
    flat, m_flat = _flatten_draws(params, masses)
    fn = _evaluator(out, jax.tree.map(lambda v: v[0], (flat, m_flat)), chains * draws, width, exponent,
                    unit_points, accepts_masses, batch_size)
    f, phi = fn((flat, m_flat))
    f = np.asarray(f).reshape(chains, draws, -1)
    if phi is not None:
        phi = np.asarray(phi).reshape(chains, draws, width, -1)
    return f, phi


# ---------------------------------------------------------------------------------------------
# dims
# ---------------------------------------------------------------------------------------------
def _site_dims(name, value, particle_sites, width, num_data, event_dims, dims):
    """Dims of one posterior array after ``(chain, draw)``."""
    if name in dims:
        return list(dims[name])
    rest = value.shape[2:]
    if name in particle_sites or (name == "masses" and rest[:1] == (width,)):
        names = ["particle"] + list(event_dims.get(name, []))
    elif num_data is not None and rest[:1] == (num_data,):
        names = ["data"]
    else:
        names = []
    names = names[: len(rest)]
    names += [f"{name}_dim_{i}" for i in range(len(names), len(rest))]
    return names


def _event_dims(model, model_args, model_kwargs):
    if model is None:
        return {}
    try:
        tr = _model_trace(model, model_args, model_kwargs)
    except Exception:  # noqa: BLE001 - dims are cosmetic: fall back to generic names
        return {}
    return {k: list(s.get("infer", {}).get("event_dims", [])) for k, s in tr.items()
            if s["type"] == "sample" and s.get("infer", {}).get("event_dims")}


def _model_data(model, model_args, model_kwargs, num_data):
    """``(observed_data, constant_data)`` Datasets from a trace of the model and its arguments."""
    observed, constant = {}, {}
    if model is None:
        return observed, constant
    tr = _model_trace(model, model_args, model_kwargs)
    for name, site in tr.items():
        if site["type"] == "sample" and site["is_observed"]:
            v = np.asarray(site["value"])
            d = ["data"] if v.ndim and v.shape[0] == num_data else []
            observed[name] = (d + [f"{name}_dim_{i}" for i in range(len(d), v.ndim)], v)
    try:
        bound = inspect.signature(model).bind_partial(*model_args, **model_kwargs).arguments
    except TypeError:
        bound = {f"arg{i}": a for i, a in enumerate(model_args)}
    for name, v in bound.items():
        if isinstance(v, (jax.Array, np.ndarray)) and name not in observed:
            v = np.asarray(v)
            d = ["data"] if v.ndim and v.shape[0] == num_data else []
            d += (["input_dim"] if v.ndim == 2 and d else [])
            constant[name] = (d + [f"{name}_dim_{i}" for i in range(len(d), v.ndim)], v)
    return observed, constant


def _kernel_attrs(kernel, energy):
    attrs = {"created_by": "mfsample.to_inference_data", "inference_library": "mfsample"}
    if kernel is not None:
        attrs["kernel"] = type(kernel).__name__
        for name in ("step_size", "temperature", "rate", "adjusted", "mode", "birth"):
            v = getattr(kernel, name, None)
            if isinstance(v, (bool, np.bool_)):
                attrs[name] = int(v)
            elif isinstance(v, (int, float, str)):
                attrs[name] = v
    if energy is not None:
        attrs.update(width=int(energy.width), scaling_exponent=float(energy.exponent),
                     num_data=float(energy.num_data))
    return attrs


# ---------------------------------------------------------------------------------------------
# the layout: shared by to_inference_data and the streaming writer (mfsample.io)
# ---------------------------------------------------------------------------------------------
class _Layout(NamedTuple):
    """What fixes the names, dims and attributes of a run's groups (not its draws)."""

    kernel: Any
    model: Callable | None
    energy: Any
    model_args: tuple
    model_kwargs: dict
    particle_sites: tuple
    width: int
    exponent: float
    x_arg: int | str | None
    num_data: int | None
    event_dims: dict
    dims: dict
    step_size: float | None
    single: bool


def _layout(samples, kernel, model, model_args, model_kwargs, dims, x_arg, single) -> _Layout:
    """The layout of a run whose draws (or one chunk of them) are ``samples``."""
    model = getattr(kernel, "model", None) if model is None else model
    energy = getattr(kernel, "energy", None)
    if energy is None and kernel is not None and hasattr(kernel, "build_energy"):
        energy = kernel.build_energy(model_args, model_kwargs)
    dims = {**getattr(kernel, "sample_dims", {}), **dict(dims or {})}
    particle_sites = tuple(energy.site_names) if energy is not None else tuple(
        k for k in samples if k != "masses")
    width = int(energy.width) if energy is not None else int(samples[particle_sites[0]].shape[2])
    exponent = float(energy.exponent) if energy is not None else 1.0
    x_train = None
    if model is not None:
        x_arg = _resolve_x_arg(model, model_args, model_kwargs, x_arg)
        if x_arg is not None:
            x_train = model_args[x_arg] if isinstance(x_arg, int) else model_kwargs[x_arg]
    num_data = None if x_train is None else int(np.shape(x_train)[0])
    return _Layout(kernel=kernel, model=model, energy=energy, model_args=tuple(model_args),
                   model_kwargs=dict(model_kwargs), particle_sites=particle_sites, width=width,
                   exponent=exponent, x_arg=x_arg, num_data=num_data,
                   event_dims=_event_dims(model, model_args, model_kwargs), dims=dims,
                   step_size=getattr(kernel, "step_size", None), single=single)


def _draw_coords(layout, chains, draw, time):
    return {"chain": np.arange(chains), "draw": np.asarray(draw), "particle": np.arange(layout.width),
            "time": ("draw", np.asarray(time, dtype=np.float64))}


def _posterior_dataset(samples, layout, draw, time) -> xr.Dataset:
    """``posterior``: every site ``(chain, draw, ...)`` with the ``time`` coordinate on ``draw``
    (``draw`` holds the draws' indices in the whole run)."""
    chains = next(iter(samples.values())).shape[0]
    posterior = xr.Dataset(
        {name: (["chain", "draw"] + _site_dims(name, v, layout.particle_sites, layout.width, layout.num_data,
                                               layout.event_dims, layout.dims), v)
         for name, v in samples.items()},
        coords=_draw_coords(layout, chains, draw, time),
    )
    if "masses" in posterior:
        posterior["masses"].attrs["description"] = "particle masses m_j (sum_j m_j = 1)"
    return posterior


def _sample_stats_dataset(stats, layout, chains, draw, time) -> xr.Dataset:
    """``sample_stats``: the ``(chain, draw)`` statistics (``time`` is the coordinate instead)."""
    coords = _draw_coords(layout, chains, draw, time)
    draws = len(coords["draw"])
    descriptions = {**STAT_DESCRIPTIONS, **getattr(layout.kernel, "stat_descriptions", {})}
    stat_vars = {}
    for name, v in stats.items():
        if name == "time" or v.shape[:2] != (chains, draws) or v.ndim != 2:
            continue
        stat_vars[name] = xr.Variable(["chain", "draw"], v, attrs={"description": descriptions.get(name, name)})
    return xr.Dataset(stat_vars, coords={k: coords[k] for k in ("chain", "draw", "time")})


def _prediction_datasets(f, phi, output_site, layout, draw, time, x_eval) -> dict:
    """``predictions`` (``f`` and ``phi``) and ``predictions_constant_data`` (``x_eval``)."""
    coords = _draw_coords(layout, f.shape[0], draw, time)
    pred = {output_site: (["chain", "draw", "eval_point"], f)}
    if phi is not None:
        pred["phi"] = (["chain", "draw", "particle", "unit_point"], phi)
    pc = {**coords, "eval_point": np.arange(f.shape[-1])}
    if phi is not None:
        pc["unit_point"] = np.arange(phi.shape[-1])
    groups = {"predictions": xr.Dataset(pred, coords=pc)}
    groups["predictions"][output_site].attrs["description"] = (
        "network output f_n(x) = n^(1-p) sum_j m_j phi(x; theta_j) at the evaluation points")
    if phi is not None:
        groups["predictions"]["phi"].attrs["description"] = (
            "unit functions phi(x; theta_j) = n^(p-1) df/dm_j at the first unit_point evaluation points")
    if x_eval is not None:
        xe = np.asarray(x_eval)
        groups["predictions_constant_data"] = xr.Dataset(
            {"x_eval": (["eval_point"] + [f"x_eval_dim_{i}" for i in range(xe.ndim - 1)], xe)},
            coords={"eval_point": np.arange(xe.shape[0])})
    return groups


def _data_groups(layout) -> dict:
    """``observed_data`` and ``constant_data`` (those that are not empty)."""
    observed, constant = _model_data(layout.model, layout.model_args, layout.model_kwargs, layout.num_data)
    groups = {}
    if observed:
        groups["observed_data"] = xr.Dataset(observed)
    if constant:
        groups["constant_data"] = xr.Dataset(constant)
    return groups


def _group_attrs(layout, output_site) -> dict:
    attrs = _kernel_attrs(layout.kernel, layout.energy)
    attrs["output_site"] = output_site
    return attrs


def _predictor(layout, x_eval, output_site, output_fn, unit_points):
    """``(out, accepts_masses)`` of the output at ``x_eval`` (``None``: no predictions)."""
    out = _output_function(layout.model, layout.model_args, layout.model_kwargs, x_eval, output_site,
                           output_fn, layout.x_arg, layout.single)
    if out is None:
        return None
    accepts = True if output_fn is not None else bool(getattr(layout.energy, "accepts_masses", False))
    return out, accepts


def _is_streamed(run) -> bool:
    """A :func:`mfsample.simulate` result whose draws were streamed to ``run.output``."""
    return getattr(run, "output", None) is not None and getattr(run, "samples", None) is None


# ---------------------------------------------------------------------------------------------
# the converter
# ---------------------------------------------------------------------------------------------
def to_inference_data(
    run,
    *,
    x_eval=None,
    kernel=None,
    model: Callable | None = None,
    model_args: tuple | None = None,
    model_kwargs: dict | None = None,
    output_site: str = "f",
    output_fn: Callable | None = None,
    x_arg: int | str = 0,
    unit_points: int | None = 16,
    dims: dict | None = None,
    batch_size: int | None = None,
) -> az.InferenceData:
    """Turn an mfsample run into a labelled :class:`arviz.InferenceData` (layout: module docstring).

    :param run: a :class:`numpyro.infer.MCMC` whose kernel is an mfsample kernel, or a
        :func:`mfsample.simulate` result (then give ``kernel=`` the kernel it ran, and
        ``model_args``/``model_kwargs`` if they differ from that kernel's last ``init``).
    :param x_eval: evaluation inputs ``(M, ...)`` replacing the model's input ``x_arg`` (held-out
        inputs drawn from ``nu`` for the norm ``||.||_nu``); ``None``: no ``predictions`` group
        and the diagnostics fall back to ``posterior[output_site]`` at the training inputs.
    :param kernel, model, model_args, model_kwargs: override what the run provides (``model``
        defaults to ``kernel.model``).
    :param output_site: the model's deterministic output site (``"f"``).
    :param output_fn: ``output_fn(particles, masses, x_eval) -> (M,)`` computing the output
        without a model (kernels built from ``energy_fn``; ``particles`` as ``energy_fn`` sees
        them); overrides ``output_site``.
    :param x_arg: position (or keyword) of the model's input; other per-datum arguments (arrays
        with as many rows as the input, e.g. ``y``) are set to ``None`` at the evaluation points.
    :param unit_points: number of leading evaluation points at which the unit functions
        ``phi(x; theta_j)`` are stored (``0``/``None``: none; needs a model taking ``masses``).
    :param dims: ``{site: [dim names after (chain, draw)]}`` overriding the default names.
    :param batch_size: draws evaluated at once when computing predictions (default: memory-bounded).

    A :func:`mfsample.simulate` result whose draws were streamed to a file (``sim.output``; see
    :class:`mfsample.io.DrawWriter`) is opened from that file, lazily; its ``predictions`` are
    computed from the posterior read back in batches of draws (:func:`mfsample.io.open_streamed`).

    Example::

        >>> import jax, mfsample as mf
        >>> from mfsample.diagnostics import to_inference_data
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
        >>> kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
        >>> sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, width=8,
        ...                   num_steps=10, save_every=5, num_chains=2, progress_bar=False)
        >>> x_test, _ = data.sample(jax.random.PRNGKey(2), 5)
        >>> idata = to_inference_data(sim, kernel=kernel, x_eval=x_test)
        >>> dict(idata.posterior["w"].sizes), dict(idata.predictions["f"].sizes)
        ({'chain': 2, 'draw': 2, 'particle': 8, 'input_dim': 3}, {'chain': 2, 'draw': 2, 'eval_point': 5})
    """
    if _is_streamed(run):  # the draws are in a netCDF file: open it, predictions by draw batches
        from ..io import open_streamed

        if dims is not None:
            raise ValueError("dims are fixed when the draws are written (mfsample.io.DrawWriter(dims=...)); "
                             f"{run.output} already has its own")
        return open_streamed(run, x_eval=x_eval, kernel=kernel, model=model, model_args=model_args,
                             model_kwargs=model_kwargs, output_site=output_site, output_fn=output_fn,
                             x_arg=x_arg, unit_points=unit_points, batch_size=batch_size)
    samples, stats, kernel, model_args, model_kwargs, single = _unpack_run(
        run, kernel, model_args, model_kwargs)
    layout = _layout(samples, kernel, model, model_args, model_kwargs, dims, x_arg, single)
    chains, draws = next(iter(samples.values())).shape[:2]
    draw = np.arange(draws)
    time = _times(stats, layout.step_size, chains, draws)

    groups = {"posterior": _posterior_dataset(samples, layout, draw, time),
              "sample_stats": _sample_stats_dataset(stats, layout, chains, draw, time)}
    predictor = _predictor(layout, x_eval, output_site, output_fn, unit_points)
    if predictor is not None:
        out, accepts = predictor
        params = {k: samples[k] for k in layout.particle_sites}
        f, phi = _evaluate(out, params, samples.get("masses"), layout.width, layout.exponent,
                           int(unit_points or 0), accepts, batch_size)
        groups.update(_prediction_datasets(f, phi, output_site, layout, draw, time, x_eval))
    groups.update(_data_groups(layout))
    attrs = _group_attrs(layout, output_site)
    for ds in groups.values():
        ds.attrs.update(attrs)
    return az.InferenceData(**groups)
