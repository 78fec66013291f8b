"""Checks of user input, each rule and each message written once.

Every public entry point (kernel classes, their functional cores, the functional faces, the
drivers, the energy builders) validates through these functions, so that the two faces of a
dynamic accept and refuse the same inputs with the same words: the value, the rule it breaks,
and how to fix it.  Each check returns the normalised value (``float``/``int``), so callers
write ``step_size = validation.step_size(step_size)``.

The module also holds the one rule that says which model arguments are *per datum* (split by
minibatches and blocks, replaced at evaluation points): an array whose leading axis has the
data size ``N``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "positive_int",
    "optional_positive_int",
    "real",
    "step_size",
    "temperature",
    "rate",
    "friction",
    "batch_size",
    "block_size",
    "transport",
    "masses",
    "prng_key",
    "positions",
    "is_per_datum",
    "finite_data",
]


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (Python or NumPy integers; ``bool`` is refused).

    Anything else raises ``ValueError`` (also a float such as ``2.0``: counts are integers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def optional_positive_int(name: str, value, *, minimum: int = 1) -> int | None:
    """``None`` or :func:`positive_int`."""
    return None if value is None else positive_int(name, value, minimum=minimum)


def real(name: str, value, *, positive: bool = False, nonnegative: bool = False, finite: bool = True) -> float:
    """``value`` as a ``float``: a real number (not ``bool``), finite unless ``finite=False``,
    and ``> 0`` (``positive``) or ``>= 0`` (``nonnegative``) when asked.

    A traced value (a hyper-parameter handed to a compiled step as data) is returned as it is:
    the drivers check every concrete setting before they trace it.  A concrete 0-d array counts
    as a number."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0 and np.issubdtype(value.dtype, np.floating):
        value = float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    bounds = "positive" if positive else "non-negative" if nonnegative else "a number"
    if np.isnan(value) or (finite and not np.isfinite(value)):
        raise ValueError(f"{name} must be {bounds} and finite, got {value!r}")
    if (positive and not value > 0) or (nonnegative and not value >= 0):
        raise ValueError(f"{name} must be {bounds} and finite, got {value!r}")
    return value


def step_size(value) -> float:
    """The time step ``dt`` (mean-field time): positive and finite."""
    return real("step_size", value, positive=True)


def temperature(value) -> float:
    """The temperature ``tau`` of the entropic regularisation: non-negative and finite."""
    return real("temperature", value, nonnegative=True)


def rate(value) -> float:
    """The Fisher–Rao reaction rate ``alpha``: non-negative and finite."""
    return real("rate", value, nonnegative=True)


def friction(value) -> float:
    """The friction ``gamma`` of kinetic dynamics: positive and finite (``gamma -> inf`` is the
    overdamped limit, run it as :class:`~mfsample.MeanFieldLangevin`)."""
    return real("friction", value, positive=True)


def batch_size(value) -> int | None:
    """Minibatch size: ``None`` (full batch) or an integer >= 1."""
    return optional_positive_int("batch_size", value)


