"""Should ``simulate`` shard over host devices by default on the CPU?

One XLA:CPU device runs a step's ops on one thread pool; splitting the particles over ``K``
host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=K``) runs ``K`` partitions
concurrently.  This script times, interleaved in one process, ``simulate`` on one device
(``devices=None``) against ``devices=K`` (particles sharded) and, with chains, ``shard="chains"``,
and prints the ratios (one device / sharded: > 1 means sharding is faster).

    python benchmarks/devices.py                  # K = number of CPU cores
    python benchmarks/devices.py --devices 4 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kernel", choices=["wasserstein", "langevin"], default="wasserstein")
    args = ap.parse_args(argv)
    if "jax" in sys.modules:
        raise RuntimeError("run this script in a fresh process: XLA_FLAGS must be set before jax starts")
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    ).strip()
    import statistics
    import time

    import jax

    import mfsample as mf

    sizes = [((10, 256, 1024), 1, 200), ((20, 1024, 4096), 1, 40), ((50, 4096, 8192), 1, 10), ((10, 256, 1024), 4, 100)]
    print(
        f"# simulate on 1 vs {args.devices} host devices ({jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, kernel {args.kernel})"
    )
    print(
        "| (dim, width, N) | chains | steps | 1 device ms/step | sharded (particles) ms/step "
        "| speed-up | sharded (chains) ms/step | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (d, n, N), chains, T in sizes:
        data = mf.data.teacher_student(jax.random.PRNGKey(0), dim=d, teacher_width=5, num_data=N)
        if args.kernel == "wasserstein":
            kernel = mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1)
        else:
            kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.1, temperature=1e-4)
        variants = {"one": {}, "particles": {"devices": args.devices, "shard": "particles"}}
        if chains % args.devices == 0:
            variants["chains"] = {"devices": args.devices, "shard": "chains"}
        kw = dict(
            width=n, num_steps=T, save_every=T, num_chains=chains, progress_bar=False, collect_deterministic=False
        )
        times = {k: [] for k in variants}
        for r in range(args.repeats + 1):
            for name, extra in variants.items():
                t0 = time.perf_counter()
                sim = mf.simulate(kernel, jax.random.PRNGKey(1), data.x, data.y, **kw, **extra)
                jax.block_until_ready(sim.last_state.z)
                if r:  # the first round compiles
                    times[name].append((time.perf_counter() - t0) / T * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        ch = f"{med['chains']:.3g} | {med['one'] / med['chains']:.2f}" if "chains" in med else "n/a | n/a"
        print(
            f"| ({d}, {n}, {N}) | {chains} | {T} | {med['one']:.3g} | {med['particles']:.3g} | "
            f"{med['one'] / med['particles']:.2f} | {ch} |"
        )


if __name__ == "__main__":
    main()
