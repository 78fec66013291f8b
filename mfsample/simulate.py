"""A fast driver: the kernels' step function inside one compiled ``lax.scan``.

``simulate(kernel, key, *args, num_steps=T, save_every=k)`` keeps the states after steps
``k, 2k, ..., T`` (as ``MCMC(kernel, num_warmup=0, num_samples=T, thinning=k)`` does, which
keeps ``T // k`` draws) and returns them shaped like ``MCMC.get_samples(group_by_chain=True)``.
The data are arguments of the compiled function, not constants in it, so a second call with
arrays of the same shapes does not recompile.
"""

from __future__ import annotations

import math
import os
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import validation
from .energy import ParticleEnergy
from .inference_data.stream import DrawWriter
from .kernels import health, programs
from .kernels.base import initial_positions, split_static_kwargs
from .kernels.contract import PARTICLE_STATISTICS, ParticleDynamics, SweepableDynamics, names
from .kernels.parameters import as_arrays, specialise, zero_pattern
from .kernels.start import Fresh, start_states
from .layout import column_major_particles, prefers_column_major
from .sharding import SHARD_MODES, make_mesh, place, replicated, state_shardings

__all__ = ["Simulation", "simulate"]

#: statistics recorded by every particle dynamic (a kernel declares its own: ``kernel.statistics``)
STAT_FIELDS = names(PARTICLE_STATISTICS)


class Simulation(NamedTuple):
    """Result of :func:`simulate`.

    - **samples** – dict ``site -> (num_chains, num_draws, ...)`` in the model's coordinates, with
      its deterministic sites (``f`` for the shallow network), like
      ``MCMC.get_samples(group_by_chain=True)`` (one array for an ``energy_fn`` with a single prior).
    - **stats** – dict ``field -> (num_chains, num_draws)`` of the state fields ``energy``, ``time``,
      ``grad_norm``, ``diverging``, ``accept_prob``, ``step``, and the kernel's own ``stat_fields``
      (e.g. ``vbar``, ``births``, ``deaths``, ``ess`` of :class:`~mfsample.WassersteinFisherRao`).
    - **time** – ``(num_draws,)`` mean-field time of each draw, ``t = step * dt``.
    - **last_state** – the final state (leading chain axis when ``num_chains > 1``); pass it back
      as ``init_state`` to continue.
    - **first_divergence** – ``(num_chains,)`` first diverging step of each chain (``-1``: none).
    - **kernel**, **model_args**, **model_kwargs** – what was run (for :func:`mfsample.to_inference_data`).
    - **output** – the netCDF file the draws were streamed to (``simulate(..., output=path)``;
      then ``samples`` and ``stats`` are ``None``: open it with ``arviz.from_netcdf`` or
      :func:`mfsample.to_inference_data`).
    """

    samples: dict
    stats: dict
    time: np.ndarray
    last_state: Any
    first_divergence: np.ndarray
    kernel: Any = None
    model_args: tuple = ()
    model_kwargs: dict | None = None
    output: str | None = None


def step_values(kernel) -> tuple[dict, tuple]:
    """``(values, zero pattern)`` of a kernel's numeric hyper-parameters: the arrays a compiled run
    takes as arguments and the hashable pattern of its exact zeros (:mod:`~mfsample.kernels.parameters`);
    ``({}, ())`` for a kernel that states none (built from its own values)."""
    if not _takes_parameters(kernel):
        return {}, ()
    values = kernel.parameters
    return as_arrays(values), zero_pattern(values)


def _takes_parameters(kernel) -> bool:
    return isinstance(kernel, SweepableDynamics)


