"""``mfsample demo`` and the command line itself (mfsample/cli/main.py): ``run`` on the packaged quickstart
configuration, argument errors, a closed standard output, start-up imports and the import graph."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import arviz
import numpy as np
import pytest

import mfsample.cli
from mfsample.cli import QUICK, main
from mfsample.cli.config import load_config, packaged_config_path
from mfsample.cli.rundir import saved_config

LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)  # the energy's constant for unit-noise likelihood


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One ``mfsample demo --quick`` run shared by the tests below (seed 0): status, out dir, stdout."""
    out = tmp_path_factory.mktemp("demo") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["demo", "--quick", "--out", str(out), "--seed", "0", "--no-progress"])
    return status, out, stdout.getvalue()


def test_demo_is_run_on_the_packaged_quickstart(demo_run):
    """The demo's stored configuration is the packaged quickstart with the --quick sizes as overrides."""
    status, root, _ = demo_run
    assert status == 0
    sets = [
        f"{k}={v}"
        for k, v in {
            "run.steps": QUICK["steps"],
            "model.width": QUICK["width"],
            "data.num_data": QUICK["num_data"],
            "data.dim": QUICK["dim"],
            "data.teacher_width": QUICK["teacher_width"],
            "run.chains": QUICK["chains"],
            "run.seed": 0,
            "data.seed": 0,
        }.items()
    ]
    assert saved_config(root / "mean_field_langevin") == load_config(packaged_config_path("quickstart"), sets)
    assert saved_config(root / "wasserstein_flow") == load_config(
        packaged_config_path("quickstart"), sets + ["dynamics.kernel=wasserstein"]
    )


def test_demo_writes_netcdf_with_particle_dim(demo_run):
    """The draws are written through ArviZ: dims (chain, draw, particle[, input_dim]), state fields,
    the draw at t = 0 first and t = step * dt ending at num_steps * dt."""
    status, root, _ = demo_run
    assert status == 0
    idata = arviz.from_netcdf(root / "mean_field_langevin" / "draws" / f"width_{QUICK['width']}.nc")
    post, stats = idata.posterior, idata.sample_stats
    assert post["w"].dims == ("chain", "draw", "particle", "input_dim")
    assert post["a"].dims == post["b"].dims == ("chain", "draw", "particle")
    assert post["f"].dims == ("chain", "draw", "data")
    assert post.sizes["particle"] == QUICK["width"]
    assert post.sizes["input_dim"] == QUICK["dim"]
    assert post.sizes["chain"] == QUICK["chains"]
    for field in ("objective", "grad_norm", "diverging", "step"):
        assert stats[field].dims == ("chain", "draw")
    assert not bool(stats["diverging"].any())
    dt = float(post.attrs["step_size"])
    np.testing.assert_allclose(post["time"].values, stats["step"].values[0] * dt)
    assert float(post["time"][0]) == 0.0
    assert float(post["time"][-1]) == pytest.approx(QUICK["steps"] * dt)


def test_demo_energy_matches_saved_network(demo_run):
    """sample_stats.objective is E = log(2 pi)/2 + 1/2 mean_i (f(x_i) - y_i)^2 of the saved draws.

    Ties the stored energy to the stored network output ``f`` and labels ``y`` (unit noise); a
    misaligned draw or a wrong energy would break it.  Tolerance 1e-5: float32 sums of 64 terms.
    """
    _, root, _ = demo_run
    idata = arviz.from_netcdf(root / "mean_field_langevin" / "draws" / f"width_{QUICK['width']}.nc")
    f = idata.posterior["f"].values
    y = idata.observed_data["y"].values
    expected = LOG_2PI_HALF + 0.5 * np.mean((f - y) ** 2, axis=-1)
    np.testing.assert_allclose(idata.sample_stats["objective"].values, expected, atol=1e-5)


def test_demo_table_reports_decrease(demo_run):
    """The printed table has the width's row with the excess energy E - log(2 pi)/2 (unit-noise
    Gaussian likelihood: half the training mean squared error) at the end below the one at t = 0 and
    non-negative; the constant and the error measure are stated under the table."""
    _, root, stdout = demo_run
    rows = [ln.split() for ln in stdout.splitlines() if ln.split()[:2] == [str(QUICK["width"]), str(QUICK["chains"])]]
    assert len(rows) == 2  # mean-field Langevin, then the Wasserstein flow
    for row in rows:
        _, _, t, e0, e_end, train, test = row[:7]
        assert float(t) == pytest.approx(QUICK["steps"] * 1.0)  # dt = 1 in the quickstart
        assert -1e-6 <= float(e_end) < float(e0)
        assert 0 <= float(train) < 1 and 0 <= float(test) < 1.5
    assert stdout.count(f"c = log(2 pi noise^2)/2 = {LOG_2PI_HALF:.4f}") == 2
    assert stdout.count("rel.err^2: squared relative L2 error at the last draw, ||f - y||^2 / ||y||^2") == 2
    for name in ("mean_field_langevin", "wasserstein_flow"):
        assert str(root / name / "draws" / f"width_{QUICK['width']}.nc") in stdout
        assert (root / name / "figures" / "energy.png").is_file()


