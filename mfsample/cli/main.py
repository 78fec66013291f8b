"""The ``mfsample`` command line: the argument parser and one handler per sub-command.

* ``mfsample run CONFIG.toml [--set KEY=VALUE ...] [--out DIR]`` validates the whole configuration
  (:mod:`mfsample.cli.config`; every error at once, exit status 2), then runs it
  (:mod:`mfsample.cli.run`) with a progress bar showing the energy per width, checkpointing every
  ``run.checkpoint_every`` steps; ``DIR`` receives the resolved configuration, the draws (ArviZ
  netCDF), ``summary.json`` and the figures (:mod:`mfsample.cli.report`).  Running again on the same
  ``DIR`` (or ``mfsample run --resume DIR``) continues from the last checkpoint and gives the draws
  of an uninterrupted run.  ``CONFIG`` may also name a packaged configuration (``quickstart``).
  With ``--set output.stream=true`` (or ``[output] stream = true``) the draws are appended to their
  netCDF file chunk by chunk during the run, so memory holds one checkpoint chunk of draws
  (:class:`mfsample.io.DrawWriter`); a run directory keeps the setting it was started with.
  A ``[sweep]`` section (lists of values of the dynamic's numeric parameters) runs every
  configuration x ``run.chains`` replicas as one compiled :func:`mfsample.sweep` per width, with
  the same checkpoints and resumption; the draws get a ``config`` dimension.
* ``mfsample report DIR`` recomputes the diagnostics and figures from the saved draws, writes
  ``DIR/report.html`` (self-contained, figures embedded) and prints the summary table (of a sweep:
  one row per configuration and width, also written to ``DIR/sweep.csv``, and ``sweep.png``
  against the swept values).
* ``mfsample configs`` lists the packaged configurations, ``mfsample configs show NAME`` prints one,
  ``mfsample configs keys`` every key with its default.
* ``mfsample demo`` is ``run`` on the packaged ``quickstart`` configuration (the README's quickstart:
  same data, width, ``dt``, ``tau`` and steps), once with mean-field Langevin (as packaged) and once
  with the Wasserstein flow, into ``OUT/mean_field_langevin`` and ``OUT/wasserstein_flow``, each
  table under a line saying which dynamics it is and whether ess / r_hat apply (its options are
  shortcuts for ``--set``).

Exit status: see :mod:`mfsample.cli.errors` (0 success, 2 invalid configuration or input, 1 failure
during the run, 130 interrupted, 141 standard output closed by its reader).

Start-up time: this module imports the standard library, :mod:`.config` and :mod:`.errors` only,
so ``mfsample --help``, ``mfsample configs`` and argument errors never load JAX, NumPyro or ArviZ;
the ``run``, ``demo`` and ``report`` handlers import the modules that do the work when called.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .config import ConfigError, load_config, packaged_config_path, packaged_configs, schema_table, widths_of
from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    CheckpointError,
    InputError,
    RunDirInUse,
    RunFailure,
)

__all__ = ["main", "build_parser", "QUICK", "DEMO_KEYS", "DEMO_RUNS", "demo_overrides"]

#: sizes of ``demo --quick`` (seconds, for tests); explicit options still override them
QUICK = dict(dim=3, teacher_width=2, num_data=64, width=16, steps=200, chains=2)

#: demo option -> configuration key(s)
DEMO_KEYS = {
    "steps": ("run.steps",),
    "width": ("model.width",),
    "num_data": ("data.num_data",),
    "dim": ("data.dim",),
    "teacher_width": ("data.teacher_width",),
    "chains": ("run.chains",),
    "step_size": ("dynamics.step_size",),
    "temperature": ("dynamics.temperature",),
    "seed": ("run.seed", "data.seed"),
}

#: the demo's two runs: (output subdirectory, extra overrides of the quickstart configuration)
DEMO_RUNS = (
    ("mean_field_langevin", ()),
    ("wasserstein_flow", ("dynamics.kernel=wasserstein",)),
)

#: the line printed above each demo run's table: the dynamics, and whether ess / r_hat apply
DEMO_TITLES = {
    "mean_field_langevin": "mean-field Langevin at temperature tau: after a burn-in the replicas sample one "
    "stationary law (the Gibbs measure), so ArviZ's ess and r_hat of the energy apply",
    "wasserstein_flow": "Wasserstein flow (tau = 0, particle gradient descent) from the same initial particles: "
    "a deterministic transient with no stationary law, so no ess or r_hat",
}

EXAMPLES = """\
examples:
  mfsample configs                                   # the packaged configurations
  mfsample configs show global_convergence > gc.toml
  mfsample run gc.toml --out runs/gc                 # resumable: rerun the same line after a kill
  mfsample run quickstart --set 'model.width=[64, 256]' --set run.steps=500 --out runs/qs
  mfsample run quickstart --set 'sweep.temperature=[1e-4, 1e-3]' --out runs/tau   # a study: one compiled sweep
  mfsample report runs/gc                            # runs/gc/report.html + the summary table
  mfsample demo --quick --out /tmp/mf                # the quickstart at tiny size (seconds)
