"""The registry of experiment families.

A family is a folder ``families/<name>/`` (model, theory, analysis, figures) whose package
builds one ``twolayer.family.Family`` called ``FAMILY``, made known by one line in
``pyproject.toml``::

    [project.entry-points."twolayer.families"]
    single_neuron = "twolayer.families.single_neuron:FAMILY"

(a family in another package registers the same way, in its own pyproject). Families are
loaded when first asked for, so naming one does not import the others (nor JAX). From
Python, ``register`` adds one for this process (``twolayer.register_family``).
"""
from __future__ import annotations

import functools
from importlib import import_module
from importlib.metadata import entry_points

from ..config import ConfigError
from ..family import Family

GROUP = "twolayer.families"
DEFAULT = "single_neuron"  # the family of a spec or Dataset that names none

# families added from Python by ``register`` (this process only)
_REGISTERED: dict[str, Family] = {}
_VERSION = [0]  # bumped by every register: compiled programs keyed on it are dropped


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, object]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if not found:  # a source tree that is not installed: the folders of this package
        from pathlib import Path

        here = Path(__file__).parent
        found = {p.name: f"{__name__}.{p.name}:FAMILY" for p in sorted(here.iterdir())
                 if (p / "__init__.py").exists()}
    return found


@functools.lru_cache(maxsize=None)
def _load_builtin(name: str) -> Family:
    ep = _entry_points()[name]
    if isinstance(ep, str):
        module, attr = ep.split(":")
        family = getattr(import_module(module), attr)
    else:
        family = ep.load()
    if not isinstance(family, Family):
        raise ConfigError(f"entry point '{name}' of {GROUP} is not a twolayer Family")
    if family.name != name:
        raise ConfigError(f"entry point '{name}' of {GROUP} holds family '{family.name}'")
    return family.check()


def register(family: Family) -> Family:
    """Make ``family`` available by its name everywhere an installed family is (``sweep``,
    ``run``, ``load``, the figures), in this process, after ``Family.check``.

    A user family is often an installed one with some fields replaced, e.g. an ``observe``
    that records one more quantity (see ``examples/add_observable.py``):
    ``get("single_neuron").replace(name="mine", Config=Config, observe=observe,
    variables=...)``. An installed name is refused; registering a name again replaces the
    earlier family, and programs compiled for the old one are not used again. Executors'
    worker processes (``processes:N``, Dask) do not see a family registered here: use the
    default in-process executor, or register it in the workers too (at import of a module
    they load), or install it with an entry point."""
    if not isinstance(family, Family):
        raise TypeError(f"register needs a twolayer.family.Family, got "
                        f"{type(family).__name__}")
    family.check()
    if family.name in _entry_points():
        raise ConfigError(f"family '{family.name}' is installed and cannot be replaced; "
                          f"register yours under another name")
    old = _REGISTERED.get(family.name)
    _REGISTERED[family.name] = family
    if old is not None and old is not family:
        _VERSION[0] += 1
    return family


def version() -> int:
    """Bumped whenever a registered family is replaced (part of compiled programs' keys)."""
    return _VERSION[0]


def registered() -> list[str]:
    """Names of the families added by ``register`` in this process."""
    return sorted(_REGISTERED)


def local_only(name) -> bool:
    """Registered in this process by ``register``: executors' worker processes do not
    know it."""
    return isinstance(name, str) and name in _REGISTERED


def names() -> list[str]:
    """Every family name: installed and registered."""
    return sorted({*_entry_points(), *_REGISTERED})


def get(name: str | None = None) -> Family:
    """The family called ``name`` (default ``DEFAULT``): an installed one, else one added
    by ``register``; ``ConfigError`` listing every name for an unknown one."""
    name = DEFAULT if name is None else name
    if isinstance(name, str) and name in _entry_points():
        return _load_builtin(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    raise ConfigError(f"unknown family '{name}'; allowed: {', '.join(names())}")


__all__ = ["Family", "GROUP", "DEFAULT", "register", "registered", "names", "get",
           "local_only", "version"]
