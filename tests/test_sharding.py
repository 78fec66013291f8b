"""Particles and chains sharded over devices.

Several host devices exist only if XLA is told before JAX starts, so each check runs in a fresh
Python with ``XLA_FLAGS=--xla_force_host_platform_device_count=K``; the multi-host check starts
two such processes joined by ``jax.distributed.initialize`` (JAX's own runtime, CPU collectives
over gloo), as on a cluster.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import mfsample as mf

RUN = textwrap.dedent("""
    import json, os, sys
    import jax, numpy as np, mfsample as mf
    out = {"devices": len(jax.devices())}
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=256)
    kernels = {
        "wasserstein": lambda: mf.WassersteinFlow(mf.models.shallow_network, step_size=0.5),
        "langevin": lambda: mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.5, temperature=1e-3),
        "birth_death": lambda: mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.5,
                                                        rate=1.0, mode="birth_death"),
    }
    # every dynamic with particles sharded; the batched layouts on one dynamic each (the
    # sharding of a vmapped state does not depend on the step inside)
    cases = [(name, 1, "particles") for name in kernels] + [("langevin", 4, "particles"),
                                                           ("birth_death", 4, "chains")]
    for name, chains, shard in cases:
        make = kernels[name]
        if True:
            kw = dict(width=64, num_steps=20, save_every=10, num_chains=chains, progress_bar=False)
            ref = mf.simulate(make(), jax.random.PRNGKey(2), data.x, data.y, **kw)
            sh = mf.simulate(make(), jax.random.PRNGKey(2), data.x, data.y, devices=4, shard=shard, **kw)
            spec = list(sh.last_state.z["w"].sharding.spec)
            err = max(float(np.max(np.abs(ref.samples[k] - sh.samples[k]))) for k in ref.samples)
            out[f"{name}/{chains}/{shard}"] = [err, spec, len(sh.last_state.z["w"].sharding.device_set)]
    # shared sites (the depth-three network's first layer) are replicated beside sharded particles
    deep = lambda: mf.WassersteinFlow(mf.models.deep_network, step_size=0.5)
    kw = dict(width=64, num_steps=20, save_every=10, progress_bar=False)
    ref = mf.simulate(deep(), jax.random.PRNGKey(2), data.x, data.y, **kw)
    sh = mf.simulate(deep(), jax.random.PRNGKey(2), data.x, data.y, devices=4, shard="particles", **kw)
    err = max(float(np.max(np.abs(ref.samples[k] - sh.samples[k]))) for k in ref.samples)
    spec = list(sh.last_state.z["w"].sharding.spec)
    out["deep/1/particles"] = [err, spec, len(sh.last_state.z["U"].sharding.device_set)]
    # a sweep: its configurations (or each configuration's particles) over the devices
    grid = {"temperature": [1e-4, 1e-3, 1e-2, 0.1]}
    for shard in ("configs", "particles"):
        kw = dict(width=64, num_steps=20, save_every=10, num_chains=2, grid=grid, progress_bar=False)
        ref = mf.sweep(kernels["langevin"](), jax.random.PRNGKey(3), data.x, data.y, **kw)
        sh = mf.sweep(kernels["langevin"](), jax.random.PRNGKey(3), data.x, data.y, devices=4, shard=shard, **kw)
        spec = list(sh.last_state.z["w"].sharding.spec)
        err = max(float(np.max(np.abs(ref.samples[k] - sh.samples[k]))) for k in ref.samples)
        out[f"sweep/{shard}"] = [err, spec, len(sh.last_state.z["w"].sharding.device_set)]
    try:
        mf.simulate(kernels["wasserstein"](), jax.random.PRNGKey(2), data.x, data.y, width=66,
                    num_steps=2, progress_bar=False, devices=4, shard="particles")
    except ValueError as e:
        out["indivisible"] = str(e)
    print("RESULT", json.dumps(out))
