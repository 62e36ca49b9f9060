"""The patch_cnn family (two-layer CNN on signal + noise patches): gradients, the batched
engine, the exact coefficient dynamics against direct training, padding buckets, the data
law, the balance law, the output layer's options, projected test noise, bad input and the
small linear algebra. Compile time dominates: a few static configs are trained once (cached
below) and most tests read their Datasets or reuse their compiled setup."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import twolayer  # noqa: F401  (float64 and host devices: tests/conftest.py)
from twolayer import train as engine
from twolayer.config import ConfigError, make_config, static_part
from twolayer.families import get
from twolayer import linalg
from twolayer.families.patch_cnn import model as pc
from twolayer.train import batched_values, train_group
from twolayer.train import run_values

FAM = get("patch_cnn")
TRAIN = dict(max_steps=30, n_checkpoints=7, loss_tol=0.0)
RECORD = dict(record_filters=True, record_samples=True, record_coefficients=True)


def make(**kw):
    return make_config(FAM.Config, kw)


# ---------------------------------------------------------------- the configs trained here
# C1: linear signal, isotropic noise, projected test noise, bias, PyTorch init, frozen output
# (constant, default kappa = 1/width), class banks, mean pooling, relu. d = 50 (bucket 64).
C1 = dict(input_dim=50, n_train=6, n_test=100, width=2, signal="linear", noise="isotropic",
          test_sampling="projected", bias=True, hidden_init="pytorch", output_trainable=False,
          pooling="mean", activation="relu", learning_rate=0.5, label_noise=0.1, **TRAIN, **RECORD)
C1_RUNS = [dict(seed=1, data_seed=200, signal_norm=2.0),
           dict(seed=2, data_seed=201, signal_norm=3.0, noise_std=0.7)]

# C2: XOR signal, orthogonal noise, explicit test noise, leaky relu without bias (positively
# homogeneous: the balance law holds), single signed bank, sign output init, sum pooling.
# d = 70 (bucket 80); run 3 has d = 80 (the same bucket, so the same compiled program).
C2 = dict(n_train=5, n_test=200, width=3, banks="single", signal="xor", noise="orthogonal",
          test_sampling="explicit", activation="leaky_relu", output_init="sign", pooling="sum",
          noise_std=0.8, learning_rate=0.2, max_steps=40, n_checkpoints=8, loss_tol=0.0, **RECORD)
C2_RUNS = [
    dict(input_dim=70, seed=0, snr=0.4, output_init_scale=0.1, hidden_init_scale=0.01,
         output_learning_rate=0.2, label_noise=0.1),
    dict(input_dim=70, seed=1, snr=0.6, output_init_scale=0.05, hidden_init_scale=0.0,
         output_learning_rate=0.2, label_noise=0.0),  # zero initial filters
    dict(input_dim=70, seed=2, snr=0.3, output_init_scale=1.0, hidden_init_scale=0.05,
         output_learning_rate=0.1, label_noise=0.1),  # output layer at half the step size
    dict(input_dim=80, seed=3, snr=0.5, output_init_scale=0.2, hidden_init_scale=0.01,
         output_learning_rate=0.2, label_noise=0.1),
] + [dict(input_dim=70, seed=s, snr=0.5, output_init_scale=0.1, hidden_init_scale=0.01,
          output_learning_rate=0.2, label_noise=0.1) for s in range(4, 64)]

# T: C1's data law with n_train = 49 = d - 1 (K = d: "auto" picks direct), signal first,
# gaussian output init; runs 0 and 1 share C1's data seeds (prefix property).
T = dict(C1, n_train=49, parameterization="auto", signal_patch="first", output_init="gaussian",
         output_init_scale=0.3, width=8, hidden_init="gaussian", bias=False, max_steps=1,
         n_checkpoints=2, record_filters=True, record_samples=False, record_coefficients=False)
T_RUNS = C1_RUNS + [dict(seed=s, data_seed=100 + s, signal_norm=2.0) for s in range(3, 33)]


def c1(mode):
    return [make(**C1, **r, parameterization=mode) for r in C1_RUNS]


def c2(mode, runs=C2_RUNS):
    return [make(**C2, **r, parameterization=mode) for r in runs]


def c2_projected():
    """C2 with projected test noise, "auto" mode, and |mu| given instead of the SNR."""
    out = []
    for r in C2_RUNS:
        r = dict(r)
        snr = r.pop("snr")
        out.append(make(**dict(C2, test_sampling="projected"), **r, parameterization="auto",
                        signal_norm=snr * r.get("noise_std", C2["noise_std"]) * math.sqrt(r["input_dim"])))
    return out


def t_runs():
    return [make(**T, **r) for r in T_RUNS]


@functools.lru_cache(maxsize=None)
def trained(name):
    cfgs = {"c1_direct": lambda: c1("direct"), "c1_coef": lambda: c1("coefficient"),
            "c2_direct": lambda: c2("direct", C2_RUNS[:3]), "c2_coef": lambda: c2("coefficient"),
            "c2_projected": c2_projected, "t": t_runs}[name]()
    return cfgs, train_group(FAM, cfgs, progress=False)


@functools.lru_cache(maxsize=None)
def alone(i):
    cfg = c2("coefficient", C2_RUNS[i:i + 1])
    return train_group(FAM, cfg, progress=False)


def init_runs(cfgs):
    """family.setup of each run, as (params, data, info) numpy trees: through the engine's
    compiled init of the same group shape when it is there (no extra compile)."""
    n, ndev = len(cfgs), jax.local_device_count()
    padded = list(cfgs) + [cfgs[0]] * (-(-n // ndev) * ndev - n)
    bp = batched_values(padded, np.dtype(cfgs[0].dtype))
    cfg = static_part(cfgs[0])
    program = getattr(engine, "_program", None)
    if program is not None:
        state, data, info = program(FAM, cfg)["init"](bp)
        params = state["params"]
    else:  # pragma: no cover
        params, data, info = jax.jit(jax.vmap(functools.partial(FAM.setup, cfg)))(bp)
    tree = jax.tree_util.tree_map(np.asarray, (params, data, info))
    return [jax.tree_util.tree_map(lambda a, i=i: a[i], tree) for i in range(n)]


def assert_same(a, b, rtol, skip=()):
    """Every variable of two Datasets equal up to rtol times the variable's max |value|
    (NaN where the other is NaN; integers and booleans exactly)."""
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        if k in skip:
            continue
        x, y = a[k].values, b[k].values
        assert x.shape == y.shape, k
        if x.dtype.kind != "f":
            np.testing.assert_array_equal(x, y, err_msg=k)
            continue
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=k)
        if np.all(np.isnan(x)):
            continue
        scale = np.nanmax(np.abs(x))
        err = np.nanmax(np.abs(x - y))
        assert err <= rtol * scale, (k, err, scale)


# ---------------------------------------------------------------- 1. gradients
def _fd_all(cases):
    """(gradient, central differences) of each (cfg, params, data), in one compiled call."""
    h = 1e-6
    flats, fns = [], []
    for cfg, bp, params, data in cases:
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
        flats.append(flat)
        fns.append(lambda t, cfg=cfg, bp=bp, unravel=unravel, data=data:
                   FAM.loss(cfg, bp, unravel(t), data))

    @jax.jit
    def everything(flats):
        out = []
        for f, th in zip(fns, flats):
            eye = jnp.eye(th.size, dtype=th.dtype) * h
            fd = (jax.vmap(f)(th + eye) - jax.vmap(f)(th - eye)) / (2 * h)
            out.append((f(th), jax.grad(f)(th), fd))
        return out

    return [tuple(np.asarray(a) for a in r) for r in everything(flats)]


def _loss_by_hand(cfg, params, data):
    """The logistic loss of the module docstring's f, in numpy, from the explicit patches."""
    act = {"tanh": np.tanh, "relu_power": lambda z: np.maximum(z, 0) ** 3}[cfg.activation]
    S = data["s"].shape[1]
    sig = data["s"] @ np.eye(S, data["noise"].shape[1])
    z = [x @ params["w"].T + params["b"] for x in (sig, data["noise"])]  # (N, F) each
    h = (act(z[0]) + act(z[1])) * (0.5 if cfg.pooling == "mean" else 1.0)
    m = cfg.width
    j = np.concatenate([np.ones(m), -np.ones(m)]) if cfg.banks == "class" else np.ones(m)
    f = h @ (j * params["v"]) / (m if cfg.divide_by_width else 1)
    return np.mean(np.log1p(np.exp(-data["y"] * f)))


