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

from .common import _colors, _new, equals, finish, label, legend, log_ticks, symbol


def _sel(ds, where: dict):
    return ds.sel({k: v for k, v in where.items() if k in ds.dims})


def boundary(ds, spec: dict):
    from ..analysis import fit_exponent

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
    n_legend = len(hues) + len(spec.get("slopes", []))
    size = spec.get("size", [3.5 * len(panels), 2.6 + 0.16 * n_legend])
    fig, axes = _new(1, len(panels), {**spec, "size": size})
    fit = fit_exponent(ds, x)
    colors = _colors(len(hues))
    axis_name = ds.attrs.get("boundary_axis", "crossing")
    level = ds["level"].values
    lvl = (f"{float(np.nanmean(level)):.3g}" if np.nanstd(level) < 1e-12 else "midpoint")
    for ax, pv in zip(axes[0], panels):
        anchor = []
        for color, hv in zip(colors, hues):
            where = {k: v for k, v in ((panel, pv), (hue, hv)) if k is not None}
            pts, f = _sel(ds, where), _sel(fit, where)
            xs = np.asarray(pts[x].values, float)
            c = np.asarray(pts["crossing"].values, float)
            lo, hi = np.asarray(pts["ci_lo"].values, float), np.asarray(pts["ci_hi"].values, float)
            ok = (pts["flag"].values == "ok") & np.isfinite(c) & (c > 0)
            name = equals(hue, hv, ds) if hue else "boundary"
            ax.errorbar(xs[ok], c[ok], yerr=[c[ok] - lo[ok], hi[ok] - c[ok]], fmt="o",
                        color=color, ms=3.5, capsize=2.5, lw=1.0)
            bad = int((~ok).sum())
            if np.isfinite(float(f["slope"])):
                grid = np.geomspace(xs[ok].min(), xs[ok].max(), 50)
                line = np.exp(float(f["intercept"])) * grid ** float(f["slope"])
                ax.plot(grid, line, color=color, lw=1.2, label=(
                    f"{name}: {float(f['slope']):.2f} "
                    f"[{float(f['slope_lo']):.2f}, {float(f['slope_hi']):.2f}]"
                    + (f", {bad} flagged" if bad else "")))
            else:
                ax.plot([], [], "o", color=color, label=f"{name}: no fit ({bad} flagged)")
            if ok.any():  # the reference lines go through the panel's points' middle
                anchor.append((xs[ok], c[ok]))
        styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
        if anchor:
            ax_x = np.concatenate([a[0] for a in anchor])
            ax_y = np.concatenate([a[1] for a in anchor])
            grid = np.geomspace(ax_x.min(), ax_x.max(), 50)
            mid, ymid = np.exp(np.mean(np.log(ax_x))), np.exp(np.mean(np.log(ax_y)))
            for i, ref in enumerate(spec.get("slopes", [])):
                ax.plot(grid, ymid * (grid / mid) ** float(ref["slope"]), color="0.35",
                        ls=styles[i % len(styles)], lw=1.0,
                        label=f"{ref.get('label', 'slope')}: {float(ref['slope']):.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_ticks(ax)
        ax.set_xlabel(label(x, ds))
        ax.set_ylabel(f"boundary {symbol(axis_name, ds)} (final "
                      f"{symbol(ds.attrs.get('boundary_var', '?'), ds)} = {lvl})")
        if panel:
            ax.set_title(equals(panel, pv, ds))
        h, t = ax.get_legend_handles_labels()
        if "legend" in spec:  # where the figure asks
            legend(ax, spec, h, t, "best", fontsize="small")
        else:  # default: under the panel, where it hides no point
            ax.legend(h, t, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                      fontsize="small", title="exponent [95 % interval]",
                      title_fontsize="small")
    return finish(fig, spec, axes[0])
