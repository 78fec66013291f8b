"""Experiment configurations of ``mfsample run``: the TOML schema, its defaults and its validation.

A configuration is a TOML file (read with :mod:`tomllib`) with the sections

* ``[experiment]`` – ``name``, ``kind`` (``"simulate"``: particle runs over one or more widths;
  ``"f1_vs_f2"``: :func:`mfsample.experiments.f1_vs_f2`), ``description``;
* ``[data]`` – a teacher–student problem (:func:`mfsample.data.teacher_student`) or a file of
  ``x``, ``y`` (``.npz`` with arrays ``x``, ``y``; ``.csv`` whose last column is ``y``);
* ``[model]`` – the network: ``network = "shallow"`` (the default,
  :func:`mfsample.models.shallow_network`: width(s), activation, scaling, bias, likelihood noise,
  weight decay and ``[model.prior]`` (``mu0``)) or ``network = "deep"``
  (:func:`mfsample.models.deep_network`: the particles on top of a trained shared first layer
  ``h = sigma_1(U x / sqrt(d) + c)`` of ``hidden`` units, default ``2 d``, activation
  ``first_activation``; width(s), activation, scaling, bias and noise as above; no prior scales,
  no weight decay);
* ``[dynamics]`` – the kernel (``wasserstein``, ``langevin``, ``kinetic``, ``wfr``) and its
  parameters (step size ``dt``, temperature ``tau``, rate ``alpha``, mode, ...; with the deep
  network ``shared_step_scale``, the time scale ``eta`` of the shared first layer);
* ``[sweep]`` – a study: lists of values of the dynamic's numeric parameters (``step_size``,
  ``temperature``, ``friction``, ``rate``; ``shared_step_scale`` with the deep network), every
  combination (``combine = "product"``) or the i-th values together (``"zipped"``); each width
  runs every configuration x ``run.chains`` replicas as one compiled :func:`mfsample.sweep`
  (:func:`sweep_parameters`, :func:`sweep_axes`, :func:`sweep_points`);
* ``[run]`` – steps, save interval, chains (independent replicas), seed, checkpoint interval, device;
* ``[output]`` – ``stream``: append each width's draws to its netCDF file chunk by chunk during the
  run (memory bounded by one checkpoint chunk; :class:`mfsample.io.DrawWriter`) instead of keeping
  ``.npz`` draw checkpoints that are assembled into the netCDF file at the end;
* ``[diagnostics]`` – which diagnostics to compute (summary, fluctuations, chaos, marginals);
* ``[baselines]`` – baselines to fit (the F1 optimum of the shallow network; the methods of
  ``f1_vs_f2``).

:func:`resolve` checks the *whole* configuration before anything is computed and raises one
:class:`ConfigError` listing every problem with its key path (unknown keys, wrong types,
out-of-range values, options that do not apply to the chosen kernel or experiment, inconsistent
combinations); otherwise it returns the *resolved* configuration: every applicable key present,
defaults filled in, nothing else.  ``model.network = "shallow"`` is the default and is not
recorded, so that a shallow network's configuration resolves, and fingerprints, as it did before
the deep network existed (its run directories resume).  :func:`to_toml` writes it back
(``resolve(to_toml(c)) == c``).  :data:`SCHEMA` documents every key; :func:`schema_table` prints
it.  :func:`widths_of`, :func:`network_of`, :func:`stream_enabled`, :func:`sweep_axes` and
:func:`sweep_points` read a resolved configuration.

Standard library only (no JAX, NumPy, NumPyro or ArviZ): ``mfsample --help``, ``mfsample configs``
and the validation of ``mfsample run`` import it before anything numerical, and must start fast.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Option",
    "SCHEMA",
    "KINDS",
    "KERNELS",
    "NETWORKS",
    "SWEEP_PARAMETERS",
    "SHARED_PARAMETERS",
    "ACTIVATIONS",
    "F1_VS_F2_METHODS",
    "load_toml",
    "parse_overrides",
    "apply_overrides",
    "resolve",
    "load_config",
    "to_toml",
    "fingerprint",
    "chain_fingerprint",
    "draw_sections",
    "packaged_configs",
    "packaged_config_path",
    "schema_table",
    "widths_of",
    "network_of",
    "stream_enabled",
    "sweep_parameters",
    "sweep_axes",
    "sweep_points",
]

KINDS = ("simulate", "f1_vs_f2")
KERNELS = ("wasserstein", "langevin", "kinetic", "wfr")
#: the networks of ``model.network``: mfsample.models.shallow_network, mfsample.models.deep_network
NETWORKS = ("shallow", "deep")
#: the activations of mfsample.activations.ACTIVATIONS (tests/test_config.py checks they agree)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "gelu", "identity")
#: the methods of mfsample.experiments.f1_vs_f2.METHODS (checked by tests/test_config.py)
F1_VS_F2_METHODS = ("mean_field", "random_features", "kernel", "ntk")
#: the numeric parameters of each kernel's dynamic that ``[dynamics]`` sets, those ``[sweep]`` may
#: list (the kernels' ``parameter_names``, checked by tests/test_config.py), in the order the grid
#: nests them; those of :data:`SHARED_PARAMETERS` only with the deep network (:func:`sweep_parameters`)
SWEEP_PARAMETERS = {
    "wasserstein": ("step_size", "shared_step_scale"),
    "langevin": ("step_size", "temperature", "shared_step_scale"),
    "kinetic": ("step_size", "temperature", "friction", "shared_step_scale"),
    "wfr": ("step_size", "rate", "temperature", "shared_step_scale"),
}
#: the parameters of the shared sites' dynamic (a network without shared sites has no use for them)
SHARED_PARAMETERS = ("shared_step_scale",)
#: names ``[sweep]`` refuses, with the reason and the remedy
NOT_SWEPT = {
    **{
        key: f"dynamics.{key} is structural (it decides which operations a step performs, so another "
        "value compiles another programme): run one directory per value; [sweep] lists the numeric "
        "parameters step_size, temperature, friction, rate (and shared_step_scale with model.network = 'deep')"
        for key in ("kernel", "mode", "birth", "adjusted", "block_size")
    },
    "width": "widths change the shapes, so each runs a sweep of its own: list them in model.width",
    **{
        key: "the replicas of every configuration are run.chains (independent keys split from run.seed)"
        for key in ("chains", "seed", "seeds")
    },
}
#: sections whose values determine the draws (the checkpoint fingerprint); ``run.device`` excepted
DRAW_SECTIONS = ("data", "model", "dynamics", "run", "sweep")
#: draw sections hashed only where present, so that the fingerprints of runs without one stay put
OPTIONAL_DRAW_SECTIONS = ("sweep",)


class ConfigError(ValueError):
    """An invalid configuration: ``errors`` is the list of ``(key path, message)``, all of them."""

    def __init__(self, errors: Sequence[tuple[str, str]], source: str | None = None):
        self.errors = list(errors)
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        where = f" {self.source}" if self.source else ""
        n = len(self.errors)
        lines = [f"invalid configuration{where} ({n} error{'s' if n != 1 else ''}):"]
        lines += [f"  {path}: {message}" for path, message in self.errors]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the schema
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One configuration key.

    :param type: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"ints"`` (an integer or, where
        ``lists`` allows it, a list of integers), ``"floats"`` (a non-empty list of numbers) or
        ``"strs"`` (a list of strings).
    :param default: value used when the key is absent (a callable of the partly resolved
        configuration for defaults depending on other keys); ``None``: the key stays absent.
    :param low, high: inclusive bounds; ``positive``: strictly greater than zero.
    :param choices: allowed values (strings, or list elements for ``"strs"``).
    :param when: ``when(ctx) -> bool``, whether the key applies (``ctx``: experiment kind, kernel,
        data source, reaction mode, network); a key given where it does not apply is an error.
    :param lists: ``lists(ctx) -> bool``, whether an ``"ints"`` key may be a list.
    """

    type: str
    default: Any = None
    doc: str = ""
    low: float | None = None
    high: float | None = None
    positive: bool = False
    choices: tuple | None = None
    when: Callable[[dict], bool] | None = None
    when_doc: str = ""
    lists: Callable[[dict], bool] | None = None


