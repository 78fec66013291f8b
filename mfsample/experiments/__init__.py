"""Experiments built from the kernels and baselines, used by the CLI and the notebooks."""

from . import f1_vs_f2 as _f1_vs_f2_module
from .depth_separation import depth_separation
from .f1_vs_f2 import f1_vs_f2, headline_table, weight_decay_network
from .replicate import replicate  # noqa: E402  (rebinds the name from the module to the function)
from .symmetric_generalization import matched_widths, symmetric_generalization  # noqa: E402

f1_vs_f2_experiment = _f1_vs_f2_module

__all__ = [
    "depth_separation",
    "f1_vs_f2",
    "f1_vs_f2_experiment",
    "headline_table",
    "weight_decay_network",
    "replicate",
    "symmetric_generalization",
    "matched_widths",
]
