"""Fields derived from the energy: the first variation and the velocity.

* first variation ``V(theta_j; mu) = dE/dm_j``, by autodiff in the masses;
* velocity ``v_j = n^(2p-1) grad_{theta_j} E / (n m_j)``: in the mean-field scaling (``p = 1``,
  uniform masses) it is ``n grad_{theta_j} E = grad_theta V(theta_j; mu)``, the Wasserstein
  gradient of ``E``; in the NTK scaling (``p = 1/2``) it is ``grad_{theta_j} E``.

Frozen sites get zero velocity.  Shared sites (latent sites outside the particle plate,
:attr:`~.base.ParticleEnergy.shared_names`) get the plain gradient ``grad_s E``: their time scale
is the kernels' ``shared_step_scale``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..scaling import time_scale
from .base import ParticleEnergy

__all__ = ["first_variation", "velocity", "energy_and_velocity", "energy_velocity_and_first_variation", "freeze"]


def first_variation(pe: ParticleEnergy, z, masses=None):
    """``V(theta_j; mu) = dE/dm_j`` for every particle, by autodiff of ``E`` in the masses.

    For the shallow network with unit noise this is ``E_nu[(f(x) - y) * n^(1-p) phi(x; theta_j)]``
    (``phi = a sigma(<w,x>+b)``).  Needs a model that takes ``masses``.
    """
    return _energy_and_gradients(pe, z, _mass_array(pe, masses), wrt_masses=True)[2]


def _energy_and_gradients(pe: ParticleEnergy, z, masses, *, wrt_masses: bool):
    """``(E, dE/dz, dE/dm)`` (``dE/dm`` is ``None`` unless ``wrt_masses``) from one backward pass:
    the energy's own ``value_and_grad`` where it has one (a blocked energy's one pass over its
    blocks), else autodiff of ``energy``."""
    if pe.value_and_grad is not None:
        e, (g, v) = pe.value_and_grad(z, masses)
        return e, g, (v if wrt_masses else None)
    if wrt_masses:
        e, (g, v) = jax.value_and_grad(pe.energy, argnums=(0, 1))(z, masses)
        return e, g, v
    e, g = jax.value_and_grad(pe.energy)(z, masses)
    return e, g, None


def _mass_array(pe: ParticleEnergy, masses):
    """The masses as an array to differentiate in (uniform ``1/n`` for ``None``)."""
    if not pe.accepts_masses:
        raise TypeError(
            "the first variation dE/dm_j needs a model with a `masses` keyword; this one has none: "
            "add `masses=None` to its signature and weight each particle's term by it"
        )
    return jnp.full((pe.width,), 1.0 / pe.width) if masses is None else masses


def freeze(pe: ParticleEnergy, field):
    """Zero the components of a particle field on the frozen sites."""
    if not pe.frozen:
        return field
    return {k: (jnp.zeros_like(v) if k in pe.frozen else v) for k, v in field.items()}


def _velocity_from_grad(pe: ParticleEnergy, grad, masses):
    """``n^(2p-1) grad_{theta_j} E / (n m_j)`` (zero where ``m_j = 0``), frozen sites zeroed;
    the shared sites' gradients as they are."""
    grad = freeze(pe, grad)
    if pe.shared_names:
        return {**_particle_velocity(pe, pe.particle_part(grad), masses), **pe.shared_part(grad)}
    return _particle_velocity(pe, grad, masses)


def _particle_velocity(pe: ParticleEnergy, grad, masses):
    c = time_scale(pe.width, pe.exponent)
    if masses is None:
        return jax.tree.map(lambda g: c * g, grad)
    nm = pe.width * masses
    safe = jnp.where(nm > 0, nm, 1.0)

    def scale(g):
        r = (c / safe).reshape((-1,) + (1,) * (g.ndim - 1))
        return jnp.where(r > 0, g * r, 0.0)

    return jax.tree.map(scale, grad)


def energy_and_velocity(pe: ParticleEnergy, z, masses=None):
    """``(E, v)`` with ``v_j = n^(2p-1) grad_{theta_j} E / (n m_j)``, from one backward pass.

    Uniform masses (``None``): ``v_j = n^(2p-1) grad_{theta_j} E``.  Particles of zero mass get
    zero velocity.
    """
    e, g, _ = _energy_and_gradients(pe, z, masses, wrt_masses=False)
    return e, _velocity_from_grad(pe, g, masses)


def energy_velocity_and_first_variation(pe: ParticleEnergy, z, masses=None):
    """``(E, v, V)``: :func:`energy_and_velocity` and :func:`first_variation` from one backward pass
    (``E`` differentiated in the positions and the masses at once).

    With ``masses=None`` the energy is evaluated at the uniform masses ``1/n`` (the same measure;
    equal to the unweighted evaluation up to float rounding).
    """
    e, g, v = _energy_and_gradients(pe, z, _mass_array(pe, masses), wrt_masses=True)
    return e, _velocity_from_grad(pe, g, masses), v


def velocity(pe: ParticleEnergy, z, masses=None):
    """The velocity field ``grad_theta V(theta_j; mu)`` of the Wasserstein flow (see the module doc)."""
    return energy_and_velocity(pe, z, masses)[1]
