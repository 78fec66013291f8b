"""Run an experiment from a resolved configuration, with checkpoints and exact resumption.

``run_experiment(cfg, out)`` (what ``mfsample run`` calls) writes into the directory ``out``:

* ``config.toml`` – the resolved configuration (:mod:`mfsample.config`);
* ``checkpoints/width_<n>/`` – for each width ``n``: ``draws_0000.npz`` (the draw at ``t = 0``),
  ``draws_0001.npz``, ... (the draws of each chunk of ``run.checkpoint_every`` steps) and
  ``state.npz`` (the kernel state after the last completed chunk: particles, masses, momenta,
  RNG key, step counter, ...; every leaf of the state NamedTuple as a plain array);
* ``draws/width_<n>.nc`` – all draws as ArviZ ``InferenceData`` (:func:`mfsample.to_inference_data`,
  with ``predictions`` at ``data.num_test`` held-out inputs), written when the run is complete;
* with ``output.stream = true``, ``checkpoints/width_<n>/draws.nc`` instead of the ``draws_*.npz``
  files: the draws appended chunk by chunk to the netCDF file (:class:`mfsample.io.DrawWriter`),
  which becomes ``draws/width_<n>.nc`` (``predictions`` added in batches of draws) when the run is
  complete; memory then holds one chunk of draws, never the whole run;
* ``run.json`` – versions of Python, jax, numpyro, arviz and the device kind, wall times;
* ``summary.json`` and ``figures/*.png`` – written by :func:`mfsample.report.analyse`.

**Exact resumption.**  A width's run is the fixed sequence of chunks given by
:func:`chunk_plan`; each chunk is one :func:`mfsample.simulate` call started from the previous
chunk's ``last_state`` (``init_state=``), so its draws do not depend on where the process was
stopped.  After a chunk its draws file, then the state file, are written atomically (temporary
file, ``fsync``, ``rename``): killing the process at any moment loses at most the chunk in
progress and never leaves a half-written file under a final name.  Every checkpoint file is an
``.npz`` (no pickle) carrying a JSON header with a format name and version, the fingerprint of
the configuration (:func:`mfsample.config.fingerprint`) and a SHA-256 of its whole content;
a truncated, modified or foreign file, or one written for another configuration, is refused
(:class:`CheckpointError`) with the file named, never silently recomputed.  Restored states are
checked leaf by leaf (shape, dtype) against the state the configuration builds.

**Streaming** (``output.stream = true``).  After each chunk its draws are appended to the width's
netCDF file (closed and complete between appends), *then* the state file is written; the state
records, for every chunk, its range of draws in the file and the SHA-256 of those draws read back.
Resuming checks those hashes, removes any draws appended after the recorded ones (a process killed
between the append and the state file) and appends from there, so the file ends with exactly the
draws of an uninterrupted run.  The checkpoint layout differs from the ``.npz`` one, so a run
directory keeps the ``output.stream`` it was started with.

**Exit codes** of the CLI: 0 success, 2 invalid configuration or input (:class:`InputError`,
:class:`~mfsample.config.ConfigError`), 1 failure during the run (:class:`RunFailure`, e.g. a
divergence, with the width, step, step size and a suggestion).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import ConfigError, fingerprint, load_toml, resolve, to_toml

__all__ = [
    "InputError",
    "CheckpointError",
    "RunFailure",
    "FORMAT",
    "FORMAT_VERSION",
    "chunk_plan",
    "write_checkpoint",
    "read_checkpoint",
    "load_data",
    "make_kernel",
    "model_kwargs",
    "widths_of",
    "prepare_out_dir",
    "verify_checkpoints",
    "run_experiment",
    "environment",
    "draws_path",
    "stream_enabled",
]

FORMAT = "mfsample-checkpoint"
FORMAT_VERSION = 1


class InputError(Exception):
    """Invalid input other than the configuration's keys (data file, output directory, checkpoint): exit 2."""


class CheckpointError(InputError):
    """A checkpoint that cannot be trusted (truncated, modified, foreign, another configuration)."""


class RunFailure(Exception):
    """The run failed while computing (divergence, numerical error): exit 1."""


