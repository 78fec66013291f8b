"""``mfsample run / report / configs`` (mfsample/cli/: main, run, report), driven in a subprocess.

Claims checked: an invalid configuration is refused before any compute with every error and exit
status 2; so are an output directory that cannot be one (below a file, not writable) and more
``run.devices`` than JAX sees; a run killed with SIGKILL and resumed gives draws bit-identical to an
uninterrupted run (and both equal one ``mf.simulate`` call); a run extended to more ``run.steps``
gives the draws of a straight run of that length; a second run on a directory in use stops with
exit status 2 naming the process that holds it; the temporary files of dead processes are removed
when a run starts; a truncated or modified checkpoint is refused with a message naming the file;
``report`` writes an HTML page whose embedded images are PNGs that decode; a divergence ends with
exit status 1 naming the step and the step size.

Cost: XLA compilation dominates.  The subprocesses share a persistent JAX compilation cache
(created per test session), so only the first run of a configuration compiles.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mfsample.cli import main
from mfsample.cli.rundir import chunk_plan, read_checkpoint

#: the quickstart at a size whose chunks take long enough to kill the process between them
#: (10 checkpoints of 40 steps), yet compile and run in a few seconds
TINY = [
    "--set",
    "data.dim=4",
    "--set",
    "data.num_data=256",
    "--set",
    "data.teacher_width=2",
    "--set",
    "data.num_test=16",
    "--set",
    "model.width=64",
    "--set",
    "run.steps=400",
    "--set",
    "run.save_every=10",
    "--set",
    "run.checkpoint_every=40",
    "--set",
    "run.chains=2",
]

#: tiny sizes of each packaged configuration (tests marked slow)
PACKAGED_TINY = {
    "quickstart": ["run.steps=20", "model.width=8", "data.num_data=32", "data.dim=3", "run.chains=2"],
    "global_convergence": ["run.steps=40", "run.save_every=10", "model.width=16", "run.chains=2"],
    "fluctuations": [
        "run.steps=20",
        "run.save_every=10",
        "model.width=[8, 16]",
        "data.num_data=32",
        "run.chains=3",
        "diagnostics.num_bootstrap=20",
    ],
    "chaos": [
        "run.steps=20",
        "run.save_every=10",
        "model.width=[8, 16]",
        "data.num_data=32",
        "run.chains=3",
        "diagnostics.num_bootstrap=20",
    ],
    "f1_vs_f2": [
        "data.dim=[2, 3]",
        "model.width=8",
        "data.num_data=16",
        "run.steps=5",
        "data.num_test=32",
        "run.replicates=2",
    ],
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def netcdf_arrays(path):
    """Every variable of every group of an InferenceData file, as numpy arrays."""
    import arviz

    idata = arviz.from_netcdf(path)
    return {f"{g}/{v}": getattr(idata, g)[v].values for g in idata.groups() for v in getattr(idata, g).data_vars}


@pytest.fixture(scope="module")
def reference_run(cli, cli_env, tmp_path_factory):
    """An uninterrupted run of the quickstart at TINY size."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = cli(cli_env, "run", "quickstart", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    return out, proc


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def test_invalid_config_reports_every_error_and_computes_nothing(cli, cli_env, tmp_path):
    """Five mistakes in the file plus one in --set: exit status 2, each key path on stderr, and no
    output directory (validation precedes any compute)."""
    config = tmp_path / "bad.toml"
    config.write_text(
        '[model]\nwidht = 16\nactivation = "relu6"\n'
        '[dynamics]\nkernel = "wasserstein"\nstep_size = -1.0\ntemperature = 0.1\n'
        '[run]\nsteps = "many"\n'
    )
    out = tmp_path / "out"
    proc = cli(cli_env, "run", config, "--out", out, "--set", "run.chains=0")
    assert proc.returncode == 2
    for path in (
        "model.widht",
        "model.activation",
        "dynamics.step_size",
        "dynamics.temperature",
        "run.steps",
        "run.chains",
    ):
        assert re.search(rf"^\s+{re.escape(path)}: ", proc.stderr, re.M), (path, proc.stderr)
    assert "(6 errors)" in proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# resumption
