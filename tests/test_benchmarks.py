"""The benchmark suite (``python -m benchmarks``): its references compute the same dynamics as
``mf.simulate``, its table computes the ratios it claims, and the command produces every column.

No test asserts a time: the machine is shared and timings are not reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import mfsample as mf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `benchmarks` is a folder of the repository, not part of the package

from benchmarks import alternatives as alt  # noqa: E402
from benchmarks import run as bench  # noqa: E402
from benchmarks import sweep as sweep_bench  # noqa: E402

TINY = (3, 16, 64)  # (dim, width, num_data)


@pytest.mark.parametrize("name", ["wasserstein", "langevin", "wfr"])
def test_every_reference_follows_simulate(name):
    """Each reference (hand scan, Python loop, BlackJAX, NumPy, PyTorch) gives ``simulate``'s
    particles after 6 steps from the same particles.

    ``check_alternatives`` asserts ``allclose`` (rtol = atol = 1e-4) itself; it runs Langevin at
    tau = 0.05 and WFR at alpha = 5, where a wrong prior term, noise scale or reaction rule moves
    the particles by far more (see ``test_the_check_tells_a_wrong_update``).
    """
    out = bench.check_alternatives(TINY, alt.DYNAMICS[name], 6, mcmc=False)  # MCMC: in the quick run
    expected = {"hand", "python_loop", "numpy"}
    expected |= {"blackjax"} if alt.blackjax_available()[0] else set()
    expected |= {"torch"} if alt.torch_available()[0] else set()
    compared = {k for k, v in out.items() if isinstance(v, dict) and "max_abs_diff" in v}
    assert expected <= compared
    # the particles moved: the comparison is not one of the initial particles with themselves
    assert out["moved"] > 1e-2
    if name == "wfr":  # the reaction fired, so the same birth-death events were reproduced
        assert out["events"] > 0
    if name == "langevin" and "blackjax" in compared:
        assert out["blackjax"]["against"] == "hand loop without noise"


@pytest.mark.parametrize(
    "name, change",
    [
        ("langevin", {"temperature": 2 * bench.CHECK_TEMPERATURE}),
        ("wfr", {"rate": 0.5 * bench.CHECK_RATE}),
        ("wasserstein", {"step_size": 0.101}),
    ],
)
def test_the_check_tells_a_wrong_update(name, change):
    """At the check's settings, a reference with a wrong temperature (prior drift and noise
    scale), reaction rate or step size ends farther from simulate than the check's tolerance."""
    dim, width, num_data = TINY
    steps = 6
    dyn = bench.check_dynamic(alt.DYNAMICS[name])
    x, y = bench.teacher_student(dim, num_data)
    kernel = dyn.kernel(mf.models.shallow_network)
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(bench.RUN_KEY),
        x,
        y,
        width=width,
        num_steps=steps,
        save_every=steps,
        collect_deterministic=False,
        progress_bar=False,
    )
    state0 = dyn.kernel(mf.models.shallow_network).init(
        jax.random.PRNGKey(bench.RUN_KEY), 0, None, (x, y), {"width": width}
    )
    draws = alt.replay_draws(state0.rng_key, dyn, width, dim, steps)
    z0 = {k: np.asarray(v) for k, v in state0.z.items()}
    right = alt.NumpyLoop(x, y, dyn, steps, draws)(z0)
    wrong = alt.NumpyLoop(x, y, dyn._replace(**change), steps, draws)(z0)
    # the right one agrees to float32 rounding; the wrong one is 10x outside the tolerance
    assert bench._max_diff(right, sim.last_state.z) < bench.CHECK_ATOL
    assert bench._max_diff(wrong, sim.last_state.z) > 10 * bench.CHECK_ATOL


def test_birth_death_source_is_a_valid_reaction():
    """The hand-written reaction moves mass as birth-death should: every slot holds a pre-step
    particle, killed slots (V > Vbar) hold a copy, and nothing moves at rate 0."""
    n = 64
    u = jax.random.normal(jax.random.PRNGKey(0), (n,))
    draws = alt.reaction_draws(jax.random.PRNGKey(1), n)
    src = np.asarray(alt.birth_death_source(u, draws, 5.0, 0.5))
    assert src.min() >= 0 and src.max() < n
    fire = np.asarray(draws["u_fire"]) < -np.expm1(-2.5 * np.abs(np.asarray(u)))
    killed = fire & (np.asarray(u) > 0)
    assert killed.any() and np.array_equal(src[killed], np.asarray(draws["src"])[killed])
    np.testing.assert_array_equal(np.asarray(alt.birth_death_source(u, draws, 0.0, 0.5)), np.arange(n))
    # NumPy's version is the same rule
    np.testing.assert_array_equal(
        alt._numpy_birth_death_source(np.asarray(u), {k: np.asarray(v) for k, v in draws.items()}, 5.0, 0.5), src
    )


