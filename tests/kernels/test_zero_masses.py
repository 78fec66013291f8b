"""Weighted particles with exact zero masses: legal (mass that has died), handled in log space.

A zero mass has ``log m_j = -inf``; the divergence guard refuses NaN and ``+inf`` log-masses
only, so such a run moves like any other, and at ``rate = 0`` it is the Wasserstein flow run with
the same masses, draw for draw.
"""

import warnings

import jax
import numpy as np
import pytest

import mfsample as mf
from mfsample.kernels.reaction import valid_log_masses

SN = mf.models.shallow_network
RUN = dict(width=32, num_steps=100, save_every=20, progress_bar=False)


@pytest.fixture(scope="module")
def data():
    d = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=32)
    return np.asarray(d.x), np.asarray(d.y)


@pytest.fixture(scope="module")
def masses():
    m = np.full(32, 1 / 31, np.float32)
    m[5] = 0
    return m


def _wfr(rate):
    return mf.WassersteinFisherRao(SN, step_size=0.1, mode="weighted", rate=rate)


def _run(kernel, data, masses):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divergence (or any other) warning
        return mf.simulate(kernel, jax.random.PRNGKey(1), *data, masses=masses, **RUN)


def test_rate_zero_with_a_zero_mass_is_the_wasserstein_flow_draw_for_draw(data, masses):
    """Before the fix the run froze at step 0 (log 0 = -inf was taken for a divergence)."""
    sim = _run(_wfr(0.0), data, masses)
    ref = _run(mf.WassersteinFlow(SN, step_size=0.1), data, masses)
    assert np.all(sim.first_divergence == -1) and not sim.stats["diverging"].any()
    np.testing.assert_array_equal(sim.stats["step"][0], [20, 40, 60, 80, 100])
    for site in ("a", "w", "b", "f"):
        np.testing.assert_array_equal(sim.samples[site], ref.samples[site], err_msg=site)
    np.testing.assert_array_equal(sim.stats["energy"], ref.stats["energy"])
    assert sim.stats["energy"][0, -1] < sim.stats["energy"][0, 0]  # it did move (and descend)
    np.testing.assert_array_equal(sim.samples["masses"][0, :, 5], 0.0)


def test_reaction_keeps_a_dead_mass_dead_and_moves_the_others(data, masses):
    """rate > 0: the zero mass stays exactly zero (log-mass -inf), the others are reweighted and
    stay on the simplex; no divergence."""
    sim = _run(_wfr(1.0), data, masses)
    assert np.all(sim.first_divergence == -1)
    m = sim.samples["masses"][0]
    np.testing.assert_array_equal(m[:, 5], 0.0)
    np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
    assert np.ptp(m[-1, np.arange(32) != 5]) > 1e-4  # the living masses changed
    assert np.isneginf(np.asarray(sim.last_state.log_masses)[5])


def test_the_log_mass_guard_refuses_nan_and_plus_inf_only():
    assert bool(valid_log_masses(np.array([-np.inf, -1.0, 0.0])))
    assert not bool(valid_log_masses(np.array([np.nan, -1.0])))
    assert not bool(valid_log_masses(np.array([np.inf, -1.0])))
