"""``mfsample run`` on the depth-three network (``model.network = "deep"``): schema, run, resume, report.

Claims checked: a deep configuration resolves with its defaults (``model.first_activation``,
``dynamics.shared_step_scale``; ``model.hidden`` unset means ``2 d``) and survives a TOML round
trip; a shallow configuration resolves exactly as before the deep network existed (no new key, so
the fingerprints of existing run directories stay put); every option the deep network has no use
for, and every combination that cannot work, is refused naming its key; ``[sweep]`` may sweep
``shared_step_scale`` for the deep network only.  End to end through the command line: the draws
file holds the shared sites ``U``, ``c`` without a ``particle`` dimension beside the particles, the
held-out predictions use the trained first layer, the flow lowers the energy, a run killed after a
checkpoint resumes to the uninterrupted draws bit for bit, the report (fluctuations, chaos and
marginals over the particle sites) runs, and the packaged ``depth`` study runs at tiny size.

Cost: the subprocesses share a persistent JAX compilation cache (``cli_env``); about 45 s (the
packaged study, another 25 s, is marked slow).
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from mfsample.cli.build import make_kernel, model_kwargs
from mfsample.cli.config import (
    SCHEMA,
    ConfigError,
    fingerprint,
    load_config,
    packaged_config_path,
    packaged_configs,
    resolve,
    sweep_axes,
    sweep_points,
    to_toml,
)
from mfsample.models import deep_network

#: the keys of the deep network (none of them may appear in a shallow network's configuration)
DEEP_KEYS = {
    "model.network",
    "model.hidden",
    "model.first_activation",
    "dynamics.shared_step_scale",
    "sweep.shared_step_scale",
}

#: a small deep run: 10 checkpoints of 4 steps (so that it can be killed between them), 2 replicas
TINY_DEEP = """
[experiment]
name = "tiny_deep"

[data]
dim = 3
teacher_width = 2
num_data = 64
num_test = 16
seed = 0

[model]
network = "deep"
width = 8
hidden = 5
first_activation = "tanh"

[dynamics]
kernel = "langevin"
step_size = 0.5
temperature = 1e-4
shared_step_scale = 2.0

[run]
steps = 40
save_every = 4
checkpoint_every = 4
chains = 2
seed = 3