def test_the_continuing_call_differs_from_the_fresh_one_by_the_start():
    """The continuing 1-step call (whose time, taken from a fresh 1-step call's, is the start's)
    steps from ``kernel.init``'s state to the particles of the fresh call (a birth–death step, so
    a different key or start would move other particles): the same step, so the two calls differ
    by the start alone."""
    x, y = bench.teacher_student(3, 64)
    dyn = alt.DYNAMICS["wfr"]
    state = dyn.kernel(bench.MODEL).init(jax.random.PRNGKey(bench.RUN_KEY), 0, None, (x, y), {"width": 16})
    continued = bench._simulate(dyn.kernel(bench.MODEL), 1, x, y, 16, init_state=state)()
    fresh = bench._simulate(dyn.kernel(bench.MODEL), 1, x, y, 16)()
    moved = max(float(np.max(np.abs(np.asarray(continued[k]) - np.asarray(state.z[k])))) for k in continued)
    assert moved > 1e-3
    for k in fresh:  # the start compiled apart or inside the call: float32 rounding apart (a few ulps)
        np.testing.assert_allclose(np.asarray(continued[k]), np.asarray(fresh[k]), rtol=1e-6, atol=1e-6)


def _row(**seconds_and_steps):
    timings = {
        k: {"steps": steps, "seconds": secs, "compile_s": [0.0] * len(secs), "compiles": [0] * len(secs)}
        for k, (secs, steps) in seconds_and_steps.items()
    }
    row = {
        "dynamic": "wasserstein",
        "size": [10, 256, 1024],
        "steps": 10,
        "timings": timings,
        "per_step_s": bench.per_step_seconds(timings),
        "na": {"torch": "absent"},
        "compile": {
            "first": {"compile_s": 2.5, "compiles": 40, "wall_s": 3.0},
            "second": {"compile_s": 0.0, "compiles": 0, "wall_s": 0.1},
        },
    }
    return row


def test_table_ratios_come_from_the_medians():
    """``ratios`` and ``build_table``: simulate / alternative per step from medians, the loop-only
    estimate from calls of T and 2T steps, and n/a for a path that did not run."""
    row = _row(
        simulate=([1.0, 1.2, 1.1], 10),
        simulate_2T=([2.0, 2.1, 1.9], 20),
        simulate_1=([0.3, 0.25, 0.35], 1),
        simulate_continuing=([0.2, 0.15, 0.1], 1),
        hand=([0.9, 0.8, 1.0], 10),
        numpy=([0.5, 0.6, 0.4], 2),
        floor=([0.45, 0.45, 0.45], 10),
        mcmc=([2.2], 10),
        mcmc_bar=([4.4], 10),
        python_loop=([0.11], 1),
        blackjax=([0.55], 10),
    )
    r = bench.ratios(row)
    assert r["hand"] == pytest.approx(1.1 / 0.9)  # 0.11 s/step over 0.09 s/step
    assert r["numpy"] == pytest.approx(0.11 / 0.25)  # numpy: 0.5 s / 2 steps
    assert r["mcmc"] == pytest.approx(0.5) and r["mcmc_bar"] == pytest.approx(0.25)
    assert r["python_loop"] == pytest.approx(1.0) and r["blackjax"] == pytest.approx(2.0)
    assert r["torch"] is None
    loop, fixed = bench.loop_only(row)
    assert loop == pytest.approx(0.09) and fixed == pytest.approx(0.21)  # (2.0 - 1.1) / 10, 0.3 - 0.09
    assert bench.start_cost(row) == pytest.approx(0.15)  # 0.3 - 0.15
    two_calls = dict(row, timings={k: v for k, v in row["timings"].items() if k != "simulate_1"})
    assert bench.loop_only(two_calls)[1] == pytest.approx(0.2) and bench.start_cost(two_calls) is None  # 1.1 - 0.9
    assert r["hand_loop_only"] == pytest.approx(1.0)  # 0.09 / 0.09
    assert r["floor"] == pytest.approx(0.5)  # 0.045 / 0.09
    table = bench.build_table([row])
    header, _, line = table.splitlines()
    cells = [c.strip() for c in line.strip("|").split("|")]
    heads = [c.strip() for c in header.strip("|").split("|")]
    got = dict(zip(heads, cells))
    assert got["simulate ms/step"] == "110" and got["fixed ms/call"] == "210" and got["start ms"] == "150"
    assert got["hand scan"] == "1.22" and got["hand, loop only"] == "1.00"
    assert got["NumPy"] == "0.44" and got["PyTorch CPU"] == "n/a" and got["matmul floor"] == "0.50"
    assert got["compile, 1st call"] == "2.5 s (40)" and got["2nd call"] == "0 (0.00 s)"


