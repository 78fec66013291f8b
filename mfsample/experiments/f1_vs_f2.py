"""F1 versus F2: mean-field training against random features and their kernel limit.

A teacher in ``F1`` but not in ``F2`` (default: one ReLU neuron ``f*(x) = (<w*, x>)_+``, ``|w*| = 1``,
``x ~ N(0, I_d)``) is fitted from ``N`` noiseless samples by

* ``"mean_field"``: the width-``n`` shallow network trained by the Wasserstein gradient flow
  (:class:`~mfsample.WassersteinFlow`) of ``E[mu] = 1/2 E_N (f - y)^2 + lambda ∫ r dmu`` with weight
  decay ``r(theta) = (a^2 + |w|^2 + b^2) / 2`` (:func:`weight_decay_network`), started at ``mu0``;
* ``"random_features"``: the same ``n`` first-layer units (the same draw from ``mu0`` as the
  network's initial particles), frozen, output layer by ridge regression, ridge by GCV;
* ``"kernel"``: kernel ridge regression with the random-feature kernel (``n -> inf``), ridge by GCV;
* ``"ntk"`` (optional): kernel ridge regression with the NTK (the lazy-training limit).

Theory (Bach 2017; Ghorbani, Mei, Misiakiewicz & Montanari 2019): at fixed ``n`` and ``N`` the
random-feature and kernel errors grow with ``d`` (a kernel needs ``N ~ d^k`` samples to fit degree-k
components of the non-linear part ``|<w*,x>|/2``), while the mean-field network's stays small.

Run from the command line with ``python -m mfsample.experiments.f1_vs_f2 --dims 4 8 16 --out f1f2.nc``.

Theory: ``docs/theory/f1_f2.md``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import xarray as xr
from numpyro import handlers

from ..baselines.kernel_ridge import KernelRidge
from ..baselines.kernels import random_feature_kernel, relu_ntk, sample_units
from ..baselines.lazy import network_predict
from ..baselines.random_features import RandomFeatures
from ..data import teacher_student
from ..kernels import WassersteinFlow
from ..models.shallow import shallow_network
from ..simulate import simulate

__all__ = ["METHODS", "weight_decay_network", "f1_vs_f2", "headline_table", "add_arguments", "run_from_args", "main"]

METHODS = ("mean_field", "random_features", "kernel", "ntk")


def weight_decay_network(x, y=None, *, width: int, weight_decay: float = 0.0, masses=None, **kwargs):
    r""":func:`~mfsample.models.shallow_network` with weight decay ``lambda ∫ r dmu`` added to its energy.

    Adds ``numpyro.factor("weight_decay", -N lambda sum_j m_j r(theta_j))``,
    ``r(theta) = (a^2 + |w|^2 + b^2) / 2``, so that mfsample's energy (minus the mean log-likelihood
    per datum) becomes ``E = (1/2N) sum_i (f(x_i) - y_i)^2 + lambda sum_j m_j r(theta_j) + const``
    and the mean-field velocity gains ``lambda theta_j``.  For the homogeneous ReLU
    network without bias this is the F1 (variation-norm) penalty ``lambda ∫ |a| |w| dmu`` at balance.
    The prior ``mu0`` (initialisation, reference measure) is the shallow network's, unchanged.
    """
    with handlers.trace() as tr:
        f = shallow_network(x, y, width=width, masses=masses, **kwargs)
    if weight_decay:
        r = 0.5 * tr["a"]["value"] ** 2 + 0.5 * jnp.sum(tr["w"]["value"] ** 2, axis=-1)
        if "b" in tr:
            r = r + 0.5 * tr["b"]["value"] ** 2
        mean_r = jnp.mean(r) if masses is None else jnp.sum(masses * r)
        numpyro.factor("weight_decay", -jnp.shape(x)[0] * weight_decay * mean_r)
    return f


def _as_tuple(v):
    return tuple(int(u) for u in v) if isinstance(v, (list, tuple, np.ndarray)) else None


def f1_vs_f2(
    *,
    dims: Sequence[int] = (4, 8, 16, 32),
    widths: int | Sequence[int] = 256,
    num_data: int | Sequence[int] = 512,
    seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = ("mean_field", "random_features", "kernel"),
    teacher_width: int = 1,
    activation: str = "relu",
    noise: float = 0.0,
    num_test: int = 2048,
    weight_decay: float = 1e-3,
    step_size: float = 0.5,
    num_steps: int = 2000,
    ridge: float | None = None,
    criterion: str = "gcv",
) -> xr.Dataset:
    """Test errors of mean-field training, random features and kernel limits on a teacher-student task.

    Exactly one of ``widths`` and ``num_data`` may be a sequence: it is the swept dimension of the
    result (``"width"`` when neither is).  Everything is a deterministic function of the arguments:
    seed ``s`` and dimension ``d`` fix the teacher, the data (key ``fold_in(fold_in(PRNGKey(s), d), 0)``),
    the test set and the first-layer draw of width ``n`` (shared by the network and random features).

    :returns: Dataset with dims ``(method, dim, width | num_data, seed)`` and variables ``test_error``
        (``mean (f(x) - f*(x))^2`` over ``num_test`` fresh inputs), ``relative_error`` (``test_error``
        over the variance of ``f*`` on them: 1 is the best constant), ``train_error`` and ``ridge``
        (the selected ``lambda``; NaN for the mean-field network).  The kernel methods do not depend
        on ``width``: their values are repeated along it.  Select a method with a dict,
        ``ds.sel({"method": "kernel"})``: ``ds.sel(method=...)`` is xarray's inexact-match option.

    >>> ds = f1_vs_f2(dims=(2,), widths=8, num_data=16, seeds=(0,), num_steps=5, num_test=32)
    >>> dict(ds.sizes)
    {'method': 3, 'dim': 1, 'width': 1, 'seed': 1}
    """
    methods = tuple(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose among {METHODS}")
    w_seq, n_seq = _as_tuple(widths), _as_tuple(num_data)
    if w_seq is not None and n_seq is not None:
        raise ValueError("sweep either `widths` or `num_data`, not both")
    sweep = "num_data" if n_seq is not None else "width"
    values = n_seq if n_seq is not None else (w_seq if w_seq is not None else (int(widths),))
    dims, seeds = tuple(int(d) for d in dims), tuple(int(s) for s in seeds)
    shape = (len(methods), len(dims), len(values), len(seeds))
    out = {k: np.full(shape, np.nan) for k in ("test_error", "relative_error", "train_error", "ridge")}
    # compiled programmes are cached by the kernel's structure: a new kernel compiles nothing
    flow = WassersteinFlow(weight_decay_network, step_size=float(step_size))

    for i_d, d in enumerate(dims):
        for i_s, s in enumerate(seeds):
            key = jax.random.fold_in(jax.random.PRNGKey(s), d)
            kernel_cache = {}
            for i_v, v in enumerate(values):
                n = v if sweep == "width" else int(widths)
                num = v if sweep == "num_data" else int(num_data)
                data = teacher_student(
                    jax.random.fold_in(key, 0),
                    dim=d,
                    teacher_width=int(teacher_width),
                    num_data=num,
                    activation=activation,
                    noise=noise,
                )
                x_test = data.sample(jax.random.fold_in(key, 2), num_test)[0]
                f_test = data.target(x_test)
                var = float(jnp.var(f_test))
                units = sample_units(jax.random.fold_in(jax.random.fold_in(key, 1), n), n, d)
                for i_m, m in enumerate(methods):
                    if m == "mean_field":
                        sim = simulate(
                            flow,
                            jax.random.fold_in(key, 3),
                            data.x,
                            data.y,
                            num_steps=num_steps,
                            save_every=num_steps,
                            init_params=units,
                            progress_bar=False,
                            width=n,
                            weight_decay=weight_decay,
                            activation=activation,
                        )
                        last = {k: sim.samples[k][0, -1] for k in ("a", "w", "b")}
                        predict = functools.partial(network_predict, last, activation=activation)
                        lam = np.nan
                    elif m == "random_features":
                        rf = RandomFeatures(n, activation, units=units, criterion=criterion).fit(
                            data.x, data.y, ridge=ridge
                        )
                        predict, lam = rf.predict, rf.ridge_
                    else:
                        if (m, num) not in kernel_cache:  # the kernel limits do not depend on the width
                            k = random_feature_kernel(activation) if m == "kernel" else relu_ntk
                            kr = KernelRidge(k, ridge, criterion=criterion).fit(data.x, data.y)
                            kernel_cache[(m, num)] = kr
                        kr = kernel_cache[(m, num)]
                        predict, lam = kr.predict, kr.ridge_
                    err = float(jnp.mean((predict(x_test) - f_test) ** 2))
                    idx = (i_m, i_d, i_v, i_s)
                    out["test_error"][idx] = err
                    out["relative_error"][idx] = err / var
                    out["train_error"][idx] = float(jnp.mean((predict(data.x) - data.target(data.x)) ** 2))
                    out["ridge"][idx] = lam

    dims_names = ("method", "dim", sweep, "seed")
    coords = {"method": list(methods), "dim": list(dims), sweep: list(values), "seed": list(seeds)}
    attrs = dict(
        teacher_width=int(teacher_width),
        activation=str(activation),
        noise=float(noise),
        num_test=int(num_test),
        weight_decay=float(weight_decay),
        step_size=float(step_size),
        num_steps=int(num_steps),
        time=float(step_size * num_steps),
        criterion=criterion,
        ridge="gcv" if ridge is None else float(ridge),
    )
    attrs["width" if sweep == "num_data" else "num_data"] = int(widths if sweep == "num_data" else num_data)
    ds = xr.Dataset({k: (dims_names, v) for k, v in out.items()}, coords=coords, attrs=attrs)
    ds["test_error"].attrs["long_name"] = "mean squared error against the teacher on fresh inputs"
    ds["relative_error"].attrs["long_name"] = "test_error / Var f*(x)"
    return ds


def headline_table(ds: xr.Dataset, variable: str = "relative_error"):
    """``mean ± std`` over seeds of ``variable`` as a pandas table: one row per method, one column per
    value of the other dimensions (those of size one are dropped), e.g. one column per ``dim``."""
    data = ds[variable]
    mean, std = data.mean("seed"), data.std("seed", ddof=1 if data.sizes["seed"] > 1 else 0)
    single = [d for d in mean.dims if d != "method" and mean.sizes[d] == 1]
    mean, std = mean.squeeze(single, drop=True), std.squeeze(single, drop=True)
    fmt = np.vectorize(lambda m, s: f"{m:.3g} ± {s:.2g}", otypes=[object])
    text = xr.apply_ufunc(fmt, mean, std).to_series()
    others = [d for d in mean.dims if d != "method"]
    table = text.unstack(others) if others else text.to_frame(variable)
    table = table.reindex(list(mean["method"].values))
    table.index.name = "method"
    return table


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The CLI options of :func:`f1_vs_f2` (for a ``mfsample f1-vs-f2`` subcommand)."""
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--widths", type=int, nargs="+", default=[256])
    parser.add_argument("--num-data", type=int, nargs="+", default=[512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["mean_field", "random_features", "kernel"], choices=METHODS)
    parser.add_argument("--teacher-width", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--num-test", type=int, default=2048)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--step-size", type=float, default=0.5)
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--ridge", type=float, default=None, help="fixed ridge (default: GCV)")
    parser.add_argument("--out", default=None, help="write the Dataset to this netCDF file")
    return parser


def run_from_args(args: argparse.Namespace) -> xr.Dataset:
    """Run :func:`f1_vs_f2` from parsed CLI arguments, print the table, optionally save."""
    one = lambda v: v[0] if len(v) == 1 else v  # noqa: E731
    ds = f1_vs_f2(
        dims=args.dims,
        widths=one(args.widths),
        num_data=one(args.num_data),
        seeds=args.seeds,
        methods=args.methods,
        teacher_width=args.teacher_width,
        noise=args.noise,
        num_test=args.num_test,
        weight_decay=args.weight_decay,
        step_size=args.step_size,
        num_steps=args.num_steps,
        ridge=args.ridge,
    )
    print(headline_table(ds).to_string())
    if args.out:
        ds.to_netcdf(args.out, engine="h5netcdf")
    return ds


def main(argv=None):
    """``python -m mfsample.experiments.f1_vs_f2 [options]``."""
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    main()
