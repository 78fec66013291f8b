"""mf.experiments.symmetric_generalization (mfsample/experiments/symmetric_generalization.py)."""

import numpy as np
import pytest

import mfsample as mf
from mfsample.experiments import matched_widths, symmetric_generalization


def test_matched_widths_equalise_the_trained_parameter_count():
    """S1 units train 1 + m(d+2) coordinates, S2 units 1 + m, S3 units 1: the widths match budgets."""
    w = matched_widths(8, 4, 3)
    assert w == {"S1": 8, "S2": round(8 * 21 / 5), "S3": 8 * 21}
    assert abs(w["S2"] * 5 - 8 * 21) <= 5 / 2


@pytest.mark.slow  # 30-140 s on 2 shared cores: keeps the default suite short
def test_s1_generalises_better_than_s3_at_matched_budget():
    """Single-neuron symmetric teacher (in S1's class), 64 training sets of 4 elements: S1's test
    error averaged over set sizes 2..8 is below half of S3's (the paper's separation; measured
    0.11 against 1.19 for this seed), and the Dataset has the documented layout."""
    ds = symmetric_generalization(
        dim=3,
        num_sets=64,
        train_size=4,
        test_sizes=(2, 4, 8),
        num_test=128,
        width=8,
        inner_width=4,
        seeds=(0,),
        num_steps=1000,
        step_size=0.2,
    )
    assert ds.test_error.dims == ("klass", "seed", "set_size")
    assert list(ds.klass.values) == ["S1", "S2", "S3"]
    assert list(ds.width.values) == [8, 34, 168]
    assert np.all(np.isfinite(ds.test_error.values)) and np.all(ds.train_error.values >= 0)
    err = ds.test_error.mean("set_size").sel(seed=0)
    assert float(err.sel(klass="S1")) < 0.5 * float(err.sel(klass="S3"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="budget"):
        symmetric_generalization(budget="equal")
    with pytest.raises(ValueError, match="classes"):
        symmetric_generalization(klasses=("S4",))
    assert mf.experiments.symmetric_generalization is symmetric_generalization
