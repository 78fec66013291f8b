"""The run directory of ``mfsample run``: its layout, its checkpoint files and atomic writes.

A run directory ``out`` holds

* ``config.toml`` – the resolved configuration (:mod:`mfsample.cli.config`);
* ``checkpoints/width_<n>/`` – for each width ``n``: ``draws_0000.npz`` (the draw at ``t = 0``),
  ``draws_0001.npz``, ... (the draws of each chunk of :func:`chunk_plan`) and ``state.npz`` (the
  kernel state after the last completed chunk: every leaf of the state NamedTuple as a plain
  array); with ``output.stream = true``, ``draws.nc`` (the draws appended chunk by chunk,
  :class:`mfsample.io.DrawWriter`) instead of the ``draws_*.npz`` files;
* ``checkpoints/f1_vs_f2/dim<d>_seed<s>.npz`` – one cell of an ``f1_vs_f2`` experiment each;
* ``draws/width_<n>.nc`` – all draws of a complete width as ArviZ ``InferenceData`` (of a
  ``[sweep]``: with a ``config`` dimension, and every checkpoint array with a leading
  configuration axis);
  ``results.nc`` – the dataset of a complete ``f1_vs_f2`` experiment;
* ``run.lock`` – the lock of the run in progress (:func:`run_dir_lock`);
* ``run.json`` – versions, device and wall times of each session; ``summary.json``,
  ``figures/*.png`` and ``report.html`` – the analysis (:mod:`mfsample.cli.report`).

**Checkpoint files** are ``.npz`` archives (no pickle) with a JSON header ``__meta__`` carrying the
format name and version, the configuration's fingerprint
(:func:`~mfsample.cli.config.chain_fingerprint` for ``simulate``, which a run extended to more
``run.steps`` shares; :func:`~mfsample.cli.config.fingerprint` for ``f1_vs_f2``) and the
SHA-256 of the whole content (:func:`content_hash`: the header without its hash, then each
array's name, dtype, shape and bytes).  A truncated, modified or foreign file is refused
(:class:`~mfsample.cli.errors.CheckpointError`) with the file named.  Every file is written
atomically (:func:`atomic_write`: temporary file ``.<name>.tmp-<pid>``, ``fsync``, ``rename``,
``fsync`` of the directory): a process killed at any moment never leaves a half-written file under
a final name, and the temporary files of dead processes are removed when a run starts
(:func:`remove_temporaries`).

**Streamed draws** (``draws.nc``) are checked against hashes the state checkpoint records: per
chunk, the SHA-256 of its draws in every group the writer created (:func:`draws_hash`), and per
group, the SHA-256 of everything that does not grow with the draws – the data, the coordinates, the
attributes (:func:`group_hashes`).

**One process per run directory**: a run holds ``run.lock`` (``fcntl.flock``, advisory; the file
holds the holder's PID) for its whole duration (:func:`run_dir_lock`); another run on the same
directory stops at once with :class:`~mfsample.cli.errors.RunDirInUse`.  The lock goes with the
process: a killed run leaves no lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from pathlib import Path

import h5netcdf
import numpy as np

from .config import ConfigError, draw_sections, fingerprint, load_toml, resolve, stream_enabled, to_toml
from .errors import CheckpointError, InputError, RunDirInUse

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "config_path",
    "width_dir",
    "state_path",
    "stream_path",
    "draws_path",
    "f1_vs_f2_dir",
    "results_path",
    "run_record_path",
    "lock_path",
    "RUN_ATTRS",
    "chunk_plan",
    "continued_plan",
    "atomic_write",
    "atomic_netcdf",
    "remove_temporaries",
    "move_into_place",
    "content_hash",
    "draws_hash",
    "group_hashes",
    "netcdf_groups",
    "write_checkpoint",
    "read_checkpoint",
    "read_run_record",
    "saved_config",
    "create_out_dir",
    "run_dir_lock",
    "prepare_out_dir",
]

FORMAT = "mfsample-checkpoint"
#: 2: simulate checkpoints record the chain fingerprint; streamed draws are hashed in every group
FORMAT_VERSION = 2
#: the attributes the end of a run sets on every group of a draws file (left out of its hashes)
RUN_ATTRS = ("experiment", "fingerprint", "seed", "mfsample_config")


# ---------------------------------------------------------------------------------------------
# the layout
# ---------------------------------------------------------------------------------------------
def config_path(out) -> Path:
    return Path(out) / "config.toml"


def width_dir(out, width: int) -> Path:
    """The checkpoints of one width."""
    return Path(out) / "checkpoints" / f"width_{width}"


def state_path(out, width: int) -> Path:
    return width_dir(out, width) / "state.npz"


def stream_path(out, width: int) -> Path:
    """The streamed draws of an unfinished width (moved to :func:`draws_path` once complete)."""
    return width_dir(out, width) / "draws.nc"


def draws_path(out, width: int) -> Path:
    """The draws of a complete width (ArviZ netCDF)."""
    return Path(out) / "draws" / f"width_{width}.nc"


def f1_vs_f2_dir(out) -> Path:
    return Path(out) / "checkpoints" / "f1_vs_f2"


def results_path(out) -> Path:
    """The dataset of a complete ``f1_vs_f2`` experiment."""
    return Path(out) / "results.nc"


def run_record_path(out) -> Path:
    return Path(out) / "run.json"


def lock_path(out) -> Path:
    return Path(out) / "run.lock"


def _straight_plan(steps: int, save_every: int, checkpoint_every: int) -> list[int]:
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


def chunk_plan(steps: int, save_every: int, checkpoint_every: int, done=()) -> list[int]:
    """Steps of each chunk: ``T = skip + D k + D k + ... + r k`` with ``k = save_every``,
    ``D = checkpoint_every / k`` draws per chunk and ``skip = T mod k`` (run first, as
    :func:`mfsample.simulate` does, so that draws fall at steps ``skip + k, skip + 2k, ..., T``).

    ``done``: the chunks a run already completed (a run of fewer steps being extended to ``T``):
    they are kept, and the steps after them end at the chunk ends of a straight run of ``T`` steps
    (the checkpoints every ``checkpoint_every`` steps) and at ``T``.

    :raises ValueError: ``done`` runs past ``T``, or its chunks end off the draw grid of ``T``.
    """
    plan = _straight_plan(steps, save_every, checkpoint_every)
    if not done:
        return plan
    ends = np.cumsum(done).tolist()
    off = [e for e in ends if (e - steps) % save_every]
    if ends[-1] > steps or off:
        raise ValueError(
            f"the {ends[-1]} steps done (chunks {list(done)}) do not lead to run.steps = {steps} on its "
            f"draw grid (draws at the steps {steps % save_every} + j * {save_every})"
        )
    straight = [e for e in np.cumsum(plan).tolist() if e > ends[-1]]
    return list(done) + np.diff([ends[-1]] + straight).astype(int).tolist()


def continued_plan(meta: dict, run: dict) -> list[int]:
    """The plan of ``[run]`` continuing the chunks a state checkpoint (header ``meta``) completed
    (:func:`chunk_plan` with ``done``); raises ValueError where it cannot continue."""
    done = list(meta.get("plan", []))[: meta.get("chunks_done", 0)]
    return chunk_plan(run["steps"], run["save_every"], run["checkpoint_every"], done=done)


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
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


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_temporaries(root) -> list[Path]:
    """Delete the temporary files (``.<name>.tmp-<pid>``) that processes no longer running left
    anywhere under ``root``; returns them.  Those of a running process are kept."""
    stale = []
    for path in sorted(Path(root).rglob(".*.tmp-*")):
        pid = path.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not _alive(int(pid)) and path.is_file():
            path.unlink()
            stale.append(path)
    return stale


def atomic_write(path, write) -> None:
    """``write(file)`` into a temporary file next to ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    tmp = _temporary(path)
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


