"""Particles (or chains) sharded over devices with ``jax.sharding``: one program, GSPMD collectives.

The particle axis leads every per-particle array of the state, so placing the state with
``NamedSharding(mesh, P("devices"))`` splits the particle system over the devices of a 1-D
``Mesh``; the data are replicated.  The network output ``f(x_i) = n^(1-p) sum_j m_j phi(x_i;
theta_j)`` is then a sum of per-device partial sums, which XLA's SPMD partitioner completes with
an all-reduce (the ``psum`` of the output); the backward pass needs none (each device owns the
gradients of its particles).  The same code runs on one host with several devices and on many
hosts after ``jax.distributed.initialize()`` (every process runs the same program, the mesh
spans the devices of all processes, and the arrays are assembled with
``jax.make_array_from_callback`` from values every process computes identically).

Random draws use JAX's partitionable threefry (``jax_threefry_partitionable``, the default since
JAX 0.5), so the noise of particle ``j`` does not depend on how the particles are laid out:
a sharded run equals the single-device run for the same key, up to float32 summation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "make_mesh", "state_shardings", "replicated", "place", "SHARD_MODES"]

#: name of the mesh axis the particles (or chains) are split over
AXIS = "devices"
SHARD_MODES = ("auto", "particles", "chains")


def make_mesh(devices: Any) -> Mesh:
    """A 1-D mesh with axis ``"devices"`` from ``devices``.

    ``devices`` is an int ``k`` (the first ``k`` of ``jax.devices()``, all processes' devices on
    a multi-host run), ``"all"`` (every device), a sequence of ``jax.Device`` or a ``Mesh``
    (used as is if 1-D, else refused).
    """
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(f"give a 1-D mesh (one axis for the particles), got axes {devices.axis_names}")
        return Mesh(devices.devices.reshape(-1), (AXIS,))
    every = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be an int, 'all', a list of devices or a Mesh, got {devices!r}")
        chosen = every
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(every):
            raise ValueError(
                f"devices={devices} but JAX sees {len(every)} device(s) ({every[0].platform}); on the "
                "CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=K before importing jax"
            )
        chosen = every[: int(devices)]
    elif isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
        chosen = list(devices)
    else:
        raise TypeError(f"devices must be an int, 'all', a list of jax devices or a Mesh, got {devices!r}")
    return Mesh(np.asarray(chosen), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def state_shardings(state, mesh: Mesh, *, axis: int, size: int):
    """A tree of shardings for ``state``: arrays whose axis ``axis`` has length ``size`` are split
    along it over the mesh, everything else (scalars, keys, counters) is replicated.

    With particles sharded ``axis`` is the particle axis (0, or 1 behind a chain axis) and
    ``size`` the width; with chains sharded, ``axis = 0`` and ``size`` the number of chains.
    Sharding never changes what is computed, only where, so a leaf matched by coincidence of
    its length costs communication, not correctness.
    """

    def one(x):
        shape = np.shape(x)
        if len(shape) > axis and shape[axis] == size:
            return NamedSharding(mesh, P(*([None] * axis), AXIS))
        return NamedSharding(mesh, P())

    return jax.tree.map(one, state)


def place(tree, shardings):
    """Put ``tree`` on the mesh with ``shardings``.

    Each process supplies its devices' slices of its own (identical) copy, so this also
    assembles global arrays on a multi-host run, where ``jax.device_put`` onto devices of other
    processes is not allowed.
    """

    def one(x, sharding):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            return jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree, shardings)
