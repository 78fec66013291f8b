"""``python -m benchmarks --only sweep``: ``mf.sweep`` against the ways to run a grid without it.

Two studies of the shallow ReLU network (mean-field scaling, unit noise) on teacher–student data,
each a grid of ``NUM_CONFIGS = 16`` values of one hyper-parameter x ``NUM_CHAINS = 4`` replicas
(dt = 0.1):

* ``langevin``: ``mf.MeanFieldLangevin``, 16 temperatures ``tau`` log-spaced over [1e-5, 1e-2];
* ``wfr``: ``WassersteinFisherRao(mode="birth_death", birth="clone")``, tau = 0, 16 rates
  ``alpha`` evenly spaced over [0.25, 4].

Each size ``(dim, width, num_data)`` of :data:`SIZES` runs ``T`` steps (default 1000) along
four paths, each from the same keys: configuration ``c`` uses ``jax.random.split(key, 16)[c]``,
split over its chains as ``mf.simulate`` splits a key.

* ``sweep``: ``mf.sweep(kernel, key, x, y, width=n, grid={name: values}, num_chains=4,
  num_steps=T, save_every=T, progress_bar=False, collect_deterministic=False)``;
* ``simulate_each`` (a): 16 ``mf.simulate`` calls, one per configuration, each on a new kernel
  object (``kernel.replace(name=value)``) with 4 chains;
* ``python_loop`` (b): per configuration, a Python loop of ``T`` calls of one jitted step (the
  kernel's functional core, ``kernel.build(energy, parameters)``, ``vmap``-ped over the 4
  chains), the hyper-parameters and the data being arguments (compiled once); the initial state
  by a jitted ``kernel.initializer``;
* ``hand`` (c): one ``jax.jit`` of a ``lax.scan`` whose step is ``vmap``-ped over
  configurations and chains, the update written here from :mod:`mfsample.energy`
  (``energy_and_velocity``, ``first_variation``, the prior's ``log_prior``) and
  :func:`mfsample.kernels.reaction.birth_death_step`, carrying only the particles, the drift
  (and ``V``) and the key (:func:`hand_sweep`).

Measured per study and size, in one process: the wall time and the XLA compilations of each
path's first call (``mfsample.kernels.programs.clear()`` first, fresh kernels and jitted
functions), of a second ``sweep`` call on a new kernel object with new values (target: no
compilation), then ``--repeats`` interleaved rounds of warm calls, each round with new values
of the grid (every ``sweep`` and ``simulate_each`` call is again a call with new values on new
kernels). Reported from the medians of the rounds:

    (a) / sweep, (b) / sweep       time of the alternative over the sweep's (above 1: sweep faster)
    sweep / (c)                    time of the sweep over the hand-written vmapped scan

Targets: (a) / sweep >= 5 at (10, 256, 1024) and >= 1.3 at (20, 1024, 4096); sweep / (c) <= 1.1;
no compilation in a second sweep call.

Before timing, every path is checked against the sweep (the smallest size of the run,
``--check-steps`` steps, every configuration and chain): they share the sweep's keys, so
their particles must agree to float32 rounding (``allclose``, rtol = atol = 1e-4).

    python -m benchmarks --only sweep                       # both sizes, T = 1000
    python -m benchmarks --only sweep --steps 100 20        # T per size
    python -m benchmarks --only sweep --quick               # (10, 256, 1024), T = 20, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import mfsample as mf
from mfsample.energy import energy_and_velocity, energy_from_model, first_variation
from mfsample.kernels import programs
from mfsample.kernels.parameters import as_arrays, specialise, zero_pattern
from mfsample.kernels.reaction import birth_death_step
from mfsample.kernels.wfr import WassersteinFisherRao

from .probes import RUN_KEY, parse_size, teacher_student
from .run import machine_info, print_header
from .step import CompileClock

SIZES = ((10, 256, 1024), (20, 1024, 4096))
NUM_CONFIGS, NUM_CHAINS = 16, 4
STEPS, QUICK_STEPS = 1000, 20
STEP_SIZE = 0.1
CHECK_STEPS = 20
CHECK_RTOL = CHECK_ATOL = 1e-4
MODEL = mf.models.shallow_network
#: the grid of round ``r`` is the study's values times ``1 + ROUND_SHIFT * r`` (new values every call)
ROUND_SHIFT = 0.01
#: minimum (a) / sweep per size, and the largest sweep / (c)
SIMULATE_TARGETS = {(10, 256, 1024): 5.0, (20, 1024, 4096): 1.3}
HAND_TARGET = 1.1
PATHS = ("sweep", "sweep_vmapped", "simulate_each", "python_loop", "hand")
ALTERNATIVES = PATHS[2:]


class Study(NamedTuple):
    """A swept dynamic: the kernel's ``name`` and the hyper-parameter ``parameter`` swept over ``values``."""

    name: str
    parameter: str
    values: tuple

    def kernel(self):
        """A fresh kernel (its grid value replaced by each configuration's)."""
        if self.name == "langevin":
            return mf.MeanFieldLangevin(MODEL, step_size=STEP_SIZE, temperature=self.values[0])
        return WassersteinFisherRao(MODEL, step_size=STEP_SIZE, rate=self.values[0], mode="birth_death", birth="clone")

    def grid(self, round_: int = 0) -> tuple:
        """The values of round ``round_`` (0: the study's own; each round new ones)."""
        return tuple(float(v) * (1.0 + ROUND_SHIFT * round_) for v in self.values)