def move_into_place(src, dst) -> None:
    """Rename the complete file ``src`` to ``dst`` (creating its directory) and fsync that directory."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    _fsync_dir(dst.parent)


def atomic_netcdf(obj, path, **kwargs) -> None:
    """``obj.to_netcdf`` (InferenceData or Dataset) through a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        obj.to_netcdf(str(tmp), **kwargs)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# checkpoint files
# ---------------------------------------------------------------------------------------------
def content_hash(arrays: dict, meta: dict) -> str:
    """SHA-256 of the header (without its hash) and of every array's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _digest(h, name: str, dims, values) -> None:
    """Add one variable (name, dims, dtype, shape, values) to the hash ``h``."""
    a = np.asarray(values)
    if a.dtype.kind in "OSU":  # text: hash the strings, not the object pointers
        kind, data = "str", "\x00".join(map(str, a.ravel().tolist())).encode()
    else:
        kind, data = a.dtype.str, np.ascontiguousarray(a).tobytes()
    h.update(f"{name}|{tuple(dims)}|{kind}|{a.shape}|".encode())
    h.update(data)


def netcdf_groups(path) -> list[str]:
    """The groups of a netCDF file, sorted."""
    with h5netcdf.File(str(path), "r") as f:
        return sorted(f.groups)


def draws_hash(path, start: int, stop: int, groups) -> str:
    """SHA-256 of draws ``start:stop`` of every variable along ``draw`` in the ``groups`` of a
    streamed netCDF file, as stored (one variable's slice in memory at a time)."""
    h = hashlib.sha256()
    with h5netcdf.File(str(path), "r") as f:
        for g in groups:
            for name in sorted(f[g].variables):
                v = f[g].variables[name]
                if "draw" in v.dimensions:
                    axis = v.dimensions.index("draw")
                    _digest(h, f"{g}/{name}", v.dimensions, v[(slice(None),) * axis + (slice(start, stop),)])
    return h.hexdigest()


def _attrs_text(attrs) -> str:
    kept = {k: np.asarray(v).tolist() for k, v in attrs.items() if k not in RUN_ATTRS}
    return json.dumps(kept, sort_keys=True, default=str)


def group_hashes(path, groups) -> dict:
    """Per group of a netCDF file, the SHA-256 of what does not grow with the draws: every variable
    without a ``draw`` dimension (the data, the coordinates) and the group's attributes but
    :data:`RUN_ATTRS`; ``None`` for a group the file lacks."""
    out = {}
    with h5netcdf.File(str(path), "r") as f:
        for g in groups:
            if g not in f.groups:
                out[g] = None
                continue
            h = hashlib.sha256(_attrs_text(f[g].attrs).encode())
            for name in sorted(f[g].variables):
                v = f[g].variables[name]
                if "draw" not in v.dimensions:
                    _digest(h, name, v.dimensions, v[...])
            out[g] = h.hexdigest()
    return out


def write_checkpoint(path, arrays: dict, meta: dict) -> str:
    """Write ``arrays`` (name -> ndarray) and the JSON header ``meta`` atomically to an ``.npz``.

    The header gets ``format``, ``version`` and ``sha256`` (the content hash); returns the hash.
    """
    meta = {**meta, "format": FORMAT, "version": FORMAT_VERSION}
    meta["sha256"] = content_hash(arrays, meta)
    header = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    payload = {**{k: np.asarray(v) for k, v in arrays.items()}, "__meta__": header}
    atomic_write(Path(path), lambda f: np.savez(f, **payload))
    return meta["sha256"]


def _load_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and OS errors alike mean "unreadable"
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); it is truncated or corrupted"
        ) from None