""")


def _run(code, devices, *args, timeout=240):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_sharded_runs_equal_the_single_device_run():
    """Same key, 4 devices vs 1: the noise is drawn with the partitionable threefry, so only the
    order of float32 sums differs (the all-reduce of f adds 4 partial sums). 20 steps of an O(1)
    system: atol 1e-4 is ~10^3 float32 ulps, far below any real difference (a wrong noise or a
    missing psum moves particles by O(dt) = 0.5)."""
    out = _run(RUN, 4, timeout=600)
    assert out["devices"] == 4
    expected = {
        "wasserstein/1/particles": ["devices"],
        "langevin/1/particles": ["devices"],
        "birth_death/1/particles": ["devices"],
        "langevin/4/particles": [None, "devices"],
        "birth_death/4/chains": ["devices"],
        "deep/1/particles": ["devices"],
        "sweep/configs": ["devices"],
        "sweep/particles": [None, None, "devices"],
    }
    for key, axis_spec in expected.items():
        err, spec, ndev = out[key]
        assert err < 1e-4, (key, err)
        assert spec == axis_spec and ndev == 4, (key, spec, ndev)
    assert "not divisible" in out["indivisible"]


def test_devices_argument_is_checked():
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=16)
    k = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
    kw = dict(width=8, num_steps=2, progress_bar=False)
    with pytest.raises(ValueError, match="device_count"):
        mf.simulate(k, jax.random.PRNGKey(0), data.x, data.y, devices=len(jax.devices()) + 1, **kw)
    with pytest.raises(ValueError, match="shard"):
        mf.simulate(k, jax.random.PRNGKey(0), data.x, data.y, devices=1, shard="units", **kw)
    with pytest.raises(TypeError, match="devices"):
        mf.simulate(k, jax.random.PRNGKey(0), data.x, data.y, devices=[1, 2], **kw)
    # one device through the sharding path is the plain run
    a = mf.simulate(k, jax.random.PRNGKey(0), data.x, data.y, **kw)
    b = mf.simulate(k, jax.random.PRNGKey(0), data.x, data.y, devices=1, **kw)
    np.testing.assert_array_equal(a.samples["w"], b.samples["w"])


MULTIHOST = textwrap.dedent("""
    import json, sys
    import jax
    process_id, port = int(sys.argv[1]), sys.argv[2]
    if process_id >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                                   process_id=process_id)
    import numpy as np, mfsample as mf
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=128)
    kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.5, temperature=1e-3)
    sim = mf.simulate(kernel, jax.random.PRNGKey(2), data.x, data.y, width=64, num_steps=20,
                      save_every=10, progress_bar=False, devices="all", shard="particles")
    sw = mf.sweep(kernel, jax.random.PRNGKey(3), data.x, data.y, width=16, num_steps=10, save_every=5,
                  grid={"temperature": [1e-4, 1e-3, 1e-2, 0.1]}, progress_bar=False, devices="all",
                  shard="configs")
    print("RESULT", json.dumps({"processes": jax.process_count(), "devices": len(jax.devices()),
                                "local": len(jax.local_devices()), "w": sim.samples["w"].tolist(),
                                "sweep_w": sw.samples["w"].tolist()}))
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_multi_host_path_with_two_processes():
    """Two processes of two CPU devices each, joined by jax.distributed.initialize: the particles
    (and a sweep's configurations) are sharded over the 4 devices of both processes, every process
    gets the whole draws back, and they equal a one-process run on 4 local devices (float32
    summation order: atol 1e-4)."""
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MULTIHOST, str(i), port],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=240)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads([ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1][7:]))
    single = _run(MULTIHOST, 4, "-1", "0")
    for o in outs:
        assert (o["processes"], o["devices"], o["local"]) == (2, 4, 2)
        np.testing.assert_allclose(o["w"], single["w"], atol=1e-4)
        np.testing.assert_allclose(o["sweep_w"], single["sweep_w"], atol=1e-4)
    assert single["processes"] == 1 and single["devices"] == 4
