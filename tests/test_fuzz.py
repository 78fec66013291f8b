"""Property-based tests of the public entry points (Hypothesis).

Random shapes, dtypes and sizes (empty included), non-finite values, wrong types and mismatched
states go into ``simulate``, the kernels (through ``MCMC`` and the functional face),
``to_inference_data``, the diagnostics and the baselines.  Each example is a valid call with at
most one *fault* (a wrong argument).  The property: a call with a fault raises a documented error
-- ``ValueError`` or ``TypeError`` whose message names the faulty argument -- and a call without
one returns arrays that are finite and shaped as requested.

The default suite runs the Hypothesis profile ``mfsample`` (10 derandomized examples per property:
the same examples every run, see tests/conftest.py); each property has a ``_slow`` twin (``-m slow``)
running the profile ``mfsample-slow`` (200 examples).
"""

from __future__ import annotations

import functools
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402

import mfsample as mf  # noqa: E402
from mfsample.baselines import KernelRidge, arc_cosine_kernel, feature_ridge, random_feature_kernel  # noqa: E402

SN = mf.models.shallow_network
ERRORS = (ValueError, TypeError)


def both_profiles(strategy, slow_strategy=None):
    """``(test, test_slow)``: the property under the default profile, and under ``mfsample-slow``
    marked ``slow`` (over ``slow_strategy`` when given: wider, so costlier, examples)."""

    def make(check):
        fast = given(strategy)(check)
        wide = given(strategy if slow_strategy is None else slow_strategy)(check)
        return fast, pytest.mark.slow(settings(settings.get_profile("mfsample-slow"))(wide))

    return make


def assert_finite(tree):
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        if a.dtype.kind in "fc":
            assert np.all(np.isfinite(a)), a