def compiled_runner(
    kernel,
    num_chains,
    save_every,
    num_draws,
    static_kwargs,
    collect_deterministic,
    placement=None,
    pattern=(),
    num_configs=None,
    config_batch=None,
    fresh=False,
):
    """``run(values, state, args, array_kwargs) -> (state, (draws, stats))``: ``num_draws`` draws
    of ``save_every`` steps in one ``lax.scan``, compiled once per kernel structure and call
    shape (:mod:`~mfsample.kernels.programs`).  With ``num_configs`` the state and ``values`` have
    a leading configuration axis and the step is ``vmap``-ped over it (:func:`mfsample.sweep`).
    With ``fresh`` the ``state`` argument is a :class:`~mfsample.kernels.start.Fresh` run, started
    in the programme (:func:`~mfsample.kernels.start.start_states`) before its steps."""
    if fresh and num_configs is not None:
        raise ValueError("a sweep starts its configurations before its runner (fresh=True is for one run)")

    def make():
        constrain = (lambda s: s) if placement is None else placement.constrain  # noqa: E731

        def run(values, state, args, array_kwargs):
            kwargs = {**dict(static_kwargs), **array_kwargs}
            energy = kernel.build_energy(args, kwargs, num_replicas=num_chains)
            if fresh:
                state = start_states(kernel, energy, state, specialise(values, pattern), batched=num_chains > 1)
            field, fields = kernel.sample_field, names(kernel.statistics)
            post = kernel.draw_fn(energy, args, kwargs, deterministic=collect_deterministic)
            post = jax.vmap(post) if num_chains > 1 else post

            start_one, step_one = steps_with_draws_ahead(kernel, energy, pattern, num_chains)
            laid_out = _carry_layout(energy, constrain, placement, num_chains, batched=num_configs is not None)

            def draws(start, step, record, s):
                def one_draw(carry, _):
                    carry = jax.lax.fori_loop(0, save_every, lambda i, c: _map_state(laid_out, step(c)), carry)
                    s = carry[0]
                    return carry, (record(getattr(s, field)), {f: getattr(s, f) for f in fields})

                carry, out = jax.lax.scan(one_draw, start(constrain(s)), None, length=num_draws)
                return carry[0], out

            if num_configs is None:
                return draws(partial(start_one, values), partial(step_one, values), post, state)
            if config_batch is None:
                configs = (partial(jax.vmap(start_one), values), partial(jax.vmap(step_one), values))
                return draws(*configs, jax.vmap(post), state)
            batch = None if config_batch == 1 else config_batch  # one at a time: no vmap of size one
            state, out = jax.lax.map(
                lambda vs: draws(partial(start_one, vs[0]), partial(step_one, vs[0]), post, vs[1]),
                (values, state),
                batch_size=batch,
            )
            return state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)

        if placement is None:
            return jax.jit(run)
        # the state stays sharded; the kept draws come back whole on every process
        return jax.jit(run, out_shardings=(placement.state, placement.replicated))

    key = (
        "run",
        num_chains,
        num_configs,
        save_every,
        num_draws,
        static_kwargs,
        collect_deterministic,
        None if placement is None else placement.key,
        pattern,
        config_batch,
        fresh,
    )
    return programs.cached(kernel, key, make)


def steps_with_draws_ahead(kernel, energy, pattern, num_chains):
    """``(start(values, state) -> carry, step(values, carry) -> carry)``: the driver's step on a
    carry ``(state, the next step's random numbers)``.

    A kernel whose ``build_with_draws`` gives ``(draws_fn, step_fn(state, draws))`` has the
    random numbers of step ``k + 1`` (a function of the state's key alone) drawn inside step
    ``k``, beside its gradient, where XLA can run them while the step waits on its matmuls, and
    carried to the next step; ``start`` draws the first.  The numbers are those the kernel's own
    ``step_fn(state)`` draws, so the states are the same as MCMC's.  Other kernels carry ``()``.
    """
    batched = jax.vmap if num_chains > 1 else (lambda f: f)

    def built(v):
        parameters = (specialise(v, pattern),) if pattern else ()
        with_draws = getattr(kernel, "build_with_draws", None)
        pair = None if with_draws is None else with_draws(energy, *parameters)
        if pair is None:
            return None, kernel.build(energy, *parameters)[1]
        return pair

    def start(v, state):
        draws_fn, _ = built(v)
        return state, (() if draws_fn is None else batched(draws_fn)(state))

    def step(v, carry):
        state, draws = carry
        draws_fn, step_fn = built(v)
        if draws_fn is None:
            return batched(step_fn)(state), ()
        state = batched(step_fn)(state, draws)
        return state, batched(draws_fn)(state)

    return start, step


