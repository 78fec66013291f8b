"""Synthetic targets of the depth-separation literature: functions that a network with two hidden
layers computes with few units and a shallow (one-hidden-layer) network only with many.

Each builder returns a :class:`DepthData` (training inputs and labels, the target's parameters, the
noiseless target and a sampler of held-out data from the same law):

* :func:`radial_target` (Eldan & Shamir 2016; Safran & Shamir 2017; Daniely 2017): a radial
  function ``f(x) = g(|x|)`` whose profile ``g`` oscillates ``n`` times over a range of radii
  ``[r_min, r_max]``, under inputs ``x = r u`` with ``u`` uniform on the sphere and ``r`` uniform on
  that range;
* :func:`bjv_target` (Bruna, Jelassi & Venturi): the inhomogeneous target
  ``f(x) = cos(<omega, relu(U x + b)>)``, the real part of ``exp(i <omega, relu(U x + b)>)``, with a
  frequency ``|omega|`` of order ``d^3``, under heavy-tailed (multivariate Student-t) inputs
  (:func:`student_t_inputs`);
* :func:`deep_relu_target` (the homogeneous case): a random ReLU network with ``D`` hidden layers
  (:func:`relu_network`) on inputs uniform on the sphere ``S^{d-1}``, divided by an estimate of its
  supremum on the sphere.

Every builder splits its key: the first sub-key(s) draw the target, the last the training data.
Labels are ``y = f(x) + noise * eps`` with ``eps ~ N(0, 1)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..validation import positive_int, real
from .teacher_student import sample_inputs

__all__ = [
    "PROFILES",
    "DepthData",
    "radial_inputs",
    "radial_profile",
    "radial_target",
    "student_t_inputs",
    "bjv_function",
    "bjv_target",
    "relu_network",
    "deep_relu_target",
]

PROFILES = ("cosine", "bumps")

#: sphere points evaluated per call while estimating the supremum of a network
_SUP_CHUNK = 8192
#: chi-square draws per call of the (compiled once) gamma sampler
_CHI2_BLOCK = 4096


class DepthData(NamedTuple):
    """A depth-separation data set: inputs ``x (N, d)``, labels ``y (N,)`` and the target.

    ``params`` holds the target's parameters (listed by each builder), ``target(x)`` is the
    noiseless target on ``(M, d)`` inputs and ``sample(rng_key, num)`` draws ``num`` fresh
    ``(x, y)`` from the same input law, with the same label noise.
    """

    x: jax.Array
    y: jax.Array
    params: dict
    target: Callable
    sample: Callable


def _data_set(rng_key, num_data, draw_inputs, target, noise, params) -> DepthData:
    """Training data ``(x, y)`` drawn by ``draw_inputs(key, num)`` and labelled ``target(x) + noise * eps``."""

    def sample(key, num):
        num = positive_int("num", num)
        k_x, k_eps = jax.random.split(key)
        x = draw_inputs(k_x, num)
        return x, target(x) + noise * jax.random.normal(k_eps, (num,))

    x, y = sample(rng_key, num_data)
    return DepthData(x=x, y=y, params=params, target=target, sample=sample)


# -- radial targets ------------------------------------------------------------------------------


def _check_radii(radii, dim: int | None = None) -> tuple[float, float]:
    """``radii`` as ``(r_min, r_max)`` with ``0 <= r_min < r_max``; ``None`` (when ``dim`` is given):
    ``(sqrt(d), 2 sqrt(d))``."""
    if radii is None and dim is not None:
        return math.sqrt(dim), 2.0 * math.sqrt(dim)
    if np.ndim(radii) != 1 or len(radii) != 2:
        raise ValueError(f"radii must be a pair (r_min, r_max), got {radii!r}; e.g. radii=(1.0, 2.0)")
    r_min = real("radii[0] (r_min)", radii[0], nonnegative=True)
    r_max = real("radii[1] (r_max)", radii[1], positive=True)
    if not r_min < r_max:
        raise ValueError(f"radii (r_min, r_max) must have r_min < r_max, got {tuple(radii)!r}")
    return r_min, r_max


def radial_inputs(rng_key, num: int, dim: int, radii=None):
    """Inputs ``x = r u`` with ``u`` uniform on ``S^{d-1}`` and ``r`` uniform on ``[r_min, r_max]``.

    ``radii = (r_min, r_max)``, default ``(sqrt(d), 2 sqrt(d))``.  Every radius of the range is
    equally likely, so each oscillation of a radial profile on that range carries the same mass.
    """
    num, dim = positive_int("num", num), positive_int("dim", dim)
    return _radial_inputs(rng_key, num, dim, *_check_radii(radii, dim))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _radial_inputs(rng_key, num, dim, r_min, r_max):
    k_u, k_r = jax.random.split(rng_key)
    u = sample_inputs(k_u, num, dim, "sphere")
    r = jax.random.uniform(k_r, (num,), minval=r_min, maxval=r_max)
    return r[:, None] * u


def radial_profile(r, *, radii, num_oscillations: int, profile: str = "cosine", signs=None):
    """The oscillating profile ``g(r)`` of :func:`radial_target`, with ``s = n (r - r_min) / (r_max - r_min)``.

    ``"cosine"``: ``g(r) = cos(2 pi s)``, ``n`` full periods on ``[r_min, r_max]`` (defined for every
    ``r``).  ``"bumps"``: ``n`` shells ``s in [i, i+1)``, each carrying one bump of random sign,

        g(r) = signs[i] * |sin(pi s)|   for i = floor(s) in {0..n-1},   0 outside [r_min, r_max),

    a continuous version of Eldan & Shamir's sum of shell indicators with random signs.  Both are
    bounded by 1 and ``2 pi n / (r_max - r_min)``-Lipschitz (``pi n / (r_max - r_min)`` for bumps).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    r_min, r_max = _check_radii(radii)
    num_oscillations = positive_int("num_oscillations", num_oscillations)
    if profile == "bumps" and (signs is None or np.shape(signs) != (num_oscillations,)):
        raise ValueError(f"the bumps profile needs signs of shape ({num_oscillations},) (one per shell)")
    signs = None if profile == "cosine" else jnp.asarray(signs)
    return _radial_profile(jnp.asarray(r), r_min, r_max, signs, num_oscillations, profile)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _radial_profile(r, r_min, r_max, signs, num_oscillations, profile):
    s = num_oscillations * (r - r_min) / (r_max - r_min)
    if profile == "cosine":
        return jnp.cos(2.0 * jnp.pi * s)
    shell = jnp.floor(s).astype(jnp.int32)
    inside = (shell >= 0) & (shell < num_oscillations)
    sign = signs[jnp.clip(shell, 0, num_oscillations - 1)]
    return jnp.where(inside, sign * jnp.abs(jnp.sin(jnp.pi * s)), 0.0)