@pytest.mark.slow  # ~30 s: the whole suite end to end at the smallest size (default-suite budget)
def test_quick_run_prints_every_column(tmp_path):
    """``python -m benchmarks --quick --json`` (a tiny size, birth-death WFR, one round) checks
    every reference against ``simulate`` (it exits non-zero otherwise), prints the table with
    every column and writes a number or a reason for every path; the second ``simulate`` call
    on new data of the same shapes compiles nothing."""
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "--only",
        "suite",
        "--quick",
        "--sizes",
        "3,16,64",
        "--dynamics",
        "wfr",
        "--repeats",
        "1",
        "--check-steps",
        "3",
        "--no-memory",
        "--json",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    check = result["checks"]["wfr"]
    assert check["events"] > 0 and check["moved"] > 1e-2
    for path in ("hand", "python_loop", "mcmc", "mcmc_bar", "numpy"):
        assert check[path]["max_abs_diff"] < bench.CHECK_ATOL
    header = result["table"].splitlines()[0]
    for label, _ in bench.COLUMNS:
        assert label in header
    for label in (
        "simulate ms/step",
        "fixed ms/call",
        "start ms",
        "hand, loop only",
        "matmul floor",
        "compile, 1st call",
    ):
        assert label in header
    assert result["table"].splitlines()[0] in done.stdout
    (row,) = result["rows"]
    for _, path in bench.COLUMNS:
        assert path in row["per_step_s"] or path in row["na"]
        assert row["per_step_s"].get(path, 1.0) > 0
    assert all(row["per_step_s"][p] > 0 for p in ("floor", "simulate_1", "simulate_continuing"))
    assert row["compile"]["first"]["compiles"] > 0
    assert row["compile"]["second"]["compiles"] == 0
    for key in ("date", "platform", "cpu_count", "jax", "numpyro", "backend"):
        assert result["machine"][key]


def test_memory_probe_counts_the_kept_draws():
    """The memory probe (a fresh process) reports the bytes of the kept draws: at least the
    particles' (draws x n x (d + 2) float32) and at most that plus ``f`` and the state fields."""
    dim, width, num_data, draws = 3, 64, 32, 10  # as many as the warm-up: no second compilation
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.probes",
            "memory",
            "--driver",
            "simulate",
            "--size",
            f"{dim},{width},{num_data}",
            "--draws",
            str(draws),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    particles = draws * width * (dim + 2) * 4
    assert particles <= m["kept_bytes"] <= particles + draws * (num_data + 32) * 8
    assert m["peak_bytes"] >= m["baseline_bytes"] > 0


# ------------------------------------------------------------------------------------------
# the sweep rows (benchmarks/sweep.py)
# ------------------------------------------------------------------------------------------
@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
@pytest.mark.parametrize("name", ["langevin", "wfr"])
def test_every_sweep_alternative_follows_the_sweep(name):
    """(a) one simulate per configuration, (b) the Python loop over a jitted step and (c) the
    hand-written vmapped scan give the sweep's particles, configuration by configuration and
    chain by chain (``check_paths`` asserts ``allclose`` itself); doubling the temperatures or
    rates moves the particles far outside the tolerance, so the check tells a wrong update."""
    study = sweep_bench.STUDIES[name]
    out = sweep_bench.check_paths(study, TINY, 3, num_configs=3, num_chains=2)
    for path in ("sweep_vmapped", "simulate_each", "python_loop", "hand"):
        assert out[path] < sweep_bench.CHECK_ATOL
    assert out["moved"] > 1e-2 and out["spread"] > 1e-2  # the particles moved, the grid matters
    if name == "wfr":
        assert out["events"] > 0
    dim, width, num_data = TINY
    x, y = bench.teacher_student(dim, num_data)
    values, key = tuple(study.values[i] for i in (0, 7, 15)), jax.random.PRNGKey(bench.RUN_KEY)
    run = sweep_bench.sweep_path(study, x, y, width, 3, 2, stats=True)  # the check's programme
    ref, wrong = run(values, key).last_state.z, run(tuple(2 * v for v in values), key).last_state.z
    assert sweep_bench.max_abs_diff(wrong, ref) > 10 * sweep_bench.CHECK_ATOL


