"""Tests of mfsample/baselines/kernel_ridge.py: kernel ridge regression and GCV / LOO ridge selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfsample.baselines import KernelRidge, random_feature_kernel, relu_ntk, select_ridge

sklearn_kr = pytest.importorskip("sklearn.kernel_ridge")
sklearn_lm = pytest.importorskip("sklearn.linear_model")

N = 40


def _data():
    x = jax.random.normal(jax.random.PRNGKey(0), (N, 5))
    y = jnp.maximum(x[:, 0], 0.0) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (N,))
    x_test = jax.random.normal(jax.random.PRNGKey(2), (25, 5))
    return x, y, x_test


@pytest.mark.parametrize("kernel_name", ["relu", "ntk"])
@pytest.mark.parametrize("ridge", [1e-3, None])
def test_kernel_ridge_equals_sklearn_precomputed(kernel_name, ridge):
    """``f = k(x, X) (K + N lambda I)^-1 y`` (Cholesky) equals scikit-learn's
    ``KernelRidge(alpha=N lambda, kernel="precomputed")`` to 1e-5 in float64 (both solve the same
    well-posed system; the differences are round-off, ~1e-12), for a fixed and a GCV-selected ridge."""
    with jax.enable_x64(True):
        x, y, x_test = _data()
        kernel = random_feature_kernel("relu") if kernel_name == "relu" else relu_ntk
        kr = KernelRidge(kernel, ridge).fit(x, y)
        assert kr.dual_coef_.dtype == jnp.float64
        ref = sklearn_kr.KernelRidge(alpha=N * kr.ridge_, kernel="precomputed")
        ref.fit(np.asarray(kernel(x, x)), np.asarray(y))
        expected = ref.predict(np.asarray(kernel(x_test, x)))
        np.testing.assert_allclose(np.asarray(kr.predict(x_test)), expected, atol=1e-5, rtol=0)


def test_loo_scores_equal_sklearn_ridgecv():
    """The LOO criterion from one eigendecomposition, ``mean_i ((y - S y)_i / (1 - S_ii))^2``, equals
    scikit-learn's efficient LOO of RidgeCV (its ``cv_results_``, squared LOO residuals) for linear
    regression on features ``Phi`` (``K = Phi Phi^T``, ``alpha = N lambda``), to 1e-8 relative in float64."""
    with jax.enable_x64(True):
        x, y, _ = _data()
        phi = np.asarray(x)
        grid = np.logspace(-4, 1, 6)
        e, u = jnp.linalg.eigh(jnp.asarray(phi @ phi.T))
        sel = select_ridge(u, e, y, grid, criterion="loo")
        ref = sklearn_lm.RidgeCV(alphas=N * grid, fit_intercept=False, store_cv_results=True)
        ref.fit(phi, np.asarray(y))
        np.testing.assert_allclose(sel.scores, ref.cv_results_.mean(axis=0), rtol=1e-8)
        assert sel.ridge == pytest.approx(ref.alpha_ / N)


def test_loo_scores_equal_brute_force_refits():
    """LOO from the eigendecomposition equals refitting the kernel ridge N times without point i
    (with the same regulariser N lambda, i.e. ridge N lambda/(N-1) on N-1 points) to 1e-8 relative."""
    with jax.enable_x64(True):
        x, y, _ = _data()
        kernel = random_feature_kernel("relu")
        e, u = jnp.linalg.eigh(kernel(x, x))
        grid = np.array([1e-4, 1e-2])
        sel = select_ridge(u, e, y, grid, criterion="loo")
        for lam, score in zip(grid, sel.scores):
            errs = []
            for i in range(N):
                keep = np.arange(N) != i
                kr = KernelRidge(kernel, lam * N / (N - 1)).fit(x[keep], y[keep])
                errs.append(float(kr.predict(x[i : i + 1])[0] - y[i]) ** 2)
            assert score == pytest.approx(np.mean(errs), rel=1e-8)


def test_gcv_scores_equal_explicit_smoother():
    """GCV from the eigendecomposition equals ``(1/N)|(I - S) y|^2 / (1 - tr S / N)^2`` with the smoother
    ``S = K (K + N lambda I)^-1`` formed explicitly (float64, 1e-8 relative); the chosen ridge is the
    grid's argmin and a fit with ``ridge=None`` uses it."""
    with jax.enable_x64(True):
        x, y, _ = _data()
        kernel = random_feature_kernel("relu")
        k = np.asarray(kernel(x, x))
        grid = np.logspace(-6, 0, 7)
        e, u = jnp.linalg.eigh(jnp.asarray(k))
        sel = select_ridge(u, e, y, grid, criterion="gcv")
        yy = np.asarray(y)
        for lam, score in zip(grid, sel.scores):
            s = k @ np.linalg.inv(k + N * lam * np.eye(N))
            r = yy - s @ yy
            assert score == pytest.approx(np.mean(r**2) / (1 - np.trace(s) / N) ** 2, rel=1e-8)
        assert sel.ridge == grid[np.argmin(sel.scores)]
        assert KernelRidge(kernel, ridges=grid).fit(x, y).ridge_ == sel.ridge


def test_bad_arguments():
    """Non-positive ridges and unknown criteria are refused."""
    with pytest.raises(ValueError):
        KernelRidge(relu_ntk, ridge=0.0)
    with pytest.raises(ValueError, match="criterion"):
        select_ridge(jnp.eye(3), jnp.ones(3), jnp.ones(3), criterion="aic")
    with pytest.raises(ValueError, match="positive"):
        select_ridge(jnp.eye(3), jnp.ones(3), jnp.ones(3), [0.0, 1.0])
