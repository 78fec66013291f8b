"""Streaming draws to netCDF (mfsample/inference_data/stream.py, through its path mfsample.io).

Claims checked: a run appended to a :class:`DrawWriter` in uneven chunks opens with
``arviz.from_netcdf`` as exactly the groups ``to_inference_data`` builds from the same draws in
memory (values, dims, coordinates with ``time``, attributes) -- for weighted WFR (masses) and for an
``energy_fn`` kernel whose particles are one array; chunking does not change the file; predictions
computed from the file in batches of draws equal those computed in memory; a writer killed (never
closed) leaves a readable file with every draw appended before the kill; draws of an interrupted
append are trimmed on resume; wrong chunks, an existing path and appends after close are refused.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import types

import arviz as az
import h5netcdf
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import xarray as xr

import mfsample as mf
from mfsample.io import DrawWriter, count_draws, open_streamed, read_draws, write_predictions

WIDTH = 4
GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")


def chunk(tree, a, b):
    """Draws ``a:b`` of a samples dict (or array) or a stats dict."""
    if isinstance(tree, dict):
        return {k: v[:, a:b] for k, v in tree.items()}
    return tree[:, a:b]


def write(path, sim, kernel, bounds, model_args, model_kwargs, **kw):
    with DrawWriter(
        path,
        kernel=kernel,
        model_args=model_args,
        model_kwargs=model_kwargs,
        num_chains=sim.stats["energy"].shape[0],
        num_draws=bounds[-1],
        **kw,
    ) as writer:
        for a, b in zip(bounds[:-1], bounds[1:]):
            writer.append(chunk(sim.samples, a, b), chunk(sim.stats, a, b))
    return writer


def load(path):
    """The file's InferenceData, loaded into memory and closed (so that it can be written again)."""
    idata = az.from_netcdf(str(path))
    out = az.InferenceData(**{g: idata[g].load() for g in idata.groups()})
    for g in idata.groups():
        idata[g].close()
    return out


def streamed(sim, path):
    """What ``simulate(..., output=path)`` returns: no draws in memory, the file's path."""
    if "output" in mf.Simulation._fields:
        return sim._replace(samples=None, stats=None, output=str(path))
    return types.SimpleNamespace(
        samples=None,
        stats=None,
        output=str(path),
        kernel=sim.kernel,
        model_args=sim.model_args,
        model_kwargs=sim.model_kwargs,
    )


@pytest.fixture(scope="module")
def problem():
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=16)
    x_eval, _ = data.sample(jax.random.PRNGKey(2), 5)
    return data, x_eval


@pytest.fixture(scope="module")
def wfr_run(problem):
    """Weighted WFR (the masses move), 2 chains, 6 draws."""
    data, _ = problem
    kernel = mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=5.0, mode="weighted")
    sim = mf.simulate(
        kernel,
        jax.random.PRNGKey(1),
        data.x,
        data.y,
        width=WIDTH,
        num_steps=12,
        save_every=2,
        num_chains=2,
        progress_bar=False,
    )
    return kernel, sim


def test_uneven_chunks_equal_to_inference_data(wfr_run, problem, tmp_path):
    """Draws appended in chunks of 1, 3, 2 open as the groups to_inference_data gives in memory:
    identical values (bit for bit), dims, coords (draw, particle, time = step * dt), attributes, and
    the masses of the weighted dynamics."""
    data, _ = problem
    kernel, sim = wfr_run
    path = tmp_path / "run.nc"
    writer = write(path, sim, kernel, [0, 1, 4, 6], (data.x, data.y), {"width": WIDTH})
    assert writer.draws_written == 6 and writer.closed
    ref = mf.to_inference_data(sim, kernel=kernel)
    back = load(path)
    assert set(back.groups()) == set(GROUPS)
    for g in GROUPS:
        xr.testing.assert_identical(back[g], ref[g])
    assert np.std(back.posterior["masses"].values[:, -1]) > 1e-4  # the masses moved away from 1/n
    np.testing.assert_array_equal(back.posterior["time"].values, sim.stats["step"][0] * 0.1)
    assert back.sample_stats["diverging"].dtype == bool
    assert "objective" in back.sample_stats and "energy" not in back.sample_stats  # not ArviZ's HMC energy
    assert count_draws(path) == 6


