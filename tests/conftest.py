"""Shared helpers of the test suite: the single-neuron family, a config builder and the
per-run batched values that ``family.setup`` expects."""
from __future__ import annotations

import numpy as np
import pytest

import twolayer  # noqa: F401  (enables float64 before jax is used)
from twolayer.config import make_config
from twolayer.families import get
from twolayer.train import run_values


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
