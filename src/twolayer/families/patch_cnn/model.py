"""Family ``patch_cnn``: benign overfitting of a two-layer ReLU CNN on signal + noise patches.

Studies: Shang, Meng, Cao, Zou, "Initialization Matters: On the Benign Overfitting of
Two-Layer ReLU CNN with Fully Trainable Layers" (arXiv 2410.19139, 2024): both layers
trained, output-layer init scale kappa. Its predecessors are settings of the same model:
Cao, Chen, Belkin, Gu (NeurIPS 2022; relu^q, fixed output), Kou, Chen, Chen, Gu (ICML 2023;
relu, label flips, fixed output) and Meng, Zou, Cao (ICML 2024; XOR signal).

Data (per sample i). Clean label yhat_i uniform in {-1, +1}; observed label y_i = yhat_i,
flipped with probability ``label_noise`` p. Two patches of dimension d = ``input_dim``: a
signal patch and a noise patch, in random order (``signal_patch = "random"``) or signal
first. ``signal = "linear"``: the signal patch is yhat_i mu, mu = |mu| e_1. ``"xor"``: with
orthogonal a = |a| e_1, b = |b| e_2, the signal patch is +-(a + b) for yhat = +1 and
+-(a - b) for yhat = -1 (sign uniform), so |signal patch|^2 = |a|^2 + |b|^2 = |mu|^2 again;
``xor_cosine`` c = cos of the angle between a + b and a - b = (|a|^2 - |b|^2) / |mu|^2 sets
|a| = |mu| sqrt((1 + c) / 2), |b| = |mu| sqrt((1 - c) / 2) (default 0: |a| = |b|, the two
class vectors orthogonal; c near 1: highly correlated class vectors). The noise patch is
xi_i = sigma_p P g_i, g_i ~ N(0, I_d), sigma_p = ``noise_std``; P removes the signal
directions (``noise = "orthogonal"``) or is the identity (``"isotropic"``, as in Kou's
script). The signal strength is given either as ``signal_norm`` = |mu| or as ``snr`` =
|mu| / (sigma_p sqrt(d)) (at most one of the two; neither: |mu| = 1). Standard noise is
drawn first and then scaled, so neighbouring grid points share their randomness, and the
first n samples are the same for every n.

Network. F filters w_f in R^d with output weights v_f. ``banks = "class"``: two banks of
``width`` m filters, bank +1 and bank -1,
``f(x) = sum_j j sum_r v_{j,r} A_p[s(<w_{j,r}, x_p> + b_{j,r})]``; ``"single"``: m filters,
f(x) = sum_r v_r A_p[...] with signed v. A_p is the sum (``pooling = "sum"``) or the mean
over the two patches; ``divide_by_width`` puts 1/m in front. s = ``activation``: "relu",
"relu_power" (max(z, 0)^q, q = ``relu_power``, Cao's relu^q), "leaky_relu" (slope
``leaky_slope``) or any registered activation. Optional bias.
Hidden init: ``hidden_init = "gaussian"`` (w ~ N(0, sigma_0^2 I), sigma_0 =
``hidden_init_scale``, bias 0) or "pytorch" (weight and bias uniform in +-1/sqrt(d), PyTorch's
default for a Conv1d with kernel d, as Kou's script). Output init (``output_init``):
"constant" (v = kappa), "gaussian" (v ~ N(0, kappa^2)) or "sign" (v = +-kappa), kappa =
``output_init_scale`` (default 1/m: the predecessors' fixed 1/m). ``output_trainable =
false`` freezes v. Loss: logistic, mean over samples, log(1 + exp(-y_i f(x_i))). Full-batch
gradient descent, one step size (``output_learning_rate`` sets the output layer's own).

Because the two patches share the filters and A_p is symmetric, the order of the patches
never changes f; the option exists for fidelity to the data law (and ``predict`` on explicit
patches is tested against the fast path).

Exact coefficient dynamics (``parameterization``). Gradient descent keeps every filter in
w(0) + span{e_1 (, e_2), xi_1, ..., xi_n}. In "coefficient" mode a filter is w(0) + c Q with
Q orthonormal rows spanning that span (Q = L^-1 U for the unit basis rows U and the Cholesky
factor L of their Gram matrix, computed once per run: Q is never formed in R^d), and the
engine trains c directly: with Q orthonormal, gradient descent on c is exactly gradient
descent on w (and gradient flow on c is gradient flow on w), and a step costs F K n
(K = n + 1 or n + 2) instead of F d n. "direct" trains w itself; "auto" picks coefficient
mode when K < d and the optimizer is GD or flow (Adam is not invariant to the change of
coordinates). In coefficient
mode ``input_dim`` is rounded up to a bucket (``padded_dim``) with zero coordinates, so runs
of nearby d share one compiled program.

Test set. ``test_sampling = "projected"`` (default): the network sees a test noise patch
only through its inner products with the span S of {w(0), the signal directions, xi_1..n},
which holds every filter at every step. Those inner products (with the unit rows U of S's
spanning set) are Gaussian with covariance sigma_p^2 U P U^T and are drawn as sigma_p C z,
C C^T = U P U^T, z ~ N(0, I): the same law of f(x_test) as a full d-dimensional draw, at a
cost that does not grow with d (direct mode turns them into the minimum-norm vectors in S
with those inner products). "explicit" draws the full vectors.

Recorded per checkpoint: ``train_loss``, ``train_error`` (fraction with y_i f(x_i) <= 0),
``test_error`` (against the noisy test label; its floor is p) and ``test_error_clean``;
``margin_min``, ``margin_mean`` (y_i f(x_i)); per bank j, the filters whose vote
j sign(v_f) is class j (``bank_grouping = "initial"``, the default: the vote at init, so a
bank is the same set of filters at every checkpoint; "vote": the vote at each checkpoint, so
a filter whose v changes sign moves to the other bank): ``weight_norm`` |W_j| (Frobenius), ``output_norm`` |v_j|,
``signal_learning`` max ``<w, j mu>`` (XOR: max ``|<w, a +- b>|`` of the class's vectors) and
``signal_learning_mean``; ``noise_memorization`` max over i and the filters voting y_i of
``<w, xi_i>``, ``noise_memorization_mean`` (mean over i of that max); the layer ratio
|w_f - w_f(0)| / |v_f| (``layer_ratio`` mean over filters, ``layer_ratio_min``,
``layer_ratio_max``), ``sign_flips`` (the fraction of filters whose vote differs from their
vote at init) and ``balance`` (mean over filters of |w_f|^2 + b_f^2 - v_f^2, b_f = 0
without a bias: the quantity a GD step changes by exactly eta^2 (|g_w|^2 + g_b^2 - g_v^2)
for a positively homogeneous activation). Behind options:
``record_filters`` (``layer_ratio_filter``, ``balance_filter``, ``weight_norm_filter``,
``output_weight``), ``record_samples`` (``margin_sample``, ``noise_memorization_sample``),
``record_coefficients`` (the theory's coefficients in w = w(0) + sum_k gamma_k
e_k + sum_i rho_i xi_i / |xi_i|^2: ``signal_coeff`` = j gamma_k |signal_k| and
``noise_coeff`` = rho_i). Per run: ``effective_signal_norm``, ``effective_snr``,
``coefficient_mode``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ... import activations, keys
from ...config import ConfigError, Training, batched, refuse_float32_underflow, static
from ...linalg import cholesky_psd, inverse_lower

ACTIVATIONS = ("relu", "relu_power", "leaky_relu")


# ---------------------------------------------------------------- sizes and modes
def n_filters(cfg) -> int:
    return 2 * cfg.width if cfg.banks == "class" else cfg.width


def n_directions(cfg) -> int:
    """Signal directions: e_1 (linear) or e_1, e_2 (XOR)."""
    return 2 if cfg.signal == "xor" else 1


def basis_size(cfg) -> int:
    """K: the signal directions and the n training noise vectors."""
    return n_directions(cfg) + cfg.n_train


def coefficient_mode(cfg) -> bool:
    if cfg.parameterization == "auto":
        return basis_size(cfg) < cfg.input_dim and cfg.optimizer in ("gd", "flow")
    return cfg.parameterization == "coefficient"


def padded_dim(cfg) -> int:
    """The array size of a patch. In coefficient mode d only sets the cost of the set-up (a
    step's cost does not depend on it), so runs of nearby d share one compiled program: d is
    rounded up to 64, to the next power of two up to 4096 (at most twice d: one compilation
    of the set-up, ~3 CPU-s, saved per bucket at a set-up cost that is small at these d), and
    above 4096 to the next of p/2 + k p/8 (p a power of two; at most 25 % more, where the
    set-up's d-dimensional work starts to count). The extra coordinates are zero."""
    d = cfg.input_dim
    if not coefficient_mode(cfg):
        return d
    if d <= 64:
        return 64
    p = 1 << (d - 1).bit_length()
    if p <= 4096:
        return p
    return next(p * k // 8 for k in (5, 6, 7, 8) if p * k // 8 >= d)


@dataclass(frozen=True, kw_only=True)
class Config(Training):
    """The configuration of one ``patch_cnn`` run: the engine's fields (``Training``, section
    ``[train]``, with this family's defaults) plus the data, network and initialization fields
    of section ``[base]``. The patch_cnn page lists every field with its kind and default."""

    family: str = static("patch_cnn", choices=("patch_cnn",), doc="experiment family")
    learning_rate: float = batched(0.1, section="train", positive=True, doc="step size eta")
    max_steps: int = static(1000, section="train", minimum=1, doc="number of GD steps")
    loss_tol: float = batched(0.0, section="train", minimum=0.0,
                              doc="a run stops once its training loss is below this (0: never)")
    n_checkpoints: int = static(30, section="train", minimum=2,
                                doc="number of log-spaced checkpoints (step 0 and the last included)")
    output_learning_rate: float | None = batched(
        None, section="train", positive=True, doc="step size of the output layer (default: learning_rate)")
    # data
    input_dim: int = static(200, minimum=1, bucket=padded_dim, doc="patch dimension d")
    n_train: int = static(20, minimum=1, doc="number of training samples n")
    n_test: int = static(1000, minimum=1, doc="number of test samples")
    signal: str = static("linear", choices=("linear", "xor"), doc="signal law: yhat mu, or XOR")
    signal_norm: float | None = batched(None, minimum=0.0, doc="|mu| (or give snr)")
    snr: float | None = batched(None, minimum=0.0, doc="|mu| / (noise_std sqrt(d)) (or give signal_norm)")
    xor_cosine: float = batched(0.0, minimum=0.0, doc="XOR: cos of the angle between a + b and a - b "
                                "(0: |a| = |b|)")
    noise_std: float = batched(1.0, minimum=0.0, doc="sigma_p")
    noise: str = static("orthogonal", choices=("orthogonal", "isotropic"),
                        doc="noise orthogonal to the signal, or isotropic")
    label_noise: float = batched(0.0, minimum=0.0, doc="label flip probability p (train and test)")
    signal_patch: str = static("random", choices=("random", "first"), doc="which patch holds the signal")
    test_sampling: str = static("projected", choices=("projected", "explicit"),
                                doc="test noise drawn in the span the network sees, or in full")
    # network
    width: int = static(10, minimum=1, doc="filters per bank m")
    banks: str = static("class", choices=("class", "single"), doc="one bank per class, or one signed bank")
    activation: str = static("relu", doc="relu, relu_power, leaky_relu or a registered activation")
    relu_power: float = batched(3.0, minimum=1.0, doc="q of relu_power (Cao's relu^q)")
    leaky_slope: float = batched(0.1, minimum=0.0, doc="negative slope of leaky_relu")
    pooling: str = static("sum", choices=("sum", "mean"), doc="aggregation over the two patches")
    divide_by_width: bool = static(False, doc="a 1/m factor in front of the sum over filters")
    bias: bool = static(False, doc="one bias per filter")
    hidden_init: str = static("gaussian", choices=("gaussian", "pytorch"),
                              doc="N(0, hidden_init_scale^2), or PyTorch's Conv1d default")
    hidden_init_scale: float = batched(0.01, minimum=0.0, doc="sigma_0 of the gaussian hidden init")
    output_init: str = static("constant", choices=("constant", "gaussian", "sign"),
                              doc="v = kappa, v ~ N(0, kappa^2), or v = +-kappa")
    output_init_scale: float | None = batched(None, minimum=0.0, doc="kappa (default 1/width)")
    output_trainable: bool = static(True, doc="train the output layer (false: frozen at init)")
    # engine and records
    parameterization: str = static("auto", choices=("auto", "direct", "coefficient"),
                                   doc="train the filters, or their exact coefficients")
    bank_grouping: str = static("initial", choices=("initial", "vote"),
                                doc="per-bank summaries over the filters voting for the class at "
                                    "init (fixed sets), or at each checkpoint")
    record_filters: bool = static(False, doc="record per-filter layer ratio, balance, norms")
    record_samples: bool = static(False, doc="record per-sample margins and noise memorization")
    record_coefficients: bool = static(False, doc="record the theory's signal and noise coefficients")

    @staticmethod
    def validate(cfg: "Config") -> None:
        if cfg.activation not in ACTIVATIONS:
            activations.get(cfg.activation)
        if cfg.signal_norm is not None and cfg.snr is not None:
            raise ConfigError("give at most one of 'signal_norm' and 'snr', not both")
        if cfg.signal == "xor" and cfg.input_dim < 2:
            raise ConfigError(f"signal = 'xor' needs input_dim >= 2, got {cfg.input_dim}")
        if not cfg.xor_cosine < 1.0:
            raise ConfigError(f"'xor_cosine' must lie in [0, 1), got {cfg.xor_cosine}")
        if not 0.0 <= cfg.label_noise <= 0.5:
            raise ConfigError(f"'label_noise' must lie in [0, 0.5], got {cfg.label_noise}")
        K = basis_size(cfg)
        if cfg.parameterization == "coefficient" and cfg.optimizer == "adam":
            raise ConfigError("parameterization = 'coefficient' needs optimizer = 'gd' or 'flow' "
                              "(Adam is not invariant to the change of coordinates)")
        if (cfg.parameterization == "coefficient" or cfg.record_coefficients) and K >= cfg.input_dim:
            raise ConfigError(f"parameterization = 'coefficient' and record_coefficients need "
                              f"input_dim > n_train + {n_directions(cfg)} = {K}, got {cfg.input_dim}")
        refuse_float32_underflow(cfg, "hidden_init_scale", "output_init_scale")


def filter_signs(cfg):
    """j of each filter's bank (+1 for the single bank)."""
    m = cfg.width
    return np.concatenate([np.ones(m), -np.ones(m)]) if cfg.banks == "class" else np.ones(m)


def _activation(cfg, bp):
    """The activation; its parameter (``relu_power`` q, ``leaky_slope``) is the run's
    batched value, cast to the inputs' dtype."""
    if cfg.activation == "relu":
        return jax.nn.relu
    if cfg.activation == "relu_power":
        q = bp["relu_power"]
        return lambda z: jnp.where(z > 0, jnp.maximum(z, 0) ** q.astype(z.dtype), 0.0)
    if cfg.activation == "leaky_relu":
        a = bp["leaky_slope"]
        return lambda z: jnp.where(z > 0, z, a.astype(z.dtype) * z)
    return activations.get(cfg.activation)


# ---------------------------------------------------------------- data and init
def _signal_norm(cfg, bp, dtype):
    if cfg.signal_norm is not None:
        return bp["signal_norm"].astype(dtype)
    if cfg.snr is not None:
        return bp["snr"].astype(dtype) * bp["noise_std"] * jnp.sqrt(bp["input_dim"].astype(dtype))
    return jnp.ones((), dtype)


def _labels_and_signal(cfg, u, p):
    """From 4 uniforms per sample: clean label, observed label, signal-first flag and the
    signs of the signal patch's coefficients on the signal directions, (N, S): the patch is
    ``signs * |mu|`` (linear) or ``signs * |mu| / sqrt(2)`` (XOR; ``_signal_patch``)."""
    y_clean = jnp.where(u[:, 0] < 0.5, 1.0, -1.0).astype(u.dtype)
    y = jnp.where(u[:, 1] < p, -y_clean, y_clean)
    first = (u[:, 2] < 0.5) if cfg.signal_patch == "random" else jnp.ones(u.shape[0], bool)
    if cfg.signal == "linear":
        signs = y_clean[:, None]
    else:  # +-(a + b) for yhat = +1, +-(a - b) for yhat = -1
        sign = jnp.where(u[:, 3] < 0.5, 1.0, -1.0).astype(u.dtype)
        signs = jnp.stack([sign, sign * y_clean], axis=1)
    return y_clean, y, first, signs


def signal_scales(cfg, bp, mu_norm):
    """The norms of the signal vectors, (S,): (|mu|,), or XOR's (|a|, |b|) with
    |a|^2 + |b|^2 = |mu|^2 and (|a|^2 - |b|^2) / |mu|^2 = ``xor_cosine``, the cosine of the
    angle between the class vectors a + b and a - b (0: |a| = |b|, orthogonal)."""
    if cfg.signal == "linear":
        return mu_norm[None]
    c = bp["xor_cosine"].astype(mu_norm.dtype)
    return jnp.stack([mu_norm * jnp.sqrt(1 + c), mu_norm * jnp.sqrt(1 - c)]) / math.sqrt(2.0)


def _signal_patch(signs, scales):
    """The signal patch's coefficients (N, S) from their signs (exact: a sign times a norm)."""
    return signs * scales[None, :]


def _project_noise(cfg, g):
    """P g: the signal directions removed (orthogonal noise) or kept."""
    if cfg.noise == "isotropic":
        return g
    return g.at[..., :n_directions(cfg)].set(0.0)


def _rows(key, n_rows, size, dtype, mask, law="normal"):
    """Row r drawn from fold_in(key, r), zero beyond the true dimension: a row's values do
    not depend on the padded size (JAX's threefry draws are prefix-stable)."""
    if law == "normal":
        draw = lambda k: keys.normal(k, (size,), dtype)  # noqa: E731
    else:
        draw = lambda k: keys.uniform(k, (size,), dtype, -1.0, 1.0)  # noqa: E731
    (x,) = keys.per_sample(draw, [(key, n_rows)])
    return jnp.where(mask, x, 0.0)


def _init_hidden(cfg, bp, dtype, mask):
    """w(0) (F, d) and the bias b(0) (F,)."""
    F = n_filters(cfg)
    kw, _, kb = jax.random.split(keys.stream(bp["seed"], "init"), 3)
    if cfg.hidden_init == "gaussian":
        w0 = _rows(kw, F, cfg.input_dim, dtype, mask) * bp["hidden_init_scale"].astype(dtype)
        b0 = jnp.zeros((F,), dtype)
    else:  # PyTorch's Conv1d default: uniform in +-1/sqrt(fan_in), fan_in = d
        bound = 1.0 / jnp.sqrt(bp["input_dim"].astype(dtype))
        w0 = _rows(kw, F, cfg.input_dim, dtype, mask, "uniform") * bound
        b0 = keys.uniform(kb, (F,), dtype, -1.0, 1.0) * bound
    return w0, b0


def _init_output(cfg, bp, dtype):
    """v(0) (F,)."""
    F = n_filters(cfg)
    _, kv, _ = jax.random.split(keys.stream(bp["seed"], "init"), 3)
    kappa = (bp["output_init_scale"].astype(dtype) if cfg.output_init_scale is not None
             else jnp.asarray(1.0 / cfg.width, dtype))
    if cfg.output_init == "constant":
        return jnp.full((F,), kappa, dtype)
    if cfg.output_init == "gaussian":
        return kappa * keys.normal(kv, (F,), dtype)
    return kappa * jnp.where(keys.uniform(kv, (F,), dtype) < 0.5, 1.0, -1.0).astype(dtype)


def _unit_rows(a):
    """a with its nonzero rows scaled to norm 1, and the norms (1 for a zero row)."""
    norm = jnp.linalg.norm(a, axis=1)
    norm = jnp.where(norm > 0, norm, 1.0)
    return a / norm[:, None], norm


# The set-up in two parts: ``setup_shared`` does all the d-dimensional work (the random
# draws, the Gram matrix, its Cholesky factor, the test noise) and reads only the batched
# fields SHARED_FIELDS; ``setup_run`` adds what the signal strength and the output init
# decide. Runs that differ only in other fields (a |mu| or SNR axis, kappa, step sizes)
# share one ``setup_shared`` (the engine computes it once per distinct SHARED_FIELDS).
SHARED_FIELDS = ("seed", "data_seed", "input_dim", "noise_std", "label_noise",
                 "hidden_init_scale")


def setup_shared(cfg, bp):
    """The part of the set-up that depends on ``SHARED_FIELDS`` only: data without the
    signal's scale, the initial filters and the coordinates of the span (module docstring)."""
    dtype = jnp.dtype(cfg.dtype)
    d, n, S, F = cfg.input_dim, cfg.n_train, n_directions(cfg), n_filters(cfg)  # d: padded
    mask = jnp.arange(d) < bp["input_dim"]  # the true dimension (coefficient mode pads d)
    sigma = bp["noise_std"].astype(dtype)
    p = bp["label_noise"].astype(dtype)

    def draw(k):
        k1, k2 = jax.random.split(k)
        return jnp.concatenate([keys.uniform(k1, (4,), dtype), keys.normal(k2, (d,), dtype)])

    (train,) = keys.per_sample(draw, [(keys.stream(bp["data_seed"], "train"), n)])
    y_clean, y, first, signs = _labels_and_signal(cfg, train[:, :4], p)
    xi = sigma * _project_noise(cfg, jnp.where(mask, train[:, 4:], 0.0))  # (n, d)
    w0, b0 = _init_hidden(cfg, bp, dtype, mask)
    basis = jnp.concatenate([jnp.eye(S, d, dtype=dtype), xi])  # (K, d)

    # Everything a filter can ever be made of: S = span of the rows of A = (basis, w(0)).
    # With unit rows U = D^-1 A and U U^T = L L^T, the rows of Q = L^-1 U are orthonormal and
    # span S, and Q x = L^-1 (U x): the d-dimensional work is one Gram matrix.
    K = basis.shape[0]
    unit, norm = _unit_rows(jnp.concatenate([basis, w0]))  # (K + F, d)
    gram = unit @ unit.T
    low = cholesky_psd(gram)

    # test set: labels and signal as for training. Projected noise: the inner products
    # t = U xi_test of the unit rows with sigma P g are Gaussian with covariance
    # sigma^2 U P U^T, drawn as sigma cholesky(U P U^T) z (module docstring)
    k_lab, k_noise = jax.random.split(keys.stream(bp["data_seed"], "test"))
    u = keys.uniform(k_lab, (cfg.n_test, 4), dtype)
    yt_clean, yt, first_t, signs_t = _labels_and_signal(cfg, u, p)
    if cfg.test_sampling == "projected":
        gram_p = gram if cfg.noise == "isotropic" else gram - unit[:, :S] @ unit[:, :S].T
        z = keys.normal(k_noise, (cfg.n_test, K + F), dtype)
        t = sigma * (cholesky_psd(gram_p) @ z.T)  # (K + F, n_test)
    else:
        xi_test = sigma * _project_noise(cfg, _rows(k_noise, cfg.n_test, d, dtype, mask))
        t = unit @ xi_test.T

    data = {"y": y, "y_clean": y_clean, "signs": signs, "signal_first": first,
            "y_test": yt, "y_test_clean": yt_clean, "signs_test": signs_t,
            "signal_first_test": first_t, "basis_norm2": jnp.sum(basis * basis, axis=1)}
    inv_b = inverse_lower(low[:K, :K])  # coordinates of the basis span: Q_b = inv_b U[:K]
    if coefficient_mode(cfg) or cfg.record_coefficients:
        data["basis_q"] = norm[:K, None] * low[:K, :K]  # basis = basis_q Q_b (lower triangular)
    if coefficient_mode(cfg):
        data.update({
            "e_q": inv_b @ unit[:K, :S],  # (K, S)
            "noise_q": inv_b @ (gram[:K, S:K] * norm[S:K]),  # (K, n): Q_b xi_i
            "noise_q_test": inv_b @ t[:K],  # (K, n_test)
            "w0_e": w0[:, :S], "w0_noise": w0 @ xi.T, "w0_noise_test": norm[K:, None] * t[K:],
            "w0_q": (inv_b @ (gram[:K, K:] * norm[K:])).T,  # (F, K): <w0, q_k>
            "w0_sq": jnp.sum(w0 * w0, axis=1),
        })
    else:
        if cfg.test_sampling == "projected":  # the minimum-norm vectors x in S with U x = t
            inv = inverse_lower(low)
            xi_test = (inv.T @ (inv @ t)).T @ unit  # (n_test, d)
        data.update({"noise": xi, "noise_test": xi_test, "w0": w0})
        if cfg.record_coefficients:
            data["q"] = inv_b @ unit[:K]
    return {"data": data, "b0": b0}


def setup_run(cfg, bp, shared):
    """(params, data, info) of one run from its ``setup_shared`` part."""
    dtype = jnp.dtype(cfg.dtype)
    mu_norm = _signal_norm(cfg, bp, dtype)
    sigma = bp["noise_std"].astype(dtype)
    data = dict(shared["data"])
    scales = signal_scales(cfg, bp, mu_norm)
    data["s"] = _signal_patch(data.pop("signs"), scales)
    data["s_test"] = _signal_patch(data.pop("signs_test"), scales)
    data["mu_norm"], data["signal_scales"] = mu_norm, scales
    params = {"v": _init_output(cfg, bp, dtype)}
    data["vote0"] = _vote(cfg, params["v"])
    if cfg.bias:
        params["b"] = shared["b0"]
    if coefficient_mode(cfg):
        params["c"] = jnp.zeros((n_filters(cfg), basis_size(cfg)), dtype)
    else:
        params["w"] = data["w0"]
    info = {"effective_signal_norm": mu_norm,
            "effective_snr": mu_norm / (sigma * jnp.sqrt(bp["input_dim"].astype(dtype))),
            "coefficient_mode": jnp.asarray(coefficient_mode(cfg))}
    return params, data, info


def setup(cfg, bp):
    return setup_run(cfg, bp, setup_shared(cfg, bp))


# ---------------------------------------------------------------- the network
def _dots(cfg, params, data, test=False):
    """<w_f, e_k> (F, S) and <w_f, xi_i> (F, N) for the training or the test noise."""
    sfx = "_test" if test else ""
    S = n_directions(cfg)
    if "w" in params:
        w = params["w"]
        return w[:, :S], w @ data["noise" + sfx].T
    c = params["c"]
    return data["w0_e"] + c @ data["e_q"], data["w0_noise" + sfx] + c @ data["noise_q" + sfx]


def _output(cfg, bp, params, w_e, w_xi, s):
    """f on N samples from the filters' inner products with both patches."""
    act = _activation(cfg, bp)
    z_signal, z_noise = w_e @ s.T, w_xi  # (F, N)
    if cfg.bias:
        z_signal, z_noise = z_signal + params["b"][:, None], z_noise + params["b"][:, None]
    return _readout(cfg, params, act(z_signal) + act(z_noise))


def _readout(cfg, params, h):
    """f from the activations summed over the two patches, h (F, N): pooling, the banks'
    signs, the output weights and the optional 1/m."""
    if cfg.pooling == "mean":
        h = 0.5 * h
    out = (jnp.asarray(filter_signs(cfg), h.dtype) * params["v"]) @ h
    return out / cfg.width if cfg.divide_by_width else out


def margins(cfg, bp, params, data, test=False):
    w_e, w_xi = _dots(cfg, params, data, test)
    sfx = "_test" if test else ""
    return data["y" + sfx] * _output(cfg, bp, params, w_e, w_xi, data["s" + sfx])


def loss(cfg, bp, params, data):
    return jnp.mean(jax.nn.softplus(-margins(cfg, bp, params, data)))


def patches(cfg, data, test=False):
    """The explicit inputs x = (x_1, x_2), (N, 2, d) (direct mode's data)."""
    sfx = "_test" if test else ""
    S, d = n_directions(cfg), cfg.input_dim
    signal = data["s" + sfx] @ jnp.eye(S, d, dtype=data["s" + sfx].dtype)
    noise = data["noise" + sfx]
    first = data["signal_first" + sfx][:, None]
    return jnp.stack([jnp.where(first, signal, noise), jnp.where(first, noise, signal)], axis=1)


def predict(cfg, params, x):
    """f(x) on explicit inputs x of shape (N, 2, d); direct parameters ``{"w", "v"(, "b")}``."""
    if "w" not in params:
        raise ValueError("predict on explicit inputs needs direct parameters (parameterization = 'direct')")
    z = jnp.einsum("fd,npd->fnp", params["w"], x)
    if cfg.bias:
        z = z + params["b"][:, None, None]
    # the activation's parameter from the (full) config: a static part has none to give
    name = {"relu_power": "relu_power", "leaky_relu": "leaky_slope"}.get(cfg.activation)
    bp = {name: jnp.asarray(float(getattr(cfg, name)), x.dtype)} if name else {}
    return _readout(cfg, params, jnp.sum(_activation(cfg, bp)(z), axis=2))


def inputs(cfg, n, seed):
    """n random explicit inputs for ``predict`` (``theory.model_rank``): both patches
    N(0, I_d), shape (n, 2, d), float64, from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal((n, 2, cfg.input_dim))


def step_sizes(cfg, bp, params):
    """Per-parameter step sizes: the output layer's own (or 0 when frozen)."""
    lr = bp["learning_rate"]
    lr_v = bp["output_learning_rate"] if cfg.output_learning_rate is not None else lr
    out = {k: lr for k in params}
    out["v"] = lr_v if cfg.output_trainable else jnp.zeros_like(lr)
    return out


# ---------------------------------------------------------------- observables
def _norms(cfg, params, data):
    """|w_f|^2 and |w_f - w_f(0)|^2, (F,) each."""
    if "w" in params:
        w, dw = params["w"], params["w"] - data["w0"]
        return jnp.sum(w * w, axis=1), jnp.sum(dw * dw, axis=1)
    c = params["c"]
    c2 = jnp.sum(c * c, axis=1)
    return data["w0_sq"] + 2 * jnp.sum(c * data["w0_q"], axis=1) + c2, c2


def _masked(x, mask, how):
    """max or mean of x over the axis 0 entries where mask; NaN where none."""
    count = jnp.sum(mask, axis=0)
    if how == "max":
        val = jnp.max(jnp.where(mask, x, -jnp.inf), axis=0)
    else:
        val = jnp.sum(jnp.where(mask, x, 0.0), axis=0) / jnp.maximum(count, 1)
    return jnp.where(count > 0, val, jnp.nan)


def coefficients(cfg, params, data):
    """alpha with w - w(0) = sum_k alpha_k basis_k, basis = (e_1 (, e_2), xi_1..xi_n): (F, K)."""
    # with basis = B Q_b (B = basis_q, lower triangular) and w - w(0) = c Q_b: c = alpha B
    c = params["c"] if "c" in params else (params["w"] - data["w0"]) @ data["q"].T
    return c @ inverse_lower(data["basis_q"])


def _vote(cfg, v):
    """The class each filter votes for: j sign(v_f) (j for v_f = 0)."""
    j = jnp.asarray(filter_signs(cfg), v.dtype)
    return jnp.where(v == 0, j, j * jnp.sign(v))


def observe(cfg, bp, params, data):
    S = n_directions(cfg)
    w_e, w_xi = _dots(cfg, params, data)
    m = data["y"] * _output(cfg, bp, params, w_e, w_xi, data["s"])
    w_xi_t = _dots(cfg, params, data, test=True)[1]  # <w_f, e_k> is the same for both
    f_t = _output(cfg, bp, params, w_e, w_xi_t, data["s_test"])
    v = params["v"]
    j = jnp.asarray(filter_signs(cfg), v.dtype)
    vote_now = _vote(cfg, v)
    # the filters a bank's summaries are over: fixed at init (a filter whose v changes sign
    # stays in its bank), or regrouped at each checkpoint by the current vote
    vote = data["vote0"] if cfg.bank_grouping == "initial" else vote_now
    banks = jnp.asarray([1.0, -1.0], v.dtype)
    in_bank = vote[:, None] == banks[None, :]  # (F, 2)
    w_sq, dw_sq = _norms(cfg, params, data)
    ratio = jnp.sqrt(dw_sq) / jnp.abs(v)
    # |w|^2 + b^2 - v^2: (w, b) is one weight vector on the input (x, 1), and the relu is
    # positively homogeneous in it (Euler: w.g_w + b g_b = v g_v)
    balance = w_sq + params["b"] ** 2 - v * v if cfg.bias else w_sq - v * v
    if cfg.signal == "linear":  # <w_f, j mu> for bank j
        sig = w_e[:, :1] * data["mu_norm"] * banks[None, :]
    else:  # |<w_f, a + b>| for bank +1, |<w_f, a - b>| for bank -1
        wa, wb = w_e[:, 0] * data["signal_scales"][0], w_e[:, 1] * data["signal_scales"][1]
        sig = jnp.abs(jnp.stack([wa + wb, wa - wb], axis=1))
    memo = _masked(w_xi, vote[:, None] == data["y"][None, :], "max")  # (n,)
    out = {
        "train_loss": jnp.mean(jax.nn.softplus(-m)),
        "train_error": jnp.mean((m <= 0).astype(m.dtype)),
        "test_error": jnp.mean((data["y_test"] * f_t <= 0).astype(f_t.dtype)),
        "test_error_clean": jnp.mean((data["y_test_clean"] * f_t <= 0).astype(f_t.dtype)),
        "margin_min": jnp.min(m), "margin_mean": jnp.mean(m),
        "weight_norm": jnp.sqrt(jnp.sum(jnp.where(in_bank, w_sq[:, None], 0.0), axis=0)),
        "output_norm": jnp.sqrt(jnp.sum(jnp.where(in_bank, (v * v)[:, None], 0.0), axis=0)),
        "signal_learning": _masked(sig, in_bank, "max"),
        "signal_learning_mean": _masked(sig, in_bank, "mean"),
        "noise_memorization": jnp.max(memo), "noise_memorization_mean": jnp.mean(memo),
        "layer_ratio": jnp.mean(ratio), "layer_ratio_min": jnp.min(ratio),
        "layer_ratio_max": jnp.max(ratio), "balance": jnp.mean(balance),
        "sign_flips": jnp.mean((vote_now != data["vote0"]).astype(v.dtype)),
    }
    if cfg.record_filters:
        out.update(layer_ratio_filter=ratio, balance_filter=balance,
                   weight_norm_filter=jnp.sqrt(w_sq), output_weight=v)
    if cfg.record_samples:
        out.update(margin_sample=m, noise_memorization_sample=memo)
    if cfg.record_coefficients:
        alpha = coefficients(cfg, params, data)
        norms = data["signal_scales"]
        out.update(signal_coeff=alpha[:, :S] * norms * j[:, None],
                   noise_coeff=alpha[:, S:] * data["basis_norm2"][None, S:])
    return out


def finalize(cfg, bp, params, data):
    return {}


def coords(cfg):
    return {"bank": np.array([1, -1])}

