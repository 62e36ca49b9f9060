"""Boundary location: the bisection core on closed-form metrics (tolerance reached in the
promised rounds, every flag), the spec's bad fields, and a tiny real patch_cnn search that
resumes without training and agrees with the crossing read off a full grid."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import twolayer
from twolayer import store
from twolayer import boundaries as boundary
from twolayer.boundaries import Search, locate
from twolayer.config import ConfigError

os.environ.setdefault("TWOLAYER_PROGRESS", "0")


def sigmoid_metric(xstar, s=0.3, seeds=1, noise=0.0, rising=False):
    """A harmful-to-benign curve 0.5 -> 0.1 (or back) with its level-0.3 crossing at xstar[p]."""
    rng = np.random.default_rng(1)
    offsets = noise * rng.standard_normal(seeds)

    def f(p, xs):
        z = (xs - xstar[p]) / s if not isinstance(s, str) else np.log(xs / xstar[p]) / 0.1
        g = 0.1 + 0.4 / (1 + np.exp(z if not rising else -z))
        return g[:, None] + offsets[None, :]
    return f


@pytest.mark.parametrize("search, xstar", [
    (Search(axis="snr", bracket=(0.0, 9.9), tolerance=0.1, level=0.3, coarse=2), [2.0, 4.321, 7.7]),
    (Search(axis="snr", bracket=(0.0, 9.9), tolerance=0.1, level=0.3, coarse=3), [0.4, 5.5, 9.5]),
    (Search(axis="snr", bracket=(0.0, 8.0), tolerance=0.01, level="midpoint", coarse=5,
            direction="decreasing"), [1.234, 6.0]),
    (Search(axis="snr", bracket=(0.5, 500.0), tolerance=0.02, level=0.3, coarse=4, log=True,
            relative=True), [0.8, 3.3, 120.0]),
])
def test_bisection_reaches_the_tolerance_in_the_promised_rounds(search, xstar):
    f = sigmoid_metric(np.asarray(xstar), s="log" if search.log else 0.3)
    res, rounds = locate(search, f, len(xstar))
    lo, hi = search.bracket
    step = (hi / lo) ** (1 / (search.coarse - 1)) if search.log else (hi - lo) / (search.coarse - 1)
    # the promised number: the scan, then ceil(log2(scan step / tolerance)) bisection rounds
    promised = (search.rounds_needed(lo, lo * step) if search.log
                else search.rounds_needed(0.0, step))
    if search.log:
        assert promised == math.ceil(math.log2(math.log(step) / math.log1p(search.tolerance)))
    else:
        assert promised == math.ceil(math.log2(step / search.tolerance))
    assert rounds == 1 + promised
    for r, x in zip(res, xstar):
        assert r["flag"] == "ok" and r["resolved"] and r["rounds"] == promised
        # the exact crossing of the level used (the midpoint level differs a bit from 0.3)
        shift = math.log(0.4 / (r["level"] - 0.1) - 1)
        x = x * math.exp(0.1 * shift) if search.log else x + 0.3 * shift
        assert r["lo"] <= x <= r["hi"]
        assert search.width(r["lo"], r["hi"]) <= search.tolerance * (1 + 1e-9)
        assert r["probes"] == search.coarse + promised
        if search.log:
            assert abs(r["crossing"] / x - 1) <= search.tolerance
        else:
            assert abs(r["crossing"] - x) <= search.tolerance


def test_an_increasing_metric_and_the_direction_found_from_the_scan():
    search = Search(axis="snr", bracket=(0.0, 10.0), tolerance=0.05, level=0.3)
    res, _ = locate(search, sigmoid_metric(np.array([3.0]), rising=True), 1)
    assert res[0]["sign"] == 1 and abs(res[0]["crossing"] - 3.0) < 0.05


def test_flags_per_point_and_the_others_go_on():
    xstar = np.array([3.0, 50.0, 0.0, 5.0])  # ok; never crossed (beyond hi); bumpy; diverged

    def f(p, xs):
        g = 0.1 + 0.4 / (1 + np.exp((xs - xstar[p]) / 0.3))
        if p == 2:  # harmful, benign at 3, harmful again at 6, benign at 9
            g = np.where((xs < 3) | ((xs > 6) & (xs < 9)), 0.5, 0.1)
        if p == 3:
            g = np.where(xs > 4, np.nan, g)
        return g[:, None] * np.ones((1, 2))
    search = Search(axis="snr", bracket=(0.0, 10.0), tolerance=0.1, level=0.3, coarse=5,
                    direction="decreasing")
    res, _ = locate(search, f, 4)
    assert [r["flag"] for r in res] == ["ok", "never_crossed", "not_monotone", "diverged"]
    assert abs(res[0]["crossing"] - 3.0) < 0.1
    assert np.isnan(res[1]["crossing"]) and res[1]["probes"] == 5  # the scan alone
    assert 2.5 - 0.1 <= res[2]["crossing"] <= 5.0  # the first crossing, still estimated
    assert res[3]["probes"] == 5 and np.isnan(res[3]["crossing"])
    # a bracket of length zero: one probe, flagged, nothing searched
    empty = Search(axis="snr", bracket=(2.0, 2.0), tolerance=0.1, level=0.3)
    res, rounds = locate(empty, f, 1)
    assert res[0]["flag"] == "empty_bracket" and res[0]["probes"] == 1 and rounds == 1
    # a bisection midpoint outside the values at its bracket's ends: not monotone
    spike = lambda p, xs: np.where(np.abs(xs - 5.0) < 1e-9, 0.9,  # noqa: E731
                                   np.where(xs < 7.0, 0.5, 0.1))[:, None]
    res, _ = locate(Search(axis="snr", bracket=(0.0, 10.0), tolerance=0.1, level=0.3, coarse=2),
                    spike, 1)
    assert res[0]["flag"] == "not_monotone" and abs(res[0]["crossing"] - 7.0) <= 0.1


def test_interval_from_the_seeds_holds_the_truth_and_the_bracket():
    # per-seed curves shifted by +-0.2 in x: the mean crosses near 4, seeds spread the crossing
    shifts = np.linspace(-0.2, 0.2, 8)

    def f(p, xs):
        return 0.1 + 0.4 / (1 + np.exp((xs[:, None] - 4.0 - shifts[None, :]) / 0.3))
    search = Search(axis="snr", bracket=(0.0, 10.0), tolerance=0.02, level=0.3)
    r = locate(search, f, 1)[0][0]
    assert r["ci_lo"] <= r["lo"] <= r["crossing"] <= r["hi"] <= r["ci_hi"]
    assert r["ci_lo"] < 4.0 < r["ci_hi"] and r["ci_hi"] - r["ci_lo"] < 0.4
    assert r["ci_hi"] - r["ci_lo"] > r["hi"] - r["lo"]  # the seed spread widens it


@pytest.mark.parametrize("table, message", [
    ({"bracket": [0, 1], "tolerance": 0.1}, "needs 'axis'"),
    ({"axis": "signal_norm", "bracket": [2, 1], "tolerance": 0.1}, "lo <= hi"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0}, "'tolerance' must be a number > 0"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1, "log": True}, "lo > 0"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1, "coarse": 1}, "'coarse'"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1, "direction": "up"}, "direction"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1, "tolerence": 1}, "did you mean"),
    ({"axis": "width", "bracket": [1, 8], "tolerance": 1}, "batched numeric"),
    ({"axis": "signal_nrom", "bracket": [0, 1], "tolerance": 0.1}, "not a setting"),
    ({"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1, "var": "test_eror"},
     "did you mean 'test_error'"),
])
def test_bad_boundary_fields_are_one_line_config_errors(table, message):
    spec = {"name": "b", "family": "patch_cnn", "axes": {"seed": [0]}, "boundary": table}
    with pytest.raises(ConfigError, match=message) as err:
        boundary.load(spec)
    assert "\n" not in str(err.value)


def test_the_searched_axis_may_not_also_be_swept():
    spec = {"name": "b", "family": "patch_cnn", "axes": {"signal_norm": [1.0, 2.0]},
            "boundary": {"axis": "signal_norm", "bracket": [0, 1], "tolerance": 0.1}}
    with pytest.raises(ConfigError, match="is searched"):
        boundary.load(spec)


# ---------------------------------------------------------------- a tiny real search
TINY = {"name": "tiny-boundary", "family": "patch_cnn",
        "base": {"n_train": 10, "n_test": 100, "width": 4, "label_noise": 0.1,
                 "noise": "isotropic", "pooling": "mean", "bias": True,
                 "hidden_init": "pytorch", "output_init_scale": 1.0,
                 "output_trainable": False},
        "train": {"learning_rate": 0.1, "max_steps": 20, "n_checkpoints": 2},
        "axes": {"input_dim": [100, 120], "seed": [0, 1]},
        "boundary": {"axis": "signal_norm", "level": 0.3, "bracket": [0.0, 6.4], "coarse": 3,
                     "tolerance": 0.4}}


@pytest.mark.slow  # about 45 s on the shared 2-core machine: several compiled programs
def test_tiny_real_search_resumes_without_training(tmp_path):
    out = tmp_path / "b"
    ds = twolayer.boundary(TINY, out, shard_size=4)
    assert list(ds.flag.values) == ["ok", "ok"]
    assert ds.crossing.dims == ("input_dim",) and ds.probe_metric.dims == ("input_dim", "probe", "seed")
    assert (ds.hi - ds.lo <= 0.4 + 1e-9).all() and int(ds.attrs["boundary_rounds"]) == 4
    info = store.info(out)  # what `twolayer info` prints for a search's folder
    assert info["kind"] == "boundary" and info["result"] and info["dims"]["input_dim"] == 2
    assert [r["round"] for r in info["rounds"]] == ["0", "1", "2", "3"]
    assert all(r["runs_done"] == r["runs_total"] > 0 for r in info["rounds"])
    # rerun: every round's shards are found done, nothing is trained, the result is equal
    lines = []
    again = twolayer.boundary(TINY, out, shard_size=4, log=lines.append)
    assert not any(line.startswith("shard") and "skipped" not in line for line in lines)
    assert sum("skipped" in line for line in lines) >= 4
    np.testing.assert_array_equal(again.probe_metric.values, ds.probe_metric.values)
    # a killed search (the last round's folder lost): only that round is trained again
    import shutil
    last = out / "rounds" / str(int(ds.attrs["boundary_rounds"]) - 1)
    shutil.rmtree(last)
    lines = []
    third = twolayer.boundary(TINY, out, shard_size=4, log=lines.append)
    assert sum("skipped" in line for line in lines) >= 3
    np.testing.assert_array_equal(third.crossing.values, ds.crossing.values)


@pytest.mark.slow  # the grid: 68 more runs
def test_tiny_real_search_agrees_with_the_grid():
    ds = twolayer.boundary(TINY, shard_size=4)
    # the full grid at the same settings (the same seeds: the same runs at equal values):
    # its crossing (first grid pair around the level, interpolated) within one grid step
    grid = dict(TINY, axes={"input_dim": [100, 120],
                            "signal_norm": np.arange(0.0, 6.41, 0.4).tolist(), "seed": [0, 1]})
    grid.pop("boundary")
    g = twolayer.sweep(grid, shard_size=4).test_error.isel(step=-1).mean("seed")
    for d in (100, 120):
        row = g.sel(input_dim=d).values
        xs = g.signal_norm.values
        i = int(np.flatnonzero((row[:-1] > 0.3) & (row[1:] <= 0.3))[0])
        cross = xs[i] + (0.3 - row[i]) / (row[i + 1] - row[i]) * (xs[i + 1] - xs[i])
        assert abs(float(ds.crossing.sel(input_dim=d)) - cross) <= 0.4, (d, cross)


def test_a_folder_of_another_search_is_refused(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "other.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        twolayer.boundary(TINY, out, shard_size=4)


def _points_dataset(slopes, noise=0.0):
    """A boundary Dataset by hand: crossing = 2 x^slope per hue, intervals +-5 %."""
    import xarray as xr

    x = np.array([100, 1000, 10000, 100000])
    hue = np.array([1.0, 0.01])
    c = 2.0 * x[None, :] ** np.asarray(slopes)[:, None]
    c = c * np.exp(noise * np.random.default_rng(0).standard_normal(c.shape))
    flag = np.full(c.shape, "ok")
    flag[1, 0] = "never_crossed"
    return xr.Dataset({"crossing": (("kappa", "input_dim"), c),
                       "ci_lo": (("kappa", "input_dim"), c * 0.95),
                       "ci_hi": (("kappa", "input_dim"), c * 1.05),
                       "lo": (("kappa", "input_dim"), c * 0.99),
                       "hi": (("kappa", "input_dim"), c * 1.01),
                       "rounds": (("kappa", "input_dim"), np.full(c.shape, 6)),
                       "runs": (("kappa", "input_dim"), np.full(c.shape, 90)),
                       "level": (("kappa", "input_dim"), np.full(c.shape, 0.3)),
                       "flag": (("kappa", "input_dim"), flag)},
                      coords={"kappa": hue, "input_dim": x},
                      attrs={"boundary_axis": "signal_norm", "boundary_var": "test_error",
                             "title": "hand-made"})


def test_fitted_exponents_and_their_intervals():
    fit = boundary.fit_exponent(_points_dataset([0.25, 0.5]), "input_dim")
    np.testing.assert_allclose(fit.slope.values, [0.25, 0.5], atol=1e-12)
    assert list(fit.points.values) == [4, 3]  # the flagged point is left out
    # +-5 % per point over three decades: an interval of about +-0.03 around the slope
    assert ((fit.slope_lo < fit.slope) & (fit.slope < fit.slope_hi)).all()
    assert (fit.slope_hi - fit.slope_lo < 0.08).all() and (fit.slope_hi - fit.slope_lo > 0.01).all()
    text = boundary.fit_table(_points_dataset([0.25, 0.5]), "input_dim")
    assert "0.250" in text and "0.500" in text and text.count("\n") == 3


def test_boundary_figure_draws_points_fits_and_reference_slopes(tmp_path):
    from twolayer import plots

    ds = _points_dataset([0.25, 0.5], noise=0.02)
    fig = plots.figure(ds, {"kind": "boundary", "x": "input_dim", "hue": "kappa",
                            "slopes": [{"label": "Kou", "slope": 0.25}]})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("kappa = 1: 0.2") for lab in labels), labels
    assert any("1 flagged" in lab for lab in labels) and any(lab.startswith("Kou: 0.25") for lab in labels)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="need a hue or a panel"):
        plots.figure(ds, {"kind": "boundary", "x": "input_dim"})


@pytest.mark.parametrize("table, message", [
    ('bracket = [0.0, 1.0]\ntolerance = 0.1', "needs 'axis'"),
    ('axis = "signal_norm"\nbracket = [0.0, 1.0]\ntolerance = -1', "'tolerance' must be"),
])
def test_cli_bad_boundary_spec_is_one_line_exit_2(tmp_path, capsys, table, message):
    from twolayer import cli

    spec = tmp_path / "b.toml"
    spec.write_text(f'name = "b"\nfamily = "patch_cnn"\n[axes]\nseed = [0]\n[boundary]\n{table}\n')
    assert cli.main(["boundary", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    # a plain sweep spec is not a boundary search
    spec.write_text('name = "b"\nfamily = "patch_cnn"\n[axes]\nseed = [0]\n')
    assert cli.main(["boundary", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "no [boundary] table" in capsys.readouterr().err
