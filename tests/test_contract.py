"""The family contract, checked for EVERY registered family: the installed ones and a toy
family registered here (a new family gets these tests for free: it only needs its
``example`` settings). Each family trains a few small groups; the whole file takes about a
minute on two cores."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer import families, keys, theory
from twolayer.config import ConfigError, Training, batched, make_config, static, static_part
from twolayer.family import Family, Variable
from twolayer.train import run_values, train_group

from conftest import States


# ---------------------------------------------------------------- a family registered here
@dataclasses.dataclass(frozen=True, kw_only=True)
class ToyConfig(Training):
    """A two-layer linear network f(x) = a (w . x) fitting y = x_1 (least squares)."""

    family: str = static("toy_regression", choices=("toy_regression",))
    input_dim: int = static(3, minimum=1)
    n_train: int = static(5, minimum=1)
    n_test: int = static(20, minimum=1)
    init_scale: float = batched(0.5, minimum=0.0)
    learning_rate: float = batched(0.05, section="train", positive=True)


def _toy_setup(cfg, bp):
    dtype = jnp.dtype(cfg.dtype)
    draw = lambda k: jax.random.normal(k, (cfg.input_dim,), dtype)  # noqa: E731
    x, xt = keys.per_sample(draw, [(keys.stream(bp["data_seed"], "train"), cfg.n_train),
                                   (keys.stream(bp["data_seed"], "test"), cfg.n_test)])
    z = jax.random.normal(keys.stream(bp["seed"], "init"), (cfg.input_dim + 1,), dtype)
    params = {"a": z[0] * bp["init_scale"], "w": z[1:] * bp["init_scale"]}
    return params, {"x": x, "y": x[:, 0], "x_test": xt, "y_test": xt[:, 0]}, {}


def _toy_predict(cfg, params, x):
    return params["a"] * (x @ params["w"])


def _toy_residuals(cfg, bp, params, data):
    return _toy_predict(cfg, params, data["x"]) - data["y"]


def _toy_loss(cfg, bp, params, data):
    r = _toy_residuals(cfg, bp, params, data)
    return 0.5 * jnp.mean(r * r)


def _toy_observe(cfg, bp, params, data):
    dev = _toy_predict(cfg, params, data["x_test"]) - data["y_test"]
    return {"train_loss": _toy_loss(cfg, bp, params, data), "test_error": jnp.mean(dev * dev),
            "w": params["w"]}


TOY = Family(
    name="toy_regression", Config=ToyConfig, setup=_toy_setup, loss=_toy_loss,
    observe=_toy_observe, finalize=lambda cfg, bp, params, data: {}, predict=_toy_predict,
    residuals=_toy_residuals,
    variables=(Variable("train_loss", "training loss"), Variable("test_error", "test error"),
               Variable("w", "input weights", ("input",))),
    example=dict(input_dim=3, n_train=5, max_steps=50, n_checkpoints=5))


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    before = dict(families._REGISTERED)
    twolayer.register_family(TOY)
    yield
    families._REGISTERED.clear()
    families._REGISTERED.update(before)


FAMILIES = sorted({*families.names(), "toy_regression"})


def family(name) -> Family:
    return TOY if name == "toy_regression" else families.get(name)


def configs(name, n=3, **extra):
    fam = family(name)
    return [make_config(fam.Config, {**fam.example, "seed": s, "data_seed": 10 + s, **extra})
            for s in range(n)]


@functools.lru_cache(maxsize=None)
def batch(name):
    """Three runs of the family's example, trained together."""
    return train_group(family(name), configs(name), progress=False)


# ---------------------------------------------------------------- registration
def test_installed_families_pass_the_static_checks():
    assert {"single_neuron", "patch_cnn"} <= set(families.names())
    for name in FAMILIES:
        assert family(name).check() is family(name)


def test_registration_refuses_broken_families():
    fam = families.get("single_neuron")
    no_loss = [v for v in fam.variables if v.name != "test_error"]
    with pytest.raises(ConfigError, match="observe must record 'test_error'"):
        fam.replace(variables=tuple(no_loss))
    with pytest.raises(ConfigError, match="declared twice"):
        fam.replace(variables=fam.variables + (Variable("a", "again"),))
    with pytest.raises(ConfigError, match="kind must be one of"):
        fam.replace(variables=fam.variables + (Variable("x1", "x", kind="sometimes"),))
    with pytest.raises(ConfigError, match="'setup' must be a function"):
        fam.replace(setup=None)
    with pytest.raises(ConfigError, match="example: 'nope' is not a field"):
        fam.replace(example={"nope": 1})
    with pytest.raises(ConfigError, match="derived from twolayer.config.Training"):
        fam.replace(Config=dict)


