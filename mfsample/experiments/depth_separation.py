"""Depth separation: shallow mean-field networks, a depth-three network and kernels on the targets of
:mod:`mfsample.data.depth`, as the width grows.

For every target, input dimension ``d`` and width ``M`` the study fits ``N`` training data and
measures the relative test error ``E (f - f*)^2 / Var f*`` on ``num_test`` fresh inputs of
the same law (1 is the best constant predictor) of

* ``"wasserstein"``: the shallow network ``f = (1/M) sum_j a_j relu(<w_j, x> + b_j)``
  (:func:`~mfsample.models.shallow_network`) trained by the Wasserstein gradient flow
  (:class:`~mfsample.WassersteinFlow`);
* ``"birth_death"``: the same network trained by Wasserstein–Fisher–Rao with birth and death
  (:class:`~mfsample.WassersteinFisherRao`, ``mode="birth_death"``, rate ``alpha``, newborns
  drawn from the prior);
* ``"depth_three"``: :func:`~mfsample.models.deep_network`, ``M`` particles on top of a shared first
  layer ``h = relu(U x / sqrt(d) + c)`` of ``k = hidden_factor * d`` units, trained by the
  Wasserstein flow with the shared sites moving at ``d s/dt = -eta grad_s E``;
* ``"random_features"``: the ``M`` first-layer units of the shallow network's initial draw, frozen,
  output layer by ridge regression with the ridge chosen by GCV (F2 at width ``M``);
* ``"kernel"``: kernel ridge regression with the infinite-width random-feature kernel (F2, ``M = inf``,
  GCV ridge); it does not depend on the width or the seed (its values are repeated).

**Matched budgets.**  The three trained models run the same number ``T`` of Euler steps of the same
step size ``dt`` from their prior (the same time ``t = T dt``).  In the mean-field scaling the
particle velocity ``M grad_{theta_j} E`` is of order one at every width, so ``dt`` is not rescaled
with ``M``; the shared first layer moves on the same clock (``eta = shared_step_scale = 1`` by
default: ``d U/dt = -grad_U E``) and birth–death adds its reaction on the same clock.  The step is
scaled with the data only: ``dt = step_size / s2`` with ``s2`` = :func:`input_scale` (the inputs'
mean squared coordinate, at least 1), because the priors normalise ``<w, x>`` for inputs with
``E |x|^2 = d`` and the velocity's Lipschitz constant grows like ``s2`` beyond: every target keeps
the same stability margin (the heavy-tailed inputs of ``bjv`` get the smallest step).  The F2
baselines are solved exactly (their gradient flows' limit, the budget ``T -> inf``), so they are
never penalised by the budget.

**Seeds.**  The target, the training data and the test set of a ``(target, d)`` pair are drawn from
``data_seed``; seed ``s`` fixes the initial particles of replica ``s`` of every trained model (the
shallow draw is also the random-feature draw).  The replicas of one ``(model, d, M)`` run as the
chains of one :func:`~mfsample.simulate` call (one compiled scan, no Python loop over steps).

**Variation norm.**  In dimension 1 and 2 the exact F1 optimum (:func:`~mfsample.baselines.f1_optimum`)
of the radial target with ``n`` oscillations on ``N1`` samples, at a small TV weight ``reg``, gives
``|mu*|_TV``: a lower bound on the variation norm of the target (the target interpolates its
samples) and the smallest variation norm of any shallow ReLU network that fits them to within the
reported loss.  Approximation by ``M`` units costs ``|mu|_TV^2 / M`` (Maurey), so its growth
with the frequency is the shallow lower bound made visible.

Run from the command line with ``python -m mfsample.experiments.depth_separation --dims 4 8 --out depth.nc``.

Theory: ``docs/theory/depth.md``.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from numpyro import handlers

from ..baselines.exact_f1 import f1_optimum
from ..baselines.kernel_ridge import KernelRidge
from ..baselines.kernels import random_feature_kernel
from ..baselines.random_features import RandomFeatures
from ..data.depth import bjv_target, deep_relu_target, radial_target
from ..energy import energy_from_model
from ..kernels import WassersteinFisherRao, WassersteinFlow
from ..kernels.reaction import check_reaction_mode
from ..models.deep import deep_network
from ..models.shallow import shallow_network
from ..simulate import simulate
from ..validation import positive_int, rate, real, step_size

__all__ = [
    "TARGETS",
    "MODELS",
    "TRAINED",
    "DEFAULT_TARGET_OPTIONS",
    "SEPARATION_TARGETS",
    "Budget",
    "input_scale",
    "make_target",
    "initial_draws",
    "network_function",
    "trained_errors",
    "depth_separation",
    "variation_norms",
    "width_to_reach",
    "headline_table",
    "error_table",
    "findings",
    "add_arguments",
    "run_from_args",
    "main",
]

#: the targets of :mod:`mfsample.data.depth`: radial oscillation, Bruna–Jelassi–Venturi, deep ReLU network
TARGETS = ("radial", "bjv", "deep_relu")
#: the targets built to separate depths (the homogeneous deep ReLU target is the control)
SEPARATION_TARGETS = ("radial", "bjv")
#: the models compared (module docstring)
MODELS = ("wasserstein", "birth_death", "depth_three", "random_features", "kernel")
#: the models trained by a particle dynamics (the others are closed-form ridge regressions)
TRAINED = ("wasserstein", "birth_death", "depth_three")
SHALLOW = ("wasserstein", "birth_death")
#: the targets' builder options used by default: small enough to be learnt at these sizes (the
#: constructions' own scales, ``n = d`` oscillations and ``|omega| = d^3``, are out of reach)
DEFAULT_TARGET_OPTIONS = {"radial": {"num_oscillations": 1}, "bjv": {"frequency": 2.0}, "deep_relu": {}}
_BUILDERS = {"radial": radial_target, "bjv": bjv_target, "deep_relu": deep_relu_target}
_ERRORS = ("test_error", "relative_error", "train_error")


class Budget(NamedTuple):
    """The training budget shared by the trained models: ``num_steps`` Euler steps of ``step_size``
    (time ``num_steps * step_size``), the birth–death ``rate`` and ``birth`` rule (``"prior"``:
    newborns drawn from ``mu0``, which keeps the particles distinct at temperature 0), the shared
    layer's time scale ``shared_step_scale`` and its width ``hidden_factor * d``."""

    num_steps: int = 2000
    step_size: float = 1.0
    rate: float = 0.1
    shared_step_scale: float = 1.0
    hidden_factor: int = 2
    birth: str = "prior"

    def checked(self) -> Budget:
        return Budget(
            positive_int("num_steps", self.num_steps),
            step_size(self.step_size),
            rate(self.rate),
            real("shared_step_scale", self.shared_step_scale, positive=True),
            positive_int("hidden_factor", self.hidden_factor),
            check_reaction_mode("birth_death", self.birth)[1],
        )


