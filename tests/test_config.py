"""``mfsample/cli/config.py``: the TOML schema of ``mfsample run``, its defaults and its validation.

The claims checked: the whole configuration is validated before any compute and *every* error is
reported with its key path (unknown keys, wrong types, out-of-range values, options that do not
apply, inconsistent combinations); resolution is idempotent and survives a TOML round trip; the
fingerprint changes exactly with the values that determine the draws.
"""

from __future__ import annotations

import hashlib
import json
import tomllib

import pytest

from mfsample.cli.config import (
    ACTIVATIONS,
    F1_VS_F2_METHODS,
    KERNELS,
    SWEEP_PARAMETERS,
    ConfigError,
    apply_overrides,
    chain_fingerprint,
    fingerprint,
    load_config,
    packaged_config_path,
    packaged_configs,
    parse_overrides,
    resolve,
    schema_table,
    sweep_points,
    to_toml,
)

PACKAGED = ("quickstart", "global_convergence", "fluctuations", "chaos", "f1_vs_f2")


def _errors(raw, **kw):
    with pytest.raises(ConfigError) as exc:
        resolve(raw, **kw)
    return dict(exc.value.errors)


def test_packaged_configs_are_listed_valid_and_round_trip():
    """Every packaged configuration resolves; writing the resolved configuration as TOML and
    resolving it again gives it back unchanged (the file a run stores is the run it did)."""
    names = packaged_configs()
    assert set(PACKAGED) <= set(names)
    for name in names:
        cfg = load_config(packaged_config_path(name))
        assert resolve(tomllib.loads(to_toml(cfg))) == cfg
        assert cfg["experiment"]["name"] == name


def test_every_error_is_reported_with_its_key_path():
    """Seven independent mistakes give seven errors, each under its own key path, in one exception."""
    raw = {
        "model": {"widht": 16, "width": 0, "prior": {"a_scale": -1.0}},
        "dynamics": {"kernel": "langevin", "temperature": "hot", "rate": 1.0},
        "run": {"steps": 10, "save_every": 20},
        "bogus": {},
    }
    errors = _errors(raw)
    assert set(errors) == {
        "model.widht",
        "model.width",
        "model.prior.a_scale",
        "dynamics.temperature",
        "dynamics.rate",
        "run.save_every",
        "bogus",
    }
    assert "did you mean model.width" in errors["model.widht"]
    assert ">= 1" in errors["model.width"] and "> 0" in errors["model.prior.a_scale"]
    assert "expected a number" in errors["dynamics.temperature"]
    assert "kernel 'wfr'" in errors["dynamics.rate"]  # rate belongs to the WFR kernel
    assert "run.steps = 10" in errors["run.save_every"]
    text = str(ConfigError(list(errors.items()), "x.toml"))
    assert text.startswith("invalid configuration x.toml (7 errors)")


@pytest.mark.parametrize(
    "raw, path, fragment",
    [
        ({"run": {"steps": True}}, "run.steps", "got a boolean"),
        ({"run": {"steps": 2.5}}, "run.steps", "expected an integer"),
        ({"dynamics": {"step_size": float("inf")}}, "dynamics.step_size", "finite"),
        ({"dynamics": {"kernel": "wrf"}}, "dynamics.kernel", "did you mean 'wfr'"),
        ({"model": {"width": [16, 16]}}, "model.width", "repeated"),
        ({"data": {"dim": [2, 3]}}, "data.dim", "single integer"),  # a dim sweep is an f1_vs_f2 feature
        ({"model": "wide"}, "model", "expected a table"),
        ({"run": {"chains": 1}, "diagnostics": {"chaos": True}}, "diagnostics.chaos", "run.chains >= 2"),
        ({"run": {"save_every": 3, "checkpoint_every": 10}}, "run.checkpoint_every", "multiple of run.save_every"),
        ({"dynamics": {"kernel": "wfr"}, "model": {"scaling": "ntk"}}, "model.scaling", "mean-field"),
        ({"baselines": {"f1_optimum": True}}, "baselines.f1_optimum", "weight_decay > 0"),
        ({"experiment": {"kind": "f1_vs_f2"}, "dynamics": {"kernel": "langevin"}}, "dynamics.kernel", "wasserstein"),
        ({"experiment": {"kind": "f1_vs_f2"}, "run": {"chains": 4}}, "run.chains", "does not apply"),
        ({"data": {"source": "file"}}, "data.path", "required"),
    ],
)
def test_single_errors(raw, path, fragment):
    """Each kind of mistake is caught and named: types, ranges, choices, applicability, consistency."""
    errors = _errors(raw)
    assert path in errors, errors
    assert fragment in errors[path]


