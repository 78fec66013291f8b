"""Stream a run's draws to a netCDF file chunk by chunk, so that memory holds one chunk.

:class:`DrawWriter` writes what :func:`~mfsample.inference_data.to_inference_data` would build from
the whole run (same groups, variables, dims, coordinates, ``time`` on ``draw``, attributes; layout
in :mod:`mfsample.inference_data.layout`), one chunk of draws at a time:

* the first :meth:`~DrawWriter.append` creates the file (in a temporary file renamed into place):
  ``observed_data`` and ``constant_data`` (the model's data), and ``posterior`` and
  ``sample_stats`` holding the chunk, with ``draw`` an *unlimited* netCDF-4 dimension;
* every later append opens the file, checks that the chunk has the variables, dims, trailing
  shapes and dtypes already stored, extends ``draw`` (HDF5 resize), writes the chunk's slab,
  flushes, records the number of complete draws (root attribute ``mfsample_draws``) and closes
  the file.

Between appends the file is closed and complete: a process killed at that point (or a writer never
closed) leaves a file that ``arviz.from_netcdf`` opens with every draw appended so far, and that
another process may read while the run goes on.  A process killed *during* an append leaves a
readable file too (measured: 240 SIGKILLs at random moments of an append loop, none unreadable),
whose groups may hold part of the interrupted chunk beyond the complete draws:
:func:`count_draws` counts only complete draws and :meth:`DrawWriter.resume` removes the rest.
Memory: the writer keeps no draw; an append holds the chunk it is given (plus, for arrays that
are not C-contiguous, one contiguous copy of a variable while HDF5 writes it).

The file is netCDF-4 written by h5netcdf; ``arviz.from_netcdf(path)`` opens it lazily.
:func:`write_predictions` adds ``predictions`` at new inputs computed from the stored posterior in
batches of draws (:func:`prediction_batches`); :func:`read_draws` and :func:`count_draws` read
draws back.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5netcdf
import h5py
import jax
import numpy as np
import xarray as xr

from .. import validation
from .layout import (
    build_layout,
    check_kernel,
    data_groups,
    group_attrs,
    posterior_dataset,
    prediction_datasets,
    sample_stats_dataset,
    times,
)
from .predict import Predictor, evaluator, flatten_draws, predictor

__all__ = [
    "DrawWriter",
    "write_predictions",
    "read_draws",
    "count_draws",
    "DRAW_GROUPS",
    "stored_layout",
    "prediction_batches",
]

#: the groups that grow along ``draw`` as chunks are appended
DRAW_GROUPS = ("posterior", "sample_stats")
#: root attribute naming the writer (and telling a streamed file from any other netCDF file)
_MARK = "mfsample_stream"
#: root attribute: 1 when the particles were one array (``energy_fn`` with a single prior)
_SINGLE = "mfsample_single_array"
#: root attribute: the draws completely written (set after each append's data are flushed)
_DRAWS = "mfsample_draws"
#: target bytes of one HDF5 chunk (a block of draws of one variable)
_CHUNK_BYTES = 4 * 2**20


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _h5file(path, mode):
    """An h5netcdf file.  A writer does not take HDF5's file lock, so that another process holding
    the file open (looking at the draws so far) cannot make an append fail; a reader takes the
    default lock (HDF5 refuses, within one process, to open a file twice with different flags)."""
    if mode == "r":
        return h5netcdf.File(str(path), mode)
    return _writable(h5netcdf.File, path, mode)


def _writable(opener, path, mode):
    try:
        return opener(str(path), mode, locking=False)
    except OSError as exc:
        if "already open" in str(exc):
            raise OSError(
                f"{path} is open for reading in this process, so it cannot be written: an "
                "InferenceData from arviz.from_netcdf reads its file lazily; close it first "
                "(for g in idata.groups(): idata[g].close())"
            ) from None
        raise


def _open_group(path, group):
    return xr.open_dataset(str(path), group=group, engine="h5netcdf")


def _arguments(kernel, model_args, model_kwargs):
    """The model arguments given, else those of the kernel's last ``init`` (else none)."""
    if model_args is None:
        model_args = () if kernel is None else kernel.model_args
    if model_kwargs is None:
        model_kwargs = {} if kernel is None else kernel.model_kwargs
    return tuple(model_args), dict(model_kwargs)


