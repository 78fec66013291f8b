"""The lazy (NTK) regime: kernel gradient flow, the network's predictions, and how far particles move.

With ``f = n^-p sum_j a_j sigma(<w_j, x> + b_j)`` trained by mfsample's flow (velocity
``n^(2p-1) grad_{theta_j} E``, ``E = (1/2N) sum_i (f(x_i) - y_i)^2 + const``),

    d f_t(x) / dt = -(1/N) Theta_t(x, X) (f_t(X) - y),     Theta_t = n^(2p-1) sum_j grad_j f grad_j f^T.

In the NTK scaling (``p = 1/2``) ``Theta_t -> Theta`` (:func:`~mfsample.baselines.kernels.relu_ntk`)
uniformly in ``t`` as ``n -> inf``, each particle moves ``O(n^-1/2)``, and ``f_t`` solves the linear
ODE in closed form, the *kernel gradient flow* (Jacot et al. 2018; Chizat, Oyallon & Bach 2019):

    f_t(x) = f_0(x) + Theta(x, X) Theta(X, X)^-1 (I - exp(-t Theta(X, X) / N)) (y - f_0(X)).

In the mean-field scaling the particles move ``O(1)`` and ``Theta_t`` changes: no such formula.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

from ..models.shallow import shallow_network

__all__ = ["kernel_gradient_flow", "network_predict", "relative_displacement"]


def kernel_gradient_flow(kernel_train, kernel_test, y, f0_train, f0_test, times, *, step_size=None):
    """Predictions ``f_t(x)`` of kernel gradient flow on ``E = (1/2N) |f(X) - y|^2`` (module docstring).

    :param kernel_train: ``Theta(X, X)``, ``(N, N)``.
    :param kernel_test: ``Theta(x, X)``, ``(M, N)``.
    :param y: targets ``(N,)``; ``f0_train`` ``(..., N)`` and ``f0_test`` ``(..., M)``: the
        initial function (leading batch axes, e.g. chains, are allowed).
    :param times: ``(T,)`` times ``t``.
    :param step_size: ``None`` for the continuous flow; ``dt`` for its explicit Euler scheme
        (``exp(-t Theta/N)`` becomes ``(I - dt Theta/N)^(t/dt)``), what a kernel with that step computes.
    :returns: ``(..., T, M)``.

    With ``Theta(X, X) = U diag(e) U^T`` the flow is
    ``f_t(x) = f_0(x) + Theta(x, X) U diag(h_t(e)) U^T (y - f_0(X))``, ``h_t(e) = (1 - exp(-t e/N)) / e``
    (``-> t/N`` as ``e -> 0``), which needs no inverse of ``Theta(X, X)``.
    """
    kx, ktest = jnp.asarray(kernel_train), jnp.asarray(kernel_test)
    n = kx.shape[0]
    e, u = jnp.linalg.eigh(0.5 * (kx + kx.T))
    e = jnp.clip(e, 0.0, None)
    t = jnp.asarray(times, e.dtype)[:, None]
    if step_size is None:
        decay = jnp.expm1(-t * e[None, :] / n)  # exp(-t e/N) - 1
    else:
        k = jnp.round(t / step_size)
        decay = jnp.expm1(k * jnp.log1p(-step_size * e[None, :] / n))
    safe = jnp.where(e > 0, e, 1.0)
    h = jnp.where(e[None, :] > 0, -decay / safe[None, :], t / n if step_size is None else k * step_size / n)
    resid0 = jnp.asarray(y) - jnp.asarray(f0_train)  # (..., N)
    coef = (resid0 @ u)[..., None, :] * h  # (..., T, N)
    return jnp.asarray(f0_test)[..., None, :] + (coef @ u.T) @ ktest.T


def network_predict(params: dict, x, *, model=shallow_network, **model_kwargs):
    """The network function ``f(x)`` of particle values ``params`` (leading batch axes allowed).

    ``params`` maps the model's particle sites (``a``, ``w``, ``b``) to arrays of shape
    ``(..., n, ...)``, e.g. ``Simulation.samples`` (``(chain, draw, n, ...)``) or one state; other
    keys (deterministic sites such as ``f``, ``masses``) are ignored.  ``f`` is the model's ``f``
    site, computed by substituting the values into the model (no second copy of the forward pass).
    ``width`` defaults to the size of ``params["a"]``'s last axis.
    """
    x = jnp.asarray(x)
    sites = {k: jnp.asarray(v) for k, v in params.items() if k in ("a", "w", "b")}
    if "a" not in sites:
        raise ValueError("params must hold the particle site 'a'")
    batch = sites["a"].shape[:-1]
    kwargs = dict(model_kwargs)
    kwargs.setdefault("width", int(sites["a"].shape[-1]))
    if "b" not in sites:
        kwargs.setdefault("bias", False)

    def one(p):
        m = handlers.substitute(handlers.seed(model, 0), data=p)
        return handlers.trace(m).get_trace(x, **kwargs)["f"]["value"]

    fn = one
    for _ in batch:
        fn = jax.vmap(fn)
    return fn(sites)


def _as_samples(obj) -> tuple[dict, Any]:
    """A dict of ``(chain, draw, particle, ...)`` arrays and the draws' times (or None)."""
    if hasattr(obj, "samples") and hasattr(obj, "time"):  # mfsample.Simulation
        return {k: np.asarray(v) for k, v in obj.samples.items()}, np.asarray(obj.time)
    if hasattr(obj, "posterior"):  # arviz.InferenceData
        obj = obj.posterior
    if isinstance(obj, xr.Dataset):
        time = np.asarray(obj["time"]) if "time" in obj.coords else None
        return {k: np.asarray(v) for k, v in obj.data_vars.items()}, time
    if isinstance(obj, dict):
        return {k: np.asarray(v) for k, v in obj.items()}, None
    raise TypeError(f"expected a Simulation, InferenceData, xarray Dataset or dict, got {type(obj).__name__}")