def test_an_invalid_switch_does_not_cascade():
    """A misspelt kernel is one error: the keys of every kernel are then accepted, not flagged."""
    assert set(_errors({"dynamics": {"kernel": "wrf", "rate": 1.0, "temperature": 0.1}})) == {"dynamics.kernel"}
    assert set(_errors({"dynamics": {"kernel": "wrf"}, "sweep": {"rate": [1.0, 2.0]}})) == {"dynamics.kernel"}


def test_defaults_depend_on_the_kernel_and_the_run_length():
    """Defaults fill exactly the keys that apply: the WFR keys only for 'wfr', save_every ~ T/100,
    checkpoint_every a multiple of save_every giving about ten checkpoints."""
    cfg = resolve({"dynamics": {"kernel": "wfr"}, "run": {"steps": 1234}})
    assert cfg["dynamics"] == {
        "kernel": "wfr",
        "step_size": 0.1,
        "temperature": 0.0,
        "rate": 1.0,
        "mode": "birth_death",
        "birth": "clone",
    }
    run = cfg["run"]
    assert run["save_every"] == 13 and run["checkpoint_every"] % 13 == 0
    assert 9 <= 1234 // run["checkpoint_every"] <= 11
    flow = resolve({})
    assert set(flow["dynamics"]) == {"kernel", "step_size"}
    assert "replicates" not in flow["run"] and "methods" not in flow["baselines"]
    f1f2 = resolve({"experiment": {"kind": "f1_vs_f2"}, "data": {"dim": [4, 8]}})
    assert "chains" not in f1f2["run"] and "diagnostics" not in f1f2 and f1f2["data"]["dim"] == [4, 8]


def test_overrides_parse_toml_values():
    """--set values are TOML values (numbers, booleans, lists), bare words are strings, and a
    malformed item is an error naming it."""
    pairs, errors = parse_overrides(
        [
            "run.steps=200",
            "dynamics.step_size=1e-2",
            "model.width=[8, 16]",
            "model.bias=false",
            "dynamics.kernel=wfr",
            'experiment.name="a b"',
        ]
    )
    assert not errors
    assert dict(pairs) == {
        "run.steps": 200,
        "dynamics.step_size": 0.01,
        "model.width": [8, 16],
        "model.bias": False,
        "dynamics.kernel": "wfr",
        "experiment.name": "a b",
    }
    raw, errors = apply_overrides(
        {"run": {"steps": 5}}, ["run.steps=7", "diagnostics.chaos=true", "oops", "run.steps.x=1"]
    )
    assert raw["run"]["steps"] == 7 and raw["diagnostics"] == {"chaos": True}
    assert [e[0] for e in errors] == ["--set oops", "--set run.steps.x"]


