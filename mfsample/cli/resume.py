"""Whether a run directory can be resumed: its checkpoints and streamed draws, checked.

:func:`verify_checkpoints` reads every checkpoint a resumption would use before any computation
and reports *all* the problems at once (:class:`~mfsample.cli.errors.CheckpointError`):
unreadable or modified files, files of another configuration or of a chunk plan that does not
lead to ``run.steps``, draws files that are not the ones their state recorded, streamed draws
files whose draws or other content (data, coordinates, attributes of every group the writer
created) differ from the SHA-256 the state recorded for them.  :func:`load_state` restores a
width's kernel state, checked leaf by leaf (shape, dtype) against the state the configuration
builds; :func:`verified_draws` reads the draws files a state lists, each checked to be the very
file the state recorded.
"""

from __future__ import annotations

from pathlib import Path

import jax

from ..io import count_draws
from .config import chain_fingerprint, fingerprint, widths_of
from .errors import CheckpointError
from .rundir import (
    continued_plan,
    draws_hash,
    draws_path,
    f1_vs_f2_dir,
    group_hashes,
    read_checkpoint,
    state_path,
    stream_path,
    width_dir,
)

__all__ = ["verify_checkpoints", "stream_problems", "restore_state", "load_state", "verified_draws"]


# ---------------------------------------------------------------------------------------------
# one width's state and draws
# ---------------------------------------------------------------------------------------------
def restore_state(template, arrays: dict, path) -> object:
    """Unflatten the saved leaves ``state_000, state_001, ...`` with the structure of ``template``
    (a ``jax.eval_shape`` of the state the configuration builds), checking every shape and dtype."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = sorted(k for k in arrays if k.startswith("state_"))
    if len(names) != len(leaves):
        raise CheckpointError(
            f"checkpoint {path} holds {len(names)} state arrays; the configuration's kernel state has {len(leaves)}"
        )
    for name, (p, spec) in zip(names, leaves):
        a = arrays[name]
        if a.shape != tuple(spec.shape) or a.dtype != spec.dtype:
            raise CheckpointError(
                f"checkpoint {path}: state leaf {jax.tree_util.keystr(p)} is {a.dtype}{list(a.shape)}, "
                f"the configuration gives {spec.dtype}{list(spec.shape)}"
            )
    return jax.tree_util.tree_unflatten(treedef, [arrays[name] for name in names])


def _state_mismatch(meta: dict, *, width: int, fingerprint: str, run: dict, stream: bool) -> str | None:
    """Why a state checkpoint's header does not fit this width's run (None: it fits)."""
    if meta.get("kind") != "state" or meta.get("width") != width:
        return f"is not the state checkpoint of width {width}"
    if meta.get("fingerprint") != fingerprint:
        return (
            f"was written for another configuration (fingerprint {str(meta.get('fingerprint'))[:16]}, "
            f"this one {fingerprint[:16]})"
        )
    try:
        continued_plan(meta, run)
    except ValueError as exc:
        return f"cannot be continued: {exc}"
    if bool(meta.get("stream", False)) != stream:
        return (
            f"was written with output.stream = {str(bool(meta.get('stream'))).lower()}, the configuration "
            f"has {str(stream).lower()}"
        )
    return None


def load_state(path, template, **expect):
    """``(state, header)`` of a width's ``state.npz``.

    :param template: the state's shapes (:func:`mfsample.cli.build.state_shapes`).
    :param expect: ``width``, ``fingerprint`` (chain fingerprint) and ``stream`` the header must
        record, and ``run`` (``[run]``) whose ``steps`` its completed chunks must lead to.
    :raises CheckpointError: the file is missing, damaged, or not this width's run.
    """
    path = Path(path)
    arrays, meta = read_checkpoint(path)
    why = _state_mismatch(meta, **expect)
    if why:
        raise CheckpointError(f"{path} {why}")
    return restore_state(template, arrays, path), meta


def verified_draws(directory, chunks: list, fingerprint: str) -> list[dict]:
    """The arrays of every draws file a state lists, each checked to be the file it recorded."""
    out = []
    for entry in chunks:
        p = Path(directory) / entry["file"]
        arrays, meta = read_checkpoint(p)
        if meta["sha256"] != entry["sha256"] or meta.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{p} is not the draws file recorded in {Path(directory) / 'state.npz'} "
                "(replaced by another run's file?)"
            )
        out.append(arrays)
    return out


def _stream_content_problems(path: Path, chunks: list, groups: dict) -> list[str]:
    """The groups, then the chunks of draws, that differ from the hashes the state recorded."""
    now = group_hashes(path, list(groups))
    bad = [g for g in groups if now[g] != groups[g]]
    if bad:
        return [
            f"{path}: the {' and '.join(bad)} group{'s are' if len(bad) > 1 else ' is'} not what the state "
            "checkpoint recorded (values or attributes modified, or the file replaced)"
        ]
    for entry in chunks:
        start, stop = entry["draws"]
        if draws_hash(path, start, stop, list(groups)) != entry["sha256"]:
            return [
                f"{path}: draws {start}..{stop - 1} are not those the state checkpoint recorded "
                "(the file was modified or replaced)"
            ]
    return []


def stream_problems(path: Path, chunks: list, groups: dict | None) -> list[str]:
    """What is wrong with a streamed draws file against what a state recorded: the ``chunks``
    (their draws and hashes) and ``groups`` (``{group: hash}`` of the content that does not grow
    with the draws, :func:`~mfsample.cli.rundir.group_hashes`).  Empty: fine."""
    if not path.is_file():
        return [f"{path} is missing: it holds the draws that the state checkpoint records"]
    if not groups:
        return [f"{path}: the state checkpoint records no hash of its groups"]
    try:
        count = count_draws(path)
    except (OSError, ValueError) as exc:
        return [f"{path} is unreadable ({exc}); it is truncated or corrupted"]
    need = chunks[-1]["draws"][1] if chunks else 0
    if count < need:
        return [f"{path} holds {count} draws; the state checkpoint records {need}"]
    try:
        return _stream_content_problems(path, chunks, groups)
    except Exception as exc:  # noqa: BLE001 - HDF5 and netCDF errors alike mean "unreadable"
        return [f"{path} is unreadable ({type(exc).__name__}: {exc}); it is truncated or corrupted"]


# ---------------------------------------------------------------------------------------------
# the whole directory
# ---------------------------------------------------------------------------------------------
class _Problems:
    """The problems found so far, and a checker of one checkpoint file that records them."""

    def __init__(self, fingerprint: str):
        self.fingerprint, self.lines = fingerprint, []

    def check(self, path, **expect) -> dict | None:
        """The header of a sound checkpoint with the ``expect``-ed values, else None (recorded)."""
        try:
            _, meta = read_checkpoint(path)
        except CheckpointError as exc:
            self.lines.append(str(exc))
            return None
        if meta.get("fingerprint") != self.fingerprint:
            self.lines.append(f"{path} was written for another configuration")
            return None
        wrong = {k: meta.get(k) for k, v in expect.items() if meta.get(k) != v}
        if wrong:
            self.lines.append(f"{path} is not the expected checkpoint ({wrong})")
            return None
        return meta


def _check_width(out: Path, n: int, run: dict, problems: _Problems):
    state = state_path(out, n)
    if not state.exists():
        return
    meta = problems.check(state, kind="state", width=n)
    if meta is None:  # without the state's list, check every draws file present
        for p in sorted(width_dir(out, n).glob("draws_*.npz")):
            problems.check(p, kind="draws", width=n)
        return
    try:
        continued_plan(meta, run)
    except ValueError as exc:
        problems.lines.append(f"{state} cannot be continued: {exc}")
    if meta.get("stream"):  # the draws are in one netCDF file, unfinished or finalised
        path = stream_path(out, n)
        path = path if path.exists() or not draws_path(out, n).exists() else draws_path(out, n)
        problems.lines.extend(stream_problems(path, meta.get("chunks", []), meta.get("groups")))
        return
    for entry in meta.get("chunks", []):
        p = width_dir(out, n) / entry["file"]
        m = problems.check(p, kind="draws", width=n)
        if m is not None and m["sha256"] != entry["sha256"]:
            problems.lines.append(f"{p} is not the draws file recorded in {state} (replaced?)")


def verify_checkpoints(out, cfg) -> None:
    """Check every checkpoint of the run directory ``out`` that resuming ``cfg`` would use.

    :raises CheckpointError: listing every damaged or foreign file.
    """
    out = Path(out)
    if cfg["experiment"]["kind"] == "simulate":
        problems = _Problems(chain_fingerprint(cfg))
        for n in widths_of(cfg):
            _check_width(out, n, cfg["run"], problems)
    else:
        problems = _Problems(fingerprint(cfg))
        for p in sorted(f1_vs_f2_dir(out).glob("*.npz")):
            problems.check(p, kind="f1_vs_f2")
    if problems.lines:
        n = len(problems.lines)
        raise CheckpointError(
            f"{n} damaged or foreign checkpoint file{'s' if n > 1 else ''}:\n  " + "\n  ".join(problems.lines)
        )
