"""Results on disk: shard files, the merged Dataset, provenance.

A sweep folder holds:

    sweep.json          the manifest: the spec (after its scale), every shard's key
    shards/KEY.nc       one finished shard (dim run), named by the hash of its configs
    state/KEY.npz       the saved training state of a shard still in progress
    result.nc           the merged Dataset (dims: the swept names plus step)
    figures/*.png       figures drawn from result.nc
    jobs/               submitit's files, when shards ran as jobs (twolayer submit)
    .lock               held (flock) by the sweep command working on the folder

Every file is written to a temporary name in the same folder, flushed to disk and renamed
into place, so a file with a final name is always complete: a shard is done exactly when
its file exists (and it is checked on reading). A shard file keeps its runs' configs, so
finished runs are found from the files themselves, whatever sweep.json says. Temporary
files of a killed process are removed (from the folder and its subfolders) when the folder
is next opened.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .config import ConfigError, to_dict

ENGINE = "h5netcdf"


# ---------------------------------------------------------------- files
TMP = ".tmp-"  # infix of temporary files (unique per process and write)


def _atomic(path: Path, write) -> None:
    # unique name: workers on several hosts may write the same shard (a retried task)
    tmp = path.with_name(f".{path.name}{TMP}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


COMPRESSION = {"zlib": True, "complevel": 4}  # netCDF-4 deflate (gzip level 4), lossless


def _encoding(ds: xr.Dataset) -> dict:
    """Compress every numeric array (not scalars, strings or empty arrays)."""
    return {k: dict(COMPRESSION) for k, v in ds.variables.items()
            if v.ndim and v.size and v.dtype.kind in "biuf"}


def _write_nc(ds: xr.Dataset, path: Path) -> None:
    # without the encodings of files read before (their chunk sizes): the same file whether
    # a sweep's shards came from memory or from disk
    ds = ds.drop_encoding()
    _atomic(path, lambda tmp: ds.to_netcdf(tmp, engine=ENGINE, encoding=_encoding(ds)))


def _read_nc(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=ENGINE) as ds:
        return ds.load()


def result_path(folder: Path) -> Path:
    """Path of the merged result file of a sweep folder: ``folder/result.nc``."""
    return Path(folder) / "result.nc"


def shard_file(folder: Path, key: str) -> Path:
    return Path(folder) / "shards" / f"{key}.nc"


def shard_done(folder: Path, key: str) -> bool:
    return shard_file(folder, key).exists()


def write_shard(folder: Path, key: str, ds: xr.Dataset) -> None:
    _write_nc(ds, shard_file(folder, key))


def write_result(folder: Path, ds: xr.Dataset) -> None:
    _write_nc(ds, result_path(folder))


UNREADABLE_NC = (OSError, ValueError, KeyError, RuntimeError, EOFError)


def read_done_shard(folder: Path, key: str) -> xr.Dataset | None:
    """A finished shard, or None when it is missing or unreadable. An unreadable file (not
    written by twolayer's atomic writer, e.g. a truncated copy) is moved aside to
    ``KEY.nc.corrupt`` so that the shard is trained again."""
    path = shard_file(folder, key)
    if not path.exists():
        return None
    try:
        ds = _read_nc(path)
        if ds.attrs.get("shard") == key:
            return ds
    except UNREADABLE_NC:
        pass
    _set_aside(path)
    return None


def _set_aside(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.replace(path, path.with_name(path.name + ".corrupt"))


def shard_configs(folder: Path) -> dict[str, list[dict]]:
    """Every finished shard of a folder: its key and its runs' configs (as dicts), read from
    the files' attributes (not from sweep.json: a damaged manifest loses nothing). An
    unreadable file is moved aside (``.corrupt``)."""
    out = {}
    for path in sorted((Path(folder) / "shards").glob("*.nc")):
        try:
            with xr.open_dataset(path, engine=ENGINE) as ds:
                key, raw = ds.attrs.get("shard"), ds.attrs.get("configs")
                fmt = int(ds.attrs.get("shard_format", 2))
            if key != path.stem or not isinstance(raw, str):
                raise ValueError("not a shard")
            configs = json.loads(raw)
        except UNREADABLE_NC:
            _set_aside(path)
            continue
        out[key] = (fmt, configs)
    return out


def read_meta(folder) -> dict | None:
    """A folder's sweep.json as a dict; None when there is none; raises ``ConfigError`` when
    it cannot be read (truncated, not JSON)."""
    path = Path(folder) / "sweep.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("shards", []), list):
            raise ValueError("not a manifest")
        return meta
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is unreadable ({type(err).__name__}: truncated or not a "
                          f"sweep manifest); rerun the sweep with its spec to rebuild it (its "
                          f"finished shards are kept)") from None


OURS = {"sweep.json", "result.nc", "shards", "state", "figures", "run.json", "run.png",
        "jobs"}  # jobs/: submitit's files (twolayer submit, --executor slurm)
"""What twolayer writes in an output folder (besides .lock and temporary files)."""


def _ours(p: Path) -> bool:
    return p.name in OURS or p.name == LOCK or TMP in p.name


def check_folder(out, kind: str = "sweep") -> str:
    """What an output folder holds, without writing anything: ``"new"`` (missing or empty),
    ``"sweep"`` (a sweep.json, readable or not), ``"run"`` (a run.json) or ``"remains"``
    (twolayer's files without a manifest: a sweep whose sweep.json was lost). Refuses a file,
    a folder holding other files, and a folder holding a result of the other ``kind``."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; choose a new --out folder")
    if not folder.exists():
        return "new"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{folder} is not writable; choose another --out folder")
    names = {p.name for p in folder.iterdir()}
    if any(not _ours(folder / n) for n in names):
        raise ConfigError(f"{folder} is not empty and holds no twolayer sweep; "
                          f"choose a new --out folder")
    if "sweep.json" in names:
        held = "sweep"
    elif "run.json" in names:
        held = "run"
    elif names - {LOCK} - {n for n in names if TMP in n}:
        held = "remains"
    else:
        return "new"
    if kind == "run" and held != "run":
        raise ConfigError(f"{folder} holds the results of a sweep; `run --out` writes only into "
                          f"a new folder or one of its own; choose a new --out folder")
    if kind == "sweep" and held == "run":
        raise ConfigError(f"{folder} holds the result of a single run (run.json); choose a "
                          f"new --out folder")
    return held


def remove_temporaries(folder: Path) -> None:
    """Remove what killed writers left (``.NAME.tmp-PID-RAND``) in the folder and in its
    subfolders, and saved training states of shards already finished."""
    folder = Path(folder)
    for place in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
        for tmp in place.glob(f".*{TMP}*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
    if (folder / "state").is_dir():
        for saved in (folder / "state").glob("*.npz"):  # killed between shard and clear
            if shard_done(folder, saved.stem):
                saved.unlink(missing_ok=True)


LOCK = ".lock"


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock on the folder; another holder is a clear refusal. The OS drops
    the lock when its process dies, so a killed sweep leaves no stale lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise ConfigError(f"{folder} is in use by another twolayer sweep ({holder}); wait "
                              f"for it to finish or choose another --out folder") from None
        except OSError as err:  # a filesystem without locks (some network mounts)
            print(f"twolayer: warning: cannot lock {folder} ({err.strerror}); do not start a "
                  f"second sweep on it", file=sys.stderr, flush=True)
        os.ftruncate(fd, 0)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def lock_holder(folder) -> str | None:
    """Who holds the folder's lock (a running sweep), or None."""
    try:
        import fcntl
    except ImportError:
        return None
    path = Path(folder) / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 200).decode(errors="replace").strip() or "another process"
    except OSError:
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_folder(out, check, kind: str = "sweep"):
    """Create (or reopen) an output folder and hold its lock: ``check(held)`` (``held`` as
    ``check_folder`` returns it) refuses what may not be written there; it is called before
    anything is created and again under the lock. Temporaries of killed writers are removed."""
    folder = Path(out)
    check(check_folder(folder, kind))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {folder}: {err.strerror}") from None
    with _locked(folder):
        check(check_folder(folder, kind))  # again, now that no other sweep can write
        remove_temporaries(folder)
        yield folder


def write_meta(folder: Path, meta: dict) -> None:
    """Write sweep.json (atomically)."""
    for sub in ("shards", "state"):
        (folder / sub).mkdir(exist_ok=True)
    _atomic(folder / "sweep.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1,
                                                                          default=str)))


UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class TrainingState:
    """The saved training state of one shard (``state/KEY.npz``): what the engine needs to
    continue a long shard mid-run after the process was killed. Saved at most every
    ``every`` seconds (between the engine's chunks of steps), removed once the shard file
    is written."""

    def __init__(self, folder, key: str, every: float = 60.0):
        self.path = Path(folder) / "state" / f"{key}.npz"
        self.every = float(every)

    def load(self) -> dict | None:
        """The saved arrays by name, or None (nothing saved; an unreadable file is removed)."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except UNREADABLE:  # torn or foreign: start the shard over
            self.clear()
            return None

    def save(self, arrays: dict) -> None:
        """Write ``arrays`` (name to numpy array) atomically, replacing the saved state."""
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        _atomic(self.path, write)

    def saved_step(self) -> int | None:
        """The step the saved state has reached (None: nothing saved, or unreadable)."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                return int(z["now"])
        except UNREADABLE:
            return None

    def clear(self) -> None:
        """Remove the saved state, if any."""
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------- labels and merging
def label_runs(ds: xr.Dataset, shard) -> xr.Dataset:
    """Give each run its axis values as coordinates along ``run``."""
    names = list(shard.coords[0]) if shard.coords and shard.coords[0] else []
    for name in names:
        ds = ds.assign_coords({name: ("run", np.asarray([c[name] for c in shard.coords]))})
    ds.attrs["shard"] = shard.key
    ds.attrs["shard_format"] = shard.format
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