def _sweep_row(size, medians, second_compiles=0):
    call = {"seconds": 1.0, "compiles": 2, "compile_s": 0.5}
    return {
        "dynamic": "langevin",
        "size": list(size),
        "steps": 10,
        "load_start": 1.0,
        "load_end": 2.0,
        "first": {k: call for k in sweep_bench.PATHS},
        "second_sweep": {"seconds": 0.5, "compiles": second_compiles, "compile_s": 0.0},
        "rounds": {k: [{"seconds": medians[k], "compiles": 0, "compile_s": 0.0}] for k in sweep_bench.PATHS},
        "median_s": medians,
    }


def test_sweep_table_ratios_and_targets():
    """(a) / sweep and (b) / sweep are the alternatives' medians over the sweep's, sweep / (c) the
    sweep's over the hand scan's; each target is judged on them and on the second call's
    compilations."""
    medians = {"sweep": 2.0, "sweep_vmapped": 2.05, "simulate_each": 12.0, "python_loop": 3.0, "hand": 1.9}
    row = _sweep_row((10, 256, 1024), medians)
    r = sweep_bench.ratios(row)
    assert r == pytest.approx({"simulate_each": 6.0, "python_loop": 1.5, "hand": 2.0 / 1.9, "vmapped_hand": 2.05 / 1.9})
    assert all(sweep_bench.targets(row).values())
    slow = _sweep_row((20, 1024, 4096), {**medians, "simulate_each": 2.4, "hand": 1.0}, second_compiles=3)
    met = sweep_bench.targets(slow)
    assert met == {
        "(a) / sweep >= 1.3": False,
        "sweep / (c) <= 1.1": False,
        "vmapped sweep / (c) <= 1.1": False,
        "0 compilations in a 2nd sweep call": False,
        "0 compilations in the rounds' sweep calls": True,
    }
    header, _, line = sweep_bench.build_table([row]).splitlines()
    got = dict(zip((c.strip() for c in header.strip("|").split("|")), (c.strip() for c in line.strip("|").split("|"))))
    assert got["(a) / sweep"] == "6.00" and got["(b) / sweep"] == "1.50" and got["sweep / (c)"] == "1.05"
    assert got["vmapped sweep / (c)"] == "1.08"
    assert got["sweep ms/step"] == "200" and got["sweep 2nd call"] == "0.5 s (0)"


def test_main_splits_the_sweep_options():
    """``python -m benchmarks``: ``--only`` picks the parts; a combined run hands the sweep rows
    its ``--quick``, ``--repeats`` and a ``-sweep`` JSON path, nothing else."""
    from benchmarks.__main__ import split_only, sweep_argv

    assert split_only(["--only", "sweep", "--steps", "5"]) == (("sweep",), ["--steps", "5"])
    assert split_only(["--quick"]) == (("suite", "sweep"), ["--quick"])
    argv = ["--quick", "--sizes", "3,16,64", "--repeats", "2", "--json", "out/b.json"]
    assert sweep_argv(argv) == ["--quick", "--repeats", "2", "--json", "out/b-sweep.json"]
    a = sweep_bench.parse_args(["--sizes", "3,16,64", "10,256,1024", "--steps", "7", "3"])
    assert a.steps == [7, 3] and a.repeats == 3


@pytest.mark.slow  # ~1-2 min: the sweep rows end to end at a tiny size
def test_sweep_rows_run_end_to_end(tmp_path):
    """``python -m benchmarks --only sweep`` checks every path against the sweep, prints the table
    and writes every measurement; a second sweep call with new values compiles nothing."""
    out = tmp_path / "sweep.json"
    cmd = [sys.executable, "-m", "benchmarks", "--only", "sweep", "--sizes", "3,16,64", "--steps", "3"]
    cmd += ["--repeats", "1", "--check-steps", "2", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["table"].splitlines()[0] in done.stdout
    assert {row["dynamic"] for row in result["rows"]} == {"langevin", "wfr"}
    for row in result["rows"]:
        assert row["first"]["sweep"]["compiles"] > 0 and row["second_sweep"]["compiles"] == 0
        assert max(row["final_max_abs_diff"].values()) < sweep_bench.CHECK_ATOL
