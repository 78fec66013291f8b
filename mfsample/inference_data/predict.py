"""The network's output at new inputs, and its unit functions, over the draws of a run.

At evaluation points ``x`` (held-out inputs drawn from ``nu``) the output of a draw is

    f_n(x) = n^(1-p) sum_j m_j phi(x; theta_j),

computed by re-running the model's deterministic output site (``f``) with its input replaced by
``x`` (or by a user ``output_fn(particles, masses, x)``).  The unit functions are its derivatives
in the masses,

    phi(x; theta_j) = n^(p-1) df/dm_j,

exact for every model linear in the masses (every mean-field model ``f = ∫ phi dmu``); they are
stored at the first ``unit_points`` evaluation points, for models that take ``masses``.

The draws are flattened to one axis ``(chain * draw)`` and mapped by one compiled function in
memory-bounded batches (:func:`evaluator`), which the streaming reader reuses batch after batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation
from .layout import Layout, model_trace

__all__ = ["Predictor", "predictor", "eval_arguments", "flatten_draws", "evaluator", "evaluate"]


class Predictor(NamedTuple):
    """``out(params, masses) -> (M,)`` (``masses=None``: uniform) and the number ``U`` of leading
    evaluation points at which the unit functions are computed (0: none)."""

    out: Callable
    unit_points: int


def eval_arguments(model_args, model_kwargs, x_eval, x_arg):
    """The model's arguments with the input replaced by ``x_eval`` and the other per-datum arrays
    (labels; :func:`mfsample.validation.is_per_datum`) set to ``None``: they are unknown at the
    evaluation points."""
    args, kwargs = list(model_args), dict(model_kwargs)
    num_data = np.shape(args[x_arg] if isinstance(x_arg, int) else kwargs[x_arg])[0]
    args = [None if validation.is_per_datum(a, num_data) else a for a in args]
    kwargs = {k: (None if validation.is_per_datum(v, num_data) else v) for k, v in kwargs.items()}
    if isinstance(x_arg, int):
        args[x_arg] = x_eval
    else:
        kwargs[x_arg] = x_eval
    # drop trailing positional Nones so that keyword-only defaults apply
    while args and args[-1] is None and len(args) - 1 != x_arg:
        args.pop()
    return tuple(args), kwargs


def _user_output(output_fn, x_eval, single):
    """``out`` from ``output_fn(particles, masses, x_eval)`` (particles as ``energy_fn`` sees them)."""
    xe = None if x_eval is None else jnp.asarray(x_eval)

    def out(params, masses):
        if masses is None:
            n = jax.tree.leaves(params)[0].shape[0]
            masses = jnp.full((n,), 1.0 / n)
        return jnp.atleast_1d(output_fn(params["theta"] if single else params, masses, xe))

    return out


def _model_output(layout: Layout, x_eval, output_site):
    """``out`` re-running the model's ``output_site`` with its input replaced by ``x_eval``."""
    if layout.x_arg is None:
        raise ValueError(
            "x_eval was given but the model's input was not found in its arguments; "
            "set x_arg to its position or keyword"
        )
    args, kwargs = eval_arguments(layout.model_args, layout.model_kwargs, jnp.asarray(x_eval), layout.x_arg)
    kwargs = {k: v for k, v in kwargs.items() if k != "masses"}

    def out(params, masses):
        kw = dict(kwargs) if masses is None else {**kwargs, "masses": masses}
        tr = model_trace(layout.model, args, kw, params)
        if output_site not in tr:
            raise KeyError(f"the model has no site {output_site!r}; set output_site to its output site")
        return jnp.atleast_1d(tr[output_site]["value"])

    return out


def predictor(layout: Layout, x_eval, output_site="f", output_fn=None, unit_points=16) -> Predictor | None:
    """The output at ``x_eval`` (``None``: nothing to predict, i.e. no ``output_fn`` and no model
    or no ``x_eval``).  ``unit_points`` (``None`` or an integer >= 0) are kept only when the output
    accepts masses (``output_fn``, or a model taking ``masses``)."""
    units = 0 if unit_points is None else validation.positive_int("unit_points", unit_points, minimum=0)
    if output_fn is not None:
        return Predictor(_user_output(output_fn, x_eval, layout.single), units)
    if layout.model is None or x_eval is None:
        return None
    return Predictor(_model_output(layout, x_eval, output_site), units if layout.accepts_masses else 0)


def flatten_draws(params, masses):
    """``(chain, draw, ...)`` -> ``(chain * draw, ...)`` for the particle sites and the masses."""
    chains, draws = jax.tree.leaves(params)[0].shape[:2]
    flat = jax.tree.map(lambda v: jnp.asarray(v).reshape((chains * draws,) + v.shape[2:]), params)
    m_flat = None if masses is None else jnp.asarray(masses).reshape(chains * draws, -1)
    return flat, m_flat


def evaluator(pred: Predictor, item, num_items, width, exponent, batch_size=None):
    """A compiled ``fn((flat_params, flat_masses)) -> (f (items, M), phi (items, n, U) or None)``
    mapping the output (and the unit functions) over a flat axis of draws; ``item`` is one draw
    (its shapes fix the compiled programme: calls with the same number of items reuse it);
    ``batch_size`` draws at once (default: about ``2^24`` activations per batch)."""
    out, units = pred

    def one(it):
        p, m = it
        f = out(p, m)
        if not units:
            return f, None
        mm = jnp.full((width,), 1.0 / width) if m is None else m
        # phi_j(x) = n^(p-1) df/dm_j: exact when f is linear in the masses (f = n^(1-p) sum m_j phi_j)
        jac = jax.jacfwd(lambda mv: out(p, mv)[:units])(mm)  # (U, n)
        return f, (width ** (exponent - 1.0)) * jac.T

    if batch_size is None:  # keep one batch's activations near 2^24 numbers
        probe = jax.eval_shape(lambda it: one(it)[0], item)
        num_eval = int(np.prod(probe.shape)) if probe.shape else 1
        batch_size = max(1, min(num_items, 2**24 // max(1, num_eval * width)))
    return jax.jit(lambda xs: jax.lax.map(one, xs, batch_size=batch_size))


def evaluate(pred: Predictor, layout: Layout, samples, batch_size=None):
    """``(f (chain, draw, M), phi (chain, draw, n, U) or None)`` of the draws ``samples``."""
    params = {k: samples[k] for k in layout.particle_sites + layout.shared_sites}
    chains, draws = jax.tree.leaves(params)[0].shape[:2]
    flat, m_flat = flatten_draws(params, samples.get("masses"))
    fn = evaluator(
        pred, jax.tree.map(lambda v: v[0], (flat, m_flat)), chains * draws, layout.width, layout.exponent, batch_size
    )
    f, phi = fn((flat, m_flat))
    f = np.asarray(f).reshape(chains, draws, -1)
    if phi is not None:
        phi = np.asarray(phi).reshape(chains, draws, layout.width, -1)
    return f, phi