STUDIES = {
    "langevin": Study("langevin", "temperature", tuple(np.geomspace(1e-5, 1e-2, NUM_CONFIGS))),
    "wfr": Study("wfr", "rate", tuple(np.linspace(0.25, 4.0, NUM_CONFIGS))),
}


# ------------------------------------------------------------------------------------------
# the paths: path(values, key) -> final particles {site: (configs, chains, n, ...)}
# ------------------------------------------------------------------------------------------
def sweep_path(study: Study, x, y, width, num_steps, num_chains=NUM_CHAINS, *, stats=False, config_batch="auto"):
    """``mf.sweep`` of a fresh kernel of ``study`` (``stats``: return the whole ``Sweep``)."""
    kernel = study.kernel()

    def run(values, key):
        out = mf.sweep(
            kernel,
            key,
            x,
            y,
            width=width,
            grid={study.parameter: list(values)},
            num_steps=num_steps,
            save_every=1 if stats else num_steps,
            num_chains=num_chains,
            progress_bar=False,
            collect_deterministic=False,
            config_batch=config_batch,
        )
        return out if stats else out.last_state.z

    return run


def simulate_each(study: Study, x, y, width, num_steps, num_chains=NUM_CHAINS):
    """(a): one ``mf.simulate`` per configuration, on a new kernel object each."""
    kernel = study.kernel()

    def run(values, key):
        keys = jax.random.split(key, len(values))
        out = []
        for value, k in zip(values, keys):
            sim = mf.simulate(
                kernel.replace(**{study.parameter: value}),
                k,
                x,
                y,
                width=width,
                num_steps=num_steps,
                save_every=num_steps,
                num_chains=num_chains,
                progress_bar=False,
                collect_deterministic=False,
            )
            out.append(sim.last_state.z)
        return _stack(out)

    return run


def python_loop(study: Study, x, y, width, num_steps, num_chains=NUM_CHAINS):
    """(b): per configuration, a Python loop over one jitted step (the kernel's functional core,
    ``vmap``-ped over the chains); hyper-parameters and data are arguments: one compilation."""
    kernel = study.kernel()
    pattern = zero_pattern(kernel.parameters)  # tau = 0 of the birth-death study stays a constant
    args = (x, y)

    def energy(data):
        return kernel.build_energy(data, {"width": width}, num_replicas=num_chains)

    @jax.jit
    def init(values, key, data):
        start = kernel.initializer(energy(data))
        keys = jax.random.split(key, num_chains)
        return jax.vmap(start, (0, None, None, None))(keys, None, None, specialise(values, pattern))

    @jax.jit
    def step(values, state, data):
        _, step_fn = kernel.build(energy(data), specialise(values, pattern))
        return jax.vmap(step_fn)(state)

    def run(values, key):
        keys = jax.random.split(key, len(values))
        out = []
        for value, k in zip(values, keys):
            v = as_arrays(kernel.replace(**{study.parameter: value}).parameters)
            state = init(v, k, args)
            for _ in range(num_steps):
                state = step(v, state, args)
            out.append(state.z)
        return _stack(out)

    return run