def _header(path: Path, header) -> dict:
    """The JSON header of a checkpoint, checked to be of this format and version."""
    try:
        meta = json.loads(bytes(header).decode()) if header is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mfsample checkpoint (no valid header)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('version')!r}; this mfsample reads "
            f"version {FORMAT_VERSION}"
        )
    return meta


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a checkpoint, after checking its format, version and content hash.

    :raises CheckpointError: the file is missing, unreadable (e.g. truncated), not an mfsample
        checkpoint, of another format version, or its content does not match its hash.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    arrays = _load_npz(path)
    meta = _header(path, arrays.pop("__meta__", None))
    stored = meta.pop("sha256", None)
    if stored != content_hash(arrays, meta):
        raise CheckpointError(
            f"checkpoint {path} fails its content hash check: the file was modified or corrupted after it was written"
        )
    meta["sha256"] = stored
    return arrays, meta


# ---------------------------------------------------------------------------------------------
# the stored configuration and run record
# ---------------------------------------------------------------------------------------------
def read_run_record(out) -> dict:
    """``run.json`` of a run directory (empty when absent or unreadable)."""
    path = run_record_path(out)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def saved_config(out) -> dict:
    """The resolved configuration stored in a run directory."""
    path = config_path(out)
    if not path.is_file():
        raise InputError(f"{out} holds no mfsample run (no config.toml)")
    try:
        return resolve(load_toml(path), source=str(path))
    except ConfigError as exc:
        raise InputError(f"{path} is not a valid configuration:\n{exc.format()}") from None


