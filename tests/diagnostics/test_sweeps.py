"""The diagnostics on a sweep's InferenceData (a ``config`` dimension, mfsample/diagnostics/configs.py).

One configuration selected (by index or by its swept values) gives exactly the diagnostic of the
same run converted on its own (``to_inference_data(sweep.config(c))``); without ``config=`` every
configuration is analysed in turn and the results keep the ``config`` dimension and its
coordinates.  The runs: the quadratic energy of test_fluctuations.py at widths 4 and 8, a
temperature x step-size grid (4 configurations, so the configurations' times differ), 4 replicas.
"""

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
import xarray as xr

import mfsample as mf
from mfsample.diagnostics import chaos, configs, fluctuations, plots, summary, unit_variance

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

C = 1.5  # the energy of the Gibbs case of conftest.py (kappa = 2)
WIDTHS = (4, 8)
GRID = {"temperature": [0.5, 1.0], "step_size": [0.1, 0.2]}
LABELS = [
    "temperature=0.5, step_size=0.1",
    "temperature=0.5, step_size=0.2",
    "temperature=1, step_size=0.1",
    "temperature=1, step_size=0.2",
]
CONVERT = dict(output_fn=lambda theta, m, x: jnp.sum(m * theta), unit_points=1)
FAST = dict(num_bootstrap=40, seed=3)
CHAOS = dict(max_points=40, num_projections=10, **FAST)


@pytest.fixture(scope="module")
def sweeps(gibbs_kernel_of_width):
    """The Gibbs case of conftest.py swept over GRID (temperature, step size) at each width."""
    return {
        n: mf.sweep(
            gibbs_kernel_of_width(n),
            jax.random.PRNGKey(n),
            C,
            grid=GRID,
            num_steps=32,
            save_every=4,
            num_chains=4,
            progress_bar=False,
        )
        for n in WIDTHS
    }


@pytest.fixture(scope="module")
def runs(sweeps):
    """``{width: InferenceData}`` with a ``config`` dimension of 4 configurations."""
    return {n: mf.to_inference_data(sw, **CONVERT) for n, sw in sweeps.items()}


@pytest.fixture(scope="module")
def alone(sweeps):
    """``alone(c)``: ``{width: InferenceData}`` of configuration ``c`` converted without the sweep."""
    return lambda c: {n: mf.to_inference_data(sw.config(c), **CONVERT) for n, sw in sweeps.items()}


def assert_same_inference_data(a, b):
    assert a.groups() == b.groups()
    for group in b.groups():
        xr.testing.assert_identical(a[group], b[group])


