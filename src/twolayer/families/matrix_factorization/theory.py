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


def observed_inputs(cfg, mask) -> np.ndarray:
    """One-hot rows (e_i, e_j) of the observed entries (i, j) of ``mask`` (k x k, nonzero
    where observed), as inputs for ``predict``: the training set as bilinear inputs."""
    k = cfg.size
    eye = np.eye(k)
    return np.array([np.concatenate([eye[i], eye[j]])
                     for i, j in zip(*np.nonzero(np.asarray(mask)))]).reshape(-1, 2 * k)


def observed_jacobian(w1, w2, mask) -> np.ndarray:
    """d (W2 W1)_ij / d (W1, W2) for the observed (i, j) of ``mask``, in closed form (numpy,
    float64): row (i, j) holds W2[i, a] at W1[a, j] and W1[b, j] at W2[i, b]; columns in
    ``ravel_pytree`` order (w1 then w2, row-major)."""
    w1, w2 = np.asarray(w1, np.float64), np.asarray(w2, np.float64)
    m, k = w1.shape
    rows = []
    for i, j in zip(*np.nonzero(np.asarray(mask))):
        d1 = np.zeros((m, k))
        d1[:, j] = w2[i]
        d2 = np.zeros((k, m))
        d2[i] = w1[:, j]
        rows.append(np.concatenate([d1.ravel(), d2.ravel()]))
    return np.array(rows).reshape(-1, 2 * m * k)


def observed_rank(family, cfg, bp=None, tol: float = 1e-8) -> int:
    """The model rank at the target point seen through the observed entries only (the rank
    of d f_ij / d theta over the observed (i, j); ``observed_jacobian``, singular values
    above ``tol`` times the largest). It equals r (2k - r) exactly when no tangent
    direction of the rank-r matrices at M* leaves every observed entry unchanged: then M*
    is locally the only rank-r matrix with these entries (local identifiability). Fewer
    observed entries than r (2k - r) never reach it."""
    from ...config import static_part
    from ...train import run_values
    from . import model

    bp = run_values(cfg) if bp is None else bp
    _, data, _ = family.setup(static_part(cfg), bp)
    p = model.target_params(cfg, bp)
    jac = observed_jacobian(p["w1"], p["w2"], data["mask"])
    sv = np.linalg.svd(jac, compute_uv=False) if jac.size else np.zeros(0)
    if sv.size == 0 or sv[0] == 0.0:
        return 0
    return int(np.sum(sv > tol * sv[0]))


__all__ = ["optimistic_sample_size", "parameter_count", "target_model_rank", "observed_inputs",
           "observed_jacobian", "observed_rank"]
