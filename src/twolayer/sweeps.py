"""Sweeps: a TOML spec (or a shipped preset) -> run configs -> groups -> shards -> one Dataset.

A spec file::

    name = "fig4"
    family = "single_neuron"
    [base]                    # the family's model and data settings
    width = 2
    [train]                   # training settings (optimizer, learning_rate, max_steps, ...)
    learning_rate = 0.5
    [axes]                    # cartesian product, in this order
    n_train = [2, 3, 4, 5, 6]
    imbalance = {chebyshev = [0.0, 1.0, 61]}   # also linspace, logspace, range
    [[zip]]                   # zipped axes: equal lengths; the dimension takes the first name
    init_scale = [1e-15, 1e-10]
    seed = [0, 1]
    [[figure]]                # figures drawn by `twolayer plot` / `reproduce` (see twolayer.plots)
    kind = "error_vs"
    [scales.quick]            # overrides for --scale quick: base, train, axes, zip, figure
    axes = {imbalance = {chebyshev = [0.0, 1.0, 21]}}

Runs are grouped by the fields that fix the compiled program (static fields); each group is
cut into near-equal shards of at most ``shard_size`` runs. A shard's file is named by the hash of its
run configs and is written atomically. A run is known by its resolved config (``run_key``):
a rerun, a grown sweep or one with another shard size takes every finished run from the
shard files of its folder and trains only the others (``plan``).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store
from .config import (ConfigError, check_name, field_specs, make_config, plain, static_key,
                     static_names, suggest, to_dict)
from .progress import SweepProgress, wanted
from .family import get as get_family

SHARD_FORMAT = 3  # bump when the engine's output for the same configs changes
# 3: float32 runs draw their data and initialization in float64 (2: in float32; float64
#    runs are the same in both, so format-2 shards of float64 runs are reused)
TOP_KEYS = ("name", "family", "description", "base", "train", "axes", "zip", "figure", "scales")


@dataclass(frozen=True)
class Axis:
    names: tuple[str, ...]  # one name, or several zipped together (the dim is names[0])
    values: tuple[tuple, ...]  # values[i][j]: point i of names[j]

    @property
    def dim(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Spec:
    name: str
    family: str
    base: dict
    train: dict
    axes: tuple[Axis, ...]
    description: str
    scale: str
    raw: dict  # the spec after the scale's overrides, as given


@dataclass(frozen=True)
class Shard:
    key: str  # hash of the contents: the file name
    configs: tuple
    coords: tuple[dict, ...]  # per run: its axis values
    desc: str
    format: int = SHARD_FORMAT
    run_keys: tuple[str, ...] = ()  # per run: ``run_key`` of its config


# ---------------------------------------------------------------- limits
MEMORY_ENV = "TWOLAYER_MAX_MEMORY"
RUN_OVERHEAD = 4096  # bytes per run of Python bookkeeping (config, coordinates, keys; measured
#                      about 2.2 kB per run for single_neuron, rounded up)
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


def parse_bytes(value) -> float:
    """A memory size: a number of bytes, or text such as ``"16G"``, ``"512 MB"``, ``"1.5GiB"``
    (powers of 1024); ``"none"``, ``"inf"`` or 0: no limit."""
    import re

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if str(value).strip().lower() in ("none", "inf", "unlimited"):
            return math.inf
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"'max_memory' must be a size such as 16G, 512M or a number of "
                              f"bytes (none: no limit), got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    if not number >= 0 or not math.isfinite(number):
        raise ConfigError(f"'max_memory' must be a size >= 0, got {value!r}")
    return math.inf if number == 0 else number * _UNITS[unit]


def memory_limit(value=None) -> float:
    """The memory a sweep or run may be estimated to need, in bytes: ``value`` (the API's
    ``max_memory``, the command line's ``--max-memory``), else the environment variable
    ``TWOLAYER_MAX_MEMORY``, else this machine's physical memory."""
    if value is None:
        value = os.environ.get(MEMORY_ENV) or None
    if value is not None:
        return parse_bytes(value)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def check_memory(estimate: float, max_memory, what: str) -> None:
    """Refuse work estimated to need more memory than the limit (``memory_limit``)."""
    limit = memory_limit(max_memory)
    if estimate > limit:
        raise ConfigError(f"{what} need about {fmt_bytes(estimate)} of memory, above the "
                          f"limit of {fmt_bytes(limit)}; make it smaller, or raise the limit "
                          f"(--max-memory SIZE, {MEMORY_ENV}=SIZE or max_memory=; 'none': "
                          f"no limit)")


# ---------------------------------------------------------------- reading a spec
def _chebyshev(args) -> list:
    """Dense near both ends, ends included."""
    lo, hi, k = float(args[0]), float(args[1]), int(args[2])
    t = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / max(k - 1, 1))
    out = (lo + (hi - lo) * t).tolist()
    out[0], out[-1] = lo, hi
    return out


