"""Invariants over generated input (hypothesis): a valid sweep spec trains and merges into
the dims its axes give; an invalid one (one bad change to a valid spec) exits 2 with one
line and writes nothing; nothing is ever written outside the output folder; API calls with
numpy scalars work as with Python ones, wrong argument types give one-line ``ConfigError``s.
Also: the same seed draws the same experiment in every dtype.

The default suite runs a bounded number of examples (``FAST``, under a minute); the slow
step runs more (``SLOW``). Each test counts the examples it ran; the counts are printed at
the end of the module's tests ("hypothesis cases: ...")."""
from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import twolayer
from twolayer import cli
from twolayer.config import ConfigError, make_config
from twolayer.families import get as get_family
from twolayer.train import run_values

CASES: Counter = Counter()

# no shrinking: a failure is reported as generated (bounded time; the case is printed)
COMMON = dict(deadline=None, database=None, derandomize=True, report_multiple_bugs=False,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAST = settings(max_examples=100, **COMMON)
FAST_TRAIN = settings(max_examples=2, **COMMON)
SLOW = settings(max_examples=400, **{**COMMON, "derandomize": False})
SLOW_TRAIN = settings(max_examples=25, **{**COMMON, "derandomize": False})


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    line = "hypothesis cases: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and CASES:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)


# ---------------------------------------------------------------- specs
def toml(spec: dict) -> str:
    """A generated spec as TOML (scalars, lists, tables, arrays of tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                                "-inf" if v == -math.inf else repr(v))
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, str):
            return json.dumps(v)
        return str(v)

    lines = [f"{k} = {value(v)}" for k, v in spec.items() if not isinstance(v, (dict, list))
             or (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for k, v in spec.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for table in v:
                lines.append(f"[[{k}]]")
                lines += [f"{kk} = {value(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


def unique(elements, max_size=3):
    return st.lists(elements, min_size=1, max_size=max_size, unique=True)


# the static settings stay fixed (one compiled program per padded batch size): examples
# differ in numbers, axes and figures
valid_specs = st.fixed_dictionaries({
    "name": st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True),
    "base": st.fixed_dictionaries({
        "width": st.just(2), "n_train": st.just(4), "sampling": st.just("gaussian"),
        "init_scale": st.floats(1e-4, 1.0)}),
    "train": st.fixed_dictionaries({
        "learning_rate": st.floats(0.01, 0.3), "max_steps": st.just(20),
        "n_checkpoints": st.just(4)}),
    "axes": st.fixed_dictionaries({}, optional={
        "seed": unique(st.integers(0, 2**31)),
        "imbalance": unique(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        "data_seed": st.one_of(unique(st.integers(0, 100)),
                               st.builds(lambda n: {"range": [0, n]}, st.integers(1, 3)))}),
    # curves draws with or without axes (error_vs, the default kind, needs an axis)
    "figure": st.lists(st.fixed_dictionaries({"kind": st.just("curves")}, optional={
        "dpi": st.integers(20, 80)}), max_size=2),
})

# one bad change each: (what it does to a valid spec, where the message comes from)
BAD = {
    "unknown-key": lambda s, v: s.update(frobnicate=v),
    "misspelled-base-key": lambda s, v: s["base"].update(widht=2),
    "wrong-type": lambda s, v: s["base"].update(width=str(v)),
    "negative-size": lambda s, v: s["base"].update(n_train=-abs(int(v)) - 1),
    "not-finite": lambda s, v: s["base"].update(init_scale=[math.nan, math.inf, -math.inf][v % 3]),
    "nan-in-list": lambda s, v: s["base"].update(
        target_a=[[math.nan], [1.0, math.nan], [-math.inf]][v % 3]),
    "integer-overflow": lambda s, v: s["train"].update(max_steps=2**53 + 1 + abs(int(v))),
    "too-many-checkpoints": lambda s, v: s["train"].update(n_checkpoints=1001 + abs(int(v))),
    "bad-choice": lambda s, v: s["train"].update(optimizer=f"sgd{v}"),
    "empty-axis": lambda s, v: s["axes"].update(seed=[]),
    "repeated-value": lambda s, v: s["axes"].update(seed=[abs(int(v))] * 2),
    "huge-axis": lambda s, v: s["axes"].update(seed={"range": [0, 10**9 + abs(int(v))]}),
    "name-is-a-path": lambda s, v: s.update(name=["../up", "/abs", "a/b", "", ".hidden"][v % 5]),
    "figure-file-is-a-path": lambda s, v: s.update(figure=[{"file": ["../x.png", "/tmp/x.png",
                                                                     "a/b.png", ""][v % 4]}]),
    "figure-kind": lambda s, v: s.update(figure=[{"kind": f"pie{v}"}]),
    "figure-dim": lambda s, v: s.update(figure=[{"x": f"nodim{v}"}]),
    "figure-dpi": lambda s, v: s.update(figure=[{"dpi": -abs(int(v))}]),
    "figure-run-on-axes": lambda s, v: (s["axes"].update(seed=[0, 1 + v]),
                                        s.update(figure=[{"kind": "run"}])),
    "zip-lengths": lambda s, v: s.update(zip=[{"init_scale": [0.1, 0.2], "learning_rate": [0.1]}]),
}


def tree(folder: Path, skip: Path | None = None) -> dict:
    return {str(p): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))
            if skip is None or not p.is_relative_to(skip)}


def swept(spec) -> dict:
    """The dims a valid spec's result has, with their sizes."""
    sizes = {}
    for name, v in spec.get("axes", {}).items():
        sizes[name] = len(range(*v["range"])) if isinstance(v, dict) else len(v)
    return sizes


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def check_valid(spec, tmp, capsys):
    path, out = tmp / "spec.toml", tmp / "out"
    path.write_text(toml(spec))
    before = tree(tmp)
    code, err = run_cli(["sweep", path, "--out", out, "--shard-size", 4], capsys)
    assert code == 0, err
    assert tree(tmp, skip=out) == before  # nothing written outside OUT
    ds = twolayer.load(out)
    for name, size in swept(spec).items():
        assert ds.sizes[name] == size
    assert np.isfinite(ds.train_loss.isel(step=0)).all()
    code, err = run_cli(["plot", out], capsys)
    assert code == 0, err
    assert tree(tmp, skip=out) == before
    files = {p.name for p in (out / "figures").iterdir()}
    assert {f["file"] for f in spec["figure"] if "file" in f} <= files


def check_invalid(spec, bad, value, tmp, capsys):
    spec = json.loads(json.dumps(spec))
    BAD[bad](spec, value)
    path, out = tmp / "spec.toml", tmp / "out"
    path.write_text(toml(spec))
    before = tree(tmp)
    code, err = run_cli(["sweep", path, "--out", out], capsys)
    assert code == 2, (bad, err)
    assert err.startswith("twolayer: error: ") and len(err.strip().splitlines()) == 1, err
    assert tree(tmp) == before  # nothing written, inside OUT or outside


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TWOLAYER_PROGRESS", "0")
    monkeypatch.setenv("TWOLAYER_CACHE_DIR", "0")
    monkeypatch.setenv("TWOLAYER_MAX_MEMORY", "8G")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fresh(tmp: Path, counter=[0]) -> Path:  # noqa: B006  (one folder per example)
    counter[0] += 1
    path = tmp / f"case{counter[0]}"
    path.mkdir()
    return path


@FAST_TRAIN
@given(spec=valid_specs)
def test_a_valid_spec_trains_and_merges(env, capsys, spec):
    CASES["valid spec"] += 1
    check_valid(spec, fresh(env), capsys)


@FAST
@given(spec=valid_specs, bad=st.sampled_from(sorted(BAD)), value=st.integers(0, 10**6))
def test_an_invalid_spec_exits_2_with_one_line_and_writes_nothing(env, capsys, spec, bad,
                                                                    value):
    CASES["invalid spec"] += 1
    check_invalid(spec, bad, value, fresh(env), capsys)


@pytest.mark.slow
@SLOW_TRAIN
@given(spec=valid_specs)
def test_many_valid_specs_train_and_merge(env, capsys, spec):
    CASES["valid spec (slow)"] += 1
    check_valid(spec, fresh(env), capsys)


@pytest.mark.slow
@SLOW
@given(spec=valid_specs, bad=st.sampled_from(sorted(BAD)), value=st.integers(0, 10**6))
def test_many_invalid_specs_exit_2(env, capsys, spec, bad, value):
    CASES["invalid spec (slow)"] += 1
    check_invalid(spec, bad, value, fresh(env), capsys)


# ---------------------------------------------------------------- the Python API
def as_numpy(value, kind):
    """A Python number as the numpy scalar type ``kind``."""
    return np.dtype(kind).type(value)


@FAST_TRAIN
@given(int_kind=st.sampled_from(["int64", "int32", "uint16"]),
       float_kind=st.sampled_from(["float64", "float32"]))
def test_numpy_scalars_are_taken_as_python_numbers(env, int_kind, float_kind):
    CASES["api numpy scalars"] += 1
    kw = dict(width=2, n_train=4, max_steps=20, n_checkpoints=4, sampling="gaussian")
    want = twolayer.run(**kw, learning_rate=0.25, init_scale=0.5, progress=False)
    got = twolayer.run(**{k: as_numpy(v, int_kind) if isinstance(v, int) else v
                          for k, v in kw.items()},
                       learning_rate=as_numpy(0.25, float_kind),  # exact in float32
                       init_scale=as_numpy(0.5, float_kind), progress=False)
    np.testing.assert_array_equal(got.train_loss.values, want.train_loss.values)
    spec = {"name": "np", "base": {"width": as_numpy(2, int_kind), "n_train": 4},
            "train": {"max_steps": 20, "n_checkpoints": 4},
            "axes": {"seed": np.arange(2, dtype=int_kind).tolist() if int_kind == "uint16"
                     else list(np.arange(2, dtype=int_kind)),
                     "imbalance": np.array([0.0, 0.5], dtype=float_kind)}}
    ds = twolayer.sweep(spec, fresh(env) / "out")
    assert list(ds.seed.values) == [0, 1] and list(ds.imbalance.values) == [0.0, 0.5]


WRONG_CALLS = {
    "sweep-spec-number": lambda v: twolayer.sweep(v),
    "sweep-spec-none": lambda v: twolayer.sweep(None),
    "sweep-out-number": lambda v: twolayer.sweep({"name": "x"}, out=v),
    "sweep-shard-size-text": lambda v: twolayer.sweep({"name": "x"}, shard_size=str(v)),
    "sweep-shard-size-float": lambda v: twolayer.sweep({"name": "x"}, shard_size=v + 0.5),
    "sweep-state-every-text": lambda v: twolayer.sweep({"name": "x"}, state_every=str(v)),
    "sweep-scale-number": lambda v: twolayer.sweep({"name": "x"}, scale=v),
    "sweep-max-memory-text": lambda v: twolayer.sweep({"name": "x"}, max_memory=f"{v}zb"),
    "sweep-executor-number": lambda v: twolayer.sweep({"name": "x"}, executor=v),
    "sweep-axes-not-a-table": lambda v: twolayer.sweep({"name": "x", "axes": [v]}),
    "sweep-figure-not-a-table": lambda v: twolayer.sweep({"name": "x", "figure": [v]}),
    "run-family-number": lambda v: twolayer.run(v),
    "run-setting-list": lambda v: twolayer.run(width=[v]),
    "run-setting-dict": lambda v: twolayer.run(learning_rate={"v": v}),
    "run-out-number": lambda v: twolayer.run(out=v),
    "run-numpy-array-setting": lambda v: twolayer.run(width=np.array([v, v])),
    "load-number": lambda v: twolayer.load(v),
    "load-missing": lambda v: twolayer.load(f"no-such-folder-{v}"),
    "reproduce-number": lambda v: twolayer.reproduce(v, "out"),
}


@FAST
@given(call=st.sampled_from(sorted(WRONG_CALLS)), value=st.integers(1, 1000))
def test_wrong_argument_types_give_one_line_config_errors(env, call, value):
    CASES["api wrong types"] += 1
    folder = fresh(env)
    before = tree(env)
    with pytest.raises(ConfigError) as err:
        WRONG_CALLS[call](value)
    assert "\n" not in str(err.value) and str(err.value)
    assert tree(env) == before, call


# ---------------------------------------------------------------- precision
@pytest.mark.parametrize("family", ["single_neuron", "matrix_factorization",
                                    pytest.param("patch_cnn", marks=pytest.mark.slow)])
def test_the_same_seed_draws_the_same_experiment_in_every_dtype(family):
    """Data and initialization of a float32 run are the float64 run's, rounded (both are
    drawn in float64): a dtype comparison compares one experiment."""
    fam = get_family(family)
    drawn = {}
    for dtype in ("float64", "float32"):
        cfg = make_config(fam.Config, {"family": family, **fam.example, "dtype": dtype,
                                       "seed": 3})
        setup = jax.jit(fam.setup, static_argnums=0)  # eager op-by-op dispatch is slow
        params, data, _ = setup(cfg, run_values(cfg))
        drawn[dtype] = {**{f"params/{k}": v for k, v in params.items()},
                        **{f"data/{k}": v for k, v in data.items()}}
    for name, v64 in drawn["float64"].items():
        v32 = np.asarray(drawn["float32"][name])
        if np.issubdtype(v32.dtype, np.floating):
            assert v32.dtype == np.float32, name
            np.testing.assert_allclose(v32, np.asarray(v64), rtol=2e-5, atol=1e-6,
                                       err_msg=name)


# ---------------------------------------------------------------- settings' identity
setting_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0, 1.0, 0.5])
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(["a", "b", "1"]),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple),
    max_leaves=6)


