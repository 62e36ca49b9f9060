"""Family ``matrix_factorization``: low-rank matrix completion by a two-layer linear network.

Model. The product f = W2 W1 of a depth-2 linear network of ``width`` m, W1: m x k and
W2: k x m (k = ``size``); its entry (i, j) is the prediction for entry (i, j) of the target.
As a function of inputs (``predict``): a row x = (u, v) in R^{2k} gives u^T W2 W1 v (for
one-hot u = e_i, v = e_j this is entry (i, j)).

Target. M* = U V^T with U, V the first r = ``target_rank`` columns of two k x k standard
Gaussian matrices drawn from the data stream (``data_seed``), then scaled so that its mean
square entry is 1 (|M*|_F^2 = k^2). Targets of the same data_seed are nested: the rank-r
target is built from the first r columns of the same draw.

Observed entries. A random order of all k^2 entries (sorting k^2 uniform keys drawn from the
data stream); the first n = ``n_train`` of them are observed. The order does not depend on
n, so the observed set of n is contained in that of every n' > n.

Loss. 1/2 sum over the observed entries of (f_ij - M*_ij)^2 (a sum, not a mean: the
sharpness at a minimum is at most about 2 sigma_max(M*), whatever n, so one learning rate
serves every n). ``residuals``: f - M* on observed entries, 0 elsewhere (k^2 values).

Initialization. Every entry of W1 and W2 iid N(0, init_scale^2) (seed stream "init").

Recorded per checkpoint: ``train_loss``, ``test_error`` (mean squared error over ALL k^2
entries, observed ones included), ``test_error_unobserved`` (over the unobserved entries
only; 0 when every entry is observed), ``balance`` (|W1 W1^T - W2^T W2|_F, conserved by
gradient flow) and ``product_norm`` (|W2 W1|_F). Per run: ``min_observed_per_line`` (the
fewest observed entries in a row or a column: completion of a rank-r matrix needs >= r) and
``recovered`` (final test_error < ``recovery_threshold``).

Compilation: ``n_train`` and ``target_rank`` are static fields with buckets (k^2 and k): every
n and r of one size and width share one compiled program (the true values are per-run arrays).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ... import keys
from ...config import ConfigError, Training, batched, refuse_float32_underflow, static


def _entries(cfg) -> int:
    return cfg.size * cfg.size


def _full_rank(cfg) -> int:
    return cfg.size


@dataclass(frozen=True, kw_only=True)
class Config(Training):
    """The configuration of one ``matrix_factorization`` run: the engine's fields
    (``Training``, section ``[train]``) plus the model, target and initialization fields of
    section ``[base]``."""

    family: str = static("matrix_factorization", choices=("matrix_factorization",),
                         doc="experiment family")
    learning_rate: float = batched(0.1, section="train", positive=True, doc="step size eta")
    size: int = static(4, minimum=1, doc="k: the target is a k x k matrix")
    width: int = static(4, minimum=1, doc="m: W1 is m x k, W2 is k x m")
    target_rank: int = static(1, minimum=1, bucket=_full_rank,
                              doc="r: rank of the target M* = U V^T (1..k)")
    n_train: int = static(8, minimum=1, bucket=_entries,
                          doc="number of observed entries n (1..k^2)")
    init_scale: float = batched(1e-3, minimum=0.0, doc="std of every initial weight")
    recovery_threshold: float = batched(1e-8, positive=True,
                                        doc="recovered: final test_error below this")

    @staticmethod
    def validate(cfg: "Config") -> None:
        if cfg.target_rank > cfg.size:
            raise ConfigError(f"'target_rank' must be at most size = {cfg.size}, got "
                              f"{cfg.target_rank}")
        if cfg.n_train > cfg.size * cfg.size:
            raise ConfigError(f"'n_train' must be at most size^2 = {cfg.size * cfg.size} "
                              f"(the number of entries), got {cfg.n_train}")
        refuse_float32_underflow(cfg, "init_scale")


# ---------------------------------------------------------------- the network and the target
def product(params):
    """W2 W1, k x k."""
    return params["w2"] @ params["w1"]


def predict(cfg, params, x):
    """u^T W2 W1 v for rows x = (u, v) of shape (N, 2k) -> (N,)."""
    k = cfg.size
    u, v = x[:, :k], x[:, k:]
    return jnp.sum((u @ product(params)) * v, axis=1)


def inputs(cfg, n, seed):
    """n random rows (u, v), u, v ~ N(0, I_k), as a float64 array (n, 2k): the bilinear
    functionals u^T X v of n >= k^2 such rows span all linear functionals of X, so the model
    rank seen through them is that of the map (W1, W2) -> W2 W1."""
    return np.random.default_rng(seed).standard_normal((int(n), 2 * cfg.size))


def target_factors(cfg, data_seed, target_rank, dtype):
    """(U, V), each k x k, columns >= r zero, with M* = U V^T of mean square entry 1. Plain
    JAX (no LAPACK); ``data_seed`` and ``target_rank`` may be traced."""
    k = cfg.size
    key_u, key_v = jax.random.split(jax.random.fold_in(keys.stream(data_seed, "train"), 0))
    keep = (jnp.arange(k) < target_rank).astype(dtype)
    u = keys.normal(key_u, (k, k), dtype) * keep
    v = keys.normal(key_v, (k, k), dtype) * keep
    m = u @ v.T
    c = jnp.sqrt(jnp.sqrt(jnp.mean(m * m)))  # split the normalization between U and V
    return u / c, v / c


def observation_order(cfg, data_seed):
    """The order in which entries are observed: entry e = i k + j is observed iff its rank
    (position in the order) is < n. Sorting k^2 uniform keys (no LAPACK)."""
    key = jax.random.fold_in(keys.stream(data_seed, "train"), 1)
    u = keys.uniform(key, (cfg.size * cfg.size,))
    return jnp.argsort(jnp.argsort(u))  # rank of each entry


def train_samples(cfg, bp, data):
    """The observed entries in the order they are observed (the contract's training
    samples): their flat index i k + j and target value, n of them (eager, not jitted)."""
    n = int(bp["n_train"])
    first = jnp.argsort(observation_order(cfg, bp["data_seed"]))[:n]
    return {"entry": first, "value": data["target"].ravel()[first]}


def target_params(cfg, bp, dtype=jnp.float64):
    """The target as a parameter point: W2 = U, W1 = V^T, zero-padded (or cut, columns
    beyond r being zero) to width m; needs m >= r."""
    r = int(bp["target_rank"])
    if cfg.width < r:
        raise ValueError(f"width {cfg.width} < target_rank {r}: no factorization of M*")
    u, v = target_factors(cfg, bp["data_seed"], r, dtype)
    k, m = cfg.size, cfg.width
    pad = max(m - k, 0)
    u = jnp.pad(u, ((0, 0), (0, pad)))[:, :m]
    v = jnp.pad(v, ((0, 0), (0, pad)))[:, :m]
    return {"w1": v.T, "w2": u}


# ---------------------------------------------------------------- data, init, loss, observables
def setup(cfg, bp):
    dtype = jnp.dtype(cfg.dtype)
    k, m = cfg.size, cfg.width
    u, v = target_factors(cfg, bp["data_seed"], bp["target_rank"], dtype)
    target = u @ v.T
    mask = (observation_order(cfg, bp["data_seed"]) < bp["n_train"]).astype(dtype)
    mask = mask.reshape(k, k)
    data = {"target": target, "mask": mask}
    z = keys.normal(keys.stream(bp["seed"], "init"), (2 * m * k,), dtype) * bp["init_scale"]
    params = {"w1": z[:m * k].reshape(m, k), "w2": z[m * k:].reshape(k, m)}
    per_line = jnp.minimum(jnp.min(jnp.sum(mask, axis=0)), jnp.min(jnp.sum(mask, axis=1)))
    info = {"min_observed_per_line": per_line.astype(jnp.int32)}
    return params, data, info


def residuals(cfg, bp, params, data):
    """(W2 W1 - M*) on the observed entries, 0 elsewhere, flattened (k^2,): the loss is
    1/2 |r|^2."""
    return ((product(params) - data["target"]) * data["mask"]).ravel()


def loss(cfg, bp, params, data):
    r = residuals(cfg, bp, params, data)
    return 0.5 * jnp.sum(r * r)


def _errors(params, data):
    dev2 = (product(params) - data["target"]) ** 2
    unobserved = 1.0 - data["mask"]
    n_un = jnp.sum(unobserved)
    return (jnp.mean(dev2),
            jnp.where(n_un > 0, jnp.sum(dev2 * unobserved) / jnp.maximum(n_un, 1), 0.0))


def observe(cfg, bp, params, data):
    test, test_un = _errors(params, data)
    w1, w2 = params["w1"], params["w2"]
    return {
        "train_loss": loss(cfg, bp, params, data),
        "test_error": test,
        "test_error_unobserved": test_un,
        "balance": jnp.linalg.norm(w1 @ w1.T - w2.T @ w2),
        "product_norm": jnp.linalg.norm(product(params)),
    }


def finalize(cfg, bp, params, data):
    test, _ = _errors(params, data)
    return {"recovered": test < bp["recovery_threshold"]}