def test_chunking_does_not_change_the_file(wfr_run, problem, tmp_path):
    """One append of all draws and six appends of one draw give identical files, and read_draws
    returns any range of draws as appended."""
    data, _ = problem
    kernel, sim = wfr_run
    args, kwargs = (data.x, data.y), {"width": WIDTH}
    write(tmp_path / "one.nc", sim, kernel, [0, 6], args, kwargs)
    write(tmp_path / "six.nc", sim, kernel, list(range(7)), args, kwargs)
    one, six = load(tmp_path / "one.nc"), load(tmp_path / "six.nc")
    for g in GROUPS:
        xr.testing.assert_identical(one[g], six[g])
    part = read_draws(tmp_path / "six.nc", 2, 5)
    np.testing.assert_array_equal(part["posterior/w"], sim.samples["w"][:, 2:5])
    np.testing.assert_array_equal(part["sample_stats/step"], sim.stats["step"][:, 2:5])


def test_predictions_from_the_file_equal_the_in_memory_ones(wfr_run, problem, tmp_path):
    """to_inference_data of a streamed run computes f(x_eval) and phi from the posterior read back;
    write_predictions does it 4 draws at a time (the last batch padded) into the file.  Both equal
    the in-memory predictions; tolerance: the batched evaluation is a differently-shaped compiled
    programme, so float32 sums may round differently (observed: identical; 1e-6 relative allowed)."""
    data, x_eval = problem
    kernel, sim = wfr_run
    path = tmp_path / "run.nc"
    write(path, sim, kernel, [0, 2, 6], (data.x, data.y), {"width": WIDTH})
    ref = mf.to_inference_data(sim, kernel=kernel, x_eval=x_eval)
    lazy = mf.to_inference_data(streamed(sim, path), x_eval=x_eval)
    for g in ("predictions", "predictions_constant_data"):
        xr.testing.assert_allclose(lazy[g], ref[g], rtol=1e-6, atol=1e-7)
        assert lazy[g].attrs == ref[g].attrs
    xr.testing.assert_identical(lazy.posterior.load(), ref.posterior)
    for g in lazy.groups():
        lazy[g].close()
    assert (
        write_predictions(
            path, x_eval, kernel=kernel, model_args=(data.x, data.y), model_kwargs={"width": WIDTH}, batch_draws=4
        )
        == 6
    )
    back = load(path)
    for g in ("predictions", "predictions_constant_data"):
        xr.testing.assert_allclose(back[g], ref[g], rtol=1e-6, atol=1e-7)
        assert back[g].attrs == ref[g].attrs
    # f = sum_j m_j phi_j with the stored masses: predictions used the weighted measure
    f, phi, m = back.predictions["f"].values, back.predictions["phi"].values, back.posterior["masses"].values
    np.testing.assert_allclose(np.einsum("cdj,cdju->cdu", m, phi), f[..., : phi.shape[-1]], rtol=1e-5, atol=1e-6)


def test_energy_fn_single_prior_array(tmp_path):
    """An energy_fn kernel with one prior yields one particle array: stored as 'theta'
    (chain, draw, particle), identical to to_inference_data, and its output_fn gets the array back
    when predicting from the file (f = sum_j m_j theta_j)."""
    kernel = mf.WassersteinFlow(
        energy_fn=lambda th, m, c: 0.5 * (jnp.sum(m * th) - c) ** 2, prior=dist.Normal(0.0, 1.0), width=5, step_size=0.1
    )
    sim = mf.simulate(kernel, jax.random.PRNGKey(0), 1.0, num_steps=5, num_chains=3, progress_bar=False)
    assert not isinstance(sim.samples, dict)
    path = tmp_path / "theta.nc"
    write(path, sim, kernel, [0, 2, 5], (1.0,), {})
    output_fn = lambda th, m, x: jnp.sum(m * th)  # noqa: E731 - needs th to be the array
    ref = mf.to_inference_data(sim, kernel=kernel, output_fn=output_fn)
    back = load(path)
    assert set(back.groups()) == {"posterior", "sample_stats"}
    for g in ("posterior", "sample_stats"):
        xr.testing.assert_identical(back[g], ref[g])
    assert back.posterior["theta"].dims == ("chain", "draw", "particle")
    lazy = mf.to_inference_data(streamed(sim, path), output_fn=output_fn)
    np.testing.assert_allclose(lazy.predictions["f"].values, ref.predictions["f"].values, rtol=1e-6)
    np.testing.assert_allclose(lazy.predictions["f"].values[..., 0], sim.samples.mean(-1), rtol=1e-5)


