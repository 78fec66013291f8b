"""Command-line interface: ``mfsample demo`` trains a teacher-student network with both kernels.

The demo draws a teacher-student data set (:func:`mfsample.data.teacher_student`), moves a
mean-field shallow network (:func:`mfsample.models.shallow_network`) with

* :class:`mfsample.WassersteinFlow` (particle gradient descent, temperature 0), and
* :class:`mfsample.MeanFieldLangevin` (temperature ``tau > 0``),

through :func:`mfsample.simulate`, prints the energy ``E = -(1/N) sum_i log p(y_i | theta_1..n)``
at ``t = 0`` and at the end with the relative training error ``||f - y|| / ||y||``, and writes
each run's draws to a netCDF file through ArviZ (posterior dims ``chain, draw, particle, ...``;
``sample_stats`` holds ``energy``, ``time``, ``grad_norm``, ``diverging``; in the posterior
``time`` is also a coordinate along ``draw``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import NamedTuple, Sequence

__all__ = ["main", "build_parser", "run_demo", "DemoRun"]

#: ArviZ dims of the shallow network's sites (the same names ``arviz.from_numpyro`` uses)
SITE_DIMS = {"a": ["particle"], "w": ["particle", "input_dim"], "b": ["particle"], "f": ["data"]}

#: sizes of ``--quick`` (a few seconds, for tests); explicit options still override them
QUICK = dict(dim=3, teacher_width=2, num_data=64, width=16, steps=200, chains=2)
DEFAULTS = dict(dim=10, teacher_width=5, num_data=1024, width=256, steps=4000, chains=2)

EXAMPLES = """\
examples:
  mfsample demo                         # defaults: dim 10, width 256, 1024 data, < 1 min
  mfsample demo --quick --out /tmp/mf   # tiny run (seconds)
  mfsample demo --width 1024 --steps 10000 --seed 3