def _map_state(fn, carry):
    """``(fn(state), draws)`` of a carry ``(state, draws)``."""
    return fn(carry[0]), carry[1]


def _carry_layout(energy, constrain, placement, num_chains, *, batched):
    """What the driver's loop applies to the state after every step: the sharding ``constrain``
    of a placed run, else the column-major hint of :mod:`mfsample.layout` where it pays."""
    if placement is None and prefers_column_major(energy, num_chains=num_chains, batched=batched):
        return partial(column_major_particles, shared=tuple(getattr(energy, "shared_names", ())))
    return constrain


class _Placement(NamedTuple):
    """How a sharded run lays out its state and data (see :mod:`mfsample.sharding`)."""

    mesh: Any
    state: Any  # tree of NamedSharding, like the state
    replicated: Any
    key: tuple  # hashable description for the compile cache

    def constrain(self, state):
        return jax.lax.with_sharding_constraint(state, self.state)


def _placement(state, devices, shard, num_chains, width):
    if shard not in SHARD_MODES:
        raise ValueError(f"shard must be one of {SHARD_MODES}, got {shard!r}")
    mesh = make_mesh(devices)
    k = mesh.devices.size
    if shard == "auto":
        shard = "chains" if num_chains >= k and num_chains % k == 0 else "particles"
    if shard == "chains":
        if num_chains % k:
            raise ValueError(
                f"num_chains={num_chains} is not divisible by the {k} devices; "
                "shard='particles' splits each replica's particles instead"
            )
        return make_placement(state, mesh, shard, axis=0, size=num_chains)
    if width % k:
        raise ValueError(
            f"the width {width} (particles) is not divisible by the {k} devices; "
            "choose a width that is a multiple of the number of devices"
        )
    return make_placement(state, mesh, shard, axis=1 if num_chains > 1 else 0, size=width)


def make_placement(state, mesh, shard: str, *, axis: int, size: int):
    """``(placement, placed state)``: the state split over ``mesh`` along ``axis`` (arrays whose
    axis ``axis`` has length ``size``), everything else replicated."""
    shardings = state_shardings(state, mesh, axis=axis, size=size)
    placement = _Placement(mesh, shardings, replicated(mesh), (tuple(d.id for d in mesh.devices.flat), shard))
    return placement, place(state, shardings)


def replicate_data(placement, model_args, array_kwargs):
    """The data (positional arrays and array keyword arguments) on every device of the placement."""
    rep = placement.replicated
    model_args = tuple(place(a, rep) if isinstance(a, (jax.Array, np.ndarray)) else a for a in model_args)
    return model_args, place(array_kwargs, jax.tree.map(lambda _: rep, array_kwargs))


#: draws of one compiled chunk are capped at this many bytes (the host memory simulate needs
#: beyond the kept draws is about one chunk)
CHUNK_BYTES = 64 * 2**20