CRASH = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from mfsample.io import DrawWriter

    writer = DrawWriter(sys.argv[1], num_chains=2)            # never closed
    for i, k in enumerate((3, 1, 2)):
        start = writer.draws_written
        step = np.arange(start, start + k, dtype=np.int32)[None].repeat(2, 0)
        a = (step[..., None] + np.arange(4)).astype(np.float32)  # a[c, d, j] = draw + j
        writer.append({"a": a, "b": 2 * a}, {"step": step, "diverging": step % 2 == 0})
    print("appended", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_writer_leaves_a_readable_file(tmp_path):
    """A process SIGKILLed after three appends, its writer never closed: arviz opens the file with
    the six draws appended, with the values written."""
    path = tmp_path / "crash.nc"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and "appended" in proc.stdout, proc.stderr
    back = load(path)
    a = back.posterior["a"].values
    assert a.shape == (2, 6, 4) and back.posterior["a"].dims == ("chain", "draw", "particle")
    np.testing.assert_array_equal(a, np.arange(6)[None, :, None] + np.arange(4) + np.zeros((2, 1, 1)))
    np.testing.assert_array_equal(back.posterior["b"].values, 2 * a)
    np.testing.assert_array_equal(back.sample_stats["diverging"].values[0], np.arange(6) % 2 == 0)
    np.testing.assert_array_equal(back.posterior["time"].values, np.arange(6.0))  # no step_size: t = draw
    assert count_draws(path) == 6


def test_draws_of_an_interrupted_append_are_trimmed_on_resume(wfr_run, problem, tmp_path):
    """A crash in the middle of an append leaves the posterior longer than the recorded draws (here
    made by hand: 2 extra draws of zeros). count_draws ignores them, resume(keep=None) trims them,
    resume(keep=3) drops later draws too, and appending the rest gives the uninterrupted file."""
    data, _ = problem
    kernel, sim = wfr_run
    args, kwargs = (data.x, data.y), {"width": WIDTH}
    path = tmp_path / "run.nc"
    write(path, sim, kernel, [0, 2, 4], args, kwargs)
    with h5netcdf.File(str(path), "a") as f:  # the posterior of a chunk half-written, then the crash
        f["posterior"].resize_dimension("draw", 6)
    assert count_draws(path) == 4
    writer = DrawWriter.resume(path, kernel=kernel, model_args=args, model_kwargs=kwargs, num_chains=2)
    assert writer.draws_written == 4 and load(path).posterior.sizes["draw"] == 4
    writer = DrawWriter.resume(
        path, keep=3, kernel=kernel, model_args=args, model_kwargs=kwargs, num_chains=2, num_draws=6
    )
    writer.append(chunk(sim.samples, 3, 6), chunk(sim.stats, 3, 6))
    ref = mf.to_inference_data(sim, kernel=kernel)
    back = load(path)
    for g in GROUPS:
        xr.testing.assert_identical(back[g], ref[g])
    with pytest.raises(ValueError, match="holds 6 draws; cannot resume after draw 7"):
        DrawWriter.resume(path, keep=7, kernel=kernel, model_args=args, model_kwargs=kwargs, num_chains=2)


def test_refusals(wfr_run, problem, tmp_path):
    """Clear errors: an existing path (unless overwrite=True), a chunk with another site shape, a
    missing site, inconsistent draws between sites, more draws than num_draws, and append after
    close."""
    data, _ = problem
    kernel, sim = wfr_run
    args, kwargs = (data.x, data.y), {"width": WIDTH}
    path = tmp_path / "run.nc"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="exists"):
        DrawWriter(path, kernel=kernel, model_args=args, model_kwargs=kwargs, num_chains=2)
    assert path.read_text() == "precious"
    writer = DrawWriter(
        path, kernel=kernel, model_args=args, model_kwargs=kwargs, num_chains=2, num_draws=6, overwrite=True
    )
    writer.append(chunk(sim.samples, 0, 2), chunk(sim.stats, 0, 2))
    bad = chunk(sim.samples, 2, 4)
    with pytest.raises(ValueError, match=r"w: the file has dims .* shape \(2, 4, 3\).* shape \(2, 4, 2\)"):
        writer.append({**bad, "w": bad["w"][..., :2]}, chunk(sim.stats, 2, 4))
    with pytest.raises(ValueError, match="masses is missing from the chunk"):
        writer.append({k: v for k, v in bad.items() if k != "masses"}, chunk(sim.stats, 2, 4))
    with pytest.raises(ValueError, match="same number of draws"):
        writer.append({**bad, "a": sim.samples["a"][:, 2:3]}, chunk(sim.stats, 2, 4))
    with pytest.raises(ValueError, match="num_chains=2"):
        writer.append(chunk(sim.samples, 2, 4)["w"][:1], chunk(sim.stats, 2, 4))
    with pytest.raises(ValueError, match="exceeds num_draws=6"):
        writer.append(chunk(sim.samples, 0, 5), chunk(sim.stats, 0, 5))
    assert writer.draws_written == 2 and count_draws(path) == 2  # the refused chunks wrote nothing
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        writer.append(chunk(sim.samples, 2, 4), chunk(sim.stats, 2, 4))
    plain = tmp_path / "plain.nc"
    xr.Dataset({"v": ("x", np.arange(3))}).to_netcdf(plain, engine="h5netcdf")
    with pytest.raises(ValueError, match="not written by mfsample.io.DrawWriter"):
        DrawWriter.resume(plain, num_chains=2)


