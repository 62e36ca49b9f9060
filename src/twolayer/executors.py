"""Where the shards of a sweep are trained: in this process, in a local process pool, or on
a Dask cluster.

    local              in this process, one shard after another (the default)
    processes:N        N worker processes on this machine (spawned)
    dask-local:N       a Dask LocalCluster of N worker processes, started for the sweep
    dask://HOST:PORT   an existing Dask scheduler (tcp://HOST:PORT is the same)

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
from typing import Callable, Iterator, NamedTuple

from . import runtime
from .config import ConfigError

RETRIES = 3  # times a process pool is restarted after a worker died
SPELLINGS = "local, processes:N, dask-local:N, dask://HOST:PORT"


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


def open_executor(spec=None) -> Executor:
    """An executor from its spelling (None or "local", "processes:N", "dask-local:N",
    "dask://HOST:PORT"), a ``distributed.Client``, or an ``Executor`` (returned as is).
    Raises ``ConfigError`` for an unknown spelling, an unreachable scheduler, or a Dask
    spelling without the ``dask`` extra installed. The caller closes it."""
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