def test_load_config_merges_override_and_file_errors(tmp_path):
    """Errors of the file and of --set are reported together; relative data paths are resolved
    against the configuration's directory."""
    path = tmp_path / "c.toml"
    path.write_text('[data]\nsource = "file"\npath = "xy.npz"\n[run]\nsteps = 0\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["model.width=-1", "nonsense"])
    paths = [p for p, _ in exc.value.errors]
    assert set(paths) == {"--set nonsense", "model.width", "run.steps", "data.path"}
    (tmp_path / "xy.npz").write_bytes(b"")
    cfg = load_config(path, ["run.steps=3"])
    assert cfg["data"]["path"] == str((tmp_path / "xy.npz").resolve())


def test_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\nsteps = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "not valid TOML" in exc.value.errors[0][1] and str(path) in str(exc.value)


def test_a_directory_is_not_a_file(tmp_path):
    """A configuration path or a data.path that is a directory is reported as such, not as a
    missing file."""
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert "is a directory, not a file" in str(exc.value) and "no such file" not in str(exc.value)
    (tmp_path / "data.npz").mkdir()
    errors = _errors({"data": {"source": "file", "path": str(tmp_path / "data.npz")}})
    assert "is a directory, not a file" in errors["data.path"]


def test_chain_fingerprint_leaves_out_only_the_number_of_steps():
    """The chain fingerprint (recorded by the checkpoints of simulate runs, which a longer run
    continues) is the same for another run.steps and changes with every other draw-determining
    value, like the fingerprint."""
    cfg = resolve({"run": {"steps": 400, "save_every": 10, "checkpoint_every": 40}})
    longer = resolve({"run": {"steps": 1000, "save_every": 10, "checkpoint_every": 40}})
    assert chain_fingerprint(cfg) == chain_fingerprint(longer) and fingerprint(cfg) != fingerprint(longer)
    assert chain_fingerprint(cfg) != fingerprint(cfg)
    for change in ({"seed": 1}, {"save_every": 20}, {"checkpoint_every": 80}):
        other = resolve({"run": {"steps": 400, "save_every": 10, "checkpoint_every": 40, **change}})
        assert chain_fingerprint(other) != chain_fingerprint(cfg), change


def test_fingerprint_tracks_exactly_the_draw_determining_values():
    """Same draws <=> same fingerprint: the experiment text, diagnostics, baselines and device
    do not change the draws; the seed, the step size and the width do."""
    cfg = resolve({})
    same = resolve(
        {
            "experiment": {"name": "other", "description": "x"},
            "diagnostics": {"summary": False},
            "run": {"device": "cpu"},
        }
    )
    assert fingerprint(cfg) == fingerprint(same)
    for change in (
        {"run": {"seed": 1}},
        {"dynamics": {"step_size": 0.2}},
        {"model": {"width": 128}},
        {"data": {"seed": 3}},
        {"run": {"checkpoint_every": 50}},
    ):
        assert fingerprint(resolve(change)) != fingerprint(cfg), change


def test_constants_match_the_package():
    """The schema's choices are the package's activations and f1_vs_f2 methods."""
    from mfsample.activations import ACTIVATIONS as PACKAGE_ACTIVATIONS
    from mfsample.experiments.f1_vs_f2 import METHODS

    assert set(ACTIVATIONS) == set(PACKAGE_ACTIVATIONS)
    assert tuple(F1_VS_F2_METHODS) == tuple(METHODS)


def test_schema_table_documents_every_key():
    text = schema_table()
    for key in ("model.prior.w_scale", "dynamics.rate", "run.checkpoint_every", "baselines.f1_optimum"):
        assert key in text


def test_switching_the_kernel_by_override_drops_the_file_keys_that_stop_applying(tmp_path):
    """``--set dynamics.kernel=wasserstein`` on a Langevin file drops its ``temperature`` (with a note)
    instead of failing; the same key given on the command line is still an error."""
    path = tmp_path / "c.toml"
    path.write_text('[dynamics]\nkernel = "langevin"\ntemperature = 0.01\nadjusted = true\n')
    notes = []
    cfg = load_config(path, ["dynamics.kernel=wasserstein"], notes)
    assert cfg["dynamics"] == {"kernel": "wasserstein", "step_size": 0.1}
    assert len(notes) == 2 and "dynamics.temperature" in notes[0]
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["dynamics.kernel=wasserstein", "dynamics.temperature=0.5"])
    assert [p for p, _ in exc.value.errors] == ["dynamics.temperature"]
    # without a switch change, a key that does not apply is an error
    path.write_text('[dynamics]\nkernel = "wasserstein"\ntemperature = 0.01\n')
    with pytest.raises(ConfigError):
        load_config(path)


# ---------------------------------------------------------------------------------------------
# [sweep]
# ---------------------------------------------------------------------------------------------
def test_sweep_parameters_are_the_kernels_numeric_parameters():
    """What [sweep] may list for each kernel is every numeric parameter (``parameter_names``) of
    the kernel that [dynamics] sets, in the kernel's order (the time scale of shared sites,
    ``shared_step_scale``, only with the deep network: tests/test_cli_deep.py)."""
    from mfsample.cli.build import make_kernel
    from mfsample.cli.config import SCHEMA

    assert set(SWEEP_PARAMETERS) == set(KERNELS)
    for kernel in KERNELS:
        names = make_kernel(resolve({"dynamics": {"kernel": kernel}})).parameter_names
        assert SWEEP_PARAMETERS[kernel] == tuple(n for n in names if n in SCHEMA["dynamics"]), kernel
        assert set(names) - set(SWEEP_PARAMETERS[kernel]) <= {"shared_step_scale"}, kernel
        assert set(SWEEP_PARAMETERS[kernel]) <= set(SCHEMA["sweep"])


