"""How ``mfsample`` commands fail, and the exit status of each failure.

=====  ==========================================================================================
0      success
1      failure during the run (:class:`RunFailure`: a divergence, a numerical error)
2      invalid configuration or input (:class:`~mfsample.cli.config.ConfigError`,
       :class:`InputError`, :class:`CheckpointError`, :class:`RunDirInUse`), or environment
       (a ``run.device`` or ``run.devices`` that JAX does not have)
130    interrupted (``Ctrl-C``; running the same command again resumes)
141    standard output closed by its reader (``mfsample configs keys | head``): 128 + SIGPIPE
=====  ==========================================================================================

Standard library only: the argument parser imports this module, and it must start fast.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_INVALID",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "InputError",
    "CheckpointError",
    "RunDirInUse",
    "RunFailure",
]

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


class InputError(Exception):
    """Invalid input other than the configuration's keys (data file, output directory, checkpoint): exit 2."""


class CheckpointError(InputError):
    """A checkpoint that cannot be trusted (truncated, modified, foreign, another configuration)."""


class RunFailure(Exception):
    """The run failed while computing (divergence, numerical error): exit 1."""


class RunDirInUse(InputError):
    """The run directory is in use by another process (it holds the directory's lock): exit 2."""
