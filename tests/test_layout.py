"""The driver's column-major hint for the carried particles: where it applies, and that it
changes no value."""

import importlib

import jax
import numpy as np
import pytest

import mfsample as mf
from mfsample import layout
from mfsample.energy import energy_from_model
from mfsample.kernels import programs

simulate_module = importlib.import_module("mfsample.simulate")  # the module, not the function


@pytest.fixture(scope="module")
def data():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=2, num_data=48)


def _energy(data, **kwargs):
    return energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": 20, **kwargs}, scaling="mean_field")


def test_prefers_column_major_for_one_unbatched_chain_without_particle_blocks(data):
    plain, blocked = _energy(data), _energy(data, particle_block_size=8)
    assert blocked.particle_block_size == 8 and plain.particle_block_size is None
    on_cpu = jax.default_backend() == "cpu"
    assert layout.prefers_column_major(plain, num_chains=1, batched=False) is on_cpu
    assert not layout.prefers_column_major(plain, num_chains=2, batched=False)
    assert not layout.prefers_column_major(plain, num_chains=1, batched=True)
    assert not layout.prefers_column_major(blocked, num_chains=1, batched=False)


def test_column_major_particles_constrains_two_dimensional_leaves_only():
    state = mf.kernels.state.ParticleState(
        z={"w": np.ones((5, 3), np.float32), "a": np.ones(5, np.float32)},
        masses=None,
        energy=np.float32(0),
        drift={"w": np.ones((5, 3), np.float32), "a": np.ones(5, np.float32)},
        grad_norm=np.float32(0),
        time=np.float32(0),
        step=np.int32(0),
        diverging=np.bool_(False),
        divergence_step=np.int32(-1),
        accept_prob=np.float32(1),
        rng_key=jax.random.PRNGKey(0),
        log_prior=np.float32(0),
    )
    text = jax.jit(layout.column_major_particles).lower(state).as_text()
    assert text.count("LayoutConstraint") == 2  # z["w"] and drift["w"]
    # a shared site (no particle axis, e.g. deep_network's first layer U) is left alone
    shared = state._replace(
        z={**state.z, "U": np.ones((4, 3), np.float32)}, drift={**state.drift, "U": np.ones((4, 3))}
    )
    text = jax.jit(lambda s: layout.column_major_particles(s, shared=("U",))).lower(shared).as_text()
    assert text.count("LayoutConstraint") == 2
    out = jax.jit(layout.column_major_particles)(state)
    np.testing.assert_array_equal(out.z["w"], state.z["w"])
    assert layout.column_major_particles((1, 2)) == (1, 2)  # a state without z and drift: as it is


@pytest.mark.parametrize("kernel_name", ["langevin", "wfr"])
def test_the_hint_changes_no_value(data, kernel_name, monkeypatch):
    """``simulate`` with the hint (the default on a CPU) and without it: the same draws, bit for bit."""
    kernels = {
        "langevin": mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=1e-3),
        "wfr": mf.kernels.wfr.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=2.0),
    }
    calls = []

    def counted(state, shared=()):
        calls.append(1)
        return layout.column_major_particles(state, shared)

    def run():
        programs.clear()
        return mf.simulate(
            kernels[kernel_name], jax.random.PRNGKey(3), data.x, data.y, width=20, num_steps=30, progress_bar=False
        )

    monkeypatch.setattr(simulate_module, "column_major_particles", counted)
    hinted = run()
    traced = len(calls)  # the loop body may be traced more than once
    assert (traced > 0) == (jax.default_backend() == "cpu")
    monkeypatch.setattr(simulate_module, "prefers_column_major", lambda *a, **k: False)
    plain = run()
    assert len(calls) == traced
    for site in ("w", "a", "b"):
        np.testing.assert_array_equal(hinted.samples[site], plain.samples[site])
    programs.clear()
