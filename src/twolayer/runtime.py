"""How twolayer sets up JAX in this process, once, when it first trains or computes.

``import twolayer`` changes nothing in the process and imports no JAX. ``configure()`` is
called by every entry point that computes with JAX (``twolayer.run``/``sweep``/
``reproduce``, the engine's ``train_group``, the executors' worker processes, the numerical
rank and sharpness of ``twolayer.theory``); calling it again does nothing. It changes two
process-wide things:

- ``XLA_FLAGS``: adds ``--xla_force_host_platform_device_count=N`` so that XLA's CPU backend
  splits batched runs over N host devices (about one busy core each). N is
  ``TWOLAYER_HOST_DEVICES`` if set, else the number of cores, at most 8; nothing is added
  when N is 1 or ``XLA_FLAGS`` already sets a device count. This is done only when JAX is
  not imported yet (the flag is read when JAX starts its backend): a user who imports
  ``jax`` before twolayer computes keeps control of ``XLA_FLAGS``, and is told nothing.
- ``jax_enable_x64`` is turned on (always): the runs' default dtype is float64, and JAX
  silently computes in float32 without it. Arrays are still created in the dtype a config
  asks for (``dtype = "float32"`` stays float32). A user's own code in the same process
  then also gets float64 where it asks for it, as with ``jax.config.update("jax_enable_x64",
  True)``.

To set JAX up yourself, import ``jax`` first (and set ``XLA_FLAGS`` as you like), or call
``twolayer.runtime.configure()`` before creating arrays that should be float64.
"""
from __future__ import annotations

import os
import sys

_configured = False


def host_devices() -> int:
    """The number of JAX host devices twolayer asks for: ``TWOLAYER_HOST_DEVICES``, else the
    cores (at most 8)."""
    n = os.environ.get("TWOLAYER_HOST_DEVICES") or str(min(os.cpu_count() or 1, 8))
    return int(n)


def configure() -> None:
    """Set up JAX for twolayer (see the module docstring): the host device count in
    ``XLA_FLAGS`` if JAX is not imported yet, then ``jax_enable_x64``. Idempotent."""
    global _configured
    if _configured:
        return
    if "jax" not in sys.modules:
        n = host_devices()
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags and n > 1:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    _configured = True
