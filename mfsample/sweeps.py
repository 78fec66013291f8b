"""Studies in one compiled programme: a grid of hyper-parameter values x replicas, ``vmap``-ped.

``mf.sweep(kernel, key, *args, grid={"temperature": [1e-4, 1e-3, 1e-2]}, num_chains=4, num_steps=T)``
runs every configuration of the grid (each a copy of ``kernel`` with those numeric
hyper-parameters, :meth:`~mfsample.kernels.contract.SweepableDynamics.replace`), each with
``num_chains`` replicas, as one ``lax.scan`` whose step is ``vmap``-ped over a leading
configuration axis.  The values are arguments of the compiled programme (hyper-parameters as
data, :mod:`mfsample.kernels.parameters`): a second sweep with other values of the same
parameters, or a sweep of another kernel of the same structure, compiles nothing.  On a CPU,
``config_batch="auto"`` advances the configurations in cache-sized batches, one batch after
another inside the same programme (a wide ``vmap`` is slower there than one configuration after
another); the draws do not depend on the batch size.

Configuration ``c`` is the run ``simulate(kernel.replace(**grid.points[c]), keys[c], ...)`` with
``keys = jax.random.split(key, num_configs)`` (``common_keys=True``: every configuration uses
``key``, the same initial particles and noise: common random numbers); ``Sweep.config(c)``
returns it as a :class:`~mfsample.simulate.Simulation`.  The width and the data fix the shapes,
so a width x temperature study runs one sweep per width
(:func:`mfsample.experiments.replicate` does so).

The configuration axis is embarrassingly parallel: ``devices=`` shards it (``shard="configs"``)
or the chains or particles over devices and hosts (:mod:`mfsample.sharding`).

Theory: ``docs/howto/sweeps.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from . import validation
from .kernels import health, programs
from .kernels.base import split_static_kwargs
from .kernels.contract import SweepableDynamics, names
from .kernels.parameters import as_arrays, common_zeros, specialise
from .kernels.start import Fresh, start_states
from .sharding import SHARD_MODES, make_mesh
from .simulate import (
    Draws,
    Runner,
    Simulation,
    check_counts,
    check_kernel,
    initial_particles,
    make_placement,
    replicate_data,
    run_steps,
)

__all__ = [
    "Grid",
    "product",
    "zipped",
    "as_grid",
    "Sweep",
    "sweep",
    "initial_draw",
    "SWEEP_SHARD_MODES",
    "CPU_BATCH_BYTES",
]

#: how :func:`sweep` may lay its state over devices
SWEEP_SHARD_MODES = SHARD_MODES + ("configs",)


class Grid(NamedTuple):
    """The configurations of a sweep: ``points[c]`` is ``{name: value}`` of configuration ``c``.

    Build one with :func:`product` (every combination) or :func:`zipped` (the i-th values
    together); :func:`sweep` also takes a dict (a product) or a list of dicts (the points).
    """

    names: tuple
    points: tuple

    @property
    def num_configs(self) -> int:
        return len(self.points)

    def values(self, name: str) -> np.ndarray:
        """The value of ``name`` in every configuration: ``(num_configs,)`` (``(num_configs, 2)``
        for a game's per-player pair)."""
        values = [p[name] for p in self.points]
        if any(isinstance(v, tuple) for v in values):  # a number given for both players counts twice
            values = [v if isinstance(v, tuple) else (v, v) for v in values]
        return np.asarray(values, dtype=np.float64)

    def coords(self) -> dict:
        """``{name: values}`` of every swept hyper-parameter (coordinates of the ``config`` axis)."""
        return {name: self.values(name) for name in self.names}

    def label(self, c: int) -> str:
        """``"temperature=0.001, step_size=0.1"`` for configuration ``c``."""
        return ", ".join(f"{k}={_show(v)}" for k, v in self.points[c].items())


def _show(value) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(f"{float(v):.4g}" for v in value) + ")"
    return f"{float(value):.4g}"


def _axis(name, values) -> list:
    values = list(values) if isinstance(values, (Sequence, np.ndarray, jax.Array)) else None
    if not values:
        raise ValueError(f"grid axis {name!r} must be a non-empty sequence of values, got {values!r}")
    return [tuple(v) if isinstance(v, (tuple, list)) else v for v in values]


def product(**axes) -> Grid:
    """Every combination of the values of ``axes`` (the first axis varies slowest), e.g.
    ``product(temperature=[1e-3, 1e-2], step_size=[0.1, 0.2])`` has 4 configurations."""
    if not axes:
        raise ValueError("give at least one hyper-parameter to sweep, e.g. product(temperature=[...])")
    lists = {k: _axis(k, v) for k, v in axes.items()}
    points = tuple(dict(zip(lists, combo)) for combo in itertools.product(*lists.values()))
    return Grid(tuple(lists), points)


def zipped(**axes) -> Grid:
    """The i-th values of every axis together (all of one length), e.g.
    ``zipped(step_size=[0.1, 0.2], temperature=[1e-3, 2e-3])`` has 2 configurations."""
    if not axes:
        raise ValueError("give at least one hyper-parameter to sweep, e.g. zipped(step_size=[...])")
    lists = {k: _axis(k, v) for k, v in axes.items()}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped axes must have one length, got {lengths}")
    points = tuple(dict(zip(lists, combo)) for combo in zip(*lists.values()))
    return Grid(tuple(lists), points)


def as_grid(grid) -> Grid:
    """A :class:`Grid` from a grid, a dict of axes (a :func:`product`) or a list of points."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, Mapping):
        return product(**grid)
    if isinstance(grid, Sequence) and grid and all(isinstance(p, Mapping) for p in grid):
        names = tuple(grid[0])
        if any(tuple(p) != names for p in grid):
            raise ValueError("every point of a grid must set the same hyper-parameters, in the same order")
        return Grid(names, tuple({k: _axis(k, [v])[0] for k, v in p.items()} for p in grid))
    raise TypeError(
        "grid must be a dict {name: values} (every combination), a list of dicts (the points), "
        f"or mfsample.sweep.product / zipped; got {type(grid).__name__}"
    )


class Sweep(NamedTuple):
    """Result of :func:`sweep`: :class:`~mfsample.simulate.Simulation`'s fields with a leading
    configuration axis.

    - **samples** – dict ``site -> (num_configs, num_chains, num_draws, ...)``.
    - **stats** – dict ``field -> (num_configs, num_chains, num_draws)``.
    - **time** – ``(num_configs, num_draws)`` (each configuration has its own ``step_size``).
    - **last_state** – the final states (leading configuration axis, then chains); pass it back
      as ``init_state`` to continue the sweep.
    - **first_divergence** – ``(num_configs, num_chains)`` first diverging step (``-1``: none).
    - **grid** – the :class:`Grid`; **kernels** – ``kernel.replace(**point)`` of every configuration.
    """

    samples: dict
    stats: dict
    time: np.ndarray
    last_state: Any
    first_divergence: np.ndarray
    grid: Grid
    kernel: Any = None
    model_args: tuple = ()
    model_kwargs: dict | None = None

    @property
    def num_configs(self) -> int:
        return self.grid.num_configs

    @property
    def kernels(self) -> list:
        return [self.kernel.replace(**p) for p in self.grid.points]

    def config(self, c: int) -> Simulation:
        """Configuration ``c`` as the :class:`~mfsample.simulate.Simulation` of its kernel."""
        c = validation.positive_int("config", c, minimum=0)
        if c >= self.num_configs:
            raise IndexError(f"config {c} out of range: the sweep has {self.num_configs} configurations")
        return Simulation(
            samples=jax.tree.map(lambda x: x[c], self.samples),
            stats={k: v[c] for k, v in self.stats.items()},
            time=self.time[c],
            last_state=jax.tree.map(lambda x: x[c], self.last_state),
            first_divergence=self.first_divergence[c],
            kernel=self.kernel.replace(**self.grid.points[c]),
            model_args=self.model_args,
            model_kwargs=dict(self.model_kwargs or {}),
        )

    def simulations(self) -> list[Simulation]:
        """Every configuration as a :class:`~mfsample.simulate.Simulation`."""
        return [self.config(c) for c in range(self.num_configs)]


def sweep(
    kernel,
    rng_key,
    *model_args,
    grid,
    num_steps: int,
    save_every: int = 1,
    num_chains: int = 1,
    init_params=None,
    init_state=None,
    common_keys: bool = False,
    progress_bar: bool = True,
    collect_deterministic: bool = True,
    chunk_size: int | None = None,
    devices=None,
    shard: str = "auto",
    config_batch: int | str = "auto",
    **model_kwargs,
) -> Sweep:
    """Run ``kernel`` at every configuration of ``grid`` x ``num_chains`` replicas in one compiled scan.

    :param kernel: an mfsample kernel whose numeric hyper-parameters are data
        (:class:`~mfsample.kernels.contract.SweepableDynamics`: every kernel of the package).
    :param rng_key: PRNG key; configuration ``c`` uses ``jax.random.split(rng_key, num_configs)[c]``
        (or ``rng_key`` itself with ``common_keys``), split over chains as :func:`~mfsample.simulate`.
    :param grid: ``{name: values}`` (every combination), a list of ``{name: value}`` points, or
        :func:`product` / :func:`zipped`; names among ``kernel.parameter_names``.  Every point is
        validated as the kernel's constructor validates it.
    :param num_steps: as for :func:`~mfsample.simulate`, and so are ``save_every``, ``num_chains``,
        ``init_params`` (shared by every configuration), ``progress_bar``, ``collect_deterministic``
        and ``chunk_size``.
    :param init_state: a previous ``Sweep.last_state`` (same grid size, chains and shapes) to
        continue from; not together with ``init_params``.
    :param common_keys: give every configuration the same key (same initial particles and noise).
    :param devices: shard over devices (:mod:`mfsample.sharding`); ``shard`` is ``"configs"``,
        ``"chains"``, ``"particles"`` or ``"auto"`` (configurations when they divide evenly over
        the devices, else chains, else particles).
    :param config_batch: how many configurations one step advances together (``vmap``): a
        positive int (``num_configs`` or more: all at once), or ``"auto"``: all at once on an
        accelerator or when sharded; on a CPU, as many as keep one batch's hidden activations
        within :data:`CPU_BATCH_BYTES` (the rest run one batch after another inside the same
        compiled programme, each batch through all its steps).  The draws do not depend on it.
    :returns: a :class:`Sweep`; :func:`mfsample.to_inference_data` turns it into InferenceData
        with a ``config`` dimension whose coordinates are the swept values.
    """
    num_steps, save_every, num_chains, chunk_size = check_counts(num_steps, save_every, num_chains, chunk_size)
    config_batch = _check_config_batch(config_batch)
    if init_state is None or rng_key is not None:
        validation.prng_key("rng_key", rng_key)
    setup = _setup(kernel, grid, model_args, model_kwargs, num_chains)
    grid, kernels, values, pattern, energy, start = setup
    array_kwargs, static_kwargs = start.array_kwargs, start.static_kwargs
    if init_state is None:
        state = _fresh_states(setup, rng_key, init_params, common_keys, model_args, model_kwargs)
    else:
        if init_params is not None:
            raise ValueError("give init_params (a fresh start) or init_state (a continuation), not both")
        state = _check_init_state(start, init_state, values, model_args, model_kwargs, array_kwargs)
    placement = None
    if devices is not None:
        placement, state = _placement(state, devices, shard, grid.num_configs, num_chains, energy.width)
        model_args, array_kwargs = replicate_data(placement, model_args, array_kwargs)
    run = Runner(
        kernel,
        num_chains,
        static_kwargs,
        collect_deterministic,
        placement,
        tuple(model_args),
        array_kwargs,
        values,
        pattern,
        grid.num_configs,
        _config_batch(config_batch, energy, grid.num_configs, num_chains, placement),
    )
    draws = Draws(num_steps // save_every, draw_axis=2)
    state = run_steps(
        run, state, draws, num_steps, save_every, chunk_size, progress_bar, f"sweep {type(kernel).__name__}"
    )
    first = _check_health(kernels, grid, state, draws, model_args, model_kwargs)
    return Sweep(
        samples=draws.samples,
        stats=draws.stats,
        time=draws.time(),
        last_state=state,
        first_divergence=first,
        grid=grid,
        kernel=kernel,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs),
    )


class _Setup(NamedTuple):
    grid: Grid
    kernels: list  # kernel.replace(**point) of every configuration
    values: dict  # {name: (num_configs, ...)} arrays
    pattern: tuple  # the zeros shared by every configuration
    energy: Any
    start: _Start


def _setup(kernel, grid, model_args, model_kwargs, num_chains) -> _Setup:
    """Check the kernel and every point of the grid; the values, the energy and the compiled start."""
    check_kernel(kernel)
    _check_sweepable(kernel)
    grid = as_grid(grid)
    kernels = [kernel.replace(**p) for p in grid.points]  # validates every point
    values = jax.tree.map(lambda *v: jnp.stack(v), *[as_arrays(k.parameters) for k in kernels])
    pattern = common_zeros([k.parameters for k in kernels])
    energy = kernel.build_energy(model_args, model_kwargs, num_replicas=num_chains)  # validates the data
    array_kwargs, static_kwargs = split_static_kwargs(model_kwargs)
    start = _Start(kernel, energy, grid.num_configs, num_chains, static_kwargs, pattern, array_kwargs)
    return _Setup(grid, kernels, values, pattern, energy, start)


def _fresh_states(setup: _Setup, rng_key, init_params, common_keys, model_args, model_kwargs):
    """The initial state of every configuration and chain (``(config, [chain,] ...)``)."""
    start, energy = setup.start, setup.energy
    keys = _config_keys(rng_key, setup.grid.num_configs, start.num_chains, common_keys)
    init_params = initial_particles(energy, init_params, start.num_chains)
    masses = start.kernel.initial_masses(energy, model_kwargs)
    run = start.compiled(init_params)
    return run(setup.values, keys, init_params, masses, tuple(model_args), start.array_kwargs)


def initial_draw(
    kernel, rng_key, *model_args, grid, num_chains: int = 1, common_keys: bool = False, init_params=None, **model_kwargs
):
    """``(states, samples, stats)`` at ``t = 0`` of every configuration of a sweep: the states that
    :func:`sweep` starts from (same keys, same settings; continuing from them with
    ``init_state=`` gives the sweep draw for draw) and their draw and statistics shaped like one
    kept draw of a sweep, ``(config, chain, 1, ...)`` (what :func:`~mfsample.experiments.replicate`
    prepends as ``t = 0``)."""
    num_chains = validation.positive_int("num_chains", num_chains)
    validation.prng_key("rng_key", rng_key)
    setup = _setup(kernel, grid, model_args, model_kwargs, num_chains)
    state = _fresh_states(setup, rng_key, init_params, common_keys, model_args, model_kwargs)
    post = kernel.draw_fn(setup.energy, tuple(model_args), dict(model_kwargs))
    post = jax.vmap(jax.vmap(post) if num_chains > 1 else post)
    sample = jax.jit(post)(getattr(state, kernel.sample_field))

    def draw(x):  # (config, [chain,] ...) -> (config, chain, 1, ...)
        x = np.asarray(x)
        return (x if num_chains > 1 else x[:, None])[:, :, None]

    stats = {f: draw(getattr(state, f)) for f in names(kernel.statistics)}
    return state, jax.tree.map(draw, sample), stats


def _check_sweepable(kernel):
    if not isinstance(kernel, SweepableDynamics):
        raise TypeError(
            f"sweep needs a kernel whose numeric hyper-parameters are data "
            f"(mfsample.kernels.contract.SweepableDynamics); {type(kernel).__name__} lacks "
            + ", ".join(
                n
                for n in ("parameter_names", "parameters", "structure", "replace", "initial_masses", "initializer")
                if not hasattr(kernel, n)
            )
        )


def _config_keys(rng_key, num_configs, num_chains, common_keys):
    """``(num_configs, [num_chains,] key)``: each configuration's key split over its chains as
    :func:`~mfsample.simulate` splits one run's key."""
    keys = jnp.stack([rng_key] * num_configs) if common_keys else jax.random.split(rng_key, num_configs)
    if num_chains > 1:
        keys = jax.vmap(lambda k: jax.random.split(k, num_chains))(keys)
    return keys


class _Start(NamedTuple):
    """The compiled initialisation of every configuration and chain (settings and data as arguments)."""

    kernel: Any
    energy: Any
    num_configs: int
    num_chains: int
    static_kwargs: tuple
    pattern: tuple
    array_kwargs: dict

    def compiled(self, init_params):
        kernel, num_chains, static_kwargs, pattern = self.kernel, self.num_chains, self.static_kwargs, self.pattern

        def make():
            def run(values, keys, z0, masses, args, array_kwargs):
                energy = kernel.build_energy(args, {**dict(static_kwargs), **array_kwargs}, num_replicas=num_chains)

                def one(v, k):
                    fresh = Fresh(k, z0, masses)
                    return start_states(kernel, energy, fresh, specialise(v, pattern), batched=num_chains > 1)

                return jax.vmap(one)(values, keys)

            return jax.jit(run)

        key = ("sweep-init", self.num_configs, num_chains, static_kwargs, pattern, init_params is None)
        return programs.cached(kernel, key, make)


def _check_init_state(start: _Start, state, values, model_args, model_kwargs, array_kwargs):
    """A continuation must have the shapes a fresh start of this sweep has (found by ``eval_shape``)."""
    keys = _config_keys(jax.random.PRNGKey(0), start.num_configs, start.num_chains, False)
    masses = start.kernel.initial_masses(start.energy, model_kwargs)
    expected = jax.eval_shape(start.compiled(None), values, keys, None, masses, tuple(model_args), array_kwargs)
    have, want = jax.tree.structure(state), jax.tree.structure(expected)
    if have != want:
        raise TypeError(
            f"init_state is not a state of this sweep ({type(state).__name__}); continue a sweep from "
            "its own Sweep.last_state, with the same kernel type, grid size and chains"
        )
    for (path, x), w in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(expected)):
        if np.shape(x) != w.shape:
            raise ValueError(
                f"init_state{jax.tree_util.keystr(path)} has shape {np.shape(x)} but this sweep needs {w.shape} "
                "(configurations, chains, then the state's shape): continue with the same grid size, "
                "chains, width and data shapes"
            )
    return state


