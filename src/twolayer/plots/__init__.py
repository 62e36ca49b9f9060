"""Figures from sweep Datasets: every function takes a Dataset and returns a matplotlib Figure.

A sweep spec lists its figures as ``[[figure]]`` tables; ``kind`` picks the function, the
other keys name the Dataset's dims (the same names as the config fields and the axes):

    [[figure]]
    kind = "error_vs"     # a generic kind (error_vs | heatmap | curves) or the family's own
    file = "fig4.png"     # written by draw_all into the figures folder
    x = "imbalance"       # the other keys depend on the kind (see each function)
    panel = "n_train"
    hue = "data_seed"
    overlays = ["sample_sizes"]   # theory the family draws on the panels
    format = ["png", "pdf"]       # options every kind takes: format, dpi, size, style,
    size = "double"               #   title, xlabel, ylabel, legend (COMMON_OPTIONS)

Every figure is drawn in the paper style (``common.PAPER``: one- or two-column sizes, fonts
of at least 8 pt, colour-blind-safe colours, mathtext labels from the variables' and fields'
declarations) and written at 300 dpi (PNG) or as vector PDF / SVG. ``check_spec`` refuses an
unknown kind or option (one-line ``ConfigError``); it needs only the family, so it can run
before anything is trained.

The generic kinds know no family; a family adds its own kinds (``Family.figures``: e.g.
single_neuron's ``dynamics``), its theory overlays (``Family.overlays``) and its axis
labels. ``figure`` draws one spec, ``draw_all`` every spec stored in a Dataset's ``sweep``
attribute. Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no
display needed), so they work under any backend.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from .. import analysis
from ..config import check_name
from .common import (COMMON_OPTIONS, DPI, KIND_OPTIONS, PAPER, STYLES, check_spec, family_of,
                     formats_of, label, save, setting, style_context, sweep_spec, symbol,
                     var_label)
from . import inline
from .error_vs import clip_of, error_vs
from .phase import curves, heatmap

KINDS = {"error_vs": error_vs, "heatmap": heatmap, "curves": curves}
"""The generic figure kinds, for any family."""


def kinds(ds=None) -> dict:
    """Every figure kind available for ``ds``: the generic ones and its family's own."""
    fam = family_of(ds) if ds is not None else None
    return {**KINDS, **(dict(fam.figures) if fam is not None else {})}


def figure(ds, spec: dict) -> Figure:
    """Draw one ``[[figure]]`` spec (dispatch on ``spec["kind"]``) in its style, after
    ``check_spec``."""
    fam = family_of(ds)
    check_spec(spec, fam if fam is not None else ds.attrs.get("family"))
    kind = spec.get("kind", "error_vs")
    with style_context(spec):
        return kinds(ds)[kind](ds, spec)


def run_figure(ds) -> Figure:
    """One run (no swept dims): the family's ``run_figure``, else ``curves`` of the
    training loss and the test error."""
    fam = family_of(ds)
    with style_context():
        if fam is not None and fam.run_figure is not None:
            return fam.run_figure(ds)
        return curves(ds, {"vars": [v for v in ("train_loss", "test_error") if v in ds]})


def default_specs(ds) -> list[dict]:
    """error_vs over the first swept dim, when a sweep lists no figure."""
    dims = [d for d in ds["test_error"].dims if d not in analysis.CHECKPOINT_DIMS]
    name = ds.attrs.get("title", "sweep")
    spec = {"kind": "error_vs", "file": f"{name}.png"}
    if dims:
        spec["x"] = dims[0]
    if len(dims) > 1:
        spec["hue"] = dims[1]
    return [spec]


def check_figures(family, dims, specs) -> None:
    """Refuse, before any training, ``[[figure]]`` tables a sweep of ``family`` (a Family)
    with axis ``dims`` could not draw (``ConfigError``): ``checks.check_figures`` (kinds,
    dims, overlays, files, dpi), then ``check_spec`` (every option and its value)."""
    from .checks import check_figures as check

    check(family, dims, specs, kinds={**KINDS, **dict(family.figures)})
    for i, spec in enumerate([specs] if isinstance(specs, dict) else specs or [], 1):
        check_spec(spec, family, where=f"figure {i} ({spec.get('kind', 'error_vs')})")


def draw_all(ds, folder, format=None) -> list[Path]:
    """Draw every ``[[figure]]`` of the Dataset's sweep spec into ``folder``; returns the
    paths, one per figure spec and format. A spec's ``format`` (a name or a list; default
    the suffix of its ``file``, else png) picks the files; ``format`` here (a name or a list
    of png, pdf, svg) replaces it for every figure. Every spec is checked before any file
    is written."""
    folder = Path(folder)
    swept = [d for d in ds["test_error"].dims if d not in analysis.CHECKPOINT_DIMS]
    if not swept and not sweep_spec(ds).get("figure"):  # no axes, no figure asked: the run's
        path = folder / check_name("the sweep's 'name'", f"{ds.attrs.get('title', 'run')}.png")
        fig = run_figure(ds)
        folder.mkdir(parents=True, exist_ok=True)
        return [save(fig, path.with_suffix(f".{fmt}"))
                for fmt in formats_of({"format": format} if format else {}, path)]
    specs = sweep_spec(ds).get("figure") or default_specs(ds)
    if isinstance(specs, dict):
        specs = [specs]
    if format is not None:
        specs = [{**s, "format": format} for s in specs]
    fam = family_of(ds)
    if fam is not None:  # a result written before figures were checked with its sweep
        check_figures(fam, list(ds.dims), specs)
    else:
        for spec in specs:
            check_spec(spec, ds.attrs.get("family"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, spec in enumerate(specs):
        # a name, never a path: figures are written inside the folder only
        path = folder / check_name("a figure's 'file'", spec.get(
            "file", f"{ds.attrs.get('title', 'figure')}-{i + 1}.png"))
        fig = figure(ds, spec)
        for fmt in formats_of(spec, path):
            paths.append(save(fig, path.with_suffix(f".{fmt}"), dpi=spec.get("dpi", DPI),
                              style=spec))
    return paths


inline.register()  # Jupyter / IPython: a Figure value of a cell is shown (see plots.inline)

__all__ = ["figure", "draw_all", "check_figures", "run_figure", "save", "error_vs", "heatmap",
           "curves", "kinds", "KINDS", "setting", "sweep_spec", "label", "symbol", "var_label",
           "clip_of", "check_spec", "style_context", "PAPER", "STYLES", "COMMON_OPTIONS",
           "KIND_OPTIONS", "DPI"]
