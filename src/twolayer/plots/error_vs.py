"""error_vs: a final value against one swept dim, for any family."""
from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

from .. import analysis
from .common import (OKABE_ITO, _colors, _fmt, _new, _spacing, check_overlays, draw_overlays,
                     equals, finish, label, legend, log_ticks, plural, setting, symbol, var_label,
                     var_scale)


def clip_of(ds, spec: dict):
    """Where values are clipped below: ``clip`` a number, or the name of a setting (its
    smallest value, if it differs between runs); None (the default) for no clipping.
    Returns (value, legend label) or (None, None)."""
    clip = spec.get("clip")
    if clip is None:
        return None, None
    if isinstance(clip, str):
        value = float(np.min(np.asarray(setting(ds, clip))))
        return value, f"{label(clip, ds)} = {_fmt(value)}"
    return float(clip), f"clipped at {_fmt(float(clip))}"


def error_vs(ds, spec: dict) -> Figure:
    """Final ``y`` (default ``test_error``) against the dim ``x``; one panel per value of
    ``panel``, one curve per value of ``hue``; ``points`` (a dim) scatters every value as a dot
    and draws the mean and median over it; the remaining dims are reduced by ``reduce``
    ("mean", "median", "max", "min"; default "mean") over ``over`` (a dim or a list; default:
    all the others). ``clip``: values below it are drawn at it (a number, or the name of a
    setting such as ``"recovery_threshold"``), with a dashed line, on a log y axis only;
    ``yscale`` (default: the variable's declared scale, e.g. linear for a classification
    error or a fraction, log for a regression error; else from the values), ``xscale``
    ("linear", the default, or "log"), ``ylim`` ([low, high]); ``select = {dim = value}``
    fixes dims first; ``overlays``: the family's overlays to draw
    on every panel (e.g. single_neuron's ``"sample_sizes"``). Diverged runs are left out and
    marked with an x; runs stopped by a budget while still converging (``outcome``
    "unresolved") are open circles."""
    y = spec.get("y", "test_error")
    ds = ds.sel(spec.get("select", {}))
    x = spec.get("x") or next(d for d in ds[y].dims if d not in analysis.CHECKPOINT_DIMS)
    panel, hue, points = spec.get("panel"), spec.get("hue"), spec.get("points")
    da = analysis.final(ds[y]).astype(float)
    roles = [d for d in (x, panel, hue, points) if d]
    for d in roles:
        if d not in da.dims:
            raise ValueError(f"figure '{spec.get('kind')}': '{d}' is not a dim of {y} "
                             f"(dims: {', '.join(da.dims)})")
    # a diverged run has no error to show: it is left out of the curves and marked with an x
    # at the top of its panel
    bad = ~np.isfinite(da)
    if "diverged" in ds:
        bad = bad | ds["diverged"].astype(bool).broadcast_like(da)
    da = da.where(~bad)
    how = spec.get("reduce", "mean")
    over = spec.get("over")
    over = [over] if isinstance(over, str) else list(over or [d for d in da.dims
                                                              if d not in roles])
    reduced = ""
    boolean = ds[y].dtype == bool
    if over:
        da = getattr(da, how)(over, skipna=True)
        bad = bad.any(over)
        reduced = f"{how} over {plural(over, ds)}"
    check_overlays(ds, spec)
    yscale = spec.get("yscale") or ("linear" if boolean else var_scale(ds, y, da.values))
    # a floor only means something on a log axis (e.g. the recovery threshold of an error
    # that reaches 1e-20); on a linear axis it is left out
    clip, clip_label = clip_of(ds, spec) if yscale == "log" else (None, None)
    shown = da.clip(min=clip) if clip is not None else da
    # runs stopped by a budget while still converging: open circles (analysis.outcome)
    unresolved = None
    rec = "polished_recovered" if y.startswith("polished_") else "recovered"
    if rec in ds and "converged" in ds:
        unresolved = analysis.outcome(ds, recovered=rec) == "unresolved"

    panels = list(da[panel].values) if panel else [None]
    hues = list(da[hue].values) if hue else [None]
    colors = _colors(len(hues))
    ncols = len(panels) if len(panels) <= 3 else 3
    nrows = -(-len(panels) // ncols)
    # the legend: in an empty panel slot when there is one, else beside the panels
    spare = nrows * ncols > len(panels)
    loc = spec.get("legend", "spare" if spare else "outside right")
    loc = "outside right" if loc == "spare" and not spare else loc
    fig, axes = _new(nrows, ncols, spec, legend_right=loc.startswith("outside right"),
                     sharey=True)
    name = var_label(ds, y)
    if boolean and how == "mean" and over:
        ylab, reduced = f"fraction {name}", f"of {plural(over, ds)}"
    else:
        ylab = name if y.startswith("polished_") else f"final {name}"
    ylab = f"{ylab}\n({reduced})" if reduced else ylab
    # a long label wrapped to about a panel's height (it overran the panel below it); a
    # line with mathtext is kept whole
    ylab = "\n".join(line if "$" in line else textwrap.fill(line, 34)
                     for line in ylab.split("\n"))
    xs = np.asarray(da[x].values, dtype=float)
    overlaid = []  # legend handles the overlays give
    for i, pv in enumerate(panels):
        ax = axes.flat[i]
        sub = shown.sel({panel: pv}) if panel else shown
        for hv, color in zip(hues, colors):
            cur = sub.sel({hue: hv}) if hue else sub
            name = equals(hue, hv, ds) if hue else None
            if points:
                vals = cur.transpose(x, points).values
                k = vals.shape[1]
                jitter = (np.linspace(-1, 1, k) * 0.0 if k == 1 else
                          (np.arange(k) / (k - 1) - 0.5) * 0.08 * _spacing(xs))
                ax.scatter((xs[:, None] + jitter[None, :]).ravel(), vals.ravel(), s=8,
                           alpha=0.5, color=color if hue else OKABE_ITO[0], lw=0,
                           label=f"each {symbol(points, ds)}" if i == 0 and not hue else None)
                raw = (da.sel({panel: pv}) if panel else da)
                raw = raw.sel({hue: hv}) if hue else raw
                mean = raw.mean(points, skipna=True).clip(min=clip).transpose(x).values
                med = raw.median(points, skipna=True).clip(min=clip).transpose(x).values

                ax.plot(xs, mean, "-o", ms=3, color="k" if not hue else color,
                        label=("mean" if not hue else f"{name}, mean") if i == 0 else None)
                ax.plot(xs, med, "--s", ms=3, color=OKABE_ITO[1] if not hue else color,
                        label=("median" if not hue else f"{name}, median") if i == 0 else None)
            else:
                ax.plot(xs, cur.transpose(x).values, "-o", ms=3, color=color,
                        label=name if i == 0 else None)
        nbad = (bad.sel({panel: pv}) if panel else bad)
        nbad = nbad.sum([d for d in nbad.dims if d != x]).transpose(x).values
        if nbad.any():
            top = ax.get_xaxis_transform()  # x in data, y in axes fraction
            ax.scatter(xs[nbad > 0], np.full((nbad > 0).sum(), 0.97), marker="x", s=25,
                       color=OKABE_ITO[1], transform=top, gid="diverged", clip_on=False,
                       label="diverged (left out)")
            for xv, k in zip(xs[nbad > 0], nbad[nbad > 0]) if (nbad > 0).sum() <= 8 else ():
                ax.annotate(str(int(k)), (xv, 0.97), xycoords=top, xytext=(3, -3),
                            textcoords="offset points", fontsize=8, color=OKABE_ITO[1])
        if unresolved is not None and not over:
            for hv, color in zip(hues, colors):
                cur = unresolved.sel({panel: pv}) if panel else unresolved
                cur = cur.sel({hue: hv}) if hue else cur
                val = shown.sel({panel: pv}) if panel else shown
                val = val.sel({hue: hv}) if hue else val
                rest = [d for d in cur.dims if d != x]
                m = cur.any(rest).transpose(x).values if rest else cur.transpose(x).values
                v = val.max(rest).transpose(x).values if rest else val.transpose(x).values
                if m.any():
                    ax.scatter(xs[m], v[m], s=36, facecolors="none", edgecolors=color, lw=1.0,
                               gid="unresolved", zorder=3,
                               label="unresolved (still converging)")
        if clip is not None:
            ax.axhline(clip, color="gray", ls="--", lw=1.0, gid="clip", label=clip_label)
        integer = np.issubdtype(np.asarray(da[x].values).dtype, np.integer)
        if integer and len(xs) <= 12:  # e.g. sample sizes: every value a tick
            ax.set_xticks(xs)
        ax.set_yscale(yscale)
        if "ylim" in spec:
            ax.set_ylim(*spec["ylim"])
        elif boolean and how == "mean" and yscale == "linear":
            ax.set_ylim(-0.04, 1.04)
        if spec.get("xscale") == "log":
            ax.set_xscale("log")
            lo, hi = np.nanmin(xs[xs > 0]), np.nanmax(xs)
            ax.set_xlim(lo / 1.5, hi * 1.5)
        else:  # every x value in view, even where all runs diverged
            pad = 0.06 * (np.nanmax(xs) - np.nanmin(xs) or 1.0)
            ax.set_xlim(np.nanmin(xs) - pad, np.nanmax(xs) + pad)
        log_ticks(ax)
        if i >= len(panels) - ncols:  # the bottom panel of each column
            ax.set_xlabel(label(x, ds))
        if i % ncols == 0:
            ax.set_ylabel(ylab)
        if panel:
            ax.set_title(equals(panel, pv, ds))
        overlaid.extend(draw_overlays(ax, ds, spec, {panel: pv} if panel else {}))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    # one legend for the figure: every entry of every panel and overlay, once
    entries = {}
    for ax in axes.flat[:len(panels)]:
        for h, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, h)
    for h in overlaid:
        if not h.get_label().startswith("_"):
            entries.setdefault(h.get_label(), h)
    if loc == "spare":
        slot = axes.flat[len(panels)]
        slot.set_visible(True)
        slot.set_axis_off()
        slot.legend(list(entries.values()), list(entries), loc="center")
    else:
        legend(fig, spec, list(entries.values()), list(entries), loc)
    return finish(fig, spec, axes.flat[:len(panels)])
