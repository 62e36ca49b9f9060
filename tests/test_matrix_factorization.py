"""The matrix_factorization family (W2 W1 completing a low-rank k x k target): the optimistic
sample size r (2k - r) against the model rank at the target, the loss and its gradient, the
data law (nested observed sets and targets), batched runs against runs alone, float32, bad
input and the optimistic_sizes overlay. Every trained run shares one compiled program
(n_train and target_rank are bucketed)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.flatten_util import ravel_pytree

import twolayer  # noqa: F401  (float64 and host devices before jax is used)
from twolayer import theory
from twolayer.config import ConfigError, make_config, static_part
from twolayer.families import get
from twolayer.families.matrix_factorization import model as mf
from twolayer.families.matrix_factorization import theory as mf_theory
from twolayer.train import run_values, train_group

FAM = get("matrix_factorization")


def make(**kw):
    return make_config(FAM.Config, kw)


def init(cfg):
    params, data, info = FAM.setup(static_part(cfg), run_values(cfg))
    return params, data, info


# ---------------------------------------------------------------- theory
def test_optimistic_sample_size_closed_form():
    assert [mf_theory.optimistic_sample_size(4, r) for r in range(1, 5)] == [7, 12, 15, 16]
    k = np.arange(1, 9)[:, None]
    r = np.arange(1, 9)[None, :]
    n = mf_theory.optimistic_sample_size(k, r)
    # 2kr parameters of the factors U (k x r), V (k x r) minus the r^2 of the GL(r) gauge
    np.testing.assert_array_equal(n, 2 * k * r - r * r)
    np.testing.assert_array_equal(np.diagonal(n), np.arange(1, 9) ** 2)  # r = k: every entry
    assert mf_theory.parameter_count(4, 4) == 32


@pytest.mark.parametrize("size,width,ranks", [
    (4, 4, (1, 2, 3, 4)),
    (3, 3, (1, 2, 3)),
    (5, 7, (1, 2, 5)),   # wider than k: zero-padded factors
    (5, 3, (1, 3)),      # narrower than k, m >= r: cut factors
])
def test_model_rank_at_the_target_is_the_optimistic_size(size, width, ranks):
    for r in ranks:
        for data_seed in (0, 7):
            cfg = make(size=size, width=width, target_rank=r, n_train=1, data_seed=data_seed)
            assert mf_theory.target_model_rank(FAM, cfg) == mf_theory.optimistic_sample_size(
                size, r), (size, width, r, data_seed)


def test_observed_rank_reaches_the_optimistic_size_only_from_it_on():
    for r in (1, 2):
        opt = mf_theory.optimistic_sample_size(4, r)
        ranks = [mf_theory.observed_rank(FAM, make(target_rank=r, n_train=n, data_seed=1))
                 for n in range(1, 17)]
        assert ranks == sorted(ranks) and ranks[-1] == opt  # nested sets: never decreases
        assert all(q <= n for n, q in zip(range(1, 17), ranks))  # at most one per entry
        assert ranks[opt - 2] < opt
    # the closed-form Jacobian is the model Jacobian through one-hot inputs
    cfg = make(target_rank=2, n_train=9, data_seed=2)
    p = mf.target_params(cfg, run_values(cfg))
    _, data, _ = init(cfg)
    x = mf_theory.observed_inputs(cfg, data["mask"])
    np.testing.assert_allclose(mf_theory.observed_jacobian(p["w1"], p["w2"], data["mask"]),
                               theory.model_jacobian(FAM, cfg, p, x=x), atol=1e-14)


def test_target_point_is_a_factorization_of_the_target():
    cfg = make(size=4, width=6, target_rank=2, data_seed=3)
    p = mf.target_params(cfg, run_values(cfg))
    _, data, _ = init(cfg)
    np.testing.assert_allclose(np.asarray(mf.product(p)), np.asarray(data["target"]),
                               atol=1e-14)
    with pytest.raises(ValueError, match="width"):
        mf.target_params(make(size=4, width=1, target_rank=2), run_values(make(target_rank=2)))


# ---------------------------------------------------------------- model, loss, gradient
def test_target_has_its_rank_and_unit_mean_square():
    for r in range(1, 5):
        _, data, _ = init(make(target_rank=r, data_seed=11))
        m = np.asarray(data["target"])
        assert np.mean(m * m) == pytest.approx(1.0, rel=1e-12)
        assert np.linalg.matrix_rank(m, tol=1e-10) == r


def test_predict_on_one_hot_rows_gives_the_entries():
    cfg = make(size=3, width=2)
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(2, 3)), "w2": rng.normal(size=(3, 2))}
    eye = np.eye(3)
    x = np.array([np.concatenate([eye[i], eye[j]]) for i in range(3) for j in range(3)])
    f = np.asarray(FAM.predict(static_part(cfg), params, x))
    np.testing.assert_allclose(f, (params["w2"] @ params["w1"]).ravel(), rtol=1e-14)
    x = mf.inputs(cfg, 5, 0)
    u, v = x[:, :3], x[:, 3:]
    np.testing.assert_allclose(np.asarray(FAM.predict(static_part(cfg), params, x)),
                               np.einsum("ni,ij,nj->n", u, params["w2"] @ params["w1"], v))


def test_loss_and_gradient_vs_finite_differences():
    cfg = make(size=4, width=3, target_rank=2, n_train=9, data_seed=5)
    scfg, bp = static_part(cfg), run_values(cfg)
    _, data, _ = init(cfg)
    rng = np.random.default_rng(1)
    params = {"w1": rng.normal(size=(3, 4)), "w2": rng.normal(size=(4, 3))}
    mask, target = np.asarray(data["mask"]), np.asarray(data["target"])
    assert mask.sum() == 9
    expected = 0.5 * np.sum(mask * (params["w2"] @ params["w1"] - target) ** 2)
    flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
    h = 1e-6
    eye = jnp.eye(flat.size) * h

    @jax.jit
    def everything(th):
        f = lambda t: FAM.loss(scfg, bp, unravel(t), data)  # noqa: E731
        return f(th), jax.grad(f)(th), (jax.vmap(f)(th + eye) - jax.vmap(f)(th - eye)) / (2 * h)

    value, grad, fd = (np.asarray(v) for v in everything(flat))
    assert float(value) == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-7 * max(1.0, np.max(np.abs(grad))))
    assert np.max(np.abs(grad)) > 1e-3
    r = np.asarray(FAM.residuals(scfg, bp, params, data))
    assert r.shape == (16,) and np.count_nonzero(r) <= 9
    assert 0.5 * np.sum(r * r) == pytest.approx(expected, rel=1e-13)


# ---------------------------------------------------------------- data law
def test_observed_sets_are_nested_and_targets_do_not_depend_on_n():
    cfgs = [make(n_train=n, target_rank=2, data_seed=4) for n in (1, 3, 7, 16)]
    masks, targets = [], []
    for cfg in cfgs:
        _, data, _ = init(cfg)
        masks.append(np.asarray(data["mask"]).ravel())
        targets.append(np.asarray(data["target"]))
    for n, mask in zip((1, 3, 7, 16), masks):
        assert mask.sum() == n
    for small, big in zip(masks, masks[1:]):  # the first n observed entries stay observed
        assert np.all(big[small == 1] == 1)
    for t in targets[1:]:
        np.testing.assert_array_equal(t, targets[0])
    # another data seed: another order and another target
    _, other, _ = init(make(n_train=7, target_rank=2, data_seed=5))
    assert not np.array_equal(np.asarray(other["mask"]).ravel(), masks[2])
    assert not np.allclose(np.asarray(other["target"]), targets[0])
    # the order is a permutation of the k^2 entries
    order = np.asarray(mf.observation_order(static_part(cfgs[0]), 4))
    assert sorted(order) == list(range(16))


def test_targets_of_one_seed_are_nested_in_rank():
    """The rank-r target's factors are the first r columns of the same draw (up to the
    normalization)."""
    u = [np.asarray(mf.target_factors(static_part(make()), 2, r, jnp.float64)[0])
         for r in (1, 2, 3)]
    for a, b in zip(u, u[1:]):
        ra = np.count_nonzero(np.abs(a).sum(0))
        ca, cb = a[:, :ra], b[:, :ra]
        np.testing.assert_allclose(ca / np.linalg.norm(ca), cb / np.linalg.norm(cb), rtol=1e-12)


def test_init_is_gaussian_of_init_scale_and_seeded():
    p0, _, _ = init(make(init_scale=0.5, seed=1, width=64, size=8))
    z = np.concatenate([np.ravel(p0["w1"]), np.ravel(p0["w2"])])
    assert np.std(z) == pytest.approx(0.5, rel=0.05)
    p1, _, _ = init(make(init_scale=0.5, seed=2, width=64, size=8))
    assert not np.allclose(p0["w1"], p1["w1"])
    q, _, _ = init(make(init_scale=0.25, seed=1, width=64, size=8))  # shared randomness
    np.testing.assert_allclose(2 * np.asarray(q["w1"]), p0["w1"], rtol=1e-14)


# ---------------------------------------------------------------- the engine
TRAIN = dict(max_steps=4000, n_checkpoints=9, loss_tol=1e-15, learning_rate=0.1)
RUNS = [dict(target_rank=1, n_train=16, data_seed=0, seed=0),
        dict(target_rank=2, n_train=3, data_seed=1, seed=1, init_scale=1e-2),
        dict(target_rank=4, n_train=16, data_seed=2, seed=2, learning_rate=0.05),
        dict(target_rank=3, n_train=12, data_seed=3, seed=3)]


@functools.lru_cache(maxsize=None)
def trained():
    cfgs = [make(**{**TRAIN, **r}) for r in RUNS]
    return cfgs, train_group(FAM, cfgs, progress=False)


@functools.lru_cache(maxsize=None)
def alone(i):
    return train_group(FAM, [make(**{**TRAIN, **RUNS[i]})], progress=False)


def test_batched_runs_equal_runs_alone():
    _, ds = trained()
    for i in range(len(RUNS)):
        one = alone(i)
        for k in ds.data_vars:
            x, y = ds[k].isel(run=[i]).values, one[k].values
            if x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-300, err_msg=k)
            else:
                np.testing.assert_array_equal(x, y, err_msg=k)
    assert float(np.ptp(ds["train_loss"].isel(step=0).values)) > 1e-3  # distinct runs


def test_full_observation_recovers_and_few_entries_do_not():
    _, ds = trained()
    rec = ds["recovered"].values
    assert rec[0] and not rec[1]
    assert ds["test_error"].isel(step=-1).values[0] < 1e-8
    assert ds["test_error_unobserved"].isel(step=-1).values[0] == 0.0  # nothing unobserved
    assert ds["test_error"].isel(step=-1).values[1] > 1e-3
    # n = 3 entries: the fit interpolates them (train loss at the tolerance) but not the rest
    assert ds["train_loss"].isel(step=-1).values[1] < 1e-12
    per_line = ds["min_observed_per_line"].values
    assert per_line[0] == per_line[2] == 4 and per_line[1] == 0  # 3 entries miss a row


def test_balance_stays_near_its_small_initial_value():
    """|W1 W1^T - W2^T W2| is conserved by gradient flow; gradient descent with a small step
    keeps it far below the size of the factors, |W2 W1|_F."""
    _, ds = trained()
    bal = ds["balance"].isel(step=-1).values
    size = ds["product_norm"].isel(step=-1).values
    assert np.all(bal < 0.05 * size)


def test_float32_runs_in_float32():
    kw = dict(TRAIN, max_steps=300, loss_tol=0.0, target_rank=1, n_train=10, init_scale=0.1)
    ds = train_group(FAM, [make(dtype="float32", **kw)], progress=False).isel(run=0)
    for k in ("train_loss", "test_error", "test_error_unobserved", "balance", "product_norm"):
        assert ds[k].dtype == np.float32, k
    loss = ds["train_loss"].values
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.05 * loss[0]
    p, data, _ = init(make(dtype="float32", **kw))
    assert all(np.asarray(v).dtype == np.float32 for v in (*p.values(), *data.values()))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("settings,key", [
    (dict(size=4, target_rank=5), "target_rank"),
    (dict(size=3, n_train=10), "n_train"),
    (dict(n_train=0), "n_train"),
    (dict(init_scale=1e-30, dtype="float32"), "init_scale"),
])
def test_bad_input_is_one_line_naming_the_key(settings, key):
    with pytest.raises(ConfigError, match=key) as err:
        make(**settings)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the overlay
def test_optimistic_sizes_overlay_draws_one_line_per_rank():
    from matplotlib.figure import Figure

    ds = xr.Dataset({"test_error": (("n_train", "target_rank"), np.ones((3, 2)))},
                    coords={"n_train": [4, 7, 16], "target_rank": [1, 3]},
                    attrs={"family": "matrix_factorization", "size": 4})
    ax = Figure().subplots()
    handles = FAM.overlays["optimistic_sizes"](ax, ds, {"hue": "target_rank"}, {}, {})
    assert [h.get_label() for h in handles] == ["optimistic $n = 7$ ($r = 1$)",
                                                "optimistic $n = 15$ ($r = 3$)"]
    assert [h.get_xdata()[0] for h in handles] == [7, 15]
    assert handles[0].get_color() != handles[1].get_color()  # the hue's colours
    ax = Figure().subplots()  # a panel of one rank
    handles = FAM.overlays["optimistic_sizes"](ax, ds, {}, {}, {"target_rank": 2})
    assert [h.get_label() for h in handles] == ["optimistic $n = 12$ ($r = 2$)"]