@pytest.mark.skipif(
    "output" not in inspect.signature(mf.simulate).parameters, reason="simulate(..., output=) is not available yet"
)
def test_streamed_simulate_equals_in_memory(problem, tmp_path):
    """simulate(..., output=path) keeps no draws and its file equals the in-memory run of the same
    key (same compiled chunks: identical; 1e-6 relative allowed for a different chunking of the
    scan), and to_inference_data opens it."""
    data, x_eval = problem
    kernel = mf.WassersteinFisherRao(mf.models.shallow_network, step_size=0.1, rate=5.0, mode="weighted")
    kw = dict(width=WIDTH, num_steps=12, save_every=2, num_chains=2, progress_bar=False)
    mem = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, **kw)
    path = tmp_path / "sim.nc"
    sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, output=str(path), **kw)
    assert sim.samples is None and sim.output == str(path) and os.path.isfile(path)
    ref = mf.to_inference_data(mem, kernel=kernel, x_eval=x_eval)
    back = mf.to_inference_data(sim, x_eval=x_eval)
    for g in GROUPS + ("predictions",):
        xr.testing.assert_allclose(back[g].load(), ref[g], rtol=1e-6, atol=1e-7)
        assert back[g].attrs == ref[g].attrs
    np.testing.assert_array_equal(back.posterior["time"].values, ref.posterior["time"].values)


def test_open_streamed_by_path(wfr_run, problem, tmp_path):
    """open_streamed(path, kernel=...) gives the file's groups plus the in-memory predictions; a run
    that was not streamed is refused."""
    data, x_eval = problem
    kernel, sim = wfr_run
    path = tmp_path / "run.nc"
    write(path, sim, kernel, [0, 3, 6], (data.x, data.y), {"width": WIDTH})
    ref = mf.to_inference_data(sim, kernel=kernel, x_eval=x_eval, unit_points=2)
    lazy = open_streamed(
        path,
        kernel=kernel,
        model_args=(data.x, data.y),
        model_kwargs={"width": WIDTH},
        x_eval=x_eval,
        unit_points=2,
        batch_draws=4,
    )
    assert set(lazy.groups()) == set(ref.groups())
    xr.testing.assert_allclose(lazy.predictions, ref.predictions, rtol=1e-6, atol=1e-7)
    assert lazy.predictions["phi"].sizes["unit_point"] == 2
    for g in lazy.groups():
        lazy[g].close()
    with pytest.raises(ValueError, match="not streamed to a file"):
        open_streamed(sim, x_eval=x_eval)
