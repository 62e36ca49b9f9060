"""Theory next to the simulation: sample-size thresholds, the small-initialization time
shift, and the numerical model rank.

Notation: d input dimension, D effective input dimension (d + 1 with bias), m student width,
m0 target width (number of target neurons), k intrinsic width of the target."""
from __future__ import annotations

import math

import numpy as np


def effective_dim(input_dim: int, bias: bool) -> int:
    """D = d + 1 with bias (x^ = (x, 1)), d without."""
    return input_dim + 1 if bias else input_dim


def optimistic_sample_size(input_dim: int, bias: bool, target_width: int = 1) -> int:
    """Model rank of a width-k target for two-layer tanh-like networks: k (D + 1)."""
    return target_width * (effective_dim(input_dim, bias) + 1)


def separation_sample_size(distinct: int, width: int, target_width: int, D: int) -> int:
    """Branch with r distinct input weights separates from imperfect minima at
    n >= r + (m + m0 - r) D (arXiv 2309.00508)."""
    return distinct + (width + target_width - distinct) * D


def all_perfect_sample_size(input_dim: int, bias: bool, width: int) -> int:
    """Every global minimum is perfect once n reaches the parameter count (D + 1) m."""
    return (effective_dim(input_dim, bias) + 1) * width


def sample_sizes(input_dim: int, bias: bool, width: int = 2, target_width: int = 1) -> dict:
    """The study's thresholds for a single-neuron target learned by a width-2 student:
    optimistic, separation of branch Q2 (r = 2) and Q1 (r = 1), all minima perfect."""
    D = effective_dim(input_dim, bias)
    return {
        "optimistic": optimistic_sample_size(input_dim, bias, target_width),
        "separation_q2": separation_sample_size(2, width, target_width, D),
        "separation_q1": separation_sample_size(1, width, target_width, D),
        "all_perfect": all_perfect_sample_size(input_dim, bias, width),
    }


def growth_rate(g_norm, slope: float = 1.0, n_train: int | None = None, loss: str = "sum"):
    """Rate lambda of the small-initialization escape: s'(0) |g| (divided by n for the mean
    loss, whose gradient is 1/n of the sum's)."""
    lam = np.asarray(g_norm) * slope
    return lam / n_train if loss == "mean" else lam


def time_shift(init_scale, learning_rate, rate, optimizer: str = "gd"):
    """Steps by which an init scale alpha delays the dynamics, by the optimizer's own rule:
    gradient descent grows by (1 + eta lambda) per step, so log(1/alpha) / log(1 + eta lambda);
    gradient flow ("flow") gives log(1/alpha) / (eta lambda)."""
    alpha, eta, lam = (np.asarray(v, dtype=float) for v in (init_scale, learning_rate, rate))
    if optimizer == "flow":
        return np.log(1.0 / alpha) / (eta * lam)
    if optimizer != "gd":
        raise ValueError(f"time shift is defined for 'gd' and 'flow', not '{optimizer}'")
    return np.log(1.0 / alpha) / np.log1p(eta * lam)


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "math", "np")]
