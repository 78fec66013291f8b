"""Compiled programmes, cached by what fixes them: a kernel's structure and the call's shapes.

A compiled function (``jax.jit`` of a driver's loop, of a kernel's initialisation) depends on the
kernel only through its :attr:`~mfsample.kernels.contract.SweepableDynamics.structure` and the
pattern of exactly-zero settings (:mod:`~mfsample.kernels.parameters`); the numeric settings are
arguments.  :func:`cached` keeps one ``jax.jit`` object per such key, so a *new* kernel that
differs from an earlier one only in its numbers finds the earlier one's compiled programme (JAX
caches compilations per ``jit`` object and argument shapes).

Kernels that do not state a structure (third-party kernels written against the base contract)
get a cache of their own, held beside them in a weak dictionary: neither modified nor kept
alive by it.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["cached", "structure_key", "clear", "MAX_PROGRAMMES"]

#: compiled programmes kept (least recently used dropped first); each holds the kernel it was
#: first built from, so that kernel stays alive while its programme is cached
MAX_PROGRAMMES = 256

_BY_STRUCTURE: OrderedDict = OrderedDict()
_BY_KERNEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def structure_key(kernel) -> Hashable | None:
    """The kernel's ``structure`` when it states one and it is hashable, else ``None``."""
    structure = getattr(type(kernel), "structure", None)
    if structure is None:
        return None
    key = kernel.structure
    try:
        hash(key)
    except TypeError:
        return None
    return key


def cached(kernel, key: tuple, make: Callable[[], Callable]) -> Callable:
    """The programme for ``(kernel's structure, key)``, made by ``make()`` on first use.

    ``key`` holds the driver's own static choices (counts, shapes that are not arguments, static
    keyword arguments); an unhashable ``key`` is not cached (``make()`` every time).
    """
    try:
        hash(key)
    except TypeError:
        return make()
    structure = structure_key(kernel)
    if structure is None:
        table = _BY_KERNEL.setdefault(kernel, {})
        if key not in table:
            table[key] = make()
        return table[key]
    full = (structure, key)
    if full in _BY_STRUCTURE:
        _BY_STRUCTURE.move_to_end(full)
        return _BY_STRUCTURE[full]
    fn = _BY_STRUCTURE[full] = make()
    while len(_BY_STRUCTURE) > MAX_PROGRAMMES:
        _BY_STRUCTURE.popitem(last=False)
    return fn


def clear() -> None:
    """Forget every cached programme (JAX's own compilation cache is left alone)."""
    _BY_STRUCTURE.clear()
    _BY_KERNEL.clear()
