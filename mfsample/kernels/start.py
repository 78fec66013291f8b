"""Starting runs inside the drivers' compiled programmes.

A fresh run starts from the chains' keys, the initial particles (``None``: drawn from ``mu0``)
and the initial masses: :class:`Fresh`.  :func:`start_states` turns it into the chains' initial
states with the kernel's pure ``initializer`` (:class:`~mfsample.kernels.contract.SweepableDynamics`),
the function that ``kernel.init`` compiles too, so a state started here equals ``init``'s.

:func:`mfsample.simulate` starts a fresh run in the same compiled programme as its first steps
(one programme and one set of buffers instead of two, the initial energy and drift evaluated
beside the loop that uses them); :func:`mfsample.sweep` starts every configuration with it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

__all__ = ["Fresh", "start_states"]


class Fresh(NamedTuple):
    """A run not started yet (a JAX pytree, an argument of compiled programmes).

    - **rng_key** – the key of one replica, or ``(num_chains, key)`` keys.
    - **init_params** – initial unconstrained particles (a leading chain axis with several
      chains), or ``None`` to draw them from ``mu0``.
    - **masses** – initial masses (validated by ``kernel.initial_masses``), ``None``: uniform.
    """

    rng_key: Any
    init_params: Any
    masses: Any


def start_states(kernel, energy, fresh: Fresh, parameters=None, *, batched: bool = False):
    """The initial state of every chain of ``fresh``: ``kernel.initializer(energy)`` on each
    chain's key (``vmap``-ped over a leading chain axis when ``batched``).  Traceable."""
    start = kernel.initializer(energy)
    if batched:
        return jax.vmap(start, (0, 0, None, None))(fresh.rng_key, fresh.init_params, fresh.masses, parameters)
    return start(fresh.rng_key, fresh.init_params, fresh.masses, parameters)