JSON_SETTINGS = "json_settings"  # attribute: names of the settings stored as JSON text


def _encode(value):
    """A setting as a netCDF attribute: str, int and float as they are, anything else
    (bool, None, lists) as JSON text (its name listed in ``json_settings``)."""
    if isinstance(value, (str, float)) or (isinstance(value, int) and not isinstance(value, bool)):
        return value, False
    return json.dumps(value, default=str), True


_SCALARS = (str, int, bool, type(None))


def _json_key(value):
    """A hashable stand-in for a setting's JSON text (two values have equal keys exactly when
    ``json.dumps`` writes them alike): a number keeps its type (1, 1.0 and true differ in
    JSON), a float its repr (-0.0 is not 0.0), lists and tuples are alike."""
    t = type(value)
    if t in _SCALARS:
        return t, value
    if t is float:
        return t, repr(value)
    if t in (list, tuple):
        return list, tuple(_json_key(v) for v in value)
    return None, json.dumps(value, sort_keys=True, default=str)


def _shared(name: str, configs: list[dict]) -> bool:
    """Whether every config writes ``name`` alike in JSON (``_json_key``). Fast path for
    10^5 runs: one scalar value of one type throughout (C-level count and set), a float
    also by its repr; otherwise value by value."""
    col = [c.get(name) for c in configs]
    first = col[0]
    t = type(first)
    if ((t in _SCALARS or t is float) and col.count(first) == len(col)
            and len(set(map(type, col))) == 1
            and (t is not float or len(set(map(repr, col))) == 1)):
        return True
    key = _json_key(first)
    return all(_json_key(v) == key for v in col)


def settings_attrs(configs: list[dict]) -> tuple[dict, list[str]]:
    """The settings every run shares, as attributes (encoded by ``_encode``), and the
    names of the settings that differ between runs."""
    attrs, as_json, varying = {}, [], []
    for name in configs[0]:
        if not _shared(name, configs):
            varying.append(name)
            continue
        value, is_json = _encode(json.loads(json.dumps(configs[0].get(name), default=str)))
        attrs[name] = value
        if is_json:
            as_json.append(name)
    attrs[JSON_SETTINGS] = " ".join(as_json)
    return attrs, varying


def _configs_of(ds: xr.Dataset) -> list[dict]:
    raw = ds.attrs.get("configs")
    if not isinstance(raw, str):
        raise ConfigError(f"shard {ds.attrs.get('shard', '?')} holds no run configs")
    return json.loads(raw)


def _run_values(values: list) -> np.ndarray:
    """One setting's per-run values as a coordinate: numbers or strings as they are,
    anything else (None, lists) as JSON text."""
    if all(isinstance(v, (int, float, str)) for v in values) and len({type(v) for v in values}) == 1:
        return np.asarray(values)
    return np.asarray([json.dumps(v, default=str) for v in values])


