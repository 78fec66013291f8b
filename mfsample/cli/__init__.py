"""The ``mfsample`` command line (console script ``mfsample = mfsample.cli:main``).

Modules, each importing only those listed before it:

* :mod:`.errors` – the failures and their exit statuses;
* :mod:`.config` – the TOML schema, its validation and the ``--set`` overrides;
* :mod:`.rundir` – the run directory: layout, checkpoint files, atomic writes;
* :mod:`.build` – the data, kernel and model arguments a configuration builds;
* :mod:`.resume` – the checks of a run directory before resuming it;
* :mod:`.progress`, :mod:`.environment` – progress display; library versions and device;
* :mod:`.run` – the experiment runners (:func:`~.run.run_experiment`);
* :mod:`.report` – the diagnostics, figures and HTML report of a run directory;
* :mod:`.main` – the argument parser and the sub-commands.

``import mfsample.cli`` loads :mod:`.main` with :mod:`.config` and :mod:`.errors` only (standard
library): ``mfsample --help`` starts without JAX.
"""

from .errors import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from .main import QUICK, build_parser, demo_overrides, main

__all__ = ["main", "build_parser", "QUICK", "EXIT_OK", "EXIT_FAILURE", "EXIT_INVALID", "demo_overrides"]
