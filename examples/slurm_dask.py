"""Run a twolayer sweep on a SLURM cluster through dask-jobqueue.

    python examples/slurm_dask.py SPEC --out /shared/runs/x --jobs 8 --cores 16 \\
        --memory 32GB --walltime 04:00:00 --queue normal
    python examples/slurm_dask.py SPEC --out /shared/runs/x --print-job-script  # submits nothing
    python examples/slurm_dask.py SPEC --out runs/x --local 2    # the same on a LocalCluster

SPEC is a sweep file or a preset name. Each SLURM job runs ``--cores`` single-threaded Dask
worker processes, one JAX host device each (``TWOLAYER_HOST_DEVICES=1`` in the job script):
a worker trains one shard at a time, and the sweep's shards are spread over every worker of
every job. Workers write the shard files into ``--out``, so it must be on a filesystem that
the compute nodes share (home or scratch); this script (the Dask client) merges them into
``result.nc``. Needs ``pip install 'twolayer[dask]'``.

Without a live client: ``twolayer submit SPEC --out DIR`` sends the shards as a SLURM job
array (submitit) and returns; ``twolayer sweep`` merges them later (docs/scale-out.md).

Faults: a job that is preempted or hits its walltime takes its workers with it; Dask
reschedules their shards on the other workers (from the shard's saved training state). If
the whole allocation ends, run this script again with the same arguments: finished shards
are skipped and long shards resume mid-run. Two clients on one ``--out`` are refused.
"""
from __future__ import annotations

import argparse
import sys

import twolayer


def slurm_cluster(args):
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        queue=args.queue, account=args.account, cores=args.cores, processes=args.cores,
        memory=args.memory, walltime=args.walltime,
        job_script_prologue=["export TWOLAYER_HOST_DEVICES=1", "export TWOLAYER_PROGRESS=0",
                             *args.prologue],
        log_directory=args.log_directory)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="sweep file or preset name")
    p.add_argument("--out", required=True, help="output folder (shared by the nodes)")
    p.add_argument("--scale", default="full")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs (each: --cores workers)")
    p.add_argument("--cores", type=int, default=8, help="cores per job")
    p.add_argument("--memory", default="16GB", help="memory per job")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--queue", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--log-directory", default=None)
    p.add_argument("--prologue", action="append", default=[],
                   help="a line for the job script before the worker starts (repeatable), "
                        "e.g. 'source ~/venvs/twolayer/bin/activate'")
    p.add_argument("--print-job-script", action="store_true",
                   help="print the sbatch script of one job and exit (submits nothing)")
    p.add_argument("--local", type=int, metavar="N",
                   help="no SLURM: a LocalCluster of N worker processes (for testing)")
    args = p.parse_args(argv)

    if args.local:  # the executor of `twolayer sweep --executor dask-local:N`
        twolayer.sweep(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
                       executor=f"dask-local:{args.local}")
        return 0

    from distributed import Client

    cluster = slurm_cluster(args)
    if args.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return 0
    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        twolayer.sweep(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
                       executor=client)
    cluster.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except twolayer.ConfigError as err:
        print(f"slurm_dask: error: {err}", file=sys.stderr)
        sys.exit(2)
