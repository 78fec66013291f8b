"""Wide particle systems: cost per step of ``simulate`` from 2^12 to 2^20 particles.

For each width ``n`` the Wasserstein flow runs ``T`` steps on a teacher–student problem with
``N`` data; the energy's ``block_size="auto"`` blocks the data only when the ``N x n``
activations would not fit in a quarter of the free memory (``mfsample.blocking``), and the
table says which block size was chosen.  Printed: ms per step, particle-data pairs per second
(``n N / step time``), and the same run with a forced small block (``--block``) to show the
price of blocking.

    python benchmarks/widths.py                                   # CPU: up to 2^16
    python benchmarks/widths.py --max-log2 20 --num-data 4096     # an accelerator
"""

from __future__ import annotations

import argparse
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-log2", type=int, default=12)
    ap.add_argument("--max-log2", type=int, default=16)
    ap.add_argument("--num-data", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--block", type=int, default=256, help="the forced block size of the comparison")
    args = ap.parse_args(argv)

    import jax

    import mfsample as mf

    dev = jax.devices()[0]
    print(
        f"# simulate over widths on {dev.platform} ({getattr(dev, 'device_kind', '?')}), jax {jax.__version__}, "
        f"d = {args.dim}, N = {args.num_data}, T = {args.steps}"
    )
    print(f"| width n | auto block size | ms/step (auto) | n N / s | ms/step (block {args.block}) | blocked / auto |")
    print("|---|---|---|---|---|---|")
    data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=args.dim, teacher_width=5, num_data=args.num_data)
    for k in range(args.min_log2, args.max_log2 + 1):
        n = 2**k
        row = {}
        for label, block in (("auto", "auto"), ("forced", args.block)):
            kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1, block_size=block)
            kw = dict(
                width=n, num_steps=args.steps, save_every=args.steps, progress_bar=False, collect_deterministic=False
            )
            sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, **kw)  # compile
            jax.block_until_ready(sim.last_state.z)
            times = []
            for _ in range(2):  # whole calls of T and 2T steps: the difference is the steps alone
                t0 = time.perf_counter()
                s1 = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, **kw)
                jax.block_until_ready(s1.last_state.z)
                t1 = time.perf_counter()
                s2 = mf.simulate(
                    kernel,
                    jax.random.PRNGKey(1),
                    data.x,
                    data.y,
                    **{**kw, "num_steps": 2 * args.steps, "save_every": 2 * args.steps},
                )
                jax.block_until_ready(s2.last_state.z)
                t2 = time.perf_counter()
                times.append(((t2 - t1) - (t1 - t0)) / args.steps)
            row[label] = max(min(times), 1e-9)
            row[label + "_block"] = kernel.energy.block_size or args.num_data
        print(
            f"| {n} | {row['auto_block']} | {row['auto'] * 1e3:.3g} | {n * args.num_data / row['auto']:.3g} | "
            f"{row['forced'] * 1e3:.3g} | {row['forced'] / row['auto']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
