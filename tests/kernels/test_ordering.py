"""The packed-word argsort equals NumPy's stable argsort (every branch: one pass, two, fallback)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfsample.kernels.ordering import KEY_BITS, MAX_PACKED_INDEX_BITS, argsort_uint24


def _keys(seed, n, high):
    """``n`` keys in ``[0, high)``, with the extremes 0 and ``2^24 - 1`` planted when ``high`` allows."""
    keys = np.random.default_rng(seed).integers(0, high, n).astype(np.uint32)
    if n >= 2 and high == 2**KEY_BITS:
        keys[0], keys[-1] = 2**KEY_BITS - 1, 0
    return keys


# sizes around each branch: b <= 8 bits of index (one sort), 8 < b <= 20 (two), b > 20 (argsort)
SIZES = [1, 2, 3, 255, 256, 257, 1000, 4096, 2**16 + 3]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("high", [3, 2**KEY_BITS])  # many ties / the full 24-bit range
def test_argsort_uint24_is_the_stable_argsort(n, high):
    keys = _keys(n, n, high)
    got = np.asarray(jax.jit(argsort_uint24)(keys))
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))
    assert got.dtype == np.int32


def test_argsort_uint24_falls_back_beyond_packed_indices():
    """Past 2^20 keys the index no longer fits beside the key: jnp.argsort, the same answer."""
    n = 2**MAX_PACKED_INDEX_BITS + 5
    keys = _keys(7, n, 2**KEY_BITS)
    np.testing.assert_array_equal(np.asarray(jax.jit(argsort_uint24)(keys)), np.argsort(keys, kind="stable"))


def test_argsort_uint24_takes_signed_keys_and_vmaps():
    keys = np.stack([_keys(s, 300, 50) for s in range(4)]).astype(np.int32)
    got = np.asarray(jax.jit(jax.vmap(argsort_uint24))(keys))
    np.testing.assert_array_equal(got, np.argsort(keys, axis=1, kind="stable"))


def test_argsort_uint24_sorts_one_packed_word_not_a_key_and_index():
    """The point of the module: every sort in the lowered programme has a single operand."""
    text = jax.jit(argsort_uint24).lower(jnp.zeros((4096,), jnp.uint32)).as_text()
    operands = re.findall(r'"stablehlo.sort"\(([^)]*)\)', text)
    assert len(operands) == 2  # two radix passes at 4096 keys
    assert all(len(ops.split(",")) == 1 for ops in operands), operands
    # ... where jnp.argsort sorts the keys and an index together
    reference = jax.jit(jnp.argsort).lower(jnp.zeros((4096,), jnp.uint32)).as_text()
    assert [len(ops.split(",")) for ops in re.findall(r'"stablehlo.sort"\(([^)]*)\)', reference)] == [2]


def test_argsort_uint24_rejects_a_matrix():
    with pytest.raises(ValueError, match="1-D"):
        argsort_uint24(jnp.zeros((2, 3), jnp.uint32))