def test_demo_table_numbers_are_the_stated_measures(demo_run):
    """The printed E - c and train rel.err^2 are, recomputed from the saved draws, the mean over
    replicas of E - log(2 pi)/2 and of ||f - y||^2 / ||y||^2 at the last draw (a table that printed
    the unsquared error or the raw energy would fail)."""
    _, root, stdout = demo_run
    idata = arviz.from_netcdf(root / "wasserstein_flow" / "draws" / f"width_{QUICK['width']}.nc")
    f = idata.posterior["f"].values[:, -1].astype(np.float64)
    y = idata.observed_data["y"].values.astype(np.float64)
    train = np.mean(np.sum((f - y) ** 2, axis=-1) / np.sum(y**2))
    excess = idata.sample_stats["objective"].values[:, -1].astype(np.float64).mean() - LOG_2PI_HALF
    row = [ln.split() for ln in stdout.splitlines() if ln.split()[:2] == [str(QUICK["width"]), str(QUICK["chains"])]][1]
    assert float(row[4]) == pytest.approx(excess, rel=1e-3, abs=1e-6)
    assert float(row[5]) == pytest.approx(train, rel=1e-3)
    summary = json.loads((root / "wasserstein_flow" / "summary.json").read_text())
    assert summary["widths"][0]["train_sq_relative_error"] == pytest.approx(train, rel=1e-6)


def test_demo_prints_ess_and_r_hat_for_langevin_only(demo_run):
    """ess / r_hat of the energy are printed, with what they measure and the burn-in window, for the
    Langevin run (a stationary law exists) and not for the Wasserstein flow (none exists); the Langevin
    energy trace is drawn over that window."""
    _, root, stdout = demo_run
    langevin, flow = stdout.split("[2/2]")
    assert "[1/2] mean-field Langevin" in langevin and flow.lstrip().startswith("Wasserstein flow")
    steps = QUICK["steps"]
    assert f"energy after burn-in: n={QUICK['width']}, t >= {steps // 2:g}: ess_bulk" in langevin
    assert "effective sample size and split R-hat across replicas" in langevin
    assert "ess_bulk" not in flow and "r_hat" not in flow.split("no ess or r_hat")[1]
    ml = json.loads((root / "mean_field_langevin" / "summary.json").read_text())
    wf = json.loads((root / "wasserstein_flow" / "summary.json").read_text())
    assert ml["widths"][0]["burn_in_time"] == pytest.approx(steps / 2)
    assert "energy_r_hat" in ml["widths"][0] and "energy_r_hat" not in wf["widths"][0]
    assert "energy_trace.png" in ml["figures"] and "energy_trace.png" not in wf["figures"]


def test_demo_wasserstein_flow_decreases_the_energy(demo_run):
    """The demo's second run is particle gradient descent: its energy never increases (float32
    rounding aside) and it starts from the same particles as the Langevin run."""
    _, root, _ = demo_run
    wf = arviz.from_netcdf(root / "wasserstein_flow" / "draws" / f"width_{QUICK['width']}.nc")
    ml = arviz.from_netcdf(root / "mean_field_langevin" / "draws" / f"width_{QUICK['width']}.nc")
    energy = wf.sample_stats["objective"].values
    assert np.all(np.diff(energy, axis=1) <= 1e-6)
    np.testing.assert_array_equal(wf.posterior["w"].values[:, 0], ml.posterior["w"].values[:, 0])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--width", "-3"], "--width"),
        (["demo", "--num-data", "ten"], "--num-data"),
        (["demo", "--step-size", "0"], "--step-size"),
        (["demo", "--temperature", "nan"], "--temperature"),
        (["demo", "--bogus"], "--bogus"),
        ([], "COMMAND"),
        (["train"], "train"),
        (["run", "--progress", "loud"], "--progress"),
    ],
)
def test_bad_arguments_exit_nonzero(argv, message, capsys):
    """Bad arguments end with a non-zero exit status and a message naming the argument."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code not in (0, None)
    assert message in capsys.readouterr().err


def test_demo_overrides_are_validated_like_a_config(tmp_path, capsys):
    """A --set of the demo goes through the configuration's validation: exit 2, key path named."""
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--set", "run.chains=0"]) == 2
    assert "run.chains: must be >= 1" in capsys.readouterr().err