[diagnostics]
fluctuations = true
chaos = true
marginals = true
num_bootstrap = 20
"""


def _keys(cfg: dict, prefix: str = "") -> set:
    out = set()
    for k, v in cfg.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _errors(raw) -> dict:
    with pytest.raises(ConfigError) as exc:
        resolve(raw)
    return dict(exc.value.errors)


# ---------------------------------------------------------------------------------------------
# the schema
# ---------------------------------------------------------------------------------------------
def test_deep_config_fills_its_defaults_and_round_trips():
    cfg = resolve({"model": {"network": "deep", "width": 8}, "data": {"dim": 3}})
    model = cfg["model"]
    assert model["network"] == "deep" and model["first_activation"] == "relu"
    assert "hidden" not in model and "prior" not in model  # hidden unset: 2 d; no prior scales
    assert cfg["dynamics"]["shared_step_scale"] == 1.0
    assert resolve(tomllib.loads(to_toml(cfg))) == cfg
    given = resolve({"model": {"network": "deep", "hidden": 6, "first_activation": "tanh"}})
    assert given["model"]["hidden"] == 6 and resolve(tomllib.loads(to_toml(given))) == given
    # the kernel and the model's arguments: deep_network with every [model] value, eta from [dynamics]
    cfg = resolve({"model": {"network": "deep", "hidden": 6, "bias": False}, "dynamics": {"shared_step_scale": 3.0}})
    kernel = make_kernel(cfg)
    assert kernel.model is deep_network and kernel.shared_step_scale == 3.0
    assert model_kwargs(cfg, 16) == dict(
        width=16, hidden=6, activation="relu", first_activation="relu", scaling="mean_field", bias=False, noise=1.0
    )
    assert "hidden" not in model_kwargs(resolve({"model": {"network": "deep"}}), 16)


def test_shallow_configs_resolve_as_before():
    """No key of the deep network appears in a shallow network's resolved configuration, and
    ``network = "shallow"`` given is the default not given: same configuration, same fingerprint
    (the run directories of earlier versions resume)."""
    names = [n for n in packaged_configs() if n != "depth"]
    assert {"quickstart", "global_convergence", "fluctuations", "chaos", "f1_vs_f2"} <= set(names)
    for name in names:
        cfg = load_config(packaged_config_path(name))
        assert not _keys(cfg) & DEEP_KEYS, name
        if cfg["experiment"]["kind"] == "simulate":
            explicit = load_config(packaged_config_path(name), ["model.network=shallow"])
            assert explicit == cfg and fingerprint(explicit) == fingerprint(cfg), name
    kernel = make_kernel(load_config(packaged_config_path("quickstart")))
    assert kernel.model is not deep_network and kernel.shared_step_scale == 1.0
    assert _keys(load_config(packaged_config_path("depth"))) >= DEEP_KEYS - {"model.hidden"}


@pytest.mark.parametrize(
    "raw, path, fragment",
    [
        ({"model": {"network": "deep", "prior": {"a_scale": 2.0}}}, "model.prior.a_scale", "network = 'shallow'"),
        ({"model": {"network": "deep", "prior": {"w_scale": 0.5}}}, "model.prior.w_scale", "network = 'shallow'"),
        ({"model": {"network": "deep", "weight_decay": 0.1}}, "model.weight_decay", "no weight-decay term"),
        ({"model": {"network": "deep"}, "baselines": {"f1_optimum": True}}, "baselines.f1_optimum", "shallow"),
        ({"experiment": {"kind": "f1_vs_f2"}, "model": {"network": "deep"}}, "model.network", "f1_vs_f2"),
        ({"model": {"network": "wide"}}, "model.network", "'shallow', 'deep'"),
        ({"model": {"hidden": 4}}, "model.hidden", "network = 'deep'"),
        ({"model": {"first_activation": "tanh"}}, "model.first_activation", "network = 'deep'"),
        ({"dynamics": {"shared_step_scale": 2.0}}, "dynamics.shared_step_scale", "network = 'deep'"),
        ({"sweep": {"shared_step_scale": [1.0, 2.0]}}, "sweep.shared_step_scale", "network = 'deep'"),
        ({"model": {"network": "deep", "hidden": 0}}, "model.hidden", ">= 1"),
        ({"model": {"network": "deep"}, "dynamics": {"shared_step_scale": 0.0}}, "dynamics.shared_step_scale", "> 0"),
        ({"model": {"network": "deep", "first_activation": "relu6"}}, "model.first_activation", "must be one of"),
    ],
)
def test_what_does_not_apply_is_refused_naming_the_key(raw, path, fragment):
    errors = _errors(raw)
    assert path in errors and fragment in errors[path], errors


def test_switching_to_the_deep_network_drops_the_prior_scales(tmp_path):
    """``--set model.network=deep`` on a shallow file drops its prior scales, with a note."""
    path = tmp_path / "shallow.toml"
    path.write_text("[model]\nwidth = 8\n[model.prior]\na_scale = 2.0\n")
    notes: list = []
    cfg = load_config(path, ["model.network=deep"], notes)
    assert cfg["model"]["network"] == "deep" and "prior" not in cfg["model"]
    assert any("model.prior.a_scale" in n and "network = 'shallow'" in n for n in notes), notes


def test_sweep_of_the_shared_time_scale_is_deep_only():
    cfg = resolve(
        {
            "model": {"network": "deep"},
            "dynamics": {"kernel": "langevin"},
            "sweep": {"shared_step_scale": [0.5, 2.0], "temperature": [0.0, 1e-3]},
        }
    )
    assert sweep_axes(cfg) == {"temperature": [0.0, 1e-3], "shared_step_scale": [0.5, 2.0]}  # the kernel's order
    assert sweep_points(cfg)[:2] == [
        {"temperature": 0.0, "shared_step_scale": 0.5},
        {"temperature": 0.0, "shared_step_scale": 2.0},
    ]
    assert make_kernel(cfg).replace(shared_step_scale=2.0).shared_step_scale == 2.0
    # the parameters a shallow network's sweep may list do not name it
    shallow = _errors({"dynamics": {"kernel": "langevin"}, "sweep": {"rate": [1.0]}})
    assert "its parameters: step_size, temperature)" in shallow["sweep.rate"]
    deep = _errors({"model": {"network": "deep"}, "dynamics": {"kernel": "langevin"}, "sweep": {"rate": [1.0]}})
    assert "its parameters: step_size, temperature, shared_step_scale)" in deep["sweep.rate"]
    assert "shared_step_scale" in SCHEMA["sweep"] and "shared_step_scale" in SCHEMA["dynamics"]


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------
def netcdf_arrays(path) -> dict:
    """Every variable of every group of an InferenceData file, as numpy arrays."""
    import arviz

    idata = arviz.from_netcdf(path)
    return {f"{g}/{v}": getattr(idata, g)[v].values for g in idata.groups() for v in getattr(idata, g).data_vars}


@pytest.fixture(scope="module")
def tiny_deep(tmp_path_factory):
    path = tmp_path_factory.mktemp("configs") / "tiny_deep.toml"
    path.write_text(TINY_DEEP)
    return path


@pytest.fixture(scope="module")
def deep_run(cli, cli_env, tiny_deep, tmp_path_factory):
    """An uninterrupted run of the tiny deep configuration."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = cli(cli_env, "run", tiny_deep, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_draws_hold_the_shared_sites_and_the_flow_trains(deep_run):
    import arviz

    idata = arviz.from_netcdf(deep_run / "draws" / "width_8.nc")
    post = idata.posterior
    assert post["U"].dims[:2] == ("chain", "draw") and "particle" not in post["U"].dims
    assert post["U"].shape == (2, 11, 5, 3) and post["c"].shape == (2, 11, 5)  # hidden x d, no particle axis
    assert post["w"].dims[:3] == ("chain", "draw", "particle") and post["w"].shape == (2, 11, 8, 5)
    assert not np.allclose(post["U"].values[:, -1], post["U"].values[:, 0])  # the first layer moved
    energy = idata.sample_stats["objective"].values
    assert np.all(energy[:, -1] < energy[:, 0] - 1e-3), energy[:, [0, -1]]