def input_scale(x) -> float:
    """``s2 = max(1, (1/(N d)) sum_i |x_i|^2)``: the mean squared coordinate of the inputs ``x (N, d)``,
    at least 1; the trained models' step is ``step_size / s2`` (module docstring)."""
    x = jnp.asarray(x)
    return max(1.0, float(jnp.mean(x**2)))


def make_target(name: str, rng_key, *, dim: int, num_data: int, options: Mapping | None = None):
    """The :class:`~mfsample.data.DepthData` of target ``name`` (one of :data:`TARGETS`) in dimension
    ``dim``, built with ``options`` (default :data:`DEFAULT_TARGET_OPTIONS`)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown target {name!r}; choose among {TARGETS}")
    options = DEFAULT_TARGET_OPTIONS[name] if options is None else options
    return _BUILDERS[name](rng_key, dim=dim, num_data=num_data, **dict(options))


def _model(name: str):
    return deep_network if name == "depth_three" else shallow_network


def _model_kwargs(name: str, width: int, dim: int, budget: Budget) -> dict:
    kwargs = {"width": int(width)}
    if name == "depth_three":
        kwargs["hidden"] = budget.hidden_factor * dim
    return kwargs


def _kernel(name: str, budget: Budget):
    if name == "birth_death":
        return WassersteinFisherRao(
            shallow_network, step_size=budget.step_size, rate=budget.rate, mode="birth_death", birth=budget.birth
        )
    return WassersteinFlow(_model(name), step_size=budget.step_size, shared_step_scale=budget.shared_step_scale)


def network_function(model, params: dict, x, **model_kwargs):
    """``f(x)`` of ``model`` at the site values ``params`` (particle and shared sites, one leading
    replica axis), by substituting them into the model: ``(replica, len(x))``."""

    def one(p):
        substituted = handlers.substitute(handlers.seed(model, 0), data=p)
        return handlers.trace(substituted).get_trace(jnp.asarray(x), **model_kwargs)["f"]["value"]

    return jax.vmap(one)(params)


def initial_draws(name: str, data, width: int, seeds: Sequence[int], budget: Budget) -> dict:
    """The initial particles (and shared sites) of every seed, drawn from the model's prior with key
    ``fold_in(fold_in(PRNGKey(s), d), M)``: ``{site: (seed, ...)}``."""
    dim = data.x.shape[1]
    energy = energy_from_model(_model(name), (data.x, data.y), _model_kwargs(name, width, dim, budget))
    keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(s), dim), width) for s in seeds])
    return jax.vmap(energy.sample_prior)(keys)


def trained_errors(name: str, data, x_test, width: int, seeds: Sequence[int], budget: Budget, init=None) -> dict:
    """Train model ``name`` (one of :data:`TRAINED`) for every seed as the chains of one
    :func:`~mfsample.simulate` run and return ``{"test_error", "train_error", "diverged": (seed,),
    "init", "final"}`` (mean squared errors against the noiseless target, whether the particles
    became non-finite, the initial and final sites)."""
    budget = budget.checked()
    dim = data.x.shape[1]
    kwargs = _model_kwargs(name, width, dim, budget)
    init = initial_draws(name, data, width, seeds, budget) if init is None else init
    sim = simulate(
        _kernel(name, budget),
        jax.random.fold_in(jax.random.PRNGKey(int(seeds[0])), width),
        data.x,
        data.y,
        num_steps=budget.num_steps,
        save_every=budget.num_steps,
        num_chains=len(seeds),
        init_params=init if len(seeds) > 1 else jax.tree.map(lambda v: v[0], init),
        collect_deterministic=False,
        progress_bar=False,
        **kwargs,
    )
    final = {k: v[:, -1] for k, v in sim.samples.items()}
    out = {"init": init, "final": final, "diverged": np.asarray(sim.first_divergence).reshape(-1) >= 0}
    for key, x in (("test_error", x_test), ("train_error", data.x)):
        f = network_function(_model(name), final, x, **kwargs)
        out[key] = np.asarray(jnp.mean((f - data.target(x)) ** 2, axis=-1))
    return out


def _rf_errors(data, x_test, init: dict) -> dict:
    """Random features on each seed's initial first layer ``(w, b)`` (GCV ridge)."""
    errors = {"test_error": [], "train_error": []}
    for w, b in zip(init["w"], init["b"]):
        rf = RandomFeatures(w.shape[0], units={"w": w, "b": b}).fit(data.x, data.y)
        for key, x in (("test_error", x_test), ("train_error", data.x)):
            errors[key].append(float(jnp.mean((rf.predict(x) - data.target(x)) ** 2)))
    return {k: np.asarray(v) for k, v in errors.items()}


