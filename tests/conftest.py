import os
import signal
import subprocess
import sys

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
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax-cache")),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return env


def run_cli(env, *args, timeout=300):
    """Run ``mfsample <args>`` in a subprocess with environment ``env``; returns the completed
    process (stdout and stderr captured as text)."""
    cmd = [sys.executable, "-m", "mfsample.cli", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cli():
    """:func:`run_cli`, ``cli(env, *args, timeout=300)``, for the CLI tests (conftest helpers are not
    importable under ``--import-mode=importlib``)."""
    return run_cli


def kill_after_checkpoint(env, *args, checkpoint=2, total=10):
    """Start ``mfsample <args>`` and SIGKILL it once it reports checkpoint ``checkpoint/total``
    saved; returns the stderr lines read (asserting the process did die of the kill)."""
    cmd = [sys.executable, "-m", "mfsample.cli", *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"checkpoint {checkpoint}/{total} saved" in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    return seen


@pytest.fixture(scope="session")
def kill_cli_after_checkpoint():
    """:func:`kill_after_checkpoint`, for the CLI tests (conftest helpers are not importable
    under ``--import-mode=importlib``)."""
    return kill_after_checkpoint


class _CompileCounter:
    """Counts XLA backend compilations (``count``) and traces of Python functions to jaxprs
    (``traces``: ``jit``, ``eval_shape``, ...) while active (JAX's monitoring events)."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"

    def __init__(self):
        self.count = self.traces = 0

    def _listen(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1
        elif event == self.TRACE_EVENT:
            self.traces += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False


@pytest.fixture
def count_compilations():
    """``with count_compilations() as c: ...`` then ``c.count``: XLA compilations inside the block."""
    return _CompileCounter


# Hypothesis profiles of tests/test_fuzz.py: the default suite runs a few reproducible examples
# per property (derandomized: the same examples every run); the `slow` variants run many more.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a dev dependency: only tests/test_fuzz.py needs it (and skips without it)
    settings = None
if settings is not None:
    _FUZZ = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("mfsample", max_examples=10, **_FUZZ)
    settings.register_profile("mfsample-slow", max_examples=200, **_FUZZ)
    settings.load_profile("mfsample")
