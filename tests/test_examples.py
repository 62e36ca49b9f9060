"""The examples run, and user-supplied activations and multi-neuron targets work."""
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest

import twolayer

from twolayer.families import get as get_family
from twolayer.families.single_neuron import model as sn
from twolayer.families.single_neuron import theory as sn_theory
from twolayer.family import Variable

ROOT = Path(__file__).resolve().parents[1]


def test_multi_neuron_target_sweep_runs_at_small_scale():
    raw = tomllib.loads((ROOT / "examples" / "multi_neuron_target.toml").read_text())
    raw["train"]["max_steps"] = 300
    raw["axes"] = {"width": [3], "n_train": [10, 21], "seed": [0]}
    ds = twolayer.sweep(raw)
    assert ds.sizes["n_train"] == 2 and ds.sizes["neuron"] == 3
    # the loss falls: the three-neuron target is being learned
    loss = ds.train_loss.isel(width=0, seed=0)
    assert (loss.isel(step=-1) < loss.isel(step=0)).all()
    # its targets are what the file says: f*(x) at x = e_3 is 3 tanh(1 or 0.8 or 0.6) sums
    cfg = twolayer.config.make_config(sn.Config, {**raw["base"], "width": 3})
    x = np.zeros((1, 5))
    x[0, 2] = 1.0
    expected = np.tanh(1.0) + np.tanh(0.8) + np.tanh(0.6)
    assert float(sn.target(cfg, x)[0]) == np.float64(expected).item() or np.isclose(
        float(sn.target(cfg, x)[0]), expected, rtol=1e-14)
    assert sn_theory.optimistic_sample_size(5, True, target_width=3) == 21


def test_custom_activation_script():
    env = {**os.environ, "TWOLAYER_PROGRESS": "0"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_activation.py")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "final training loss" in out.stdout


def test_activation_by_import_path_equals_registered():
    import jax.numpy as jnp

    twolayer.register_activation("my_sin", jnp.sin)
    common = dict(width=2, init_scale=1e-3, imbalance=0.5, learning_rate=0.05, max_steps=200,
                  n_checkpoints=10)
    by_name = twolayer.run(activation="my_sin", **common)
    by_path = twolayer.run(activation="jax.numpy:sin", **common)
    np.testing.assert_array_equal(by_name.train_loss.values, by_path.train_loss.values)
    tanh = twolayer.run(activation="tanh", **common)
    assert not np.allclose(tanh.train_loss.values[-1], by_name.train_loss.values[-1])


# ---------------------------------------------------------------- the worked examples
# (docs/examples.md): each script runs at its --small scale in a subprocess, and what it
# prints or writes is checked against an independent computation
ENV = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0"}


def run_example(name, *args, timeout=300):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)],
                         capture_output=True, text=True, env=ENV, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def import_example(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"),
                                                  ROOT / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_np(values, step_axis):
    """numpy: each run's last non-NaN value along step_axis."""
    v = np.moveaxis(np.asarray(values, float), step_axis, -1)
    idx = np.where(np.isfinite(v), np.arange(v.shape[-1]), -1).max(axis=-1)
    return np.take_along_axis(v, idx[..., None], axis=-1)[..., 0]


@pytest.fixture(scope="module")
def custom_sweep_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples") / "custom"
    return folder, run_example("custom_sweep.py", "--small", "--out", folder)


def test_custom_sweep_script_sweeps_draws_and_resumes(custom_sweep_run):
    folder, first = custom_sweep_run
    ds = twolayer.load(folder)
    assert dict(ds.sizes) == {"n_train": 2, "data_seed": 2, "imbalance": 3, "step": 30,
                              "neuron": 2, "input": 1}
    for png in ("error_vs_imbalance.png", "error_vs_n_train.png"):
        path = folder / "figures" / png
        assert path.stat().st_size > 10_000 and f"figure: {path}" in first.stdout
    sizes = sn_theory.sample_sizes(1, True, 2, 1)
    assert ("thresholds: " + ", ".join(f"{k} n = {v}" for k, v in sizes.items())
            in first.stdout)
    # the printed recovered fractions: recomputed from the stored booleans
    rec = ds.recovered.transpose("n_train", ...).values.reshape(2, -1).mean(axis=1)
    for n, r in zip((2, 6), rec):
        assert f"n_train = {n}: recovered fraction {r:.3f}" in first.stdout
    assert rec[0] == 0.0 and rec[1] > 0.0  # none below the optimistic size; some at n = 6
    # a rerun trains nothing: every shard is read back, the files stay as they were
    shards = {p: p.read_bytes() for p in (folder / "shards").glob("*.nc")}
    again = run_example("custom_sweep.py", "--small", "--out", folder)
    assert "shards done before this run: 2/2" in again.stdout
    assert again.stderr.count("done before, skipped") == 2
    assert {p: p.read_bytes() for p in (folder / "shards").glob("*.nc")} == shards
    assert again.stdout.split("figure:")[-1] == first.stdout.split("figure:")[-1]


def test_analyse_sweep_script_matches_numpy(custom_sweep_run):
    folder, _ = custom_sweep_run
    out = run_example("analyse_sweep.py", folder)
    assert "running the sweep" not in out.stdout  # the folder's result was used
    ds = twolayer.load(folder)
    rec = ds.recovered.transpose("n_train", "data_seed", "imbalance").values.astype(float)
    te = ds.test_error.transpose("n_train", "data_seed", "imbalance", "step").values
    err = final_np(te, -1)
    c = ds.imbalance.values
    ends = (c == 0.0) | (c == 1.0)
    rows = {}
    lines = out.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.split()[:2] == ["n_train", "regime"]))
    for line in lines[head + 1:head + 3]:
        n, regime, *vals = line.split()
        rows[int(n)] = (regime, [float(v) for v in vals])
    assert set(rows) == {2, 6}
    for i, n in enumerate(ds.n_train.values):
        regime, (frac, frac_ends, frac_inside, median) = rows[int(n)]
        assert regime == {2: "below-optimistic", 6: "all-perfect"}[int(n)]
        np.testing.assert_allclose(frac, rec[i].mean(), atol=1e-6)
        np.testing.assert_allclose(frac_ends, rec[i][:, ends].mean(), atol=1e-6)
        np.testing.assert_allclose(frac_inside, rec[i][:, ~ends].mean(), atol=1e-6)
        np.testing.assert_allclose(median, np.median(err[i]), rtol=1e-6)
    assert f"regime all-perfect: recovered fraction {rec[1].mean():.6f}" in out.stdout
    assert "no recovery below the optimistic size: holds" in out.stdout
    assert (folder / "figures" / "recovered_vs_n_train.png").stat().st_size > 10_000


