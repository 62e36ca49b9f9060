"""Helpers shared by every figure: the paper style, labels, colours, panels, the figure
options and their check, overlays, saving.

The paper style (``PAPER``) is a matplotlib rc dict applied to every figure ``figure`` and
``draw_all`` draw: sizes for a one- or two-column figure, fonts of at least 8 pt at the
printed size, the Okabe-Ito colour-blind-safe palette for lines, viridis without its faint
yellow end for heatmaps, vector-friendly fonts in PDF and SVG, 300 dpi PNG.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib import style as mstyle
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogFormatterSciNotation

from .. import analysis
from ..config import ConfigError

DPI = 300  # PNG; PDF and SVG are vector
FORMATS = ("png", "pdf", "svg")  # the ones we name; any format matplotlib writes is taken
WIDTHS = {"single": 3.4, "double": 7.0}  # inches: one and two columns of a journal page
ROW_HEIGHT = 2.2  # inches per row of panels

# Okabe & Ito (2008), without the yellow that is hard to see on white
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
SEQUENTIAL = "viridis_paper"  # viridis up to 0.88: its end is a readable yellow-green
if SEQUENTIAL not in matplotlib.colormaps:
    _v = matplotlib.colormaps["viridis"]
    matplotlib.colormaps.register(mcolors.ListedColormap(_v(np.linspace(0.0, 0.88, 256)),
                                                         name=SEQUENTIAL))

PAPER = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "figure.titlesize": 10, "figure.labelsize": 9,
    "axes.prop_cycle": cycler(color=OKABE_ITO), "image.cmap": SEQUENTIAL,
    "lines.linewidth": 1.3, "lines.markersize": 3.5, "axes.linewidth": 0.6,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4, "axes.titlepad": 4.0, "legend.frameon": False,
    "legend.handlelength": 1.8, "legend.borderaxespad": 0.3,
    "figure.constrained_layout.use": True, "figure.dpi": 100,
    "savefig.dpi": DPI, "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
}
"""The default style of every figure (``style = "paper"``)."""

STYLES = {"paper": PAPER,
          # slides and notebooks: the same, larger
          "talk": {**PAPER, "font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12,
                   "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11,
                   "legend.title_fontsize": 11, "figure.titlesize": 13,
                   "lines.linewidth": 1.8, "lines.markersize": 5}}
"""Named styles for a figure's ``style`` option; any matplotlib style name
(``matplotlib.style.available``) or a list of names also works, applied on top of
``paper``."""

# axis labels of the engine's fields and dims in mathtext: a label, or a pair (label, short
# symbol for legends and panel titles); a family adds its own (Family.labels)
LABELS = {
    "step": "step", "time": ("time $t$", "$t$"), "run": "run",
    "seed": ("initialization seed", "seed"),
    "data_seed": "data seed",
    "learning_rate": (r"learning rate $\eta$", r"$\eta$"),
    "adam_b1": (r"Adam $\beta_1$", r"$\beta_1$"), "adam_b2": (r"Adam $\beta_2$", r"$\beta_2$"),
    "adam_eps": (r"Adam $\epsilon$", r"$\epsilon$"),
    "max_steps": "step budget", "max_time": "time budget", "rtol": "relative tolerance",
    "atol": "absolute tolerance", "tail_switch": "tail-solver switch",
    "polish_steps": "polish iterations", "loss_tol": "loss tolerance",
    "n_checkpoints": "checkpoints", "recovery_threshold": "recovery threshold",
    "n_test": "test samples",
}
# variables every family's runs get from the engine or analysis (a family's may rename them)
VAR_LABELS = {"recovered": "recovered", "converged": "converged", "diverged": "diverged",
              "stop_step": "steps done", "stop_time": "time $t$ at stop",
              "grad_norm": r"final gradient norm $\|\nabla L\|$",
              "trend": r"$d\,\log_{10}$ test error$\,/\,d\,\log_{10}$ step"}

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


def _fam(source):
    """A Family from a Dataset, a Family, a family name or None."""
    from ..family import Family, get

    if source is None or isinstance(source, Family):
        return source
    if isinstance(source, str):
        try:
            return get(source)
        except Exception:  # noqa: BLE001
            return None
    return family_of(source)


def _entry(name: str, source=None):
    fam = _fam(source)
    if fam is not None and name in fam.labels:
        return fam.labels[name]
    return LABELS.get(name)


def label(name: str, source=None) -> str:
    """The axis label (mathtext) of a config field or dim: the family's (``Family.labels``;
    ``source`` a Dataset, a Family or a family name), else the engine's, else the name with
    spaces for underscores."""
    entry = _entry(name, source)
    if entry is None:
        return name.replace("_", " ")
    return entry[0] if isinstance(entry, tuple) else entry


def symbol(name: str, source=None) -> str:
    """The short form of a field's label, for ``symbol = value`` in legends and panel
    titles (e.g. ``$n$``, ``$\\alpha$``): the second of a (label, symbol) pair, else the
    label."""
    entry = _entry(name, source)
    if isinstance(entry, tuple):
        return entry[1]
    return label(name, source)


def var_label(source, var: str) -> str:
    """The axis label (mathtext) of a recorded variable: its family's declared ``label``,
    else its ``long_name`` (the family's, else the Dataset's) with the units in brackets,
    else the engine's; ``polished_x`` is x "at the limit"."""
    base = var.removeprefix("polished_")
    fam = _fam(source)
    v = fam.table.get(base) if fam is not None else None
    text = None
    if v is not None:
        text = v.label or (f"{v.long_name} [{v.units}]" if v.units else v.long_name)
    elif base in VAR_LABELS:
        text = VAR_LABELS[base]
    elif hasattr(source, "data_vars") and base in source and source[base].attrs.get("long_name"):
        text = _plain(source[base].attrs["long_name"])
    text = text or base.replace("_", " ")
    return f"{text} at the limit" if var.startswith("polished_") else text


