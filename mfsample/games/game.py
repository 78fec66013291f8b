"""Two-player zero-sum games on measures: strategy spaces, payoff and value.

A mixed strategy is a probability measure; a particle measure ``mu_x = sum_i m_i delta_{x_i}``
has particles ``x_i`` (rows of an ``(n, d)`` array, the particle axis leading) and masses
``m_i`` (``None``: uniform ``1/n``).  For a payoff ``l(x, y)`` that the x-player pays and the
y-player receives, the value of two mixed strategies is

    L[mu_x, mu_y] = ∬ l(x, y) dmu_x(x) dmu_y(y) = sum_ij m_i l(x_i, y_j) m'_j,

and the first variations (the potentials each player optimises) are

    V_x(x') = ∫ l(x', y) dmu_y(y)        (dL/dmu_x: the x-player descends it),
    V_y(y') = ∫ l(x, y') dmu_x(x)        (dL/dmu_y: the y-player ascends it).

A strategy space says how particles move on it: the tangent projection of a gradient, the
retraction of a moved point back onto the space, its reference measure ``mu0`` (the uniform law
on a compact space, a Gaussian on ``R^d``; initial draws, Langevin noise and the entropy are
relative to it) and, in low dimension, a grid on which best responses can be enumerated.

Theory: ``docs/theory/games.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation

__all__ = ["Space", "Euclidean", "Sphere", "Box", "Game", "uniform_masses"]


def uniform_masses(n, dtype=None):
    """``(n,)`` masses ``1/n``."""
    return jnp.full((n,), 1.0 / n, dtype or jnp.result_type(float))


def _masses(m, n, dtype):
    return uniform_masses(n, dtype) if m is None else jnp.asarray(m, dtype)


class Space:
    """A strategy space (subclasses: :class:`Euclidean`, :class:`Sphere`, :class:`Box`).

    Points are ``(dim,)`` vectors of the ambient space ``R^dim``; every method acts on a batch
    ``(n, dim)`` of points.
    """

    dim: int

    def sample(self, rng_key, n):
        """``n`` iid draws from the reference measure ``mu0``: ``(n, dim)``."""
        raise NotImplementedError

    def tangent(self, x, g):
        """Project ambient vectors ``g`` at ``x`` onto the tangent space (Riemannian gradient)."""
        return g

    def retract(self, x):
        """Map a point moved by a (deterministic) step back onto the space."""
        return x

    def retract_diffusion(self, x):
        """Map a point moved by a step with Gaussian noise back onto the space.

        Chosen so that the noised chain leaves ``mu0`` invariant as ``dt -> 0`` (reflection on a
        box, where clipping would pile mass on the faces)."""
        return self.retract(x)

    def grad_log_reference(self, x):
        """``grad log mu0(x)`` (0 for a uniform reference measure)."""
        return jnp.zeros_like(x)

    def grid(self, resolution):
        """Points covering the space finely, for exhaustive best responses (low dimension only)."""
        raise NotImplementedError(f"{type(self).__name__}(dim={self.dim}) has no grid")

    @property
    def has_grid(self):
        return False

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim})"


class Euclidean(Space):
    """``R^dim`` with the reference measure ``mu0 = N(0, scale^2 I)``.

    Langevin noise at temperature ``tau`` then comes with the confining drift
    ``tau grad log mu0(x) = -tau x / scale^2`` (the entropy is relative to ``mu0``).
    """

    def __init__(self, dim: int, scale: float = 1.0):
        self.dim = _check_dim(dim)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = float(scale)

    def sample(self, rng_key, n):
        return self.scale * jax.random.normal(rng_key, (n, self.dim))

    def grad_log_reference(self, x):
        return -x / self.scale**2


class Sphere(Space):
    """The unit sphere ``S^{dim-1} = {x in R^dim : |x| = 1}`` (``Sphere(2)`` is the circle).

    Reference measure: the uniform law.  A gradient ``g`` at ``x`` is projected on the tangent
    space, ``(I - x x^T) g``; a moved point is retracted by normalisation ``x / |x|``.  Noise is
    added in the ambient space and then normalised: with ``x' = (x + sqrt(2 tau dt) xi) / |.|``,
    ``E[x' - x] = -tau (dim - 1) x dt + O(dt^2)`` and the tangent covariance is ``2 tau dt``, the
    Itô form of Brownian motion on the sphere, whose invariant law is the uniform one.
    """

    def __init__(self, dim: int):
        self.dim = _check_dim(dim)
        if self.dim < 2:
            raise ValueError("a sphere needs dim >= 2 (Sphere(2) is the circle)")

    def sample(self, rng_key, n):
        return self.retract(jax.random.normal(rng_key, (n, self.dim)))

    def tangent(self, x, g):
        return g - jnp.sum(g * x, axis=-1, keepdims=True) * x

    def retract(self, x):
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    @property
    def has_grid(self):
        return self.dim == 2

    def grid(self, resolution):
        """The circle only: ``resolution`` equispaced points ``(cos t, sin t)``."""
        if self.dim != 2:
            return super().grid(resolution)
        t = 2 * jnp.pi * jnp.arange(resolution) / resolution
        return jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)


class Box(Space):
    """The box ``[low, high]^dim`` (``low``/``high`` scalars or ``(dim,)`` arrays).

    Reference measure: the uniform law.  Deterministic steps are projected (clipped: projected
    gradient); noisy steps are reflected at the faces (reflected Brownian motion, whose invariant
    law is the uniform one).
    """

    def __init__(self, dim: int, low=-1.0, high=1.0):
        self.dim = _check_dim(dim)
        self.low = np.broadcast_to(np.asarray(low, float), (self.dim,)).copy()
        self.high = np.broadcast_to(np.asarray(high, float), (self.dim,)).copy()
        if not np.all(np.isfinite(self.low) & np.isfinite(self.high) & (self.high > self.low)):
            raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")

    def sample(self, rng_key, n):
        return jax.random.uniform(rng_key, (n, self.dim), minval=self.low, maxval=self.high)

    def retract(self, x):
        return jnp.clip(x, self.low, self.high)

    def retract_diffusion(self, x):
        width = self.high - self.low
        t = jnp.mod(x - self.low, 2 * width)
        return self.low + width - jnp.abs(t - width)

    @property
    def has_grid(self):
        return self.dim <= 2

    def grid(self, resolution):
        """Product grid with ``resolution`` points per axis, faces and vertices included (dim <= 2)."""
        if self.dim > 2:
            return super().grid(resolution)
        axes = [jnp.linspace(lo, hi, resolution) for lo, hi in zip(self.low, self.high)]
        mesh = jnp.meshgrid(*axes, indexing="ij")
        return jnp.stack([m.ravel() for m in mesh], axis=-1)

    def __repr__(self):
        return f"Box(dim={self.dim}, low={self.low.tolist()}, high={self.high.tolist()})"


def _check_dim(dim):
    return validation.positive_int("dim", dim)


class Game:
    """A two-player zero-sum game ``min_{mu_x} max_{mu_y} L[mu_x, mu_y]`` over mixed strategies.

    :param payoff: ``l(x, y) -> scalar``, a JAX function of one x-point ``(dx,)`` and one
        y-point ``(dy,)`` (paid by x, received by y).
    :param x_space, y_space: the strategy spaces (:class:`Euclidean`, :class:`Sphere`, :class:`Box`).

    Example::

        >>> import jax.numpy as jnp, mfsample as mf
        >>> g = mf.games.Game(lambda x, y: jnp.dot(x, y), mf.games.Sphere(2), mf.games.Sphere(2))
        >>> x = jnp.array([[1.0, 0.0], [-1.0, 0.0]]); y = jnp.array([[1.0, 0.0]])
        >>> float(g.value(x, y)), float(g.value(x, y, masses_x=jnp.array([1.0, 0.0])))
        (0.0, 1.0)
    """

    def __init__(self, payoff: Callable, x_space: Space, y_space: Space):
        if not callable(payoff):
            raise TypeError("payoff must be a function l(x, y) of one x-point and one y-point")
        for name, s in (("x_space", x_space), ("y_space", y_space)):
            if not isinstance(s, Space):
                raise TypeError(f"{name} must be a Euclidean, Sphere or Box space, got {type(s).__name__}")
        self.payoff = payoff
        self.x_space = x_space
        self.y_space = y_space

    def __repr__(self):
        return f"Game({getattr(self.payoff, '__name__', 'payoff')}, {self.x_space!r}, {self.y_space!r})"

    def payoff_matrix(self, x, y):
        """``P_ij = l(x_i, y_j)`` for ``x (nx, dx)``, ``y (ny, dy)``: ``(nx, ny)``."""
        return jax.vmap(lambda xi: jax.vmap(lambda yj: self.payoff(xi, yj))(y))(x)

    def value(self, x, y, masses_x=None, masses_y=None):
        """``L[mu_x, mu_y] = sum_ij m_i l(x_i, y_j) m'_j`` (uniform masses when ``None``)."""
        p = self.payoff_matrix(x, y)
        return _masses(masses_x, x.shape[0], p.dtype) @ p @ _masses(masses_y, y.shape[0], p.dtype)

    def potential_x(self, x_eval, y, masses_y=None):
        """``V_x(x') = ∫ l(x', y) dmu_y(y)`` at the rows of ``x_eval``: ``(m,)``."""
        p = self.payoff_matrix(x_eval, y)
        return p @ _masses(masses_y, y.shape[0], p.dtype)

    def potential_y(self, x, y_eval, masses_x=None):
        """``V_y(y') = ∫ l(x, y') dmu_x(x)`` at the rows of ``y_eval``: ``(m,)``."""
        p = self.payoff_matrix(x, y_eval)
        return _masses(masses_x, x.shape[0], p.dtype) @ p

    def fields(self, x, y, masses_x=None, masses_y=None):
        """Value, first variations and their gradients at the particles, from one payoff matrix.

        Returns ``(L, V_x (nx,), V_y (ny,), grad V_x (nx, dx), grad V_y (ny, dy))`` with
        ``grad V_x(x_i) = sum_j m'_j grad_x l(x_i, y_j)`` and ``grad V_y(y_j) = sum_i m_i grad_y
        l(x_i, y_j)`` (ambient gradients: project with the space's ``tangent``).
        """
        p, vjp = jax.vjp(self.payoff_matrix, x, y)
        mx = _masses(masses_x, x.shape[0], p.dtype)
        my = _masses(masses_y, y.shape[0], p.dtype)
        vx, vy = p @ my, mx @ p
        gx = vjp(jnp.broadcast_to(my[None, :], p.shape))[0]
        gy = vjp(jnp.broadcast_to(mx[:, None], p.shape))[1]
        return mx @ vx, vx, vy, gx, gy
