"""Theory of low-rank matrix completion by a two-layer linear network: the optimistic sample
size of a rank-r target, and the target as a parameter point (for its model rank).

Notation: k the size of the (square) target, r its rank, m the width, n the number of
observed entries."""
from __future__ import annotations

import numpy as np

from ...theory import model_rank


def optimistic_sample_size(size, rank):
    """r (2k - r): the dimension of the manifold of k x k matrices of rank r, which is the
    model rank of W2 W1 at any factorization of a rank-r matrix (width m >= r). The
    optimistic estimate (the idea of arXiv 2307.08921) reads it as the fewest observed
    entries from which the target can be recovered. Numbers or numpy arrays (broadcast)."""
    k, r = np.asarray(size), np.asarray(rank)
    return r * (2 * k - r)


def parameter_count(size, width):
    """2 m k: the number of parameters of W1 and W2."""
    return 2 * np.asarray(size) * np.asarray(width)


def target_model_rank(family, cfg, bp=None, **kw) -> int:
    """``twolayer.theory.model_rank`` at the target point (W2 = U, W1 = V^T, zero-padded to
    width m) of the run ``cfg`` (``bp``: its batched values; default ``run_values(cfg)``)."""
    from ...train import run_values
    from . import model

    bp = run_values(cfg) if bp is None else bp
    return model_rank(family, cfg, model.target_params(cfg, bp), **kw)


__all__ = ["optimistic_sample_size", "parameter_count", "target_model_rank"]
