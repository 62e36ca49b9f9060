"""Faults, with real processes: sweeps killed with SIGKILL (at sync points, and at random
moments in the slow suite) and rerun end with exactly the uninterrupted result; what a
killed writer leaves is never read as done; a second sweep on a busy folder is refused;
reruns are bit-identical."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer import store
from twolayer.config import ConfigError

# three shards (2 + 2 + 1 runs) of runs that never stop: about 3 s each
LONG_TOML = """
name = "long"
[base]
width = 2
n_train = 4
sampling = "gaussian"
init_scale = 1e-3
[train]
learning_rate = 0.05
max_steps = 3_000_000
n_checkpoints = 20
loss_tol = 0.0
[axes]
seed = [0, 1, 2, 3, 4]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-cache")  # reruns compile from the cache
    return {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": str(cache)}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "long.toml"
    path.write_text(LONG_TOML)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spec, env):
    """The uninterrupted sweep, through the same command."""
    out = tmp_path_factory.mktemp("ref") / "o"
    done = subprocess.run(command(spec, out), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return out


def command(spec, out, *extra):
    return [sys.executable, "-m", "twolayer.cli", "sweep", str(spec), "--out", str(out),
            "--shard-size", "2", "--state-every", "0", *extra]


def start(spec, out, env):
    return subprocess.Popen(command(spec, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc=None, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended before the sync point: {proc.stderr.read()}")
        assert time.monotonic() < deadline, "sync point not reached"
        time.sleep(0.02)


def sigkill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def shard_files(out):
    return sorted((Path(out) / "shards").glob("*.nc"))


def assert_same_as(out, reference):
    """Byte-identical shard files; the merged Datasets equal apart from their timestamp."""
    assert [p.name for p in shard_files(out)] == [p.name for p in shard_files(reference)]
    for a, b in zip(shard_files(out), shard_files(reference)):
        assert a.read_bytes() == b.read_bytes(), a.name
    got, want = twolayer.load(out), twolayer.load(reference)
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    assert {k: v for k, v in got.attrs.items() if k != "created"} == \
        {k: v for k, v in want.attrs.items() if k != "created"}
    leftovers = [*Path(out).rglob(f"*{store.TMP}*"), *Path(out).rglob("*.corrupt"),
                 *Path(out).glob("state/*")]
    assert not leftovers


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_sigkill_at_sync_points_then_rerun_equals_uninterrupted(tmp_path, spec, env, reference):
    out = tmp_path / "o"
    # killed in the middle of the first shard, once its training state was saved
    proc = start(spec, out, env)
    wait_for(lambda: any((out / "state").glob("*.npz")), proc)
    sigkill(proc)
    assert not shard_files(out)
    saved = store.info(out)["missing"][0]["resumes_at_step"]
    assert saved and saved > 0

    # restarted; meanwhile a second sweep on the same folder is refused and writes nothing
    proc = start(spec, out, env)
    wait_for(lambda: "pid" in (store.info(out)["running"] or ""), proc)
    assert f"pid {proc.pid} on " in store.info(out)["running"]
    before = sorted(p.name for p in out.rglob("*"))
    second = subprocess.run(command(spec, out), env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 2
    assert second.stderr.startswith("twolayer: error: ") and "in use by another twolayer " \
        f"sweep (pid {proc.pid} on " in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    # killed after a shard file was written, before the last one
    wait_for(lambda: len(shard_files(out)) >= 1, proc)
    sigkill(proc)
    # the refused command added nothing (the first one wrote shards, states, temporaries)
    added = {p.name for p in out.rglob("*")} - set(before)
    assert not {n for n in added if not n.endswith((".nc", ".npz")) and store.TMP not in n}
    info = store.info(out)
    assert 1 <= info["shards_done"] < 3 and info["running"] is None

    done = subprocess.run(command(spec, out), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "done before, skipped" in done.stderr
    assert_same_as(out, reference)


def test_what_a_killed_writer_leaves_is_never_read_as_done(tmp_path, spec, env, reference):
    out = tmp_path / "o"
    subprocess.run(["cp", "-r", str(reference), str(out)], check=True)
    first, second, third = shard_files(out)
    # a truncated shard under its final name (not twolayer's writer: e.g. a broken copy)
    first.write_bytes(first.read_bytes()[:1000])
    # a temporary file of a writer killed mid-write, and an unreadable training state
    (out / "shards" / f".{second.name}{store.TMP}4242-dead").write_bytes(b"\x89HDF half")
    second.unlink()
    (out / "state").mkdir(exist_ok=True)
    (out / "state" / f"{second.stem}.npz").write_bytes(b"PK\x03\x04 torn")
    (out / "result.nc").unlink()
    info = store.info(out)
    assert info["shards_done"] == 2  # the truncated file is only found out when read
    done = subprocess.run(command(spec, out), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    corrupt = out / "shards" / f"{first.name}.corrupt"
    assert corrupt.exists()  # kept for inspection, never read
    corrupt.unlink()
    assert_same_as(out, reference)


def test_rerun_in_a_new_folder_is_bit_identical(tmp_path, spec, reference):
    ds = twolayer.sweep(spec, tmp_path / "o", shard_size=2)
    assert_same_as(tmp_path / "o", reference)
    assert np.isfinite(ds.train_loss).all()


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_resume_with_another_device_count_agrees_to_rounding(tmp_path, spec, env, reference):
    """State saved by a one-device process (3 runs in a batch), finished by a two-device one
    (the batch padded to 4): equal up to floating-point summation order."""
    out = tmp_path / "o"
    proc = subprocess.Popen(command(spec, out)[:-4] + ["--shard-size", "3", "--state-every", "0"],
                            env={**env, "TWOLAYER_HOST_DEVICES": "1", "XLA_FLAGS": ""},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any((out / "state").glob("*.npz")), proc)
    sigkill(proc)
    done = subprocess.run(command(spec, out)[:-4] + ["--shard-size", "3"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed at step" in done.stderr
    got, want = twolayer.load(out), twolayer.load(reference)
    for name in ("train_loss", "test_error", "a", "w", "b"):
        np.testing.assert_allclose(got[name].values, want[name].values, rtol=1e-12, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_random_moments(tmp_path, spec, env, reference, seed):
    """Six kills at random moments (during start-up, training, shard and state writes,
    merging), then a clean finish: exactly the uninterrupted result."""
    rng = random.Random(seed)
    out = tmp_path / "o"
    kills = 0
    for _ in range(6):
        proc = start(spec, out, env)
        time.sleep(rng.uniform(0.3, 4.0))
        if proc.poll() is not None:  # it finished before the kill
            break
        sigkill(proc)
        kills += 1
    assert kills >= 3
    done = subprocess.run(command(spec, out), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_as(out, reference)


# ---------------------------------------------------------------- sweeps that grow, repairs
GROW = {
    "name": "grow",
    "base": {"width": 2, "n_train": 4, "sampling": "gaussian", "init_scale": 1e-3},
    "train": {"learning_rate": 0.1, "max_steps": 60, "n_checkpoints": 6, "loss_tol": 0.0},
    "axes": {"seed": [0, 1], "imbalance": [0.0, 1.0]},
}


def grown(**axes):
    spec = json.loads(json.dumps(GROW))
    spec["axes"].update(axes)
    return spec


@pytest.fixture
def trained(monkeypatch):
    """The number of runs trained (not reused) during the test."""
    from twolayer import sweeps

    count = []
    real = sweeps.run_shard

    def counting(shard, *args, **kwargs):
        count.append(len(shard.configs))
        return real(shard, *args, **kwargs)

    monkeypatch.setattr(sweeps, "run_shard", counting)
    monkeypatch.setenv("TWOLAYER_PROGRESS", "0")
    return count


def test_a_grown_sweep_trains_only_the_new_runs_and_equals_one_sweep(tmp_path, trained, capsys):
    out = tmp_path / "o"
    twolayer.sweep(GROW, out, shard_size=3)
    assert sum(trained) == 4
    # one more seed, one more imbalance value, another shard size: 9 runs, 4 of them done
    final = grown(seed=[0, 1, 2], imbalance=[0.0, 0.5, 1.0])
    got = twolayer.sweep(final, out, shard_size=2)
    assert sum(trained) == 4 + 5
    err = capsys.readouterr().err
    assert "seed +1 (2)" in err and "imbalance +1 (0.5)" in err
    assert "4 of 9 runs done before (reused), 5 to train" in err
    want = twolayer.sweep(final, tmp_path / "at-once", shard_size=4)
    xr.testing.assert_allclose(got.drop_attrs(), want.drop_attrs(), rtol=1e-12, atol=0)
    assert list(got.seed.values) == [0, 1, 2]
    # a shrunk sweep (a value dropped) and another shard size: nothing trained
    before = sum(trained)
    small = twolayer.sweep(grown(seed=[2, 0]), out, shard_size=7)
    assert sum(trained) == before
    xr.testing.assert_allclose(small.drop_attrs(), want.sel(seed=[2, 0], imbalance=[0.0, 1.0])
                               .drop_attrs(), rtol=1e-12, atol=0)
    assert store.info(out)["runs_total"] == 4


def test_a_changed_setting_is_refused_unless_replace(tmp_path, trained):
    out = tmp_path / "o"
    twolayer.sweep(GROW, out)
    changed = grown()
    changed["train"]["n_checkpoints"] = 8  # alters every finished run
    with pytest.raises(ConfigError, match=r"changed: n_checkpoints 6 -> 8\), which alters its "
                                          r"finished runs; choose a new --out folder, or pass "
                                          r"--replace"):
        twolayer.sweep(changed, out)
    assert sum(trained) == 4
    ds = twolayer.sweep(changed, out, replace=True)
    assert sum(trained) == 8 and ds.sizes["step"] == 8
    assert twolayer.load(out).sizes["step"] == 8


def test_a_damaged_manifest_never_retrains_a_finished_shard(tmp_path, trained, capsys):
    out = tmp_path / "o"
    want = twolayer.sweep(GROW, out, shard_size=1)
    (out / "sweep.json").write_text('{"name": "grow", "shards": [{"ke')  # truncated
    (out / "result.nc").write_bytes((out / "result.nc").read_bytes()[:500])
    with pytest.raises(ConfigError, match="sweep.json is unreadable") as err:
        store.info(out)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read .*result.nc"):
        twolayer.load(tmp_path / "o" / "result.nc")
    # temporaries of killed writers, in the folder and its subfolders
    (out / f".result.nc{store.TMP}4242-dead").write_bytes(b"half")
    (out / "figures").mkdir()
    (out / "figures" / f".fig.png{store.TMP}4242-dead").write_bytes(b"half")
    got = twolayer.sweep(GROW, out, shard_size=3)  # another shard size as well
    assert sum(trained) == 4  # the first sweep's, none since
    assert "sweep.json is unreadable" in capsys.readouterr().err
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    xr.testing.assert_identical(twolayer.load(out).drop_attrs(), want.drop_attrs())
    assert not list(out.rglob(f"*{store.TMP}*"))
    info = store.info(out)
    assert info["runs_done"] == info["runs_total"] == 4
    # sweep.json lost altogether: the shards are found again
    (out / "sweep.json").unlink()
    twolayer.sweep(GROW, out)
    assert sum(trained) == 4


def test_run_out_takes_the_folder_and_refuses_a_sweeps(tmp_path):
    sweep_out = tmp_path / "s"
    twolayer.sweep(GROW, sweep_out)
    before = {p: p.read_bytes() for p in sweep_out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="holds the results of a sweep"):
        twolayer.run(max_steps=10, out=sweep_out)
    assert {p: p.read_bytes() for p in sweep_out.rglob("*") if p.is_file()} == before
    run_out = tmp_path / "r"
    ds = twolayer.run(max_steps=10, out=run_out, progress=False)
    xr.testing.assert_identical(twolayer.load(run_out).drop_attrs(), ds.drop_attrs())
    twolayer.run(max_steps=10, out=run_out, progress=False)  # the same run again: fine
    with pytest.raises(ConfigError, match="holds the result of another run"):
        twolayer.run(max_steps=11, out=run_out)
    with pytest.raises(ConfigError, match="holds the result of a single run"):
        twolayer.sweep(GROW, run_out)


# ---------------------------------------------------------------- signals
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_main_process_stops_every_worker(tmp_path, spec, env, sig):
    """processes:2 on three long shards: the signal to the main process alone (not its
    group) ends it and both workers within seconds, and no shard is started after it."""
    import psutil

    out = tmp_path / "o"
    # Ctrl-C's default action in the child even when this test runs in a background job
    # (a non-interactive shell starts those with SIGINT ignored, and Python keeps it so)
    proc = subprocess.Popen(command(spec, out, "--executor", "processes:2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: len(list((out / "state").glob("*.npz"))) >= 2, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2
    started = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode in (130, -sig), proc.stderr.read()
    assert "interrupted; rerun the same command" in proc.stderr.read()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive
    assert len(list((out / "state").glob("*.npz"))) == 2  # the third shard never started
    assert not shard_files(out)
