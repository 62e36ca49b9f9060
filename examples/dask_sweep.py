"""Running a sweep on Dask: the shards are trained by Dask worker processes, the merged result
is the same as in one process (to the last bit).

    python examples/dask_sweep.py                           # a LocalCluster of 2 workers
    python examples/dask_sweep.py --small                   # a few seconds' worth of runs
    python examples/dask_sweep.py --executor dask-local:2   # the same, started by twolayer
    python examples/dask_sweep.py --executor dask://HOST:PORT   # a running scheduler

Needs Dask: ``pip install -e '.[dask]'`` (the test extras include it).

What it shows:

- ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` and a
  ``Client``; ``twolayer.sweep(spec, out, executor=client)`` submits one task per shard. A
  client passed in is used, not closed: further sweeps reuse its warm workers;
- ``twolayer.executors.worker_env(k)``: the environment that gives each worker ``k`` JAX
  host devices (here ``devices_per_worker(N)``: the cores split between the workers, as
  ``dask-local:N`` does) and no progress bar;
- the string form ``executor="dask-local:N"`` starts and closes such a cluster for one
  sweep; ``"processes:N"`` uses a plain process pool; ``"dask://HOST:PORT"`` an existing
  scheduler (``dask scheduler`` and ``dask worker`` started by hand, or a cluster manager);
- ``out`` must be on a filesystem that every worker can write (the workers write the shard
  files, the client merges them), and a rerun skips the shards already written.

On SLURM, ``examples/slurm_dask.py`` starts the workers as batch jobs through dask-jobqueue
(``SLURMCluster``) and runs the same call; see docs/scale-out.md.

A family or activation registered in this process only (``twolayer.register_family``,
``twolayer.register_activation``) is not known to the workers: name activations as
``'module:function'``, and run registered families in process.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import twolayer
from twolayer import analysis, sweeps
from twolayer.executors import devices_per_worker, worker_env


def make_spec(small: bool = False) -> dict:
    spec = {
        "name": "dask-sweep",
        "family": "single_neuron",
        "base": {"width": 2, "sampling": "gaussian", "loss": "mean", "init_scale": 1e-20},
        "train": {"learning_rate": 0.5, "max_steps": 50_000, "n_checkpoints": 40},
        "axes": {"n_train": [3, 4, 5, 6], "data_seed": {"range": [0, 4]},
                 "imbalance": {"chebyshev": [0.0, 1.0, 11]}},
    }
    if small:
        spec["train"].update(max_steps=2_000, n_checkpoints=20)
        spec["axes"] = {"n_train": [6], "data_seed": [0, 1, 2], "imbalance": [0.0, 0.5, 1.0]}
    return spec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/dask-sweep", help="the sweep's folder")
    p.add_argument("--small", action="store_true", help="a few seconds: fewer runs and steps")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--executor", help="a twolayer executor string instead of the LocalCluster "
                                      "started here, e.g. dask-local:2 or dask://HOST:PORT")
    p.add_argument("--shard-size", type=int, default=None,
                   help="runs per shard (default: the runs split evenly over the workers)")
    args = p.parse_args(argv)

    spec = make_spec(args.small)
    # one task per shard: cut the runs into at least as many shards as there are workers
    runs = len(sweeps.expand(sweeps.load_spec(spec)))
    shard_size = args.shard_size or max(1, -(-runs // args.workers))

    if args.executor:  # the string form: twolayer starts (and closes) what it names
        ds = twolayer.sweep(spec, out=args.out, executor=args.executor, shard_size=shard_size)
    else:
        import logging

        from distributed import Client, LocalCluster

        devices = devices_per_worker(args.workers)  # what dask-local:N gives each worker
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, env=worker_env(devices),
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            print(f"Dask scheduler {client.scheduler.address}, {args.workers} workers with "
                  f"{devices} JAX device(s) each")
            ds = twolayer.sweep(spec, out=args.out, executor=client, shard_size=shard_size)

    rate = analysis.recovery_rate(ds, ["data_seed", "imbalance"])
    print(f"{runs} runs -> {Path(args.out) / 'result.nc'}")
    for n, r in zip(ds.n_train.values, rate.values):
        print(f"n_train = {int(n)}: recovered fraction {float(r):.3f}")
    return 0


if __name__ == "__main__":  # needed: Dask's worker processes import this file
    raise SystemExit(main())
