"""The closed-form Gibbs case shared by test_chaos.py and test_fluctuations.py.

Scalar particles, mu0 = N(0, 1), E = (kappa/2) (mean_j theta_j - c)^2 with kappa = 2, c = 1.5,
sampled by Metropolis-adjusted mean-field Langevin at tau = 1 (exact stationary law for any dt).
The test modules restate these constants to compute the truths they compare with.
"""

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

import mfsample as mf
from mfsample.experiments.replicate import replicate

KAPPA, TAU, C = 2.0, 1.0, 1.5
WIDTHS, CHAINS = (4, 16, 64), 128


def gibbs_kernel(n):
    """Metropolis-adjusted mean-field Langevin on the quadratic energy of the particle mean, width n."""
    return mf.MeanFieldLangevin(
        energy_fn=lambda theta, masses, c: 0.5 * KAPPA * (jnp.sum(masses * theta) - c) ** 2,
        prior=dist.Normal(0.0, 1.0),
        width=n,
        step_size=0.25,
        temperature=TAU,
        adjusted=True,
    )


@pytest.fixture(scope="session")
def gibbs_kernel_of_width():
    """:func:`gibbs_kernel` (``n -> kernel``), for the test modules (conftest helpers are not
    importable under ``--import-mode=importlib``)."""
    return gibbs_kernel


@pytest.fixture(scope="session")
def gibbs_runs():
    """R = 128 replicas at n = 4, 16, 64; draws every 5 time units (t = 0, 5, ..., 50), far apart
    compared with the relaxation times 1/3 (particle mean) and 1 (spread), so the late draws are
    nearly independent.  The output is the particle mean f_n = mean_j theta_j (one unit point).
    One run serves both modules, which only read it."""
    return replicate(
        gibbs_kernel,
        (C,),
        widths=WIDTHS,
        num_chains=CHAINS,
        num_steps=200,
        save_every=20,
        rng_key=jax.random.PRNGKey(0),
        output_fn=lambda theta, m, x: jnp.sum(m * theta),
        unit_points=1,
        progress_bar=False,
    )
