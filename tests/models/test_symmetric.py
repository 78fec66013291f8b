"""The network on sets: S1/S2/S3 under the core kernels."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

import mfsample as mf
from mfsample.baselines import SymmetricRandomFeatures
from mfsample.data import sample_sets, symmetric_targets
from mfsample.energy import energy_from_model
from mfsample.kernels.steps import evaluate_drift
from mfsample.models.symmetric import (
    KLASSES,
    TRAINED_SITES,
    nested_init_params,
    symmetric_frozen_params,
    symmetric_network,
)

DIM = 3


def _trace(sets, *args, **kwargs):
    return handlers.trace(handlers.seed(symmetric_network, 0)).get_trace(sets, *args, **kwargs)


def _f(sets, params=None, **kwargs):
    model = symmetric_network if params is None else handlers.substitute(symmetric_network, data=params)
    return handlers.trace(handlers.seed(model, 0)).get_trace(sets, **kwargs)["f"]["value"]


@pytest.fixture(scope="module")
def padded():
    """Twelve sets of sizes 1..6 in a (12, 8, 3) array: two padded slots at least in each."""
    return sample_sets(jax.random.PRNGKey(3), 12, (1, 6), DIM, max_set_size=8)


@pytest.mark.parametrize("klass", KLASSES)
def test_output_is_the_mean_field_average_of_units_on_measures(klass, padded):
    """f(X) = n^-p sum_j a_j sigma(<mu_X, psi_j>), psi_j = m^-1/2 sum_k c_jk sigma_in(<w_jk, x> + b_jk),
    written out as loops over sets and units; with masses, n^(1-p) sum_j m_j a_j sigma(...)."""
    sets, mask = padded
    n, m = 5, 4
    tr = _trace(
        sets,
        width=n,
        inner_width=m,
        klass=klass,
        mask=mask,
        activation="tanh",
        inner_activation="softplus",
        frozen_key=jax.random.PRNGKey(7),
    )
    fp = symmetric_frozen_params(jax.random.PRNGKey(7), "S3", width=n, inner_width=m, dim=DIM)
    a = np.asarray(tr["a"]["value"], np.float64)
    c = np.asarray(tr["c"]["value"] if "c" in tr else fp["c"], np.float64)
    w = np.asarray(tr["w"]["value"] if "w" in tr else np.broadcast_to(fp["w"], (n, m, DIM)), np.float64)
    b = np.asarray(tr["b"]["value"] if "b" in tr else np.broadcast_to(fp["b"], (n, m)), np.float64)
    x, msk = np.asarray(sets, np.float64), np.asarray(mask)
    units = np.zeros((len(x), n))
    for i in range(len(x)):
        elems = x[i][msk[i]]
        for j in range(n):
            psi = np.log1p(np.exp(elems @ w[j].T + b[j])) @ c[j] / np.sqrt(m)
            units[i, j] = a[j] * np.tanh(psi.mean())
    # float32 model against a float64 loop on O(1) values: 1e-5 is ~100 float32 ulps
    np.testing.assert_allclose(tr["f"]["value"], units.mean(1), rtol=1e-5, atol=1e-5)
    masses = jnp.array([0.4, 0.3, 0.1, 0.1, 0.1])
    params = {k: tr[k]["value"] for k in TRAINED_SITES[klass]}
    for scaling, p in (("mean_field", 1.0), ("ntk", 0.5)):
        f = _f(
            sets,
            params,
            width=n,
            inner_width=m,
            klass=klass,
            mask=mask,
            activation="tanh",
            inner_activation="softplus",
            frozen_key=jax.random.PRNGKey(7),
            masses=masses,
            scaling=scaling,
        )
        np.testing.assert_allclose(f, units @ np.asarray(masses) * n ** (1 - p), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("klass", KLASSES)
def test_permutation_invariance(klass, padded):
    """f depends on a set only through mu_X: a random permutation of the positions within each set
    (elements and padding moved together with the mask) leaves every output unchanged."""
    sets, mask = padded
    kw = dict(width=6, inner_width=5, klass=klass)
    f = _f(sets, mask=mask, **kw)
    keys = jax.random.split(jax.random.PRNGKey(11), sets.shape[0])
    perm = jax.vmap(lambda k: jax.random.permutation(k, sets.shape[1]))(keys)
    f_perm = _f(jnp.take_along_axis(sets, perm[..., None], 1), mask=jnp.take_along_axis(mask, perm, 1), **kw)
    assert not np.array_equal(np.asarray(perm), np.tile(np.arange(sets.shape[1]), (sets.shape[0], 1)))
    # only the order of a float32 sum of <= 6 terms changes: a few ulps of O(0.1) outputs
    np.testing.assert_allclose(f_perm, f, rtol=1e-5, atol=1e-6)
    assert float(jnp.std(f)) > 1e-3  # the outputs differ between sets: the check is not vacuous


@pytest.mark.parametrize("klass", KLASSES)
def test_mask_is_respected(klass, padded):
    """Padding never changes outputs: arbitrary (even NaN) padding values, extra padded slots, and the
    unpadded set give the same f; duplicating every element (same measure mu_X) too."""
    sets, mask = padded
    kw = dict(width=6, inner_width=5, klass=klass)
    f = _f(sets, mask=mask, **kw)
    garbage = jnp.where(mask[..., None], sets, jnp.nan)
    np.testing.assert_array_equal(_f(garbage, mask=mask, **kw), f)
    wide = jnp.concatenate([sets, 1e3 * jnp.ones((sets.shape[0], 3, DIM))], axis=1)
    wide_mask = jnp.concatenate([mask, jnp.zeros((sets.shape[0], 3), bool)], axis=1)
    np.testing.assert_allclose(_f(wide, mask=wide_mask, **kw), f, rtol=1e-6, atol=1e-7)
    size = int(mask[0].sum())
    alone = _f(sets[:1, :size], **kw)  # no mask: every entry is an element
    np.testing.assert_allclose(alone, f[:1], rtol=1e-6, atol=1e-7)
    doubled = jnp.concatenate([sets, sets], axis=1)
    np.testing.assert_allclose(_f(doubled, mask=jnp.concatenate([mask, mask], 1), **kw), f, rtol=1e-5, atol=1e-6)
    # the mask matters: reading the padding as elements changes the output of the padded sets
    assert not np.allclose(_f(sets, **kw), f, atol=1e-4)


def test_sites_plates_and_frozen_layers():
    """The trained sites of each class sit in the particle plate (particle axis leading) and are the
    only latent sites, so the core energy accepts the model; S2 and S3 built from one frozen_key share
    the inner layer, and the frozen layers are the same for every call (constants, not draws)."""
    sets, mask = sample_sets(jax.random.PRNGKey(0), 4, 3, DIM)
    y = jnp.zeros(4)
    shapes = {"a": (6,), "c": (6, 5), "w": (6, 5, DIM), "b": (6, 5)}
    for klass in KLASSES:
        tr = _trace(sets, y, width=6, inner_width=5, klass=klass)
        latent = [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
        assert sorted(latent) == sorted(TRAINED_SITES[klass])
        for k in latent:
            assert [f.name for f in tr[k]["cond_indep_stack"]] == ["particle"]
            assert tr[k]["value"].shape == shapes[k]
            assert tr[k]["infer"][mf.scaling.SCALING_INFER_KEY] == 1.0
        pe = energy_from_model(symmetric_network, (sets, y), dict(width=6, inner_width=5, klass=klass, mask=mask))
        assert pe.site_names == tuple(TRAINED_SITES[klass]) and pe.accepts_masses and pe.exponent == 1.0
    key = jax.random.PRNGKey(5)
    f2, f3 = (symmetric_frozen_params(key, k, width=6, inner_width=5, dim=DIM) for k in ("S2", "S3"))
    np.testing.assert_array_equal(f2["w"], f3["w"])
    np.testing.assert_array_equal(f2["b"], f3["b"])
    params = {"a": jnp.ones(6)}
    kw = dict(width=6, inner_width=5, klass="S3", frozen_key=key)
    given = _f(sets, params, frozen_params=f3, **{**kw, "frozen_key": None})
    np.testing.assert_array_equal(_f(sets, params, **kw), given)
    assert not np.allclose(_f(sets, params, **kw), _f(sets, params, **{**kw, "frozen_key": jax.random.PRNGKey(6)}))


def test_bad_inputs():
    sets = jnp.ones((3, 4, 2))
    with pytest.raises(ValueError, match="klass"):
        _trace(sets, width=2, inner_width=2, klass="S4")
    with pytest.raises(ValueError, match="at least one element"):
        _trace(sets, width=2, inner_width=2, mask=jnp.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="mask must have shape"):
        _trace(sets, width=2, inner_width=2, mask=jnp.ones((3, 5), bool))
    with pytest.raises(ValueError, match="num_sets, max_set_size, dim"):
        _trace(jnp.ones((3, 4)), width=2, inner_width=2)
    with pytest.raises(ValueError, match="non-finite"):
        _trace(sets.at[0, 0, 0].set(jnp.nan), width=2, inner_width=2)
    with pytest.raises(ValueError, match="inner_width"):
        _trace(sets, width=2, inner_width=0)
    with pytest.raises(ValueError, match="frozen_params"):
        _trace(sets, width=2, inner_width=2, klass="S3", frozen_params={"w": jnp.ones((2, 2)), "b": jnp.ones(2)})


@functools.cache
def _flow(dt, frozen=()):
    """One kernel per setting, so that simulate's compiled step is reused across seeds."""
    return mf.WassersteinFlow(symmetric_network, step_size=dt, frozen=frozen)


