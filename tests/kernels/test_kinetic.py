"""Kinetic Langevin: the initial momenta are Maxwellian, N(0, tau I) per particle."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import mfsample as mf

WIDTH, DIM = 10_000, 2


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_initial_momenta_have_variance_tau_per_coordinate(tau):
    """20 000 coordinates: the sample variance has a relative standard error sqrt(2 / 20000) = 1%,
    so 5% is five standard errors -- and a variance of 2 tau (the Langevin noise scale
    sqrt(2 tau dt) at dt = 1 by mistake) would be off by 100%.  The mean is 0 within 5 standard
    errors (sqrt(tau / 20000))."""
    kernel = mf.kernels.KineticLangevin(
        energy_fn=lambda th, m: 0.5 * jnp.sum(jnp.sum(m[:, None] * th, 0) ** 2),
        prior=dist.Normal(0.0, 1.0).expand([DIM]).to_event(1),
        width=WIDTH,
        step_size=0.1,
        temperature=tau,
    )
    state = kernel.init(jax.random.PRNGKey(4), 0, None, (), {})
    p = np.asarray(state.momentum["theta"], np.float64)
    assert p.shape == (WIDTH, DIM)
    assert abs(np.var(p, ddof=1) / tau - 1) < 0.05
    assert abs(np.mean(p)) < 5 * np.sqrt(tau / p.size)
    # each coordinate separately as well (10 000 draws each: 7% is five standard errors)
    np.testing.assert_allclose(np.var(p, axis=0, ddof=1) / tau, 1.0, atol=0.07)


def test_zero_temperature_starts_at_rest():
    kernel = mf.kernels.KineticLangevin(
        energy_fn=lambda th, m: jnp.sum(m * th**2), prior=dist.Normal(0.0, 1.0), width=8, step_size=0.1, temperature=0.0
    )
    state = kernel.init(jax.random.PRNGKey(0), 0, None, (), {})
    np.testing.assert_array_equal(state.momentum["theta"], 0.0)
