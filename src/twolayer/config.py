"""Run configurations: frozen dataclasses whose fields say, once, whether they are static
(they fix array shapes or the compiled program: sizes, activation, dtype, optimizer kind)
or batched (a value per run inside one compiled call: scales, learning rate, seeds).

Every family's config derives from ``Training``, which holds the fields the shared
engine reads. Validation happens at the boundaries (TOML, CLI, Python API) through
``make_config``, with one-line messages that name the key and the allowed values.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field
from typing import Any, get_type_hints

STATIC, BATCHED = "static", "batched"


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or impossible. The message is one line."""


def static(default, *, section="base", choices=None, minimum=None, maximum=None,
           positive=False, bucket=None, doc="", applies=None):
    """A field that fixes the compiled program (a ``dataclasses.field``): runs with different
    values are trained in different batched calls.

    ``section`` is the sweep file's table the key belongs to (``"base"`` or ``"train"``);
    ``choices`` (a tuple), ``minimum``, ``maximum`` and ``positive`` (> 0) are checked by
    ``make_config``; ``doc`` is the
    one-line meaning shown in the options tables. ``bucket(cfg)``, if given, is the value the
    program is built for (e.g. an array size rounded up): runs with equal buckets share one
    program and each run receives its own value as a per-run array as well. ``applies =
    (field, values)``: the field means something only when ``field`` takes one of ``values``
    (e.g. ``("optimizer", ("flow",))``); ``make_config`` refuses it when given otherwise."""
    return field(default=default, metadata=dict(kind=STATIC, section=section, choices=choices,
                                                minimum=minimum, maximum=maximum,
                                                positive=positive,
                                                bucket=bucket, doc=doc, applies=applies))


def batched(default, *, section="base", minimum=None, maximum=None, positive=False, doc="",
            applies=None, default_from=None):
    """A field with a value per run inside one compiled call (a ``dataclasses.field``): runs
    that differ only in batched fields share one program. Its numbers reach the family as
    per-run arrays (``bp[name]``), never through the static config. ``minimum``,
    ``maximum`` and ``positive`` (> 0) are checked by ``make_config``; ``section``, ``doc``
    and ``applies`` as for ``static``. A value of None means unset: the run's array holds 0 in
    its place, or the value of the field ``default_from`` (e.g. ``data_seed``: the run's
    ``seed``), and the static config keeps None, so a family can test ``cfg.name is None``
    (runs with and without the field set compile separately)."""
    return field(default=default, metadata=dict(kind=BATCHED, section=section, choices=None,
                                                minimum=minimum, maximum=maximum,
                                                positive=positive, doc=doc, applies=applies,
                                                default_from=default_from))


MAX_CHECKPOINTS = 1000  # each checkpoint records every observable of every run
ADAM, FLOW = ("optimizer", ("adam",)), ("optimizer", ("flow",))
FLOW_SOLVERS = ("kvaerno5", "kvaerno4", "kvaerno3", "implicit_euler", "tsit5", "dopri5", "dopri8")


@dataclass(frozen=True, kw_only=True)
class Training:
    """Fields read by the shared engine (section ``[train]`` of a sweep file)."""

    optimizer: str = static("gd", section="train", choices=("gd", "adam", "flow"),
                            doc="full-batch gradient descent, Adam, or gradient flow (an "
                                "implicit adaptive ODE solver, to the limit)")
    learning_rate: float = batched(0.5, section="train", positive=True,
                                   doc="step size eta (flow: the unit of time, t = eta * step)")
    adam_b1: float = batched(0.9, section="train", minimum=0.0, doc="Adam beta1",
                             applies=ADAM)
    adam_b2: float = batched(0.999, section="train", minimum=0.0, doc="Adam beta2",
                             applies=ADAM)
    adam_eps: float = batched(1e-8, section="train", positive=True, doc="Adam epsilon",
                              applies=ADAM)
    max_steps: int = static(100_000, section="train", minimum=1,
                            doc="step budget (flow: solver steps, accepted or rejected)")
    max_time: float = static(1e10, section="train", positive=True, applies=FLOW,
                             doc="flow: time budget (in units of learning_rate * step)")
    rtol: float = batched(1e-8, section="train", positive=True, applies=FLOW,
                          doc="flow: relative error tolerance of each solver step")
    atol: float = batched(1e-12, section="train", positive=True, applies=FLOW,
                          doc="flow: absolute error tolerance, at most rtol times the size "
                              "of the parameters")
    solver: str = static("kvaerno5", section="train", choices=FLOW_SOLVERS, applies=FLOW,
                         doc="flow: the solver until the loss falls below tail_switch times "
                             "its start")
    tail_solver: str = static("kvaerno3", section="train", choices=FLOW_SOLVERS, applies=FLOW,
                              doc="flow: the solver from then on, to the limit")
    tail_switch: float = batched(1e-2, section="train", minimum=0.0, maximum=1.0,
                                 applies=FLOW, doc="flow: the loss fraction that starts "
                                 "tail_solver (0: never, 1: at once)")
    polish: bool = static(False, section="train",
                          doc="after training, Levenberg-Marquardt from the end point to the "
                              "nearest global minimum (families with residuals); recorded "
                              "as polished_*")
    polish_steps: int = static(1000, section="train", minimum=1,
                               doc="polish: at most this many Levenberg-Marquardt iterations")
    loss_tol: float = batched(1e-15, section="train", minimum=0.0,
                              doc="a run stops once its training loss is below this (0: never)")
    n_checkpoints: int = static(100, section="train", minimum=2, maximum=MAX_CHECKPOINTS,
                                doc="number of log-spaced checkpoints (start and end "
                                    "included; at most max_steps + 1)")
    dtype: str = static("float64", section="train", choices=("float64", "float32"),
                        doc="floating point precision of the whole run")
    seed: int = batched(0, section="train", minimum=0, doc="seed of the initialization stream")
    data_seed: int | None = batched(None, minimum=0, default_from="seed",
                                    doc="seed of the data streams (default: seed)")


