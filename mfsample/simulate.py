"""A fast driver: the kernels' step function inside one compiled ``lax.scan``.

``simulate(kernel, key, *args, num_steps=T, save_every=k)`` keeps the states after steps
``k, 2k, ..., T`` (as ``MCMC(kernel, num_warmup=0, num_samples=T, thinning=k)`` does, which
keeps ``T // k`` draws) and returns them shaped like ``MCMC.get_samples(group_by_chain=True)``.
The data are arguments of the compiled function, not constants in it, so a second call with
arrays of the same shapes does not recompile.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .kernels.base import split_static_kwargs

__all__ = ["Simulation", "simulate"]

#: state fields recorded at every kept draw (besides the particles)
STAT_FIELDS = ("energy", "time", "grad_norm", "diverging", "accept_prob", "step")


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
    """

    samples: dict
    stats: dict
    time: np.ndarray
    last_state: Any
    first_divergence: np.ndarray
    kernel: Any = None
    model_args: tuple = ()
    model_kwargs: dict | None = None


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _compiled_runner(kernel, num_chains, save_every, num_draws, static_kwargs, collect_deterministic):
    cache = kernel.__dict__.setdefault("_mfsample_simulate_cache", {})
    key = (num_chains, save_every, num_draws, static_kwargs, collect_deterministic)
    try:
        hash(key)
    except TypeError:  # an unhashable static argument (e.g. a callable with state): no caching
        key = None
    if key is not None and key in cache:
        return cache[key]

    def run(state, args, array_kwargs):
        kwargs = {**dict(static_kwargs), **array_kwargs}
        energy = kernel.build_energy(args, kwargs)
        _, step_fn = kernel.build(energy)
        field = getattr(kernel, "sample_field", "z")
        fields = STAT_FIELDS + tuple(f for f in getattr(kernel, "stat_fields", ()) if f not in STAT_FIELDS)
        if collect_deterministic:
            post = kernel.postprocess_fn(args, kwargs)
        elif field == "particles":  # keep the masses next to the constrained positions
            post = lambda p: {**energy.constrain(p), "masses": p["masses"]}  # noqa: E731
        else:
            post = energy.constrain
        if num_chains > 1:
            step_fn, post = jax.vmap(step_fn), jax.vmap(post)

        def advance(s, n):
            return jax.lax.fori_loop(0, n, lambda i, ss: step_fn(ss), s)

        def one_draw(s, _):
            s = advance(s, save_every)
            return s, (post(getattr(s, field)), {f: getattr(s, f) for f in fields})

        return jax.lax.scan(one_draw, state, None, length=num_draws)

    fn = jax.jit(run, donate_argnums=())
    if key is not None:
        cache[key] = fn
    return fn


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
    **model_kwargs,
) -> Simulation:
    """Run ``num_steps`` steps of ``kernel`` in compiled ``lax.scan`` chunks, keeping every ``save_every``-th state.

    Same key, same draws as ``MCMC(kernel, num_warmup=0, num_samples=num_steps,
    thinning=save_every, num_chains=num_chains)`` with any ``chain_method``: the chains use
    ``jax.random.split(rng_key, num_chains)`` and the same step function.

    :param kernel: an mfsample kernel (e.g. :class:`~mfsample.WassersteinFlow`).
    :param rng_key: PRNG key.
    :param model_args, model_kwargs: arguments of the model (data, ``width=...``).
    :param num_steps: number of steps ``T``; draws are kept after steps ``k, 2k, ..., T``
        (``T // k`` of them, ``k = save_every``).
    :param num_chains: independent replicas of the particle system (vectorised).
    :param init_params: initial unconstrained particles (leading chain axis if ``num_chains > 1``).
    :param init_state: a previous ``Simulation.last_state`` to continue from.
    :param progress_bar: show a tqdm bar with the energy (the run is split in ~20 compiled chunks).
    :param collect_deterministic: also record the model's deterministic sites (e.g. ``f``).
    """
    num_steps = _positive_int("num_steps", num_steps)
    save_every = _positive_int("save_every", save_every)
    num_chains = _positive_int("num_chains", num_chains)
    if save_every > num_steps:
        raise ValueError(f"save_every={save_every} exceeds num_steps={num_steps}: no draw would be kept")
    if init_state is None:
        keys = jax.random.split(rng_key, num_chains) if num_chains > 1 else rng_key
        state = kernel.init(keys, 0, init_params, model_args, model_kwargs)
    else:  # continue a run: only validate the data and build the energy
        kernel._energy = kernel.build_energy(model_args, model_kwargs)
        state = init_state
    array_kwargs, static_kwargs = split_static_kwargs(model_kwargs)
    num_draws = num_steps // save_every
    skip = num_steps - num_draws * save_every
    if skip:  # MCMC keeps the last draw of each group of `save_every` steps, ending at num_steps
        state = _compiled_runner(kernel, num_chains, skip, 1, static_kwargs, False)(
            state, model_args, array_kwargs)[0]

    chunk = num_draws if not progress_bar else max(1, math.ceil(num_draws / 20))
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=type(kernel).__name__, leave=True)
        bar.update(skip)
    outputs, done = [], 0
    while done < num_draws:
        n = min(chunk, num_draws - done)
        runner = _compiled_runner(kernel, num_chains, save_every, n, static_kwargs, collect_deterministic)
        state, out = runner(state, model_args, array_kwargs)
        outputs.append(out)
        done += n
        if bar is not None:
            bar.update(n * save_every)
            bar.set_postfix(energy=f"{float(jnp.mean(state.energy)):.5g}")
    if bar is not None:
        bar.close()

    samples, stats = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outputs)

    def chains_first(x):  # (draw, chain, ...) -> (chain, draw, ...); add the chain axis if absent
        return np.swapaxes(x, 0, 1) if num_chains > 1 else x[None]

    samples = jax.tree.map(chains_first, samples)  # a dict of sites, or an array for a single-prior energy_fn
    stats = {k: chains_first(v) for k, v in stats.items()}
    first = np.atleast_1d(np.asarray(state.divergence_step))
    if np.any(first >= 0):
        chains = [int(c) for c in np.nonzero(first >= 0)[0]]
        warnings.warn(
            f"particles became non-finite in chain(s) {chains}, first at step(s) "
            f"{[int(first[c]) for c in chains]}; they were frozen there (try a smaller step_size)",
            RuntimeWarning, stacklevel=2,
        )
    time = stats["time"][0, :].astype(np.float64) if num_draws else np.zeros(0)
    return Simulation(samples=samples, stats=stats, time=time, last_state=state, first_divergence=first,
                      kernel=kernel, model_args=tuple(model_args), model_kwargs=dict(model_kwargs))
