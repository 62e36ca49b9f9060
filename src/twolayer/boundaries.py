"""Boundary location: where a final metric crosses a level along one axis, for every point
of the other axes, by a coarse scan and bisection in batched rounds.

A sweep spec with a ``[boundary]`` table::

    [axes]                    # the other axes: one boundary point per combination
    input_dim = [100, 1000, 10000]
    seed = {range = [0, 10]}  # the seed axis: the search follows the mean over seeds
    [boundary]
    axis = "signal_norm"      # a batched numeric field, neither an axis nor in [base]
    var = "test_error"        # the metric: its value at each run's last checkpoint
    level = 0.3               # a number, or "midpoint": the mean of the metric at both ends
    bracket = [0.0, 9.9]      # the initial bracket (lo < hi; lo = hi: flag empty_bracket)
    coarse = 3                # points of the first round's scan over the bracket (>= 2)
    tolerance = 0.1           # stop once the bracket is this narrow
    relative = false          # true: stop once hi / lo - 1 <= tolerance
    log = false               # bisect at geometric midpoints (needs lo > 0)
    max_rounds = 20           # at most this many bisection rounds after the scan
    direction = "auto"        # the metric grows with the axis ("increasing"), or not

Each round is one sweep (``OUT/rounds/K``) of every unfinished point's next probe(s) x
every seed, trained together through the sweep machinery (one group of shards, resumable).
The round's contents are a pure function of the earlier rounds' results (``plan``), so a
rerun after a kill recomputes the same rounds, finds their shards done, and trains only
what was missing.

Per point: round 0 evaluates the coarse scan; the level (a number, or the midpoint of the
ends' means) and the direction (given, or the sign of the ends' difference) follow. The
crossing is bracketed by the first adjacent pair of the scan whose means lie on either side
of the level ("crossed": at or past it); each later round evaluates the bracket's midpoint
(geometric with ``log``) and keeps the half that still brackets the level, until the bracket
is at most ``tolerance`` wide: ceil(log2(width / tolerance)) rounds for a scan step of
``width`` (log: ceil(log2(log(hi / lo) / log(1 + tolerance))) with ``relative``).

Flags (per point; the search goes on for every other point and every probe is kept):
``ok``; ``never_crossed`` (the scan's means stay on one side of the level: it is crossed
outside the bracket or not at all); ``not_monotone`` (the scan crosses the level more than
once, or a step of the scan or a bisection midpoint goes against the direction by more than
``monotone_tol`` plus two standard errors of the seed means: the first crossing is
estimated); ``empty_bracket`` (lo = hi: one probe, no search); ``diverged`` (a non-finite
metric at a probe: the point stops there).

Estimate and interval (our choices): the crossing is the linear interpolation (in log x
with ``log``) of the mean between the final bracket's ends. The interval is the 2.5 % and
97.5 % percentiles of the crossing recomputed on 1000 bootstrap resamples of the seeds (one
resample of seed indices for every probe of a point; the first adjacent pair of probes that
brackets the level, interpolated), widened to contain the final bracket: it is never
narrower than the resolution asked for. With one seed it is the bracket.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .analysis import fit_exponent  # noqa: F401  (a boundary result's exponents)
from .config import ConfigError, batched_names, field_specs, suggest

FLAGS = ("ok", "never_crossed", "not_monotone", "empty_bracket", "diverged")
KEYS = ("axis", "var", "level", "bracket", "coarse", "tolerance", "relative", "log",
        "max_rounds", "direction", "seeds", "monotone_tol")
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Search:
    """The ``[boundary]`` table, checked."""
    axis: str
    bracket: tuple[float, float]
    tolerance: float
    level: float | str = "midpoint"
    var: str = "test_error"
    coarse: int = 3
    relative: bool = False
    log: bool = False
    max_rounds: int = 30
    direction: str = "auto"
    seeds: str | None = "seed"
    monotone_tol: float = 0.0

    def width(self, lo: float, hi: float) -> float:
        """The bracket's width in the tolerance's units."""
        return hi / lo - 1.0 if self.relative else hi - lo

    def narrow(self, lo: float, hi: float) -> bool:
        """The bracket is within the tolerance (up to rounding of the halvings)."""
        return self.width(lo, hi) <= self.tolerance * (1 + 1e-9)

    def midpoint(self, lo: float, hi: float) -> float:
        return math.sqrt(lo * hi) if self.log else 0.5 * (lo + hi)

    def rounds_needed(self, lo: float, hi: float) -> int:
        """Bisection rounds that bring a bracket [lo, hi] down to the tolerance."""
        if self.narrow(lo, hi):
            return 0
        if self.relative:
            if self.log:
                return math.ceil(math.log2(math.log(hi / lo) / math.log1p(self.tolerance)))
            # arithmetic halving; relative width shrinks at least as fast as lo grows
            return math.ceil(math.log2((hi - lo) / (self.tolerance * lo)))
        return math.ceil(math.log2((hi - lo) / self.tolerance))

    def scan(self) -> list[float]:
        lo, hi = self.bracket
        if lo == hi:
            return [lo]
        xs = np.geomspace(lo, hi, self.coarse) if self.log else np.linspace(lo, hi, self.coarse)
        out = [float(x) for x in xs]
        out[0], out[-1] = lo, hi
        return out


def parse(table: dict, family=None) -> Search:
    """A ``[boundary]`` table as a ``Search``; ConfigError (one line) on a bad field."""
    if not isinstance(table, dict):
        raise ConfigError("[boundary] must be a table")
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"unknown key '{key}' in [boundary]{suggest(key, KEYS)}; "
                              f"allowed: {', '.join(KEYS)}")
    for key in ("axis", "bracket", "tolerance"):
        if key not in table:
            raise ConfigError(f"[boundary] needs '{key}'")
    axis = table["axis"]
    if family is not None:
        specs = field_specs(family.Config)
        if axis not in specs:
            raise ConfigError(f"[boundary] axis '{axis}' is not a setting{suggest(axis, specs)}")
        if axis not in batched_names(family.Config):
            raise ConfigError(f"[boundary] axis '{axis}' must be a batched numeric setting "
                              f"(e.g. {', '.join(batched_names(family.Config)[:4])})")
    br = table["bracket"]
    if (not isinstance(br, list) or len(br) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in br)):
        raise ConfigError(f"[boundary] bracket must be [lo, hi] (two numbers), got {br!r}")
    lo, hi = float(br[0]), float(br[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ConfigError(f"[boundary] bracket must have finite lo <= hi, got {br!r}")

    def number(key, default, positive=False, integer=False, minimum=None):
        v = table.get(key, default)
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or not math.isfinite(v) or (positive and v <= 0) \
                or (minimum is not None and v < minimum):
            want = "an integer" if integer else "a number"
            more = " > 0" if positive else (f" >= {minimum}" if minimum is not None else "")
            raise ConfigError(f"[boundary] '{key}' must be {want}{more}, got {v!r}")
        return v

    def flag(key, default):
        v = table.get(key, default)
        if not isinstance(v, bool):
            raise ConfigError(f"[boundary] '{key}' must be true or false, got {v!r}")
        return v

    level = table.get("level", "midpoint")
    if level != "midpoint":
        level = number("level", None)
    direction = table.get("direction", "auto")
    if direction not in ("auto", "increasing", "decreasing"):
        raise ConfigError(f"[boundary] direction must be auto, increasing or decreasing, "
                          f"got {direction!r}")
    log, relative = flag("log", False), flag("relative", False)
    if (log or relative) and lo <= 0:
        raise ConfigError(f"[boundary] log = true and relative = true need a bracket with "
                          f"lo > 0, got {br!r}")
    seeds = table.get("seeds", "seed")
    if seeds is not None and not isinstance(seeds, str):
        raise ConfigError(f"[boundary] seeds must name an axis, got {seeds!r}")
    var = table.get("var", "test_error")
    if not isinstance(var, str):
        raise ConfigError(f"[boundary] var must name a recorded variable, got {var!r}")
    return Search(axis=axis, bracket=(lo, hi), tolerance=number("tolerance", None, positive=True),
                  level=level, var=var, coarse=number("coarse", 3, integer=True, minimum=2),
                  relative=relative, log=log,
                  max_rounds=number("max_rounds", 30, integer=True, minimum=0),
                  direction=direction, seeds=seeds,
                  monotone_tol=number("monotone_tol", 0.0, minimum=0.0))


# ---------------------------------------------------------------- the pure core
def _se(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def decide(search: Search, xs: list[float], values: list[np.ndarray]) -> dict:
    """One point's state after its probes ``xs`` (in the order evaluated: the scan first,
    then one midpoint per round) with per-seed metric ``values``: ``flag``, ``level``,
    ``sign`` (+1: the metric increases), the bracket ``lo``, ``hi``, ``rounds`` (bisection
    rounds done), ``next`` (the next probe, or None when the point is finished)."""
    scan = search.scan()
    out = {"flag": "ok", "level": np.nan, "sign": 0, "lo": search.bracket[0],
           "hi": search.bracket[1], "rounds": max(len(xs) - len(scan), 0), "next": None}
    if len(xs) < len(scan):
        out["next"] = scan[len(xs)]  # the scan is asked for in one round (see plan)
        return out
    means = [float(np.mean(v)) if np.all(np.isfinite(v)) else np.nan for v in values]
    ses = [_se(np.asarray(v, float)) for v in values]
    if not np.all(np.isfinite(means)):
        return {**out, "flag": "diverged", "lo": np.nan, "hi": np.nan}
    if len(scan) == 1:
        return {**out, "flag": "empty_bracket", "level": search.level
                if search.level != "midpoint" else means[0]}
    g = means[:len(scan)]
    level = 0.5 * (g[0] + g[-1]) if search.level == "midpoint" else float(search.level)
    sign = {"increasing": 1, "decreasing": -1}.get(search.direction, int(np.sign(g[-1] - g[0])))
    out.update(level=level, sign=sign)
    if sign == 0:
        return {**out, "flag": "never_crossed", "lo": np.nan, "hi": np.nan}
    crossed = [sign * (m - level) >= 0 for m in g]
    changes = sum(a != b for a, b in zip(crossed[:-1], crossed[1:]))
    first = next((i for i in range(len(g) - 1) if not crossed[i] and crossed[i + 1]), None)
    if first is None:
        return {**out, "flag": "never_crossed", "lo": np.nan, "hi": np.nan}
    tol = lambda i, j: search.monotone_tol + 2.0 * math.hypot(ses[i], ses[j])  # noqa: E731
    against = any(sign * (g[i + 1] - g[i]) < -tol(i, i + 1) for i in range(len(g) - 1))
    flag = "not_monotone" if changes > 1 or against else "ok"
    lo, hi, ilo, ihi = scan[first], scan[first + 1], first, first + 1
    for k in range(len(scan), len(xs)):
        m = means[k]
        if not (min(means[ilo], means[ihi]) - tol(k, ilo) <= m
                <= max(means[ilo], means[ihi]) + tol(k, ihi)):
            flag = "not_monotone"
        if sign * (m - level) >= 0:
            hi, ihi = xs[k], k
        else:
            lo, ilo = xs[k], k
    out.update(flag=flag, lo=lo, hi=hi)
    if not search.narrow(lo, hi) and out["rounds"] < search.max_rounds:
        out["next"] = search.midpoint(lo, hi)
    return out


def plan(search: Search, history: list[tuple[list, list]]) -> list[list[float]]:
    """The next round: per point, the probes to evaluate (the whole scan in round 0, then
    at most one midpoint; [] for a finished point). ``history[p] = (xs, values)``."""
    out = []
    for xs, values in history:
        if not xs:
            out.append(search.scan())
        else:
            nxt = decide(search, xs, values)["next"]
            out.append([] if nxt is None else [nxt])
    return out


def _crossing(search, xs, means, level, sign):
    """The first crossing along sorted probes, interpolated; NaN when none brackets it."""
    order = np.argsort(xs)
    x, g = np.asarray(xs)[order], np.asarray(means)[order]
    c = sign * (g - level) >= 0
    idx = np.flatnonzero(~c[:-1] & c[1:])
    if not len(idx):
        return np.nan
    i = idx[0]
    a, b = (np.log(x[i]), np.log(x[i + 1])) if search.log else (x[i], x[i + 1])
    t = (level - g[i]) / (g[i + 1] - g[i])
    v = a + min(max(t, 0.0), 1.0) * (b - a)
    return float(np.exp(v) if search.log else v)


def summarize(search: Search, xs: list[float], values: list[np.ndarray]) -> dict:
    """A finished point: ``decide``'s fields plus ``crossing`` and its interval."""
    st = decide(search, xs, values)
    st.update(crossing=np.nan, ci_lo=np.nan, ci_hi=np.nan, probes=len(xs),
              resolved=bool(st["flag"] in ("ok", "not_monotone")
                            and search.narrow(st["lo"], st["hi"])))
    if st["flag"] not in ("ok", "not_monotone"):
        return st
    vals = np.asarray([np.asarray(v, float) for v in values])  # (probe, seed)
    means = vals.mean(axis=1)
    lo, hi = st["lo"], st["hi"]
    ilo, ihi = xs.index(lo), xs.index(hi)
    st["crossing"] = _crossing(search, [lo, hi], [means[ilo], means[ihi]], st["level"], st["sign"])
    st["ci_lo"], st["ci_hi"] = lo, hi
    if vals.shape[1] > 1:
        rng = np.random.default_rng(0)
        picks = rng.integers(0, vals.shape[1], size=(BOOTSTRAP, vals.shape[1]))
        boot = [_crossing(search, xs, vals[:, p].mean(axis=1), st["level"], st["sign"])
                for p in picks]
        boot = np.asarray(boot)[np.isfinite(boot)]
        if len(boot):
            q = np.percentile(boot, [2.5, 97.5])
            st["ci_lo"], st["ci_hi"] = min(float(q[0]), lo), max(float(q[1]), hi)
    return st