def _stack(trees):
    return jax.tree.map(lambda *z: jnp.stack(z), *trees)


# ------------------------------------------------------------------------------------------
# (c): the update by hand, one vmapped scan
# ------------------------------------------------------------------------------------------
def _noise(key, z, scale):
    """``z + scale * xi``, ``xi`` one normal vector cut into ``z``'s leaves in order (as the kernels draw it)."""
    leaves, treedef = jax.tree.flatten(z)
    xi = jax.random.normal(key, (sum(x.size for x in leaves),))
    cuts = np.cumsum([x.size for x in leaves])[:-1]
    pieces = jnp.split(xi, cuts)
    return jax.tree.unflatten(treedef, [x + scale * e.reshape(x.shape) for x, e in zip(leaves, pieces)])


def langevin_core(pe, dt):
    """Mean-field Langevin by hand: ``z <- z - dt drift(z) + sqrt(2 tau dt) xi`` with
    ``drift = n grad E - tau grad log mu0``; carry ``(z, drift, key)``, ``tau`` per configuration."""

    def drift(z, tau):
        _, v = energy_and_velocity(pe, z)
        g = jax.grad(lambda zz: jnp.sum(pe.log_prior(zz)))(z)
        return jax.tree.map(lambda vi, gi: vi - tau * gi, v, g)

    def start(tau, key):
        key_init, key_run = jax.random.split(key)
        z = pe.sample_prior(key_init)
        return z, drift(z, tau), key_run

    def step(tau, carry):
        z, d, key = carry
        key, key_noise, _ = jax.random.split(key, 3)
        z = jax.tree.map(lambda zi, di: zi - dt * di, z, d)
        z = _noise(key_noise, z, jnp.sqrt(2.0 * tau * dt))
        return z, drift(z, tau), key

    return start, step


def birth_death_core(pe, dt):
    """Birth–death WFR by hand (tau = 0): ``z <- z - dt n grad E``, then the reaction driven by
    ``V - Vbar`` of the pre-step measure (:func:`~mfsample.kernels.reaction.birth_death_step`);
    carry ``(z, drift, V, key)``, ``alpha`` per configuration."""

    def fields(z):
        return energy_and_velocity(pe, z)[1], first_variation(pe, z)

    def start(alpha, key):
        key_init, key_run = jax.random.split(key)
        z = pe.sample_prior(key_init)
        return (z, *fields(z), key_run)

    def step(alpha, carry):
        z, d, v, key = carry
        key, _, key_react = jax.random.split(key, 3)
        z = jax.tree.map(lambda zi, di: zi - dt * di, z, d)
        z = birth_death_step(key_react, z, v - jnp.mean(v), alpha, dt).z
        return (z, *fields(z), key)

    return start, step


CORES = {"langevin": langevin_core, "wfr": birth_death_core}


def hand_sweep(study: Study, x, y, width, num_steps, num_chains=NUM_CHAINS):
    """(c): ``jit`` of one ``lax.scan`` over steps ``vmap``-ped over configurations and chains,
    the data and the hyper-parameter values as arguments.  The energy is the kernel's (the same
    ``block_size="auto"`` choice for ``num_chains`` replicas)."""

    @jax.jit
    def scan(values, key, data):
        pe = energy_from_model(MODEL, data, {"width": width}, block_size="auto", num_replicas=num_chains)
        start, step = CORES[study.name](pe, STEP_SIZE)
        keys = jax.vmap(lambda k: jax.random.split(k, num_chains))(jax.random.split(key, values.shape[0]))

        def each(f):
            return jax.vmap(jax.vmap(f, (None, 0)))

        carry = each(start)(values, keys)
        carry = jax.lax.scan(lambda c, _: (each(step)(values, c), None), carry, None, length=num_steps)[0]
        return carry[0]

    def run(values, key):
        return scan(jnp.asarray(values, jnp.result_type(float)), key, (x, y))

    return run


def sweep_vmapped(study: Study, x, y, width, num_steps, num_chains=NUM_CHAINS):
    """The sweep with every configuration in one ``vmap`` (``config_batch=16``): (c)'s layout."""
    return sweep_path(study, x, y, width, num_steps, num_chains, config_batch=NUM_CONFIGS)


