"""``python -m benchmarks``: ``mf.simulate`` against the alternatives, one table of same-run ratios.

For each size ``(dim, width, num_data)`` and each dynamic (Wasserstein flow, unadjusted
mean-field Langevin, birth–death Wasserstein–Fisher–Rao; :data:`benchmarks.alternatives.DYNAMICS`)
of the shallow ReLU network (mean-field scaling) on teacher–student data, every path below runs
from the same initial particles; the paths are timed round-robin in one process (each warmed up
first), ``--repeats`` rounds, and the table gives, per step and from the medians,

    time of ``simulate`` / time of the alternative          (below 1: simulate is faster)

* ``simulate``: ``mf.simulate(kernel, key, x, y, width=n, num_steps=T, save_every=T,
  collect_deterministic=False, progress_bar=False)`` (the whole call, ``kernel.init`` included);
  it is also timed with ``2T`` steps and with one step, which separate its time per step,
  ``(t_2T - t_T) / T`` ("loop only"), from its fixed cost per call, ``t_1`` minus that step
  (a difference of two short times, where ``2 t_T - t_2T`` differs two long ones);
  a 1-step call continuing from a state (``init_state``) measures the fresh start inside it,
  ``t_1`` less the continuing call's time: the prior draw and the drift at the initial particles,
  the floor of the fixed cost.  A call of ``T`` steps evaluates the drift at ``T + 1`` positions,
  the hand scan at ``T``: the last draw records the energy and gradient norm at its own
  particles, and its state carries the drift that a continuing call steps with;
* ``hand``: ``jax.jit`` + ``lax.scan`` of the same update, hand-derived matmuls
  (:func:`~benchmarks.alternatives.hand_scan`); target ``simulate / hand <= 1.05``;
* ``python_loop``: a Python loop over a jitted step with ``jax.grad``
  (:class:`~benchmarks.alternatives.PythonLoop`), how most research code runs;
* ``mcmc`` / ``mcmc_bar``: ``numpyro.infer.MCMC(kernel, num_warmup=0, num_samples=T,
  thinning=T)`` with the toolkit's kernel, ``progress_bar`` off / on (the bar to ``/dev/null``);
* ``blackjax``: ``blackjax.sgld`` on the same potential (:func:`~benchmarks.alternatives.blackjax_sgld`);
* ``numpy``: NumPy, hand-derived gradients (:class:`~benchmarks.alternatives.NumpyLoop`);
* ``torch``: PyTorch on the CPU, autograd (:class:`~benchmarks.alternatives.TorchLoop`), if importable;
* ``floor``: the step's two matmuls alone, ``x @ W`` (``(N, d) x (d, n)``) and ``x^T @ G``
  (``(d, N) x (N, n)``), in a compiled loop: the table's ``matmul floor`` column is the floor's
  time per step over simulate's loop-only time per step, the fraction of the matmul floor that
  ``simulate`` achieves.

Loops with no fixed cost per call (``python_loop``, ``numpy``, ``torch``) take fewer steps per
call where ``T`` steps would take more than ``LOOP_TARGET_S``; the ratio is per step either way.
NumPy and PyTorch run in worker processes of their own (:class:`LoopWorker`), called in the same
round-robin: in one process their thread pools and XLA's fight over the cores.

Before timing, every alternative is checked (at the smallest size, its width capped at
``CHECK_MAX_WIDTH``, ``--check-steps`` steps from the same particles) to give ``simulate``'s
particles (``allclose``): the JAX paths and the NumPy and PyTorch loops use the kernels' own
random numbers (``alternatives.replay_draws``); BlackJAX draws its noise its own way, so for
Langevin it runs with its noise off (its prior drift kept) against the hand loop with its noise
off.  The check runs at a higher temperature and reaction rate than the timing
(``CHECK_TEMPERATURE``, ``CHECK_RATE``), so that a wrong prior term, noise scale or reaction
rule would move the particles far beyond the tolerance.

Also measured, in fresh subprocesses (:mod:`benchmarks.probes`): the compile time of a first
``simulate`` call and the compilations of a second call on new data of the same shapes (target:
none); the peak resident memory of runs keeping ``MEMORY_DRAWS`` and ``MEMORY_FACTOR`` times
as many draws at width 4096, for ``simulate`` in memory, ``simulate(..., output=path)``
streaming to disk, and ``MCMC``.

    python -m benchmarks                       # everything (~16 min on 2 CPU cores)
    python -m benchmarks --quick               # the smallest size, 2 rounds (a few minutes)
    python -m benchmarks --sizes 20,1024,4096 --dynamics wasserstein --repeats 7 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import mfsample as mf

from . import alternatives as alt
from .probes import RUN_KEY, parse_size, teacher_student
from .step import CompileClock

SIZES = ((10, 256, 1024), (20, 1024, 4096), (50, 4096, 8192), (10, 65536, 1024))
#: steps per timed call (``T``) on a CPU: a simulate call of ~0.2-2 s on 2 cores
CPU_STEPS = {(10, 256, 1024): 1500, (20, 1024, 4096): 60, (50, 4096, 8192): 10, (10, 65536, 1024): 2}
#: on an accelerator a step is 10-1000x faster
ACCELERATOR_STEPS = {(10, 256, 1024): 3000, (20, 1024, 4096): 2000, (50, 4096, 8192): 1000, (10, 65536, 1024): 1000}
#: (label, path) of the ratio columns, in table order
COLUMNS = (
    ("hand scan", "hand"),
    ("Python loop", "python_loop"),
    ("MCMC", "mcmc"),
    ("MCMC + bar", "mcmc_bar"),
    ("BlackJAX sgld", "blackjax"),
    ("NumPy", "numpy"),
    ("PyTorch CPU", "torch"),
)
LOOP_PATHS = ("python_loop", "numpy", "torch")
LOOP_TARGET_S = 0.5
WORKER_PAUSE_S = 0.25
CHECK_TEMPERATURE = 0.05
CHECK_RATE = 5.0
CHECK_RTOL = CHECK_ATOL = 1e-4
#: the check runs at the smallest size of the run with its width capped at this.  A particle
#: whose pre-activation at some datum sits within float rounding of the ReLU kink takes one side
#: in one path and the other in another, and its gradient jumps: at (10, 4096, 1024) and
#: (10, 65536, 1024), 30 steps at the check's temperature left one coordinate 1.2e-4 and 1.7e-4
#: apart between two correct paths (NumPy and Python loop against simulate), beyond the
#: tolerance that catches a wrong factor.  More particles, more such crossings
CHECK_MAX_WIDTH = 1024
MEMORY_SIZE = (10, 4096, 1024)
MEMORY_DRAWS = 1000
MODEL = mf.models.shallow_network
TABLE_LEGEND = (
    "Time per step of simulate / time per step of the alternative (below 1: simulate is faster), "
    "whole calls of T steps; 'fixed ms/call': simulate's cost per call beyond its steps (a 1-step call "
    "minus the loop-only step); "
    "'start ms': the part of it that is the fresh start (prior draw and first drift evaluation), a fresh "
    "1-step call less a continuing one: the floor of the fixed cost, as a call of T steps evaluates the "
    "drift at T + 1 positions and the hand scan at T; "
    "'hand, loop only': simulate's per-step time without it, (t_2T - t_T) / T, over the hand scan's; "
    "'matmul floor': time of the step's two matmuls / that per-step time; compile: seconds (count) "
    "of XLA compilations in a fresh process's first simulate call, and compilations (seconds) of a "
    "second call on new data of the same shapes. Medians of {repeats} interleaved rounds."
)


class Path(NamedTuple):
    """A timed path: ``run()`` makes one call of ``steps`` steps -> ``(seconds, final particles)``."""

    run: Callable
    steps: int
    set_steps: Callable | None = None  # loops: change the number of steps per call
    pause_s: float = 0.0  # idle seconds before and after each call (see LoopWorker)


class NA(NamedTuple):
    """A path that cannot run here, and why."""

    reason: str


def timed(fn):
    """``fn() -> particles`` as a :class:`Path` ``run``: wall time to the particles being ready."""

    def run():
        t0 = time.perf_counter()
        out = _block(fn())
        return time.perf_counter() - t0, out

    return run


def _worker_main(conn):
    """Body of a :class:`LoopWorker` process: build a NumPy or PyTorch loop, time its calls."""
    loop = z0 = None
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "setup":
                kind, x, y, dyn, steps, z0 = msg[1:]
                loop = (alt.NumpyLoop if kind == "numpy" else alt.TorchLoop)(x, y, alt.Dynamic(*dyn), steps)
                conn.send(None)
            elif msg[0] == "steps":
                loop.num_steps = msg[1]
                conn.send(None)
            elif msg[0] == "run":
                t0 = time.perf_counter()
                loop(z0, msg[1])
                conn.send(time.perf_counter() - t0)
            else:
                conn.send(None)
                return
        except Exception as e:  # noqa: BLE001 - hand the failure to the parent
            conn.send(e)


class LoopWorker:
    """A NumPy or PyTorch loop timed in a process of its own, called in the same round-robin.

    In one process, the thread pools of OpenBLAS (NumPy), OpenMP (PyTorch) and XLA spin-wait
    and fight over the cores: on 2 cores PyTorch ran up to 100x slower right after a NumPy call.
    The parent waits (idle) while the worker runs, and the worker times the call itself.
    Each call is surrounded by ``WORKER_PAUSE_S`` idle seconds, so that the spinning threads of
    the previous call (XLA's, or OpenBLAS's, which spin ~0.1 s after a call) are asleep.
    """

    def __init__(self, kind):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()

    def call(self, *msg):
        self.conn.send(msg)
        out = self.conn.recv()
        if isinstance(out, Exception):
            raise out
        return out

    pause_s = WORKER_PAUSE_S

    def path(self, x, y, dyn, steps, z0):
        self.call(
            "setup",
            self.kind,
            np.asarray(x),
            np.asarray(y),
            tuple(dyn),
            steps,
            {k: np.asarray(v) for k, v in z0.items()},
        )
        return Path(lambda: (self.call("run", 0), None), steps, lambda k: self.call("steps", k), self.pause_s)

    def close(self):
        try:
            self.conn.send(("close",))
        except Exception:  # noqa: BLE001
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.terminate()


def default_steps(size, backend):
    """``T`` for a size: the tables above, else ~0.5 s of an estimated ~1.5e10 activations/s."""
    table = CPU_STEPS if backend == "cpu" else ACCELERATOR_STEPS
    if tuple(size) in table:
        return table[tuple(size)]
    dim, width, num_data = size
    return int(min(1000, max(2, 0.5 * 1.5e10 / (num_data * width * (dim + 4)))))


# ------------------------------------------------------------------------------------------
# machine
# ------------------------------------------------------------------------------------------
def _version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def machine_info():
    """Platform, CPUs, versions and JAX's backend, with the date."""
    dev = jax.devices()[0]
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', '?')} (x{jax.device_count()})",
    }
    for name in ("mfsample", "jax", "jaxlib", "numpyro", "blackjax", "numpy", "torch"):
        info[name] = _version(name)
    return info


