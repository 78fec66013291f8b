"""``mfsample run`` with a ``[sweep]`` section, and ``mfsample report`` of the study (mfsample/cli/).

Claims checked: a sweep runs end to end, one compiled :func:`mfsample.sweep` per width, and its
draws file has a ``config`` dimension whose coordinate is the swept value; configuration ``c`` is
``mf.simulate`` of ``kernel.replace(**point_c)`` from ``jax.random.split(width key, C)[c]`` (float32
tolerance); with ``common_keys`` every configuration starts from the same particles; a sweep killed
with SIGKILL and resumed, or run short and extended to more steps, gives the uninterrupted run's
draws bit for bit; a resumption with another grid is refused naming the key; a bad ``[sweep]``
section exits with status 2 naming the key, before anything is written; a divergence names its
configuration; the report prints and writes the study's table (``sweep.csv``, one row per
configuration and width, the numbers recomputed from the draws) and draws ``sweep.png``.

Cost: XLA compilation dominates.  The subprocesses share a persistent JAX compilation cache, so
only the first run compiles.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from mfsample.cli import main
from mfsample.cli.rundir import read_checkpoint

TEMPERATURES = [0.0, 1e-3, 1e-2]
WIDTHS = [8, 16]

#: a tiny Langevin temperature sweep over two widths: 4 checkpoints of 10 steps each
SWEEP = f"""\
[experiment]
name = "tiny_sweep"

[data]
dim = 3
teacher_width = 2
num_data = 32
num_test = 8

[model]
width = {WIDTHS}

[dynamics]
kernel = "langevin"
step_size = 0.5

[sweep]
temperature = {TEMPERATURES}

[run]
steps = 40
save_every = 10
checkpoint_every = 10
chains = 2

[diagnostics]
fluctuations = true
num_bootstrap = 20
"""


#: the packaged quickstart shrunk to a run of seconds
TINY_QUICKSTART = ["model.width=4", "data.num_data=8", "data.dim=2", "data.num_test=4", "run.steps=4", "run.chains=1"]


def netcdf_arrays(path):
    """Every variable and coordinate of every group of an InferenceData file, as numpy arrays."""
    import arviz

    idata = arviz.from_netcdf(path)
    return {f"{g}/{v}": getattr(idata, g)[v].values for g in idata.groups() for v in getattr(idata, g).variables}


def assert_same_draws(a_path, b_path):
    a, b = netcdf_arrays(a_path), netcdf_arrays(b_path)
    assert a.keys() == b.keys() and {"posterior/w", "sample_stats/objective", "predictions/f"} <= a.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "sweep.toml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def sweep_run(cli, cli_env, config_file, tmp_path_factory):
    """An uninterrupted run of the tiny sweep: (run directory, the completed process)."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = cli(cli_env, "run", config_file, "--out", out, "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    return out, proc


# ---------------------------------------------------------------------------------------------
# the run and its draws
# ---------------------------------------------------------------------------------------------
def test_sweep_draws_have_the_config_dimension_with_the_swept_values(sweep_run):
    """Each width's draws file stacks the configurations along ``config`` after (chain, draw), with
    the temperatures as its coordinate, the ``t = 0`` draw first, and the swept name in ``swept``;
    the state checkpoint has a leading axis of 3 configurations."""
    import arviz

    out, _ = sweep_run
    for n in WIDTHS:
        idata = arviz.from_netcdf(out / "draws" / f"width_{n}.nc")
        post, stats = idata.posterior, idata.sample_stats
        assert post["w"].dims == ("chain", "draw", "config", "particle", "input_dim")
        assert stats["objective"].dims == ("chain", "draw", "config")
        assert dict(post["w"].sizes) == {"chain": 2, "draw": 5, "config": 3, "particle": n, "input_dim": 3}
        np.testing.assert_array_equal(post["temperature"].values, TEMPERATURES)
        assert post["temperature"].dims == ("config",) and post.attrs["swept"] == "temperature"
        np.testing.assert_allclose(post["time"].values, [0, 5, 10, 15, 20])
        assert idata.predictions["f"].dims == ("chain", "draw", "config", "eval_point")
        assert not bool(stats["diverging"].any())
        state, meta = read_checkpoint(out / "checkpoints" / f"width_{n}" / "state.npz")
        assert meta["step"] == 40 and meta["plan"] == [10, 10, 10, 10]
        assert state["state_000"].shape[:2] == (3, 2)  # (config, chain, ...)


