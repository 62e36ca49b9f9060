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
thin line. Each panel is titled by its variable (no figure title unless ``title``).
"""
from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors

from .. import analysis
from .common import (SEQUENTIAL, _colors, _fmt, _new, check_overlays, draw_overlays, equals,
                     finish, label, legend, log_ticks, plural, var_label, var_scale)


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
    condition). Other keys: ``xscale``, ``yscale`` ("log" or "linear"; default: log when
    the values are log-spaced), ``vmin``, ``vmax``, ``cmap`` (default viridis without its
    faint yellow end), ``cols``, ``legend`` (its location). The colour bar names the
    variable; panel titles name the panel's value (no other title unless ``title``)."""
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
    # one panel: a column and a quarter, tall enough for its colour bar and a legend below
    fig, axes = _new(rows, cols, {"size": [4.2, 3.2], **spec} if len(panels) == 1 else spec,
                     sharex=True, sharey=True)
    vmin = spec.get("vmin", float(np.nanmin(da.values)))
    vmax = spec.get("vmax", float(np.nanmax(da.values)))
    norm = mcolors.Normalize(vmin, vmax)
    xs, ys = np.asarray(ds[xn].values, float), np.asarray(ds[yn].values, float)
    logx = spec["xscale"] == "log" if "xscale" in spec else _is_log(xs)
    logy = spec["yscale"] == "log" if "yscale" in spec else _is_log(ys)
    for k, pv in enumerate(panels):
        ax = axes[k // cols, k % cols]
        sub = da.sel({pn: pv}) if pn else da
        z = sub.transpose(yn, xn).values
        mesh = ax.pcolormesh(_edges(xs, logx), _edges(ys, logy), z,
                             cmap=spec.get("cmap", SEQUENTIAL), norm=norm, shading="flat",
                             rasterized=True)
        handles = draw_overlays(ax, ds, spec, {pn: pv} if pn else {})
        ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear")
        log_ticks(ax)
        for axis, vals in ((ax.xaxis, xs), (ax.yaxis, ys)):
            if len(vals) <= 6:  # a few cells: a tick at each value, none between
                axis.set_ticks(vals, [_fmt(v, 2) for v in vals])
                axis.set_ticks([], minor=True)
        if k >= len(panels) - cols:
            ax.set_xlabel(label(xn, ds))
        if k % cols == 0:
            ax.set_ylabel(label(yn, ds))
        if pn:
            ax.set_title(equals(pn, pv, ds))
        if handles and k == 0:  # the same curves on every panel: one legend, under them
            legend(fig, spec, handles, [h.get_label() for h in handles], "outside bottom")
    for k in range(len(panels), rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    mean = f"\n(mean over {plural(extra, ds)})" if extra else ""
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label=f"final {var_label(ds, var)}{mean}",
                 shrink=0.9 if rows > 1 else 1.0)
    return finish(fig, spec, axes.ravel()[:len(panels)])


def curves(ds, spec: dict):
    """``vars`` (default ``["train_loss", "test_error"]``) against the step on a log axis, one
    panel each; one colour per value of ``hue``, the mean over the other dims drawn with a
    band from the smallest to the largest run. Without ``hue``, a variable whose other dims
    are all at most 64 long (a single run's per-sample or per-filter entries) is drawn as
    one thin line per entry. ``select = {dim = value}`` fixes dims first; ``logy`` lists the
    variables drawn on a log y axis (when positive; the others linear); without it,
    ``yscale`` for every variable, else each variable's declared scale; ``xscale`` (default
    "log"); ``cols``, ``cmap``."""
    names = spec.get("vars", ["train_loss", "test_error"])
    hue = spec.get("hue")
    ds = ds.sel(spec.get("select", {}))
    hues = list(ds[hue].values) if hue else [None]
    cols = int(spec.get("cols", min(3, len(names))))
    rows = -(-len(names) // cols)
    fig, axes = _new(rows, cols, spec)
    clock = analysis.checkpoint_dim(ds[names[0]])
    grid = ds[clock].values.astype(float)
    step = np.maximum(grid, grid[1] / 2 if len(grid) > 1 else 0.5)  # the start on a log axis
    colors = _colors(len(hues), spec.get("cmap"))
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
                one = lines.shape[1] == 1
                ax.plot(step, lines, color=c, lw=None if one else 0.6, alpha=1 if one else 0.6)
                continue
            mean = sub.mean(rest).values if rest else sub.values
            ax.plot(step, mean, color=c, label=equals(hue, hv, ds) if hue else None)
            if rest:
                ax.fill_between(step, sub.min(rest).values, sub.max(rest).values, color=c, alpha=0.15,
                                lw=0)
        positive = np.all(np.asarray(da.values)[np.isfinite(da.values)] > 0)
        if "logy" in spec:
            scale = "log" if var in spec["logy"] else "linear"
        else:
            scale = spec.get("yscale") or var_scale(ds, var, da.values)
        ax.set(xscale=spec.get("xscale", "log"),
               yscale="log" if (scale == "log" and positive) else "linear")
        log_ticks(ax)
        if i >= len(names) - cols:
            ax.set_xlabel(label(clock, ds))
        ax.set_title(var_label(ds, var))
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    if hue:
        h, t = axes[0, 0].get_legend_handles_labels()
        legend(fig, spec, h, t, "outside right" if len(hues) > 3 else "best")
    return finish(fig, spec, axes.ravel()[:len(names)])
