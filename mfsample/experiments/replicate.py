"""One experiment across widths, with independent replicas: the input of the fluctuation and chaos diagnostics.

``replicate(kernel_factory, model_args, widths=[...], num_chains=R, ...)`` runs, for each width
``n``, ``R`` vectorised replicas of the ``n``-particle system with :func:`mfsample.simulate`,
prepends the initial state (``t = 0``: particles iid from ``mu0``) and converts the run with
:func:`mfsample.diagnostics.to_inference_data`.  It returns ``{n: InferenceData}``, what
:func:`~mfsample.diagnostics.fluctuations` and :func:`~mfsample.diagnostics.chaos` take.

With ``grid=`` (numeric hyper-parameters of the kernel, e.g. ``{"temperature": [1e-3, 1e-2]}``)
each width runs every configuration of the grid x ``R`` replicas as one :func:`mfsample.sweep`
(the width fixes the shapes, so there is one sweep per width), and each ``InferenceData`` has a
``config`` dimension whose coordinates are the swept values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import sweeps
from ..inference_data import to_inference_data
from ..kernels.contract import names
from ..simulate import Simulation, simulate
from ..sweeps import Sweep, as_grid, sweep

__all__ = ["replicate", "initial_draw", "initial_sweep_draw"]


def _draw_axis(x, num_chains: int, lead: int):
    """``(*lead axes, [chain,] ...) -> (*lead axes, chain, 1, ...)``: a state field as one draw."""
    x = np.asarray(x)
    if num_chains == 1:
        x = np.expand_dims(x, lead)
    return np.expand_dims(x, lead + 1)


def initial_draw(kernel, rng_key, model_args, model_kwargs, num_chains):
    """The kernel's initial state and its draw at ``t = 0``, shaped like one ``simulate`` draw.

    Uses the keys ``simulate`` uses (``jax.random.split(rng_key, num_chains)``), so continuing
    from this state reproduces ``simulate(kernel, rng_key, ...)`` draw for draw.
    """
    keys = jax.random.split(rng_key, num_chains) if num_chains > 1 else rng_key
    model_args, model_kwargs = tuple(model_args), dict(model_kwargs)
    energy = kernel.build_energy(model_args, model_kwargs, num_replicas=num_chains)
    post = kernel.draw_fn(energy, model_args, model_kwargs)

    def start(k):
        # the data are closed over (constants, not tracers), so what `init` stores on the kernel
        # (its energy, step function and arguments) holds no tracer after this call
        state = kernel.init(k, 0, None, model_args, model_kwargs)
        return state, (jax.vmap(post) if num_chains > 1 else post)(getattr(state, kernel.sample_field))

    state, sample = jax.jit(start)(keys)  # one compiled call instead of thousands of eager ops
    stats = {f: getattr(state, f) for f in names(kernel.statistics)}

    def chain_draw(x):  # -> (chain, 1, ...)
        return _draw_axis(x, num_chains, 0)

    return state, jax.tree.map(chain_draw, sample), {k: chain_draw(v) for k, v in stats.items()}


def initial_sweep_draw(kernel, rng_key, grid, model_args, model_kwargs, num_chains, *, common_keys=False):
    """The initial states of every configuration of a sweep and their draw at ``t = 0``, shaped
    like one :func:`mfsample.sweep` draw ``(config, chain, 1, ...)``: :func:`mfsample.sweeps.initial_draw`
    with this module's argument order (continuing from these states with ``init_state=``
    reproduces the sweep draw for draw)."""
    return sweeps.initial_draw(
        kernel,
        rng_key,
        *tuple(model_args),
        grid=grid,
        num_chains=num_chains,
        common_keys=common_keys,
        **dict(model_kwargs),
    )


def _prepend(run, sample0, stats0, axis: int):
    """``run`` (a Simulation or a Sweep) with the draw at ``t = 0`` before its draws (``axis``: the draw axis)."""
    samples = jax.tree.map(lambda a, b: np.concatenate([a, b], axis=axis), sample0, run.samples)
    stats = {k: np.concatenate([stats0[k], v], axis=axis) for k, v in run.stats.items()}
    time = np.asarray(run.time)
    time = np.concatenate([np.zeros(time.shape[:-1] + (1,)), time], axis=-1)
    return run._replace(samples=samples, stats=stats, time=time)


def _simulate_width(kernel, key, model_args, kwargs, include_initial, **run) -> Simulation:
    """One width without a grid: ``simulate``, with the draw at ``t = 0`` prepended."""
    if not include_initial:
        return simulate(kernel, key, *model_args, progress_bar=False, **run, **kwargs)
    state, sample0, stats0 = initial_draw(kernel, key, model_args, kwargs, run["num_chains"])
    sim = simulate(kernel, key, *model_args, init_state=state, progress_bar=False, **run, **kwargs)
    return _prepend(sim, sample0, stats0, axis=1)


def _sweep_width(kernel, key, model_args, kwargs, include_initial, grid, common_keys, **run) -> Sweep:
    """One width with a grid: one ``sweep``, with the draw at ``t = 0`` prepended."""
    options = dict(grid=grid, common_keys=common_keys, progress_bar=False, **run)
    if not include_initial:
        return sweep(kernel, key, *model_args, **options, **kwargs)
    state, sample0, stats0 = initial_sweep_draw(
        kernel, key, grid, model_args, kwargs, run["num_chains"], common_keys=common_keys
    )
    return _prepend(sweep(kernel, key, *model_args, init_state=state, **options, **kwargs), sample0, stats0, axis=2)


def replicate(
    kernel_factory: Callable,
    model_args: Sequence = (),
    *,
    widths: Sequence[int],
    num_chains: int,
    num_steps: int,
    save_every: int = 1,
    model_kwargs: dict | None = None,
    rng_key=None,
    x_eval=None,
    include_initial: bool = True,
    width_kwarg: str = "width",
    grid=None,
    common_keys: bool = False,
    progress_bar: bool = True,
    **convert_kwargs,
) -> dict:
    """Run ``kernel_factory(n)`` for every width with ``num_chains`` vectorised replicas.

    :param kernel_factory: ``n -> kernel`` (e.g. ``lambda n: mf.WassersteinFlow(model, step_size=0.1)``).
        For a kernel built from a model, ``width=n`` is passed to the model (keyword
        ``width_kwarg``); a kernel built from ``energy_fn`` takes its width from the factory.
    :param model_args: the model's positional arguments (data), the same for every width.
    :param widths: the widths ``n``.
    :param num_chains: independent replicas ``R`` of each particle system (>= 2 for the diagnostics).
    :param num_steps, save_every: as in :func:`mfsample.simulate` (draws at ``t = k * save_every * dt``).
    :param model_kwargs: further keyword arguments of the model (without the width).
    :param rng_key: PRNG key (default ``PRNGKey(0)``); width ``n`` uses ``fold_in(rng_key, n)``,
        so adding a width does not change the others.
    :param x_eval: evaluation inputs passed to :func:`~mfsample.diagnostics.to_inference_data`.
    :param include_initial: prepend the draw at ``t = 0`` (needed for the ``static`` comparison).
    :param grid: numeric hyper-parameters of the kernel to sweep (a :func:`mfsample.sweep` grid:
        ``{name: values}``, a list of points, :func:`mfsample.sweeps.product` /
        :func:`~mfsample.sweeps.zipped`); ``None``: the factory's kernel alone.  With a grid,
        width ``n`` runs ``sweep(kernel_factory(n), fold_in(rng_key, n), ..., grid=grid)``:
        configuration ``c`` uses ``jax.random.split(fold_in(rng_key, n), num_configs)[c]``.
    :param common_keys: with a grid, give every configuration the key of its width (the same
        initial particles and noise: common random numbers).
    :param convert_kwargs: further arguments of ``to_inference_data`` (``output_fn``, ``unit_points``...).
    :returns: ``{n: arviz.InferenceData}`` in increasing ``n``; with a grid its groups have a
        ``config`` dimension after ``(chain, draw)``, with one coordinate per swept hyper-parameter.

    Example::

        >>> import jax, mfsample as mf
        >>> from mfsample.experiments.replicate import replicate
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
        >>> runs = replicate(lambda n: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1),
        ...                  (data.x, data.y), widths=[8, 16], num_chains=3, num_steps=10,
        ...                  save_every=5, x_eval=data.x[:4], progress_bar=False)
        >>> sorted(runs), runs[16].posterior["time"].values.tolist()
        ([8, 16], [0.0, 0.5, 1.0])
        >>> swept = replicate(lambda n: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1),
        ...                   (data.x, data.y), widths=[8], num_chains=3, num_steps=10, save_every=5,
        ...                   grid={"step_size": [0.1, 0.2]}, progress_bar=False)
        >>> dict(swept[8].posterior["w"].sizes), swept[8].posterior["step_size"].values.tolist()
        ({'chain': 3, 'draw': 3, 'config': 2, 'particle': 8, 'input_dim': 3}, [0.1, 0.2])
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    widths = sorted({int(n) for n in widths})
    if not widths or widths[0] < 1:
        raise ValueError(f"widths must be positive integers, got {widths}")
    grid = None if grid is None else as_grid(grid)
    base_kwargs = dict(model_kwargs or {})
    run = dict(num_steps=num_steps, save_every=save_every, num_chains=num_chains)
    bar = tqdm(widths, desc="widths") if progress_bar else None
    iterator = widths if bar is None else bar
    runs = {}
    for n in iterator:
        if bar is not None:
            bar.set_postfix(width=n)
        kernel = kernel_factory(n)
        kwargs = dict(base_kwargs)
        if kernel.model is not None:
            kwargs[width_kwarg] = n
        key = jax.random.fold_in(rng_key, n)
        if grid is None:
            sim = _simulate_width(kernel, key, model_args, kwargs, include_initial, **run)
            runs[n] = to_inference_data(
                sim, kernel=kernel, model_args=tuple(model_args), model_kwargs=kwargs, x_eval=x_eval, **convert_kwargs
            )
        else:
            swept = _sweep_width(kernel, key, model_args, kwargs, include_initial, grid, common_keys, **run)
            runs[n] = to_inference_data(swept, x_eval=x_eval, **convert_kwargs)
    return runs