@pytest.mark.parametrize("mode", ["direct", "coefficient"])
def test_loss_gradient_vs_finite_differences(mode):
    """All parameters (w or c, v, b) for class and single banks, sum and mean pooling, with
    bias and smooth activations (relu^3, tanh), on C1's data (the loss reads F only through
    the data in coefficient mode: a single bank of width 2m has C1's 2m filters)."""
    _, data, _ = init_runs(c1(mode))[0]
    rng = np.random.default_rng(0 if mode == "direct" else 1)
    d, F = C1["input_dim"], 2 * C1["width"]
    K = C1["n_train"] + 1
    variants = [("class", "sum", "relu_power"), ("class", "mean", "tanh"),
                ("single", "sum", "tanh"), ("single", "mean", "relu_power")]
    cases, names = [], []
    for banks, pooling, act in variants:
        width = C1["width"] if banks == "class" else F
        full = make(**dict(C1, banks=banks, pooling=pooling, activation=act, width=width,
                           divide_by_width=(pooling == "mean")),
                    **C1_RUNS[0], parameterization=mode)
        cfg = static_part(full)
        params = {"v": rng.normal(size=F), "b": 0.3 * rng.normal(size=F)}
        if mode == "direct":
            params["w"] = rng.normal(size=(F, d)) / math.sqrt(d)
        else:
            params["c"] = 0.2 * rng.normal(size=(F, K))
        cases.append((cfg, run_values(full), params, data))
        names.append((banks, pooling, act))
    for (value, g, fd), name, (cfg, _, params, _) in zip(_fd_all(cases), names, cases):
        if mode == "direct":
            assert float(value) == pytest.approx(_loss_by_hand(cfg, params, data), rel=1e-12)
        np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7 * max(1.0, np.max(np.abs(g))),
                                   err_msg=str(name))
        # every parameter block has a gradient well above the FD error
        sizes = [np.size(params[k]) for k in sorted(params)]  # ravel_pytree: sorted keys
        for k, block in zip(sorted(params), np.split(g, np.cumsum(sizes)[:-1])):
            assert np.max(np.abs(block)) > 1e-3, (name, k)


# ---------------------------------------------------------------- 2. batched == one by one
def test_batched_runs_equal_runs_alone():
    """Runs 0-3 of C2 (different seeds, SNR, kappa, sigma_0 = 0, own output step size, and
    d = 70 / 80 in one padded bucket) trained among 64 equal their runs trained alone."""
    _, ds = trained("c2_coef")
    for i in range(4):
        one = alone(i)
        assert_same(ds.isel(run=[i]), one, rtol=1e-12)
    assert float(np.ptp(ds["train_loss"].isel(step=-1).values[:4])) > 1e-3  # distinct runs


def test_shared_setup_once_per_seed_equals_setup_run_by_run():
    """The engine's split set-up (``setup_shared`` once per distinct seed, data seed, d,
    sigma_p, p and sigma_0; ``setup_run`` per run) gives each run what ``setup`` alone gives:
    runs 0-2 share their shared part (other SNR, other kappa), runs 3-4 have their own."""
    runs = [dict(C2_RUNS[0], snr=x, output_init_scale=k)
            for x, k in ((0.4, 0.1), (0.7, 0.1), (0.4, 0.3))] + [C2_RUNS[1], C2_RUNS[3]]
    cfgs = c2("coefficient", runs)
    assert FAM.shared_fields == pc.SHARED_FIELDS
    cfg = static_part(cfgs[0])
    alone_setup = jax.jit(functools.partial(FAM.setup, cfg))
    for c, (params, data, info) in zip(cfgs, init_runs(cfgs)):
        want = jax.tree_util.tree_map(np.asarray, alone_setup(run_values(c)))
        for got, ref in zip((params, data, info), want):
            assert set(got) == set(ref)
            for k in ref:
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-13, atol=1e-13, err_msg=k)
    a, b = init_runs(cfgs)[:2]
    np.testing.assert_array_equal(a[1]["noise_q_test"], b[1]["noise_q_test"])
    assert not np.array_equal(a[1]["s"], b[1]["s"])


