"""The matrix-factorization family's figure parts: the optimistic sample sizes r (2k - r)
drawn on error-against-n figures (overlay ``optimistic_sizes``), and its axis labels."""
from __future__ import annotations

import numpy as np

from ...plots.common import _colors, setting
from . import theory

# axis labels of the fields (mathtext): label, or (label, short symbol)
LABELS = {"n_train": ("observed entries $n$", "$n$"),
          "target_rank": ("target rank $r$", "$r$"), "size": ("size $k$", "$k$"),
          "width": ("width $m$", "$m$"),
          "init_scale": (r"initialization scale $\alpha$", r"$\alpha$")}


def _values(ds, name, where):
    if name in where:
        return [where[name]]
    value = setting(ds, name)
    return list(np.unique(np.asarray(value))) if hasattr(value, "dims") else [value]


def optimistic_sizes(ax, ds, spec, options, where) -> list:
    """Overlay ``optimistic_sizes``: a dotted vertical line at n = r (2k - r) for each
    target rank r of the panel (k = ``size``). When the figure's ``hue`` is ``target_rank``
    each line takes its curve's colour, else the ranks are told apart by the label.
    ``options``: ``color`` (one colour for every line)."""
    ks = _values(ds, "size", where)
    ranks = _values(ds, "target_rank", where)
    hue = spec.get("hue")
    colors = {}
    if hue == "target_rank" and "target_rank" in ds.dims:
        hv = list(ds["target_rank"].values)
        colors = dict(zip(hv, _colors(len(hv))))
    handles = []
    for k in ks:
        for r in ranks:
            n = int(theory.optimistic_sample_size(int(k), int(r)))
            color = options.get("color") or colors.get(r, "#D55E00")
            kstr = f", $k = {int(k)}$" if len(ks) > 1 else ""
            text = f"optimistic $n = {n}$ ($r = {int(r)}${kstr})"
            # labelled on the axes: the figure's legend collects it from there
            handles.append(ax.axvline(n, color=color, ls=":", lw=1.6, gid="optimistic",
                                      label=text))
    return handles


OVERLAYS = {"optimistic_sizes": optimistic_sizes}
