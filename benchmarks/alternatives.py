"""The same particle dynamics written the ways other code writes them: the suite's references.

The three dynamics of :mod:`benchmarks.run`, for the shallow ReLU network in the mean-field
scaling with unit noise, ``f(x) = (1/n) sum_j a_j relu(<w_j, x> + b_j)``, whose energy is
``E = (1/N) sum_i (f(x_i) - y_i)^2 / 2 + const`` and whose prior ``mu0`` is ``a ~ N(0, 1)``,
``w ~ N(0, I/d)``, ``b ~ N(0, 1)``:

* ``wasserstein``: ``theta_j <- theta_j - dt n grad_{theta_j} E``;
* ``langevin`` (unadjusted, temperature ``tau``): ``theta_j <- theta_j - dt (n grad_{theta_j} E
  - tau grad log mu0(theta_j)) + sqrt(2 tau dt) xi_j``, with ``-grad log mu0 = (a, d w, b)``;
* ``wfr`` (birth–death Wasserstein–Fisher–Rao, rate ``alpha``): the transport above, then the
  birth–death reaction driven by ``V_j - Vbar`` at the pre-step particles, with the first
  variation ``V_j = dE/dm_j = a_j (r^T res)_j`` (``r = relu(x w^T + b)``, ``res = (f - y) / N``).

Hand-derived gradients (used by :func:`hand_scan` and :class:`NumpyLoop`)::

    h = x W + b,  r = relu(h),  res = (r a / n - y) / N,  G = 1[h > 0] * res a^T,
    n grad_a E = r^T res,  n grad_W E = x^T G,  n grad_b E = 1^T G,  V = a * (r^T res).

Random numbers.  Every reference consumes the random numbers of one step as
:func:`step_draws` describes them, which are those the mfsample kernels draw, key for key
(``split(key, 3)`` per step; Langevin noise one key per site ``a, b, w``; the reaction's
uniforms and indices as :func:`mfsample.kernels.reaction.birth_death_step` draws them).  The JAX
references draw them in the loop; the NumPy and PyTorch ones draw the same kinds of numbers
from their own generators when timed, and replay JAX's (:func:`replay_draws`) when checked, so
that every reference can be compared with ``mf.simulate`` particle for particle.

Each maker returns ``run(z0, key) -> z_T`` with ``z0`` the kernel's initial particles
(``{"a": (n,), "w": (n, d), "b": (n,)}``) and ``key`` its initial state key.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Dynamic",
    "DYNAMICS",
    "split_step_key",
    "noise_draws",
    "reaction_draws",
    "step_draws",
    "numpy_draws",
    "replay_draws",
    "birth_death_source",
    "hand_scan",
    "PythonLoop",
    "blackjax_sgld",
    "NumpyLoop",
    "TorchLoop",
    "torch_available",
    "blackjax_available",
]


class Dynamic(NamedTuple):
    """A benchmarked dynamic: ``name`` in ``("wasserstein", "langevin", "wfr")``, ``dt``, ``tau``, ``alpha``."""

    name: str
    step_size: float
    temperature: float = 0.0
    rate: float = 0.0

    @property
    def noisy(self) -> bool:
        return self.temperature > 0

    @property
    def reaction(self) -> bool:
        return self.name == "wfr"

    def kernel(self, model):
        """The mfsample kernel of this dynamic for ``model``."""
        import mfsample as mf
        from mfsample.kernels.wfr import WassersteinFisherRao

        if self.name == "wasserstein":
            return mf.WassersteinFlow(model, step_size=self.step_size)
        if self.name == "langevin":
            return mf.MeanFieldLangevin(model, step_size=self.step_size, temperature=self.temperature)
        return WassersteinFisherRao(
            model,
            step_size=self.step_size,
            rate=self.rate,
            temperature=self.temperature,
            mode="birth_death",
            birth="clone",
        )


#: the three dynamics at their benchmark settings (dt as benchmarks/step.py; tau small enough for a
#: realistic mean-field Langevin run; alpha = 1 gives a few birth-death events per step per 100 units)
DYNAMICS = {
    "wasserstein": Dynamic("wasserstein", 0.1),
    "langevin": Dynamic("langevin", 0.1, temperature=1e-4),
    "wfr": Dynamic("wfr", 0.1, rate=1.0),
}


# ------------------------------------------------------------------------------------------
# random numbers of one step (the kernels' own)
# ------------------------------------------------------------------------------------------
def split_step_key(key, dyn: Dynamic):
    """``(next key, noise key, reaction key)``: ``split(key, 3)``; the Wasserstein flow keeps its key."""
    if dyn.name == "wasserstein":
        return key, None, None
    k = jax.random.split(key, 3)
    return k[0], k[1], k[2]


def noise_draws(key_noise, n, d):
    """``xi`` for the sites ``a, b, w``: one normal vector of ``n (d + 2)`` numbers cut in that
    order (a dict's sorted leaves), as the kernels draw it."""
    xi = jax.random.normal(key_noise, (n * (d + 2),))
    return {"xi_a": xi[:n], "xi_b": xi[n : 2 * n], "xi_w": xi[2 * n :].reshape(n, d)}


def reaction_draws(key_react, n):
    """The uniforms and indices of one birth–death step, drawn as ``birth_death_step`` draws them:
    ``4 n`` random words, uniforms from their top 24 bits, indices modulo ``n``."""
    bits = jax.random.bits(key_react, (4, n), jnp.uint32)
    return {
        "u_fire": (bits[0] >> 8).astype(jnp.float32) / 2**24,
        "src": (bits[1] % jnp.uint32(n)).astype(jnp.int32),
        "self": (bits[2] % jnp.uint32(n)).astype(jnp.int32),
        "u_perm": (bits[3] >> 8).astype(jnp.float32) / 2**24,
    }


def step_draws(key, dyn: Dynamic, n, d):
    """``(next key, draws)``: every random number one kernel step uses, from the kernel's key chain."""
    key, key_noise, key_react = split_step_key(key, dyn)
    out = {}
    if dyn.noisy:
        out.update(noise_draws(key_noise, n, d))
    if dyn.reaction:
        out.update(reaction_draws(key_react, n))
    return key, out


def replay_draws(key, dyn: Dynamic, n, d, num_steps):
    """The draws of ``num_steps`` kernel steps from ``key``, as a list of dicts of NumPy arrays."""

    def body(k, _):
        return step_draws(k, dyn, n, d)

    _, draws = jax.jit(lambda k: jax.lax.scan(body, k, None, length=num_steps))(key)
    draws = {k: np.asarray(v) for k, v in draws.items()}
    return [{k: v[t] for k, v in draws.items()} for t in range(num_steps)]


def numpy_draws(rng: np.random.Generator, dyn: Dynamic, n, d):
    """The same kinds of random numbers as :func:`step_draws`, from a NumPy generator."""
    out = {}
    if dyn.noisy:
        out["xi_a"] = rng.standard_normal(n, dtype=np.float32)
        out["xi_b"] = rng.standard_normal(n, dtype=np.float32)
        out["xi_w"] = rng.standard_normal((n, d), dtype=np.float32)
    if dyn.reaction:
        out["u_fire"] = rng.random(n, dtype=np.float32)
        out["src"] = rng.integers(0, n, n)
        out["self"] = rng.integers(0, n, n)
        out["u_perm"] = rng.random(n, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------------------
# the birth-death reaction, given its draws
# ------------------------------------------------------------------------------------------
def birth_death_source(u, draws, rate, dt):
    """Slot ``i`` of the particles after the reaction holds pre-step particle ``source[i]`` (JAX).

    ``u = V - Vbar``.  A particle fires with probability ``1 - exp(-alpha dt |u_j|)``; a firing
    one with ``u_j > 0`` dies and its slot takes a copy of the uniformly drawn ``src_j``; one with
    ``u_j < 0`` is copied over a uniformly chosen particle: itself (a null event) when
    ``self_j == j``, else the next slot of a random permutation of the quiet (non-firing)
    particles, in index order; births beyond the number of quiet slots are dropped.  This is the
    rule of :func:`mfsample.kernels.reaction.birth_death_step`, written again from its docstring.
    """
    n = u.shape[0]
    idx = jnp.arange(n)
    fire = draws["u_fire"] < -jnp.expm1(-rate * dt * jnp.abs(u))
    killed = fire & (u > 0)
    moving = fire & (u < 0) & (draws["self"] != idx)
    source = jnp.where(killed, draws["src"], idx)
    quiet_perm = jnp.argsort(jnp.where(fire, 2.0, draws["u_perm"]), stable=True)
    rank = jnp.cumsum(moving) - 1
    placed = moving & (rank < n - jnp.sum(fire))
    victim = jnp.where(placed, quiet_perm[jnp.clip(rank, 0, n - 1)], n)
    return source.at[victim].set(idx, mode="drop")


def _numpy_birth_death_source(u, draws, rate, dt):
    """:func:`birth_death_source` in NumPy."""
    n = u.shape[0]
    idx = np.arange(n)
    fire = draws["u_fire"] < -np.expm1(np.float32(-rate * dt) * np.abs(u))
    killed = fire & (u > 0)
    moving = fire & (u < 0) & (draws["self"] != idx)
    source = np.where(killed, draws["src"], idx)
    quiet_perm = np.argsort(np.where(fire, np.float32(2.0), draws["u_perm"]), kind="stable")
    rank = np.cumsum(moving) - 1
    placed = moving & (rank < n - np.sum(fire))
    source[quiet_perm[rank[placed]]] = idx[placed]
    return source


# ------------------------------------------------------------------------------------------
# JAX: hand-written jit + scan
# ------------------------------------------------------------------------------------------
def _hand_fields(x, y, n):
    """``(a, W, b) -> (n grad_a E, n grad_W E, n grad_b E, V)`` by hand, ``W`` of shape ``(d, n)``."""
    num_data = x.shape[0]

    def fields(a, W, b):
        h = x @ W + b
        r = jnp.maximum(h, 0.0)
        res = (r @ a / n - y) / num_data
        G = jnp.where(h > 0, res[:, None] * a[None, :], 0.0)
        ga = res @ r
        return ga, x.T @ G, jnp.sum(G, axis=0), a * ga

    return fields


def hand_scan(x, y, dyn: Dynamic, num_steps: int, *, noise: bool = True):
    """``jax.jit`` + ``lax.scan`` of the update with hand-derived matmuls, ``w`` carried as ``(d, n)``.

    The layout makes the backward matmul ``x^T G`` produce a ``(d, n)`` result, the fastest
    found on XLA:CPU (``benchmarks/step.py``).  It records only the final particles.
    ``noise=False`` drops the Langevin noise but keeps the prior's drift (to compare with a
    reference whose noise is drawn differently).
    """
    num_data, d = x.shape
    dt, tau, alpha = dyn.step_size, dyn.temperature, dyn.rate
    scale = math.sqrt(2.0 * tau * dt)

    def make(n):
        fields = _hand_fields(x, y, n)

        def step(carry, _):
            a, W, b, key = carry
            ga, gW, gb, v = fields(a, W, b)
            if tau > 0:
                ga, gW, gb = ga + tau * a, gW + tau * d * W, gb + tau * b
            a, W, b = a - dt * ga, W - dt * gW, b - dt * gb
            key, dr = step_draws(key, dyn, n, d)
            if tau > 0 and noise:
                a, b, W = a + scale * dr["xi_a"], b + scale * dr["xi_b"], W + scale * dr["xi_w"].T
            if dyn.reaction:
                src = birth_death_source(v - jnp.mean(v), dr, alpha, dt)
                a, W, b = a[src], W[:, src], b[src]
            return (a, W, b, key), None

        return step

    @jax.jit
    def run(z0, key):
        step = make(z0["a"].shape[0])
        a, W, b, _ = jax.lax.scan(step, (z0["a"], z0["w"].T, z0["b"], key), None, length=num_steps)[0]
        return {"a": a, "w": W.T, "b": b}

    return run


# ------------------------------------------------------------------------------------------
# JAX: a Python loop over a jitted step (research code)
# ------------------------------------------------------------------------------------------
def _loss(x, y):
    """``E(params, masses) = (1/N) sum_i (sum_j m_j a_j relu(<w_j, x_i> + b_j) - y_i)^2 / 2``."""

    def loss(p, m):
        f = jax.nn.relu(x @ p["w"].T + p["b"]) @ (p["a"] * m)
        return 0.5 * jnp.mean((f - y) ** 2)

    return loss


class PythonLoop:
    """A Python ``for`` loop over ``jax.jit(step)``, with ``jax.grad`` of the loss (``w`` as ``(n, d)``).

    This is how most research code runs a particle dynamic: the gradient by autodiff of the
    loss written naturally, one dispatch per step, no buffer donation.  ``V = dE/dm`` (WFR) is the
    gradient in the masses ``m = 1/n``, from the same backward pass.  ``run(z0, key)`` takes
    ``num_steps`` steps with the kernels' key chain (:func:`step_draws`).
    """

    def __init__(self, x, y, dyn: Dynamic, num_steps: int):
        self.num_steps = num_steps
        _, d = x.shape
        dt, tau, alpha = dyn.step_size, dyn.temperature, dyn.rate
        scale = math.sqrt(2.0 * tau * dt)
        grad = jax.grad(_loss(x, y), argnums=(0, 1))

        @jax.jit
        def step(p, key):
            n = p["a"].shape[0]
            g, v = grad(p, jnp.full((n,), 1.0 / n))
            vel = {k: n * gk for k, gk in g.items()}
            if tau > 0:
                vel = {"a": vel["a"] + tau * p["a"], "w": vel["w"] + tau * d * p["w"], "b": vel["b"] + tau * p["b"]}
            p = {k: p[k] - dt * vel[k] for k in p}
            key, dr = step_draws(key, dyn, n, d)
            if tau > 0:
                p = {k: p[k] + scale * dr["xi_" + k] for k in p}
            if dyn.reaction:
                src = birth_death_source(v - jnp.mean(v), dr, alpha, dt)
                p = {k: p[k][src] for k in p}
            return p, key

        self.step = step

    def __call__(self, z0, key):
        p = dict(z0)
        for _ in range(self.num_steps):
            p, key = self.step(p, key)
        return p


# ------------------------------------------------------------------------------------------
# BlackJAX's sgld on the same potential
# ------------------------------------------------------------------------------------------
def blackjax_available():
    """``(True, version)`` or ``(False, reason)``."""
    try:
        import blackjax
    except Exception as e:  # noqa: BLE001 - any import failure makes the column n/a
        return False, f"blackjax not importable ({type(e).__name__}: {e})"
    return True, blackjax.__version__


def blackjax_sgld(x, y, dyn: Dynamic, num_steps: int, *, temperature: float | None = None):
    """``jax.jit`` + ``lax.scan`` over ``blackjax.sgld`` steps on the full data (ULA).

    BlackJAX's step is ``theta <- theta + h grad log pi(theta) + sqrt(2 T h) xi``.  With the
    tempered log-density ``log pi = -n E + tau sum_j log mu0(theta_j)`` (the likelihood of
    ``(x_i, y_i)`` Gaussian with variance ``N / n``, the prior raised to the power ``tau``),
    ``h = dt`` and ``T = tau`` this is the mean-field Langevin step; ``tau = 0`` is the
    Wasserstein flow (BlackJAX still draws the noise, scaled by 0).  The gradient comes from
    ``blackjax.sgmcmc.gradients.grad_estimator`` (a ``vmap`` over data of the per-datum
    log-likelihood).  WFR: BlackJAX has no reaction, so the hand-written birth–death step
    (:func:`birth_death_source`, with ``V = dE/dm`` by ``jax.grad`` in the masses) follows each
    BlackJAX step.  ``temperature`` overrides BlackJAX's ``T`` (``0``: no noise, prior drift kept).
    """
    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    num_data, d = x.shape
    dt, tau, alpha = dyn.step_size, dyn.temperature, dyn.rate
    bj_temperature = tau if temperature is None else temperature

    def make(n):
        def logprior(p):
            if tau == 0:
                return 0.0
            return -0.5 * tau * (jnp.sum(p["a"] ** 2) + d * jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2))

        def loglik(p, datum):
            xi, yi = datum
            f = jax.nn.relu(p["w"] @ xi + p["b"]) @ p["a"] / n
            return -0.5 * (n / num_data) * (f - yi) ** 2

        sgld = blackjax.sgld(grad_estimator(logprior, loglik, num_data))
        first_variation = jax.grad(_loss(x, y), argnums=1)

        def step(carry, _):
            p, key = carry
            key, key_noise, key_react = jax.random.split(key, 3)
            if dyn.reaction:
                v = first_variation(p, jnp.full((n,), 1.0 / n))
            p = sgld.step(key_noise, p, (x, y), dt, bj_temperature)
            if dyn.reaction:
                src = birth_death_source(v - jnp.mean(v), reaction_draws(key_react, n), alpha, dt)
                p = {k: p[k][src] for k in p}
            return (p, key), None

        return step

    @jax.jit
    def run(z0, key):
        step = make(z0["a"].shape[0])
        return jax.lax.scan(step, (dict(z0), key), None, length=num_steps)[0][0]

    return run


# ------------------------------------------------------------------------------------------
# NumPy with hand-derived gradients
# ------------------------------------------------------------------------------------------
class NumpyLoop:
    """The update in NumPy (float32), hand-derived gradients, a Python loop over steps.

    ``run(z0, seed)``: draws from ``np.random.default_rng(seed)``; ``draws`` (a list from
    :func:`replay_draws`) replays JAX's instead.
    """

    def __init__(self, x, y, dyn: Dynamic, num_steps: int, draws=None):
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.dyn, self.num_steps, self.draws = dyn, num_steps, draws

    def __call__(self, z0, seed=0):
        x, y, dyn = self.x, self.y, self.dyn
        num_data, d = x.shape
        a, w, b = (np.array(z0[k], np.float32) for k in "awb")
        n = a.shape[0]
        dt, tau = np.float32(dyn.step_size), np.float32(dyn.temperature)
        scale = np.float32(math.sqrt(2.0 * dyn.temperature * dyn.step_size))
        rng = np.random.default_rng(seed)
        for t in range(self.num_steps):
            h = x @ w.T
            h += b
            r = np.maximum(h, np.float32(0.0))
            res = (r @ a / np.float32(n) - y) / np.float32(num_data)
            G = np.outer(res, a)
            G *= h > 0
            ga = res @ r
            gw = G.T @ x
            gb = G.sum(axis=0)
            v = a * ga
            if tau > 0:
                ga, gw, gb = ga + tau * a, gw + (tau * d) * w, gb + tau * b
            a, w, b = a - dt * ga, w - dt * gw, b - dt * gb
            dr = self.draws[t] if self.draws is not None else numpy_draws(rng, dyn, n, d)
            if tau > 0:
                a, b, w = a + scale * dr["xi_a"], b + scale * dr["xi_b"], w + scale * dr["xi_w"]
            if dyn.reaction:
                src = _numpy_birth_death_source(v - v.mean(), dr, dyn.rate, dyn.step_size)
                a, w, b = a[src], w[src], b[src]
        return {"a": a, "w": w, "b": b}


# ------------------------------------------------------------------------------------------
# PyTorch on the CPU (optional)
# ------------------------------------------------------------------------------------------
def torch_available():
    """``(True, version)`` or ``(False, reason)``; PyTorch is never a dependency of mfsample."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return False, f"torch not importable ({type(e).__name__})"
    return True, torch.__version__


class TorchLoop:
    """The update in PyTorch on the CPU (float32), gradients by ``torch.autograd``, a Python loop.

    The loss is written as a PyTorch user writes it (``x @ w.T``); ``V = dE/dm`` (WFR) is the
    gradient in the masses ``m = 1/n`` from the same backward pass.  ``run(z0, seed)`` draws from
    a ``torch.Generator`` seeded with ``seed``; ``draws`` replays JAX's instead.
    """

    def __init__(self, x, y, dyn: Dynamic, num_steps: int, draws=None):
        import torch

        self.torch = torch
        self.x = torch.from_numpy(np.array(x, np.float32))
        self.y = torch.from_numpy(np.array(y, np.float32))
        self.dyn, self.num_steps = dyn, num_steps
        self.draws = (
            None if draws is None else [{k: torch.from_numpy(np.array(v)) for k, v in dr.items()} for dr in draws]
        )

    def _draws(self, gen, n, d):
        torch, dyn = self.torch, self.dyn
        out = {}
        if dyn.noisy:
            out["xi_a"] = torch.randn(n, generator=gen)
            out["xi_b"] = torch.randn(n, generator=gen)
            out["xi_w"] = torch.randn(n, d, generator=gen)
        if dyn.reaction:
            out["u_fire"] = torch.rand(n, generator=gen)
            out["src"] = torch.randint(0, n, (n,), generator=gen)
            out["self"] = torch.randint(0, n, (n,), generator=gen)
            out["u_perm"] = torch.rand(n, generator=gen)
        return out

    def _source(self, u, dr):
        """:func:`birth_death_source` in PyTorch."""
        torch, dyn = self.torch, self.dyn
        n = u.shape[0]
        idx = torch.arange(n)
        fire = dr["u_fire"] < -torch.expm1(-dyn.rate * dyn.step_size * u.abs())
        killed = fire & (u > 0)
        moving = fire & (u < 0) & (dr["self"] != idx)
        source = torch.where(killed, dr["src"], idx)
        keys = torch.where(fire, torch.full_like(u, 2.0), dr["u_perm"])
        quiet_perm = torch.argsort(keys, stable=True)
        rank = torch.cumsum(moving.long(), 0) - 1
        placed = moving & (rank < n - fire.sum())
        source[quiet_perm[rank[placed]]] = idx[placed]
        return source

    def __call__(self, z0, seed=0):
        torch, x, y, dyn = self.torch, self.x, self.y, self.dyn
        num_data, d = x.shape
        a, w, b = (torch.tensor(np.array(z0[k], np.float32), requires_grad=True) for k in "awb")
        n = a.shape[0]
        dt, tau = dyn.step_size, dyn.temperature
        scale = math.sqrt(2.0 * tau * dt)
        gen = torch.Generator().manual_seed(seed)
        m = torch.full((n,), 1.0 / n, requires_grad=dyn.reaction)
        for t in range(self.num_steps):
            f = torch.relu(x @ w.T + b) @ (a * m)
            loss = 0.5 * torch.mean((f - y) ** 2)
            grads = torch.autograd.grad(loss, [a, w, b, m] if dyn.reaction else [a, w, b])
            dr = self.draws[t] if self.draws is not None else self._draws(gen, n, d)
            with torch.no_grad():
                ga, gw, gb = (n * g for g in grads[:3])
                if tau > 0:
                    ga, gw, gb = ga + tau * a, gw + tau * d * w, gb + tau * b
                a2, w2, b2 = a - dt * ga, w - dt * gw, b - dt * gb
                if tau > 0:
                    a2, b2, w2 = a2 + scale * dr["xi_a"], b2 + scale * dr["xi_b"], w2 + scale * dr["xi_w"]
                if dyn.reaction:
                    v = grads[3]
                    src = self._source(v - v.mean(), dr)
                    a2, w2, b2 = a2[src], w2[src], b2[src]
            a, w, b = (t_.requires_grad_(True) for t_ in (a2, w2, b2))
        return {k: t_.detach().numpy() for k, t_ in zip("awb", (a, w, b))}
