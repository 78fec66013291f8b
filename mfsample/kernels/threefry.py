"""JAX's threefry random numbers, bit for bit, with the hash written out instead of looped.

The kernels draw a few random numbers every step (a key split, the Langevin noise, the
birth–death uniforms, a Metropolis test's uniform).  ``jax.random`` computes them with the
Threefry-2x32 hash (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011): twenty rounds of ``x0 += x1; x1 = rotl(x1, r) ^ x0`` with a key injection after every
fourth.  On a CPU JAX lowers
those rounds as a loop of five iterations (to keep compilation short), and inside a compiled
step that loop is a chain of a few dozen tiny kernels, each paying a launch: 60–100 µs a draw
at small sizes, a sixth of a whole step of a 256-particle network.  Written out here as plain
array operations, XLA fuses the hash into one elementwise kernel.

The functions return exactly the numbers of their ``jax.random`` namesakes (same counters, same
hash, same conversion to floats; ``tests/kernels/test_threefry.py`` compares them bit for bit),
so a run is the same whichever computes its draws.  They fall back to ``jax.random`` for anything
else: another PRNG implementation, ``jax_threefry_partitionable`` switched off, non-float32
floats, a multi-dimensional ``split``, 2^32 numbers or more in one draw.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["split", "bits", "uniform", "normal", "threefry_2x32"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # the key schedule's constant


def _rotate_left(x, r: int):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry_2x32(k0, k1, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of the counter words ``(x0, x1)`` under the key ``(k0, k1)``.

    Five groups of four rounds, the rotation constants alternating between the two rows of
    ``_ROTATIONS``; after group ``g`` (1..5) the key words ``ks[g % 3], ks[(g + 1) % 3] + g`` are
    added, with ``ks = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA)``.
    """
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(1, 6):
        for r in _ROTATIONS[(group - 1) % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[group % 3]
        x1 = x1 + ks[(group + 1) % 3] + np.uint32(group)
    return x0, x1


def _key_words(key, shape):
    """``(k0, k1)`` of a threefry key (typed or raw ``uint32[2]``) for a draw of ``shape``, or
    ``None`` to leave the draw to JAX."""
    if not jax.config.jax_threefry_partitionable or math.prod(shape) >= 2**32:
        return None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape or str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        data = jax.random.key_data(key)
    elif key.dtype == jnp.uint32 and key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32":
        data = key
    else:
        return None
    return data[0], data[1]


def _counters(shape):
    """The 64-bit position of every entry of ``shape`` as ``(high, low)`` words (fewer than 2^32
    entries: the high words are 0)."""
    low = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    return jnp.zeros(shape, jnp.uint32), low


def _hash(words, shape):
    return threefry_2x32(*words, *_counters(shape))


def split(key, num: int = 2):
    """``jax.random.split(key, num)``."""
    words = _key_words(key, (num,)) if isinstance(num, int) else None
    if words is None:
        return jax.random.split(key, num)
    out = jnp.stack(_hash(words, (num,)), axis=1)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(out, impl="threefry2x32")
    return out


def bits(key, shape):
    """``jax.random.bits(key, shape, jnp.uint32)``."""
    shape = tuple(shape)
    words = _key_words(key, shape)
    if words is None:
        return jax.random.bits(key, shape, jnp.uint32)
    hi, lo = _hash(words, shape)
    return hi ^ lo


def _unit(hi, lo):
    """Uniform float32 on ``[0, 1)`` from the top 23 bits of each word, as JAX converts them."""
    mantissa = ((hi ^ lo) >> np.uint32(9)) | np.float32(1.0).view(np.uint32)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)


def uniform(key, shape=(), dtype=jnp.float32):
    """``jax.random.uniform(key, shape, dtype)`` on ``[0, 1)`` (the default bounds)."""
    shape = tuple(shape)
    words = _key_words(key, shape)
    if words is None or jnp.dtype(dtype) != jnp.float32:
        return jax.random.uniform(key, shape, dtype)
    return jnp.maximum(np.float32(0.0), _unit(*_hash(words, shape)))


def normal(key, shape, dtype=jnp.float32):
    """``jax.random.normal(key, shape, dtype)``: ``sqrt(2) erfinv(u)``, ``u`` uniform on ``(-1, 1)``
    from the top 23 bits of each word, as JAX converts them."""
    shape = tuple(shape)
    words = _key_words(key, shape)
    if words is None or jnp.dtype(dtype) != jnp.float32:
        return jax.random.normal(key, shape, dtype)
    low = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(low, _unit(*_hash(words, shape)) * (np.float32(1.0) - low) + low)
    return np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)
