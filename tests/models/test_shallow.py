"""The shallow network model and the teacher-student data."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import MCMC, NUTS, Predictive

import mfsample as mf


def _trace(*args, **kwargs):
    return numpyro.handlers.trace(numpyro.handlers.seed(mf.models.shallow_network, 0)).get_trace(*args, **kwargs)


@pytest.mark.parametrize("scaling,p", [("mean_field", 1.0), ("ntk", 0.5)])
def test_output_is_the_scaled_sum_of_units(scaling, p):
    """f(x) = n^-p sum_j a_j sigma(<w_j,x>+b_j), and n^(1-p) sum_j m_j a_j sigma(...) with masses."""
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 3))
    n = 5
    tr = _trace(x, width=n, scaling=scaling, activation="tanh")
    a, w, b = (tr[k]["value"] for k in "awb")
    units = a * jnp.tanh(x @ w.T + b)
    np.testing.assert_allclose(tr["f"]["value"], units.sum(1) * n**-p, rtol=1e-5, atol=1e-6)
    m = jnp.array([0.5, 0.2, 0.1, 0.1, 0.1])
    tr = _trace(x, width=n, scaling=scaling, activation="tanh", masses=m)
    np.testing.assert_allclose(tr["f"]["value"], units @ m * n ** (1 - p), rtol=1e-5, atol=1e-6)


def test_sites_plates_and_prior():
    """a, w, b sit in the particle plate; w ~ N(0, I/d) by default; no bias when bias=False."""
    x = jnp.ones((4, 9))
    tr = _trace(x, width=3)
    for k in "awb":
        assert [f.name for f in tr[k]["cond_indep_stack"]] == ["particle"]
    assert float(tr["w"]["fn"].base_dist.base_dist.scale) == pytest.approx(1 / 3)
    assert "b" not in _trace(x, width=3, bias=False)
    assert tr["y"]["is_observed"] is False  # y=None: prior predictive
    assert [f.name for f in tr["f"]["cond_indep_stack"]] == ["data"]


def test_runs_unchanged_under_nuts():
    """The model is an ordinary NumPyro model: NUTS samples it and Predictive draws f."""
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=2, teacher_width=1, num_data=16)
    mcmc = MCMC(NUTS(mf.models.shallow_network), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=3, noise=0.5)
    s = mcmc.get_samples()
    assert s["w"].shape == (100, 3, 2) and np.all(np.isfinite(s["w"]))
    pred = Predictive(mf.models.shallow_network, s)(jax.random.PRNGKey(2), data.x, width=3, noise=0.5)
    assert pred["y"].shape == (100, 16)
    # the posterior fits the data better than the prior: mean squared residual of f below Var(y) + noise
    resid = np.mean((np.asarray(s["f"]) - np.asarray(data.y)) ** 2)
    prior_f = Predictive(mf.models.shallow_network, num_samples=100)(jax.random.PRNGKey(3), data.x, width=3)["f"]
    assert resid < np.mean((np.asarray(prior_f) - np.asarray(data.y)) ** 2)


def test_bad_inputs():
    x = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="width"):
        _trace(x, width=0)
    with pytest.raises(ValueError, match="same length"):
        _trace(x, jnp.ones(3), width=2)
    with pytest.raises(ValueError, match="activation"):
        _trace(x, width=2, activation="swishy")
    with pytest.raises(ValueError, match="scaling"):
        _trace(x, width=2, scaling="lazy")
    with pytest.raises(ValueError, match="non-finite"):
        _trace(x.at[0, 0].set(jnp.inf), width=2)
    with pytest.raises(ValueError, match="sum to one"):
        _trace(x, width=2, masses=jnp.array([0.2, 0.2]))


def test_teacher_student_data():
    """Labels are the teacher network on the inputs (plus noise); fresh samples follow the same law."""
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=500, inputs="sphere")
    np.testing.assert_allclose(jnp.linalg.norm(data.x, axis=1), 1.0, rtol=1e-5)
    t = data.teacher
    np.testing.assert_allclose(data.y, jax.nn.relu(data.x @ t["w"].T + t["b"]) @ t["a"] / 3, rtol=1e-5, atol=1e-6)
    noisy = mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=4000, noise=0.5)
    x2, y2 = noisy.sample(jax.random.PRNGKey(5), 4000)
    # residual standard deviation of the labels is the noise level (4000 draws: ~2% standard error)
    assert np.std(np.asarray(y2 - noisy.target(x2))) == pytest.approx(0.5, rel=0.06)
    with pytest.raises(ValueError, match="num_data"):
        mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=0)
    with pytest.raises(ValueError, match="inputs"):
        mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=5, inputs="cube")