GENERATORS = {
    "linspace": lambda a: np.linspace(float(a[0]), float(a[1]), int(a[2])).tolist(),
    "logspace": lambda a: np.logspace(float(a[0]), float(a[1]), int(a[2])).tolist(),
    "chebyshev": _chebyshev,
    "range": lambda a: list(range(*[int(x) for x in a])),
}


def _length(name: str, v) -> int:
    """The number of values of an axis, without building it (generators' counts read from
    their arguments); 1 when it cannot be told here (``_values`` then refuses it)."""
    if isinstance(v, list):
        return len(v)
    if isinstance(v, dict) and len(v) == 1:
        (kind, args), = v.items()
        try:
            if kind == "range":
                return len(range(*[int(x) for x in args]))
            if kind in GENERATORS:
                return max(int(args[2]), 0)
        except (TypeError, ValueError, IndexError, OverflowError):
            return 1
    return 1


def _values(name: str, v, unique: bool = True) -> list:
    """An axis given as a list or as a generator table."""
    if isinstance(v, list):
        out = v
    elif isinstance(v, dict) and len(v) == 1:
        (kind, args), = v.items()
        if kind not in GENERATORS:  # checked first: ConfigError is a ValueError
            raise ConfigError(f"axis '{name}': unknown generator '{kind}'; allowed: "
                              f"{', '.join(GENERATORS)}")
        try:
            out = GENERATORS[kind](args)
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"axis '{name}': bad arguments {args!r} for '{kind}' "
                              f"(linspace/logspace/chebyshev: [start, stop, num]; "
                              f"range: [start, stop(, step)])") from None
    else:
        raise ConfigError(f"axis '{name}' must be a list or one of {{linspace|logspace|"
                          f"chebyshev|range = [...]}}, got {v!r}")
    if not out:
        raise ConfigError(f"axis '{name}' is empty")
    if unique and len({json.dumps(x) for x in out}) != len(out):
        raise ConfigError(f"axis '{name}' repeats a value")
    return out


def _merge_scale(raw: dict, scale: str) -> dict:
    scales = raw.get("scales", {})
    if scale == "full":
        return raw
    if scale not in scales:
        allowed = ", ".join(["full", *scales])
        raise ConfigError(f"unknown scale '{scale}' for sweep '{raw.get('name', '?')}'; "
                          f"allowed: {allowed}")
    out = copy.deepcopy(raw)
    for section, over in scales[scale].items():
        if section in ("base", "train", "axes"):
            out.setdefault(section, {}).update(over)
        elif section in ("zip", "figure", "description"):
            out[section] = over
        else:
            raise ConfigError(f"scales.{scale}: unknown section '{section}'; allowed: base, "
                              f"train, axes, zip, figure, description")
    return out


def read_raw(source) -> tuple[dict, str, str]:
    """The parsed TOML of a spec given as a path, a preset name or a dict: (raw, origin, the
    name a spec without ``name`` takes)."""
    from . import presets

    if isinstance(source, dict):
        return plain(source), "spec", "sweep"
    if not isinstance(source, (str, Path)):
        raise ConfigError(f"a sweep spec is a TOML path, a preset name or a dict, got "
                          f"{type(source).__name__}")
    path = Path(source)
    if not path.exists() and str(source) in presets.names():
        path = presets.path(str(source))
    if not path.exists():
        raise ConfigError(f"no sweep file or preset named '{source}'"
                          f"{suggest(str(source), presets.names())}; presets: "
                          f"{', '.join(presets.names())}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {path}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: "
                          f"{getattr(err, 'strerror', None) or err}") from None
    return raw, str(path), path.stem


