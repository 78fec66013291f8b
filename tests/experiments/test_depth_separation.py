"""Tests of mfsample/experiments/depth_separation.py: shallow, depth-three and kernel models on the
depth-separation targets, and the variation norm of the exact F1 optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import mfsample as mf
from mfsample.baselines import KernelRidge, RandomFeatures, f1_optimum, random_feature_kernel
from mfsample.experiments import depth_separation
from mfsample.experiments.depth_separation import (
    MODELS,
    TARGETS,
    error_table,
    findings,
    headline_table,
    main,
    make_target,
    width_to_reach,
)

SMALL = dict(
    targets=("radial",),
    dims=(3,),
    widths=(8,),
    seeds=(0, 1),
    num_data=32,
    num_test=64,
    num_steps=20,
    step_size=0.5,
    f1_dims=(1,),
    frequencies=(1, 2),
    f1_num_data=12,
)


@pytest.fixture(scope="module")
def small():
    return depth_separation(**SMALL)


def test_dataset_structure_and_summaries(small):
    """Dims and coordinates as documented; the median and percentile variables are those of the
    per-seed relative errors, which are the test errors over the target's variance on the test set."""
    assert small["relative_error"].dims == ("target", "dim", "width", "model", "seed")
    assert small["relative_error_median"].dims == ("target", "dim", "width", "model")
    assert small["variation_norm"].dims == ("f1_dim", "frequency")
    assert list(small["model"].values) == list(MODELS)
    assert np.all(np.isfinite(small["relative_error"].values))
    err = small["relative_error"].values
    np.testing.assert_allclose(small["relative_error_median"].values, np.median(err, axis=-1))
    np.testing.assert_allclose(small["relative_error_lower"].values, np.percentile(err, 10, axis=-1))
    np.testing.assert_allclose(small["relative_error_upper"].values, np.percentile(err, 90, axis=-1))
    np.testing.assert_allclose(small["relative_error"], small["test_error"] / small["target_variance"], rtol=1e-12)
    assert small.attrs["num_steps"] == 20 and small.attrs["hidden_factor"] == 2
    np.testing.assert_allclose(small["time"], 20 * small["dt"])
    assert not small["diverged"].any()
    # the kernel does not depend on the seed: one fit, repeated
    kernel = small["test_error"].sel({"model": "kernel"}).values
    assert np.all(kernel == kernel[..., :1])


def _setup(ds, target="radial", dim=3):
    """The study's data and test inputs of ``(target, dim)``, rebuilt from the documented keys."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), TARGETS.index(target)), dim)
    data = make_target(target, key, dim=dim, num_data=ds.attrs["num_data"])
    x_test = data.sample(jax.random.fold_in(key, 1), ds.attrs["num_test"])[0]
    return data, x_test


def _error(f, data, x):
    return float(jnp.mean((f - data.target(x)) ** 2))


def test_trained_entries_recomputed_from_simulate(small):
    """The shallow and depth-three Wasserstein flows rerun by ``mf.simulate`` from the documented
    initial draws of seeds 0 and 1 (as two chains, in seed order) at the documented step
    ``0.5 / max(1, mean x^2)``, with the networks written out by hand: the same test error for each
    seed (float32: rtol 1e-4)."""
    data, x_test = _setup(small)
    d, n = 3, 8
    dt = 0.5 / max(1.0, float(jnp.mean(data.x**2)))
    assert float(small["dt"].sel(target="radial", dim=d)) == pytest.approx(dt, rel=1e-6) and dt < 0.5
    keys = [jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(s), d), n) for s in (0, 1)]
    for model, name in ((mf.models.shallow_network, "wasserstein"), (mf.models.deep_network, "depth_three")):
        kwargs = {"width": n} | ({"hidden": 2 * d} if name == "depth_three" else {})
        energy = mf.energy_from_model(model, (data.x, data.y), kwargs)
        z0 = jax.tree.map(lambda *v: jnp.stack(v), *[energy.sample_prior(k) for k in keys])
        sim = mf.simulate(mf.WassersteinFlow(model, step_size=dt), jax.random.PRNGKey(7), data.x, data.y,
                          num_steps=20, num_chains=2, init_params=z0, collect_deterministic=False,
                          progress_bar=False, **kwargs)  # fmt: skip
        for s in (0, 1):
            p = {k: v[s, -1] for k, v in sim.samples.items()}
            h = jax.nn.relu(x_test @ p["U"].T / np.sqrt(d) + p["c"]) if name == "depth_three" else x_test
            f = jax.nn.relu(h @ p["w"].T + p["b"]) @ p["a"] / n
            sel = {"target": "radial", "dim": d, "width": n, "model": name, "seed": s}
            assert float(small["test_error"].sel(sel)) == pytest.approx(_error(f, data, x_test), rel=1e-4), (name, s)
            assert np.abs(p["w"] - z0["w"][s]).max() > 1e-3  # the particles did move


def test_baseline_entries_equal_direct_fits(small):
    """Random features on seed 0's initial first layer and kernel ridge with the random-feature
    kernel, both with the GCV ridge, fitted directly: the Dataset holds their errors."""
    data, x_test = _setup(small)
    d, n = 3, 8
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), d), n)
    z0 = mf.energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": n}).sample_prior(key)
    rf = RandomFeatures(n, units={"w": z0["w"], "b": z0["b"]}).fit(data.x, data.y)
    kr = KernelRidge(random_feature_kernel("relu"), None).fit(data.x, data.y)
    at = small["test_error"].sel({"target": "radial", "dim": d, "width": n})
    assert float(at.sel({"model": "random_features", "seed": 0})) == pytest.approx(
        _error(rf.predict(x_test), data, x_test), rel=1e-5
    )
    assert float(at.sel({"model": "kernel", "seed": 0})) == pytest.approx(
        _error(kr.predict(x_test), data, x_test), rel=1e-5
    )


def test_variation_norm_entry_is_the_f1_optimum(small):
    """The d = 1, n = 2 entry is ``|mu*|_TV`` of ``f1_optimum`` on the documented samples."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), 1), 2)
    data = mf.data.radial_target(key, dim=1, num_data=12, num_oscillations=2)
    sol = f1_optimum(np.asarray(data.x), np.asarray(data.y), reg=1e-4)
    assert float(small["variation_norm"].sel(f1_dim=1, frequency=2)) == pytest.approx(sol.tv, rel=1e-6)
    assert float(small["f1_atoms"].sel(f1_dim=1, frequency=2)) == len(sol.weights)


