"""A sweep's configurations in the diagnostics: select one, or compute on each in turn.

:func:`mfsample.to_inference_data` of a :func:`mfsample.sweep` result stacks its configurations
along a dimension ``config`` (index ``0 .. C-1``) whose coordinates are the swept values
(``temperature`` over ``config``; a game's per-player pair over ``(config, player)``);
:func:`mfsample.experiments.replicate` with a grid gives one such InferenceData per width.  Every
diagnostic takes ``config=``:

* an index ``c`` or a ``{name: value}`` dict (``{"temperature": 1e-3}``) matched against the
  coordinates (to a relative ``1e-9``): the diagnostic of that configuration, equal to the
  diagnostic of the same run converted on its own (``to_inference_data(sweep.config(c))``):
  :func:`select` gives back exactly that InferenceData (the ``config`` dimension and its
  coordinates dropped, the swept scalar values restored as attributes);
* ``None`` (default): the diagnostic of every configuration, stacked along ``config`` with its
  coordinates (:func:`apply`); an input without a ``config`` dimension is passed on unchanged.

The inputs handled alike (``data`` below): an ``arviz.InferenceData``, a dict ``{width:
InferenceData}`` (every value with the same configurations), or a result (``xarray.Dataset`` /
``DataArray``) of a diagnostic computed per configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from ..inference_data.configs import CONFIG_DIM

__all__ = [
    "CONFIG_DIM",
    "has_configs",
    "swept",
    "coordinates",
    "labels",
    "index",
    "select",
    "each",
    "labelled",
    "apply",
    "stack",
]

#: the attribute listing the swept names (comma-separated), written by the conversion
SWEPT_ATTR = "swept"
#: the relative tolerance of a ``{name: value}`` match
RTOL = 1e-9


def _is_inference_data(data) -> bool:
    return callable(getattr(data, "groups", None))


def _is_runs(data) -> bool:
    """A dict ``{width: run}`` (a Dataset is a Mapping too, of its variables)."""
    return isinstance(data, Mapping) and not isinstance(data, (xr.Dataset, xr.DataArray))


def has_configs(data) -> bool:
    """Whether ``data`` (InferenceData, ``{width: InferenceData}`` or a Dataset / DataArray) has a
    ``config`` dimension; anything else has none."""
    if _is_inference_data(data):
        return any(CONFIG_DIM in data[g].dims for g in data.groups())
    if _is_runs(data):
        return any(has_configs(v) for v in data.values())
    if isinstance(data, (xr.Dataset, xr.DataArray)):
        return CONFIG_DIM in data.dims
    return False


def _coordinate_source(data) -> xr.Dataset | xr.DataArray:
    """The Dataset (or DataArray) whose coordinates label ``data``'s configurations; for a dict of
    runs, every run must have the same configurations (``ValueError`` otherwise)."""
    if _is_inference_data(data):
        return next(data[g] for g in data.groups() if CONFIG_DIM in data[g].dims)
    if _is_runs(data):
        without = [k for k, v in data.items() if not has_configs(v)]
        if without:
            raise ValueError(
                f"the runs keyed {without} have no {CONFIG_DIM!r} dimension while the others have one: give "
                "every width the same sweep (or none)"
            )
        tables = {k: _table(_coordinate_source(v)) for k, v in data.items()}
        first_key, first = next(iter(tables.items()))
        for k, table in tables.items():
            if not table.equals(first):
                raise ValueError(
                    f"the runs keyed {first_key!r} and {k!r} have different configurations ({_describe(first)} "
                    f"against {_describe(table)}): sweep every width over the same grid"
                )
        return first
    return data


def swept(source) -> list[str]:
    """The swept names of a ``config``-labelled Dataset: its attribute ``swept`` when present,
    else every coordinate over ``config`` (and ``player``) alone."""
    coords = source.coords
    if SWEPT_ATTR in source.attrs:
        names = [n for n in str(source.attrs[SWEPT_ATTR]).split(",") if n in coords]
    else:
        names = [n for n, c in coords.items() if n != CONFIG_DIM and CONFIG_DIM in c.dims]
    return [n for n in names if set(coords[n].dims) <= {CONFIG_DIM, "player"} and CONFIG_DIM in coords[n].dims]


def _table(source) -> xr.Dataset:
    """The ``config`` coordinates alone: ``config``, the swept values (and ``player``)."""
    names = swept(source)
    extra = {d for n in names for d in source.coords[n].dims if d != CONFIG_DIM and d in source.coords}
    keep = [CONFIG_DIM, *names, *sorted(extra)] if CONFIG_DIM in source.coords else [*names, *sorted(extra)]
    table = xr.Dataset(coords={k: source.coords[k] for k in keep})
    if CONFIG_DIM not in table.coords:
        table = table.assign_coords({CONFIG_DIM: np.arange(source.sizes[CONFIG_DIM])})
    table.attrs[SWEPT_ATTR] = ",".join(names)
    return table


def coordinates(data) -> xr.Dataset:
    """The coordinates of ``data``'s configurations: ``config`` ``0 .. C-1``, the swept values
    (and ``player`` for per-player pairs), as an empty Dataset (attribute ``swept``)."""
    if not has_configs(data):
        raise ValueError(f"the input has no {CONFIG_DIM!r} dimension: it is not a sweep (mf.sweep)")
    return _table(_coordinate_source(data))


def _show(value) -> str:
    value = np.asarray(value, dtype=np.float64)
    if value.ndim:
        return "(" + ", ".join(f"{v:.4g}" for v in value.ravel()) + ")"
    return f"{float(value):.4g}"


def labels(data) -> list[str]:
    """``"temperature=0.001, step_size=0.1"`` for every configuration of ``data``."""
    return _labels(coordinates(data))


def _labels(table: xr.Dataset) -> list[str]:
    names = swept(table)
    return [
        ", ".join(f"{n}={_show(table[n].isel({CONFIG_DIM: c}).values)}" for n in names) or f"{CONFIG_DIM}={c}"
        for c in range(table.sizes[CONFIG_DIM])
    ]


def _describe(table: xr.Dataset) -> str:
    return "; ".join(f"{c}: {label}" for c, label in enumerate(_labels(table)))


def index(data, config) -> int:
    """The index of the configuration ``config`` of ``data``: an index ``0 <= c < C``, or a
    ``{name: value}`` dict matching exactly one configuration (every value to a relative
    ``1e-9``; a per-player pair as a pair).  ``ValueError`` naming the configurations otherwise."""
    table = coordinates(data)
    size = table.sizes[CONFIG_DIM]
    if isinstance(config, Mapping):
        found = np.flatnonzero(_matches(table, config))
        if len(found) != 1:
            what = "no configuration" if not len(found) else f"the configurations {found.tolist()}"
            raise ValueError(
                f"config={dict(config)!r} matches {what}; the configurations are {_describe(table)}: give an "
                "index, or values of the swept hyper-parameters that single out one"
            )
        return int(found[0])
    if isinstance(config, (bool, np.bool_)) or not isinstance(config, (int, np.integer)):
        got = f"{type(config).__name__} {config!r}"
        raise TypeError(f"config must be an index or a {{name: value}} dict of swept values, got {got}")
    if not 0 <= config < size:
        raise ValueError(
            f"config={config} is out of range: there are {size} configurations ({_describe(table)}); give an "
            f"index 0 <= config < {size}"
        )
    return int(config)


def _matches(table: xr.Dataset, point: Mapping) -> np.ndarray:
    """``(C,)`` mask of the configurations whose swept values equal ``point``'s."""
    names = swept(table)
    size = table.sizes[CONFIG_DIM]
    mask = np.ones(size, bool)
    for name, value in point.items():
        if name not in names:
            raise ValueError(f"config={dict(point)!r}: {name!r} is not swept; the swept hyper-parameters are {names}")
        have = table[name].transpose(CONFIG_DIM, ...).values.astype(np.float64).reshape(size, -1)
        try:
            want = np.broadcast_to(np.asarray(value, dtype=np.float64).ravel(), have.shape[1:])
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"config={dict(point)!r}: {name!r} takes {'a number' if have.shape[1] == 1 else 'a pair'} "
                f"(its values are {_describe(table)}), got {value!r}"
            ) from err
        mask &= np.all(np.isclose(have, want, rtol=RTOL, atol=0.0), axis=1)
    return mask


