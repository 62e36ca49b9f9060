"""The family contract: what a family gives the engine, the store and the figures.

A family is a folder ``families/<name>/`` whose ``__init__`` builds one ``Family`` value, and
one registration line (an entry point of group ``twolayer.families``; see ``families``).
Every function takes its arguments in one order: the static config ``cfg`` (a frozen
dataclass, its batched fields blanked), the run's batched values ``bp`` (a dict of scalars,
one per batched field, e.g. ``bp["learning_rate"]``, ``bp["seed"]``), the parameters, the
data. The engine calls them inside ``jit`` and ``vmap`` over runs, one run at a time:

=================  ==============================================  ==========================
field              signature                                       returns
=================  ==============================================  ==========================
``setup``          ``(cfg, bp)``                                   ``(params, data, info)``
``loss``           ``(cfg, bp, params, data)``                     scalar training objective
``observe``        ``(cfg, bp, params, data)``                     dict, at every checkpoint
``finalize``       ``(cfg, bp, params, data)``                     dict, once at the end
``predict``        ``(cfg, params, x)``                            the network on inputs x
``step_sizes``     ``(cfg, bp, params)`` (optional)                a step size per parameter
``residuals``      ``(cfg, bp, params, data)`` (optional)          r, loss a multiple of |r|^2
``inputs``         ``(cfg, n, seed)`` (optional)                   n inputs for ``predict``
``setup_shared``   ``(cfg, bp)`` (optional)                        a tree shared by runs
``setup_run``      ``(cfg, bp, shared)`` (with ``setup_shared``)   ``(params, data, info)``
=================  ==============================================  ==========================

A family whose set-up is costly and depends on only some batched fields may split it:
``setup(cfg, bp)`` must equal ``setup_run(cfg, bp, setup_shared(cfg, bp))``, and
``setup_shared`` may read only the batched fields named in ``shared_fields``. The engine then
computes ``setup_shared`` once per distinct combination of those fields in a batch (e.g.
once per seed for a whole signal-strength axis) and ``setup_run`` per run.

Obligations (``Family.check`` tests the static ones at registration, the contract test
suite ``tests/test_contract.py`` the rest for every registered family):

- ``observe`` returns at least ``train_loss`` and ``test_error``; every key of ``observe``,
  ``finalize`` and ``info`` (``setup``'s third value) is declared in ``variables`` with its
  dims beyond ``run`` and the checkpoint dim; a dim with coordinates gets them from
  ``coords(cfg)``.
- ``Config`` derives ``twolayer.config.Training`` (the engine's fields, ``seed`` and
  ``data_seed`` among them) and declares ``family`` (the name).
- ``setup`` draws the first k training samples independently of ``n_train`` (``keys``) and
  calls no LAPACK routine (eigh, qr, triangular solves: they deadlock under ``shard_map``
  on several host devices; ``twolayer.linalg`` has plain-XLA ones).
- Everything honours ``cfg.dtype``.

The figures: ``figures`` maps a figure kind to ``fn(ds, spec) -> Figure`` (the kinds only
this family can draw; the generic ones are ``twolayer.plots``); ``overlays`` maps an overlay
name to ``fn(ax, ds, spec, options, where) -> list of legend handles``, drawn on a generic
figure that asks for it (``overlays = ["name", {name = "other", ...}]`` in a figure table;
``where`` is the panel's dim values); ``labels`` gives the axis labels of config fields in
matplotlib mathtext, each a string or a pair (axis label, short symbol for legends and
panel titles), e.g. ``{"init_scale": (r"init. scale $\alpha$", r"$\alpha$")}``;
``run_figure(ds)`` draws one run (default: the generic curves of train_loss and test_error).

``example`` holds the settings of a small run that trains in about a second (the contract
suite and the docs use it); ``sample_size`` names the config field of the number of
training samples (None if there is none), whose first samples must not depend on it;
``train_samples(cfg, bp, data)`` (optional) gives the training samples in order, as arrays
whose leading dim is that number (default: the data's arrays with that leading dim; a
family whose data is padded or masked says which samples are real).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from .config import ConfigError

# kinds of variables: when the engine records them
KINDS = ("observe", "finalize", "info")


@dataclass(frozen=True)
class Variable:
    """One recorded variable: ``dims`` beyond ``run`` and the checkpoint dim, a
    ``long_name`` (plain text: the Dataset's attribute), ``units`` ("" for none) and its
    ``kind``: "observe" (recorded at every checkpoint), "finalize" (once, at the end) or
    "info" (once, at the start: ``setup``'s facts of the initialization). ``optional``: not
    every config records it (e.g. the parameters of wide networks). ``label``: the axis
    label in matplotlib mathtext (e.g. ``"output weight $a_k$"``; default the
    long_name, with the units in brackets); ``scale``: the value axis it is drawn on by
    default, "log" (errors of a regression, losses, norms) or "linear" (a classification
    error, a fraction, a signed quantity); "" decides from the values."""

    name: str
    long_name: str
    dims: tuple[str, ...] = ()
    units: str = ""
    kind: str = "observe"
    optional: bool = False
    label: str = ""
    scale: str = ""


def _no_coords(cfg) -> dict:
    return {}


@dataclass(frozen=True)
class Family:
    """A family's functions and tables (the module docstring gives each signature)."""

    name: str
    Config: type
    setup: Callable
    loss: Callable
    observe: Callable
    finalize: Callable
    predict: Callable
    variables: tuple[Variable, ...]
    coords: Callable = _no_coords
    step_sizes: Callable | None = None
    residuals: Callable | None = None
    inputs: Callable | None = None
    figures: Mapping[str, Callable] = field(default_factory=dict)
    overlays: Mapping[str, Callable] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    run_figure: Callable | None = None
    example: Mapping[str, Any] = field(default_factory=dict)
    sample_size: str | None = "n_train"
    train_samples: Callable | None = None
    setup_shared: Callable | None = None
    setup_run: Callable | None = None
    shared_fields: tuple[str, ...] = ()
    doc: str = ""

    # ------------------------------------------------------------ tables
    @property
    def table(self) -> dict[str, Variable]:
        """Variables by name."""
        return {v.name: v for v in self.variables}

    def dims(self, name: str) -> tuple[str, ...]:
        v = self.table.get(name)
        return v.dims if v is not None else ()

    def long_name(self, name: str) -> str | None:
        v = self.table.get(name)
        return v.long_name if v is not None else None

    def replace(self, **changes) -> "Family":
        """A copy with some fields replaced (e.g. another ``name``, ``Config`` and
        ``observe`` for a variant of a built-in family), checked again."""
        return dataclasses.replace(self, **changes).check()

    # ------------------------------------------------------------ registration check
    def check(self) -> "Family":
        """The static obligations, each refused with a one-line ``ConfigError``."""
        from .config import ConfigError, Training, field_specs

        def fail(msg):
            raise ConfigError(f"family '{self.name}': {msg}")

        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"a family's name must be an identifier, got {self.name!r}")
        if not (isinstance(self.Config, type) and issubclass(self.Config, Training)):
            fail("Config must be a dataclass derived from twolayer.config.Training")
        specs = field_specs(self.Config)
        fam = specs.get("family")
        if fam is None or fam.default != self.name:
            fail(f"Config must declare family: str = static('{self.name}', "
                 f"choices=('{self.name}',))")
        for fn in ("setup", "loss", "observe", "finalize", "predict", "coords"):
            if not callable(getattr(self, fn)):
                fail(f"'{fn}' must be a function")
        if (self.setup_shared is None) != (self.setup_run is None):
            fail("give both setup_shared and setup_run, or neither")
        if self.setup_shared is not None and not self.shared_fields:
            fail("setup_shared needs shared_fields (the batched fields it reads)")
        from .config import batched_names, bucketed_names
        per_run = set(batched_names(self.Config)) | set(bucketed_names(self.Config))
        for name in self.shared_fields:
            if name not in per_run:
                fail(f"shared_fields: '{name}' is not a batched field of Config")
        for fn in ("step_sizes", "residuals", "inputs", "run_figure", "train_samples",
                   "setup_shared", "setup_run"):
            if getattr(self, fn) is not None and not callable(getattr(self, fn)):
                fail(f"'{fn}' must be a function or None")
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            fail("a variable is declared twice: " + ", ".join(sorted(
                {n for n in names if names.count(n) > 1})))
        for v in self.variables:
            if not isinstance(v, Variable):
                fail(f"variables must be twolayer.family.Variable, got {type(v).__name__}")
            if v.kind not in KINDS:
                fail(f"variable '{v.name}': kind must be one of {', '.join(KINDS)}")
            if not v.long_name:
                fail(f"variable '{v.name}' has no long_name")
            if v.scale not in ("", "linear", "log"):
                fail(f"variable '{v.name}': scale must be 'linear', 'log' or '' (from the "
                     f"values), got {v.scale!r}")
        for need in ("train_loss", "test_error"):
            if need not in self.table or self.table[need].kind != "observe":
                fail(f"observe must record '{need}' (declare it in variables, kind 'observe')")
        specs_names = set(specs)
        for key in self.example:
            if key not in specs_names:
                fail(f"example: '{key}' is not a field of its Config")
        if self.sample_size is not None and self.sample_size not in specs_names:
            fail(f"sample_size: '{self.sample_size}' is not a field of its Config")
        for kind, table in (("figures", self.figures), ("overlays", self.overlays)):
            for key, fn in table.items():
                if not callable(fn):
                    fail(f"{kind}['{key}'] must be a function")
        return self

    def check_outputs(self, outputs: Mapping[str, Any], kind: str) -> None:
        """Refuse outputs of ``observe`` / ``finalize`` / ``setup``'s info that are not
        declared as variables of that kind (called by the engine once per compiled group)."""
        from .config import ConfigError

        table = self.table
        for name in outputs:
            v = table.get(name)
            if v is None or v.kind != kind:
                raise ConfigError(f"family '{self.name}': {kind} gives '{name}', which is not "
                                  f"declared as a variable of kind '{kind}'")


# ---------------------------------------------------------------- the registry
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

        here = Path(__file__).parent / "families"
        found = {p.name: f"{__package__}.families.{p.name}:FAMILY"
                 for p in sorted(here.iterdir()) if (p / "__init__.py").exists()}
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


__all__ = ["Family", "Variable", "KINDS", "GROUP", "DEFAULT", "register", "registered", "names",
           "get", "local_only", "version"]