MAKERS = {
    "sweep": sweep_path,
    "sweep_vmapped": sweep_vmapped,
    "simulate_each": simulate_each,
    "python_loop": python_loop,
    "hand": hand_sweep,
}


# ------------------------------------------------------------------------------------------
# like for like
# ------------------------------------------------------------------------------------------
def max_abs_diff(z1, z2) -> float:
    return max(float(np.max(np.abs(np.asarray(z1[k]) - np.asarray(z2[k])))) for k in ("a", "w", "b"))


def check_paths(study: Study, size, steps, num_configs=NUM_CONFIGS, num_chains=NUM_CHAINS):
    """Every path's final particles equal the sweep's after ``steps`` steps (same keys), for every
    configuration and chain (``allclose``, rtol = atol = 1e-4); raises otherwise.

    Returns ``{path: max |difference|, "moved": ..., "spread": ..., "events": ...}``: how far the
    sweep's particles moved, how far its first and last configurations ended apart (the grid
    matters), and the birth–death events (WFR).
    """
    dim, width, num_data = size
    x, y = teacher_student(dim, num_data)
    key = jax.random.PRNGKey(RUN_KEY)
    values = tuple(study.values[i] for i in np.linspace(0, len(study.values) - 1, num_configs).astype(int))
    small = study._replace(values=values)  # the grid's ends and evenly spaced values between
    with jax.default_matmul_precision("float32"):
        ref = sweep_path(small, x, y, width, steps, num_chains, stats=True)(values, key)
        z_ref = ref.last_state.z
        out = {"steps": steps, "size": list(size)}
        out["moved"] = max_abs_diff(z_ref, jax.tree.map(lambda s: s[:, :, 0], ref.samples))
        out["spread"] = max_abs_diff(jax.tree.map(lambda z: z[0], z_ref), jax.tree.map(lambda z: z[-1], z_ref))
        if study.name == "wfr":
            out["events"] = int(np.sum(ref.stats["births"]) + np.sum(ref.stats["deaths"]))
            assert out["events"] > 0, "the check saw no birth-death event: raise the rates or the steps"
        for name in PATHS[1:]:
            z = MAKERS[name](small, x, y, width, steps, num_chains)(values, key)
            for k in ("a", "w", "b"):
                np.testing.assert_allclose(
                    np.asarray(z[k]),
                    np.asarray(z_ref[k]),
                    rtol=CHECK_RTOL,
                    atol=CHECK_ATOL,
                    err_msg=f"{study.name}: {name} and sweep disagree on {k!r} after {steps} steps",
                )
            out[name] = max_abs_diff(z, z_ref)
    return out


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------
class Call(NamedTuple):
    seconds: float
    compiles: int
    compile_s: float


def timed_call(fn: Callable, values, key, clock: CompileClock):
    """``(Call, final particles)`` of one call, blocked until the particles are ready."""
    c0, n0, t0 = clock.seconds, clock.count, time.perf_counter()
    z = jax.block_until_ready(fn(values, key))
    return Call(time.perf_counter() - t0, clock.count - n0, clock.seconds - c0), z


def time_study(study: Study, size, steps, repeats, clock, *, paths=PATHS):
    """One row: first calls (after ``programs.clear()``), a second sweep call on a new kernel with
    new values, then ``repeats`` interleaved rounds of warm calls with new values each round."""
    dim, width, num_data = size
    x, y = teacher_student(dim, num_data)
    key = jax.random.PRNGKey(RUN_KEY)
    row = {"dynamic": study.name, "size": list(size), "steps": steps, "load_start": _load()}
    programs.clear()
    fns, first = {}, {}
    for name in paths:  # fresh kernels and jitted functions: each path compiles its own programmes
        fns[name] = MAKERS[name](study, x, y, width, steps)
        first[name] = timed_call(fns[name], study.grid(0), key, clock)[0]._asdict()
    second = timed_call(sweep_path(study, x, y, width, steps), study.grid(1), key, clock)[0]
    row["first"], row["second_sweep"] = first, second._asdict()
    calls = {name: [] for name in paths}
    last = {}
    for r in range(2, repeats + 2):
        for name in paths:
            call, last[name] = timed_call(fns[name], study.grid(r), key, clock)
            calls[name].append(call._asdict())
    row["rounds"] = calls
    row["median_s"] = {k: statistics.median(c["seconds"] for c in v) for k, v in calls.items()}
    row["final_max_abs_diff"] = {k: max_abs_diff(last[k], last["sweep"]) for k in paths if k != "sweep"}
    row["load_end"] = _load()
    return row