def _synthetic(depth, shallow, rf=1.0):
    """A Dataset of relative-error medians (no spread over seeds) on (radial, d in 4 8 16, M in 8 32 128)."""
    models = ["wasserstein", "birth_death", "depth_three", "random_features", "kernel"]
    med = np.empty((1, 3, 3, 5))
    med[0, :, :, 0] = med[0, :, :, 1] = shallow
    med[0, :, :, 2] = depth
    med[0, :, :, 3] = rf
    med[0, :, :, 4] = 0.3
    coords = {"target": ["radial"], "dim": [4, 8, 16], "width": [8, 32, 128], "model": models}
    names = ("target", "dim", "width", "model")
    return xr.Dataset({f"relative_error_{k}": (names, med) for k in ("median", "lower", "upper")}, coords=coords)


def test_tables_and_findings_read_the_medians():
    """A separation by construction: the shallow networks reach 0.5 at widths 8, 32, 128 as d
    grows, the depth-three network at width 8 in every d and below the shallow ones everywhere."""
    shallow = np.array([[0.4, 0.3, 0.2], [0.8, 0.45, 0.3], [0.9, 0.8, 0.45]])
    depth = np.full((3, 3), 0.1)
    ds = _synthetic(depth, shallow)
    first = width_to_reach(ds, 0.5)
    np.testing.assert_array_equal(first.sel({"model": "wasserstein"}).values[0], [8, 32, 128])
    assert np.all(np.isinf(first.sel({"model": "kernel"}).values))
    table = headline_table(ds, 0.5)
    assert list(table.columns) == ["d=4", "d=8", "d=16"]
    assert list(table.loc[("radial", "wasserstein")]) == ["8", "32", "128"]
    assert list(table.loc[("radial", "random_features")]) == ["> 128"] * 3
    assert list(table.loc[("radial", "kernel")]) == ["inf"] * 3
    assert error_table(ds).loc[("radial", "depth_three"), "d=16"] == "0.1 [0.1, 0.1]"
    lines = findings(ds, 0.5)
    assert lines[0].startswith("confirmed: on the radial target the depth-three network beats")
    assert lines[1].startswith("confirmed: on the radial target the width a shallow network needs")
    assert lines[2].startswith("confirmed: on the radial target the trained shallow network (F1) beats random")
    # the opposite ordering is reported as contradicted, a shallow width flat in d likewise
    flipped = findings(_synthetic(shallow, depth), 0.5)
    assert flipped[0].startswith("contradicted") and flipped[1].startswith("contradicted")
    assert lines[2].endswith("d=4: 0.2 vs 1, holds; d=8: 0.3 vs 1, holds; d=16: 0.45 vs 1, holds)")
    # random features ahead in d = 4 only (as after the exact SVD of the feature matrix): the F1 > F2
    # claim is mixed, reversed in d = 4; equal medians (no spread) are overlapping intervals
    rf = np.ones((3, 3))
    rf[0, -1] = 0.1
    mixed = findings(_synthetic(depth, shallow, rf), 0.5)[2]
    assert mixed.startswith("mixed: on the radial target the trained shallow network (F1) beats random"), mixed
    assert "d=4: 0.2 vs 0.1, reversed; d=8: 0.3 vs 1, holds" in mixed
    rf[1:, -1] = shallow[1:, -1]
    assert "d=4: 0.2 vs 0.1, reversed; d=8: 0.3 vs 0.3, overlap" in findings(_synthetic(depth, shallow, rf), 0.5)[2]
    assert findings(_synthetic(depth, shallow, rf), 0.5)[2].startswith("not resolved")
    # nothing reaches the threshold: not resolved, with the widths shown as "> 128"
    none = findings(_synthetic(np.full((3, 3), 0.9), np.full((3, 3), 0.95)), 0.5)
    assert none[1].startswith("not resolved") and "> 128" in none[1]
    # diverged runs are counted in a note, case by case
    ds["diverged"] = xr.DataArray(
        np.zeros((1, 3, 3, 5, 2), bool), coords=ds.coords, dims=(*ds["relative_error_median"].dims, "seed")
    )
    ds["diverged"][0, 2, 1, 0] = True
    note = findings(ds, 0.5)[-1]
    assert note.startswith("note: 2 trained runs diverged") and note.endswith("radial d=16 M=32 wasserstein (2)")


