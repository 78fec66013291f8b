"""``mfsample run`` with ``output.stream = true`` (mfsample/cli/run.py, resume.py): memory bounded by one chunk.

Claims checked: a streamed run killed with SIGKILL, whose draws file is then given extra draws past
the checkpoint (what a kill between an append and its state file leaves), resumes to a file whose
every variable and attribute equals the uninterrupted streamed run's; draws modified after they were
recorded are refused (exit 2, the file named), and so are modified data (``constant_data``) of a
streamed checkpoint; a finished streamed run extended to more steps equals the straight run of
that length; a run directory keeps the ``output.stream`` it was started with; the streamed file
equals the default (``.npz`` checkpoints) run's (slow).

Cost: XLA compilation dominates; the subprocesses share a persistent JAX compilation cache.
"""

from __future__ import annotations

import shutil

import h5netcdf
import h5py
import numpy as np
import pytest

from mfsample.cli.rundir import read_checkpoint
from mfsample.io import DRAW_GROUPS, count_draws

#: 10 checkpoints of 40 steps: chunks long enough to kill the process between two of them
TINY = [
    "--set",
    "data.dim=3",
    "--set",
    "data.num_data=128",
    "--set",
    "data.teacher_width=2",
    "--set",
    "data.num_test=16",
    "--set",
    "model.width=32",
    "--set",
    "run.steps=400",
    "--set",
    "run.save_every=10",
    "--set",
    "run.checkpoint_every=40",
    "--set",
    "run.chains=2",
]
STREAM = TINY + ["--set", "output.stream=true"]


@pytest.fixture(scope="module")
def env(cli_env):
    return cli_env


def contents(path):
    """Every variable (values) and every group's attributes of an InferenceData file."""
    import arviz

    idata = arviz.from_netcdf(path)
    out = {}
    for g in idata.groups():
        ds = idata[g]
        out.update({f"{g}/{v}": ds[v].values for v in ds.variables})
        out[f"{g}.attrs"] = dict(ds.attrs)
        ds.close()
    return out


def assert_same_contents(a, b):
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(".attrs"):
            assert a[name] == b[name], name
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def reference(cli, env, tmp_path_factory):
    """An uninterrupted streamed run."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = cli(env, "run", "quickstart", "--out", out, "--progress", "off", *STREAM)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def killed(env, tmp_path_factory, kill_cli_after_checkpoint):
    """A streamed run killed with SIGKILL after its second checkpoint; the tests resume copies."""
    out = tmp_path_factory.mktemp("runs") / "killed"
    kill_cli_after_checkpoint(env, "run", "quickstart", "--out", out, "--progress", "lines", *STREAM)
    return out


def test_killed_streamed_run_resumes_to_the_uninterrupted_file(cli, env, reference, killed, tmp_path):
    """Kill -9 after the second checkpoint; append 4 junk draws to the streamed file (as if killed
    after an append, before its state file); run the same command: the run resumes from the state,
    drops the junk, and its draws/width_32.nc equals the uninterrupted run's bit for bit (every
    variable, every group's attributes)."""
    out = tmp_path / "killed"
    shutil.copytree(killed, out)
    ckpt = out / "checkpoints" / "width_32"
    _, meta = read_checkpoint(ckpt / "state.npz")
    assert meta["stream"] and 80 <= meta["step"] < 400
    assert not list(ckpt.glob("draws_*.npz")) and not (out / "draws").exists()
    recorded = meta["chunks"][-1]["draws"][1]
    stream = ckpt / "draws.nc"
    have = count_draws(stream)
    assert have >= recorded == 1 + meta["step"] // 10  # the t = 0 draw, then one per 10 steps
    with h5netcdf.File(str(stream), "a") as f:  # 4 more complete draws of junk, recorded as complete
        for g in DRAW_GROUPS:
            f[g].resize_dimension("draw", have + 4)
        f["posterior"].variables["w"][:, have:] = 7.0
        f.attrs["mfsample_draws"] = have + 4
    resumed = cli(env, "run", "quickstart", "--out", out, "--progress", "lines", *STREAM)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {meta['step']}/400" in resumed.stderr
    assert not stream.exists()  # moved to draws/ once complete
    a, b = contents(reference / "draws" / "width_32.nc"), contents(out / "draws" / "width_32.nc")
    assert {"posterior/w", "sample_stats/objective", "predictions/f", "predictions_constant_data/f_target"} <= a.keys()
    assert a["posterior/w"].shape[:2] == (2, 41)
    assert_same_contents(a, b)


