"""MkDocs hooks: the reference tables of the docs, generated from the code at build time.

A page holds a marker (an HTML comment, invisible where the Markdown is read raw) and the
build replaces it:

    <!-- twolayer:cli -->                 every command's --help
    <!-- twolayer:options FAMILY -->      the family's config fields (section, kind, default)
    <!-- twolayer:variables FAMILY -->    every variable a run records, from a real tiny run
    <!-- twolayer:presets -->             the shipped presets, their family and their size

So the CLI reference, the options, the Dataset layout and the preset list cannot drift from
the code: the variables table is read off an actual run of each family (every optional
record switched on), and a variable without a description fails the build.
"""
from __future__ import annotations

import functools
import math
import os
import re

os.environ.setdefault("TWOLAYER_PROGRESS", "0")
os.environ.setdefault("TWOLAYER_HOST_DEVICES", "1")

MARKER = re.compile(r"<!-- twolayer:(\w+)(?: (\w+))? -->")

# The smallest run of each family that records every variable it can record.
TINY_RUNS = {
    "single_neuron": dict(width=2, n_train=3, n_test=20, max_steps=5, n_checkpoints=3,
                          imbalance=0.5, record_params=True, function_points=5, polish=True),
    "patch_cnn": dict(input_dim=8, n_train=4, n_test=10, width=2, max_steps=5,
                      n_checkpoints=3, record_filters=True, record_samples=True,
                      record_coefficients=True),
}


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _code(text) -> str:
    return f"`{text}`" if text != "" else ""


@functools.lru_cache(maxsize=None)
def cli_reference() -> str:
    from twolayer import cli

    parser = cli.build_parser("single_neuron")  # run --help: single_neuron's settings
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    parts = ["```text", parser.format_help().rstrip(), "```"]
    for name, p in sub.choices.items():
        p.prog = f"twolayer {name}"
        parts += [f"### twolayer {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    parts += ["`twolayer run --family patch_cnn` takes the fields of that family instead "
              "(`twolayer run --family patch_cnn --help` lists them); see "
              "[its options](patch_cnn.md#options).", ""]
    return "\n".join(parts)


@functools.lru_cache(maxsize=None)
def options(family: str) -> str:
    from twolayer.config import batched_names, bucketed_names, field_specs
    from twolayer.families import get

    Config = get(family).Config
    batched, bucketed = set(batched_names(Config)), set(bucketed_names(Config))
    rows = []
    for name, f in field_specs(Config).items():
        kind = "batched" if name in batched else "static, bucketed" if name in bucketed else "static"
        default = f.default if not isinstance(f.default, tuple) else list(f.default)
        rows.append((f"`{name}`", f"[{f.metadata['section']}]", kind, _code(repr(default)),
                     f.metadata.get("doc", "")))
    return _table(("field", "section", "kind", "default", "meaning"), rows)


@functools.lru_cache(maxsize=None)
def engine_variables() -> str:
    """The variables the engine adds to every family's runs: read off a gradient-descent run
    with polish and a gradient-flow run of single_neuron."""
    import twolayer
    from twolayer.train import ENGINE_DESCRIBE

    runs = {"gradient descent, Adam": twolayer.run(progress=False, **TINY_RUNS["single_neuron"]),
            "gradient flow": twolayer.run(progress=False, optimizer="flow", max_time=1.0,
                                          **{k: v for k, v in TINY_RUNS["single_neuron"].items()
                                             if k not in ("max_steps", "polish")})}
    seen = {}
    for kind, ds in runs.items():
        for name, da in ds.data_vars.items():
            if name in ENGINE_DESCRIBE:
                seen.setdefault(name, [da, []])[1].append(kind)
    rows = [(f"`{n}`", ", ".join(da.dims) or "(per run)", " and ".join(kinds),
             da.attrs["long_name"]) for n, (da, kinds) in seen.items()]
    rows.append(("`polished_*`", "(per run)", "polish = true",
                 "every observable and final result at the polished end point"))
    return _table(("variable", "dims beyond the sweep's axes", "runs", "meaning"), rows)


@functools.lru_cache(maxsize=None)
def variables(family: str) -> str:
    import twolayer

    if family == "engine":
        return engine_variables()
    ds = twolayer.run(family, progress=False, **TINY_RUNS[family])
    rows = []
    for name, da in ds.data_vars.items():
        label = da.attrs.get("long_name")
        if not label:
            raise ValueError(f"variable '{name}' of family '{family}' has no description "
                             f"(add it to the family's DESCRIBE)")
        rows.append((f"`{name}`", ", ".join(da.dims) or "(per run)", label))
    return _table(("variable", "dims beyond the sweep's axes", "meaning"), rows)


@functools.lru_cache(maxsize=None)
def preset_table() -> str:
    from twolayer import presets, sweeps

    rows = []
    for name in presets.names():
        spec = sweeps.load_spec(name, scale="full")
        runs = math.prod(len(axis.values) for axis in spec.axes)
        first = " ".join(spec.description.split()).split(". ")[0].rstrip(".")
        rows.append((f"[`{name}`](gallery.md#{name})", f"`{spec.family}`", f"{runs:,}",
                     first + "."))
    return _table(("preset", "family", "runs at full scale", "what it shows"), rows)


def on_page_markdown(markdown, page, config, files):
    def replace(m):
        kind, arg = m.group(1), m.group(2)
        if kind == "cli":
            return cli_reference()
        if kind == "options":
            return options(arg)
        if kind == "variables":
            return variables(arg)
        if kind == "presets":
            return preset_table()
        raise ValueError(f"{page.file.src_path}: unknown marker twolayer:{kind}")

    return MARKER.sub(replace, markdown)
