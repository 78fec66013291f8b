"""The tempered model whose posterior is the n-particle Gibbs measure of mean-field Langevin.

    pi(theta_1..n)  prop.  exp(-(n^(2p-1) / tau) E(theta_1..n)) prod_j mu0(theta_j),
    E = -(1/N) sum_i log p(y_i | theta_1..n)

i.e. the model's likelihood raised to the power ``n^(2p-1) / (N tau)``.  For the shallow network
(Gaussian likelihood of variance ``s^2``) this is the same network with likelihood variance
``s^2 N tau / n`` (mean-field scaling), so NUTS on this model and
:class:`~mfsample.MeanFieldLangevin` sample the same law.

Theory: ``docs/theory/langevin.md``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
from numpyro.primitives import Messenger

from .. import validation
from ..scaling import SCALING_INFER_KEY, time_scale

__all__ = ["gibbs_model"]


class _TemperObserved(Messenger):
    """Scale every observed site's log-density by ``width^(2p-1) / (N * temperature)``."""

    def __init__(self, fn, temperature, width):
        self.temperature, self.width, self.exponent = temperature, width, None
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        if not msg["is_observed"]:
            p = msg.get("infer", {}).get(SCALING_INFER_KEY)
            if p is not None:
                self.exponent = float(p)
            return
        # N as in the energy: observed batch size times the plate's subsampling scale
        num_data = float(np.prod(msg["fn"].batch_shape)) * float(np.mean(msg["scale"] or 1.0))
        p = 1.0 if self.exponent is None else self.exponent
        factor = time_scale(self.width, p) / (num_data * self.temperature)
        msg["scale"] = factor if msg["scale"] is None else factor * msg["scale"]


def gibbs_model(model: Callable, temperature: float, width: int) -> Callable:
    """Return the NumPyro model whose posterior is the Gibbs measure of ``MeanFieldLangevin``.

    ``width`` is the number of particles ``n``; it is passed on to ``model`` as ``width=``
    when the model takes that keyword and the caller does not give it.  The particle sites'
    declared scaling exponent ``p`` is honoured (``n^(2p-1) / tau``).

    >>> import jax, numpyro, mfsample as mf
    >>> tempered = mf.gibbs_model(mf.models.shallow_network, temperature=0.1, width=8)
    >>> nuts = numpyro.infer.NUTS(tempered)  # run MCMC(nuts, ...).run(key, x, y) as usual
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    width = validation.positive_int("width", width)
    try:
        takes_width = "width" in inspect.signature(model).parameters
    except (TypeError, ValueError):
        takes_width = False

    def tempered(*args, **kwargs):
        if takes_width:
            kwargs.setdefault("width", width)
        return _TemperObserved(model, float(temperature), int(width))(*args, **kwargs)

    tempered.__name__ = f"gibbs_{getattr(model, '__name__', 'model')}"
    tempered.__doc__ = (
        f"Gibbs (tempered) version of {getattr(model, '__name__', 'model')}: tau={temperature}, n={width}."
    )
    return tempered