def _placement(state, devices, shard, num_configs, num_chains, width):
    if shard not in SWEEP_SHARD_MODES:
        raise ValueError(f"shard must be one of {SWEEP_SHARD_MODES}, got {shard!r}")
    mesh = make_mesh(devices)
    k = mesh.devices.size
    if shard == "auto":
        shard = "configs" if num_configs % k == 0 else "chains" if num_chains % k == 0 else "particles"
    sizes = {"configs": (0, num_configs), "chains": (1, num_chains), "particles": (2 if num_chains > 1 else 1, width)}
    axis, size = sizes[shard]
    if shard == "chains" and num_chains == 1:
        raise ValueError("shard='chains' needs num_chains > 1")
    if size % k:
        raise ValueError(
            f"shard={shard!r}: the {shard} ({size}) are not divisible by the {k} devices; choose "
            "another shard mode or a number of devices that divides them"
        )
    return make_placement(state, mesh, shard, axis=axis, size=size)


#: on a CPU, ``config_batch="auto"`` advances together as many configurations as keep their hidden
#: activations (``chains x width x data`` float32 numbers each) within this many bytes: beyond the
#: caches, a wider batch is slower per configuration than one after another (measured on 2 cores
#: at d = 10, n = 256, N = 1024, 4 MiB a configuration: 16 configurations x 4 chains take 46 ms a
#: step all at once, 36 ms four at a time, 32 ms one at a time; at n = 32, N = 128, 1.0 ms all at
#: once against 1.4 ms one at a time)
CPU_BATCH_BYTES = 2 * 2**20