# cached per class: a sweep of 10^5 runs validates 10^5 configs
@functools.cache
def field_specs(cls) -> dict[str, dataclasses.Field]:
    """The dataclass fields of a config class by name; ``field.metadata`` holds ``kind``,
    ``section``, ``doc`` and the checks."""
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def _type_hints(cls) -> dict:
    return get_type_hints(cls)


@functools.cache
def static_names(cls) -> tuple[str, ...]:
    """Names of the static fields of a config class, in declaration order."""
    return tuple(n for n, f in field_specs(cls).items() if f.metadata["kind"] == STATIC)


@functools.cache
def batched_names(cls) -> tuple[str, ...]:
    """Names of the batched fields of a config class, in declaration order."""
    return tuple(n for n, f in field_specs(cls).items() if f.metadata["kind"] == BATCHED)


@functools.cache
def bucketed_names(cls) -> tuple[str, ...]:
    """Static fields with a bucket: also passed per run (see ``static``)."""
    return tuple(n for n, f in field_specs(cls).items() if f.metadata.get("bucket"))


@functools.cache
def _buckets(cls) -> dict:
    """The bucket function of each static field (None: the field's own value)."""
    specs = field_specs(cls)
    return {n: specs[n].metadata.get("bucket") for n in static_names(cls)}


def _static_value(cfg, name):
    bucket = _buckets(type(cfg))[name]
    return bucket(cfg) if bucket else getattr(cfg, name)


def suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


INT_LIMIT = 2 ** 53
"""Integer settings lie in [-INT_LIMIT, INT_LIMIT]: exactly representable in float64 (a TOML or
command-line number such as 1e19 is a float) and far from int64 overflow in the engine."""


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (inside dicts, lists and tuples too) turned
    into Python ones: ``np.int64(2)`` is 2, ``np.array([1, 2])`` is [1, 2]."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # a scalar's tolist() is its Python value
    return value


def check_name(what: str, value: Any) -> str:
    """A name that becomes a file or folder name (a sweep's ``name``, a figure's ``file``):
    a non-empty string without a path (no '/', '\\', '..', leading '.', control
    characters). Returns it; raises ``ConfigError``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty name, got {value!r}")
    if ("/" in value or "\\" in value or value.startswith(".") or ":" in value
            or any(ord(ch) < 32 for ch in value)):
        raise ConfigError(f"{what} must be a plain file name (no '/', '\\', ':', leading "
                          f"'.' or '..'): files are written inside the output folder; "
                          f"got {value!r}")
    return value


_PLAIN = {int, float, str, bool, type(None), list, tuple}


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Check a TOML/CLI/Python value against the field's annotated type."""
    if type(value) not in _PLAIN:
        value = plain(value)
    origin = getattr(typ, "__origin__", None)
    args = getattr(typ, "__args__", ())
    if type(None) in args:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"'{name}' must be an integer, got {value!r}")
        if abs(value) > INT_LIMIT:
            raise ConfigError(f"'{name}' = {value!r} is too large; integers must lie within "
                              f"+-2**53 = {INT_LIMIT}")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{name}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{name}' must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' must be a list, got {value!r}")
        elem = args[0] if args else Any
        return tuple(_coerce(name, v, elem) for v in value)
    return value


