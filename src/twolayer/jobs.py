"""Sweeps sent to a cluster as independent jobs (a SLURM job array through submitit), without
a live client: ``submit`` returns once the jobs are queued and a later ``twolayer sweep``
merges what they wrote; ``slurm_script`` shows the sbatch script. The job executors
themselves (``job_executor``, ``submit_jobs``, ``wait_jobs``) live in ``twolayer.executors``."""
from __future__ import annotations

import sys
from pathlib import Path

from . import runtime, sweeps
from .config import ConfigError
from .executors import (Executor, _check_jobs, _import_submitit, _job_params, job_executor,
                        submit_jobs)


def _sweep_shards(spec, out, scale, shard_size):
    runtime.configure()
    spec = spec if isinstance(spec, sweeps.Spec) else sweeps.load_spec(spec, scale)
    todo = sweeps.shards(spec, shard_size)
    sweeps._check_groups(spec.family, todo)
    sweeps._check_portable(todo)
    return spec, todo


class Submitted(Exception):
    """Raised by ``submit``'s executor once its jobs are sent (carries them): the sweep stops
    there, its manifest written, without waiting."""

    def __init__(self, jobs):
        super().__init__(f"{len(jobs)} jobs submitted")
        self.jobs = jobs


def submit(spec, out, *, scale: str = "full", shard_size: int = 512, cluster: str = "slurm",
           state_every: float = 60.0, replace: bool = False, max_memory=None,
           **options) -> list:
    """Submit every unfinished shard of a sweep as an independent job (a SLURM job array
    through submitit; ``cluster="local"`` to try it on this machine: one process a job) and
    return the submitit jobs without waiting. Each job trains its shard into ``out`` (which
    must be on a filesystem the nodes share), as the workers of the other executors do; a
    later ``twolayer.sweep`` with the same arguments (or ``twolayer sweep``) reads the shard
    files and merges them. The folder is checked and planned as by ``sweep`` (a grown sweep
    submits only its new runs; ``replace``, ``max_memory`` as there). ``options``: submitit
    parameters (see ``JOB_DEFAULTS``). With nothing left to train, the sweep is merged and
    ``[]`` returned."""
    runtime.configure()
    spec = spec if isinstance(spec, sweeps.Spec) else sweeps.load_spec(spec, scale,
                                                                       max_memory=max_memory)
    _check_jobs(cluster, spec.name, options)

    def map_(fn, items):
        ex = job_executor(cluster, out, spec.name, **options)  # the folder exists by now
        raise Submitted(submit_jobs(ex, fn, items))
        yield  # noqa: unreachable - a generator, as map is

    name = "slurm" if cluster == "slurm" else f"submitit-{cluster}"
    try:
        sweeps.run(spec, out, shard_size=shard_size, progress=False, state_every=state_every,
                   executor=Executor(name, map_, lambda: None), replace=replace,
                   max_memory=max_memory)
    except Submitted as sent:
        return sent.jobs
    return []


def slurm_script(spec, out, *, scale: str = "full", shard_size: int = 512, **options) -> str:
    """The sbatch script that ``submit`` would send for the sweep's unfinished shards (one
    array task per shard), made by submitit; submits and writes nothing, and needs no SLURM
    on this machine."""
    from . import store

    spec, todo = _sweep_shards(spec, out, scale, shard_size)
    n = sum(not store.shard_done(out, s.key) for s in todo) or len(todo)
    _import_submitit()
    from submitit.slurm import slurm

    params = {}
    for key, value in _job_params(spec.name, options).items():  # AutoExecutor's names
        if key.startswith("slurm_"):
            params[key[len("slurm_"):]] = value
        elif key == "timeout_min":
            params["time"] = value
        elif key == "mem_gb":
            params["mem"] = slurm._convert_mem(float(value))
        elif key == "name":
            params["job_name"] = value
        elif key == "tasks_per_node":
            params["ntasks_per_node"] = value
        else:
            params[key] = value
    folder = (Path(out) / "jobs").absolute()
    command = f"{sys.executable} -u -m submitit.core._submit {folder}"
    try:
        return slurm._make_sbatch_string(command=command, folder=folder, map_count=n, **params)
    except (ValueError, TypeError, NameError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"bad job option for submitit: {first}") from None
