"""Cost of one kernel step: ``mf.simulate`` and ``numpyro.infer.MCMC`` against a hand-written loop.

The update timed is one explicit Euler step of the particle dynamics of the shallow network
``f(x) = (1/n) sum_j a_j relu(<w_j, x> + b_j)`` (mean-field scaling, unit noise), whose energy
is ``E = (1/N) sum_i (f(x_i) - y_i)^2 / 2 + const``:

* Wasserstein flow (``--kernel wasserstein``): ``theta_j <- theta_j - dt * n * grad_{theta_j} E``;
* mean-field Langevin (``--kernel langevin``):
  ``theta_j <- theta_j - dt * (n grad_{theta_j} E - tau grad log mu0(theta_j))
  + sqrt(2 tau dt) xi_j``.

Three paths run ``T`` steps from the same particles, interleaved round-robin in one process
(hand, simulate, mcmc, init, hand, simulate, ...), each warmed up first; medians are reported:

* ``hand``: ``jax.jit`` + ``lax.scan`` over the update written here with hand-derived matmuls
  (``--hand matmul``, the default and the fastest found) or with ``jax.grad`` of ``E``
  (``--hand grad``).  It records nothing but the final particles.
* ``simulate``: ``mf.simulate(kernel, key, x, y, width=n, num_steps=T, save_every=T,
  collect_deterministic=False, progress_bar=False)``: it records one draw (the particles and the
  state fields after step ``T``), not the deterministic ``f``.  A call includes
  ``kernel.init`` (the energy built from the model, the prior draw and the first drift,
  evaluated eagerly).
* ``mcmc``: ``MCMC(kernel, num_warmup=0, num_samples=T, progress_bar=False).run(key, x, y,
  width=n)``: it records every step (``thinning=1``): the particles, the model's deterministic
  ``f`` (one forward pass per draw, through the kernel's ``postprocess_fn``) and the default
  state fields.  A call includes ``kernel.init`` and, with numpyro 0.22 and
  ``progress_bar=False``, a recompilation of its sampling loop on every ``run`` (its
  ``fori_collect`` hands ``jit`` a freshly jitted body as a static argument, which never hits
  the cache; cf. numpyro PR #2171); that compile time is measured (JAX's compile-duration
  events) and shown.
* ``init`` is ``kernel.init`` alone, timed in the same rotation, so that the fixed cost of a
  call can be told from the per-step cost: the rows ``... loop only`` subtract it (and, for
  ``mcmc``, the measured compile time) from the call before dividing by ``T``.

Before timing, the three paths are checked (once, at the smallest size, ``--check-steps``
steps) to produce the same particles (``allclose``), so the comparison is like for like; the
final particles of the timed calls are compared again at every size.

    python benchmarks/step.py                     # all sizes, Wasserstein flow (a few minutes)
    python benchmarks/step.py --sizes small --kernel langevin --steps 200 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC

import mfsample as mf

#: (dim, width, num_data) and the default number of steps per timed call at that size
SIZES = {(10, 256, 1024): 200, (20, 1024, 4096): 40, (50, 4096, 8192): 10}
TEACHER_WIDTH = 5
DATA_KEY, RUN_KEY = 0, 1

#: JAX events whose durations add up to the tracing + lowering + compiling of a jitted function
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileClock:
    """Seconds JAX has spent tracing, lowering and compiling since the start of the process."""

    def __init__(self):
        self.seconds = 0.0
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event in _COMPILE_EVENTS:
            self.seconds += duration
            self.count += event == _COMPILE_EVENTS[-1]


# ------------------------------------------------------------------------------------------
# the hand-written reference
# ------------------------------------------------------------------------------------------
def hand_runner(x, y, *, width, num_steps, step_size, temperature, variant):
    """Jitted ``(z0, rng_key) -> z_T`` for the update in the module docstring, written by hand.

    ``variant="matmul"``: the gradients are derived by hand, with the units' input weights
    carried as a ``(d, n)`` array ``W`` so that the backward matmul ``x.T @ G`` produces a
    ``(d, n)`` result (about 4x faster on XLA:CPU than producing ``(n, d)``):

        h = x W + b,  r = relu(h),  res = (r a / n - y) / N,  G = 1[h > 0] * res a^T,
        n grad_a E = r^T res,  n grad_W E = x^T G,  n grad_b E = 1^T G.

    ``variant="grad"``: ``jax.grad`` of ``E`` with ``w`` carried as ``(n, d)``, as a user would
    write it (and as the model lays it out).
    The prior ``mu0`` of :func:`mfsample.models.shallow_network` is ``a ~ N(0, 1)``,
    ``w ~ N(0, I/d)``, ``b ~ N(0, 1)``, so ``-grad log mu0 = (a, d w, b)``.  The Langevin noise
    draws the kernel's keys (``split(key, 3)`` per step, then one key per site ``a, b, w``), so
    both give the same trajectory as the kernels.
    """
    num_data, dim = x.shape
    dt, tau = step_size, temperature
    noise_scale = float(np.sqrt(2.0 * tau * dt))
    transposed = variant == "matmul"  # carry w as (d, n)

    def drift_matmul(a, W, b):
        h = x @ W + b
        r = jnp.maximum(h, 0.0)
        res = (r @ a / width - y) / num_data
        G = jnp.where(h > 0, res[:, None] * a[None, :], 0.0)
        return res @ r, x.T @ G, jnp.sum(G, axis=0)

    def energy(a, w, b):
        f = jax.nn.relu(x @ w.T + b) @ a / width
        return 0.5 * jnp.mean((f - y) ** 2)

    grad_energy = jax.grad(energy, argnums=(0, 1, 2))

    def drift_grad(a, w, b):
        return tuple(width * g for g in grad_energy(a, w, b))

    drift_e = drift_matmul if transposed else drift_grad

    def step(carry, _):
        a, w, b, key = carry  # w is (d, n) if transposed else (n, d)
        da, dw, db = drift_e(a, w, b)
        if tau > 0:
            da, dw, db = da + tau * a, dw + tau * dim * w, db + tau * b
        a, w, b = a - dt * da, w - dt * dw, b - dt * db
        if tau > 0:
            key, key_noise, _ = jax.random.split(key, 3)
            xi = jax.random.normal(key_noise, (width * (dim + 2),))  # one vector, cut as the kernels cut it
            a = a + noise_scale * xi[:width]
            b = b + noise_scale * xi[width : 2 * width]
            xi_w = xi[2 * width :].reshape(width, dim)
            w = w + noise_scale * (xi_w.T if transposed else xi_w)
        return (a, w, b, key), None

    @jax.jit
    def run(z0, rng_key):
        w0 = z0["w"].T if transposed else z0["w"]
        a, w, b, _ = jax.lax.scan(step, (z0["a"], w0, z0["b"], rng_key), None, length=num_steps)[0]
        return {"a": a, "w": w.T if transposed else w, "b": b}

    return run


# ------------------------------------------------------------------------------------------
# the three paths
# ------------------------------------------------------------------------------------------
def make_kernel(kind, step_size, temperature):
    if kind == "wasserstein":
        return mf.WassersteinFlow(mf.models.shallow_network, step_size=step_size)
    return mf.MeanFieldLangevin(mf.models.shallow_network, step_size=step_size, temperature=temperature)


def make_paths(size, num_steps, args):
    """The four timed callables at one size, each returning the particles after the call."""
    dim, width, num_data = size
    data = mf.data.teacher_student(
        jax.random.PRNGKey(DATA_KEY), dim=dim, teacher_width=TEACHER_WIDTH, num_data=num_data
    )
    x, y = data.x, data.y
    key = jax.random.PRNGKey(RUN_KEY)
    tau = args.temperature if args.kernel == "langevin" else 0.0

    # the initial particles and key of the kernels' state, handed to the hand loop
    k_init = make_kernel(args.kernel, args.step_size, args.temperature)
    state0 = k_init.init(key, 0, None, (x, y), {"width": width})
    hand = hand_runner(
        x,
        y,
        width=width,
        num_steps=num_steps,
        step_size=args.step_size,
        temperature=tau,
        variant=args.hand,
    )

    k_sim = make_kernel(args.kernel, args.step_size, args.temperature)
    k_mcmc = make_kernel(args.kernel, args.step_size, args.temperature)
    mcmc = MCMC(k_mcmc, num_warmup=0, num_samples=num_steps, progress_bar=False)

    def run_hand():
        return hand(state0.z, state0.rng_key)

    def run_simulate():
        sim = mf.simulate(
            k_sim,
            key,
            x,
            y,
            width=width,
            num_steps=num_steps,
            save_every=num_steps,
            collect_deterministic=False,
            progress_bar=False,
        )
        return sim.last_state.z

    def run_mcmc():
        mcmc.run(key, x, y, width=width)
        return mcmc.last_state.z

    def run_init():
        return k_init.init(key, 0, None, (x, y), {"width": width}).z

    return {"hand": run_hand, "simulate": run_simulate, "mcmc": run_mcmc, "init": run_init}


def max_abs_diff(z1, z2):
    return max(float(np.max(np.abs(np.asarray(z1[k]) - np.asarray(z2[k])))) for k in "awb")


def check_same_particles(args):
    """Assert that hand, simulate and mcmc give the same particles after ``--check-steps`` steps."""
    size = min(SIZES)
    paths = make_paths(size, args.check_steps, args)
    out = {name: paths[name]() for name in ("hand", "simulate", "mcmc")}
    # float32: the paths sum in different orders (relative rounding ~1e-7 per operation,
    # ~1e-6 per step after the matmul reductions); after the default 100 steps the particles
    # (entries of order 1, moved by ~0.9 in total) agree to ~5e-7 (Wasserstein) and ~3e-5
    # (Langevin, whose noise does not contract the differences), so 1e-4 leaves a margin, while
    # any difference in the update itself (a missing factor n, a wrong prior term or noise
    # scale, a skipped step) moves them by 1e-3 or more.
    for name in ("simulate", "mcmc"):
        for k in ("a", "w", "b"):
            np.testing.assert_allclose(
                np.asarray(out[name][k]),
                np.asarray(out["hand"][k]),
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{name} and hand disagree on site {k!r} after {args.check_steps} steps",
            )
    moved = max_abs_diff(out["hand"], paths["init"]())
    print(
        f"check at (dim, width, num_data) = {size}, {args.check_steps} steps: particles agree; "
        f"max |simulate - hand| = {max_abs_diff(out['simulate'], out['hand']):.1e}, "
        f"max |mcmc - hand| = {max_abs_diff(out['mcmc'], out['hand']):.1e}, "
        f"max |z_T - z_0| = {moved:.2g}\n"
    )


def time_size(size, num_steps, args, clock):
    """Interleaved timings at one size: dict name -> list of (seconds, compile seconds)."""
    paths = make_paths(size, num_steps, args)
    for fn in paths.values():  # warm-up: compile everything once
        jax.block_until_ready(fn())
    times = {name: [] for name in paths}
    last = {}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            c0 = clock.seconds
            t0 = time.perf_counter()
            last[name] = jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - t0, clock.seconds - c0))
    diffs = {name: max_abs_diff(last[name], last["hand"]) for name in ("simulate", "mcmc")}
    return times, diffs


def report(size, num_steps, times, diffs, args):
    """Print the table of one size (``best``: the fastest call, least disturbed by other load)."""
    med = {name: statistics.median(t for t, _ in v) for name, v in times.items()}
    best = {name: min(t for t, _ in v) for name, v in times.items()}
    comp = {name: statistics.median(c for _, c in v) for name, v in times.items()}
    # mcmc recompiles in every call: subtract each call's own compile time before the statistic
    net = [t - c for t, c in times["mcmc"]]
    med["mcmc_net"], best["mcmc_net"] = statistics.median(net), min(net)
    rows = [
        ("hand", med["hand"], best["hand"], ""),
        ("simulate", med["simulate"], best["simulate"], f"incl. init {1e3 * med['init']:.0f} ms"),
        ("  loop only", med["simulate"] - med["init"], best["simulate"] - best["init"], "call - init"),
        ("mcmc", med["mcmc"], best["mcmc"], f"incl. init, compile {1e3 * comp['mcmc']:.0f} ms"),
        ("  loop only", med["mcmc_net"] - med["init"], best["mcmc_net"] - best["init"], "call - init - compile"),
    ]
    print(f"(dim, width, num_data) = {size}: {num_steps} steps per call, {args.repeats} rounds")
    print(f"  {'path':<13}{'ms/step':>10}{'x hand':>9}{'best':>10}{'x hand':>9}   notes (medians)")
    for name, total, fastest, note in rows:
        print(
            f"  {name:<13}{1e3 * total / num_steps:>10.3f}{total / med['hand']:>9.2f}"
            f"{1e3 * fastest / num_steps:>10.3f}{fastest / best['hand']:>9.2f}   {note}"
        )
    others = {k: round(v, 3) for k, v in comp.items() if k not in ("mcmc", "mcmc_net") and v > 1e-3}
    if others:
        print(f"  warning: compilation inside timed calls (s): {others}")
    print(
        f"  final particles: max |simulate - hand| = {diffs['simulate']:.1e}, max |mcmc - hand| = {diffs['mcmc']:.1e}\n"
    )
    return {
        "size": size,
        "steps": num_steps,
        "hand_ms": 1e3 * med["hand"] / num_steps,
        "simulate_ms": 1e3 * med["simulate"] / num_steps,
        "simulate_ratio": med["simulate"] / med["hand"],
        "simulate_loop_ratio": (med["simulate"] - med["init"]) / med["hand"],
        "mcmc_ms": 1e3 * med["mcmc"] / num_steps,
        "mcmc_ratio": med["mcmc"] / med["hand"],
        "mcmc_loop_ratio": (med["mcmc_net"] - med["init"]) / med["hand"],
        "init_ms": 1e3 * med["init"],
        "mcmc_compile_ms": 1e3 * comp["mcmc"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", choices=("small", "all"), default="all")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per timed call (default: 200, 40, 10 at the three sizes)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--kernel", choices=("wasserstein", "langevin"), default="wasserstein")
    parser.add_argument(
        "--hand",
        choices=("matmul", "grad"),
        default="matmul",
        help="hand loop: hand-derived matmuls in the fast layout, or jax.grad",
    )
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=1e-4, help="tau (langevin only)")
    parser.add_argument("--check-steps", type=int, default=100)
    args = parser.parse_args(argv)

    clock = CompileClock()
    print(
        f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load average "
        f"{os.getloadavg()[0]:.1f}; kernel {args.kernel}, dt {args.step_size}"
        + (f", tau {args.temperature}" if args.kernel == "langevin" else "")
        + f"; hand loop: {args.hand}\n"
    )
    check_same_particles(args)
    sizes = [min(SIZES)] if args.sizes == "small" else sorted(SIZES)
    results = []
    for size in sizes:
        num_steps = args.steps or SIZES[size]
        times, diffs = time_size(size, num_steps, args, clock)
        results.append(report(size, num_steps, times, diffs, args))

    print("summary (medians; ms per step; ratios to the hand loop; 'loop' = without the per-call init and compile)")
    print(
        f"  {'(dim, width, N)':<20}{'T':>5}{'hand':>10}{'simulate':>10}{'mcmc':>10}"
        f"{'sim/hand':>10}{'mcmc/hand':>11}{'sim loop':>10}{'mcmc loop':>11}"
    )
    for r in results:
        print(
            f"  {str(r['size']):<20}{r['steps']:>5}{r['hand_ms']:>10.3f}{r['simulate_ms']:>10.3f}"
            f"{r['mcmc_ms']:>10.3f}{r['simulate_ratio']:>10.2f}{r['mcmc_ratio']:>11.2f}"
            f"{r['simulate_loop_ratio']:>10.2f}{r['mcmc_loop_ratio']:>11.2f}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return results


if __name__ == "__main__":
    main()
