"""Every shipped preset runs end to end at scale "tiny" and draws its figures; the plot logic
(clipping, threshold lines, panel titles, one file per figure spec) is checked on small
hand-made Datasets."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr

import twolayer
from twolayer import plots, presets, store
from twolayer.config import make_config, to_dict
from twolayer.families import get as get_family

os.environ.setdefault("TWOLAYER_PROGRESS", "0")

EXPECTED_DIMS = {  # the swept dims, in spec order, then step (gradient flow: time)
    "fig1-fixed": ("n_train", "init_scale", "seed", "step"),
    "fig1-random": ("n_train", "init_scale", "seed", "step"),
    "fig2": ("init_scale", "step"),
    "fig3": ("seed", "step"),
    "fig3-flow": ("seed", "time"),
    "fig4": ("n_train", "data_seed", "imbalance", "step"),
    "fig4-flow": ("n_train", "data_seed", "imbalance", "time"),
    "fig5": ("init_scale", "step"),
    "fig6": ("width", "step"),
    "fig9": ("data_seed", "imbalance", "n_train", "step"),
    "fig9-flow": ("n_train", "data_seed", "imbalance", "time"),
    "kou2023-heatmap": ("input_dim", "signal_norm", "seed", "step"),
    "kou2023-demo": ("seed", "step"),
    "init-matters-dynamics": ("output_trainable", "hidden_init_scale", "output_init_scale", "seed",
                              "step"),
    "init-matters-phase": ("output_trainable", "output_init_scale", "n_train", "snr", "seed", "step"),
    "cao2022-phase": ("n_train", "snr", "seed", "step"),
    "meng2024-xor": ("xor_cosine", "n_train", "signal_norm", "seed", "step"),
    "matrix-completion": ("target_rank", "n_train", "data_seed", "step"),
    # boundary searches: the dims of the boundary points (the seed axis is averaged)
    "boundary-d-scaling": ("activation", "input_dim", "output_init_scale"),
    "boundary-n-scaling": ("activation", "n_train", "output_init_scale"),
    "boundary-cao-n-scaling": ("n_train",),
}


def test_every_preset_is_listed():
    assert set(EXPECTED_DIMS) == set(presets.names())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """reproduce(name) at scale tiny, once per preset for the whole module."""
    done = {}

    def get(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            done[name] = twolayer.reproduce(name, out / name, scale="tiny")
        return done[name]
    return get


# the slowest presets at tiny scale run with the slow tests: fig9-flow (about 20 s) and the
# boundary searches (about 45 s each on the shared machine: a compiled program per round size)
# the slow step runs these (10-45 s each at tiny scale; the default suite keeps kou2023-*
# for the patch_cnn family)
SLOW_PRESETS = ("fig9-flow", "boundary-d-scaling", "boundary-n-scaling", "boundary-cao-n-scaling",
                "init-matters-phase",
                # single-neuron presets whose kinds and engine paths fig2..fig5 also cover
                # (10-15 s each; the default suite was at 11 min on 2 cores)
                "fig1-fixed", "fig1-random", "fig4-flow", "fig9",
                "init-matters-dynamics", "cao2022-phase", "meng2024-xor")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in SLOW_PRESETS else n for n in sorted(EXPECTED_DIMS)])
def test_preset_runs_at_tiny_scale_and_draws(tiny, name):
    ds, paths = tiny(name)
    dims = tuple(d for d in ds["crossing" if "crossing" in ds else "train_loss"].dims)
    assert dims == EXPECTED_DIMS[name]
    spec = json.loads(ds.attrs["sweep"])
    assert len(paths) == len(spec["figure"]) >= 1
    for path, fig_spec in zip(paths, spec["figure"]):
        assert path.name == fig_spec["file"] and path.parent.name == "figures"
        assert path.exists() and path.stat().st_size > 20_000
    assert ds.attrs["scale"] == "tiny"


def test_fig2_zips_seed_onto_init_scale(tiny):
    ds, _ = tiny("fig2")
    assert ds["seed"].dims == ("init_scale",)
    assert list(ds["seed"].values) == list(range(ds.sizes["init_scale"]))


def test_dynamics_bottom_row_uses_the_gd_time_shift(tiny):
    ds, _ = tiny("fig2")
    spec = json.loads(ds.attrs["sweep"])["figure"][0]
    fig = plots.figure(ds, spec)
    bottom = fig.axes[len(fig.axes) // 2]  # first panel of the second row: the shifted loss
    eta, g = 0.01, ds["g_norm"].values
    for line, alpha, gk in zip(bottom.get_lines(), ds["init_scale"].values, g):
        shift = np.log(1 / alpha) / np.log1p(eta * gk)
        np.testing.assert_allclose(line.get_xdata(), ds["step"].values - shift)


def test_fig6_learned_functions_have_the_grid(tiny):
    ds, _ = tiny("fig6")
    assert ds.sizes["x_grid"] == 201
    assert ds["f_grid"].dims == ("width", "x_grid")


# ---------------------------------------------------------------- plot logic on fake data
def fake(sweep: dict, values: np.ndarray, dims: tuple[str, ...], coords: dict) -> xr.Dataset:
    """A merged-looking Dataset: test_error over ``dims`` + step (2 checkpoints)."""
    v = np.stack([np.full_like(values, 0.5), values], axis=-1)
    ds = xr.Dataset({"test_error": (dims + ("step",), v)},
                    coords={**coords, "step": [0, 100]})
    ds["diverged"] = (dims, ~np.isfinite(values))
    return with_settings(ds, sweep)


def with_settings(ds, sweep: dict) -> xr.Dataset:
    """The attributes a sweep's result carries: every setting of the resolved config (as
    ``store.merge`` writes them) and the provenance."""
    fam = get_family(sweep["family"])
    cfg = make_config(fam.Config, {**sweep.get("base", {}), **sweep.get("train", {})})
    attrs, _ = store.settings_attrs([json.loads(json.dumps(to_dict(cfg), default=str))])
    ds.attrs.update(attrs, title=sweep.get("name", "fake"), scale="tiny", family=fam.name,
                    sweep=json.dumps(sweep))
    return ds


def n_sweep(input_dim=1, threshold=1e-8, figure=None):
    return {"name": "fake", "family": "single_neuron",
            "base": {"input_dim": input_dim, "bias": True, "width": 2,
                     "recovery_threshold": threshold,
                     "sampling": "fixed" if input_dim == 1 else "gaussian"},
            "figure": figure or [{"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                                  "file": "a.png"}]}


def _ys(ax):
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()
          if line.get_gid() is None]
    ys += [np.asarray(c.get_offsets())[:, 1] for c in ax.collections if c.get_gid() is None]
    return np.concatenate(ys) if ys else np.array([])


def test_errors_are_clipped_at_the_recovery_threshold():
    rng = np.random.default_rng(0)
    vals = 10.0 ** rng.uniform(-30, 0, size=(5, 3, 4))
    ds = fake(n_sweep(threshold=1e-7), vals, ("n_train", "init_scale", "seed"),
              {"n_train": [2, 3, 4, 5, 6], "init_scale": [1e-20, 0.1, 1.0], "seed": range(4)})
    for spec in ({"kind": "error_vs", "x": "n_train", "hue": "init_scale", "reduce": "median",
                  "clip": "recovery_threshold"},
                 {"kind": "error_vs", "x": "init_scale", "panel": "n_train", "points": "seed",
                  "clip": "recovery_threshold"}):
        fig = plots.figure(ds, spec)
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:  # a hidden panel, or the legend's slot
                continue
            ys = _ys(ax)
            assert ys.size and np.nanmin(ys) >= 1e-7
            clip = [ln for ln in ax.get_lines() if ln.get_gid() == "clip"]
            assert len(clip) == 1 and clip[0].get_ydata()[0] == pytest.approx(1e-7)
            assert ax.get_yscale() == "log"
    legend = fig.legends[0] if fig.legends else fig.axes[-1].get_legend()  # in a spare slot
    assert legend.get_texts()[-1].get_text() == "recovery threshold = $10^{-7}$"
    # a number clips there; no clip: nothing is clipped
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale"})
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "clip"]
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                            "clip": 1e-3})
    assert np.nanmin(_ys(fig.axes[0])) >= 1e-3


def _vlines(ax):
    return {ln.get_gid().split(":")[1]: ln.get_xdata()[0] for ln in ax.get_lines()
            if (ln.get_gid() or "").startswith("threshold:")}


@pytest.mark.parametrize("input_dim, expected", [(1, (3, 4, 5)), (3, (5, 6, 9))])
def test_threshold_lines_where_x_is_n_train(input_dim, expected):
    ns = [2, 3, 4, 5, 6] if input_dim == 1 else [5, 6, 7, 8, 9, 10]
    ds = fake(n_sweep(input_dim), np.full((len(ns), 2), 0.1), ("n_train", "init_scale"),
              {"n_train": ns, "init_scale": [1e-20, 1.0]})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                            "overlays": ["sample_sizes"]})
    lines = _vlines(fig.axes[0])
    assert (lines["optimistic"], lines["separation_q2"], lines["separation_q1"]) == expected
    # not asked for, or x is something else: no threshold lines
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale"})
    assert not _vlines(fig.axes[0])
    fig = plots.figure(ds, {"kind": "error_vs", "x": "init_scale", "panel": "n_train",
                            "overlays": ["sample_sizes"]})
    assert not _vlines(fig.axes[0])


def test_a_family_draws_only_its_own_overlays():
    """A patch_cnn sweep over n_train: no single-neuron thresholds, and asking for them is
    refused before anything is drawn."""
    sweep = {"name": "fake", "family": "patch_cnn", "base": {}}
    ds = fake(sweep, np.full((3, 2), 0.1), ("n_train", "snr"),
              {"n_train": [10, 20, 40], "snr": [0.1, 0.2]})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "snr"})
    assert not _vlines(fig.axes[0])
    assert fig.legends[0].get_texts()[0].get_text() == "SNR = 0.1"
    with pytest.raises(ValueError, match="unknown overlay 'sample_sizes' for family 'patch_cnn'"):
        plots.figure(ds, {"kind": "error_vs", "x": "n_train", "overlays": ["sample_sizes"]})
    with pytest.raises(ValueError, match="unknown figure kind 'dynamics'"):
        plots.figure(ds, {"kind": "dynamics"})


def test_panel_titles_name_the_thresholds():
    ds = fake(n_sweep(), np.full((5, 2), 0.1), ("n_train", "imbalance"),
              {"n_train": [2, 3, 4, 5, 6], "imbalance": [0.0, 1.0]})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "imbalance", "panel": "n_train",
                            "overlays": ["sample_sizes"]})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.axison]
    assert titles == ["$n$ = 2 (below optimistic)", "$n$ = 3 (optimistic)",
                      "$n$ = 4 (separation Q2)", "$n$ = 5 (separation Q1)",
                      "$n$ = 6 (all minima perfect)"]
    assert [ax for ax in fig.axes if ax.axison][-1].get_xlabel() == r"initial imbalance $\tilde c$"
    assert fig.axes[0].get_ylabel() == "final test error (MSE)"


def test_diverged_runs_are_marked_not_plotted():
    vals = np.array([[1e-3, np.inf], [1e-12, 1e-2]])
    ds = fake(n_sweep(), vals, ("n_train", "init_scale"),
              {"n_train": [3, 4], "init_scale": [1e-20, 1.0]})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale"})
    ax = fig.axes[0]
    assert np.all(np.isfinite(_ys(ax)) | np.isnan(_ys(ax)))
    marks = [c for c in ax.collections if c.get_gid() == "diverged"]
    assert len(marks) == 1 and len(marks[0].get_offsets()) == 1


def test_draw_all_writes_one_file_per_figure_spec(tmp_path):
    figs = [{"kind": "error_vs", "x": "n_train", "hue": "init_scale", "file": "one.png"},
            {"kind": "error_vs", "x": "init_scale", "panel": "n_train", "file": "two.png"}]
    ds = fake(n_sweep(figure=figs), np.full((2, 2), 0.1), ("n_train", "init_scale"),
              {"n_train": [3, 4], "init_scale": [1e-20, 1.0]})
    paths = plots.draw_all(ds, tmp_path / "figs")
    assert [p.name for p in paths] == ["one.png", "two.png"]
    assert all(p.exists() and p.stat().st_size > 5_000 for p in paths)
    # no figure spec: a default error_vs over the first dim
    sweep = n_sweep()
    del sweep["figure"]
    ds = fake(sweep, np.full((2, 2), 0.1), ("n_train", "init_scale"),
              {"n_train": [3, 4], "init_scale": [1e-20, 1.0]})
    paths = plots.draw_all(ds, tmp_path / "default")
    assert len(paths) == 1 and paths[0].exists()


def test_unknown_kind_and_dim_are_refused():
    ds = fake(n_sweep(), np.full((2, 2), 0.1), ("n_train", "init_scale"),
              {"n_train": [3, 4], "init_scale": [1e-20, 1.0]})
    with pytest.raises(ValueError, match="unknown figure kind"):
        plots.figure(ds, {"kind": "nope"})
    with pytest.raises(ValueError, match="not a dim"):
        plots.figure(ds, {"kind": "error_vs", "x": "imbalance"})


def test_benign_conditions_closed_forms():
    from twolayer.families.patch_cnn import theory

    # Kou: n |mu|^4 / (sigma^4 d), the same from snr (|mu| = snr sigma sqrt(d))
    q = theory.benign_quantity("kou", n_train=20, input_dim=400, noise_std=2.0, signal_norm=6.0)
    assert q == pytest.approx(20 * 6.0 ** 4 / (2.0 ** 4 * 400))
    snr = 6.0 / (2.0 * 20.0)
    assert theory.benign_quantity("kou", n_train=20, input_dim=400, noise_std=2.0,
                                  snr=snr) == pytest.approx(q)
    assert theory.benign_quantity("cao", n_train=50, input_dim=400, snr=0.1,
                                  relu_power=3.0) == pytest.approx(50 * 1e-3)
    assert theory.benign_quantity("small_init", n_train=50, input_dim=400,
                                  snr=0.1) == pytest.approx(0.5)
    assert "conjecture" in theory.CONDITIONS["small_init"][0]
    with pytest.raises(ValueError):
        theory.benign_quantity("kou", n_train=1, input_dim=1, snr=1.0, signal_norm=1.0)


def test_heatmap_overlay_is_drawn_where_the_condition_holds():
    """The Kou curve over (input_dim, signal_norm) lies on n |mu|^4 = C d, n from the spec."""
    dims, norms = np.arange(100, 1001, 100), np.linspace(0.5, 8.0, 16)
    err = xr.DataArray(np.random.default_rng(0).random((10, 16, 2)),
                       dims=("input_dim", "signal_norm", "step"))
    ds = xr.Dataset({"test_error": err}, coords={"input_dim": dims, "signal_norm": norms,
                                                 "step": [0, 10]})
    ds = with_settings(ds, {"family": "patch_cnn", "base": {"n_train": 20}})
    fig = plots.figure(ds, {"kind": "heatmap", "x": "input_dim", "y": "signal_norm",
                            "overlays": [{"name": "condition", "condition": "kou",
                                          "constant": 40.0}]})
    ax = fig.axes[0]
    paths = [p for c in ax.collections if c.get_gid() == "condition:kou"
             for p in c.get_paths() if len(p.vertices) > 10]
    assert paths, "no overlay contour drawn"
    x, y = paths[0].vertices.T
    np.testing.assert_allclose(20 * y ** 4 / x, 40.0, rtol=0.03)
    assert "Kou 2023" in fig.legends[0].get_texts()[0].get_text()  # one legend, under the panels


def _contours(ax, gid):
    return [p for c in ax.collections if c.get_gid() == gid
            for p in c.get_paths() if len(p.vertices) > 10]


def test_cao_overlay_lies_on_n_snr_to_the_q():
    """Cao's relu^q curve over (n_train, snr) is n SNR^q = C with q from the runs'
    relu_power (3 here, 2 in a second panel set): the closed form at every vertex."""
    ns, snrs = np.array([10, 20, 40, 80, 160]), np.geomspace(0.05, 0.6, 12)
    err = xr.DataArray(np.random.default_rng(1).random((5, 12, 2)),
                       dims=("n_train", "snr", "step"))
    for q in (3.0, 2.0):
        ds = xr.Dataset({"test_error": err}, coords={"n_train": ns, "snr": snrs, "step": [0, 10]})
        ds = with_settings(ds, {"family": "patch_cnn",
                                "base": {"activation": "relu_power", "relu_power": q}})
        fig = plots.figure(ds, {"kind": "heatmap", "x": "n_train", "y": "snr",
                                "overlays": [{"name": "condition", "condition": "cao",
                                              "constant": 0.25}]})
        ax = fig.axes[0]
        paths = _contours(ax, "condition:cao")
        assert paths, "no overlay contour drawn"
        x, y = paths[0].vertices.T
        np.testing.assert_allclose(x * y ** q, 0.25, rtol=0.02)
        assert "Cao 2022" in fig.legends[0].get_texts()[0].get_text()


def test_hidden_scale_overlay_marks_sigma0_sqrt_d():
    """A line at kappa = sigma_0 sqrt(d), per panel when sigma_0 is the panel."""
    kappas, sig0 = np.array([1e-4, 1e-2, 0.3, 3.0]), np.array([0.001, 0.01])
    err = xr.DataArray(np.full((2, 4, 2), 0.2), dims=("hidden_init_scale", "output_init_scale", "step"))
    ds = xr.Dataset({"test_error": err}, coords={"hidden_init_scale": sig0,
                                                 "output_init_scale": kappas, "step": [0, 10]})
    ds = with_settings(ds, {"family": "patch_cnn", "base": {"input_dim": 400}})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "output_init_scale", "panel": "hidden_init_scale",
                            "overlays": ["hidden_scale"], "yscale": "linear"})
    lines = [[ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "hidden_scale"]
             for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert lines == [[pytest.approx(0.001 * 20)], [pytest.approx(0.01 * 20)]]
