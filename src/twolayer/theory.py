"""Theory next to the simulation: for ``single_neuron``, sample-size thresholds, the
small-initialization time shift, the numerical model rank and the sharpness; for
``patch_cnn``, the benign-overfitting conditions drawn on phase diagrams.

Notation: d input dimension, D effective input dimension (d + 1 with bias), m student width,
m0 target width (number of target neurons), k intrinsic width of the target; n training
samples, |mu| signal norm, sigma_p noise standard deviation, SNR = |mu| / (sigma_p sqrt(d)).
Scalar formulas take numbers or numpy arrays (which broadcast)."""
from __future__ import annotations

import functools

import numpy as np


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


# ---------------------------------------------------------------- numerical model rank
def random_inputs(cfg, n_inputs: int, key_seed: int = 0):
    """n_inputs points x ~ N(0, I_d), d = ``cfg.input_dim``: float64 numpy array (n, d) from
    ``numpy.random.default_rng(key_seed)``."""
    d = int(getattr(cfg, "input_dim"))
    return np.random.default_rng(key_seed).standard_normal((n_inputs, d))


def model_jacobian(family, cfg, params, *, n_inputs: int | None = None, key_seed: int = 0,
                   x=None) -> np.ndarray:
    """J[i, p] = d f(x_i) / d theta_p at the parameter point ``params`` (any pytree; flattened
    with ``jax.flatten_util.ravel_pytree``), in float64, over the inputs ``x`` (default:
    ``n_inputs`` draws of N(0, I_d), ``n_inputs`` = 4 * (number of parameters) + 20)."""
    from .runtime import configure

    configure()  # float64
    import jax
    import jax.numpy as jnp

    params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    flat = jnp.asarray(np.concatenate([np.ravel(v) for v in leaves]) if leaves else np.zeros(0))
    if x is None:
        n = 4 * flat.size + 20 if n_inputs is None else int(n_inputs)
        x = random_inputs(cfg, n, key_seed)
    x = jnp.asarray(x, jnp.float64)
    shapes = tuple(np.shape(v) for v in leaves)
    try:
        fn = _jacobian_fn(family.predict, cfg, treedef, shapes)
    except TypeError:  # an unhashable config: compile without the cache
        fn = _jacobian_fn.__wrapped__(family.predict, cfg, treedef, shapes)
    return np.asarray(fn(flat, x), dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _jacobian_fn(predict, cfg, treedef, shapes):
    """Compiled x, theta -> d predict / d theta for one parameter structure."""
    import jax
    from jax.flatten_util import ravel_pytree

    zeros = jax.tree_util.tree_unflatten(treedef, [np.zeros(s) for s in shapes])
    _, unravel = ravel_pytree(zeros)
    return jax.jit(jax.jacfwd(lambda th, xs: predict(cfg, unravel(th), xs)))


def jacobian_singular_values(family, cfg, params, *, n_inputs: int | None = None,
                             key_seed: int = 0, x=None) -> np.ndarray:
    """Singular values (descending) of the model Jacobian of ``model_jacobian``."""
    return np.linalg.svd(model_jacobian(family, cfg, params, n_inputs=n_inputs,
                                        key_seed=key_seed, x=x), compute_uv=False)


def model_rank(family, cfg, params, *, n_inputs: int | None = None, tol: float = 1e-8,
               key_seed: int = 0, x=None) -> int:
    """Numerical model rank of a parameter point, for any family: the dimension of the span of
    the functions d f / d theta_p, estimated as the rank of the Jacobian of
    ``family.predict(cfg, params, x)`` with respect to all parameters over many random inputs
    x ~ N(0, I_d) (``n_inputs``, default 4 * (number of parameters) + 20; or explicit ``x``),
    computed by SVD in float64.

    ``tol`` is RELATIVE: the rank counts the singular values above ``tol`` times the largest
    one. Exactly dependent directions give values at rounding level (~1e-16 relative), so the
    default 1e-8 separates them from genuinely independent ones unless these are themselves
    nearly dependent (e.g. two target neurons with almost equal weights); inspect
    ``jacobian_singular_values`` when in doubt. A zero Jacobian has rank 0."""
    sv = jacobian_singular_values(family, cfg, params, n_inputs=n_inputs, key_seed=key_seed, x=x)
    if sv.size == 0 or sv[0] == 0.0:
        return 0
    return int(np.sum(sv > tol * sv[0]))


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
    from .families import get

    family = get(cfg.family)
    return model_rank(family, cfg, target_point(cfg), n_inputs=n_inputs, tol=tol,
                      key_seed=key_seed)


def sharpness(family, cfg, params, data) -> float:
    """Largest eigenvalue of the Hessian of the training loss at ``params`` (float64). Linear
    stability: gradient descent with step eta cannot settle at a minimum whose sharpness
    exceeds 2 / eta. ``data`` is the family's training data (from ``family.setup``)."""
    from .runtime import configure

    configure()  # float64
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64),
                                                        params))
    data = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), data)
    hess = jax.hessian(lambda f: family.loss(cfg, unravel(f), data))(flat)
    return float(np.linalg.eigvalsh(np.asarray(hess))[-1])