def test_each_configuration_is_simulate_of_its_kernel(sweep_run, config_file):
    """Configuration 2 (tau = 1e-2) of width 16 equals ``mf.simulate(kernel.replace(temperature=1e-2),
    split(width key, 3)[2], ...)``: the same steps exactly, the particles and energies to float32
    tolerance (the sweep's compiled programme is another than simulate's)."""
    import arviz
    import jax

    import mfsample as mf
    from mfsample.cli.build import load_data, make_kernel, model_kwargs, width_key
    from mfsample.cli.config import load_config

    out, _ = sweep_run
    cfg = load_config(config_file)
    data, kernel = load_data(cfg), make_kernel(cfg)
    key = jax.random.split(width_key(cfg, 16), 3)[2]
    sim = mf.simulate(
        kernel.replace(temperature=1e-2),
        key,
        data.x,
        data.y,
        num_steps=40,
        save_every=10,
        num_chains=2,
        progress_bar=False,
        **model_kwargs(cfg, 16),
    )
    one = arviz.from_netcdf(out / "draws" / "width_16.nc").isel(config=2)
    assert float(one.posterior["temperature"]) == 1e-2
    np.testing.assert_array_equal(one.sample_stats["step"].values[:, 1:], sim.stats["step"])
    np.testing.assert_allclose(one.posterior["w"].values[:, 1:], sim.samples["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.sample_stats["objective"].values[:, 1:], sim.stats["energy"], rtol=1e-5)


def test_common_keys_start_every_configuration_from_the_same_particles(sweep_run, config_file):
    """``sweep.common_keys``: the ``t = 0`` particles of every configuration are the same; without
    it (the run) each configuration draws its own, from ``split(width key, 3)[c]``."""
    import arviz

    from mfsample.cli.build import initial_sweep_draw, load_data, make_kernel, model_kwargs, sweep_grid, width_key
    from mfsample.cli.config import load_config

    out, _ = sweep_run
    cfg = load_config(config_file)
    data, kernel, grid = load_data(cfg), make_kernel(cfg), sweep_grid(cfg)
    _, common, _ = initial_sweep_draw(kernel, grid, width_key(cfg, 8), (data.x, data.y), model_kwargs(cfg, 8), 2, True)
    own = arviz.from_netcdf(out / "draws" / "width_8.nc").posterior["w"].isel(draw=0).values  # (chain, config, ...)
    assert common["w"].shape == (3, 2, 1, 8, 3)
    for c in (1, 2):
        np.testing.assert_array_equal(common["w"][c], common["w"][0])
        assert not np.allclose(own[:, c], own[:, 0])


# ---------------------------------------------------------------------------------------------
# resumption
# ---------------------------------------------------------------------------------------------
def test_killed_sweep_resumes_to_the_uninterrupted_draws(
    cli, cli_env, sweep_run, config_file, tmp_path, kill_cli_after_checkpoint
):
    """Kill -9 after the second checkpoint of the first width, run the same command again: it
    resumes from the checkpoint, and every variable of every group of both widths' draws equals
    the uninterrupted run's bit for bit."""
    ref, _ = sweep_run
    out = tmp_path / "killed"
    args = ("run", config_file, "--out", out, "--progress", "lines")
    kill_cli_after_checkpoint(cli_env, *args, checkpoint=2, total=4)
    _, meta = read_checkpoint(out / "checkpoints" / "width_8" / "state.npz")
    assert 20 <= meta["step"] < 40 and not (out / "draws").exists()
    resumed = cli(cli_env, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"width 8: resuming at step {meta['step']}/40" in resumed.stderr
    for n in WIDTHS:
        assert_same_draws(ref / "draws" / f"width_{n}.nc", out / "draws" / f"width_{n}.nc")


@pytest.mark.slow  # two more runs of the sweep
def test_sweep_extended_to_more_steps_gives_the_straight_run(cli, cli_env, sweep_run, config_file, tmp_path):
    """A sweep of 20 steps extended with ``--resume DIR --set run.steps=40`` has the draws of the
    straight 40-step sweep, bit for bit."""
    ref, _ = sweep_run
    out = tmp_path / "extended"
    short = cli(cli_env, "run", config_file, "--out", out, "--set", "run.steps=20", "--progress", "off")
    assert short.returncode == 0, short.stderr
    longer = cli(cli_env, "run", "--resume", out, "--set", "run.steps=40", "--progress", "lines")
    assert longer.returncode == 0, longer.stderr
    assert "extending the run of 20 steps to 40" in longer.stderr
    for n in WIDTHS:
        assert_same_draws(ref / "draws" / f"width_{n}.nc", out / "draws" / f"width_{n}.nc")


def test_resuming_with_another_grid_is_refused(sweep_run, capsys):
    """The same directory with other swept values is another study: exit 2, the key and both
    values named; nothing is recomputed."""
    out, _ = sweep_run
    before = (out / "draws" / "width_8.nc").stat().st_mtime
    status = main(["run", "--resume", str(out), "--set", "sweep.temperature=[0.0, 0.5]"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "different configuration" in err and "sweep.temperature: [0.0, 0.001, 0.01]" in err
    assert (out / "draws" / "width_8.nc").stat().st_mtime == before


# ---------------------------------------------------------------------------------------------
# validation and failures
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sets, key, fragment",
    [
        (["sweep.tempreature=[0.1]"], "sweep.tempreature", "did you mean sweep.temperature"),
        (["sweep.temperature=[]"], "sweep.temperature", "non-empty list"),
        (["sweep.temperature=0.1"], "sweep.temperature", "expected a list of values"),
        (["sweep.temperature=[0.1, -1.0]"], "sweep.temperature", "element 1: must be >= 0"),
        (["sweep.temperature=[0.1, 0.1]"], "sweep.temperature", "repeated values"),
        (["sweep.friction=[1.0, 2.0]"], "sweep.friction", "kernel 'langevin' has no parameter friction"),
        (["sweep.rate=[1.0]"], "sweep.rate", "its parameters: step_size, temperature"),
        (["sweep.adjusted=[true, false]"], "sweep.adjusted", "structural"),
        (["dynamics.kernel=wfr", "sweep.mode=['weighted']"], "sweep.mode", "structural"),
        (["sweep.width=[8, 16]"], "sweep.width", "list them in model.width"),
        (["sweep.seed=[0, 1]"], "sweep.seed", "run.chains"),
        (
            ["sweep.combine=zipped", "sweep.step_size=[0.1, 0.2]", "sweep.temperature=[0.1]"],
            "sweep.combine",
            "one length",
        ),
        (["sweep.combine=all"], "sweep.combine", "'product', 'zipped'"),
        (["sweep.combine=zipped"], "sweep", "lists no parameter"),
        (["sweep.temperature=[0.1]", "diagnostics.chaos=true", "run.chains=2"], "diagnostics.chaos", "[sweep]"),
        (["sweep.temperature=[0.1]", "output.stream=true"], "output.stream", "[sweep]"),
        (["run.shard=configs"], "run.shard", "there is none"),
    ],
)
def test_bad_sweep_sections_exit_2_naming_the_key(sets, key, fragment, tmp_path, capsys):
    """Each mistake of a [sweep] section (unknown or misspelt name, empty or bare value, values out
    of range or repeated, a parameter the dynamic does not have, a structural setting, the width,
    the seeds, zipped lists of different lengths, settings a sweep does not combine with) is
    refused before anything runs: exit 2, the key path and the reason on stderr, no directory."""
    base = ["dynamics.kernel=langevin"] if not any(s.startswith("dynamics.kernel") for s in sets) else []
    base += TINY_QUICKSTART  # should a mistake be let through, the run it starts is short
    out = tmp_path / "out"
    argv = ["run", "quickstart", "--out", str(out)] + [a for s in base + sets for a in ("--set", s)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.splitlines()]
    assert any(ln.startswith(f"{key}: ") and fragment in ln for ln in lines), err
    assert not out.exists()


def test_divergent_configuration_exits_1_naming_it(tmp_path, capsys):
    """A Wasserstein flow swept over dt = 0.1 and 1e30 (one replica: states without a chain axis)
    overflows in the second configuration: exit status 1, the message names it and its step size."""
    out = tmp_path / "div"
    sets = ["dynamics.kernel=wasserstein", "sweep.step_size=[0.1, 1e30]", *TINY_QUICKSTART]
    status = main(["run", "quickstart", "--out", str(out), "--no-progress"] + [a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert status == 1, err
    assert "divergence at step" in err and "configuration 1 (step_size=1e+30)" in err
    assert "configuration 0" not in err
    assert (out / "checkpoints" / "width_4" / "draws_0000.npz").is_file()


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def test_report_writes_the_study_table_and_plot(sweep_run, capsys):
    """``report`` on a sweep prints one row per (temperature, width) and writes ``sweep.csv`` with
    the same rows, whose final excess energy is the replicas' mean of ``E - log(2 pi)/2`` at the last
    draw of that configuration and width, and whose fluctuation is finite; ``sweep.png`` (energy and
    fluctuations against the temperature) and the self-contained page are written."""
    import arviz
    import matplotlib.image as mpimg

    out, run_proc = sweep_run
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sweep of temperature (product): 3 configurations x 2 width(s), 2 replicas each" in printed
    assert "sweep of temperature" in run_proc.stdout and f"{out}/sweep.csv" in run_proc.stdout
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["temperature"]), int(r["width"])) for r in rows] == [(t, n) for t in TEMPERATURES for n in WIDTHS]
    for r in rows:
        idata = arviz.from_netcdf(out / "draws" / f"width_{r['width']}.nc")
        e = idata.sample_stats["objective"].isel(config=int(r["config"]), draw=-1).values.astype(np.float64)
        assert float(r["E(t) - c"]) == pytest.approx(e.mean() - 0.5 * math.log(2 * math.pi), rel=1e-9)
        assert float(r["sd E(t)"]) == pytest.approx(e.std(ddof=1), rel=1e-9)
        assert math.isfinite(float(r["n E||f_n - f||^2"])) and float(r["n E||f_n - f||^2"]) > 0
        assert f"{float(r['E(t) - c']):.4g}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"] == ["sweep.png", "energy.png"] and summary["tables"] == ["sweep.csv"]
    assert [e["temperature"] for e in summary["sweep"]["fluctuations"]] == TEMPERATURES
    img = mpimg.imread(out / "figures" / "sweep.png")
    assert img.ndim == 3 and img.shape[1] > img.shape[0]  # two panels side by side
    page = (out / "report.html").read_text()
    assert 'id="sweep"' in page and "against temperature" in page
