"""Runs of the particle kernels as labelled ``arviz.InferenceData``.

A run is a :class:`numpyro.infer.MCMC` whose kernel implements
:class:`~mfsample.kernels.contract.ParticleDynamics`, or a :class:`mfsample.Simulation` (the
result of :func:`mfsample.simulate`), held in memory or streamed to a netCDF file.  The groups
and their dims are those of :mod:`mfsample.inference_data.layout`; the predictions are computed by
:mod:`mfsample.inference_data.predict` (from the draws in memory, or from a streamed file in
batches of draws, :mod:`mfsample.inference_data.stream`).  Everything round-trips through
``to_netcdf`` / ``arviz.from_netcdf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import arviz as az
import numpy as np
from numpyro.infer import MCMC

from .. import validation
from ..kernels import health
from .configs import is_sweep, stack_configs
from .layout import (
    build_layout,
    check_kernel,
    data_groups,
    group_attrs,
    posterior_dataset,
    prediction_datasets,
    sample_stats_dataset,
    times,
)
from .predict import evaluate, predictor
from .stream import count_draws, prediction_batches, stored_layout

__all__ = ["to_inference_data", "open_streamed"]

#: the fields of :class:`mfsample.Simulation` read here (it is recognised by them: this package
#: does not import :mod:`mfsample.simulate`, which imports the streaming writer)
_SIMULATION_FIELDS = frozenset({"samples", "stats", "kernel", "model_args", "model_kwargs", "output"})


class _Run(NamedTuple):
    """What a run provides: draws (``None`` when streamed to ``output``), kernel and arguments."""

    samples: Any
    stats: Any
    kernel: Any
    model_args: tuple
    model_kwargs: dict
    output: str | None


def _is_simulation(run) -> bool:
    return isinstance(run, tuple) and _SIMULATION_FIELDS <= set(getattr(type(run), "_fields", ()))


def _unpack_run(run, kernel, model_args, model_kwargs) -> _Run:
    """The draws, kernel and model arguments of ``run``; those given override the run's, and the
    model arguments default to those of the kernel's last ``init``."""
    if isinstance(run, MCMC):  # NumPyro has no public accessor for the arguments of run()
        kernel = run.sampler if kernel is None else kernel
        samples, stats = run.get_samples(group_by_chain=True), run.get_extra_fields(group_by_chain=True)
        args, kwargs, output = run._args, run._kwargs, None
    elif _is_simulation(run):
        kernel = run.kernel if kernel is None else kernel
        samples, stats, args, kwargs, output = run.samples, run.stats, run.model_args, run.model_kwargs, run.output
    else:
        raise TypeError(
            "run must be a numpyro MCMC object or an mfsample.simulate result (mfsample.Simulation), "
            f"got {type(run).__name__}"
        )
    check_kernel(kernel)
    if kernel is None:
        raise TypeError(
            "this run has no kernel (its kernel is None), and the layout (particle sites, width, "
            "statistics, attributes) is read from it: pass kernel=<the mfsample kernel it was run with>"
        )
    args = args if model_args is None else model_args
    kwargs = kwargs if model_kwargs is None else model_kwargs
    args = (kernel.model_args if kernel is not None else ()) if args is None else args
    kwargs = (kernel.model_kwargs if kernel is not None else {}) if kwargs is None else kwargs
    return _Run(samples, stats, kernel, tuple(args), dict(kwargs), output)


def _as_draws(samples, stats):
    """``(samples, stats, single)`` as dicts of numpy arrays (``single``: one array of particles,
    from an ``energy_fn`` with a single prior, stored as ``theta``); nested stats are left out."""
    single = not isinstance(samples, dict)
    samples = {"theta": samples} if single else samples
    samples = {k: np.asarray(v) for k, v in samples.items()}
    stats = {k: np.asarray(v) for k, v in dict(stats).items() if not isinstance(v, dict)}
    return samples, stats, single