def _run(klass, data, *, width, inner_width, dt, steps, init, frozen=(), frozen_key, **kwargs):
    kernel = _flow(dt, tuple(frozen))
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(0),
        data.sets,
        data.y,
        num_steps=steps,
        save_every=steps,
        init_params=init,
        progress_bar=False,
        width=width,
        inner_width=inner_width,
        klass=klass,
        mask=data.mask,
        frozen_key=frozen_key,
        **kwargs,
    )
    return sim


@pytest.fixture(scope="module")
def s3_problem():
    """S3 with tanh units, n = 8 < N = 64: (1/N) Psi^T Psi has condition number ~4e3 (full rank)."""
    data = symmetric_targets(jax.random.PRNGKey(0), "neuron", dim=DIM, num_sets=64, set_size=(2, 6))
    kw = dict(
        width=8,
        inner_width=32,
        klass="S3",
        activation="tanh",
        inner_activation="tanh",
        frozen_key=jax.random.PRNGKey(1),
    )
    return data, kw


def test_s3_flow_converges_to_min_norm_least_squares_from_its_initialisation():
    """S3 is linear in a, so its Wasserstein flow (unit noise) is dc/dt = -(1/N) Psi^T (Psi c - y),
    c = a/sqrt(n), A = Psi^T Psi / N.  Overparametrised (n = 12 > N = 6 sets), it only moves c in the
    row space of Psi: after T Euler steps c(T) = c_LS + P_null c(0) + (I - dt A)^T P_row (c(0) - c_LS),
    c_LS = SymmetricRandomFeatures.fit(ridge=0) (minimum-norm least squares, the ridge -> 0 limit), so
    the flow converges to the closed-form ridge -> 0 solution plus the null-space part of its init
    (exactly c_LS from c(0) = 0)."""
    data = symmetric_targets(jax.random.PRNGKey(5), "softmax", dim=DIM, num_sets=6, set_size=(2, 4), feature="norm")
    n = 12
    kw = dict(
        width=n,
        inner_width=16,
        klass="S3",
        activation="tanh",
        inner_activation="tanh",
        frozen_key=jax.random.PRNGKey(6),
    )
    rf = SymmetricRandomFeatures(n, 16, "tanh", "tanh", frozen_key=kw["frozen_key"])
    rf.fit(data.sets, data.y, ridge=0.0, mask=data.mask)
    psi = np.asarray(rf.features(data.sets, data.mask), np.float64)
    A = psi.T @ psi / psi.shape[0]
    eig = np.linalg.eigvalsh(psi @ psi.T / psi.shape[0])  # the non-zero spectrum of A (cond ~1e4)
    dt, steps, every = float(1.0 / eig.max()), 100_000, 250
    assert (1 - dt * eig.min()) ** steps < 1e-4  # converged at the last draw
    a0 = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (n,)), np.float64)
    kernel = mf.WassersteinFlow(symmetric_network, step_size=dt)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(0),
        data.sets,
        data.y,
        num_steps=steps,
        save_every=every,
        init_params={"a": jnp.asarray(a0, jnp.float32)},
        progress_bar=False,
        mask=data.mask,
        **kw,
    )
    c_ls, c0 = np.asarray(rf.a_, np.float64) / np.sqrt(n), a0 / np.sqrt(n)
    row = np.linalg.pinv(psi) @ psi
    null = (np.eye(n) - row) @ c0
    assert np.linalg.norm(null) > 0.3 * np.linalg.norm(c0)  # the init's null-space part is not small
    c = np.asarray(sim.samples["a"][0], np.float64) / np.sqrt(n)
    # after `every` steps: the closed-form Euler iterate; 250 float32 steps of a contraction with O(1)
    # entries accumulate ~1e-5 of rounding
    transient = np.linalg.matrix_power(np.eye(n) - dt * A, every) @ row @ (c0 - c_ls)
    np.testing.assert_allclose(c[0], c_ls + null + transient, atol=1e-4 * max(1.0, np.abs(c[0]).max()))
    # converged: the ridge -> 0 solution plus the null-space part of c(0); float32 least squares with
    # condition number 1e4 of A leaves ~1e-7 * 1e4 = 1e-3 relative error
    np.testing.assert_allclose(c[-1], c_ls + null, atol=3e-3 * np.abs(c_ls + null).max())
    assert np.abs(c[-1] - c_ls).max() > 0.1 * np.abs(null).max()  # the init is remembered