def load_spec(source, scale: str = "full", *, max_memory=None) -> Spec:
    """A spec from a TOML path, a preset name, or a dict (already parsed TOML). Refuses,
    before building its axes, a grid whose runs' bookkeeping alone exceeds the memory limit
    (``max_memory``: see ``memory_limit``)."""
    raw, origin, default_name = read_raw(source)
    if "boundary" in raw:
        raise ConfigError(f"{origin} has a [boundary] table: run it with 'twolayer boundary' "
                          f"(twolayer.boundary), not as a sweep")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key '{key}' in {origin}{suggest(key, TOP_KEYS)}; "
                              f"allowed: {', '.join(TOP_KEYS)}")
    if not isinstance(scale, str):
        raise ConfigError(f"'scale' must be a string, got {scale!r}")
    raw = _merge_scale(raw, scale)
    sweep_name = raw.get("name", default_name)
    check_name("the sweep's 'name'", sweep_name)
    if not isinstance(raw.get("family", ""), str):
        raise ConfigError(f"'family' must be a string, got {raw['family']!r}")
    family = get_family(raw.get("family", "single_neuron"))
    specs = field_specs(family.Config)
    for section in ("base", "train"):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        for key in table:
            if key not in specs:
                raise ConfigError(f"unknown key '{key}' in [{section}]{suggest(key, specs)}")
            home = specs[key].metadata["section"]
            if home != section:
                raise ConfigError(f"key '{key}' belongs in [{home}], not [{section}]")

    if not isinstance(raw.get("axes", {}), dict):
        raise ConfigError("[axes] must be a table")
    zips = raw.get("zip", [])
    zips = zips if isinstance(zips, list) else [zips]
    if not all(isinstance(t, dict) for t in zips):
        raise ConfigError("[[zip]] must be tables")
    # the grid's size, before building it: refused when its bookkeeping alone is too large
    runs = math.prod([_length(n, v) for n, v in raw.get("axes", {}).items()]
                     + [_length(*next(iter(t.items()))) for t in zips if t])
    check_memory(runs * RUN_OVERHEAD, max_memory, f"{runs} runs")
    axes = []
    for name, v in raw.get("axes", {}).items():
        axes.append(Axis((name,), tuple((x,) for x in _values(name, v))))
    for table in zips:
        # only the first name labels the dimension: the others may repeat values
        cols = {name: _values(name, v, unique=(i == 0)) for i, (name, v) in enumerate(table.items())}
        lengths = {len(c) for c in cols.values()}
        if len(lengths) > 1:
            raise ConfigError(f"zipped axes {', '.join(cols)} have different lengths "
                              f"{sorted(len(c) for c in cols.values())}")
        if cols:
            axes.append(Axis(tuple(cols), tuple(zip(*cols.values()))))
    seen = set()
    for axis in axes:
        for name in axis.names:
            if name not in specs:
                raise ConfigError(f"unknown axis '{name}'{suggest(name, specs)}")
            if name in seen:
                raise ConfigError(f"axis '{name}' is given twice")
            if name in raw.get("base", {}) or name in raw.get("train", {}):
                raise ConfigError(f"'{name}' is both a fixed setting and an axis; keep one")
            seen.add(name)
    from . import plots

    plots.check_figures(family, [a.dim for a in axes] + [n for a in axes for n in a.names[1:]],
                        raw.get("figure"))
    return Spec(name=sweep_name, family=family.name, base=dict(raw.get("base", {})),
                train=dict(raw.get("train", {})), axes=tuple(axes),
                description=raw.get("description", ""),
                scale=scale, raw=raw)