# ---------------------------------------------------------------- every family
@pytest.mark.parametrize("name", FAMILIES)
def test_outputs_have_the_declared_dims_and_descriptions(name):
    fam, ds = family(name), batch(name)
    clock = "time" if "time" in ds["train_loss"].dims else "step"
    for v in fam.variables:
        if v.name not in ds:
            assert v.optional, f"{name}: '{v.name}' is declared, not optional, and missing"
            continue
        lead = ("run", clock) if v.kind == "observe" else ("run",)
        assert ds[v.name].dims == lead + v.dims, (name, v.name)
        assert ds[v.name].attrs["long_name"] == v.long_name
    for k in ds.data_vars:  # the engine's own variables are described too
        assert ds[k].attrs.get("long_name"), (name, k)
    for k in ("train_loss", "test_error"):
        assert np.isfinite(ds[k].values).all(), (name, k)
    assert ds["train_loss"].isel({clock: -1}).max() < ds["train_loss"].isel({clock: 0}).max()


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_equals_one_by_one(name):
    together = batch(name)
    for i, cfg in enumerate(configs(name)):
        alone = train_group(family(name), [cfg], progress=False).isel(run=0)
        xr.testing.assert_allclose(together.isel(run=i), alone, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_jit_and_vmap_of_the_family_functions(name):
    """setup, loss, observe, finalize under jit(vmap) over runs equal the one-run calls."""
    fam = family(name)
    cfgs = configs(name, 2)
    cfg = static_part(cfgs[0])
    bps = [run_values(c) for c in cfgs]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *bps)

    def one(bp):
        params, data, info = fam.setup(cfg, bp)
        return (fam.loss(cfg, bp, params, data), fam.observe(cfg, bp, params, data),
                fam.finalize(cfg, bp, params, data), info)

    many = jax.jit(jax.vmap(one))(stacked)
    for i, bp in enumerate(bps):
        single = one(bp)
        jax.tree_util.tree_map(
            lambda m, s: np.testing.assert_allclose(np.asarray(m)[i], np.asarray(s),
                                                    rtol=1e-12, atol=0), many, single)


@pytest.mark.parametrize("name", FAMILIES)
def test_first_samples_do_not_depend_on_the_sample_size(name):
    fam = family(name)
    if fam.sample_size is None:
        pytest.skip("no sample size")
    base = configs(name, 1)[0]
    n = getattr(base, fam.sample_size)
    more = dataclasses.replace(base, **{fam.sample_size: n + 3})
    _, d1, _ = fam.setup(static_part(base), run_values(base))
    _, d2, _ = fam.setup(static_part(more), run_values(more))
    if fam.train_samples is not None:
        d1 = fam.train_samples(static_part(base), run_values(base), d1)
        d2 = fam.train_samples(static_part(more), run_values(more), d2)
    compared = 0
    for key in d1:
        a, b = np.asarray(d1[key]), np.asarray(d2[key])
        if a.ndim and b.ndim and a.shape[0] == n and b.shape[0] == n + 3:
            np.testing.assert_array_equal(b[:n], a, err_msg=f"{name}: data['{key}']")
            compared += 1
    assert compared, f"{name}: no per-sample array in the data"


@pytest.mark.parametrize("name", FAMILIES)
def test_resume_mid_run_gives_the_same_result(name):
    cfgs = configs(name)
    states = States()
    ref = train_group(family(name), cfgs, progress=False, state_file=states)
    assert states.first is not None
    again = train_group(family(name), cfgs, progress=False, state_file=States(states.first))
    xr.testing.assert_identical(again, ref)


@pytest.mark.parametrize("name", FAMILIES)
def test_dtype_is_honoured(name):
    ds = train_group(family(name), configs(name, 1, dtype="float32"), progress=False)
    for k in ("train_loss", "test_error"):
        assert ds[k].dtype == np.float32, (name, k)
    assert batch(name)["train_loss"].dtype == np.float64


@pytest.mark.parametrize("name", FAMILIES)
def test_model_rank_runs_on_the_family(name):
    """theory.model_rank needs only the family's predict (and inputs): at the initial point
    it is a positive integer no larger than the parameter count."""
    fam = family(name)
    cfg = configs(name, 1)[0]
    if "w" not in fam.setup(static_part(cfg), run_values(cfg))[0] and name == "patch_cnn":
        cfg = dataclasses.replace(cfg, parameterization="direct")
    params, _, _ = fam.setup(static_part(cfg), run_values(cfg))
    size = sum(np.size(p) for p in jax.tree_util.tree_leaves(params))
    try:
        rank = theory.model_rank(fam, cfg, params, n_inputs=4 * size + 20)
    except (ValueError, TypeError) as err:  # a family whose predict needs other inputs
        pytest.skip(f"predict on random inputs: {err}")
    assert 0 < rank <= size
