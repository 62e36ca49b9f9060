"""Analysis of single-neuron runs: the initial imbalance, the branch of global minima a
run converged to, and the small-initialization time shift of the dynamics."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ...analysis import _MISSING, checkpoint_dim, final, setting
from . import theory

BRANCHES = ("Q1", "Q2", "none", "converging")


def _setting(ds, name, override, default=_MISSING):
    return override if override is not None else setting(ds, name, default)


def c_ratio(ds) -> xr.DataArray:
    """|C_1 / C_2| from the per-run ``c_coeff`` (dim ``neuron``, width 2); inf where C_2 = 0."""
    c = ds["c_coeff"] if isinstance(ds, xr.Dataset) else ds
    _check_width2(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = abs(c.isel(neuron=0, drop=True) / c.isel(neuron=1, drop=True))
    out.name = "c_ratio"
    out.attrs["long_name"] = "|C1/C2|"
    return out


def imbalance_of(ds) -> xr.DataArray:
    """The imbalance c~ = min(|C1/C2|, |C2/C1|) in [0, 1] (0 where one C_k is zero; NaN where
    both are)."""
    r = c_ratio(ds)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = xr.where(r <= 1.0, r, 1.0 / r)
    out = out.where(r.notnull())
    out.name = "imbalance"
    out.attrs["long_name"] = "imbalance c~ = min(|C1/C2|, |C2/C1|)"
    return out


def _check_width2(da):
    if "neuron" not in da.dims or da.sizes["neuron"] != 2:
        raise ValueError(f"needs width-2 runs (a 'neuron' dim of size 2), "
                         f"got dims {dict(da.sizes)}")


# ---------------------------------------------------------------- branch of a converged run
def _classify(a, w, b, ta, tw, tb, a_tol, match_tol, sign_flip):
    """a: (N, 2), w: (N, 2, d), b: (N, 2) -> (N,) strings."""
    signs = (1.0, -1.0) if sign_flip else (1.0,)
    n = a.shape[0]
    # match[s][:, k]: neuron k's (w_k, b_k) equals s * (w*, b*) within match_tol
    match, a_match = {}, {}
    for s in signs:
        dev = np.max(np.abs(w - s * tw), axis=-1)
        dev = np.maximum(dev, np.abs(b - s * tb))
        match[s] = dev <= match_tol
        a_match[s] = match[s] & (np.abs(a - s * ta) <= match_tol)
    small = np.abs(a) < a_tol
    big = np.abs(a) >= a_tol
    out = np.full(n, "none", dtype="<U4")
    # Q2: one output weight (near) zero, the other neuron equals the target (a, w, b)
    q2 = np.zeros(n, bool)
    for k in (0, 1):
        other = 1 - k
        hit = np.zeros(n, bool)
        for s in signs:
            hit |= a_match[s][:, other]
        q2 |= small[:, k] & hit
    # Q1: both neurons on the target direction (each up to its own sign), both output weights
    # away from zero, their signed output weights summing to a*
    q1 = np.zeros(n, bool)
    for s0 in signs:
        for s1 in signs:
            total = s0 * a[:, 0] + s1 * a[:, 1]
            q1 |= (match[s0][:, 0] & match[s1][:, 1] & big[:, 0] & big[:, 1]
                   & (np.abs(total - ta) <= match_tol))
    out[q2] = "Q2"
    out[q1 & ~q2] = "Q1"
    return out


def branch(ds: xr.Dataset, *, a_tol: float = 1e-3, match_tol: float = 1e-2,
           target_a: float = 1.0, target_w=(1.0,), target_b: float = 1.0,
           sign_flip: bool = True, at: str = "final") -> xr.DataArray:
    """Branch of global minima reached by each width-2 run, from its FINAL parameters ``a``,
    ``w``, ``b`` (recorded when width <= 8), or with ``at = "polished"`` from the polished
    end point (``polished_a``, ...: the limit reached by ``polish``), against the
    single-neuron target (``target_a``, ``target_w``, ``target_b``; default the study's
    tanh(x + 1)).

    - "Q2": one output weight is below ``a_tol`` in absolute value and the other neuron equals
      the target: ``|a_k - a*|``, ``|w_k - w*|`` (each entry) and ``|b_k - b*|`` all
      <= ``match_tol``.
    - "Q1": both output weights are >= ``a_tol`` in absolute value, both neurons'
      (w_k, b_k) equal ``(w*, b*)`` within ``match_tol`` (each entry), and their output
      weights sum to ``a*`` within ``match_tol``.
    - "converging": the run stopped at its budget with the loss still above ``loss_tol``
      (variable ``converged`` false, not diverged): where it ends is not known yet. Not
      used with ``at = "polished"`` (the polish reaches a minimum).
    - "none": anything else (another minimum, NaN).

    With ``sign_flip`` (right for odd activations such as tanh) a neuron may match the target
    as (-a, -w, -b), which is the same function; its output weight then counts as -a in the
    sum. Tolerances are absolute. Without a ``b`` variable (no bias) the bias is taken as 0.
    Returns a string DataArray over every dim but ``step``, ``neuron``, ``input``."""
    if at not in ("final", "polished"):
        raise ValueError(f"at must be 'final' or 'polished', got {at!r}")
    pre = "polished_" if at == "polished" else ""
    if pre and f"{pre}a" not in ds:
        raise ValueError("no polished end points: train with polish = true")
    a = final(ds[f"{pre}a"])
    _check_width2(a)
    w = final(ds[f"{pre}w"])
    b = final(ds[f"{pre}b"]) if f"{pre}b" in ds else xr.zeros_like(a)
    a = a.transpose(..., "neuron")
    template = a.isel(neuron=0, drop=True)
    lead = template.dims
    w = w.transpose(*lead, "neuron", "input")
    b = b.transpose(*lead, "neuron")
    d = w.sizes["input"]
    tw = np.broadcast_to(np.asarray(target_w, float).reshape(-1), (d,))
    tb = float(target_b) if "b" in ds else 0.0
    shape = template.shape
    n = int(np.prod(shape, dtype=np.int64))
    labels = _classify(np.asarray(a.values, float).reshape(n, 2),
                       np.asarray(w.values, float).reshape(n, 2, d),
                       np.asarray(b.values, float).reshape(n, 2),
                       float(target_a), tw, tb, a_tol, match_tol, sign_flip)
    out = xr.DataArray(labels.reshape(shape).astype("<U10"), dims=lead, coords=template.coords,
                       name="branch")
    if not pre and "converged" in ds:
        moving = ~ds["converged"].astype(bool)
        if "diverged" in ds:
            moving = moving & ~ds["diverged"].astype(bool)
        out = out.where(~moving.broadcast_like(out), "converging")
    out.attrs.update(long_name="branch of global minima", a_tol=a_tol, match_tol=match_tol,
                     at=at)
    return out


# ---------------------------------------------------------------- settings of a result
# ---------------------------------------------------------------- time shift
def time_shift_of(ds, optimizer: str = "gd", *, init_scale=None, learning_rate=None,
                  slope: float | None = None, loss: str | None = None,
                  n_train=None) -> xr.DataArray:
    """Per run: steps by which the init scale delays the dynamics,
    ``theory.time_shift(init_scale, learning_rate, theory.growth_rate(g_norm, slope, n, loss))``
    (see ``time_shifted_step`` for the arguments)."""
    from ... import activations

    alpha = _setting(ds, "init_scale", init_scale)
    eta = _setting(ds, "learning_rate", learning_rate)
    loss = _setting(ds, "loss", loss, default="sum")
    if slope is None:
        slope = activations.slope_at_zero(_setting(ds, "activation", None, default="tanh"))
    n = _setting(ds, "n_train", n_train) if loss in ("mean", "mse") else 1
    n = n if isinstance(n, xr.DataArray) else xr.DataArray(float(n))
    lam = xr.apply_ufunc(lambda g, n: theory.growth_rate(g, slope, n, loss), ds["g_norm"], n)
    alpha, eta, lam = (v if isinstance(v, xr.DataArray) else xr.DataArray(float(v))
                       for v in (alpha, eta, lam))
    shift = xr.apply_ufunc(theory.time_shift, alpha, eta, lam, kwargs={"optimizer": optimizer})
    shift.name = "time_shift"
    return shift


def time_shifted_step(ds, optimizer: str = "gd", *, init_scale=None, learning_rate=None,
                      slope: float | None = None, loss: str | None = None,
                      n_train=None) -> xr.DataArray:
    """``step - time_shift`` per run: the step axis on which runs from different init scales
    with the same imbalance ratio overlap.

    The shift is log(1/alpha) / log(1 + eta lambda) for "gd" (log(1/alpha) / (eta lambda) for
    "flow"), lambda = ``slope`` * |g| (s'(0) |g|; divided by n for ``loss = "mean"``, times
    2 / n for ``"mse"``), with
    |g| from ``g_norm``. ``init_scale`` and ``learning_rate`` (and ``n_train`` for the mean
    loss) are taken, unless given explicitly (a scalar or a DataArray), from a coordinate or
    variable of ``ds`` (a swept dim), else from a scalar attribute or the stored sweep spec.
    ``slope`` is s'(0) of the activation (default: computed from the sweep's ``activation``,
    1 for tanh and x/(1+x^2)); ``loss`` (default: the sweep's, else "sum") must be the loss
    the runs were trained with."""
    shift = time_shift_of(ds, optimizer, init_scale=init_scale, learning_rate=learning_rate,
                          slope=slope, loss=loss, n_train=n_train)
    out = ds["step"] - shift
    out.name = "shifted_step"
    out.attrs["long_name"] = "step - log(1/alpha)-shift"
    return out


def time_shifted(ds, **settings) -> xr.DataArray:
    """The checkpoint axis minus each run's small-initialization shift, by the rule of the
    optimizer the runs used: ``time_shifted_step`` for gradient descent (in steps); for
    gradient flow (checkpoint dim ``time``) ``time - log(1/alpha) / lambda``, in flow time.
    ``settings`` as for ``time_shifted_step``."""
    if checkpoint_dim(ds["train_loss"]) != "time":
        return time_shifted_step(ds, "gd", **settings)
    shift = time_shift_of(ds, "flow", **{**settings, "learning_rate": 1.0})
    out = ds["time"] - shift
    out.name = "shifted_time"
    out.attrs["long_name"] = "time - log(1/alpha)/lambda"
    return out


__all__ = ["BRANCHES", "c_ratio", "imbalance_of", "branch", "time_shift_of",
           "time_shifted_step", "time_shifted"]
