"""Analysis of matrix-completion sweeps: the fraction of runs recovered per (target rank, n),
and which runs' observed entries determine their target locally (``theory.observed_rank``)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ...analysis import setting

SETTINGS = ("size", "width", "target_rank", "n_train", "data_seed", "seed")


def recovered_fraction(ds, by=("target_rank", "n_train"), var: str = "recovered"):
    """The mean of ``recovered`` over every dim but ``by`` (those of ``by`` that ds has)."""
    rec = ds[var].astype(float)
    return rec.mean([d for d in rec.dims if d not in by])


def identifiable(ds) -> xr.DataArray:
    """Per run: its observed entries determine the target locally among rank-r matrices
    (``theory.observed_rank`` = r (2k - r)), for the dims of ``recovered`` (settings read
    from coordinates or attributes). One small SVD per run."""
    from ...config import make_config
    from .. import get
    from . import theory

    fam = get("matrix_factorization")
    rec = ds["recovered"]
    out = np.zeros(rec.shape, dtype=bool)
    for idx in np.ndindex(rec.shape):
        where = {d: rec[d].values[i] for d, i in zip(rec.dims, idx) if d in rec.coords}
        kw = {}
        for name in SETTINGS:
            value = where.get(name, setting(ds, name, None))
            if value is not None and not hasattr(value, "dims"):
                kw[name] = int(value)
        cfg = make_config(fam.Config, kw)
        out[idx] = theory.observed_rank(fam, cfg) == theory.optimistic_sample_size(
            cfg.size, cfg.target_rank)
    return xr.DataArray(out, dims=rec.dims, coords=rec.coords, name="identifiable")


__all__ = ["recovered_fraction", "identifiable"]