def _kernel_errors(data, x_test) -> dict:
    """Kernel ridge regression with the random-feature kernel (GCV ridge)."""
    kr = KernelRidge(random_feature_kernel("relu"), None).fit(data.x, data.y)
    return {
        k: float(jnp.mean((kr.predict(x) - data.target(x)) ** 2))
        for k, x in (("test_error", x_test), ("train_error", data.x))
    }


def _check_choices(kind: str, given, allowed) -> tuple:
    given = tuple(given)
    unknown = sorted(set(given) - set(allowed))
    if unknown or not given:
        raise ValueError(f"{kind} must be a non-empty selection of {allowed}, got {given!r}")
    return given


def _target_errors(target, options, dim, *, widths, models, seeds, num_data, num_test, budget, data_seed) -> dict:
    """Every ``(width, model, seed)`` error of one target in one dimension: ``{name: (W, M, S)}``."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(data_seed), TARGETS.index(target)), dim)
    data = make_target(target, key, dim=dim, num_data=num_data, options=options)
    x_test = data.sample(jax.random.fold_in(key, 1), num_test)[0]
    variance = float(jnp.var(data.target(x_test)))
    budget = budget._replace(step_size=budget.step_size / input_scale(data.x))
    out = {k: np.full((len(widths), len(models), len(seeds)), np.nan) for k in _ERRORS}
    out["diverged"] = np.zeros((len(widths), len(models), len(seeds)), bool)
    kernel = _kernel_errors(data, x_test) if "kernel" in models else None
    for i_w, width in enumerate(widths):
        shallow = initial_draws("wasserstein", data, width, seeds, budget)  # also the random features
        for i_m, name in enumerate(models):
            if name == "kernel":
                errors = kernel
            elif name == "random_features":
                errors = _rf_errors(data, x_test, shallow)
            else:
                init = shallow if name in SHALLOW else None
                errors = trained_errors(name, data, x_test, width, seeds, budget, init=init)
            out["test_error"][i_w, i_m] = errors["test_error"]
            out["train_error"][i_w, i_m] = errors["train_error"]
            out["diverged"][i_w, i_m] = errors.get("diverged", False)
    out["relative_error"] = out["test_error"] / variance
    out["target_variance"], out["dt"] = variance, budget.step_size
    return out


def _summaries(ds: xr.Dataset, interval: tuple) -> xr.Dataset:
    """Median and the ``interval`` percentiles over seeds of the relative error."""
    err = ds["relative_error"]
    lo, hi = err.quantile([interval[0] / 100, interval[1] / 100], dim="seed").transpose("quantile", ...)
    ds["relative_error_median"] = err.median("seed")
    ds["relative_error_lower"] = lo.drop_vars("quantile")
    ds["relative_error_upper"] = hi.drop_vars("quantile")
    ds["relative_error_median"].attrs["long_name"] = "median over seeds of relative_error"
    ds["relative_error_lower"].attrs["long_name"] = f"{interval[0]:g}th percentile over seeds of relative_error"
    ds["relative_error_upper"].attrs["long_name"] = f"{interval[1]:g}th percentile over seeds of relative_error"
    return ds


def _collect(coords: dict, options: dict, run: dict, data_seed: int) -> xr.Dataset:
    """The per-seed errors of every ``(target, dim)`` (:func:`_target_errors`) as one Dataset."""
    per_seed = ("target", "dim", "width", "model", "seed")
    out = {k: [] for k in (*_ERRORS, "diverged", "target_variance", "dt")}
    for target in coords["target"]:
        rows = [_target_errors(target, options[target], dim, data_seed=data_seed, **run) for dim in coords["dim"]]
        for k in out:
            out[k].append([row[k] for row in rows])
    ds = xr.Dataset({k: (per_seed, np.asarray(out[k])) for k in (*_ERRORS, "diverged")}, coords=coords)
    ds["target_variance"] = (("target", "dim"), np.asarray(out["target_variance"]))
    ds["dt"] = (("target", "dim"), np.asarray(out["dt"]))
    ds["time"] = ds["dt"] * run["budget"].num_steps
    ds["test_error"].attrs["long_name"] = "mean squared error against the noiseless target on fresh inputs"
    ds["relative_error"].attrs["long_name"] = "test_error / Var f*(x) (1: the best constant)"
    ds["diverged"].attrs["long_name"] = "the particles became non-finite (trained models; see mfsample.simulate)"
    ds["dt"].attrs["long_name"] = "the trained models' step, step_size / input_scale(x)"
    return ds


def depth_separation(
    *,
    targets: Sequence[str] = TARGETS,
    dims: Sequence[int] = (4, 8, 16),
    widths: Sequence[int] = (8, 32, 128, 512),
    models: Sequence[str] = MODELS,
    seeds: Sequence[int] = (0, 1, 2),
    target_options: Mapping[str, Mapping] | None = None,
    num_data: int = 1024,
    num_test: int = 4096,
    num_steps: int = 2000,
    step_size: float = 1.0,
    rate: float = 0.1,
    shared_step_scale: float = 1.0,
    hidden_factor: int = 2,
    birth: str = "prior",
    interval: tuple[float, float] = (10.0, 90.0),
    f1_dims: Sequence[int] = (1, 2),
    frequencies: Sequence[int] = (1, 2, 3, 4),
    f1_num_data: int = 48,
    reg: float = 1e-4,
    data_seed: int = 0,
) -> xr.Dataset:
    """Test errors of shallow, depth-three and kernel models on depth-separation targets (module docstring).

    :param targets: among :data:`TARGETS`; ``target_options`` maps a target to its builder's
        keywords (default :data:`DEFAULT_TARGET_OPTIONS`; e.g. ``{"bjv": {"frequency": 4.0}}``).
    :param widths: the widths ``M`` (particles; random features; the depth-three network's second
        layer), default ``8, 32, 128, 512`` (powers of 4: the cost of a run grows like ``M``).
    :param models: among :data:`MODELS`.
    :param seeds: replicas (the chains of each run); ``data_seed`` fixes the data.
    :param num_steps, step_size, rate, shared_step_scale, hidden_factor, birth: the matched
        :class:`Budget` of the trained models.
    :param interval: the percentiles over seeds reported beside the median.
    :param f1_dims, frequencies, f1_num_data, reg: the variation-norm curve
        (:func:`variation_norms`); ``f1_dims=()`` leaves it out.
    :returns: Dataset with ``test_error``, ``relative_error`` (over ``Var f*`` on the test set) and
        ``train_error`` (against the noiseless target) and ``diverged`` (the run's particles became
        non-finite) on dims ``(target, dim, width, model, seed)``; ``relative_error_median``,
        ``_lower``, ``_upper`` on ``(target, dim, width, model)``; ``target_variance``, ``dt`` (the
        trained models' step) and ``time`` (``num_steps * dt``) on ``(target, dim)``; and the
        variables of :func:`variation_norms` on ``(f1_dim, frequency)``.  Select a model with a
        dict: ``ds.sel({"model": "kernel"})``.

    >>> ds = depth_separation(targets=("deep_relu",), dims=(3,), widths=(8, 16), models=("random_features", "kernel"),
    ...                       seeds=(0, 1), num_data=32, num_test=64, f1_dims=())
    >>> dict(ds["relative_error"].sizes)
    {'target': 1, 'dim': 1, 'width': 2, 'model': 2, 'seed': 2}
    >>> headline_table(ds, threshold=10.0).loc["deep_relu", "d=3"].tolist()  # width reaching error 10
    ['8', 'inf']
    """
    targets, models = _check_choices("targets", targets, TARGETS), _check_choices("models", models, MODELS)
    dims = tuple(positive_int("dims[i]", d) for d in dims)
    widths = tuple(sorted({positive_int("widths[i]", w) for w in widths}))
    seeds = tuple(positive_int("seeds[i]", s, minimum=0) for s in seeds)
    if not (dims and widths and seeds):
        raise ValueError("dims, widths and seeds must each hold at least one value")
    if not 0 <= interval[0] <= interval[1] <= 100:
        raise ValueError(f"interval must be two percentiles 0 <= lower <= upper <= 100, got {interval!r}")
    budget = Budget(num_steps, step_size, rate, shared_step_scale, hidden_factor, birth).checked()
    f1_dims = _check_f1_dims(f1_dims)
    _check_choices("target_options keys", tuple(target_options or ()) or targets, TARGETS)
    options = {t: (target_options or {}).get(t, DEFAULT_TARGET_OPTIONS[t]) for t in targets}
    coords = {
        "target": list(targets),
        "dim": list(dims),
        "width": list(widths),
        "model": list(models),
        "seed": list(seeds),
    }
    run = dict(widths=widths, models=models, seeds=seeds, num_data=num_data, num_test=num_test, budget=budget)
    ds = _summaries(_collect(coords, options, run, data_seed), interval)
    if f1_dims:
        curve = variation_norms(
            dims=f1_dims, frequencies=frequencies, num_data=f1_num_data, reg=reg, data_seed=data_seed
        )
        ds = ds.merge(curve)
    ds.attrs.update(budget._asdict())
    ds.attrs.update(
        num_data=int(num_data),
        num_test=int(num_test),
        data_seed=int(data_seed),
        interval=list(interval),
        target_options=repr(options),
    )
    if f1_dims:
        ds.attrs.update(f1_num_data=int(f1_num_data), reg=float(reg))
    return ds


def _check_f1_dims(dims) -> tuple:
    dims = tuple(positive_int("f1_dims[i]", d) for d in dims)
    if any(d > 2 for d in dims):
        raise ValueError(f"the exact F1 optimum is computed in dimension 1 or 2, got f1_dims={dims}; drop the others")
    return dims


def variation_norms(
    *,
    dims: Sequence[int] = (1, 2),
    frequencies: Sequence[int] = (1, 2, 3, 4),
    num_data: int = 48,
    reg: float = 1e-4,
    data_seed: int = 0,
) -> xr.Dataset:
    """The exact F1 optimum's variation norm against the frequency of the radial target.

    For each ``d`` in ``dims`` (1 or 2: the exact solver) and ``n`` in ``frequencies``, the radial
    target (:func:`~mfsample.data.radial_target`, cosine profile, ``n`` periods over the radii
    ``[sqrt d, 2 sqrt d]``) is sampled at ``num_data`` noiseless inputs (key
    ``fold_in(fold_in(PRNGKey(data_seed), d), n)``) and
    ``min 1/(2N) sum_i (f_mu(x_i) - y_i)^2 + reg |mu|_TV`` is solved exactly
    (:func:`~mfsample.baselines.f1_optimum`).

    :returns: Dataset on ``(f1_dim, frequency)``: ``variation_norm`` (``|mu*|_TV``), ``f1_loss`` (its
        half mean squared error on the samples: small means it interpolates them), ``f1_gap`` (the
        certified duality gap over the objective) and ``f1_atoms`` (the number of units of ``mu*``).
        In ``d = 1`` the target's own variation norm on the support is ``int |g''| = 16 pi n^2``
        (two intervals of length 1): ``|mu*|_TV`` approaches it from below as ``N`` grows.
    """
    dims = _check_f1_dims(dims)
    frequencies = tuple(positive_int("frequencies[i]", n) for n in frequencies)
    reg = real("reg", reg, positive=True)
    shape = (len(dims), len(frequencies))
    out = {k: np.full(shape, np.nan) for k in ("variation_norm", "f1_loss", "f1_gap", "f1_atoms")}
    for i, d in enumerate(dims):
        for j, n in enumerate(frequencies):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(data_seed), d), n)
            data = radial_target(key, dim=d, num_data=num_data, num_oscillations=n)
            sol = f1_optimum(np.asarray(data.x), np.asarray(data.y), reg=reg)
            values = (sol.tv, sol.loss, sol.gap / max(sol.value, 1e-300), len(sol.weights))
            for k, v in zip(out, values):
                out[k][i, j] = v
    ds = xr.Dataset(
        {k: (("f1_dim", "frequency"), v) for k, v in out.items()},
        coords={"f1_dim": list(dims), "frequency": list(frequencies)},
    )
    ds["variation_norm"].attrs["long_name"] = "|mu*|_TV of the exact F1 optimum (radial target, n periods)"
    ds.attrs.update(f1_num_data=int(num_data), reg=float(reg))
    return ds


# -- reading the results -------------------------------------------------------------------------


def width_to_reach(ds: xr.Dataset, threshold: float = 0.5) -> xr.DataArray:
    """The smallest width whose median relative error is ``<= threshold``, on ``(target, dim, model)``:
    NaN when no width reaches it; ``inf`` for the (width-free) kernel when it does."""
    reached = ds["relative_error_median"] <= threshold
    widths = xr.DataArray(np.asarray(ds["width"], float), coords={"width": ds["width"]})
    first = widths.where(reached).min("width")
    if "kernel" in ds["model"].values:
        kernel = reached.sel({"model": "kernel"}).any("width")
        first = xr.where((first["model"] == "kernel") & kernel, np.inf, first)
    return first.transpose("target", "dim", "model")


def _by_target_model(cells: xr.DataArray) -> pd.DataFrame:
    """A ``(target, model) x dim`` table of strings."""
    table = cells.to_series().unstack("dim")
    table.columns = [f"d={d}" for d in table.columns]
    return table.reindex(
        pd.MultiIndex.from_product([cells["target"].values, cells["model"].values], names=["target", "model"])
    )


def headline_table(ds: xr.Dataset, threshold: float = 0.5) -> pd.DataFrame:
    """The width at which each model's median relative error first reaches ``threshold``, per target
    and dimension: ``"> M"`` (the largest width) when it never does; the kernel (``M = inf``) reads
    ``"inf"`` or ``"never"``."""
    first, top = width_to_reach(ds, threshold), int(ds["width"].max())

    def cell(v, model):
        if np.isnan(v):
            return "never" if model == "kernel" else f"> {top}"
        return "inf" if np.isinf(v) else str(int(v))

    fmt = np.vectorize(cell, otypes=[object])
    return _by_target_model(xr.apply_ufunc(fmt, first, first["model"]))


def error_table(ds: xr.Dataset, width: int | None = None) -> pd.DataFrame:
    """``median [lower, upper]`` over seeds of the relative error at ``width`` (default the largest)."""
    width = int(ds["width"].max()) if width is None else int(width)
    at = ds.sel(width=width)
    fmt = np.vectorize(lambda m, lo, hi: f"{m:.3g} [{lo:.2g}, {hi:.2g}]", otypes=[object])
    return _by_target_model(
        xr.apply_ufunc(fmt, at["relative_error_median"], at["relative_error_lower"], at["relative_error_upper"])
    )


# -- what the numbers say about the theory -------------------------------------------------------


def _best_shallow(at: xr.Dataset) -> xr.Dataset:
    """The shallow model with the smallest median, dimension by dimension: its median and interval."""
    shallow = at.sel({"model": [m for m in SHALLOW if m in at["model"].values]})
    best = shallow["relative_error_median"].fillna(np.inf).argmin("model")
    return shallow[["relative_error_median", "relative_error_lower", "relative_error_upper"]].isel(model=best)


def _order(a: xr.Dataset, b: xr.Dataset) -> tuple[str, str]:
    """Whether ``a`` beats ``b``, dimension by dimension: it ``holds`` where ``a``'s interval lies below
    ``b``'s, is ``reversed`` where above, and the intervals ``overlap`` otherwise.  The status is
    ``"confirmed"`` when it holds at every dimension, ``"contradicted"`` when it is reversed at every
    one, ``"mixed"`` when it holds at some and is reversed at others, else ``"not resolved"``; the
    text gives the medians ``a vs b`` and the verdict per ``d``."""
    below = (a["relative_error_upper"] < b["relative_error_lower"]).values
    above = (a["relative_error_lower"] > b["relative_error_upper"]).values
    if below.all() or above.all():
        status = "confirmed" if below.all() else "contradicted"
    else:
        status = "mixed" if below.any() and above.any() else "not resolved"
    verdicts = np.where(below, "holds", np.where(above, "reversed", "overlap"))
    rows = zip(a["dim"].values, a["relative_error_median"].values, b["relative_error_median"].values, verdicts)
    return status, "; ".join(f"d={d}: {x:.3g} vs {y:.3g}, {v}" for d, x, y, v in rows)


def _depth_against_shallow(ds: xr.Dataset, target: str) -> str:
    top = int(ds["width"].max())
    at = ds.sel({"target": target, "width": top})
    status, numbers = _order(at.sel({"model": "depth_three"}), _best_shallow(at))
    return (
        f"{status}: on the {target} target the depth-three network beats the best shallow network "
        f"(median relative error at width {top}, depth three vs shallow; {numbers})"
    )


def _widths_text(dims, widths, top: int) -> str:
    return ", ".join(f"d={d}: {'> ' + str(top) if np.isinf(w) else int(w)}" for d, w in zip(dims, widths))


def _width_growth(ds: xr.Dataset, target: str, threshold: float) -> str:
    """Shallow networks need a width growing with ``d`` for ``threshold``; the depth-three one does not."""
    first = width_to_reach(ds, threshold).sel({"target": target}).fillna(np.inf)
    shallow = first.sel({"model": [m for m in SHALLOW if m in first["model"].values]}).min("model").values
    depth = first.sel({"model": "depth_three"}).values
    dims, top = ds["dim"].values, int(ds["width"].max())
    claim = (
        f"on the {target} target the width a shallow network needs for relative error {threshold:g} "
        "grows with d while the depth-three network's does not"
    )
    detail = f"(shallow {_widths_text(dims, shallow, top)}; depth three {_widths_text(dims, depth, top)})"
    if len(dims) < 2 or np.all(np.isinf(shallow)):
        return f"not resolved: {claim}: no shallow network reaches it at width <= {top} in two dimensions {detail}"
    grows = bool(np.all(np.diff(shallow) >= 0) and shallow[-1] > shallow[0])
    flat = bool(np.isfinite(depth[-1]) and depth[-1] <= depth[0])
    status = "confirmed" if grows and flat else "not resolved"
    if np.all(np.isfinite(shallow)) and shallow[-1] <= shallow[0]:
        status = "contradicted"
    return f"{status}: {claim} {detail}"


def _homogeneous(ds: xr.Dataset) -> str:
    top = int(ds["width"].max())
    at = ds.sel({"target": "deep_relu", "width": top})
    ratio = (
        _best_shallow(at)["relative_error_median"] / at["relative_error_median"].sel({"model": "depth_three"})
    ).values
    status = "confirmed" if np.all(ratio <= 2.0) else "not confirmed"
    return (
        f"{status}: on the homogeneous deep ReLU target (sup 1 on the sphere) depth buys little: the best shallow "
        f"network's median error at width {top} is within 2x of the depth-three network's "
        f"(ratios {', '.join(f'd={d}: {r:.2g}' for d, r in zip(at['dim'].values, ratio))})"
    )


def _f1_against_f2(ds: xr.Dataset, target: str) -> str:
    top = int(ds["width"].max())
    at = ds.sel({"target": target, "width": top})
    status, numbers = _order(_best_shallow(at), at.sel({"model": "random_features"}))
    return (
        f"{status}: on the {target} target the trained shallow network (F1) beats random features (F2) of the "
        f"same width {top} (median relative error, shallow vs random features; {numbers})"
    )


def _decrease_with_width(ds: xr.Dataset) -> list[str]:
    med = ds["relative_error_median"]
    lines = []
    for model in [m for m in ds["model"].values if m != "kernel"]:
        m = med.sel({"model": model})
        down = (m.isel(width=-1) < m.isel(width=0)).values
        status = "confirmed" if down.all() else "not resolved"
        lines.append(
            f"{status}: the {model} error decreases from width {int(ds['width'][0])} to {int(ds['width'][-1])} "
            f"in {int(down.sum())} of {down.size} (target, d) cases"
        )
    return lines


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _variation_norm(ds: xr.Dataset) -> list[str]:
    n = np.asarray(ds["frequency"], float)
    if n.size < 2:
        return []
    slopes = {int(d): _slope(n, ds["variation_norm"].sel(f1_dim=d).values) for d in ds["f1_dim"].values}
    loss, gap = float(ds["f1_loss"].max()), float(ds["f1_gap"].max())
    lines = []
    if 1 in slopes:
        close = abs(slopes[1] - 2.0) <= 0.5 and loss <= 1e-2 and gap <= 1e-2
        lines.append(
            f"{'confirmed' if close else 'not resolved'}: in d = 1 the exact F1 optimum's variation norm grows like "
            f"n^{slopes[1]:.2f} with the number n of oscillations (theory: int |g''| = 16 pi n^2; largest loss "
            f"{loss:.2g}, largest relative duality gap {gap:.2g}: both must be below 1e-2)"
        )
    if 1 in slopes and 2 in slopes:
        faster = slopes[2] > slopes[1]
        samples = ds.attrs.get("f1_num_data", "?")
        caveat = "" if faster else f"; {samples} samples may resolve too few oscillations of a radial function in d = 2"
        lines.append(
            f"{'confirmed' if faster else 'not resolved'}: the variation norm grows faster with n in d = 2 than in "
            f"d = 1 (exponents {slopes[2]:.2f} vs {slopes[1]:.2f}; a stationary-phase scaling gives n^((d+3)/2))"
            f"{caveat}"
        )
    return lines


def _divergences(ds: xr.Dataset) -> str:
    count = ds["diverged"].sum("seed")
    cases = count.where(count > 0, drop=True).stack(case=("target", "dim", "width", "model")).dropna("case")
    where = ", ".join(f"{t} d={d} M={w} {m} ({int(c)})" for (t, d, w, m), c in zip(cases["case"].values, cases.values))
    return f"note: {int(count.sum())} trained runs diverged (particles became non-finite; seeds per case): {where}"


def findings(ds: xr.Dataset, threshold: float = 0.5) -> list[str]:
    """The predictions of the theory that the numbers of :func:`depth_separation` confirm, contradict or
    do not resolve, one plain sentence each (``"confirmed: ..."``, ``"contradicted: ..."``,
    ``"mixed: ..."``, ``"not resolved: ..."``, ``"not confirmed: ..."``; a ``"note: ..."`` counts the
    diverged runs).  Comparisons use the largest width and the percentile intervals over seeds, and
    give a verdict per dimension (``holds``, ``reversed``, ``overlap``): an ordering is confirmed only
    when the intervals separate in its favour in every dimension, and ``mixed`` when they separate in
    its favour in some dimensions and against it in others (e.g. random features ahead of the shallow
    networks in ``d = 4`` and behind them beyond)."""
    models, targets = set(ds["model"].values), list(ds["target"].values)
    lines = []
    for target in targets:
        if target in SEPARATION_TARGETS and "depth_three" in models and models & set(SHALLOW):
            lines += [_depth_against_shallow(ds, target), _width_growth(ds, target, threshold)]
        if target == "deep_relu" and "depth_three" in models and models & set(SHALLOW):
            lines.append(_homogeneous(ds))
        if "random_features" in models and models & set(SHALLOW):
            lines.append(_f1_against_f2(ds, target))
    lines += _decrease_with_width(ds)
    if "diverged" in ds and bool(ds["diverged"].any()):
        lines.append(_divergences(ds))
    if "variation_norm" in ds:
        lines += _variation_norm(ds)
    return lines


# -- command line --------------------------------------------------------------------------------


def _target_option(text: str) -> tuple[str, str, object]:
    """``"bjv.frequency=4.0"`` -> ``("bjv", "frequency", 4.0)``."""
    head, sep, value = text.partition("=")
    target, dot, key = head.partition(".")
    if not (sep and dot and target in TARGETS and key):
        raise argparse.ArgumentTypeError(f"expected TARGET.KEY=VALUE with TARGET in {TARGETS}, got {text!r}")
    try:
        return target, key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return target, key, value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The CLI options of :func:`depth_separation`."""
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 32, 128, 512])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--option", type=_target_option, action="append", default=[], metavar="TARGET.KEY=VALUE",
        help="a target builder option, e.g. bjv.frequency=4.0 (repeatable; replaces that target's defaults)",
    )  # fmt: skip
    parser.add_argument("--num-data", type=int, default=1024)
    parser.add_argument("--num-test", type=int, default=4096)
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--step-size", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--shared-step-scale", type=float, default=1.0)
    parser.add_argument("--hidden-factor", type=int, default=2)
    parser.add_argument("--birth", default="prior", choices=["prior", "clone"])
    parser.add_argument("--f1-dims", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--frequencies", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--f1-num-data", type=int, default=48)
    parser.add_argument("--reg", type=float, default=1e-4)
    parser.add_argument("--threshold", type=float, default=0.5, help="relative error of the headline table")
    parser.add_argument("--out", default=None, help="write the Dataset to this netCDF file")
    return parser


def run_from_args(args: argparse.Namespace) -> xr.Dataset:
    """Run :func:`depth_separation` from parsed CLI arguments, print the tables and findings, optionally save."""
    options = {}
    for target, key, value in args.option:
        options.setdefault(target, {})[key] = value
    ds = depth_separation(
        targets=args.targets,
        dims=args.dims,
        widths=args.widths,
        models=args.models,
        seeds=args.seeds,
        target_options=options,
        num_data=args.num_data,
        num_test=args.num_test,
        num_steps=args.num_steps,
        step_size=args.step_size,
        rate=args.rate,
        shared_step_scale=args.shared_step_scale,
        hidden_factor=args.hidden_factor,
        birth=args.birth,
        f1_dims=args.f1_dims,
        frequencies=args.frequencies,
        f1_num_data=args.f1_num_data,
        reg=args.reg,
    )
    print(headline_table(ds, args.threshold).to_string())
    print(error_table(ds).to_string())
    print("\n".join(findings(ds, args.threshold)))
    if args.out:
        ds.to_netcdf(args.out, engine="h5netcdf")
    return ds


def main(argv=None):
    """``python -m mfsample.experiments.depth_separation [options]``."""
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    main()