def select(data, config):
    """Configuration ``config`` (index or ``{name: value}``, :func:`index`) of ``data``, as if
    converted on its own: the ``config`` dimension, its coordinates and the ``swept`` attribute
    dropped, the swept scalar values restored as attributes of every InferenceData group."""
    return _take(data, index(data, config))


def _take(data, c: int):
    if _is_inference_data(data):
        source = _coordinate_source(data)
        values = {n: source[n].isel({CONFIG_DIM: c}).values for n in swept(source)}
        point = {n: float(v) for n, v in values.items() if np.ndim(v) == 0}
        return type(data)(**{g: _one_group(data[g], c, point) for g in data.groups()})
    if _is_runs(data):
        return {k: _take(v, c) for k, v in data.items()}
    return _drop_configs(data.isel({CONFIG_DIM: c}), swept(data))


def _drop_configs(obj, names):
    """``obj`` after ``isel(config=c)`` without the coordinates (and the ``swept`` attribute) that
    labelled the configurations."""
    obj = obj.drop_vars([n for n in (CONFIG_DIM, *names) if n in obj.coords])
    used = set(obj.dims) if isinstance(obj, xr.DataArray) else {d for v in obj.data_vars.values() for d in v.dims}
    obj = obj.drop_vars([d for d in ("player",) if d in obj.coords and d not in used])
    obj.attrs = {k: v for k, v in obj.attrs.items() if k != SWEPT_ATTR}
    return obj


