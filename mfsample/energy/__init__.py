"""Energy of a particle system, its first variation and the velocity field.

For a NumPyro model whose latent sites sit in the particle plate, the energy is the mean
negative log-likelihood per observed datum,

    E(theta_1..n; m) = -(1/N) sum_i log p(y_i | theta_1..n; m),

and the latent sites' prior is the reference measure ``mu0``.  Two fields derive from it:

* the first variation ``V(theta_j; mu) = dE/dm_j`` (autodiff with respect to the masses);
* the velocity ``v_j = n^(2p-1) grad_{theta_j} E / (n m_j)``, which is
  ``grad_theta V(theta_j; mu) = n grad_{theta_j} E`` in the mean-field scaling (``p = 1``,
  uniform masses) and ``grad_{theta_j} E`` in the NTK scaling (``p = 1/2``).

Everything is built once from a trace of the model (as NumPyro's ``potential_fn_gen`` does) and
returned as pure functions of the unconstrained particles ``z`` (a dict of arrays whose leading
axis is the particle axis) and the masses: a :class:`ParticleEnergy`.

Modules: ``base`` (the :class:`ParticleEnergy` record, the prior density in unconstrained
coordinates), ``sites`` (reading and checking a model's trace), ``model``
(:func:`energy_from_model`), ``function`` (:func:`energy_from_fn`), ``fields``
(:func:`first_variation`, :func:`velocity`, :func:`energy_and_velocity`,
:func:`energy_velocity_and_first_variation`, :func:`freeze`).

Theory: ``docs/theory/energy.md``.
"""

from .base import ParticleEnergy
from .fields import energy_and_velocity, energy_velocity_and_first_variation, first_variation, freeze, velocity
from .function import energy_from_fn
from .model import energy_from_model

__all__ = [
    "ParticleEnergy",
    "energy_from_model",
    "energy_from_fn",
    "first_variation",
    "velocity",
    "energy_and_velocity",
    "energy_velocity_and_first_variation",
    "freeze",
]
