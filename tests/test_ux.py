"""For the people who use it: the sweep's progress display and its ETA, log levels, the CLI's
help, `info` on a running sweep, figures drawn by `sweep`, CF attributes, compression and the
per-run configs of result.nc, notebooks (inline figures, the compile cache from Python), and
sweeps as independent jobs through submitit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer import analysis, cli, executors, progress, store, sweeps
from twolayer.config import to_dict
from twolayer.train import train_group

ENV = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0",
       "TWOLAYER_HOST_DEVICES": "1"}

SPEC = """name = "ux"
[base]
width = 2
n_train = 4
init_scale = 1e-4
[train]
learning_rate = 0.1
max_steps = 200
n_checkpoints = 8
[axes]
imbalance = [0.0, 0.5, 1.0]
seed = [0, 1]
[[figure]]
kind = "error_vs"
file = "ux.png"
x = "imbalance"
hue = "seed"
"""


def cli_run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "twolayer.cli", *map(str, args)],
                          capture_output=True, text=True, env={**ENV, **(env or {})},
                          timeout=600)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A small sweep run by the CLI (3 shards of 2 runs), piped: (folder, its stderr)."""
    folder = tmp_path_factory.mktemp("ux")
    spec = folder / "s.toml"
    spec.write_text(SPEC)
    out = cli_run("sweep", spec, "--out", folder / "o", "--shard-size", "2")
    assert out.returncode == 0, out.stderr
    return folder / "o", out


# ---------------------------------------------------------------- progress
class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_eta_starts_after_compiling_and_counts_stopped_runs():
    clock = Clock()
    p = progress.SweepProgress("x", n_shards=3, n_runs=20, now=clock)
    p.skipped(5)  # an earlier run's shard: done, but not part of the rate
    p.started(1, 10)
    clock.t = 30.0  # compiling: no ETA yet
    assert p.eta() is None and "compiling" in p.text() and "10 active" in p.text()
    p.update(1, 1.0, 10)  # the first chunk is back: the clock starts (30 s of compile left out)
    assert p.eta() is None
    clock.t = 32.0
    p.update(1, 7.0, 2)  # 6 runs' worth in 2 s, 5 of them stopped early and counted as done
    assert p.work() == 12.0 and p.eta() == pytest.approx((20 - 12) / 3.0)
    text = p.text()
    assert "12/20 runs" in text and "shards 1/3" in text and "2 active" in text
    assert "ETA 00:03" in text and "00:32 elapsed" in text
    p.finished(1, 10)
    assert p.work() == 15.0 and "active" not in p.text()
    p.close()


def test_engine_reports_runs_done_and_active(make, fam):
    """Between chunks the engine reports (runs done, active): monotone, an early-stopped run
    counts 1 at once, and every run is done at the end."""
    cfgs = [make(width=2, n_train=3, init_scale=1e-3, learning_rate=0.5, max_steps=20_000,
                 loss_tol=1e-6, imbalance=c, n_checkpoints=30) for c in (0.0, 0.5, 1.0)]
    calls = []
    ds = train_group(fam, cfgs, progress=lambda done, active: calls.append((done, active)))
    done = np.array([c[0] for c in calls])
    assert len(calls) > 1 and np.all(np.diff(done) >= -1e-12)
    assert calls[-1] == (3.0, 0)
    assert (ds.stop_step < 20_000).all()  # every run stops long before its budget
    assert all(d >= 3 - a for d, a in calls)  # a stopped run counts as one run done
    assert any(0 < a < 3 for _, a in calls)  # the runs stop one by one


def test_piped_sweep_prints_plain_progress_lines_and_quiet_prints_nothing(swept, tmp_path):
    _, out = swept
    lines = out.stderr.splitlines()
    assert "sweep ux: 6/6 runs · shards 3/3" in out.stderr
    assert sum(line.startswith("sweep ux: ") for line in lines) == 3  # one a shard
    assert "\r" not in out.stderr  # no bar when piped
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    quiet = cli_run("-q", "sweep", spec, "--out", tmp_path / "q", "--no-figures")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert not (tmp_path / "q" / "figures").exists()


