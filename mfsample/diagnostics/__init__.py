"""ArviZ diagnostics of particle runs: conversion, fluctuations, propagation of chaos (DESIGN.md §4)."""

from . import plots
from .chaos import chaos
from .convert import to_inference_data
from .fluctuations import fluctuations, unit_variance
from .summary import summary

__all__ = ["to_inference_data", "fluctuations", "unit_variance", "chaos", "summary", "plots"]