def _inference_data(groups, attrs) -> az.InferenceData:
    for ds in groups.values():
        ds.attrs.update(attrs)
    return az.InferenceData(**groups)


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
    """Turn an mfsample run into a labelled :class:`arviz.InferenceData` (groups and dims:
    :mod:`mfsample.inference_data.layout`).

    :param run: a :class:`numpyro.infer.MCMC` whose kernel is an mfsample kernel, a
        :func:`mfsample.simulate` result, or a :func:`mfsample.sweep` result (its configurations
        stacked along a ``config`` dimension with the swept values as coordinates:
        :mod:`mfsample.inference_data.configs`).
    :param x_eval: evaluation inputs ``(M, ...)`` replacing the model's input ``x_arg`` (held-out
        inputs drawn from ``nu`` for the norm ``||.||_nu``); ``None``: no ``predictions`` group
        and the diagnostics fall back to ``posterior[output_site]`` at the training inputs.
    :param kernel, model, model_args, model_kwargs: override what the run provides (``model``
        defaults to ``kernel.model``; the arguments to those the run was given, else to those of
        the kernel's last ``init``).
    :param output_site: the model's deterministic output site (``"f"``).
    :param output_fn: ``output_fn(particles, masses, x_eval) -> (M,)`` computing the output
        without a model (kernels built from ``energy_fn``; ``particles`` as ``energy_fn`` sees
        them); overrides ``output_site``.
    :param x_arg: position (or keyword) of the model's input; other per-datum arguments (arrays
        with as many rows as the input, e.g. ``y``) are set to ``None`` at the evaluation points.
    :param unit_points: number (``>= 0``) of leading evaluation points at which the unit functions
        ``phi(x; theta_j)`` are stored (``0``/``None``: none; needs a model taking ``masses``).
    :param dims: ``{site: [dim names after (chain, draw)]}`` overriding the default names.
    :param batch_size: draws evaluated at once when computing predictions (default: memory-bounded).

    An ``MCMC`` run is checked as :func:`mfsample.simulate` checks its runs: divergences, Metropolis
    acceptance near 0, mass ESS near 1 and collapsed particle systems give ``RuntimeWarning`` s
    (:mod:`mfsample.kernels.health`; ``MCMC`` offers kernels no hook after a run).

    A :func:`mfsample.simulate` result whose draws were streamed to a file (``sim.output``; see
    :class:`mfsample.io.DrawWriter`) is opened from that file, lazily (:func:`open_streamed`).

    Example::

        >>> import jax, mfsample as mf
        >>> from mfsample.inference_data import to_inference_data
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
        >>> kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
        >>> sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, width=8,
        ...                   num_steps=10, save_every=5, num_chains=2, progress_bar=False)
        >>> x_test, _ = data.sample(jax.random.PRNGKey(2), 5)
        >>> idata = to_inference_data(sim, x_eval=x_test)
        >>> dict(idata.posterior["w"].sizes), dict(idata.predictions["f"].sizes)
        ({'chain': 2, 'draw': 2, 'particle': 8, 'input_dim': 3}, {'chain': 2, 'draw': 2, 'eval_point': 5})
    """
    batch_size = validation.optional_positive_int("batch_size", batch_size)
    options = dict(x_eval=x_eval, model=model, output_site=output_site, output_fn=output_fn, x_arg=x_arg)
    options.update(unit_points=unit_points, batch_size=batch_size)
    if is_sweep(run):  # one conversion per configuration, stacked along `config`
        more = dict(kernel=kernel, model_args=model_args, model_kwargs=model_kwargs, dims=dims)
        return stack_configs(run, lambda sim: to_inference_data(sim, **options, **more))
    r = _unpack_run(run, kernel, model_args, model_kwargs)
    if isinstance(run, MCMC):  # simulate checks its runs itself; MCMC offers kernels no hook after a run
        _warn_if_degenerate(run, r)
    if r.samples is None and r.output is not None:  # streamed: open the file
        if dims is not None:
            raise ValueError(
                "dims are fixed when the draws are written (mfsample.io.DrawWriter(dims=...)); "
                f"{r.output} already has its own: leave dims out"
            )
        return open_streamed(r.output, kernel=r.kernel, model_args=r.model_args, model_kwargs=r.model_kwargs, **options)
    return _from_draws(r, dims, **options)


def _check_x_eval(x_eval, layout):
    """``x_eval``: finite numbers with a non-empty leading evaluation-point axis, shaped like the
    model's input after its data axis (when the input is known); returns it."""
    if x_eval is None:
        return None
    try:
        xe = np.asarray(x_eval)
    except (TypeError, ValueError) as err:
        raise TypeError(f"x_eval must be an array of inputs (eval_point, ...), got {type(x_eval).__name__}") from err
    if xe.dtype.kind not in "iuf" or xe.ndim == 0:
        raise TypeError(
            f"x_eval must be an array of real inputs (eval_point, ...), got dtype {xe.dtype}, shape {xe.shape}"
        )
    if xe.shape[0] == 0:
        raise ValueError(f"x_eval has no evaluation point (shape {xe.shape}): give at least one input, or None")
    if not np.all(np.isfinite(xe)):
        raise ValueError("x_eval contains non-finite values (NaN or inf): give finite evaluation inputs")
    if layout.x_arg is not None:
        x = layout.model_args[layout.x_arg] if isinstance(layout.x_arg, int) else layout.model_kwargs[layout.x_arg]
        if np.shape(x)[1:] != xe.shape[1:]:
            raise ValueError(
                f"x_eval has shape {xe.shape} but the model's input has shape {np.shape(x)}: give x_eval of "
                f"shape (num_points,) + {tuple(np.shape(x)[1:])}"
            )
    return x_eval