# ---------------------------------------------------------------- 3. coefficient == direct
SKIP_MODE = ("coefficient_mode",)


@pytest.mark.parametrize("which", ["c1", "c2"])
def test_coefficient_mode_equals_direct_mode(which):
    """C1: linear, isotropic, projected, bias + PyTorch init + frozen output, d = 50 padded
    to 64. C2: XOR, orthogonal, explicit, zero initial filters (run 1), sign init, own output
    step size, d = 70 padded to 128. Every recorded variable within 1e-12 of its max (the
    tolerance docs/patch_cnn.md states)."""
    if which == "c1":
        (_, direct), (cfgs, coef) = trained("c1_direct"), trained("c1_coef")
    else:
        (_, direct), (cfgs, coef) = trained("c2_direct"), trained("c2_coef")
        coef = coef.isel(run=[0, 1, 2])
    assert pc.padded_dim(cfgs[0]) == (64 if which == "c1" else 128)
    assert static_part(cfgs[0]).input_dim == pc.padded_dim(cfgs[0])
    assert coef["coefficient_mode"].values.all() and not direct["coefficient_mode"].values.any()
    for name in ("margin_sample", "noise_coeff", "signal_coeff", "output_weight",
                 "balance_filter", "test_error"):
        assert name in coef
    assert_same(direct, coef, rtol=1e-12, skip=SKIP_MODE)
    # the runs did train (not a trivially constant trajectory)
    loss = direct["train_loss"].values
    assert np.all(loss[:, -1] < 0.9 * loss[:, 0]) if which == "c1" else np.all(
        loss[[0, 2], -1] < 0.9 * loss[[0, 2], 0])
    if which == "c2":  # zero initial filters (leaky relu): they move off zero
        wn = direct["weight_norm_filter"].isel(run=1).values
        assert np.all(wn[0] == 0.0) and np.all(wn[-1] > 0)


def test_auto_parameterization_picks_coefficient_iff_basis_smaller_than_d():
    _, t = trained("t")  # n + 1 = 50 = d: direct
    assert not t["coefficient_mode"].values.any()
    _, p = trained("c2_projected")  # n + 2 = 7 < 70: coefficient
    assert p["coefficient_mode"].values.all()
    for signal, S in (("linear", 1), ("xor", 2)):
        for n, d in ((6, 50), (20, 200), (3, 5)):
            for dd in (n + S - 1, n + S, n + S + 1, d):
                if dd < 2:
                    continue
                cfg = make(parameterization="auto", signal=signal, n_train=n, input_dim=dd)
                assert pc.coefficient_mode(cfg) == (n + S < dd), (signal, n, dd)
                assert pc.basis_size(cfg) == n + S
    # adam: never the coefficient mode
    assert not pc.coefficient_mode(make(parameterization="auto", optimizer="adam",
                                        n_train=5, input_dim=100))


# ---------------------------------------------------------------- 4. padding
def test_padding_buckets_and_padded_runs():
    for d, want in ((3, 64), (50, 64), (64, 64), (65, 128), (70, 128), (80, 128), (100, 128),
                    (128, 128), (129, 256), (1000, 1024), (4096, 4096), (4097, 5120),
                    (6000, 6144), (7000, 7168), (7169, 8192), (100_000, 114_688)):
        cfg = make(input_dim=d, n_train=1, parameterization="coefficient")
        assert pc.padded_dim(cfg) == want, d
        assert static_part(cfg).input_dim == want
        assert d <= want <= (max(64, 2 * d - 1) if d <= 4096 else 1.25 * d)
    assert pc.padded_dim(make(input_dim=70, n_train=5, parameterization="direct")) == 70
    # C2's runs at d = 70 and d = 80 share the bucket 128 and one program
    cfgs, ds = trained("c2_coef")
    assert static_part(cfgs[0]) == static_part(cfgs[3])
    assert cfgs[3].input_dim == 80 and cfgs[0].input_dim == 70
    # the true d is the run's own: |mu| = snr sigma sqrt(d) with d = 70 and 80
    for i in (0, 3):
        assert float(ds["effective_signal_norm"][i]) == pytest.approx(
            C2_RUNS[i]["snr"] * 0.8 * math.sqrt(C2_RUNS[i]["input_dim"]), rel=1e-15)
    # padded (coefficient, d = 70 in 128; C1: 50 in 64) == direct is test 3; here: run 3
    # (d = 80) and run 0 (d = 70, padded) trained together equal each alone
    for i in (0, 3):
        assert_same(ds.isel(run=[i]), alone(i), rtol=1e-12)


# ---------------------------------------------------------------- 5. data law
def test_noise_orthogonal_or_isotropic():
    cfgs, _ = trained("c2_direct")  # orthogonal, explicit test noise
    for params, data, _ in init_runs(cfgs):
        for key in ("noise", "noise_test"):
            x = data[key]
            assert np.all(x[:, :2] == 0.0), key
            assert np.all(np.abs(x[:, 2:70]) > 0), key
    cfgs, _ = trained("c1_direct")  # isotropic
    for _, data, _ in init_runs(cfgs):
        for key in ("noise", "noise_test"):
            assert np.all(data[key][:, 0] != 0.0), key


