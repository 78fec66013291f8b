"""What one trace of a NumPyro model says about its particle sites and its data.

A model describes a particle system when its latent sites are per-particle coordinates: each
sits in ``numpyro.plate(particle_plate, n)`` with the particle axis leading, all of them in the
same plate of size ``n`` (the width), and at least one site is observed.  Latent sites outside
the plate are *shared* parameters (e.g. the first layer of a deeper network), moved by their own
gradient flow beside the particles.  The data size is

    N = max over observed sites of (number of log_prob terms) * (the site's plate scale),

so that a subsampled plate (scale ``N / batch``) still counts the full data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ..scaling import SCALING_INFER_KEY

__all__ = ["ModelTrace", "ParticleSites", "trace_model", "particle_sites", "data_size"]

_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.UnexpectedTracerError,
)


class ModelTrace(NamedTuple):
    """One trace of the model (``sites``: name -> NumPyro site) and, for each observed site,
    the number of terms of its ``log_prob`` (``log_prob_sizes``)."""

    sites: dict
    log_prob_sizes: dict


class ParticleSites(NamedTuple):
    """The latent (particle) and observed site names in trace order, the width ``n``, the
    scaling exponents the particle sites declare (``infer={SCALING_INFER_KEY: p}``), and the
    shared sites: latent sites outside the particle plate (a first layer, an input scaling),
    moved beside the particles by their own gradient flow."""

    latent: tuple
    observed: tuple
    width: int
    declared_exponents: frozenset
    shared: tuple = ()


def _eager_trace(model: Callable, model_args: tuple, model_kwargs: dict) -> ModelTrace:
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(*model_args, **model_kwargs)
    sizes = {
        name: int(np.prod(jnp.shape(site["fn"].log_prob(site["value"]))))
        for name, site in tr.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    return ModelTrace(tr, sizes)


def _holds_tracer(obj, depth: int = 0) -> bool:
    """Whether a constraint object (or one it wraps) holds a traced parameter."""
    if isinstance(obj, jax.core.Tracer):
        return True
    if depth > 3 or not hasattr(obj, "__dict__"):
        return False
    return any(_holds_tracer(v, depth + 1) for v in vars(obj).values())


def trace_model(model: Callable, model_args: tuple, model_kwargs: dict) -> ModelTrace:
    """One trace of ``model`` for its sites, shapes and supports.

    With concrete data the model is traced abstractly (under ``jax.make_jaxpr``: no arithmetic
    is done, which matters when the ``N x n`` forward pass is large) and only shapes and metadata
    are read from it.  The trace is eager instead when the data are already traced (nothing is
    computed then anyway), when the model needs concrete values of its draws (Python control flow
    on them), or when a latent support holds a traced parameter (``Uniform(low, high)``: its
    bijection needs the bounds).
    """
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves((model_args, model_kwargs))):
        return _eager_trace(model, model_args, model_kwargs)
    key = _signature(model, model_args, model_kwargs)
    if key is not None and key in _ABSTRACT_TRACES:
        _ABSTRACT_TRACES.move_to_end(key)
        return _ABSTRACT_TRACES[key]
    trace = _abstract_trace(model, model_args, model_kwargs)
    if trace is None:
        return _eager_trace(model, model_args, model_kwargs)
    if key is not None:
        _ABSTRACT_TRACES[key] = trace
        while len(_ABSTRACT_TRACES) > _MAX_TRACES:
            _ABSTRACT_TRACES.popitem(last=False)
    return trace


#: abstract traces by model and argument shapes: what they say (sites, shapes, supports, data
#: size) does not depend on the data's values, so a second call on data of the same shapes
#: traces nothing
_ABSTRACT_TRACES: OrderedDict = OrderedDict()
_MAX_TRACES = 64


def _signature(model: Callable, model_args: tuple, model_kwargs: dict):
    """``(model, shapes and dtypes of the arrays, values of the rest)``, or ``None`` when some
    argument is neither an array nor hashable (then nothing is cached)."""

    def one(v):
        if isinstance(v, (jax.Array, np.ndarray)):
            return ("array", np.shape(v), str(v.dtype))
        return v

    key = (model, tuple(one(v) for v in model_args), tuple(sorted((k, one(v)) for k, v in model_kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _abstract_trace(model: Callable, model_args: tuple, model_kwargs: dict) -> ModelTrace | None:
    """The trace read under ``jax.make_jaxpr`` (shapes only), or ``None`` when the model needs
    concrete values (of its draws, or of a latent support's parameters)."""
    box = {}

    def staged():
        box["trace"] = _eager_trace(model, model_args, model_kwargs)
        return 0

    try:
        jax.make_jaxpr(staged)()
    except _TRACER_ERRORS:
        return None
    supports = [
        site["fn"].support
        for site in box["trace"].sites.values()
        if site["type"] == "sample" and not site["is_observed"]
    ]
    if any(_holds_tracer(support) for support in supports):
        return None
    return box["trace"]


def _in_plate(site: dict, particle_plate: str) -> bool:
    return any(frame.name == particle_plate for frame in site["cond_indep_stack"])


def _refuse_shared(names: tuple, particle_plate: str):
    raise ValueError(
        f"latent site(s) {list(names)} are outside the particle plate {particle_plate!r}, and shared "
        "sites were refused (shared_sites=False): observe them, fix them with "
        "numpyro.handlers.condition, move them into the plate, or let them move as shared parameters "
        "by their own gradient flow beside the particles (shared_sites=True, the default, with the "
        "kernel's time scale shared_step_scale)"
    )


def _particle_axis_size(name: str, site: dict, particle_plate: str) -> int:
    """The size ``n`` of the particle plate of one latent site, which must lead its shape."""
    frames = {frame.name: frame for frame in site["cond_indep_stack"]}
    n = frames[particle_plate].size
    shape = jnp.shape(site["value"])
    if len(shape) == 0 or shape[0] != n:
        raise ValueError(
            f"latent site {name!r} has shape {shape}: the particle plate {particle_plate!r} "
            f"(size {n}) must be its leading axis; make the plate the site's leftmost batch "
            "dimension and move its other dimensions into the event shape with .to_event()"
        )
    return n


def particle_sites(trace: ModelTrace, particle_plate: str, *, shared_sites: bool = True) -> ParticleSites:
    """Check the model's plates and sites and name its particle sites (see the module doc) and its
    shared sites (latent sites outside the plate; refused when ``shared_sites`` is false)."""
    samples = {name: site for name, site in trace.sites.items() if site["type"] == "sample"}
    observed = tuple(name for name, site in samples.items() if site["is_observed"])
    if not observed:
        raise ValueError(
            "the model has no observed site, so the energy -(1/N) sum log p(y | particles) "
            "is undefined: pass the data (e.g. y=...) to the model"
        )
    hidden = tuple(name for name, site in samples.items() if not site["is_observed"])
    latent = tuple(name for name in hidden if _in_plate(samples[name], particle_plate))
    shared = tuple(name for name in hidden if name not in latent)
    if shared and not shared_sites:
        _refuse_shared(shared, particle_plate)
    if not latent:
        raise ValueError(
            f"the model has no latent site in the particle plate {particle_plate!r}: put the "
            f"particle coordinates in numpyro.plate({particle_plate!r}, width), or name the "
            "model's plate with particle_plate=..."
        )
    sizes = {name: _particle_axis_size(name, samples[name], particle_plate) for name in latent}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"the particle sites have plate sizes {sizes}: all particle sites must share one "
            f"particle plate size; put them all in one numpyro.plate({particle_plate!r}, width)"
        )
    declared = frozenset(
        float(samples[name]["infer"][SCALING_INFER_KEY])
        for name in latent
        if SCALING_INFER_KEY in samples[name].get("infer", {})
    )
    return ParticleSites(latent, observed, next(iter(sizes.values())), declared, shared)


def data_size(trace: ModelTrace, observed: tuple) -> float:
    """``N``: the largest observed site's number of ``log_prob`` terms times its plate scale."""
    num_data = 0.0
    for name in observed:
        scale = trace.sites[name]["scale"]
        scale = 1.0 if scale is None else float(np.mean(scale))
        num_data = max(num_data, float(trace.log_prob_sizes[name]) * scale)
    return num_data