# ---------------------------------------------------------------------------------------------
# checkpoint files
# ---------------------------------------------------------------------------------------------
def _content_hash(arrays: dict, meta: dict) -> str:
    """SHA-256 of the header (without its hash) and of every array's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def write_checkpoint(path, arrays: dict, meta: dict) -> str:
    """Write ``arrays`` (name -> ndarray) and the JSON header ``meta`` atomically to an ``.npz``.

    The header gets ``format``, ``version`` and ``sha256`` (the content hash); returns the hash.
    """
    meta = {**meta, "format": FORMAT, "version": FORMAT_VERSION}
    meta["sha256"] = _content_hash(arrays, meta)
    header = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    payload = {**{k: np.asarray(v) for k, v in arrays.items()}, "__meta__": header}
    atomic_write(Path(path), lambda f: np.savez(f, **payload))
    return meta["sha256"]


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a checkpoint, after checking its format, version and content hash.

    :raises CheckpointError: the file is missing, unreadable (e.g. truncated), not an mfsample
        checkpoint, of another format version, or its content does not match its hash.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and OS errors alike mean "unreadable"
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); it is truncated or "
            "corrupted") from None
    header = arrays.pop("__meta__", None)
    try:
        meta = json.loads(bytes(header).decode()) if header is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mfsample checkpoint (no valid header)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('version')!r}; this mfsample reads "
            f"version {FORMAT_VERSION}")
    stored = meta.pop("sha256", None)
    if stored != _content_hash(arrays, meta):
        raise CheckpointError(
            f"checkpoint {path} fails its content hash check: the file was modified or corrupted "
            "after it was written")
    meta["sha256"] = stored
    return arrays, meta


# ---------------------------------------------------------------------------------------------
# the experiment's pieces
# ---------------------------------------------------------------------------------------------
class Data(NamedTuple):
    """Training data, held-out inputs and (teacher-student) the target at them."""

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray
    f_eval: np.ndarray | None


def widths_of(cfg) -> list[int]:
    w = cfg["model"]["width"]
    return sorted(w) if isinstance(w, list) else [w]


def _load_file(path: str):
    p = Path(path)
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in ("x", "y") if k not in z.files]
                if missing:
                    raise InputError(f"data.path {p}: the .npz has no array(s) {missing} (it has {z.files})")
                x, y = np.asarray(z["x"], np.float64), np.asarray(z["y"], np.float64)
        else:
            text = p.read_text().splitlines()
            skip = 0
            if text and any(c.isalpha() and c not in "eE" for c in text[0]):
                skip = 1  # a header line
            table = np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2)
            if table.shape[1] < 2:
                raise InputError(f"data.path {p}: a CSV needs at least two columns (x..., y)")
            x, y = table[:, :-1], table[:, -1]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"data.path {p}: cannot read ({type(exc).__name__}: {exc})") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"data.path {p}: expected x (N, d) and y (N,), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError(f"data.path {p}: x and y must be finite")
    return x, y


def load_data(cfg) -> Data:
    """The training set and the held-out inputs (teacher-student: fresh draws, key ``fold_in(PRNGKey(seed), 1)``;
    a file: its first ``num_test`` rows, without target)."""
    import jax

    from .data import teacher_student

    d = cfg["data"]
    if d["source"] == "teacher_student":
        def draw(key):  # one compiled call rather than dozens of eager operations
            ts = teacher_student(key, dim=d["dim"], teacher_width=d["teacher_width"], num_data=d["num_data"],
                                 activation=d["activation"], inputs=d["inputs"], noise=d["noise"])
            x_eval, _ = ts.sample(jax.random.fold_in(key, 1), d["num_test"])
            return ts.x, ts.y, x_eval, ts.target(x_eval)

        return Data(*(np.asarray(a) for a in jax.jit(draw)(jax.random.PRNGKey(d["seed"]))))
    x, y = _load_file(d["path"])
    if cfg.get("baselines", {}).get("f1_optimum") and x.shape[1] + int(cfg["model"]["bias"]) > 5:
        raise InputError(f"baselines.f1_optimum needs dim + bias <= 5; {d['path']} has dim {x.shape[1]}")
    x, y = x.astype(np.float32), y.astype(np.float32)
    return Data(x, y, x[: d["num_test"]], None)


def make_kernel(cfg):
    """The kernel of ``[dynamics]`` on the shallow network (with weight decay when ``model.weight_decay > 0``)."""
    from . import kernels
    from .experiments.f1_vs_f2 import weight_decay_network
    from .models.shallow import shallow_network

    dyn = cfg["dynamics"]
    model = weight_decay_network if cfg["model"]["weight_decay"] > 0 else shallow_network
    kind, dt = dyn["kernel"], dyn["step_size"]
    common = {"step_size": dt, "block_size": dyn.get("block_size") or "auto"}
    if kind == "wasserstein":
        return kernels.WassersteinFlow(model, **common)
    if kind == "langevin":
        return kernels.MeanFieldLangevin(model, temperature=dyn["temperature"], adjusted=dyn["adjusted"], **common)
    if kind == "kinetic":
        return kernels.KineticLangevin(model, temperature=dyn["temperature"], friction=dyn["friction"], **common)
    return kernels.WassersteinFisherRao(model, rate=dyn["rate"], temperature=dyn["temperature"],
                                        mode=dyn["mode"], birth=dyn.get("birth", "clone"), **common)


def model_kwargs(cfg, width: int) -> dict:
    """Keyword arguments of the model for one width."""
    m = cfg["model"]
    prior = m.get("prior", {})
    kw = dict(width=int(width), activation=m["activation"], scaling=m["scaling"], bias=m["bias"],
              noise=m["noise"], a_scale=prior.get("a_scale", 1.0), b_scale=prior.get("b_scale", 1.0))
    if "w_scale" in prior:
        kw["w_scale"] = prior["w_scale"]
    if m["weight_decay"] > 0:
        kw["weight_decay"] = m["weight_decay"]
    return kw


def chunk_plan(steps: int, save_every: int, checkpoint_every: int) -> list[int]:
    """Steps of each chunk: ``T = skip + D k + D k + ... + r k`` with ``k = save_every``,
    ``D = checkpoint_every / k`` draws per chunk and ``skip = T mod k`` (run first, as
    :func:`mfsample.simulate` does, so that draws fall at steps ``skip + k, skip + 2k, ..., T``)."""
    num_draws = steps // save_every
    skip = steps - num_draws * save_every
    per = checkpoint_every // save_every
    plan, left = [], num_draws
    while left > 0:
        d = min(per, left)
        plan.append(d * save_every)
        left -= d
    plan[0] += skip
    return plan


def draws_path(out, width: int) -> Path:
    return Path(out) / "draws" / f"width_{width}.nc"


def stream_enabled(cfg) -> bool:
    """Whether the configuration streams its draws to netCDF during the run (``output.stream``)."""
    return bool(cfg.get("output", {}).get("stream", False))


def _stream_checkpoint(out, width: int) -> Path:
    """The streamed draws of an unfinished width (``draws/width_<n>.nc`` once complete)."""
    return Path(out) / "checkpoints" / f"width_{width}" / "draws.nc"


def _draws_hash(path, start: int, stop: int) -> str:
    """SHA-256 of draws ``start:stop`` of a streamed file, as read back (see :func:`_content_hash`)."""
    from .io import read_draws

    return _content_hash(read_draws(path, start, stop), {})


def _stream_problems(path: Path, chunks: list) -> list[str]:
    """What is wrong with a streamed draws file against the chunks a state recorded (empty: fine)."""
    from .io import count_draws

    if not path.is_file():
        return [f"{path} is missing: it holds the draws that the state checkpoint records"]
    try:
        count = count_draws(path)
    except (OSError, ValueError) as exc:
        return [f"{path} is unreadable ({exc}); it is truncated or corrupted"]
    need = chunks[-1]["draws"][1] if chunks else 0
    if count < need:
        return [f"{path} holds {count} draws; the state checkpoint records {need}"]
    for entry in chunks:
        start, stop = entry["draws"]
        if _draws_hash(path, start, stop) != entry["sha256"]:
            return [f"{path}: draws {start}..{stop - 1} are not those the state checkpoint recorded "
                    "(the file was modified or replaced)"]
    return []


def environment() -> dict:
    """Versions of Python and the libraries, and the JAX device used."""
    import platform

    import arviz
    import jax
    import numpyro

    from . import __version__

    dev = jax.devices()[0]
    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except (ImportError, AttributeError):  # pragma: no cover
        jaxlib_version = None
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib_version,
        "numpyro": numpyro.__version__,
        "arviz": arviz.__version__,
        "numpy": np.__version__,
        "mfsample": __version__,
        "os": platform.platform(),
        "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
    }


def select_device(device: str):
    """Make ``device`` (``cpu``, ``gpu``, ``tpu``) JAX's default device; ``auto`` keeps JAX's choice."""
    if device == "auto":
        return
    import jax

    try:
        devices = jax.devices(device)
    except RuntimeError as exc:
        raise InputError(f"run.device = {device!r}: JAX has no such backend here ({exc})") from None
    jax.config.update("jax_default_device", devices[0])


# ---------------------------------------------------------------------------------------------
# the output directory
# ---------------------------------------------------------------------------------------------
def _flatten(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def saved_config(out) -> dict:
    """The resolved configuration stored in a run directory."""
    path = Path(out) / "config.toml"
    if not path.is_file():
        raise InputError(f"{out} holds no mfsample run (no config.toml)")
    try:
        return resolve(load_toml(path), source=str(path))
    except ConfigError as exc:
        raise InputError(f"{path} is not a valid configuration:\n{exc.format()}") from None


def prepare_out_dir(out, cfg) -> bool:
    """Create ``out`` (returns False) or accept it for resumption (returns True).

    An existing run directory is resumed only if its stored configuration has the same draws
    (:func:`~mfsample.config.fingerprint`); sections that do not change the draws
    (``experiment``, ``diagnostics``, ``baselines``, ``run.device``) may differ and are updated.
    """
    out = Path(out)
    path = out / "config.toml"
    if path.is_file():
        old = saved_config(out)
        if fingerprint(old) != fingerprint(cfg):
            a, b = _flatten({s: old.get(s, {}) for s in ("data", "model", "dynamics", "run")}), \
                _flatten({s: cfg.get(s, {}) for s in ("data", "model", "dynamics", "run")})
            diffs = [f"  {k}: {a.get(k, '(absent)')!r} in {path}, {b.get(k, '(absent)')!r} now"
                     for k in sorted(set(a) | set(b)) if k != "run.device" and a.get(k) != b.get(k)]
            raise InputError(
                f"{out} holds a run of a different configuration; it would not continue the same "
                "draws:\n" + "\n".join(diffs) + f"\nchoose another --out, or resume it as it is with "
                f"`mfsample run --resume {out}`")
        if stream_enabled(old) != stream_enabled(cfg) and any((out / "checkpoints").glob("width_*/state.npz")):
            was = str(stream_enabled(old)).lower()
            raise InputError(
                f"{out} was run with output.stream = {was}; its checkpoints are laid out for that setting. "
                f"Resume it with the same setting (--set output.stream={was}, or `mfsample run --resume {out}`), "
                "or choose another --out")
        resumed = True
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an mfsample run directory (no config.toml); "
                         "choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        resumed = False
    header = f"resolved configuration of mfsample run (fingerprint {fingerprint(cfg)[:16]})"
    atomic_write(path, lambda f: f.write(to_toml(cfg, header=header).encode()))
    return resumed


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class Progress:
    """A tqdm bar (terminal) showing the latest value per key (the energy per width), or one line
    per checkpoint (``mode="lines"``), or nothing (``"off"``)."""

    def __init__(self, total: int, mode: str, stream=None, desc: str = "mfsample run"):
        self.mode, self.stream = mode, stream or sys.stderr
        self.values: dict[str, float] = {}
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True)

    def advance(self, steps: int):
        if self.bar is not None:
            self.bar.update(steps)

    def report(self, key: str, value: float, line: str, steps: int = 0):
        self.values[key] = value
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(" ".join(f"{k}={v:.5g}" for k, v in self.values.items()))
        elif self.mode == "lines":
            print(line, file=self.stream, flush=True)

    def message(self, text: str):
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.mode != "off":
            print(text, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# simulate experiments
# ---------------------------------------------------------------------------------------------
def _state_arrays(state) -> tuple[dict, list[str]]:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    arrays = {f"state_{i:03d}": np.asarray(v) for i, (_, v) in enumerate(leaves)}
    return arrays, [jax.tree_util.keystr(p) for p, _ in leaves]


def _restore_state(template, arrays: dict, path) -> object:
    """Unflatten the saved leaves with the structure of ``template`` (a ``jax.eval_shape`` of the
    state the configuration builds), checking every shape and dtype."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = sorted(k for k in arrays if k.startswith("state_"))
    if len(names) != len(leaves):
        raise CheckpointError(f"checkpoint {path} holds {len(names)} state arrays; the configuration's "
                              f"kernel state has {len(leaves)}")
    values = []
    for name, (p, spec) in zip(names, leaves):
        a = arrays[name]
        if a.shape != tuple(spec.shape) or a.dtype != spec.dtype:
            raise CheckpointError(
                f"checkpoint {path}: state leaf {jax.tree_util.keystr(p)} is {a.dtype}{list(a.shape)}, "
                f"the configuration gives {spec.dtype}{list(spec.shape)}")
        values.append(a)
    return jax.tree_util.tree_unflatten(treedef, values)