def test_s3_langevin_stationary_mean_is_the_ridge_solution(s3_problem):
    """Mean-field Langevin on S3 at temperature tau adds tau a / s_a^2 to the drift: its zero, the
    mean of the Gaussian stationary law (also of the Euler-Maruyama chain, the drift being affine), is
    the ridge solution with lambda = tau * noise^2 / s_a^2.  The drift vanishes at fit(ridge=lambda)."""
    data, kw = s3_problem
    tau, noise, a_scale = 1e-3, 0.5, 2.0
    lam = tau * noise**2 / a_scale**2
    rf = SymmetricRandomFeatures(kw["width"], kw["inner_width"], "tanh", "tanh", frozen_key=kw["frozen_key"])
    rf.fit(data.sets, data.y, ridge=lam, mask=data.mask)
    pe = energy_from_model(
        symmetric_network, (data.sets, data.y), dict(mask=data.mask, noise=noise, a_scale=a_scale, **kw)
    )
    drift = jax.jit(lambda a, t: evaluate_drift(pe, {"a": a}, None, t).drift["a"])
    at_ridge = drift(jnp.asarray(rf.a_), tau)
    at_zero = drift(jnp.zeros(kw["width"]), tau)
    # float32 cancellation in (1/N) H^T (H a/n - y) + lam a with |a| ~ 10: ~1e-6 absolute
    assert float(jnp.max(jnp.abs(at_ridge))) < 1e-4 * float(jnp.max(jnp.abs(at_zero)))
    wrong = drift(jnp.asarray(rf.a_), 4 * tau)
    assert float(jnp.max(jnp.abs(wrong))) > 1e-2 * float(jnp.max(jnp.abs(at_zero)))