def print_header(info, out=sys.stdout):
    print(f"# python -m benchmarks, {info['date']}", file=out)
    print(
        f"machine: {info['platform']}, {info['processor']}, {info['cpu_count']} CPUs, load average "
        f"{info['load_average']:.1f}; python {info['python']}"
        if info["load_average"] is not None
        else f"machine: {info['platform']}, {info['cpu_count']} CPUs; python {info['python']}",
        file=out,
    )
    print(
        f"jax {info['jax']} (jaxlib {info['jaxlib']}) on {info['backend']}, {info['device']}; "
        f"numpyro {info['numpyro']}; blackjax {info['blackjax'] or 'absent'}; numpy {info['numpy']}; "
        f"torch {info['torch'] or 'absent'}; mfsample {info['mfsample']}",
        file=out,
    )


# ------------------------------------------------------------------------------------------
# the paths
# ------------------------------------------------------------------------------------------
def _block(tree):
    return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)


def matmul_floor(x, width, steps):
    """``steps`` iterations of the step's two matmuls, ``h = x @ W`` and ``x^T @ h``, chained."""
    W0 = jnp.full((x.shape[1], width), 0.01, x.dtype)

    @jax.jit
    def run(x, W):
        def body(_, W):
            h = jax.lax.optimization_barrier(x @ W)  # no fusion or reassociation across the two
            return W - 1e-12 * (x.T @ h)  # (d, n) result, as in the hand loop's x^T G

        return jax.lax.fori_loop(0, steps, body, W)

    return lambda: run(x, W0)