# ---------------------------------------------------------------------------------------------
# a chunk as datasets
# ---------------------------------------------------------------------------------------------
def _normalise(samples, stats, num_chains):
    """``(samples dict, stats dict, single, k)`` with numpy arrays; checks the leading shapes."""
    single = not isinstance(samples, dict)
    samples = {"theta": samples} if single else dict(samples)
    if not samples:
        raise ValueError("append() got no sample sites")
    samples = {k: np.asarray(v) for k, v in samples.items()}
    stats = {k: np.asarray(v) for k, v in dict(stats or {}).items() if not isinstance(v, dict)}
    ks = {name: v.shape[:2] for name, v in samples.items()}
    bad = {name: s for name, s in ks.items() if len(s) < 2 or s[0] != num_chains}
    if bad:
        raise ValueError(
            f"every sample site must be (num_chains={num_chains}, draws, ...); got shapes "
            + ", ".join(f"{n}: {samples[n].shape}" for n in bad)
        )
    lengths = {s[1] for s in ks.values()}
    if len(lengths) != 1:
        raise ValueError(
            "the sample sites of one chunk must have the same number of draws; got "
            + ", ".join(f"{n}: {s[1]}" for n, s in ks.items())
        )
    k = lengths.pop()
    if k < 1:
        raise ValueError("append() got a chunk of 0 draws")
    return samples, stats, single, k


def _schema(ds):
    """``{name: (dims, shape without draw, dtype)}`` of a dataset's data variables."""
    out = {}
    for name, v in ds.data_vars.items():
        axis = v.dims.index("draw") if "draw" in v.dims else None
        shape = tuple(s for i, s in enumerate(v.shape) if i != axis)
        out[name] = (tuple(v.dims), shape, np.dtype(v.dtype))
    return out


def _check_schema(path, group, stored, ds):
    new = _schema(ds)
    if new == stored:
        return
    problems = []
    for name in sorted(set(stored) | set(new)):
        if name not in new:
            problems.append(f"{name} is missing from the chunk")
        elif name not in stored:
            problems.append(f"{name} is not in the file")
        elif new[name] != stored[name]:
            (d0, s0, t0), (d1, s1, t1) = stored[name], new[name]
            problems.append(
                f"{name}: the file has dims {d0} with shape {s0} (besides draw) and dtype {t0}, "
                f"the chunk dims {d1} with shape {s1} and dtype {t1}"
            )
    raise ValueError(f"this chunk does not fit the {group} group of {path}: " + "; ".join(problems))