def _plain(text: str) -> str:
    """Plain text that mathtext would misread ($ and ^ outside math): escaped."""
    return text.replace("$", r"\$")


_var_label = lambda ds, var: var_label(ds, var)  # noqa: E731  (the older name)


def var_scale(source, var: str, values=None) -> str:
    """The value axis of a variable: its declared ``scale``, else "log" when the finite
    values are positive and span more than two decades, else "linear"."""
    fam = _fam(source)
    v = fam.table.get(var.removeprefix("polished_")) if fam is not None else None
    if v is not None and v.scale:
        return v.scale
    if values is not None:
        x = np.asarray(values, float)
        x = x[np.isfinite(x)]
        if x.size and np.all(x > 0) and x.max() / x.min() > 100:
            return "log"
    return "linear"


def _fmt(v, digits: int = 4) -> str:
    """A coordinate value for a legend or panel title: mathtext powers of ten for very small
    or large floats (``$10^{-20}$``, ``$2\\times10^{-4}$``)."""
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, (float, np.floating)) and v != 0 and np.isfinite(v) and \
            (abs(v) < 1e-3 or abs(v) >= 1e5):
        mant, exp = f"{v:.{max(digits - 2, 1)}e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        power = f"10^{{{int(exp)}}}"
        if mant in ("1", "-1"):
            return f"${mant[:-1]}{power}$"
        return f"${mant}\\times{power}$"
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer():  # 160, not 1.6e+02 at two digits
            return str(int(v))
        return f"{v:.{digits}g}"
    return str(v)


def plural(names, source=None) -> str:
    """Dims in a phrase such as "mean over seeds": their short symbols, "s" added to a
    word."""
    out = []
    for d in names:
        sym = symbol(d, source)
        out.append(sym if sym.endswith("$") else f"{sym}s")
    return ", ".join(out)


def equals(name: str, value, source=None) -> str:
    """``symbol = value``, e.g. ``$n$ = 4``."""
    return f"{symbol(name, source)} = {_fmt(value)}"