def _mcmc(kernel, steps, progress_bar, x, y, width):
    from numpyro.infer import MCMC

    mcmc = MCMC(kernel, num_warmup=0, num_samples=steps, thinning=steps, progress_bar=progress_bar)

    def run():
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            mcmc.run(jax.random.PRNGKey(RUN_KEY), x, y, width=width)
        return mcmc.last_state.z

    return run


def _simulate(kernel, steps, x, y, width, init_state=None):
    """A ``simulate`` call of ``steps`` steps: fresh from the run's key, or continuing from
    ``init_state`` (a fresh 1-step call less a continuing one is the cost of the fresh start
    inside ``simulate``)."""
    key = jax.random.PRNGKey(RUN_KEY) if init_state is None else None

    def run():
        sim = mf.simulate(
            kernel,
            key,
            x,
            y,
            init_state=init_state,
            width=width,
            num_steps=steps,
            save_every=steps,
            collect_deterministic=False,
            progress_bar=False,
        )
        return sim.last_state.z

    return run


def make_paths(x, y, width, dyn, steps, *, workers, blackjax=True):
    """Every path at one size, from the kernel's initial particles: dict name -> Path or NA.

    ``workers``: ``{"numpy": LoopWorker or NA, "torch": LoopWorker or NA}``.
    """
    kernel = dyn.kernel(MODEL)
    state0 = kernel.init(jax.random.PRNGKey(RUN_KEY), 0, None, (x, y), {"width": width})
    z0, key0 = state0.z, state0.rng_key
    hand = alt.hand_scan(x, y, dyn, steps)
    paths = {
        "simulate": Path(timed(_simulate(dyn.kernel(MODEL), steps, x, y, width)), steps),
        "simulate_2T": Path(timed(_simulate(dyn.kernel(MODEL), 2 * steps, x, y, width)), 2 * steps),
        "simulate_1": Path(timed(_simulate(dyn.kernel(MODEL), 1, x, y, width)), 1),
        "simulate_continuing": Path(timed(_simulate(dyn.kernel(MODEL), 1, x, y, width, state0)), 1),
        "hand": Path(timed(lambda: hand(z0, key0)), steps),
        "mcmc": Path(timed(_mcmc(dyn.kernel(MODEL), steps, False, x, y, width)), steps),
        "mcmc_bar": Path(timed(_mcmc(dyn.kernel(MODEL), steps, True, x, y, width)), steps),
    }
    loop = alt.PythonLoop(x, y, dyn, steps)
    paths["python_loop"] = Path(timed(lambda: loop(z0, key0)), steps, lambda k: setattr(loop, "num_steps", k))
    ok, why = alt.blackjax_available()
    if not blackjax:
        paths["blackjax"] = NA("disabled (--no-blackjax)")
    elif not ok:
        paths["blackjax"] = NA(why)
    else:
        bj = alt.blackjax_sgld(x, y, dyn, steps)
        paths["blackjax"] = Path(timed(lambda: bj(z0, key0)), steps)
    for kind in ("numpy", "torch"):
        w = workers[kind]
        paths[kind] = w if isinstance(w, NA) else w.path(x, y, dyn, steps, z0)
    floor = matmul_floor(x, width, steps)
    paths["floor"] = Path(timed(floor), steps)
    return paths