def simulate(
    kernel,
    rng_key,
    *model_args,
    num_steps: int,
    save_every: int = 1,
    num_chains: int = 1,
    init_params=None,
    init_state=None,
    progress_bar: bool = True,
    collect_deterministic: bool = True,
    output=None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    devices=None,
    shard: str = "auto",
    **model_kwargs,
) -> Simulation:
    """Run ``num_steps`` steps of ``kernel`` in compiled ``lax.scan`` chunks, keeping every ``save_every``-th state.

    Same key, same draws as ``MCMC(kernel, num_warmup=0, num_samples=num_steps,
    thinning=save_every, num_chains=num_chains)`` with any ``chain_method``: the chains use
    ``jax.random.split(rng_key, num_chains)`` and the same step function.

    After the run, :mod:`mfsample.kernels.health` checks what it recorded and warns
    (``RuntimeWarning``) about divergences (saying what was non-finite when the initial state
    already was), Metropolis acceptance near 0, weighted masses whose ESS fell near 1 and
    particle systems collapsed onto a few distinct particles.

    Memory: the kept draws are written into arrays allocated once (or, with ``output``, appended
    to a netCDF file chunk by chunk), so the host memory is the kept draws plus one chunk of at
    most ``CHUNK_BYTES`` (64 MiB) — or one chunk alone when streaming.

    :param kernel: an mfsample kernel (e.g. :class:`~mfsample.WassersteinFlow`).
    :param rng_key: PRNG key (``jax.random.PRNGKey(seed)`` or ``jax.random.key(seed)``); may be
        ``None`` with ``init_state``, which carries its own keys.
    :param model_args, model_kwargs: arguments of the model (data, ``width=...``).
    :param num_steps: number of steps ``T``; draws are kept after steps ``k, 2k, ..., T``
        (``T // k`` of them, ``k = save_every``).
    :param num_chains: independent replicas of the particle system (vectorised).
    :param init_params: initial unconstrained particles (leading chain axis if ``num_chains > 1``).
    :param init_state: a previous ``Simulation.last_state`` to continue from: a state of this
        kernel's dynamic, with ``num_chains`` chains, this width and fields of the shapes these
        arguments give (else ``TypeError`` / ``ValueError``); not together with ``init_params``.
    :param progress_bar: show a tqdm bar with the energy (the run is split in ~20 compiled chunks).
    :param collect_deterministic: also record the model's deterministic sites (e.g. ``f``).
    :param output: path of a netCDF file to stream the draws to (ArviZ layout: ``posterior``,
        ``sample_stats``, ...; see :class:`mfsample.io.DrawWriter`); the result then holds no
        draws (``samples``/``stats`` are ``None``) and ``output`` names the file.
    :param overwrite: replace an existing ``output`` file.
    :param chunk_size: draws per compiled chunk (default: ~1/20 of the run with a progress bar,
        capped so that a chunk takes at most ``CHUNK_BYTES``).
    :param devices: shard the run over devices (:mod:`mfsample.sharding`): an int ``k`` (the first
        ``k`` devices), ``"all"``, a list of devices or a 1-D ``Mesh``; ``None``: one device.
    :param shard: ``"particles"`` (split each replica's particles; the width must be divisible by
        the number of devices), ``"chains"`` (split the replicas) or ``"auto"`` (chains when they
        divide evenly over the devices, else particles).
    """
    num_steps, save_every, num_chains, chunk_size = check_counts(num_steps, save_every, num_chains, chunk_size)
    output = _check_output(output, overwrite)
    check_kernel(kernel)
    if init_state is None or rng_key is not None:  # a continuation carries its own keys
        validation.prng_key("rng_key", rng_key)
    energy = kernel.build_energy(model_args, model_kwargs, num_replicas=num_chains)  # validates the data
    state = _initial_state(
        kernel, energy, rng_key, init_params, init_state, num_chains, model_args, model_kwargs, defer=devices is None
    )
    array_kwargs, static_kwargs = split_static_kwargs(model_kwargs)
    placement = None
    if devices is not None:
        placement, state = _placement(state, devices, shard, num_chains, energy.width)
        model_args, array_kwargs = replicate_data(placement, model_args, array_kwargs)
    values, pattern = step_values(kernel)
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
    )
    num_draws = num_steps // save_every
    writer = None
    if output is not None:
        writer = DrawWriter(
            output,
            kernel=kernel,
            model_args=tuple(model_args),
            model_kwargs=dict(model_kwargs),
            num_chains=num_chains,
            num_draws=num_draws,
            overwrite=overwrite,
        )
    sink = Draws(num_draws, writer)
    try:
        state = run_steps(run, state, sink, num_steps, save_every, chunk_size, progress_bar, type(kernel).__name__)
    finally:
        if writer is not None:
            writer.close()
    first = _check_health(kernel, state, sink, model_args, model_kwargs)
    return Simulation(
        samples=sink.samples,
        stats=sink.stats,
        time=sink.time(),
        last_state=state,
        first_divergence=first,
        kernel=kernel,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs),
        output=output,
    )