def _draw_arrays(samples: dict, stats: dict) -> dict:
    out = {f"sample__{k}": np.asarray(v) for k, v in samples.items()}
    out.update({f"stat__{k}": np.asarray(v) for k, v in stats.items()})
    return out


def _split_draws(arrays: dict) -> tuple[dict, dict]:
    samples = {k[len("sample__"):]: v for k, v in arrays.items() if k.startswith("sample__")}
    stats = {k[len("stat__"):]: v for k, v in arrays.items() if k.startswith("stat__")}
    return samples, stats


class WidthRun:
    """One width's run: its kernel, model arguments, checkpoint directory and chunk plan."""

    def __init__(self, cfg, width: int, data: Data, out: Path):
        import jax

        self.cfg, self.width, self.data = cfg, int(width), data
        try:
            self.kernel = make_kernel(cfg)
        except (ValueError, TypeError) as exc:  # a combination the schema does not know is invalid
            raise InputError(f"invalid [dynamics]: {exc}") from None
        self.args = (data.x, data.y)
        self.kwargs = model_kwargs(cfg, width)
        run = cfg["run"]
        self.chains, self.save_every = run["chains"], run["save_every"]
        devices = run.get("devices") or 1
        self.sharding = {"devices": devices, "shard": run.get("shard") or "auto"} if devices > 1 else {}
        self.key = jax.random.fold_in(jax.random.PRNGKey(run["seed"]), self.width)
        self.plan = chunk_plan(run["steps"], run["save_every"], run["checkpoint_every"])
        self.dir = Path(out) / "checkpoints" / f"width_{self.width}"
        self.fingerprint = fingerprint(cfg)
        self.stream = stream_enabled(cfg)
        self.stream_path, self.final_path = _stream_checkpoint(out, self.width), draws_path(out, self.width)
        self.writer = None

    # -- checkpoints ----------------------------------------------------------------------------
    def _template(self):
        import jax

        keys = jax.random.split(self.key, self.chains) if self.chains > 1 else self.key
        return jax.eval_shape(lambda k: self.kernel.init(k, 0, None, self.args, self.kwargs), keys)

    def _meta(self, **kw):
        return dict(kind="state", fingerprint=self.fingerprint, width=self.width, stream=self.stream, **kw)

    def load(self):
        """``(state, chunks_done, chunk_index)`` from ``state.npz``, or ``None`` when absent."""
        path = self.dir / "state.npz"
        if not path.exists():
            return None
        arrays, meta = read_checkpoint(path)
        if meta.get("kind") != "state" or meta.get("width") != self.width:
            raise CheckpointError(f"{path} is not the state checkpoint of width {self.width}")
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(f"{path} was written for another configuration (fingerprint "
                                  f"{str(meta.get('fingerprint'))[:16]}, this one {self.fingerprint[:16]})")
        if meta.get("plan") != self.plan:
            raise CheckpointError(f"{path} follows another chunk plan {meta.get('plan')} (now {self.plan})")
        if bool(meta.get("stream", False)) != self.stream:
            raise CheckpointError(f"{path} was written with output.stream = {str(bool(meta.get('stream'))).lower()}, "
                                  f"the configuration has {str(self.stream).lower()}")
        state = _restore_state(self._template(), arrays, path)  # the draws files: verify_checkpoints
        return state, meta["chunks_done"], meta["chunks"]

    def verify_chunks(self, chunks):
        """Read every draws file a state lists, checking it is the very file the state recorded."""
        out = []
        for entry in chunks:
            p = self.dir / entry["file"]
            arrays, meta = read_checkpoint(p)
            if meta["sha256"] != entry["sha256"] or meta.get("fingerprint") != self.fingerprint:
                raise CheckpointError(f"{p} is not the draws file recorded in {self.dir / 'state.npz'} "
                                      "(replaced by another run's file?)")
            out.append(arrays)
        return out

    def _open_writer(self, keep=None):
        """The writer of the streamed draws: a new file (``keep=None``) or the existing one after
        its first ``keep`` draws."""
        from .io import DrawWriter

        kw = dict(kernel=self.kernel, model_args=self.args, model_kwargs=self.kwargs, num_chains=self.chains,
                  num_draws=1 + self.cfg["run"]["steps"] // self.save_every, fsync=True)
        if keep is None:
            return DrawWriter(self.stream_path, overwrite=True, **kw)
        return DrawWriter.resume(self.stream_path, keep=keep, **kw)

    def save(self, state, samples, stats, chunks, chunks_done):
        if self.stream:  # the draws go to the netCDF file first, then the state records them
            start = self.writer.draws_written
            self.writer.append(samples, stats)
            stop = self.writer.draws_written
            chunks = chunks + [{"draws": [start, stop], "sha256": _draws_hash(self.stream_path, start, stop)}]
        else:
            name = f"draws_{len(chunks):04d}.npz"
            sha = write_checkpoint(self.dir / name, _draw_arrays(samples, stats),
                                   dict(kind="draws", fingerprint=self.fingerprint, width=self.width,
                                        index=len(chunks)))
            chunks = chunks + [{"file": name, "sha256": sha}]
        arrays, paths = _state_arrays(state)
        step = int(np.max(np.asarray(state.step)))
        write_checkpoint(self.dir / "state.npz", arrays,
                         self._meta(step=step, chunks_done=chunks_done, chunks=chunks, plan=self.plan,
                                    leaves=paths))
        return chunks

    # -- computing --------------------------------------------------------------------------------
    def run(self, progress: Progress):
        import jax

        from .experiments.replicate import initial_draw
        from .simulate import simulate

        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.tmp-*"):  # a temporary file left by a killed process
            stale.unlink()
        total = sum(self.plan)
        loaded = self.load()
        if loaded is None:
            state, sample0, stats0 = initial_draw(self.kernel, self.key, self.args, self.kwargs, self.chains)
            state = jax.tree.map(np.asarray, state)
            if self.stream:
                self.writer = self._open_writer()
            chunks = self.save(state, sample0, stats0, [], 0)
            done = 0
        else:
            state, done, chunks = loaded
            if self.stream and done < len(self.plan):  # drop draws appended after the saved state
                self.writer = self._open_writer(keep=chunks[-1]["draws"][1])
            steps_done = sum(self.plan[:done])
            progress.advance(steps_done)
            if done < len(self.plan):
                progress.message(f"width {self.width}: resuming at step {steps_done}/{total} "
                                 f"(checkpoint {done}/{len(self.plan)})")
        dt = self.kernel.step_size
        for c in range(done, len(self.plan)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # divergences are reported below
                try:
                    sim = simulate(self.kernel, self.key, *self.args, num_steps=self.plan[c],
                                   save_every=self.save_every, num_chains=self.chains, init_state=state,
                                   progress_bar=False, **self.sharding, **self.kwargs)
                except (FloatingPointError, ArithmeticError, RuntimeError) as exc:
                    step = sum(self.plan[:c])
                    raise RunFailure(f"width {self.width}: failed in the chunk starting at step {step} "
                                     f"(t = {step * dt:g}): {type(exc).__name__}: {exc}") from exc
            first = np.atleast_1d(np.asarray(sim.first_divergence))
            if np.any(first >= 0):
                bad = [int(i) for i in np.nonzero(first >= 0)[0]]
                step = int(first[first >= 0].min())
                raise RunFailure(
                    f"width {self.width}: divergence at step {step} (t = {step * dt:g}) in chain(s) {bad}: "
                    f"the particles became non-finite with dynamics.step_size = {dt:g}. Try a smaller step "
                    f"size, e.g. --set dynamics.step_size={dt / 4:g} (and more run.steps for the same time), "
                    f"with another --out. Checkpoints up to step {sum(self.plan[:c])} are kept in {self.dir}.")
            state = jax.tree.map(np.asarray, sim.last_state)  # exactly what a resumed run reloads
            chunks = self.save(state, sim.samples, sim.stats, chunks, c + 1)
            energy = float(np.mean(np.asarray(state.energy)))
            step = sum(self.plan[:c + 1])
            progress.report(f"E[n={self.width}]", energy,
                            f"width {self.width}: step {step}/{total} (t = {step * dt:g}), E = {energy:.6g}; "
                            f"checkpoint {c + 1}/{len(self.plan)} saved", steps=self.plan[c])
        if self.writer is not None:
            self.writer.close()
        return chunks

    # -- assembling -------------------------------------------------------------------------------
    def _run_attrs(self):
        cfg = self.cfg
        return dict(experiment=cfg["experiment"]["name"], fingerprint=self.fingerprint, seed=cfg["run"]["seed"],
                    mfsample_config=json.dumps(cfg, sort_keys=True))

    def finalize(self):
        """Streamed draws: add ``predictions`` (in batches of draws) and the run's attributes to the
        file, then move it to ``draws/width_<n>.nc`` (a completed run resumed redoes this in place)."""
        import h5netcdf

        from .io import write_predictions

        path = self.stream_path if self.stream_path.exists() else self.final_path
        unit_points = min(self.cfg["diagnostics"]["unit_points"], len(self.data.x_eval))
        extra = None
        if self.data.f_eval is not None:
            extra = {"f_target": ("eval_point", np.asarray(self.data.f_eval), {"description": "teacher f*(x_eval)"})}
        write_predictions(path, self.data.x_eval, kernel=self.kernel, model_args=self.args, model_kwargs=self.kwargs,
                          unit_points=unit_points, constant_data=extra)
        with h5netcdf.File(str(path), "a", locking=False) as f:
            for group in f.groups.values():
                group.attrs.update(self._run_attrs())
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        if path != self.final_path:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.final_path)
            _fsync_dir(self.final_path.parent)

    def assemble(self, chunks):
        """All draws (the ``t = 0`` draw first) as an ``InferenceData`` with ``predictions`` at the
        held-out inputs and, for teacher-student data, the target ``f_target`` there."""
        from .diagnostics.convert import to_inference_data
        from .simulate import Simulation

        parts = [_split_draws(a) for a in self.verify_chunks(chunks)]
        samples = {k: np.concatenate([p[0][k] for p in parts], axis=1) for k in parts[0][0]}
        stats = {k: np.concatenate([p[1][k] for p in parts], axis=1) for k in parts[0][1]}
        diverging = stats["diverging"].astype(bool)
        first = np.where(diverging.any(1), stats["step"][np.arange(len(diverging)), diverging.argmax(1)], -1)
        sim = Simulation(samples=samples, stats=stats, time=stats["time"][0].astype(np.float64),
                         last_state=None, first_divergence=first, kernel=self.kernel,
                         model_args=self.args, model_kwargs=self.kwargs)
        unit_points = min(self.cfg["diagnostics"]["unit_points"], len(self.data.x_eval))
        idata = to_inference_data(sim, x_eval=self.data.x_eval, unit_points=unit_points)
        if self.data.f_eval is not None:
            idata.predictions_constant_data["f_target"] = ("eval_point", np.asarray(self.data.f_eval))
            idata.predictions_constant_data["f_target"].attrs["description"] = "teacher f*(x_eval)"
        attrs = self._run_attrs()
        for group in idata.groups():
            getattr(idata, group).attrs.update(attrs)
        return idata


def _write_netcdf(obj, path: Path, **kwargs):
    """``obj.to_netcdf`` (InferenceData or Dataset) through a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        obj.to_netcdf(str(tmp), **kwargs)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _run_simulate(cfg, out: Path, progress_mode: str, stream) -> None:
    data = load_data(cfg)
    widths = widths_of(cfg)
    runs = [WidthRun(cfg, n, data, out) for n in widths]
    progress = Progress(cfg["run"]["steps"] * len(widths), progress_mode, stream, desc=cfg["experiment"]["name"])
    try:
        all_chunks = [r.run(progress) for r in runs]
    finally:
        progress.close()
    for r, chunks in zip(runs, all_chunks):
        if r.stream:
            r.finalize()
        else:
            _write_netcdf(r.assemble(chunks), draws_path(out, r.width))


# ---------------------------------------------------------------------------------------------
# f1_vs_f2 experiments
# ---------------------------------------------------------------------------------------------
F1F2_VARS = ("test_error", "relative_error", "train_error", "ridge")


def _f1f2_arguments(cfg) -> dict:
    d, m, b, run = cfg["data"], cfg["model"], cfg["baselines"], cfg["run"]
    as_seq = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    return dict(widths=as_seq(m["width"]), num_data=as_seq(d["num_data"]), methods=tuple(b["methods"]),
                teacher_width=d["teacher_width"], activation=d["activation"], noise=d["noise"],
                num_test=d["num_test"], weight_decay=m["weight_decay"], step_size=cfg["dynamics"]["step_size"],
                num_steps=run["steps"], ridge=b.get("ridge"), criterion=b["criterion"])


def _run_f1_vs_f2(cfg, out: Path, progress_mode: str, stream) -> None:
    import xarray as xr

    from .experiments.f1_vs_f2 import f1_vs_f2

    dims = cfg["data"]["dim"] if isinstance(cfg["data"]["dim"], list) else [cfg["data"]["dim"]]
    seeds = [cfg["run"]["seed"] + i for i in range(cfg["run"]["replicates"])]
    fp = fingerprint(cfg)
    ckdir = out / "checkpoints" / "f1_vs_f2"
    ckdir.mkdir(parents=True, exist_ok=True)
    for stale in ckdir.glob(".*.tmp-*"):
        stale.unlink()
    kwargs = _f1f2_arguments(cfg)
    cells = [(d, s) for d in dims for s in seeds]
    progress = Progress(len(cells), progress_mode, stream, desc=cfg["experiment"]["name"])
    pieces = {}
    try:
        for i, (d, s) in enumerate(cells):
            path = ckdir / f"dim{d}_seed{s}.npz"
            if path.exists():
                arrays, meta = read_checkpoint(path)
                if meta.get("fingerprint") != fp:
                    raise CheckpointError(f"{path} was written for another configuration")
                pieces[d, s] = (arrays, meta)
                progress.advance(1)
                continue
            ds = f1_vs_f2(dims=(d,), seeds=(s,), **kwargs)
            sweep = "num_data" if "num_data" in ds.dims else "width"
            meta = dict(kind="f1_vs_f2", fingerprint=fp, dim=d, seed=s, sweep=sweep,
                        values=[int(v) for v in ds[sweep].values], methods=list(ds["method"].values),
                        attrs={k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in ds.attrs.items()})
            arrays = {k: ds[k].values for k in F1F2_VARS}
            write_checkpoint(path, arrays, meta)
            pieces[d, s] = (arrays, meta)
            errors = ", ".join(f"{m} {float(np.nanmean(ds['relative_error'].sel({'method': m}).values)):.3g}"
                               for m in ds["method"].values)
            progress.report(f"err[d={d}]", float(np.nanmean(ds["relative_error"].values)),
                            f"f1_vs_f2: dim {d}, seed {s} done ({i + 1}/{len(cells)}); relative test "
                            f"errors: {errors}", steps=1)
    finally:
        progress.close()
    meta0 = pieces[cells[0]][1]
    sweep, values, methods = meta0["sweep"], meta0["values"], meta0["methods"]
    shape = (len(methods), len(dims), len(values), len(seeds))
    data = {k: np.full(shape, np.nan) for k in F1F2_VARS}
    for (d, s), (arrays, _) in pieces.items():
        for k in F1F2_VARS:
            data[k][:, dims.index(d), :, seeds.index(s)] = arrays[k][:, 0, :, 0]
    ds = xr.Dataset({k: (("method", "dim", sweep, "seed"), v) for k, v in data.items()},
                    coords={"method": methods, "dim": dims, sweep: values, "seed": seeds},
                    attrs={**meta0["attrs"], "experiment": cfg["experiment"]["name"], "fingerprint": fp})
    _write_netcdf(ds, out / "results.nc", engine="h5netcdf")


# ---------------------------------------------------------------------------------------------
# checking a run directory before computing
# ---------------------------------------------------------------------------------------------
def verify_checkpoints(out, cfg) -> None:
    """Check every checkpoint a resumption would use, before any computation, and report *all*
    the problems at once (:class:`CheckpointError`): unreadable or modified files, files of another
    configuration, draws files that are not the ones their state recorded."""
    out, fp, problems = Path(out), fingerprint(cfg), []

    def check(path, **expect):
        try:
            _, meta = read_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            return None
        if meta.get("fingerprint") != fp:
            problems.append(f"{path} was written for another configuration")
            return None
        wrong = {k: meta.get(k) for k, v in expect.items() if meta.get(k) != v}
        if wrong:
            problems.append(f"{path} is not the expected checkpoint ({wrong})")
            return None
        return meta

    if cfg["experiment"]["kind"] == "simulate":
        run = cfg["run"]
        plan = chunk_plan(run["steps"], run["save_every"], run["checkpoint_every"])
        for n in widths_of(cfg):
            d = out / "checkpoints" / f"width_{n}"
            state = d / "state.npz"
            if not state.exists():
                continue
            meta = check(state, kind="state", width=n)
            if meta is None:  # without the state's list, check every draws file present
                for p in sorted(d.glob("draws_*.npz")):
                    check(p, kind="draws", width=n)
                continue
            if meta.get("plan") != plan:
                problems.append(f"{state} follows another chunk plan {meta.get('plan')} (now {plan})")
            if meta.get("stream"):  # the draws are in one netCDF file, unfinished or finalised
                path = _stream_checkpoint(out, n)
                if not path.exists() and meta.get("chunks_done") == len(plan):
                    path = draws_path(out, n)
                problems += _stream_problems(path, meta.get("chunks", []))
                continue
            for entry in meta.get("chunks", []):
                p = d / entry["file"]
                m = check(p, kind="draws", width=n)
                if m is not None and m["sha256"] != entry["sha256"]:
                    problems.append(f"{p} is not the draws file recorded in {state} (replaced?)")
    else:
        for p in sorted((out / "checkpoints" / "f1_vs_f2").glob("*.npz")):
            check(p, kind="f1_vs_f2")
    if problems:
        n = len(problems)
        raise CheckpointError(f"{n} damaged or foreign checkpoint file{'s' if n > 1 else ''}:\n  "
                              + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_experiment(cfg, out, *, progress: str = "auto", stream=None, analyse: bool = True) -> dict:
    """Run (or resume) the experiment of the resolved configuration ``cfg`` into ``out``.

    :param progress: ``"bar"`` (tqdm), ``"lines"`` (a line per checkpoint), ``"off"``, or ``"auto"``
        (a bar on a terminal, lines otherwise).
    :returns: the summary written to ``out/summary.json`` (see :func:`mfsample.report.analyse`).
    :raises InputError, CheckpointError: exit status 2; :raises RunFailure: exit status 1.
    """
    stream = stream or sys.stderr
    if progress == "auto":
        progress = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    out = Path(out)
    select_device(cfg["run"]["device"])
    resumed = prepare_out_dir(out, cfg)
    if resumed:
        verify_checkpoints(out, cfg)
    run_json = out / "run.json"
    record = {}
    if run_json.is_file():
        try:
            record = json.loads(run_json.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
    sessions = list(record.get("sessions", []))
    start, started = time.perf_counter(), _now()
    if cfg["experiment"]["kind"] == "simulate":
        _run_simulate(cfg, out, progress, stream)
    else:
        _run_f1_vs_f2(cfg, out, progress, stream)
    sessions.append({"started": started, "finished": _now(), "wall_time_s": time.perf_counter() - start,
                     "resumed": resumed})
    record = {"experiment": cfg["experiment"]["name"], "kind": cfg["experiment"]["kind"],
              "fingerprint": fingerprint(cfg), "status": "complete", "environment": environment(),
              "wall_time_s": sum(s["wall_time_s"] for s in sessions), "sessions": sessions}
    atomic_write(run_json, lambda f: f.write(json.dumps(record, indent=2).encode()))
    if not analyse:
        return record
    from .report import analyse as analyse_run

    return analyse_run(out, cfg).summary
