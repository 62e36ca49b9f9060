"""Gradient flow (optimizer = "flow") and scoring runs by their limit: the flow against small-step
GD, tolerance independence, an exact conservation law, batching, resume, padding, the per-run
flags of bad runs, the polish, the mse loss, the prescribed C profile and the outcome labels."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from twolayer import analysis, flow, linalg
from twolayer.families.single_neuron import analysis as sn_analysis
from twolayer.families.single_neuron import theory as sn_theory
from twolayer.config import ConfigError, static_part
from twolayer.train import STATUS, checkpoint_times, train_group

from conftest import States
from twolayer.train import run_values

# one static group for most tests (compiled once): width 2, n = 6 evenly spaced points
FLOW = dict(optimizer="flow", n_train=6, sampling="fixed", loss="sum", n_checkpoints=12)


def _vec(ds, i=-1):
    """The parameters (a, w, b) of every run at checkpoint i, as rows."""
    dim = analysis.checkpoint_dim(ds["a"])
    return np.concatenate([ds[k].isel({dim: i}).values.reshape(ds.sizes["run"], -1)
                           for k in ("a", "w", "b")], axis=1)


# ---------------------------------------------------------------- the solve itself
def test_gauss_jordan_inverse_needs_and_does_pivoting():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((n, n)) for n in (1, 2, 6, 13)]
    mats.append(np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [4.0, 5.0, 0.0]]))  # zero pivots
    for a in mats:
        inv = np.asarray(jax.jit(linalg.gauss_jordan_inverse)(jnp.asarray(a)))
        np.testing.assert_allclose(inv @ a, np.eye(len(a)), atol=1e-12)
    assert not np.isfinite(np.asarray(linalg.gauss_jordan_inverse(jnp.zeros((3, 3))))).all()


def test_checkpoint_times():
    t = checkpoint_times(1e10, 100)
    assert len(t) == 100 and t[0] == 0.0 and t[1] == 0.01 and t[-1] == 1e10
    assert np.all(np.diff(t) > 0) and np.allclose(np.diff(np.log10(t[1:])), 12 / 98)
    assert list(checkpoint_times(0.5, 2)) == [0.0, 0.5]
    assert checkpoint_times(0.5, 10)[1] == 0.005


# ---------------------------------------------------------------- against gradient descent
@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_small_step_gd_follows_the_flow(fam, make):
    """Explicit Euler (GD) has global error O(eta) on a fixed time interval: at t = 20 the
    parameters of GD with eta and of the flow differ by c eta, the same c for 2 eta."""
    base = dict(init_scale=1e-3, imbalance=0.3, n_train=6, sampling="fixed", loss="sum",
                loss_tol=0.0, n_checkpoints=2)
    T = 20.0
    yf = _vec(train_group(fam, [make(**base, optimizer="flow", max_time=T, learning_rate=1e-3)],
                          progress=False))
    err = {}
    for eta in (2e-3, 1e-3):
        g = train_group(fam, [make(**base, learning_rate=eta, max_steps=int(round(T / eta)))],
                        progress=False)
        err[eta] = np.abs(_vec(g) - yf).max()
    assert err[1e-3] <= 0.5 * 1e-3  # measured: 0.36 eta
    assert 1.9 < err[2e-3] / err[1e-3] < 2.1  # first order in eta


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_limit_does_not_move_when_tolerances_tighten(fam, make):
    """Four runs of fig4's setting (n = 6 Gaussian points, init 1e-20, away from the Q1/Q2
    boundary) integrated to t = 1e6: tolerances 100x tighter move the end point by < 1e-8."""
    kw = dict(optimizer="flow", sampling="gaussian", loss="mse", n_train=6, init_scale=1e-20,
              learning_rate=0.5, max_time=1e6, loss_tol=0.0, n_checkpoints=4, data_seed=1)
    runs = lambda **tol: [make(**kw, imbalance=c, **tol) for c in (0.0, 0.1, 0.4, 1.0)]  # noqa: E731
    ref = train_group(fam, runs(), progress=False)
    tight = train_group(fam, runs(rtol=1e-10, atol=1e-14), progress=False)
    assert (ref["status"] == STATUS.index("max_time")).all()
    assert (tight["stop_step"] > 3 * ref["stop_step"]).all()  # the tight one did more work
    assert np.abs(_vec(ref) - _vec(tight)).max() < 1e-8


def test_relu_balance_is_conserved_to_solver_tolerance(fam, make):
    """For relu (1-homogeneous) gradient flow conserves a_k^2 - |w_k|^2 - b_k^2 exactly; the
    solver keeps it to its tolerance over t = 1e8, and 100x tighter tolerances shrink the
    drift about 100x."""
    kw = dict(optimizer="flow", width=3, activation="relu", target_activation="relu",
              init_scale=0.3, sampling="gaussian", n_train=8, loss="sum", loss_tol=0.0,
              max_time=1e8, n_checkpoints=30)
    ds = train_group(fam, [make(**kw), make(**kw, rtol=1e-6, atol=1e-10)], progress=False)
    bal = ds["balance"].values  # (run, time, neuron)
    drift = np.abs(bal - bal[:, :1]).max(axis=(1, 2))
    scale = ds["neuron_size"].values.max()
    assert float(ds["train_loss"].isel(run=0, time=-1)) < 1e-20  # it went all the way
    assert drift[0] <= 10 * 1e-8 * scale  # measured: 5e-10 at scale 2.9
    assert drift[1] > 30 * drift[0]


# ---------------------------------------------------------------- the engine's guarantees
def _edge(x):
    """tanh where |x| < 0.8, NaN beyond: a vector field that ends at a wall."""
    return jnp.where(jnp.abs(x) < 0.8, jnp.tanh(x), jnp.nan)


def _mixed(make):
    """Runs of one flow group that differ in every batched field that matters, one of them
    with a tolerance it can meet only with tiny steps (step budget) and one of them a step
    budget too small."""
    rows = [dict(init_scale=1e-8, imbalance=0.0, seed=0), dict(init_scale=1e-3, imbalance=0.5,
            seed=1, rtol=1e-7), dict(init_scale=0.5, imbalance=1.0, seed=2, loss_tol=1e-6),
            dict(init_scale=1e-8, imbalance=0.7, seed=3, rtol=1e-18),
            dict(init_scale=1e-8, imbalance=0.2, seed=4, learning_rate=0.1)]
    return [make(**FLOW, max_time=1e5, max_steps=3000, **r) for r in rows]


def test_flow_batched_equals_one_by_one_and_flags_bad_runs(fam, make):
    cfgs = _mixed(make)
    ds = train_group(fam, cfgs, progress=False)
    status = [STATUS[s] for s in ds["status"].values]
    assert status[2] == "converged" and bool(ds["converged"][2])
    assert status[3] == "max_steps"  # rtol 1e-18: below float64's resolution, tiny steps
    assert status[0] in ("converged", "max_time") and status[1] in ("converged", "max_time")
    for i, cfg in enumerate(cfgs):
        alone = train_group(fam, [cfg], progress=False)
        for k in ("train_loss", "a", "w", "b", "step"):
            np.testing.assert_allclose(ds[k].isel(run=[i]).values, alone[k].values, rtol=1e-12,
                                       atol=1e-300, err_msg=k)
        for k in ("stop_step", "stop_time", "status", "rejected_steps"):
            np.testing.assert_array_equal(ds[k].isel(run=[i]).values, alone[k].values)
    # the time unit is learning_rate: run 4 (eta 0.1) sits at the same flow time grid
    assert np.array_equal(ds["time"].values, checkpoint_times(1e5, 12))


def test_flow_step_budget_nan_and_a_wall_are_flagged(fam, make):
    from twolayer import register_activation

    register_activation("tanh_until_0.8", _edge)
    cfgs = [make(**FLOW, max_time=1e6, max_steps=50, init_scale=1e-8, imbalance=0.3),
            make(**FLOW, max_time=1e6, init_scale=1e200, imbalance=0.3)]  # inf at once
    ds = train_group(fam, cfgs, progress=False)
    assert [STATUS[s] for s in ds["status"].values] == ["max_steps", "diverged"]
    assert int(ds["stop_step"][0]) + int(ds["rejected_steps"][0]) == 50
    assert bool(ds["diverged"][1]) and int(ds["stop_step"][1]) == 0
    # the solution runs into a wall (NaN beyond |w x + b| = 0.8): no step size meets the
    # tolerance there, the step size collapses and the run is flagged, its last point kept
    wall = train_group(fam, [make(**FLOW, max_time=1e6, init_scale=1e-8, imbalance=0.3,
                                  activation="tanh_until_0.8")], progress=False)
    assert STATUS[int(wall["status"][0])] == "solver_failed"
    assert np.isfinite(wall["train_loss"].values).all() and float(wall["stop_time"][0]) < 1e6


def test_flow_resumes_mid_run_with_the_same_result(fam, make):
    cfgs = [make(**FLOW, max_time=1e7, init_scale=1e-8, imbalance=c, seed=s)
            for c, s in ((0.2, 0), (0.9, 1), (0.5, 2))]
    states = States()
    ref = train_group(fam, cfgs, progress=False, state_file=states)
    assert states.first is not None and 0 < int(states.first["now"]) < int(ref["stop_step"].max())
    again = train_group(fam, cfgs, progress=False, state_file=States(states.first))
    xr.testing.assert_identical(again, ref)


def test_padding_of_the_training_set_changes_nothing(fam, make, bp_of):
    """Flow pads n to a multiple of 8 with masked samples: same data, loss and gradient."""
    for sampling in ("fixed", "gaussian"):
        gd = make(n_train=5, sampling=sampling, loss="mean", init_scale=0.3)
        fl = make(n_train=5, sampling=sampling, loss="mean", init_scale=0.3, optimizer="flow")
        assert static_part(fl).n_train == 8 and static_part(gd).n_train == 5
        (p, d, _), (q, e, _) = (fam.setup(static_part(c), run_values(c)) for c in (gd, fl))
        np.testing.assert_allclose(e["x"][:5], d["x"], rtol=1e-15)
        assert float(e["mask"].sum()) == 5 and e["x"].shape[0] == 8
        for fn in (lambda c, p, d: fam.loss(static_part(c), run_values(c), p, d),
                   lambda c, p, d: jax.grad(
                       lambda p: fam.loss(static_part(c), run_values(c), p, d))(p)["w"]):
            np.testing.assert_allclose(fn(fl, q, e), fn(gd, p, d), rtol=1e-14)


def test_flow_only_settings_are_refused_elsewhere(make):
    with pytest.raises(ConfigError, match="applies to optimizer = 'flow' only"):
        make(rtol=1e-6)
    with pytest.raises(ConfigError, match="applies to optimizer = 'adam' only"):
        make(adam_b1=0.5)
    with pytest.raises(ConfigError, match="<= 1"):
        make(optimizer="flow", tail_switch=2.0)


def test_flow_refuses_networks_too_large_for_dense_solves(fam, make):
    from twolayer.train import check_group

    with pytest.raises(ConfigError, match="at most 2048 parameters"):
        check_group(fam, make(optimizer="flow", width=1000))
    check_group(fam, make(optimizer="flow", width=100))


# ---------------------------------------------------------------- scoring by the limit
def test_polish_reaches_a_global_minimum_from_the_gd_end_point(fam, make):
    cfgs = [make(sampling="gaussian", loss="mse", n_train=6, init_scale=1e-20, imbalance=c,
                 learning_rate=0.5, max_steps=20_000, polish=True, n_checkpoints=10)
            for c in (0.3, 0.9)]
    ds = train_group(fam, cfgs, progress=False)
    assert not ds["converged"].any()  # the budget stopped both short of loss_tol
    assert (ds["polished_train_loss"] < 1e-25).all()  # measured: 7e-33, 1e-30
    assert (ds["polished_train_loss"] < ds["train_loss"].isel(step=-1)).all()
    assert ds["polished_recovered"].all() and (ds["polished_test_error"] < 1e-20).all()
    assert (ds["polish_steps_done"] <= 1000).all()
    # n = 6 is the parameter count: every global minimum is perfect, so the polished point
    # is a global minimum near the GD end point (measured: at most 0.17 away)
    assert np.abs(_vec(ds) - np.concatenate([ds[f"polished_{k}"].values.reshape(2, -1)
                                             for k in ("a", "w", "b")], 1)).max() < 0.25


def test_outcome_reads_the_limit():
    runs = xr.Dataset({
        "recovered": ("run", [True, False, False, False, False, True]),
        "converged": ("run", [True, True, False, False, False, False]),
        "diverged": ("run", [False, False, False, False, True, False]),
        "trend": ("run", [np.nan, -3.0, -0.5, -0.001, np.nan, -1.0])})
    assert list(analysis.outcome(runs).values) == [
        "recovered", "not recovered", "unresolved", "not recovered", "diverged", "recovered"]
    counts = analysis.outcome_counts(runs, "run")
    assert [int(counts[k]) for k in ("recovered", "not_recovered", "unresolved", "diverged")] \
        == [2, 2, 1, 1]


def test_branch_says_converging_for_runs_a_budget_stopped():
    a = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    ds = xr.Dataset({"a": (("run", "neuron"), a), "w": (("run", "neuron", "input"), np.ones((3, 2, 1))),
                     "b": (("run", "neuron"), np.ones((3, 2))),
                     "converged": ("run", [True, True, False])})
    assert list(sn_analysis.branch(ds).values) == ["Q2", "Q1", "converging"]


# ---------------------------------------------------------------- the loss and the init
def test_mse_is_the_sum_loss_times_two_over_n(fam, make, bp_of):
    cfgs = {loss: make(loss=loss, sampling="gaussian", n_train=7, init_scale=0.4)
            for loss in ("sum", "mean", "mse")}
    p, data, _ = fam.setup(cfgs["sum"], run_values(cfgs["sum"]))
    val = {k: float(fam.loss(c, run_values(c), p, data)) for k, c in cfgs.items()}
    np.testing.assert_allclose(val["mse"], 2 * val["sum"] / 7, rtol=1e-15)
    np.testing.assert_allclose(val["mse"], 2 * val["mean"], rtol=1e-15)
    np.testing.assert_allclose(sn_theory.growth_rate(3.0, 1.0, 7, "mse"), 6.0 / 7)


def test_c_profile_prescribes_the_coefficients(fam, make, bp_of):
    cfg = make(width=50, c_profile=[1.5, 0.0015], init_scale=1e-6, seed=3)
    _, _, info = fam.setup(cfg, run_values(cfg))
    c = np.asarray(info["c_coeff"])
    np.testing.assert_allclose(c / c[0], (1.5 + 0.0015 * np.arange(50)) / 1.5, rtol=1e-12)
    with pytest.raises(ConfigError, match="c_profile"):
        make(width=2, c_profile=[0.0, 1.0])
