"""Small dense linear algebra in plain XLA operations (loops over a few dozen rows).

XLA's CPU LAPACK calls (qr, eigh, triangular solves, LU) deadlock when batched under
``shard_map`` on several host devices (measured, jax 0.10.2), and they are slow when
batched over runs; families' ``setup`` and the implicit solvers of gradient flow use these.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cholesky_psd(g):
    """Lower L with L L^T = g for a positive semi-definite g (R, R); a pivot at rounding
    level (a row that depends on the earlier ones) gives a zero column. Rounding leaves such
    a pivot at about 10 n eps max(diag) (measured), hence the tolerance 100 n eps max(diag):
    a row whose part independent of the earlier rows is below ~1e-6 of the largest row
    counts as dependent (L L^T then differs from g by at most the tolerance)."""
    n = g.shape[0]
    tol = 100 * n * jnp.finfo(g.dtype).eps * jnp.max(jnp.diagonal(g))
    idx = jnp.arange(n)

    def body(j, low):
        v = g[:, j] - low @ low[j]  # columns >= j of low are still zero
        ok = v[j] > tol
        col = jnp.where(ok & (idx >= j), v / jnp.sqrt(jnp.where(ok, v[j], 1.0)), 0.0)
        return low.at[:, j].set(col)

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(g))


def inverse_lower(low):
    """L^-1 for a lower triangular L by forward substitution; rows and columns of zero
    pivots are zero (so L^-1 b solves L x = b for any b in L's range)."""
    n = low.shape[0]
    eye = jnp.eye(n, dtype=low.dtype)

    def body(i, inv):
        piv = low[i, i]
        row = (eye[i] - low[i] @ inv) / jnp.where(piv != 0, piv, 1.0)
        return inv.at[i].set(jnp.where(piv != 0, row, 0.0))

    return jax.lax.fori_loop(0, n, body, jnp.zeros_like(low))


def gauss_jordan_inverse(a):
    """Inverse of a square matrix by Gauss-Jordan elimination with partial pivoting, in
    plain XLA operations (a loop over the columns): no LAPACK call. A singular matrix gives
    non-finite entries."""
    n = a.shape[0]
    m = jnp.concatenate([a, jnp.eye(n, dtype=a.dtype)], axis=1)
    rows = jnp.arange(n)

    def column(k, m):
        p = jnp.argmax(jnp.where(rows >= k, jnp.abs(m[:, k]), -1.0))
        rk, rp = m[k], m[p]
        m = m.at[k].set(rp).at[p].set(rk)
        m = m.at[k].set(m[k] / m[k, k])
        factor = m[:, k].at[k].set(0.0)
        return m - factor[:, None] * m[k][None, :]

    return jax.lax.fori_loop(0, n, column, m)[:, n:]


__all__ = ["cholesky_psd", "inverse_lower", "gauss_jordan_inverse"]