def test_sweep_points_are_the_grid_of_mf_sweep():
    """A product grid is every combination, the kernel's first parameter slowest, whatever the
    order of the keys in the file (same points, same fingerprint); a zipped grid takes the i-th
    values together; both are the points of ``mf.sweeps.product`` / ``zipped`` (what the run uses)."""
    import mfsample as mf
    from mfsample.cli.build import sweep_grid

    dyn = {"kernel": "langevin"}
    a = resolve({"dynamics": dyn, "sweep": {"temperature": [0.0, 1e-3], "step_size": [0.1, 0.2, 0.4]}})
    b = resolve({"dynamics": dyn, "sweep": {"step_size": [0.1, 0.2, 0.4], "temperature": [0.0, 1e-3]}})
    assert sweep_points(a) == sweep_points(b) and fingerprint(a) == fingerprint(b)
    product = mf.sweeps.product(step_size=[0.1, 0.2, 0.4], temperature=[0.0, 1e-3])
    assert sweep_points(a) == list(product.points) == list(sweep_grid(a).points)
    assert sweep_points(a)[:2] == [{"step_size": 0.1, "temperature": 0.0}, {"step_size": 0.1, "temperature": 1e-3}]
    z = resolve({"dynamics": dyn, "sweep": {"combine": "zipped", "temperature": [0.0, 1e-3], "step_size": [0.1, 0.2]}})
    assert sweep_points(z) == [{"step_size": 0.1, "temperature": 0.0}, {"step_size": 0.2, "temperature": 1e-3}]
    assert sweep_points(z) == list(sweep_grid(z).points) and fingerprint(z) != fingerprint(a)
    assert sweep_points(resolve({})) == []


def test_sweep_defaults_round_trip_and_fingerprints():
    """A [sweep] gets its defaults (a product, own keys) and survives the TOML round trip; a
    configuration without one resolves without the section and keeps the fingerprint it had before
    sweeps existed (the hash of data, model, dynamics and run less run.device), so its run
    directories still resume; the swept values and common_keys change both fingerprints."""
    cfg = resolve({"dynamics": {"kernel": "wfr"}, "sweep": {"rate": [0.0, 1.0]}})
    assert cfg["sweep"] == {"rate": [0.0, 1.0], "combine": "product", "common_keys": False}
    assert resolve(tomllib.loads(to_toml(cfg))) == cfg
    plain = resolve({"dynamics": {"kernel": "wfr"}})
    assert "sweep" not in plain
    part = {k: plain[k] for k in ("data", "model", "dynamics")}
    part["run"] = {k: v for k, v in plain["run"].items() if k != "device"}
    assert fingerprint(plain) == hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()
    for other in ({"rate": [0.0, 2.0]}, {"rate": [0.0, 1.0], "common_keys": True}):
        changed = resolve({"dynamics": {"kernel": "wfr"}, "sweep": other})
        assert fingerprint(changed) != fingerprint(cfg) and chain_fingerprint(changed) != chain_fingerprint(cfg)
    assert fingerprint(cfg) != fingerprint(plain)


def test_switching_the_kernel_drops_the_swept_parameters_it_lacks(tmp_path):
    """``--set dynamics.kernel=wasserstein`` on a Langevin temperature sweep drops the file's
    sweep.temperature with a note (it then lists no parameter: an error naming the section)."""
    path = tmp_path / "c.toml"
    path.write_text('[dynamics]\nkernel = "langevin"\n[sweep]\ntemperature = [0.0, 0.1]\nstep_size = [0.1, 0.2]\n')
    notes = []
    cfg = load_config(path, ["dynamics.kernel=wasserstein"], notes)
    assert cfg["sweep"] == {"step_size": [0.1, 0.2], "combine": "product", "common_keys": False}
    assert any("sweep.temperature" in n for n in notes)
