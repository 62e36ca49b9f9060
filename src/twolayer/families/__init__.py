"""Experiment families. A family is a bundle of pure functions (no class tree):

- ``Config``: its frozen config dataclass (derived from :class:`twolayer.config.Training`);
- ``setup(cfg, bp) -> (params, data, info)``: one run's data, initial parameters and per-run
  facts of the initialization; ``cfg`` is the static part, ``bp`` the run's batched values;
- ``loss(cfg, params, data) -> scalar``: the training objective;
- ``observe(cfg, params, data) -> dict``: what is recorded at each checkpoint;
- ``finalize(cfg, params, data, bp) -> dict``: per-run results of the final parameters;
- ``predict(cfg, params, x)``: the network function (used by the numerical model rank);
- ``dims``: the named dimensions of every recorded variable beyond ``run`` and ``step``;
- ``coords(cfg)``: coordinate values of those dimensions, where they have any;
- ``describe``: a long name per variable, used as the plot label;
- ``step_sizes(cfg, bp, params) -> pytree`` (optional): a step size per parameter (e.g. an
  output layer with its own, or 0 when frozen); default: ``learning_rate`` for all.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ..config import ConfigError


class Family(NamedTuple):
    name: str
    Config: type
    setup: Callable
    loss: Callable
    observe: Callable
    finalize: Callable
    predict: Callable
    dims: dict
    coords: Callable
    describe: dict
    step_sizes: Callable | None = None


def get(name: str) -> Family:
    from . import patch_cnn, single_neuron
    families = {f.name: f for f in (single_neuron.FAMILY, patch_cnn.FAMILY)}
    if name not in families:
        raise ConfigError(f"unknown family '{name}'; allowed: {', '.join(sorted(families))}")
    return families[name]