def radial_target(
    rng_key,
    *,
    dim: int,
    num_data: int,
    num_oscillations: int | None = None,
    profile: str = "cosine",
    radii=None,
    noise: float = 0.0,
) -> DepthData:
    """A radial target ``f(x) = g(|x|)`` with an oscillating profile, and ``num_data`` labelled inputs.

    :param dim: input dimension ``d``.
    :param num_data: number ``N`` of training inputs.
    :param num_oscillations: ``n``, the periods (``"cosine"``) or shells (``"bumps"``) of ``g`` on
        the range of radii; default ``d`` (Eldan & Shamir use polynomially many in ``d``).
    :param profile: ``"cosine"`` or ``"bumps"`` (:func:`radial_profile`).
    :param radii: ``(r_min, r_max)``, the range where ``g`` oscillates and the inputs' radii lie;
        default ``(sqrt(d), 2 sqrt(d))``, from the typical norm ``sqrt(d)`` of a standard Gaussian
        input to twice it (Eldan & Shamir's range ``[alpha sqrt(d), 2 alpha sqrt(d)]``, ``alpha = 1``).
    :param noise: standard deviation of the Gaussian label noise (default 0).

    Inputs (:func:`radial_inputs`): ``x = r u``, ``u`` uniform on ``S^{d-1}``, ``r`` uniform on
    ``[r_min, r_max]``.  This keeps what the constructions need, input mass spread over every
    oscillation of ``g``, rather than Eldan & Shamir's exact input density (the square of the
    Fourier transform of a ball's indicator).  ``params``: ``profile``, ``radii``,
    ``num_oscillations`` and ``signs`` (the shells' signs ``+-1``, drawn for ``"bumps"`` only;
    ``None`` for ``"cosine"``).

    >>> import jax
    >>> data = radial_target(jax.random.PRNGKey(0), dim=4, num_data=100, profile="bumps")
    >>> data.x.shape, data.y.shape, data.params["signs"].shape
    ((100, 4), (100,), (4,))
    >>> x_test, y_test = data.sample(jax.random.PRNGKey(1), 50)
    """
    dim, num_data = positive_int("dim", dim), positive_int("num_data", num_data)
    n = positive_int("num_oscillations", dim if num_oscillations is None else num_oscillations)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    radii = _check_radii(radii, dim)
    noise = real("noise", noise, nonnegative=True)
    k_signs, k_data = jax.random.split(rng_key)
    signs = None
    if profile == "bumps":
        signs = jnp.where(jax.random.bernoulli(k_signs, 0.5, (n,)), 1.0, -1.0)
    params = {"profile": profile, "radii": radii, "num_oscillations": n, "signs": signs}

    def target(x):
        return _radial_profile(jnp.linalg.norm(jnp.asarray(x), axis=-1), *radii, signs, n, profile)

    def draw_inputs(key, num):
        return radial_inputs(key, num, dim, radii)

    return _data_set(k_data, num_data, draw_inputs, target, noise, params)


