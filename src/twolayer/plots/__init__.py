"""Figures from sweep Datasets: every function takes a Dataset and returns a matplotlib Figure.

A sweep spec lists its figures as ``[[figure]]`` tables; ``kind`` picks the function, the
other keys name the Dataset's dims (the same names as the config fields and the axes):

    [[figure]]
    kind = "error_vs"     # error_vs | dynamics | endpoints | neuron_sizes | heatmap | curves
    file = "fig4.png"     # written by draw_all into the figures folder
    x = "imbalance"       # the other keys depend on the kind (see each function)
    panel = "n_train"
    hue = "data_seed"

``figure`` draws one spec, ``draw_all`` every spec stored in a Dataset's ``sweep``
attribute. Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state,
no display needed), so they work under any backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import matplotlib
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import analysis, theory

DPI = 130
# plot labels: one name per concept, the Dataset's own dim names
LABELS = {"imbalance": "imbalance c~", "n_train": "n_train", "init_scale": "init_scale",
          "step": "step", "seed": "seed", "data_seed": "data_seed", "width": "width",
          "learning_rate": "learning_rate", "time": "time"}
THRESHOLD_NAMES = {"optimistic": "optimistic", "separation_q2": "separation Q2",
                   "separation_q1": "separation Q1", "all_perfect": "all minima perfect"}
ROLES = ("x", "panel", "hue", "points")


# ---------------------------------------------------------------- settings of a sweep
sweep_spec = analysis.sweep_spec
setting = analysis.setting  # a config value of the runs: coordinate, attribute or sweep spec


def _values(ds, name, default=None) -> np.ndarray:
    return np.asarray(setting(ds, name, default))


def threshold_of(ds, spec: dict | None = None) -> float:
    """Where errors are clipped: the spec's ``clip``, else the sweep's recovery_threshold
    (the smallest, if swept), else 1e-8."""
    if spec and spec.get("clip") is not None:
        return float(spec["clip"])
    v = _values(ds, "recovery_threshold", 1e-8)
    return float(np.min(v))


def sample_sizes_of(ds) -> dict:
    """theory.sample_sizes for the sweep's input_dim, bias and width (one value each)."""
    def one(name, default):
        v = _values(ds, name, default)
        return np.asarray(v).ravel()[0].item() if np.ndim(v) else v

    m0 = len(setting(ds, "target_a", (1.0,)) or (1.0,))
    return theory.sample_sizes(int(one("input_dim", 1)), bool(one("bias", True)),
                               int(one("width", 2)), m0)


def label(name: str) -> str:
    return LABELS.get(name, name)


def _var_label(ds, var: str) -> str:
    """The variable's long_name (kept by the engine), else the family's description of it."""
    if var in ds and ds[var].attrs.get("long_name"):
        return ds[var].attrs["long_name"]
    try:
        from ..families import get as get_family

        fam = get_family(sweep_spec(ds).get("family") or ds.attrs.get("family", "single_neuron"))
        return (getattr(fam, "describe", None) or {}).get(var, var)
    except Exception:  # noqa: BLE001
        return var


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v.item() if hasattr(v, "item") else v)


def _n_label(n, sizes: dict) -> str:
    """'n_train = 4 (separation Q2)': which threshold a sample size sits at."""
    n = int(n)
    tags = [THRESHOLD_NAMES[k] for k, v in sizes.items() if v == n]
    if not tags and n < sizes["optimistic"]:
        tags = ["below optimistic"]
    return f"n_train = {n}" + (f" ({', '.join(tags)})" if tags else "")


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


# ---------------------------------------------------------------- error_vs
def _threshold_lines(ax, ds):
    """Vertical lines at the optimistic and separation sample sizes (x = n_train)."""
    sizes = sample_sizes_of(ds)
    styles = {"optimistic": ("k", ":"), "separation_q2": ("tab:red", "--"),
              "separation_q1": ("tab:purple", "-.")}
    for key, (color, ls) in styles.items():
        ax.axvline(sizes[key], color=color, ls=ls, lw=1.0, gid=f"threshold:{key}",
                   label=f"{THRESHOLD_NAMES[key]} n = {sizes[key]}")