#: bytes of one kept draw, by compiled programme and argument shapes (:meth:`Runner.draw_bytes`)
_DRAW_BYTES: dict = {}


class Runner(NamedTuple):
    """What fixes the compiled programme of a call (besides the draws per chunk), and its data and
    hyper-parameter values (with a leading configuration axis when ``num_configs`` is set)."""

    kernel: Any
    num_chains: int
    static_kwargs: tuple
    collect_deterministic: bool
    placement: Any
    args: tuple
    array_kwargs: dict
    values: dict
    pattern: tuple
    num_configs: int | None = None
    config_batch: int | None = None

    def compiled(self, save_every, num_draws, *, deterministic=None, fresh=False):
        deterministic = self.collect_deterministic if deterministic is None else deterministic
        return compiled_runner(
            self.kernel,
            self.num_chains,
            save_every,
            num_draws,
            self.static_kwargs,
            deterministic,
            self.placement,
            self.pattern,
            self.num_configs,
            self.config_batch,
            fresh,
        )

    def advance(self, save_every, num_draws, state, *, deterministic=None):
        """``(state, (draws, stats))`` after ``num_draws`` draws of ``save_every`` steps from
        ``state``, or from the start of a :class:`~mfsample.kernels.start.Fresh` run."""
        run = self.compiled(save_every, num_draws, deterministic=deterministic, fresh=isinstance(state, Fresh))
        return run(self.values, state, self.args, self.array_kwargs)

    def draw_bytes(self, save_every, state) -> int:
        """Bytes of one kept draw (particles, deterministic sites, stats), from shapes alone (traced
        once per programme and argument shapes: :data:`_DRAW_BYTES`)."""
        run = self.compiled(save_every, 1, fresh=isinstance(state, Fresh))
        inputs = (self.values, state, self.args, self.array_kwargs)
        key = (
            run,
            jax.tree.structure(inputs),
            tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in jax.tree.leaves(inputs)),
        )
        if key not in _DRAW_BYTES:
            if len(_DRAW_BYTES) >= programs.MAX_PROGRAMMES:
                _DRAW_BYTES.clear()
            out = jax.eval_shape(run, *inputs)[1]
            _DRAW_BYTES[key] = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(out))
        return _DRAW_BYTES[key]

    def host_layout(self, x):
        """A chunk's ``(draw, [config,] [chain,] ...)`` device array as a ``([config,] chain, draw, ...)``
        host array (a chain axis of length one added for one chain)."""
        x = np.asarray(x)
        if self.num_chains == 1:
            x = np.expand_dims(x, 2 if self.num_configs is not None else 1)
        return np.moveaxis(x, 0, 2 if self.num_configs is not None else 1)


