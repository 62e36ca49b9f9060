"""Theory for any family: the numerical model rank of a parameter point (the rank of the
model's Jacobian; its optimistic sample size) and the sharpness of the training loss. A
family's own formulas live in its folder (``families/<name>/theory.py``)."""
from __future__ import annotations

import functools

import numpy as np


def random_inputs(family, cfg, n_inputs: int, key_seed: int = 0):
    """n_inputs inputs for ``family.predict``: the family's ``inputs(cfg, n, seed)`` where it
    has one, else points x ~ N(0, I_d), d = ``cfg.input_dim``, as a float64 numpy array
    (n, d) from ``numpy.random.default_rng(key_seed)``."""
    if family.inputs is not None:
        return family.inputs(cfg, n_inputs, key_seed)
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
        x = random_inputs(family, cfg, n, key_seed)
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


def sharpness(family, cfg, bp, params, data) -> float:
    """Largest eigenvalue of the Hessian of the training loss at ``params`` (float64). Linear
    stability: gradient descent with step eta cannot settle at a minimum whose sharpness
    exceeds 2 / eta. ``bp`` and ``data`` are the run's batched values and training data (as
    ``family.setup`` got and gave them)."""
    from .runtime import configure

    configure()  # float64
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64),
                                                        params))
    data = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), data)
    hess = jax.hessian(lambda f: family.loss(cfg, bp, unravel(f), data))(flat)
    return float(np.linalg.eigvalsh(np.asarray(hess))[-1])


__all__ = ["random_inputs", "model_jacobian", "jacobian_singular_values", "model_rank",
           "sharpness"]
