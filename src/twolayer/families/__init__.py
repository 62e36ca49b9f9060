"""Experiment families. A family is a bundle of pure functions (no class tree):

- ``Config``: its frozen config dataclass (derived from ``twolayer.config.Training``);
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
- ``residuals(cfg, params, data) -> vector`` (optional): r with the training loss a fixed
  multiple of 1/2 |r|^2 (least squares); lets ``polish`` run Levenberg-Marquardt.

``get`` looks a family up by name: the built-in ones, then those added from Python with
``register`` (``twolayer.register_family``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from ..config import ConfigError


class Family(NamedTuple):
    """A family's functions and tables; the module docstring describes each field."""

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
    residuals: Callable | None = None


def _builtins() -> dict[str, Family]:
    from . import patch_cnn, single_neuron
    return {f.name: f for f in (single_neuron.FAMILY, patch_cnn.FAMILY)}


# families added from Python by ``register`` (this process only)
_REGISTERED: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make ``family`` available by its name everywhere a built-in family is (``sweep``,
    ``run``, ``load``, the figures), in this process.

    A user family is usually a built-in one with some functions replaced, e.g. an ``observe``
    that records one more quantity (see ``examples/add_observable.py``):
    ``single_neuron.FAMILY._replace(name="mine", Config=Config, observe=observe)``.
    Its ``Config`` must accept the new name in its ``family`` field (derive the built-in's
    Config and redeclare ``family``). A built-in name is refused; registering a name again
    replaces the earlier family, and the engine's compiled programs (cached by family name)
    are then dropped so that no run uses the old functions. Executors' worker processes
    (``processes:N``, Dask) do not see a family registered here: use the default in-process
    executor, or register it in the workers too (at import of a module they load)."""
    if not isinstance(family, Family):
        raise TypeError(f"register needs a twolayer.families.Family, got "
                        f"{type(family).__name__}")
    name = family.name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a family's name must be a non-empty string, got {name!r}")
    if name in _builtins():
        raise ConfigError(f"family '{name}' is built in and cannot be replaced; register "
                          f"yours under another name")
    from ..config import field_specs

    field = field_specs(family.Config).get("family")
    if field is None or (field.metadata.get("choices") and name not in field.metadata["choices"]):
        raise ConfigError(f"family '{name}': its Config's 'family' field must accept '{name}' "
                          f"(redeclare it: family: str = static('{name}', choices=('{name}',)))")
    old = _REGISTERED.get(name)
    _REGISTERED[name] = family
    if old is not None and old is not family:  # programs compiled for the old one are stale
        from .. import train
        train._program_cached.cache_clear()
    return family


def registered() -> list[str]:
    """Names of the families added by ``register`` in this process."""
    return sorted(_REGISTERED)


def local_only(name) -> bool:
    """Registered in this process by ``register``: executors' worker processes do not
    know it."""
    return isinstance(name, str) and name in _REGISTERED


def names() -> list[str]:
    """Every family name: built in and registered."""
    return sorted({**_builtins(), **_REGISTERED})


def get(name: str) -> Family:
    """The family called ``name``: a built-in one, else one added by ``register``;
    ``ConfigError`` listing every name for an unknown one."""
    builtins = _builtins()
    if name in builtins:
        return builtins[name]
    if name in _REGISTERED:
        return _REGISTERED[name]
    raise ConfigError(f"unknown family '{name}'; allowed: {', '.join(names())}")