def _load():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------
def ratios(row) -> dict:
    """``(a) / sweep``, ``(b) / sweep`` and ``sweep / (c)`` from the medians of the rounds."""
    m = row["median_s"]
    return {
        "simulate_each": m["simulate_each"] / m["sweep"],
        "python_loop": m["python_loop"] / m["sweep"],
        "hand": m["sweep"] / m["hand"],
        "vmapped_hand": m["sweep_vmapped"] / m["hand"],
    }


def targets(row) -> dict:
    """``{target: met}`` of one row (the (a) target only at the sizes that have one)."""
    r = ratios(row)
    out = {}
    need = SIMULATE_TARGETS.get(tuple(row["size"]))
    if need is not None:
        out[f"(a) / sweep >= {need:g}"] = r["simulate_each"] >= need
    out[f"sweep / (c) <= {HAND_TARGET:g}"] = r["hand"] <= HAND_TARGET
    out[f"vmapped sweep / (c) <= {HAND_TARGET:g}"] = r["vmapped_hand"] <= HAND_TARGET
    out["0 compilations in a 2nd sweep call"] = row["second_sweep"]["compiles"] == 0
    compiled = sum(c["compiles"] for c in row["rounds"]["sweep"])
    out["0 compilations in the rounds' sweep calls"] = compiled == 0
    return out


def _ms(ms):
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _first(call):
    return f"{call['seconds']:.1f} s ({call['compiles']})"