def _initial_state(kernel, energy, rng_key, init_params, init_state, num_chains, model_args, model_kwargs, *, defer):
    """A fresh start, or a continuation checked against the call.

    A fresh start of a :class:`~mfsample.kernels.contract.SweepableDynamics` that can ``bind`` a
    run is a :class:`~mfsample.kernels.start.Fresh` run when ``defer``: the kernel records the run's
    arguments (``kernel.bind``, what ``init`` records) and the first compiled chunk starts it with
    the kernel's ``initializer`` (what ``kernel.init`` compiles), saving a programme call and its
    buffers; otherwise ``kernel.init`` on the chains' keys."""
    if init_state is None:
        keys = jax.random.split(rng_key, num_chains) if num_chains > 1 else rng_key
        if defer and _starts_in_driver(kernel):
            batch = num_chains if num_chains > 1 else None
            energy = kernel.bind(model_args, model_kwargs, num_replicas=batch, init_params=init_params)
            masses = kernel.initial_masses(energy, model_kwargs)
            return Fresh(keys, initial_particles(energy, init_params, num_chains), masses)
        return kernel.init(keys, 0, init_params, model_args, model_kwargs)
    if init_params is not None:
        raise ValueError("give init_params (a fresh start) or init_state (a continuation), not both")
    return _check_init_state(kernel, energy, init_state, num_chains, model_args, model_kwargs)


def _starts_in_driver(kernel) -> bool:
    """Whether ``simulate`` may start the kernel's runs itself: settings as data and ``bind``."""
    return isinstance(kernel, SweepableDynamics) and callable(getattr(kernel, "bind", None))


def initial_particles(energy, init_params, num_chains: int):
    """``init_params`` checked and shaped for ``num_chains`` chains (``None`` stays ``None``):
    particle energies check the sites and the width (:func:`~mfsample.kernels.base.initial_positions`);
    other setups (games) take their arrays as given."""
    if init_params is None:
        return None
    batch = (num_chains,) if num_chains > 1 else ()
    if isinstance(energy, ParticleEnergy):
        return initial_positions(energy, init_params, batch)
    return jax.tree.map(jnp.asarray, init_params)


def run_steps(run: Runner, state, sink, num_steps, save_every, chunk_size, progress_bar, desc):
    """``num_steps`` steps from ``state``, the draws after steps ``k, 2k, ..., T`` into ``sink``
    (``k = save_every``; as MCMC, the first ``T mod k`` steps are taken before the first group),
    in compiled chunks of ``chunk_size`` draws (default: :func:`default_chunk`); the last state."""
    num_draws = sink.num_draws
    skip = num_steps - num_draws * save_every
    if skip:
        state = run.advance(skip, 1, state, deterministic=False)[0]
    if chunk_size is None:
        chunk_size = default_chunk(num_draws, progress_bar, run.draw_bytes(save_every, state))
    bar = tqdm(total=num_steps, desc=desc, leave=True, initial=skip) if progress_bar else None
    try:
        return run_chunks(run, state, sink, save_every, min(chunk_size, num_draws), bar)
    finally:
        if bar is not None:
            bar.close()


def run_chunks(run: Runner, state, sink, save_every, chunk, bar):
    """Advance ``state`` chunk by chunk, handing each chunk's draws (chains first) to ``sink``."""
    done = 0
    while done < sink.num_draws:
        n = min(chunk, sink.num_draws - done)
        state, (samples, stats) = run.advance(save_every, n, state)
        sink.add(jax.tree.map(run.host_layout, samples), {k: run.host_layout(v) for k, v in stats.items()})
        del samples, stats
        done += n
        if bar is not None:
            bar.update(n * save_every)
            bar.set_postfix(energy=f"{float(jnp.mean(state.energy)):.5g}")
    return state


def _check_health(kernel, state, sink, model_args, model_kwargs):
    """Warn about divergences and degenerate dynamics (:mod:`mfsample.kernels.health`); returns the
    first diverging step of each chain (``-1``: none)."""
    first = np.atleast_1d(np.asarray(state.divergence_step))
    scale = health.data_scale(model_args, model_kwargs) if np.any(first >= 0) else None  # said on divergence
    messages = health.run_messages(
        sink.watched(), state, sample_field=kernel.sample_field, step_size=kernel.step_size, scale=scale
    )
    health.warn(messages, stacklevel=3)
    return first


