"""Figures shown inline in Jupyter / IPython.

twolayer draws on ``matplotlib.figure.Figure`` directly (no pyplot), so a figure is shown
when it is the value of a notebook cell only if IPython knows how to render a Figure; it knows
once pyplot's inline backend has started (``%matplotlib inline``, or ``import
matplotlib.pyplot``), and otherwise prints ``<Figure size ...>``. ``register`` (called when
``twolayer.plots`` is imported inside IPython) teaches it: a Figure renders as a PNG, unless
a formatter for it is already there (pyplot's inline backend keeps its own).
"""
from __future__ import annotations

import io
import sys

from matplotlib.figure import Figure


DPI = 120  # on screen; files are written at plots.DPI


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (at a screen dpi, cropped to what is drawn)."""
    from .common import thin_tick_labels

    buf = io.BytesIO()
    thin_tick_labels(fig)
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def register() -> bool:
    """In an IPython shell, render ``Figure`` values as PNG unless something else does
    already. Returns whether a formatter for Figure is in place."""
    module = sys.modules.get("IPython")
    ip = module.get_ipython() if module is not None and hasattr(module, "get_ipython") else None
    if ip is None:
        return False
    formatter = ip.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, png)
    return True