def _warn_if_degenerate(mcmc: MCMC, r: _Run) -> None:
    """The warnings :func:`mfsample.simulate` gives after a run (:mod:`mfsample.kernels.health`),
    for an ``MCMC`` run: from its extra fields and its last state."""
    state = mcmc.last_state
    if state is None or not hasattr(state, "divergence_step"):
        return
    stats = {k: np.asarray(v) for k, v in dict(r.stats).items() if not isinstance(v, dict)}
    diverged = np.any(np.asarray(state.divergence_step) >= 0)
    scale = health.data_scale(r.model_args, r.model_kwargs) if diverged else None  # said on divergence
    kernel = r.kernel
    messages = health.run_messages(
        stats, state, sample_field=kernel.sample_field, step_size=kernel.step_size, scale=scale
    )
    health.warn(messages, stacklevel=3)


def _from_draws(r: _Run, dims, *, x_eval, model, output_site, output_fn, x_arg, unit_points, batch_size):
    """The groups of a run whose draws are in memory."""
    samples, stats, single = _as_draws(r.samples, r.stats)
    kw = dict(model=model, model_args=r.model_args, model_kwargs=r.model_kwargs, dims=dims, x_arg=x_arg)
    layout = build_layout(samples, r.kernel, single=single, **kw)
    chains, draws = next(iter(samples.values())).shape[:2]
    draw, time = np.arange(draws), times(stats, layout.step_size, draws)
    groups = {
        "posterior": posterior_dataset(samples, layout, draw, time),
        "sample_stats": sample_stats_dataset(stats, layout, chains, draw, time),
    }
    x_eval = _check_x_eval(x_eval, layout)
    pred = predictor(layout, x_eval, output_site, output_fn, unit_points)
    if pred is not None:
        f, phi = evaluate(pred, layout, samples, batch_size)
        groups.update(prediction_datasets(f, phi, output_site, layout, draw, time, x_eval))
    groups.update(data_groups(layout))
    return _inference_data(groups, group_attrs(layout, output_site))


def open_streamed(
    run,
    *,
    x_eval=None,
    kernel=None,
    model=None,
    model_args=None,
    model_kwargs=None,
    output_site: str = "f",
    output_fn=None,
    x_arg=0,
    unit_points: int | None = 16,
    batch_size: int | None = None,
    batch_draws: int | None = None,
) -> az.InferenceData:
    """``InferenceData`` of a streamed :func:`mfsample.simulate` result (``run.output`` set): the
    file opened lazily, plus ``predictions`` at ``x_eval`` computed from the posterior read back in
    batches of draws (held in memory; the file is not modified).  ``run`` may also be the path
    (then give the ``kernel``; the model arguments default to those of its last ``init``)."""
    if isinstance(run, (str, os.PathLike)):
        check_kernel(kernel)
        path = run
    else:
        r = _unpack_run(run, kernel, model_args, model_kwargs)
        if r.output is None:
            raise ValueError(
                "this run was not streamed to a file (its output is None); convert it with to_inference_data"
            )
        path, kernel, model_args, model_kwargs = r.output, r.kernel, r.model_args, r.model_kwargs
    count_draws(path)  # a clear error for a file that is not a streamed run
    idata = az.from_netcdf(str(path))
    layout, post_attrs = stored_layout(path, kernel, model, model_args, model_kwargs, x_arg)
    x_eval = _check_x_eval(x_eval, layout)
    pred = predictor(layout, x_eval, output_site, output_fn, unit_points)
    parts = [] if pred is None else list(prediction_batches(path, layout, pred, batch_size, batch_draws))
    if not parts:
        return idata
    f = np.concatenate([p[2] for p in parts], axis=1)
    phi = None if parts[0][3] is None else np.concatenate([p[3] for p in parts], axis=1)
    time = np.concatenate([p[4] for p in parts])
    groups = prediction_datasets(f, phi, output_site, layout, np.arange(f.shape[1]), time, x_eval)
    for ds in groups.values():
        ds.attrs.update({**post_attrs, "output_site": output_site})
    kept = {g: idata[g] for g in idata.groups() if g not in groups}
    return az.InferenceData(**kept, **groups)
