"""Tests of mfsample/baselines/random_features.py: closed-form ridge fit, kernel limit, gradient flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfsample as mf
from mfsample.baselines import KernelRidge, RandomFeatures, random_feature_kernel, sample_units

sklearn_lm = pytest.importorskip("sklearn.linear_model")


@pytest.mark.parametrize("width", [20, 150])  # fewer and more features than data (N = 60)
@pytest.mark.parametrize("ridge", [1e-3, None])
def test_predictions_equal_sklearn_ridge(width, ridge):
    """Output weights ``c = (Psi^T Psi + N lambda I)^-1 Psi^T y`` from one SVD of ``Psi`` equal
    scikit-learn's ``Ridge(alpha=N lambda, fit_intercept=False)`` on the same features to 1e-5
    (float64; round-off ~1e-12), with a fixed ridge and with the GCV-selected one; ``ridge=0`` is the
    minimum-norm least-squares solution ``pinv(Psi) y`` (1e-8)."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (60, 4))
        y = jnp.maximum(x[:, 0], 0.0) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (60,))
        x_test = jax.random.normal(jax.random.PRNGKey(2), (30, 4))
        rf = RandomFeatures(width, rng_key=jax.random.PRNGKey(3)).fit(x, y, ridge=ridge)
        ref = sklearn_lm.Ridge(alpha=60 * rf.ridge_, fit_intercept=False)
        ref.fit(np.asarray(rf.features(x)), np.asarray(y))
        expected = ref.predict(np.asarray(rf.features(x_test)))
        np.testing.assert_allclose(np.asarray(rf.predict(x_test)), expected, atol=1e-5, rtol=0)
        # the network's convention: f = (1/n) sum_j a_j sigma_j with a = sqrt(n) c
        np.testing.assert_allclose(np.asarray(rf.a_) / np.sqrt(width), ref.coef_, atol=1e-5)
        if ridge is not None:  # ridge = 0: the minimum-norm least-squares solution pinv(Psi) y
            ls = RandomFeatures(width, units=rf.units).fit(x, y, ridge=0.0)
            expected = np.linalg.pinv(np.asarray(rf.features(x))) @ np.asarray(y)
            np.testing.assert_allclose(np.asarray(ls.a_) / np.sqrt(width), expected, atol=1e-8)


def test_least_squares_keeps_small_singular_values_in_float32():
    """``ridge=0`` in float32 on features whose singular values span 1 .. 3e-4: the least-squares
    fit reproduces a target in their span to 1e-3 (relative).  Taking the eigendecomposition of
    the Gram matrix ``Psi^T Psi`` instead squares the spectrum and drops every direction below
    ``sqrt(eps N) s_max ~ 6e-3 s_max`` (about a third of these), an error of order 0.5."""
    num, width = 256, 64
    q1, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (num, width)))
    q2, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(1), (width, width)))
    s = jnp.logspace(0.0, -3.5, width)
    psi = (q1 * s) @ q2.T
    y = q1 @ jnp.ones(width)  # equal weight on every direction
    fit = mf.baselines.random_features.feature_ridge(psi, y, ridge=0.0)
    assert psi.dtype == jnp.float32
    rel = float(jnp.linalg.norm(psi @ fit.coef - y) / jnp.linalg.norm(y))
    assert rel < 1e-3, rel


