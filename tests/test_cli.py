"""The command line, run as a user would (a subprocess), on tiny settings."""
import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0"}


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "twolayer.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


def test_run_prints_summary_and_writes_result(tmp_path):
    out = cli("run", "--width", "2", "--init_scale", "1e-3", "--learning_rate", "0.05",
              "--max_steps", "200", "--imbalance", "0.5", "--n_checkpoints", "10",
              "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[0])
    assert summary["stop_step"] == 200 and not summary["diverged"]
    assert (tmp_path / "r" / "result.nc").exists() and (tmp_path / "r" / "run.png").exists()


def test_sweep_info_plot(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[base]\nwidth = 2\nn_train = 4\ninit_scale = 1e-4\n'
                    '[train]\nlearning_rate = 0.1\nmax_steps = 100\nn_checkpoints = 10\n'
                    '[axes]\nimbalance = {linspace = [0, 1, 3]}\n')
    out = cli("sweep", spec, "--out", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    info = cli("info", tmp_path / "o")
    assert info.returncode == 0
    assert "shards: 1/1 done" in info.stdout and "imbalance=3" in info.stdout
    assert "git_commit" in info.stdout and "jax_version" in info.stdout
    plot = cli("plot", tmp_path / "o")
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "o" / "figures").exists()


@pytest.mark.parametrize("args, message", [
    (("run", "--widht", "2"), "did you mean 'width'"),
    (("run", "--width", "-3"), "'width' must be >= 1"),
    (("run", "--sampling", "fixed", "--input_dim", "3"), "needs input_dim = 1"),
    (("reproduce", "fig44", "--out", "x"), "unknown preset 'fig44'"),
    (("reproduce", "fig4", "--scale", "huge", "--out", "x"), "unknown scale 'huge'"),
    (("info", "nowhere"), "holds no twolayer sweep"),
])
def test_bad_input_one_line_nonzero_exit(tmp_path, args, message):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_presets_lists_every_shipped_figure():
    out = cli("presets")
    names = {line.split()[0] for line in out.stdout.splitlines()}
    assert {"fig1-fixed", "fig1-random", "fig2", "fig3", "fig4", "fig5", "fig6", "fig9"} <= names
