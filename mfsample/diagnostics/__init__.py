"""ArviZ diagnostics of particle runs: fluctuations, propagation of chaos, summaries and plots.

They read ``arviz.InferenceData`` only; :func:`to_inference_data` (which builds it from a run) is
re-exported from :mod:`mfsample.inference_data`.  The conversion of a sweep (a ``config``
dimension) is analysed one configuration at a time (``config=``) or every configuration in turn,
the results keeping the ``config`` dimension (:mod:`~mfsample.diagnostics.configs`).
"""

from ..inference_data import to_inference_data
from . import configs, plots
from .chaos import chaos
from .fluctuations import fluctuations, unit_variance
from .summary import summary

__all__ = ["to_inference_data", "fluctuations", "unit_variance", "chaos", "summary", "plots", "configs"]