def _colors(n: int, cmap: str | None = None):
    """n colours: the Okabe-Ito palette for up to 7 (no ``cmap``), else ``cmap`` (default
    the sequential paper map) sampled evenly."""
    if cmap is None and n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    cm = matplotlib.colormaps[cmap or SEQUENTIAL]
    top = 0.88 if cmap in ("viridis", "plasma", "magma", "inferno", "cividis") else 1.0
    return [cm(v) for v in np.linspace(0.0, top, max(n, 1))]


def figsize(spec: dict, nrows: int, ncols: int, legend_right: bool = False) -> tuple:
    """A figure's size in inches: ``size`` ("single", "double", a width, or [width, height]),
    else two columns wide for two or more panels a row (or a legend at the side), one
    otherwise; ``ROW_HEIGHT`` a row."""
    size = spec.get("size")
    h = ROW_HEIGHT * nrows + 0.15
    if isinstance(size, (list, tuple)):
        return float(size[0]), float(size[1])
    if isinstance(size, str):
        return WIDTHS[size], h
    if isinstance(size, (int, float)):
        return float(size), h
    if ncols >= 3 or (ncols == 2 and legend_right):
        return WIDTHS["double"], h
    if ncols == 2 or legend_right:
        return 5.2, h
    return WIDTHS["single"], max(h, 2.5)


