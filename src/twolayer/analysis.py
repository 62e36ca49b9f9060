"""Analysis of training results with plain xarray.

Works on Datasets produced by ``twolayer.train.train_group`` (dim ``run``) or by merged
sweeps, whose dims are the swept config names plus the checkpoint dim (``step``, or
``time`` for gradient flow) and the family's own dims. A family's own analysis lives in its
folder (``families/<name>/analysis.py``). Groups with different step grids merged together hold NaN where a group has no
checkpoint; ``final`` takes each run's last recorded value.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .store import JSON_SETTINGS

OUTCOMES = ("recovered", "not recovered", "unresolved", "diverged")
TREND_FLAT = 0.01  # |d log10(test error) / d log10(t)| below this: the test error has stalled


CHECKPOINT_DIMS = ("step", "time")  # gradient descent and Adam: step; gradient flow: time


def checkpoint_dim(da) -> str | None:
    """The checkpoint dim of a result: ``step`` (gradient descent, Adam) or ``time``
    (gradient flow); None for variables recorded once per run."""
    return next((d for d in CHECKPOINT_DIMS if d in da.dims), None)


def final(da):
    """Value at each run's last recorded checkpoint: ``da.ffill(dim).isel({dim: -1})`` along
    the checkpoint dim (``step``, or ``time`` for gradient flow).

    Forward filling first makes this right for merged groups whose checkpoint grids differ
    (NaN where a group has no checkpoint). Variables without a checkpoint dim are returned
    unchanged. Works on a DataArray or a Dataset."""
    dim = checkpoint_dim(da)
    if dim is None:
        return da
    return da.ffill(dim).isel({dim: -1})


_MISSING = object()


def sweep_spec(ds) -> dict:
    """The sweep spec stored with a Dataset (its ``sweep`` attribute, after the scale), or {}."""
    raw = ds.attrs.get("sweep")
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def setting(ds, name: str, default=_MISSING):
    """The value of a config field for the runs of ``ds``: a coordinate or variable (a
    swept name, or a setting that differs between runs: a DataArray), else an attribute
    (a setting every run shares: results carry all of them, defaults included), else
    ``default``; ``ValueError`` without one."""
    if name in ds.coords or (isinstance(ds, xr.Dataset) and name in ds.data_vars):
        return ds[name]
    if name in ds.attrs:
        value = ds.attrs[name]
        if name in str(ds.attrs.get(JSON_SETTINGS, "")).split():
            value = json.loads(value)
        return value.item() if isinstance(value, np.generic) else value
    if default is not _MISSING:
        return default
    raise ValueError(f"'{name}' is neither a coordinate, a variable nor an attribute of the "
                     f"Dataset; pass {name}=... explicitly")


# ---------------------------------------------------------------- outcome at the limit
def outcome(ds, recovered: str = "recovered", flat: float = TREND_FLAT) -> xr.DataArray:
    """Each run's outcome, read as a statement about where training ENDS: "recovered"
    (``recovered`` true at the end), "diverged", "not recovered" (the run reached
    ``loss_tol``, or its test error has stalled: ``trend`` above -``flat``, so its limit is
    where it sits) and "unresolved" (stopped by a budget while its test error was still
    falling: where it ends is not known). ``recovered`` may name another boolean variable,
    e.g. ``polished_recovered``; for those the polish reached a minimum, so nothing is
    unresolved. Results without ``trend`` count every unconverged run as unresolved."""
    rec = final(ds[recovered]).astype(bool)
    out = xr.full_like(rec, "not recovered", dtype="<U13")
    if not recovered.startswith("polished_") and "converged" in ds:
        moving = ~ds["converged"].astype(bool)
        if "trend" in ds:
            moving = moving & ~(ds["trend"] >= -flat)
        out = out.where(~moving, "unresolved")
    out = out.where(~rec, "recovered")
    if "diverged" in ds:
        out = out.where(~ds["diverged"].astype(bool), "diverged")
    out.name = "outcome"
    out.attrs["long_name"] = "outcome at the limit"
    return out


def outcome_counts(ds, dim, **kw) -> xr.Dataset:
    """How many runs of each OUTCOME along ``dim`` (a name or list), as a Dataset of counts."""
    o = outcome(ds, **kw)
    return xr.Dataset({name.replace(" ", "_"): (o == name).sum(dim) for name in OUTCOMES})


# ---------------------------------------------------------------- recovery
def recovery_rate(ds, dim) -> xr.DataArray:
    """Fraction of runs recovered (``recovered`` true) along ``dim`` (a name or a list of
    names, e.g. the seed dims). Missing runs (NaN after a merge) are left out of the count."""
    r = ds["recovered"] if isinstance(ds, xr.Dataset) else ds
    r = final(r)
    if r.dtype == object:
        r = r.where(r.notnull())
    r = r.astype(float)
    out = r.mean(dim, skipna=True)
    out.name = "recovery_rate"
    out.attrs["long_name"] = "fraction recovered"
    return out


__all__ = ["OUTCOMES", "CHECKPOINT_DIMS", "checkpoint_dim", "sweep_spec", "setting", "final",
           "recovery_rate", "outcome", "outcome_counts"]


def run_config(ds, **point) -> dict:
    """The resolved config of one run (every field, defaults included) as a dict, read back
    from the ``run_config`` variable that ``sweep`` and ``run`` store (JSON text per run);
    ``point`` selects the run by its axis values, e.g. ``run_config(ds, n_train=4,
    imbalance=0.5)``. Turn it into the family's config object with
    ``twolayer.config.make_config(twolayer.family.get(cfg["family"]).Config, cfg)``."""
    import json

    if "run_config" not in ds:
        raise KeyError("this Dataset holds no run_config (written by twolayer before 0.2?)")
    da = ds["run_config"].sel(**point) if point else ds["run_config"]
    if da.ndim:
        raise ValueError(f"{da.size} runs match; give a value for each of {', '.join(da.dims)}")
    return json.loads(str(da.item()))


def fit_exponent(ds: xr.Dataset, x: str, n_boot: int = 2000) -> xr.Dataset:
    """Log-log least squares of ``crossing`` against the point dim ``x``, for every
    combination of the other point dims: ``slope`` (the exponent), ``intercept`` (log),
    ``points`` used (flag ok, finite, positive), and the interval ``slope_lo`` /
    ``slope_hi``: the 2.5 % / 97.5 % percentiles over ``n_boot`` refits with each point's log
    crossing drawn from a normal whose 95 % interval is the point's [ci_lo, ci_hi] (a
    parametric bootstrap from the per-point intervals; our choice)."""
    others = [d for d in ds["crossing"].dims if d != x]
    stacked = ds.stack(_other=others) if others else ds.expand_dims(_other=[0])
    rng = np.random.default_rng(0)
    rows = []
    for i in range(stacked.sizes["_other"]):
        sel = stacked.isel(_other=i)
        xv = np.asarray(sel[x].values, float)
        c, lo, hi = (np.asarray(sel[k].values, float) for k in ("crossing", "ci_lo", "ci_hi"))
        ok = (sel["flag"].values == "ok") & np.isfinite(c) & (c > 0) & (xv > 0) & (lo > 0)
        if ok.sum() < 2:
            rows.append((np.nan,) * 4 + (int(ok.sum()),))
            continue
        lx, lc = np.log(xv[ok]), np.log(c[ok])
        slope, icept = np.polyfit(lx, lc, 1)
        sd = (np.log(hi[ok]) - np.log(lo[ok])) / (2 * 1.96)
        draws = lc[None, :] + sd[None, :] * rng.standard_normal((n_boot, ok.sum()))
        slopes = np.polyfit(lx, draws.T, 1)[0]
        q = np.percentile(slopes, [2.5, 97.5])
        rows.append((slope, icept, q[0], q[1], int(ok.sum())))
    arr = np.asarray(rows, float)
    out = xr.Dataset({k: ("_other", arr[:, j]) for j, k in
                      enumerate(("slope", "intercept", "slope_lo", "slope_hi", "points"))})
    out["points"] = out["points"].astype(int)
    if len(others) > 1:
        index = stacked.indexes["_other"]
        out = out.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "_other"))
        out = out.unstack("_other")
    elif others:
        out = out.rename({"_other": others[0]}).assign_coords(
            {others[0]: ds[others[0]].values})
    else:
        out = out.isel(_other=0)
    out.attrs = {"x": x, "y": f"crossing of {ds.attrs.get('boundary_axis', '?')}"}
    return out
