"""Cost of the Fisher–Rao reaction against the gradient (transport) step.

For the shallow network (mean-field scaling, unit noise) at a few sizes ``(dim, width, num_data)``
this times, interleaved round-robin in one process (each jitted and warmed up first; minima and
medians over ``--repeats`` rounds, the ratios from the minima; ``--steps`` iterations per timed
call inside one ``lax.fori_loop``):

* ``grad``: ``evaluate_drift`` (energy + ``n grad E``: the gradient step's work);
* ``grad+V``: ``evaluate_drift`` and ``first_variation`` (``dE/dm``) at the same particles, in one
  jitted function (XLA shares the forward pass): the extra cost of ``V`` is the difference;
* ``birth_death`` / ``birth_death(prior)`` / ``reweight``: the reaction steps alone
  (:func:`~mfsample.kernels.reaction.birth_death_step`, with a prior draw for ``prior``,
  :func:`~mfsample.kernels.reaction.fisher_rao_reweight`);
* ``WF step`` / ``WFR step (mode)``: full kernel steps of ``WassersteinFlow`` and
  ``WassersteinFisherRao`` (``rate = 1``).

Ratios printed: reaction alone / grad, (grad+V - grad) / grad, and WFR step / WF step - 1 (the
whole overhead of the reaction in a kernel step).

    python benchmarks/reaction.py                       # two sizes, a minute or two
    python benchmarks/reaction.py --sizes 10,256,1024 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import mfsample as mf
from mfsample.energy import energy_from_model, first_variation
from mfsample.kernels.reaction import birth_death_step, centered_first_variation, fisher_rao_reweight
from mfsample.kernels.steps import evaluate_drift
from mfsample.kernels.wfr import WassersteinFisherRao

DEFAULT_SIZES = ((10, 256, 1024), (20, 1024, 4096))


def _loop(fn, steps):
    """jit(x -> fori_loop(steps, fn)): fn maps a carry to a carry of the same structure."""
    return jax.jit(lambda c: jax.lax.fori_loop(0, steps, lambda i, cc: fn(cc), c))


def _block(x):
    return jax.tree.map(lambda a: a.block_until_ready(), x)


def build_cases(dim, width, num_data, steps):
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=dim, teacher_width=5, num_data=num_data)
    args, kwargs = (data.x, data.y), {"width": width}
    pe = energy_from_model(mf.models.shallow_network, args, kwargs)
    z0 = pe.sample_prior(jax.random.PRNGKey(1))
    v0 = first_variation(pe, z0)
    u0, _ = centered_first_variation(v0)
    logm0 = jnp.full((width,), -jnp.log(width))

    def perturb(z, g):  # carry dependency so that XLA cannot hoist the work out of the loop
        return jax.tree.map(lambda zi, gi: zi - 1e-6 * gi, z, g)

    def grad(c):
        d = evaluate_drift(pe, c, None, 0.0)
        return perturb(c, d.drift)

    def grad_v(c):
        z, v = c
        d = evaluate_drift(pe, z, None, 0.0)
        return perturb(z, d.drift), first_variation(pe, z) + 1e-6 * v

    def bd(c):
        key, z = c
        key, sub = jax.random.split(key)
        return key, birth_death_step(sub, z, u0, 1.0, 0.1).z

    def bd_prior(c):
        key, z = c
        key, sub, kp = jax.random.split(key, 3)
        return key, birth_death_step(sub, z, u0, 1.0, 0.1, birth="prior", prior_sample=pe.sample_prior(kp)).z

    def reweight(c):
        return fisher_rao_reweight(c, u0, 1.0, 0.1)

    cases = {
        "grad": (_loop(grad, steps), z0),
        "grad+V": (_loop(grad_v, steps), (z0, v0)),
        "birth_death": (_loop(bd, steps), (jax.random.PRNGKey(2), z0)),
        "birth_death(prior)": (_loop(bd_prior, steps), (jax.random.PRNGKey(2), z0)),
        "reweight": (_loop(reweight, steps), logm0),
    }
    kernels = {
        "WF step": mf.WassersteinFlow(mf.models.shallow_network, step_size=1e-3),
        "WFR step (clone)": WassersteinFisherRao(mf.models.shallow_network, step_size=1e-3, rate=1.0),
        "WFR step (prior)": WassersteinFisherRao(mf.models.shallow_network, step_size=1e-3, rate=1.0, birth="prior"),
        "WFR step (weighted)": WassersteinFisherRao(
            mf.models.shallow_network, step_size=1e-3, rate=1.0, mode="weighted"
        ),
    }
    for name, k in kernels.items():
        state = k.init(jax.random.PRNGKey(3), 0, None, args, kwargs)
        _, step_fn = k.build(k.energy)
        cases[name] = (_loop(step_fn, steps), state)
    return cases


def run(sizes, steps, repeats):
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; {steps} iterations per call, "
        f"{repeats} interleaved rounds; "
        "ratios use the minimum over rounds (least disturbed by other processes)"
    )
    for dim, width, num_data in sizes:
        cases = build_cases(dim, width, num_data, steps)
        for fn, c in cases.values():  # compile + warm up
            _block(fn(c))
        times = {name: [] for name in cases}
        for _ in range(repeats):
            for name, (fn, c) in cases.items():
                t0 = time.perf_counter()
                _block(fn(c))
                times[name].append((time.perf_counter() - t0) / steps * 1e3)
        med = {k: min(v) for k, v in times.items()}
        print(f"\n(dim, width, num_data) = ({dim}, {width}, {num_data})   [min / median ms per iteration]")
        for name, t in med.items():
            print(f"  {name:22s} {t:9.4f}  {statistics.median(times[name]):9.4f}")
        g = med["grad"]
        print(f"  ratio birth_death / grad          {med['birth_death'] / g:7.3f}")
        print(f"  ratio birth_death(prior) / grad   {med['birth_death(prior)'] / g:7.3f}")
        print(f"  ratio reweight / grad             {med['reweight'] / g:7.3f}")
        print(f"  ratio (grad+V - grad) / grad      {(med['grad+V'] - g) / g:7.3f}")
        wf = med["WF step"]
        for mode in ("clone", "prior", "weighted"):
            print(f"  ratio WFR step ({mode}) / WF step - 1  {med[f'WFR step ({mode})'] / wf - 1:7.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=None, help="dim,width,num_data triples")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=11)
    a = p.parse_args()
    sizes = DEFAULT_SIZES if not a.sizes else [tuple(int(v) for v in s.split(",")) for s in a.sizes]
    run(sizes, a.steps, a.repeats)


if __name__ == "__main__":
    main()