def _new(nrows: int, ncols: int, spec: dict | None = None, legend_right: bool = False, **kw):
    fig = Figure(figsize=figsize(spec or {}, nrows, ncols, legend_right), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def finish(fig, spec: dict, axes=None, xlabel: str | None = None, ylabel: str | None = None):
    """The options every kind shares, applied last: ``title`` (a figure title; none unless
    asked), ``xlabel`` / ``ylabel`` (replace the axis labels where the figure has them)."""
    if spec.get("title"):
        fig.suptitle(spec["title"])
    axes = [ax for ax in (axes if axes is not None else fig.axes) if ax.get_visible()]
    for ax in axes:
        if "xlabel" in spec and ax.get_xlabel():
            ax.set_xlabel(spec["xlabel"])
        if "ylabel" in spec and ax.get_ylabel():
            ax.set_ylabel(spec["ylabel"])
    return fig


class _FewLogLabels(LogFormatterSciNotation):
    """Minor tick labels of a log axis only where the view spans under about a decade and a
    third, and then only at 2 and 5 times a power of ten (matplotlib's default labels 2, 3,
    4 and 6 too, which overlap on a narrow axis)."""

    def __init__(self):
        super().__init__(labelOnlyBase=False, minor_thresholds=(1.3, 0.0))

    def set_locs(self, locs=None):
        super().set_locs(locs)
        lo, hi = sorted(abs(float(v)) for v in self.axis.get_view_interval())
        self._narrow = lo > 0 and np.log10(hi / lo) < 0.6
        if self._narrow:
            # under about half a decade: 2 and 5 alone may leave one label or none
            self._sublabels = set(range(1, 10))
        elif self._sublabels != {1}:
            self._sublabels = {1, 2, 5}

    def __call__(self, x, pos=None):
        text = super().__call__(x, pos)
        if text and getattr(self, "_narrow", False):
            return f"${x:.3g}$"  # 0.3, 1.2: plain numbers read better than 3x10^-1 here
        return text


def log_ticks(ax, which: str = "both"):
    """Fewer, non-overlapping labels on a log axis: a major tick per decade (at most about
    six labelled), minor ticks labelled only on an axis of about a decade (at 2 and 5)."""
    from matplotlib.ticker import LogLocator

    for name in ("x", "y") if which == "both" else (which,):
        axis = getattr(ax, f"{name}axis")
        if axis.get_scale() != "log":
            continue
        axis.set_major_locator(LogLocator(base=10, numticks=6))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
        axis.set_minor_formatter(_FewLogLabels())


def _spacing(xs) -> float:
    u = np.unique(xs)
    return float(np.min(np.diff(u))) if len(u) > 1 else 1.0


# ---------------------------------------------------------------- figure options
COMMON_OPTIONS = {
    "kind": "the figure kind", "file": "the file name in the figures folder",
    "format": "png, pdf, svg (or another format matplotlib writes), or a list of them "
              "(default: the file's suffix, else png)",
    "dpi": f"PNG resolution (default {DPI})",
    "size": "single, double, a width in inches or [width, height]",
    "style": "paper (default), talk, a matplotlib style name or a list of them",
    "title": "a title over the figure (default: none)",
    "xlabel": "replaces the x axis label", "ylabel": "replaces the y axis label",
    "legend": "where the legend goes: a matplotlib loc ('upper right', 'best'), 'outside "
              "right' (or left, top, bottom), 'spare' (an empty panel slot) or 'none'",
}
"""The options every figure kind takes."""

KIND_OPTIONS = {
    "error_vs": ("x", "y", "panel", "hue", "points", "reduce", "over", "clip", "xscale",
                 "yscale", "ylim", "overlays", "select"),
    "heatmap": ("var", "x", "y", "panel", "select", "overlays", "xscale", "yscale", "vmin",
                "vmax", "cmap", "cols"),
    "curves": ("vars", "hue", "select", "logy", "xscale", "yscale", "cols", "cmap"),
    "boundary": ("x", "hue", "panel", "slopes"),
}
"""The options of the generic kinds, beyond ``COMMON_OPTIONS``."""

SCALES = ("linear", "log", "symlog")


def options(*names):
    """Declare the options a figure function takes beyond ``COMMON_OPTIONS`` (a family's
    kind): ``check_spec`` refuses the others."""
    def mark(fn):
        fn.options = tuple(names)
        return fn
    return mark


def _where(spec) -> str:
    return f"figure '{spec.get('file') or spec.get('kind', 'error_vs')}'"


def check_spec(spec: dict, family=None, where: str | None = None) -> None:
    """Refuse a ``[[figure]]`` table before anything is trained or drawn: an unknown kind
    for the family, an option the kind does not take, or a bad value of a shared option
    (format, dpi, size, style, scales). ``family``: a Family, a family name, a Dataset or
    None (the generic kinds only). One-line ``ConfigError`` naming the option."""
    if not isinstance(spec, dict):
        raise ConfigError(f"a [[figure]] is a table, got {spec!r}")
    where = where or _where(spec)
    kind = spec.get("kind", "error_vs")
    fam = _fam(family)
    table = {**{k: None for k in KIND_OPTIONS}, **(dict(fam.figures) if fam else {})}
    if kind not in table:
        raise ConfigError(f"{where}: unknown figure kind '{kind}'"
                          + (f" for family '{fam.name}'" if fam else "")
                          + f"; allowed: {', '.join(table)}")
    own = KIND_OPTIONS.get(kind) if kind in KIND_OPTIONS else getattr(table[kind], "options", None)
    if own is not None:
        allowed = [*COMMON_OPTIONS, *own]
        for key in spec:
            if key not in allowed:
                raise ConfigError(f"{where}: unknown option '{key}' for kind '{kind}'; "
                                  f"allowed: {', '.join(allowed)}")
    formats = spec.get("format", [])
    for f in [formats] if isinstance(formats, str) else formats:
        if f not in supported_formats():
            raise ConfigError(f"{where}: format {f!r} is not one of "
                              f"{', '.join(sorted(supported_formats()))}")
    dpi = spec.get("dpi", DPI)
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 0 < dpi <= 2400:
        raise ConfigError(f"{where}: 'dpi' must be a number in (0, 2400], got {dpi!r}")
    size = spec.get("size")
    ok = (size is None or (isinstance(size, str) and size in WIDTHS) or
          (isinstance(size, (int, float)) and size > 0) or
          (isinstance(size, (list, tuple)) and len(size) == 2 and
           all(isinstance(s, (int, float)) and s > 0 for s in size)))
    if not ok or isinstance(size, bool):
        raise ConfigError(f"{where}: size must be single, double, a width in inches or "
                          f"[width, height], got {size!r}")
    styles = spec.get("style", [])
    for s in [styles] if isinstance(styles, str) else styles:
        if s not in STYLES and s not in mstyle.available:
            raise ConfigError(f"{where}: unknown style '{s}'; allowed: "
                              f"{', '.join(STYLES)} or a matplotlib style")
    for key in ("xscale", "yscale"):
        if key in spec and spec[key] not in SCALES:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(SCALES)}, "
                              f"got {spec[key]!r}")
    for key in ("title", "xlabel", "ylabel"):
        if key in spec:
            if not isinstance(spec[key], str):
                raise ConfigError(f"{where}: {key} must be a string, got {spec[key]!r}")
            check_mathtext(spec[key], f"{where}: {key}")
    if "legend" in spec:
        from matplotlib.legend import Legend

        loc = spec["legend"]
        if not (isinstance(loc, str) and (loc in Legend.codes or loc in ("none", "spare") or
                                          loc.startswith("outside "))):
            raise ConfigError(f"{where}: legend must be a location such as 'upper right', "
                              f"'outside right' or 'none', got {loc!r}")
    if spec.get("reduce", "mean") not in ("mean", "median", "max", "min"):
        raise ConfigError(f"{where}: reduce must be mean, median, max or min, "
                          f"got {spec['reduce']!r}")