def test_held_out_predictions_use_the_trained_first_layer(deep_run):
    """``predictions.f`` at the held-out inputs is the network of each draw, first layer included."""
    import arviz
    from numpyro import handlers

    idata = arviz.from_netcdf(deep_run / "draws" / "width_8.nc")
    x_eval = idata.predictions_constant_data["x_eval"].values
    for chain in range(2):
        draw = idata.posterior.isel(chain=chain, draw=-1)
        params = {k: draw[k].values for k in ("U", "c", "a", "w", "b")}
        model = handlers.substitute(handlers.seed(deep_network, 0), data=params)
        f = handlers.trace(model).get_trace(x_eval, width=8, hidden=5, first_activation="tanh")["f"]["value"]
        stored = idata.predictions["f"].isel(chain=chain, draw=-1).values
        np.testing.assert_allclose(stored, np.asarray(f), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_killed_deep_run_resumes_to_the_uninterrupted_draws(
    cli, cli_env, tiny_deep, deep_run, tmp_path, kill_cli_after_checkpoint
):
    """SIGKILL after the second of ten checkpoints, the same command again: the draws (shared sites,
    particles, statistics, predictions) equal the uninterrupted run's bit for bit."""
    out = tmp_path / "killed"
    kill_cli_after_checkpoint(cli_env, "run", tiny_deep, "--out", out, "--progress", "lines")
    assert not (out / "draws").exists()
    resumed = cli(cli_env, "run", tiny_deep, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stderr
    a = netcdf_arrays(deep_run / "draws" / "width_8.nc")
    b = netcdf_arrays(out / "draws" / "width_8.nc")
    assert a.keys() == b.keys() and {"posterior/U", "posterior/c", "posterior/w", "predictions/f"} <= a.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_report_of_a_deep_run(cli, cli_env, deep_run):
    """``report`` recomputes fluctuations, chaos and marginals over the particle sites."""
    proc = cli(cli_env, "report", deep_run)
    assert proc.returncode == 0, proc.stderr
    assert (deep_run / "report.html").is_file()
    summary = json.loads((deep_run / "summary.json").read_text())
    assert {"fluctuations.png", "chaos.png", "marginals.png"} <= set(summary["figures"])
    assert set(summary["chaos"]["covariance"]) >= {"a", "w_norm", "b"}
    assert not {"U", "c"} & set(summary["chaos"]["covariance"])  # shared sites are no particle observables
    row = summary["widths"][0]
    assert row["energy_final"] < row["energy_initial"]


@pytest.mark.slow  # ~25 s: another compilation (the sweep's)
def test_packaged_depth_study_runs_at_tiny_size(cli, cli_env, tmp_path):
    """The packaged ``depth`` configuration (a sweep of the first layer's time scale) runs end to end
    at tiny size, one row per time scale, and the report is written."""
    sets = ["model.width=8", "data.num_data=64", "data.dim=3", "data.num_test=16", "run.steps=20"]
    out = tmp_path / "depth"
    proc = cli(cli_env, "run", "depth", "--out", out, *(a for s in sets for a in ("--set", s)))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["shared_step_scale"] for r in summary["sweep"]["rows"]] == [0.01, 1.0, 10.0]
    assert all(r["excess_final"] < r["excess_initial"] for r in summary["sweep"]["rows"])
    assert "sweep.png" in summary["figures"]
