"""twolayer: batched, compiled experiments on how two-layer neural networks generalize.

Importing the package is cheap and changes nothing in the process: JAX is imported, and set
up by ``twolayer.runtime.configure()`` (float64, host devices), only when something trains or
computes (see ``twolayer.runtime``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and the API docs; at run time, ``__getattr__`` below
    from .activations import register_activation
    from .api import boundary, load, reproduce, run, sweep
    from .config import ConfigError
    from .family import register as register_family

# name -> (module, attribute), imported on first access (PEP 562)
_LAZY = {
    "run": ("api", "run"),
    "sweep": ("api", "sweep"),
    "boundary": ("api", "boundary"),
    "reproduce": ("api", "reproduce"),
    "load": ("api", "load"),
    "register_activation": ("activations", "register_activation"),
    "register_family": ("family", "register"),
    "ConfigError": ("config", "ConfigError"),
}

__all__ = ["run", "sweep", "boundary", "reproduce", "load", "register_activation", "register_family",
           "ConfigError"]


# submodules, importable as attributes (``twolayer.store``) as when the package imported them
_SUBMODULES = {"activations", "analysis", "api", "boundaries", "cli", "config", "executors", "families",
               "family", "flow", "keys", "linalg", "plots", "presets", "runtime", "store",
               "sweeps", "theory", "train"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'twolayer' has no attribute '{name}'")


def __dir__():
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
