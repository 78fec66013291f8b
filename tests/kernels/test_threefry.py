"""The written-out threefry draws equal ``jax.random``'s bit for bit, and compile without a loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfsample.kernels import threefry

KEYS = [jax.random.PRNGKey(0), jax.random.PRNGKey(2**31 + 12345), jax.random.key(7)]


def _data(keys):
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(keys))
    return np.asarray(keys)


@pytest.mark.parametrize("key", KEYS, ids=["raw0", "raw-large", "typed"])
@pytest.mark.parametrize("num", [2, 3, 5])
def test_split_is_jax_split(key, num):
    ours = threefry.split(key, num)
    assert ours.dtype == jax.random.split(key, num).dtype
    np.testing.assert_array_equal(_data(ours), _data(jax.random.split(key, num)))


@pytest.mark.parametrize("key", KEYS, ids=["raw0", "raw-large", "typed"])
@pytest.mark.parametrize("shape", [(), (7,), (4, 256), (3, 5, 2)])
def test_bits_and_normal_are_jax(key, shape):
    np.testing.assert_array_equal(threefry.bits(key, shape), jax.random.bits(key, shape, jnp.uint32))
    # every float32 equal, inside and outside jit (erfinv near +-1 included: 3000 draws reach |x| > 3)
    np.testing.assert_array_equal(threefry.uniform(key, shape), jax.random.uniform(key, shape))
    np.testing.assert_array_equal(threefry.normal(key, shape), jax.random.normal(key, shape))
    ours = jax.jit(lambda k: threefry.normal(k, (3000,)))(key)
    np.testing.assert_array_equal(ours, jax.jit(lambda k: jax.random.normal(k, (3000,)))(key))
    assert np.max(np.abs(ours)) > 3.0


def test_vmapped_over_keys_is_jax():
    """The kernels' chains draw under ``vmap``: the key words are then batched scalars."""
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    np.testing.assert_array_equal(
        jax.vmap(lambda k: threefry.normal(k, (10, 3)))(keys), jax.vmap(lambda k: jax.random.normal(k, (10, 3)))(keys)
    )
    np.testing.assert_array_equal(
        jax.vmap(lambda k: threefry.split(k, 3))(keys), jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    )


def test_published_known_answer():
    """Threefry-2x32 (20 rounds) known-answer vector of its authors' Random123 suite: key and counter
    all ones -> (0x1cb996fc, 0xbb002be7), the value JAX's own tests check as well."""
    ones = jnp.uint32(0xFFFFFFFF)
    x0, x1 = threefry.threefry_2x32(ones, ones, ones[None], ones[None])
    assert (int(x0[0]), int(x1[0])) == (0x1CB996FC, 0xBB002BE7)


def test_other_generators_are_left_to_jax():
    """A non-threefry key, a float16 normal, a 2-D split: the call is ``jax.random``'s own."""
    rbg = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(_data(threefry.split(rbg, 3)), _data(jax.random.split(rbg, 3)))
    np.testing.assert_array_equal(threefry.bits(rbg, (5,)), jax.random.bits(rbg, (5,), jnp.uint32))
    key = jax.random.PRNGKey(1)
    np.testing.assert_array_equal(threefry.normal(key, (4,), jnp.float16), jax.random.normal(key, (4,), jnp.float16))
    np.testing.assert_array_equal(threefry.split(key, (2, 3)), jax.random.split(key, (2, 3)))


def test_no_loop_in_the_compiled_draw():
    """The reason for the module: JAX's CPU lowering of the hash is a ``while`` loop, ours is not."""
    key = jax.random.PRNGKey(0)
    ours = jax.jit(lambda k: threefry.normal(k, (3072,))).lower(key).as_text()
    jaxs = jax.jit(lambda k: jax.random.normal(k, (3072,))).lower(key).as_text()
    assert "while" not in ours
    if jax.default_backend() == "cpu":
        assert "while" in jaxs
