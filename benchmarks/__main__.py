"""``python -m benchmarks``: the benchmark suite (:mod:`benchmarks.run`), then the sweep rows
(:mod:`benchmarks.sweep`).

    python -m benchmarks [options]                  # the suite, then the sweep rows
    python -m benchmarks --only suite [options]     # the suite alone (options: python -m benchmarks.run -h)
    python -m benchmarks --only sweep [options]     # the sweep rows alone (options: python -m benchmarks.sweep -h)

Run together, the sweep rows take the suite's ``--quick``, ``--repeats`` and ``--json`` (written
to ``PATH`` with ``-sweep`` before its extension); the other options are the suite's.
"""

import argparse
import os

from . import run, sweep

ONLY = ("suite", "sweep")


def split_only(argv=None):
    """``(which parts to run, the remaining arguments)``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--only", choices=ONLY, default=None)
    known, rest = p.parse_known_args(argv)
    return (ONLY if known.only is None else (known.only,)), rest


def sweep_argv(suite_argv):
    """The options of a combined run that the sweep rows take (see the module docstring)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", default=None)
    p.add_argument("--json", default=None)
    known, _ = p.parse_known_args(suite_argv)
    out = ["--quick"] if known.quick else []
    if known.repeats:
        out += ["--repeats", known.repeats]
    if known.json:
        stem, ext = os.path.splitext(known.json)
        out += ["--json", f"{stem}-sweep{ext}"]
    return out


def main(argv=None):
    parts, rest = split_only(argv)
    if parts == ("sweep",):
        return sweep.main(rest)
    result = run.main(rest)
    if "sweep" in parts:
        print()
        sweep.main(sweep_argv(rest))
    return result


if __name__ == "__main__":  # not when a spawned worker process imports this module as __mp_main__
    main()