def merge(spec, datasets: list[xr.Dataset]) -> xr.Dataset:
    """Shards (dim ``run``) -> one Dataset whose dims are the swept names plus ``step``.

    The runs' settings go with it: a setting every run shares is an attribute (defaults
    included; ``setting`` reads it back), one that differs between runs but is not an axis
    (e.g. a ``data_seed`` that follows ``seed``) is a coordinate over the axes' dims."""
    configs = [_configs_of(d) for d in datasets]
    attrs, varying = settings_attrs([c for cs in configs for c in cs])
    axis_names = {n for a in spec.axes for n in a.names}
    extra_coords = [n for n in varying if n not in axis_names]
    labelled = []
    for d, cs in zip(datasets, configs):
        d = d.assign_coords({n: ("run", _run_values([c[n] for c in cs])) for n in extra_coords})
        d = d.assign({RUN_CONFIG: ("run", np.array([json.dumps(c, sort_keys=True, default=str)
                                                    for c in cs], dtype=object))})
        d.attrs.pop("configs", None)
        labelled.append(d)
    datasets = labelled
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
    ds.attrs = {**attrs, **provenance(spec)}
    if isinstance(attrs.get("loss"), str) and "train_loss" in ds:
        ds["train_loss"].attrs["loss"] = attrs["loss"]  # which training loss the runs used
    return describe(ds)


RUN_CONFIG = "run_config"  # variable: each run's resolved config, as JSON text
CONVENTIONS = "CF-1.10"
CHECKPOINTS = {"step": "training step (updates of gradient descent or Adam)",
               "time": "gradient-flow time (in units of learning_rate * step)"}


def describe(ds: xr.Dataset) -> xr.Dataset:
    """CF-style attributes (in place, and returned): a ``long_name`` on every variable and
    coordinate that has none (a setting: its config field's doc; the checkpoint dims; a
    family's index dim: "index along NAME"), and ``Conventions``. Units are the families'
    declared ones (``Variable.units``), set by the engine."""
    from .config import field_specs
    from .family import get

    try:
        specs = field_specs(get(ds.attrs.get("family")).Config)
    except (ConfigError, TypeError):
        specs = {}
    for name in [*ds.coords, *ds.data_vars]:
        attrs = ds[name].attrs
        if attrs.get("long_name"):
            continue
        if name in specs and specs[name].metadata.get("doc"):
            attrs["long_name"] = specs[name].metadata["doc"]
        elif name in CHECKPOINTS:
            attrs["long_name"] = CHECKPOINTS[name]
        elif name == RUN_CONFIG:
            attrs["long_name"] = "the run's resolved config (JSON; twolayer.analysis.run_config)"
        elif name in ds.dims:
            attrs["long_name"] = f"index along {name}"
        else:
            attrs["long_name"] = name.replace("_", " ")
    ds.attrs["Conventions"] = CONVENTIONS
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


def read_result(path) -> xr.Dataset:
    """A result file, loaded; ``ConfigError`` (one line) when it cannot be read."""
    path = Path(path)
    try:
        return _read_nc(path)
    except UNREADABLE_NC as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = ("rerun the sweep with its spec to rebuild it from its shards"
                if (path.parent / "sweep.json").exists() and path.name == "result.nc"
                else "it is truncated or not a netCDF file")
        raise ConfigError(f"cannot read {path} ({reason[:120]}); {hint}") from None


def load(folder) -> xr.Dataset:
    """The merged Dataset of a sweep folder (or of a single result file), loaded into
    memory. Raises ``ConfigError`` for a folder that holds no sweep or no merged result yet
    (an interrupted sweep: rerun it to finish), and for an unreadable result file."""
    path = Path(folder)
    if path.is_file():
        return read_result(path)
    if result_path(path).exists():
        return read_result(result_path(path))
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if not (path / "sweep.json").exists():
        raise ConfigError(f"{path} holds no twolayer sweep (no sweep.json)")
    raise ConfigError(f"{path} has no merged result yet; rerun the sweep to finish it "
                      f"(`twolayer info {path}` lists what is missing)")