def error_vs(ds, spec: dict) -> Figure:
    """Final ``y`` (default ``test_error``) against the dim ``x``; one panel per value of
    ``panel``, one curve per value of ``hue``; ``points`` (a dim) scatters every value as a dot
    and draws the mean and median over it; the remaining dims are reduced by ``reduce``
    ("mean", "median", "max", "min"; default "mean") over ``over`` (a dim or a list; default:
    all the others). Errors are clipped below at ``clip`` (default: the recovery threshold),
    drawn dashed; log y; ``xscale = "log"`` for a log x; when x is n_train the optimistic and
    separation sizes are vertical lines, when the panels are n_train their titles name them."""
    y = spec.get("y", "test_error")
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
    if over:
        da = getattr(da, how)(over, skipna=True)
        bad = bad.any(over)
        reduced = f"{how} over {', '.join(over)} of"
    clip = threshold_of(ds, spec)
    shown = da.clip(min=clip)
    # runs stopped by a budget while still converging: open circles (analysis.outcome)
    unresolved = None
    rec = "polished_recovered" if y.startswith("polished_") else "recovered"
    if rec in ds and "converged" in ds:
        unresolved = analysis.outcome(ds, recovered=rec) == "unresolved"

    panels = list(da[panel].values) if panel else [None]
    hues = list(da[hue].values) if hue else [None]
    colors = _colors(len(hues))
    sizes = sample_sizes_of(ds) if (x == "n_train" or panel == "n_train") else None
    ncols = len(panels) if len(panels) <= 4 else 3
    nrows = -(-len(panels) // ncols)
    fig, axes = _new(nrows, ncols, sharey=True)
    ylab = f"{reduced}\nfinal {_var_label(ds, y)}" if reduced else f"final {_var_label(ds, y)}"
    xs = np.asarray(da[x].values, dtype=float)
    for i, pv in enumerate(panels):
        ax = axes.flat[i]
        sub = shown.sel({panel: pv}) if panel else shown
        for hv, color in zip(hues, colors):
            cur = sub.sel({hue: hv}) if hue else sub
            name = f"{label(hue)} = {_fmt(hv)}" if hue else None
            if points:
                vals = cur.transpose(x, points).values
                k = vals.shape[1]
                jitter = (np.linspace(-1, 1, k) * 0.0 if k == 1 else
                          (np.arange(k) / (k - 1) - 0.5) * 0.08 * _spacing(xs))
                ax.scatter((xs[:, None] + jitter[None, :]).ravel(), vals.ravel(), s=6,
                           alpha=0.35, color=color if hue else "tab:blue", lw=0,
                           label=f"each {label(points)}" if i == 0 and not hue else None)
                raw = (da.sel({panel: pv}) if panel else da)
                raw = raw.sel({hue: hv}) if hue else raw
                mean = raw.mean(points, skipna=True).clip(min=clip).transpose(x).values
                med = raw.median(points, skipna=True).clip(min=clip).transpose(x).values
                ax.plot(xs, mean, "-o", ms=3, color="k" if not hue else color,
                        label=("mean" if not hue else f"{name}, mean") if i == 0 else None)
                ax.plot(xs, med, "--s", ms=3, color="tab:orange" if not hue else color,
                        label=("median" if not hue else f"{name}, median") if i == 0 else None)
            else:
                ax.plot(xs, cur.transpose(x).values, "-o", ms=3, lw=1.2, color=color,
                        label=name if i == 0 else None)
        nbad = (bad.sel({panel: pv}) if panel else bad)
        nbad = nbad.sum([d for d in nbad.dims if d != x]).transpose(x).values
        if nbad.any():
            top = ax.get_xaxis_transform()  # x in data, y in axes fraction
            ax.scatter(xs[nbad > 0], np.full((nbad > 0).sum(), 0.97), marker="x", s=25,
                       color="tab:red", transform=top, gid="diverged", clip_on=False,
                       label="diverged (left out)" if i == 0 else None)
            for xv, k in zip(xs[nbad > 0], nbad[nbad > 0]) if (nbad > 0).sum() <= 8 else ():
                ax.annotate(str(int(k)), (xv, 0.97), xycoords=top, xytext=(3, -3),
                            textcoords="offset points", fontsize=6, color="tab:red")
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
                               label="unresolved (still converging)" if i == 0 and hv == hues[0]
                               else None)
        ax.axhline(clip, color="gray", ls="--", lw=1.0, gid="clip",
                   label=f"recovery threshold {clip:g}" if i == 0 else None)
        if x == "n_train":
            _threshold_lines(ax, ds)
            ax.set_xticks(xs)
        ax.set_yscale("log")
        if spec.get("xscale") == "log":
            ax.set_xscale("log")
            lo, hi = np.nanmin(xs[xs > 0]), np.nanmax(xs)
            ax.set_xlim(lo / 1.5, hi * 1.5)
        else:  # every x value in view, even where all runs diverged
            pad = 0.06 * (np.nanmax(xs) - np.nanmin(xs) or 1.0)
            ax.set_xlim(np.nanmin(xs) - pad, np.nanmax(xs) + pad)
        ax.set_xlabel(label(x))
        if i % ncols == 0:
            ax.set_ylabel(ylab)
        if panel:
            ax.set_title(_n_label(pv, sizes) if panel == "n_train" else
                         f"{label(panel)} = {_fmt(pv)}", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels_ = [], []
    for ax in axes.flat[:1]:
        handles, labels_ = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels_, fontsize=7, loc="outside right center", frameon=False)
    _title(fig, ds, f"final {_var_label(ds, y)}, clipped below at {clip:g}")
    return fig


