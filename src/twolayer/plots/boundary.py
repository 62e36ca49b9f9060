"""Figure kind ``boundary``: located boundary points (``twolayer.boundaries``) against one of
their dims on log-log axes, with their intervals, a fitted power law per curve and reference
slopes (the candidate conditions, given as data in the figure spec)::

    [[figure]]
    kind = "boundary"
    file = "d-scaling.png"
    x = "input_dim"            # a dim of the boundary points
    hue = "output_init_scale"  # optional: one curve (and one fit) per value
    panel = "activation"       # optional: one panel per value
    slopes = [{label = "Kou: d^(1/4)", slope = 0.25}]   # reference lines
"""
from __future__ import annotations

import numpy as np

from .common import _colors, _fmt, _new, _title, label


def _sel(ds, where: dict):
    return ds.sel({k: v for k, v in where.items() if k in ds.dims})


def boundary(ds, spec: dict):
    from ..boundaries import fit_exponent

    if "crossing" not in ds:
        raise ValueError("figure kind 'boundary' needs a boundary Dataset (twolayer boundary)")
    x = spec.get("x") or ds["crossing"].dims[0]
    hue, panel = spec.get("hue"), spec.get("panel")
    for name in (x, hue, panel):
        if name is not None and name not in ds["crossing"].dims:
            raise ValueError(f"figure kind 'boundary': '{name}' is not a dim of the boundary "
                             f"points; dims: {', '.join(ds['crossing'].dims)}")
    rest = [d for d in ds["crossing"].dims if d not in (x, hue, panel)]
    if rest:
        raise ValueError(f"figure kind 'boundary': dims {', '.join(rest)} need a hue or a panel")
    panels = list(ds[panel].values) if panel else [None]
    hues = list(ds[hue].values) if hue else [None]
    fig, axes = _new(1, len(panels), w=4.6, h=3.6 + 0.17 * (len(hues) + len(spec.get("slopes", []))))
    fit = fit_exponent(ds, x)
    colors = _colors(len(hues), "tab10")
    axis_name = ds.attrs.get("boundary_axis", "crossing")
    for ax, pv in zip(axes[0], panels):
        anchor = None
        for color, hv in zip(colors, hues):
            where = {k: v for k, v in ((panel, pv), (hue, hv)) if k is not None}
            pts, f = _sel(ds, where), _sel(fit, where)
            xs = np.asarray(pts[x].values, float)
            c = np.asarray(pts["crossing"].values, float)
            lo, hi = np.asarray(pts["ci_lo"].values, float), np.asarray(pts["ci_hi"].values, float)
            ok = (pts["flag"].values == "ok") & np.isfinite(c) & (c > 0)
            name = f"{label(hue, ds)} = {_fmt(hv)}" if hue else "boundary"
            ax.errorbar(xs[ok], c[ok], yerr=[c[ok] - lo[ok], hi[ok] - c[ok]], fmt="o",
                        color=color, ms=4, capsize=3, lw=1.2)
            bad = int((~ok).sum())
            if np.isfinite(float(f["slope"])):
                grid = np.geomspace(xs[ok].min(), xs[ok].max(), 50)
                line = np.exp(float(f["intercept"])) * grid ** float(f["slope"])
                ax.plot(grid, line, color=color, lw=1.4, label=(
                    f"{name}: fit {float(f['slope']):.2f} "
                    f"[{float(f['slope_lo']):.2f}, {float(f['slope_hi']):.2f}]"
                    + (f", {bad} flagged" if bad else "")))
            else:
                ax.plot([], [], "o", color=color, label=f"{name}: no fit ({bad} flagged)")
            if ok.any():  # the reference lines go through the panel's points' middle
                anchor = (anchor or []) + [(xs[ok], c[ok])]
        if anchor:
            ax_x = np.concatenate([a[0] for a in anchor])
            ax_y = np.concatenate([a[1] for a in anchor])
            grid = np.geomspace(ax_x.min(), ax_x.max(), 50)
            anchor = (grid, np.exp(np.mean(np.log(ax_x))), np.exp(np.mean(np.log(ax_y))))
        styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
        for i, ref in enumerate(spec.get("slopes", [])):
            if anchor is None:
                break
            grid, mid, ymid = anchor
            ax.plot(grid, ymid * (grid / mid) ** float(ref["slope"]), color="0.35",
                    ls=styles[i % len(styles)], lw=1.1,
                    label=f"{ref.get('label', 'slope')}: {float(ref['slope']):.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_ticks(ax)
        ax.set_xlabel(label(x, ds))
        ax.set_ylabel(f"boundary {label(axis_name, ds)}")
        if panel:
            ax.set_title(f"{label(panel, ds)} = {_fmt(pv)}", fontsize=9)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
        ax.grid(True, which="both", alpha=0.25)
    level = ds["level"].values
    lvl = (f"level {float(np.nanmean(level)):.3g}" if np.nanstd(level) < 1e-12
           else "level: midpoint of the ends")
    _title(fig, ds, spec.get("title", f"final {ds.attrs.get('boundary_var', '?')} crosses the "
                                      f"{lvl}\n(bars: 95 % interval; legend: exponent [95 %])"))
    return fig


def _plain_ticks(ax):
    """Plain numbers on log axes; minor labels too when an axis spans less than a decade."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    # minor labels: on y below 1.2 decades; on x (wider labels side by side) below 0.5
    for axis, lim, most in ((ax.xaxis, ax.get_xlim(), 0.5), (ax.yaxis, ax.get_ylim(), 1.2)):
        axis.set_major_formatter(plain)
        small = lim[0] > 0 and np.log10(lim[1] / lim[0]) < most
        axis.set_minor_formatter(plain if small else NullFormatter())