# ---------------------------------------------------------------------------------------------
def test_sigkill_then_resume_gives_the_uninterrupted_draws(
    cli, cli_env, reference_run, tmp_path, kill_cli_after_checkpoint
):
    """Kill -9 after the second checkpoint, run the same command again: the run resumes from the
    last checkpoint and its draws equal the uninterrupted run's bit for bit (every variable of
    every group of the netCDF file)."""
    ref_out, _ = reference_run
    out = tmp_path / "killed"
    kill_cli_after_checkpoint(cli_env, "run", "quickstart", "--out", out, *TINY)
    state_path = out / "checkpoints" / "width_64" / "state.npz"
    _, meta = read_checkpoint(state_path)
    assert 80 <= meta["step"] < 400  # killed mid-way, after checkpoint 2
    assert not (out / "draws").exists()

    resumed = cli(cli_env, "run", "quickstart", "--out", out, *TINY)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {meta['step']}/400" in resumed.stderr
    a = netcdf_arrays(ref_out / "draws" / "width_64.nc")
    b = netcdf_arrays(out / "draws" / "width_64.nc")
    assert a.keys() == b.keys() and {"posterior/w", "sample_stats/objective", "predictions/f"} <= a.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    run = json.loads((out / "run.json").read_text())
    assert [s["resumed"] for s in run["sessions"]] == [True]  # the killed session never finished