def test_snr_and_signal_norm_are_the_same_runs():
    """C2 gives the SNR, its projected twin |mu| = snr sigma sqrt(d): same |mu|, same SNR,
    same training (the test noise differs only)."""
    _, a = trained("c2_coef")
    _, b = trained("c2_projected")
    snr = np.array([r["snr"] for r in C2_RUNS])
    d = np.array([r["input_dim"] for r in C2_RUNS], float)
    np.testing.assert_allclose(a["effective_signal_norm"], snr * 0.8 * np.sqrt(d), rtol=1e-15)
    np.testing.assert_allclose(b["effective_signal_norm"], a["effective_signal_norm"], rtol=1e-15)
    np.testing.assert_allclose(a["effective_snr"], snr, rtol=1e-15)
    np.testing.assert_allclose(b["effective_snr"], snr, rtol=1e-15)
    test_side = ("test_error", "test_error_clean", "coefficient_mode", "trend")
    assert_same(a, b, rtol=1e-12, skip=test_side)


def test_xor_signal_patches():
    cfgs, _ = trained("c2_coef")
    runs = init_runs(cfgs)
    signs = set()
    for cfg, (_, data, info) in zip(cfgs, runs):
        mu = float(info["effective_signal_norm"])
        for sfx in ("", "_test"):
            s, yc = data["s" + sfx], data["y" + sfx + "_clean"]
            np.testing.assert_allclose(np.linalg.norm(s, axis=1), mu, rtol=1e-14)
            np.testing.assert_allclose(np.abs(s), mu / math.sqrt(2), rtol=1e-14)
            # +-(a + b) for yhat = +1, +-(a - b) for yhat = -1
            np.testing.assert_array_equal(np.sign(s[:, 1]), yc * np.sign(s[:, 0]))
            signs.update(np.sign(s[:, 0]).tolist())
    assert signs == {-1.0, 1.0}
    # the explicit patches (direct mode): the signal patch is the vector +-(a +- b)
    cfgs_d, _ = trained("c2_direct")
    cfg = static_part(cfgs_d[0])
    _, data, info = init_runs(cfgs_d)[0]
    x = np.asarray(pc.patches(cfg, data))
    first = data["signal_first"]
    sig = np.where(first[:, None], x[:, 0], x[:, 1])
    noise = np.where(first[:, None], x[:, 1], x[:, 0])
    np.testing.assert_array_equal(noise, data["noise"])
    assert np.all(sig[:, 2:] == 0)
    half = float(info["effective_signal_norm"]) / math.sqrt(2)
    np.testing.assert_allclose(np.abs(sig[:, :2]), half, rtol=1e-14)
    np.testing.assert_array_equal(sig[:, 0] * sig[:, 1] > 0, data["y_clean"] > 0)


def test_xor_cosine_sets_the_angle_between_the_class_vectors():
    """xor_cosine c: the class vectors u = a + b (yhat = +1) and v = a - b (yhat = -1) have
    |u| = |v| = |mu| and cos(u, v) = c; the clean label is +1 iff the patch's two
    coefficients have one sign; signal learning is max |<w, u>| (bank +1), |<w, v>| (-1)."""
    runs = [dict(C2_RUNS[0], xor_cosine=c) for c in (0.0, 0.3, 0.8, 0.99)]
    cfgs = c2("coefficient", runs)
    cfg, rng = static_part(cfgs[0]), np.random.default_rng(4)
    for c, full, (params, data, info) in zip((0.0, 0.3, 0.8, 0.99), cfgs, init_runs(cfgs)):
        mu = float(info["effective_signal_norm"])
        for sfx in ("", "_test"):
            s, yc = data["s" + sfx], data["y" + sfx + "_clean"]
            np.testing.assert_allclose(np.linalg.norm(s, axis=1), mu, rtol=1e-14)
            np.testing.assert_array_equal(s[:, 0] * s[:, 1] > 0, yc > 0)
            unsigned = s * np.sign(s[:, :1])  # +(a + b) or +(a - b)
            for label in (1, -1):
                if (yc == label).any():
                    np.testing.assert_allclose(unsigned[yc == label],
                                               np.broadcast_to(unsigned[yc == label][0],
                                                               unsigned[yc == label].shape))
        u, v = unsigned[yc > 0][0], unsigned[yc < 0][0]  # from the 200 test samples
        assert u @ v / mu ** 2 == pytest.approx(c, abs=1e-14)
        a, b = math.sqrt((1 + c) / 2) * mu, math.sqrt((1 - c) / 2) * mu
        np.testing.assert_allclose(np.abs(u), [a, b], rtol=1e-14)
        q = dict(params, c=rng.normal(size=params["c"].shape))
        obs = pc.observe(cfg, run_values(full), jax.tree_util.tree_map(jnp.asarray, q),
                         jax.tree_util.tree_map(jnp.asarray, data))
        w_e = data["w0_e"] + q["c"] @ data["e_q"]  # <w_f, e_1>, <w_f, e_2>
        vote = np.sign(q["v"])  # single signed bank: a filter votes for sign(v)
        assert (vote > 0).any() and (vote < 0).any()
        want = [np.max(np.abs(w_e[vote > 0] @ np.array([a, b]))),
                np.max(np.abs(w_e[vote < 0] @ np.array([a, -b])))]
        np.testing.assert_allclose(obs["signal_learning"], want, rtol=1e-12)
    with pytest.raises(ConfigError, match="xor_cosine"):
        make(signal="xor", xor_cosine=1.0)