def _encoding(ds, k_hint, compression):
    """HDF5 chunks of about ``_CHUNK_BYTES``: whole draws, ``k_hint`` of them at most (one append)."""
    enc = {}
    for name, v in ds.variables.items():
        if "draw" not in v.dims:
            continue
        axis = v.dims.index("draw")
        shape = list(v.shape)
        per_draw = v.dtype.itemsize * int(np.prod([s for i, s in enumerate(shape) if i != axis]))
        chunks = shape[:]
        if axis > 0 and shape[0] * per_draw > _CHUNK_BYTES:  # the chain axis first: one chain per chunk
            per_draw //= max(1, shape[0])
            chunks[0] = 1
        chunks[axis] = max(1, min(k_hint, _CHUNK_BYTES // max(1, per_draw)))
        enc[name] = {"chunksizes": tuple(max(1, c) for c in chunks)}
        if compression is not None and name in ds.data_vars:
            enc[name]["compression"] = compression
    return enc


def _add_groups(path, draw_groups, k_hint, compression, static_groups=None):
    """Add groups to an existing file (the draw groups with an unlimited ``draw``)."""
    for name, ds in (static_groups or {}).items():
        ds.to_netcdf(str(path), mode="a", group=name, engine="h5netcdf")
    for name, ds in draw_groups.items():
        ds.to_netcdf(
            str(path),
            mode="a",
            group=name,
            engine="h5netcdf",
            unlimited_dims=["draw"],
            encoding=_encoding(ds, k_hint, compression),
        )


def _create(path, root_attrs, static_groups, draw_groups, k_hint, compression, fsync):
    """Write the first chunk into a temporary file next to ``path`` and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        xr.Dataset(attrs=root_attrs).to_netcdf(str(tmp), mode="w", engine="h5netcdf")
        _add_groups(tmp, draw_groups, k_hint, compression, static_groups=static_groups)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _append_raw(path, draw_groups, start, fsync, commit=False):
    """Extend ``draw`` of each group from ``start`` by the chunk's length and write its slab; with
    ``commit``, then flush and record the new number of complete draws in the root attribute."""
    with _h5file(path, "a") as f:
        for gname, ds in draw_groups.items():
            g = f[gname]
            n0 = g.dimensions["draw"].size
            if n0 != start:
                raise RuntimeError(
                    f"{path}: the {gname} group holds {n0} draws where this writer wrote "
                    f"{start}; was the file changed by another program?"
                )
            k = ds.sizes["draw"]
            g.resize_dimension("draw", n0 + k)
            for name, v in ds.variables.items():
                if "draw" not in v.dims:
                    continue
                h = g.variables[name]
                axis = v.dims.index("draw")
                idx = (slice(None),) * axis + (slice(n0, n0 + k),)
                h[idx] = np.asarray(v.values).astype(h.dtype, copy=False)  # bool -> int8 as xarray stores it
        if commit:  # the data reach the file before the count that declares them complete
            f.flush()
            f.attrs[_DRAWS] = start + k
    if fsync:
        _fsync(path)


def _file_schemas(path, groups):
    out = {}
    for g in groups:
        with _open_group(path, g) as ds:
            out[g] = _schema(ds)
    return out


# ---------------------------------------------------------------------------------------------
# reading draws back
# ---------------------------------------------------------------------------------------------
def _draw_counts(path):
    """``({group: draws}, complete draws)`` of the draw groups, checking that the file was written by
    :class:`DrawWriter`."""
    try:
        with _h5file(path, "r") as f:
            if f.attrs.get(_MARK) is None:
                raise ValueError(f"{path} was not written by mfsample.io.DrawWriter (no {_MARK} attribute)")
            missing = [g for g in DRAW_GROUPS if g not in f.groups]
            if missing:
                raise ValueError(f"{path} has no {' or '.join(missing)} group")
            counts = {}
            for g in DRAW_GROUPS:
                dim = f[g].dimensions.get("draw")
                if dim is None or not dim.isunlimited():
                    raise ValueError(f"{path}: the {g} group has no unlimited draw dimension")
                counts[g] = dim.size
            return counts, int(f.attrs.get(_DRAWS, min(counts.values())))
    except OSError as exc:
        raise OSError(f"{path} is not a readable netCDF-4/HDF5 file ({exc})") from None


def count_draws(path) -> int:
    """Number of complete draws in a file written by :class:`DrawWriter`.

    After a process was killed *during* an append, the groups may hold some draws of the
    interrupted chunk beyond this number (``arviz.from_netcdf`` shows them, possibly unfinished);
    :meth:`DrawWriter.resume` removes them."""
    counts, complete = _draw_counts(path)
    if complete > min(counts.values()):
        raise ValueError(f"{path}: the draw groups hold {counts} draws, fewer than the {complete} recorded")
    return complete


def read_draws(path, start: int = 0, stop: int | None = None) -> dict:
    """Draws ``start:stop`` of a streamed file: ``{"posterior/<site>": (chain, k, ...), ...,
    "sample_stats/<stat>": (chain, k), "<group>/time": (k,)}`` as numpy arrays (decoded: a boolean
    statistic is boolean)."""
    out = {}
    for g in DRAW_GROUPS:
        with _open_group(path, g) as ds:
            part = ds.isel(draw=slice(start, stop))
            for name in list(part.data_vars) + ["time"]:
                out[f"{g}/{name}"] = np.asarray(part[name].values)
    return out


# ---------------------------------------------------------------------------------------------
# the writer
# ---------------------------------------------------------------------------------------------
class DrawWriter:
    """Append a run's draws, chunk by chunk, to a netCDF-4 file that opens as ``InferenceData``.

    ``arviz.from_netcdf(path)`` then gives the ``posterior``, ``sample_stats``, ``observed_data``
    and ``constant_data`` groups that ``mfsample.to_inference_data(sim, kernel=kernel)`` gives for
    the same draws held in memory (values, dims, coordinates, attributes): draw ``i`` of the file is
    the ``i``-th draw appended, at time ``t = step * dt``.

    :param path: the file to create; an existing file is refused unless ``overwrite=True``.
    :param kernel, model_args, model_kwargs: what runs (its model gives the data groups and the
        dims); ``model_args``/``model_kwargs`` default to those of the kernel's last ``init``.
    :param num_chains: chains of every chunk (leading axis).
    :param num_draws: total draws that will be appended (``None``: unknown); appending more is an error.
    :param model, dims, x_arg, output_site: as in :func:`mfsample.to_inference_data`.
    :param attrs: extra attributes of every group.
    :param compression: HDF5 filter of the data variables (``"gzip"``, ``"lzf"``; default none: the
        particles of a run are nearly incompressible floats and the filter costs CPU time).
    :param fsync: ``os.fsync`` the file after each append (survives a machine crash, not only a
        killed process).

    Use::

        with DrawWriter(path, kernel=kernel, model_args=(x, y), model_kwargs={"width": n},
                        num_chains=c, num_draws=total) as writer:
            for chunk in chunks:
                writer.append(samples, stats)   # samples: site -> (c, k, ...); stats: field -> (c, k)

    ``samples`` may be one array (``energy_fn`` with a single prior: stored as ``theta``); ``stats``
    entries that are not ``(num_chains, k)`` arrays are left out (as ``to_inference_data`` does).
    """

    def __init__(
        self,
        path,
        *,
        kernel=None,
        model_args=None,
        model_kwargs=None,
        num_chains: int,
        num_draws: int | None = None,
        overwrite: bool = False,
        model=None,
        dims=None,
        x_arg=0,
        output_site: str = "f",
        attrs: dict | None = None,
        compression: str | None = None,
        fsync: bool = False,
    ):
        self._setup(
            path,
            kernel,
            model_args,
            model_kwargs,
            num_chains,
            num_draws,
            model,
            dims,
            x_arg,
            output_site,
            attrs,
            compression,
            fsync,
        )
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory; DrawWriter needs a file path")
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{self.path} exists; DrawWriter does not append to an existing file "
                    "unless resumed (DrawWriter.resume) or overwrite it (overwrite=True)"
                )
            self.path.unlink()
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"the directory of {self.path} does not exist")

    def _setup(
        self,
        path,
        kernel,
        model_args,
        model_kwargs,
        num_chains,
        num_draws,
        model,
        dims,
        x_arg,
        output_site,
        attrs,
        compression,
        fsync,
    ):
        check_kernel(kernel)
        self.path = Path(path)
        self.kernel, self.model = kernel, model
        self.model_args, self.model_kwargs = _arguments(kernel, model_args, model_kwargs)
        self.num_chains = validation.positive_int("num_chains", num_chains)
        self.num_draws = validation.optional_positive_int("num_draws", num_draws, minimum=0)
        self.dims, self.x_arg, self.output_site = dims, x_arg, output_site
        self.attrs, self.compression, self.fsync = dict(attrs or {}), compression, fsync
        self._layout = None
        self._single = None
        self._schemas = None  # {group: schema} once the file exists
        self._written = 0
        self._closed = False

    @classmethod
    def resume(
        cls,
        path,
        *,
        keep: int | None = None,
        kernel=None,
        model_args=None,
        model_kwargs=None,
        num_chains: int,
        num_draws: int | None = None,
        model=None,
        dims=None,
        x_arg=0,
        output_site: str = "f",
        attrs: dict | None = None,
        compression: str | None = None,
        fsync: bool = False,
    ) -> DrawWriter:
        """Continue appending to a file this class wrote, after its first ``keep`` draws (default:
        all); draws beyond ``keep`` (appended after the state one resumes from was saved) are
        removed from the file.  The next chunk must fit the stored variables."""
        w = cls.__new__(cls)
        w._setup(
            path,
            kernel,
            model_args,
            model_kwargs,
            num_chains,
            num_draws,
            model,
            dims,
            x_arg,
            output_site,
            attrs,
            compression,
            fsync,
        )
        w._truncate(keep)
        w._schemas = _file_schemas(w.path, DRAW_GROUPS)
        return w

    def _truncate(self, keep):
        """Keep the first ``keep`` complete draws of the file (all when ``None``)."""
        count = count_draws(self.path)
        keep = count if keep is None else int(keep)
        if not 0 <= keep <= count:
            raise ValueError(f"{self.path} holds {count} draws; cannot resume after draw {keep}")
        with _h5file(self.path, "a") as f:
            chains = f["posterior"].dimensions["chain"].size
            if chains != self.num_chains:
                raise ValueError(
                    f"{self.path} holds {chains} chains, the writer was given num_chains={self.num_chains}"
                )
            self._single = bool(f.attrs.get(_SINGLE, 0))
            for g in DRAW_GROUPS:  # also the draws of a chunk interrupted by a crash
                if f[g].dimensions["draw"].size != keep:
                    f[g].resize_dimension("draw", keep)
            f.attrs[_DRAWS] = keep
        if self.fsync:
            _fsync(self.path)
        self._written = keep

    # -- state -----------------------------------------------------------------------------------
    @property
    def draws_written(self) -> int:
        """Draws in the file so far."""
        return self._written

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Refuse further appends (the file is already complete after each append); idempotent."""
        self._closed = True

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"DrawWriter({str(self.path)!r}, {self._written} draws, {state})"

    # -- appending ---------------------------------------------------------------------------------
    def append(self, samples, stats) -> None:
        """Append one chunk: ``samples`` site -> ``(num_chains, k, ...)`` (or one array), ``stats``
        field -> ``(num_chains, k)``; draws ``draws_written .. draws_written + k - 1`` of the run."""
        if self._closed:
            raise RuntimeError(f"{self!r}: cannot append after close()")
        samples, stats, single, k = _normalise(samples, stats, self.num_chains)
        self._check_chunk(single, k)
        if self._layout is None:
            self._layout = build_layout(
                samples,
                self.kernel,
                model=self.model,
                model_args=self.model_args,
                model_kwargs=self.model_kwargs,
                dims=self.dims,
                x_arg=self.x_arg,
                single=single,
            )
        draw = np.arange(self._written, self._written + k)
        time = times(stats, self._layout.step_size, k, offset=self._written)
        groups = {
            "posterior": posterior_dataset(samples, self._layout, draw, time),
            "sample_stats": sample_stats_dataset(stats, self._layout, self.num_chains, draw, time),
        }
        if self._schemas is None:  # the first chunk creates the file
            self._create_file(groups, single, k)
        else:
            for g, ds in groups.items():
                _check_schema(self.path, g, self._schemas[g], ds)
            _append_raw(self.path, groups, self._written, self.fsync, commit=True)
        self._single = single
        self._written += k

    def _check_chunk(self, single, k):
        """The chunk has the form of the previous ones and stays within ``num_draws``."""
        if self._single is not None and single != self._single:
            was = "one array" if self._single else "a dict of sites"
            raise ValueError(
                f"the samples of {self.path} were {was}; this chunk is {'one array' if single else 'a dict of sites'}"
            )
        if self.num_draws is not None and self._written + k > self.num_draws:
            raise ValueError(
                f"appending {k} draws to the {self._written} of {self.path} exceeds num_draws={self.num_draws}"
            )

    def _create_file(self, groups, single, k):
        """Write the data groups and the first chunk's draw groups, with the run's attributes."""
        attrs = {**group_attrs(self._layout, self.output_site), **self.attrs}
        static = data_groups(self._layout)
        for ds in list(static.values()) + list(groups.values()):
            ds.attrs.update(attrs)
        k_hint = k if self.num_draws is None else min(k, max(1, self.num_draws))
        root = {_MARK: "mfsample.io.DrawWriter", _SINGLE: int(single), _DRAWS: k}
        _create(self.path, root, static, groups, k_hint, self.compression, self.fsync)
        self._schemas = _file_schemas(self.path, DRAW_GROUPS)


# ---------------------------------------------------------------------------------------------
# predictions from a stored posterior
# ---------------------------------------------------------------------------------------------
def stored_layout(path, kernel=None, model=None, model_args=None, model_kwargs=None, x_arg=0):
    """``(layout, attributes)`` of the posterior stored in ``path`` (its shapes; no draw is read);
    the model arguments default to those of the kernel's last ``init``."""
    model_args, model_kwargs = _arguments(kernel, model_args, model_kwargs)
    with _h5file(path, "r") as f:
        single = bool(f.attrs.get(_SINGLE, 0))
    with _open_group(path, "posterior") as post:
        shapes = {k: v.variable for k, v in post.data_vars.items()}  # shapes only, nothing loaded
        layout = build_layout(
            shapes, kernel, model=model, model_args=model_args, model_kwargs=model_kwargs, x_arg=x_arg, single=single
        )
        attrs = dict(post.attrs)
    return layout, attrs


def _read_batch(path, names, start, stop, size):
    """Draws ``start:stop`` of the posterior's ``names``, padded with the last draw to ``size``
    draws (same shapes for every batch: one compiled evaluation)."""
    with _open_group(path, "posterior") as post:  # closed while the caller writes the batch
        batch = {k: np.asarray(post[k].isel(draw=slice(start, stop)).values) for k in names}
    if stop - start < size:
        batch = {
            k: np.concatenate([v, np.repeat(v[:, -1:], size - (stop - start), axis=1)], axis=1)
            for k, v in batch.items()
        }
    return batch


def _batch_plan(path, layout, batch_draws):
    """``(chains, draws, posterior names read, draws per batch, time)`` of a stored posterior;
    ``batch_draws=None``: about 64 MiB of particles per batch."""
    with _open_group(path, "posterior") as post:
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        names = list(layout.particle_sites + layout.shared_sites) + (["masses"] if "masses" in post.data_vars else [])
        per_draw = sum(post[k].dtype.itemsize * int(np.prod(post[k].shape)) // max(1, draws) for k in names)
        time = np.asarray(post["time"].values, dtype=np.float64)
    if batch_draws is None:
        batch_draws = max(1, 2**26 // max(1, per_draw))
    return chains, draws, names, max(1, min(int(batch_draws), draws)), time


def prediction_batches(path, layout, pred: Predictor, batch_size=None, batch_draws=None):
    """Yield ``(start, stop, f, phi, time)`` over the stored draws, ``batch_draws`` at a time, with
    one compiled evaluation of ``pred`` (the last batch is padded to the others' length)."""
    chains, draws, names, size, time = _batch_plan(path, layout, batch_draws)
    fn = None
    for start in range(0, draws, size):
        stop = min(draws, start + size)
        batch = _read_batch(path, names, start, stop, size)
        sites = layout.particle_sites + layout.shared_sites
        flat, m_flat = flatten_draws({k: batch[k] for k in sites}, batch.get("masses"))
        if fn is None:
            fn = evaluator(
                pred,
                jax.tree.map(lambda v: v[0], (flat, m_flat)),
                chains * size,
                layout.width,
                layout.exponent,
                batch_size,
            )
        f, phi = fn((flat, m_flat))
        f = np.asarray(f).reshape(chains, size, -1)[:, : stop - start]
        if phi is not None:
            phi = np.asarray(phi).reshape(chains, size, layout.width, -1)[:, : stop - start]
        yield start, stop, f, phi, time[start:stop]


def _delete_groups(path, names):
    with _writable(h5py.File, path, "a") as f:  # h5netcdf cannot delete a group; HDF5 can
        for name in names:
            if name in f:
                del f[name]


def _constant_data(pcd, constant_data):
    """``predictions_constant_data``: ``x_eval`` (if any) and the extra variables given."""
    if pcd is None and not constant_data:
        return {}
    pcd = pcd if pcd is not None else xr.Dataset()
    for name, spec in dict(constant_data or {}).items():
        pcd[name] = xr.Variable(*spec)
    return {"predictions_constant_data": pcd}


def write_predictions(
    path,
    x_eval,
    *,
    kernel=None,
    model=None,
    model_args=None,
    model_kwargs=None,
    output_site: str = "f",
    output_fn=None,
    x_arg=0,
    unit_points: int | None = 16,
    batch_size: int | None = None,
    batch_draws: int | None = None,
    constant_data: dict | None = None,
    attrs: dict | None = None,
    compression: str | None = None,
    fsync: bool = False,
) -> int:
    """Add ``predictions`` (and ``predictions_constant_data``) at ``x_eval`` to a streamed file,
    computed from its posterior ``batch_draws`` draws at a time (memory: one batch), exactly as
    :func:`mfsample.to_inference_data` computes them in memory; existing prediction groups are
    replaced.  ``constant_data``: extra ``predictions_constant_data`` variables
    ``{name: (dims, values[, attrs])}``.  Returns the number of draws evaluated (0: nothing to
    predict, e.g. ``x_eval=None`` without ``output_fn``)."""
    layout, post_attrs = stored_layout(path, kernel, model, model_args, model_kwargs, x_arg)
    pred = predictor(layout, x_eval, output_site, output_fn, unit_points)
    run_attrs = {**post_attrs, "output_site": output_site, **dict(attrs or {})}
    _delete_groups(path, ("predictions", "predictions_constant_data"))
    done = 0
    for start, stop, f, phi, time in (
        [] if pred is None else prediction_batches(path, layout, pred, batch_size, batch_draws)
    ):
        groups = prediction_datasets(f, phi, output_site, layout, np.arange(start, stop), time, x_eval)
        pcd = groups.pop("predictions_constant_data", None)
        if start == 0:
            static = _constant_data(pcd, constant_data)
            for ds in list(groups.values()) + list(static.values()):
                ds.attrs.update(run_attrs)
            _add_groups(path, groups, stop - start, compression, static_groups=static)
        else:
            _append_raw(path, groups, start, fsync=False)
        done = stop
    if fsync:
        _fsync(path)
    return done
