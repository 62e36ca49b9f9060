"""The batched engine: batching does not change a run, seeds reproduce, the stop rule and
divergence are per run, checkpoints, the optimizers and float32. Small sizes throughout."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from twolayer.train import checkpoint_steps, train_group
from twolayer.train import run_values


def _assert_same(ds, ref, rtol=1e-12):
    """Every variable of two Datasets equal (floats to rtol, NaN/inf in the same places)."""
    assert set(ds.data_vars) == set(ref.data_vars)
    np.testing.assert_array_equal(ds["step"], ref["step"])
    for k in ref.data_vars:
        a, b = ds[k].values, ref[k].values
        if np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("max_steps,n", [
    (100_000, 100), (6000, 400), (1000, 50), (10**7, 30), (37, 20), (10, 100), (1, 2), (5, 3),
    (215, 3), (215, 2), (100_000, 2)])
def test_checkpoint_steps(max_steps, n):
    s = checkpoint_steps(max_steps, n)
    assert s[0] == 0 and s[-1] == max_steps
    assert np.all(np.diff(s) > 0)
    assert np.issubdtype(s.dtype, np.integer)
    assert len(s) == min(n, max_steps + 1)
    if max_steps >= 1000 and n > 2:  # log spacing: dense at the start
        assert s[1] == 1 and s[len(s) // 2] < max_steps / 10


# ---------------------------------------------------------------- batching and seeds
def _six(make):
    """Six runs of one static group, different in every batched field that matters."""
    rows = [  # init_scale, imbalance, learning_rate, seed, data_seed, loss_tol
        (1e-3, 0.0, 0.05, 0, 0, 1e-15),
        (0.1, 0.25, 0.1, 1, 0, 1e-15),
        (0.5, 1.0, 0.02, 2, 3, 1e-15),
        (1e-6, 0.5, 0.2, 3, 1, 1e-15),
        (0.3, 0.8, 0.1, 4, 2, 2e-2),  # stops early: frozen inside a running batch
        (0.05, 0.1, 0.15, 5, 5, 1e-15),
    ]
    return [make(sampling="gaussian", n_train=5, n_test=50, imbalance=c, init_scale=s,
                 learning_rate=lr, seed=seed, data_seed=dseed, loss_tol=tol, max_steps=300,
                 n_checkpoints=15)
            for s, c, lr, seed, dseed, tol in rows]


def test_batched_equals_one_by_one(fam, make):
    cfgs = _six(make)
    ds = train_group(fam, cfgs, progress=False)
    assert ds.sizes["run"] == 6
    stops = ds["stop_step"].values
    assert stops[4] < 300 and np.sum(stops == 300) >= 4  # a mixed batch
    for i, cfg in enumerate(cfgs):
        _assert_same(ds.isel(run=[i]), train_group(fam, [cfg], progress=False))
    # the runs really differ from one another
    assert len(np.unique(ds["train_loss"].isel(step=-1).values)) == 6


def test_same_seed_identical_other_seed_different(fam, make):
    cfgs = _six(make)[:2]
    xr.testing.assert_identical(train_group(fam, cfgs, progress=False),
                                train_group(fam, cfgs, progress=False))
    a = train_group(fam, [cfgs[1]], progress=False)
    b = train_group(fam, [make(**{**_kw(cfgs[1]), "seed": 7})], progress=False)
    assert not np.allclose(a["a"].isel(step=0), b["a"].isel(step=0))


def _kw(cfg):
    from twolayer.config import to_dict
    return {k: v for k, v in to_dict(cfg).items() if v is not None}


# ---------------------------------------------------------------- stop rule and divergence
def test_stop_step_is_first_step_below_tol(fam, make):
    # two copies of one run in one batch (loss_tol is a batched field), every step recorded:
    # run 0 stops at loss_tol = 1e-3, run 1 never stops and shows the whole loss curve
    tol = 1e-3
    cfgs = [make(n_train=6, init_scale=0.1, learning_rate=0.05, seed=1, max_steps=300,
                 n_checkpoints=301, loss_tol=t) for t in (tol, 0.0)]
    ds = train_group(fam, cfgs, progress=False)
    np.testing.assert_array_equal(ds["step"], np.arange(301))
    stop = int(ds["stop_step"][0])
    assert 10 < stop < 300 and bool(ds["converged"][0]) and not bool(ds["diverged"][0])
    loss = ds["train_loss"].values[1]  # the loss at every step without the stop rule
    assert int(np.argmax(loss < tol)) == stop  # stop_step is the FIRST step below tol
    assert loss[stop - 1] >= tol and loss[stop] < tol
    assert int(ds["stop_step"][1]) == 300 and not bool(ds["converged"][1])  # loss_tol = 0
    # the stopped run equals the free one up to stop_step and keeps those values afterwards
    for k in ("train_loss", "a", "w", "b"):
        v, free = ds[k].values[0], ds[k].values[1]
        np.testing.assert_array_equal(v[: stop + 1], free[: stop + 1])
        np.testing.assert_array_equal(v[stop:], np.broadcast_to(free[stop], v[stop:].shape))


def test_divergence_is_per_run(fam, make):
    # the stable run needs many steps, so the engine also compacts the batch once the
    # diverged runs are out: its trajectory must not change
    base = dict(n_train=6, init_scale=0.1, max_steps=60_000, n_checkpoints=40, loss_tol=1e-30)
    cfgs = [make(**base, learning_rate=50.0, seed=0), make(**base, learning_rate=0.02, seed=0),
            make(**base, learning_rate=60.0, seed=3)]
    ds = train_group(fam, cfgs, progress=False)
    div = ds["diverged"].values
    assert list(div) == [True, False, True]
    assert not np.any(ds["converged"].values[[0, 2]])
    for i in (0, 2):
        stop = int(ds["stop_step"][i])
        assert stop < 1000
        assert not np.isfinite(float(ds["train_loss"].isel(run=i, step=-1)))
        later = np.flatnonzero(ds["step"].values >= stop)
        a = ds["a"].isel(run=i, step=later).values
        np.testing.assert_array_equal(a, np.broadcast_to(a[-1], a.shape))  # frozen
    assert int(ds["stop_step"][1]) == 60_000
    assert np.all(np.isfinite(ds["train_loss"].isel(run=1)))
    _assert_same(ds.isel(run=[1]), train_group(fam, [cfgs[1]], progress=False))


# ---------------------------------------------------------------- optimizers and precision
def _hand_gd(fam, cfg, p, data, eta, steps):
    """Plain GD by hand in float64: the parameters at each of ``steps``."""
    grad = jax.jit(jax.grad(lambda q: fam.loss(cfg, run_values(cfg), q, data)))
    out, t = [], 0
    for target in steps:
        while t < target:
            p = jax.tree_util.tree_map(lambda v, g: v - eta * g, p, grad(p))
            t += 1
        out.append(p)
    return out


def test_gd_steps_match_a_hand_written_step(fam, make, bp_of):
    cfg = _six(make)[3]  # the static group of the batching test: compiled once
    ds = train_group(fam, [cfg], progress=False).isel(run=0)
    steps = ds["step"].values
    assert list(steps[:4]) == [0, 1, 2, 3] and steps[-1] == 300
    p, data, _ = fam.setup(cfg, run_values(cfg))
    for t, q in zip(steps, _hand_gd(fam, cfg, p, data, cfg.learning_rate, steps)):
        for k in ("a", "w", "b"):
            np.testing.assert_allclose(ds[k].sel(step=t).values, q[k], rtol=1e-10, atol=1e-14)


def test_adam_matches_reference_and_reduces_loss(fam, make, bp_of):
    cfg = make(optimizer="adam", learning_rate=0.02, n_train=6, init_scale=0.1, max_steps=400,
               n_checkpoints=60, loss_tol=0.0)
    ds = train_group(fam, [cfg], progress=False).isel(run=0)
    loss = ds["train_loss"].values
    assert loss[-1] < 0.05 * loss[0]
    # the first steps against a hand-written Adam (beta1 0.9, beta2 0.999, eps 1e-8)
    steps = list(ds["step"].values)
    assert steps[:6] == [0, 1, 2, 3, 4, 5]
    p, data, _ = fam.setup(cfg, run_values(cfg))
    grad = jax.jit(jax.grad(lambda q: fam.loss(cfg, run_values(cfg), q, data)))
    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    for t in range(1, 6):
        g = grad(p)
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        p = jax.tree_util.tree_map(
            lambda p, m, v: p - 0.02 * (m / c1) / (jnp.sqrt(v / c2) + 1e-8), p, m, v)
        for k in ("a", "w", "b"):
            np.testing.assert_allclose(ds[k].sel(step=t).values, p[k], rtol=1e-12, atol=1e-15)


def test_adam_equals_closed_form_steps_per_run(fam, make, bp_of):
    """Each run's own learning rate, beta1, beta2 and epsilon (batched): the engine's first
    steps equal Adam written out in numpy (gradients from jax, the update in numpy)."""
    kw = dict(optimizer="adam", n_train=6, init_scale=0.1, max_steps=40, n_checkpoints=40,
              loss_tol=0.0)
    cfgs = [make(learning_rate=0.02, seed=0, **kw),
            make(learning_rate=0.05, adam_b1=0.5, adam_b2=0.9, adam_eps=1e-3, seed=1, **kw)]
    ds = train_group(fam, cfgs, progress=False)
    steps = list(ds["step"].values)
    assert steps[:6] == [0, 1, 2, 3, 4, 5]
    for r, cfg in enumerate(cfgs):
        p, data, _ = fam.setup(cfg, bp_of(cfg))
        grad = jax.jit(jax.grad(lambda q: fam.loss(cfg, run_values(cfg), q, data)))
        p = {k: np.asarray(v) for k, v in p.items()}
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v = {k: np.zeros_like(v) for k, v in p.items()}
        b1, b2, eps, lr = cfg.adam_b1, cfg.adam_b2, cfg.adam_eps, cfg.learning_rate
        for t in range(1, 6):
            g = {k: np.asarray(x) for k, x in grad(p).items()}
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                p[k] = p[k] - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
            for k in ("a", "w", "b"):
                np.testing.assert_allclose(ds[k].isel(run=r).sel(step=t).values, p[k],
                                           rtol=1e-12, atol=1e-15, err_msg=f"run {r} {k}")


def test_float32_runs_in_float32(fam, make, bp_of):
    kw = dict(n_train=6, init_scale=0.1, learning_rate=0.05, max_steps=200, n_checkpoints=10,
              loss_tol=0.0, seed=2)
    ds = train_group(fam, [make(dtype="float32", **kw)], progress=False).isel(run=0)
    for k in ("train_loss", "test_error", "a", "w", "b", "c_coeff", "g_norm"):
        assert ds[k].dtype == np.float32, k
    loss = ds["train_loss"].values
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.05 * loss[0]
    # float64 GD by hand from the same (float32) start follows it to float32 accuracy
    cfg64 = make(**kw)
    _, data, _ = fam.setup(cfg64, run_values(cfg64))  # fixed points: the same data
    p0 = {k: jnp.asarray(ds[k].isel(step=0).values, jnp.float64) for k in ("a", "w", "b")}
    ref = [float(fam.loss(cfg64, run_values(cfg64), q, data))
           for q in _hand_gd(fam, cfg64, p0, data, 0.05, ds["step"].values)]
    np.testing.assert_allclose(loss, ref, rtol=1e-3)


def test_zero_init_with_prescribed_imbalance_is_finite(fam, make):
    """C_2 = 0 leaves nothing to rescale: neuron 2 is zero, not NaN, and nothing moves."""

    ds = train_group(fam, [make(init_scale=0.0, imbalance=0.5, max_steps=20, n_checkpoints=5)],
                     progress=False)
    assert not bool(ds.diverged[0])
    assert np.isfinite(ds.a.values).all() and (ds.a.values == 0).all()


# ---------------------------------------------------------------- resume
class _States:
    """A state file in memory: keeps every snapshot saved, loads ``snap``."""

    every = 0.0

    def __init__(self, snap=None):
        self.snap, self.saved = snap, []

    def load(self):
        return self.snap

    def save(self, arrays):
        self.saved.append({k: np.array(v) for k, v in arrays.items()})


def test_descent_resumes_mid_run_with_the_same_result(fam, make, tmp_path, capsys):
    """From the first snapshot, from one after the active runs were gathered into a smaller
    batch (through a real state file), and never from a state file of the first format."""
    from twolayer.store import TrainingState

    cfgs = [make(optimizer="adam", n_train=5, init_scale=0.3, learning_rate=0.01, seed=s,
                 max_steps=40_000, n_checkpoints=30, loss_tol=tol)
            for s, tol in enumerate((1e-1, 1e-1, 1e-1, 1e-1, 0.0, 0.0))]
    states = _States()
    ref = train_group(fam, cfgs, progress=False, state_file=states)
    sizes = [len(s["idx"]) for s in states.saved]
    assert int(states.saved[0]["now"]) > 0
    assert min(sizes) < sizes[0], "no snapshot of a gathered batch"
    gathered = next(s for s in states.saved if len(s["idx"]) < sizes[0])
    assert 0 < int(gathered["now"]) < int(ref["stop_step"].max())
    (tmp_path / "state").mkdir()
    disk = TrainingState(tmp_path, "shard")
    disk.save(gathered)
    for snap in (states.saved[0], disk.load()):
        again = _States(snap)
        xr.testing.assert_identical(train_group(fam, cfgs, progress=False, state_file=again),
                                    ref)
        assert int(again.saved[0]["now"]) > int(snap["now"])  # continued, not started over
    old = {"kind": np.array("descent"), "n_runs": np.array(6), "now": np.array(5),
           "state_0": np.zeros(8)}  # numbered leaves: the first format
    capsys.readouterr()
    xr.testing.assert_identical(train_group(fam, cfgs, progress=False, state_file=_States(old)),
                                ref)
    assert "saved by another version" in capsys.readouterr().err
