"""Where the shards of a sweep are trained: in this process, in a local process pool, or on
a Dask cluster.

    local              in this process, one shard after another (the default)
    processes:N        N worker processes on this machine (spawned)
    dask-local:N       a Dask LocalCluster of N worker processes, started for the sweep
    dask://HOST:PORT   an existing Dask scheduler (tcp://HOST:PORT is the same)
    slurm              one SLURM job per shard (a job array, through submitit), waited for
    submitit-local     the same with submitit's local executor (processes on this machine)

The submitit executors need no live client: each job trains its shard into the output
folder on its own, a killed sweep command leaves them running, and the next run of the sweep
skips the shards they wrote (``submit`` sends the jobs and returns at once).

From Python, ``executor=`` also takes a ``distributed.Client`` (it is used, not closed).

An executor is a bundle of functions, like a family: ``map(fn, items)`` yields
``(index, fn(item))`` as each item finishes, retrying an item whose worker died, and
``close()`` frees what ``open`` started. ``fn`` must be picklable and idempotent (a shard
task skips a shard whose file exists), because an item may run twice when a worker dies
after finishing it. Dask is imported only when a Dask executor is asked for.

Worker processes split this machine's cores between them: each gets
``max(1, cores // N)`` JAX host devices (set through ``XLA_FLAGS`` before the worker's JAX
starts), so ``processes:2`` on 2 cores runs two single-device workers. The persistent
compilation cache of the calling process (when the CLI turned it on) is shared with them.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from . import runtime
from .config import ConfigError

RETRIES = 3  # times a process pool is restarted after a worker died
SPELLINGS = "local, processes:N, dask-local:N, dask://HOST:PORT, slurm, submitit-local"


class Executor(NamedTuple):
    """An open executor: ``name`` ("local", "processes:N" or the Dask scheduler's address),
    ``map(fn, items)`` (yields ``(index, fn(item))`` in order of completion) and
    ``close()``."""

    name: str  # "local", "processes:N" or the Dask scheduler's address
    map: Callable[[Callable, list], Iterator[tuple[int, object]]]
    close: Callable[[], None]


# ---------------------------------------------------------------- worker processes
def worker_env(devices: int) -> dict[str, str]:
    """Environment of a worker process: its number of JAX host devices, no progress bar."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                   os.environ.get("XLA_FLAGS", "")).split()
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return {"TWOLAYER_HOST_DEVICES": str(devices), "XLA_FLAGS": " ".join(flags),
            "TWOLAYER_PROGRESS": "0"}


def devices_per_worker(n_workers: int) -> int:
    """JAX host devices for each of ``n_workers`` worker processes on this machine: the
    cores (at most 8) shared out, at least one."""
    return max(1, min(os.cpu_count() or 1, 8) // n_workers)


def _cache_dir() -> str:
    import jax

    return jax.config.jax_compilation_cache_dir or ""


def enable_compile_cache(path: str | None = None) -> None:
    """JAX's persistent compilation cache (``TWOLAYER_CACHE_DIR``, default
    ``~/.cache/twolayer/jax``; ``0`` turns it off): a repeated sweep compiles in ms."""
    import jax

    if path is None:
        path = os.environ.get("TWOLAYER_CACHE_DIR",
                              os.path.join(os.path.expanduser("~"), ".cache", "twolayer", "jax"))
    if path and path != "0" and jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


class _InWorker:
    """``fn`` wrapped for a worker: the caller's compilation cache, then ``fn(item)``."""

    def __init__(self, fn, cache_dir):
        self.fn, self.cache_dir = fn, cache_dir

    def __call__(self, item):
        runtime.configure()  # float64 (the worker's XLA_FLAGS are set by worker_env)
        if self.cache_dir:
            enable_compile_cache(self.cache_dir)
        return self.fn(item)


@contextlib.contextmanager
def _environ(env: dict):
    """Set environment variables for processes started inside the block."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def stop_on_signals():
    """Inside the block, SIGTERM (and SIGHUP) stop the sweep as Ctrl-C does: they raise
    ``KeyboardInterrupt`` in the main thread, so that executors stop their workers and
    the caller's ``finally`` clauses run (by default SIGTERM ends Python at once and leaves
    worker processes running). Outside the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {}
    for sig in wanted:
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                old[sig] = signal.signal(sig, interrupt)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop_workers(pool, timeout: float = 5.0) -> None:
    """End a process pool's workers now (terminate, then kill after ``timeout``): shutdown
    alone lets them finish the shard they train and start the ones already queued."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(timeout)


# ---------------------------------------------------------------- the executors
def _local() -> Executor:
    def map_(fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)

    return Executor("local", map_, lambda: None)


def _processes(n: int) -> Executor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    env = worker_env(devices_per_worker(n))
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    live = []  # the pool, kept between sweeps (its workers keep their compiled programs)

    def pool():
        if not live:
            # configure before a task's unpickling imports jax (through a family's Config)
            live.append(ProcessPoolExecutor(n, mp_context=ctx, initializer=runtime.configure))
        return live[0]

    def close(wait=True):
        if live:
            if wait:
                live.pop().shutdown(wait=True, cancel_futures=True)
            else:  # a dead worker, an error or Ctrl-C: stop every worker now
                _stop_workers(live.pop())

    def map_(fn, items):
        fn = _InWorker(fn, _cache_dir())
        pending = dict(enumerate(items))
        for attempt in range(RETRIES + 1):
            finished = False
            try:
                with _environ(env):  # spawned children inherit it (all start at the first submit)
                    futures = {pool().submit(fn, item): i for i, item in pending.items()}
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        value = fut.result()
                    except BrokenProcessPool:
                        print(f"twolayer: a worker process died; restarting the pool and "
                              f"retrying {len(pending)} shard(s)", file=sys.stderr, flush=True)
                        break
                    del pending[i]
                    yield i, value
                else:
                    finished = True
                    return
            finally:
                if not finished:  # a dead worker, an error or Ctrl-C: drop the pool, no waiting
                    close(wait=False)
        raise RuntimeError(f"worker processes died {RETRIES + 1} times; giving up "
                           f"({len(pending)} shard(s) left; rerun to continue)")

    return Executor(f"processes:{n}", map_, close)


def _dask(client, owned) -> Executor:
    from distributed import as_completed

    def map_(fn, items):
        fn = _InWorker(fn, _cache_dir())
        with contextlib.suppress(Exception):  # set up JAX before tasks import it (a worker
            client.run(runtime.configure)      # starting later is set up by _InWorker)
        futures = [client.submit(fn, item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            # a task whose worker died is rescheduled by Dask on another worker
            # (distributed.scheduler.allowed-failures times, then KilledWorker)
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
        finally:
            client.cancel([f for f in futures if not f.done()])

    def close():
        if owned is not None:
            client.close()
            owned.close()

    return Executor(str(client.scheduler.address), map_, close)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError("Dask executors need the optional extra: "
                          "pip install 'twolayer[dask]'") from None
    return distributed


def _dask_local(n: int) -> Executor:
    distributed = _import_distributed()
    import logging

    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
        env=worker_env(devices_per_worker(n)), silence_logs=logging.ERROR)
    return _dask(distributed.Client(cluster), cluster)


def _dask_remote(address: str) -> Executor:
    distributed = _import_distributed()
    try:  # waits distributed.comm.timeouts.connect (Dask config; 30 s by default)
        client = distributed.Client(address)
    except (OSError, TimeoutError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
    return _dask(client, None)


def _count(text: str, spelling: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"executor '{spelling}': the number of workers must be an integer "
                          f">= 1; allowed: {SPELLINGS}")
    return n


def local_workers(spec) -> int:
    """How many shards an executor spelling trains at once on this machine, each in its
    own process: N for "processes:N" and "dask-local:N", else 1 (this process, or workers
    on other machines). A sweep's memory estimate counts that many largest shards."""
    if isinstance(spec, str):
        kind, sep, rest = spec.partition(":")
        if kind in ("processes", "dask-local") and sep:
            return _count(rest, spec)
    return 1


def open_executor(spec=None, *, folder=None, job_options=None, name="sweep") -> Executor:
    """An executor from its spelling (None or "local", "processes:N", "dask-local:N",
    "dask://HOST:PORT", "slurm", "submitit-local"), a ``distributed.Client``, or an
    ``Executor`` (returned as is). The submitit spellings submit jobs whose files go to
    ``folder/jobs``, with ``job_options`` (submitit parameters). Raises ``ConfigError`` for an
    unknown spelling, an unreachable scheduler, or a spelling whose extra is not installed.
    The caller closes it."""
    if spec in ("slurm", "submitit-local"):
        cluster = "slurm" if spec == "slurm" else "local"
        return _submitit(cluster, folder, dict(job_options or {}), name)
    if job_options:
        raise ConfigError("job options (--job) go with the executors slurm and "
                          "submitit-local only")
    if spec is None or spec == "local":
        return _local()
    if isinstance(spec, Executor):
        return spec
    if not isinstance(spec, str):
        if type(spec).__name__ == "Client" and hasattr(spec, "submit"):
            return _dask(spec, None)
        raise ConfigError(f"executor must be a string ({SPELLINGS}) or a distributed.Client, "
                          f"got {type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    if kind == "processes" and sep:
        return _processes(_count(rest, spec))
    if kind == "dask-local" and sep:
        return _dask_local(_count(rest, spec))
    if kind in ("dask", "tcp") and rest.startswith("//") and len(rest) > 2:
        host = rest[2:]
        if not re.fullmatch(r"[\w.\-]+:\d{1,5}", host):
            raise ConfigError(f"executor '{spec}': the scheduler address must be HOST:PORT")
        return _dask_remote(f"tcp://{host}")
    raise ConfigError(f"unknown executor '{spec}'; allowed: {SPELLINGS}")


# ---------------------------------------------------------------- submitit: jobs, no client
JOB_DEFAULTS = {"timeout_min": 240, "cpus_per_task": 1, "mem_gb": 4}
"""The job parameters ``slurm`` / ``submitit-local`` start from (submitit's names; each
``--job KEY=VALUE`` replaces one)."""
POLL = 5.0  # seconds between looks at the jobs' states (SLURM: sacct)


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm executor and 'twolayer submit' need the optional extra: "
                          "pip install 'twolayer[slurm]'") from None
    return submitit


def _job_params(name: str, options: dict) -> dict:
    """submitit parameters: JOB_DEFAULTS, then ``options``; the job script sets the JAX host
    devices to the job's cores (at most 8) and turns the progress bar off."""
    params = {"name": f"twolayer-{name}", **JOB_DEFAULTS, **options}
    cpus = int(params.get("cpus_per_task") or 1)
    setup = ["unset XLA_FLAGS", f"export TWOLAYER_HOST_DEVICES={min(cpus, 8)}",
             "export TWOLAYER_PROGRESS=0"]
    params["slurm_setup"] = setup + list(params.get("slurm_setup") or [])
    return params


def job_executor(cluster: str, folder, name: str = "sweep", **options):
    """A ``submitit.AutoExecutor`` whose jobs each train one shard: ``cluster`` "slurm",
    "local" (processes on this machine) or "debug" (in this process); its files (pickled
    tasks, logs) in ``folder/jobs``; ``options``: submitit parameters over
    ``JOB_DEFAULTS`` (``ConfigError`` for one submitit does not know)."""
    submitit = _import_submitit()
    try:
        ex = submitit.AutoExecutor(folder=Path(folder) / "jobs", cluster=cluster)
    except RuntimeError as err:  # SlurmExecutor: no srun here
        raise ConfigError(f"cannot submit SLURM jobs from this machine ({err}); "
                          f"'twolayer submit --print-script' shows the job script") from None
    params = _job_params(name, options)
    if cluster != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    try:
        ex.update_parameters(**params)
    except (ValueError, TypeError, NameError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"bad job option for submitit: {first}") from None
    return ex


def submit_jobs(ex, fn, items) -> list:
    """Submit ``fn(item)`` for every item as one job array (SLURM) or one job each; returns
    the submitit jobs. Jobs of the local cluster (all started at once) get one JAX host
    device each; SLURM jobs as many as their cores (the job script sets it)."""
    fn = _InWorker(fn, _cache_dir())
    env = worker_env(1) if ex.cluster != "slurm" else {}
    with _environ(env):
        return list(ex.map_array(fn, items)) if items else []


def wait_jobs(jobs, poll: float = POLL) -> Iterator[tuple[int, object]]:
    """``(index, result)`` of each job as it finishes; a failed job is a ``RuntimeError``
    naming its log."""
    import time

    pending = dict(enumerate(jobs))
    while pending:
        for i, job in list(pending.items()):
            if job.done():
                del pending[i]
                try:
                    value = job.result()
                except Exception as err:  # noqa: BLE001 - submitit's FailedJobError and others
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    raise RuntimeError(f"job {job.job_id} failed ({first}); its log: "
                                       f"{job.paths.stderr}; rerun to continue") from None
                yield i, value
        if pending:
            time.sleep(poll)


def _check_jobs(cluster: str, name: str, options: dict) -> None:
    """``ConfigError`` now, before a sweep writes anything, for job options submitit refuses
    or a cluster it cannot reach (made in a scratch folder, removed)."""
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="twolayer-jobs-")
    try:
        job_executor(cluster, scratch, name, **options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _submitit(cluster: str, folder, options: dict, name: str) -> Executor:
    if folder is None:
        raise ConfigError(f"the {cluster} job executor needs an output folder (--out): "
                          f"its jobs write the shards there")
    _check_jobs(cluster, name, options)

    def map_(fn, items):
        ex = job_executor(cluster, folder, name, **options)  # the folder exists by now
        yield from wait_jobs(submit_jobs(ex, fn, items), POLL if cluster == "slurm" else 0.2)

    # jobs are independent of this process: closing (or a kill) leaves them running, and a
    # rerun of the sweep skips the shards they wrote
    return Executor("slurm" if cluster == "slurm" else f"submitit-{cluster}", map_, lambda: None)