def test_cli_reruns_the_study_and_writes_netcdf(small, tmp_path, count_compilations):
    """The CLI with the same settings gives the same Dataset (deterministic in its arguments; the
    compiled programmes are reused) and writes it to netCDF."""
    out = tmp_path / "depth.nc"
    argv = ["--targets", "radial", "--dims", "3", "--widths", "8", "--seeds", "0", "1", "--num-data", "32",
            "--num-test", "64", "--num-steps", "20", "--step-size", "0.5", "--f1-dims", "1", "--frequencies",
            "1", "2", "--f1-num-data", "12", "--option", "radial.num_oscillations=1", "--out", str(out)]  # fmt: skip
    with count_compilations() as counter:
        cli = main(argv)
    xr.testing.assert_allclose(cli, small, rtol=1e-6)
    assert counter.count == 0  # the compiled programmes are found again (cached by the kernels' structure)
    loaded = xr.load_dataset(out, engine="h5netcdf")
    np.testing.assert_array_equal(loaded["relative_error"].values, cli["relative_error"].values)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="targets must be a non-empty selection"):
        depth_separation(targets=("sawtooth",))
    with pytest.raises(ValueError, match="models must be a non-empty selection"):
        depth_separation(models=("lasso",))
    with pytest.raises(ValueError, match="dimension 1 or 2"):
        depth_separation(targets=("radial",), dims=(2,), widths=(4,), models=("kernel",), num_data=8,
                         num_test=8, f1_dims=(3,))  # fmt: skip
    with pytest.raises(ValueError, match="target_options keys must be"):
        depth_separation(target_options={"sawtooth": {}})
    with pytest.raises(ValueError, match="interval must be two percentiles"):
        depth_separation(interval=(90, 10))
    with pytest.raises(SystemExit):
        main(["--option", "radial=1"])


@pytest.mark.slow
def test_errors_decrease_with_width_on_the_deep_relu_target():
    """On the homogeneous deep ReLU target in d = 4 (N = 512, 1000 steps of dt = 1, three seeds),
    every width-dependent model's median relative error falls by more than 1.2x from width 8 to
    width 128 (measured medians 0.040 -> 0.027 for the Wasserstein flow, 0.040 -> 0.024 for
    birth-death, 0.077 -> 0.046 for the depth-three network, 0.47 -> 0.019 for random features:
    drops of 1.45x to 24x).  The margin is below the smallest measured drop and above the spread
    over seeds at width 128 (10-90% intervals within 15% of the median, except the depth-three
    network's 0.036-0.070).  No run diverges.  The variation norm of the exact F1 optimum of the
    radial target in d = 1 grows with the number n of oscillations (theory 16 pi n^2 = 50, 201, 804
    at n = 1, 2, 4; measured 50, 221, 461 on 32 samples, which under-resolve n = 4): at least 1.5x
    per doubling of n is required, with the samples interpolated (loss < 1e-2) and the optimum
    certified (relative duality gap < 1e-2), so that |mu*|_TV is their minimal variation norm."""
    ds = depth_separation(targets=("deep_relu",), dims=(4,), widths=(8, 128), seeds=(0, 1, 2), num_data=512,
                          num_test=2048, num_steps=1000, step_size=1.0, f1_dims=(1,), frequencies=(1, 2, 4),
                          f1_num_data=32)  # fmt: skip
    median = ds["relative_error_median"].sel({"target": "deep_relu", "dim": 4})
    for model in ("wasserstein", "birth_death", "depth_three", "random_features"):
        narrow, wide = (float(median.sel({"model": model, "width": w})) for w in (8, 128))
        assert wide < narrow / 1.2, (model, narrow, wide)
    assert not ds["diverged"].any()
    tv = ds["variation_norm"].sel(f1_dim=1).values
    assert tv[1] > 1.5 * tv[0] and tv[2] > 1.5 * tv[1], tv
    assert float(ds["f1_loss"].max()) < 1e-2 and float(ds["f1_gap"].max()) < 1e-2
