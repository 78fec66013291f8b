"""Run (or resume) the experiment of a resolved configuration into a run directory.

:func:`run_experiment` (what ``mfsample run`` calls) prepares the run directory
(:mod:`mfsample.cli.rundir`), checks every checkpoint a resumption would use
(:mod:`mfsample.cli.resume`), runs the experiment and records the session in ``run.json``; the
analysis (``summary.json``, figures) is :func:`mfsample.cli.report.analyse`'s.

**Exact resumption** (``simulate``).  A width's run (:class:`WidthRun`) is the fixed sequence of
chunks of :func:`~mfsample.cli.rundir.chunk_plan`; each chunk is one :func:`mfsample.simulate`
call started from the previous chunk's ``last_state`` (``init_state=``), so its draws do not
depend on where the process was stopped.  After a chunk its draws, then the state, are written
atomically: killing the process at any moment loses at most the chunk in progress.  When all
chunks are done the draws become ``draws/width_<n>.nc`` (ArviZ ``InferenceData`` with
``predictions`` at the held-out inputs).

**Streaming** (``output.stream = true``).  After each chunk its draws are appended to the width's
netCDF file (closed and complete between appends; :class:`mfsample.io.DrawWriter`), *then* the
state file is written; the state records, for every chunk, its range of draws in the file and the
SHA-256 of those draws read back.  Resuming checks those hashes, removes any draws appended after
the recorded ones (a process killed between the append and the state file) and appends from
there, so the file ends with exactly the draws of an uninterrupted run; memory holds one chunk of
draws, never the whole run.  The state also records, per group of the file (``posterior``,
``sample_stats``, ``observed_data``, ``constant_data``: every group the writer created), a hash of
its content that does not grow with the draws (data, coordinates, attributes), checked as well.

**Extension** (``mfsample run --resume DIR --set run.steps=M``).  A ``simulate`` run of ``T``
steps continues to ``M > T`` steps (``M - T`` a multiple of ``run.save_every``): the chunks done
are kept and the next ones end where the chunks of a straight run of ``M`` steps end
(:func:`~mfsample.cli.rundir.chunk_plan` with ``done``), so the draws are those of a run of ``M``
steps from the start; the draws file of the ``T`` steps is taken back (streamed) or removed, and
written again when the ``M`` steps are done.

**One process per run directory**: :func:`run_experiment` holds the directory's lock
(:func:`~mfsample.cli.rundir.run_dir_lock`) from before it writes anything until it returns (or
until the caller's ``hold`` stack closes), and first removes the temporary files that dead
processes left (:func:`~mfsample.cli.rundir.remove_temporaries`).

**Sweeps** (``[sweep]``).  Each width runs every configuration of the grid x ``run.chains``
replicas (:class:`SweepRun`): the same chunks, checkpoints, resumption and extension, each chunk
one :func:`mfsample.sweep` call continuing the previous chunk's ``last_state``, every array with a
leading configuration axis; ``draws/width_<n>.nc`` has a ``config`` dimension whose coordinates are
the swept values.  Configuration ``c`` is the run :func:`mfsample.simulate` gives for
``kernel.replace(**point_c)`` from ``jax.random.split(width key, C)[c]``.

**f1_vs_f2**.  One checkpoint per (dimension, seed) cell of :func:`mfsample.experiments.f1_vs_f2`;
the cells are gathered into ``results.nc`` when all are done.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import time
import warnings
from pathlib import Path

import h5netcdf
import jax
import numpy as np
import xarray as xr

from .. import sweeps
from ..diagnostics import to_inference_data
from ..experiments import f1_vs_f2
from ..experiments.replicate import initial_draw
from ..io import DrawWriter, write_predictions
from ..simulate import Simulation, simulate
from .build import (
    Data,
    initial_sweep_draw,
    load_data,
    make_kernel,
    model_kwargs,
    state_shapes,
    sweep_grid,
    sweep_state_shapes,
    width_key,
)
from .config import chain_fingerprint, fingerprint, stream_enabled, sweep_axes, widths_of
from .environment import check_devices, environment, select_device
from .errors import CheckpointError, InputError, RunFailure
from .progress import Progress, progress_mode
from .resume import load_state, verified_draws, verify_checkpoints
from .rundir import (
    RUN_ATTRS,
    atomic_netcdf,
    atomic_write,
    chunk_plan,
    continued_plan,
    create_out_dir,
    draws_hash,
    draws_path,
    f1_vs_f2_dir,
    group_hashes,
    move_into_place,
    netcdf_groups,
    prepare_out_dir,
    read_checkpoint,
    read_run_record,
    remove_temporaries,
    results_path,
    run_dir_lock,
    run_record_path,
    stream_path,
    width_dir,
    write_checkpoint,
)

__all__ = ["WidthRun", "SweepRun", "run_simulate", "run_f1_vs_f2", "run_experiment", "RUNNERS"]


# ---------------------------------------------------------------------------------------------
# arrays of a checkpoint
# ---------------------------------------------------------------------------------------------
def _state_arrays(state) -> tuple[dict, list[str]]:
    """The leaves of a kernel state as ``state_000, state_001, ...`` and their tree paths."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    arrays = {f"state_{i:03d}": np.asarray(v) for i, (_, v) in enumerate(leaves)}
    return arrays, [jax.tree_util.keystr(p) for p, _ in leaves]