# ---------------------------------------------------------------------------------------------
# selecting one configuration
# ---------------------------------------------------------------------------------------------
def test_a_selected_configuration_is_the_run_converted_alone(runs, alone):
    """Every group, variable, coordinate and attribute (the swept values restored as attributes,
    ``swept`` dropped) equals the conversion of ``sweep.config(c)``."""
    assert configs.labels(runs[8]) == LABELS
    for c in range(4):
        one = configs.select(runs[8], c)
        assert_same_inference_data(one, alone(c)[8])
        assert one.posterior.attrs["temperature"] == GRID["temperature"][c // 2]
        assert "swept" not in one.posterior.attrs and "config" not in one.posterior.dims
    picked = configs.select(runs, {"temperature": 1.0, "step_size": 0.1})
    for n in WIDTHS:
        assert_same_inference_data(picked[n], alone(2)[n])


@pytest.mark.parametrize("config", [1, {"temperature": 0.5, "step_size": 0.2}])
def test_fluctuations_chaos_summary_of_one_configuration_equal_the_run_alone(runs, alone, config):
    single = alone(1)
    xr.testing.assert_identical(fluctuations(runs, config=config, **FAST), fluctuations(single, **FAST))
    xr.testing.assert_identical(chaos(runs, config=config, **CHAOS), chaos(single, **CHAOS))
    res = summary(runs[8], config=config)
    xr.testing.assert_identical(res, summary(single[8]))
    assert res.attrs["stationary"] == 1 and "metric" in res.dims  # the temperature attribute was restored
    assert unit_variance(runs[4], config=config) == unit_variance(single[4])


def test_an_analytic_reference_per_configuration_is_taken_with_its_configuration(runs, alone):
    """A reference DataArray over ``config`` is compared with its own configuration's runs."""
    limit = xr.DataArray([0.9, 1.0, 1.1, 1.2], dims="config")
    grouped = fluctuations(runs, reference=limit, **FAST)
    for c in range(4):
        one = fluctuations(alone(c), reference=float(limit[c]), **FAST)
        xr.testing.assert_identical(configs.select(grouped, c).sel(time=one["time"]), one)
    with pytest.raises(ValueError, match="reference has 2 configurations but the runs have 4"):
        fluctuations(runs, reference=limit[:2], **FAST)


# ---------------------------------------------------------------------------------------------
# every configuration in turn
# ---------------------------------------------------------------------------------------------
def test_grouped_results_keep_the_config_dimension_and_equal_each_selection(runs):
    """fluctuations, chaos, summary and unit_variance without ``config=``: a ``config`` dimension
    labelled with the swept values, each configuration equal to selecting it (at its own times:
    the step sizes differ, so each configuration is NaN at the others' times)."""
    grouped = {
        "fluctuations": (fluctuations(runs, **FAST), lambda c: fluctuations(runs, config=c, **FAST)),
        "chaos": (chaos(runs, **CHAOS), lambda c: chaos(runs, config=c, **CHAOS)),
    }
    for name, (res, one) in grouped.items():
        assert res["fluctuation" if name == "fluctuations" else "covariance"].dims[0] == "config"
        np.testing.assert_array_equal(res["temperature"], [0.5, 0.5, 1.0, 1.0])
        np.testing.assert_array_equal(res["step_size"], [0.1, 0.2, 0.1, 0.2])
        assert res.attrs["swept"] == "temperature,step_size"
        for c in range(4):
            expected = one(c)
            sel = configs.select(res, c)
            xr.testing.assert_identical(sel.sel(time=expected["time"]), expected)
            others = ~np.isin(sel["time"], expected["time"])
            assert others.any() and np.all(
                np.isnan(sel["fluctuation" if name == "fluctuations" else "covariance"][..., others])
            )
    uv = unit_variance(runs[8])
    assert uv.dims == ("config",)
    np.testing.assert_array_equal(uv, [unit_variance(runs[8], config=c) for c in range(4)])


def test_grouped_summary_is_one_summary_per_configuration(runs):
    """The draws' times differ between configurations: ``time`` becomes a (config, draw)
    coordinate, and ``burn_in_time`` (an attribute of each summary) a variable over config."""
    res = summary(runs[8])
    assert res["energy_mean"].dims == ("config", "draw") and res["time"].dims == ("config", "draw")
    assert res["burn_in_time"].dims == ("config",) and "burn_in_time" not in res.attrs
    for c in range(4):
        one = summary(runs[8], config=c)
        sel = configs.select(res, c)
        np.testing.assert_array_equal(sel["burn_in_time"], one.attrs.pop("burn_in_time"))
        xr.testing.assert_identical(sel.drop_vars("burn_in_time"), one)


def test_without_a_config_dimension_nothing_changes(alone):
    """A run without a sweep: no ``config`` dimension in the results, and ``config=`` refused."""
    single = alone(0)
    res = summary(single[8])
    assert "config" not in res.dims and "swept" not in res.attrs
    assert "config" not in fluctuations(single, **FAST).dims
    with pytest.raises(ValueError, match=r"config=0 was given but the input has no 'config' dimension"):
        fluctuations(single, config=0, **FAST)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, error, message",
    [
        (7, ValueError, r"config=7 is out of range: there are 4 configurations \(0: temperature=0.5, step_size=0.1;"),
        ({"temperature": 3.0}, ValueError, r"matches no configuration; the configurations are 0: temperature=0.5"),
        ({"temperature": 1.0}, ValueError, r"matches the configurations \[2, 3\]; the configurations are 0:"),
        (
            {"beta": 1.0},
            ValueError,
            r"'beta' is not swept; the swept hyper-parameters are \['temperature', 'step_size'\]",
        ),
        ({"temperature": "hot"}, ValueError, r"'temperature' takes a number"),
        ("hot", TypeError, r"config must be an index or a \{name: value\} dict of swept values, got str 'hot'"),
        (True, TypeError, r"got bool True"),
    ],
)
def test_a_configuration_that_matches_none_or_several_is_refused(runs, config, error, message):
    with pytest.raises(error, match=message):
        summary(runs[8], config=config)
    with pytest.raises(error, match=message):
        fluctuations(runs, config=config, **FAST)