def test_add_observable_script_records_target_cosine(tmp_path):
    out = run_example("add_observable.py", "--small", "--out", tmp_path / "cos")
    ds = twolayer.load(tmp_path / "cos")
    assert ds.attrs["family"] == "single_neuron_cosine"
    cos = ds.target_cosine.transpose("data_seed", "imbalance", "step", "neuron").values
    w = ds.w.transpose("data_seed", "imbalance", "step", "neuron", "input").values[..., 0]
    b = ds.b.transpose("data_seed", "imbalance", "step", "neuron").values
    # by hand, at every checkpoint: the target is tanh(1 x + 1), so (w*, b*) = (1, 1)
    norm = np.hypot(w, b) * np.sqrt(2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(norm > 0, (w + b) / norm, 0.0)
    assert cos.shape == (2, 3, 30, 2) and np.isfinite(cos).all()
    np.testing.assert_allclose(cos, expected, rtol=1e-12, atol=1e-15)
    assert np.all(expected[:, 0, :, 1] == 0.0)  # c~ = 0 zeroes neuron 2: cosine 0, not NaN
    # the other variables are the built-in family's, and its figure was drawn
    assert {"test_error", "train_loss", "a", "balance"} <= set(ds.data_vars)
    assert (tmp_path / "cos" / "figures" / "target_cosine.png").stat().st_size > 10_000
    # the printed table: the final cosines per run
    final = cos[:, :, -1, :]
    for i, seed in enumerate(ds.data_seed.values):
        for j, c in enumerate(ds.imbalance.values):
            line = next(s for s in out.stdout.splitlines()
                        if s.split()[:2] == [str(int(seed)), f"{c:.3f}"])
            np.testing.assert_allclose([float(v) for v in line.split()[3:]], final[i, j],
                                       atol=1e-6)


@pytest.fixture
def forget_families():
    from twolayer import families

    before = dict(families._REGISTERED)
    yield families
    families._REGISTERED.clear()
    families._REGISTERED.update(before)


def _extra_config(name: str = "sn_extra_test"):
    from dataclasses import dataclass

    from twolayer.config import static

    @dataclass(frozen=True, kw_only=True)
    class Config(sn.Config):
        family: str = static(name, choices=(name,))

    return Config


def _family_with(extra: float, Config, name: str = "sn_extra_test"):
    """single_neuron recording one more constant, ``extra``, under ``name``."""
    def observe(cfg, bp, params, data):
        return {**sn.observe(cfg, bp, params, data), "extra": params["a"][0] * 0 + extra}

    fam = get_family("single_neuron")
    return fam.replace(name=name, Config=Config, observe=observe,
                       variables=fam.variables + (Variable("extra", "a constant"),))


def test_register_family_rules(forget_families):
    families = forget_families
    from twolayer.config import ConfigError

    fam = get_family("single_neuron")
    # an installed name is refused
    with pytest.raises(ConfigError, match="'single_neuron' is installed"):
        twolayer.register_family(fam.replace(observe=lambda *a: {}))
    # a Config whose family field is another name is refused, with the fix in the message
    with pytest.raises(ConfigError, match=r"must declare family: str = static\('other_name'"):
        twolayer.register_family(fam.replace(name="other_name"))
    # undeclared outputs are refused before training, naming the variable
    Config = _extra_config("sn_undeclared")
    bad = fam.replace(name="sn_undeclared", Config=Config,
                      observe=lambda c, b, p, d: {**sn.observe(c, b, p, d), "zzz": p["a"][0]})
    twolayer.register_family(bad)
    with pytest.raises(ConfigError, match="observe gives 'zzz', which is not declared"):
        twolayer.run(family="sn_undeclared", max_steps=2, n_train=3)
    with pytest.raises(TypeError):
        twolayer.register_family({"name": "x"})
    # an unknown family lists the built-in and the registered ones
    Config = _extra_config()  # one Config class: configs of both families compare equal
    twolayer.register_family(_family_with(1.0, Config))
    with pytest.raises(ConfigError, match=r"unknown family 'nope'; allowed: .*patch_cnn, "
                                          r"single_neuron, sn_extra_test, sn_undeclared$"):
        twolayer.sweep({"family": "nope", "axes": {"seed": [0]}})
    assert families.local_only("sn_extra_test") and not families.local_only("single_neuron")
    # worker processes cannot see it: a worker executor is refused before anything is written
    out = Path(tempfile.mkdtemp()) / "sweep"
    with pytest.raises(ConfigError, match="registered in this process only"):
        twolayer.sweep({"family": "sn_extra_test", "base": {"n_train": 3},
                        "train": {"max_steps": 5}, "axes": {"seed": [0]}}, out=out,
                       executor="processes:2")
    assert not out.exists()
    # registering the name again replaces the family: no stale compiled program is used
    tiny = dict(family="sn_extra_test", max_steps=5, n_checkpoints=2, n_train=3)
    assert (twolayer.run(**tiny).extra.values == 1.0).all()
    twolayer.register_family(_family_with(2.0, Config))
    assert (twolayer.run(**tiny).extra.values == 2.0).all()
    # and the registered family runs the built-in's training unchanged
    builtin = twolayer.run(family="single_neuron", **{k: v for k, v in tiny.items()
                                                      if k != "family"})
    np.testing.assert_array_equal(builtin.train_loss.values, twolayer.run(**tiny).train_loss.values)


@pytest.mark.slow  # run in CI's second step (python3 dev.py test -m slow)
def test_dask_sweep_script_equals_in_process(tmp_path):
    pytest.importorskip("distributed")
    out = run_example("dask_sweep.py", "--small", "--out", tmp_path / "dask")
    assert "2 workers" in out.stdout and out.stderr.count("done (") == 2  # two shards, on Dask
    ds = twolayer.load(tmp_path / "dask")
    ref = twolayer.sweep(import_example("dask_sweep.py").make_spec(small=True), progress=False)
    assert set(ds.data_vars) == set(ref.data_vars) and dict(ds.sizes) == dict(ref.sizes)
    for name in ref.data_vars:
        if ref[name].dtype.kind in "OUS":  # run_config: the runs' configs, as JSON text
            np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)
            continue
        np.testing.assert_allclose(ds[name].values.astype(float), ref[name].values.astype(float),
                                   rtol=1e-12, atol=0, err_msg=name)
    assert f"recovered fraction {float(ref.recovered.mean()):.3f}" in out.stdout
