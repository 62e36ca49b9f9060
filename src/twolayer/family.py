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
=================  ==============================================  ==========================

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
``where`` is the panel's dim values); ``labels`` gives axis labels for config fields;
``run_figure(ds)`` draws one run (default: the generic curves of train_loss and test_error).

``example`` holds the settings of a small run that trains in about a second (the contract
suite and the docs use it); ``sample_size`` names the config field of the number of
training samples (None if there is none), whose first samples must not depend on it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# kinds of variables: when the engine records them
KINDS = ("observe", "finalize", "info")


@dataclass(frozen=True)
class Variable:
    """One recorded variable: ``dims`` beyond ``run`` and the checkpoint dim, a
    ``long_name`` (the plot label), ``units`` ("" for none) and its ``kind``: "observe"
    (recorded at every checkpoint), "finalize" (once, at the end) or "info" (once, at the
    start: ``setup``'s facts of the initialization). ``optional``: not every config
    records it (e.g. the parameters of wide networks)."""

    name: str
    long_name: str
    dims: tuple[str, ...] = ()
    units: str = ""
    kind: str = "observe"
    optional: bool = False


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
        for fn in ("step_sizes", "residuals", "inputs", "run_figure"):
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


__all__ = ["Family", "Variable", "KINDS"]