@FAST
@given(a=setting_values, b=setting_values)
def test_settings_are_alike_exactly_when_their_json_is(a, b):
    """``store.settings_attrs`` tells shared settings from varying ones by a hashable key
    instead of JSON text: equal keys exactly when ``json.dumps`` writes the values alike
    (1, 1.0 and true differ; -0.0 is not 0.0; a tuple is a list)."""
    from twolayer.store import _json_key, settings_attrs

    CASES["settings identity"] += 1
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (_json_key(a) == _json_key(b)) == same
    _, varying = settings_attrs([{"x": a}, {"x": b}])
    assert (varying == []) == same


def test_checked_values_are_remembered_exactly():
    """``make_config`` remembers checked scalar settings (a grid repeats them in every run):
    a remembered 0.0 does not turn a later -0.0 into 0.0, nor 1 into True, and a bad value
    is refused every time."""
    fam = get_family("patch_cnn")
    base = {"family": "patch_cnn", **{k: v for k, v in fam.example.items() if k != "snr"}}
    for x in (0.0, -0.0, 0.0):
        cfg = make_config(fam.Config, {**base, "signal_norm": x})
        assert math.copysign(1.0, cfg.signal_norm) == math.copysign(1.0, x)
    assert make_config(fam.Config, {**base, "width": 1}).width == 1
    with pytest.raises(ConfigError):
        make_config(fam.Config, {**base, "bias": 1})
    for _ in range(2):
        with pytest.raises(ConfigError, match="must be >= 0"):
            make_config(fam.Config, {**base, "signal_norm": -1.0})