# ---------------------------------------------------------------- runs, groups, shards
def expand(spec: Spec) -> list[tuple[dict, object]]:
    """Every point of the grid: (its axis values, its validated config)."""
    family = get_family(spec.family)
    fixed = {"family": spec.family, **spec.base, **spec.train}
    runs = []
    for point in itertools.product(*[a.values for a in spec.axes]):
        coords = {n: v for axis, vals in zip(spec.axes, point) for n, v in zip(axis.names, vals)}
        try:
            cfg = make_config(family.Config, {**fixed, **coords})
        except ConfigError as err:
            where = ", ".join(f"{k} = {v}" for k, v in coords.items())
            raise ConfigError(f"{err} (at {where})" if where else str(err)) from None
        runs.append((coords, cfg))
    return runs


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _config_json(cfg) -> dict:
    """A config as a dict whose JSON text is what a shard file keeps in its ``configs``
    attribute (tuples are written as lists): ``run_key`` of either is the same."""
    return to_dict(cfg)


def run_key(config: dict) -> str:
    """A run's identity: the hash of its resolved config (a JSON dict; every setting,
    defaults included). Finished runs are found by it, whatever shard holds them."""
    return _hash({"format": SHARD_FORMAT, "config": config})


def _check_shard_size(shard_size) -> int:
    if isinstance(shard_size, bool) or not isinstance(plain(shard_size), int):
        raise ConfigError(f"'shard_size' must be an integer >= 1, got {shard_size!r}")
    if shard_size < 1:
        raise ConfigError(f"'shard_size' must be >= 1, got {shard_size}")
    return int(shard_size)


def _groups(spec: Spec) -> tuple[list[list], list[str]]:
    """The runs (coords, config) grouped by static settings, and the static settings that
    tell the groups apart (a shard's description)."""
    groups: dict[tuple, list] = {}
    for coords, cfg in expand(spec):
        groups.setdefault(static_key(cfg), []).append((coords, cfg))
    varying = [n for n in static_names(type(next(iter(groups.values()))[0][1]))
               if len({repr(getattr(m[0][1], n)) for m in groups.values()}) > 1]
    return list(groups.values()), varying


def _shard(family: str, part: list, varying: list[str]) -> Shard:
    """A shard of ``part``: (coords, config, run key) triples."""
    cfgs = tuple(c for _, c, _ in part)
    # named by its runs only: the same runs are the same shard in any sweep
    key = _hash({"format": SHARD_FORMAT, "family": family, "runs": [k for _, _, k in part]})
    desc = " ".join(f"{n}={getattr(cfgs[0], n)}" for n in varying) or "one group"
    return Shard(key=key, configs=cfgs, coords=tuple(c for c, _, _ in part), desc=desc,
                 run_keys=tuple(k for _, _, k in part))