# ---------------------------------------------------------------- benign overfitting (patch CNN)
# Conditions "benign iff Q >~ C" of the patch-CNN studies, each as the quantity Q of the
# settings; a phase diagram draws the curve Q = C (C a user constant: the papers fix
# it only up to constants and log factors).
def snr_of(signal_norm, noise_std, input_dim):
    """SNR = |mu| / (sigma_p sqrt(d))."""
    return np.asarray(signal_norm) / (np.asarray(noise_std) * np.sqrt(input_dim))


def kou_quantity(n_train, signal_norm, noise_std, input_dim):
    """Kou et al. 2023 / Meng et al. 2024 (relu, fixed output): n |mu|^4 / (sigma_p^4 d);
    benign iff it is >~ C, with test error <= p + exp(-Q / C') (p the label-flip rate)."""
    return (np.asarray(n_train) * np.asarray(signal_norm, float) ** 4
            / (np.asarray(noise_std, float) ** 4 * np.asarray(input_dim)))


def cao_quantity(n_train, snr, relu_power):
    """Cao et al. 2022 (relu^q, fixed output): n SNR^q; benign iff >~ C."""
    return np.asarray(n_train) * np.asarray(snr, float) ** np.asarray(relu_power, float)


def small_init_quantity(n_train, snr):
    """CONJECTURE of this toolkit, not a statement of Shang et al. 2024: with a small output
    init the two layers grow jointly and the model is effectively 2-homogeneous, so
    n SNR^2 >~ C is the natural candidate condition. Drawn to be tested against the data."""
    return np.asarray(n_train) * np.asarray(snr, float) ** 2


CONDITIONS = {
    "kou": ("n |mu|^4 / (sigma_p^4 d) = C (Kou 2023)", kou_quantity),
    "cao": ("n SNR^q = C (Cao 2022)", cao_quantity),
    "small_init": ("n SNR^2 = C (conjecture, small output init)", small_init_quantity),
}
"""The benign-overfitting conditions by name: (legend label, function giving Q). The
``heatmap`` figure's ``overlays`` name them."""


def benign_quantity(condition: str, *, n_train, input_dim, noise_std=1.0, signal_norm=None,
                    snr=None, relu_power=2.0):
    """The quantity Q of ``condition`` (a key of ``CONDITIONS``: "kou", "cao", "small_init")
    from the settings; give the signal as exactly one of ``signal_norm`` and ``snr`` (the
    other follows from |mu| = SNR sigma_p sqrt(d)); ``relu_power`` is q of "cao". Arrays
    broadcast. Raises ValueError for an unknown condition or when both or neither signal
    argument is given."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition '{condition}'; allowed: {', '.join(CONDITIONS)}")
    if (signal_norm is None) == (snr is None):
        raise ValueError("give exactly one of signal_norm and snr")
    if snr is None:
        snr = snr_of(signal_norm, noise_std, input_dim)
    else:
        signal_norm = np.asarray(snr, float) * np.asarray(noise_std) * np.sqrt(input_dim)
    if condition == "kou":
        return kou_quantity(n_train, signal_norm, noise_std, input_dim)
    if condition == "cao":
        return cao_quantity(n_train, snr, relu_power)
    return small_init_quantity(n_train, snr)


# every public name, the patch-CNN conditions included (computed at the end of the module)
__all__ = [n for n in dir() if not n.startswith("_")
           and n not in ("annotations", "functools", "np")]
