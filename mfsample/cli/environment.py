"""The computing environment of a run: library versions and the JAX device (recorded in
``run.json`` and ``summary.json``), and the choice of that device (``run.device``)."""

from __future__ import annotations

import platform

import arviz
import jax
import jaxlib
import numpy as np
import numpyro

from .. import __version__
from .errors import InputError

__all__ = ["environment", "select_device"]


def environment() -> dict:
    """Versions of Python and the libraries, the operating system and the JAX device used."""
    dev = jax.devices()[0]
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jaxlib, "__version__", None),
        "numpyro": numpyro.__version__,
        "arviz": arviz.__version__,
        "numpy": np.__version__,
        "mfsample": __version__,
        "os": platform.platform(),
        "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
    }


def select_device(device: str):
    """Make ``device`` (``cpu``, ``gpu``, ``tpu``) JAX's default device; ``auto`` keeps JAX's choice."""
    if device == "auto":
        return
    try:
        devices = jax.devices(device)
    except RuntimeError as exc:
        raise InputError(
            f"run.device = {device!r}: JAX has no such backend here ({exc}); "
            "use run.device = 'auto' or install the backend"
        ) from None
    jax.config.update("jax_default_device", devices[0])