def test_runs_of_different_sweeps_are_refused(runs, alone):
    with pytest.raises(ValueError, match=r"the runs keyed \[8\] have no 'config' dimension"):
        fluctuations({4: runs[4], 8: alone(0)[8]}, **FAST)
    fewer = {4: runs[4], 8: runs[8].isel(config=[0, 1])}
    with pytest.raises(ValueError, match="the runs keyed 4 and 8 have different configurations"):
        chaos(fewer, **CHAOS)


def test_a_per_player_pair_is_matched_as_a_pair():
    """A game's swept pair is a coordinate over (config, player): matched by the pair, labelled
    ``(x, y)``, dropped (with ``player``) on selection and not restored as an attribute."""
    steps = np.array([[0.1, 0.2], [0.1, 0.1]])
    posterior = xr.Dataset(
        {"x": (("chain", "draw", "config"), np.arange(8.0).reshape(2, 2, 2))},
        coords={"config": [0, 1], "step_size": (("config", "player"), steps), "player": ["x", "y"]},
        attrs={"swept": "step_size"},
    )
    idata = az.InferenceData(posterior=posterior)
    assert configs.labels(idata) == ["step_size=(0.1, 0.2)", "step_size=(0.1, 0.1)"]
    assert configs.index(idata, {"step_size": (0.1, 0.1)}) == 1
    one = configs.select(idata, {"step_size": [0.1, 0.2]}).posterior
    assert not {"config", "step_size", "player"} & set(one.coords) and one.attrs == {}
    np.testing.assert_array_equal(one["x"], posterior["x"].isel(config=0))
    with pytest.raises(ValueError, match="takes a pair"):
        configs.index(idata, {"step_size": (0.1, 0.2, 0.3)})


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results(runs):
    return fluctuations(runs, **FAST), chaos(runs, **CHAOS)


def test_plots_draw_one_line_or_panel_per_configuration(runs, results):
    fl, ch = results
    try:
        fig = plots.plot_fluctuations(fl)
        assert [ax.get_title() for ax in fig.axes] == LABELS
        for c, ax in enumerate(fig.axes):  # one line per width, at the configuration's own times
            own = configs.select(fl, c).dropna("time", how="all")
            np.testing.assert_array_equal(ax.lines[1].get_ydata(), own["fluctuation"].sel(width=8))
        ax = plots.plot_exponent(fl)
        assert [line.get_label() for line in ax.lines[:4]] == LABELS
        fig = plots.plot_chaos(ch)
        assert len(fig.axes) == 4 * ch.sizes["observable"]
        assert fig.axes[2].get_title().startswith(LABELS[1] + "\n")
        assert len(plots.plot_distances(ch).axes) == 8
        assert [ax.get_title().split("\n")[0] for ax in plots.plot_marginals(runs, "theta").axes[::3]] == LABELS
        assert [line.get_label() for line in plots.plot_energy(runs[8]).lines] == LABELS
        ax = plots.plot_energy(runs[8], config={"temperature": 1.0, "step_size": 0.2})
        assert ax.get_title() == LABELS[3] and len(ax.lines) == 4  # one line per chain, as for one run
        assert [ax.get_title() for ax in plots.plot_fluctuations(fl, config=2).figure.axes] == [LABELS[2]]
        trace = plots.plot_energy_trace(runs[8])
        assert trace.shape == (4, 2) and trace[3, 0].get_title() == f"energy\n{LABELS[3]}"
        ess = np.ravel(plots.plot_ess(runs[8], num_points=1))
        assert sorted(ax.get_title() for ax in ess) == sorted(
            [f"energy\n{x}" for x in LABELS] + [f"f\n{x}, 0" for x in LABELS]
        )
        with pytest.raises(ValueError, match=r"axes holds 2 Axes but the plot needs 4 x 2"):
            plots.plot_distances(ch, axes=plt.subplots(1, 2)[1])
    finally:
        plt.close("all")
