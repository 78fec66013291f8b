"""Measurements that need a fresh process: compile time of a first call, and peak memory.

Run by :mod:`benchmarks.run` in subprocesses; each prints one JSON object on its last line.

``python -m benchmarks.probes compile --size 10,256,1024 --dynamic wasserstein --steps 200``
    In a fresh process (nothing compiled yet), the JAX compile events (tracing, lowering, XLA
    compilation: ``benchmarks.step.CompileClock``) of a first ``mf.simulate`` call, then of a
    second call on a new data set of the same shapes with a new key (target: none).

``python -m benchmarks.probes memory --driver simulate|stream|mcmc --size 10,4096,1024 --draws 1000``
    Peak resident memory (``VmHWM``, or ``ru_maxrss`` off Linux: see ``_maxrss_bytes``) of one run that keeps
    ``--draws`` draws (one per step), above the resident memory before it (after the imports, the
    data and a warm-up run of 10 draws with the same driver; the peak is reset there through
    ``/proc/self/clear_refs``), against the bytes of the draws kept (``--twice``: also with twice
    the draws, and the slope of the peak in the kept bytes):
    ``simulate`` (in memory), ``stream`` (``simulate(..., output=path)``, the draws written to
    disk: n/a when ``simulate`` takes no ``output``) and ``mcmc`` (``numpyro.infer.MCMC``).  On an
    accelerator the device's own peak (``memory_stats()["peak_bytes_in_use"]``) is added.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

import mfsample as mf

from .alternatives import DYNAMICS
from .step import CompileClock

TEACHER_WIDTH = 5
DATA_KEY, RUN_KEY = 0, 1


def parse_size(text):
    """``"d,n,N"`` -> ``(d, n, N)``."""
    dim, width, num_data = (int(v) for v in text.split(","))
    return dim, width, num_data


def teacher_student(dim, num_data, key=DATA_KEY):
    data = mf.data.teacher_student(jax.random.PRNGKey(key), dim=dim, teacher_width=TEACHER_WIDTH, num_data=num_data)
    return data.x, data.y


def _simulate(kernel, key, x, y, width, steps):
    return mf.simulate(
        kernel,
        jax.random.PRNGKey(key),
        x,
        y,
        width=width,
        num_steps=steps,
        save_every=steps,
        collect_deterministic=False,
        progress_bar=False,
    )


def probe_compile(size, dynamic, steps):
    """First and second ``simulate`` call of a fresh process: compile seconds, compile count, wall."""
    dim, width, num_data = size
    x1, y1 = teacher_student(dim, num_data, DATA_KEY)
    x2, y2 = teacher_student(dim, num_data, DATA_KEY + 100)  # new data, same shapes
    jax.block_until_ready((x1, y1, x2, y2))
    kernel = DYNAMICS[dynamic].kernel(mf.models.shallow_network)
    clock = CompileClock()
    out = {}
    for name, (x, y, key) in (("first", (x1, y1, RUN_KEY)), ("second", (x2, y2, RUN_KEY + 1))):
        c0, n0, t0 = clock.seconds, clock.count, time.perf_counter()
        jax.block_until_ready(_simulate(kernel, key, x, y, width, steps).last_state.z)
        out[name] = {"wall_s": time.perf_counter() - t0, "compile_s": clock.seconds - c0, "compiles": clock.count - n0}
    return out


def _maxrss_bytes():
    """Peak resident memory of this process: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` is not this process's own on Linux when it was started by a large parent: the
    kernel carries the parent's peak over ``fork`` + ``exec`` (the benchmark's parent holds
    gigabytes), and ``clear_refs`` does not reset that part; ``VmHWM`` is the peak of this
    process's own address space and is reset by :func:`reset_peak`.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform == "darwin" else 1024)


def reset_peak():
    """Reset the peak RSS to the current RSS (Linux ``/proc/self/clear_refs``, ``5``).

    Returns True when it could, so that ``ru_maxrss`` afterwards is the peak of what follows;
    else the baseline is the peak so far, which may hide a smaller run below an earlier peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _device_peak():
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    return None if not stats else stats.get("peak_bytes_in_use")


def _nbytes(tree):
    return int(sum(np.asarray(v).nbytes for v in jax.tree.leaves(tree)))


def _dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def probe_memory(driver, size, draws, dynamic="wasserstein"):
    """Peak resident memory above the baseline of one run keeping ``draws`` draws (see module doc).

    One measured run per process: memory freed by a first run stays resident (the allocator
    keeps it) and a second run would reuse it unseen.
    """
    from numpyro.infer import MCMC

    dim, width, num_data = size
    x, y = teacher_student(dim, num_data)
    kernel = DYNAMICS[dynamic].kernel(mf.models.shallow_network)
    tmp = tempfile.mkdtemp(prefix="mfsample-bench-")
    if driver == "stream" and "output" not in inspect.signature(mf.simulate).parameters:
        return {"driver": driver, "na": "mf.simulate has no `output` argument (streaming to disk) yet"}

    def run(num, tag):
        key = jax.random.PRNGKey(RUN_KEY)
        if driver == "mcmc":
            mcmc = MCMC(kernel, num_warmup=0, num_samples=num, progress_bar=False)
            mcmc.run(key, x, y, width=width)
            kept = (mcmc.get_samples(), mcmc.get_extra_fields())
            jax.block_until_ready(kept)
            return _nbytes(kept), mcmc
        if driver == "stream":
            path = os.path.join(tmp, f"draws-{tag}.nc")
            sim = mf.simulate(kernel, key, x, y, width=width, num_steps=num, progress_bar=False, output=path)
            jax.block_until_ready(sim.last_state.z)
            return _dir_bytes(path), sim
        sim = mf.simulate(kernel, key, x, y, width=width, num_steps=num, progress_bar=False)
        return _nbytes((sim.samples, sim.stats)), sim

    def measure(num, tag):
        gc.collect()
        reset = reset_peak()
        base = _maxrss_bytes()
        t0 = time.perf_counter()
        kept, result = run(num, tag)
        wall = time.perf_counter() - t0
        peak = _maxrss_bytes()
        del result
        return {
            "draws": num,
            "kept_bytes": kept,
            "baseline_bytes": base,
            "peak_bytes": peak,
            "peak_above_baseline": peak - base,
            "ratio": (peak - base) / kept if kept else None,
            "wall_s": wall,
            "baseline": "RSS after a peak reset" if reset else "peak RSS so far",
        }

    try:
        run(10, "warmup")  # compiles the step and imports everything the driver touches
        out = measure(draws, "measured")
    except Exception as e:  # noqa: BLE001 - streaming is optional: report why it did not run
        if driver == "stream":
            return {"driver": driver, "na": f"simulate(..., output=path) failed: {type(e).__name__}: {e}"}
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"driver": driver, "size": list(size), **out, "device_peak_bytes": _device_peak()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("compile", "memory"))
    p.add_argument("--size", type=parse_size, required=True)
    p.add_argument("--dynamic", default="wasserstein", choices=tuple(DYNAMICS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--driver", default="simulate", choices=("simulate", "stream", "mcmc"))
    p.add_argument("--draws", type=int, default=1000)
    a = p.parse_args(argv)
    if a.what == "compile":
        out = probe_compile(a.size, a.dynamic, a.steps)
    else:
        out = probe_memory(a.driver, a.size, a.draws, a.dynamic)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