# -- the inhomogeneous target under heavy-tailed inputs ------------------------------------------


def student_t_inputs(rng_key, num: int, dim: int, dof: float = 3.0):
    """Multivariate Student-t inputs with ``dof = nu`` degrees of freedom, identity scale:

        x = z / sqrt(v / nu),   z ~ N(0, I_d),   v ~ chi^2_nu independent,

    equivalently ``x = r u`` with ``u = z / |z|`` uniform on ``S^{d-1}`` and the radius
    ``r = |z| sqrt(nu / v)``, whose square satisfies ``r^2 / d ~ F(d, nu)``.  Each coordinate, and
    ``<w, x>`` for every unit ``w``, is a univariate Student-t with ``nu`` degrees of freedom: tails
    ``P(|x| > t) ~ t^(-nu)``, a finite variance only for ``nu > 2``.
    """
    num, dim = positive_int("num", num), positive_int("dim", dim)
    dof = real("dof", dof, positive=True)
    k_z, k_v = jax.random.split(rng_key)
    z = jax.random.normal(k_z, (num, dim))
    v = _chi_square(k_v, num, dof)
    v = jnp.maximum(v, jnp.finfo(v.dtype).tiny)  # a zero draw (small nu, float32) would give x = inf
    return z * jnp.sqrt(dof / v)[:, None]


@jax.jit
def _chi_square_block(rng_key, dof):
    """``_CHI2_BLOCK`` draws of ``chi^2_nu = 2 Gamma(nu / 2)``."""
    return 2.0 * jax.random.gamma(rng_key, dof / 2.0, (_CHI2_BLOCK,))


