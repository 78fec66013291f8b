"""Stable ordering of small unsigned integer keys by sorts of one packed 32-bit operand.

``argsort_uint24(keys)`` is ``jnp.argsort(keys, stable=True)`` for keys in ``[0, 2^24)``: the
permutation ``pi`` with ``(keys[pi[0]], pi[0]) < (keys[pi[1]], pi[1]) < ...``.  It computes the
same permutation faster because XLA sorts one ``uint32`` operand with the plain comparison about
4x faster than it sorts a key and an index together (the argsort's two-operand sort with its
comparator: measured on XLA:CPU, 256 keys 46 -> 6 µs, 65,536 keys 15 -> 3.3 ms a sort; one sort
up to 256 keys, two beyond).

The index rides in the low bits of the sorted word.  With ``b = ceil(log2 n)`` index bits:

* ``b <= 8``: one sort of ``key << 8 | i`` (24 + 8 bits) orders by ``(key, i)``;
* ``8 < b <= 20``: two passes of a least-significant-digit radix sort.  Write
  ``key = hi * 2^(32-b) + lo`` with ``lo`` the low ``32 - b`` bits.  Pass 1 sorts
  ``lo << b | i``, which orders by ``(lo, i)``; pass 2 sorts ``hi << b | p`` with ``p`` the
  position in pass 1's order (``(b - 8) + b <= 32`` bits), a stable sort by ``hi`` of that order.
  The result is ordered by ``(hi, lo, i) = (key, i)``.  (All words are distinct, so the sorts
  need no stability of their own.)
* ``b > 20`` (over a million keys): ``jnp.argsort``.

The mfsample birth–death step orders the quiet slots this way (:mod:`.reaction`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["argsort_uint24", "KEY_BITS", "MAX_PACKED_INDEX_BITS"]

#: the keys' width in bits: keys lie in ``[0, 2^KEY_BITS)``
KEY_BITS = 24
#: the widest index (in bits) that two packed passes order; wider falls back to ``jnp.argsort``
MAX_PACKED_INDEX_BITS = 20

_WORD = 32


def _index_bits(n: int) -> int:
    """Bits needed for the indices ``0..n-1`` (at least one)."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _sort_packed(high, low, low_bits: int):
    """``low`` (the payload, ``< 2^low_bits``) in the order of the distinct words ``high << low_bits | low``."""
    word = (high << low_bits) | low
    return jax.lax.sort(word) & jnp.uint32((1 << low_bits) - 1)


def argsort_uint24(keys) -> jax.Array:
    """``jnp.argsort(keys, stable=True)`` of a 1-D array of integer keys in ``[0, 2^24)``, as ``int32``.

    Keys outside that range give a wrong order (they are not checked: this runs inside compiled
    steps); ``keys`` may be any integer dtype.
    """
    keys = jnp.asarray(keys)
    if keys.ndim != 1:
        raise ValueError(f"argsort_uint24 orders a 1-D array, got shape {keys.shape}")
    n = keys.shape[0]
    b = _index_bits(n)
    if n == 0 or b > MAX_PACKED_INDEX_BITS:
        return jnp.argsort(keys, stable=True).astype(jnp.int32)
    keys = keys.astype(jnp.uint32)
    index = jnp.arange(n, dtype=jnp.uint32)
    if b <= _WORD - KEY_BITS:
        return _sort_packed(keys, index, _WORD - KEY_BITS).astype(jnp.int32)
    low_bits = _WORD - b
    by_low = _sort_packed(keys & jnp.uint32((1 << low_bits) - 1), index, b)
    position = _sort_packed(keys[by_low] >> low_bits, index, b)
    return by_low[position].astype(jnp.int32)