def _check_config_batch(config_batch):
    if isinstance(config_batch, str) and config_batch == "auto":
        return config_batch
    try:
        return validation.positive_int("config_batch", config_batch)
    except ValueError:
        raise ValueError(f'config_batch must be "auto" or an integer >= 1, got {config_batch!r}') from None


def _config_batch(config_batch, energy, num_configs, num_chains, placement) -> int | None:
    """Configurations per batch of the compiled sweep (``None``: all of them at once)."""
    if config_batch != "auto":
        return None if config_batch >= num_configs else config_batch
    if placement is not None or jax.default_backend() != "cpu":
        return None
    # a game started from init_params states no width (its sizes come from the particles): its
    # activations are small, so it counts as one particle per datum here
    width = energy.width if energy.width is not None else 1
    per_config = 4 * num_chains * width * max(int(energy.num_data or 0), 1)
    size = max(1, CPU_BATCH_BYTES // per_config)
    return None if size >= num_configs else int(size)


def _on_host(state):
    """The state gathered on every process when it spans several (a multi-host sharded sweep)."""
    if all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(state)):
        return state
    return multihost_utils.process_allgather(state, tiled=True)


def _check_health(kernels, grid: Grid, state, draws: Draws, model_args, model_kwargs):
    """The health checks of :func:`~mfsample.simulate`, configuration by configuration (their
    messages prefixed with the configuration's values); returns the first diverging steps."""
    state = _on_host(state)
    first = np.asarray(state.divergence_step).reshape(grid.num_configs, -1)
    scale = health.data_scale(model_args, model_kwargs) if np.any(first >= 0) else None
    watched = draws.watched()
    messages = []
    for c, kernel in enumerate(kernels):
        one = jax.tree.map(lambda x, c=c: x[c], state)
        found = health.run_messages(
            {k: v[c] for k, v in watched.items()},
            one,
            sample_field=kernel.sample_field,
            step_size=kernel.step_size,
            scale=scale,
        )
        messages += [f"config {c} ({grid.label(c)}): {m}" for m in found]
    health.warn(messages, stacklevel=3)
    return first
