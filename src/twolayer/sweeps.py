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
run configs and is written atomically, so a rerun skips the shards already finished.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store
from .config import (ConfigError, field_specs, make_config, static_key, static_names,
                     suggest, to_dict)
from .progress import SweepProgress, wanted
from .family import get as get_family

SHARD_FORMAT = 2  # bump when the engine's output for the same configs changes
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


def load_spec(source, scale: str = "full") -> Spec:
    """A spec from a TOML path, a preset name, or a dict (already parsed TOML)."""
    from . import presets

    if isinstance(source, dict):
        raw, origin = source, "spec"
    else:
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
        origin = str(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key '{key}' in {origin}{suggest(key, TOP_KEYS)}; "
                              f"allowed: {', '.join(TOP_KEYS)}")
    raw = _merge_scale(raw, scale)
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

    axes = []
    for name, v in raw.get("axes", {}).items():
        axes.append(Axis((name,), tuple((x,) for x in _values(name, v))))
    zips = raw.get("zip", [])
    for table in zips if isinstance(zips, list) else [zips]:
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
    return Spec(name=raw.get("name", Path(str(source)).stem if not isinstance(source, dict)
                             else "sweep"),
                family=family.name, base=dict(raw.get("base", {})),
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


def shards(spec: Spec, shard_size: int = 512) -> list[Shard]:
    if shard_size < 1:
        raise ConfigError(f"'shard_size' must be >= 1, got {shard_size}")
    groups: dict[tuple, list] = {}
    for coords, cfg in expand(spec):
        groups.setdefault(static_key(cfg), []).append((coords, cfg))
    # a shard is described by the static settings that tell the groups apart
    varying = [n for n in static_names(type(next(iter(groups.values()))[0][1]))
               if len({repr(getattr(m[0][1], n)) for m in groups.values()}) > 1]
    out = []
    for members in groups.values():
        # near-equal shards (at most shard_size runs): equal shapes share a compiled program
        count = -(-len(members) // shard_size)
        cuts = [len(members) * i // count for i in range(count + 1)]
        for start, stop in zip(cuts[:-1], cuts[1:]):
            part = members[start:stop]
            cfgs = tuple(c for _, c in part)
            coords = tuple(k for k, _ in part)
            key = _hash({"format": SHARD_FORMAT, "family": spec.family,
                         "runs": [to_dict(c) for c in cfgs], "coords": list(coords)})
            desc = " ".join(f"{n}={getattr(cfgs[0], n)}" for n in varying) or "one group"
            out.append(Shard(key=key, configs=cfgs, coords=coords, desc=desc))
    return out


def sweep_id(spec: Spec, all_shards: list[Shard]) -> str:
    return _hash({"family": spec.family, "shards": [s.key for s in all_shards]})


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

    def __call__(self, item, report=None):
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
            return None
        state = store.TrainingState(folder, shard.key, self.state_every)
        resumed = state.saved_step()
        again = "" if resumed is None else f" resumed at step {resumed}"
        log.info(f"{label} ({len(shard.configs)} runs, {shard.desc}){again}")
        ds = run_shard(shard, self.family, progress, desc=label, state_file=state)
        log.info(f"{label}: {summary(ds)}")
        store.write_shard(folder, shard.key, ds)
        state.clear()
        return resumed


def run(spec, out=None, *, scale: str = "full", shard_size: int = 512, progress=None,
        log=None, executor=None, state_every: float = 60.0, job_options=None):
    """Run a sweep and return the merged Dataset. With ``out``, shards and the merged result
    are written there and a rerun continues where the last one stopped (long shards from
    their training state saved every ``state_every`` seconds). ``executor``: see
    ``twolayer.executors`` (None: in this process)."""
    from . import runtime
    from .executors import open_executor
    from .progress import ensure_handler, log as logger

    runtime.configure()
    if not isinstance(spec, Spec):
        spec = load_spec(spec, scale)
    ensure_handler()
    log = log or logger.info
    if not state_every >= 0:
        raise ConfigError(f"'state_every' must be >= 0 seconds, got {state_every!r}")
    todo = shards(spec, shard_size)
    _check_groups(spec.family, todo)
    total = sum(len(s.configs) for s in todo)
    sid = sweep_id(spec, todo)
    if out is not None:
        store.check_folder(out, sid)  # before starting workers; writes nothing
    # an Executor given by the caller stays open
    ex = open_executor(executor, folder=out, job_options=job_options, name=spec.name)
    task = ShardTask(spec.family, None, state_every, False)
    display = SweepProgress(spec.name, len(todo), total, show=wanted(progress))
    try:
        if ex.name != "local":
            _check_portable(todo)
        with display.shown():
            if out is None:
                return store.merge(spec, _train(ex, task, todo, None, log, display))
            with store.open_sweep(out, spec, sid, todo) as folder:
                task = dataclasses.replace(task, folder=str(folder))
                merged = store.merge(spec, _train(ex, task, todo, folder, log, display))
                store.write_result(folder, merged)
                display.close()
                log(f"{total} runs in {len(todo)} shards -> {store.result_path(folder)}")
                return merged
    finally:
        display.close()
        if ex is not executor:
            ex.close()


def _train(ex, task: ShardTask, todo: list[Shard], folder, log, display) -> list:
    """Every shard's Dataset, in order: read when finished before, else trained by ``ex``
    (in this process, the engine reports to ``display`` between chunks)."""
    results, pending = {}, []
    for i, shard in enumerate(todo):
        ds = store.read_done_shard(folder, shard.key) if folder is not None else None
        if ds is not None:
            log(f"shard {i + 1}/{len(todo)} ({len(shard.configs)} runs, {shard.desc}): "
                f"done before, skipped")
            results[i] = ds
            display.skipped(len(shard.configs))
        else:
            pending.append(i)
    items = [(f"shard {i + 1}/{len(todo)}", todo[i]) for i in pending]
    if ex.name == "local":  # the engine reports to the display as it trains
        def fn(item, _index={id(it): i for it, i in zip(items, pending)}):
            i = _index[id(item)]
            display.started(i, len(todo[i].configs))
            return task(item, report=display.reporter(i))
    else:
        fn = task
    for j, value in ex.map(fn, items):
        i = pending[j]
        note = "" if folder is None or value is None else f", resumed at step {value}"
        if folder is not None:
            value = store.read_done_shard(folder, todo[i].key)
            if value is None:
                raise RuntimeError(f"shard {todo[i].key} was reported done but its file is "
                                   f"missing: is {folder} on a filesystem the workers share?")
        results[i] = value
        display.finished(i, len(todo[i].configs))
        if ex.name != "local":
            log(f"shard {i + 1}/{len(todo)} done ({len(results)}/{len(todo)}{note})")
    return [results[i] for i in range(len(todo))]


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
