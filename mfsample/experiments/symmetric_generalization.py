"""S1 / S2 / S3 generalisation across set sizes (Zweig & Bruna 2020).

Train the three nested classes of :func:`mfsample.models.symmetric_network` by the Wasserstein
flow on sets of one size and evaluate on sets of other sizes.  At matched parameter budgets (the
default, as in the paper) the classes with frozen layers are wider: with ``m`` inner units in
dimension ``d`` a unit has ``P1 = 1 + m (d + 2)`` trained coordinates in S1 (``a, c, w, b``),
``P2 = 1 + m`` in S2 (``a, c``) and ``P3 = 1`` in S3 (``a``), so S2 and S3 get
``round(width * P1 / P2)`` and ``width * P1`` units.

Theory: ``docs/theory/symmetric.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import xarray as xr

from ..data.set_functions import symmetric_targets
from ..kernels.wasserstein import WassersteinFlow
from ..models.symmetric import symmetric_network, symmetric_predict
from ..simulate import simulate

__all__ = ["symmetric_generalization", "matched_widths"]

KLASSES = ("S1", "S2", "S3")


def matched_widths(width: int, inner_width: int, dim: int, *, bias: bool = True) -> dict:
    """Widths giving S2 and S3 the trained-parameter budget of an S1 network of ``width`` units."""
    p1 = 1 + inner_width * (dim + (2 if bias else 1))
    p2 = 1 + inner_width
    return {"S1": int(width), "S2": int(round(width * p1 / p2)), "S3": int(width * p1)}


def symmetric_generalization(
    *,
    target: str = "neuron",
    dim: int = 3,
    num_sets: int = 128,
    train_size: int = 4,
    test_sizes: Sequence[int] = tuple(range(2, 21)),
    num_test: int = 256,
    width: int = 32,
    inner_width: int = 8,
    budget: str = "matched",
    klasses: Sequence[str] = KLASSES,
    seeds: Sequence[int] = (0, 1, 2),
    num_steps: int = 2000,
    step_size: float = 0.2,
    noise: float = 0.0,
    feature: str = "inverse_norm",
    progress_bar: bool = False,
) -> xr.Dataset:
    """Test errors of S1 / S2 / S3 trained on sets of ``train_size`` and tested on ``test_sizes``.

    For each seed: the target and training sets come from
    ``mf.data.symmetric_targets(PRNGKey(seed), target, ...)``, the frozen layers from
    ``fold_in(PRNGKey(seed), 1)``, the initial particles (iid from the prior) from
    ``fold_in(PRNGKey(seed), 2)``; every class is trained for ``num_steps`` steps of
    ``WassersteinFlow(step_size)`` (mean-field time ``num_steps * step_size``), then evaluated on
    ``num_test`` fresh sets of each size (the same sets for every class).

    ``budget="matched"`` widens S2 and S3 to the S1 parameter budget (:func:`matched_widths`);
    ``budget="particles"`` uses ``width`` units for every class.

    Returns a Dataset with ``test_error`` (mean squared error over the target's variance on those
    sets; 1 = best constant) and ``train_error`` over dims ``(klass, seed, set_size)`` /
    ``(klass, seed)``, and the ``width`` of each class.
    """
    if budget not in ("matched", "particles"):
        raise ValueError(f"budget must be 'matched' or 'particles', got {budget!r}")
    klasses = tuple(klasses)
    unknown = sorted(set(klasses) - set(KLASSES))
    if unknown:
        raise ValueError(f"unknown classes {unknown}; choose among {KLASSES}")
    test_sizes = tuple(int(k) for k in test_sizes)
    if not test_sizes or min(test_sizes) < 1:
        raise ValueError(f"test_sizes must be positive integers, got {test_sizes!r}")
    widths = matched_widths(width, inner_width, dim) if budget == "matched" else {k: int(width) for k in KLASSES}
    flow = WassersteinFlow(symmetric_network, step_size=step_size)  # one kernel: its programmes serve every run
    test = np.full((len(klasses), len(seeds), len(test_sizes)), np.nan)
    train = np.full((len(klasses), len(seeds)), np.nan)
    for s_i, seed in enumerate(seeds):
        key = jax.random.PRNGKey(int(seed))
        data = symmetric_targets(
            key, target, dim=dim, num_sets=num_sets, set_size=train_size, noise=noise, feature=feature
        )
        frozen_key = jax.random.fold_in(key, 1)
        test_sets = [data.sample(jax.random.fold_in(key, 100 + k), num_test, k) for k in test_sizes]
        for c_i, klass in enumerate(klasses):
            kw = dict(width=widths[klass], inner_width=inner_width, klass=klass, frozen_key=frozen_key)
            sim = simulate(
                flow,
                jax.random.fold_in(key, 2),
                data.sets,
                data.y,
                num_steps=num_steps,
                save_every=num_steps,
                mask=data.mask,
                progress_bar=progress_bar,
                **kw,
            )
            if np.any(sim.first_divergence >= 0):
                continue  # diverged: leave NaN (simulate has warned with the step)
            params = {k: v[0, -1] for k, v in sim.samples.items() if k != "f"}
            f_train = sim.samples["f"][0, -1]
            train[c_i, s_i] = float(np.mean((f_train - np.asarray(data.y)) ** 2) / np.var(np.asarray(data.y)))
            for k_i, (sets, mask, y) in enumerate(test_sets):
                f = np.asarray(symmetric_predict(params, sets, mask, **kw))
                y = np.asarray(y)
                test[c_i, s_i, k_i] = float(np.mean((f - y) ** 2) / np.var(y))
    return xr.Dataset(
        {
            "test_error": (("klass", "seed", "set_size"), test),
            "train_error": (("klass", "seed"), train),
            "width": (("klass",), np.array([widths[k] for k in klasses])),
        },
        coords={"klass": list(klasses), "seed": list(seeds), "set_size": list(test_sizes)},
        attrs={
            "target": target,
            "dim": dim,
            "train_size": train_size,
            "num_sets": num_sets,
            "inner_width": inner_width,
            "budget": budget,
            "time": num_steps * step_size,
            "feature": feature,
        },
    )