"""


class DemoRun(NamedTuple):
    """One kernel's run in the demo (a row of the energy table)."""

    kernel: str
    energy_start: float  # E at t = 0, mean over chains
    energy_end: float  # E at the last draw, mean over chains
    relative_error: float  # ||f - y|| / ||y|| at the last draw, mean over chains
    wall_time: float  # seconds, including compilation
    path: str  # the netCDF file
    diverged: bool


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float(positive):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be {'positive' if positive else 'non-negative'} and finite, got {text}")
        return value

    parse.__name__ = "positive number" if positive else "non-negative number"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``mfsample`` argument parser (one sub-command per job)."""
    parser = argparse.ArgumentParser(
        prog="mfsample",
        description="Mean-field shallow networks as particle measures moved by NumPyro kernels.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a teacher-student network with both kernels and write netCDF draws",
        description=(
            "Train the teacher-student network with WassersteinFlow and MeanFieldLangevin "
            "(mfsample.simulate), print the energy table and write each run's draws to "
            "OUT/<kernel>.nc (ArviZ InferenceData)."
        ),
        epilog="example:\n  mfsample demo --out mfsample-demo --steps 4000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="mfsample-demo", help="output directory (default: %(default)s)")
    demo.add_argument("--steps", type=_int_at_least(1),
                      help=f"number of steps per run (default {DEFAULTS['steps']})")
    demo.add_argument("--width", type=_int_at_least(1),
                      help=f"student width n, number of particles (default {DEFAULTS['width']})")
    demo.add_argument("--num-data", type=_int_at_least(1),
                      help=f"number of training data N (default {DEFAULTS['num_data']})")
    demo.add_argument("--dim", type=_int_at_least(1), help=f"input dimension d (default {DEFAULTS['dim']})")
    demo.add_argument("--teacher-width", type=_int_at_least(1),
                      help=f"teacher width (default {DEFAULTS['teacher_width']})")
    demo.add_argument("--chains", type=_int_at_least(1),
                      help=f"independent replicas per kernel (default {DEFAULTS['chains']})")
    demo.add_argument("--step-size", type=_float(positive=True), default=1.0,
                      help="dt in mean-field time (default: %(default)s)")
    demo.add_argument("--temperature", type=_float(positive=True), default=1e-4,
                      help="tau of MeanFieldLangevin (default: %(default)s)")
    demo.add_argument("--seed", type=_int_at_least(0), default=0, help="PRNG seed (default: %(default)s)")
    demo.add_argument("--quick", action="store_true",
                      help="tiny sizes for a smoke test: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def to_inference_data(sim, data, attrs: dict):
    """A :class:`~mfsample.Simulation` of the shallow network as ArviZ ``InferenceData``.

    posterior: ``a, w, b, f`` with dims ``(chain, draw, particle[, input_dim])`` / ``(chain, draw,
    data)``; sample_stats: the state fields (``time`` among them); observed_data ``y``;
    constant_data ``x``; in the posterior the mean-field time ``t`` of each draw is a
    coordinate ``time`` along ``draw``.
    """
    import arviz
    import numpy as np

    posterior = {k: np.asarray(v) for k, v in sim.samples.items()}
    stats = {k: np.asarray(v) for k, v in sim.stats.items()}
    idata = arviz.from_dict(
        posterior=posterior,
        sample_stats=stats,
        observed_data={"y": np.asarray(data.y)},
        constant_data={"x": np.asarray(data.x)},
        dims={**{k: v for k, v in SITE_DIMS.items() if k in posterior},
              "y": ["data"], "x": ["data", "input_dim"]},
        posterior_attrs=dict(attrs),
        sample_stats_attrs=dict(attrs),
    )
    # the posterior's draws are labelled by their time; sample_stats keeps time as a field
    return idata.assign_coords(time=("draw", np.asarray(sim.time)), groups=["posterior"])


def run_demo(
    *,
    out: str = "mfsample-demo",
    steps: int = DEFAULTS["steps"],
    width: int = DEFAULTS["width"],
    num_data: int = DEFAULTS["num_data"],
    dim: int = DEFAULTS["dim"],
    teacher_width: int = DEFAULTS["teacher_width"],
    chains: int = DEFAULTS["chains"],
    step_size: float = 1.0,
    temperature: float = 1e-4,
    seed: int = 0,
    progress_bar: bool = True,
    max_draws: int = 100,
) -> list[DemoRun]:
    """Run both kernels on one teacher-student problem; write ``out/<kernel>.nc``; return the rows.

    Both kernels start from the same particles (iid from the prior ``mu0``, the same key) and
    use the same ``dt``; at most ``max_draws`` draws per chain are kept (``save_every`` steps apart).
    """
    import jax
    import numpy as np

    import mfsample as mf

    key_data, key_run = jax.random.split(jax.random.PRNGKey(seed))
    data = mf.data.teacher_student(key_data, dim=dim, teacher_width=teacher_width, num_data=num_data)
    save_every = max(1, math.ceil(steps / max_draws))
    y = np.asarray(data.y)
    model = mf.models.shallow_network
    kernels = [
        ("wasserstein_flow", mf.WassersteinFlow(model, step_size=step_size), 0.0),
        ("mean_field_langevin", mf.MeanFieldLangevin(model, step_size=step_size, temperature=temperature),
         temperature),
    ]
    os.makedirs(out, exist_ok=True)
    rows = []
    for name, kernel, tau in kernels:
        start = time.perf_counter()
        # the state at t = 0, built exactly as simulate would build it (same keys), to report E(0)
        keys = jax.random.split(key_run, chains) if chains > 1 else key_run
        state0 = kernel.init(keys, 0, None, (data.x, data.y), {"width": width})
        sim = mf.simulate(kernel, key_run, data.x, data.y, width=width, num_steps=steps,
                          save_every=save_every, num_chains=chains, init_state=state0,
                          progress_bar=progress_bar)
        wall = time.perf_counter() - start
        f_end = sim.samples["f"][:, -1]  # (chains, N)
        rel = np.linalg.norm(f_end - y, axis=-1) / np.linalg.norm(y)
        attrs = dict(kernel=type(kernel).__name__, step_size=step_size, temperature=tau,
                     num_steps=steps, save_every=save_every, width=width, num_data=num_data,
                     dim=dim, teacher_width=teacher_width, seed=seed, wall_time=wall,
                     mfsample_version=mf.__version__)
        path = os.path.join(out, f"{name}.nc")
        to_inference_data(sim, data, attrs).to_netcdf(path)
        rows.append(DemoRun(
            kernel=type(kernel).__name__,
            energy_start=float(np.mean(np.asarray(state0.energy))),
            energy_end=float(np.mean(sim.stats["energy"][:, -1])),
            relative_error=float(np.mean(rel)),
            wall_time=wall,
            path=path,
            diverged=bool(np.any(sim.first_divergence >= 0)),
        ))
    return rows


def format_table(rows: Sequence[DemoRun], final_time: float) -> str:
    """The energy table printed by ``mfsample demo``."""
    head = f"{'kernel':<20} {'E(t=0)':>10} {f'E(t={final_time:g})':>12} {'||f-y||/||y||':>14} {'wall [s]':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        flag = "  (diverged)" if r.diverged else ""
        lines.append(f"{r.kernel:<20} {r.energy_start:>10.6f} {r.energy_end:>12.6f} "
                     f"{r.relative_error:>14.4g} {r.wall_time:>9.1f}{flag}")
    lines.append("E = -(1/N) sum_i log p(y_i | particles) >= log(2 pi)/2 = 0.918939 (unit noise); "
                 "means over chains")
    return "\n".join(lines)


def _demo(args) -> int:
    sizes = dict(QUICK if args.quick else DEFAULTS)
    for k in sizes:
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    print(f"mfsample demo: teacher-student, dim {sizes['dim']}, teacher width {sizes['teacher_width']}, "
          f"{sizes['num_data']} data, student width {sizes['width']}, {sizes['steps']} steps of "
          f"dt {args.step_size:g}, {sizes['chains']} chains, seed {args.seed}", flush=True)
    rows = run_demo(out=args.out, step_size=args.step_size, temperature=args.temperature,
                    seed=args.seed, progress_bar=not args.no_progress, **sizes)
    print(format_table(rows, sizes["steps"] * args.step_size))
    for r in rows:
        print(f"wrote {r.path}")
    if any(r.diverged for r in rows):
        print("warning: some particles became non-finite; try a smaller --step-size", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mfsample`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return {"demo": _demo}[args.command](args)  # argparse has refused any other command


if __name__ == "__main__":
    sys.exit(main())