def _spacing(xs) -> float:
    u = np.unique(xs)
    return float(np.min(np.diff(u))) if len(u) > 1 else 1.0


# ---------------------------------------------------------------- dynamics
def _pick_neurons(ds, run: dict, k: int) -> np.ndarray:
    """The k neurons with the largest initial |C_k| (all when the width is at most k)."""
    n = ds.sizes.get("neuron", 0)
    if n <= k:
        return np.arange(n)
    c = np.abs(ds["c_coeff"].isel(run).values)
    return np.sort(np.argsort(-np.nan_to_num(c))[:k])


def dynamics(ds, spec: dict) -> Figure:
    """Training loss and parameters against the step (gradient flow: the time), one colour
    per value of ``hue`` (default ``init_scale``). Top row raw, bottom row after the
    small-initialization time shift (analysis.time_shifted: log(1/alpha) / log(1 + eta s'(0)
    |g|) steps for GD, log(1/alpha) / (s'(0) |g|) for flow). Columns: the loss (log y), then
    a, w, b per neuron when recorded (times sign(C_1), which folds the mirror image of an odd
    activation onto the rest), else ``neuron_size`` of the ``neurons`` (default 3) neurons
    with the largest initial |C_k| (log y). ``xscale = "log"``: the whole budget on a
    symmetric-log axis (linear below 10); else the axis ends at ``xmax`` (default: twice the
    last step with a loss above 1e-3 of its start). Other dims: their first value."""
    hue = spec.get("hue", "init_scale")
    clock = analysis.checkpoint_dim(ds["train_loss"])
    others = {d: 0 for d in ds["train_loss"].dims if d not in (clock, hue)}
    sub = ds.isel(others) if others else ds
    optimizer = "flow" if clock == "time" else spec.get("optimizer", setting(ds, "optimizer", "gd"))
    rule = {"gd": "log(1/alpha)/log(1+eta|g|)", "flow": "log(1/alpha)/|g|"}.get(optimizer)
    shifted = None
    if rule:
        # slope s'(0) and the loss (sum, mean or mse) come from the sweep's settings
        shifted = analysis.time_shifted(sub)
    params = [v for v in ("a", "w", "b") if v in sub and bool(sub[v].notnull().any())]
    cols = ["train_loss"] + (params or ["neuron_size"])
    nrows = 2 if shifted is not None else 1
    fig, axes = _new(nrows, len(cols), w=3.0, h=2.6)
    hues = list(sub[hue].values) if hue in sub.dims else [None]
    colors = _colors(len(hues), "plasma")
    k = int(spec.get("neurons", 3))
    ls = ["-", "--", ":", "-."]
    if params:
        sign = np.sign(sub["c_coeff"].isel(neuron=0)).where(lambda s: s != 0, 1.0)
    steps = sub[clock].values.astype(float)
    logx = spec.get("xscale") == "log"
    xmax = (float(spec["xmax"]) if spec.get("xmax") else
            steps[-1] if logx else _active_until(sub))
    for hv, color in zip(hues, colors):
        run = {hue: list(sub[hue].values).index(hv)} if hv is not None else {}
        one = sub.isel(run)
        xs_rows = [steps]
        if shifted is not None:
            xs_rows.append(np.asarray(shifted.isel(run).values, float))
        neurons = _pick_neurons(sub, run, k)
        for r, xs in enumerate(xs_rows):
            for c, var in enumerate(cols):
                ax = axes[r, c]
                if var == "train_loss":
                    ax.plot(xs, one["train_loss"].values, color=color, lw=1.2,
                            label=f"{label(hue)} = {_fmt(hv)}" if hv is not None else None)
                    ax.set_yscale("log")
                    continue
                val = one[var]
                if var in ("a", "w", "b"):
                    val = val * sign.isel(run) if hue in sign.dims else val * sign
                if "input" in val.dims:
                    val = val.isel(input=0)
                for j, nk in enumerate(neurons):
                    ax.plot(xs, val.isel(neuron=int(nk)).values, color=color, lw=1.1,
                            ls=ls[j % len(ls)])
                if var == "neuron_size":
                    ax.set_yscale("log")
    for r in range(nrows):
        for c, var in enumerate(cols):
            ax = axes[r, c]
            if logx:  # linear through the escape (about +-100 steps around 0 once shifted)
                ax.set_xscale("symlog", linthresh=10 if r == 0 else 100)
            if r == 0:
                ax.set_xlim(0, xmax)
                ax.set_xlabel(clock)
            else:
                lo = float(np.nanmin(shifted.isel({clock: 0}).values)) if shifted is not None else 0
                ax.set_xlim(lo, xmax - max(lo, -xmax))
                ax.set_xlabel(f"{clock} - shift")
            name = _var_label(ds, var)
            if var in ("a", "w", "b"):
                name = f"sign(C_1) x {name}"
            ax.set_ylabel(name, fontsize=8)
    axes[0, 0].legend(fontsize=6)
    if len(cols) > 1:
        big = sub.sizes.get("neuron", 0) > len(neurons)
        names = [f"neuron {int(n) + 1}" + (" (large |C_k|)" if big else "") for n in neurons]
        axes[0, 1].legend([Line2D([], [], color="k", ls=ls[j % 4]) for j in range(len(neurons))],
                          names, fontsize=6)
    fixed = ", ".join(f"{d} = {_fmt(sub[d].values)}" for d in others if d in sub.coords)
    unit = "steps" if clock == "step" else "time"
    text = f"raw (top) and shifted by {rule} {unit} (bottom)" if rule else "raw"
    _title(fig, ds, text + (f"; {fixed}" if fixed else ""))
    return fig