def relative_displacement(samples_or_simulation, initial: dict | None = None, *, sites=None) -> xr.DataArray:
    """How far the particle system moved: ``|theta(t) - theta(0)| / |theta(0)|`` for every draw.

    ``|.|`` is the Euclidean norm over all particles and all coordinates of ``sites`` (default: those
    of ``a``, ``w``, ``b`` present), i.e. the root-mean-square particle displacement over the
    root-mean-square particle norm.  In the NTK scaling it is ``O(n^-1/2)`` uniformly in ``t``
    (lazy training), in the mean-field scaling ``O(1)``.

    :param samples_or_simulation: a :class:`~mfsample.Simulation`, an InferenceData / posterior
        Dataset, or a dict of arrays shaped ``(chain, draw, particle, ...)``
        (``MCMC.get_samples(group_by_chain=True)``).
    :param initial: the particles at ``t = 0`` (``site -> (particle, ...)`` or
        ``(chain, particle, ...)``, e.g. the ``init_params`` of the run).  ``None``: the first draw
        (which is after the first ``save_every`` steps, so the displacement is then relative to it).
    :returns: DataArray with dims ``(chain, draw)`` (coordinate ``time`` when the input has it).
    """
    samples, time = _as_samples(samples_or_simulation)
    names = [s for s in ("a", "w", "b") if s in samples] if sites is None else list(sites)
    if not names:
        raise ValueError("no particle site to measure: give `sites`")
    num = 0.0
    den = 0.0
    for s in names:
        v = samples[s]
        if v.ndim < 3:
            raise ValueError(f"site {s!r} must have shape (chain, draw, particle, ...), got {v.shape}")
        ref = v[:, :1] if initial is None else np.asarray(initial[s])
        if initial is not None:
            ref = ref[None, None] if ref.ndim == v.ndim - 2 else ref[:, None]
        axes = tuple(range(2, v.ndim))
        num = num + np.sum((v - ref) ** 2, axis=axes)
        den = den + np.sum(np.broadcast_to(ref, v.shape) ** 2, axis=axes)
    out = xr.DataArray(np.sqrt(num / den), dims=("chain", "draw"), name="relative_displacement")
    if time is not None and len(time) == out.sizes["draw"]:
        out = out.assign_coords(time=("draw", time))
    return out