def locate(search: Search, metric, n_points: int) -> tuple[list[dict], int]:
    """Run the whole search on a callable: ``metric(point, xs) -> (len(xs), seeds)`` array.
    Returns each point's ``summarize`` and the number of rounds (calls of ``metric`` with
    at least one probe). The same loop as ``run``, without training: for tests."""
    history = [([], []) for _ in range(n_points)]
    rounds = 0
    while True:
        probes = plan(search, history)
        if not any(probes):
            break
        rounds += 1
        for p, xs in enumerate(probes):
            if xs:
                vals = np.asarray(metric(p, np.asarray(xs)), float)
                history[p][0].extend(xs)
                history[p][1].extend(list(vals))
    return [summarize(search, xs, vs) for xs, vs in history], rounds


# ---------------------------------------------------------------- specs with [boundary]
@dataclass(frozen=True)
class BoundarySpec:
    sweep: object  # sweeps.Spec of the other axes (the seed axis included), without [boundary]
    search: Search
    raw: dict  # the whole spec after the scale's overrides, [boundary] included


def load(source, scale: str = "full") -> BoundarySpec:
    """A spec with a ``[boundary]`` table from a TOML path, a preset name or a dict. The
    table may be overridden per scale (``[scales.NAME.boundary]``)."""
    from . import sweeps
    from .family import get as get_family

    raw, _, default_name = sweeps.read_raw(source)
    raw = copy.deepcopy(raw)
    raw.setdefault("name", default_name)
    if "boundary" not in raw:
        raise ConfigError("the spec has no [boundary] table (axis, bracket, tolerance, ...); "
                          "a plain sweep runs with 'twolayer sweep'")
    table = dict(raw.pop("boundary"))
    scales = raw.get("scales", {})
    if scale != "full" and isinstance(scales.get(scale), dict) and "boundary" in scales[scale]:
        table.update(scales[scale].pop("boundary"))
    for other in scales.values():
        if isinstance(other, dict):
            other.pop("boundary", None)
    sweep = sweeps.load_spec(raw, scale)
    family = get_family(sweep.family)
    search = parse(table, family)
    scalars = [v.name for v in family.variables if not v.dims]
    if search.var not in scalars:
        raise ConfigError(f"[boundary] var '{search.var}' is not a recorded scalar of family "
                          f"'{family.name}'{suggest(search.var, scalars)}; allowed: "
                          f"{', '.join(scalars)}")
    names = {n for a in sweep.axes for n in a.names}
    if search.axis in names or search.axis in sweep.base or search.axis in sweep.train:
        raise ConfigError(f"[boundary] axis '{search.axis}' is searched: remove it from "
                          f"[axes], [base] and [train]")
    if search.seeds is not None and search.seeds not in {a.dim for a in sweep.axes}:
        if "seeds" in table:
            raise ConfigError(f"[boundary] seeds = '{search.seeds}' is not an axis of the spec")
        search = dataclasses.replace(search, seeds=None)
    full = {**sweep.raw, "boundary": table}
    return BoundarySpec(sweep=sweep, search=search, raw=full)


