"""summary refuses what is not a converted run, naming what it needs."""

import arviz as az
import numpy as np
import pytest
import xarray as xr

from mfsample.diagnostics import summary


def _posterior():
    return xr.Dataset({"f": (("chain", "draw", "data"), np.zeros((2, 3, 4)))}, coords={"time": ("draw", [0.0, 1, 2])})


@pytest.mark.parametrize("idata", ["run.nc", None, {"posterior": 1}])
def test_summary_of_what_is_not_inference_data(idata):
    with pytest.raises(TypeError, match=r"summary reads an arviz.InferenceData.*mf.to_inference_data"):
        summary(idata)


def test_summary_without_sample_stats():
    with pytest.raises(ValueError, match=r"summary needs the group\(s\) \['sample_stats'\]"):
        summary(az.InferenceData(posterior=_posterior()))


def test_summary_without_objective_or_with_bad_settings():
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 3), bool))})
    idata = az.InferenceData(posterior=_posterior(), sample_stats=stats)
    with pytest.raises(ValueError, match=r"sample_stats has no 'objective' variable \(nor 'energy', its former name\)"):
        summary(idata)
    idata = az.InferenceData(
        posterior=_posterior(), sample_stats=stats.assign(objective=(("chain", "draw"), np.ones((2, 3))))
    )
    with pytest.raises(ValueError, match="burn_in"):
        summary(idata, burn_in=1.0)
    with pytest.raises(ValueError, match="num_points"):
        summary(idata, num_points=0)
    out = summary(idata)
    np.testing.assert_array_equal(out["energy_mean"], 1.0)
