"""The bad-input catalogue (docs/bad-input.md): every malformed input gives one line
``twolayer: error: ...``, exit code 2, and leaves the files as they were (nothing new, nothing
changed). The command line is called in-process (``cli.main``), as the console script does."""
import json
import re
import tomllib
import sys
from pathlib import Path

import pytest

from twolayer import cli, store
from twolayer.config import make_config, to_dict
from twolayer.families import get as get_family

ROOT = Path(__file__).resolve().parents[1]

GOOD = """name = "bad"
[base]
width = 2
n_train = 4
init_scale = 1e-4
[train]
learning_rate = 0.1
max_steps = 50
n_checkpoints = 5
[axes]
imbalance = [0.0, 1.0]
"""


def edit(old, new):
    assert old in GOOD
    return GOOD.replace(old, new, 1)


SWEEP = ("sweep", "{spec}", "--out", "{out}")
# (id, spec file text, command line, what the folder holds before, expected message)
CASES = [
    ("unknown-key", "frobnicate = 1\n" + GOOD, SWEEP, None, "unknown key 'frobnicate'"),
    ("misspelled-key", edit("width = 2", "widht = 2"), SWEEP, None, "did you mean 'width'"),
    ("wrong-type", edit("width = 2", 'width = "two"'), SWEEP, None,
     "'width' must be an integer"),
    ("negative-size", edit("width = 2", "width = -1"), SWEEP, None, "'width' must be >= 1"),
    ("zero-samples", edit("n_train = 4", "n_train = 0"), SWEEP, None,
     "'n_train' must be >= 1"),
    ("zero-steps", edit("max_steps = 50", "max_steps = 0"), SWEEP, None,
     "'max_steps' must be >= 1"),
    ("negative-rate", edit("learning_rate = 0.1", "learning_rate = -0.1"), SWEEP, None,
     "'learning_rate' must be > 0"),
    ("not-finite", edit("init_scale = 1e-4", "init_scale = nan"), SWEEP, None,
     "'init_scale' must be finite"),
    ("empty-axis", edit("imbalance = [0.0, 1.0]", "imbalance = []"), SWEEP, None,
     "axis 'imbalance' is empty"),
    ("repeated-value", edit("imbalance = [0.0, 1.0]", "imbalance = [0.5, 0.5]"), SWEEP, None,
     "axis 'imbalance' repeats a value"),
    ("unknown-axis", GOOD + "sed = [1, 2]\n", SWEEP, None, "did you mean 'seed'"),
    ("unknown-generator", GOOD + "seed = {geomspace = [1, 10, 3]}\n", SWEEP, None,
     "unknown generator 'geomspace'"),
    ("zip-lengths", GOOD + "[[zip]]\nseed = [1, 2]\ndata_seed = [1]\n", SWEEP, None,
     "different lengths"),
    ("wrong-section", edit("width = 2", "width = 2\nlearning_rate = 0.1"), SWEEP, None,
     "belongs in [train]"),
    ("fixed-and-axis", edit("width = 2", "width = 2\nimbalance = 0.5"), SWEEP, None,
     "both a fixed setting and an axis"),
    ("bad-choice", edit("max_steps = 50", 'max_steps = 50\noptimizer = "sgd"'), SWEEP, None,
     "'optimizer' must be one of gd, adam, flow"),
    ("out-of-range", edit("imbalance = [0.0, 1.0]", "imbalance = [0.0, 2.0]"), SWEEP, None,
     "'imbalance' must lie in [0, 1]"),
    ("unknown-activation", edit("width = 2", 'width = 2\nactivation = "sigmoidal"'), SWEEP,
     None, "unknown activation 'sigmoidal'"),
    ("float32-underflow", edit("init_scale = 1e-4", "init_scale = 1e-30").replace(
        "max_steps = 50", 'max_steps = 50\ndtype = "float32"'), SWEEP, None,
     "underflows float32"),
    ("malformed-toml", GOOD.replace("[train]", "[train"), SWEEP, None, "malformed TOML"),
    ("unknown-family", 'family = "cnn"\n' + GOOD, SWEEP, None, "unknown family 'cnn'"),
    ("missing-spec", None, ("sweep", "nothere.toml", "--out", "{out}"), None,
     "no sweep file or preset named 'nothere.toml'"),
    ("unknown-preset", None, ("reproduce", "fig44", "--out", "{out}"), None,
     "unknown preset 'fig44' (did you mean 'fig4'?)"),
    ("unknown-scale", None, ("reproduce", "fig4", "--scale", "huge", "--out", "{out}"), None,
     "unknown scale 'huge'"),
    ("unknown-executor", GOOD, SWEEP + ("--executor", "threads:2"), None,
     "unknown executor 'threads:2'"),
    ("zero-workers", GOOD, SWEEP + ("--executor", "processes:0"), None,
     "the number of workers must be an integer >= 1"),
    ("bad-address", GOOD, SWEEP + ("--executor", "dask://scheduler"), None,
     "the scheduler address must be HOST:PORT"),
    ("unreachable-scheduler", GOOD, SWEEP + ("--executor", "dask://127.0.0.1:1"), None,
     "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
    ("no-dask", GOOD, SWEEP + ("--executor", "dask-local:2"), "no-dask",
     "Dask executors need the optional extra"),
    ("zero-shard-size", GOOD, SWEEP + ("--shard-size", "0"), None,
     "'shard_size' must be >= 1"),
    ("negative-state-every", GOOD, SWEEP + ("--state-every", "-1"), None,
     "'state_every' must be >= 0 seconds"),
    ("another-sweep", GOOD, SWEEP, "another-sweep", "holds the results of another sweep"),
    ("foreign-folder", GOOD, SWEEP, "foreign", "is not empty and holds no twolayer sweep"),
    ("busy-folder", GOOD, SWEEP, "locked", "is in use by another twolayer sweep"),
    ("info-no-sweep", None, ("info", "{out}"), "foreign", "holds no twolayer sweep"),
    ("run-misspelled", None, ("run", "--widht", "2"), None, "did you mean 'width'"),
    ("run-fixed-dim", None, ("run", "--sampling", "fixed", "--input_dim", "3"), None,
     "needs input_dim = 1"),
    ("cnn-snr-and-norm", None, ("run", "--family", "patch_cnn", "--snr", "0.1",
                                "--signal_norm", "2"), None,
     "give at most one of 'signal_norm' and 'snr'"),
    ("cnn-flip-rate", None, ("run", "--family", "patch_cnn", "--label_noise", "0.7"), None,
     "'label_noise' must lie in [0, 0.5]"),
    ("cnn-coefficient-adam", None, ("run", "--family", "patch_cnn", "--parameterization",
                                    "coefficient", "--optimizer", "adam"), None,
     "parameterization = 'coefficient' needs optimizer = 'gd'"),
    ("cnn-coefficient-small-d", None, ("run", "--family", "patch_cnn", "--parameterization",
                                       "coefficient", "--input_dim", "10"), None,
     "need input_dim > n_train + 1 = 21"),
    ("cnn-bad-pooling", None, ("run", "--family", "patch_cnn", "--pooling", "max"), None,
     "'pooling' must be one of sum, mean"),
    ("flow-setting-with-gd", edit("max_steps = 50", "max_steps = 50\nrtol = 1e-6"), SWEEP,
     None, "'rtol' applies to optimizer = 'flow' only"),
    ("flow-too-large", edit("width = 2", "width = 1000").replace(
        "imbalance = [0.0, 1.0]", "seed = [0, 1]").replace(
        "max_steps = 50", 'max_steps = 50\noptimizer = "flow"'), SWEEP, None,
     "at most 2048 parameters"),
    ("flow-bad-solver", None, ("run", "--optimizer", "flow", "--solver", "rk4"), None,
     "'solver' must be one of"),
    ("flow-switch-above-one", None, ("run", "--optimizer", "flow", "--tail_switch", "2"), None,
     "'tail_switch' must be <= 1.0"),
    ("polish-without-residuals", None, ("run", "--family", "patch_cnn", "--polish", "true"),
     None, "polish = true needs a least-squares family"),
    # writes confined: names are names, not paths; another result's folder is refused
    ("figure-file-absolute", GOOD + '[[figure]]\nfile = "{tmp}/outside.png"\n', SWEEP, None,
     "'file' must be a plain file name"),
    ("figure-file-parent", GOOD + '[[figure]]\nfile = "../outside.png"\n', SWEEP, None,
     "'file' must be a plain file name"),
    ("figure-file-empty", GOOD + '[[figure]]\nfile = ""\n', SWEEP, None,
     "'file' must be a non-empty name"),
    ("sweep-name-path", GOOD.replace('name = "bad"', 'name = "../../escape"'), SWEEP, None,
     "the sweep's 'name' must be a plain file name"),
    ("run-into-sweep-folder", None, ("run", "--max_steps", "20", "--out", "{out}"), "sweep",
     "holds the results of a sweep; `run --out` writes only into a new folder"),
    ("run-into-other-run", None, ("run", "--max_steps", "20", "--out", "{out}"), "run",
     "holds the result of another run (max_steps 10 -> 20)"),
    ("run-busy-folder", None, ("run", "--max_steps", "20", "--out", "{out}"), "locked",
     "is in use by another twolayer sweep"),
    ("changed-setting", GOOD, SWEEP, "sweep-other-steps",
     "holds the results of another sweep ('bad', scale full; changed: max_steps 40 -> 50)"),
    ("out-is-a-file", GOOD, SWEEP, "file", "out is a file"),
    ("out-under-a-file", GOOD, ("sweep", "{spec}", "--out", "{out}/sub"), "file",
     "cannot create"),
    # bounds before work
    ("integer-overflow", edit("max_steps = 50", "max_steps = 9223372036854775807"), SWEEP,
     None, "'max_steps' = 9223372036854775807 is too large"),
    ("run-integer-overflow", None, ("run", "--max_steps", "1e19"), None,
     "'max_steps' = 1e+19 is too large"),
    ("nan-in-list", edit("width = 2", "width = 2\ntarget_a = [nan]"), SWEEP, None,
     "'target_a' must hold finite numbers, got [nan]"),
    ("too-many-checkpoints", edit("n_checkpoints = 5", "n_checkpoints = 100000"), SWEEP, None,
     "'n_checkpoints' must be <= 1000"),
    ("huge-axis", GOOD + "seed = {range = [0, 10_000_000]}\n", SWEEP, None,
     "20000000 runs need about 76.3 GiB of memory, above the limit of 8 GiB"),
    ("run-out-of-memory", None, ("run", "--width", "1000000", "--n_train", "100000000"), None,
     "this run would need about"),
    ("bad-max-memory", GOOD, SWEEP + ("--max-memory", "lots"), None,
     "'max_memory' must be a size such as 16G"),
    # figure tables checked with the sweep, before training
    ("figure-unknown-kind", GOOD + '[[figure]]\nkind = "pie_chart"\n', SWEEP, None,
     "figure 1: unknown kind 'pie_chart' for family 'single_neuron'"),
    ("figure-x-not-a-dim", GOOD + '[[figure]]\nx = "n_train"\n', SWEEP, None,
     "figure 1 (error_vs): x = 'n_train' is not a dim of the result"),
    ("figure-bad-dpi", GOOD + '[[figure]]\ndpi = -5\n', SWEEP, None,
     "figure 1 (error_vs): 'dpi' must be a number in (0, 2400]"),
    ("figure-other-family", 'family = "patch_cnn"\n' + GOOD.replace(
        "width = 2\nn_train = 4\ninit_scale = 1e-4\n", "").replace(
        "imbalance = [0.0, 1.0]", "seed = [0, 1]") + '[[figure]]\nkind = "dynamics"\n', SWEEP,
     None, "figure 1: unknown kind 'dynamics' for family 'patch_cnn'"),
    ("figure-unknown-format", GOOD + '[[figure]]\nfile = "fig.xyz"\n', SWEEP, None,
     "has an unknown format 'xyz'"),
    ("figure-unknown-option", GOOD + '[[figure]]\nx = "imbalance"\ncolour = "red"\n', SWEEP,
     None, "figure 1 (error_vs): unknown option 'colour' for kind 'error_vs'"),
    ("figure-bad-size", GOOD + '[[figure]]\nx = "imbalance"\nsize = "huge"\n', SWEEP, None,
     "figure 1 (error_vs): size must be single, double"),
    # corrupt bookkeeping: one line, and what it takes to repair
    ("corrupt-result-info", None, ("info", "{out}"), "corrupt-result",
     "/out/result.nc ("),
    ("corrupt-result-plot", None, ("plot", "{out}"), "corrupt-result",
     "rerun the sweep with its spec to rebuild it from its shards"),
    ("corrupt-manifest-info", None, ("info", "{out}"), "corrupt-manifest",
     "/out/sweep.json is unreadable"),
]


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    name, text, argv, before, message = case
    monkeypatch.setenv("TWOLAYER_CACHE_DIR", "0")
    monkeypatch.setenv("TWOLAYER_MAX_MEMORY", "8G")
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")
    monkeypatch.chdir(tmp_path)
    spec, out = tmp_path / "spec.toml", tmp_path / "out"
    if text is not None:
        spec.write_text(text.replace("{tmp}", str(tmp_path)))
    (tmp_path / "outside.png").write_bytes(b"not to be replaced")
    hold = None
    if before == "another-sweep":
        out.mkdir()
        (out / "sweep.json").write_text(json.dumps({"name": "other", "scale": "full",
                                                    "sweep_id": "0" * 20, "shards": []}))
    elif before == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("my notes")
    elif before == "locked":
        out.mkdir()
        hold = store._locked(out)
        hold.__enter__()
    elif before in ("sweep", "sweep-other-steps", "corrupt-result", "corrupt-manifest"):
        out.mkdir()
        raw = tomllib.loads(GOOD)
        raw["train"]["max_steps"] = 40
        (out / "sweep.json").write_text(json.dumps({
            "name": "bad", "family": "single_neuron", "scale": "full", "spec": raw,
            "shards": []}))
        if before == "corrupt-result":
            (out / "result.nc").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
        if before == "corrupt-manifest":
            (out / "sweep.json").write_text('{"name": "bad", "shar')
    elif before == "run":
        out.mkdir()
        fam = get_family("single_neuron")
        config = json.loads(json.dumps(to_dict(make_config(
            fam.Config, {"family": "single_neuron", "max_steps": 10})), default=str))
        (out / "run.json").write_text(json.dumps({"family": "single_neuron",
                                                  "config": config}))
    elif before == "file":
        out.write_text("a file")
    elif before == "no-dask":
        monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    files = tree(tmp_path)
    try:
        code = cli.main([a.format(spec=spec, out=out) for a in argv])
        after = tree(tmp_path)
    finally:
        if hold is not None:
            hold.__exit__(None, None, None)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("twolayer: error: ") and err.endswith("\n")
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert after == files  # nothing written, nothing changed


def test_the_catalogue_in_the_docs_lists_every_case():
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    assert listed == {c[0] for c in CASES}
    assert len(CASES) >= 20


CLASSES = ("Writes stay inside OUT", "Bounds before work", "Figures checked with the sweep",
           "Corrupt or missing bookkeeping", "Sweeps that grow", "Signals", "Precision",
           "The Python API", "Generated input")


def test_the_docs_state_every_class_with_tests_that_exist():
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    headings = re.findall(r"^### (.+)$", doc, flags=re.M)
    assert set(CLASSES) <= set(headings)
    for cls in CLASSES:
        section = doc.split(f"### {cls}\n", 1)[1].split("\n### ", 1)[0]
        named = re.findall(r"`tests/(test_\w+\.py)::(test_\w+)`", section.replace("\n", " "))
        assert named, cls
        for path, test in named:
            assert f"def {test}(" in (ROOT / "tests" / path).read_text(), (cls, path, test)


def test_checkpoint_steps_returns_for_any_count():
    """The checkpoint grid is found in bounded time for any count (it searched one point at
    a time: checkpoint_steps(10**6, 10**5) did not return)."""
    import subprocess

    code = ("from twolayer.train import checkpoint_steps as c; import numpy as np\n"
            "for m, n in [(10**6, 10**5), (1000, 1000), (50, 100)]:\n"
            "    g = c(m, n); assert g[0] == 0 and g[-1] == m and (np.diff(g) > 0).all()\n"
            "    assert len(g) == min(n, m + 1), (m, n, len(g))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