def test_label_flips_within_binomial_bounds():
    """p = 0.1 on train and test labels (C2: 64 x 5 train, 64 x 200 test; T: 32 x 49 and
    32 x 100), within 4 binomial standard deviations; clean labels balanced; p = 0: none."""
    draws = {"flip": [], "flip_test": [], "plus": [], "plus_test": []}
    for name in ("c2_coef", "t"):
        cfgs, _ = trained(name)
        for cfg, (_, data, _) in zip(cfgs, init_runs(cfgs)):
            for sfx in ("", "_test"):
                y, yc = data["y" + sfx], data["y" + sfx + "_clean"]
                assert set(np.unique(np.concatenate([y, yc]))) <= {-1.0, 1.0}
                draws["plus" + sfx].append(yc > 0)
                if cfg.label_noise == 0.0:
                    np.testing.assert_array_equal(y, yc)
                else:
                    assert cfg.label_noise == 0.1
                    draws["flip" + sfx].append(y != yc)
    for key, p in (("flip", 0.1), ("flip_test", 0.1), ("plus", 0.5), ("plus_test", 0.5)):
        x = np.concatenate(draws[key])
        assert x.size > 1500
        assert abs(x.mean() - p) < 4 * math.sqrt(p * (1 - p) / x.size), (key, x.mean(), x.size)


def test_first_n_samples_do_not_depend_on_n_and_patch_order_does_not_matter():
    """T has C1's data law with n = 49 (and the signal always first): its first 6 samples
    are C1's; the loss does not see the patch order, and predict on explicit patches equals
    the fast path."""
    c1cfgs, _ = trained("c1_direct")
    tcfgs, _ = trained("t")
    c1runs, truns = init_runs(c1cfgs), init_runs(tcfgs)[:2]
    cfg, bp = static_part(c1cfgs[0]), run_values(c1cfgs[0])
    rng = np.random.default_rng(3)
    for (p1, d1, _), (_, dt, _) in zip(c1runs, truns):
        n = C1["n_train"]
        for key in ("y", "y_clean", "s", "noise"):
            np.testing.assert_array_equal(dt[key][:n], d1[key], err_msg=key)
        for key in ("y_test", "y_test_clean", "s_test"):
            np.testing.assert_array_equal(dt[key], d1[key], err_msg=key)
        assert np.all(dt["signal_first"]) and np.all(dt["signal_first_test"])
        assert d1["signal_first"].any() or d1["signal_first_test"].any()
        assert not d1["signal_first_test"].all()
        # C1's data with T's patch order: the same loss, exactly
        reordered = dict(d1, signal_first=dt["signal_first"][:n])
        params = dict(p1, w=p1["w"] + rng.normal(size=p1["w"].shape) * 0.3,
                      v=rng.normal(size=p1["v"].shape))
        assert float(FAM.loss(cfg, bp, params, d1)) == float(FAM.loss(cfg, bp, params, reordered))
        # predict on the explicit patches equals the fast path, both orders, train and test
        for data in (d1, reordered):
            for test in (False, True):
                sfx = "_test" if test else ""
                x = pc.patches(cfg, data, test=test)
                assert x.shape == (len(data["y" + sfx]), 2, C1["input_dim"])
                m = np.asarray(pc.margins(cfg, bp, params, data, test=test))
                f = np.asarray(FAM.predict(cfg, params, x))
                np.testing.assert_allclose(data["y" + sfx] * f, m, rtol=1e-12,
                                           atol=1e-12 * np.max(np.abs(m)))
                assert np.ptp(m) > 0.1
    with pytest.raises(ValueError):
        FAM.predict(cfg, {"c": np.zeros((4, 7)), "v": np.zeros(4)}, x)


# ---------------------------------------------------------------- 6. balance law
def _gd_by_hand(cfg, bp, params, data, steps):
    """Plain GD with the family's step sizes; per step: params, gradients."""
    grad = jax.grad(lambda q: FAM.loss(cfg, bp, q, data))
    lr = FAM.step_sizes(cfg, bp, params)

    def body(q, _):
        g = grad(q)
        return jax.tree_util.tree_map(lambda p, g, e: p - e * g, q, g, lr), (q, g)

    return jax.lax.scan(body, params, None, length=steps)


def _law(params, grads, eta_w, eta_v):
    """(change of |w_f|^2 + b_f^2 - v_f^2 in one step, eta_w^2 (|g_w|^2 + g_b^2) -
    eta_v^2 g_v^2, scale); b = 0 without a bias."""
    w, v = params["w"], params["v"]
    gw, gv = grads["w"], grads["v"]
    b, gb = params.get("b", np.zeros_like(v)), grads.get("b", np.zeros_like(v))
    w1, v1, b1 = w - eta_w * gw, v - eta_v * gv, b - eta_w * gb
    change = (np.sum(w1 * w1, -1) + b1 * b1 - v1 * v1) - (np.sum(w * w, -1) + b * b - v * v)
    law = eta_w ** 2 * (np.sum(gw * gw, -1) + gb * gb) - eta_v ** 2 * gv * gv
    return change, law, np.sum(w * w, -1) + b * b + v * v


