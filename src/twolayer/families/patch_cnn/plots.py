"""The patch-CNN family's figures: the benign-overfitting conditions drawn on phase
diagrams (overlay ``condition``), and its axis labels."""
from __future__ import annotations

import numpy as np
from matplotlib import patheffects
from matplotlib.lines import Line2D

from ...plots.common import setting
from ...plots.phase import _is_log
from . import theory

# axis labels of the fields (mathtext): label, or (label, short symbol)
LABELS = {"snr": (r"SNR $\|\mu\| / (\sigma_p \sqrt{d})$", "SNR"),
          "signal_norm": (r"signal norm $\|\mu\|$", r"$\|\mu\|$"),
          "input_dim": ("patch dimension $d$", "$d$"),
          "n_train": ("training samples $n$", "$n$"),
          "noise_std": (r"noise std. $\sigma_p$", r"$\sigma_p$"),
          "label_noise": ("label noise $p$", "$p$"),
          "width": ("filters per bank $m$", "$m$"),
          "relu_power": ("ReLU power $q$", "$q$"),
          "leaky_slope": "leaky ReLU slope",
          "hidden_init_scale": (r"hidden init. scale $\sigma_0$", r"$\sigma_0$"),
          "output_init_scale": (r"output init. scale $\kappa$", r"$\kappa$"),
          "output_learning_rate": (r"output learning rate $\eta_v$", r"$\eta_v$"),
          "xor_cosine": (r"XOR cosine $\cos\angle(a + b, a - b)$", r"$\cos\angle$")}


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
    condition, black with a white edge (seen on every colour of the map): ``options``
    ``condition`` (a key of ``theory.CONDITIONS``: solid "kou", dashed "cao", dotted
    "small_init"; default "kou") and ``constant`` C (default 1).
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
    halo = [patheffects.withStroke(linewidth=3.2, foreground="white")]
    cs = ax.contour(X, Y, Q, levels=[constant], colors="black", linestyles=style,
                    linewidths=1.4)
    cs.set_path_effects(halo)
    cs.set_gid(f"condition:{cond}")
    return [Line2D([], [], color="black", linestyle=style, lw=1.4, path_effects=halo,
                   label=theory.CONDITIONS[cond][0].replace("= C", f"= {constant:g}"))]


def hidden_scale(ax, ds, spec, options, where) -> list:
    """Overlay ``hidden_scale``: the hidden layer's initial filter norm sigma_0 sqrt(d)
    (``hidden_init_scale``, ``input_dim``: a panel value, else the value every run shares)
    as a dark dashed line where ``output_init_scale`` kappa is an axis (vertical when it is
    ``x``, horizontal when it is ``y``): "large" and "small" output init are relative to it.
    Left out when kappa is no axis or the scale is not single-valued."""
    sigma0 = _scalar(ds, "hidden_init_scale", where, 0.01)
    d = _scalar(ds, "input_dim", where, 200)
    if sigma0 is None or d is None:
        return []
    scale = float(sigma0) * np.sqrt(float(d))
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white")]
    style = dict(color="0.2", linestyle=(0, (4, 2)), linewidth=1.2, path_effects=halo)
    if spec.get("x") == "output_init_scale":
        line = ax.axvline(scale, **style)
    elif spec.get("y") == "output_init_scale":
        line = ax.axhline(scale, **style)
    else:
        return []
    line.set_gid("hidden_scale")
    return [Line2D([], [], **style, label=rf"$\sigma_0 \sqrt{{d}}$ = {scale:.3g}")]


OVERLAYS = {"condition": condition, "hidden_scale": hidden_scale}
