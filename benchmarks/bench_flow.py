"""Gradient flow against gradient descent on the study's fig4: the same runs (n = 2..6 Gaussian
points, init 1e-20, the c~ grid, the data seeds) trained by GD at the study's step and budget
(preset fig4) and by gradient flow to its limit (preset fig4-flow), each as a user would run
it (`twolayer sweep PRESET`, a child process, an empty compilation cache). Printed: wall and
CPU time, solver steps per run against GD's steps, and what each calls recovered at n = 6
(the parameter count, where every global minimum is perfect).

    .venv/bin/python benchmarks/bench_flow.py            # full scale: GD takes ~8 min
    .venv/bin/python benchmarks/bench_flow.py --quick    # both presets at scale quick
    .venv/bin/python benchmarks/bench_flow.py --flow-only   # fig4-flow alone (no GD baseline)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu_model

import twolayer
from twolayer import analysis


def timed(preset: str, scale: str, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `twolayer sweep PRESET --scale SCALE --out OUT`, cold cache."""
    env = {**os.environ, "TWOLAYER_CACHE_DIR": "0", "TWOLAYER_PROGRESS": "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "twolayer.cli", "sweep", preset, "--scale", scale,
                    "--out", str(out)], env=env, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def describe(ds, budget: int | None) -> dict:
    steps = ds["stop_step"].values.ravel()
    if "rejected_steps" in ds:
        steps = steps + ds["rejected_steps"].values.ravel()
    six = ds.sel(n_train=6)
    counts = analysis.outcome_counts(six, ["data_seed", "imbalance"])
    return {"runs": steps.size, "steps_median": float(np.median(steps)),
            "steps_max": int(steps.max()), "budget": budget,
            "recovered_n6": int(counts["recovered"]), "unresolved_n6": int(counts["unresolved"]),
            "runs_n6": int(six["recovered"].size)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scale quick instead of full")
    p.add_argument("--flow-only", action="store_true", help="skip the GD baseline")
    args = p.parse_args(argv)
    scale = "quick" if args.quick else "full"
    print(f"# Gradient flow vs GD on fig4 ({scale} scale)\n")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; twolayer {twolayer.__version__}\n")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in (["fig4-flow"] if args.flow_only else ["fig4", "fig4-flow"]):
            out = Path(tmp) / preset
            wall, cpu = timed(preset, scale, out)
            ds = twolayer.load(out)
            budget = None if preset.endswith("flow") else int(ds["step"].values[-1])
            rows[preset] = dict(wall=wall, cpu=cpu, **describe(ds, budget))
    print("| preset | runs | wall | CPU | steps per run (median / max) | step budget | "
          "n = 6 recovered | n = 6 unresolved |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['runs']} | {r['wall']:.1f} s | {r['cpu']:.1f} s | "
              f"{r['steps_median']:.0f} / {r['steps_max']} | {r['budget'] or '-'} | "
              f"{r['recovered_n6']}/{r['runs_n6']} | {r['unresolved_n6']} |")
    if "fig4" in rows:
        gd, fl = rows["fig4"], rows["fig4-flow"]
        print(f"\nflow / GD: wall {fl['wall'] / gd['wall']:.3f}x; solver steps per run "
              f"(max) {fl['steps_max']} against GD's budget {gd['budget']}: "
              f"{gd['budget'] / fl['steps_max']:.0f}x fewer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