def block_size(value) -> int | str | None:
    """Data block size of the energy: ``None`` (one block), ``"auto"`` or an integer >= 1."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, str):
        raise ValueError(f"block_size must be an integer >= 1, 'auto' or None, got {value!r}")
    return positive_int("block_size", value)


def transport(value):
    """``None`` or an optax ``GradientTransformation`` (anything with ``init`` and ``update``)."""
    if value is None:
        return None
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            "transport must be an optax GradientTransformation (with init and update), e.g. "
            f"optax.sgd(step_size); got {type(value).__name__}"
        )
    return value


def masses(value, width: int, *, atol: float = 1e-4):
    """Particle masses ``m_j``: shape ``(width,)``, finite, non-negative, summing to one.

    Values are checked when they are concrete (shapes only under ``jit``); returns a JAX array.
    Exact zeros are legal: they are particles whose mass has died.
    """
    value = jnp.asarray(value)
    if value.shape != (width,):
        raise ValueError(f"masses must have shape (width,) = ({width},), got {value.shape}")
    if isinstance(value, jax.core.Tracer):
        return value
    m = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError("masses must be finite")
    if np.any(m < 0):
        raise ValueError(f"masses must be non-negative (smallest is {m.min():.3g})")
    if abs(m.sum() - 1.0) > atol:
        raise ValueError(f"masses must sum to one (they sum to {m.sum():.6g}); divide them by their sum")
    return value


def _key_batch_shape(value):
    """The batch shape of a PRNG key array (``()`` for one key), or ``None`` if it is no key."""
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or shape is None:
        return None
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):  # a typed key: jax.random.key(...)
        return tuple(shape)
    if dtype == np.uint32 and len(shape) >= 1 and shape[-1] == 2:  # a raw key: jax.random.PRNGKey(...)
        return tuple(shape[:-1])
    return None


def prng_key(name: str, value, *, batch: bool = False):
    """A JAX PRNG key (``jax.random.PRNGKey(seed)`` or ``jax.random.key(seed)``), or with ``batch``
    also a non-empty one-dimensional batch of keys (one per chain); returns ``value``."""
    shape = _key_batch_shape(value)
    if shape == () or (batch and shape is not None and len(shape) == 1 and shape[0] >= 1):
        return value
    what = f"{type(value).__name__} {value!r}" if shape is None else f"a key array of batch shape {shape}"
    more = " or a batch of them (jax.random.split(key, num_chains))" if batch else ""
    raise TypeError(f"{name} must be a PRNG key such as jax.random.PRNGKey(0) or jax.random.key(0){more}; got {what}")


def positions(name: str, value, expected: dict, *, batch: tuple = ()):
    """Unconstrained particle positions: a dict with exactly the sites of ``expected``
    (``{site: shape}``), each of shape ``batch + expected[site]``, finite when concrete.

    A single array is accepted for a single site.  Returns ``{site: jax array}``."""
    sites = tuple(expected)
    if not isinstance(value, dict):
        if len(sites) != 1:
            raise TypeError(f"{name} must be a dict with keys {list(sites)}, got {type(value).__name__}")
        value = {sites[0]: value}
    missing, unknown = sorted(set(sites) - set(value)), sorted(set(value) - set(sites))
    if missing or unknown:
        raise ValueError(
            f"{name} must have the particle sites {list(sites)} as keys; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"unknown {unknown}" if unknown else "")
        )
    out = {}
    for site in sites:
        try:
            v = jnp.asarray(value[site])
        except TypeError as err:
            raise TypeError(f"{name}[{site!r}] must be an array of numbers, got {type(value[site]).__name__}") from err
        want = tuple(batch) + tuple(expected[site])
        if v.shape != want:
            raise ValueError(
                f"{name}[{site!r}] has shape {v.shape} but must have shape {want}"
                + (f" (num_chains = {batch[0]}, then the site's shape)" if batch else "")
                + "; give positions for these data and this width"
            )
        if jnp.issubdtype(v.dtype, jnp.integer):
            v = v.astype(jnp.result_type(float))
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"{name}[{site!r}] must hold real numbers, got dtype {v.dtype}")
        if not isinstance(v, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(v))):
            raise ValueError(f"{name}[{site!r}] contains non-finite values (NaN or inf); give finite positions")
        out[site] = v
    return out


def is_per_datum(value, num_data) -> bool:
    """Whether a model argument holds one row per datum: an array whose leading axis has the data
    size ``num_data``.  Such arguments are what minibatches subsample, blocks split and
    evaluation points replace (the likelihood must factorise over that axis)."""
    return (
        isinstance(value, (jax.Array, np.ndarray))
        and np.ndim(value) >= 1
        and num_data is not None
        and np.shape(value)[0] == int(round(num_data))
    )


def finite_data(name: str, value, *, ndim: int | None = None, allow_empty: bool = False):
    """A data array with at least one row (unless ``allow_empty``: e.g. zero evaluation points)
    whose values (when concrete) are all finite; returns a JAX array.  Regressions and kernels on
    NaN data would return NaN without a word."""
    value = jnp.asarray(value)
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {value.shape}")
    if value.ndim and value.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {value.shape}): give at least one row of data")
    if not isinstance(value, jax.core.Tracer) and jnp.issubdtype(value.dtype, jnp.inexact):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(np.asarray(value))))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf): drop or impute them first")
    return value