def _flatten(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _draw_differences(old: dict, new: dict) -> dict:
    """``{key: (old value, new value)}`` of the draw-determining keys on which two configurations
    differ (``"(absent)"`` for a missing key)."""
    a, b = (_flatten({s: c.get(s, {}) for s in draw_sections()}) for c in (old, new))
    return {
        k: (a.get(k, "(absent)"), b.get(k, "(absent)"))
        for k in sorted(set(a) | set(b))
        if k != "run.device" and a.get(k) != b.get(k)
    }


def _extension_refusal(old: dict, new: dict) -> str | None:
    """Why ``new`` cannot extend the run of ``old`` to more ``run.steps`` (None: it can)."""
    t, m = old["run"]["steps"], new["run"]["steps"]
    if new["experiment"]["kind"] != "simulate":
        return "only the runs of experiment kind 'simulate' can be extended to more steps"
    if m < t:
        return f"a run can be extended, not shortened ({t} -> {m} steps)"
    k = new["run"]["save_every"]
    if (m - t) % k:
        more = t + k * math.ceil((m - t) / k)
        return (
            f"the {m - t} added steps must be a multiple of run.save_every = {k}, so that the draws "
            f"stay at the steps of the run (e.g. run.steps = {more})"
        )
    return None


def _check_resumable(out: Path, cfg: dict):
    """Refuse a run directory whose stored configuration gives other draws (more ``run.steps``
    excepted: the run is extended), or whose checkpoints are laid out for the other
    ``output.stream``."""
    old = saved_config(out)
    diff = _draw_differences(old, cfg)
    why = _extension_refusal(old, cfg) if list(diff) == ["run.steps"] else None
    if why:
        raise InputError(
            f"{out} holds a run of {old['run']['steps']} steps; run.steps = {cfg['run']['steps']} "
            f"cannot continue it: {why}. Choose another --out for a new run"
        )
    if diff and list(diff) != ["run.steps"]:
        lines = [f"  {k}: {a!r} in {config_path(out)}, {b!r} now" for k, (a, b) in diff.items()]
        raise InputError(
            f"{out} holds a run of a different configuration; it would not continue the same draws:\n"
            + "\n".join(lines)
            + "\nchoose another --out, or "
            f"resume it as it is with `mfsample run --resume {out}` (only run.steps may grow: "
            f"`mfsample run --resume {out} --set run.steps=M`)"
        )
    if stream_enabled(old) != stream_enabled(cfg) and any((out / "checkpoints").glob("width_*/state.npz")):
        was = str(stream_enabled(old)).lower()
        raise InputError(
            f"{out} was run with output.stream = {was}; its checkpoints are laid out for that setting. "
            f"Resume it with the same setting (--set output.stream={was}, or `mfsample run --resume {out}`), "
            "or choose another --out"
        )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def create_out_dir(out) -> None:
    """Create the output directory ``out`` (and its parents), or accept it: a run directory, or an
    empty directory (``run.lock`` aside).

    :raises InputError: ``out`` is a file, lies below a file, cannot be created, or is a
        directory of other files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory; choose another --out")
    if out.is_dir():
        if not config_path(out).is_file() and any(p.name != lock_path(out).name for p in out.iterdir()):
            raise InputError(
                f"{out} exists and is not an mfsample run directory (no config.toml); choose another --out"
            )
        return
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise InputError(f"--out {out} lies below {base}, which is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out {out} ({exc.strerror}); choose a directory you can write") from None


def _holder(f) -> str:
    f.seek(0)
    pid = f.read().strip()
    return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def run_dir_lock(out):
    """Hold the run directory's lock (``out/run.lock``, ``fcntl.flock``) while the block runs; the
    lock file holds this process's PID.  ``out`` must exist (:func:`create_out_dir`).

    :raises RunDirInUse: another process holds it.
    :raises InputError: the lock file cannot be written (a directory one cannot write).
    """
    out, path = Path(out), lock_path(out)
    try:
        f = open(path, "a+")
    except OSError as exc:
        raise InputError(f"cannot write in --out {out} ({exc.strerror}); choose a directory you can write") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(
                f"{out} is in use by {_holder(f)} (another mfsample run holds {path}); wait for it to "
                "end, or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield path  # closing f releases the lock


def prepare_out_dir(out, cfg) -> bool:
    """Create ``out`` (returns False) or accept it for resumption (returns True), then store the
    resolved configuration in it.  Call it holding :func:`run_dir_lock`.

    An existing run directory is resumed only if its stored configuration has the same draws
    (:func:`~mfsample.cli.config.fingerprint`), or differs only by more ``run.steps`` (the run is
    extended: the added steps a multiple of ``run.save_every``, ``simulate`` experiments); sections
    that do not change the draws (``experiment``, ``diagnostics``, ``baselines``, ``run.device``)
    may differ and are updated; ``output.stream`` may differ only before the first checkpoint.
    """
    out = Path(out)
    create_out_dir(out)
    resumed = config_path(out).is_file()
    if resumed:
        _check_resumable(out, cfg)
    header = f"resolved configuration of mfsample run (fingerprint {fingerprint(cfg)[:16]})"
    atomic_write(config_path(out), lambda f: f.write(to_toml(cfg, header=header).encode()))
    return resumed