def test_balance_law_along_the_run_and_single_steps():
    cfgs, ds = trained("c2_direct")
    cfg = static_part(cfgs[0])
    steps = ds["step"].values
    runs = init_runs(cfgs)
    gd = jax.jit(functools.partial(_gd_by_hand, cfg, steps=int(steps[-1])))
    for i, (params, data, _) in enumerate(runs):
        bp = run_values(cfgs[i])
        final, (qs, gs) = gd(bp, params, data)
        qs = jax.tree_util.tree_map(np.asarray, qs)
        gs = jax.tree_util.tree_map(np.asarray, gs)
        traj = jax.tree_util.tree_map(lambda a, b: np.concatenate([a, np.asarray(b)[None]]),
                                      qs, final)
        # the engine's records at the checkpoints are the hand trajectory's
        w, v = traj["w"][steps], traj["v"][steps]
        np.testing.assert_allclose(ds["output_weight"].isel(run=i), v, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(ds["weight_norm_filter"].isel(run=i),
                                   np.linalg.norm(w, axis=-1), rtol=1e-10, atol=1e-14)
        bal = np.sum(w * w, -1) - v * v
        np.testing.assert_allclose(ds["balance_filter"].isel(run=i), bal, rtol=0,
                                   atol=1e-10 * np.max(np.abs(bal)))
        eta = float(bp["learning_rate"])
        eta_v = float(bp["output_learning_rate"])
        change, law, size = _law(qs, gs, eta, eta_v)
        if eta_v == eta:  # leaky relu, no bias: exact per step up to rounding
            assert np.max(np.abs(change - law)) <= 1e-12 * np.max(size)
            assert np.max(np.abs(law)) > 1e-6 * np.max(size)
            # summed over the steps between checkpoints, as recorded
            csum = np.concatenate([np.zeros((1, law.shape[1])), np.cumsum(law, 0)])[steps]
            rec = ds["balance_filter"].isel(run=i).values
            np.testing.assert_allclose(rec - rec[0], csum, rtol=0, atol=1e-10 * np.max(size))
        else:  # 7: the output layer's own step size: v moves by 0.5 eta g_v
            assert eta_v == 0.5 * eta
            v1 = ds["output_weight"].isel(run=i, step=1).values
            assert steps[1] == 1
            np.testing.assert_allclose(v1, params["v"] - 0.5 * eta * gs["v"][0], rtol=1e-13)
            assert np.max(np.abs(v1 - params["v"])) > 1e-6
            np.testing.assert_allclose(traj["w"][1], params["w"] - eta * gs["w"][0], rtol=1e-13)
        # coefficients: w - w(0) = alpha (e_1, e_2, xi_1..n), recorded as the theory's
        alpha = np.asarray(pc.coefficients(cfg, final, jax.tree_util.tree_map(jnp.asarray, data)))
        basis = np.concatenate([np.eye(2, cfg.input_dim), data["noise"]])
        np.testing.assert_allclose(alpha @ basis, final["w"] - data["w0"], rtol=0,
                                   atol=1e-10 * np.max(np.abs(final["w"])))
        np.testing.assert_allclose(ds["noise_coeff"].isel(run=i, step=-1),
                                   alpha[:, 2:] * np.sum(data["noise"] ** 2, 1), rtol=1e-9)
    # relu without bias: the same identity; relu^3: clearly not (O(1) random parameters)
    params, data, _ = runs[0]
    rng = np.random.default_rng(7)
    q = {"w": rng.normal(size=params["w"].shape) / math.sqrt(cfg.input_dim),
         "v": rng.normal(size=params["v"].shape)}
    defects = {}
    for act in ("relu", "relu_power"):
        full = make(**dict(C2, activation=act), **C2_RUNS[0], parameterization="direct")
        c, bp = static_part(full), run_values(full)
        g = jax.tree_util.tree_map(np.asarray, jax.grad(lambda p: FAM.loss(c, bp, p, data))(q))
        change, law, size = _law(q, g, 0.5, 0.5)
        assert np.max(np.abs(law)) > 1e-4 * np.max(size)
        defects[act] = np.max(np.abs(change - law)) / np.max(size)
    assert defects["relu"] <= 1e-13
    assert defects["relu_power"] > 1e-4
    # relu with a bias: |w|^2 + b^2 - v^2 changes by eta^2 (|g_w|^2 + g_b^2 - g_v^2), and
    # is what ``balance`` records; without b^2 the identity fails
    full = make(**dict(C2, activation="relu", bias=True), **C2_RUNS[0], parameterization="direct")
    c, bp = static_part(full), run_values(full)
    qb = dict(q, b=0.5 * rng.normal(size=params["v"].shape))
    g = jax.tree_util.tree_map(np.asarray, jax.grad(lambda p: FAM.loss(c, bp, p, data))(qb))
    assert np.max(np.abs(g["b"])) > 1e-3
    change, law, size = _law(qb, g, 0.5, 0.5)
    assert np.max(np.abs(law)) > 1e-4 * np.max(size)
    assert np.max(np.abs(change - law)) <= 1e-13 * np.max(size)
    change_nob, law_nob, _ = _law(q, {"w": g["w"], "v": g["v"]}, 0.5, 0.5)
    assert np.max(np.abs(change_nob - law_nob)) > 1e-4 * np.max(size)
    obs = pc.observe(c, bp, jax.tree_util.tree_map(jnp.asarray, qb),
                     jax.tree_util.tree_map(jnp.asarray, data))
    want = np.sum(qb["w"] ** 2, 1) + qb["b"] ** 2 - qb["v"] ** 2
    np.testing.assert_allclose(obs["balance_filter"], want, rtol=1e-13)
    assert float(obs["balance"]) == pytest.approx(np.mean(want), rel=1e-12)


def test_bank_summaries_follow_the_initial_vote_and_sign_flips_count_changes():
    """Default bank_grouping = "initial": |W_j|, |v_j| are over the filters that voted j at
    init, at every checkpoint, even after their v changed sign; sign_flips is the fraction
    whose vote changed. "vote" regroups by the current vote (same runs, same weights)."""
    # class banks, constant small kappa, both layers trained: some v cross zero
    flips = dict(input_dim=60, n_train=8, n_test=50, width=4, snr=0.3, label_noise=0.1,
                 output_init_scale=1e-3, learning_rate=0.5, max_steps=200, n_checkpoints=6,
                 record_filters=True)
    ds = train_group(FAM, [make(**flips, seed=s) for s in range(4)], progress=False)
    j = np.array([1.0] * 4 + [-1.0] * 4)
    v, wn = ds["output_weight"].values, ds["weight_norm_filter"].values  # (run, step, F)
    vote, vote0 = j * np.sign(v), j * np.sign(v[:, :1])
    np.testing.assert_allclose(ds["sign_flips"], np.mean(vote != vote0, axis=-1), rtol=0, atol=0)
    assert ds["sign_flips"].values.max() > 0, "no run changed a sign: the test shows nothing"
    for b, jb in enumerate((1, -1)):
        want = np.sqrt(np.sum(np.where(vote0 == jb, wn ** 2, 0.0), axis=-1))
        np.testing.assert_allclose(ds["weight_norm"].isel(bank=b), want, rtol=1e-12)
    regrouped = train_group(FAM, [make(**flips, seed=s, bank_grouping="vote") for s in range(4)],
                            progress=False)
    for k in ("output_weight", "weight_norm_filter", "sign_flips", "test_error"):
        np.testing.assert_array_equal(regrouped[k], ds[k])
    assert not np.allclose(regrouped["weight_norm"], ds["weight_norm"])
    for b, jb in enumerate((1, -1)):
        want = np.sqrt(np.sum(np.where(vote == jb, wn ** 2, 0.0), axis=-1))
        np.testing.assert_allclose(regrouped["weight_norm"].isel(bank=b), want, rtol=1e-12)


# ---------------------------------------------------------------- 7. frozen output
def test_frozen_output_layer_stays_at_its_init():
    for name in ("c1_direct", "c1_coef"):
        cfgs, ds = trained(name)
        v = ds["output_weight"].values
        assert np.all(v == 1.0 / C1["width"])  # constant, default kappa = 1/width
        assert not np.allclose(ds["weight_norm_filter"].values[:, 0],
                               ds["weight_norm_filter"].values[:, -1])
    # ... although its gradient is not zero
    cfgs, _ = trained("c1_direct")
    params, data, _ = init_runs(cfgs)[0]
    cfg = static_part(cfgs[0])
    g = jax.grad(lambda p: FAM.loss(cfg, run_values(cfgs[0]), p, data))(params)
    assert np.max(np.abs(np.asarray(g["v"]))) > 1e-4
    lr = FAM.step_sizes(cfg, run_values(cfgs[0]), params)
    assert float(lr["v"]) == 0.0 and float(lr["w"]) == C1["learning_rate"]


# ---------------------------------------------------------------- 8. projected test noise
def test_projected_test_noise_has_the_law_of_explicit_noise():
    """64 runs of C2 (explicit test noise) and their twins (projected): the same networks at
    every step, so the paired test-error differences are pure test-sampling noise."""
    _, a = trained("c2_coef")
    _, b = trained("c2_projected")
    for name in ("test_error", "test_error_clean"):
        ea, eb = a[name].isel(step=-1).values, b[name].isel(step=-1).values
        assert 0.05 < ea.mean() < 0.6 and 0.05 < eb.mean() < 0.6, (ea.mean(), eb.mean())
        diff = eb - ea
        se = diff.std(ddof=1) / math.sqrt(diff.size)
        assert se > 0  # different test noise draws
        assert abs(diff.mean()) < 4 * se, (name, diff.mean(), se)
        # and the unpaired comparison too (a few standard errors)
        se2 = math.hypot(ea.std(ddof=1), eb.std(ddof=1)) / math.sqrt(ea.size)
        assert abs(ea.mean() - eb.mean()) < 4 * se2


def _standard_squares(cfgs, runs):
    """Coefficient mode's test noise seen by the network: Y = Q_b xi_test (K, N) and
    W = <w(0)_f, xi_test> (F, N). With orthogonal noise xi = sigma P g: e_q^T Y = 0, Y has
    covariance sigma^2 (I - e_q e_q^T), and W = a Y + R with a = Q_b P w(0), R independent
    of Y of variance sigma^2 (|P w(0)|^2 - |a|^2). Returns the standardized squares of Y and
    of R, and the standardized products R Y (mean 0)."""
    ys, rs, cross = [], [], []
    for cfg, (_, data, _) in zip(cfgs, runs):
        sigma = cfg.noise_std
        y, w, e = data["noise_q_test"], data["w0_noise_test"], data["e_q"]
        np.testing.assert_allclose(e.T @ e, np.eye(e.shape[1]), atol=1e-13)
        assert np.max(np.abs(e.T @ y)) < 1e-10 * sigma  # no signal-direction component
        yp = y - e @ (e.T @ y)
        ys.append((yp ** 2).sum(0) / (sigma ** 2 * (y.shape[0] - e.shape[1])))
        if cfg.hidden_init_scale == 0.0:
            assert np.all(w == 0.0)
            continue
        a = data["w0_q"] - data["w0_e"] @ e.T  # (F, K)
        var = sigma ** 2 * (data["w0_sq"] - (data["w0_e"] ** 2).sum(1) - (a ** 2).sum(1))
        assert np.all(var > 1e-3 * sigma ** 2 * data["w0_sq"])
        r = (w - a @ yp) / np.sqrt(var)[:, None]
        rs.append((r ** 2).ravel())
        cross.append((r[:, None, :] * yp[None, :, :] / sigma).ravel())
    return np.concatenate(ys), np.concatenate(rs), np.concatenate(cross)


@pytest.mark.parametrize("name", ["c2_coef", "c2_projected"])
def test_test_noise_inner_products_have_the_exact_law(name):
    """The joint law of the test noise's inner products with the span (basis and w(0)),
    explicit (C2) and projected (its twin): standardized squares average 1 within 4 standard
    errors (64 runs x 200 samples)."""
    cfgs, _ = trained(name)
    ys, rs, cross = _standard_squares(cfgs, init_runs(cfgs))
    # ys: chi^2_{K-S} / (K-S) per sample, variance 2 / (K-S)
    k = C2["n_train"]
    assert abs(ys.mean() - 1) < 4 * math.sqrt(2 / k / ys.size), ys.mean()
    assert abs(rs.mean() - 1) < 4 * math.sqrt(2 / rs.size), rs.mean()
    assert abs(cross.mean()) < 4 / math.sqrt(cross.size)
    # E (R Y_k)^2 / sigma^2 = 1 - |e_q row k|^2: (K - S) / K on average over k
    assert abs(np.mean(cross ** 2) - k / (k + 2)) < 0.03


def test_projected_test_noise_direct_mode_isotropic():
    """C1 (direct, isotropic, projected): the explicit test vectors' inner products with the
    unit rows of the span (e_1, xi_i, w(0)) are N(0, sigma^2)."""
    cfgs, _ = trained("c1_direct")
    z, z_signal = [], []
    for cfg, (_, data, _) in zip(cfgs, init_runs(cfgs)):
        rows = np.concatenate([np.eye(1, cfg.input_dim), data["noise"], data["w0"]])
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        ip = data["noise_test"] @ rows.T / cfg.noise_std  # (n_test, K + F)
        z.append(ip.ravel())
        z_signal.append(ip[:, 0])  # isotropic: the signal direction too
    for x in (np.concatenate(z), np.concatenate(z_signal)):
        assert abs(np.mean(x ** 2) - 1) < 4 * math.sqrt(2 / x.size)
        assert abs(x.mean()) < 4 / math.sqrt(x.size)


# ---------------------------------------------------------------- 9. output init
def test_output_init_options():
    # constant with the default kappa = 1/width: C1 (test 7); sign: +-kappa of each run
    _, ds = trained("c2_coef")
    v0 = ds["output_weight"].isel(step=0).values
    kappa = np.array([r["output_init_scale"] for r in C2_RUNS])
    np.testing.assert_array_equal(np.abs(v0), np.broadcast_to(kappa[:, None], v0.shape))
    assert (v0 > 0).any() and (v0 < 0).any()
    # gaussian: N(0, kappa^2) over 32 runs x 16 filters
    _, t = trained("t")
    z = t["output_weight"].isel(step=0).values.ravel() / 0.3
    n = z.size
    assert n == 32 * 16 and len(np.unique(np.abs(z))) == n
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    # default kappa 1/width in the config's setup (constant and sign)
    for init in ("constant", "sign"):
        cfg = make(input_dim=50, n_train=6, n_test=100, width=2, output_init=init)
        assert cfg.output_init_scale is None
    _, c1ds = trained("c1_direct")
    np.testing.assert_array_equal(c1ds["output_weight"].isel(step=0), 1 / C1["width"])


# ---------------------------------------------------------------- 10. bad input
@pytest.mark.parametrize("settings,key", [
    (dict(snr=1.0, signal_norm=2.0), "signal_norm"),
    (dict(label_noise=0.7), "label_noise"),
    (dict(signal="xor", input_dim=1), "input_dim"),
    (dict(parameterization="coefficient", optimizer="adam"), "optimizer"),
    (dict(parameterization="coefficient", input_dim=7, n_train=6), "input_dim"),
    (dict(parameterization="coefficient", input_dim=6, n_train=6), "input_dim"),
    (dict(parameterization="coefficient", signal="xor", input_dim=8, n_train=6), "input_dim"),
    (dict(record_coefficients=True, input_dim=7, n_train=6), "input_dim"),
    (dict(width=-1), "width"),
    (dict(activation="relu_cube"), "relu_cube"),
])
def test_bad_input_is_one_line_naming_the_key(settings, key):
    base = dict(input_dim=50, n_train=6)
    with pytest.raises(ConfigError) as err:
        make(**{**base, **settings})
    msg = str(err.value)
    assert "\n" not in msg and key in msg, msg


def test_good_edge_inputs_are_accepted():
    make(parameterization="coefficient", input_dim=8, n_train=6)  # K = 7 < 8
    make(parameterization="coefficient", signal="xor", input_dim=9, n_train=6)
    make(signal="xor", input_dim=2, n_train=6)
    make(label_noise=0.5, snr=1.0)


# ---------------------------------------------------------------- 11. linear algebra
def test_cholesky_psd_and_inverse_lower():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 7))
    full = a @ a.T
    c = rng.normal(size=(6, 4))
    c = np.concatenate([c[:3], np.zeros((1, 4)), c[3:], np.zeros((1, 4))])
    zero_rows = c @ c.T  # rank 4, two exactly zero rows and columns (zero initial filters)
    chol, inv = jax.jit(linalg.cholesky_psd), jax.jit(linalg.inverse_lower)
    for g, rank in ((full, 7), (zero_rows, 4)):
        low = np.asarray(chol(jnp.asarray(g)))
        assert np.all(np.triu(low, 1) == 0)
        np.testing.assert_allclose(low @ low.T, g, rtol=0, atol=1e-12 * np.max(np.abs(g)))
        pivots = np.diag(low) != 0
        assert pivots.sum() == rank
        assert np.all(low[:, ~pivots] == 0)
        li = np.asarray(inv(jnp.asarray(low)))
        if rank == len(g):
            np.testing.assert_allclose(li @ low, np.eye(len(g)), rtol=0, atol=1e-12)
            np.testing.assert_allclose(low @ li, np.eye(len(g)), rtol=0, atol=1e-12)
        else:  # L^-1 b solves L x = b for b in L's range; zero pivots: zero rows and columns
            assert np.all(li[~pivots] == 0) and np.all(li[:, ~pivots] == 0)
            rhs = low @ rng.normal(size=len(g))
            np.testing.assert_allclose(low @ (li @ rhs), rhs, rtol=0,
                                       atol=1e-12 * np.max(np.abs(rhs)))
    tri = np.tril(rng.normal(size=(5, 5))) + 3 * np.eye(5)
    np.testing.assert_allclose(np.asarray(inv(jnp.asarray(tri))) @ tri, np.eye(5), rtol=0,
                               atol=1e-13)


def test_cholesky_psd_dependent_rows_give_zero_pivots():
    """Rank-deficient Gram matrices as setup() builds them (unit rows, more rows than
    dimensions: K + F > d) and a random rank-3 one: as many nonzero pivots as the rank."""
    rng = np.random.default_rng(5)
    b = rng.normal(size=(7, 3))
    cases = [(b @ b.T, 3)]
    for _ in range(20):
        rows = rng.normal(size=(12, 8))
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        cases.append((rows @ rows.T, 8))
    chol = jax.jit(linalg.cholesky_psd)
    extra = []
    for g, rank in cases:
        low = np.asarray(chol(jnp.asarray(g)))
        # rounding in L L^T grows like eps / (the smallest pivot kept); random 12 x 8 rows
        # keep pivots down to ~3e-3, hence 1e-10 rather than 1e-12
        np.testing.assert_allclose(low @ low.T, g, rtol=0, atol=1e-10 * np.max(np.abs(g)))
        extra.append(int(np.sum(np.diag(low) != 0)) - rank)
    assert extra == [0] * len(cases), extra