"""


# ---------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------
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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
    return value


_positive_float.__name__ = "positive number"


def _add_progress(p):
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "off"),
        default="auto",
        help="progress display on stderr: a bar with the energy per width (auto: on a "
        "terminal), a line per checkpoint, or nothing (default: %(default)s)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_const", const="off", help="same as --progress off")


def _add_run(commands):
    run = commands.add_parser(
        "run",
        help="run (or resume) an experiment described by a TOML configuration",
        description="Validate CONFIG (every error at once, exit 2), run it with checkpoints and write "
        "the resolved configuration, the draws (netCDF), summary.json and figures into --out. "
        "An existing --out of the same configuration is resumed.",
        epilog="examples:\n  mfsample run quickstart --out runs/qs\n"
        "  mfsample run my.toml --set dynamics.step_size=0.05 --set 'model.width=[32, 64, 128]'\n"
        "  mfsample run --resume runs/qs\n"
        "  mfsample run long.toml --set output.stream=true   # draws appended to the netCDF as the run goes\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="a TOML file, or the name of a packaged configuration (mfsample configs)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set model.width=64 --set dynamics.kernel=wfr (TOML values)",
    )
    run.add_argument("--out", help="output directory (default: mfsample-<experiment name>)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR with its stored configuration")
    _add_progress(run)


def _add_report(commands):
    report = commands.add_parser(
        "report",
        help="recompute diagnostics and figures of a run; write DIR/report.html",
        description="Recompute the diagnostics and figures from the draws saved in DIR, write "
        "DIR/summary.json, DIR/figures/*.png and a self-contained DIR/report.html, and print "
        "the summary table.",
        epilog="example:\n  mfsample report runs/qs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("dir", metavar="DIR", help="a directory written by mfsample run")


def _add_configs(commands):
    configs = commands.add_parser(
        "configs",
        help="list, show or document the packaged configurations",
        description="Packaged configurations (CI-friendly sizes; paper-size values in comments).",
        epilog="examples:\n  mfsample configs\n  mfsample configs show quickstart > my.toml\n  mfsample configs keys",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = configs.add_subparsers(dest="configs_command", metavar="ACTION")
    sub.add_parser("list", help="list the packaged configurations (default)")
    show = sub.add_parser("show", help="print a packaged configuration")
    show.add_argument("name", metavar="NAME")
    sub.add_parser("keys", help="every configuration key with its type, default and meaning")


#: the demo's value options: (flag, type, help)
DEMO_OPTIONS = (
    ("--steps", _int_at_least(1), "steps per run (run.steps)"),
    ("--width", _int_at_least(1), "student width n, particles (model.width)"),
    ("--num-data", _int_at_least(1), "training data N (data.num_data)"),
    ("--dim", _int_at_least(1), "input dimension d (data.dim)"),
    ("--teacher-width", _int_at_least(1), "teacher width (data.teacher_width)"),
    ("--chains", _int_at_least(1), "independent replicas (run.chains)"),
    ("--step-size", _positive_float, "dt in mean-field time (dynamics.step_size)"),
    ("--temperature", _positive_float, "tau (dynamics.temperature)"),
    ("--seed", _int_at_least(0), "seed of the data and the run (data.seed, run.seed)"),
)


def _add_demo(commands):
    demo = commands.add_parser(
        "demo",
        help="run the packaged quickstart configuration (options are --set shortcuts)",
        description="mfsample run on the packaged quickstart configuration (the README's quickstart): a "
        "teacher-student network trained by mean-field Langevin dynamics, then by the Wasserstein flow from "
        "the same initial particles; writes OUT/<run>/draws/width_<n>.nc, OUT/<run>/summary.json and "
        "OUT/<run>/figures for <run> = mean_field_langevin, wasserstein_flow.",
        epilog="examples:\n  mfsample demo --out mfsample-demo\n  mfsample demo --quick --out /tmp/mf\n"
        "  mfsample demo --width 512 --steps 4000 --seed 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="mfsample-demo", help="output directory (default: %(default)s)")
    for flag, kind, text in DEMO_OPTIONS:
        demo.add_argument(flag, type=kind, help=text)
    demo.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes for a smoke test: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()),
    )
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other override")
    _add_progress(demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``mfsample`` argument parser (one sub-command per job)."""
    parser = argparse.ArgumentParser(
        prog="mfsample",
        description="Mean-field shallow networks as particle measures moved by NumPyro kernels: "
        "reproducible, resumable experiments from TOML configurations.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_run, _add_report, _add_configs, _add_demo):
        add(commands)
    return parser


# ---------------------------------------------------------------------------------------------
# the handlers
# ---------------------------------------------------------------------------------------------
def _err(text: str):
    print(text, file=sys.stderr, flush=True)


def _config_path(name: str) -> Path:
    """A TOML file, or the packaged configuration of that name."""
    p = Path(name)
    if p.is_file():
        return p
    missing = f"{name}: no such file"
    if p.is_dir():
        missing = f"{name} is a directory, not a file: give a TOML configuration file"
    if p.suffix in ("", ".toml") and p.parent == Path("."):
        try:
            return packaged_config_path(name)
        except KeyError as exc:
            raise FileNotFoundError(f"{missing}, and {exc.args[0]}") from None
    raise FileNotFoundError(missing)


def _run_and_analyse(cfg, out: Path, progress: str) -> int:
    """Run the experiment, analyse it, print the table and the files written; each failure
    mapped to its exit status."""
    # Deliberate lazy load, for start-up time: these modules bring JAX, NumPyro, ArviZ and
    # matplotlib, which `mfsample --help`, `configs` and invalid configurations never need.
    from .report import analyse
    from .run import run_experiment
    from .rundir import draws_path

    try:
        with contextlib.ExitStack() as hold:  # the directory stays locked while it is analysed
            run_experiment(cfg, out, progress=progress, hold=hold)
            analysis = analyse(out, cfg)
    except RunDirInUse as exc:
        _err(f"mfsample run: {exc}")
        return EXIT_INVALID
    except CheckpointError as exc:
        _err(
            f"mfsample run: refusing to resume: {exc}\nremove the directory {out / 'checkpoints'} "
            "(or the width's subdirectory) to recompute from the start, or use another --out"
        )
        return EXIT_INVALID
    except InputError as exc:
        _err(f"mfsample run: invalid input: {exc}")
        return EXIT_INVALID
    except RunFailure as exc:
        _err(f"mfsample run: failed: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err(f"mfsample run: interrupted; run the same command again to resume from the last checkpoint in {out}")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the run's own failure: report it with its cause
        if os.environ.get("MFSAMPLE_DEBUG"):
            traceback.print_exc()
        _err(
            f"mfsample run: failed during the run: {type(exc).__name__}: {exc} (set MFSAMPLE_DEBUG=1 for the traceback)"
        )
        return EXIT_FAILURE
    draws = [draws_path(out, n) for n in widths_of(cfg)] if cfg["experiment"]["kind"] == "simulate" else []
    _print_outputs(out, analysis, draws)
    return EXIT_OK


def _print_outputs(out: Path, analysis, draws: Sequence[Path]):
    """The headline table, then the files written."""
    print(analysis.table)
    tables = "".join(f", {out}/{f}" for f in analysis.summary.get("tables", []))
    figures = "".join(f", {out}/figures/{f}" for f in analysis.summary.get("figures", []))
    print(f"wrote {out}/summary.json, {out}/config.toml{tables}{figures}")
    if draws:
        print("draws: " + ", ".join(map(str, draws)))


def _execute(config_path: Path, overrides: Sequence[str], out: str | None, progress: str) -> int:
    """Validate, run, print the table and what was written."""
    notes: list[str] = []
    try:
        cfg = load_config(config_path, overrides, notes)
    except ConfigError as exc:
        _err(f"mfsample run: {exc.format()}")
        return EXIT_INVALID
    for note in notes:
        _err(f"mfsample run: note: {note}")
    out = Path(out or f"mfsample-{cfg['experiment']['name']}")
    _err(f"mfsample run: {cfg['experiment']['name']} ({cfg['experiment']['kind']}) -> {out}")
    return _run_and_analyse(cfg, out, progress)


def _run_target(args) -> tuple[Path, str | None]:
    """``(configuration file, output directory)`` of ``mfsample run``.

    :raises ValueError: with the message, for arguments that name no configuration.
    """
    if not args.resume:
        if not args.config:
            raise ValueError("give a CONFIG file (or a packaged name: mfsample configs) or --resume DIR")
        try:
            return _config_path(args.config), args.out
        except FileNotFoundError as exc:
            raise ValueError(exc.args[0]) from None
    if args.config:
        raise ValueError("give either CONFIG or --resume DIR, not both")
    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ValueError("--resume DIR continues DIR in place; --out must be DIR or absent")
    path = Path(args.resume) / "config.toml"
    if Path(args.resume).exists() and not Path(args.resume).is_dir():
        raise ValueError(f"--resume {args.resume} is a file, not a run directory")
    if not path.is_file():
        raise ValueError(f"{args.resume} holds no mfsample run (no config.toml)")
    return path, args.resume


def _run(args) -> int:
    try:
        path, out = _run_target(args)
    except ValueError as exc:
        _err(f"mfsample run: {exc}")
        return EXIT_INVALID
    return _execute(path, args.set, out, args.progress)


def _report(args) -> int:
    # Deliberate lazy load, for start-up time (see _run_and_analyse).
    from .report import write_report

    try:
        path, analysis = write_report(args.dir)
    except InputError as exc:
        _err(f"mfsample report: {exc}")
        return EXIT_INVALID
    print(analysis.table)
    print(f"wrote {path}")
    return EXIT_OK


def _configs(args) -> int:
    action = args.configs_command or "list"
    if action == "list":
        names = packaged_configs()
        width = max(map(len, names)) if names else 0
        for name, line in names.items():
            print(f"{name:<{width}}  {line}")
        print("\nshow one with `mfsample configs show NAME`; run it with `mfsample run NAME --out DIR`")
        return EXIT_OK
    if action == "keys":
        print(schema_table())
        return EXIT_OK
    try:
        print(packaged_config_path(args.name).read_text(), end="")
    except KeyError as exc:
        _err(f"mfsample configs show: {exc.args[0]}")
        return EXIT_INVALID
    return EXIT_OK


def demo_overrides(args) -> list[str]:
    """The ``--set`` overrides of the demo's options (``--quick`` sizes first, explicit options win)."""
    values = dict(QUICK) if args.quick else {}
    for name in DEMO_KEYS:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    sets = [f"{key}={values[name]!r}" for name, keys in DEMO_KEYS.items() if name in values for key in keys]
    return sets + list(args.set)


def _demo(args) -> int:
    """The quickstart configuration with both kernels: mean-field Langevin (as packaged) and the
    Wasserstein flow (temperature 0), same data, seed and initial particles, one output
    subdirectory each."""
    for k, (name, extra) in enumerate(DEMO_RUNS, 1):
        print(("\n" if k > 1 else "") + f"[{k}/{len(DEMO_RUNS)}] {DEMO_TITLES[name]}", flush=True)
        status = _execute(
            packaged_config_path("quickstart"),
            demo_overrides(args) + list(extra),
            str(Path(args.out) / name),
            args.progress,
        )
        if status != EXIT_OK:
            return status
    return EXIT_OK


#: the handler of each sub-command: ``handler(args) -> exit status``
COMMANDS = {"run": _run, "report": _report, "configs": _configs, "demo": _demo}


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
def _dispatch(argv) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    finally:
        sys.stdout.flush()  # a reader that closed the pipe is noticed here, inside main


def _discard_stdout():
    """Point the standard output at ``os.devnull``, so that the interpreter's final flush of what
    is still buffered does not fail a second time on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a captured stream): nothing to flush there
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mfsample`` console script; returns the exit status.

    A reader that closes the standard output early (``mfsample configs keys | head``) ends the
    command quietly with status 141 (128 + SIGPIPE), as a pipe's writer killed by SIGPIPE would.
    """
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