def _points(spec: BoundarySpec) -> tuple[list, list]:
    """The point axes (every axis but the seed axis) and their points (coords dicts)."""
    import itertools

    axes = [a for a in spec.sweep.axes if a.dim != spec.search.seeds]
    pts = [{n: v for a, vals in zip(axes, combo) for n, v in zip(a.names, vals)}
           for combo in itertools.product(*[a.values for a in axes])]
    return axes, pts


def _round_spec(spec: BoundarySpec, k: int, probes: list[list[float]], points: list[dict]):
    """Round k as a sweep: one zipped axis (the probe axis first) over every (point, probe)
    pair, times the seed axis."""
    from .sweeps import Axis

    names = (spec.search.axis, *points[0].keys())
    rows = tuple((x, *pt.values()) for pt, xs in zip(points, probes) for x in xs)
    seeds = [a for a in spec.sweep.axes if a.dim == spec.search.seeds]
    raw = {**spec.raw, "round": k, "probes": [[p, xs] for p, xs in enumerate(probes) if xs]}
    return dataclasses.replace(spec.sweep, name=f"{spec.sweep.name}-round{k}", raw=raw,
                               axes=(Axis(names, rows), *seeds))


def _run_round(rspec, folder: Path, ex, shard_size: int, state_every: float, log) -> list:
    """Train (or read back) one round's shards, as ``sweeps.run`` does without merging
    (a round's probe values may repeat across points): the runs' Datasets (dim ``run``)."""
    from . import store, sweeps

    held = store.check_folder(folder)
    meta = store.read_meta(folder) if held == "sweep" else None
    todo = sweeps.plan(rspec, shard_size, folder, meta)
    sweeps._check_groups(rspec.family, todo.train)
    if ex.name != "local":
        sweeps._check_portable(todo.train)
    task = sweeps.ShardTask(rspec.family, None, state_every, False)

    def check(now):  # a round folder holds this round or nothing (its contents are derived)
        if now == "run":
            raise ConfigError(f"{folder} holds a single run, not a boundary round")

    with store.open_folder(folder, check) as f:
        store.write_meta(f, sweeps._manifest(rspec, todo))
        task = dataclasses.replace(task, folder=str(f))
        return sweeps._assemble(todo, sweeps._train(ex, task, todo, f, log, _quiet(rspec, todo)))


