"""Energy of a particle system, its first variation and the velocity field (DESIGN.md §2).

For a NumPyro model whose latent sites sit in the particle plate, the energy is the mean
negative log-likelihood per observed datum,

    E(theta_1..n; m) = -(1/N) sum_i log p(y_i | theta_1..n; m),

and the latent sites' prior is the reference measure ``mu0``.  Two derived fields:

* first variation  ``V(theta_j; mu) = dE/dm_j``   (autodiff with respect to the masses);
* velocity         ``v_j = n^(2p-1) grad_{theta_j} E / (n m_j)``, which equals
  ``grad_theta V(theta_j; mu) = n grad_{theta_j} E`` in the mean-field scaling (``p = 1``,
  uniform masses) and ``grad_{theta_j} E`` in the NTK scaling (``p = 1/2``).

Everything is built once from a trace of the model (as NumPyro's ``potential_fn_gen`` does)
and returned as pure functions of the unconstrained particles ``z`` (a dict of arrays whose
leading axis is the particle axis) and the masses.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from .scaling import SCALING_INFER_KEY, scaling_exponent, time_scale

__all__ = [
    "ParticleEnergy",
    "energy_from_model",
    "energy_from_fn",
    "first_variation",
    "velocity",
    "energy_and_velocity",
    "freeze",
]


class ParticleEnergy(NamedTuple):
    """The pieces every kernel needs, as pure functions of unconstrained particles ``z``.

    energy(z, masses=None) -> scalar ``E``
    log_prior(z) -> ``(n,)`` array of ``log mu0(theta_j)`` in unconstrained coordinates
    sample_prior(rng_key) -> ``z`` drawn iid from ``mu0``
    constrain(z) -> particle values in the model's (constrained) coordinates
    subsample(rng_key, batch_size) -> the ParticleEnergy of a random minibatch of the data
    """

    energy: Callable
    log_prior: Callable
    sample_prior: Callable
    constrain: Callable
    unconstrain: Callable
    width: int
    exponent: float
    num_data: float
    accepts_masses: bool
    site_names: tuple
    frozen: tuple = ()
    subsample: Callable | None = None
    block_size: int | None = None


def _per_particle(x, n: int):
    """Sum a per-particle array over every axis but the leading (particle) one."""
    x = jnp.asarray(x)
    if x.ndim == 0:
        return jnp.broadcast_to(x, (n,))
    return x.reshape(n, -1).sum(-1)


def _accepts_kwarg(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _check_frozen(frozen, names):
    frozen = (frozen,) if isinstance(frozen, str) else tuple(frozen or ())
    unknown = sorted(set(frozen) - set(names))
    if unknown:
        raise ValueError(f"frozen sites {unknown} are not particle sites; the sites are {list(names)}")
    if set(frozen) == set(names):
        raise ValueError("every particle site is frozen: nothing would move")
    return frozen


_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                  jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError,
                  jax.errors.UnexpectedTracerError)


def _metadata_trace(model, model_args, model_kwargs):
    """One trace of ``model`` for its sites, shapes and supports, and the size of each observed
    site's ``log_prob``.

    With concrete data the model is traced abstractly (under ``jax.make_jaxpr``: no arithmetic is
    done, which matters when the ``N x n`` forward pass is large); only shapes and metadata are
    read from that trace.  A model that needs concrete values of its latent draws (Python control
    flow on them) is traced eagerly instead.
    """
    def trace():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*model_args, **model_kwargs)
        sizes = {name: int(np.prod(jnp.shape(site["fn"].log_prob(site["value"]))))
                 for name, site in tr.items() if site["type"] == "sample" and site["is_observed"]}
        return tr, sizes

    leaves = jax.tree.leaves((model_args, model_kwargs))
    if any(isinstance(v, jax.core.Tracer) for v in leaves):
        return trace()  # already inside a trace: nothing is computed anyway
    box = {}

    def staged():
        box["out"] = trace()
        return 0

    try:
        jax.make_jaxpr(staged)()
    except _TRACER_ERRORS:
        return trace()
    tr = box["out"][0]
    supports = [site["fn"].support for site in tr.values() if site["type"] == "sample" and not site["is_observed"]]
    if any(_holds_tracer(c) for c in supports):  # e.g. Uniform(low, high): its bounds are needed
        return trace()
    return box["out"]


def _holds_tracer(obj, depth=0) -> bool:
    """Whether a constraint object (or one it wraps) holds a traced parameter."""
    if isinstance(obj, jax.core.Tracer):
        return True
    if depth > 3 or not hasattr(obj, "__dict__"):
        return False
    return any(_holds_tracer(v, depth + 1) for v in vars(obj).values())


def energy_from_model(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    particle_plate: str = "particle",
    scaling: str | float | None = None,
    frozen: tuple = (),
    block_size: int | str | None = None,
    num_replicas: int = 1,
) -> ParticleEnergy:
    """Build the :class:`ParticleEnergy` of a NumPyro ``model`` for fixed data.

    Every latent site must sit in ``numpyro.plate(particle_plate, n)`` with the particle axis
    leading; sites with constrained support are moved in unconstrained coordinates (the prior
    picks up the log-Jacobian, as in NUTS).  Observed sites give the energy
    ``E = -(1/N) sum log p(y | particles)`` with ``N`` the number of observed data (the size
    of the observed sites' batch, times the plate's subsampling scale).

    The model's width scaling is read from ``infer={"mfsample_scaling_exponent": p}`` on its
    particle sites; ``scaling`` may be given for models that do not declare one, and must
    agree with the model's if both are given.  Sites named in ``frozen`` keep their initial
    draw from ``mu0`` (zero velocity, no noise): e.g. ``frozen=("w", "b")`` trains only the
    output weights, the random-feature gradient flow.

    ``block_size`` evaluates the energy as a sum over blocks of ``B`` data,

        E = -(1/N) sum_b sum_{i in block b} log p(y_i | particles),

    one block at a time (``lax.scan``, each block rematerialised in the backward pass), so that
    the ``N x n`` activations are never held at once: the peak is about ``B x n`` activations
    (see :func:`mfsample.blocking.activation_bytes`).  Every array argument whose leading axis
    has the data size ``N`` is split along it (the likelihood must factorise over that axis, as
    for ``batch_size``).  ``None`` (or ``B >= N``): one block, the plain energy; ``"auto"``: the
    largest ``B`` whose activations, for ``num_replicas`` replicas evaluated at once (vectorised
    chains), fit in a fraction of the free memory (:func:`mfsample.blocking.auto_block_size`).  Results agree with the unblocked energy to
    float32 summation order.
    """
    model_kwargs = dict(model_kwargs or {})
    tr, lp_sizes = _metadata_trace(model, model_args, model_kwargs)
    latent, observed, width, exponents = [], [], None, set()
    if not any(s["type"] == "sample" and s["is_observed"] for s in tr.values()):
        raise ValueError(
            "the model has no observed site, so the energy -(1/N) sum log p(y | particles) "
            "is undefined: pass the data (e.g. y=...) to the model"
        )
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            observed.append(name)
            continue
        frames = {f.name: f for f in site["cond_indep_stack"]}
        if particle_plate not in frames:
            raise ValueError(
                f"latent site {name!r} is outside the particle plate {particle_plate!r}: "
                "every latent site must be a per-particle coordinate (global latent "
                "parameters are not part of the measure); observe it, fix it with "
                "numpyro.handlers.condition, or move it into the plate"
            )
        n = frames[particle_plate].size
        value = site["value"]
        if jnp.ndim(value) == 0 or jnp.shape(value)[0] != n:
            raise ValueError(
                f"latent site {name!r} has shape {jnp.shape(value)}: the particle plate "
                f"{particle_plate!r} (size {n}) must be its leading axis"
            )
        if width is not None and n != width:
            raise ValueError("all particle sites must share one particle plate size")
        width = n
        if SCALING_INFER_KEY in site.get("infer", {}):
            exponents.add(float(site["infer"][SCALING_INFER_KEY]))
        latent.append(name)
    if not latent:
        raise ValueError(f"the model has no latent site in the particle plate {particle_plate!r}")
    if len(exponents) > 1:
        raise ValueError(f"particle sites declare different scalings: {sorted(exponents)}")
    model_p = exponents.pop() if exponents else None
    if scaling is not None:
        p = scaling_exponent(scaling)
        if model_p is not None and abs(p - model_p) > 1e-12:
            raise ValueError(
                f"the kernel's scaling (exponent {p}) disagrees with the model's (exponent "
                f"{model_p}); set the scaling once, on the model (e.g. scaling='ntk')"
            )
    else:
        p = 1.0 if model_p is None else model_p

    num_data = 0.0
    for name in observed:
        scale = 1.0 if tr[name]["scale"] is None else tr[name]["scale"]
        num_data = max(num_data, float(lp_sizes[name]) * float(np.mean(scale)))

    frozen = _check_frozen(frozen, latent)
    transforms = {name: biject_to(tr[name]["fn"].support) for name in latent}
    accepts_masses = _accepts_kwarg(model, "masses")
    base_kwargs = {k: v for k, v in model_kwargs.items() if k != "masses"}

    def constrain(z):
        return {k: transforms[k](z[k]) for k in latent}

    def unconstrain(params):
        return {k: transforms[k].inv(jnp.asarray(params[k])) for k in latent}

    def _trace(params, masses, args=model_args, kw=None):
        kwargs = dict(base_kwargs if kw is None else kw)
        if masses is not None:
            if not accepts_masses:
                raise TypeError(
                    "this model does not take a `masses` keyword, so it cannot weight "
                    "particles; add `masses=None` to its signature"
                )
            kwargs["masses"] = masses
        m = handlers.substitute(handlers.seed(model, 0), data=params)
        return handlers.trace(m).get_trace(*args, **kwargs)

    def log_likelihood_sum(params, masses, args, kw):
        """``sum_i log p(y_i | particles)`` over the data in ``args``/``kw`` (one block)."""
        t = _trace(params, masses, args, kw)
        total = 0.0
        for name in observed:
            s = t[name]
            lp = s["fn"].log_prob(s["value"])
            if s["scale"] is not None:
                lp = lp * s["scale"]
            total = total + jnp.sum(lp)
        return total

    full_size = int(round(num_data))

    def is_per_datum(v):
        return isinstance(v, (jax.Array, np.ndarray)) and np.ndim(v) >= 1 and np.shape(v)[0] == full_size

    if isinstance(block_size, str):
        if block_size != "auto":
            raise ValueError(f"block_size must be an integer >= 1, 'auto' or None, got {block_size!r}")
        from .blocking import auto_block_size

        block_size = auto_block_size(full_size, int(width), num_chains=max(1, int(num_replicas)))
    elif block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, 'auto' or None, got {block_size!r}")
        block_size = int(block_size)
    if block_size is not None and block_size >= full_size:
        block_size = None
    if block_size is not None and not any(
            is_per_datum(v) for v in list(model_args) + list(base_kwargs.values())):
        raise ValueError(
            f"block_size={block_size} needs per-datum array arguments (leading axis of size "
            f"N = {full_size}) to split; this model has none")

    def energy(z, masses=None):
        params = constrain(z)
        if block_size is None:
            return -log_likelihood_sum(params, masses, model_args, base_kwargs) / num_data
        from .blocking import blocked_sum

        return -blocked_sum(
            lambda a, kw: log_likelihood_sum(params, masses, a, kw),
            model_args, base_kwargs, block_size, is_per_datum) / num_data

    def log_prior(z):
        params = constrain(z)
        t = _trace(params, None)
        out = jnp.zeros(width)
        for name in latent:
            s = t[name]
            lp = s["fn"].log_prob(params[name])
            ladj = transforms[name].log_abs_det_jacobian(z[name], params[name])
            out = out + _per_particle(lp, width) + _per_particle(ladj, width)
        return out

    def sample_prior(rng_key):
        t = handlers.trace(handlers.seed(model, rng_key)).get_trace(*model_args, **base_kwargs)
        return unconstrain({k: t[k]["value"] for k in latent})

    def subsample(rng_key, batch_size):
        """Energy of ``batch_size`` data drawn without replacement: ``-(1/B) sum_{i in batch} log p``.

        Every array argument of the model whose leading axis has the data size ``N`` is
        subsampled along it (``x``, ``y``, per-datum noise ...); ``batch_size >= N`` is the full
        energy itself.
        """
        if batch_size >= full_size:
            return result
        idx = jax.random.choice(rng_key, full_size, (batch_size,), replace=False)
        take = lambda v: jnp.take(jnp.asarray(v), idx, axis=0) if is_per_datum(v) else v  # noqa: E731
        return energy_from_model(
            model, tuple(take(a) for a in model_args), {k: take(v) for k, v in base_kwargs.items()},
            particle_plate=particle_plate, scaling=p, frozen=frozen,
            block_size=block_size if block_size is not None and block_size < batch_size else None,
        )

    result = ParticleEnergy(
        energy=energy,
        log_prior=log_prior,
        sample_prior=sample_prior,
        constrain=constrain,
        unconstrain=unconstrain,
        width=int(width),
        exponent=float(p),
        num_data=num_data,
        accepts_masses=accepts_masses,
        site_names=tuple(latent),
        frozen=frozen,
        subsample=subsample,
        block_size=block_size,
    )
    return result


def energy_from_fn(
    energy_fn: Callable,
    prior: Any,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    width: int,
    scaling: str | float = "mean_field",
    frozen: tuple = (),
) -> ParticleEnergy:
    """Build a :class:`ParticleEnergy` from ``energy_fn(particles, masses, *args, **kwargs)``.

    ``prior`` is the per-particle reference measure ``mu0``: a NumPyro distribution (then the
    particles are one array of shape ``(n, *event_shape)``) or a dict of distributions, one per
    particle coordinate.  ``masses`` is always passed (``1/n`` when uniform).
    """
    model_kwargs = dict(model_kwargs or {})
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    single = isinstance(prior, dist.Distribution)
    priors = {"theta": prior} if single else dict(prior)
    for k, d in priors.items():
        if not isinstance(d, dist.Distribution):
            raise TypeError(f"prior[{k!r}] must be a numpyro Distribution, got {type(d).__name__}")
        if d.batch_shape != ():
            raise ValueError(
                f"prior[{k!r}] must be the law of one particle (batch_shape ()), got "
                f"batch_shape {d.batch_shape}; use .to_event() for vector coordinates"
            )
    transforms = {k: biject_to(d.support) for k, d in priors.items()}
    p = scaling_exponent(scaling)
    names = tuple(sorted(priors))

    def constrain(z):
        return {k: transforms[k](z[k]) for k in names}

    def unconstrain(params):
        params = {"theta": params} if single and not isinstance(params, dict) else params
        return {k: transforms[k].inv(jnp.asarray(params[k])) for k in names}

    def _user(params):
        return params["theta"] if single else params

    def energy(z, masses=None):
        m = jnp.full((width,), 1.0 / width) if masses is None else masses
        return energy_fn(_user(constrain(z)), m, *model_args, **model_kwargs)

    def log_prior(z):
        params = constrain(z)
        out = jnp.zeros(width)
        for k in names:
            ladj = transforms[k].log_abs_det_jacobian(z[k], params[k])
            lp = priors[k].log_prob(params[k])
            out = out + _per_particle(lp, width) + _per_particle(ladj, width)
        return out

    def sample_prior(rng_key):
        keys = jax.random.split(rng_key, len(names))
        return unconstrain({k: priors[k].sample(kk, (width,)) for k, kk in zip(names, keys)})

    return ParticleEnergy(
        energy=energy,
        log_prior=log_prior,
        sample_prior=sample_prior,
        constrain=constrain,
        unconstrain=unconstrain,
        width=int(width),
        exponent=p,
        num_data=1.0,
        accepts_masses=True,
        site_names=names,
        frozen=_check_frozen(frozen, names),
    )


def first_variation(pe: ParticleEnergy, z, masses=None):
    """``V(theta_j; mu) = dE/dm_j`` for every particle, by autodiff of ``E`` in the masses.

    For the shallow network with unit noise this is ``E_nu[(f(x) - y) * n^(1-p) phi(x; theta_j)]``
    (``phi = a sigma(<w,x>+b)``).  Needs a model that takes ``masses``.
    """
    if not pe.accepts_masses:
        raise TypeError(
            "the first variation dE/dm_j needs a model with a `masses` keyword; this one has none"
        )
    m = jnp.full((pe.width,), 1.0 / pe.width) if masses is None else masses
    return jax.grad(lambda mm: pe.energy(z, mm))(m)


def freeze(pe: ParticleEnergy, field):
    """Zero the components of a particle field on the frozen sites."""
    if not pe.frozen:
        return field
    return {k: (jnp.zeros_like(v) if k in pe.frozen else v) for k, v in field.items()}


def _velocity_from_grad(pe: ParticleEnergy, grad, masses):
    grad = freeze(pe, grad)
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
    e, g = jax.value_and_grad(pe.energy)(z, masses)
    return e, _velocity_from_grad(pe, g, masses)


def velocity(pe: ParticleEnergy, z, masses=None):
    """The velocity field ``grad_theta V(theta_j; mu)`` of the Wasserstein flow (see module doc)."""
    return energy_and_velocity(pe, z, masses)[1]
