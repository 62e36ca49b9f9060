"""The examples run, and user-supplied activations and multi-neuron targets work."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

import twolayer
from twolayer import theory
from twolayer.families import single_neuron as sn

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
    assert theory.optimistic_sample_size(5, True, target_width=3) == 21


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
