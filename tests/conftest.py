"""Shared helpers of the test suite: the single-neuron family, a config builder and the
per-run batched values that ``family.setup`` expects."""
from __future__ import annotations

import os

import numpy as np
import pytest

from twolayer import runtime

# the Python API turns JAX's persistent compilation cache on, as the CLI does; the suite's
# process keeps compiling in memory (a test that wants the cache sets it)
os.environ.setdefault("TWOLAYER_CACHE_DIR", "0")

# float64 and host devices before jax is imported: tests create float64 arrays and call the
# families' functions directly, not only through the entry points that configure
runtime.configure()

from twolayer.config import make_config  # noqa: E402
from twolayer.families import get  # noqa: E402
from twolayer.train import run_values  # noqa: E402


@pytest.fixture(scope="session")
def fam():
    return get("single_neuron")


@pytest.fixture(scope="session")
def make(fam):
    """make(**settings) -> a validated single_neuron Config."""
    def _make(**kw):
        return make_config(fam.Config, kw)
    return _make


@pytest.fixture(scope="session")
def bp_of():
    """bp_of(cfg) -> the batched values of one run, as family.setup receives them."""
    return run_values


class States:
    """A training-state file in memory that keeps the first snapshot saved after the start
    (``train_group(..., state_file=States())``; resume with ``States(first)``)."""

    every = 0.0

    def __init__(self, snap=None):
        self.first, self.snap = None, snap

    def load(self):
        return self.snap

    def save(self, arrays):
        if self.first is None and int(arrays["now"]) > 0:
            self.first = {k: np.array(v) for k, v in arrays.items()}