def _one_group(ds: xr.Dataset, c: int, point: dict) -> xr.Dataset:
    """One group at configuration ``c``, with the attributes of a run converted on its own: the
    swept scalar values ``point`` in place of the ``swept`` list."""
    out = _drop_configs(ds.isel({CONFIG_DIM: c}), swept(ds)) if CONFIG_DIM in ds.dims else ds.copy(deep=False)
    out.attrs = {**{k: v for k, v in ds.attrs.items() if k != SWEPT_ATTR}, **point}
    return out


def _indices(data, config) -> list[int] | None:
    """The configurations to visit: ``[config]``, every one (``config=None``), or ``None`` for data
    without a ``config`` dimension (where ``config`` must be ``None``)."""
    if not has_configs(data):
        if config is not None:
            raise ValueError(
                f"config={config!r} was given but the input has no {CONFIG_DIM!r} dimension (it is not the "
                "conversion of a sweep): leave config out"
            )
        return None
    return [index(data, config)] if config is not None else list(range(coordinates(data).sizes[CONFIG_DIM]))


def each(data, config=None) -> list[tuple]:
    """``[(label, one configuration)]`` (:func:`labels`, :func:`select`) for ``config`` or, with
    ``config=None``, every configuration; ``[(None, data)]`` for data without a ``config`` dimension."""
    indices = _indices(data, config)
    if indices is None:
        return [(None, data)]
    names = labels(data)
    return [(names[c], _take(data, c)) for c in indices]


def labelled(obj):
    """A Dataset / DataArray with its ``config`` coordinate replaced by the configurations' labels
    (``"temperature=0.001"``) and the swept coordinates dropped: ArviZ's plots title panels so."""
    names = _labels(_table(obj))
    return _drop_configs(obj, swept(obj)).assign_coords({CONFIG_DIM: names})


def apply(data, config, fn: Callable, **aligned):
    """``fn(one, **aligned)`` on the configurations of ``data``.

    - ``data`` without a ``config`` dimension: ``fn(data, **aligned)`` (``config`` must be ``None``);
    - ``config`` given: ``fn`` of the selected configuration (:func:`select`);
    - ``config=None``: ``fn`` of every configuration, stacked along ``config`` with its
      coordinates (:func:`stack`).

    ``aligned`` values that have a ``config`` dimension themselves (e.g. an analytic reference
    per configuration, same number of configurations) are taken at the same configuration.
    """
    indices = _indices(data, config)
    if indices is None:
        return fn(data, **aligned)
    table = coordinates(data)
    size = table.sizes[CONFIG_DIM]
    for name, value in aligned.items():
        if has_configs(value) and value.sizes[CONFIG_DIM] != size:
            raise ValueError(
                f"{name} has {value.sizes[CONFIG_DIM]} configurations but the runs have {size}: give one "
                "value per configuration, or none"
            )
    results = [
        fn(_take(data, c), **{k: _take(v, c) if has_configs(v) else v for k, v in aligned.items()}) for c in indices
    ]
    return results[0] if config is not None else stack(results, table)


def stack(results: list, table: xr.Dataset):
    """Per-configuration ``results`` (Datasets, DataArrays or numbers) along ``config``, labelled
    by ``table`` (:func:`coordinates`).

    Variables absent from some results are NaN there, as are coordinates (e.g. ``time``, when
    the step size is swept) outside a result's own values; attributes equal in every result are
    kept, the others become variables over ``config`` (NaN where absent).
    """
    coords = dict(table.coords)
    if not isinstance(results[0], (xr.Dataset, xr.DataArray)):
        return xr.DataArray(np.asarray(results), dims=(CONFIG_DIM,), coords=coords)
    first = results[0].attrs
    keys = dict.fromkeys(k for r in results for k in r.attrs)
    varying = [k for k in keys if not all(k in r.attrs and k in first and _same(r.attrs[k], first[k]) for r in results)]
    if varying and isinstance(results[0], xr.Dataset):
        results = [r.assign({k: r.attrs.get(k, np.nan) for k in varying}) for r in results]
    out = xr.concat(
        results,
        dim=CONFIG_DIM,
        data_vars="all",
        coords="different",
        compat="equals",
        join="outer",
        combine_attrs="drop_conflicts",
    )
    out = out.assign_coords(coords)
    out.attrs = {k: v for k, v in first.items() if k not in varying}
    out.attrs[SWEPT_ATTR] = table.attrs[SWEPT_ATTR]
    return out


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a == b
