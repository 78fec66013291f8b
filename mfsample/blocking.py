"""Memory-bounded evaluation of a sum over data: blocks of ``B`` data, one at a time.

The energy of a particle system is a sum over data, ``E = -(1/N) sum_i log p(y_i | theta_1..n)``.
For the shallow network each datum touches every particle, so the plain evaluation holds the
``N x n`` pre-activations and activations (and, in the backward pass, their cotangents) at once.
Split into blocks,

    sum_{i=1}^N g_i  =  sum_{b=1}^{ceil(N/B)}  sum_{i in block b} g_i,

and evaluated block after block in a ``lax.scan``, the step needs the activations of one block
only.  The gradient of a blocked sum is the sum of the blocks' gradients,

    grad sum_b E_b(theta)  =  sum_b grad E_b(theta),

so :func:`blocked_value_and_grad` takes each block's value and gradient together (one forward
and one backward pass over the block while its activations are in cache) and accumulates them
in the scan's carry.  :func:`blocked_sum` is the value alone; differentiated by JAX, its body is
``jax.checkpoint``-ed (the activations are recomputed in the backward pass instead of being
stored for every block), which costs a second forward pass: the kernels' drifts use
:func:`blocked_value_and_grad`.  Peak memory of one step of the shallow network
(``C`` replicas, ``s`` bytes per float):

    state   ~ k * C * n * (d + 2) * s                 (particles, drift, proposal, ...: k ~ 4-6)
    data    ~ N * (d + 1) * s                          (held once, shared by every replica)
    blocks  ~ ACTIVATION_COPIES * C * B * n * s        (one block's activations and cotangents)

so choosing ``B`` bounds the last term, the only one that grows with ``N x n``.  The results are
the unblocked ones up to the order of float32 summation (the blocks' partial sums are added
last).

The arguments split into blocks are the per-datum ones (:func:`mfsample.validation.is_per_datum`:
arrays whose leading axis has the data size ``N``); the others are passed whole to every block.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from . import validation

__all__ = [
    "ACTIVATION_COPIES",
    "MEMORY_FRACTION",
    "CPU_CACHE_BYTES",
    "CPU_BLOCK_ABOVE_BYTES",
    "activation_bytes",
    "available_memory",
    "auto_block_size",
    "auto_particle_block_size",
    "resolve_block_size",
    "blocked_sum",
    "blocked_value_and_grad",
    "particle_blocked_sum",
    "blocked_map",
    "blocked_deterministic",
]

#: ``B x n`` arrays alive at the peak of one block's forward + backward pass (pre-activations,
#: activations, their cotangents and one temporary), measured with XLA's memory analysis in
#: ``tests/test_blocking.py``
ACTIVATION_COPIES = 4

#: fraction of the free memory that ``block_size="auto"`` lets the activations take
MEMORY_FRACTION = 0.25

#: on the CPU, ``block_size="auto"`` also keeps one ``B x n`` float array within this many bytes,
#: so that a block's activations stay in the last-level cache between its forward and backward
#: passes (:func:`blocked_value_and_grad`): measured on a 2-core EPYC (32 MiB L3), blocks of
#: 8 MiB ran the Langevin step 1.3x faster than unblocked at (d, n, N) = (10, 4096, 2048) and
#: (20, 2048, 4096) (32 MiB arrays) and 1.5x at (50, 4096, 8192) (``benchmarks/README.md``);
#: accelerators are not cache-blocked
CPU_CACHE_BYTES = 8 * 2**20

#: ... but only when one ``N x n`` array (all replicas) is larger than this: at 12 MiB and below
#: blocks of 8 MiB ran 1.0-1.1x slower than one block (one long pass over a small array costs
#: less than a loop of shorter ones), at 16 MiB 1.0-1.25x faster (same machine, three dynamics,
#: (d, n, N) = (10, 1536, 2048), (10, 1024, 4096), (20, 1024, 4096), (10, 2048, 2048))
CPU_BLOCK_ABOVE_BYTES = 12 * 2**20


def activation_bytes(block_size: int, width: int, *, num_chains: int = 1, itemsize: int = 4) -> int:
    """Bytes of the ``B x n`` activations of one block: ``ACTIVATION_COPIES * C * B * n * s``."""
    return int(ACTIVATION_COPIES * num_chains * block_size * width * itemsize)


def available_memory(device=None) -> int:
    """Free memory (bytes) of ``device`` (default: JAX's first device).

    Accelerators report it through ``device.memory_stats()`` (``bytes_limit - bytes_in_use``);
    on the CPU it is the kernel's ``MemAvailable`` (``/proc/meminfo``), else ``sysconf``.
    """
    device = jax.devices()[0] if device is None else device
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        except Exception:  # pragma: no cover - backends without memory stats
            pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 4 * 2**30


def auto_block_size(
    num_data: int,
    width: int,
    *,
    num_chains: int = 1,
    itemsize: int = 4,
    memory: int | None = None,
    fraction: float = MEMORY_FRACTION,
    cache: int | None | str = "auto",
    cache_above: int = CPU_BLOCK_ABOVE_BYTES,
) -> int:
    """The largest ``B <= N`` with ``activation_bytes(B) <= fraction * memory`` and, with a
    ``cache`` size and ``C * N * n * s > cache_above``, ``C * B * n * s <= cache``.

    ``memory`` defaults to :func:`available_memory`; ``cache="auto"`` is ``CPU_CACHE_BYTES`` when
    JAX's default device is a CPU and ``None`` (no cache blocking) otherwise.  ``B = N`` (no
    blocking) when everything fits, and at least ``1``.
    """
    memory = available_memory() if memory is None else int(memory)
    if cache == "auto":
        cache = CPU_CACHE_BYTES if jax.devices()[0].platform == "cpu" else None
    per_datum = activation_bytes(1, width, num_chains=num_chains, itemsize=itemsize)
    block = (fraction * memory) // per_datum
    row = num_chains * width * itemsize  # bytes of one datum's row of an N x n array
    if cache is not None and num_data * row > cache_above:
        block = min(block, int(cache) // row)
    return int(min(num_data, max(1, block)))


def auto_particle_block_size(
    num_data: int,
    width: int,
    *,
    num_chains: int = 1,
    itemsize: int = 4,
    cache: int | None | str = "auto",
    cache_above: int = CPU_BLOCK_ABOVE_BYTES,
) -> int | None:
    """Particles per block ``P`` for a wide problem (``n > N``), ``None`` otherwise.

    With a ``cache`` size (``"auto"``: ``CPU_CACHE_BYTES`` on a CPU, ``None`` on an accelerator),
    an ``N x n`` array of all replicas larger than ``cache_above`` and more particles than data,
    the largest ``P`` with one ``C * N * P`` float array within the cache.  Blocks over particles
    suit wide problems: each block's gradient is local to its particles (no ``n x d`` running
    total rewritten per data block) and its weight matmul ``x^T G`` has the long ``N`` axis
    inside.  Measured on a 2-core CPU (pure loss): 90 against 520–540 ms a step with data blocks
    at (d, n, N) = (10, 65536, 1024), 21.5 against 27.8 at (10, 16384, 1024), level at
    ``n = N`` and ``n = 4 N``, slower than data blocks at ``n = N / 2`` (``benchmarks/README.md``).
    """
    if cache == "auto":
        cache = CPU_CACHE_BYTES if jax.devices()[0].platform == "cpu" else None
    column = num_chains * num_data * itemsize  # bytes of one particle's column of an N x n array
    if cache is None or width <= num_data or width * column <= cache_above:
        return None
    return int(min(width, max(1, int(cache) // column)))


def resolve_block_size(
    block_size,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    num_data: float,
    width: int,
    num_replicas: int = 1,
) -> int | None:
    """The block size ``B`` that an energy over ``N = num_data`` data runs with (``None``: one block).

    ``block_size`` is ``None``, ``"auto"`` or an integer >= 1 (:func:`mfsample.validation.block_size`);
    ``"auto"`` is :func:`auto_block_size` for ``num_replicas`` replicas of ``width`` particles
    evaluated at once.  ``B >= N`` is one block.  A ``B < N`` needs a per-datum argument in
    ``model_args``/``model_kwargs`` to split.
    """
    block_size = validation.block_size(block_size)
    num_data = int(round(num_data))
    if block_size == "auto":
        num_chains = validation.positive_int("num_replicas", num_replicas)
        block_size = auto_block_size(num_data, width, num_chains=num_chains)
    if block_size is None or block_size >= num_data:
        return None
    leaves = jax.tree.leaves((tuple(model_args), dict(model_kwargs or {})))
    if not any(validation.is_per_datum(v, num_data) for v in leaves):
        raise ValueError(
            f"block_size={block_size} needs per-datum array arguments (leading axis of size "
            f"N = {num_data}) to split; this model has none: pass the data as arrays whose "
            "leading axis is the data axis, or block_size=None"
        )
    return block_size


class _Blocks:
    """The per-datum arrays of ``(args, kwargs)`` split into ``num_blocks`` full blocks of
    ``block_size`` rows (stacked on a leading axis, for ``lax.map``) and a remainder."""

    def __init__(self, fn, args, kwargs, block_size, is_per_datum):
        self.leaves, self.treedef = jax.tree.flatten((tuple(args), dict(kwargs)), is_leaf=lambda v: v is None)
        self.mask = [is_per_datum(v) for v in self.leaves]
        self.fn = fn
        per = [jnp.asarray(v) for v, m in zip(self.leaves, self.mask) if m]
        num_data = jnp.shape(per[0])[0] if per else 0
        self.num_blocks, rest = divmod(num_data, block_size)
        cut = self.num_blocks * block_size
        self.head = [v[:cut].reshape((self.num_blocks, block_size) + v.shape[1:]) for v in per]
        self.tail = [v[cut:] for v in per] if rest else None
        self.any = bool(per)

    def call(self, block_leaves):
        """``fn`` on one block (the non-per-datum arguments unchanged)."""
        it = iter(block_leaves)
        full = [next(it) if m else v for v, m in zip(self.leaves, self.mask)]
        a, kw = jax.tree.unflatten(self.treedef, full)
        return self.fn(a, kw)


def blocked_sum(fn: Callable, args: tuple, kwargs: dict, block_size: int | None, is_per_datum: Callable):
    """``sum_b fn(args_b, kwargs_b)`` over blocks of ``block_size`` rows of the per-datum arrays.

    ``fn(args, kwargs)`` returns a scalar sum over the data it is given; ``is_per_datum(v)``
    says which array arguments are split along their leading (data) axis.  Full blocks run in
    a ``lax.scan`` of a rematerialised (``jax.checkpoint``) body; the remainder ``N mod B``
    is one more call.  Equals ``fn(args, kwargs)`` up to float summation order, which is what
    ``block_size=None`` (one block) returns.
    """
    if block_size is None:
        return fn(tuple(args), dict(kwargs))
    blocks = _Blocks(fn, args, kwargs, block_size, is_per_datum)
    if not blocks.any:
        return fn(tuple(args), dict(kwargs))
    body = jax.checkpoint(blocks.call)
    total = jnp.sum(jax.lax.map(body, blocks.head)) if blocks.num_blocks else 0.0
    if blocks.tail is not None:
        total = total + body(blocks.tail)
    return total


def blocked_value_and_grad(
    fn: Callable, params, args: tuple, kwargs: dict, block_size: int | None, is_per_datum: Callable
):
    """``(sum_b fn(params, args_b, kwargs_b), sum_b grad_params fn(params, args_b, kwargs_b))``
    in one pass over the blocks of ``block_size`` rows of the per-datum arrays.

    ``fn(params, args, kwargs)`` returns a scalar sum over the data it is given, differentiable in
    the pytree ``params`` (``None`` leaves allowed: their gradient is ``None``).  Each block's value
    and gradient come from one forward and one backward pass (``jax.value_and_grad`` of the
    block), added to the running totals carried by a ``lax.scan``; the remainder ``N mod B`` is one
    more call.  Against ``jax.value_and_grad`` of :func:`blocked_sum` this saves the recomputed
    forward pass of every block; the totals agree up to float summation order.  Peak memory: one
    block's activations and cotangents, and one gradient (the shape of ``params``) besides the
    running total.  ``block_size=None``: ``jax.value_and_grad(fn)`` on all the data at once.
    """
    value_and_grad = jax.value_and_grad(fn)
    if block_size is None:
        return value_and_grad(params, tuple(args), dict(kwargs))
    blocks = _Blocks(lambda a, kw: (a, kw), args, kwargs, block_size, is_per_datum)
    if not blocks.any:
        return value_and_grad(params, tuple(args), dict(kwargs))

    def on_block(block_leaves):
        return value_and_grad(params, *blocks.call(block_leaves))

    def add(total, block_leaves):
        return jax.tree.map(jnp.add, total, on_block(block_leaves)), None

    total = None
    if blocks.num_blocks:
        shapes = jax.eval_shape(on_block, [v[0] for v in blocks.head])
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        total, _ = jax.lax.scan(add, zero, blocks.head)
    if blocks.tail is not None:
        tail = on_block(blocks.tail)
        total = tail if total is None else jax.tree.map(jnp.add, total, tail)
    return total


def particle_blocked_sum(fn: Callable, arrays: tuple, block_size: int | None):
    """``sum_b fn(arrays_b)``, the arrays split along their leading (particle) axis into blocks of
    ``block_size`` (full blocks in a ``lax.map``, the remainder in one more call).

    ``fn`` returns a particle block's contribution to an output that is a sum over particles (the
    mean-field network's ``f(x_i)`` for every datum); it is ``jax.checkpoint``-ed, so that the
    backward pass recomputes one block's ``N x P`` activations at a time and each block's
    gradient stays with its own particles.  ``None`` or ``block_size >= n``: ``fn(arrays)``.
    """
    n = jnp.shape(arrays[0])[0]
    if block_size is None or block_size >= n:
        return fn(arrays)
    num_blocks, rest = divmod(n, block_size)
    cut = num_blocks * block_size
    part = jax.checkpoint(fn)
    heads = tuple(v[:cut].reshape((num_blocks, block_size) + v.shape[1:]) for v in arrays)
    total = jnp.sum(jax.lax.map(part, heads), axis=0)
    if rest:
        total = total + part(tuple(v[cut:] for v in arrays))
    return total


def blocked_map(
    fn: Callable, args: tuple, kwargs: dict, block_size: int | None, is_per_datum: Callable, per_datum_outputs: Callable
):
    """``fn(args, kwargs)`` (a dict of arrays) evaluated block by block and reassembled.

    Outputs named by ``per_datum_outputs(name)`` are concatenated along their leading (data)
    axis; the others are taken from the first block (they must not depend on the data).
    Memory: one block's intermediates, plus the concatenated outputs.  ``block_size=None``:
    ``fn(args, kwargs)`` in one call.
    """
    if block_size is None:
        return fn(tuple(args), dict(kwargs))
    blocks = _Blocks(fn, args, kwargs, block_size, is_per_datum)
    if not blocks.any:
        return fn(tuple(args), dict(kwargs))
    parts = []
    if blocks.num_blocks:
        out = jax.lax.map(blocks.call, blocks.head)
        parts.append({k: (v.reshape((-1,) + v.shape[2:]) if per_datum_outputs(k) else v[0]) for k, v in out.items()})
    if blocks.tail is not None:
        parts.append(blocks.call(blocks.tail))
    if len(parts) == 1:
        return parts[0]
    return {k: (jnp.concatenate([parts[0][k], parts[1][k]]) if per_datum_outputs(k) else parts[0][k]) for k in parts[0]}


def _data_axis_outputs(post: Callable, z, args: tuple, kwargs: dict, num_data: int, block_size: int, site_names) -> set:
    """Names of the outputs of ``post`` that are per datum: not a particle site, with a leading
    axis of size ``N`` on all the data and ``B`` on the first block (read from abstract
    evaluations, no arithmetic)."""

    def first_block(v):
        return v[:block_size] if validation.is_per_datum(v, num_data) else v

    full = jax.eval_shape(lambda zz: post(zz, args, kwargs), z)
    block = jax.eval_shape(lambda zz: post(zz, *jax.tree.map(first_block, (args, kwargs))), z)
    return {
        name
        for name, out in full.items()
        if name not in site_names and out.shape[:1] == (num_data,) and block[name].shape[:1] == (block_size,)
    }


def blocked_deterministic(
    post: Callable, model_args: tuple, model_kwargs: dict, *, num_data: float, block_size: int | None, site_names
) -> Callable:
    """``run(z) -> dict``: the model's sites at ``z`` with its per-datum deterministic sites
    evaluated over blocks of ``block_size`` data.

    ``post(z, args, kwargs)`` returns the model's sites, e.g. ``numpyro.infer.util.constrain_fn(
    model, args, kwargs, z, return_deterministic=True)``.  A deterministic site with one row per
    datum (the network output ``f(x_i)``, shape ``(N, ...)``) is computed block by block and
    concatenated (:func:`blocked_map`), so that one block's ``B x n`` intermediates are held at a
    time; the particle sites (``site_names``) and the other deterministic sites are taken from the
    first block.  ``masses`` (per particle, even when ``n = N``) is passed whole to every block.
    ``block_size=None`` or ``B >= N``: ``post`` on all the data at once.
    """
    num_data = int(round(num_data))
    block_size = validation.optional_positive_int("block_size", block_size)
    args, kwargs = tuple(model_args), dict(model_kwargs or {})
    if block_size is None or block_size >= num_data:
        return lambda z: post(z, args, kwargs)
    fixed = {k: v for k, v in kwargs.items() if k == "masses"}
    data_kwargs = {k: v for k, v in kwargs.items() if k != "masses"}
    split = functools.partial(validation.is_per_datum, num_data=num_data)
    site_names = frozenset(site_names)

    def on_data(z, a, kw):
        return post(z, a, {**kw, **fixed})

    def run(z):
        per_datum = _data_axis_outputs(on_data, z, args, data_kwargs, num_data, block_size, site_names)
        return blocked_map(functools.partial(on_data, z), args, data_kwargs, block_size, split, per_datum.__contains__)

    return run