# ------------------------------------------------------------------------------------------
# like for like
# ------------------------------------------------------------------------------------------
def check_dynamic(dyn):
    """The dynamic at the check's settings: a larger ``tau`` (Langevin) and ``alpha`` (WFR)."""
    if dyn.name == "langevin":
        return dyn._replace(temperature=CHECK_TEMPERATURE)
    if dyn.name == "wfr":
        return dyn._replace(rate=CHECK_RATE)
    return dyn


def _max_diff(z1, z2):
    return max(float(np.max(np.abs(np.asarray(z1[k]) - np.asarray(z2[k])))) for k in ("a", "w", "b"))


def check_alternatives(size, dyn, steps, *, torch=True, blackjax=True, mcmc=True):
    """Run every path ``steps`` steps at ``size`` and assert ``allclose`` with ``simulate``.

    ``mcmc=False`` leaves out the two ``MCMC`` drivers (the toolkit's kernel itself, whose
    draws equal ``simulate``'s by construction) to check only the reference implementations.

    Returns ``{path: {"max_abs_diff", "against"} or {"na": reason}, "moved": ..., "events": ...}``.
    Runs at float32 matmul precision (on GPUs JAX's default may use TF32).
    """
    dim, width, num_data = size
    cdyn = check_dynamic(dyn)
    x, y = teacher_student(dim, num_data)
    out = {"settings": cdyn._asdict(), "steps": steps}
    with jax.default_matmul_precision("float32"):
        sim = mf.simulate(
            cdyn.kernel(MODEL),
            jax.random.PRNGKey(RUN_KEY),
            x,
            y,
            width=width,
            num_steps=steps,
            save_every=1,
            collect_deterministic=False,
            progress_bar=False,
        )
        ref = sim.last_state.z
        state0 = cdyn.kernel(MODEL).init(jax.random.PRNGKey(RUN_KEY), 0, None, (x, y), {"width": width})
        z0, key0 = state0.z, state0.rng_key
        out["moved"] = _max_diff(ref, z0)
        if cdyn.reaction:
            out["events"] = int(np.sum(sim.stats["births"]) + np.sum(sim.stats["deaths"]))
            assert out["events"] > 0, "the check saw no birth-death event: raise CHECK_RATE or the steps"
        draws = alt.replay_draws(key0, cdyn, width, dim, steps)
        z0_np = {k: np.asarray(v) for k, v in z0.items()}
        results = {
            "hand": alt.hand_scan(x, y, cdyn, steps)(z0, key0),
            "python_loop": alt.PythonLoop(x, y, cdyn, steps)(z0, key0),
            "numpy": alt.NumpyLoop(x, y, cdyn, steps, draws)(z0_np),
        }
        if mcmc:
            results["mcmc"] = _mcmc(cdyn.kernel(MODEL), steps, False, x, y, width)()
            results["mcmc_bar"] = _mcmc(cdyn.kernel(MODEL), steps, True, x, y, width)()
        against = {}
        ok, why = alt.blackjax_available()
        if blackjax and ok:
            if cdyn.noisy:  # BlackJAX's noise is drawn its own way: compare the drifts, noise off
                results["blackjax"] = alt.blackjax_sgld(x, y, cdyn, steps, temperature=0.0)(z0, key0)
                against["blackjax"] = alt.hand_scan(x, y, cdyn, steps, noise=False)(z0, key0)
            else:
                results["blackjax"] = alt.blackjax_sgld(x, y, cdyn, steps)(z0, key0)
        else:
            out["blackjax"] = {"na": why if blackjax else "disabled"}
        ok, why = alt.torch_available()
        if torch and ok:
            results["torch"] = alt.TorchLoop(x, y, cdyn, steps, draws)(z0_np)
        else:
            out["torch"] = {"na": why if torch else "disabled"}
    for name, z in results.items():
        target = against.get(name, ref)
        # float32: the paths sum in different orders (~1e-7 relative per operation); after the
        # check's steps the particles (entries of order 1, moved by `moved`) agree to ~1e-6,
        # while a wrong factor (n, d, tau, dt), a wrong noise scale or a different reaction event
        # moves them by 1e-3 or more (a clone moves a particle by O(1)).
        for k in ("a", "w", "b"):
            np.testing.assert_allclose(
                np.asarray(z[k]),
                np.asarray(target[k]),
                rtol=CHECK_RTOL,
                atol=CHECK_ATOL,
                err_msg=f"{dyn.name}: {name} and simulate disagree on {k!r} after {steps} steps",
            )
        out[name] = {
            "max_abs_diff": _max_diff(z, target),
            "against": "hand loop without noise" if name in against else "simulate",
        }
    return out


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------
def time_paths(paths, repeats, clock, *, loop_target_s=LOOP_TARGET_S):
    """Warm up every path, then ``repeats`` round-robin rounds.

    Loops (paths with ``set_steps``) are first timed over a few steps and then given the number
    of steps per call (at most ``T``, at least 1) that takes about ``loop_target_s``.
    Returns ``{name: {"steps", "seconds": [...], "compile_s": [...]}}`` and the last outputs.
    """
    live = {k: p for k, p in paths.items() if isinstance(p, Path)}
    steps = {k: p.steps for k, p in live.items()}
    for name, p in live.items():
        if p.set_steps is None:
            p.run()
            continue
        p.set_steps(1)  # compile / first touch
        p.run()
        probe_steps = min(p.steps, 5)
        p.set_steps(probe_steps)
        time.sleep(p.pause_s)
        per_step = p.run()[0] / probe_steps
        time.sleep(p.pause_s)
        steps[name] = int(min(p.steps, max(1, math.ceil(loop_target_s / max(per_step, 1e-9)))))
        p.set_steps(steps[name])
    record = {k: {"steps": steps[k], "seconds": [], "compile_s": [], "compiles": []} for k in live}
    last = {}
    for _ in range(repeats):
        for name, p in live.items():
            time.sleep(p.pause_s)
            c0, n0 = clock.seconds, clock.count
            seconds, last[name] = p.run()
            record[name]["seconds"].append(seconds)
            record[name]["compile_s"].append(clock.seconds - c0)  # tracing + lowering + compiling
            record[name]["compiles"].append(clock.count - n0)  # XLA compilations
            time.sleep(p.pause_s)
    return record, last


