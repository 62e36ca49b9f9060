"""Family ``single_neuron``: a two-layer network learning a single-neuron (or few-neuron) target.

Study: Zhao, Bai, Zhang, "Disentangle Sample Size and Initialization Effect on Perfect
Generalization for Single-Neuron Target" (arXiv 2405.13787, 2024), with the optimistic
estimate (arXiv 2307.08921), rank stratification (arXiv 2211.11623) and the geometry of global
minima (arXiv 2309.00508).

Model. Input x in R^d (``input_dim``); with ``bias`` the augmented input is x^ = (x, 1) and
the effective input dimension is D = d + 1 (D = d without bias). Student of ``width`` m:
f(x) = sum_k a_k s(w_k . x + b_k), activation s (``activation``). Target
``f*(x) = sum_j a*_j s*(w*_j . x + b*_j)`` given by ``target_a``, ``target_w`` (default: all
ones), ``target_b`` and ``target_activation``; the default is the study's tanh(1.x + 1).

Data. ``sampling``: "fixed" (d = 1: n evenly spaced points on [-r, r], endpoints included),
"gaussian" (x ~ N(0, I_d)) or "uniform" (x ~ U[-r, r]^d), r = ``input_range``; the test set
has ``n_test`` points of the same law (evenly spaced for "fixed").

Loss. ``loss = "sum"``: 1/2 sum_i (f(x_i) - y_i)^2, the study's stated convention;
``"mean"``: 1/(2n) sum_i (...)^2; ``"mse"``: 1/n sum_i (...)^2 (PyTorch's MSELoss: the sum
with step 2 eta / n), the reading of the study's large-step figures that is consistent
with all of them (docs/single_neuron.md). All three have the same minimizers and the same
gradient-flow trajectories, on time axes scaled by 1, 1/n and 2/n.

Initialization. Every parameter iid N(0, init_scale^2) (a standard deviation). With
``imbalance`` = c~ in [0, 1] (width 2 only), all of neuron 2's parameters are multiplied by
c~ C_1 / C_2, so that C_2 = c~ C_1 exactly, where C_k = a_k |g| + (w_k, b_k) . g and
g = sum_i y_i x^_i is the data vector. With ``c_profile = [p0, p1]`` (any width >= 2), each
neuron k's parameters are multiplied by the number that makes C_k / C_1 = (p0 + p1 (k - 1))
/ p0 exactly.

Recorded per checkpoint: ``train_loss``, ``test_error`` (mean squared over the test set),
``test_error_rms`` (its root), ``test_error_max`` (max absolute deviation), ``neuron_size``
(a_k^2 + |w_k|^2 + b_k^2), ``balance`` (a_k^2 - |w_k|^2 - b_k^2, conserved by gradient flow
for 1-homogeneous activations), and the parameters ``a``, ``w``, ``b`` when ``width`` <= 8
(or ``record_params = true``). Per run: ``c_coeff`` (C_k), ``imbalance_ratio`` (C / |C|),
``g_norm`` (|g|), ``recovered`` (final test_error < ``recovery_threshold``) and, with
``function_points`` > 0 (d = 1), the learned function ``f_grid`` on [-function_range,
function_range].
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ... import activations, keys
from ...config import ConfigError, Training, batched, refuse_float32_underflow, static


PAD_N = 8  # gradient flow: training sets padded to a multiple of this many samples


def padded_n(cfg) -> int:
    """The training set's array size. Gradient flow pads it to a multiple of PAD_N with
    masked samples, so that runs with nearby n share one compiled program (compiling a
    flow program takes seconds); gradient descent and Adam use n itself."""
    if cfg.optimizer != "flow":
        return cfg.n_train
    return -(-cfg.n_train // PAD_N) * PAD_N


@dataclass(frozen=True, kw_only=True)
class Config(Training):
    """The configuration of one ``single_neuron`` run: the engine's fields (``Training``,
    section ``[train]``) plus the model, data and initialization fields of section
    ``[base]``. The single_neuron page lists every field with its kind and default."""

    family: str = static("single_neuron", choices=("single_neuron",), doc="experiment family")
    # stable for the sum loss on the study's data (its eta = 0.5 needs the mean loss; see docs)
    learning_rate: float = batched(0.05, section="train", positive=True, doc="step size eta")
    input_dim: int = static(1, minimum=1, doc="input dimension d")
    bias: bool = static(True, doc="student neurons have a bias (D = d + 1)")
    width: int = static(2, minimum=1, doc="student width m")
    activation: str = static("tanh", doc="student activation (name or 'module:function')")
    target_activation: str = static("tanh", doc="target activation")
    target_a: tuple[float, ...] = static((1.0,), doc="target output weights a*_j")
    target_w: tuple[tuple[float, ...], ...] | None = static(
        None, doc="target input weights w*_j (one list per target neuron; default all ones)")
    target_b: tuple[float, ...] = static((1.0,), doc="target biases b*_j")
    sampling: str = static("fixed", choices=("fixed", "gaussian", "uniform"), doc="input law")
    input_range: float = static(2.0, minimum=0.0, doc="r: inputs in [-r, r] (fixed, uniform)")
    n_train: int = static(6, minimum=1, bucket=padded_n,
                          doc="number of training samples n")
    n_test: int = static(1000, minimum=1, doc="number of test samples")
    loss: str = static("sum", choices=("sum", "mean", "mse"),
                       doc="1/2 sum (the study's), 1/2 mean, or mean of squares (PyTorch's "
                           "MSELoss)")
    record_params: bool | None = static(None, doc="record a, w, b (default: when width <= 8)")
    function_points: int = static(0, minimum=0, doc="grid points of the final learned function (d=1)")
    function_range: float = static(5.0, minimum=0.0, doc="the grid spans [-function_range, function_range]")
    init_scale: float = batched(1e-10, minimum=0.0, doc="std of every initial parameter")
    imbalance: float | None = batched(None, minimum=0.0, doc="prescribed c~ in [0, 1] (width 2)")
    c_profile: tuple[float, ...] | None = static(
        None, doc="prescribed C_k / C_1 = (p0 + p1 (k - 1)) / p0 for [p0, p1] (width >= 2)")
    recovery_threshold: float = batched(1e-8, positive=True, doc="recovered: test_error below this")

    @staticmethod
    def validate(cfg: "Config") -> None:
        activations.get(cfg.activation)
        activations.get(cfg.target_activation)
        m0 = len(cfg.target_a)
        if m0 == 0:
            raise ConfigError("'target_a' must hold at least one target neuron")
        if len(cfg.target_b) != m0:
            raise ConfigError(f"'target_b' must have {m0} entries (one per target neuron), "
                              f"got {len(cfg.target_b)}")
        if cfg.target_w is not None and (len(cfg.target_w) != m0 or any(
                len(row) != cfg.input_dim for row in cfg.target_w)):
            raise ConfigError(f"'target_w' must be {m0} lists of input_dim = {cfg.input_dim} "
                              f"numbers")
        if cfg.sampling == "fixed" and cfg.input_dim != 1:
            raise ConfigError(f"sampling = 'fixed' needs input_dim = 1, got {cfg.input_dim}; "
                              f"use 'gaussian' or 'uniform'")
        if cfg.function_points and cfg.input_dim != 1:
            raise ConfigError("'function_points' needs input_dim = 1")
        if cfg.imbalance is not None:
            if cfg.width != 2:
                raise ConfigError(f"'imbalance' (prescribed c~) needs width = 2, got {cfg.width}")
            if not 0.0 <= cfg.imbalance <= 1.0:
                raise ConfigError(f"'imbalance' must lie in [0, 1], got {cfg.imbalance}")
        if cfg.c_profile is not None:
            if len(cfg.c_profile) != 2 or cfg.c_profile[0] == 0:
                raise ConfigError(f"'c_profile' must be [p0, p1] with p0 != 0, got "
                                  f"{list(cfg.c_profile)}")
            if cfg.width < 2 or cfg.imbalance is not None:
                raise ConfigError("'c_profile' needs width >= 2 and no 'imbalance'")
        refuse_float32_underflow(cfg, "init_scale")


# ---------------------------------------------------------------- the network and the target
def predict(cfg, params, x):
    """f(x) for x of shape (N, d) -> (N,)."""
    z = x @ params["w"].T  # (N, m)
    if "b" in params:
        z = z + params["b"]
    return activations.get(cfg.activation)(z) @ params["a"]


def target_params(cfg, dtype):
    m0 = len(cfg.target_a)
    w = np.ones((m0, cfg.input_dim)) if cfg.target_w is None else np.asarray(cfg.target_w)
    return {"a": jnp.asarray(cfg.target_a, dtype), "w": jnp.asarray(w, dtype),
            "b": jnp.asarray(cfg.target_b, dtype)}


def target(cfg, x):
    p = target_params(cfg, x.dtype)
    return activations.get(cfg.target_activation)(x @ p["w"].T + p["b"]) @ p["a"]


def augment(cfg, x):
    """x^ = (x, 1) with bias, x without."""
    return jnp.concatenate([x, jnp.ones_like(x[:, :1])], axis=1) if cfg.bias else x


def data_vector(cfg, x, y):
    """g = sum_i y_i x^_i, shape (D,)."""
    return augment(cfg, x).T @ y


def c_coeffs(cfg, params, g):
    """C_k = a_k |g| + (w_k, b_k) . g, shape (m,)."""
    wb = jnp.concatenate([params["w"], params["b"][:, None]], axis=1) if cfg.bias else params["w"]
    return params["a"] * jnp.linalg.norm(g) + wb @ g


# ---------------------------------------------------------------- data, init, loss, observables
def _inputs(cfg, bp, dtype):
    """Training and test inputs, (n_train, d) and (n_test, d); ``cfg.n_train`` is the
    padded size (``padded_n``), ``bp["n_train"]`` the true one."""
    r, shape = cfg.input_range, (cfg.input_dim,)
    data_seed = bp["data_seed"]
    if cfg.sampling == "fixed":
        if cfg.optimizer == "flow":  # padded: the true n is a per-run number
            n = bp["n_train"]
            i = jnp.arange(cfg.n_train, dtype=dtype)
            x = jnp.where(n > 1, -r + (2 * r) * i / jnp.maximum(n - 1, 1), -r)
        else:
            x = jnp.linspace(-r, r, cfg.n_train, dtype=dtype)
        return x[:, None], jnp.linspace(-r, r, cfg.n_test, dtype=dtype)[:, None]
    if cfg.sampling == "gaussian":
        draw = lambda k: keys.normal(k, shape, dtype)  # noqa: E731
    else:
        draw = lambda k: keys.uniform(k, shape, dtype, -r, r)  # noqa: E731
    x, x_test = keys.per_sample(draw, [(keys.stream(data_seed, "train"), cfg.n_train),
                                       (keys.stream(data_seed, "test"), cfg.n_test)])
    return x, x_test


def setup(cfg, bp):
    dtype = jnp.dtype(cfg.dtype)
    x, x_test = _inputs(cfg, bp, dtype)
    # the training samples beyond the true n (padding, gradient flow only) weigh 0
    mask = (jnp.arange(cfg.n_train) < bp["n_train"]).astype(dtype)
    y = target(cfg, x)
    data = {"x": x, "y": y, "mask": mask, "n": bp["n_train"].astype(dtype),
            "x_test": x_test, "y_test": target(cfg, x_test)}
    g = data_vector(cfg, x, y * mask)

    m, d = cfg.width, cfg.input_dim
    # one draw of standard normals for (a, w, b), then scaled: neighbouring init scales share
    # their randomness, and a and w are the same with and without bias (one draw also
    # compiles faster than three)
    z = keys.normal(keys.stream(bp["seed"], "init"), (m * (d + 2),), dtype)
    params = {"a": z[:m], "w": z[m:m + m * d].reshape(m, d)}
    if cfg.bias:
        params["b"] = z[m + m * d:]
    params = jax.tree_util.tree_map(lambda p: p * bp["init_scale"], params)
    if cfg.imbalance is not None:
        c = c_coeffs(cfg, params, g)
        # makes C_2 = c~ C_1; C_2 = 0 (e.g. init_scale 0) leaves nothing to scale: zero it
        factor = jnp.where(c[1] != 0, bp["imbalance"] * c[0] / jnp.where(c[1] != 0, c[1], 1), 0)
        scale = jnp.stack([jnp.ones((), dtype), factor.astype(dtype)])
        params = {k: v * (scale if v.ndim == 1 else scale[:, None]) for k, v in params.items()}
    if cfg.c_profile is not None:
        c = c_coeffs(cfg, params, g)
        p0, p1 = cfg.c_profile
        want = c[0] * (p0 + p1 * jnp.arange(m, dtype=dtype)) / p0
        scale = jnp.where(c != 0, want / jnp.where(c != 0, c, 1), 0).at[0].set(1)
        params = {k: v * (scale if v.ndim == 1 else scale[:, None]) for k, v in params.items()}
    c = c_coeffs(cfg, params, g)
    info = {"c_coeff": c, "imbalance_ratio": c / jnp.linalg.norm(c), "g_norm": jnp.linalg.norm(g)}
    return params, data, info


def residuals(cfg, bp, params, data):
    """f(x_i) - y_i over the training set (0 for padding); every loss is a multiple of
    1/2 |r|^2."""
    return (predict(cfg, params, data["x"]) - data["y"]) * data["mask"]


def loss(cfg, bp, params, data):
    r = residuals(cfg, bp, params, data)
    total = 0.5 * jnp.sum(r * r)
    if cfg.loss == "mean":
        return total / data["n"]
    if cfg.loss == "mse":
        return 2.0 * total / data["n"]
    return total


def _records_params(cfg):
    return cfg.width <= 8 if cfg.record_params is None else cfg.record_params


def observe(cfg, bp, params, data):
    dev = predict(cfg, params, data["x_test"]) - data["y_test"]
    mse = jnp.mean(dev * dev)
    wb2 = jnp.sum(params["w"] ** 2, axis=1) + (params["b"] ** 2 if cfg.bias else 0.0)
    out = {
        "train_loss": loss(cfg, bp, params, data),
        "test_error": mse,
        "test_error_rms": jnp.sqrt(mse),
        "test_error_max": jnp.max(jnp.abs(dev)),
        "neuron_size": params["a"] ** 2 + wb2,
        "balance": params["a"] ** 2 - wb2,
    }
    if _records_params(cfg):
        out.update(params)
    return out


def function_grid(cfg):
    return np.linspace(-cfg.function_range, cfg.function_range, cfg.function_points)


def finalize(cfg, bp, params, data):
    dev = predict(cfg, params, data["x_test"]) - data["y_test"]
    out = {"recovered": jnp.mean(dev * dev) < bp["recovery_threshold"]}
    if cfg.function_points:
        xs = jnp.asarray(function_grid(cfg), data["x"].dtype)[:, None]
        out["f_grid"] = predict(cfg, params, xs)
    return out


def coords(cfg):
    return {"x_grid": function_grid(cfg)} if cfg.function_points else {}

