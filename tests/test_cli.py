"""``mfsample demo`` (mfsample/cli.py): the console script trains both kernels and writes ArviZ netCDF."""

from __future__ import annotations

import contextlib
import io
import math

import arviz
import numpy as np
import pytest

from mfsample.cli import QUICK, main

LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)  # the energy's constant for unit-noise likelihood


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One ``mfsample demo --quick`` run shared by the tests below (seed 0): status, out dir, stdout."""
    out = tmp_path_factory.mktemp("demo")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["demo", "--quick", "--out", str(out), "--seed", "0"])
    return status, out, stdout.getvalue()


def test_demo_writes_netcdf_with_particle_dim(demo_run):
    """Both runs are written through ArviZ: dims (chain, draw, particle[, input_dim]), state fields."""
    status, out, _ = demo_run
    assert status == 0
    for name in ("wasserstein_flow", "mean_field_langevin"):
        path = out / f"{name}.nc"
        assert path.is_file()
        idata = arviz.from_netcdf(path)
        post, stats = idata.posterior, idata.sample_stats
        assert post["w"].dims == ("chain", "draw", "particle", "input_dim")
        assert post["a"].dims == post["b"].dims == ("chain", "draw", "particle")
        assert post["f"].dims == ("chain", "draw", "data")
        assert post.sizes["particle"] == QUICK["width"]
        assert post.sizes["input_dim"] == QUICK["dim"]
        assert post.sizes["chain"] == QUICK["chains"]
        for field in ("energy", "time", "grad_norm", "diverging"):
            assert stats[field].dims == ("chain", "draw")
        assert not bool(stats["diverging"].any())
        # time is t = step * dt, a coordinate along draw, ending at num_steps * dt
        dt = float(post.attrs["step_size"])
        np.testing.assert_allclose(stats["time"].values[0], stats["step"].values[0] * dt)
        assert float(post["time"][-1]) == pytest.approx(QUICK["steps"] * dt)


def test_demo_energy_matches_saved_network(demo_run):
    """sample_stats.energy is E = log(2 pi)/2 + 1/2 mean_i (f(x_i) - y_i)^2 of the saved draws.

    Ties the stored energy to the stored network output ``f`` and labels ``y`` (unit noise); a
    misaligned draw or a wrong energy would break it.  Tolerance 1e-5: float32 sums of 64 terms.
    """
    _, out, _ = demo_run
    for name in ("wasserstein_flow", "mean_field_langevin"):
        idata = arviz.from_netcdf(out / f"{name}.nc")
        f = idata.posterior["f"].values
        y = idata.observed_data["y"].values
        expected = LOG_2PI_HALF + 0.5 * np.mean((f - y) ** 2, axis=-1)
        np.testing.assert_allclose(idata.sample_stats["energy"].values, expected, atol=1e-5)


def test_demo_wasserstein_flow_decreases_energy(demo_run):
    """The Wasserstein flow is a gradient flow: E(t) decreases along every replica, below E(0).

    Checked on the saved draws (non-increasing up to float32 rounding of E ~ 1, 1e-6) and on
    the printed table (final energy below the energy at t = 0).
    """
    _, out, _ = demo_run
    energy = arviz.from_netcdf(out / "wasserstein_flow.nc").sample_stats["energy"].values
    assert np.all(np.diff(energy, axis=1) <= 1e-6)
    assert np.all(energy[:, -1] < energy[:, 0] - 1e-4)  # it moved, by more than rounding


def test_demo_table_reports_decrease(demo_run):
    """The printed table has both kernels, with the energy at the end below the one at t = 0."""
    _, out, stdout = demo_run
    lines = stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln.split() and ln.split()[0] in
            ("WassersteinFlow", "MeanFieldLangevin")}
    assert set(rows) == {"WassersteinFlow", "MeanFieldLangevin"}
    e0, e_end, rel = (float(v) for v in rows["WassersteinFlow"][:3])
    assert e_end < e0
    assert e_end >= LOG_2PI_HALF - 1e-6  # E >= log(2 pi)/2 for a unit-noise Gaussian likelihood
    assert 0 <= rel < 1  # the fit improved on the zero function (relative error 1)
    assert f"wrote {out / 'wasserstein_flow.nc'}" in stdout


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
    ],
)
def test_bad_arguments_exit_nonzero(argv, message, capsys):
    """Bad arguments end with a non-zero exit status and a message naming the argument."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code not in (0, None)
    assert message in capsys.readouterr().err


def test_help_lists_commands_with_an_example(capsys):
    """``mfsample --help`` lists the ``demo`` command and shows an example invocation."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "demo" in text and "mfsample demo --quick" in text