def _chi_square(rng_key, num: int, dof: float):
    """``num`` draws of ``chi^2_nu``, made block by block: JAX's gamma sampler takes seconds to
    compile, and one block shape compiles once for every ``num`` and ``nu``."""
    keys = jax.random.split(rng_key, -(-num // _CHI2_BLOCK))
    return jnp.concatenate([_chi_square_block(key, dof) for key in keys])[:num]


def bjv_function(params, x):
    """``f(x) = cos(<omega, relu(U x + b)>)`` on inputs ``x (M, d)``, with ``params`` holding
    ``U (k, d)``, ``b (k,)`` and ``omega (k,)`` (e.g. the ``params`` of :func:`bjv_target`): the
    real part of ``exp(i <omega, relu(U x + b)>)``.

    The phase grows like ``|omega| |x|``; in float32 (JAX's default) its rounding error, hence the
    error of ``f``, is about ``1e-7 |phase|`` (enable ``jax_enable_x64`` for large phases).
    """
    return _bjv_forward(params["U"], params["b"], params["omega"], jnp.asarray(x))


@jax.jit
def _bjv_forward(U, b, omega, x):
    return jnp.cos(jnp.maximum(x @ U.T + b, 0.0) @ omega)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _bjv_parameters(rng_key, dim, k, frequency):
    """``U (k, d)`` with rows uniform on the sphere, ``b ~ N(0, I_k)``, ``omega`` of norm ``frequency``."""
    z = jax.random.normal(rng_key, (k * dim + 2 * k,))  # one draw, sliced: one sampler to compile
    U, b, v = z[: k * dim].reshape(k, dim), z[k * dim : k * dim + k], z[k * dim + k :]
    U = U / jnp.linalg.norm(U, axis=-1, keepdims=True)
    return U, b, v * (frequency / jnp.linalg.norm(v))


def bjv_target(
    rng_key,
    *,
    dim: int,
    num_data: int,
    inner_width: int | None = None,
    frequency: float | None = None,
    dof: float = 3.0,
    noise: float = 0.0,
) -> DepthData:
    """The Bruna–Jelassi–Venturi target ``f(x) = cos(<omega, relu(U x + b)>)`` and ``num_data`` labelled
    heavy-tailed inputs.

    :param dim: input dimension ``d``.
    :param num_data: number ``N`` of training inputs.
    :param inner_width: ``k``, the rows of ``U``; default ``d``.
    :param frequency: ``|omega|``; default ``d^3``, the order ``|omega| = Theta(d^3)`` of the
        construction (large: the target oscillates fast along ``relu(U x + b)``).
    :param dof: degrees of freedom ``nu`` of the Student-t inputs (default 3: heavy tails,
        finite variance).
    :param noise: standard deviation of the Gaussian label noise (default 0).

    Draws: the rows ``u_j`` of ``U`` uniform on ``S^{d-1}`` (so ``<u_j, x>`` is a univariate
    Student-t), ``b_j ~ N(0, 1)``, and ``omega = frequency * v / |v|`` with ``v ~ N(0, I_k)`` (a
    uniform direction).  Inputs: :func:`student_t_inputs`.  ``params``: ``U``, ``b``, ``omega``,
    ``frequency``, ``dof``, ``inner_width``; :func:`bjv_function` evaluates the target.

    >>> import jax
    >>> data = bjv_target(jax.random.PRNGKey(0), dim=3, num_data=100)
    >>> data.x.shape, data.params["U"].shape, round(float(jax.numpy.linalg.norm(data.params["omega"])))
    ((100, 3), (3, 3), 27)
    """
    dim, num_data = positive_int("dim", dim), positive_int("num_data", num_data)
    k = positive_int("inner_width", dim if inner_width is None else inner_width)
    frequency = real("frequency", float(dim) ** 3 if frequency is None else frequency, positive=True)
    dof = real("dof", dof, positive=True)
    noise = real("noise", noise, nonnegative=True)
    k_target, k_data = jax.random.split(rng_key)
    U, b, omega = _bjv_parameters(k_target, dim, k, frequency)
    params = {"U": U, "b": b, "omega": omega, "frequency": frequency, "dof": dof, "inner_width": k}

    def target(x):
        return _bjv_forward(U, b, omega, jnp.asarray(x))

    def draw_inputs(key, num):
        return student_t_inputs(key, num, dim, dof)

    return _data_set(k_data, num_data, draw_inputs, target, noise, params)


# -- random deep ReLU networks on the sphere -----------------------------------------------------


def relu_network(params, x):
    """A ReLU network with ``D`` hidden layers on inputs ``x (M, d)``:

        h_0 = x,   h_l = relu(W_l h_{l-1} + b_l)  (l = 1..D),   f(x) = <a, h_D>,

    with ``params`` holding ``weights = (W_1..W_D)``, ``biases = (b_1..b_D)`` and ``a`` (e.g. the
    ``params`` of :func:`deep_relu_target`, whose network this is before normalisation).  Without
    biases (all zero) ``f`` is positively homogeneous: ``f(c x) = c f(x)`` for ``c > 0``.
    """
    return _relu_forward(tuple(params["weights"]), tuple(params["biases"]), params["a"], jnp.asarray(x))


@jax.jit
def _relu_forward(weights, biases, a, x):
    h = x
    for w, b in zip(weights, biases):
        h = jnp.maximum(h @ w.T + b, 0.0)
    return h @ a


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _random_relu_network(rng_key, dim: int, depth: int, width: int, bias: bool) -> dict:
    """Gaussian weights: ``W_1`` entries ``N(0, 1)`` (pre-activations ``N(0, 1)`` on the sphere),
    ``W_l`` (``l >= 2``) entries ``N(0, 2/k)`` (He scaling, keeping the hidden layers of order one),
    ``a ~ N(0, I_k / k)``; biases ``N(0, 1)`` with ``bias``, else zero (the weights do not depend
    on ``bias``)."""
    shapes = ((width, dim), (depth - 1, width, width), (depth, width), (width,))
    sizes = [math.prod(shape) for shape in shapes]
    z = jax.random.normal(rng_key, (sum(sizes),))  # one draw, sliced: one sampler to compile
    first, hidden, b, a = (part.reshape(shape) for part, shape in zip(jnp.split(z, np.cumsum(sizes)[:-1]), shapes))
    weights = (first, *(hidden * math.sqrt(2.0 / width)))
    biases = tuple(b) if bias else tuple(jnp.zeros((depth, width)))
    return {"weights": weights, "biases": biases, "a": a / math.sqrt(width)}


def _sphere_max(network: dict, rng_key, dim: int, num_points: int):
    """``(max |f|, argmax)`` of ``f = relu_network(network, .)`` over ``num_points`` uniform points of
    ``S^{d-1}``, drawn and evaluated ``_SUP_CHUNK`` at a time (memory bounded for any ``num_points``)."""
    sup, sup_point = -1.0, None
    keys = jax.random.split(rng_key, -(-num_points // _SUP_CHUNK))
    for i, key in enumerate(keys):
        points = sample_inputs(key, min(_SUP_CHUNK, num_points - i * _SUP_CHUNK), dim, "sphere")
        values = jnp.abs(relu_network(network, points))
        best = int(jnp.argmax(values))
        if float(values[best]) > sup:
            sup, sup_point = float(values[best]), points[best]
    return sup, sup_point


def deep_relu_target(
    rng_key,
    *,
    dim: int,
    num_data: int,
    depth: int = 2,
    width: int = 32,
    bias: bool = False,
    sup_sample_size: int = 65536,
    noise: float = 0.0,
) -> DepthData:
    """A random ReLU network with ``depth`` hidden layers, normalised to sup 1 on the sphere, and
    ``num_data`` labelled inputs uniform on ``S^{d-1}``: ``f = f_raw / S`` with ``f_raw`` =
    :func:`relu_network` and ``S`` an estimate of ``sup_{|x| = 1} |f_raw(x)|``.

    :param dim: input dimension ``d``.
    :param num_data: number ``N`` of training inputs.
    :param depth: ``D``, the hidden layers (default 2: a "depth-three" network counting the output).
    :param width: ``k``, the units of each hidden layer (default 32).
    :param bias: Gaussian biases ``N(0, 1)`` in every hidden layer; default ``False``, the
        homogeneous case (``f(c x) = c f(x)`` for ``c > 0``: the sphere loses nothing).
    :param sup_sample_size: how many uniform points of the sphere estimate the supremum
        (default ``2^16``).
    :param noise: standard deviation of the Gaussian label noise (default 0).

    Weights (Gaussian, independent): ``W_1`` entries ``N(0, 1)``, ``W_l`` entries ``N(0, 2/k)`` for
    ``l >= 2``, output weights ``a ~ N(0, I_k / k)``.  ``S`` is the largest ``|f_raw|`` on the
    estimation sample: an *under*-estimate of the supremum, close to it in low dimension, looser as
    ``d`` grows, so ``|f|`` may exceed 1 slightly off the sample; ``|f| = 1`` at the sample's best
    point.  ``params``: ``weights``, ``biases``, ``a`` (of ``f_raw``), ``sup`` (``S``),
    ``sup_point`` (where it was found), ``sup_sample_size``, ``depth``, ``width``, ``bias``.

    >>> import jax
    >>> data = deep_relu_target(jax.random.PRNGKey(0), dim=3, num_data=100, sup_sample_size=4096)
    >>> data.x.shape, len(data.params["weights"])
    ((100, 3), 2)
    >>> round(float(abs(data.target(data.params["sup_point"][None])[0])), 4)
    1.0
    """
    dim, num_data = positive_int("dim", dim), positive_int("num_data", num_data)
    depth, width = positive_int("depth", depth), positive_int("width", width)
    sup_sample_size = positive_int("sup_sample_size", sup_sample_size)
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {bias!r} ({type(bias).__name__})")
    noise = real("noise", noise, nonnegative=True)
    k_net, k_sup, k_data = jax.random.split(rng_key, 3)
    network = _random_relu_network(k_net, dim, depth, width, bool(bias))
    sup, sup_point = _sphere_max(network, k_sup, dim, sup_sample_size)
    if sup == 0.0:
        raise ValueError(
            f"the random network is zero on all {sup_sample_size} sphere points (every unit dead); "
            "draw another rng_key or raise width"
        )
    params = {**network, "sup": sup, "sup_point": sup_point, "sup_sample_size": sup_sample_size}
    params |= {"depth": depth, "width": width, "bias": bool(bias)}

    def target(x):
        return relu_network(network, x) / sup

    def draw_inputs(key, num):
        return sample_inputs(key, num, dim, "sphere")

    return _data_set(k_data, num_data, draw_inputs, target, noise, params)
