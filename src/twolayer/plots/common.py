"""Helpers shared by every figure: labels, colours, panels, titles, overlays, saving."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .. import analysis

DPI = 130
# axis labels of the engine's names (a family adds its own: Family.labels)
LABELS = {"step": "step", "time": "time", "seed": "seed", "data_seed": "data_seed",
          "learning_rate": "learning_rate", "run": "run"}

setting = analysis.setting  # a config value of the runs: coordinate or attribute
sweep_spec = analysis.sweep_spec


def family_of(ds):
    """The registered family whose runs ``ds`` holds (its ``family`` attribute), or None."""
    from ..family import get

    name = ds.attrs.get("family") if hasattr(ds, "attrs") else None
    try:
        return get(name) if name else None
    except Exception:  # noqa: BLE001  (a family not registered in this process)
        return None


def label(name: str, ds=None) -> str:
    """The axis label of a config field or dim: the family's (``Family.labels``), else the
    engine's, else the name itself."""
    fam = family_of(ds) if ds is not None else None
    if fam is not None and name in fam.labels:
        return fam.labels[name]
    return LABELS.get(name, name)


def _var_label(ds, var: str) -> str:
    """The variable's long_name (kept by the engine), else the family's, else its name."""
    if var in ds and ds[var].attrs.get("long_name"):
        return ds[var].attrs["long_name"]
    fam = family_of(ds)
    return (fam.long_name(var) if fam is not None else None) or var


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v.item() if hasattr(v, "item") else v)


def _colors(n: int, cmap: str = "viridis"):
    if cmap == "tab10" and n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    return [matplotlib.colormaps[cmap](v) for v in np.linspace(0.0, 0.9, max(n, 1))]


def _new(nrows: int, ncols: int, w: float = 3.4, h: float = 2.9, **kw):
    fig = Figure(figsize=(max(w * ncols + 0.6, 6.0), h * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _title(fig, ds, text: str = ""):
    name = ds.attrs.get("title", "")
    scale = ds.attrs.get("scale", "")
    head = f"{name} ({scale} scale)" if name and scale else name
    fig.suptitle(f"{head}: {text}" if head and text else (head or text), fontsize=10)


def _spacing(xs) -> float:
    u = np.unique(xs)
    return float(np.min(np.diff(u))) if len(u) > 1 else 1.0


def overlay_specs(spec: dict) -> list[dict]:
    """A figure's ``overlays``: a list of names or ``{name = ..., options}`` tables."""
    out = []
    for ov in spec.get("overlays", []) or []:
        if isinstance(ov, str):
            out.append({"name": ov})
        elif isinstance(ov, dict) and isinstance(ov.get("name"), str):
            out.append(dict(ov))
        else:
            raise ValueError(f"figure '{spec.get('kind')}': an overlay is a name or a table "
                             f"with a 'name', got {ov!r}")
    return out


def check_overlays(ds, spec: dict) -> None:
    """Refuse overlays the runs' family does not give (before anything is drawn)."""
    fam = family_of(ds)
    known = dict(fam.overlays) if fam is not None else {}
    for ov in overlay_specs(spec):
        if ov["name"] not in known:
            raise ValueError(f"figure '{spec.get('kind')}': unknown overlay '{ov['name']}' "
                             f"for family '{ds.attrs.get('family')}'; allowed: "
                             f"{', '.join(sorted(known)) or 'none'}")


def draw_overlays(ax, ds, spec: dict, where: dict) -> list:
    """Draw the figure's overlays (the family's functions) on one panel; ``where`` holds
    the panel's dim values. Returns the legend handles they made."""
    fam = family_of(ds)
    handles = []
    for ov in overlay_specs(spec):
        fn = fam.overlays[ov["name"]]
        options = {k: v for k, v in ov.items() if k != "name"}
        handles.extend(fn(ax, ds, spec, options, where) or [])
    return handles


def save(fig: Figure, path, dpi: int = DPI) -> Path:
    """Write a figure as PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