def _active_until(ds) -> float:
    """A step range that shows the escape and the fast fall: twice the last step at which a
    run's loss is still above 1e-3 of its initial value (the slow tail after it is cut)."""
    loss = ds["train_loss"]
    clock = analysis.checkpoint_dim(loss)
    steps = ds[clock].values.astype(float)
    high = (loss > 1e-3 * loss.isel({clock: 0})).any([d for d in loss.dims if d != clock]).values
    end = steps[np.nonzero(high)[0].max()] if high.any() else steps[-1]
    return float(min(steps[-1], max(2.0 * end, 10.0)))


# ---------------------------------------------------------------- endpoints (width 2)
def endpoints(ds, spec: dict) -> Figure:
    """Width-2 end points: the final (a_1, a_2) coloured by c~ (analysis.imbalance_of) with the
    Q1 line a_1 + a_2 = a* and the Q2 lines a_1 = 0, a_2 = 0; |C1/C2| against ``x`` (default:
    the first dim, e.g. seed; log y) coloured by the branch reached (analysis.branch, tolerances
    ``a_tol``, ``match_tol``); and the final (w_1, w_2) coloured by branch. ``at =
    "polished"``: the same for the polished end points (``polish = true``)."""
    at = spec.get("at", "final")  # or "polished": the end points of the polish
    pre = "polished_" if at == "polished" else ""
    a = analysis.final(ds[f"{pre}a"])
    lead = [d for d in a.dims if d != "neuron"]
    x = spec.get("x") or (lead[0] if lead else None)
    ctil = analysis.imbalance_of(ds)
    ratio = analysis.c_ratio(ds)
    kw = {k: spec[k] for k in ("a_tol", "match_tol") if k in spec}
    target_a = float((setting(ds, "target_a", (1.0,)) or (1.0,))[0])
    br = analysis.branch(ds, target_a=target_a, target_b=float(
        (setting(ds, "target_b", (1.0,)) or (1.0,))[0]), at=at, **kw)
    flat = lambda v: np.asarray(v.transpose(*lead, ...).values).reshape(-1)  # noqa: E731
    a1, a2 = flat(a.isel(neuron=0)), flat(a.isel(neuron=1))
    fig, axes = _new(1, 3, w=3.9, h=3.2)
    ax = axes[0, 0]
    sc = ax.scatter(a1, a2, c=flat(ctil), cmap="viridis", vmin=0, vmax=1, s=12)
    fig.colorbar(sc, ax=ax, label=label("imbalance"))
    lim = max(1.2 * target_a, np.nanmax(np.abs(np.r_[a1, a2])) * 1.1 if a1.size else 1.0)
    t = np.linspace(-lim, lim, 2)
    ax.plot(t, target_a - t, color="tab:red", lw=1, label=f"Q1: a_1 + a_2 = {target_a:g}")
    # an odd activation makes (-a, -w, -b) the same neuron: Q1 with one or both neurons
    # mirrored lies on the lines +-a_1 +- a_2 = a*
    for s1, s2 in ((1, -1), (-1, 1), (-1, -1)):
        ax.plot(t, (target_a - s1 * t) * s2, color="tab:red", lw=0.7, ls=":",
                label="Q1 mirrored: ±a_1 ± a_2 = a*" if (s1, s2) == (1, -1) else None)
    ax.axvline(0, color="k", lw=0.8, ls="--", label="Q2: a_1 = 0 or a_2 = 0")
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="final a_1", ylabel="final a_2")
    ax.set_title("end points (output weights)", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    palette = {"Q1": "tab:blue", "Q2": "tab:orange", "converging": "tab:green", "none": "tab:gray"}
    bflat = flat(br)
    ax = axes[0, 1]
    xs = flat(ds[x].broadcast_like(ratio)) if x else np.arange(bflat.size)
    rflat = flat(ratio)
    for name, color in palette.items():
        m = bflat == name
        ax.scatter(xs[m], rflat[m], s=10, color=color, label=f"{name} ({m.sum()})")
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    tol = ", ".join(f"{k} {v:g}" for k, v in br.attrs.items() if k.endswith("_tol"))
    ax.set(xlabel=label(x) if x else "run", ylabel="|C1/C2|")
    ax.set_title(f"branch reached ({tol})" if tol else "branch reached", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[0, 2]
    w = analysis.final(ds[f"{pre}w"]).isel(input=0)
    for name, color in palette.items():
        m = bflat == name
        ax.scatter(flat(w.isel(neuron=0))[m], flat(w.isel(neuron=1))[m], s=10, color=color,
                   label=name)
    ax.set(xlabel="final w_1", ylabel="final w_2")
    ax.set_title("end points (input weights)", fontsize=9)
    ax.legend(fontsize=6)
    where = {"final": "end points", "polished": "polished end points"}[at]
    _title(fig, ds, f"{where} by initial imbalance and branch")
    return fig


# ---------------------------------------------------------------- neuron sizes vs width
def _module_target(cfg, xs):
    from ..runtime import configure

    configure()  # float64
    import jax.numpy as jnp

    from ..families import single_neuron

    return np.asarray(single_neuron.target(cfg, jnp.asarray(xs, jnp.float64)[:, None]))


def neuron_sizes(ds, spec: dict) -> Figure:
    """Final ``neuron_size`` of every neuron against ``x`` (default ``width``), log-log,
    coloured by the initial |C_k| (log colour scale); and the learned functions ``f_grid`` on
    ``x_grid`` for every value of ``x``, with the target and the training points (fixed
    sampling)."""
    x = spec.get("x", "width")
    size = analysis.final(ds["neuron_size"])
    c = np.abs(ds["c_coeff"])
    others = {d: 0 for d in size.dims if d not in (x, "neuron")}
    size, c = size.isel(others), c.isel(others)
    has_f = "f_grid" in ds and "x_grid" in ds.coords
    fig, axes = _new(1, 2 if has_f else 1, w=4.2, h=3.4)
    ax = axes[0, 0]
    xv = np.broadcast_to(np.asarray(ds[x].values, float)[:, None], size.transpose(x, "neuron").shape)
    sv = size.transpose(x, "neuron").values
    cv = c.transpose(x, "neuron").values
    ok = np.isfinite(sv) & np.isfinite(cv) & (cv > 0) & (sv > 0)
    vmin = max(np.nanmin(cv[ok]), np.nanmax(cv[ok]) * 1e-6) if ok.any() else 1e-22
    norm = mcolors.LogNorm(vmin=vmin, vmax=np.nanmax(cv[ok]) if ok.any() else 1.0)
    order = np.argsort(cv[ok])  # largest |C_k| drawn last, on top
    sc = ax.scatter(xv[ok][order], sv[ok][order], c=np.maximum(cv[ok][order], vmin), norm=norm,
                    cmap="viridis", s=10)
    fig.colorbar(sc, ax=ax, label="initial |C_k|")
    ax.set(xscale="log", yscale="log", xlabel=label(x), ylabel="final " + _var_label(ds, "neuron_size"),
           title="neuron sizes")
    if has_f:
        ax = axes[0, 1]
        f = ds["f_grid"].isel({d: 0 for d in ds["f_grid"].dims if d not in (x, "x_grid")})
        grid = ds["x_grid"].values
        vals = list(ds[x].values)
        for v, color in zip(vals, _colors(len(vals), "viridis")):
            ax.plot(grid, f.sel({x: v}).values, color=color, lw=1.2,
                    label=f"{label(x)} = {_fmt(v)}")
        cfg = _cfg(ds)
        ax.plot(grid, _module_target(cfg, grid), "k--", lw=1.2, label="target")
        if setting(ds, "sampling", "fixed") == "fixed" and "n_train" not in ds.dims:
            r = float(setting(ds, "input_range", 2.0))
            xt = np.linspace(-r, r, int(setting(ds, "n_train", 6)))
            ax.plot(xt, _module_target(cfg, xt), "ro", ms=5, label="training points")
        ax.set(xlabel="x", ylabel=_var_label(ds, "f_grid"), title="learned functions")
        ax.legend(fontsize=6)
    _title(fig, ds, "final neuron sizes and learned functions")
    return fig


def _cfg(ds):
    from ..config import make_config
    from ..families import get as get_family

    spec = sweep_spec(ds)
    fam = get_family(spec.get("family", "single_neuron"))
    keep = {k: v for k, v in (spec.get("base") or {}).items()
            if k.startswith("target_") or k in ("input_dim", "bias")}
    return make_config(fam.Config, {"family": fam.name, **keep})


# ---------------------------------------------------------------- one run
def run_figure(ds) -> Figure:
    """One run (no swept dims): losses against the step, and the parameters (or the neuron
    sizes, for wide networks) against the step; log-spaced checkpoints on a log x axis.
    Families without neurons of that kind (patch_cnn) get their main curves instead."""
    if "neuron_size" not in ds:
        return curves(ds, {"vars": [v for v in RUN_CURVES if v in ds],
                           "title": f"one run, {int(ds.stop_step)} steps"})
    fig, axes = _new(1, 2)
    clock = analysis.checkpoint_dim(ds["train_loss"])
    grid = ds[clock].values.astype(float)
    step = np.maximum(grid, grid[1] / 2 if len(grid) > 1 else 0.5)  # the start on a log axis
    ax = axes[0, 0]
    for var in ("train_loss", "test_error"):
        ax.plot(step, ds[var].values, label=_var_label(ds, var))
    ax.set(xscale="log", yscale="log", xlabel=label(clock), title="losses")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    names = [v for v in ("a", "w", "b") if v in ds] or ["neuron_size"]
    for var in names:
        values = ds[var].values.reshape(len(step), -1)[:, :8]  # at most 8 curves a variable
        for k in range(values.shape[1]):
            ax.plot(step, values[:, k], label=f"{var}[{k}]")
    ax.set(xscale="log", xlabel=label(clock), title="parameters" if names[0] != "neuron_size"
           else _var_label(ds, "neuron_size"))
    ax.legend(fontsize=6, ncols=2)
    _title(fig, ds, f"stop_step {int(ds.stop_step)}" + (
        f", stop_time {float(ds.stop_time):.3g}" if clock == "time" else ""))
    return fig


def save(fig: Figure, path, dpi: int = DPI) -> Path:
    """Write a figure as PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ---------------------------------------------------------------- dispatch
from .phase import curves, heatmap  # noqa: E402  (they use the helpers above)

KINDS = {"error_vs": error_vs, "dynamics": dynamics, "endpoints": endpoints,
         "neuron_sizes": neuron_sizes, "heatmap": heatmap, "curves": curves}
RUN_CURVES = ["train_loss", "test_error", "test_error_clean", "weight_norm", "output_norm",
              "layer_ratio", "signal_learning", "noise_memorization", "margin_min"]


def figure(ds, spec: dict) -> Figure:
    """Draw one ``[[figure]]`` spec (dispatch on ``spec["kind"]``)."""
    kind = spec.get("kind", "error_vs")
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind '{kind}'; allowed: {', '.join(KINDS)}")
    return KINDS[kind](ds, spec)


def default_specs(ds) -> list[dict]:
    """error_vs over the first swept dim, when a sweep lists no figure."""
    dims = [d for d in ds["test_error"].dims if d not in analysis.CHECKPOINT_DIMS]
    name = ds.attrs.get("title", "sweep")
    spec = {"kind": "error_vs", "file": f"{name}.png"}
    if dims:
        spec["x"] = dims[0]
    if len(dims) > 1:
        spec["hue"] = dims[1]
    return [spec]


def draw_all(ds, folder) -> list[Path]:
    """Draw every ``[[figure]]`` of the Dataset's sweep spec into ``folder`` (PNG); returns the
    paths, one per figure spec."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = sweep_spec(ds).get("figure") or default_specs(ds)
    if isinstance(specs, dict):
        specs = [specs]
    paths = []
    for i, spec in enumerate(specs):
        path = folder / spec.get("file", f"{ds.attrs.get('title', 'figure')}-{i + 1}.png")
        paths.append(save(figure(ds, spec), path, dpi=int(spec.get("dpi", DPI))))
    return paths


__all__ = ["figure", "draw_all", "run_figure", "save", "error_vs", "dynamics", "endpoints", "neuron_sizes",
           "heatmap", "curves",
           "sweep_spec", "setting", "threshold_of", "sample_sizes_of", "KINDS"]
