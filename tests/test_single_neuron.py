"""The single-neuron family, its theory (C_k, model rank, sample sizes, time shift) and the
analysis helpers. Small sizes: the whole file runs in well under a minute on two cores."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.flatten_util import ravel_pytree

from twolayer import activations, analysis, theory
from twolayer.families.single_neuron import analysis as sn_analysis
from twolayer.families.single_neuron import model as sn
from twolayer.families.single_neuron import theory as sn_theory
from twolayer.train import train_group
from twolayer.train import run_values


def _flat_loss(fam, cfg, params, data):
    flat, unravel = ravel_pytree(params)
    return flat, unravel, jax.jit(lambda th: fam.loss(cfg, run_values(cfg), unravel(th), data))


# ---------------------------------------------------------------- loss and its gradient
@pytest.mark.parametrize("activation,bias,loss", [
    ("tanh", True, "sum"), ("tanh", False, "mean"), ("rational", True, "mean"),
    ("rational", False, "sum"), ("relu", True, "sum"), ("relu", False, "mean")])
def test_loss_and_gradient_vs_finite_differences(fam, make, bp_of, activation, bias, loss):
    cfg = make(activation=activation, bias=bias, loss=loss, sampling="gaussian", input_dim=2,
               n_train=7, n_test=5, width=3, target_w=((0.7, -1.2),))
    _, data, _ = fam.setup(cfg, run_values(cfg))
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    rng = np.random.default_rng(1)
    for _ in range(100):  # O(1) parameters; relu: pre-activations away from the kink
        params = {"a": rng.normal(size=3), "w": rng.normal(size=(3, 2))}
        if bias:
            params["b"] = rng.normal(size=3)
        z = x @ params["w"].T + (params["b"] if bias else 0.0)
        if np.min(np.abs(z)) > 1e-2:
            break
    assert np.min(np.abs(z)) > 1e-2
    s = {"tanh": np.tanh, "rational": lambda u: u / (1 + u * u),
         "relu": lambda u: np.maximum(u, 0.0)}[activation]
    r = s(z) @ params["a"] - y
    expected = 0.5 * np.sum(r * r) / (7 if loss == "mean" else 1)
    flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
    h = 1e-6
    eye = jnp.eye(flat.size) * h

    @jax.jit
    def everything(th):  # value, gradient and central differences in one compiled call
        f = lambda t: fam.loss(cfg, run_values(cfg), unravel(t), data)  # noqa: E731
        return f(th), jax.grad(f)(th), (jax.vmap(f)(th + eye) - jax.vmap(f)(th - eye)) / (2 * h)

    value, grad, fd = (np.asarray(v) for v in everything(flat))
    assert float(value) == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-7 * max(1.0, np.max(np.abs(grad))))
    assert np.max(np.abs(grad)) > 1e-3  # not a trivially zero gradient


# ---------------------------------------------------------------- data and seeds
@pytest.mark.parametrize("sampling", ["gaussian", "uniform"])
def test_first_n_training_inputs_shared_across_n(fam, make, bp_of, sampling):
    cfgs = {n: make(sampling=sampling, input_dim=3, n_train=n, n_test=11, seed=4, data_seed=9)
            for n in (3, 7)}
    out = {n: fam.setup(c, run_values(c)) for n, c in cfgs.items()}
    x3, x7 = np.asarray(out[3][1]["x"]), np.asarray(out[7][1]["x"])
    assert x3.shape == (3, 3) and x7.shape == (7, 3)
    np.testing.assert_array_equal(x3, x7[:3])
    assert len(np.unique(x7[:, 0])) == 7  # distinct draws, not one repeated sample
    np.testing.assert_array_equal(out[3][1]["x_test"], out[7][1]["x_test"])
    np.testing.assert_array_equal(out[3][0]["a"], out[7][0]["a"])  # init does not depend on n
    if sampling == "uniform":
        assert np.all(np.abs(x7) <= 2.0) and np.max(np.abs(x7)) > 1.0
    # same settings twice: identical; another data seed: other data, same init
    again = fam.setup(cfgs[7], run_values(cfgs[7]))
    np.testing.assert_array_equal(again[1]["x"], x7)
    np.testing.assert_array_equal(again[0]["w"], out[7][0]["w"])
    other = make(sampling=sampling, input_dim=3, n_train=7, n_test=11, seed=4, data_seed=10)
    p_o, d_o, _ = fam.setup(other, run_values(other))
    assert not np.allclose(d_o["x"], x7)
    np.testing.assert_array_equal(p_o["w"], out[7][0]["w"])


def test_fixed_sampling_is_linspace(fam, make, bp_of):
    cfg = make(n_train=5, n_test=9)
    _, data, _ = fam.setup(cfg, run_values(cfg))
    np.testing.assert_allclose(np.asarray(data["x"])[:, 0], np.linspace(-2, 2, 5), rtol=0,
                               atol=1e-15)
    np.testing.assert_allclose(data["y"], np.tanh(np.linspace(-2, 2, 5) + 1), rtol=1e-15)


# ---------------------------------------------------------------- worked numbers of the spec
def test_worked_data_vector_numbers(fam, make, bp_of):
    for n, g_ref, norm_ref in [(6, (5.0604, 2.4342), 5.6154), (3, (3.5133, 0.9951), 3.6515)]:
        cfg = make(n_train=n)
        _, data, info = fam.setup(cfg, run_values(cfg))
        g = np.asarray(sn.data_vector(cfg, data["x"], data["y"]))
        np.testing.assert_allclose(g, g_ref, rtol=0, atol=5e-5)
        assert abs(float(info["g_norm"]) - norm_ref) < 5e-5
        assert float(info["g_norm"]) == pytest.approx(np.linalg.norm(g), rel=1e-14)


def test_worked_escape_times():
    g = 5.6154
    assert sn_theory.time_shift(1e-20, 0.01, g, "flow") == pytest.approx(820, rel=0.01)
    assert sn_theory.time_shift(1e-20, 0.5, g) == pytest.approx(35, abs=1)
    assert sn_theory.time_shift(1e-20, 0.01, g) == pytest.approx(np.log(1e20) / np.log1p(0.056154))


# ---------------------------------------------------------------- C_k and the Hessian at 0
@pytest.mark.parametrize("activation,loss,sampling,d", [
    ("tanh", "sum", "fixed", 1), ("rational", "sum", "gaussian", 2),
    ("tanh", "mean", "gaussian", 2)])
def test_c_coeff_is_projection_on_top_hessian_eigenvector(fam, make, bp_of, activation, loss,
                                                          sampling, d):
    m = 3
    cfg = make(activation=activation, loss=loss, sampling=sampling, input_dim=d, width=m,
               n_train=6, n_test=5, init_scale=1e-2, seed=3)
    params0, data, info = fam.setup(cfg, run_values(cfg))
    g = np.asarray(sn.data_vector(cfg, data["x"], data["y"]))
    gn = np.linalg.norm(g)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params0)
    flat0, unravel, f = _flat_loss(fam, cfg, params0, data)
    neg_h = -np.asarray(jax.hessian(f)(jnp.zeros_like(flat0)))
    evals, evecs = np.linalg.eigh(neg_h)
    lam = gn * activations.slope_at_zero(activation) / (6 if loss == "mean" else 1)
    # top eigenvalue |g| s'(0), once per neuron, clearly above the rest (which are 0 and -lam)
    np.testing.assert_allclose(evals[-m:], lam, rtol=1e-10)
    assert evals[-m - 1] < 0.5 * lam
    top = evecs[:, -m:]
    proj = top @ (top.T @ np.asarray(flat0))  # theta_0 projected on the top eigenspace
    vs = []
    for k in range(m):  # neuron k's eigenvector (|g|, g) on (a_k, w_k, b_k), zero elsewhere
        p = jax.tree_util.tree_map(np.array, zero)
        p["a"][k] = gn
        p["w"][k] = g[:d]
        p["b"][k] = g[d]
        v = np.asarray(ravel_pytree(p)[0])
        np.testing.assert_allclose(neg_h @ v, lam * v, rtol=0, atol=1e-10 * gn * lam)
        c_k = np.dot(np.asarray(flat0), v / np.linalg.norm(v)) * np.sqrt(2) * gn
        assert float(info["c_coeff"][k]) == pytest.approx(c_k, rel=1e-12)
        vs.append(v / (2 * gn ** 2))
    # the projection, basis free, is sum_k C_k (|g|, g)_k / (2 |g|^2)
    np.testing.assert_allclose(proj, np.asarray(info["c_coeff"]) @ np.array(vs), rtol=0,
                               atol=1e-10 * np.max(np.abs(proj)))
    np.testing.assert_allclose(info["imbalance_ratio"],
                               info["c_coeff"] / np.linalg.norm(info["c_coeff"]), rtol=1e-14)


# ---------------------------------------------------------------- prescribed imbalance
def test_prescribed_imbalance_is_exact_and_zero_stays_zero(fam, make):
    levels = [0.0, 0.3, 0.5, 1.0]
    cfgs = [make(imbalance=c, init_scale=1e-3, learning_rate=0.05, seed=s, max_steps=200,
                 n_checkpoints=10, loss_tol=0.0) for s, c in enumerate(levels)]
    ds = train_group(fam, cfgs, progress=False)
    c = ds["c_coeff"].values
    for i, lev in enumerate(levels):
        assert c[i, 1] == pytest.approx(lev * c[i, 0], rel=1e-12, abs=0)
    assert np.all(c[:, 0] != 0)
    np.testing.assert_allclose(sn_analysis.imbalance_of(ds), levels, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sn_analysis.c_ratio(ds)[1:], 1 / np.array(levels[1:]), rtol=1e-12)
    # c~ = 0: neuron 2 is zero and stays zero; neuron 1 moved
    for name in ("a", "w", "b"):
        assert np.all(ds[name].isel(run=0, neuron=1).values == 0.0)
    a1 = ds["a"].isel(run=0, neuron=0)
    assert abs(a1.isel(step=-1)) > 10 * abs(a1.isel(step=0))
    assert not np.all(ds["a"].isel(run=1, neuron=1).values == 0.0)


# ---------------------------------------------------------------- model rank
def _random_target(rng, d, bias, k):
    """k random target neurons kept apart: input-weight norms near 0.5, 1.4, 2.6 (shuffled)
    in random directions, so no two are equal up to sign (which would lower the rank) and the
    Jacobian stays well conditioned."""
    radii = rng.permutation([0.5, 1.4, 2.6])[:k] * rng.uniform(0.9, 1.1, k)
    dirs = rng.normal(size=(k, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    a = tuple(float(v) for v in rng.uniform(0.5, 1.5, k) * rng.choice([-1.0, 1.0], k))
    w = tuple(tuple(float(v) for v in r * u) for r, u in zip(radii, dirs))
    b = tuple(float(v) for v in rng.normal(size=k)) if bias else (0.0,) * k
    return dict(target_a=a, target_w=w, target_b=b)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_model_rank_of_target_is_k_times_d_plus_1(fam, make, d, bias):
    rng = np.random.default_rng(10 * d + bias)
    D = sn_theory.effective_dim(d, bias)
    for k in (1, 2, 3):
        tgt = _random_target(rng, d, bias, k)
        for m in (k, k + 1, k + 3):
            cfg = make(input_dim=d, bias=bias, width=m, sampling="gaussian", **tgt)
            rank = sn_theory.model_rank_of_target(cfg)
            assert rank == k * (D + 1) == sn_theory.optimistic_sample_size(d, bias, k), (k, m)
        # the verdict does not hang on the tolerance: a wide gap around the cut
        sv = theory.jacobian_singular_values(fam, cfg, sn_theory.target_point(cfg))
        sv = sv / sv[0]
        assert sv[rank - 1] > 1e-6 and (sv.size == rank or sv[rank] < 1e-13)


def test_model_rank_split_point_generic_point_and_zero(fam, make):
    cfg = make(width=3)  # tanh(x + 1), d = 1 with bias: rank 3
    assert sn_theory.model_rank_of_target(cfg) == 3
    split = {"a": jnp.array([0.3, 0.7, 0.0]), "w": jnp.ones((3, 1)), "b": jnp.ones(3)}
    assert theory.model_rank(fam, cfg, split) == 3
    neg = {"a": jnp.array([0.3, -0.7, 0.0]), "w": jnp.array([[1.0], [-1.0], [0.0]]),
           "b": jnp.array([1.0, -1.0, 0.0])}  # the same split with an odd sign flip
    assert theory.model_rank(fam, cfg, neg) == 3
    rng = np.random.default_rng(0)
    generic = {"a": jnp.asarray(rng.normal(size=3)), "w": jnp.asarray(rng.normal(size=(3, 1))),
               "b": jnp.asarray(rng.normal(size=3))}
    assert theory.model_rank(fam, cfg, generic) == 9  # all (D + 1) m directions
    sv = theory.jacobian_singular_values(fam, cfg, generic)
    assert sv.shape == (9,) and np.all(np.diff(sv) <= 0)
    zero = jax.tree_util.tree_map(jnp.zeros_like, generic)
    assert theory.model_rank(fam, cfg, zero) == 0  # tanh(0) = 0 and a = 0: no direction
    # the tolerance is relative: a huge one keeps only the top direction
    assert theory.model_rank(fam, cfg, generic, tol=0.999999) == 1
    # relu: a neuron that is off on every input has no direction either
    relu = make(width=2, activation="relu", target_activation="relu")
    off = {"a": jnp.array([1.0, 1.0]), "w": jnp.array([[0.0], [0.0]]), "b": jnp.array([1.0, -1.0])}
    assert theory.model_rank(fam, relu, off) == 2  # span{1, x}: neuron 2 is dead
    with pytest.raises(ValueError):
        sn_theory.target_point(make(width=2, target_a=(1.0, 1.0, 1.0), target_b=(1.0, 1.0, 1.0)))


def test_sample_size_closed_forms():
    assert sn_theory.sample_sizes(1, True) == {"optimistic": 3, "separation_q2": 4,
                                            "separation_q1": 5, "all_perfect": 6}
    assert sn_theory.sample_sizes(3, True) == {"optimistic": 5, "separation_q2": 6,
                                            "separation_q1": 9, "all_perfect": 10}


# ---------------------------------------------------------------- relu balance law
def _balance_defect(fam, make, bp_of, activation):
    """Plain GD by hand (20 steps, eta 0.01) from an O(1) init: the largest deviation of the
    per-step change of a^2 - |w|^2 - b^2 from eta^2 (g_a^2 - |g_w|^2 - g_b^2)."""
    cfg = make(activation=activation, width=3, sampling="gaussian", input_dim=2, n_train=8,
               n_test=5, init_scale=0.5, seed=2)
    p, data, _ = fam.setup(cfg, run_values(cfg))
    eta = 0.01

    def balance(q):
        return q["a"] ** 2 - jnp.sum(q["w"] ** 2, axis=1) - q["b"] ** 2

    @jax.jit
    def step(q):
        gr = jax.grad(lambda t: fam.loss(cfg, run_values(cfg), t, data))(q)
        new = jax.tree_util.tree_map(lambda v, g: v - eta * g, q, gr)
        law = eta ** 2 * (gr["a"] ** 2 - jnp.sum(gr["w"] ** 2, axis=1) - gr["b"] ** 2)
        size = q["a"] ** 2 + jnp.sum(q["w"] ** 2, axis=1) + q["b"] ** 2
        return new, balance(new) - balance(q), law, size

    defect, scale, law_max = 0.0, 0.0, 0.0
    for _ in range(20):
        p, change, law, size = step(p)
        defect = max(defect, float(jnp.max(jnp.abs(change - law))))
        scale = max(scale, float(jnp.max(size)))
        law_max = max(law_max, float(jnp.max(jnp.abs(law))))
    assert law_max > 0
    return defect, scale, law_max


def test_relu_balance_law_holds_exactly_and_fails_for_tanh(fam, make, bp_of):
    defect, scale, law = _balance_defect(fam, make, bp_of, "relu")
    assert defect <= 1e-13 * scale  # exact up to rounding
    assert defect < 1e-6 * law
    defect_tanh, scale_tanh, _ = _balance_defect(fam, make, bp_of, "tanh")
    assert defect_tanh > 1e-5 * scale_tanh  # clearly not conserved
    assert defect_tanh > 1e6 * defect


# ---------------------------------------------------------------- time shift (fig2 type)
def test_time_shift_aligns_trajectories(fam, make):
    scales = [1e-12, 1e-8, 1e-6]
    cfgs = [make(n_train=6, width=2, imbalance=0.5, init_scale=s, learning_rate=0.01, seed=0,
                 max_steps=6000, n_checkpoints=400, loss_tol=0.0) for s in scales]
    ds = train_group(fam, cfgs, progress=False).assign_coords(init_scale=("run", scales))
    ds.attrs["learning_rate"] = 0.01
    shifted = sn_analysis.time_shifted_step(ds)  # init_scale from the coord, eta from the attrs
    np.testing.assert_allclose(
        shifted, sn_analysis.time_shifted_step(ds, learning_rate=0.01, init_scale=ds["init_scale"]))
    lam = float(ds["g_norm"][0])
    np.testing.assert_allclose(
        shifted.sel(step=0), -np.log(1 / np.array(scales)) / np.log1p(0.01 * lam), rtol=1e-12)
    logloss = np.log10(ds["train_loss"].values)

    def spread(steps):  # steps: (run, step) -> max |log10 loss difference| on the overlap
        lo, hi = np.max(steps[:, 0]), np.min(steps[:, -1])
        grid = np.linspace(lo, hi, 2000)
        curves = np.array([np.interp(grid, s, l) for s, l in zip(steps, logloss)])
        keep = np.all(curves > -6, axis=0)
        assert keep.sum() > 1000
        return np.max(np.ptp(curves[:, keep], axis=0))

    assert np.min(logloss[:, -1]) < -4  # the runs did learn
    assert spread(shifted.transpose("run", "step").values) < 0.05
    assert spread(np.broadcast_to(ds["step"].values, logloss.shape).astype(float)) > 1.0


def test_time_shift_settings_from_attrs_and_mean_loss(fam, make):
    ds = xr.Dataset({"g_norm": ("run", [2.0, 4.0])}, coords={"step": [0, 10]})
    ds.attrs["learning_rate"] = 0.1
    ds.attrs["init_scale"] = 1e-6
    out = sn_analysis.time_shifted_step(ds)
    expect = np.log(1e6) / np.log1p(0.1 * np.array([2.0, 4.0]))
    np.testing.assert_allclose(out.sel(step=10), 10 - expect, rtol=1e-12)
    out = sn_analysis.time_shifted_step(ds, loss="mean", n_train=4, slope=2.0, optimizer="flow")
    np.testing.assert_allclose(out.sel(step=0), -np.log(1e6) / (0.1 * np.array([1.0, 2.0])))
    with pytest.raises(ValueError):
        sn_analysis.time_shifted_step(xr.Dataset({"g_norm": ("run", [1.0])}, coords={"step": [0]}))


# ---------------------------------------------------------------- both ends of c~ (trained)
def test_extreme_imbalances_reach_q2_and_q1(fam, make):
    """c~ = 0 (neuron 2 zero) and c~ = 1 (equal C_k) both reduce the net to one neuron under
    small init: the first ends on branch Q2, the second on Q1 with a_1 + a_2 = a*."""
    cfgs = [make(n_train=6, imbalance=c, init_scale=1e-6, learning_rate=0.1, max_steps=5000,
                 n_checkpoints=20, loss_tol=1e-20, seed=0) for c in (0.0, 1.0)]
    ds = train_group(fam, cfgs, progress=False)
    assert ds["converged"].all() and ds["recovered"].all()
    assert list(sn_analysis.branch(ds).values) == ["Q2", "Q1"]
    a = analysis.final(ds["a"]).values
    # (both neurons may end as the odd mirror image (-a, -w, -b) of the target: same function)
    assert a[0, 1] == 0.0 and abs(a[1, 0] - a[1, 1]) < 1e-4 and abs(abs(a[1].sum()) - 1) < 1e-8


# ---------------------------------------------------------------- analysis on synthetic data
CASES = [  # (a, w, b) final values, expected branch (default tolerances)
    ((1.0, 0.0), (1.0, 0.3), (1.0, -0.2), "Q2"),
    ((5e-4, 1.005), (7.0, 0.995), (-3.0, 1.002), "Q2"),
    ((-1.0, 0.0), (-1.0, 2.0), (-1.0, 3.0), "Q2"),  # odd sign flip of the target neuron
    ((0.3, 0.7), (1.0, 1.0), (1.0, 1.0), "Q1"),
    ((-0.3, 0.7), (-1.0, 1.0), (-1.0, 1.0), "Q1"),  # one neuron flipped: -(-0.3) + 0.7 = 1
    ((0.3, 0.7), (1.0, 2.0), (1.0, 1.0), "none"),  # second neuron off the target direction
    ((0.3, 0.3), (1.0, 1.0), (1.0, 1.0), "none"),  # output weights do not sum to a*
    ((0.0, 0.0), (1.0, 1.0), (1.0, 1.0), "none"),
    ((0.002, 1.0), (5.0, 1.0), (5.0, 1.0), "none"),  # |a_1| above a_tol = 1e-3
    ((0.5, 0.95), (1.0, 1.0), (1.0, 1.0), "none"),
]


def _synthetic(cases, nan_last=()):
    n = len(cases)
    a = np.random.default_rng(0).normal(size=(n, 3, 2))
    w = np.random.default_rng(1).normal(size=(n, 3, 2, 1))
    b = np.random.default_rng(2).normal(size=(n, 3, 2))
    for i, (ai, wi, bi, _) in enumerate(cases):
        last = 1 if i in nan_last else 2
        a[i, last], w[i, last, :, 0], b[i, last] = ai, wi, bi
        if i in nan_last:
            a[i, 2], w[i, 2], b[i, 2] = np.nan, np.nan, np.nan
    return xr.Dataset({"a": (("run", "step", "neuron"), a),
                       "w": (("run", "step", "neuron", "input"), w),
                       "b": (("run", "step", "neuron"), b)}, coords={"step": [0, 5, 9]})


def test_branch_classification_on_synthetic_values():
    ds = _synthetic(CASES, nan_last=(0, 3))  # runs 0 and 3 stopped early (NaN after a merge)
    got = sn_analysis.branch(ds)
    assert got.dims == ("run",)
    assert list(got.values) == [c[-1] for c in CASES]
    # explicit tolerances change the verdicts they should
    loose = sn_analysis.branch(ds, a_tol=1e-2)
    assert loose.values[8] == "Q2" and loose.values[1] == "Q2"
    strict = sn_analysis.branch(ds, match_tol=1e-3)
    assert strict.values[1] == "none" and strict.values[0] == "Q2"
    no_flip = sn_analysis.branch(ds, sign_flip=False)
    assert no_flip.values[2] == "none" and no_flip.values[4] == "none"
    assert no_flip.values[3] == "Q1"
    # another target: 2 tanh(0.5 x) without bias
    ds2 = ds.drop_vars("b").isel(run=[0, 3])
    ds2["a"][:, -1] = [[2.0, 0.0], [1.5, 0.5]]
    ds2["w"][:, -1] = [[[0.5], [3.0]], [[0.5], [0.5]]]
    assert list(sn_analysis.branch(ds2, target_a=2.0, target_w=0.5).values) == ["Q2", "Q1"]
    # swept dims (seed x imbalance) are kept, step/neuron/input are gone
    sw = ds.isel(run=[0, 3, 5, 2]).assign_coords(run=np.arange(4))
    sw = sw.assign_coords(seed=("run", [0, 0, 1, 1]), imbalance=("run", [0.1, 0.9, 0.1, 0.9]))
    sw = sw.set_index(run=["seed", "imbalance"]).unstack("run")
    got = sn_analysis.branch(sw)
    assert set(got.dims) == {"seed", "imbalance"}
    assert got.sel(seed=0, imbalance=0.9).item() == "Q1"
    assert got.sel(seed=1, imbalance=0.1).item() == "none"
    assert got.sel(seed=1, imbalance=0.9).item() == "Q2"


def test_final_ratio_and_recovery_rate():
    da = xr.DataArray([[1.0, 2.0, 3.0], [4.0, np.nan, np.nan], [np.nan, 5.0, np.nan]],
                      dims=("run", "step"), coords={"step": [0, 1, 2]})
    np.testing.assert_array_equal(analysis.final(da), [3.0, 4.0, 5.0])
    c = xr.Dataset({"c_coeff": (("run", "neuron"), [[2.0, -1.0], [0.5, 2.0], [1.0, 0.0],
                                                   [0.0, 0.0]])})
    np.testing.assert_allclose(sn_analysis.c_ratio(c)[:3], [2.0, 0.25, np.inf])
    np.testing.assert_allclose(sn_analysis.imbalance_of(c)[:3], [0.5, 0.25, 0.0])
    assert np.isnan(sn_analysis.imbalance_of(c)[3])
    rec = xr.Dataset({"recovered": (("n_train", "seed"), [[True, False, True, True],
                                                          [False, False, False, True]])},
                     coords={"n_train": [3, 6]})
    np.testing.assert_allclose(analysis.recovery_rate(rec, "seed"), [0.75, 0.25])
    np.testing.assert_allclose(analysis.recovery_rate(rec, ["n_train", "seed"]), 0.5)
    merged = xr.Dataset({"recovered": (("n_train", "seed"),
                                       np.array([[True, np.nan], [False, True]], dtype=object))})
    np.testing.assert_allclose(analysis.recovery_rate(merged, "seed"), [1.0, 0.5])


# ---------------------------------------------------------------- sharpness and the presets' loss
def test_sharpness_at_a_global_minimum_is_gauss_newton(fam, make, bp_of):
    """At a zero-residual minimum the Hessian of 1/2 sum r^2 is J^T J (J: Jacobian of the
    predictions on the training inputs); the mean loss divides it by n. And the study's
    eta = 0.5 with the sum loss is linearly unstable at branch Q2 for n = 6 evenly spaced
    points (sharpness > 2 / eta), which is why the large-step presets use the mean loss."""
    from jax.flatten_util import ravel_pytree

    from twolayer import theory

    for loss in ("sum", "mean"):
        cfg = make(n_train=6, loss=loss, init_scale=1e-3)
        _, data, _ = fam.setup(cfg, run_values(cfg))
        q2 = {"a": jnp.array([1.0, 0.0]), "w": jnp.array([[1.0], [0.3]]), "b": jnp.array([1.0, -0.2])}
        assert float(fam.loss(cfg, run_values(cfg), q2, data)) < 1e-28  # a global minimum
        flat, unravel = ravel_pytree(q2)
        jac = jax.jacobian(lambda f: fam.predict(cfg, unravel(f), data["x"]))(flat)
        gauss_newton = np.linalg.eigvalsh(np.asarray(jac.T @ jac))[-1] / (6 if loss == "mean" else 1)
        sharp = theory.sharpness(fam, cfg, run_values(cfg), q2, data)
        assert sharp == pytest.approx(gauss_newton, rel=1e-10)
        assert (sharp > 2 / 0.5) == (loss == "sum")
        # GD at eta = 0.5 from a tiny perturbation: leaves the minimum iff it is unstable
        p = {k: v + 1e-6 for k, v in q2.items()}
        grad = jax.jit(jax.grad(lambda q: fam.loss(cfg, run_values(cfg), q, data)))
        for _ in range(400):
            g = grad(p)
            p = {k: p[k] - 0.5 * g[k] for k in p}
        moved = max(float(jnp.max(jnp.abs(p[k] - q2[k]))) for k in p)
        assert (not moved <= 1e-3) == (loss == "sum")  # NaN (blown up) counts as moved
