"""Runs as ArviZ ``InferenceData``: in memory, or streamed to a netCDF file chunk by chunk.

* :mod:`~mfsample.inference_data.layout` – the groups, dims, coordinates and attributes of a run;
* :mod:`~mfsample.inference_data.predict` – the output ``f_n(x)`` and the unit functions ``phi``
  at evaluation points, over the draws;
* :mod:`~mfsample.inference_data.stream` – :class:`DrawWriter` (the same groups written chunk by
  chunk), :func:`write_predictions`, :func:`read_draws`, :func:`count_draws`;
* :mod:`~mfsample.inference_data.configs` – a sweep's configurations stacked along ``config``;
* :mod:`~mfsample.inference_data.convert` – :func:`to_inference_data` and :func:`open_streamed`.

Imports run one way: ``convert -> configs``, ``convert -> stream -> predict -> layout``; a kernel is used only through
:mod:`mfsample.kernels.contract`.
"""

from importlib import import_module as _import_module

from .stream import DRAW_GROUPS, DrawWriter, count_draws, read_draws, write_predictions

#: names of :mod:`.convert`, loaded on first access: it imports ArviZ (about 2 s), which the
#: streaming writer, and so :func:`mfsample.simulate`, does not need
_CONVERT = ("to_inference_data", "open_streamed")


def __getattr__(name: str):
    if name in _CONVERT:
        value = getattr(_import_module(f"{__name__}.convert"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "to_inference_data",
    "open_streamed",
    "DrawWriter",
    "write_predictions",
    "read_draws",
    "count_draws",
    "DRAW_GROUPS",
]