def check_mathtext(text: str, where: str = "label") -> None:
    """Refuse a label that matplotlib's mathtext cannot parse (one-line ConfigError)."""
    from matplotlib.mathtext import MathTextParser

    parser = MathTextParser("path")
    for part in re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", text):
        try:
            parser.parse(f"${part}$")
        except ValueError as e:
            raise ConfigError(f"{where}: ${part}$ is not valid mathtext "
                              f"({str(e).splitlines()[0]})") from None


@contextlib.contextmanager
def style_context(spec: dict | None = None):
    """The paper style, then the figure's ``style`` (names or a list), as an rc context."""
    styles = (spec or {}).get("style") or []
    styles = [styles] if isinstance(styles, str) else list(styles)
    sheets = [PAPER] + [STYLES.get(s, s) for s in styles]
    with mstyle.context(sheets):
        yield


def legend(fig_or_ax, spec: dict, handles, labels, default: str, **kw):
    """A legend where ``spec["legend"]`` says (default ``default``; "none": no legend).
    "outside ..." places it beside the panels (a figure legend)."""
    loc = spec.get("legend", default)
    loc = default if loc == "spare" else loc  # a kind without spare slots
    if loc == "none" or not handles:
        return None
    if loc.startswith("outside"):
        fig = fig_or_ax if isinstance(fig_or_ax, Figure) else fig_or_ax.figure
        loc = {"outside right": "outside right center", "outside left": "outside left center",
               "outside top": "outside upper center", "outside bottom": "outside lower center",
               }.get(loc, loc)
        return fig.legend(handles, labels, loc=loc, **kw)
    ax = fig_or_ax.axes[0] if isinstance(fig_or_ax, Figure) else fig_or_ax
    return ax.legend(handles, labels, loc=loc, **kw)


# ---------------------------------------------------------------- overlays
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
    fam = _fam(ds)
    known = dict(fam.overlays) if fam is not None else {}
    for ov in overlay_specs(spec):
        if ov["name"] not in known:
            raise ConfigError(f"figure '{spec.get('kind')}': unknown overlay '{ov['name']}' "
                              f"for family '{fam.name if fam else ds.attrs.get('family')}'; "
                              f"allowed: {', '.join(sorted(known)) or 'none'}")


def draw_overlays(ax, ds, spec: dict, where: dict) -> list:
    """Draw the figure's overlays (the family's functions) on one panel; ``where`` holds
    the panel's dim values. Returns the legend handles they made."""
    fam = family_of(ds)
    handles = []
    for ov in overlay_specs(spec):
        fn = fam.overlays[ov["name"]]
        opts = {k: v for k, v in ov.items() if k != "name"}
        handles.extend(fn(ax, ds, spec, opts, where) or [])
    return handles