def outcome(fn, names):
    """``fn()`` when the call has no fault (``names`` empty); else check that it raises a documented
    error whose message names one of ``names`` (the faulty argument's names) and return ``None``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate-run warnings are not failures
        if not names:
            return fn()
        with pytest.raises(ERRORS) as info:
            fn()
    message = str(info.value)
    assert any(n in message for n in names), f"{info.typename}: {message!r} names none of {names}"
    return None


def _real_arrays(shape, dtype="float32"):
    if dtype == "int32":
        return arrays(np.int32, shape, elements=st.integers(-3, 3))
    return arrays(np.dtype(dtype), shape, elements=st.floats(-3, 3, width=32))


def _key(kind, seed=1):
    return {
        "raw": jax.random.PRNGKey(seed),
        "typed": jax.random.key(seed),
        "int": seed,
        "batch": jax.random.split(jax.random.PRNGKey(seed), 2),
        "float_array": np.zeros(2, np.float32),
    }[kind]


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------
KERNELS = {  # one instance each: examples of the same shapes reuse the compiled runners
    "wasserstein": mf.WassersteinFlow(SN, step_size=0.1),
    "langevin": mf.MeanFieldLangevin(SN, step_size=0.05, temperature=1e-3),
    "mala": mf.MeanFieldLangevin(SN, step_size=0.05, temperature=1e-2, adjusted=True),
    "kinetic": mf.kernels.KineticLangevin(SN, step_size=0.1, temperature=1e-3),
    "birth_death": mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0),
    "weighted": mf.WassersteinFisherRao(SN, step_size=0.1, rate=1.0, mode="weighted"),
}
#: kernels that move uniformly weighted particles only (masses are a fault for them)
UNIFORM_ONLY = ("mala", "birth_death")
#: fault -> the names its error message may use
SIMULATE_FAULTS = {
    None: (),
    "empty_data": ("x", "data"),
    "nan_x": ("x", "model_args[0]"),
    "inf_y": ("y", "model_args[1]"),
    "y_length": ("y",),
    "x_one_dim": ("x",),
    "width_0": ("width",),
    "width_float": ("width",),
    "width_str": ("width",),
    "num_steps_0": ("num_steps",),
    "save_every_0": ("save_every",),
    "save_every_too_large": ("save_every",),
    "num_chains_0": ("num_chains",),
    "key_int": ("rng_key",),
    "key_batch": ("rng_key",),
    "key_float": ("rng_key",),
    "masses_shape": ("masses",),
    "masses_negative": ("masses",),
    "masses_nan": ("masses",),
    "masses_sum": ("masses",),
    "masses_uniform_only": ("masses", "weighted"),
}


def _masses(kind, width):
    m = np.random.default_rng(width).dirichlet(np.ones(width)).astype(np.float32)
    if kind == "zero" and width > 1:
        m[0] = 0.0
        m = m / m.sum()
    return {
        "masses_shape": np.full(width + 1, 1.0 / (width + 1), np.float32),
        "masses_negative": np.concatenate([[-0.5], np.full(width - 1, 1.5 / max(width - 1, 1))]).astype(np.float32),
        "masses_nan": np.where(np.arange(width) == 0, np.nan, m).astype(np.float32),
        "masses_sum": 2 * m,
    }.get(kind, m)


#: ranges of the sizes of a simulate example: all of them under -m slow; in the default suite a
#: few fixed ones, so that its examples share a handful of compiled runs
WIDE = dict(num_data=(1, 6), dim=(1, 3), width=(1, 5), num_steps=(1, 6), save_every=(1, 6), num_chains=(1, 3))
NARROW = dict(num_data=(4, 4), dim=(2, 2), width=(3, 3), num_steps=(4, 4), save_every=(2, 2), num_chains=(1, 2))


@st.composite
def simulate_cases(draw, kinds=tuple(KERNELS), sizes=WIDE):
    size = {k: draw(st.integers(*bounds)) for k, bounds in sizes.items()}
    num_data, dim, width, num_steps = size["num_data"], size["dim"], size["width"], size["num_steps"]
    kind = draw(st.sampled_from(sorted(kinds)))
    fault = draw(st.sampled_from([None, None, None, None] + [f for f in SIMULATE_FAULTS if f]))
    x = draw(_real_arrays((num_data, dim), draw(st.sampled_from(["float32", "float64", "int32"]))))
    y = draw(_real_arrays((num_data,)))
    case = dict(kind=kind, fault=fault, x=x, y=y, width=width, num_steps=num_steps)
    case.update(save_every=min(size["save_every"], num_steps), num_chains=size["num_chains"])
    case.update(key=draw(st.sampled_from(["raw", "typed"])), masses=None)
    if kind not in UNIFORM_ONLY and draw(st.booleans()):
        case["masses"] = _masses(draw(st.sampled_from(["dirichlet", "zero"])), width)
    if fault == "empty_data":
        case.update(x=x[:0], y=y[:0])
    elif fault == "nan_x":
        case["x"] = x.astype(np.float32)
        case["x"].flat[draw(st.integers(0, x.size - 1))] = np.nan
    elif fault == "inf_y":
        case["y"] = np.where(np.arange(num_data) == 0, np.inf, y).astype(np.float32)
    elif fault == "y_length":
        case["y"] = np.zeros(num_data + 1, np.float32)
    elif fault == "x_one_dim":
        case["x"] = x[:, 0]
    elif fault in ("width_0", "width_float", "width_str"):
        case.update(width={"width_0": 0, "width_float": float(width), "width_str": str(width)}[fault], masses=None)
    elif fault in ("num_steps_0", "save_every_0", "num_chains_0"):
        case[fault.removesuffix("_0")] = 0
    elif fault == "save_every_too_large":
        case["save_every"] = num_steps + 1
    elif fault in ("key_int", "key_batch", "key_float"):
        case["key"] = {"key_int": "int", "key_batch": "batch", "key_float": "float_array"}[fault]
    elif fault == "masses_uniform_only":  # refused before any compilation: every kernel may be drawn
        case.update(kind=draw(st.sampled_from(UNIFORM_ONLY)), masses=_masses("dirichlet", width))
    elif fault is not None:  # the other masses faults
        case["masses"] = _masses(fault, width)
    return case


def check_simulate(case):
    kw = dict(width=case["width"]) if case["masses"] is None else dict(width=case["width"], masses=case["masses"])
    sim = outcome(
        lambda: mf.simulate(
            KERNELS[case["kind"]],
            _key(case["key"]),
            case["x"],
            case["y"],
            num_steps=case["num_steps"],
            save_every=case["save_every"],
            num_chains=case["num_chains"],
            progress_bar=False,
            **kw,
        ),
        SIMULATE_FAULTS[case["fault"]],
    )
    if sim is None:
        return
    chains, draws = case["num_chains"], case["num_steps"] // case["save_every"]
    num_data, dim = np.shape(case["x"])
    assert sim.samples["w"].shape == (chains, draws, case["width"], dim)
    assert sim.samples["f"].shape == (chains, draws, num_data)
    assert all(v.shape == (chains, draws) for v in sim.stats.values())
    assert_finite((sim.samples, sim.stats, sim.last_state.z))


# the default examples run the two cheapest kernels (each new shape compiles a run); -m slow all six
test_simulate, test_simulate_slow = both_profiles(
    simulate_cases(("wasserstein", "weighted"), NARROW), simulate_cases()
)(check_simulate)


# ---------------------------------------------------------------------------------------------
# the kernels through MCMC, and the functional face
# ---------------------------------------------------------------------------------------------
_DATA = mf.data.teacher_student(jax.random.PRNGKey(0), dim=2, teacher_width=2, num_data=8)
INIT_FAULTS = {
    None: (),
    "wrong_shape": ("init_params['w']", "position_or_key['w']"),
    "nan": ("non-finite",),
    "missing": ("missing ['b']",),
    "unknown": ("unknown ['c']",),
    "not_a_dict": ("must be a dict",),
    "wrong_chains": ("init_params",),
    "bool": ("real numbers",),
}


def _init_params(fault, width, chains):
    lead = (chains,) if chains > 1 else ()
    if fault == "wrong_chains":
        lead = (chains + 1,)
    z = {"a": np.zeros(lead + (width,)), "w": np.ones(lead + (width, 2)), "b": np.zeros(lead + (width,))}
    if fault == "wrong_shape":
        z["w"] = np.ones(lead + (width, 3))
    elif fault == "nan":
        z["a"] = np.full(lead + (width,), np.nan)
    elif fault == "missing":
        del z["b"]
    elif fault == "unknown":
        z["c"] = z["a"]
    elif fault == "not_a_dict":
        return z["a"]
    elif fault == "bool":
        z["b"] = z["b"] > 0
    return z


@st.composite
def mcmc_cases(draw, kinds=("wasserstein",), widths=(2,), chains=(2,)):
    return dict(
        kind=draw(st.sampled_from(kinds)),
        width=draw(st.sampled_from(widths)),
        num_chains=draw(st.sampled_from(chains)),
        fault=draw(st.sampled_from([None, None, "init"] + [f for f in INIT_FAULTS if f])),
    )


def check_mcmc(case):
    width, chains, fault = case["width"], case["num_chains"], case["fault"]
    init = None if fault is None else _init_params(None if fault == "init" else fault, width, chains)
    mcmc = MCMC(
        KERNELS[case["kind"]],
        num_warmup=0,
        num_samples=2,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    names = INIT_FAULTS[None if fault == "init" else fault]
    outcome(lambda: mcmc.run(jax.random.PRNGKey(2), _DATA.x, _DATA.y, width=width, init_params=init), names)
    if names:
        return
    assert mcmc.get_samples(group_by_chain=True)["w"].shape == (chains, 2, width, 2)
    assert_finite(mcmc.get_samples())
    if fault == "init":  # started where it was told: w = 1 moved by at most a few dt * |drift|
        assert np.all(np.abs(np.asarray(mcmc.get_samples()["w"]) - 1.0) < 1.0)


test_mcmc, test_mcmc_slow = both_profiles(
    mcmc_cases(), mcmc_cases(("wasserstein", "weighted", "kinetic"), (2, 3), (1, 2, 3))
)(check_mcmc)

FACES = {
    "wasserstein_flow": lambda e, dt: mf.dynamics.wasserstein_flow(e, step_size=dt),
    "mean_field_langevin": lambda e, dt: mf.dynamics.mean_field_langevin(e, step_size=dt, temperature=1e-3),
    "kinetic_langevin": lambda e, dt: mf.dynamics.kinetic_langevin(e, step_size=dt, temperature=1e-3),
}
_ENERGY = mf.energy_from_model(SN, (_DATA.x, _DATA.y), {"width": 3})


@st.composite
def face_cases(draw):
    fault = draw(st.sampled_from([None, None, "step_size", "start", "step_key"]))
    return dict(
        face=draw(st.sampled_from(sorted(FACES))),
        fault=fault,
        step_size=draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf"), "0.1", True, None]))
        if fault == "step_size"
        else 0.1,
        start=draw(st.sampled_from([f for f in INIT_FAULTS if f not in (None, "wrong_chains")]))
        if fault == "start"
        else draw(st.sampled_from(["key", "good"])),
        step_key=draw(st.sampled_from(["int", "batch", "float_array"]))
        if fault == "step_key"
        else draw(st.sampled_from(["raw", "typed"])),
    )


def check_face(case):
    fault = case["fault"]
    algo = outcome(lambda: FACES[case["face"]](_ENERGY, case["step_size"]), ("step_size",) * (fault == "step_size"))
    if algo is None:
        return
    start = case["start"]
    position = jax.random.PRNGKey(0) if start == "key" else _init_params(None if start == "good" else start, 3, 1)
    names = tuple(n.replace("init_params", "position_or_key") for n in INIT_FAULTS.get(start, ()))
    state = outcome(lambda: algo.init(position), names)
    if state is None:
        return
    new = outcome(lambda: algo.step(_key(case["step_key"], 3), state)[0], ("rng_key",) * (fault == "step_key"))
    if new is None:
        return
    assert {k: v.shape for k, v in new.z.items()} == {"a": (3,), "w": (3, 2), "b": (3,)}
    assert_finite((new.z, new.energy, new.drift))


test_functional_face, test_functional_face_slow = both_profiles(face_cases())(check_face)


# ---------------------------------------------------------------------------------------------
# to_inference_data
# ---------------------------------------------------------------------------------------------
@functools.cache
def _run():
    """A small simulate run (2 chains, 4 draws, width 4, dimension 2), made once, on first use."""
    kernel = KERNELS["wasserstein"]
    return mf.simulate(
        kernel, jax.random.PRNGKey(1), _DATA.x, _DATA.y, width=4, num_steps=4, num_chains=2, progress_bar=False
    )


CONVERT_FAULTS = {
    None: (),
    "x_eval_nan": ("x_eval",),
    "x_eval_dims": ("x_eval",),
    "x_eval_str": ("x_eval",),
    "x_eval_bool": ("x_eval",),
    "x_eval_scalar": ("x_eval",),
    "x_eval_empty": ("x_eval",),
    "unit_points_negative": ("unit_points",),
    "unit_points_float": ("unit_points",),
    "batch_size_0": ("batch_size",),
    "batch_size_float": ("batch_size",),
    "run_string": ("run",),
    "run_none": ("run",),
    "run_dict": ("run",),
    "no_kernel": ("kernel",),
}


@st.composite
def convert_cases(draw):
    fault = draw(st.sampled_from([None, None, None] + [f for f in CONVERT_FAULTS if f]))
    x_eval = draw(st.one_of(st.none(), st.integers(1, 3).flatmap(lambda m: _real_arrays((m, 2)))))
    case = dict(fault=fault, run="sim", x_eval=x_eval)
    case.update(unit_points=draw(st.sampled_from([None, 0, 2, 16])), batch_size=draw(st.sampled_from([None, 1, 3])))
    bad = {  # fault -> (argument, value)
        "x_eval_nan": ("x_eval", np.array([[np.nan, 0.0]], np.float32)),
        "x_eval_dims": ("x_eval", np.zeros((2, 3), np.float32)),
        "x_eval_str": ("x_eval", "x"),
        "x_eval_bool": ("x_eval", np.zeros((2, 2), bool)),
        "x_eval_scalar": ("x_eval", 1.0),
        "x_eval_empty": ("x_eval", np.zeros((0, 2), np.float32)),
        "unit_points_negative": ("unit_points", -1),
        "unit_points_float": ("unit_points", 2.5),
        "batch_size_0": ("batch_size", 0),
        "batch_size_float": ("batch_size", 1.5),
    }
    if fault in bad:
        argument, value = bad[fault]
        case[argument] = value
    elif fault is not None:
        case["run"] = fault
    return case


def check_convert(case):
    sim = _run()
    run = {"sim": sim, "run_string": "run.nc", "run_none": None, "run_dict": {}, "no_kernel": sim._replace(kernel=None)}
    kw = {k: case[k] for k in ("x_eval", "unit_points", "batch_size")}
    idata = outcome(lambda: mf.to_inference_data(run[case["run"]], **kw), CONVERT_FAULTS[case["fault"]])
    if idata is None:
        return
    assert idata.posterior["w"].shape == (2, 4, 4, 2)
    assert idata.sample_stats["objective"].shape == (2, 4)
    if case["x_eval"] is not None:
        m = np.shape(case["x_eval"])[0]
        assert idata.predictions["f"].shape == (2, 4, m)
        if "phi" in idata.predictions:
            assert idata.predictions["phi"].shape == (2, 4, 4, min(m, case["unit_points"]))
    for group in idata.groups():
        assert_finite([v.values for v in idata[group].data_vars.values()])


test_to_inference_data, test_to_inference_data_slow = both_profiles(convert_cases())(check_convert)


# ---------------------------------------------------------------------------------------------
# diagnostics on hand-built runs
# ---------------------------------------------------------------------------------------------
DIAGNOSTIC_FAULTS = {
    None: (),
    "one_chain": ("replicas", "num_chains >= 2"),
    "no_draws": ("share no time",),
    "no_points": ("evaluation point", "non-finite"),
    "nan": ("non-finite",),
    "string_run": ("InferenceData",),
    "string_key": ("every key of runs",),
    "not_a_dict": ("dict",),
    "no_posterior": ("posterior",),
}


def _hand_run(rng, chains, draws, width, points, *, phi=False):
    times = np.arange(draws) * 0.5
    f = rng.normal(size=(chains, draws, points))
    post = xr.Dataset(
        {
            "f": (("chain", "draw", "data"), f),
            "a": (("chain", "draw", "particle"), rng.normal(size=(chains, draws, width))),
        },
        coords={"time": ("draw", times)},
    )
    stats = xr.Dataset({"objective": (("chain", "draw"), rng.normal(size=(chains, draws)) ** 2)})
    groups = dict(posterior=post, sample_stats=stats)
    if phi:
        groups["predictions"] = xr.Dataset(
            {
                "f": (("chain", "draw", "eval_point"), f),
                "phi": (("chain", "draw", "particle", "unit_point"), rng.normal(size=(chains, draws, width, 2))),
            },
            coords={"time": ("draw", times)},
        )
    return az.InferenceData(**groups)


@st.composite
def diagnostic_cases(draw):
    fault = draw(st.sampled_from([None, None, None] + [f for f in DIAGNOSTIC_FAULTS if f]))
    return dict(
        fault=fault,
        widths=draw(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=3, unique=True)),
        chains=1 if fault == "one_chain" else draw(st.integers(2, 4)),
        draws=0 if fault == "no_draws" else draw(st.integers(1, 3)),
        points=0 if fault == "no_points" else draw(st.integers(1, 3)),
        phi=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _diagnostic_runs(case):
    rng = np.random.default_rng(case["seed"])
    widths, fault = case["widths"], case["fault"]
    runs = {n: _hand_run(rng, case["chains"], case["draws"], n, case["points"], phi=case["phi"]) for n in widths}
    if fault == "nan":
        runs[widths[0]].posterior["f"][0, 0, 0] = np.nan
        runs[widths[0]].posterior["a"][0, 0, 0] = np.nan
        if case["phi"]:
            runs[widths[0]].predictions["f"][0, 0, 0] = np.nan
    elif fault == "string_run":
        runs[widths[0]] = "run.nc"
    elif fault == "string_key":
        runs = {str(k): v for k, v in runs.items()}
    elif fault == "not_a_dict":
        runs = list(runs.values())
    elif fault == "no_posterior":
        runs[widths[0]] = az.InferenceData(sample_stats=runs[widths[0]].sample_stats)
    return runs


def check_diagnostics(case):
    runs, names, widths = _diagnostic_runs(case), DIAGNOSTIC_FAULTS[case["fault"]], case["widths"]
    fl = outcome(lambda: mf.diagnostics.fluctuations(runs, num_bootstrap=10), names)
    if fl is not None:
        assert fl["fluctuation"].shape == (len(widths), case["draws"])
        assert_finite([fl["fluctuation"].values, fl["variance"].values, fl["fluctuation_ci"].values])
    if case["fault"] == "no_points":  # no output is needed for the particle statistics
        names = ()
    ch = outcome(lambda: mf.diagnostics.chaos(runs, num_bootstrap=10, num_projections=5), names)
    if ch is not None:
        assert ch["marginal_variance"].shape == (len(ch["observable"]), len(widths), case["draws"])
        assert_finite(ch["marginal_variance"].values)
        assert_finite(ch["covariance"].sel(width=[n for n in widths if n >= 2]).values)
        assert_finite(ch["mmd"].sel(width=[n for n in widths if n != max(widths)]).values)
    if isinstance(runs, dict) and case["fault"] not in ("string_key", "no_points"):
        one = runs[widths[0]]
        names = {
            "one_chain": (),  # summary of one run needs no replicas (energy_sd is NaN, documented)
            "nan": (),  # a non-stationary summary reads the energy only
            "no_draws": ("one draw",),
            "string_run": ("summary reads",),
        }.get(case["fault"], names)
        out = outcome(lambda: mf.diagnostics.summary(one), names)
        if out is not None:
            assert out["energy_mean"].shape == (case["draws"],)
            assert_finite([out["energy_mean"].values, out["energy_final"].values])


test_diagnostics, test_diagnostics_slow = both_profiles(diagnostic_cases())(check_diagnostics)


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------
# Non-finite data and an empty feature matrix (once silent NaN results or a failure inside NumPy)
# are checked by the explicit test below rather than generated.
BASELINE_FAULTS = {
    None: (),
    "y_length": ("y",),
    "x_test_dim": ("inputs", "shape"),
    "ridge_negative": ("ridge",),
    "ridge_nan": ("ridge",),
}


@st.composite
def baseline_cases(draw):
    fault = draw(st.sampled_from([None, None] + [f for f in BASELINE_FAULTS if f]))
    num_data, dim, num_test = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(0, 3))
    return dict(
        fault=fault,
        x=draw(_real_arrays((num_data, dim))),
        y=draw(_real_arrays((num_data + (fault == "y_length"),))),
        x_test=draw(_real_arrays((num_test, dim + (fault == "x_test_dim")))),
        ridge={"ridge_negative": -1.0, "ridge_nan": float("nan")}.get(fault, draw(st.sampled_from([1e-2, 1.0, None]))),
    )


def check_baselines(case):
    x, y, x_test, ridge, fault = case["x"], case["y"], case["x_test"], case["ridge"], case["fault"]
    names = BASELINE_FAULTS[fault]
    k = outcome(lambda: arc_cosine_kernel(x, x_test), names if fault == "x_test_dim" else ())
    if k is not None:
        assert k.shape == (x.shape[0], x_test.shape[0])
        assert_finite(k)
    fit = outcome(
        lambda: KernelRidge(random_feature_kernel("relu"), ridge=ridge).fit(x, y),
        names if fault in ("y_length", "ridge_negative", "ridge_nan") else (),
    )
    if fit is not None:
        pred = outcome(lambda: fit.predict(x_test), names)
        if pred is not None:
            assert pred.shape == (x_test.shape[0],)
            assert_finite(pred)
    fr = outcome(
        lambda: feature_ridge(jnp.tanh(jnp.asarray(x)), y, ridge),
        names if fault in ("y_length", "ridge_negative", "ridge_nan") else (),
    )
    if fr is not None:  # (selection scores may be inf: an interpolating ridge has GCV score 1/0)
        assert_finite((fr.coef, fr.ridge))


test_baselines, test_baselines_slow = both_profiles(baseline_cases())(check_baselines)


def test_baselines_refuse_non_finite_and_empty_data():
    """What the fuzzing found in the baselines: each call should raise a ValueError naming its input."""
    x = np.ones((4, 2), np.float32)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    y_nan = np.array([np.nan, 0.0, 1.0, 2.0], np.float32)
    for call in (
        lambda: arc_cosine_kernel(x_nan, x),
        lambda: KernelRidge(random_feature_kernel("relu"), ridge=0.1).fit(x_nan, np.zeros(4, np.float32)),
        lambda: feature_ridge(jnp.tanh(x), y_nan, 0.1),
        lambda: feature_ridge(jnp.zeros((0, 2)), jnp.zeros(0), 0.1),
    ):
        with pytest.raises(ValueError, match="x|y|psi|finite|empty"):
            call()
