"""twolayer: batched, compiled experiments on how two-layer neural networks generalize.

Importing the package is cheap and changes nothing in the process: JAX is imported, and set
up by ``twolayer.runtime.configure()`` (float64, host devices), only when something trains or
computes (see ``twolayer.runtime``)."""
from __future__ import annotations

__version__ = "0.1.0"

# name -> (module, attribute), imported on first access (PEP 562)
_LAZY = {
    "run": ("api", "run"),
    "sweep": ("api", "sweep"),
    "reproduce": ("api", "reproduce"),
    "load": ("api", "load"),
    "register_activation": ("activations", "register_activation"),
    "register_family": ("families", "register"),
    "ConfigError": ("config", "ConfigError"),
}

__all__ = ["run", "sweep", "reproduce", "load", "register_activation", "register_family",
           "ConfigError"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twolayer' has no attribute '{name}'")


def __dir__():
    return sorted([*globals(), *_LAZY])