def test_first_layer_is_drawn_from_the_network_prior():
    """The units are a seeded trace of shallow_network's prior (the network's initial particles):
    the same key gives the same draw as sample_units, ``prior`` keywords change the law
    (std(w) = w_scale within 3%: 2e4 * 3 draws), and ``units=`` reuses given particles."""
    x = jnp.ones((2, 3))
    rf = RandomFeatures(5, rng_key=jax.random.PRNGKey(7)).draw(3)
    u = sample_units(jax.random.PRNGKey(7), 5, 3)
    np.testing.assert_array_equal(rf.units["w"], u["w"])
    np.testing.assert_array_equal(rf.units["b"], u["b"])
    wide = RandomFeatures(20000, prior={"w_scale": 2.0}).draw(3)
    assert float(jnp.std(wide.units["w"])) == pytest.approx(2.0, rel=3e-2)
    given = RandomFeatures(5, units=u)
    np.testing.assert_array_equal(given.features(x), rf.features(x))
    assert set(RandomFeatures(5, bias=False).draw(3).params) == {"a", "w"}


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_predictions_converge_to_kernel_ridge_at_monte_carlo_rate():
    """``Psi Psi^T`` is a Monte-Carlo estimate of the kernel with n units, so at a fixed ridge the
    random-feature predictor tends to KernelRidge's with the closed-form kernel and the same lambda,
    with RMS difference ~ C n^-1/2.  Over n = 256..4096 (8 seeds each) the fitted log-log slope must
    lie in [-0.75, -0.3] (measured -0.46; a biased kernel would give a slope near 0) and the
    difference must shrink by at least 2.5x (ideal 4x)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
    y = jnp.maximum(x[:, 0], 0.0)
    x_test = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
    lam = 1e-3  # float32 suffices: the differences measured are >= 5e-3, round-off ~1e-6
    f_kernel = KernelRidge(random_feature_kernel("relu"), lam).fit(x, y).predict(x_test)
    widths = [256, 1024, 4096]
    rms = []
    for n in widths:
        sq = [
            jnp.mean((RandomFeatures(n, rng_key=jax.random.PRNGKey(s)).fit(x, y, lam).predict(x_test) - f_kernel) ** 2)
            for s in range(8)
        ]
        rms.append(float(np.sqrt(np.mean(sq))))
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.75 <= slope <= -0.3, (rms, slope)
    assert rms[-1] < rms[0] / 2.5, rms


# -- the random-feature gradient flow -----------------------------------------------------------------
def _flow_problem():
    """N = 128, d = 10, n = 6 features (seed 3: Psi^T Psi / N has eigenvalues in [0.013, 0.58])."""
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=10, teacher_width=1, num_data=128)
    rf = RandomFeatures(6, rng_key=jax.random.PRNGKey(3)).draw(10)
    return data.x, data.y, rf


def test_frozen_wasserstein_flow_is_least_squares_gradient_flow():
    """``WassersteinFlow(shallow_network, frozen=("w", "b"))`` moves only ``a`` (w, b bit-identical),
    and in ``c = a/sqrt(n)`` its Euler iterates are exactly ``c_k = c* + (I - dt A)^k (c_0 - c*)``,
    ``A = Psi^T Psi / N``, ``c* = pinv(Psi) y`` (the mean-field velocity ``n grad_a E`` with
    ``E = |f - y|^2 / 2N`` and ``f = Psi c``), within float32 round-off (2e-3 of |c*|); by
    t = 2000 (rate >= 0.013) it has converged to ``fit(ridge=0)`` within 1e-3 relative."""
    x, y, rf = _flow_problem()
    n, dt, steps = 6, 2.0, 1000
    init = dict(rf.params)
    init["a"] = jax.random.normal(jax.random.PRNGKey(4), (n,))
    sim = mf.simulate(
        mf.WassersteinFlow(mf.models.shallow_network, step_size=dt, frozen=("w", "b")),
        jax.random.PRNGKey(1),
        x,
        y,
        num_steps=steps,
        save_every=50,
        init_params=init,
        progress_bar=False,
        width=n,
    )
    np.testing.assert_array_equal(sim.samples["w"][0, -1], init["w"])
    np.testing.assert_array_equal(sim.samples["b"][0, -1], init["b"])
    psi = np.asarray(rf.features(x), np.float64)
    a_mat = psi.T @ psi / x.shape[0]
    c_star = np.linalg.pinv(psi) @ np.asarray(y, np.float64)
    c0 = np.asarray(init["a"], np.float64) / np.sqrt(n)
    step = np.eye(n) - dt * a_mat
    for k, a in zip(range(50, steps + 1, 50), sim.samples["a"][0]):
        expected = c_star + np.linalg.matrix_power(step, k) @ (c0 - c_star)
        np.testing.assert_allclose(a / np.sqrt(n), expected, atol=2e-3 * np.abs(c_star).max())
    ls = RandomFeatures(n, units=rf.units).fit(x, y, ridge=0.0)
    final = sim.samples["a"][0, -1]
    assert np.abs(final - np.asarray(ls.a_)).max() < 1e-3 * np.abs(np.asarray(ls.a_)).max()


def test_langevin_drift_vanishes_at_the_ridge_solution():
    """With ``frozen=("w", "b")`` the mean-field Langevin drift on ``a`` is
    ``n grad_a E + tau a / s_a^2``; it vanishes exactly at the ridge solution with
    ``lambda = tau / s_a^2`` (here s_a = 2, so lambda = tau / 4) and not at ``lambda = tau``."""
    x, y, rf0 = _flow_problem()
    tau, prior = 1e-2, {"a_scale": 2.0}
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=tau, frozen=("w", "b"))
    drifts = {}
    for lam in (tau / 4, tau):
        rf = RandomFeatures(6, prior=prior, units=rf0.units).fit(x, y, ridge=lam)
        state = kernel.init(jax.random.PRNGKey(0), 0, rf.params, (x, y), {"width": 6, **prior})
        drifts[lam] = float(jnp.max(jnp.abs(state.drift["a"])))
        assert float(jnp.max(jnp.abs(state.drift["w"]))) == 0.0
    # each of the two cancelling terms is ~ tau max|a| / s_a^2 ~ 5e-3; float32 leaves ~1e-7 of it
    scale = tau * float(jnp.max(jnp.abs(rf.a_))) / prior["a_scale"] ** 2
    assert drifts[tau / 4] < 1e-3 * scale
    assert drifts[tau] > 0.1 * scale
