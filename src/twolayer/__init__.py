"""twolayer: batched, compiled experiments on how two-layer neural networks generalize."""
from __future__ import annotations

import os as _os

# Split batched runs over the CPU cores: XLA's CPU backend keeps about one core busy per
# device. Must happen before jax is imported; set TWOLAYER_HOST_DEVICES=1 to opt out.
if "jax" not in __import__("sys").modules:
    _n = _os.environ.get("TWOLAYER_HOST_DEVICES") or str(min(_os.cpu_count() or 1, 8))
    _flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in _flags and int(_n) > 1:
        _os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count={_n}".strip()

import jax as _jax

_jax.config.update("jax_enable_x64", True)  # float64 where a config asks for it (the default)

__version__ = "0.1.0"

from .activations import register_activation  # noqa: E402
from .api import load, reproduce, run, sweep  # noqa: E402
from .config import ConfigError  # noqa: E402
from .families import register as register_family  # noqa: E402

__all__ = ["run", "sweep", "reproduce", "load", "register_activation", "register_family",
           "ConfigError"]