def _quiet(rspec, todo):
    """The sweep progress display, not shown (a round logs its shards)."""
    from .progress import SweepProgress

    return SweepProgress(rspec.name, len(todo.sources), todo.runs, show=False)


def _spec_hash(spec: BoundarySpec) -> str:
    """What decides the runs: family, settings, axes and the search (not the figures, the
    description or other scales' overrides)."""
    what = {"family": spec.sweep.family, "base": spec.sweep.base, "train": spec.sweep.train,
            "axes": [[a.names, a.values] for a in spec.sweep.axes],
            "search": dataclasses.asdict(spec.search)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _check_out(out: Path, spec: BoundarySpec) -> None:
    meta = out / "boundary.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("id") != _spec_hash(spec):
            raise ConfigError(f"{out} holds another boundary search ('{old.get('name', '?')}', "
                              f"scale {old.get('scale', '?')}); choose a new --out folder")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} is not empty and holds no boundary search; choose a new "
                          f"--out folder")


def run(source, out=None, *, scale: str = "full", shard_size: int = 512, executor=None,
        state_every: float = 60.0, log=None) -> xr.Dataset:
    """Locate the boundary of a spec with a ``[boundary]`` table (module docstring). With
    ``out``, each round is a sweep in ``out/rounds/K`` and the result is ``out/result.nc``;
    a rerun trains only what is missing. Returns the Dataset of boundary points."""
    from . import runtime, store
    from .analysis import final
    from .executors import open_executor

    runtime.configure()
    spec = source if isinstance(source, BoundarySpec) else load(source, scale)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    axes, points = _points(spec)
    if out is not None:
        out = Path(out)
        _check_out(out, spec)
        out.mkdir(parents=True, exist_ok=True)
        store._atomic(out / "boundary.json", lambda tmp: tmp.write_text(json.dumps(
            {"id": _spec_hash(spec), "name": spec.sweep.name, "scale": spec.sweep.scale,
             "spec": spec.raw}, indent=1, default=str)))
    search = spec.search
    history = [([], []) for _ in points]
    seed_vals = ([v[0] for a in spec.sweep.axes if a.dim == search.seeds for v in a.values]
                 or [None])
    rounds = []  # per round: {point: [probes]}
    ex = open_executor(executor)
    try:
        while True:
            probes = plan(search, history)
            if not any(probes):
                break
            k = len(rounds)
            rspec = _round_spec(spec, k, probes, points)
            n_runs = sum(map(len, probes)) * len(seed_vals)
            log(f"boundary round {k}: {sum(1 for p in probes if p)} points, {n_runs} runs")
            if out is None:
                from . import sweeps
                todo = sweeps.plan(rspec, shard_size)
                task = sweeps.ShardTask(rspec.family, None, state_every, False)
                parts = sweeps._assemble(todo, sweeps._train(ex, task, todo, None, log,
                                                             _quiet(rspec, todo)))
            else:
                parts = _run_round(rspec, out / "rounds" / str(k), ex, shard_size,
                                   state_every, log)
            table = {}
            for part in parts:
                if search.var not in part:
                    raise ConfigError(f"[boundary] var '{search.var}' is not recorded; "
                                      f"recorded: {', '.join(sorted(part.data_vars))}")
                vals = np.asarray(final(part[search.var]).values, float)
                xs = np.asarray(part[search.axis].values, float)
                seeds = (part[search.seeds].values if search.seeds else [None] * len(xs))
                keys = [tuple(part[n].values[i].item() for n in points[0]) for i in range(len(xs))]
                for i in range(len(xs)):
                    table[(keys[i], float(xs[i]), _item(seeds[i]))] = vals[i]
            for p, xs in enumerate(probes):
                key = tuple(points[p].values())
                for x in xs:
                    history[p][0].append(x)
                    history[p][1].append(np.asarray([table[(key, float(x), _item(s))]
                                                     for s in seed_vals]))
            rounds.append(probes)
    finally:
        if ex is not executor:
            ex.close()
    ds = _dataset(spec, axes, points, history, seed_vals, len(rounds))
    if out is not None:
        store.write_result(out, ds)
        n_ok = int((ds["flag"] == "ok").sum())
        log(f"{len(points)} boundary points ({n_ok} ok) in {len(rounds)} rounds, "
            f"{int(ds['runs'].sum())} runs -> {store.result_path(out)}")
    return ds


