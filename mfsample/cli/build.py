"""What a resolved configuration builds: the data, the kernel, the model's arguments, the keys.

* :func:`load_data` – ``[data]``: a teacher-student problem drawn from ``PRNGKey(data.seed)``
  (held-out inputs from ``fold_in(PRNGKey(data.seed), 1)``, with the teacher's values there), or
  a file of ``x, y`` (``.npz`` arrays ``x``, ``y``; ``.csv`` whose last column is ``y``; held-out
  inputs: its first ``data.num_test`` rows, without target);
* :func:`make_kernel` – ``[dynamics]`` on the network of ``model.network``: the shallow network
  (with weight decay when ``model.weight_decay > 0``) or the deep one, whose shared first layer
  moves with the time scale ``dynamics.shared_step_scale``;
* :func:`model_kwargs` – the network's keyword arguments for one width ``n``;
* :func:`width_key` – the PRNG key of width ``n``: ``fold_in(PRNGKey(run.seed), n)``, so that each
  width's run is independent of the others and of their order;
* :func:`sweep_grid`, :func:`initial_sweep_draw`, :func:`sweep_state_shapes` – ``[sweep]``: the
  grid of :func:`mfsample.sweep`, and the state and draw at ``t = 0`` of every configuration
  (configuration ``c`` of width ``n`` starts from ``jax.random.split(width_key, C)[c]``, or from the
  width's key itself with ``common_keys``, as :func:`mfsample.sweep` starts it).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from ..data import teacher_student
from ..experiments import weight_decay_network
from ..kernels import KineticLangevin, MeanFieldLangevin, WassersteinFisherRao, WassersteinFlow
from ..models import deep_network, shallow_network
from ..sweeps import Grid, initial_draw, product, zipped
from .config import network_of, sweep_axes
from .errors import InputError

__all__ = [
    "Data",
    "read_data_file",
    "load_data",
    "network_model",
    "make_kernel",
    "model_kwargs",
    "width_key",
    "state_shapes",
    "sweep_grid",
    "initial_sweep_draw",
    "sweep_state_shapes",
]


class Data(NamedTuple):
    """Training data, held-out inputs and (teacher-student) the target at them."""

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray
    f_eval: np.ndarray | None


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _read_npz(p: Path):
    with np.load(p, allow_pickle=False) as z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            raise InputError(
                f"data.path {p}: the .npz has no array(s) {missing} (it has {z.files}); "
                "save it with np.savez(path, x=x, y=y)"
            )
        return np.asarray(z["x"], np.float64), np.asarray(z["y"], np.float64)


def _read_csv(p: Path):
    """Columns ``x_1, ..., x_d, y``; a first line with letters is a header."""
    lines = p.read_text().splitlines()
    header = bool(lines) and any(c.isalpha() and c not in "eE" for c in lines[0])
    table = np.loadtxt(p, delimiter=",", skiprows=int(header), ndmin=2)
    if table.shape[1] < 2:
        raise InputError(f"data.path {p}: a CSV needs at least two columns (x..., y), got {table.shape[1]}")
    return table[:, :-1], table[:, -1]


def read_data_file(path) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of shapes ``(N, d)`` and ``(N,)`` from a ``.npz`` or ``.csv`` file, all finite.

    :raises InputError: unreadable file, missing arrays, wrong shapes or non-finite values.
    """
    p = Path(path)
    try:
        x, y = _read_npz(p) if p.suffix.lower() == ".npz" else _read_csv(p)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy, zipfile and OS errors alike mean "unreadable"
        raise InputError(f"data.path {p}: cannot read ({type(exc).__name__}: {exc})") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"data.path {p}: expected x (N, d) and y (N,) with N >= 1, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError(f"data.path {p}: x and y must be finite (remove or impute the NaN/inf rows)")
    return x, y


def _teacher_student_data(d: dict) -> Data:
    def draw(key):  # one compiled call rather than dozens of eager operations
        ts = teacher_student(
            key,
            dim=d["dim"],
            teacher_width=d["teacher_width"],
            num_data=d["num_data"],
            activation=d["activation"],
            inputs=d["inputs"],
            noise=d["noise"],
        )
        x_eval, _ = ts.sample(jax.random.fold_in(key, 1), d["num_test"])
        return ts.x, ts.y, x_eval, ts.target(x_eval)

    return Data(*(np.asarray(a) for a in jax.jit(draw)(jax.random.PRNGKey(d["seed"]))))


def load_data(cfg) -> Data:
    """The training set and the held-out inputs of ``[data]`` (see the module docstring)."""
    d = cfg["data"]
    if d["source"] == "teacher_student":
        return _teacher_student_data(d)
    x, y = read_data_file(d["path"])
    if cfg.get("baselines", {}).get("f1_optimum") and x.shape[1] + int(cfg["model"]["bias"]) > 5:
        raise InputError(
            f"baselines.f1_optimum needs dim + bias <= 5; {d['path']} has dim {x.shape[1]} "
            "(set baselines.f1_optimum = false)"
        )
    x, y = x.astype(np.float32), y.astype(np.float32)
    return Data(x, y, x[: d["num_test"]], None)