def test_modified_streamed_draws_are_refused(cli, env, reference, tmp_path):
    """One number of a recorded draw changed in the streamed file: resuming refuses with exit 2,
    naming the file and the draws, and leaves the file as it is."""
    out = tmp_path / "modified"
    shutil.copytree(reference, out)
    path = out / "draws" / "width_32.nc"
    with h5netcdf.File(str(path), "a") as f:
        f["posterior"].variables["a"][1, 5, 3] += 1.0
    proc = cli(env, "run", "--resume", out, "--progress", "off")
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "not those the state checkpoint recorded" in proc.stderr


def flip_bytes(path, group: str, name: str, index: tuple, count: int = 4):
    """Flip ``count`` bytes of element ``index`` of a variable where the file stores it (as a disk
    fault would), without going through HDF5; returns the value before."""
    with h5py.File(path, "r") as f:
        ds = f[group][name]
        offset = ds.id.get_offset()
        assert offset is not None, "expected contiguous storage"
        before = ds[index]
        position = offset + int(np.ravel_multi_index(index, ds.shape)) * ds.dtype.itemsize
    with open(path, "r+b") as f:
        f.seek(position)
        raw = f.read(count)
        f.seek(position)
        f.write(bytes(b ^ 0xFF for b in raw))
    return before


def test_modified_constant_data_of_a_streamed_checkpoint_is_refused(cli, env, killed, tmp_path):
    """Kill -9 a streamed run after its second checkpoint, flip 4 bytes of one value of
    constant_data/x in checkpoints/width_32/draws.nc: resuming refuses with exit 2, naming the file
    and the group, and leaves the file as it is."""
    out = tmp_path / "flipped"
    shutil.copytree(killed, out)
    path = out / "checkpoints" / "width_32" / "draws.nc"
    before = flip_bytes(path, "constant_data", "x", (100, 2))
    with h5py.File(path, "r") as f:
        assert f["constant_data"]["x"][100, 2] != before
    data = path.read_bytes()
    proc = cli(env, "run", "--resume", out, "--progress", "off")
    assert proc.returncode == 2, proc.stderr
    assert f"{path}: the constant_data group is not what the state checkpoint recorded" in proc.stderr
    assert path.read_bytes() == data


def test_extending_a_finished_streamed_run_gives_the_straight_run(cli, env, reference, tmp_path):
    """A finished streamed run of 60 steps (chunks of 40 and 20) extended with ``run --resume DIR
    --set run.steps=400`` (chunks of 20, then 40 up to 400) gives the file of the straight 400-step
    streamed run bit for bit (every variable, every group's attributes)."""
    out = tmp_path / "extended"
    short = cli(env, "run", "quickstart", "--out", out, "--progress", "off", *STREAM, "--set", "run.steps=60")
    assert short.returncode == 0, short.stderr
    assert (out / "draws" / "width_32.nc").is_file()
    longer = cli(env, "run", "--resume", out, "--set", "run.steps=400", "--progress", "lines")
    assert longer.returncode == 0, longer.stderr
    assert "extending the run of 60 steps to 400" in longer.stderr
    _, meta = read_checkpoint(out / "checkpoints" / "width_32" / "state.npz")
    assert meta["plan"] == [40, 20, 20] + [40] * 8
    assert_same_contents(contents(reference / "draws" / "width_32.nc"), contents(out / "draws" / "width_32.nc"))


def test_a_run_keeps_its_stream_setting(cli, env, reference, tmp_path):
    """Resuming a streamed run with output.stream = false is refused (exit 2) before any compute:
    its checkpoints hold no .npz draws."""
    out = tmp_path / "switched"
    shutil.copytree(reference, out)
    proc = cli(env, "run", "quickstart", "--out", out, "--progress", "off", *TINY)
    assert proc.returncode == 2
    assert "was run with output.stream = true" in proc.stderr


@pytest.mark.slow  # a third run (~15 s)
def test_streamed_file_equals_the_default_run(cli, env, reference, tmp_path):
    """The default run (.npz checkpoints assembled at the end) and the streamed run write the same
    draws and predictions bit for bit; only the stored configuration (output.stream) differs."""
    out = tmp_path / "default"
    proc = cli(env, "run", "quickstart", "--out", out, "--progress", "off", *TINY)
    assert proc.returncode == 0, proc.stderr
    a, b = contents(reference / "draws" / "width_32.nc"), contents(out / "draws" / "width_32.nc")
    for name in a:
        if name.endswith(".attrs"):
            a[name].pop("mfsample_config")
            b[name].pop("mfsample_config")
    assert_same_contents(a, b)