def per_step_seconds(record):
    """Median seconds per step of each timed path."""
    return {k: statistics.median(v["seconds"]) / v["steps"] for k, v in record.items()}


def probe(args, timeout=900):
    """Run ``python -m benchmarks.probes ARGS`` in a fresh process; its last stdout line as JSON."""
    cmd = [sys.executable, "-m", "benchmarks.probes", *map(str, args)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
    except subprocess.TimeoutExpired:
        return {"na": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {
            "na": f"probe failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_row(size, dyn, steps, repeats, clock, *, workers, blackjax=True, compile_probe=True):
    """One row of the table: per-step times, ratios' inputs, compile probe, final-particle diffs."""
    dim, width, num_data = size
    x, y = teacher_student(dim, num_data)
    row = {"dynamic": dyn.name, "size": list(size), "steps": steps}
    if compile_probe:
        row["compile"] = probe(["compile", "--size", ",".join(map(str, size)), "--dynamic", dyn.name, "--steps", steps])
    paths = make_paths(x, y, width, dyn, steps, workers=workers, blackjax=blackjax)
    row["na"] = {k: p.reason for k, p in paths.items() if isinstance(p, NA)}
    record, last = time_paths(paths, repeats, clock)
    row["timings"] = record
    row["per_step_s"] = per_step_seconds(record)
    # the JAX paths share the kernels' random numbers: their final particles must match simulate's
    same_draws = ["hand", "python_loop", "mcmc", "mcmc_bar"] + (["blackjax"] if not dyn.noisy else [])
    row["final_max_abs_diff"] = {
        k: _max_diff(last[k], last["simulate"])
        for k in same_draws
        if last.get(k) is not None and record[k]["steps"] == record["simulate"]["steps"]
    }
    unexpected = {
        k: (round(statistics.median(v["compile_s"]), 3), sum(v["compiles"]))
        for k, v in record.items()
        if k not in ("mcmc", "mcmc_bar") and sum(v["compile_s"]) > 1e-3
    }
    if unexpected:
        row["compiled_while_timed_s"] = unexpected
    return row


# ------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------
def _fmt_ratio(r):
    return "n/a" if r is None else (f"{r:.3f}" if r < 0.1 else f"{r:.2f}")


def loop_only(row):
    """``(seconds per step without the fixed cost of a call, fixed seconds per call)`` of simulate.

    From the medians of calls of ``T`` and ``2T`` steps, the step ``(t_2T - t_T) / T``; the fixed
    cost (the start, building the energy, checks, the output) is a 1-step call's median ``t_1``
    less that step, or ``2 t_T - t_2T`` without a 1-step path.  None without a ``2T`` path.
    """
    t = row["timings"]
    if "simulate_2T" not in t:
        return None, None
    t1 = statistics.median(t["simulate"]["seconds"])
    t2 = statistics.median(t["simulate_2T"]["seconds"])
    steps = t["simulate"]["steps"]
    per_step = (t2 - t1) / steps
    if "simulate_1" in t:
        return (per_step if per_step > 0 else None), statistics.median(t["simulate_1"]["seconds"]) - per_step
    return (per_step if per_step > 0 else None), t1 - steps * per_step


def start_cost(row):
    """Seconds of a fresh start inside ``simulate``: the medians of a fresh 1-step call less a
    continuing one (None without both paths)."""
    t = row["timings"]
    if "simulate_1" not in t or "simulate_continuing" not in t:
        return None
    return statistics.median(t["simulate_1"]["seconds"]) - statistics.median(t["simulate_continuing"]["seconds"])


def ratios(row):
    """Ratios of one row, each from the same run's medians.

    ``{path: simulate time / path time}`` per step of a whole call (None where the path did not
    run); ``hand_loop_only``: simulate's per-step time without its fixed cost per call / hand's;
    ``floor``: time of the two matmuls / simulate's per-step time without its fixed cost.
    """
    t = row["per_step_s"]
    sim = t["simulate"]
    out = {path: (sim / t[path] if t.get(path) else None) for _, path in COLUMNS}
    loop, _ = loop_only(row)
    out["hand_loop_only"] = loop / t["hand"] if loop and t.get("hand") else None
    out["floor"] = t["floor"] / loop if loop and t.get("floor") else None
    return out


def build_table(rows):
    """The markdown table of ``rows`` (as :func:`time_row` returns them)."""
    head = (
        ["dynamic", "(d, n, N)", "T", "simulate ms/step", "fixed ms/call", "start ms", "hand scan", "hand, loop only"]
        + [label for label, path in COLUMNS if path != "hand"]
        + ["matmul floor", "compile, 1st call", "2nd call"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        r = ratios(row)
        _, fixed = loop_only(row)
        cells = [
            row["dynamic"],
            "(" + ", ".join(map(str, row["size"])) + ")",
            str(row["steps"]),
            f"{1e3 * row['per_step_s']['simulate']:.3g}",
            "n/a" if fixed is None else f"{1e3 * fixed:.0f}",
            "n/a" if start_cost(row) is None else f"{1e3 * start_cost(row):.0f}",
            _fmt_ratio(r["hand"]),
            _fmt_ratio(r["hand_loop_only"]),
        ]
        cells += [_fmt_ratio(r[path]) for _, path in COLUMNS if path != "hand"]
        cells.append(_fmt_ratio(r["floor"]))
        comp = row.get("compile") or {"na": "not measured"}
        if "na" in comp:
            cells += ["n/a", "n/a"]
        else:
            first, second = comp["first"], comp["second"]
            cells.append(f"{first['compile_s']:.1f} s ({first['compiles']})")
            cells.append(f"{second['compiles']} ({second['compile_s']:.2f} s)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the memory probes' second run keeps this many times more draws (the fit's lever arm: the
#: constant part, compile and chunk buffers, varies by ~50 MiB from run to run)
MEMORY_FACTOR = 4


def memory_probe(driver, size, draws):
    """Memory probes of ``driver`` keeping ``draws`` and ``MEMORY_FACTOR * draws`` draws, each in a
    fresh process, and the fit ``peak = constant + slope * kept`` through the two."""
    args = ["memory", "--driver", driver, "--size", ",".join(map(str, size))]
    first = probe(args + ["--draws", draws]) | {"driver": driver}
    if "na" in first:
        return first
    second = probe(args + ["--draws", MEMORY_FACTOR * draws])
    if "na" in second:
        return first
    slope = (second["peak_above_baseline"] - first["peak_above_baseline"]) / max(
        second["kept_bytes"] - first["kept_bytes"], 1
    )
    return first | {
        "more": second,
        "slope": slope,
        "constant_bytes": first["peak_above_baseline"] - slope * first["kept_bytes"],
    }


def memory_lines(memory):
    """Markdown bullet lines of the memory probes."""
    mib = 2.0**20
    lines = []
    for m in memory:
        if "na" in m:
            lines.append(f"- {m['driver']}: n/a ({m['na']})")
            continue
        kept = "written to disk" if m["driver"] == "stream" else "kept"
        parts = []
        for p in (m, m.get("more")):
            if p:
                parts.append(
                    f"{p['draws']} draws ({p['kept_bytes'] / mib:.0f} MiB {kept}): peak "
                    f"+{p['peak_above_baseline'] / mib:.0f} MiB = {p['ratio']:.2f} x"
                )
        line = f"- {m['driver']} at (d, n, N) = {tuple(m['size'])}: " + "; ".join(parts)
        if "slope" in m:
            line += f"; fit: {m['slope']:.2f} x kept + {m['constant_bytes'] / mib:.0f} MiB"
        if m.get("device_peak_bytes"):
            line += f"; device peak {m['device_peak_bytes'] / mib:.0f} MiB"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="the smallest size only, 2 rounds, short check and small memory probe"
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=None,
        metavar="D,N_UNITS,N_DATA",
        help="sizes (dim,width,num_data); default: the four of the benchmark tables",
    )
    p.add_argument("--dynamics", nargs="+", choices=tuple(alt.DYNAMICS), default=list(alt.DYNAMICS))
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; --quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed call T (default: per size)")
    p.add_argument("--check-steps", type=int, default=None, help="steps of the check (default 30; --quick 5)")
    p.add_argument(
        "--memory-size",
        type=parse_size,
        default=None,
        help=f"size of the memory probe (default {','.join(map(str, MEMORY_SIZE))})",
    )
    p.add_argument("--memory-draws", type=int, default=None, help=f"draws kept (default {MEMORY_DRAWS})")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time probes")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch (its column says n/a)")
    p.add_argument("--no-blackjax", action="store_true", help="skip BlackJAX (its column says n/a)")
    p.add_argument("--json", metavar="PATH", default=None, help="write every measurement to PATH")
    a = p.parse_args(argv)
    if a.sizes is None:
        a.sizes = [SIZES[0]] if a.quick else list(SIZES)
    a.repeats = a.repeats or (2 if a.quick else 5)
    a.check_steps = a.check_steps or (5 if a.quick else 30)
    a.memory_size = a.memory_size or ((MEMORY_SIZE[0], 256, MEMORY_SIZE[2]) if a.quick else MEMORY_SIZE)
    a.memory_draws = a.memory_draws or (100 if a.quick else MEMORY_DRAWS)
    return a


def main(argv=None):
    args = parse_args(argv)
    info = machine_info()
    print_header(info)
    clock = CompileClock()
    dyns = [alt.DYNAMICS[name] for name in args.dynamics]
    torch, blackjax = not args.no_torch, not args.no_blackjax
    t_start = time.perf_counter()

    dim, width, num_data = min(args.sizes, key=lambda s: s[0] * s[1] * s[2])
    smallest = (dim, min(width, CHECK_MAX_WIDTH), num_data)
    checks = {}
    for dyn in dyns:
        checks[dyn.name] = check_alternatives(smallest, dyn, args.check_steps, torch=torch, blackjax=blackjax)
        worst = max(
            (v["max_abs_diff"] for v in checks[dyn.name].values() if isinstance(v, dict) and "max_abs_diff" in v),
            default=float("nan"),
        )
        print(
            f"check {dyn.name} at {smallest}, {args.check_steps} steps: every path agrees with simulate "
            f"(largest |difference| {worst:.1e}; particles moved up to {checks[dyn.name]['moved']:.2g})",
            flush=True,
        )

    workers = {}
    for kind, wanted in (("numpy", True), ("torch", torch)):
        ok, why = (True, "") if kind == "numpy" else alt.torch_available()
        workers[kind] = LoopWorker(kind) if wanted and ok else NA(why if wanted else f"disabled (--no-{kind})")
        if args.quick and isinstance(workers[kind], LoopWorker):
            workers[kind].pause_s = 0.05  # the quick run is a smoke test, not a measurement
    rows = []
    try:
        for size in args.sizes:
            steps = args.steps or (
                min(default_steps(size, info["backend"]), 20) if args.quick else default_steps(size, info["backend"])
            )
            for dyn in dyns:
                t0 = time.perf_counter()
                row = time_row(
                    size,
                    dyn,
                    steps,
                    args.repeats,
                    clock,
                    workers=workers,
                    blackjax=blackjax,
                    compile_probe=not args.no_compile,
                )
                rows.append(row)
                r = ratios(row)
                print(
                    f"timed {dyn.name} at {tuple(size)}, T = {steps}: simulate "
                    f"{1e3 * row['per_step_s']['simulate']:.3g} ms/step, simulate/hand "
                    f"{_fmt_ratio(r['hand'])} (loop only {_fmt_ratio(r['hand_loop_only'])}) "
                    f"({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    finally:
        for w in workers.values():
            if isinstance(w, LoopWorker):
                w.close()

    memory = []
    if not args.no_memory:
        for driver in ("simulate", "stream", "mcmc"):
            memory.append(memory_probe(driver, args.memory_size, args.memory_draws))

    print()
    print(TABLE_LEGEND.format(repeats=args.repeats) + "\n")
    print(build_table(rows))
    na = {}
    for row in rows:
        for k, reason in row["na"].items():
            na.setdefault(k, reason)
    for k, reason in na.items():
        print(f"\nn/a {k}: {reason}")
    loops = [row["timings"][k]["steps"] for row in rows for k in LOOP_PATHS if k in row["timings"]]
    if loops:
        print(
            f"\nthe loops ({', '.join(LOOP_PATHS)}) ran {min(loops)} to {max(loops)} steps per call "
            f"(at most T, about {LOOP_TARGET_S} s a call); the ratios are per step either way"
        )
    diffs = [max(row["final_max_abs_diff"].values()) for row in rows if row["final_max_abs_diff"]]
    if diffs:
        print(
            f"final particles of the timed calls that share simulate's random numbers: largest "
            f"|difference| {max(diffs):.1e}"
        )
    traced = [
        f"{row['dynamic']} {tuple(row['size'])}: "
        + ", ".join(
            f"{k} {sec:.3f} s ({num} XLA compilations)" for k, (sec, num) in row["compiled_while_timed_s"].items()
        )
        for row in rows
        if row.get("compiled_while_timed_s")
    ]
    if traced:
        print(
            "JAX tracing/lowering/compiling inside timed calls (median seconds per call; XLA "
            "compilations in all rounds; MCMC's per-run recompilation not listed):\n  " + "\n  ".join(traced)
        )
    if memory:
        print(
            "\nPeak resident memory (VmHWM, a fresh process; above its resident memory after a 10-draw "
            "warm-up run, where the peak is reset):"
        )
        print("\n".join(memory_lines(memory)))
    elapsed = time.perf_counter() - t_start
    print(
        f"\ntotal {elapsed / 60:.1f} min; load average at the end {os.getloadavg()[0]:.1f}"
        if hasattr(os, "getloadavg")
        else f"\ntotal {elapsed / 60:.1f} min"
    )
    result = {
        "machine": info,
        "args": {
            k: (v if not isinstance(v, list) else [list(s) if isinstance(s, tuple) else s for s in v])
            for k, v in vars(args).items()
        },
        "checks": checks,
        "rows": rows,
        "ratios": [ratios(r) for r in rows],
        "memory": memory,
        "table": build_table(rows),
        "elapsed_s": elapsed,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