def _item(v):
    return v.item() if hasattr(v, "item") else v


def _dataset(spec, axes, points, history, seed_vals, n_rounds) -> xr.Dataset:
    from . import store

    search = spec.search
    shape = tuple(len(a.values) for a in axes)
    dims = [a.dim for a in axes]
    n_probe = max((len(xs) for xs, _ in history), default=0)
    n_seed = len(seed_vals)
    summ = [summarize(search, xs, vs) for xs, vs in history]
    scalar = {k: np.asarray([s[k] for s in summ]).reshape(shape)
              for k in ("crossing", "lo", "hi", "ci_lo", "ci_hi", "level", "rounds", "probes",
                        "resolved", "flag")}
    pv = np.full((len(points), n_probe), np.nan)
    pm = np.full((len(points), n_probe, n_seed), np.nan)
    for p, (xs, vs) in enumerate(history):
        pv[p, :len(xs)] = xs
        if xs:
            pm[p, :len(xs)] = np.asarray(vs)
    sd = search.seeds or "seed"
    data = {k: (dims, v.astype(str) if k == "flag" else v) for k, v in scalar.items()}
    data["runs"] = (dims, scalar["probes"] * n_seed)
    data["probe_value"] = (dims + ["probe"], pv.reshape(shape + (n_probe,)))
    data["probe_mean"] = (dims + ["probe"], pm.mean(axis=2).reshape(shape + (n_probe,)))
    data["probe_metric"] = (dims + ["probe", sd], pm.reshape(shape + (n_probe, n_seed)))
    coords = {a.dim: [v[0] for v in a.values] for a in axes}
    for a in axes:
        for j, name in enumerate(a.names[1:], 1):
            coords[name] = (a.dim, [v[j] for v in a.values])
    coords["probe"] = np.arange(n_probe)
    if search.seeds:
        coords[sd] = seed_vals
    ds = xr.Dataset(data, coords=coords)
    doc = {"crossing": f"{search.axis} where the seed mean of final {search.var} crosses "
                       f"the level", "lo": "final bracket, low end", "hi": "final bracket, high end",
           "ci_lo": "interval: bootstrap over seeds, widened to the bracket",
           "ci_hi": "interval: bootstrap over seeds, widened to the bracket",
           "flag": " / ".join(FLAGS), "rounds": "bisection rounds after the scan",
           "probes": "evaluated values of the axis", "runs": "runs trained for this point",
           "probe_value": f"{search.axis} of each probe, in the order evaluated",
           "probe_metric": f"final {search.var} of each probe and seed"}
    for k, v in doc.items():
        ds[k].attrs["description"] = v
    ds.attrs = {**store.provenance(dataclasses.replace(spec.sweep, raw=spec.raw)),
                "boundary_axis": search.axis, "boundary_var": search.var,
                "boundary_rounds": n_rounds,
                "boundary": json.dumps(dataclasses.asdict(search), default=str)}
    return ds


