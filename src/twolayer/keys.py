"""Random streams. A run's randomness comes from two integers at the boundary, ``seed``
(initialization, and any stochastic optimizer) and ``data_seed`` (training and test data),
each split into one independent stream per purpose. Per-sample draws use one key per sample
index, so the first n samples are the same for every n."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

STREAMS = {"init": 1, "train": 2, "test": 3, "sgd": 4}


def stream(seed, purpose: str):
    """Key of one purpose; ``seed`` may be a traced integer (inside vmap)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), STREAMS[purpose])


def per_sample(draw, streams) -> list:
    """``draw(fold_in(key, i))`` for i < n, for each ``(key, n)`` of ``streams``: sample i of
    a stream depends on (key, i) only. All streams in one vectorized call (the random bit
    generator is compiled once, not once per stream)."""
    base = jnp.concatenate([jnp.broadcast_to(k, (n,) + k.shape) for k, n in streams])
    index = jnp.concatenate([jnp.arange(n) for _, n in streams])
    out = jax.vmap(lambda k, i: draw(jax.random.fold_in(k, i)))(base, index)
    cuts = np.cumsum([n for _, n in streams])[:-1]
    return jnp.split(out, cuts)



def normal(key, shape, dtype=jnp.float64):
    """Standard normals drawn in float64 and cast to ``dtype``: the same draw in every
    precision (a float32 run is the float64 run's experiment, rounded), unlike
    ``jax.random.normal(key, shape, float32)``, which draws other numbers."""
    return jax.random.normal(key, shape, jnp.float64).astype(dtype)


def uniform(key, shape, dtype=jnp.float64, minval=0.0, maxval=1.0):
    """Uniforms on [minval, maxval) drawn in float64 and cast to ``dtype`` (see ``normal``)."""
    return jax.random.uniform(key, shape, jnp.float64, minval, maxval).astype(dtype)
