"""Sweeps, shards, storage, resume, provenance, and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer import store, sweeps as sweep
from twolayer.config import ConfigError

SPEC = {
    "name": "small",
    "family": "single_neuron",
    "base": {"width": 2, "n_train": 4, "sampling": "gaussian", "init_scale": 1e-6},
    "train": {"learning_rate": 0.1, "max_steps": 300, "n_checkpoints": 20, "loss_tol": 1e-12},
    "axes": {"imbalance": [0.0, 0.5, 1.0], "data_seed": {"range": [0, 2]}},
}


def spec_with(**changes):
    out = json.loads(json.dumps(SPEC))
    for section, table in changes.items():
        if isinstance(table, dict):
            out.setdefault(section, {}).update(table)
        else:
            out[section] = table
    return out


def test_axis_generators():
    lin = sweep._values("x", {"linspace": [0, 1, 5]})
    assert lin == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert sweep._values("x", {"logspace": [-2, 0, 3]}) == pytest.approx([0.01, 0.1, 1.0])
    assert sweep._values("x", {"range": [2, 7, 2]}) == [2, 4, 6]
    cheb = np.array(sweep._values("x", {"chebyshev": [0.0, 1.0, 11]}))
    assert cheb[0] == 0.0 and cheb[-1] == 1.0 and np.all(np.diff(cheb) > 0)
    gaps = np.diff(cheb)
    assert gaps[0] < gaps[5] and gaps[-1] < gaps[5]  # denser near both ends


def test_expand_cartesian_and_zip():
    raw = spec_with(zip=[{"init_scale": [1e-6, 1e-3], "seed": [3, 4]}])
    raw["base"].pop("init_scale")
    spec = sweep.load_spec(raw)
    runs = sweep.expand(spec)
    assert len(runs) == 3 * 2 * 2
    coords = [c for c, _ in runs]
    assert {(c["init_scale"], c["seed"]) for c in coords} == {(1e-6, 3), (1e-3, 4)}
    for c, cfg in runs:
        assert cfg.imbalance == c["imbalance"] and cfg.seed == c["seed"]


def test_sweep_equals_single_runs_and_resume(tmp_path):
    out = tmp_path / "sw"
    ds = twolayer.sweep(SPEC, out, shard_size=4)
    assert list(ds.test_error.dims) == ["imbalance", "data_seed", "step"]
    n_shards = len(list((out / "shards").glob("*.nc")))
    assert n_shards == 2  # 6 runs in shards of 4
    # every point equals the same run done alone through the Python API
    for imb in (0.0, 1.0):
        one = twolayer.run(**SPEC["base"], **SPEC["train"], imbalance=imb, data_seed=1)
        np.testing.assert_allclose(ds.train_loss.sel(imbalance=imb, data_seed=1).values,
                                   one.train_loss.values, rtol=1e-12, atol=0)
    # a rerun after losing one shard recomputes only that one, with the same result
    victim = sorted((out / "shards").glob("*.nc"))[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.nc")}
    victim.unlink()
    again = twolayer.sweep(SPEC, out, shard_size=4)
    for p in (out / "shards").glob("*.nc"):
        if p.name != victim.name:
            assert p.stat().st_mtime_ns == stamps[p.name]  # untouched
    assert victim.exists()
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())
    # the merge of every shard read back from its file equals the merge of the Datasets the
    # first sweep kept in memory (it does not read back what it wrote): attributes included
    store.result_path(out).unlink()
    from_files = twolayer.sweep(SPEC, out, shard_size=4)
    for a in (from_files, ds):
        a.attrs.pop("created")
    xr.testing.assert_identical(from_files, ds)
    assert all(from_files[k].dtype == ds[k].dtype for k in ds.variables)


def test_shard_size_does_not_change_results(tmp_path):
    a = twolayer.sweep(SPEC, shard_size=1)
    b = twolayer.sweep(SPEC, shard_size=64)
    for var in ("train_loss", "test_error", "stop_step", "c_coeff"):
        np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-12, atol=0)


def test_provenance_and_load(tmp_path):
    out = tmp_path / "sw"
    twolayer.sweep(SPEC, out)
    ds = twolayer.load(out)
    for key in ("twolayer_version", "jax_version", "git_commit", "created", "sweep", "seeds"):
        assert key in ds.attrs
    assert json.loads(ds.attrs["sweep"])["base"]["width"] == 2
    assert json.loads(ds.attrs["seeds"]) == [0, 1]
    info = store.info(out)
    assert info["shards_done"] == info["shards_total"] and not info["missing"]


def test_groups_with_different_budgets_merge(tmp_path):
    spec = spec_with(zip=[{"n_train": [3, 5], "max_steps": [100, 400]}])
    spec["base"].pop("n_train")
    spec["train"].pop("max_steps")
    ds = twolayer.sweep(spec)
    assert ds.sizes["n_train"] == 2 and int(ds.step.max()) == 400
    assert list(ds.max_steps.values) == [100, 400]
    final = ds.test_error.ffill("step").isel(step=-1)
    assert np.isfinite(final.values).all()


def test_other_sweep_in_folder_is_refused(tmp_path):
    out = tmp_path / "sw"
    twolayer.sweep(SPEC, out)
    with pytest.raises(ConfigError, match="another sweep"):
        twolayer.sweep(spec_with(train={"learning_rate": 0.2}), out)


@pytest.mark.parametrize("change, message", [
    ({"base": {"widht": 2}}, "did you mean 'width'"),
    ({"base": {"width": -1}}, "'width' must be >= 1"),
    ({"base": {"width": "two"}}, "'width' must be an integer"),
    ({"base": {"n_train": 0}}, "'n_train' must be >= 1"),
    ({"base": {"activation": "sigmoidal"}}, "unknown activation"),
    ({"axes": {"seed": []}}, "axis 'seed' is empty"),
    ({"axes": {"seed": {"geomspace": [1, 10, 3]}}}, "unknown generator 'geomspace'"),
    ({"axes": {"seed": {"range": ["a"]}}}, "bad arguments"),
    ({"axes": {"sed": [1, 2]}}, "did you mean 'seed'"),
    ({"base": {"learning_rate": 0.1}}, "belongs in \\[train\\]"),
    ({"base": {"dtype": "float32"}}, "belongs in \\[train\\]"),
    ({"train": {"dtype": "float32"}, "base": {"init_scale": 1e-30}}, "underflows float32"),
    ({"base": {"imbalance": 0.5}}, "both a fixed setting and an axis"),
    ({"zip": [{"seed": [1, 2], "init_scale": [1.0]}]}, "different lengths"),
    ({"train": {"optimizer": "sgd"}}, "must be one of gd, adam"),
    ({"axes": {"imbalance": [0.0, 2.0]}}, "'imbalance' must lie in \\[0, 1\\]"),
    ({"frobnicate": 1}, "unknown key 'frobnicate'"),
])
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path, change, message):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=message) as err:
        twolayer.sweep(spec_with(**change), out)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_cli_reports_bad_input_with_exit_code(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[base\nwidth = 2\n")
    env = {**os.environ, "TWOLAYER_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-m", "twolayer.cli", "sweep", str(bad), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("twolayer: error: malformed TOML")
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_diverging_learning_rate_is_recorded_not_fatal(tmp_path):
    spec = spec_with()
    spec["axes"] = {"learning_rate": [0.1, 80.0]}
    spec["train"].pop("learning_rate")
    spec["base"]["init_scale"] = 0.5
    ds = twolayer.sweep(spec, tmp_path / "sw")
    assert list(ds.diverged.values) == [False, True]
    assert np.isfinite(ds.train_loss.sel(learning_rate=0.1)).all()
    # the merged file holds it too
    assert list(twolayer.load(tmp_path / "sw").diverged.values) == [False, True]


def test_info_lists_missing_shards(tmp_path):
    out = tmp_path / "sw"
    twolayer.sweep(SPEC, out, shard_size=2)
    victim = sorted((out / "shards").glob("*.nc"))[1]
    victim.unlink()
    info = store.info(out)
    assert (info["shards_done"], info["shards_total"]) == (2, 3)
    assert [s["key"] for s in info["missing"]] == [victim.stem]
    assert info["runs_done"] == 4 and info["runs_total"] == 6


def test_memory_estimate_counts_the_shards_trained_at_once():
    """With N worker processes on this machine, N of the largest shard are in memory at
    once: a limit between the one-at-a-time estimate and that is refused for processes:4,
    passed for local (no training: the check comes first)."""
    from twolayer.executors import local_workers

    spec = sweep.load_spec(SPEC)
    todo = sweep.plan(spec, 4)
    largest, total = sweep.estimate(spec, todo)
    assert largest > 0 and local_workers("processes:4") == 4 and local_workers(None) == 1
    assert local_workers("dask-local:3") == 3 and local_workers("dask://h:1") == 1
    limit = total + 2 * largest
    sweep._check_size(spec, todo, limit, "local")
    sweep._check_size(spec, todo, limit, "processes:2")
    with pytest.raises(ConfigError, match="4 at once"):
        sweep._check_size(spec, todo, limit, "processes:4")