def _cut(family: str, members: list, shard_size: int, varying: list[str]) -> list[Shard]:
    """Near-equal shards of at most shard_size runs (equal shapes share a compiled program);
    ``members``: (coords, config, run key) triples."""
    if not members:
        return []
    count = -(-len(members) // shard_size)
    cuts = [len(members) * i // count for i in range(count + 1)]
    return [_shard(family, members[i:j], varying) for i, j in zip(cuts[:-1], cuts[1:])]


def shards(spec: Spec, shard_size: int = 512) -> list[Shard]:
    """Every run of the sweep in shards (nothing reused)."""
    shard_size = _check_shard_size(shard_size)
    groups, varying = _groups(spec)
    return [s for members in groups for s in _cut(
        spec.family, [(c, cfg, run_key(to_dict(cfg))) for c, cfg in members], shard_size,
        varying)]


@dataclass
class Plan:
    """Where each run of a sweep comes from: ``train`` (shards to train, in order) and
    ``sources`` (shard key -> the (position in that shard, coords) of each run of the sweep
    it holds; finished shards reused, then the shards to train)."""
    train: list[Shard]
    sources: dict[str, list[tuple[int, dict]]]
    descs: dict[str, str]
    runs: int
    reused: int


def plan(spec: Spec, shard_size: int = 512, folder=None, previous: dict | None = None) -> Plan:
    """The shards to train and the finished ones to reuse. A run whose config a finished
    shard file of ``folder`` holds is taken from it (whatever sweep or shard size wrote
    it); an unfinished shard of the ``previous`` manifest whose runs are all still wanted is
    kept as it was (its saved training state resumes); the other runs are cut into new
    shards of at most ``shard_size``."""
    shard_size = _check_shard_size(shard_size)
    groups, varying = _groups(spec)
    finished: dict[str, tuple[str, int]] = {}
    if folder is not None and (Path(folder) / "shards").is_dir():
        for key, (fmt, configs) in store.shard_configs(folder).items():
            for pos, config in enumerate(configs):
                if fmt < 3 and config.get("dtype") == "float32":
                    continue  # drawn in float32 before format 3: another experiment
                finished.setdefault(run_key(config), (key, pos))
    kept = [entry.get("run_keys") for entry in (previous or {}).get("shards", [])
            if isinstance(entry, dict) and isinstance(entry.get("run_keys"), list)]
    train, sources, reused, total = [], {}, 0, 0
    descs = {e["key"]: e["desc"] for e in (previous or {}).get("shards", [])
             if isinstance(e, dict) and isinstance(e.get("key"), str)
             and isinstance(e.get("desc"), str)}
    for members in groups:
        missing, index = [], {}
        for coords, cfg in members:
            total += 1
            key = run_key(_config_json(cfg))
            found = finished.get(key)
            if found is not None:
                sources.setdefault(found[0], []).append((found[1], coords))
                reused += 1
            else:
                index[key] = len(missing)
                missing.append((coords, cfg, key))
        taken: set[int] = set()
        for keys in kept:
            where = [index.get(k) for k in keys]
            if keys and None not in where and not taken & set(where):
                taken |= set(where)
                train.append(_shard(spec.family, [missing[i] for i in where], varying))
        rest = [m for i, m in enumerate(missing) if i not in taken]
        train.extend(_cut(spec.family, rest, shard_size, varying))
    for shard in train:
        sources[shard.key] = list(enumerate(shard.coords))
        descs[shard.key] = shard.desc
    return Plan(train=train, sources=sources, descs=descs, runs=total, reused=reused)


def _settings_changes(old: dict, new: dict) -> list[str]:
    """What differs between two specs' fixed settings (family, [base], [train])."""
    out = []
    if old.get("family", "single_neuron") != new.get("family", "single_neuron"):
        out.append(f"family {old.get('family', 'single_neuron')} -> "
                   f"{new.get('family', 'single_neuron')}")
    for section in ("base", "train"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if json.dumps(a.get(key), default=str) != json.dumps(b.get(key), default=str):
                out.append(f"{key} {a.get(key, 'default')} -> {b.get(key, 'default')}")
    return out


def _axes_changes(old: dict, spec: Spec) -> list[str]:
    """How the axes grew or shrank (values added or removed, axes new or gone)."""
    try:
        before = {a.dim: a for a in load_spec(old, "full", max_memory="none").axes}
    except ConfigError:
        return ["axes changed"]
    out = []
    for axis in spec.axes:
        was = before.pop(axis.dim, None)
        if was is None:
            out.append(f"new axis {axis.dim} ({len(axis.values)} values)")
            continue
        if was.names != axis.names:
            out.append(f"zip {'+'.join(was.names)} -> {'+'.join(axis.names)}")
        added = [v[0] for v in axis.values if v not in was.values]
        gone = [v[0] for v in was.values if v not in axis.values]
        for sign, vals in (("+", added), ("-", gone)):
            if vals:
                shown = ", ".join(map(str, vals[:5])) + (", ..." if len(vals) > 5 else "")
                out.append(f"{axis.dim} {sign}{len(vals)} ({shown})")
    out.extend(f"axis {dim} dropped" for dim in before)
    return out


def check_identity(folder, spec: Spec, held: str, meta: dict | None, replace: bool) -> list[str]:
    """Refuse a sweep into a folder that holds another one: another name or family, or fixed
    settings that alter its finished runs (unless ``replace``). Returns what changed (axes
    grown or shrunk: allowed, finished runs are reused), for the log."""
    if held != "sweep" or meta is None:
        return []
    old = meta.get("spec") if isinstance(meta.get("spec"), dict) else {}
    old_name = meta.get("name", old.get("name", "?"))
    changed = ([f"name {old_name} -> {spec.name}"] if old_name != spec.name else [])
    changed += _settings_changes(old, spec.raw) if old else []
    if not old and not changed:
        changed = ["no spec recorded"]
    if changed and not replace:
        raise ConfigError(f"{folder} holds the results of another sweep ('{old_name}', scale "
                          f"{meta.get('scale', '?')}; changed: {'; '.join(changed)}), which "
                          f"alters its finished runs; choose a new --out folder, or pass "
                          f"--replace to replace its result")
    if changed:
        return [f"replacing sweep '{old_name}' ({'; '.join(changed)})"]
    grown = _axes_changes(old, spec)
    if meta.get("scale") != spec.scale:
        grown.insert(0, f"scale {meta.get('scale')} -> {spec.scale}")
    return grown


# ---------------------------------------------------------------- running a sweep
def run_shard(shard: Shard, family_name: str, progress=None, desc: str = "", state_file=None):
    from .train import train_group

    family = get_family(family_name)
    ds = train_group(family, list(shard.configs), progress=progress, desc=desc or shard.desc,
                     state_file=state_file)
    return store.label_runs(ds, shard)


@dataclass(frozen=True)
class ShardTask:
    """Train one shard, in this process or on a worker (picklable). With a folder, the
    worker writes the shard file there (the folder must be on a filesystem the workers
    share) and returns the step its saved training state had reached (None: started
    afresh); without, it returns the shard's Dataset."""
    family: str
    folder: str | None
    state_every: float = 60.0
    progress: bool | None = False

    def __call__(self, item, report=None, keep=False):
        """Train the shard ``item`` (label, Shard). ``keep``: also return the Dataset as
        written (the caller in this process then need not read the file back)."""
        from .progress import ensure_handler, log

        ensure_handler()  # a worker process logs to its stderr, as the caller's does
        label, shard = item
        progress = report if report is not None else self.progress
        if self.folder is None:
            log.info(f"{label} ({len(shard.configs)} runs, {shard.desc})")
            ds = run_shard(shard, self.family, progress, desc=label)
            log.info(f"{label}: {summary(ds)}")
            return ds
        folder = Path(self.folder)
        if store.shard_done(folder, shard.key):  # a retried task whose shard got written
            return (None, None) if keep else None
        state = store.TrainingState(folder, shard.key, self.state_every)
        resumed = state.saved_step()
        again = "" if resumed is None else f" resumed at step {resumed}"
        log.info(f"{label} ({len(shard.configs)} runs, {shard.desc}){again}")
        ds = run_shard(shard, self.family, progress, desc=label, state_file=state)
        log.info(f"{label}: {summary(ds)}")
        store.write_shard(folder, shard.key, ds)
        state.clear()
        return (resumed, ds) if keep else resumed


def run(spec, out=None, *, scale: str = "full", shard_size: int = 512, progress=None,
        log=None, executor=None, state_every: float = 60.0, replace: bool = False,
        max_memory=None, job_options=None):
    """Run a sweep and return the merged Dataset. With ``out``, shards and the merged result
    are written there and a rerun continues where the last one stopped (long shards from
    their training state saved every ``state_every`` seconds); a grown sweep (more axis
    values, another shard size) reuses every finished run. ``replace``: allow fixed settings
    that differ from the folder's sweep. ``max_memory``: see ``memory_limit``.
    ``executor``: see ``twolayer.executors`` (None: in this process)."""
    from . import runtime
    from .executors import open_executor, stop_on_signals
    from .progress import ensure_handler, log as logger

    runtime.configure()
    if not isinstance(spec, Spec):
        spec = load_spec(spec, scale, max_memory=max_memory)
    ensure_handler()
    log = log or logger.info
    if isinstance(state_every, bool) or not isinstance(plain(state_every), (int, float)):
        raise ConfigError(f"'state_every' must be a number of seconds, got {state_every!r}")
    if not state_every >= 0:
        raise ConfigError(f"'state_every' must be >= 0 seconds, got {state_every!r}")
    if out is not None and not isinstance(out, (str, Path)):
        raise ConfigError(f"'out' must be a folder path, got {type(out).__name__}")
    _check_shard_size(shard_size)
    held, meta, notes = "new", None, []
    if out is not None:
        held = store.check_folder(out)  # before starting workers; writes nothing
        try:
            meta = store.read_meta(out) if held == "sweep" else None
        except ConfigError as err:  # a damaged manifest: rebuilt, finished shards reused
            notes.append(f"{err}".split(";")[0] + "; rebuilding it (finished shards are reused)")
        if held == "remains":
            notes.append("holds shards but no sweep.json; rebuilding it (finished shards "
                         "are reused)")
        notes += check_identity(out, spec, held, meta, replace)
    todo = plan(spec, shard_size, out, meta)
    _check_groups(spec.family, todo.train)
    _check_size(spec, todo, max_memory, executor)
    # an Executor given by the caller stays open
    ex = open_executor(executor, folder=out, job_options=job_options, name=spec.name)
    task = ShardTask(spec.family, None, state_every, False)
    display = SweepProgress(spec.name, len(todo.sources), todo.runs, show=wanted(progress))
    try:
        if ex.name != "local":
            _check_portable(todo.train)
        with stop_on_signals(), display.shown():
            if out is None:
                return store.merge(spec, _assemble(todo, _train(ex, task, todo, None, log,
                                                                display)))

            def check(now):
                again = store.read_meta(out) if now == "sweep" and meta is not None else meta
                check_identity(out, spec, now, again, replace)

            with store.open_folder(out, check) as folder:
                for note in notes:
                    log(f"{folder}: {note}")
                if todo.reused:
                    log(f"{folder}: {todo.reused} of {todo.runs} runs done before (reused), "
                        f"{todo.runs - todo.reused} to train")
                store.write_meta(folder, _manifest(spec, todo))
                task = dataclasses.replace(task, folder=str(folder))
                merged = store.merge(spec, _assemble(todo, _train(ex, task, todo, folder, log,
                                                                  display)))
                store.write_result(folder, merged)
                display.close()
                log(f"{todo.runs} runs in {len(todo.sources)} shards -> "
                    f"{store.result_path(folder)}")
                return merged
    finally:
        display.close()
        if ex is not executor:
            ex.close()


def _manifest(spec: Spec, todo: Plan) -> dict:
    trained = {s.key: s for s in todo.train}
    entries = []
    for key, runs in todo.sources.items():
        entry = {"key": key, "runs": len(runs), "desc": todo.descs.get(key, "done before")}
        if key in trained:  # kept as it is by a rerun, to resume its saved training state
            entry["run_keys"] = list(trained[key].run_keys)
        entries.append(entry)
    return {"name": spec.name, "family": spec.family, "scale": spec.scale,
            "format": SHARD_FORMAT, "spec": spec.raw, "shards": entries}


def _check_size(spec: Spec, todo: Plan, max_memory, executor=None) -> None:
    """Refuse a sweep whose estimated memory (``estimate``; with worker processes on this
    machine, ``executors.local_workers``, that many of its largest shard at once) exceeds
    the limit, before anything is allocated."""
    from .executors import local_workers

    largest, total = estimate(spec, todo)
    workers = local_workers(executor)
    total += (workers - 1) * largest
    at_once = f", {workers} at once" if workers > 1 else ""
    check_memory(total, max_memory,
                 f"{todo.runs} runs (largest shard {fmt_bytes(largest)}{at_once})")


def estimate(spec: Spec, todo: Plan) -> tuple[float, float]:
    """Estimated memory of a sweep in bytes, from shapes alone (``train.run_bytes``):
    ``(largest, total)``: its largest shard while training, and that plus the merged
    result (twice: the parts and the whole) and the runs' bookkeeping."""
    from .train import run_bytes

    family = get_family(spec.family)
    largest, recorded, seen = 0.0, 0.0, {}
    for shard in todo.train or shards(spec, 1 << 30):
        key = static_key(shard.configs[0])
        if key not in seen:
            seen[key] = run_bytes(family, shard.configs[0])
        working, rec = seen[key]
        padded = 1 << max(0, (len(shard.configs) - 1).bit_length())
        largest = max(largest, padded * working + len(shard.configs) * rec)
    if seen:
        recorded = todo.runs * max(rec for _, rec in seen.values())
    return largest, largest + 2 * recorded + todo.runs * RUN_OVERHEAD


def _train(ex, task: ShardTask, todo: Plan, folder, log, display) -> dict:
    """Every source shard's Dataset by key: read when finished before, else trained by
    ``ex`` (in this process, the engine reports to ``display`` between chunks)."""
    results, pending = {}, []
    n = len(todo.sources)
    label = {key: f"shard {i + 1}/{n}" for i, key in enumerate(todo.sources)}
    trained = {s.key for s in todo.train}
    for key, runs in todo.sources.items():
        if key in trained:
            continue
        ds = store.read_done_shard(folder, key)
        if ds is None:
            raise ConfigError(f"shard {key} in {folder} became unreadable during the sweep; "
                              f"rerun the sweep to retrain its runs")
        log(f"{label[key]} ({len(runs)} runs, {todo.descs.get(key, 'done before')}): "
            f"done before, skipped")
        results[key] = ds
        display.skipped(len(runs))
    for shard in todo.train:
        ds = store.read_done_shard(folder, shard.key) if folder is not None else None
        if ds is not None:  # written since the plan was made
            results[shard.key] = ds
            display.skipped(len(shard.configs))
        else:
            pending.append(shard)
    items = [(label[s.key], s) for s in pending]
    done = len(results)
    index = {key: i for i, key in enumerate(todo.sources)}
    local = ex.name == "local"
    if local:  # the engine reports to the display as it trains
        def fn(item):
            i = index[item[1].key]
            display.started(i, len(item[1].configs))
            return task(item, report=display.reporter(i), keep=folder is not None)
    else:
        fn = task
    for j, value in ex.map(fn, items):
        shard = pending[j]
        kept = None
        if local and folder is not None:  # the Dataset just written (equal to its file: tested)
            value, kept = value
        note = "" if folder is None or value is None else f", resumed at step {value}"
        if kept is not None:
            value = kept
        elif folder is not None:
            value = store.read_done_shard(folder, shard.key)
            if value is None:
                raise RuntimeError(f"shard {shard.key} was reported done but its file is "
                                   f"missing: is {folder} on a filesystem the workers share?")
        results[shard.key] = value
        done += 1
        display.finished(index[shard.key], len(shard.configs))
        if ex.name != "local":
            log(f"{label[shard.key]} done ({done}/{n}{note})")
    return results


def _assemble(todo: Plan, results: dict) -> list:
    """The sweep's runs from their shards: each shard's runs of this sweep, labelled with
    this sweep's axis values (a reused shard may hold other runs, or other labels)."""
    parts = []
    for key, runs in todo.sources.items():
        ds = results[key]
        configs = json.loads(ds.attrs["configs"])
        ds = ds.isel(run=[pos for pos, _ in runs])
        ds = ds.drop_vars([n for n, c in ds.coords.items() if c.dims == ("run",)])
        names = list(runs[0][1]) if runs[0][1] else []
        ds = ds.assign_coords({n: ("run", np.asarray([c[n] for _, c in runs])) for n in names})
        ds.attrs["configs"] = json.dumps([configs[pos] for pos, _ in runs])
        parts.append(ds)
    return parts


def _check_groups(family_name: str, todo: list[Shard]) -> None:
    """What the engine would refuse, for every group, before anything is trained."""
    from .train import check_group

    family, seen = get_family(family_name), set()
    for shard in todo:
        key = static_key(shard.configs[0])
        if key not in seen:
            seen.add(key)
            check_group(family, shard.configs[0])


def summary(ds) -> str:
    """How a shard's runs ended, e.g. '300 converged, 5 max_time' (from ``status``)."""
    from .train import STATUS

    if "status" not in ds:
        return ""
    counts = np.bincount(np.asarray(ds["status"].values, int).ravel(), minlength=len(STATUS))
    return ", ".join(f"{c} {name}" for name, c in zip(STATUS, counts) if c)


def _check_portable(todo: list[Shard]) -> None:
    """Worker processes import the configs' activations and families by name: refuse names
    that only exist in this process."""
    from . import families
    from .activations import local_only

    for shard in todo:
        for cfg in shard.configs:
            if families.local_only(cfg.family):
                raise ConfigError(f"family '{cfg.family}' was registered in this process only "
                                  f"and the executor's workers cannot see it; run it with the "
                                  f"local executor")
            for name, value in to_dict(cfg).items():
                if name != "family" and local_only(value):
                    raise ConfigError(f"{name} '{value}' was registered in this process only "
                                      f"and the executor's workers cannot see it; name it as "
                                      f"'module:function'")
