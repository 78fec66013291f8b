"""The computing environment of a run: library versions and the JAX device (recorded in
``run.json`` and ``summary.json``), the choice of that device (``run.device``) and the check that
the devices a run is sharded over exist (``run.devices``)."""

from __future__ import annotations

import platform

import arviz
import jax
import jaxlib
import numpy as np
import numpyro

from .. import __version__
from .errors import InputError

__all__ = ["environment", "select_device", "check_devices"]


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


def check_devices(count: int):
    """``run.devices = count`` needs ``count`` devices among those JAX sees (``jax.devices()``,
    the ones :func:`mfsample.sharding.make_mesh` takes); checked before anything is written.

    :raises InputError: fewer devices (exit status 2), with the remedy.
    """
    devices = jax.devices()
    if count <= len(devices):
        return
    kind = devices[0].platform
    remedy = (
        f"start with XLA_FLAGS=--xla_force_host_platform_device_count={count} to split the CPU into {count}"
        if kind == "cpu"
        else "run where there are that many"
    )
    raise InputError(
        f"run.devices = {count}, but JAX sees {len(devices)} {kind} device(s) (jax.device_count() = "
        f"{jax.device_count()}); set run.devices <= {len(devices)}, or {remedy}"
    )
