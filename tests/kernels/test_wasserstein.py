"""Wasserstein gradient flow / particle gradient descent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

import mfsample as mf

ACTIVATIONS = ["relu", "tanh", "sigmoid", lambda u: jnp.sin(u) + 0.5 * u]


def _fd_velocity(pe, z, site, idx, h=1e-6):
    flat = np.asarray(z[site]).ravel()
    e = np.zeros_like(flat)
    e[idx] = h
    zp = {**z, site: jnp.asarray((flat + e).reshape(z[site].shape))}
    zm = {**z, site: jnp.asarray((flat - e).reshape(z[site].shape))}
    return pe.width ** (2 * pe.exponent - 1) * (pe.energy(zp) - pe.energy(zm)) / (2 * h)


@pytest.mark.parametrize("scaling", ["mean_field", "ntk"])
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=["relu", "tanh", "sigmoid", "callable"])
@pytest.mark.parametrize("kernel_cls", ["wasserstein", "langevin_tau0"])
def test_kernel_step_applies_the_velocity(kernel_cls, activation, scaling):
    """One step moves theta_j by -dt * n^(2p-1) dE/dtheta_j (central differences, float64)."""
    with jax.enable_x64(True):
        kx, ky = jax.random.split(jax.random.PRNGKey(0))
        x = jax.random.normal(kx, (30, 3), jnp.float64)
        y = jax.random.normal(ky, (30,), jnp.float64)
        dt = 1e-3
        if kernel_cls == "wasserstein":
            kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=dt)
        else:
            kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=dt, temperature=0.0)
        kw = dict(width=5, activation=activation, scaling=scaling)
        state = kernel.init(jax.random.PRNGKey(1), 0, None, (x, y), kw)
        new = kernel.sample(state, (x, y), kw)
        pe = kernel.energy
        for site in ("a", "w", "b"):
            applied = (np.asarray(state.z[site]) - np.asarray(new.z[site])).ravel() / dt
            for idx in range(0, applied.size, 2):
                # float64 central differences: error ~1e-10; the step itself is exact up to rounding
                np.testing.assert_allclose(applied[idx], _fd_velocity(pe, state.z, site, idx), rtol=1e-6, atol=1e-8)


def test_energy_decreases_and_realisable_teacher_is_fitted(small_data):
    """Particle GD (dt = 1, mean-field time) decreases E at every step and fits a width-3 teacher
    (dim 5) with 256 particles to a relative training error below 1e-2."""
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=1.0)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(1),
        small_data.x,
        small_data.y,
        num_steps=3000,
        save_every=1,
        width=256,
        progress_bar=False,
    )
    energy = sim.stats["energy"][0]
    # monotone up to float32 rounding of E ~ 1 (ulp ~ 1e-7)
    assert np.all(np.diff(energy) <= 1e-6)
    f = sim.samples["f"][0, -1]
    rel = np.linalg.norm(f - np.asarray(small_data.y)) / np.linalg.norm(small_data.y)
    assert rel < 1e-2, rel
    assert not sim.stats["diverging"].any()
    # Wasserstein flow: dE/dt = -||grad V||^2_{L2(mu)}; check the discrete analogue
    # E_k - E_{k+1} ~ dt * grad_norm_k^2 summed over steps 100..600, where E still drops well
    # above float32 rounding (10% slack for the O(dt^2) Euler remainder)
    de = energy[100:600] - energy[101:601]
    gn2 = sim.stats["grad_norm"][0, 100:600] ** 2
    np.testing.assert_allclose(de.sum(), gn2.sum(), rtol=0.1)


def test_permuting_particles_permutes_the_trajectory(small_data):
    """Equivariance: the dynamics treats particles exchangeably."""
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.5)
    pe = mf.energy_from_model(mf.models.shallow_network, (small_data.x, small_data.y), dict(width=16))
    z0 = pe.sample_prior(jax.random.PRNGKey(3))
    perm = jax.random.permutation(jax.random.PRNGKey(4), 16)
    z0p = {k: v[perm] for k, v in z0.items()}

    def run(z):
        return mf.simulate(
            kernel,
            jax.random.PRNGKey(5),
            small_data.x,
            small_data.y,
            num_steps=50,
            save_every=10,
            width=16,
            init_params=z,
            progress_bar=False,
        )

    a, b = run(z0), run(z0p)
    for k in "awb":
        # summation order changes with the permutation: float32 rounding only
        np.testing.assert_allclose(a.samples[k][:, :, perm], b.samples[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.samples["f"], b.samples["f"], rtol=1e-4, atol=1e-5)


def test_divergence_freezes_particles_and_is_reported(small_data):
    """A step size far beyond stability makes particles non-finite: `diverging` is set, the state
    stays finite (frozen at the last finite point) and simulate reports the first diverging step."""
    kernel = mf.WassersteinFlow(
        mf.models.shallow_network,
        step_size=1e6,
    )
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sim = mf.simulate(
            kernel,
            jax.random.PRNGKey(1),
            small_data.x,
            small_data.y * 1e3,
            num_steps=40,
            save_every=1,
            width=8,
            progress_bar=False,
        )
    div = sim.stats["diverging"][0]
    assert div[-1] and sim.first_divergence[0] >= 0
    first = int(sim.first_divergence[0])
    assert not div[:first].any() and div[first:].all()
    for v in sim.samples.values():
        assert np.all(np.isfinite(v))
    frozen = sim.samples["w"][0, first:]
    np.testing.assert_array_equal(frozen, np.broadcast_to(frozen[:1], frozen.shape))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(step_size=0.0), ValueError, "step_size"),
        (dict(step_size=-1.0), ValueError, "step_size"),
        (dict(step_size=float("nan")), ValueError, "step_size"),
        (dict(step_size="0.1"), TypeError, "step_size"),
    ],
)
def test_bad_kernel_settings(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mf.WassersteinFlow(mf.models.shallow_network, **kwargs)


def test_bad_data_and_masses_are_refused(small_data):
    """Each bad input raises a clear error naming the argument."""
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
    mcmc = MCMC(kernel, num_warmup=0, num_samples=2, progress_bar=False)
    key = jax.random.PRNGKey(0)
    x, y = small_data.x, small_data.y
    with pytest.raises(ValueError, match="same length"):
        mcmc.run(key, x, y[:-1], width=4)
    with pytest.raises(ValueError, match="non-finite"):
        mcmc.run(key, x.at[0, 0].set(jnp.nan), y, width=4)
    with pytest.raises(ValueError, match="non-finite"):
        mcmc.run(key, x, y.at[3].set(jnp.inf), width=4)
    with pytest.raises(ValueError, match="width"):
        mcmc.run(key, x, y, width=0)
    with pytest.raises(TypeError, match="width"):
        mcmc.run(key, x, y, width=2.5)
    with pytest.raises(ValueError, match="non-negative"):
        mcmc.run(key, x, y, width=2, masses=jnp.array([1.5, -0.5]))
    with pytest.raises(ValueError, match="sum to one"):
        mcmc.run(key, x, y, width=2, masses=jnp.array([0.3, 0.3]))
    with pytest.raises(ValueError, match="shape"):
        mcmc.run(key, x, y, width=2, masses=jnp.array([0.3, 0.3, 0.4]))


def test_fixed_masses_weight_the_flow(small_data):
    """With fixed masses, particle j moves with grad V = grad_{theta_j} E / m_j (not n grad E)."""
    n = 4
    m = jnp.array([0.1, 0.2, 0.3, 0.4])
    kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=1e-2)
    kw = dict(width=n, masses=m)
    state = kernel.init(jax.random.PRNGKey(0), 0, None, (small_data.x, small_data.y), kw)
    g = jax.grad(kernel.energy.energy)(state.z, m)
    for k in "awb":
        scale = m.reshape((-1,) + (1,) * (g[k].ndim - 1))
        np.testing.assert_allclose(state.drift[k], g[k] / scale, rtol=1e-5, atol=1e-7)
