"""Streaming a run's draws to netCDF: the names of :mod:`mfsample.inference_data.stream` (and
:func:`~mfsample.inference_data.open_streamed`), under the path that scripts use
(``mfsample.io.DrawWriter``)."""

from .inference_data import DRAW_GROUPS, DrawWriter, count_draws, open_streamed, read_draws, write_predictions

__all__ = ["DrawWriter", "open_streamed", "write_predictions", "read_draws", "count_draws", "DRAW_GROUPS"]
