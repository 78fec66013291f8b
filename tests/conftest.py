import os

import jax
import pytest

import mfsample as mf


@pytest.fixture(scope="session")
def small_data():
    """A realisable teacher-student problem: dim 5, teacher width 3, 256 data."""
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=3, num_data=256)


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    """Environment of the CLI subprocesses: CPU, and a persistent JAX compilation cache shared by
    them (created per test session), so only the first run of a configuration compiles."""
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax-cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env
