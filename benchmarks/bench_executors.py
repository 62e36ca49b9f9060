"""Executors on one machine: sweep throughput of the in-process executor, a process pool and
Dask LocalClusters of 1 and 2 workers on the same sweep (ratios against the in-process
baseline measured in the same run), the scheduling overhead per shard, how shard size
trades memory for speed, and the determinism tolerance across shard sizes and device counts.

    .venv/bin/python benchmarks/bench_executors.py [--quick]

The sweep: fig4-like width-2 tanh networks, n = 6 Gaussian points, float64, GD, every run
doing every step (loss_tol = 0), 20 checkpoints."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

import twolayer
from twolayer.executors import open_executor


WIDE = {"width": 64, "input_dim": 8, "n_train": 32, "n_test": 4000}  # for the memory study


def spec(runs: int, steps: int, wide: bool = False) -> dict:
    seeds = max(1, runs // 32)
    return {"name": "bench", "base": {"width": 2, "n_train": 6, "sampling": "gaussian",
                                      "init_scale": 1e-6, **(WIDE if wide else {})},
            "train": {"learning_rate": 0.5, "max_steps": steps, "n_checkpoints": 20,
                      "loss_tol": 0.0},
            "axes": {("seed" if wide else "imbalance"): (
                {"range": [0, runs // seeds]} if wide else {"linspace": [0.0, 1.0, runs // seeds]}),
                     "data_seed": {"range": [0, seeds]}}}


def quiet(msg):
    pass


def timed_sweep(sp, executor, shard_size, out=None) -> float:
    t0 = time.perf_counter()
    twolayer.sweeps.run(sp, out, shard_size=shard_size, executor=executor, progress=False,
                        log=quiet)
    return time.perf_counter() - t0


def throughput(args):
    sp = spec(args.runs, args.steps)
    work = args.runs * args.steps
    print(f"\n## Throughput: {args.runs} runs x {args.steps} steps in shards of "
          f"{args.shard_size} ({args.runs // args.shard_size} shards)")
    print("| executor | start | first sweep (compiles) | warm sweep | M run-steps/s | ratio |")
    print("|---|---|---|---|---|---|")
    rows, base = [], None
    for name in ("local", "processes:2", "dask-local:1", "dask-local:2"):
        t0 = time.perf_counter()
        ex = open_executor(name)
        start = time.perf_counter() - t0
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cold = timed_sweep(sp, ex, args.shard_size, f"{tmp}/a")
                warm = min(timed_sweep(sp, ex, args.shard_size, f"{tmp}/{k}")
                           for k in ("b", "c"))
        finally:
            ex.close()
        base = base or warm
        rows.append((name, start, cold, warm))
        print(f"| {name} | {start:.1f} s | {cold:.2f} s | {warm:.2f} s | "
              f"{work / warm / 1e6:.2f} | {base / warm:.2f}x |", flush=True)
    return rows


def overhead(args):
    n = args.tiny_shards
    sp = {"name": "tiny", "base": {"width": 2, "n_train": 4, "init_scale": 1e-3,
                                   "n_test": 10},
          "train": {"max_steps": 1, "n_checkpoints": 2}, "axes": {"seed": {"range": [0, n]}}}
    print(f"\n## Overhead per shard: {n} shards of one run and one step, written to a folder; "
          f"and {10 * n} empty tasks")
    print("| executor | wall per tiny shard (warm) | wall per empty task |")
    print("|---|---|---|")
    for name in ("local", "processes:2", "dask-local:2"):
        ex = open_executor(name)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                timed_sweep(sp, ex, 1, f"{tmp}/a")  # compiles, starts workers
                wall = min(timed_sweep(sp, ex, 1, f"{tmp}/{k}") for k in ("b", "c"))
            t0 = time.perf_counter()
            assert sorted(v for _, v in ex.map(abs, list(range(10 * n)))) == list(range(10 * n))
            empty = (time.perf_counter() - t0) / (10 * n)
        finally:
            ex.close()
        print(f"| {name} | {wall / n * 1e3:.1f} ms | {empty * 1e3:.2f} ms |", flush=True)


def one_size(runs, steps, shard_size):
    """In a fresh process: wall time and peak memory of the sweep in shards of this size."""
    sp = spec(runs, steps, wide=True)
    timed_sweep(sp, None, shard_size)  # compile
    wall = min(timed_sweep(sp, None, shard_size) for _ in range(2))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mb": peak}))


def shard_sizes(args):
    steps = args.steps // 50
    print(f"\n## Shard size ({args.runs} wider runs ({WIDE}) x {steps} steps, in-process, a "
          f"fresh process per row)")
    print("| shard size | shards | wall (warm) | M run-steps/s | peak RSS |")
    print("|---|---|---|---|---|")
    for size in sorted({min(s, args.runs) for s in (4, 16, 64, 256)}):
        out = subprocess.run([sys.executable, __file__, "--one-size", str(size), "--runs",
                              str(args.runs), "--steps", str(steps)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {size} | {-(-args.runs // size)} | {r['wall']:.2f} s | "
              f"{args.runs * steps / r['wall'] / 1e6:.3f} | {r['peak_mb']:.0f} MB |",
              flush=True)


def tolerance(args):
    """Max relative difference of every recorded value between layouts of the same runs."""
    sp = spec(args.runs, args.steps // 10)
    ref = twolayer.sweeps.run(sp, shard_size=args.runs, log=quiet, progress=False)
    variants = {"shard size 1": twolayer.sweeps.run(sp, shard_size=1, log=quiet,
                                                    progress=False),
                "shard size 8": twolayer.sweeps.run(sp, shard_size=8, log=quiet,
                                                    progress=False)}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TWOLAYER_HOST_DEVICES": "1", "XLA_FLAGS": "",
               "TWOLAYER_PROGRESS": "0"}
        code = (f"import twolayer, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                f"from bench_executors import spec; twolayer.sweep(spec({args.runs}, "
                f"{args.steps // 10}), {tmp + '/one'!r}, shard_size={args.runs})")
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        variants["1 device (vs 2)"] = twolayer.load(f"{tmp}/one")
    print(f"\n## Determinism: {args.runs} runs x {args.steps // 10} steps, against one shard "
          f"of {args.runs} on 2 devices")
    print("| layout | values bit-identical | max relative difference |")
    print("|---|---|---|")
    for name, ds in variants.items():
        same, total, worst = 0, 0, 0.0
        for var in ("train_loss", "test_error", "a", "w", "b", "c_coeff"):
            a, b = ds[var].values.ravel(), ref[var].values.ravel()
            ok = np.isfinite(b)
            same += int(np.sum(a[ok] == b[ok]))
            total += int(ok.sum())
            rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)
            worst = max(worst, float(rel.max(initial=0.0)))
        print(f"| {name} | {same}/{total} | {worst:.1e} |", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=256)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--shard-size", type=int, default=32)
    p.add_argument("--tiny-shards", type=int, default=64)
    p.add_argument("--one-size", type=int)
    p.add_argument("--sections", default="throughput,overhead,shard_sizes,tolerance")
    args = p.parse_args()
    if args.one_size:
        return one_size(args.runs, args.steps, args.one_size)
    if args.quick:
        args.runs, args.steps, args.tiny_shards = 32, 5000, 4
        args.shard_size = 16
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, twolayer {twolayer.__version__}")
    for section in args.sections.split(","):
        globals()[section](args)


if __name__ == "__main__":
    main()
