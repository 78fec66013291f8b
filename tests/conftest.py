import jax
import pytest

import mfsample as mf


@pytest.fixture(scope="session")
def small_data():
    """A realisable teacher-student problem: dim 5, teacher width 3, 256 data."""
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=3, num_data=256)