# The switches of ``ctx`` are None when their own value is invalid: then every key they govern
# is accepted (the invalid switch is reported, not a cascade of "does not apply" errors).
def _sim(ctx):
    return ctx["kind"] in ("simulate", None)


def _f1f2(ctx):
    return ctx["kind"] in ("f1_vs_f2", None)


def _teacher(ctx):
    return ctx["source"] in ("teacher_student", None)


def _kernel(*names):
    return lambda ctx: _sim(ctx) and ctx["kernel"] in names + (None,)


def _sweeping(ctx):
    return _sim(ctx) and ctx["sweep"]


def _shallow(ctx):
    return ctx["network"] in ("shallow", None)


def _deep(ctx):
    return ctx["network"] in ("deep", None)


def _shallow_sim(ctx):
    return _sim(ctx) and _shallow(ctx)


def _deep_sim(ctx):
    return _sim(ctx) and _deep(ctx)


def _default_temperature(cfg):
    return 0.0 if cfg["dynamics"].get("kernel") == "wfr" else 1e-4


def _default_save_every(cfg):
    return max(1, math.ceil(cfg["run"]["steps"] / 100))


def _default_checkpoint_every(cfg):
    """About ten checkpoints per width, on the save grid."""
    run = cfg["run"]
    k = run["save_every"]
    draws = max(1, run["steps"] // k)
    return k * max(1, math.ceil(draws / 10))


def _default_name(cfg):
    return cfg.get("__stem__", "experiment")


SIM, F1F2 = "experiment kind 'simulate'", "experiment kind 'f1_vs_f2'"
TEACHER = "data.source = 'teacher_student'"
DEEP, SHALLOW_SIM = "model.network = 'deep'", f"{SIM} and model.network = 'shallow'"

SCHEMA: dict[str, dict[str, Any]] = {
    "experiment": {
        "name": Option("str", _default_name, "name of the experiment (default: the file's stem)"),
        "kind": Option("str", "simulate", "'simulate' (particle runs over widths) or 'f1_vs_f2'", choices=KINDS),
        "description": Option("str", "", "free text, shown in the report"),
    },
    "data": {
        "source": Option("str", "teacher_student", "'teacher_student' or 'file'", choices=("teacher_student", "file")),
        "path": Option(
            "str",
            None,
            "file of x, y: .npz (arrays x, y) or .csv (last column y); relative to the config file",
            when=lambda c: c["source"] in ("file", None),
            when_doc="data.source = 'file'",
        ),
        "dim": Option(
            "ints",
            10,
            "input dimension d (a list: the dims swept by f1_vs_f2)",
            low=1,
            when=_teacher,
            when_doc=TEACHER,
            lists=_f1f2,
        ),
        "teacher_width": Option("int", 5, "teacher units m", low=1, when=_teacher, when_doc=TEACHER),
        "num_data": Option(
            "ints",
            1024,
            "training data N (a list: swept by f1_vs_f2)",
            low=1,
            when=_teacher,
            when_doc=TEACHER,
            lists=_f1f2,
        ),
        "activation": Option("str", "relu", "teacher activation", choices=ACTIVATIONS, when=_teacher, when_doc=TEACHER),
        "inputs": Option(
            "str",
            "gaussian",
            "x ~ N(0, I) ('gaussian') or uniform on the sphere",
            choices=("gaussian", "sphere"),
            when=lambda c: _teacher(c) and _sim(c),
            when_doc=f"{TEACHER} and {SIM}",
        ),
        "noise": Option("float", 0.0, "label noise sd", low=0.0, when=_teacher, when_doc=TEACHER),
        "num_test": Option("int", 256, "held-out inputs (predictions, test error; a file: its first rows)", low=1),
        "seed": Option(
            "int",
            0,
            "seed of the teacher and the data",
            low=0,
            when=lambda c: _teacher(c) and _sim(c),
            when_doc=f"{TEACHER} and {SIM} (f1_vs_f2 uses run.seed)",
        ),
    },
    "model": {
        "width": Option("ints", 256, "particles n (a list: one run per width)", low=1, lists=lambda c: True),
        "activation": Option("str", "relu", "unit activation sigma", choices=ACTIVATIONS),
        "network": Option(
            "str",
            None,
            "'shallow' (the default; not recorded) or 'deep': the particles on a trained shared first layer "
            "h = sigma_1(U x / sqrt(d) + c) (mfsample.models.deep_network)",
            choices=NETWORKS,
        ),
        "hidden": Option(
            "int", None, "shared first-layer units k (default 2 d)", low=1, when=_deep_sim, when_doc=f"{DEEP} and {SIM}"
        ),
        "first_activation": Option(
            "str",
            "relu",
            "activation sigma_1 of the shared first layer",
            choices=ACTIVATIONS,
            when=_deep_sim,
            when_doc=f"{DEEP} and {SIM}",
        ),
        "scaling": Option(
            "str",
            "mean_field",
            "'mean_field' (f = 1/n sum) or 'ntk' (1/sqrt n)",
            choices=("mean_field", "ntk"),
            when=_sim,
            when_doc=SIM,
        ),
        "bias": Option("bool", True, "units sigma(<w,x> + b)", when=_sim, when_doc=SIM),
        "noise": Option(
            "float", 1.0, "likelihood sd (E = -(1/N) sum log N(y | f, noise^2))", positive=True, when=_sim, when_doc=SIM
        ),
        "weight_decay": Option(
            "float", 0.0, "lambda of lambda * int (a^2 + |w|^2 + b^2)/2 dmu (must be 0 with the deep network)", low=0.0
        ),
        "prior": {
            "a_scale": Option(
                "float", 1.0, "a ~ N(0, a_scale^2)", positive=True, when=_shallow_sim, when_doc=SHALLOW_SIM
            ),
            "w_scale": Option(
                "float",
                None,
                "w ~ N(0, w_scale^2 I) (default 1/sqrt(d))",
                positive=True,
                when=_shallow_sim,
                when_doc=SHALLOW_SIM,
            ),
            "b_scale": Option(
                "float", 1.0, "b ~ N(0, b_scale^2)", positive=True, when=_shallow_sim, when_doc=SHALLOW_SIM
            ),
        },
    },
    "dynamics": {
        "kernel": Option("str", "wasserstein", "'wasserstein', 'langevin', 'kinetic' or 'wfr'", choices=KERNELS),
        "step_size": Option("float", 0.1, "dt, in mean-field time", positive=True),
        "shared_step_scale": Option(
            "float",
            1.0,
            "eta: time scale of the shared first layer, ds/dt = -eta grad_s E (1: the particles' speed)",
            positive=True,
            when=_deep_sim,
            when_doc=f"{DEEP} and {SIM}",
        ),
        "temperature": Option(
            "float",
            _default_temperature,
            "tau (default 1e-4; 0 for wfr)",
            low=0.0,
            when=_kernel("langevin", "kinetic", "wfr"),
            when_doc="kernel 'langevin', 'kinetic' or 'wfr'",
        ),
        "adjusted": Option(
            "bool", False, "Metropolis-adjusted (MALA)", when=_kernel("langevin"), when_doc="kernel 'langevin'"
        ),
        "friction": Option(
            "float",
            1.0,
            "gamma of the kinetic Langevin dynamics",
            positive=True,
            when=_kernel("kinetic"),
            when_doc="kernel 'kinetic'",
        ),
        "rate": Option("float", 1.0, "reaction rate alpha", low=0.0, when=_kernel("wfr"), when_doc="kernel 'wfr'"),
        "mode": Option(
            "str",
            "birth_death",
            "'birth_death' or 'weighted'",
            choices=("birth_death", "weighted"),
            when=_kernel("wfr"),
            when_doc="kernel 'wfr'",
        ),
        "block_size": Option(
            "int",
            None,
            "data per block of the energy evaluation (bounds the N x n "
            "activations; default: automatic from the free memory)",
            low=1,
            when=_sim,
            when_doc=SIM,
        ),
        "birth": Option(
            "str",
            "clone",
            "'clone' or 'prior' (birth-death refills)",
            choices=("clone", "prior"),
            when=lambda c: _kernel("wfr")(c) and c["mode"] in ("birth_death", None),
            when_doc="kernel 'wfr' with mode 'birth_death'",
        ),
    },
    "sweep": {
        "step_size": Option(
            "floats", None, "values of dt, one configuration each (a list)", positive=True, when=_sim, when_doc=SIM
        ),
        "temperature": Option(
            "floats",
            None,
            "values of tau (a list)",
            low=0.0,
            when=_kernel("langevin", "kinetic", "wfr"),
            when_doc="kernel 'langevin', 'kinetic' or 'wfr'",
        ),
        "friction": Option(
            "floats",
            None,
            "values of gamma (a list)",
            positive=True,
            when=_kernel("kinetic"),
            when_doc="kernel 'kinetic'",
        ),
        "rate": Option(
            "floats", None, "values of alpha (a list)", low=0.0, when=_kernel("wfr"), when_doc="kernel 'wfr'"
        ),
        "shared_step_scale": Option(
            "floats",
            None,
            "values of eta (a list)",
            positive=True,
            when=_deep_sim,
            when_doc=f"{DEEP} and {SIM}",
        ),
        "combine": Option(
            "str",
            "product",
            "'product' (every combination, the first parameter slowest) or 'zipped' (the i-th values together)",
            choices=("product", "zipped"),
            when=_sweeping,
            when_doc="a [sweep] section",
        ),
        "common_keys": Option(
            "bool",
            False,
            "every configuration starts from the same particles and noise (common random numbers)",
            when=_sweeping,
            when_doc="a [sweep] section",
        ),
    },
    "run": {
        "steps": Option("int", 1000, "steps T per run", low=1),
        "save_every": Option(
            "int", _default_save_every, "steps between kept draws (default T/100)", low=1, when=_sim, when_doc=SIM
        ),
        "chains": Option("int", 1, "independent replicas of the particle system", low=1, when=_sim, when_doc=SIM),
        "seed": Option("int", 0, "PRNG seed of the runs (width n uses fold_in(seed, n))", low=0),
        "checkpoint_every": Option(
            "int",
            _default_checkpoint_every,
            "steps between checkpoints, a multiple of save_every (default: ~10 per run)",
            low=1,
            when=_sim,
            when_doc=SIM,
        ),
        "device": Option(
            "str", "auto", "'auto', 'cpu', 'gpu' or 'tpu' (JAX platform)", choices=("auto", "cpu", "gpu", "tpu")
        ),
        "devices": Option(
            "int",
            1,
            "devices to shard each run over (1: no sharding; on the CPU set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=K first)",
            low=1,
            when=_sim,
            when_doc=SIM,
        ),
        "shard": Option(
            "str",
            "auto",
            "what the devices split: 'particles', 'chains', 'configs' (of a [sweep]) or 'auto'",
            choices=("auto", "particles", "chains", "configs"),
            when=_sim,
            when_doc=SIM,
        ),
        "replicates": Option("int", 1, "seeds seed, seed+1, ... of f1_vs_f2", low=1, when=_f1f2, when_doc=F1F2),
    },
    "output": {
        "stream": Option(
            "bool",
            False,
            "append the draws to draws/width_<n>.nc chunk by chunk during the run "
            "(memory: one checkpoint chunk) instead of .npz draw checkpoints assembled at the end",
            when=_sim,
            when_doc=SIM,
        ),
    },
    "diagnostics": {
        "summary": Option(
            "bool", True, "energy trajectory and ArviZ ess/r_hat (mf.diagnostics.summary)", when=_sim, when_doc=SIM
        ),
        "fluctuations": Option(
            "bool", False, "n E||f_n - f||^2 over widths (needs chains >= 2)", when=_sim, when_doc=SIM
        ),
        "chaos": Option("bool", False, "propagation of chaos (needs chains >= 2)", when=_sim, when_doc=SIM),
        "marginals": Option("bool", False, "histograms of the one-particle marginals", when=_sim, when_doc=SIM),
        "reference": Option(
            "str",
            "replica_mean",
            "reference f of the fluctuations",
            choices=("replica_mean", "widest"),
            when=_sim,
            when_doc=SIM,
        ),
        "burn_in": Option(
            "float", 0.5, "fraction of draws dropped before ess/r_hat", low=0.0, high=0.99, when=_sim, when_doc=SIM
        ),
        "num_bootstrap": Option("int", 500, "bootstrap resamples of the intervals", low=10, when=_sim, when_doc=SIM),
        "unit_points": Option(
            "int", 16, "held-out points where the unit functions phi are stored", low=0, when=_sim, when_doc=SIM
        ),
    },
    "baselines": {
        "f1_optimum": Option(
            "bool",
            False,
            "certified global optimum of the weight-decay energy (mf.baselines.f1_optimum; needs cvxpy)",
            when=_sim,
            when_doc=SIM,
        ),
        "f1_method": Option(
            "str",
            "auto",
            "'auto', 'exact' (d + bias <= 3) or 'grid'",
            choices=("auto", "exact", "grid"),
            when=_sim,
            when_doc=SIM,
        ),
        "methods": Option(
            "strs",
            ["mean_field", "random_features", "kernel"],
            "methods compared",
            choices=F1_VS_F2_METHODS,
            when=_f1f2,
            when_doc=F1F2,
        ),
        "ridge": Option(
            "float", None, "fixed ridge (default: selected by the criterion)", positive=True, when=_f1f2, when_doc=F1F2
        ),
        "criterion": Option(
            "str", "gcv", "ridge selection: 'gcv' or 'loo'", choices=("gcv", "loo"), when=_f1f2, when_doc=F1F2
        ),
    },
}


def draw_sections() -> tuple[str, ...]:
    """The sections whose values fix the draws (see :func:`fingerprint`)."""
    return DRAW_SECTIONS


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def load_toml(path) -> dict:
    """Parse a TOML file; a syntax error becomes a :class:`ConfigError` naming the line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([("<file>", f"no such file: {path}")], str(path)) from None
    except IsADirectoryError:
        raise ConfigError([("<file>", f"{path} is a directory, not a file; give a TOML file")], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("<toml>", f"not valid TOML: {exc}")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("<file>", f"cannot read: {exc}")], str(path)) from None


def _parse_value(text: str):
    """A ``--set`` value: a TOML value (``3``, ``1e-3``, ``true``, ``[16, 32]``, ``"x"``), or else
    the text itself as a string (``--set dynamics.kernel=wfr``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Sequence[str]) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """``["a.b=1", ...]`` -> ``([("a.b", 1), ...], errors)``."""
    out, errors = [], []
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append((f"--set {item}", "expected KEY=VALUE, e.g. --set model.width=64"))
            continue
        out.append((key, _parse_value(value.strip())))
    return out, errors


def apply_overrides(raw: dict, items: Sequence[str]) -> tuple[dict, list[tuple[str, str]]]:
    """Set dotted keys in (a copy of) ``raw``; returns the new dict and the errors (unknown keys
    are left to :func:`resolve`, which reports them with the others)."""
    raw = json.loads(json.dumps(raw, default=str)) if raw else {}
    pairs, errors = parse_overrides(items)
    for key, value in pairs:
        parts = key.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                errors.append((f"--set {key}", f"{'.'.join(parts[: i + 1])} is a value, not a table"))
                break
            node = nxt
        else:
            node[parts[-1]] = value
    return raw, errors


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _range_text(opt: Option) -> str:
    if opt.positive:
        return " > 0"
    if opt.low is not None and opt.high is not None:
        return f" in [{opt.low:g}, {opt.high:g}]"
    if opt.low is not None:
        return f" >= {opt.low:g}"
    return ""


def _check_number(value, opt: Option, integer: bool):
    """``(value, error or None)`` for one number."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        return None, f"expected {kind}{_range_text(opt)}, got {_type_name(value)} {value!r}"
    if not integer:
        value = float(value)
        if not math.isfinite(value):
            return None, f"expected a finite number{_range_text(opt)}, got {value!r}"
    if (
        (opt.positive and not value > 0)
        or (opt.low is not None and value < opt.low)
        or (opt.high is not None and value > opt.high)
    ):
        return None, f"must be{_range_text(opt)}, got {value!r}"
    return value, None


def _check_bool(value, opt: Option, ctx: dict):
    if not isinstance(value, bool):
        return None, f"expected true or false, got {_type_name(value)} {value!r}"
    return value, None


def _check_str(value, opt: Option, ctx: dict):
    if not isinstance(value, str):
        return None, f"expected a string, got {_type_name(value)} {value!r}"
    if opt.choices is not None and value not in opt.choices:
        hint = difflib.get_close_matches(value, opt.choices, n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        return None, f"must be one of {', '.join(map(repr, opt.choices))}; got {value!r}{more}"
    return value, None


def _check_ints(value, opt: Option, ctx: dict):
    """An integer, or (where ``opt.lists(ctx)``) a non-empty list of distinct integers."""
    if not isinstance(value, list):
        return _check_number(value, opt, True)
    if opt.lists is None or not opt.lists(ctx):
        return None, f"expected a single integer{_range_text(opt)} here, got a list"
    if not value:
        return None, "expected a non-empty list of integers"
    out = []
    for i, v in enumerate(value):
        v2, err = _check_number(v, opt, True)
        if err:
            return None, f"element {i}: {err}"
        out.append(v2)
    if len(set(out)) != len(out):
        return None, f"the list has repeated values: {out}"
    return out, None


def _check_floats(value, opt: Option, ctx: dict):
    """A non-empty list of numbers, each in the range of ``opt`` (a swept parameter's values)."""
    if not isinstance(value, list):
        return None, (
            f"expected a list of values, e.g. [0.001, 0.01], got {_type_name(value)} {value!r} "
            "(a single value belongs in [dynamics])"
        )
    if not value:
        return None, "expected a non-empty list of numbers (one configuration each)"
    out = []
    for i, v in enumerate(value):
        v2, err = _check_number(v, opt, False)
        if err:
            return None, f"element {i}: {err}"
        out.append(v2)
    return out, None


def _check_strs(value, opt: Option, ctx: dict):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return None, f"expected a non-empty list of strings, got {_type_name(value)} {value!r}"
    bad = [v for v in value if opt.choices is not None and v not in opt.choices]
    if bad:
        return None, f"unknown value(s) {bad}; choose among {list(opt.choices)}"
    if len(set(value)) != len(value):
        return None, f"the list has repeated values: {value}"
    return list(value), None


#: the check of each option type: ``check(value, opt, ctx) -> (converted value, error or None)``
CHECKS = {
    "bool": _check_bool,
    "str": _check_str,
    "int": lambda value, opt, ctx: _check_number(value, opt, True),
    "float": lambda value, opt, ctx: _check_number(value, opt, False),
    "ints": _check_ints,
    "floats": _check_floats,
    "strs": _check_strs,
}


def _check_value(value, opt: Option, ctx: dict):
    """Type and range of one value: ``(converted value, error message or None)``."""
    return CHECKS[opt.type](value, opt, ctx)


def _context(raw: dict) -> dict:
    """The switches that decide which keys apply, read leniently from the raw config."""

    def get(section, key, default, choices):
        table = raw.get(section)
        v = table.get(key, default) if isinstance(table, dict) else default
        return v if isinstance(v, str) and v in choices else None

    return {
        "kind": get("experiment", "kind", "simulate", KINDS),
        "kernel": get("dynamics", "kernel", "wasserstein", KERNELS),
        "source": get("data", "source", "teacher_student", ("teacher_student", "file")),
        "mode": get("dynamics", "mode", "birth_death", ("birth_death", "weighted")),
        "network": get("model", "network", "shallow", NETWORKS),
        "sweep": isinstance(raw.get("sweep"), dict) and bool(raw["sweep"]),
    }


def _unknown_key(key: str, schema: dict, prefix: str) -> str:
    """The message of a key the table does not have: why, where ``[sweep]`` refuses it (a
    structural setting, the width, the replicas), else the closest known key."""
    if prefix == "sweep." and key in NOT_SWEPT:
        return f"cannot be swept: {NOT_SWEPT[key]}"
    hint = difflib.get_close_matches(key, list(schema), n=1)
    more = f" (did you mean {prefix}{hint[0]}?)" if hint else ""
    return f"unknown key{more}; known keys here: {', '.join(schema)}"


def _not_applying(key: str, spec: Option, ctx: dict, prefix: str) -> str:
    """The message of a key given where it does not apply (a swept parameter the kernel lacks
    names the kernel's parameters)."""
    text = f"does not apply here: only used with {spec.when_doc}"
    kernel = ctx["kernel"]
    if prefix == "sweep." and ctx["kind"] == "simulate" and kernel is not None and key not in SWEEP_PARAMETERS[kernel]:
        names = ", ".join(sweep_parameters(kernel, ctx["network"]))
        return f"kernel {kernel!r} has no parameter {key} (its parameters: {names}); {text}"
    return text


def _walk(raw: dict, schema: dict, prefix: str, ctx: dict, errors: list, out: dict):
    """Validate the keys of one table; fill ``out`` with the values given (defaults come later)."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in schema:
            errors.append((path, _unknown_key(key, schema, prefix)))
            continue
        spec = schema[key]
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                errors.append((path, f"expected a table [{path}], got {_type_name(value)}"))
                continue
            out[key] = {}
            _walk(value, spec, f"{path}.", ctx, errors, out[key])
            continue
        if isinstance(value, dict):
            errors.append((path, "expected a value, got a table"))
            continue
        if spec.when is not None and not spec.when(ctx):
            errors.append((path, _not_applying(key, spec, ctx, prefix)))
            continue
        v, err = _check_value(value, spec, ctx)
        if err:
            errors.append((path, err))
        else:
            out[key] = v


def _fill_defaults(schema: dict, out: dict, ctx: dict, cfg: dict, bad: set, prefix: str = ""):
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, dict):
            sub = out.setdefault(key, {})
            _fill_defaults(spec, sub, ctx, cfg, bad, f"{path}.")
            if not sub:
                out.pop(key)
            continue
        if key in out or path in bad or (spec.when is not None and not spec.when(ctx)):
            continue
        default = spec.default
        if callable(default):
            try:
                default = default(cfg)
            except (KeyError, TypeError):  # depends on a key that is itself invalid
                continue
        if default is not None:
            out[key] = default


def _f1_optimum_needs(model: dict, data: dict) -> list[str]:
    """What ``baselines.f1_optimum`` needs and the configuration lacks (empty: nothing)."""
    why = []
    if model.get("activation") not in (None, "relu"):
        why.append(f"model.activation = 'relu' (got {model['activation']!r})")
    if model.get("weight_decay") == 0.0:
        why.append("model.weight_decay > 0 (the TV penalty of the F1 problem)")
    if model.get("noise") not in (None, 1.0):
        why.append(f"model.noise = 1 (got {model['noise']!r})")
    if model.get("scaling") == "ntk":
        why.append("model.scaling = 'mean_field'")
    dim = data.get("dim")
    if isinstance(dim, int) and dim + int(bool(model.get("bias", True))) > 5:
        why.append(
            f"data.dim + bias <= 5 (got dim {dim}: the certified optimum is computed "
            "exactly for d + bias <= 3, on a grid up to 5)"
        )
    return why


def _deep_checks(cfg: dict, errors: list):
    """What the deep network (:func:`mfsample.models.deep_network`) does not have: weight decay,
    and a certified F1 optimum (that of the shallow network's convex problem)."""
    decay = cfg["model"].get("weight_decay")
    if decay is not None and decay > 0:
        errors.append(
            (
                "model.weight_decay",
                f"the deep network has no weight-decay term, got {decay!r}: set model.weight_decay = 0, "
                "or model.network = 'shallow'",
            )
        )
    if cfg.get("baselines", {}).get("f1_optimum"):
        errors.append(
            (
                "baselines.f1_optimum",
                "is the optimum of the shallow network's convex problem (a measure over units of the inputs); "
                "the deep network's units see a trained first layer, so it bounds nothing: set "
                "baselines.f1_optimum = false, or model.network = 'shallow'",
            )
        )


def _simulate_checks(cfg: dict, errors: list):
    run, dyn, model = cfg["run"], cfg["dynamics"], cfg["model"]
    diag, base = cfg.get("diagnostics", {}), cfg.get("baselines", {})
    steps, k, ce = run.get("steps"), run.get("save_every"), run.get("checkpoint_every")
    if steps is not None and k is not None and k > steps:
        errors.append(("run.save_every", f"must be <= run.steps = {steps} (no draw would be kept), got {k}"))
    if k is not None and ce is not None and ce % k:
        errors.append(("run.checkpoint_every", f"must be a multiple of run.save_every = {k}, got {ce}"))
    chains = run.get("chains")
    for name in ("fluctuations", "chaos"):
        if diag.get(name) and chains is not None and chains < 2:
            errors.append((f"diagnostics.{name}", f"needs independent replicas: set run.chains >= 2 (it is {chains})"))
    if dyn.get("kernel") == "wfr" and model.get("scaling") == "ntk":
        errors.append(
            (
                "model.scaling",
                "kernel 'wfr' needs the mean-field scaling (the reaction V = dE/dm has no limit in the NTK scaling)",
            )
        )
    if dyn.get("kernel") == "langevin" and dyn.get("adjusted") and dyn.get("temperature") == 0:
        errors.append(("dynamics.adjusted", "needs dynamics.temperature > 0"))
    if network_of(cfg) == "deep":
        _deep_checks(cfg, errors)
    else:
        why = _f1_optimum_needs(model, cfg["data"]) if base.get("f1_optimum") else []
        if why:
            errors.append(("baselines.f1_optimum", "needs " + "; ".join(why)))
    if run.get("shard") == "configs" and not cfg.get("sweep"):
        errors.append(
            (
                "run.shard",
                "'configs' splits the configurations of a [sweep], and there is none: "
                "use 'auto', 'particles' or 'chains'",
            )
        )
    if cfg.get("sweep"):
        _sweep_checks(cfg, errors)


def _sweep_grid_errors(sweep: dict, axes: dict) -> list:
    """The errors of the grid itself: one length when zipped, no configuration twice."""
    if sweep.get("combine") == "zipped":
        lengths = {k: len(v) for k, v in axes.items()}
        if len(set(lengths.values())) > 1:
            return [
                (
                    "sweep.combine",
                    f"'zipped' takes the i-th values together, so the lists need one length; got {lengths}",
                )
            ]
        points = list(zip(*axes.values()))
        twice = [i for i, p in enumerate(points) if p in points[:i]]
        if twice:
            first = points.index(points[twice[0]])
            return [
                ("sweep", f"configurations {first} and {twice[0]} are the same point {dict(zip(axes, points[first]))}")
            ]
        return []
    return [
        (f"sweep.{k}", f"the list has repeated values: {v} (each configuration runs once)")
        for k, v in axes.items()
        if len(set(v)) != len(v)
    ]


def _sweep_checks(cfg: dict, errors: list):
    """A ``[sweep]`` section: at least one parameter, a grid without repeats, and none of the
    settings a sweep does not combine with."""
    sweep, dyn, diag = cfg["sweep"], cfg["dynamics"], cfg.get("diagnostics", {})
    axes = sweep_axes(cfg)
    if dyn.get("kernel") not in SWEEP_PARAMETERS or (not axes and any(p.startswith("sweep.") for p, _ in errors)):
        return  # an invalid kernel, or the parameters, are reported already
    if not axes:
        names = ", ".join(sweep_parameters(dyn["kernel"], network_of(cfg)))
        errors.append(
            ("sweep", f"lists no parameter: give the values of at least one of {names}, e.g. step_size = [0.05, 0.1]")
        )
        return
    errors.extend(_sweep_grid_errors(sweep, axes))
    for name in ("chaos", "marginals"):
        if diag.get(name):
            errors.append(
                (
                    f"diagnostics.{name}",
                    "is not computed for a [sweep] (its report plots the final energy and fluctuations "
                    f"against the swept values): set diagnostics.{name} = false, or run without [sweep]",
                )
            )
    if cfg.get("output", {}).get("stream"):
        errors.append(
            (
                "output.stream",
                "a [sweep] keeps .npz draw checkpoints (a streamed draws file has no configuration axis): "
                "set output.stream = false",
            )
        )
    if dyn.get("adjusted") and 0.0 in axes.get("temperature", ()):
        errors.append(("sweep.temperature", "dynamics.adjusted = true needs every temperature > 0"))


def _f1_vs_f2_checks(cfg: dict, ctx: dict, errors: list, given: dict):
    dyn, model, data = cfg["dynamics"], cfg["model"], cfg["data"]
    if dyn.get("kernel") not in (None, "wasserstein"):
        errors.append(
            (
                "dynamics.kernel",
                "experiment kind 'f1_vs_f2' trains with 'wasserstein' "
                f"(the weight-decay gradient flow), got {dyn['kernel']!r}",
            )
        )
    if ctx["source"] == "file":
        errors.append(("data.source", "experiment kind 'f1_vs_f2' draws its own teacher-student data"))
    if ctx["network"] == "deep":
        errors.append(
            (
                "model.network",
                "experiment kind 'f1_vs_f2' trains shallow networks (mean field against random features and "
                "kernels on the inputs): remove model.network, or set experiment.kind = 'simulate'",
            )
        )
    if isinstance(model.get("width"), list) and isinstance(data.get("num_data"), list):
        errors.append(("model.width", "f1_vs_f2 sweeps either model.width or data.num_data, not both"))
    act_m, act_d = model.get("activation"), data.get("activation")
    if "activation" in given.get("model", {}) and act_m is not None and act_d is not None and act_m != act_d:
        errors.append(
            (
                "model.activation",
                f"f1_vs_f2 uses one activation for teacher and student: "
                f"set it equal to data.activation ({act_d!r}), got {act_m!r}",
            )
        )


def _cross_checks(cfg: dict, ctx: dict, errors: list, given: dict):
    """Checks between keys (only on keys that were themselves valid)."""
    if ctx["kind"] is None:  # reported already; the kind-specific checks would only add noise
        return
    if ctx["kind"] == "simulate":
        _simulate_checks(cfg, errors)
    else:
        _f1_vs_f2_checks(cfg, ctx, errors, given)


def _with_defaults(given: dict, ctx: dict, bad: set, stem: str) -> dict:
    """The given values with every applicable default filled in, in dependency order: experiment,
    data, model, dynamics, run (``steps`` before ``save_every`` before ``checkpoint_every``), ..."""
    cfg = {section: dict(given.get(section, {})) for section in SCHEMA}
    cfg["__stem__"] = stem
    for section, schema in SCHEMA.items():
        if section == "run":
            for key in ("steps", "save_every", "checkpoint_every"):
                _fill_defaults({key: schema[key]}, cfg[section], ctx, cfg, bad, f"{section}.")
        _fill_defaults(schema, cfg[section], ctx, cfg, bad, f"{section}.")
    cfg.pop("__stem__")
    return cfg


def _resolve_data_path(cfg: dict, ctx: dict, bad: set, base_dir, errors: list):
    """``data.path`` made absolute (relative to ``base_dir``) and checked to be a .npz/.csv file."""
    if ctx["source"] != "file" and "path" not in cfg["data"]:
        return
    path = cfg["data"].get("path")
    if path is None:
        if "data.path" not in bad:
            errors.append(("data.path", "required when data.source = 'file'"))
        return
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    p = p.resolve()
    if p.suffix.lower() not in (".npz", ".csv"):
        errors.append(("data.path", f"expected a .npz or .csv file, got {path!r}"))
    elif p.is_dir():
        errors.append(("data.path", f"{p} is a directory, not a file; give the .npz or .csv file in it"))
    elif not p.is_file():
        errors.append(("data.path", f"no such file: {p}"))
    cfg["data"]["path"] = str(p)


def resolve(
    raw: dict, *, stem: str = "experiment", base_dir: str | Path | None = None, source: str | None = None
) -> dict:
    """Validate ``raw`` (a parsed TOML document) and return the resolved configuration.

    :param stem: default ``experiment.name``.
    :param base_dir: directory that relative ``data.path`` values are relative to.
    :raises ConfigError: with every problem found.
    """
    errors: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise ConfigError([("<root>", "expected a table")], source)
    ctx = _context(raw)
    given: dict = {}
    _walk(raw, SCHEMA, "", ctx, errors, given)
    bad = {path for path, _ in errors}
    cfg = _with_defaults(given, ctx, bad, stem)
    _resolve_data_path(cfg, ctx, bad, base_dir, errors)
    _cross_checks(cfg, ctx, errors, given)
    if errors:
        raise ConfigError(errors, source)
    if cfg["model"].get("network") == "shallow":  # the default, not recorded (see the module docstring)
        del cfg["model"]["network"]
    return {s: v for s, v in cfg.items() if v}


def _drop_stale(raw: dict, before: dict, overridden: set, notes: list):
    """After ``--set`` changed a switch (kernel, kind, source, mode, network), drop the keys *of the
    file* that no longer apply (e.g. ``temperature`` when ``--set dynamics.kernel=wasserstein``)."""
    ctx = _context(raw)
    changed = [k for k in ctx if ctx[k] != before[k]]
    if not changed:
        return

    def walk(table, schema, prefix):
        for key in list(table):
            spec, path = schema.get(key), f"{prefix}{key}"
            if isinstance(spec, dict) and isinstance(table[key], dict):
                walk(table[key], spec, f"{path}.")
            elif (
                isinstance(spec, Option)
                and path not in overridden
                and spec.when is not None
                and spec.when(before)
                and not spec.when(ctx)
            ):
                del table[key]
                notes.append(f"{path} (from the file) is dropped: it only applies with {spec.when_doc}")

    walk(raw, SCHEMA, "")


def load_config(path, overrides: Sequence[str] = (), notes: list | None = None) -> dict:
    """Read, override (``--set``) and resolve a configuration file (see :func:`resolve`).

    Keys of the file that stop applying because ``--set`` changed the kernel, the experiment kind,
    the data source, the reaction mode or the network are dropped, with a line appended to ``notes``.
    """
    path = Path(path)
    raw = load_toml(path)
    before = _context(raw)
    raw, errors = apply_overrides(raw, overrides)
    _drop_stale(raw, before, {k for k, _ in parse_overrides(overrides)[0]}, notes if notes is not None else [])
    try:
        cfg = resolve(raw, stem=path.stem, base_dir=path.parent, source=str(path))
    except ConfigError as exc:
        raise ConfigError(errors + exc.errors, str(path)) from None
    if errors:
        raise ConfigError(errors, str(path))
    return cfg


# ---------------------------------------------------------------------------------------------
# writing, fingerprint, packaged configs
# ---------------------------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: dict, header: str = "") -> str:
    """The resolved configuration as TOML text (tables in schema order)."""
    lines = [f"# {line}" for line in header.splitlines()]

    def table(name, values):
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in values.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for section in SCHEMA:
        if section in cfg:
            table(section, cfg[section])
    return "\n".join(lines) + "\n"


def _draw_values_hash(cfg: dict, leave_out: tuple[str, ...]) -> str:
    part = {s: cfg.get(s, {}) for s in DRAW_SECTIONS if s in cfg or s not in OPTIONAL_DRAW_SECTIONS}
    part["run"] = {k: v for k, v in part["run"].items() if k not in leave_out}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def fingerprint(cfg: dict) -> str:
    """SHA-256 of the values that determine the draws (``data, model, dynamics, run`` without
    ``run.device``, and ``sweep`` where there is one): two configurations with the same
    fingerprint give the same draws."""
    return _draw_values_hash(cfg, ("device",))


def chain_fingerprint(cfg: dict) -> str:
    """:func:`fingerprint` without ``run.steps``: the values that determine each step of the chain,
    whatever its length.  Two ``simulate`` configurations with the same chain fingerprint and
    ``T <= M`` steps, ``M - T`` a multiple of ``run.save_every``, have the same chain up to step
    ``T`` (the draws fall at the steps ``T mod save_every + j save_every`` of both), so the
    checkpoints of the first continue into the second: the checkpoints of ``simulate`` runs record
    this fingerprint, and ``mfsample run --resume DIR --set run.steps=M`` extends a run."""
    return _draw_values_hash(cfg, ("device", "steps"))


def _configs_dir():
    return resources.files("mfsample").joinpath("configs")


def packaged_configs() -> dict[str, str]:
    """``{name: first comment line}`` of the configurations shipped in ``mfsample/configs``."""
    out = {}
    for entry in sorted(_configs_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            first = next((ln[1:].strip() for ln in entry.read_text().splitlines() if ln.startswith("#")), "")
            out[entry.name[:-5]] = first
    return out


def packaged_config_path(name: str) -> Path:
    """Path of a packaged configuration (``"quickstart"`` or ``"quickstart.toml"``)."""
    stem = name[:-5] if name.endswith(".toml") else name
    names = packaged_configs()
    if stem not in names:
        hint = difflib.get_close_matches(stem, list(names), n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise KeyError(f"no packaged configuration {name!r}{more}; available: {', '.join(names)}")
    return Path(str(_configs_dir().joinpath(f"{stem}.toml")))


def schema_table() -> str:
    """Every key with its type, default and meaning (``mfsample configs keys``)."""
    rows = []

    def walk(schema, prefix):
        for key, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, f"{prefix}{key}.")
                continue
            default = (
                "(computed)" if callable(spec.default) else ("-" if spec.default is None else _toml_value(spec.default))
            )
            where = f" [{spec.when_doc}]" if spec.when_doc else ""
            rows.append(f"{prefix + key:<28} {spec.type:<6} {default:<16} {spec.doc}{where}")

    walk(SCHEMA, "")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# reading a resolved configuration
# ---------------------------------------------------------------------------------------------
def widths_of(cfg: dict) -> list[int]:
    """The widths ``n`` of ``model.width`` (one run each), increasing."""
    w = cfg["model"]["width"]
    return sorted(w) if isinstance(w, list) else [w]


def network_of(cfg: dict) -> str:
    """The network of ``model.network``: ``"shallow"`` (not recorded, the default) or ``"deep"``."""
    return cfg["model"].get("network", "shallow")


def stream_enabled(cfg: dict) -> bool:
    """Whether the configuration streams its draws to netCDF during the run (``output.stream``)."""
    return bool(cfg.get("output", {}).get("stream", False))


def sweep_parameters(kernel: str, network: str | None) -> tuple[str, ...]:
    """The parameters ``[sweep]`` may list for ``kernel`` on ``network``: the kernel's
    :data:`SWEEP_PARAMETERS`, those of the shared sites (:data:`SHARED_PARAMETERS`) only for the
    deep network."""
    names = SWEEP_PARAMETERS.get(kernel, ())
    return names if network == "deep" else tuple(n for n in names if n not in SHARED_PARAMETERS)


def sweep_axes(cfg: dict) -> dict:
    """``{parameter: values}`` of the ``[sweep]`` section, in the order of the kernel's
    :func:`sweep_parameters` (the first varies slowest); empty without a sweep."""
    sweep = cfg.get("sweep", {})
    names = sweep_parameters(cfg["dynamics"].get("kernel"), network_of(cfg))
    return {name: list(sweep[name]) for name in names if name in sweep}


def sweep_points(cfg: dict) -> list[dict]:
    """The configurations of the ``[sweep]`` section, ``[{parameter: value}, ...]``: every
    combination of the values (``combine = "product"``, the first parameter slowest, as
    :func:`mfsample.sweeps.product`) or the i-th values together (``"zipped"``); empty without
    a sweep."""
    axes = sweep_axes(cfg)
    if not axes:
        return []
    combos = zip(*axes.values()) if cfg["sweep"]["combine"] == "zipped" else itertools.product(*axes.values())
    return [dict(zip(axes, combo)) for combo in combos]