def check_counts(num_steps, save_every, num_chains, chunk_size):
    num_steps = validation.positive_int("num_steps", num_steps)
    save_every = validation.positive_int("save_every", save_every)
    num_chains = validation.positive_int("num_chains", num_chains)
    chunk_size = validation.optional_positive_int("chunk_size", chunk_size)
    if save_every > num_steps:
        raise ValueError(f"save_every={save_every} exceeds num_steps={num_steps}: no draw would be kept")
    return num_steps, save_every, num_chains, chunk_size


def _check_output(output, overwrite):
    if output is None:
        return None
    output = os.fspath(output)
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True to replace it")
    return output


def check_kernel(kernel):
    if not isinstance(kernel, ParticleDynamics):
        raise TypeError(
            f"simulate runs mfsample kernels (mfsample.kernels.ParticleDynamics, e.g. mf.WassersteinFlow); "
            f"got {type(kernel).__name__}, which lacks "
            + ", ".join(
                n for n in ("build_energy", "build", "draw_fn", "statistics", "sample_field") if not hasattr(kernel, n)
            )
        )


def _check_init_state(kernel, energy, state, num_chains, model_args, model_kwargs):
    """``state`` must be a state of this kernel's dynamic with ``num_chains`` chains of the width,
    whose fields have the shapes that a fresh ``init`` gives on these arguments (found by
    ``jax.eval_shape``: nothing is computed)."""
    fields = ("z", "masses", "rng_key", "divergence_step")
    missing = [f for f in fields if not hasattr(state, f)]
    if missing:
        raise TypeError(
            f"init_state must be the last_state of a run of {type(kernel).__name__}; a "
            f"{type(state).__name__} has no {', '.join(missing)}"
        )
    chains = np.shape(state.divergence_step)
    if chains != (() if num_chains == 1 else (num_chains,)):
        have = 1 if chains == () else chains[0]
        raise ValueError(
            f"init_state holds {have} chain(s) but num_chains={num_chains}; continue with num_chains={have}"
        )
    one = state if num_chains == 1 else jax.tree.map(lambda x: x[0], state)
    n = np.shape(jax.tree.leaves(energy.particle_part(one.z))[0])[0]
    if energy.width is not None and n != energy.width:
        raise ValueError(
            f"init_state holds {n} particles but this call has width {energy.width}; continue "
            "with the width of the run it comes from"
        )
    expected = _fresh_state_shapes(kernel, state.rng_key, num_chains, model_args, model_kwargs)
    if type(expected) is not type(state) or jax.tree.structure(expected) != jax.tree.structure(state):
        raise TypeError(
            f"init_state is a {type(state).__name__} with fields {_field_kinds(state)} but {type(kernel).__name__} "
            f"(with these settings and arguments) moves a {type(expected).__name__} with fields "
            f"{_field_kinds(expected)}: continue a run with the kernel (and masses) it was made by"
        )
    _check_leaf_shapes(state, expected)
    return state


def _fresh_state_shapes(kernel, rng_key, num_chains, model_args, model_kwargs):
    """The shapes and dtypes of the state ``kernel.init`` gives on these arguments (``jax.eval_shape``:
    nothing is computed), traced once per kernel structure and argument shapes: the trace runs the
    model and its gradient, tens of milliseconds that a continuing call would otherwise pay every
    time.  A kernel that can ``bind`` records the call's arguments as ``init`` does; one that cannot
    is traced every time (its ``init`` records them)."""

    def trace():
        return jax.eval_shape(lambda k: kernel.init(k, 0, None, model_args, model_kwargs), rng_key)

    if not hasattr(kernel, "bind"):
        return trace()
    array_kwargs, static_kwargs = split_static_kwargs(model_kwargs)
    leaves, tree = jax.tree.flatten((tuple(model_args), array_kwargs, rng_key))
    shapes = (tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves))
    expected = programs.cached(kernel, ("fresh-state-shapes", num_chains, static_kwargs, shapes), trace)
    kernel.bind(model_args, model_kwargs, num_replicas=num_chains if num_chains > 1 else None)
    return expected