@pytest.mark.slow  # ~5 s of compilation in this process
def test_chunked_run_equals_one_simulate_call(reference_run):
    """The draws of the chunked run (initial draw, then 10 chunks) are those of a single
    ``mf.simulate`` call from the same initial state: checkpointing does not change the chain.
    Tolerance: different compiled programs (scan lengths) may round differently in float32, so
    1e-5 relative; the draws' steps must match exactly."""
    import arviz
    import jax

    import mfsample as mf
    from mfsample.cli.build import load_data, make_kernel, model_kwargs
    from mfsample.cli.config import load_config, packaged_config_path
    from mfsample.experiments.replicate import initial_draw

    ref_out, _ = reference_run
    cfg = load_config(packaged_config_path("quickstart"), [s for s in TINY if s != "--set"])
    data = load_data(cfg)
    kernel, kw = make_kernel(cfg), model_kwargs(cfg, 64)
    key = jax.random.fold_in(jax.random.PRNGKey(cfg["run"]["seed"]), 64)
    state, _, _ = initial_draw(kernel, key, (data.x, data.y), kw, 2)
    sim = mf.simulate(
        kernel,
        key,
        data.x,
        data.y,
        num_steps=400,
        save_every=10,
        num_chains=2,
        init_state=state,
        progress_bar=False,
        **kw,
    )
    idata = arviz.from_netcdf(ref_out / "draws" / "width_64.nc")
    np.testing.assert_array_equal(idata.sample_stats["step"].values[:, 1:], sim.stats["step"])
    np.testing.assert_allclose(idata.posterior["w"].values[:, 1:], sim.samples["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(idata.sample_stats["objective"].values[:, 1:], sim.stats["energy"], rtol=1e-5)


def dead_pid() -> int:
    """The PID of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def assert_same_draws(a_path, b_path):
    a, b = netcdf_arrays(a_path), netcdf_arrays(b_path)
    assert a.keys() == b.keys() and {"posterior/w", "sample_stats/objective", "predictions/f"} <= a.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_chunk_plan_keeps_simulate_draw_grid():
    """Chunks sum to T, every chunk but the first is a multiple of save_every, and the first
    absorbs T mod save_every: draws fall at steps skip + k, skip + 2k, ..., T as in simulate."""
    for steps, k, ce in ((400, 10, 40), (1003, 10, 100), (7, 7, 7), (95, 10, 30)):
        plan = chunk_plan(steps, k, ce)
        assert sum(plan) == steps
        skip = steps % k
        assert all(c % k == 0 for c in [plan[0] - skip] + plan[1:])
        assert all(c <= ce for c in plan[1:])


def test_chunk_plan_continues_the_chunks_done():
    """A run extended from T to M steps keeps its chunks and then ends its chunks where a straight
    run of M steps ends them (every checkpoint_every steps, and at M); chunks that do not lead to M
    on its draw grid (M - T not a multiple of save_every, or T > M) are refused."""
    straight = chunk_plan(400, 10, 40)
    assert chunk_plan(400, 10, 40, done=[40, 40]) == straight  # 2 checkpoints' worth: a prefix
    assert chunk_plan(400, 10, 40, done=straight) == straight  # a finished run of the same length
    assert chunk_plan(400, 10, 40, done=[40, 20]) == [40, 20, 20] + [40] * 8  # from a run of 60 steps
    assert chunk_plan(403, 10, 40, done=[43, 20]) == [43, 20, 20] + [40] * 8  # the skip stays first
    for done in ([40, 45], [40] * 11, [41]):
        with pytest.raises(ValueError, match="draw grid"):
            chunk_plan(400, 10, 40, done=done)


def test_damaged_checkpoints_are_refused(cli, cli_env, reference_run, tmp_path):
    """A truncated draws file and a state file whose numbers were changed (and re-zipped, so that
    the zip itself is valid) are both refused before any compute: exit status 2 and one message
    naming each file with its cause (unreadable / content hash)."""
    ref_out, _ = reference_run
    out = tmp_path / "copy"
    shutil.copytree(ref_out, out)
    ck = out / "checkpoints" / "width_64"
    truncated = ck / "draws_0003.npz"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    tampered = ck / "state.npz"
    with np.load(tampered) as z:
        arrays = {k: z[k] for k in z.files}
    name = next(k for k in sorted(arrays) if arrays[k].dtype == np.float32 and arrays[k].size > 1)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] += 1.0
    np.savez(tampered, **arrays)
    proc = cli(cli_env, "run", "--resume", out)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to resume" in proc.stderr and "2 damaged or foreign checkpoint files" in proc.stderr
    lines = proc.stderr.splitlines()
    assert any("draws_0003.npz" in ln and "truncated or corrupted" in ln for ln in lines), proc.stderr
    assert any("state.npz" in ln and "content hash" in ln for ln in lines), proc.stderr
    # nothing was rewritten (copytree keeps modification times)
    assert (out / "draws" / "width_64.nc").stat().st_mtime <= (ref_out / "draws" / "width_64.nc").stat().st_mtime


def test_rerun_with_another_configuration_is_refused(reference_run, capsys):
    """The same --out with different draw-determining values is not resumed: exit status 2 with
    the differing keys; nothing is recomputed."""
    ref_out, _ = reference_run
    status = main(["run", "quickstart", "--out", str(ref_out), *TINY, "--set", "run.seed=5"])
    err = capsys.readouterr().err
    assert status == 2
    assert "different configuration" in err and "run.seed: 1" in err and "5 now" in err


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def test_report_embeds_decodable_png_figures(cli, cli_env, reference_run):
    """``report`` prints the summary table and writes one self-contained HTML file whose images are
    base64 PNGs that matplotlib decodes to RGBA arrays; summary.json records versions and device."""
    import matplotlib.image as mpimg

    ref_out, run_proc = reference_run
    proc = cli(cli_env, "report", ref_out)
    assert proc.returncode == 0, proc.stderr
    assert "E(0) - c" in proc.stdout and f"wrote {ref_out / 'report.html'}" in proc.stdout
    page = (ref_out / "report.html").read_text()
    assert 'src="http' not in page and "<script" not in page  # nothing external
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    summary = json.loads((ref_out / "summary.json").read_text())
    assert len(images) == len(summary["figures"]) >= 2  # energy, energy trace (temperature > 0)
    assert 'id="energy_trace"' in page and "after burn-in (t &gt;= 200" in page  # the window of ess / r_hat
    for b64 in images:
        raw = base64.b64decode(b64, validate=True)
        assert raw.startswith(PNG_SIGNATURE)
        import io

        img = mpimg.imread(io.BytesIO(raw), format="png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    env = summary["environment"]
    for key in ("python", "jax", "numpyro", "arviz"):
        assert env[key]
    assert env["device"]["kind"]
    # the table printed by run and by report show the same numbers (report recomputes them): the
    # energy less its stated constant log(2 pi)/2 (unit noise), and the ess / r_hat of the energy
    # after burn-in with the line saying what they measure (Langevin: a stationary law exists)
    row = summary["widths"][0]
    assert row["energy_offset"] == pytest.approx(0.5 * np.log(2 * np.pi))
    excess = f"{row['energy_final'] - row['energy_offset']:.4g}"
    assert excess in run_proc.stdout and excess in proc.stdout
    r_hat = f"r_hat {row['energy_r_hat']:.3f}"
    assert r_hat in run_proc.stdout and r_hat in proc.stdout and "split R-hat across replicas" in proc.stdout
    # E(t) <= E(0): the Langevin run at tau = 1e-4 fits the teacher (from E(0) - E(t) ~ 0.1)
    assert row["energy_final"] < row["energy_initial"] - 1e-2


def test_report_of_an_incomplete_run_is_refused(tmp_path, capsys):
    (tmp_path / "config.toml").write_text('[experiment]\nname = "x"\n[model]\nwidth = 4\n')
    assert main(["report", str(tmp_path)]) == 2
    assert "not complete" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# failures and the other commands
# ---------------------------------------------------------------------------------------------
def test_divergence_exits_1_with_step_and_step_size(tmp_path, capsys):
    """A Wasserstein flow with dt = 1e30 overflows at its first step: exit status 1, the message
    names the step, the step size and suggests a smaller one; the checkpoints before it are kept."""
    out = tmp_path / "div"
    status = main(
        [
            "run",
            "quickstart",
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "dynamics.kernel=wasserstein",
            "--set",
            "dynamics.step_size=1e30",
            "--set",
            "model.width=4",
            "--set",
            "data.num_data=8",
            "--set",
            "data.dim=2",
            "--set",
            "run.steps=4",
            "--set",
            "run.chains=1",
            "--set",
            "data.num_test=4",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1, err
    assert re.search(r"divergence at step \d+", err) and "step_size = 1e+30" in err
    assert "--set dynamics.step_size=2.5e+29" in err
    assert (out / "checkpoints" / "width_4" / "draws_0000.npz").is_file()


def test_configs_list_and_show(capsys):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    for name in PACKAGED_TINY:
        assert name in listing
    assert main(["configs", "show", "global_convergence"]) == 0
    text = capsys.readouterr().out
    assert "f1_optimum = true" in text and "full:" in text
    assert main(["configs", "show", "quickstrat"]) == 2
    assert "did you mean 'quickstart'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PACKAGED_TINY))
def test_every_packaged_config_runs_at_tiny_size(cli, cli_env, tmp_path, name):
    """Each packaged configuration runs end to end at tiny size (exit 0, summary, figures, report)."""
    if name == "global_convergence":
        pytest.importorskip("cvxpy")
    sets = [a for s in PACKAGED_TINY[name] for a in ("--set", s)]
    out = tmp_path / name
    start = time.perf_counter()
    proc = cli(cli_env, "run", name, "--out", out, *sets)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"] and all((out / "figures" / f).is_file() for f in summary["figures"])
    if name == "fluctuations":  # a temperature sweep: an exponent per temperature, a row per (tau, width)
        assert [e["temperature"] for e in summary["sweep"]["fluctuations"]] == [0.0, 1e-4, 1e-3]
        assert all(np.isfinite(e["exponent"]) for e in summary["sweep"]["fluctuations"])
        assert len(summary["sweep"]["rows"]) == 3 * 2 and "sweep.png" in summary["figures"]
    if name == "chaos":
        assert set(summary["chaos"]["covariance"]) >= {"a", "w_norm", "b"}
    if name == "global_convergence":  # a sweep of the reaction rate: the excess over P* per rate
        assert summary["f1_optimum"]["gap"] < 1e-6 * summary["f1_optimum"]["value"]
        assert [r["rate"] for r in summary["sweep"]["rows"]] == [0.0, 0.3, 1.0, 3.0]
        assert all(np.isfinite(r["f1_relative_excess"]) for r in summary["sweep"]["rows"])
    if name == "f1_vs_f2":
        assert set(summary["f1_vs_f2"]["relative_error"]) == {"mean_field", "random_features", "kernel"}
    report = cli(cli_env, "report", out)
    assert report.returncode == 0, report.stderr
    print(f"{name}: {time.perf_counter() - start:.1f} s")


def test_sharded_blocked_run_equals_the_reference(cli, cli_env, reference_run, tmp_path):
    """``run.devices=2`` (particles split over 2 host devices) with ``dynamics.block_size=48``
    (256 data in 5 full blocks and a remainder) gives the reference run's draws up to float32
    summation order: 400 steps of an O(1) system, atol 1e-3 (a wrong block sum or a missing
    all-reduce of f would move the energy by O(1))."""
    ref_out, _ = reference_run
    env = {**cli_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = tmp_path / "sharded"
    proc = cli(
        env,
        "run",
        "quickstart",
        "--out",
        out,
        *TINY,
        "--set",
        "run.devices=2",
        "--set",
        "run.shard=particles",
        "--set",
        "dynamics.block_size=48",
    )
    assert proc.returncode == 0, proc.stderr
    a = netcdf_arrays(ref_out / "draws" / "width_64.nc")
    b = netcdf_arrays(out / "draws" / "width_64.nc")
    assert set(a) == set(b)
    for k in ("posterior/w", "posterior/a", "sample_stats/objective", "predictions/f"):
        np.testing.assert_allclose(b[k], a[k], atol=1e-3, err_msg=k)
    # the setting is really used: without the second device the run stops with the device count
    bad = cli(cli_env, "run", "quickstart", "--out", tmp_path / "one-device", *TINY, "--set", "run.devices=2")
    assert bad.returncode == 2 and "run.devices = 2" in bad.stderr and "device_count" in bad.stderr
    assert not (tmp_path / "one-device").exists()  # refused before anything is written


# ---------------------------------------------------------------------------------------------
# the output directory: unusable, in use, stale temporary files
# ---------------------------------------------------------------------------------------------
def _unusable_out(kind, tmp_path):
    if kind == "below a file":
        (tmp_path / "plain").write_text("x")
        return tmp_path / "plain" / "sub" / "out", "which is a file, not a directory"
    if kind == "a file":
        (tmp_path / "plain").write_text("x")
        return tmp_path / "plain", "is a file, not a directory"
    if kind == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o555)
        return tmp_path / "ro" / "out", "cannot create --out"
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    return Path("/proc/mfsample-no-such-dir/out"), "cannot create --out"  # refused even to root


@pytest.mark.parametrize("kind", ["below a file", "a file", "read-only", "not creatable"])
def test_unusable_out_exits_2(kind, tmp_path, capsys):
    """An --out that cannot be a run directory is an input problem: exit status 2, the path and the
    cause named, before anything is computed or written."""
    out, cause = _unusable_out(kind, tmp_path)
    status = main(["run", "quickstart", "--out", str(out), "--no-progress", *TINY])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "invalid input" in err and str(out) in err and cause in err, err
    assert not out.exists() or out.is_file()


def test_run_devices_beyond_those_of_jax_exits_2(tmp_path, capsys):
    """run.devices larger than jax.device_count(): exit status 2 with the count and the remedy,
    and no output directory."""
    out = tmp_path / "many"
    status = main(["run", "quickstart", "--out", str(out), *TINY, "--set", "run.devices=4096"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "run.devices = 4096" in err and "set run.devices <=" in err
    assert not out.exists()


def test_second_run_on_a_directory_in_use_exits_2(cli, cli_env, reference_run, tmp_path):
    """Start a run; once it saved its first checkpoint, stop it (SIGSTOP: it keeps its lock) and
    start a second run on the same --out: exit status 2, "in use by process <pid of the first>",
    nothing written by it.  Then let the first one go on: it ends normally with the reference
    draws."""
    ref_out, _ = reference_run
    out = tmp_path / "busy"
    cmd = [sys.executable, "-m", "mfsample.cli", "run", "quickstart", "--out", str(out), "--progress", "lines", *TINY]
    first = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in first.stderr:
            seen.append(line)
            if "checkpoint 1/10 saved" in line:
                first.send_signal(signal.SIGSTOP)
                break
        assert (out / "run.lock").read_text().strip() == str(first.pid), "".join(seen)
        second = cli(cli_env, "run", "quickstart", "--out", out, *TINY)
        assert second.returncode == 2, second.stderr
        assert f"{out} is in use by process {first.pid}" in second.stderr
        assert not (out / "draws").exists()
        first.send_signal(signal.SIGCONT)
        seen += first.stderr.readlines()
        assert first.wait(timeout=300) == 0, "".join(seen)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert_same_draws(ref_out / "draws" / "width_64.nc", out / "draws" / "width_64.nc")


def test_stale_temporary_files_are_removed_when_a_run_starts(cli, cli_env, reference_run, tmp_path):
    """Temporary files of dead processes (a killed final write of the draws, of a checkpoint, of
    run.json) are removed when a run resumes in the directory; one of a live process is kept."""
    ref_out, _ = reference_run
    out = tmp_path / "stale"
    shutil.copytree(ref_out, out)
    pid = dead_pid()
    stale = [
        out / "draws" / f".width_64.nc.tmp-{pid}",
        out / "checkpoints" / "width_64" / f".state.npz.tmp-{pid}",
        out / f".run.json.tmp-{pid}",
    ]
    live = out / "draws" / f".width_64.nc.tmp-{os.getpid()}"
    for p in stale + [live]:
        p.write_bytes(b"half-written")
    proc = cli(cli_env, "run", "--resume", out, "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale)
    assert live.exists()
    assert "removed 3 temporary file(s)" in proc.stderr and str(stale[0]) in proc.stderr


# ---------------------------------------------------------------------------------------------
# extension to more steps
# ---------------------------------------------------------------------------------------------
def test_extending_a_run_to_more_steps_gives_the_straight_run(cli, cli_env, reference_run, tmp_path, capsys):
    """Run 2 checkpoints' worth (80 steps), then ``run --resume DIR --set run.steps=400``: the draws
    equal those of the straight 400-step run bit for bit.  Added steps off the save grid, fewer
    steps, or another changed key are refused (exit 2), naming the key."""
    ref_out, _ = reference_run
    out = tmp_path / "extended"
    short = cli(cli_env, "run", "quickstart", "--out", out, *TINY, "--set", "run.steps=80")
    assert short.returncode == 0, short.stderr
    assert read_checkpoint(out / "checkpoints" / "width_64" / "state.npz")[1]["plan"] == [40, 40]

    assert main(["run", "--resume", str(out), "--set", "run.steps=405"]) == 2
    assert "multiple of run.save_every = 10" in capsys.readouterr().err
    both = main(["run", "--resume", str(out), "--set", "run.steps=400", "--set", "run.seed=5"])
    err = capsys.readouterr().err
    assert both == 2 and "different configuration" in err and "run.seed: 1" in err and "run.steps: 80" in err

    longer = cli(cli_env, "run", "--resume", out, "--set", "run.steps=400", "--progress", "lines")
    assert longer.returncode == 0, longer.stderr
    assert "extending the run of 80 steps to 400" in longer.stderr and "resuming at step 80/400" in longer.stderr
    assert_same_draws(ref_out / "draws" / "width_64.nc", out / "draws" / "width_64.nc")
    assert main(["run", "--resume", str(out), "--set", "run.steps=200"]) == 2
    assert "extended, not shortened" in capsys.readouterr().err
