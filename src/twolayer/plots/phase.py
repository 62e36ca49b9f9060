"""Figure kinds for phase diagrams and training curves, for any family.

``heatmap``: a variable (default the final ``test_error``), averaged over the dims not
drawn (e.g. ``seed``), over two swept dims ``x`` and ``y``; one panel per value of
``panel``; theory curves from the family's ``overlays``:

    [[figure]]
    kind = "heatmap"
    x = "input_dim"
    y = "signal_norm"
    overlays = [{name = "condition", condition = "kou", constant = 1.0}]   # patch_cnn

Both take ``select = {dim = value}`` to fix swept dims first.

``curves``: variables against the step (log axis), one panel per variable, one colour per
value of ``hue`` (averaged over the other dims, shaded between the smallest and the
largest run); for a single run, every entry of a per-sample or per-filter variable is a
thin line.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors

from .. import analysis
from .common import _colors, _fmt, _new, _title, _var_label, check_overlays, draw_overlays, label


def _is_log(values) -> bool:
    v = np.asarray(values, float)
    if len(v) < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-3) and abs(r[0] - 1) > 1e-6)


def _edges(values, log: bool):
    v = np.asarray(values, float)
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] / 1.5, v[0] * 1.5])
    t = np.log(v) if log else v
    mid = (t[1:] + t[:-1]) / 2
    e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return np.exp(e) if log else e


def heatmap(ds, spec: dict):
    """Final ``var`` (default ``test_error``) over the swept dims ``x`` and ``y`` (both
    required), averaged over the other dims (e.g. ``seed``; a ``bank`` dim is read at bank
    +1); one panel per value of ``panel``. ``select = {dim = value}`` fixes dims first.

    ``overlays``: the family's overlays to draw on every panel (names or ``{name = ...,
    options}`` tables; e.g. patch_cnn's ``"condition"``, the curve of a benign-overfitting
    condition). Other keys: ``logx``, ``logy``
    (default: when the values are log-spaced), ``vmin``, ``vmax``, ``cmap``, ``cols``,
    ``legend`` (its location), ``title``."""
    var = spec.get("var", "test_error")
    xn, yn, pn = spec["x"], spec["y"], spec.get("panel")
    check_overlays(ds, spec)
    ds = ds.sel(spec.get("select", {}))
    da = analysis.final(ds[var])
    extra = [d for d in da.dims if d not in (xn, yn, pn)]
    if "bank" in extra:
        da = da.sel(bank=1)
        extra.remove("bank")
    da = da.mean(extra) if extra else da
    panels = list(ds[pn].values) if pn else [None]
    cols = int(spec.get("cols", min(3, len(panels))))
    rows = -(-len(panels) // cols)
    fig, axes = _new(rows, cols, w=4.0, h=3.4)
    vmin = spec.get("vmin", float(np.nanmin(da.values)))
    vmax = spec.get("vmax", float(np.nanmax(da.values)))
    norm = mcolors.Normalize(vmin, vmax)
    xs, ys = np.asarray(ds[xn].values, float), np.asarray(ds[yn].values, float)
    logx, logy = spec.get("logx", _is_log(xs)), spec.get("logy", _is_log(ys))
    for k, pv in enumerate(panels):
        ax = axes[k // cols, k % cols]
        sub = da.sel({pn: pv}) if pn else da
        z = sub.transpose(yn, xn).values
        mesh = ax.pcolormesh(_edges(xs, logx), _edges(ys, logy), z, cmap=spec.get("cmap", "viridis"),
                             norm=norm, shading="flat")
        handles = draw_overlays(ax, ds, spec, {pn: pv} if pn else {})
        ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear",
               xlabel=label(xn, ds), ylabel=label(yn, ds),
               title=f"{label(pn, ds)} = {_fmt(pv)}" if pn else _var_label(ds, var))
        if handles:
            ax.legend(handles=handles, fontsize=6, loc=spec.get("legend", "lower right"))
    for k in range(len(panels), rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label=f"final {_var_label(ds, var)}", shrink=0.9)
    extra_txt = f" (mean over {', '.join(extra)})" if extra else ""
    _title(fig, ds, spec.get("title", f"final {var}{extra_txt}"))
    return fig


def curves(ds, spec: dict):
    """``vars`` (default ``["train_loss", "test_error"]``) against the step on a log axis, one
    panel each; one colour per value of ``hue``, the mean over the other dims drawn with a
    band from the smallest to the largest run. Without ``hue``, a variable whose other dims
    are all at most 64 long (a single run's per-sample or per-filter entries) is drawn as
    one thin line per entry. ``select = {dim = value}`` fixes dims first; ``logy`` (default:
    every variable) lists the variables drawn on a log y axis (when positive); ``cols``,
    ``cmap``, ``title``."""
    names = spec.get("vars", ["train_loss", "test_error"])
    hue = spec.get("hue")
    ds = ds.sel(spec.get("select", {}))
    hues = list(ds[hue].values) if hue else [None]
    cols = int(spec.get("cols", min(3, len(names))))
    rows = -(-len(names) // cols)
    fig, axes = _new(rows, cols, w=3.3, h=2.7)
    clock = analysis.checkpoint_dim(ds["train_loss"])
    grid = ds[clock].values.astype(float)
    step = np.maximum(grid, grid[1] / 2 if len(grid) > 1 else 0.5)  # the start on a log axis
    colors = _colors(len(hues), spec.get("cmap", "viridis"))
    logy = set(spec.get("logy", names))
    for i, var in enumerate(names):
        ax = axes[i // cols, i % cols]
        da = ds[var]
        if "bank" in da.dims:
            da = da.sel(bank=1)
        for c, hv in zip(colors, hues):
            sub = da.sel({hue: hv}) if hue else da
            rest = [d for d in sub.dims if d != clock]
            if not hue and rest and all(ds.sizes[d] <= 64 for d in rest):
                lines = sub.transpose(clock, *rest).values.reshape(len(step), -1)
                ax.plot(step, lines, color="tab:blue", lw=0.6, alpha=0.6)
                continue
            mean = sub.mean(rest).values if rest else sub.values
            ax.plot(step, mean, color=c, lw=1.4, label=f"{label(hue, ds)} = {_fmt(hv)}" if hue else None)
            if rest:
                ax.fill_between(step, sub.min(rest).values, sub.max(rest).values, color=c, alpha=0.15,
                                lw=0)
        positive = np.all(np.asarray(da.values)[np.isfinite(da.values)] > 0)
        ax.set(xscale="log", yscale="log" if (var in logy and positive) else "linear",
               xlabel=label(clock, ds), title=_var_label(ds, var))
        ax.title.set_fontsize(8)
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    if hue:
        axes[0, 0].legend(fontsize=6)
    _title(fig, ds, spec.get("title", ""))
    return fig
