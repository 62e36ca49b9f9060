"""Executors: a process pool and real Dask LocalClusters give the in-process result; a Dask
worker killed in the middle of a shard is replaced and the sweep completes; the SLURM
example runs (on a LocalCluster) and writes a job script."""
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer.config import ConfigError
from twolayer.executors import open_executor, worker_env

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0"}

SMALL_TOML = """
name = "small"
family = "single_neuron"
[base]
width = 2
n_train = 4
sampling = "gaussian"
init_scale = 1e-6
[train]
learning_rate = 0.1
max_steps = 300
n_checkpoints = 20
loss_tol = 1e-12
[axes]
imbalance = [0.0, 0.5, 1.0]
data_seed = {range = [0, 2]}
"""
SMALL = tomllib.loads(SMALL_TOML)
# two shards of runs that never stop (loss_tol 0): a few seconds each on one core
LONG = {
    "name": "long",
    "base": {"width": 2, "n_train": 4, "sampling": "gaussian", "init_scale": 1e-3},
    "train": {"learning_rate": 0.05, "max_steps": 3_000_000, "n_checkpoints": 20,
              "loss_tol": 0.0},
    "axes": {"seed": [0, 1, 2, 3]},
}


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted((Path(folder) / "shards").glob("*.nc"))}


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "sw"
    return twolayer.sweep(SMALL, out, shard_size=2), out


def test_worker_env_sets_one_device_count():
    env = worker_env(1)
    assert env["XLA_FLAGS"].count("xla_force_host_platform_device_count") == 1
    assert env["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=1")
    assert env["TWOLAYER_HOST_DEVICES"] == "1"


def test_process_pool_equals_in_process(tmp_path, small_reference):
    ref, ref_out = small_reference
    ds = twolayer.sweep(SMALL, tmp_path / "p", shard_size=2, executor="processes:2")
    xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
    # workers (one JAX device each) write the same bytes as the in-process run (two devices)
    assert shard_bytes(tmp_path / "p") == shard_bytes(ref_out)


def test_local_cluster_equals_in_process(tmp_path, small_reference):
    ref, ref_out = small_reference
    out = tmp_path / "d"
    ds = twolayer.sweep(SMALL, out, shard_size=2, executor="dask-local:2")
    xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
    assert shard_bytes(out) == shard_bytes(ref_out)
    xr.testing.assert_identical(twolayer.load(out).drop_attrs(), ref.drop_attrs())


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=worker_env(1)) as cluster:
        with Client(cluster) as c:
            yield c


def test_client_without_folder_returns_shards(client, small_reference):
    ref, _ = small_reference
    ds = twolayer.sweep(SMALL, shard_size=2, executor=client)
    xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
    assert client.status == "running"  # a Client given by the caller stays open


@pytest.fixture(scope="module")
def long_reference():
    return twolayer.sweep(LONG, shard_size=2)


def sweep_in_thread(out, executor):
    """Start the LONG sweep in a thread and return (thread, results, errors) once both of its
    shards have saved training state and none has finished (the sync point of a kill)."""
    result, error = [], []

    def sweep():
        try:
            result.append(twolayer.sweep(LONG, out, shard_size=2, executor=executor,
                                         state_every=0))
        except BaseException as err:  # reported by the main thread
            error.append(err)

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.monotonic() + 300
    while len(list((out / "state").glob("*.npz"))) < 2 and time.monotonic() < deadline:
        assert not error, error
        time.sleep(0.05)
    assert not list((out / "shards").glob("*.nc")), "shards finished too fast to test"
    return thread, result, error


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_dask_worker_killed_mid_shard_is_replaced(tmp_path, capsys, client, long_reference):
    out = tmp_path / "k"
    thread, result, error = sweep_in_thread(out, client)
    busy = client.run(lambda dask_worker: len(dask_worker.state.executing))
    pids = client.run(os.getpid)
    victim = next(addr for addr, n in busy.items() if n)
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and not error, error
    xr.testing.assert_identical(result[0].drop_attrs(), long_reference.drop_attrs())
    assert not list((out / "state").glob("*.npz"))  # cleared once the shards were written
    # the retried shard continued from its saved state instead of starting over
    assert "resumed at step" in capsys.readouterr().err


