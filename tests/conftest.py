import os
import shutil
import signal
import subprocess
import sys
import tempfile

import jax
import pytest

import mfsample as mf

#: set in the environment by the process that created its compilation cache
_OWN_CACHE = "MFSAMPLE_TEST_JAX_CACHE_OWNER"


def pytest_configure(config):
    """A persistent JAX compilation cache for each test process (each xdist worker, or the one
    process of ``-n 0``), shared with the subprocesses its tests start (CLI runs, several host
    devices).

    Many tests compile the same programmes (same kernels on the same small data) with fresh
    closures or in subprocesses; the cache turns the repeats into reads of the compiled
    executable (identical code, so identical results).  One cache per worker: a worker runs one
    test at a time and waits for its subprocesses, so no entry is read while it is being written
    (JAX locks its cache only when a size limit is set, which costs more than it saves here).
    The directory is new for every run, so a clean checkout and a rerun test the same thing, and
    is removed at the end.  Settings already in the environment win (a cache directory given
    there is used and kept; ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns the cache off).
    """
    if _runs_no_tests(config):
        return
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mfsample-jax-cache-")
        os.environ[_OWN_CACHE] = str(os.getpid())
    settings = {
        "jax_compilation_cache_dir": os.environ["JAX_COMPILATION_CACHE_DIR"],
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    for name, value in settings.items():
        chosen = os.environ.setdefault(name.upper(), str(value))  # the tests' subprocesses read it
        jax.config.update(name, type(value)(chosen))


def _runs_no_tests(config) -> bool:
    """The xdist controller: its workers (which inherit its environment) run the tests."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_unconfigure(config):
    if os.environ.get(_OWN_CACHE) == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def small_data():
    """A realisable teacher-student problem: dim 5, teacher width 3, 256 data."""
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=5, teacher_width=3, num_data=256)


@pytest.fixture(scope="session")
def cli_env():
    """Environment of the CLI subprocesses: CPU, and the test process's persistent JAX compilation
    cache (:func:`pytest_configure`), so only the first run of a configuration compiles."""
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


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
    (``traces``: ``jit``, ``eval_shape``, ...) while active (JAX's monitoring events).

    JAX times a read from the persistent compilation cache (:func:`pytest_configure`) under the
    same event as a compilation, so an executable taken from the cache counts as one.
    """

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
