"""Figure kinds for phase diagrams and training curves (any family; used by patch_cnn).

``heatmap``: a variable (default the final ``test_error``), averaged over the dims not
drawn (e.g. ``seed``), over two swept dims ``x`` and ``y``; one panel per value of
``panel``; theory curves from ``overlays``:

    [[figure]]
    kind = "heatmap"
    x = "input_dim"
    y = "signal_norm"
    overlays = [{condition = "kou", constant = 1.0}]   # theory.CONDITIONS

Both take ``select = {dim = value}`` to fix swept dims first.

``curves``: variables against the step (log axis), one panel per variable, one colour per
value of ``hue`` (averaged over the other dims, shaded between the smallest and the
largest run); for a single run, every entry of a per-sample or per-filter variable is a
thin line.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.lines import Line2D

from .. import analysis, theory
from . import _colors, _fmt, _new, _title, _var_label, label, setting


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


def _scalar(ds, name, where: dict, default=None):
    """A setting's single value for one panel: from ``where`` (panel coordinate), else the
    Dataset (a scalar attribute, the spec, the family default)."""
    if name in where:
        return where[name]
    value = setting(ds, name, default)
    if hasattr(value, "dims"):  # a swept variable: one value is needed
        vals = np.unique(np.asarray(value))
        if len(vals) != 1:
            return None
        value = vals[0]
    return value


def _overlay(ax, ds, spec, overlay, where, xs, ys):
    """Draw the curve Q = C of a benign-overfitting condition over the (x, y) plane."""
    cond = overlay.get("condition", "kou")
    constant = float(overlay.get("constant", 1.0))
    xn, yn = spec["x"], spec["y"]
    gx = np.geomspace(xs.min(), xs.max(), 200) if _is_log(xs) else np.linspace(xs.min(), xs.max(), 200)
    gy = np.geomspace(ys.min(), ys.max(), 200) if _is_log(ys) else np.linspace(ys.min(), ys.max(), 200)
    X, Y = np.meshgrid(gx, gy)
    kw = {}
    for name, default in (("n_train", 20), ("input_dim", 200), ("noise_std", 1.0),
                          ("relu_power", 3.0)):
        kw[name] = X if xn == name else Y if yn == name else _scalar(ds, name, where, default)
    for name in ("signal_norm", "snr"):
        if name in (xn, yn):
            kw[name] = X if xn == name else Y
    if "signal_norm" not in kw and "snr" not in kw:
        for name in ("signal_norm", "snr"):
            value = _scalar(ds, name, where)
            if value is not None:
                kw[name] = value
                break
    if any(v is None for v in kw.values()) or ("signal_norm" not in kw and "snr" not in kw):
        return None
    if cond != "cao":
        kw.pop("relu_power")
    try:
        Q = theory.benign_quantity(cond, **kw)
    except ValueError:
        return None
    Q = np.broadcast_to(Q, X.shape)
    if not (np.nanmin(Q) < constant < np.nanmax(Q)):
        return None
    style = {"kou": "-", "cao": "--", "small_init": ":"}.get(cond, "-")
    ax.contour(X, Y, Q, levels=[constant], colors="red", linestyles=style, linewidths=1.6)
    return Line2D([], [], color="red", linestyle=style,
                  label=theory.CONDITIONS[cond][0].replace("= C", f"= {constant:g}"))


def heatmap(ds, spec: dict):
    """Final ``var`` (default ``test_error``) over the swept dims ``x`` and ``y`` (both
    required), averaged over the other dims (e.g. ``seed``; a ``bank`` dim is read at bank
    +1); one panel per value of ``panel``. ``select = {dim = value}`` fixes dims first.

    ``overlays`` is a list of ``{condition, constant}`` tables: each draws, in red, the curve
    Q = C of ``theory.CONDITIONS[condition]`` (solid "kou", dashed "cao", dotted
    "small_init"), Q computed by ``theory.benign_quantity`` from ``x`` and ``y`` and the
    panel's other settings (``n_train``, ``input_dim``, ``noise_std``, ``relu_power``, the
    signal as ``signal_norm`` or ``snr``: a panel value, else a value shared by every run,
    else the family default). An overlay whose settings are not single-valued, or whose
    curve lies outside the plotted range, is left out. Other keys: ``logx``, ``logy``
    (default: when the values are log-spaced), ``vmin``, ``vmax``, ``cmap``, ``cols``,
    ``legend`` (its location), ``title``."""
    var = spec.get("var", "test_error")
    xn, yn, pn = spec["x"], spec["y"], spec.get("panel")
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
        handles = []
        for ov in spec.get("overlays", []):
            h = _overlay(ax, ds, spec, ov, {pn: pv} if pn else {}, xs, ys)
            if h is not None:
                handles.append(h)
        ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear",
               xlabel=label(xn), ylabel=label(yn),
               title=f"{label(pn)} = {_fmt(pv)}" if pn else _var_label(ds, var))
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
            ax.plot(step, mean, color=c, lw=1.4, label=f"{label(hue)} = {_fmt(hv)}" if hue else None)
            if rest:
                ax.fill_between(step, sub.min(rest).values, sub.max(rest).values, color=c, alpha=0.15,
                                lw=0)
        positive = np.all(np.asarray(da.values)[np.isfinite(da.values)] > 0)
        ax.set(xscale="log", yscale="log" if (var in logy and positive) else "linear",
               xlabel=label(clock), title=_var_label(ds, var))
        ax.title.set_fontsize(8)
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    if hue:
        axes[0, 0].legend(fontsize=6)
    _title(fig, ds, spec.get("title", ""))
    return fig
