"""Random streams. A run's randomness comes from two integers at the boundary, ``seed``
(initialization, and any stochastic optimizer) and ``data_seed`` (training and test data),
each split into one independent stream per purpose. Per-sample draws use one key per sample
index, so the first n samples are the same for every n."""
from __future__ import annotations

import jax
import jax.numpy as jnp

STREAMS = {"init": 1, "train": 2, "test": 3, "sgd": 4}


def stream(seed, purpose: str):
    """Key of one purpose; ``seed`` may be a traced integer (inside vmap)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), STREAMS[purpose])


def per_sample_normal(key, n: int, shape: tuple, dtype) -> jnp.ndarray:
    """n iid standard normal draws of ``shape``; sample i depends on (key, i) only."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    return jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys)


def per_sample_uniform(key, n: int, shape: tuple, dtype, low, high) -> jnp.ndarray:
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    return jax.vmap(lambda k: jax.random.uniform(k, shape, dtype, low, high))(keys)