def test_config_path_that_is_a_directory_is_not_a_file(tmp_path, capsys):
    """``mfsample run DIR`` with DIR a directory: exit 2, "is a directory, not a file" (not "no such
    file"); a directory named like a packaged configuration does not hide it."""
    assert main(["run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a directory, not a file" in err and "no such file" not in err
    assert main(["run", "--resume", str(tmp_path / "x.toml")]) == 2  # neither a file nor a run
    (tmp_path / "x.toml").write_text("")
    assert main(["run", "--resume", str(tmp_path / "x.toml")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err


def test_directory_named_like_a_packaged_config_does_not_hide_it(tmp_path, monkeypatch, capsys):
    """In a directory holding ``quickstart/`` (e.g. an earlier --out), ``mfsample run quickstart``
    still reads the packaged configuration (here stopped by an invalid override it validates)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").mkdir()
    assert main(["run", "quickstart", "--set", "run.chains=0"]) == 2
    assert "run.chains: must be >= 1" in capsys.readouterr().err


def test_help_lists_commands_with_an_example(capsys):
    """``mfsample --help`` lists the commands and shows example invocations."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("run", "report", "configs", "demo"):
        assert command in text
    assert "mfsample demo --quick" in text and "mfsample run" in text and "--set" in text


# ---------------------------------------------------------------------------------------------
# the command line itself: a closed standard output, start-up imports, the import graph
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, status", [(["configs", "keys"], 141), (["configs"], 141), (["--help"], 0)])
def test_closed_stdout_exits_quietly(argv, status):
    """A reader that closed the pipe before the command wrote (``mfsample configs keys | head``,
    with the reader already gone): nothing on stderr, in particular no BrokenPipeError traceback,
    and exit status 141 (128 + SIGPIPE); ``--help`` keeps argparse's 0 (it ignores failed writes
    of its own messages)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader closes before anything is written: every write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mfsample.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == status


def test_reader_closing_after_one_line_is_quiet():
    """``mfsample configs keys`` into a reader that takes one line and closes the pipe: the
    command ends without a traceback, whatever it had written by then."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfsample.cli", "configs", "keys"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert first.startswith("experiment.name")
    assert proc.returncode in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err


#: what `mfsample --help`, `configs` and argument parsing must not load (beyond `import mfsample`)
HEAVY = ("jax", "jaxlib", "numpyro", "arviz", "matplotlib", "xarray", "h5netcdf", "scipy", "ot", "optax")


def test_parsing_and_configs_import_nothing_heavy():
    """After ``import mfsample``, the parser, ``--help``, ``configs`` and ``configs keys`` load no
    numerical library and no mfsample module outside ``mfsample.cli.{main, config, errors}``:
    the run and report modules are loaded only by the sub-commands that use them."""
    code = textwrap.dedent("""
        import contextlib, io, json, sys
        import mfsample
        before = set(sys.modules)
        from mfsample.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            main(["configs"]); main(["configs", "keys"])
            try:
                main(["--help"])
            except SystemExit:
                pass
        print(json.dumps(sorted(set(sys.modules) - before)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    added = json.loads(proc.stdout)
    assert {"mfsample.cli.main", "mfsample.cli.config"} <= set(added)
    heavy = [m for m in added if m.split(".")[0] in HEAVY]
    assert not heavy, heavy
    others = [
        m
        for m in added
        if m.startswith("mfsample.")
        and m not in ("mfsample.cli", "mfsample.cli.main", "mfsample.cli.config", "mfsample.cli.errors")
    ]
    assert not others, others


CLI_DIR = Path(mfsample.cli.__file__).parent


def _cli_imports(module: str) -> tuple[set, set]:
    """``(module-level, function-level)`` sibling modules of ``mfsample.cli`` that ``module`` imports."""
    tree = ast.parse((CLI_DIR / f"{module}.py").read_text())
    top = {n for n in tree.body if isinstance(n, ast.ImportFrom)}
    names = {"top": set(), "inner": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names["top" if node in top else "inner"].add(node.module)
    return names["top"], names["inner"]


def test_cli_imports_run_one_way():
    """The modules of mfsample.cli import each other along a graph without cycles; report does not
    import run (both use rundir); nothing imports main; the only function-level imports are the
    sub-commands' deliberate lazy loads in main."""
    modules = sorted(p.stem for p in CLI_DIR.glob("*.py") if p.stem not in ("__init__", "__main__"))
    graph = {m: _cli_imports(m)[0] for m in modules}
    assert graph["main"] == {"config", "errors"}
    assert graph["config"] == set() and graph["errors"] == set()
    assert "run" not in graph["report"] and "rundir" in graph["report"]
    assert not any("main" in deps for deps in graph.values())
    inner = {m: _cli_imports(m)[1] for m in modules}
    assert inner == {**{m: set() for m in modules}, "main": {"run", "report", "rundir"}}
    order, left = [], dict(graph)  # topological sort: fails on a cycle
    while left:
        ready = [m for m, deps in left.items() if deps <= set(order)]
        assert ready, f"import cycle among {sorted(left)}"
        order += sorted(ready)
        for m in ready:
            del left[m]