# ---------------------------------------------------------------------------------------------
# kernel and model
# ---------------------------------------------------------------------------------------------
def network_model(cfg):
    """The NumPyro model of ``[model]``: :func:`~mfsample.models.deep_network`, or the shallow
    network (:func:`~mfsample.experiments.weight_decay_network` when ``model.weight_decay > 0``)."""
    if network_of(cfg) == "deep":
        return deep_network
    return weight_decay_network if cfg["model"]["weight_decay"] > 0 else shallow_network


def make_kernel(cfg):
    """The kernel of ``[dynamics]`` on the network of ``[model]`` (:func:`network_model`); the shared
    sites of the deep network move with the time scale ``dynamics.shared_step_scale``."""
    dyn = cfg["dynamics"]
    model = network_model(cfg)
    kind = dyn["kernel"]
    common = {
        "step_size": dyn["step_size"],
        "block_size": dyn.get("block_size") or "auto",
        "shared_step_scale": dyn.get("shared_step_scale", 1.0),
    }
    if kind == "wasserstein":
        return WassersteinFlow(model, **common)
    if kind == "langevin":
        return MeanFieldLangevin(model, temperature=dyn["temperature"], adjusted=dyn["adjusted"], **common)
    if kind == "kinetic":
        return KineticLangevin(model, temperature=dyn["temperature"], friction=dyn["friction"], **common)
    return WassersteinFisherRao(
        model,
        rate=dyn["rate"],
        temperature=dyn["temperature"],
        mode=dyn["mode"],
        birth=dyn.get("birth", "clone"),
        **common,
    )


def model_kwargs(cfg, width: int) -> dict:
    """Keyword arguments of the model (:func:`network_model`) for one width."""
    m = cfg["model"]
    if network_of(cfg) == "deep":
        return _deep_kwargs(m, width)
    prior = m.get("prior", {})
    kw = dict(
        width=int(width),
        activation=m["activation"],
        scaling=m["scaling"],
        bias=m["bias"],
        noise=m["noise"],
        a_scale=prior.get("a_scale", 1.0),
        b_scale=prior.get("b_scale", 1.0),
    )
    if "w_scale" in prior:
        kw["w_scale"] = prior["w_scale"]
    if m["weight_decay"] > 0:
        kw["weight_decay"] = m["weight_decay"]
    return kw


def _deep_kwargs(m: dict, width: int) -> dict:
    """Keyword arguments of :func:`~mfsample.models.deep_network` (``hidden`` absent: ``2 d``)."""
    kw = dict(
        width=int(width),
        activation=m["activation"],
        first_activation=m["first_activation"],
        scaling=m["scaling"],
        bias=m["bias"],
        noise=m["noise"],
    )
    if "hidden" in m:
        kw["hidden"] = m["hidden"]
    return kw


def width_key(cfg, width: int):
    """``fold_in(PRNGKey(run.seed), n)``: the key of width ``n``'s run."""
    return jax.random.fold_in(jax.random.PRNGKey(cfg["run"]["seed"]), int(width))


def state_shapes(kernel, key, chains: int, args, kwargs):
    """Shapes and dtypes (``jax.eval_shape``) of the kernel state of ``chains`` replicas, without
    computing it: what a restored checkpoint must match leaf by leaf."""
    keys = jax.random.split(key, chains) if chains > 1 else key
    return jax.eval_shape(lambda k: kernel.init(k, 0, None, args, kwargs), keys)


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------
def sweep_grid(cfg) -> Grid:
    """The grid of ``[sweep]``: :func:`mfsample.sweeps.product` or :func:`~mfsample.sweeps.zipped`
    of its values (the points of :func:`~mfsample.cli.config.sweep_points`)."""
    combine = zipped if cfg["sweep"]["combine"] == "zipped" else product
    return combine(**sweep_axes(cfg))


def initial_sweep_draw(kernel, grid: Grid, key, args, kwargs, chains: int, common: bool):
    """``(state, samples, stats)`` at ``t = 0`` of every configuration (:func:`mfsample.sweeps.initial_draw`):
    the state (leading configuration axis, then chains, on the host) and its draw shaped like one
    draw of :func:`mfsample.sweep`, ``(config, chain, 1, ...)``.  Continuing from this state gives
    the run of configuration ``c`` that :func:`mfsample.simulate` gives from its key."""
    state, samples, stats = initial_draw(
        kernel, key, *tuple(args), grid=grid, num_chains=chains, common_keys=common, **dict(kwargs)
    )
    return jax.tree.map(np.asarray, state), samples, stats


def sweep_state_shapes(kernel, grid: Grid, key, chains: int, args, kwargs):
    """Shapes and dtypes of the state of every configuration (those of a fresh start)."""
    state = initial_sweep_draw(kernel, grid, key, args, kwargs, chains, False)[0]
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), state)
