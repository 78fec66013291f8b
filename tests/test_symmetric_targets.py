"""Symmetric targets and padded set generators (mfsample/data/; Zweig & Bruna 2020)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfsample.data import (
    SYMMETRIC_TARGETS,
    pad_sets,
    sample_sets,
    set_function,
    symmetric_targets,
)


def test_closed_form_targets_on_a_hand_made_set():
    """mean / max / second largest / softmax of the norms r_i = |x_i|, and minus the mean inverse
    pairwise distance, against values computed by hand on {(3,4), (0,1), (0,0)} (norms 5, 1, 0)."""
    sets, mask = pad_sets([np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]]), np.array([[0.0, 2.0]])])
    expect = {
        "mean": [2.0, 2.0],
        "max": [5.0, 2.0],
        "second_largest": [1.0, 2.0],  # a set of one element: its only norm
        "softmax": [0.1 * np.log((np.exp(50) + np.exp(10) + 1) / 3), 2.0],
        # distances 3*sqrt(2), 5, 1 (each pair twice over k(k-1) = 6 ordered pairs); one element: 0
        "potential": [-(1 / (3 * np.sqrt(2)) + 1 / 5 + 1) / 3, 0.0],
    }
    for name, values in expect.items():
        fn, teacher = set_function(name, dim=2, feature="norm")
        assert teacher is None
        # float32 arithmetic on O(1)-O(10) numbers
        np.testing.assert_allclose(fn(sets, mask), values, rtol=1e-5, err_msg=name)


def test_inverse_norm_targets_on_a_hand_made_set():
    """The default element feature is r_i = 1/|x_i|: on {(3,4), (0,2), (0,0.5)} the features are
    1/5, 1/2, 2 (one-element set {(0, 4)}: 1/4)."""
    sets, mask = pad_sets([np.array([[3.0, 4.0], [0.0, 2.0], [0.0, 0.5]]), np.array([[0.0, 4.0]])])
    r = np.array([0.2, 0.5, 2.0])
    expect = {
        "mean": [r.mean(), 0.25],
        "max": [2.0, 0.25],
        "second_largest": [0.5, 0.25],
        "softmax": [0.1 * np.log(np.mean(np.exp(r / 0.1))), 0.25],
    }
    for name, values in expect.items():
        fn, _ = set_function(name, dim=2)
        np.testing.assert_allclose(fn(sets, mask), values, rtol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="feature"):
        set_function("mean", dim=2, feature="sqrt")


@pytest.mark.parametrize("name", SYMMETRIC_TARGETS)
def test_targets_are_symmetric_and_ignore_padding(name):
    """Every target is invariant under permutations of the elements of each set, and neither the
    padding values nor extra padded slots change it."""
    fn, _ = set_function(name, jax.random.PRNGKey(0), dim=3, feature="norm")
    sets, mask = sample_sets(jax.random.PRNGKey(1), 16, (1, 6), 3, max_set_size=7)
    y = fn(sets, mask)
    assert y.shape == (16,) and np.all(np.isfinite(y))
    perm = jax.vmap(lambda k: jax.random.permutation(k, 7))(jax.random.split(jax.random.PRNGKey(2), 16))
    y_perm = fn(jnp.take_along_axis(sets, perm[..., None], 1), jnp.take_along_axis(mask, perm, 1))
    # reordered float32 sums (softmax: a logsumexp) of <= 6 terms: a few ulps
    np.testing.assert_allclose(y_perm, y, rtol=1e-5, atol=1e-6)
    junk = jnp.where(mask[..., None], sets, 0.37)
    np.testing.assert_allclose(fn(junk, mask), y, rtol=1e-6, atol=1e-7)
    assert float(jnp.std(y)) > 1e-3  # the target varies across sets


def test_neuron_teachers_are_normalised_and_of_the_architecture():
    """The neuron target is sigma(<mu_X, psi*>) with psi* = (sum_k c_k sigma_in(<w_k, x>) - shift)/scale,
    |w_k| = 1, normalised to mean 0, variance 1 under the element law: <mu_X, psi*> has mean ~0 and
    variance ~1/k on narrow sets of k elements, so the relu neuron is active on about half of them."""
    for name, sigma in (("neuron", jax.nn.relu), ("smooth_neuron", jax.nn.softplus)):
        data = symmetric_targets(jax.random.PRNGKey(0), name, dim=4, num_sets=4000, set_size=4)
        t = data.teacher
        np.testing.assert_allclose(jnp.linalg.norm(t["w"], axis=1), 1.0, rtol=1e-5)
        inner = jax.nn.relu if name == "neuron" else jnp.tanh
        psi = (inner(data.sets @ t["w"].T) @ t["c"] - t["shift"]) / t["scale"]
        pooled = psi.mean(axis=1)
        np.testing.assert_allclose(data.y, sigma(pooled), rtol=1e-5, atol=1e-6)
        # 4000 sets: the standard error of the mean of pooled (sd 1/2) is 0.008, of its variance ~0.004
        assert abs(float(pooled.mean())) < 0.05
        assert float(pooled.var()) == pytest.approx(0.25, abs=0.03)
    relu = symmetric_targets(jax.random.PRNGKey(0), "neuron", dim=4, num_sets=4000, set_size=4)
    assert 0.35 < float(jnp.mean(relu.y > 0)) < 0.65


def test_sample_sets_sizes_mask_and_boxes():
    """Sizes are uniform on the inclusive range, the mask marks the first k slots, narrow elements
    lie in [-1, 1]^d and wide elements of one set in a sub-box of it (which varies between sets)."""
    sets, mask = sample_sets(jax.random.PRNGKey(0), 3000, (2, 5), 2, max_set_size=6)
    sizes = np.asarray(mask.sum(1))
    assert sets.shape == (3000, 6, 2) and set(np.unique(sizes)) == {2, 3, 4, 5}
    # each size has probability 1/4; 3000 draws: sd of a frequency 0.008, 0.04 is 5 sd
    assert np.all(np.abs(np.bincount(sizes, minlength=6)[2:] / 3000 - 0.25) < 0.04)
    np.testing.assert_array_equal(mask, np.arange(6)[None, :] < sizes[:, None])
    assert np.all(np.asarray(sets)[~np.asarray(mask)] == 0)
    assert np.all(np.abs(sets) <= 1) and float(jnp.abs(sets).max()) > 0.99
    wide, wmask = sample_sets(jax.random.PRNGKey(1), 500, 50, 2, sampling="wide")
    spread = np.asarray(wide.max(1) - wide.min(1))  # per set and coordinate: the sub-box width
    assert np.all(np.abs(wide) <= 1)
    # narrow sets of 50 uniform elements span almost all of [-1, 1] (range ~1.92); wide ones vary
    assert spread.mean() < 1.0 and spread.std() > 0.3
    with pytest.raises(ValueError, match="max_set_size"):
        sample_sets(jax.random.PRNGKey(0), 4, (2, 5), 2, max_set_size=3)
    with pytest.raises(ValueError, match="sampling"):
        sample_sets(jax.random.PRNGKey(0), 4, 2, 2, sampling="broad")


def test_symmetric_targets_data_and_fresh_samples():
    """Labels are the target on the training sets (plus noise); sample() draws sets of other sizes from
    the same law and the same teacher; the key fixes everything."""
    data = symmetric_targets(jax.random.PRNGKey(3), "neuron", dim=3, num_sets=64, set_size=(2, 4))
    np.testing.assert_allclose(data.y, data.target(data.sets, data.mask), rtol=1e-6)
    again = symmetric_targets(jax.random.PRNGKey(3), "neuron", dim=3, num_sets=64, set_size=(2, 4))
    np.testing.assert_array_equal(again.y, data.y)
    sets, mask, y = data.sample(jax.random.PRNGKey(4), 32, 12)
    assert sets.shape == (32, 12, 3) and bool(mask.all())
    np.testing.assert_allclose(y, data.target(sets, mask), rtol=1e-6)
    noisy = symmetric_targets(jax.random.PRNGKey(3), "mean", dim=3, num_sets=4000, set_size=3, noise=0.5)
    resid = noisy.y - noisy.target(noisy.sets, noisy.mask)
    # sd of the sample sd of 4000 N(0, 0.25) draws is 0.5/sqrt(8000) ~ 0.006
    assert float(resid.std()) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="unknown target"):
        symmetric_targets(jax.random.PRNGKey(0), "median", dim=2, num_sets=4, set_size=2)
    with pytest.raises(ValueError, match="set_size must be an integer >= 1"):
        symmetric_targets(jax.random.PRNGKey(0), "mean", dim=2, num_sets=4, set_size=0)


def test_pad_sets():
    """pad_sets stacks sets of different sizes with a mask; the padding is zero."""
    sets, mask = pad_sets([np.ones((2, 3)), 2 * np.ones((4, 3))], max_set_size=5)
    assert sets.shape == (2, 5, 3)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])
    assert float(sets[0, 2:].sum()) == 0 and float(sets[1, :4].mean()) == 2
    with pytest.raises(ValueError, match="exceeds"):
        pad_sets([np.ones((6, 3))], max_set_size=5)
