"""Results on disk: shard files, the merged Dataset, provenance.

A sweep folder holds::

    sweep.json          the spec (after its scale), the sweep id and every shard's key
    shards/KEY.nc       one finished shard (dim ``run``), named by the hash of its configs
    result.nc           the merged Dataset (dims: the swept names plus ``step``)
    figures/*.png       figures drawn from result.nc

Every file is written to a temporary name in the same folder and renamed into place, so a
file with a final name is always complete.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .config import ConfigError, to_dict

ENGINE = "h5netcdf"


# ---------------------------------------------------------------- files
def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_nc(ds: xr.Dataset, path: Path) -> None:
    _atomic(path, lambda tmp: ds.to_netcdf(tmp, engine=ENGINE))


def _read_nc(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=ENGINE) as ds:
        return ds.load()


def result_path(folder: Path) -> Path:
    return Path(folder) / "result.nc"


def shard_file(folder: Path, key: str) -> Path:
    return Path(folder) / "shards" / f"{key}.nc"


def shard_done(folder: Path, key: str) -> bool:
    return shard_file(folder, key).exists()


def read_shard(folder: Path, key: str) -> xr.Dataset:
    return _read_nc(shard_file(folder, key))


def write_shard(folder: Path, key: str, ds: xr.Dataset) -> None:
    _write_nc(ds, shard_file(folder, key))


def write_result(folder: Path, ds: xr.Dataset) -> None:
    _write_nc(ds, result_path(folder))


def open_sweep(out, spec, sweep_id: str, shards) -> Path:
    """Create (or reopen, for the same sweep) the output folder."""
    folder = Path(out)
    meta_path = folder / "sweep.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("sweep_id") != sweep_id:
            raise ConfigError(f"{folder} holds the results of another sweep "
                              f"('{old.get('name', '?')}', scale {old.get('scale', '?')}); "
                              f"choose a new --out folder")
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty and holds no twolayer sweep; "
                          f"choose a new --out folder")
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    meta = {"name": spec.name, "family": spec.family, "scale": spec.scale,
            "sweep_id": sweep_id, "spec": spec.raw,
            "shards": [{"key": s.key, "runs": len(s.configs), "desc": s.desc} for s in shards]}
    _atomic(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1, default=str)))
    return folder


# ---------------------------------------------------------------- labels and merging
def label_runs(ds: xr.Dataset, shard) -> xr.Dataset:
    """Give each run its axis values as coordinates along ``run``."""
    names = list(shard.coords[0]) if shard.coords and shard.coords[0] else []
    for name in names:
        ds = ds.assign_coords({name: ("run", np.asarray([c[name] for c in shard.coords]))})
    ds.attrs["shard"] = shard.key
    ds.attrs["configs"] = json.dumps([to_dict(c) for c in shard.configs], default=str)
    return ds


def _fill_missing(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """Variables recorded by only some groups (e.g. parameters for small widths) get NaN."""
    every = {}
    for ds in datasets:
        for k, v in ds.data_vars.items():
            every.setdefault(k, v)
    out = []
    for ds in datasets:
        for k, v in every.items():
            if k not in ds:
                shape = tuple(ds.sizes.get(d, v.sizes[d]) for d in v.dims)
                ds = ds.assign({k: (v.dims, np.full(shape, np.nan))})
        out.append(ds)
    return out


def merge(spec, datasets: list[xr.Dataset]) -> xr.Dataset:
    """Shards (dim ``run``) -> one Dataset whose dims are the swept names plus ``step``."""
    ds = xr.concat(_fill_missing(datasets), dim="run", join="outer", data_vars="all",
                   coords="different", compat="equals", combine_attrs="drop_conflicts")
    dims = [a.dim for a in spec.axes]
    if dims:
        index = pd.MultiIndex.from_arrays([ds[d].values for d in dims], names=dims)
        extra = [n for a in spec.axes for n in a.names[1:]]
        ds = ds.drop_vars(dims + extra)
        ds = ds.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "run")).unstack("run")
        for axis in spec.axes:  # the spec's order of values, and the zipped names
            ds = ds.reindex({axis.dim: [v[0] for v in axis.values]})
            for j, name in enumerate(axis.names[1:], 1):
                ds = ds.assign_coords({name: (axis.dim, [v[j] for v in axis.values])})
        order = dims + [d for d in ds.dims if d not in dims]
        ds = ds.transpose(*order)
    else:
        ds = ds.isel(run=0)
    ds.attrs = provenance(spec)
    from .analysis import setting

    loss = setting(ds, "loss", None)  # which training loss (e.g. sum or mean) the runs used
    if isinstance(loss, str) and "train_loss" in ds:
        ds["train_loss"].attrs["loss"] = loss
    return ds


# ---------------------------------------------------------------- provenance and loading
def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "."],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def provenance(spec) -> dict:
    import jax

    from . import __version__

    seeds = sorted({v for a in spec.axes for n, vals in zip(a.names, zip(*a.values))
                    if n in ("seed", "data_seed") for v in vals}
                   | {spec.train.get("seed", 0)})
    return {
        "title": spec.name,
        "description": spec.description,
        "family": spec.family,
        "scale": spec.scale,
        "sweep": json.dumps(spec.raw, default=str),
        "seeds": json.dumps(seeds),
        "twolayer_version": __version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def load(folder) -> xr.Dataset:
    """The merged Dataset of a sweep folder (or of a single result file)."""
    path = Path(folder)
    if path.is_file():
        return _read_nc(path)
    if result_path(path).exists():
        return _read_nc(result_path(path))
    if not (path / "sweep.json").exists():
        raise ConfigError(f"{path} holds no twolayer sweep (no sweep.json)")
    raise ConfigError(f"{path} has no merged result yet; rerun the sweep to finish it "
                      f"(`twolayer info {path}` lists what is missing)")


def info(folder) -> dict:
    """What is done, what is missing, dims and provenance of a sweep folder."""
    path = Path(folder)
    meta_path = path / "sweep.json"
    if not meta_path.exists():
        raise ConfigError(f"{path} holds no twolayer sweep (no sweep.json)")
    meta = json.loads(meta_path.read_text())
    done = [s for s in meta["shards"] if shard_done(path, s["key"])]
    out = {"name": meta["name"], "family": meta["family"], "scale": meta["scale"],
           "shards_done": len(done), "shards_total": len(meta["shards"]),
           "runs_done": sum(s["runs"] for s in done),
           "runs_total": sum(s["runs"] for s in meta["shards"]),
           "missing": [s for s in meta["shards"] if s not in done],
           "result": str(result_path(path)) if result_path(path).exists() else None}
    if out["result"]:
        with xr.open_dataset(result_path(path), engine=ENGINE) as ds:
            out["dims"] = dict(ds.sizes)
            out["variables"] = sorted(ds.data_vars)
            out["provenance"] = {k: v for k, v in ds.attrs.items() if k != "sweep"}
    return out
