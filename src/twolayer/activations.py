"""Elementwise activations by name, shared by every family.

Built in: ``tanh``, ``rational`` (x / (1 + x^2), the odd, bounded activation of the study's
width-1000 run), ``relu``, ``identity``. A user adds one with ``register_activation``, or
names any importable function as ``"package.module:function"`` in a config or TOML file."""
from __future__ import annotations

import importlib
from typing import Callable

import jax
import jax.numpy as jnp

from .config import ConfigError

_REGISTRY: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "rational": lambda z: z / (1.0 + z * z),
    "relu": jax.nn.relu,
    "identity": lambda z: z,
}


BUILTIN = frozenset(_REGISTRY)


def register_activation(name: str, fn: Callable) -> None:
    """Make ``fn`` (elementwise, jax-traceable) available as ``activation = name`` in
    configs of this process; a name registered again is replaced. Worker processes of an
    executor do not see it: name the function as ``"package.module:function"`` instead,
    which works everywhere without registering."""
    if not callable(fn):
        raise TypeError("activation must be callable")
    _REGISTRY[name] = fn


def local_only(name) -> bool:
    """Registered in this process by ``register_activation``: other processes (the
    workers of an executor) do not know it; ``'module:function'`` works everywhere."""
    return isinstance(name, str) and name in _REGISTRY and name not in BUILTIN


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Callable:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"activation '{name}' cannot be imported: {err}") from None
        if not callable(fn):
            raise ConfigError(f"activation '{name}' is not callable")
        return fn
    raise ConfigError(f"unknown activation '{name}'; allowed: {', '.join(names())} "
                      f"or 'module:function'")


def slope_at_zero(name: str) -> float:
    """s'(0), the factor in the small-initialization growth rate."""
    return float(jax.grad(lambda z: get(name)(z))(0.0))