# ---------------------------------------------------------------- saving
def supported_formats() -> set[str]:
    """The file formats matplotlib writes here (png, pdf, svg, eps, ...)."""
    return set(Figure().canvas.get_supported_filetypes())


def formats_of(spec: dict, path) -> list[str]:
    """The formats a figure is written in: ``format`` (a name or a list), else the file's
    suffix (a format matplotlib writes), else png."""
    f = spec.get("format")
    if f:
        return [f] if isinstance(f, str) else list(f)
    suffix = Path(path).suffix.lstrip(".").lower()
    return [suffix if suffix in supported_formats() else "png"]


def save(fig: Figure, path, dpi: int = DPI, style: dict | None = None) -> Path:
    """Write a figure (creating the folder); the format is the path's suffix (PNG at
    ``dpi``, PDF, SVG); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with style_context(style):
        thin_tick_labels(fig)
        fig.savefig(path, dpi=dpi)
    return path


def _wrap_clashing_titles(fig: Figure) -> bool:
    """Panel titles that run into a neighbour's ("n = 9 (separation Q1)" beside
    "n = 10 (all minima perfect)") are broken before their parenthesis, onto two lines.
    Expects a drawn figure; returns whether a title changed (the layout then moves)."""
    titles = [ax.title for ax in fig.axes if ax.get_visible() and ax.title.get_text()]
    boxes = [t.get_window_extent() for t in titles]
    wrapped = False
    for i, t in enumerate(titles):
        if " (" in t.get_text() and any(boxes[i].overlaps(b) for j, b in enumerate(boxes)
                                        if j != i):
            t.set_text(t.get_text().replace(" (", "\n(", 1))
            wrapped = True
    return wrapped


class _Blanked(Formatter):
    """A tick formatter that writes nothing at some locations and defers to ``inner``
    everywhere else (offsets and scientific notation included)."""

    def __init__(self, inner: Formatter, blank: set):
        self.inner, self.blank = inner, np.asarray(sorted(blank), float)

    def set_axis(self, axis):
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def set_locs(self, locs):
        self.inner.set_locs(locs)

    def _blanked(self, x) -> bool:
        return bool(np.any(np.isclose(x, self.blank, rtol=1e-9, atol=0.0)))

    def __call__(self, x, pos=None):
        return "" if self._blanked(x) else self.inner(x, pos)

    def format_ticks(self, values):
        self.set_locs(values)
        return [self(v, i) for i, v in enumerate(values)]

    def get_offset(self):
        return self.inner.get_offset()


def thin_tick_labels(fig: Figure, gap: float = 2.0) -> None:
    """Blank every tick label that would overlap a label kept before it (in points; ``gap``
    apart at least): on each axis, major labels from the lowest value up, then minor labels
    wherever they clear every kept one. A crowded axis (log ticks 300, 1000, 3000 on a
    narrow panel, step counts 10000, 15000, ...) then shows every other label instead of
    a run-together string."""
    fig.draw_without_rendering()
    if _wrap_clashing_titles(fig):  # a second layout pass only when the titles moved it
        fig.draw_without_rendering()
    px = gap * fig.dpi / 72.0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
            kept = []
            for minor in (False, True):
                labels = [lab for lab in (axis.get_minorticklabels() if minor
                                          else axis.get_majorticklabels())
                          if lab.get_visible() and lab.get_text()]
                boxes = sorted(((lab.get_window_extent(), lab.get_position()[0 if horizontal
                                                                              else 1])
                                for lab in labels),
                               key=lambda b: b[0].x0 if horizontal else b[0].y0)
                blank = set()
                for box, loc in boxes:
                    grown = box.expanded(1.0, 1.0).padded(px / 2)
                    if any(grown.overlaps(k) for k in kept):
                        blank.add(loc)
                    else:
                        kept.append(box)
                if blank:
                    if minor:
                        axis.set_minor_formatter(_Blanked(axis.get_minor_formatter(), blank))
                    else:
                        axis.set_major_formatter(_Blanked(axis.get_major_formatter(), blank))