@pytest.mark.slow
def test_wasserstein_fisher_rao_trains_the_set_network():
    """The model takes `masses`, so WFR (weighted mode) runs on it: the energy decreases and the
    masses stay a probability vector."""
    data = symmetric_targets(jax.random.PRNGKey(2), "mean", dim=DIM, num_sets=32, set_size=3, feature="norm")
    kernel = mf.WassersteinFisherRao(symmetric_network, step_size=0.2, rate=1.0, mode="weighted")
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(0),
        data.sets,
        data.y,
        num_steps=100,
        save_every=50,
        progress_bar=False,
        width=8,
        inner_width=4,
        klass="S2",
        mask=data.mask,
    )
    e = np.asarray(sim.stats["energy"][0])
    assert e[-1] < e[0]
    m = np.asarray(sim.last_state.masses if sim.last_state.masses is not None else np.full(8, 1 / 8))
    np.testing.assert_allclose(m.sum(), 1.0, rtol=1e-5)


#: the neuron problem of the generalisation test: dt = 0.2 keeps every energy monotone (0.5 did not for S2)
NEURON = dict(width=32, inner_width=8, dt=0.2, steps=2500)


def _neuron_problem(seed):
    key = jax.random.PRNGKey(seed)
    data = symmetric_targets(key, "neuron", dim=DIM, num_sets=128, set_size=4)
    test = data.sample(jax.random.fold_in(key, 9), 512, (2, 10))
    return data, test, jax.random.fold_in(key, 5)


def _nested_run(klass, data, frozen_key, frozen=()):
    init = nested_init_params(
        jax.random.fold_in(frozen_key, 1),
        klass,
        width=NEURON["width"],
        inner_width=NEURON["inner_width"],
        dim=DIM,
        frozen_key=frozen_key,
    )
    sim = _run(klass, data, init=init, frozen=frozen, frozen_key=frozen_key, **NEURON)
    return sim, init


def _relative_test_error(klass, sim, test, frozen_key):
    params = {k: sim.samples[k][0, -1] for k in TRAINED_SITES[klass]}
    sets, mask, y = test
    f = _f(
        sets,
        params,
        width=NEURON["width"],
        inner_width=NEURON["inner_width"],
        klass=klass,
        mask=mask,
        frozen_key=frozen_key,
    )
    return float(jnp.mean((f - y) ** 2) / jnp.var(y))


