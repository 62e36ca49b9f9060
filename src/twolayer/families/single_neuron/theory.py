"""Theory of the single-neuron study, next to its runs: the sample-size thresholds, the
small-initialization time shift, and the target as a parameter point (for its model rank).

Notation: d input dimension, D effective input dimension (d + 1 with bias), m student width,
m0 target width (number of target neurons), k intrinsic width of the target, n training
samples. Scalar formulas take numbers or numpy arrays (which broadcast)."""
from __future__ import annotations

import numpy as np

from ...theory import model_rank


def effective_dim(input_dim: int, bias: bool) -> int:
    """D = d + 1 with bias (x^ = (x, 1)), d without."""
    return input_dim + 1 if bias else input_dim


def optimistic_sample_size(input_dim: int, bias: bool, target_width: int = 1) -> int:
    """Optimistic sample size of a target of ``target_width`` k distinct neurons: its model
    rank for two-layer tanh-like networks, k (D + 1) (arXiv 2307.08921)."""
    return target_width * (effective_dim(input_dim, bias) + 1)


def separation_sample_size(distinct: int, width: int, target_width: int, D: int) -> int:
    """Sample size at which the branch of global minima with r = ``distinct`` distinct input
    weights separates from imperfect minima: n >= r + (m + m0 - r) D, m = ``width``,
    m0 = ``target_width`` (arXiv 2309.00508)."""
    return distinct + (width + target_width - distinct) * D


def all_perfect_sample_size(input_dim: int, bias: bool, width: int) -> int:
    """Every global minimum is perfect once n reaches the parameter count (D + 1) m."""
    return (effective_dim(input_dim, bias) + 1) * width


def sample_sizes(input_dim: int, bias: bool, width: int = 2, target_width: int = 1) -> dict:
    """The study's thresholds for a target of ``target_width`` neurons learned by a student
    of ``width`` m (default: a single neuron, width 2), as a dict of ints: ``optimistic``
    k (D + 1), ``separation_q2`` (r = 2) and ``separation_q1`` (r = 1) from
    ``separation_sample_size``, and ``all_perfect`` (D + 1) m. For the 1-D study (d = 1,
    bias): 3, 4, 5, 6."""
    D = effective_dim(input_dim, bias)
    return {
        "optimistic": optimistic_sample_size(input_dim, bias, target_width),
        "separation_q2": separation_sample_size(2, width, target_width, D),
        "separation_q1": separation_sample_size(1, width, target_width, D),
        "all_perfect": all_perfect_sample_size(input_dim, bias, width),
    }


def growth_rate(g_norm, slope: float = 1.0, n_train: int | None = None, loss: str = "sum"):
    """Rate lambda of the small-initialization escape: s'(0) |g|, with |g| = ``g_norm`` (the
    norm of the data vector, recorded per run) and s'(0) = ``slope``; divided by
    ``n_train`` for ``loss = "mean"``, whose gradient is 1/n of the sum's, and times 2 / n
    for ``loss = "mse"`` (mean of squares without the 1/2)."""
    lam = np.asarray(g_norm) * slope
    if loss == "mean":
        return lam / n_train
    if loss == "mse":
        return 2.0 * lam / n_train
    if loss != "sum":
        raise ValueError(f"loss must be 'sum', 'mean' or 'mse', got {loss!r}")
    return lam


def time_shift(init_scale, learning_rate, rate, optimizer: str = "gd"):
    """Steps by which an init scale alpha = ``init_scale`` delays the dynamics, for step size
    eta = ``learning_rate`` and rate lambda = ``rate`` (``growth_rate``), by the optimizer's
    own rule: gradient descent grows by (1 + eta lambda) per step, so
    log(1/alpha) / log(1 + eta lambda); gradient flow ("flow") gives
    log(1/alpha) / (eta lambda). Any other ``optimizer`` raises ValueError."""
    alpha, eta, lam = (np.asarray(v, dtype=float) for v in (init_scale, learning_rate, rate))
    if optimizer == "flow":
        return np.log(1.0 / alpha) / (eta * lam)
    if optimizer != "gd":
        raise ValueError(f"time shift is defined for 'gd' and 'flow', not '{optimizer}'")
    return np.log(1.0 / alpha) / np.log1p(eta * lam)


def target_point(cfg, dtype=None) -> dict:
    """Student parameters (width ``cfg.width``) realizing the target of a ``single_neuron``
    config: the first m0 neurons are the target neurons, the remaining ones all zero. Needs
    m >= m0, the same activation for student and target, and (without bias) zero target
    biases."""
    m0, m = len(cfg.target_a), cfg.width
    if m < m0:
        raise ValueError(f"the student width {m} is below the target width {m0}")
    if cfg.activation != cfg.target_activation:
        raise ValueError(f"activation '{cfg.activation}' differs from target_activation "
                         f"'{cfg.target_activation}': the student cannot realize the target")
    dtype = np.float64 if dtype is None else dtype
    ta = np.asarray(cfg.target_a, dtype)
    tw = (np.ones((m0, cfg.input_dim)) if cfg.target_w is None
          else np.asarray(cfg.target_w, dtype).reshape(m0, cfg.input_dim))
    tb = np.asarray(cfg.target_b, dtype)
    if not cfg.bias and np.any(tb != 0):
        raise ValueError("a student without bias cannot realize a target with nonzero biases")
    pad = m - m0
    params = {"a": np.concatenate([ta, np.zeros(pad, dtype)]),
              "w": np.concatenate([tw.astype(dtype), np.zeros((pad, cfg.input_dim), dtype)])}
    if cfg.bias:
        params["b"] = np.concatenate([tb, np.zeros(pad, dtype)])
    return params


def model_rank_of_target(cfg, *, n_inputs: int | None = None, tol: float = 1e-8,
                         key_seed: int = 0) -> int:
    """``model_rank`` at the parameter point ``target_point`` (target neurons first,
    the other neurons zero). For tanh-like activations this equals the optimistic sample size
    k (D + 1) when the k target neurons are distinct (no two input weights equal up to sign)."""
    from . import FAMILY as family

    return model_rank(family, cfg, target_point(cfg), n_inputs=n_inputs, tol=tol,
                      key_seed=key_seed)


__all__ = ["effective_dim", "optimistic_sample_size", "separation_sample_size",
           "all_perfect_sample_size", "sample_sizes", "growth_rate", "time_shift",
           "target_point", "model_rank_of_target"]
