"""The patch-CNN family's figures: the benign-overfitting conditions drawn on phase
diagrams (overlay ``condition``), and its axis labels."""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from ...plots.common import setting
from ...plots.phase import _is_log
from . import theory

LABELS = {"snr": "snr", "signal_norm": "signal_norm", "input_dim": "input_dim",
          "n_train": "n_train", "output_init_scale": "output_init_scale"}


def _scalar(ds, name, where: dict, default=None):
    """A setting's single value for one panel: from ``where`` (panel coordinate), else the
    Dataset (the value every run shares); None when it differs between runs."""
    if name in where:
        return where[name]
    value = setting(ds, name, default)
    if hasattr(value, "dims"):  # a swept variable: one value is needed
        vals = np.unique(np.asarray(value))
        if len(vals) != 1:
            return None
        value = vals[0]
    return value


def condition(ax, ds, spec, options, where) -> list:
    """Overlay ``condition`` (on a ``heatmap``): the curve Q = C of a benign-overfitting
    condition, in red: ``options`` ``condition`` (a key of ``theory.CONDITIONS``: solid
    "kou", dashed "cao", dotted "small_init"; default "kou") and ``constant`` C (default 1).
    Q is computed by ``theory.benign_quantity`` from the figure's ``x`` and ``y`` and the
    panel's other settings (``n_train``, ``input_dim``, ``noise_std``, ``relu_power``, the
    signal as ``signal_norm`` or ``snr``: a panel value, else a value shared by every
    run). A curve whose settings are not single-valued, or which lies outside the plotted
    range, is left out."""
    cond = options.get("condition", "kou")
    if cond not in theory.CONDITIONS:
        raise ValueError(f"overlay 'condition': unknown condition '{cond}'; allowed: "
                         f"{', '.join(theory.CONDITIONS)}")
    constant = float(options.get("constant", 1.0))
    xn, yn = spec["x"], spec["y"]
    xs, ys = np.asarray(ds[xn].values, float), np.asarray(ds[yn].values, float)
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
        return []
    if cond != "cao":
        kw.pop("relu_power")
    try:
        Q = theory.benign_quantity(cond, **kw)
    except ValueError:
        return []
    Q = np.broadcast_to(Q, X.shape)
    if not (np.nanmin(Q) < constant < np.nanmax(Q)):
        return []
    style = {"kou": "-", "cao": "--", "small_init": ":"}.get(cond, "-")
    ax.contour(X, Y, Q, levels=[constant], colors="red", linestyles=style, linewidths=1.6)
    return [Line2D([], [], color="red", linestyle=style,
                   label=theory.CONDITIONS[cond][0].replace("= C", f"= {constant:g}"))]


def hidden_scale(ax, ds, spec, options, where) -> list:
    """Overlay ``hidden_scale``: the hidden layer's initial filter norm sigma_0 sqrt(d)
    (``hidden_init_scale``, ``input_dim``: a panel value, else the value every run shares)
    as a grey dashed line where ``output_init_scale`` kappa is an axis (vertical when it is
    ``x``, horizontal when it is ``y``): "large" and "small" output init are relative to it.
    Left out when kappa is no axis or the scale is not single-valued."""
    sigma0 = _scalar(ds, "hidden_init_scale", where, 0.01)
    d = _scalar(ds, "input_dim", where, 200)
    if sigma0 is None or d is None:
        return []
    scale = float(sigma0) * np.sqrt(float(d))
    style = dict(color="0.35", linestyle="--", linewidth=1.2)
    if spec.get("x") == "output_init_scale":
        ax.axvline(scale, **style)
    elif spec.get("y") == "output_init_scale":
        ax.axhline(scale, **style)
    else:
        return []
    return [Line2D([], [], **style, label=f"sigma_0 sqrt(d) = {scale:.3g}")]


OVERLAYS = {"condition": condition, "hidden_scale": hidden_scale}