def test_nesting_s3_is_s2_with_c_frozen_and_s2_is_s1_with_shared_inner_layer_frozen():
    """S3 ⊂ S2 ⊂ S1 is honest: on the slice where S2's c equals S3's frozen c, the energies and the
    velocity of a (hence every kernel's update of a) of S2 and S3 coincide, so S3 trained by a kernel is
    S2 trained with frozen=("c",); likewise S2 is S1 with frozen=("w", "b") on the slice where every
    unit carries the shared inner layer (velocities of a and c coincide).  Checked at random points of
    the slices, not only at nested_init_params' draw; the flow being the ODE of this field, the
    trajectories coincide (exactly so in float64; float32 rounding separates them over long runs)."""
    from mfsample.energy import energy_and_velocity

    data = symmetric_targets(jax.random.PRNGKey(1), "neuron", dim=DIM, num_sets=32, set_size=(2, 5))
    fk = jax.random.PRNGKey(4)
    n, m = 8, 6
    pe = {
        k: energy_from_model(
            symmetric_network, (data.sets, data.y), dict(width=n, inner_width=m, klass=k, mask=data.mask, frozen_key=fk)
        )
        for k in KLASSES
    }
    field = {k: jax.jit(functools.partial(energy_and_velocity, pe[k])) for k in KLASSES}
    for point in range(2):
        key = jax.random.PRNGKey(10 + point)
        z1 = nested_init_params(key, "S1", width=n, inner_width=m, dim=DIM, frozen_key=fk)
        if point:  # move off the initial draw inside the slice: random a, and random c for S1 vs S2
            z1["a"] = 3.0 * jax.random.normal(jax.random.fold_in(key, 1), (n,))
        z2 = {"a": z1["a"], "c": z1["c"]}
        e3, v3 = field["S3"]({"a": z1["a"]})
        e2, v2 = field["S2"](z2)
        # same arithmetic in float32, energies O(1): a few ulps
        np.testing.assert_allclose(e2, e3, rtol=1e-6)
        np.testing.assert_allclose(v2["a"], v3["a"], rtol=1e-5, atol=1e-6)
        if point:
            z2["c"] = jax.random.normal(jax.random.fold_in(key, 2), (n, m))
            z1["c"] = z2["c"]
        e2, v2 = field["S2"](z2)
        e1, v1 = field["S1"](z1)
        np.testing.assert_allclose(e1, e2, rtol=1e-6)
        for site in ("a", "c"):
            np.testing.assert_allclose(v1[site], v2[site], rtol=1e-4, atol=1e-6)
        # S1 has more to move: its inner layers feel a non-zero velocity on the slice
        assert float(jnp.max(jnp.abs(v1["w"]))) > 1e-3


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_s1_generalises_better_than_s2_and_s3_on_a_neuron():
    """Zweig & Bruna's separation: on a single-neuron symmetric teacher relu(<mu_X, psi*>), trained on
    128 sets of 4 elements and tested on 512 sets of 2..10 elements, the mean-field-trained S1 beats
    the kernel method S3 by a wide margin and S1 <= S2 <= S3 in a majority of 5 seeds.

    All three start from the same network (nested_init_params) and run the same flow time t = 500.
    Measured relative test errors (seeds 0-9): S1 0.018-0.27 (0.018-0.12 on seeds 0-4), S2 0.21-1.15,
    S3 0.52-1.16 (flow) and 0.26-0.87 (closed-form S3 with the GCV ridge); the ordering held in 10 of 10
    seeds; S1 / S3 <= 0.14 on seeds 0-4 (<= 0.37 on 0-9).  Stated margin: S1 at most half of S3's
    error (flow and GCV ridge) in every seed, S1 below 0.2 (1 is the best constant)."""
    errs = []
    for seed in range(5):
        data, test, fk = _neuron_problem(seed)
        row = [_relative_test_error(k, _nested_run(k, data, fk)[0], test, fk) for k in KLASSES]
        rf = SymmetricRandomFeatures(NEURON["width"], NEURON["inner_width"], frozen_key=fk)
        rf.fit(data.sets, data.y, mask=data.mask)
        row.append(float(jnp.mean((rf.predict(*test[:2]) - test[2]) ** 2) / jnp.var(test[2])))
        errs.append(row)
    errs = np.array(errs)  # columns: S1, S2, S3 (flow), S3 (closed form, GCV ridge)
    assert np.all(errs[:, 0] <= 0.5 * errs[:, 2]), errs
    assert np.all(errs[:, 0] <= 0.5 * errs[:, 3]), errs
    assert np.all(errs[:, 0] < 0.2), errs  # S1 learns the neuron (1 = the best constant)
    ordered = (errs[:, 0] <= errs[:, 1]) & (errs[:, 1] <= errs[:, 2])
    assert ordered.sum() >= 3, errs