def test_bar_on_a_terminal_stays_on_screen(tmp_path):
    """With progress=True the display is a tqdm bar over the sweep's runs, kept at the end."""
    code = textwrap.dedent(f"""
        import sys, twolayer
        spec = {tomllib.loads(SPEC)!r}
        twolayer.sweep(spec, progress=True, shard_size=3)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    last = out.stderr.split("\r")[-1]
    assert "sweep ux: 100%" in last and "6/6 runs · shards 2/2" in last


# ---------------------------------------------------------------- CLI
def test_help_states_defaults_and_choices(capsys):
    for cmd in ("sweep", "reproduce", "submit", "plot", "info", "presets"):
        with pytest.raises(SystemExit):
            cli.main([cmd, "--help"])
        text = capsys.readouterr().out
        parser = cli.build_parser()
        sub = next(a for a in parser._actions if isinstance(a.choices, dict)).choices[cmd]
        for action in sub._actions:  # every argument and option has help
            assert action.help, (cmd, action.dest)
        if cmd in ("sweep", "reproduce", "submit"):
            assert "(default full)" in " ".join(text.split()), cmd  # one default scale
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 512)" in text and "(default local)" in text and "(default 60)" in text


def test_run_help_lists_choices_wrapped(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        cli.main(["run", "--family", "patch_cnn", "--help"])
    text = capsys.readouterr().out
    assert "one of gd, adam, flow" in " ".join(text.split())
    assert max(len(line) for line in text.splitlines()) <= 80


def test_presets_table_wraps_at_words(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    starts = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    names = [lines[i].split()[0] for i in starts]
    assert names == twolayer.presets.names()
    col = lines[starts[0]].index(lines[starts[0]].split()[1])  # where the text column starts
    for i, j in zip(starts, starts[1:] + [len(lines)]):
        text = " ".join(line[col:].strip() for line in lines[i:j])
        raw = tomllib.loads(twolayer.presets.path(lines[i].split()[0]).read_text())
        whole = " ".join(raw["description"].split())
        assert whole.startswith(text.rstrip(".")), (text, whole)  # no word cut or lost


def test_info_tells_a_running_sweep_from_an_unfinished_one(swept, tmp_path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "sweep.json").write_text((swept[0] / "sweep.json").read_text())
    (folder / "shards").mkdir()
    (folder / "state").mkdir()
    assert cli.main(["info", str(folder)]) == 0
    assert "rerun the sweep to finish it" in capsys.readouterr().out
    with store._locked(folder):
        assert cli.main(["info", str(folder)]) == 0
        text = capsys.readouterr().out
    assert f"running: pid {os.getpid()}" in text and "it is running" in text
    assert "rerun the sweep" not in text


def test_sweep_draws_its_figures(swept):
    folder, out = swept
    png = folder / "figures" / "ux.png"
    assert png.stat().st_size > 10_000 and f"figure: {png}" in out.stdout


# ---------------------------------------------------------------- results
def test_result_has_cf_attributes_and_each_runs_config(swept):
    folder, _ = swept
    ds = twolayer.load(folder)
    assert ds.attrs["Conventions"].startswith("CF-")
    for name in [*ds.coords, *ds.data_vars]:
        assert ds[name].attrs.get("long_name"), name
    assert ds.imbalance.attrs["long_name"] != "imbalance"  # the config field's doc
    spec = sweeps.load_spec(tomllib.loads(SPEC))
    for coords, cfg in sweeps.expand(spec):
        assert analysis.run_config(ds, **coords) == json.loads(json.dumps(to_dict(cfg)))
    with pytest.raises(ValueError, match="give a value for each of"):
        analysis.run_config(ds, seed=0)


def test_result_is_compressed_losslessly(swept, tmp_path):
    folder, _ = swept
    with xr.open_dataset(store.result_path(folder), engine=store.ENGINE) as raw:
        enc = raw["test_error"].encoding
        assert enc.get("compression") == "gzip" or enc.get("zlib"), enc
        assert enc.get("compression_opts", enc.get("complevel")) == 4
        plain = raw.load()
    ds = twolayer.load(folder)
    # uncompressed, same values (without the encodings read from the compressed file)
    plain.drop_encoding().to_netcdf(tmp_path / "plain.nc", engine=store.ENGINE)
    again = xr.open_dataset(tmp_path / "plain.nc", engine=store.ENGINE).load()
    xr.testing.assert_identical(again, ds)
    # every numeric array is stored deflated at level 4 (on arrays this small the chunk index
    # outweighs the gain, so the file sizes are not compared; fig4 quick: 3.9 -> 2.5 MB)
    import h5py

    with h5py.File(store.result_path(folder)) as f:
        arrays = [f[k] for k in ds.variables if k in f and f[k].ndim and f[k].dtype.kind in "biuf"
                  and f[k].size]
        assert len(arrays) > 10
        assert all(a.compression == "gzip" and a.compression_opts == 4 for a in arrays)


def test_one_run_has_its_config_and_attributes():
    ds = twolayer.run(width=2, n_train=3, n_test=5, max_steps=5, n_checkpoints=2,
                      imbalance=0.25, progress=False)
    cfg = analysis.run_config(ds)
    assert cfg["width"] == 2 and cfg["imbalance"] == 0.25 and cfg["family"] == "single_neuron"
    assert all(ds[n].attrs.get("long_name") for n in [*ds.coords, *ds.data_vars])


# ---------------------------------------------------------------- notebooks
def test_figures_render_inline_in_ipython():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        from matplotlib.figure import Figure

        from twolayer.plots import inline

        fmt = shell.display_formatter.formatters["image/png"]
        fmt.type_printers.pop(Figure, None)  # as in a kernel where pyplot never started
        assert inline.register()
        fig = Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        data, _ = shell.display_formatter.format(fig)
        assert data["image/png"].startswith(b"\x89PNG")
    finally:
        InteractiveShell.clear_instance()


def test_notebook_progress_is_a_widget(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setenv("TWOLAYER_PROGRESS", "1")
    from tqdm.notebook import tqdm

    assert progress._tqdm() is tqdm and progress.wanted(None)
    monkeypatch.setenv("TWOLAYER_PROGRESS", "0")
    assert not progress.wanted(None)


def test_python_api_uses_the_compile_cache(tmp_path):
    """twolayer.run from Python (a notebook) fills the persistent compilation cache, as the
    CLI does; a second process loads from it."""
    code = ("import jax, twolayer\n"
            "twolayer.run(width=2, n_train=3, n_test=5, max_steps=5, n_checkpoints=2)\n"
            "print(jax.config.jax_compilation_cache_dir)\n")
    cache = tmp_path / "cache"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**ENV, "TWOLAYER_CACHE_DIR": str(cache)}, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(cache) and any(cache.iterdir())


# ---------------------------------------------------------------- jobs (submitit)
def test_sweep_on_submitit_jobs_equals_in_process(tmp_path):
    """The submitit path (its in-process debug executor here): each job trains one shard into
    the folder; the sweep merges them into the same result as the local executor."""
    pytest.importorskip("submitit")
    spec = tomllib.loads(SPEC)
    ex = executors._submitit("debug", tmp_path / "jobs", {}, "ux")
    ds = twolayer.sweep(spec, tmp_path / "jobs", executor=ex, shard_size=2, progress=False)
    ref = twolayer.sweep(spec, shard_size=2, progress=False)
    xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
    assert len(list((tmp_path / "jobs" / "shards").glob("*.nc"))) == 3
    assert any((tmp_path / "jobs" / "jobs").iterdir())  # submitit's files


def test_job_options_are_checked_before_anything_is_written(tmp_path):
    pytest.importorskip("submitit")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    for args, message in ((("--executor", "submitit-local", "--job", "nonsense_key=3"),
                           "bad job option for submitit"),
                          (("--job", "timeout_min=3"), "job options (--job) go with"),
                          (("--executor", "submitit-local", "--job", "timeout_min"),
                           "--job takes KEY=VALUE")):
        out = cli_run("sweep", spec, "--out", tmp_path / "o", *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()


def test_submit_prints_the_array_script_and_submits_nothing(tmp_path):
    pytest.importorskip("submitit")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = cli_run("submit", spec, "--out", tmp_path / "o", "--shard-size", "2",
                  "--print-script", "--job", "slurm_partition=short", "--job",
                  "cpus_per_task=4", "--job", 'slurm_setup=["source /opt/venv/bin/activate"]')
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "#SBATCH --array=0-2%" in text and "#SBATCH --partition=short" in text
    assert "#SBATCH --cpus-per-task=4" in text and "export TWOLAYER_HOST_DEVICES=4" in text
    assert "source /opt/venv/bin/activate" in text and "submitit.core._submit" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # jobs are processes that each start JAX and compile (about 40 s on 2 cores)
def test_submit_then_sweep_merges(tmp_path):
    """`twolayer submit` returns at once; its jobs (submitit's local cluster: processes) write
    the shards; `twolayer sweep` then trains nothing and merges."""
    pytest.importorskip("submitit")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = cli_run("submit", spec, "--out", tmp_path / "o", "--shard-size", "3",
                  "--cluster", "local")
    assert out.returncode == 0, out.stderr
    assert "submitted 2 shard(s)" in out.stdout and "twolayer sweep" in out.stdout
    import time

    deadline = time.monotonic() + 500
    while len(list((tmp_path / "o" / "shards").glob("*.nc"))) < 2:
        assert time.monotonic() < deadline, "the jobs did not finish"
        time.sleep(1)
    merged = cli_run("sweep", spec, "--out", tmp_path / "o", "--shard-size", "3")
    assert merged.returncode == 0, merged.stderr
    assert merged.stderr.count("done before, skipped") == 2
    ref = twolayer.sweep(tomllib.loads(SPEC), shard_size=3, progress=False)
    ds = twolayer.load(tmp_path / "o")
    assert set(ds.variables) == set(ref.variables) and dict(ds.sizes) == dict(ref.sizes)
    for name in ref.variables:  # one JAX device per job against this process's: summation order
        a, b = ds[name].values, ref[name].values
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
