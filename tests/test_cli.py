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
    info = cli("info", tmp_path / "r")  # a run's folder, not only a sweep's
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith("run (family single_neuron") and "dims: step=10" in info.stdout


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
    pdf = cli("plot", tmp_path / "o", "--format", "pdf,svg")
    assert pdf.returncode == 0, pdf.stderr
    made = sorted(p.suffix for p in (tmp_path / "o" / "figures").iterdir())
    assert ".pdf" in made and ".svg" in made
    assert (tmp_path / "o" / "figures" / next(
        p.name for p in (tmp_path / "o" / "figures").iterdir() if p.suffix == ".pdf")
    ).read_bytes()[:4] == b"%PDF"
    bad = cli("plot", tmp_path / "o", "--format", "gif3")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


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


def py(code: str, env=None):
    """Run ``code`` in a fresh interpreter (sys.modules as a user's script starts with)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env or ENV, timeout=600)


def test_import_is_lazy_and_run_configures_jax():
    code = (
        "import os, sys\n"
        "import twolayer\n"
        "assert 'jax' not in sys.modules and 'numpy' not in sys.modules, 'import twolayer'\n"
        "assert os.environ.get('XLA_FLAGS', '') == '', os.environ.get('XLA_FLAGS')\n"
        "assert issubclass(twolayer.ConfigError, ValueError) and 'jax' not in sys.modules\n"
        "ds = twolayer.run(width=2, n_train=3, n_test=5, max_steps=5, n_checkpoints=2)\n"
        "import jax\n"
        "print(jax.config.jax_enable_x64, ds.train_loss.dtype, os.environ['XLA_FLAGS'])\n")
    out = py(code, {**ENV, "XLA_FLAGS": "", "TWOLAYER_HOST_DEVICES": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "float64", "--xla_force_host_platform_device_count=2"]


def test_jax_imported_first_keeps_its_xla_flags():
    code = (
        "import os, jax, twolayer\n"
        "twolayer.run(width=2, n_train=3, n_test=5, max_steps=5, n_checkpoints=2)\n"
        "print(jax.config.jax_enable_x64, repr(os.environ['XLA_FLAGS']))\n")
    out = py(code, {**ENV, "XLA_FLAGS": "", "TWOLAYER_HOST_DEVICES": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "''"]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["presets"], ["sweep", "--help"],
                                  ["reproduce", "--help"], ["boundary", "--help"], ["plot", "--help"],
                                  ["info", "--help"]])
def test_help_version_presets_import_no_jax(args):
    code = ("import sys\nfrom twolayer import cli\n"
            f"try:\n    cli.main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('jax' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)\n")
    out = py(code)
    assert out.returncode == 0, out.stderr
    assert out.stderr.split()[-2:] == ["False", "False"], out.stderr


def test_version_prints_the_version():
    import twolayer

    out = cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"twolayer {twolayer.__version__}"


def test_run_help_lists_the_given_familys_settings():
    cnn = cli("run", "--family", "patch_cnn", "--help")
    assert cnn.returncode == 0, cnn.stderr
    assert "settings of family 'patch_cnn'" in cnn.stdout
    assert "--snr " in cnn.stdout and "--imbalance " not in cnn.stdout  # patch_cnn's only
    default = cli("run", "--help")
    assert "--imbalance " in default.stdout and "--snr " not in default.stdout
    bad = cli("run", "--family", "nope", "--help")
    assert bad.returncode == 2 and "unknown family 'nope'" in bad.stderr