def info(folder) -> dict:
    """What is done, what is missing, dims and provenance of a sweep folder (what
    ``twolayer info`` prints), as a dict: ``name``, ``family``, ``scale``, ``shards_done``,
    ``shards_total``, ``runs_done``, ``runs_total``, ``missing`` (one dict per unfinished
    shard, with ``resumes_at_step`` when a training state is saved), ``running`` (the lock
    holder, or None) and ``result`` (the path of result.nc, or None); with a result also
    ``dims``, ``variables`` and ``provenance`` (its attributes but the spec). Raises
    ``ConfigError`` for a folder without sweep.json, an unreadable sweep.json or
    result.nc."""
    path = Path(folder)
    meta = read_meta(path) if path.is_dir() else None
    if meta is None and path.is_dir() and (path / "run.json").exists():
        return _run_info(path)
    if meta is None and path.is_dir() and (path / "boundary.json").exists():
        return _boundary_info(path)
    if meta is None:
        raise ConfigError(f"{path} holds no twolayer sweep, run or boundary search (no "
                          f"sweep.json, run.json or boundary.json)")
    try:
        shards = [dict(key=str(s["key"]), runs=int(s["runs"]), desc=str(s.get("desc", "")))
                  for s in meta["shards"]]
        head = {"name": meta["name"], "family": meta["family"], "scale": meta["scale"]}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path / 'sweep.json'} is not a sweep manifest; rerun the sweep "
                          f"with its spec to rebuild it") from None
    done = [s for s in shards if shard_done(path, s["key"])]
    keys = {s["key"] for s in shards}
    partial = {f.stem: TrainingState(path, f.stem).saved_step()
               for f in (path / "state").glob("*.npz") if f.stem in keys}
    out = {**head, "shards_done": len(done), "shards_total": len(shards),
           "runs_done": sum(s["runs"] for s in done),
           "runs_total": sum(s["runs"] for s in shards),
           "missing": [dict(s, resumes_at_step=partial.get(s["key"]))
                       for s in shards if s not in done],
           "running": lock_holder(path),
           "result": str(result_path(path)) if result_path(path).exists() else None}
    return {"kind": "sweep", **out, **_result_summary(path)}


def _result_summary(path: Path) -> dict:
    """``dims``, ``variables`` and ``provenance`` of a folder's result.nc (none: {})."""
    if not result_path(path).exists():
        return {}
    try:
        with xr.open_dataset(result_path(path), engine=ENGINE) as ds:
            return {"dims": dict(ds.sizes), "variables": sorted(ds.data_vars),
                    "provenance": {k: v for k, v in ds.attrs.items()
                                   if k not in ("sweep", "spec")}}
    except UNREADABLE_NC:
        read_result(result_path(path))  # raises its one-line ConfigError
        raise


def _json_file(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} is unreadable; rerun the command that wrote it")
    return meta


def _run_info(path: Path) -> dict:
    """``info`` of a ``run --out`` folder: ``kind`` "run", ``family``, ``result``, and with a
    result ``dims``, ``variables`` and ``provenance``."""
    meta = _json_file(path / "run.json")
    result = result_path(path)
    return {"kind": "run", "family": meta.get("family", "?"), "running": lock_holder(path),
            "result": str(result) if result.exists() else None, **_result_summary(path)}


def _boundary_info(path: Path) -> dict:
    """``info`` of a boundary search's folder: ``kind`` "boundary", ``name``, ``scale``,
    ``rounds`` (one dict per round folder: ``round``, ``runs_done``, ``runs_total``; a
    round's shards are not merged on their own), ``running`` (a round's lock holder, or
    None), ``result``, and with a result ``dims``, ``variables`` and ``provenance``."""
    meta = _json_file(path / "boundary.json")
    rounds, running = [], None
    folders = sorted((p for p in (path / "rounds").glob("*") if p.is_dir()),
                     key=lambda p: (len(p.name), p.name))
    for folder in folders:
        try:
            r = info(folder)
        except ConfigError:  # a round whose manifest is not written yet
            continue
        rounds.append({"round": folder.name, "runs_done": r["runs_done"],
                       "runs_total": r["runs_total"]})
        running = running or r["running"]
    result = result_path(path)
    return {"kind": "boundary", "name": meta.get("name", "?"), "scale": meta.get("scale", "?"),
            "rounds": rounds, "running": running,
            "result": str(result) if result.exists() else None, **_result_summary(path)}