def search_of(ds) -> Search:
    """The ``Search`` a boundary Dataset was made with."""
    d = json.loads(ds.attrs["boundary"])
    d["bracket"] = tuple(d["bracket"])
    return Search(**d)


def is_boundary_spec(source) -> bool:
    """Whether a spec (path, preset name or dict) has a ``[boundary]`` table (False for one
    that cannot be read: reading it as a sweep then says why)."""
    from . import sweeps

    try:
        return "boundary" in sweeps.read_raw(source)[0]
    except ConfigError:
        return False


# ---------------------------------------------------------------- exponents and tables
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def table(ds: xr.Dataset) -> str:
    """The boundary points as a Markdown table: point coordinates, crossing, interval,
    final bracket, rounds, runs, flag."""
    dims = list(ds["crossing"].dims)
    axis = ds.attrs.get("boundary_axis", "crossing")
    head = [*dims, f"{axis}*", "interval", "bracket", "rounds", "runs", "flag"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    flat = ds[["crossing", "ci_lo", "ci_hi", "lo", "hi", "rounds", "runs", "flag"]]
    flat = flat.stack(_p=dims) if dims else flat.expand_dims(_p=[0])
    for i in range(flat.sizes["_p"]):
        r = flat.isel(_p=i)
        cells = [_fmt(r[d].item()) for d in dims] + [
            _fmt(r.crossing.item()), f"[{_fmt(r.ci_lo.item())}, {_fmt(r.ci_hi.item())}]",
            f"[{_fmt(r.lo.item())}, {_fmt(r.hi.item())}]", str(int(r.rounds)), str(int(r.runs)),
            str(r.flag.item())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_table(ds: xr.Dataset, x: str) -> str:
    """The fitted exponents of ``fit_exponent`` as a Markdown table."""
    fit = fit_exponent(ds, x)
    dims = [d for d in fit["slope"].dims]
    head = [*dims, f"exponent of {x}", "95 % interval", "points"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    flat = fit.stack(_p=dims) if dims else fit.expand_dims(_p=[0])
    for i in range(flat.sizes["_p"]):
        r = flat.isel(_p=i)
        cells = [_fmt(r[d].item()) for d in dims] + [
            f"{r.slope.item():.3f}", f"[{r.slope_lo.item():.3f}, {r.slope_hi.item():.3f}]",
            str(int(r.points))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
