"""The single-neuron family's figures: its own kinds (dynamics, endpoints, neuron_sizes),
the figure of one run, and the overlay of its sample-size thresholds."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ... import analysis
from ...plots.common import (OKABE_ITO, _colors, _new, equals, finish, label, legend, log_ticks,
                             options, setting, var_label)
from . import analysis as sn_analysis
from . import model, theory

# axis labels of the fields (mathtext): label, or (label, short symbol)
LABELS = {"imbalance": (r"initial imbalance $\tilde c$", r"$\tilde c$"),
          "n_train": ("training samples $n$", "$n$"),
          "init_scale": (r"initialization scale $\alpha$", r"$\alpha$"),
          "width": ("width $m$", "$m$"), "input_dim": ("input dimension $d$", "$d$"),
          "input_range": ("input range $r$", "$r$"),
          "function_points": "grid points of $f$", "function_range": "grid range of $f$"}
THRESHOLD_NAMES = {"optimistic": "optimistic", "separation_q2": "separation Q2",
                   "separation_q1": "separation Q1", "all_perfect": "all minima perfect"}


# ---------------------------------------------------------------- the sample-size overlay
def _one(ds, name, where):
    if name in where:
        return where[name]
    v = np.asarray(setting(ds, name))
    if v.ndim and len(np.unique(v)) != 1:
        raise ValueError(f"overlay 'sample_sizes' needs one value of '{name}' per panel")
    return v.ravel()[0].item() if v.ndim else v.item()


def sample_sizes_of(ds, where: dict | None = None) -> dict:
    """``theory.sample_sizes`` for the runs' input_dim, bias, width and target width (one
    value each in the panel ``where``)."""
    where = where or {}
    m0 = len(setting(ds, "target_a"))
    return theory.sample_sizes(int(_one(ds, "input_dim", where)), bool(_one(ds, "bias", where)),
                               int(_one(ds, "width", where)), m0)


def sample_sizes(ax, ds, spec, options, where) -> list:
    """Overlay ``sample_sizes``: where the runs' sample size is an axis, the study's
    thresholds (``theory.sample_sizes``): vertical lines at the optimistic and separation
    sizes when ``x`` is ``n_train``, and the threshold a panel sits at in its title when the
    panels are ``n_train``. ``options``: ``keys`` (default optimistic, separation_q2,
    separation_q1)."""
    sizes = sample_sizes_of(ds, {k: v for k, v in where.items() if k != "n_train"})
    keys = options.get("keys", ["optimistic", "separation_q2", "separation_q1"])
    styles = {"optimistic": ("k", ":"), "separation_q2": (OKABE_ITO[1], "--"),
              "separation_q1": (OKABE_ITO[3], "-."), "all_perfect": (OKABE_ITO[2], "-")}
    handles = []
    if spec.get("x") == "n_train":
        for key in keys:
            color, ls = styles[key]
            handles.append(ax.axvline(sizes[key], color=color, ls=ls, lw=1.0,
                                      gid=f"threshold:{key}",
                                      label=f"{THRESHOLD_NAMES[key]} $n = {sizes[key]}$"))
    if "n_train" in where:
        n = int(where["n_train"])
        tags = [THRESHOLD_NAMES[k] for k, v in sizes.items() if v == n]
        if not tags and n < sizes["optimistic"]:
            tags = ["below optimistic"]
        if tags:
            ax.set_title(f"{ax.get_title()} ({', '.join(tags)})")
    return handles


OVERLAYS = {"sample_sizes": sample_sizes}


# ---------------------------------------------------------------- dynamics
def _pick_neurons(ds, run: dict, k: int) -> np.ndarray:
    """The k neurons with the largest initial |C_k| (all when the width is at most k)."""
    n = ds.sizes.get("neuron", 0)
    if n <= k:
        return np.arange(n)
    c = np.abs(ds["c_coeff"].isel(run).values)
    return np.sort(np.argsort(-np.nan_to_num(c))[:k])


@options("hue", "xscale", "xmax", "neurons", "optimizer", "select")
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
    ds = ds.sel(spec.get("select", {}))
    clock = analysis.checkpoint_dim(ds["train_loss"])
    others = {d: 0 for d in ds["train_loss"].dims if d not in (clock, hue)}
    sub = ds.isel(others) if others else ds
    optimizer = "flow" if clock == "time" else spec.get("optimizer", setting(ds, "optimizer", "gd"))
    rule = {"gd": r"$\tau = \log(1/\alpha)\,/\,\log(1 + \eta\, s'(0) \|g\|)$ steps",
            "flow": r"$\tau = \log(1/\alpha)\,/\,(s'(0) \|g\|)$"}.get(optimizer)
    shifted = None
    if rule:
        # slope s'(0) and the loss (sum, mean or mse) come from the sweep's settings
        shifted = sn_analysis.time_shifted(sub)
    params = [v for v in ("a", "w", "b") if v in sub and bool(sub[v].notnull().any())]
    cols = ["train_loss"] + (params or ["neuron_size"])
    nrows = 2 if shifted is not None else 1
    fig, axes = _new(nrows, len(cols), spec)
    hues = list(sub[hue].values) if hue in sub.dims else [None]
    colors = _colors(len(hues))
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
                    ax.plot(xs, one["train_loss"].values, color=color,
                            label=equals(hue, hv, ds) if hv is not None else None)
                    ax.set_yscale("log")
                    continue
                val = one[var]
                if var in ("a", "w", "b"):
                    val = val * sign.isel(run) if hue in sign.dims else val * sign
                if "input" in val.dims:
                    val = val.isel(input=0)
                for j, nk in enumerate(neurons):
                    ax.plot(xs, val.isel(neuron=int(nk)).values, color=color,
                            ls=ls[j % len(ls)])
                if var == "neuron_size":
                    ax.set_yscale("log")
    for r in range(nrows):
        for c, var in enumerate(cols):
            ax = axes[r, c]
            if logx:  # linear through the escape (about +-100 steps around 0 once shifted)
                ax.set_xscale("symlog", linthresh=10 if r == 0 else 100)
            else:  # 0, 1, 2 x 10^4 rather than 10000, 20000 run together on a narrow panel
                ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3), useMathText=True)
            if r == 0:
                ax.set_xlim(0, xmax)
                ax.set_xlabel(label(clock, ds))
                name = var_label(ds, var)
                math = re.findall(r"\$(.+?)\$", name)
                if var in ("a", "w", "b") and math:  # the symbol of the declared label
                    name = rf"$\mathrm{{sign}}(C_1)\, {math[-1]}$"
                ax.set_title(name)
            else:
                lo = float(np.nanmin(shifted.isel({clock: 0}).values)) if shifted is not None else 0
                ax.set_xlim(lo, xmax - max(lo, -xmax))
                ax.set_xlabel(f"{label(clock, ds)} $- \\tau$")
            log_ticks(ax, "y")
        axes[r, 0].set_ylabel("raw" if r == 0 else r"shifted by $\tau$")
    h, t = axes[0, 0].get_legend_handles_labels()
    legend(axes[0, 0], spec, h, t, "best")
    if len(cols) > 1:
        big = sub.sizes.get("neuron", 0) > len(neurons)
        names = [f"neuron {int(n) + 1}" + (r" (large $|C_k|$)" if big else "") for n in neurons]
        # the line styles' key: with a, w, b panels (every corner holds a curve) in the
        # shifted loss panel, whose lower left the falling loss leaves empty
        ax, loc = (axes[1, 0], "lower left") if params and nrows == 2 else (axes[0, 1], "best")
        ax.legend([Line2D([], [], color="k", ls=ls[j % 4]) for j in range(len(neurons))],
                  names, loc=loc)
    if rule:
        fig.supxlabel(f"bottom row: shifted by {rule}")
    return finish(fig, spec)


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
@options("at", "x", "a_tol", "match_tol")
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
    ctil = sn_analysis.imbalance_of(ds)
    ratio = sn_analysis.c_ratio(ds)
    kw = {k: spec[k] for k in ("a_tol", "match_tol") if k in spec}
    target_a = float((setting(ds, "target_a", (1.0,)) or (1.0,))[0])
    br = sn_analysis.branch(ds, target_a=target_a, target_b=float(
        (setting(ds, "target_b", (1.0,)) or (1.0,))[0]), at=at, **kw)
    flat = lambda v: np.asarray(v.transpose(*lead, ...).values).reshape(-1)  # noqa: E731
    a1, a2 = flat(a.isel(neuron=0)), flat(a.isel(neuron=1))
    fig, axes = _new(1, 3, spec)
    fig.set_figheight(max(fig.get_figheight(), 2.9))
    ax = axes[0, 0]
    sc = ax.scatter(a1, a2, c=flat(ctil), vmin=0, vmax=1, s=12)
    fig.colorbar(sc, ax=ax, label=label("imbalance", ds))
    lim = max(1.2 * target_a, np.nanmax(np.abs(np.r_[a1, a2])) * 1.1 if a1.size else 1.0)
    t = np.linspace(-lim, lim, 2)
    ax.plot(t, target_a - t, color=OKABE_ITO[1], lw=1,
            label=f"Q1: $a_1 + a_2 = {target_a:g}$")
    # an odd activation makes (-a, -w, -b) the same neuron: Q1 with one or both neurons
    # mirrored lies on the lines +-a_1 +- a_2 = a*
    for s1, s2 in ((1, -1), (-1, 1), (-1, -1)):
        ax.plot(t, (target_a - s1 * t) * s2, color=OKABE_ITO[1], lw=0.7, ls=":",
                label=r"Q1 mirrored: $\pm a_1 \pm a_2 = a^*$" if (s1, s2) == (1, -1) else None)
    ax.axvline(0, color="k", lw=0.8, ls="--", label="Q2: $a_1 = 0$ or $a_2 = 0$")
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="final $a_1$", ylabel="final $a_2$")
    palette = {"Q1": OKABE_ITO[0], "Q2": OKABE_ITO[1], "converging": OKABE_ITO[2],
               "none": "0.6"}
    bflat = flat(br)
    ax = axes[0, 1]
    xs = flat(ds[x].broadcast_like(ratio)) if x else np.arange(bflat.size)
    rflat = flat(ratio)
    for name, color in palette.items():
        m = bflat == name
        ax.scatter(xs[m], rflat[m], s=10, color=color, label=f"{name}: {m.sum()} runs")
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    tol = ", ".join(f"{k} {v:g}" for k, v in br.attrs.items() if k.endswith("_tol"))
    ax.set(xlabel=label(x, ds) if x else "run", ylabel=r"$|C_1/C_2|$")
    log_ticks(ax, "y")
    tol = tol.replace("a_tol", "$a$ tol.").replace("match_tol", "match tol.")
    branches = ax.get_legend_handles_labels()
    ax = axes[0, 2]
    w = analysis.final(ds[f"{pre}w"]).isel(input=0)
    for name, color in palette.items():
        m = bflat == name
        ax.scatter(flat(w.isel(neuron=0))[m], flat(w.isel(neuron=1))[m], s=10, color=color,
                   label=name)
    ax.set(xlabel="final $w_1$", ylabel="final $w_2$")
    # one legend under the panels: the lines of the first, the branches (runs) of the others
    lines = axes[0, 0].get_legend_handles_labels()
    legend(fig, spec, lines[0] + branches[0], lines[1] + branches[1],
           "outside lower center", ncols=4,
           title=f"middle and right: the branch reached ({tol})" if tol else None)
    if at == "polished":
        for ax in axes.flat:
            for get, put in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
                put(get().replace("final", "polished"))
    return finish(fig, spec)


# ---------------------------------------------------------------- neuron sizes vs width
def _target_settings(ds):
    """The target's settings, read from the results (attributes): what ``model.target``
    needs."""
    names = ("target_a", "target_w", "target_b", "target_activation", "input_dim")
    return SimpleNamespace(**{n: setting(ds, n) for n in names})


def _module_target(cfg, xs):
    import jax.numpy as jnp

    from ...runtime import configure

    configure()
    return np.asarray(model.target(cfg, jnp.asarray(xs, jnp.float64)[:, None]))


@options("x")
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
    fig, axes = _new(1, 2 if has_f else 1, spec, legend_right=has_f)
    fig.set_figheight(max(fig.get_figheight(), 2.6))
    ax = axes[0, 0]
    xv = np.broadcast_to(np.asarray(ds[x].values, float)[:, None], size.transpose(x, "neuron").shape)
    sv = size.transpose(x, "neuron").values
    cv = c.transpose(x, "neuron").values
    ok = np.isfinite(sv) & np.isfinite(cv) & (cv > 0) & (sv > 0)
    vmin = max(np.nanmin(cv[ok]), np.nanmax(cv[ok]) * 1e-6) if ok.any() else 1e-22
    norm = mcolors.LogNorm(vmin=vmin, vmax=np.nanmax(cv[ok]) if ok.any() else 1.0)
    order = np.argsort(cv[ok])  # largest |C_k| drawn last, on top
    sc = ax.scatter(xv[ok][order], sv[ok][order], c=np.maximum(cv[ok][order], vmin), norm=norm,
                    s=10)
    fig.colorbar(sc, ax=ax, label=r"initial $|C_k|$")
    ax.set(xscale="log", yscale="log", xlabel=label(x, ds),
           ylabel="final " + var_label(ds, "neuron_size"))
    log_ticks(ax)
    widths = np.asarray(ds[x].values, float)
    if len(widths) <= 10:  # every value a tick (e.g. the widths 2, 3, 10, ...)
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xticks(widths)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if has_f:
        ax = axes[0, 1]
        f = ds["f_grid"].isel({d: 0 for d in ds["f_grid"].dims if d not in (x, "x_grid")})
        grid = ds["x_grid"].values
        vals = list(ds[x].values)
        for v, color in zip(vals, _colors(len(vals))):
            ax.plot(grid, f.sel({x: v}).values, color=color, label=equals(x, v, ds))
        cfg = _target_settings(ds)
        ax.plot(grid, _module_target(cfg, grid), "k--", label="target")
        if setting(ds, "sampling", "fixed") == "fixed" and "n_train" not in ds.dims:
            r = float(setting(ds, "input_range", 2.0))
            xt = np.linspace(-r, r, int(setting(ds, "n_train", 6)))
            ax.plot(xt, _module_target(cfg, xt), "o", color=OKABE_ITO[1], ms=4,
                    label="training points")
        ax.set(xlabel="$x$", ylabel=var_label(ds, "f_grid"))
        h, t = ax.get_legend_handles_labels()
        legend(fig, spec, h, t, "outside right")
    return finish(fig, spec)


# ---------------------------------------------------------------- one run
def run_figure(ds) -> Figure:
    """One run (no swept dims): losses against the step, and the parameters (or the neuron
    sizes, for wide networks) against the step; log-spaced checkpoints on a log x axis.
    """
    fig, axes = _new(1, 2, {}, legend_right=True)
    clock = analysis.checkpoint_dim(ds["train_loss"])
    grid = ds[clock].values.astype(float)
    step = np.maximum(grid, grid[1] / 2 if len(grid) > 1 else 0.5)  # the start on a log axis
    ax = axes[0, 0]
    for var in ("train_loss", "test_error"):
        ax.plot(step, ds[var].values, label=var_label(ds, var))
    ax.set(xscale="log", yscale="log", xlabel=label(clock, ds))
    log_ticks(ax)
    ax.legend()
    ax = axes[0, 1]
    names = [v for v in ("a", "w", "b") if v in ds] or ["neuron_size"]
    for var in names:
        values = ds[var].values.reshape(len(step), -1)[:, :8]  # at most 8 curves a variable
        for k in range(values.shape[1]):
            ax.plot(step, values[:, k], label=f"${var}_{{{k + 1}}}$")
    ax.set(xscale="log", xlabel=label(clock, ds), ylabel="parameters" if names[0] != "neuron_size"
           else var_label(ds, "neuron_size"))
    log_ticks(ax)
    h, t = ax.get_legend_handles_labels()
    legend(fig, {}, h, t, "outside right", ncols=2 if len(t) > 8 else 1)
    return fig


FIGURES = {"dynamics": dynamics, "endpoints": endpoints, "neuron_sizes": neuron_sizes}
