"""Publication figures: mathtext labels from the declarations, the paper style, the output
formats and the per-figure options with their check (on small hand-made Datasets)."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from matplotlib.mathtext import MathTextParser
from matplotlib.text import Text

from test_presets import fake, n_sweep
from twolayer import plots
from twolayer.config import ConfigError, field_specs
from twolayer.family import get, names
from twolayer.plots import common

PARSER = MathTextParser("path")


def parses(text: str) -> bool:
    """matplotlib renders ``text`` (its $...$ parts as mathtext) without an error."""
    PARSER.parse(text)
    return True


def raw_math_outside_dollars(text: str) -> str:
    """The characters of plain-text math left outside $...$ (e.g. "c~", "|mu|^4")."""
    plain = re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", text)
    return "".join(c for c in "^_|~<>" if c in plain)


def numeric_fields(fam):
    return [n for n, f in field_specs(fam.Config).items()
            if f.type in ("int", "float", int, float) and n != "family"]


@pytest.mark.parametrize("family", names())
def test_every_numeric_field_has_a_declared_mathtext_label(family):
    fam = get(family)
    fields = numeric_fields(fam)
    assert "n_train" in fields or family != "single_neuron"
    for name in fields:
        text = common.label(name, fam)
        assert text != name and (name in fam.labels or name in common.LABELS), name
        assert parses(text) and parses(common.symbol(name, fam))
        assert not raw_math_outside_dollars(text), (name, text)


@pytest.mark.parametrize("family", names())
def test_every_variable_label_is_mathtext_not_plain_text_math(family):
    fam = get(family)
    for v in fam.variables:
        for var in (v.name, f"polished_{v.name}"):
            text = common.var_label(fam, var)
            assert text and ("_" not in var or text != var) and parses(text), var
            assert not raw_math_outside_dollars(text), (var, text)
        assert v.scale in ("linear", "log", ""), v.name


def test_labels_of_the_issue():
    """The raw names the issue lists become symbols; c~ and the Kou quantity are mathtext."""
    assert common.label("snr", "patch_cnn") == r"SNR $\|\mu\| / (\sigma_p \sqrt{d})$"
    assert common.symbol("input_dim", "patch_cnn") == "$d$"
    assert common.symbol("n_train", "single_neuron") == "$n$"
    assert common.symbol("imbalance", "single_neuron") == r"$\tilde c$"
    from twolayer.families.patch_cnn import theory

    for text, _ in theory.CONDITIONS.values():
        assert parses(text) and not raw_math_outside_dollars(text)
    assert r"\|\mu\|^4" in theory.CONDITIONS["kou"][0]


def test_values_in_legends_are_powers_of_ten():
    assert common._fmt(1e-20) == "$10^{-20}$"
    assert common._fmt(2.5e-4) == r"$2.5\times10^{-4}$"
    assert common._fmt(-1e-6) == "$-10^{-6}$"
    assert common._fmt(0.25) == "0.25" and common._fmt(3) == "3"
    assert common.equals("init_scale", 1e-8, "single_neuron") == r"$\alpha$ = $10^{-8}$"


# ---------------------------------------------------------------- style
def _sweep_ds(figure=None, family="single_neuron", **kw):
    sweep = n_sweep(figure=figure) if family == "single_neuron" else {
        "name": "fake", "family": family, "base": {},
        "figure": figure or [{"kind": "error_vs", "x": "n_train", "hue": "snr"}]}
    hue = "init_scale" if family == "single_neuron" else "snr"
    vals = np.array([[0.3, 1e-12], [0.1, 1e-9], [0.02, 1e-15]]) if family == "single_neuron" \
        else np.array([[0.3, 0.2], [0.25, 0.1], [0.2, 0.05]])
    return fake(sweep, vals, ("n_train", hue), {"n_train": [3, 4, 5], hue: [1e-20, 1.0]
                                                 if family == "single_neuron" else [0.1, 0.2]})


def _texts(fig):
    fig.canvas.draw()  # tick labels exist once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_paper_style_fonts_and_no_suptitle(tmp_path):
    ds = _sweep_ds()
    for spec in ({"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                  "clip": "recovery_threshold", "overlays": ["sample_sizes"]},
                 {"kind": "error_vs", "x": "init_scale", "panel": "n_train"},
                 {"kind": "curves", "hue": "init_scale", "vars": ["test_error"]}):
        fig = plots.figure(ds, spec)
        assert fig.get_suptitle() == ""
        texts = _texts(fig)
        assert len(texts) > 3
        assert min(t.get_fontsize() for t in texts) >= 8, spec
        # a figure fits a journal's two columns
        assert fig.get_figwidth() <= common.WIDTHS["double"] + 1e-9
        # the lines take the colour-blind-safe palette
        colors = {ln.get_color() for ax in fig.axes for ln in ax.get_lines()
                  if ln.get_gid() is None and ln.get_label().startswith("$")}
        assert colors <= set(common.OKABE_ITO) and (colors or "hue" not in spec), colors
    # a title only when asked
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "title": "Figure 4"})
    assert fig.get_suptitle() == "Figure 4"
    # the talk style is larger
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "style": "talk"})
    assert min(t.get_fontsize() for t in _texts(fig)) >= 11


def test_png_at_300_dpi_and_pdf_svg_formats(tmp_path):
    from PIL import Image

    figs = [{"kind": "error_vs", "x": "n_train", "hue": "init_scale", "file": "a.png"},
            {"kind": "error_vs", "x": "n_train", "file": "b.png", "format": ["pdf", "svg"]}]
    ds = _sweep_ds(figure=figs)
    paths = plots.draw_all(ds, tmp_path / "f")
    assert [p.name for p in paths] == ["a.png", "b.pdf", "b.svg"]
    assert Image.open(paths[0]).info["dpi"][0] == pytest.approx(300, abs=1)
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    svg = paths[2].read_text()
    assert "<svg" in svg and "final test error" in svg  # text kept as text (svg.fonttype none)
    # the API's format replaces every figure's
    paths = plots.draw_all(ds, tmp_path / "g", format="svg")
    assert [p.name for p in paths] == ["a.svg", "b.svg"]
    # a file named .pdf is a PDF
    paths = plots.draw_all(_sweep_ds(figure=[{"kind": "error_vs", "x": "n_train",
                                              "file": "c.pdf"}]), tmp_path / "h")
    assert paths[0].name == "c.pdf" and paths[0].read_bytes()[:5] == b"%PDF-"


# ---------------------------------------------------------------- options
def test_label_size_legend_options():
    ds = _sweep_ds()
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                            "xlabel": "$n$", "ylabel": "error", "size": [3.0, 2.0],
                            "legend": "upper right"})
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$n$", "error")
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)
    assert ax.get_legend() is not None and not fig.legends
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                            "legend": "none", "size": "single"})
    assert not fig.legends and fig.axes[0].get_legend() is None
    assert fig.get_figwidth() == common.WIDTHS["single"]
    # a grid with an empty slot holds the legend there; without one, "spare" goes beside
    fig = plots.figure(ds, {"kind": "error_vs", "x": "init_scale", "panel": "n_train",
                            "clip": 1e-9})  # 3 panels: one row, no spare slot
    assert fig.legends and len(fig.axes) == 3
    fig = plots.figure(ds, {"kind": "error_vs", "x": "init_scale", "panel": "n_train",
                            "clip": 1e-9, "legend": "spare"})
    assert fig.legends
    fig = plots.figure(ds, {"kind": "curves", "vars": ["test_error"], "hue": "init_scale",
                            "legend": "spare"})
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "yscale": "linear",
                            "xscale": "log"})
    assert (fig.axes[0].get_yscale(), fig.axes[0].get_xscale()) == ("linear", "log")


@pytest.mark.parametrize("spec, words", [
    ({"kind": "error_vs", "x": "n_train", "colour": "red"}, "unknown option 'colour'"),
    ({"kind": "heatmap", "x": "a", "y": "b", "logx": True}, "unknown option 'logx'"),
    ({"kind": "dynamics", "hue": "init_scale", "bins": 3}, "unknown option 'bins'"),
    ({"kind": "error_vs", "format": "docx"}, "format 'docx'"),
    ({"kind": "error_vs", "size": "huge"}, "size must be"),
    ({"kind": "error_vs", "style": "nope"}, "unknown style 'nope'"),
    ({"kind": "error_vs", "yscale": "logit"}, "yscale must be"),
    ({"kind": "error_vs", "dpi": 0}, "'dpi' must be a number in (0, 2400]"),
    ({"kind": "error_vs", "xlabel": r"$\frac{1$"}, "not valid mathtext"),
    ({"kind": "error_vs", "legend": 3}, "legend must be"),
    ({"kind": "error_vs", "legend": "top right"}, "legend must be"),
    ({"kind": "error_vs", "reduce": "sum"}, "reduce must be"),
    ({"kind": "nope"}, "unknown figure kind 'nope'"),
])
def test_figure_options_are_checked_before_drawing(spec, words):
    """check_spec needs only the family (it runs before training); one line naming the key."""
    with pytest.raises(ConfigError, match=re.escape(words)) as err:
        plots.check_spec(spec, "single_neuron")
    assert "\n" not in str(err.value)
    # and plots.figure refuses it the same way
    with pytest.raises(ConfigError, match=re.escape(words)):
        plots.figure(_sweep_ds(), spec)


def test_every_shipped_figure_spec_passes_the_check():
    import tomllib

    from twolayer import presets

    for name in presets.names():
        spec = tomllib.loads(presets.path(name).read_text())
        assert spec.get("figure")
        for fig in spec["figure"]:
            plots.check_spec(fig, spec.get("family", "single_neuron"))


def test_sweep_check_hook_refuses_unknown_options_before_training():
    """plots.check_figures (called when a sweep is read) checks the options too, naming the
    figure by its number."""
    with pytest.raises(ConfigError, match=r"figure 2 \(error_vs\): unknown option 'colour'"):
        plots.check_figures(get("single_neuron"), ["n_train"],
                            [{"kind": "error_vs", "x": "n_train"},
                             {"kind": "error_vs", "x": "n_train", "colour": "red"}])
    plots.check_figures(get("single_neuron"), ["n_train"],
                        [{"kind": "error_vs", "x": "n_train", "format": ["png", "pdf"],
                          "size": "double", "style": "talk", "legend": "outside bottom"}])


def test_family_kinds_declare_their_options():
    for family in names():
        for kind, fn in get(family).figures.items():
            assert isinstance(getattr(fn, "options", None), tuple), (family, kind)


# ---------------------------------------------------------------- scales per metric
def test_classification_error_is_linear_and_not_clipped():
    """A patch_cnn test error (a probability) on a linear axis: no 1e-8 floor line even when
    a clip is asked; a regression error (single_neuron) on a log axis with it."""
    ds = _sweep_ds(family="patch_cnn")
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "snr",
                            "clip": "recovery_threshold"})
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert not [ln for ln in ax.get_lines() if ln.get_gid() == "clip"]
    ds = _sweep_ds()
    fig = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "hue": "init_scale",
                            "clip": "recovery_threshold"})
    assert fig.axes[0].get_yscale() == "log"
    assert [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "clip"]


def test_declared_scales():
    cnn, sn = get("patch_cnn"), get("single_neuron")
    assert cnn.table["test_error"].scale == "linear" and cnn.table["train_loss"].scale == "log"
    assert sn.table["test_error"].scale == "log"
    with pytest.raises(ConfigError, match="scale must be"):
        sn.replace(variables=tuple(dataclasses.replace(v, scale="logit") if v.name == "a" else v
                                   for v in sn.variables))


def test_heatmap_has_one_title_and_names_the_variable_on_the_colour_bar():
    import xarray as xr

    from test_presets import with_settings

    err = xr.DataArray(np.random.default_rng(0).random((4, 5, 2, 2)),
                       dims=("input_dim", "snr", "seed", "step"))
    ds = xr.Dataset({"test_error": err}, coords={"input_dim": [100, 200, 300, 400],
                                                 "snr": np.geomspace(0.01, 1, 5),
                                                 "seed": [0, 1], "step": [0, 10]})
    ds = with_settings(ds, {"family": "patch_cnn", "base": {"n_train": 20}})
    fig = plots.figure(ds, {"kind": "heatmap", "x": "input_dim", "y": "snr"})
    ax, cbar = fig.axes
    assert ax.get_title() == "" and fig.get_suptitle() == ""
    assert ax.get_ylabel() == common.label("snr", "patch_cnn")
    assert "test error" in cbar.get_ylabel() and "mean over seeds" in cbar.get_ylabel()
    # a log axis labels at most about six decades, no minor tick labels
    texts = [t.get_text() for t in ax.yaxis.get_ticklabels(minor=True) if t.get_visible()]
    assert not any(texts)


def _visible_labels(fig, axis):
    fig.draw_without_rendering()
    return [(lab.get_text(), lab.get_window_extent())
            for lab in axis.get_majorticklabels() + axis.get_minorticklabels()
            if lab.get_visible() and lab.get_text()]


def test_crowded_tick_labels_are_thinned_not_run_together(tmp_path):
    """fig6's widths 2, 3, 10, ..., 3000 as ticks on a narrow log axis, and a linear axis of
    large step counts: after saving, no two visible tick labels overlap, and an axis with room
    keeps every label."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(3.0, 1.6), layout="constrained")
    crowded, roomy = fig.subplots(1, 2)
    widths = [2, 3, 10, 30, 100, 300, 1000, 3000]
    crowded.plot(widths, widths)
    crowded.set_xscale("log")
    crowded.set_xticks(widths)
    crowded.xaxis.set_major_formatter(ScalarFormatter())
    crowded.xaxis.set_minor_formatter(NullFormatter())
    roomy.plot([0, 1], [0, 1])
    roomy.set_xticks([0, 1])
    before = len(_visible_labels(fig, crowded.xaxis))
    overlapping = lambda labs: [  # noqa: E731
        (a[0], b[0]) for i, a in enumerate(labs) for b in labs[i + 1:] if a[1].overlaps(b[1])]
    assert overlapping(_visible_labels(fig, crowded.xaxis))  # the case is really crowded
    common.save(fig, tmp_path / "f.png")
    after = _visible_labels(fig, crowded.xaxis)
    assert not overlapping(after) and 2 <= len(after) < before
    assert [t for t, _ in after][0] == "2"  # thinned from the lowest value up
    assert [t for t, _ in _visible_labels(fig, roomy.xaxis)] == ["0", "1"]