def _checked(cls, key: str, value: Any) -> Any:
    """One setting's value coerced to its field's type and checked against its choices,
    bounds and finiteness (``make_config``); raises ``ConfigError``."""
    meta = field_specs(cls)[key].metadata
    value = _coerce(key, value, _type_hints(cls)[key])
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"'{key}' must be one of {', '.join(map(str, meta['choices']))}; "
                          f"got {value!r}{suggest(str(value), meta['choices'])}")
    if isinstance(value, tuple):  # a list setting: every number finite
        for v in value:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"'{key}' must hold finite numbers, got {list(value)!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be finite, got {value!r}")
        if meta.get("minimum") is not None and value < meta["minimum"]:
            raise ConfigError(f"'{key}' must be >= {meta['minimum']}, got {value!r}")
        if meta.get("maximum") is not None and value > meta["maximum"]:
            raise ConfigError(f"'{key}' must be <= {meta['maximum']}, got {value!r}")
        if meta.get("positive") and value <= 0:
            raise ConfigError(f"'{key}' must be > 0, got {value!r}")
    return value


# Checked values of the plain scalar settings, by (class, key, type, value; a float by its
# repr, so that -0.0 is not 0.0): a sweep's runs repeat their fixed settings in every run's
# config, and a grid of 10^5 runs would otherwise check them 10^5 times.
_MEMO_TYPES = (int, float, str, bool, type(None))
_CHECKED: dict = {}


@functools.cache
def _applies(cls) -> tuple[tuple[str, Any, tuple], ...]:
    """(key, default, (field, allowed values)) of every field that applies only to some runs."""
    return tuple((n, f.default, f.metadata["applies"]) for n, f in field_specs(cls).items()
                 if f.metadata.get("applies"))


def make_config(cls, values: dict, *, where: str = "") -> Any:
    """Build and validate a config of class ``cls`` from a plain dict (TOML table, CLI
    flags, kwargs): unknown keys, wrong types, values outside ``choices``, below ``minimum``
    or not finite raise ``ConfigError``; then the class's ``validate(cfg)`` (a staticmethod,
    optional) checks what involves several fields. ``where`` is appended to the message of
    an unknown key (e.g. " in [base]"). Returns the config instance."""
    specs = field_specs(cls)
    clean = {}
    for key, value in values.items():
        if key not in specs:
            raise ConfigError(f"unknown key '{key}'{where}{suggest(key, specs)}; "
                              f"allowed keys: {', '.join(sorted(specs))}")
        t = type(value)
        memo = (cls, key, t, repr(value) if t is float else value) if t in _MEMO_TYPES else None
        if memo is not None and memo in _CHECKED:
            clean[key] = _CHECKED[memo]
            continue
        clean[key] = _checked(cls, key, value)
        if memo is not None and len(_CHECKED) < 100_000:
            _CHECKED[memo] = clean[key]
    cfg = cls(**clean)
    # a setting that means nothing for this run is refused, not ignored (its default value
    # passes: a config's full dict round-trips)
    for key, default, applies in _applies(cls):
        value = clean.get(key, default)
        if getattr(cfg, applies[0]) not in applies[1] and value != default:
            allowed = " or ".join(f"'{v}'" for v in applies[1])
            raise ConfigError(f"'{key}' applies to {applies[0]} = {allowed} only; this run "
                              f"has {applies[0]} = {getattr(cfg, applies[0])!r}")
    validate = getattr(cls, "validate", None)
    if validate is not None:
        validate(cfg)
    return cfg


def refuse_float32_underflow(cfg, *names) -> None:
    """Raise ``ConfigError`` when ``cfg.dtype`` is float32 and one of the fields ``names`` is
    a scale whose square underflows float32 (it would silently become 0). For a family's
    ``validate``."""
    if cfg.dtype != "float32":
        return
    import numpy as np  # here, not at import: the command line's help reads this module

    tiny = np.finfo(np.float32).tiny
    for name in names:
        value = getattr(cfg, name)
        if value is not None and 0.0 < value * value < tiny:
            raise ConfigError(f"'{name}' = {value:g} underflows float32 when squared "
                              f"(below {tiny:.1e}); use dtype = 'float64'")


def static_key(cfg) -> tuple:
    """What decides the compiled program: runs with equal keys share one batched call."""
    return tuple((n, b(cfg) if b else getattr(cfg, n)) for n, b in _buckets(type(cfg)).items()) \
        + tuple((n + "_is_set", getattr(cfg, n) is not None) for n in batched_names(type(cfg)))


def static_part(cfg):
    """The config with every batched field blanked: what the compiled functions close over.
    A family that reads a batched field from it (instead of from the per-run arrays) fails
    loudly instead of silently using run 0's value."""
    blank = {n: (None if getattr(cfg, n) is None else _Batched(n)) for n in batched_names(type(cfg))}
    blank.update({n: _static_value(cfg, n) for n in bucketed_names(type(cfg))})
    return dataclasses.replace(cfg, **blank)


class _Batched:
    """Placeholder for a batched field inside a static config; any arithmetic fails."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<batched {self.name}>"

    def __eq__(self, other):
        return isinstance(other, _Batched) and other.name == self.name

    def __hash__(self):
        return hash(("_Batched", self.name))


def to_dict(cfg) -> dict:
    """Every field of a config as a plain dict (name to value)."""
    return {n: getattr(cfg, n) for n in _field_names(type(cfg))}


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
