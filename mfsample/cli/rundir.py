"""The run directory of ``mfsample run``: its layout, its checkpoint files and atomic writes.

A run directory ``out`` holds

* ``config.toml`` – the resolved configuration (:mod:`mfsample.cli.config`);
* ``checkpoints/width_<n>/`` – for each width ``n``: ``draws_0000.npz`` (the draw at ``t = 0``),
  ``draws_0001.npz``, ... (the draws of each chunk of :func:`chunk_plan`) and ``state.npz`` (the
  kernel state after the last completed chunk: every leaf of the state NamedTuple as a plain
  array); with ``output.stream = true``, ``draws.nc`` (the draws appended chunk by chunk,
  :class:`mfsample.io.DrawWriter`) instead of the ``draws_*.npz`` files;
* ``checkpoints/f1_vs_f2/dim<d>_seed<s>.npz`` – one cell of an ``f1_vs_f2`` experiment each;
* ``draws/width_<n>.nc`` – all draws of a complete width as ArviZ ``InferenceData``;
  ``results.nc`` – the dataset of a complete ``f1_vs_f2`` experiment;
* ``run.json`` – versions, device and wall times of each session; ``summary.json``,
  ``figures/*.png`` and ``report.html`` – the analysis (:mod:`mfsample.cli.report`).

**Checkpoint files** are ``.npz`` archives (no pickle) with a JSON header ``__meta__`` carrying the
format name and version, the configuration's :func:`~mfsample.cli.config.fingerprint` and the
SHA-256 of the whole content (:func:`content_hash`: the header without its hash, then each
array's name, dtype, shape and bytes).  A truncated, modified or foreign file is refused
(:class:`~mfsample.cli.errors.CheckpointError`) with the file named.  Every file is written
atomically (:func:`atomic_write`: temporary file, ``fsync``, ``rename``, ``fsync`` of the
directory): a process killed at any moment never leaves a half-written file under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..io import read_draws
from .config import ConfigError, fingerprint, load_toml, resolve, stream_enabled, to_toml
from .errors import CheckpointError, InputError

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
    "chunk_plan",
    "atomic_write",
    "atomic_netcdf",
    "remove_temporaries",
    "move_into_place",
    "content_hash",
    "draws_hash",
    "write_checkpoint",
    "read_checkpoint",
    "read_run_record",
    "saved_config",
    "prepare_out_dir",
]

FORMAT = "mfsample-checkpoint"
FORMAT_VERSION = 1


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


def remove_temporaries(directory: Path):
    """Delete the temporary files a killed process left in ``directory``."""
    for stale in Path(directory).glob(".*.tmp-*"):
        stale.unlink()


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


def draws_hash(path, start: int, stop: int) -> str:
    """SHA-256 of draws ``start:stop`` of a streamed file as read back (:func:`content_hash`)."""
    return content_hash(read_draws(path, start, stop), {})


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


def _draw_differences(old: dict, new: dict, path: Path) -> list[str]:
    """The draw-determining keys on which two configurations differ, one line each."""
    a, b = (_flatten({s: c.get(s, {}) for s in ("data", "model", "dynamics", "run")}) for c in (old, new))
    return [
        f"  {k}: {a.get(k, '(absent)')!r} in {path}, {b.get(k, '(absent)')!r} now"
        for k in sorted(set(a) | set(b))
        if k != "run.device" and a.get(k) != b.get(k)
    ]


def _check_resumable(out: Path, cfg: dict):
    """Refuse a run directory whose stored configuration gives other draws, or whose checkpoints
    are laid out for the other ``output.stream``."""
    old = saved_config(out)
    if fingerprint(old) != fingerprint(cfg):
        raise InputError(
            f"{out} holds a run of a different configuration; it would not continue the same draws:\n"
            + "\n".join(_draw_differences(old, cfg, config_path(out)))
            + "\nchoose another --out, or "
            f"resume it as it is with `mfsample run --resume {out}`"
        )
    if stream_enabled(old) != stream_enabled(cfg) and any((out / "checkpoints").glob("width_*/state.npz")):
        was = str(stream_enabled(old)).lower()
        raise InputError(
            f"{out} was run with output.stream = {was}; its checkpoints are laid out for that setting. "
            f"Resume it with the same setting (--set output.stream={was}, or `mfsample run --resume {out}`), "
            "or choose another --out"
        )


def prepare_out_dir(out, cfg) -> bool:
    """Create ``out`` (returns False) or accept it for resumption (returns True), then store the
    resolved configuration in it.

    An existing run directory is resumed only if its stored configuration has the same draws
    (:func:`~mfsample.cli.config.fingerprint`); sections that do not change the draws
    (``experiment``, ``diagnostics``, ``baselines``, ``run.device``) may differ and are updated;
    ``output.stream`` may differ only before the first checkpoint.
    """
    out = Path(out)
    resumed = config_path(out).is_file()
    if resumed:
        _check_resumable(out, cfg)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an mfsample run directory (no config.toml); choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
    header = f"resolved configuration of mfsample run (fingerprint {fingerprint(cfg)[:16]})"
    atomic_write(config_path(out), lambda f: f.write(to_toml(cfg, header=header).encode()))
    return resumed