def _field_kinds(state) -> str:
    """Which fields of a state are set (``None`` fields are shown as such)."""
    return "{" + ", ".join(f"{k}{'=None' if v is None else ''}" for k, v in state._asdict().items()) + "}"


def _check_leaf_shapes(state, expected):
    """Every array of ``state`` has the shape and dtype of ``expected``'s (a ``ShapeDtypeStruct`` tree),
    but its key (the state's own key is used, whatever ``rng_key`` is given)."""
    for (path, have), want in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(expected)):
        if getattr(path[0], "name", None) == "rng_key":
            continue
        where = "init_state" + jax.tree_util.keystr(path)
        if np.shape(have) != want.shape:
            raise ValueError(
                f"{where} has shape {np.shape(have)} but these arguments need {want.shape}: the state comes "
                "from a run on data of other dimensions; continue it on data of the same shapes, or start "
                "afresh (init_params)"
            )
        if getattr(have, "dtype", want.dtype) != want.dtype:
            raise ValueError(
                f"{where} has dtype {have.dtype} but these arguments need {want.dtype}; continue "
                "with data of the dtype of the run it comes from"
            )


def default_chunk(num_draws, progress_bar, per_draw_bytes):
    """~1/20 of the run with a progress bar (else the whole run), at most ``CHUNK_BYTES`` of draws."""
    chunk = num_draws if not progress_bar else max(1, math.ceil(num_draws / 20))
    return max(1, min(chunk, CHUNK_BYTES // max(per_draw_bytes, 1)))


class Draws:
    """Kept draws, filled chunk by chunk into arrays allocated once, or appended to a writer; the
    statistics that :mod:`~mfsample.kernels.health` reads are kept in memory either way.

    Arrays are ``(chain, draw, ...)``, or ``(config, chain, draw, ...)`` with ``draw_axis=2``."""

    def __init__(self, num_draws, writer=None, *, draw_axis: int = 1):
        self.num_draws, self.writer, self.draw_axis = num_draws, writer, draw_axis
        self.samples = self.stats = None
        self.done, self.times, self.kept = 0, [], {}

    def add(self, samples, stats):
        n = stats["time"].shape[self.draw_axis]
        self.times.append(stats["time"][(slice(None),) * (self.draw_axis - 1) + (0,)])
        for k in health.WATCHED_STATISTICS:
            if k in stats and self.writer is not None:
                self.kept.setdefault(k, []).append(np.asarray(stats[k]))
        if self.writer is not None:
            self.writer.append(samples, stats)
        else:
            if self.samples is None:
                self.samples = jax.tree.map(self._empty, samples)
                self.stats = {k: self._empty(v) for k, v in stats.items()}
            window = (slice(None),) * self.draw_axis + (slice(self.done, self.done + n),)
            jax.tree.map(lambda dst, src: dst.__setitem__(window, src), self.samples, samples)
            for k, v in stats.items():
                self.stats[k][window] = v
        self.done += n

    def _empty(self, x):
        a = self.draw_axis
        return np.empty(x.shape[:a] + (self.num_draws,) + x.shape[a + 1 :], x.dtype)

    def time(self):
        """Mean-field time of each draw: ``(num_draws,)``, or ``(config, num_draws)``."""
        if not self.times:
            return np.zeros(0)
        return np.concatenate(self.times, axis=-1).astype(np.float64)

    def watched(self) -> dict:
        """``{name: ([config,] chain, draw)}`` of the statistics the health checks read."""
        if self.writer is None:
            return {k: v for k, v in (self.stats or {}).items() if k in health.WATCHED_STATISTICS}
        return {k: np.concatenate(v, axis=self.draw_axis) for k, v in self.kept.items()}