def build_table(rows) -> str:
    head = [
        "dynamic",
        "(d, n, N)",
        "T",
        "sweep 1st call",
        "sweep 2nd call",
        "sweep ms/step",
        "(a) / sweep",
        "(b) / sweep",
        "sweep / (c)",
        "vmapped sweep / (c)",
        "1st call (a)",
        "1st call (b)",
        "1st call (c)",
        "later calls: compilations (a), (b), (c)",
        "load",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        r, m = ratios(row), row["median_s"]
        later = ", ".join(str(sum(c["compiles"] for c in row["rounds"][k])) for k in ALTERNATIVES)
        cells = [
            row["dynamic"],
            "(" + ", ".join(map(str, row["size"])) + ")",
            str(row["steps"]),
            _first(row["first"]["sweep"]),
            _first(row["second_sweep"]),
            _ms(1e3 * m["sweep"] / row["steps"]),
            f"{r['simulate_each']:.2f}",
            f"{r['python_loop']:.2f}",
            f"{r['hand']:.2f}",
            f"{r['vmapped_hand']:.2f}",
            _first(row["first"]["simulate_each"]),
            _first(row["first"]["python_loop"]),
            _first(row["first"]["hand"]),
            later,
            f"{row['load_start']:.1f}–{row['load_end']:.1f}" if row["load_start"] is not None else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_LEGEND = (
    "{configs} configurations x {chains} chains per sweep. 'sweep 1st call': wall seconds (XLA "
    "compilations) after programs.clear(), fresh kernel; '2nd call': a new kernel object with new "
    "values. Ratios from the medians of {repeats} interleaved rounds of warm calls (new values "
    "every round): (a) 16 mf.simulate calls / sweep and (b) Python loop over a jitted step / sweep "
    "(above 1: the sweep is faster); sweep / (c) hand-written vmapped scan (target <= 1.1); "
    "'vmapped sweep': config_batch={configs}, every configuration in one vmap as (c) (the default "
    "'auto' runs them in cache-sized batches on a CPU). "
    "'1st call (x)': wall seconds (compilations) of each alternative's first call. "
    "'load': 1-minute load average at the start and end of the row."
)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks --only sweep", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"(10, 256, 1024) only, T = {QUICK_STEPS}, 2 rounds")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="D,N_UNITS,N_DATA")
    p.add_argument("--dynamics", nargs="+", choices=tuple(STUDIES), default=list(STUDIES))
    p.add_argument(
        "--steps",
        nargs="+",
        type=int,
        default=None,
        help=f"steps per call T: one value, or one per size (default {STEPS}; --quick {QUICK_STEPS})",
    )
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3; --quick 2)")
    p.add_argument("--check-steps", type=int, default=None, help=f"steps of the check (default {CHECK_STEPS})")
    p.add_argument("--json", metavar="PATH", default=None, help="write every measurement to PATH")
    a = p.parse_args(argv)
    a.sizes = a.sizes or ([SIZES[0]] if a.quick else list(SIZES))
    steps = a.steps or [QUICK_STEPS if a.quick else STEPS]
    if len(steps) not in (1, len(a.sizes)):
        p.error(f"--steps takes one value or one per size ({len(a.sizes)}), got {len(steps)}")
    a.steps = steps * len(a.sizes) if len(steps) == 1 else steps
    a.repeats = a.repeats or (2 if a.quick else 3)
    a.check_steps = a.check_steps or (5 if a.quick else CHECK_STEPS)
    return a


def run_checks(studies, size, steps) -> dict:
    """:func:`check_paths` of every study at ``size``, printed."""
    checks = {}
    for study in studies:
        checks[study.name] = c = check_paths(study, size, steps)
        worst = max(c[k] for k in PATHS[1:])
        print(
            f"check sweep {study.name} at {size}, {steps} steps, {NUM_CONFIGS} x {NUM_CHAINS}: "
            f"every path agrees with the sweep (largest |difference| {worst:.1e}; moved {c['moved']:.2g}, "
            f"first and last configurations {c['spread']:.2g} apart"
            + (f", {c['events']} birth-death events)" if "events" in c else ")"),
            flush=True,
        )
    return checks


def run_rows(studies, args, clock, save) -> list:
    """:func:`time_study` of every size and study, printed; ``save(rows)`` after each row."""
    rows = []
    for size, steps in zip(args.sizes, args.steps):
        for study in studies:
            t0 = time.perf_counter()
            row = time_study(study, size, steps, args.repeats, clock)
            rows.append(row)
            r = ratios(row)
            print(
                f"timed sweep {study.name} at {tuple(size)}, T = {steps}: (a)/sweep {r['simulate_each']:.2f}, "
                f"(b)/sweep {r['python_loop']:.2f}, sweep/(c) {r['hand']:.2f}, "
                f"vmapped/(c) {r['vmapped_hand']:.2f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            save(rows)
    return rows


def report(rows, repeats) -> str:
    """Print the table, the targets and the final differences; returns the table."""
    print()
    print(TABLE_LEGEND.format(configs=NUM_CONFIGS, chains=NUM_CHAINS, repeats=repeats) + "\n")
    table = build_table(rows)
    print(table)
    print("\ntargets:")
    for row in rows:
        met = ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in targets(row).items())
        print(f"  {row['dynamic']} {tuple(row['size'])}: {met}")
    diffs = {f"{row['dynamic']} {tuple(row['size'])}": row["final_max_abs_diff"] for row in rows}
    print(f"final particles of the timed calls, max |path - sweep|: {json.dumps(diffs)}")
    return table


def main(argv=None):
    args = parse_args(argv)
    info = machine_info()
    print_header(info)
    clock = CompileClock()
    studies = [STUDIES[name] for name in args.dynamics]
    t_start = time.perf_counter()
    result = {
        "machine": info,
        "args": {k: ([list(s) for s in v] if k == "sizes" else v) for k, v in vars(args).items()},
        "checks": run_checks(studies, min(args.sizes, key=math.prod), args.check_steps),
    }

    def save(rows):
        """Every measurement so far to ``--json`` (after each row: a long run stopped keeps its rows)."""
        result.update(rows=rows, ratios=[ratios(r) for r in rows], targets=[targets(r) for r in rows])
        result.update(table=build_table(rows), elapsed_s=time.perf_counter() - t_start)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1, default=str)

    rows = run_rows(studies, args, clock, save)
    report(rows, args.repeats)
    save(rows)
    print(f"\ntotal {result['elapsed_s'] / 60:.1f} min; load average at the end {_load() or float('nan'):.1f}")
    return result


if __name__ == "__main__":
    main()
