"""Boundary location by bisection against a full grid, and the boundary scaling presets.

Section ``grid`` (Kou's setting, preset kou2023-heatmap's base: n = 20, 1000 test points,
100 GD steps, fixed output): for each d, the 100-point |mu| grid 0, 0.1, ..., 9.9 x S seeds
against ``twolayer.boundary`` on the same settings and seeds (bracket [0, 9.9], coarse scan
of 3, tolerance 0.1 = one grid step, level 0.3: midway between the harmful 0.5 and the floor
p = 0.1). Printed per d: the grid's crossing (the first grid pair whose seed means straddle
the level, interpolated), the search's crossing and interval, their difference in grid
steps, and the runs each needed.

Section ``scaling``: ``twolayer reproduce PRESET --scale SCALE`` of the boundary scaling
presets in a child process (an empty compilation cache, as the gallery times presets), its
wall time, the boundary table and the fitted exponents.

    .venv/bin/python benchmarks/bench_boundary.py                       # both, full scale
    .venv/bin/python benchmarks/bench_boundary.py --sections grid --dims 100,400,1000 --seeds 10
    .venv/bin/python benchmarks/bench_boundary.py --sections scaling --presets boundary-d-scaling
    .venv/bin/python benchmarks/bench_boundary.py --quick               # smoke run
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
from machine import cpu_model  # benchmarks/machine.py (the script's folder)

import twolayer
from twolayer import presets

LEVEL = 0.3
STEP = 0.1


def kou_spec(dims, seeds, n_test, steps):
    raw = tomllib.loads(presets.path("kou2023-heatmap").read_text())
    base = {**raw["base"], "n_test": n_test}
    train = {**raw["train"], "max_steps": steps, "n_checkpoints": 2}
    return {"name": "kou-boundary", "family": "patch_cnn", "base": base, "train": train,
            "axes": {"input_dim": dims, "seed": list(range(seeds))}}


def grid_crossing(xs, means, level=LEVEL):
    """The first grid pair whose means straddle the level (falling), interpolated."""
    idx = np.flatnonzero((means[:-1] > level) & (means[1:] <= level))
    if not len(idx):
        return np.nan, 0
    i = idx[0]
    crossings = len(np.flatnonzero(np.diff((means > level).astype(int)) != 0))
    return float(xs[i] + (level - means[i]) / (means[i + 1] - means[i]) * (xs[i + 1] - xs[i])), crossings


def section_grid(dims, seeds, n_test, steps, quick):
    spec = kou_spec(dims, seeds, n_test, steps)
    xs = np.round(np.arange(0.0, 9.95, STEP), 10) if not quick else np.round(np.arange(0.0, 9.95, 0.9), 10)
    grid = {**spec, "axes": {"input_dim": dims, "signal_norm": xs.tolist(), "seed": list(range(seeds))}}
    t = time.perf_counter()
    g = twolayer.sweep(grid, progress=False).test_error.isel(step=-1).mean("seed")
    t_grid = time.perf_counter() - t
    search = {**spec, "boundary": {"axis": "signal_norm", "level": LEVEL, "bracket": [0.0, 9.9],
                                   "coarse": 3, "tolerance": STEP}}
    t = time.perf_counter()
    b = twolayer.boundary(search, log=lambda m: None)
    t_b = time.perf_counter() - t
    print(f"grid section: Kou's setting, n_test = {n_test}, {steps} steps, {seeds} seeds, "
          f"level {LEVEL}; grid |mu| = 0..9.9 step {xs[1] - xs[0]:.1f} ({len(xs)} values)")
    print(f"{'d':>6} {'grid |mu|*':>10} {'crossings':>9} {'search |mu|*':>12} {'interval':>16} "
          f"{'diff/step':>9} {'grid runs':>9} {'search runs':>11} {'flag':>12}")
    worst = 0.0
    for d in dims:
        gc, n_cross = grid_crossing(xs, g.sel(input_dim=d).values)
        p = b.sel(input_dim=d)
        diff = abs(float(p.crossing) - gc) / (xs[1] - xs[0])  # in grid steps
        worst = max(worst, diff)
        print(f"{d:>6} {gc:>10.3f} {n_cross:>9} {float(p.crossing):>12.3f} "
              f"[{float(p.ci_lo):6.3f}, {float(p.ci_hi):6.3f}] {diff:>9.2f} "
              f"{len(xs) * seeds:>9} {int(p.runs):>11} {str(p.flag.values):>12}")
    runs_grid, runs_b = len(xs) * seeds * len(dims), int(b.runs.sum())
    print(f"runs: grid {runs_grid}, search {runs_b} ({runs_grid / runs_b:.1f}x fewer); "
          f"wall: grid {t_grid:.1f} s, search {t_b:.1f} s ({int(b.attrs['boundary_rounds'])} "
          f"rounds); largest difference {worst:.2f} grid steps")


def section_scaling(names, scale):
    for name in names:
        with tempfile.TemporaryDirectory(prefix="twolayer-bench-") as tmp:
            out = os.path.join(tmp, name)
            env = {**os.environ, "TWOLAYER_CACHE_DIR": os.path.join(tmp, "cache"),
                   "TWOLAYER_PROGRESS": "0"}
            load = os.getloadavg()[0]
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "twolayer.cli", "reproduce", name,
                                   "--scale", scale, "--out", out], env=env,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t
            if done.returncode:
                print(done.stdout[-2000:] + done.stderr[-3000:])
                raise SystemExit(f"reproduce {name} failed")
            from twolayer.boundaries import fit_table, table

            ds = twolayer.load(out)
            x = [d for d in ds["crossing"].dims if d in ("input_dim", "n_train")][0]
            print(f"reproduce {name} --scale {scale}: {wall:.0f} s wall ({wall / 60:.1f} min), "
                  f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
                  f"{int(ds.runs.sum())} runs in {int(ds.attrs['boundary_rounds'])} rounds")
            print(table(ds))
            print(fit_table(ds, x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="grid,scaling")
    ap.add_argument("--dims", default="100,300,1000", help="grid section: the d values")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--presets", default="boundary-d-scaling,boundary-n-scaling")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    args = ap.parse_args()
    if args.quick:
        args.dims, args.seeds, args.n_test, args.steps, args.scale = "100", 2, 100, 20, "tiny"
        args.presets = "boundary-d-scaling"
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; twolayer {twolayer.__version__}")
    sections = args.sections.split(",")
    if "grid" in sections:
        section_grid([int(d) for d in args.dims.split(",")], args.seeds, args.n_test,
                     args.steps, args.quick)
    if "scaling" in sections:
        section_scaling(args.presets.split(","), args.scale)


if __name__ == "__main__":
    main()
