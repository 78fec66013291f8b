"""Width scalings of the network output and the matching time scale of the particle flow.

With ``f = n^-p sum_j phi(x; theta_j)`` the particle velocity that moves ``f`` at unit speed
is ``n^(2p-1) grad_{theta_j} E``:

* ``"mean_field"`` (``p = 1``): ``f = (1/n) sum_j phi_j`` and velocity ``n grad E = grad V``;
* ``"ntk"`` (``p = 1/2``): ``f = n^-1/2 sum_j phi_j`` and velocity ``grad E`` (the lazy
  regime, in which each particle moves by ``O(n^-1/2)``).

A model declares its exponent on its particle sites through
``infer={SCALING_INFER_KEY: p}``; the kernels read it from there, so the scaling is set once.
"""

from __future__ import annotations

__all__ = ["SCALING_EXPONENTS", "SCALING_INFER_KEY", "scaling_exponent", "time_scale"]

SCALING_EXPONENTS = {"mean_field": 1.0, "ntk": 0.5}
SCALING_INFER_KEY = "mfsample_scaling_exponent"


def scaling_exponent(scaling: str | float) -> float:
    """The exponent ``p`` of ``f = n^-p sum_j phi_j`` for a scaling name (or a number in (0, 1])."""
    if isinstance(scaling, str):
        if scaling not in SCALING_EXPONENTS:
            raise ValueError(f"scaling={scaling!r} is not known; use one of {sorted(SCALING_EXPONENTS)}")
        return SCALING_EXPONENTS[scaling]
    p = float(scaling)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"scaling exponent must lie in (0, 1], got {scaling!r}")
    return p


def time_scale(width: int, exponent: float) -> float:
    """``n^(2p-1)``: the factor between ``grad_{theta_j} E`` and the particle velocity."""
    return float(width) ** (2.0 * exponent - 1.0)