def _draw_arrays(samples: dict, stats: dict) -> dict:
    out = {f"sample__{k}": np.asarray(v) for k, v in samples.items()}
    out.update({f"stat__{k}": np.asarray(v) for k, v in stats.items()})
    return out


def _split_draws(arrays: dict) -> tuple[dict, dict]:
    samples = {k[len("sample__") :]: v for k, v in arrays.items() if k.startswith("sample__")}
    stats = {k[len("stat__") :]: v for k, v in arrays.items() if k.startswith("stat__")}
    return samples, stats


def _first_divergence(stats: dict) -> np.ndarray:
    """Per chain (per configuration and chain of a sweep), the step of its first diverging draw
    (-1: none); the draws lie along the last axis."""
    diverging = stats["diverging"].astype(bool)
    first = np.take_along_axis(stats["step"], diverging.argmax(-1)[..., None], axis=-1)[..., 0]
    return np.where(diverging.any(-1), first, -1)


# ---------------------------------------------------------------------------------------------
# simulate experiments
# ---------------------------------------------------------------------------------------------
class WidthRun:
    """One width's run: its kernel, model arguments, checkpoint directory and chunk plan.

    What a run of another shape changes (:class:`SweepRun`) is in :meth:`_template`,
    :meth:`_initial`, :meth:`_advance`, :meth:`_check_divergence` and :meth:`result`.
    """

    #: the axis of the draws in the arrays of a chunk: ``(chain, draw, ...)``
    draw_axis = 1

    def __init__(self, cfg, width: int, data: Data, out: Path):
        self.cfg, self.width, self.data = cfg, int(width), data
        try:
            self.kernel = make_kernel(cfg)
        except (ValueError, TypeError) as exc:  # a combination the schema does not know is invalid
            raise InputError(f"invalid [dynamics]: {exc}") from None
        self.args, self.kwargs = (data.x, data.y), model_kwargs(cfg, width)
        run = cfg["run"]
        self.chains, self.save_every, self.step_size = run["chains"], run["save_every"], cfg["dynamics"]["step_size"]
        devices = run.get("devices") or 1
        self.sharding = {"devices": devices, "shard": run.get("shard") or "auto"} if devices > 1 else {}
        self.key = width_key(cfg, self.width)
        self.plan = chunk_plan(run["steps"], run["save_every"], run["checkpoint_every"])
        self.dir = width_dir(out, self.width)
        self.fingerprint, self.stream = chain_fingerprint(cfg), stream_enabled(cfg)
        self.stream_path, self.final_path = stream_path(out, self.width), draws_path(out, self.width)
        self.writer = None
        self.groups = None  # streamed: {group: hash} of the content that does not grow with the draws
        self.steps_before = None  # resumed: the steps of the run the state belongs to

    # -- checkpoints ----------------------------------------------------------------------------
    def load(self):
        """``(state, chunks_done, chunks)`` from ``state.npz``, or ``None`` when absent (the draws
        files it lists are checked by :func:`~mfsample.cli.resume.verify_checkpoints`); the plan
        becomes the one continuing the chunks it completed (a run extended to more steps)."""
        path = self.dir / "state.npz"
        if not path.exists():
            return None
        template = self._template()
        run = self.cfg["run"]
        state, meta = load_state(
            path, template, width=self.width, fingerprint=self.fingerprint, run=run, stream=self.stream
        )
        self.plan, self.groups = continued_plan(meta, run), meta.get("groups")
        self.steps_before = sum(meta["plan"])
        return state, meta["chunks_done"], meta["chunks"]

    def _open_writer(self, keep=None):
        """The writer of the streamed draws: a new file (``keep=None``) or the existing one after
        its first ``keep`` draws."""
        kw = dict(
            kernel=self.kernel,
            model_args=self.args,
            model_kwargs=self.kwargs,
            num_chains=self.chains,
            num_draws=1 + self.cfg["run"]["steps"] // self.save_every,
            fsync=True,
        )
        if keep is None:
            return DrawWriter(self.stream_path, overwrite=True, **kw)
        return DrawWriter.resume(self.stream_path, keep=keep, **kw)

    def _record_draws(self, samples, stats, index: int) -> dict:
        """Store one chunk's draws (appended to the stream, or a ``draws_<index>.npz``); returns
        the state's entry for them."""
        if self.stream:
            start = self.writer.draws_written
            self.writer.append(samples, stats)
            stop = self.writer.draws_written
            if self.groups is None:  # the first append created the file and its groups
                self.groups = group_hashes(self.stream_path, netcdf_groups(self.stream_path))
            return {"draws": [start, stop], "sha256": draws_hash(self.stream_path, start, stop, list(self.groups))}
        name = f"draws_{index:04d}.npz"
        sha = write_checkpoint(
            self.dir / name,
            _draw_arrays(samples, stats),
            dict(kind="draws", fingerprint=self.fingerprint, width=self.width, index=index),
        )
        return {"file": name, "sha256": sha}

    def save(self, state, samples, stats, chunks, chunks_done):
        """Store a chunk's draws, *then* the state that records them; returns the chunks' list."""
        chunks = chunks + [self._record_draws(samples, stats, len(chunks))]
        arrays, paths = _state_arrays(state)
        meta = dict(
            kind="state",
            fingerprint=self.fingerprint,
            width=self.width,
            stream=self.stream,
            step=int(np.max(np.asarray(state.step))),
            chunks_done=chunks_done,
            chunks=chunks,
            plan=self.plan,
            leaves=paths,
        )
        if self.stream:
            meta["groups"] = self.groups
        write_checkpoint(self.dir / "state.npz", arrays, meta)
        return chunks

    # -- computing --------------------------------------------------------------------------------
    def _template(self):
        """Shapes and dtypes of the state a checkpoint must restore (nothing computed)."""
        return state_shapes(self.kernel, self.key, self.chains, self.args, self.kwargs)

    def _initial(self):
        """``(state, samples, stats)`` at ``t = 0``: the initial state and its draw."""
        state, sample0, stats0 = initial_draw(self.kernel, self.key, self.args, self.kwargs, self.chains)
        return jax.tree.map(np.asarray, state), sample0, stats0

    def _advance(self, state, num_steps: int):
        """``num_steps`` steps from ``state``: one :func:`mfsample.simulate` call."""
        return simulate(
            self.kernel,
            self.key,
            *self.args,
            num_steps=num_steps,
            save_every=self.save_every,
            num_chains=self.chains,
            init_state=state,
            progress_bar=False,
            **self.sharding,
            **self.kwargs,
        )

    def _time(self, step: int) -> str:
        """`` (t = ...)``: the mean-field time of ``step``."""
        return f" (t = {step * self.step_size:g})"

    def _check_divergence(self, sim, step: int):
        """:raises RunFailure: a chain diverged in the chunk starting at ``step`` (with the step, the
        step size and a smaller one to try)."""
        first = np.atleast_1d(np.asarray(sim.first_divergence))
        if np.any(first >= 0):
            dt = self.step_size
            bad, at = [int(i) for i in np.nonzero(first >= 0)[0]], int(first[first >= 0].min())
            raise RunFailure(
                f"width {self.width}: divergence at step {at} (t = {at * dt:g}) in chain(s) {bad}: the particles "
                f"became non-finite with dynamics.step_size = {dt:g}. Try a smaller step size, e.g. --set "
                f"dynamics.step_size={dt / 4:g} (and more run.steps for the same time), with another --out. "
                f"Checkpoints up to step {step} are kept in {self.dir}."
            )

    def start(self, progress: Progress):
        """``(state, chunks_done, chunks)``: the saved state, or the initial draw (saved)."""
        loaded = self.load()
        if loaded is None:
            state, sample0, stats0 = self._initial()
            if self.stream:
                self.writer = self._open_writer()
            return state, 0, self.save(state, sample0, stats0, [], 0)
        state, done, chunks = loaded
        if done < len(self.plan):
            self._reopen_draws(chunks)
        steps_done = sum(self.plan[:done])
        progress.advance(steps_done)
        if self.steps_before != sum(self.plan):
            progress.message(f"width {self.width}: extending the run of {self.steps_before} steps to {sum(self.plan)}")
        if done < len(self.plan):
            progress.message(
                f"width {self.width}: resuming at step {steps_done}/{sum(self.plan)} "
                f"(checkpoint {done}/{len(self.plan)})"
            )
        return state, done, chunks

    def _reopen_draws(self, chunks):
        """Before more chunks: the streamed file continues after its recorded draws (those appended
        after the saved state dropped; taken back from ``draws/`` when a finished run is extended);
        the draws file of a finished run of fewer steps is removed (written again at the end)."""
        if self.stream:
            if not self.stream_path.exists() and self.final_path.exists():
                move_into_place(self.final_path, self.stream_path)
            self.writer = self._open_writer(keep=chunks[-1]["draws"][1])
        elif self.final_path.exists():
            self.final_path.unlink()

    def simulate_chunk(self, state, c: int):
        """Chunk ``c`` from ``state`` (:meth:`_advance`).

        :raises RunFailure: a numerical error, or a divergence (:meth:`_check_divergence`).
        """
        step = sum(self.plan[:c])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergences are reported below
            try:
                result = self._advance(state, self.plan[c])
            except (FloatingPointError, ArithmeticError, RuntimeError) as exc:
                raise RunFailure(
                    f"width {self.width}: failed in the chunk starting at step {step}{self._time(step)}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        self._check_divergence(result, step)
        return result

    def run(self, progress: Progress) -> list:
        """Every chunk not done yet, each saved; returns the chunks' list of the final state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state, done, chunks = self.start(progress)
        for c in range(done, len(self.plan)):
            sim = self.simulate_chunk(state, c)
            state = jax.tree.map(np.asarray, sim.last_state)  # exactly what a resumed run reloads
            chunks = self.save(state, sim.samples, sim.stats, chunks, c + 1)
            energy, step = float(np.mean(np.asarray(state.energy))), sum(self.plan[: c + 1])
            progress.report(
                f"E[n={self.width}]",
                energy,
                f"width {self.width}: step {step}/{sum(self.plan)}{self._time(step)}, "
                f"E = {energy:.6g}; checkpoint {c + 1}/{len(self.plan)} saved",
                steps=self.plan[c],
            )
        if self.writer is not None:
            self.writer.close()
        return chunks

    # -- assembling -------------------------------------------------------------------------------
    def _run_attrs(self) -> dict:
        """The run's attributes of every group (:data:`~mfsample.cli.rundir.RUN_ATTRS`)."""
        cfg = self.cfg
        values = (
            cfg["experiment"]["name"],
            fingerprint(cfg),
            cfg["run"]["seed"],
            json.dumps(cfg, sort_keys=True),
        )
        return dict(zip(RUN_ATTRS, values, strict=True))

    def _unit_points(self) -> int:
        return min(self.cfg["diagnostics"]["unit_points"], len(self.data.x_eval))

    def finalize(self):
        """Streamed draws: add ``predictions`` (in batches of draws) and the run's attributes to the
        file, then move it to ``draws/width_<n>.nc`` (a completed run resumed redoes this in place)."""
        path = self.stream_path if self.stream_path.exists() else self.final_path
        extra = None
        if self.data.f_eval is not None:
            extra = {"f_target": ("eval_point", np.asarray(self.data.f_eval), {"description": "teacher f*(x_eval)"})}
        write_predictions(
            path,
            self.data.x_eval,
            kernel=self.kernel,
            model_args=self.args,
            model_kwargs=self.kwargs,
            unit_points=self._unit_points(),
            constant_data=extra,
        )
        with h5netcdf.File(str(path), "a", locking=False) as f:
            for group in f.groups.values():
                group.attrs.update(self._run_attrs())
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        if path != self.final_path:
            move_into_place(path, self.final_path)

    def draws(self, chunks) -> tuple[dict, dict]:
        """``(samples, stats)``: the draws files the state lists (each checked), joined along the draws."""
        parts = [_split_draws(a) for a in verified_draws(self.dir, chunks, self.fingerprint)]
        samples = {k: np.concatenate([p[0][k] for p in parts], axis=self.draw_axis) for k in parts[0][0]}
        stats = {k: np.concatenate([p[1][k] for p in parts], axis=self.draw_axis) for k in parts[0][1]}
        return samples, stats

    def result(self, chunks) -> Simulation:
        """All saved draws (the ``t = 0`` draw first) as the run's result (:meth:`simulation`)."""
        return self.simulation(chunks)

    def simulation(self, chunks) -> Simulation:
        """All saved draws (the ``t = 0`` draw first) as one :class:`mfsample.Simulation`."""
        samples, stats = self.draws(chunks)
        return Simulation(
            samples=samples,
            stats=stats,
            time=stats["time"][0].astype(np.float64),
            last_state=None,
            first_divergence=_first_divergence(stats),
            kernel=self.kernel,
            model_args=self.args,
            model_kwargs=self.kwargs,
        )

    def assemble(self, chunks):
        """All draws as an ``InferenceData`` with ``predictions`` at the held-out inputs and, for
        teacher-student data, the target ``f_target`` there."""
        idata = to_inference_data(self.result(chunks), x_eval=self.data.x_eval, unit_points=self._unit_points())
        if self.data.f_eval is not None:
            idata.predictions_constant_data["f_target"] = ("eval_point", np.asarray(self.data.f_eval))
            idata.predictions_constant_data["f_target"].attrs["description"] = "teacher f*(x_eval)"
        attrs = self._run_attrs()
        for group in idata.groups():
            getattr(idata, group).attrs.update(attrs)
        return idata


class SweepRun(WidthRun):
    """One width's sweep (``[sweep]``): every configuration of the grid x ``run.chains`` replicas,
    each chunk one :func:`mfsample.sweep` call continuing the previous chunk's state.

    The checkpoints are a width run's with a leading configuration axis on every array (the draws
    ``(config, chain, draw, ...)``); the draws file is the sweep's InferenceData, with a ``config``
    dimension whose coordinates are the swept values.
    """

    draw_axis = 2

    def __init__(self, cfg, width: int, data: Data, out: Path):
        super().__init__(cfg, width, data, out)
        self.grid, self.common = sweep_grid(cfg), cfg["sweep"]["common_keys"]
        try:
            self.kernels = [self.kernel.replace(**p) for p in self.grid.points]
        except (ValueError, TypeError) as exc:  # a value the schema's ranges let through
            raise InputError(f"invalid [sweep]: {exc}") from None

    def _template(self):
        return sweep_state_shapes(self.kernel, self.grid, self.key, self.chains, self.args, self.kwargs)

    def _initial(self):
        return initial_sweep_draw(self.kernel, self.grid, self.key, self.args, self.kwargs, self.chains, self.common)

    def _advance(self, state, num_steps: int):
        """``num_steps`` steps of every configuration from ``state``: one :func:`mfsample.sweep` call."""
        return sweeps.sweep(
            self.kernel,
            None,
            *self.args,
            grid=self.grid,
            num_steps=num_steps,
            save_every=self.save_every,
            num_chains=self.chains,
            init_state=state,
            progress_bar=False,
            **self.sharding,
            **self.kwargs,
        )

    def _time(self, step: int) -> str:
        return "" if "step_size" in self.grid.names else super()._time(step)

    def _check_divergence(self, result, step: int):
        first = np.asarray(result.first_divergence)  # (config, chain)
        bad = [int(c) for c in np.nonzero((first >= 0).any(axis=1))[0]]
        if not bad:
            return
        at = int(first[first >= 0].min())
        where = "; ".join(f"configuration {c} ({self.grid.label(c)})" for c in bad)
        dt = min(self.kernels[c].step_size for c in bad)
        raise RunFailure(
            f"width {self.width}: divergence at step {at} in {where}: the particles became non-finite with "
            f"step_size = {dt:g}. Try smaller step sizes, e.g. {dt / 4:g} (dynamics.step_size, or the values of "
            "sweep.step_size where it is swept) and more run.steps for the same time, with another --out. "
            f"Checkpoints up to step {step} are kept in {self.dir}."
        )

    def result(self, chunks) -> sweeps.Sweep:
        """All saved draws (the ``t = 0`` draw first) as one :class:`mfsample.Sweep`."""
        samples, stats = self.draws(chunks)
        return sweeps.Sweep(
            samples=samples,
            stats=stats,
            time=stats["time"][:, 0].astype(np.float64),
            last_state=None,
            first_divergence=_first_divergence(stats),
            grid=self.grid,
            kernel=self.kernel,
            model_args=self.args,
            model_kwargs=self.kwargs,
        )


def run_simulate(cfg, out: Path, mode: str, console) -> None:
    """Every width of a ``simulate`` configuration (a sweep each, with ``[sweep]``), then its
    draws file each."""
    data = load_data(cfg)
    widths = widths_of(cfg)
    kind = SweepRun if sweep_axes(cfg) else WidthRun
    runs = [kind(cfg, n, data, out) for n in widths]
    with Progress(cfg["run"]["steps"] * len(widths), mode, console, desc=cfg["experiment"]["name"]) as bar:
        all_chunks = [r.run(bar) for r in runs]
    for r, chunks in zip(runs, all_chunks):
        if r.stream:
            r.finalize()
        else:
            atomic_netcdf(r.assemble(chunks), draws_path(out, r.width))


# ---------------------------------------------------------------------------------------------
# f1_vs_f2 experiments
# ---------------------------------------------------------------------------------------------
F1F2_VARS = ("test_error", "relative_error", "train_error", "ridge")


def _f1f2_arguments(cfg) -> dict:
    d, m, b, run = cfg["data"], cfg["model"], cfg["baselines"], cfg["run"]
    as_seq = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    return dict(
        widths=as_seq(m["width"]),
        num_data=as_seq(d["num_data"]),
        methods=tuple(b["methods"]),
        teacher_width=d["teacher_width"],
        activation=d["activation"],
        noise=d["noise"],
        num_test=d["num_test"],
        weight_decay=m["weight_decay"],
        step_size=cfg["dynamics"]["step_size"],
        num_steps=run["steps"],
        ridge=b.get("ridge"),
        criterion=b["criterion"],
    )


def _f1f2_cells(cfg) -> tuple[list, list]:
    """The dimensions and the seeds of an ``f1_vs_f2`` configuration."""
    dim = cfg["data"]["dim"]
    dims = dim if isinstance(dim, list) else [dim]
    return dims, [cfg["run"]["seed"] + i for i in range(cfg["run"]["replicates"])]


def _read_cell(path: Path, fp: str):
    arrays, meta = read_checkpoint(path)
    if meta.get("fingerprint") != fp:
        raise CheckpointError(f"{path} was written for another configuration")
    return arrays, meta


def _compute_cell(path: Path, cfg, fp: str, d: int, s: int):
    """One (dimension, seed) cell of :func:`mfsample.experiments.f1_vs_f2`, checkpointed; returns
    ``(arrays, meta, dataset)``."""
    ds = f1_vs_f2(dims=(d,), seeds=(s,), **_f1f2_arguments(cfg))
    sweep = "num_data" if "num_data" in ds.dims else "width"
    meta = dict(
        kind="f1_vs_f2",
        fingerprint=fp,
        dim=d,
        seed=s,
        sweep=sweep,
        values=[int(v) for v in ds[sweep].values],
        methods=list(ds["method"].values),
        attrs={k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in ds.attrs.items()},
    )
    arrays = {k: ds[k].values for k in F1F2_VARS}
    write_checkpoint(path, arrays, meta)
    return arrays, meta, ds


def _cell_line(ds, d, s, i, n) -> str:
    errors = ", ".join(
        f"{m} {float(np.nanmean(ds['relative_error'].sel({'method': m}).values)):.3g}" for m in ds["method"].values
    )
    return f"f1_vs_f2: dim {d}, seed {s} done ({i + 1}/{n}); relative test errors: {errors}"


def _f1f2_dataset(cfg, pieces: dict, dims: list, seeds: list, fp: str) -> xr.Dataset:
    """The cells gathered into one dataset with dims ``(method, dim, <sweep>, seed)``."""
    meta0 = pieces[dims[0], seeds[0]][1]
    sweep, values, methods = meta0["sweep"], meta0["values"], meta0["methods"]
    data = {k: np.full((len(methods), len(dims), len(values), len(seeds)), np.nan) for k in F1F2_VARS}
    for (d, s), (arrays, _) in pieces.items():
        for k in F1F2_VARS:
            data[k][:, dims.index(d), :, seeds.index(s)] = arrays[k][:, 0, :, 0]
    return xr.Dataset(
        {k: (("method", "dim", sweep, "seed"), v) for k, v in data.items()},
        coords={"method": methods, "dim": dims, sweep: values, "seed": seeds},
        attrs={**meta0["attrs"], "experiment": cfg["experiment"]["name"], "fingerprint": fp},
    )


def run_f1_vs_f2(cfg, out: Path, mode: str, console) -> None:
    """Every (dimension, seed) cell not checkpointed yet, then ``results.nc``."""
    dims, seeds = _f1f2_cells(cfg)
    fp, ckdir = fingerprint(cfg), f1_vs_f2_dir(out)
    ckdir.mkdir(parents=True, exist_ok=True)
    cells, pieces = [(d, s) for d in dims for s in seeds], {}
    with Progress(len(cells), mode, console, desc=cfg["experiment"]["name"]) as progress:
        for i, (d, s) in enumerate(cells):
            path = ckdir / f"dim{d}_seed{s}.npz"
            if path.exists():
                pieces[d, s] = _read_cell(path, fp)
                progress.advance(1)
                continue
            arrays, meta, ds = _compute_cell(path, cfg, fp, d, s)
            pieces[d, s] = (arrays, meta)
            progress.report(
                f"err[d={d}]",
                float(np.nanmean(ds["relative_error"].values)),
                _cell_line(ds, d, s, i, len(cells)),
                steps=1,
            )
    atomic_netcdf(_f1f2_dataset(cfg, pieces, dims, seeds, fp), results_path(out), engine="h5netcdf")


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
#: the runner of each experiment kind: ``runner(cfg, out, progress mode, console stream)``
RUNNERS = {"simulate": run_simulate, "f1_vs_f2": run_f1_vs_f2}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _run_locked(cfg, out: Path, mode: str, console) -> dict:
    """:func:`run_experiment` once the directory's lock is held."""
    stale = remove_temporaries(out)
    if stale:
        print(
            f"mfsample run: removed {len(stale)} temporary file(s) left by stopped processes: "
            + ", ".join(map(str, stale)),
            file=console,
            flush=True,
        )
    resumed = prepare_out_dir(out, cfg)
    if resumed:
        verify_checkpoints(out, cfg)
    sessions = list(read_run_record(out).get("sessions", []))
    start, started = time.perf_counter(), _now()
    RUNNERS[cfg["experiment"]["kind"]](cfg, out, mode, console)
    sessions.append(
        {"started": started, "finished": _now(), "wall_time_s": time.perf_counter() - start, "resumed": resumed}
    )
    record = {
        "experiment": cfg["experiment"]["name"],
        "kind": cfg["experiment"]["kind"],
        "fingerprint": fingerprint(cfg),
        "status": "complete",
        "environment": environment(),
        "wall_time_s": sum(s["wall_time_s"] for s in sessions),
        "sessions": sessions,
    }
    atomic_write(run_record_path(out), lambda f: f.write(json.dumps(record, indent=2).encode()))
    return record


def run_experiment(cfg, out, *, progress: str = "auto", console=None, hold: contextlib.ExitStack | None = None) -> dict:
    """Run (or resume, or extend to more ``run.steps``) the experiment of the resolved
    configuration ``cfg`` into ``out``, holding the directory's lock.

    :param progress: ``"bar"`` (tqdm), ``"lines"`` (a line per checkpoint), ``"off"``, or ``"auto"``
        (a bar on a terminal, lines otherwise), on ``console`` (default: standard error).
    :param hold: a stack that keeps the lock after the return, until it closes (the caller
        analyses the draws meanwhile); default: released on return.
    :returns: the run record written to ``out/run.json`` (environment, wall time of each session).
    :raises InputError, CheckpointError, RunDirInUse: exit status 2; :raises RunFailure: exit status 1.
    """
    console, out = console or sys.stderr, Path(out)
    select_device(cfg["run"]["device"])
    check_devices(cfg["run"].get("devices") or 1)
    create_out_dir(out)
    with contextlib.ExitStack() as own:
        (own if hold is None else hold).enter_context(run_dir_lock(out))
        return _run_locked(cfg, out, progress_mode(progress, console), console)