def _pool_workers():
    """Pids of this process's spawned multiprocessing workers (Linux /proc)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_process_pool_worker_killed_mid_shard_is_retried(tmp_path, capsys, long_reference):
    out = tmp_path / "p"
    others = set(_pool_workers())  # e.g. a LocalCluster's processes
    ex = open_executor("processes:2")
    try:
        thread, result, error = sweep_in_thread(out, ex)
        workers = sorted(set(_pool_workers()) - others)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive() and not error, error
    finally:
        ex.close()
    xr.testing.assert_identical(result[0].drop_attrs(), long_reference.drop_attrs())
    err = capsys.readouterr().err
    assert "a worker process died; restarting the pool" in err
    assert "resumed at step" in err


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_slurm_example_runs_on_a_local_cluster(tmp_path, small_reference):
    ref, _ = small_reference
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL_TOML)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "slurm_dask.py"), str(spec),
                          "--out", str(tmp_path / "o"), "--shard-size", "2", "--local", "2"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    xr.testing.assert_identical(twolayer.load(tmp_path / "o").drop_attrs(), ref.drop_attrs())

    script = subprocess.run([sys.executable, str(ROOT / "examples" / "slurm_dask.py"), str(spec),
                             "--out", str(tmp_path / "s"), "--print-job-script", "--jobs", "3",
                             "--cores", "4", "--memory", "8GB", "--queue", "short",
                             "--prologue", "source /opt/venv/bin/activate"],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert script.returncode == 0, script.stderr
    text = script.stdout
    assert "#SBATCH -p short" in text and "#SBATCH --cpus-per-task=4" in text
    assert "export TWOLAYER_HOST_DEVICES=1" in text and "source /opt/venv/bin/activate" in text
    assert "--nworkers 4" in text and "--nthreads 1" in text
    assert not (tmp_path / "s").exists()  # printing the script runs nothing


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_cli_sweep_with_a_process_pool(tmp_path, small_reference):
    ref, _ = small_reference
    toml = tmp_path / "s.toml"
    toml.write_text(SMALL_TOML)
    out = subprocess.run([sys.executable, "-m", "twolayer.cli", "sweep", str(toml), "--out",
                          str(tmp_path / "o"), "--executor", "processes:2", "--shard-size", "2"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "shard 3/3 done" in out.stderr
    xr.testing.assert_identical(twolayer.load(tmp_path / "o").drop_attrs(), ref.drop_attrs())


def test_activation_registered_in_this_process_is_refused_for_workers(tmp_path):
    import jax.numpy as jnp

    twolayer.register_activation("sin_here_only", jnp.sin)
    spec = {**SMALL, "base": {**SMALL["base"], "activation": "sin_here_only"}}
    with pytest.raises(ConfigError, match="activation 'sin_here_only' was registered in this "
                                          "process only"):
        twolayer.sweep(spec, tmp_path / "o", executor="processes:2")
    assert not (tmp_path / "o").exists()
    by_path = {**SMALL, "base": {**SMALL["base"], "activation": "jax.numpy:sin"}}
    local = twolayer.sweep(spec, shard_size=2)  # in this process the name works
    pooled = twolayer.sweep(by_path, shard_size=2, executor="processes:2")
    # one device per worker against two in this process: another batch per device, so equal
    # up to summation order (bit-identical for tanh, not for sin)
    for name in ("train_loss", "test_error", "a", "w", "b"):
        np.testing.assert_allclose(pooled[name].values, local[name].values, rtol=1e-12, atol=0)
    assert not np.allclose(pooled.train_loss.values, twolayer.sweep(SMALL, shard_size=2)
                           .train_loss.values)  # sin, not the default tanh


@pytest.mark.parametrize("spelling, message", [
    ("threads:2", "unknown executor 'threads:2'"),
    ("processes:0", "must be an integer >= 1"),
    ("dask-local:two", "must be an integer >= 1"),
    ("dask://nohost", "must be HOST:PORT"),
    (3, "executor must be a string"),
])
def test_bad_executor_spelling(spelling, message):
    with pytest.raises(ConfigError, match=message):
        open_executor(spelling)
