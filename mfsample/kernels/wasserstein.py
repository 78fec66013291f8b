"""Wasserstein gradient flow of the energy: particle gradient descent.

    theta_j <- theta_j - dt * grad_theta V(theta_j; mu_n),      PDE:  d_t mu = div(mu grad V)

with ``grad_theta V(theta_j; mu_n) = n^(2p-1) grad_{theta_j} E`` (``n grad E`` in the mean-field
scaling, ``grad E`` in the NTK scaling), so ``dt`` is a step of mean-field time.

Theory: ``docs/theory/wasserstein.md``.
"""

from __future__ import annotations

from .. import validation
from ..energy import ParticleEnergy
from .base import ParticleKernel, guarded_update, init_particle_state, minibatch_key, minibatch_size
from .steps import evaluate_drift, optax_transport_step, transport_step

__all__ = ["build_kernel", "WassersteinFlow"]


def build_kernel(energy: ParticleEnergy, step_size: float, *, transport=None, batch_size=None, shared_step_scale=1.0):
    """Functional core: ``(init_fn(z, masses, rng_key), step_fn(state))``, pure and un-jitted.

    ``transport``: an optax transformation replacing the Euler step (``optax.sgd(step_size)`` is
    the Euler step); ``batch_size``: stochastic gradients on minibatches of the data (``>= N``:
    full batch); ``shared_step_scale``: the time scale ``eta`` of the model's shared sites
    (:func:`~mfsample.kernels.steps.shared_drift`).  The settings are validated here, for both faces
    of the dynamic.
    """
    step_size = validation.step_size(step_size)
    transport = validation.transport(transport)
    batch_size = minibatch_size(energy, batch_size)
    eta = validation.real("shared_step_scale", shared_step_scale, positive=True)

    def init_fn(z, masses, rng_key):
        return init_particle_state(
            energy, z, masses, rng_key, transport=transport, batch_size=batch_size, shared_step_scale=eta
        )

    def step_fn(state):
        rng_key = state.rng_key
        if transport is None:
            z, opt_state = transport_step(state.z, state.drift, step_size), None
        else:
            z, opt_state = optax_transport_step(transport, state.z, state.drift, state.opt_state)
        rng_key, key_batch = minibatch_key(rng_key, batch_size)
        d = evaluate_drift(
            energy, z, state.masses, 0.0, rng_key=key_batch, batch_size=batch_size, shared_step_scale=eta
        )
        return guarded_update(state, z, d, step_size, rng_key=rng_key, opt_state=opt_state)

    return init_fn, step_fn


class WassersteinFlow(ParticleKernel):
    r"""Particle gradient descent on the energy of a mean-field model, as a NumPyro kernel.

    Implements the explicit Euler step of the Wasserstein gradient flow
    ``d_t mu = div(mu grad V)``: ``theta_j <- theta_j - dt * grad_theta V(theta_j; mu_n)``
    (temperature 0; see :class:`MeanFieldLangevin` for ``tau > 0``).  Draws are positions of
    the whole particle system at times ``t = k * dt``; chains are independent replicas.

    Reference: Chizat & Bach (2018); Mei, Montanari & Nguyen (2018); Rotskoff & Vanden-Eijnden (2018).

    :param model: NumPyro model with latent sites in ``particle_plate`` (e.g.
        :func:`mfsample.models.shallow_network`); or give ``energy_fn`` and ``prior``.
    :param float step_size: ``dt`` in mean-field time units (> 0).
    :param transport: optional optax ``GradientTransformation`` applied particle-wise to the
        velocity field instead of the Euler step (see :mod:`mfsample.dynamics`).
    :param int batch_size: optional minibatch size (stochastic gradient descent).
    :param str particle_plate: name of the particle plate (default ``"particle"``).
    :param scaling: only for models that do not declare their scaling (``"mean_field"``/``"ntk"``).

    Example::

        >>> import jax, mfsample as mf
        >>> from numpyro.infer import MCMC
        >>> data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=3, teacher_width=2, num_data=64)
        >>> mcmc = MCMC(mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1),
        ...             num_warmup=0, num_samples=20, progress_bar=False)
        >>> mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=16)
        >>> mcmc.get_samples()["w"].shape
        (20, 16, 3)
    """

    def __init__(self, model=None, *, step_size, **kwargs):
        super().__init__(model, step_size=step_size, **kwargs)

    def build(self, energy, parameters=None):
        p = self.step_parameters(parameters)
        return build_kernel(
            energy,
            p["step_size"],
            transport=self.transport,
            batch_size=self.batch_size,
            shared_step_scale=p["shared_step_scale"],
        )
