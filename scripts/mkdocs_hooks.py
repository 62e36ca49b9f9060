"""MkDocs hooks: the reference tables of the docs, generated from the code at build time.

A page holds a marker (an HTML comment, invisible where the Markdown is read raw) and the
build replaces it (not inside a fenced code block, where it is shown as written):

    <!-- twolayer:cli -->                 every command's --help
    <!-- twolayer:options FAMILY -->      the family's config fields (section, kind, default)
    <!-- twolayer:variables FAMILY -->    every variable the family records (Family.variables)
    <!-- twolayer:variables engine -->    the variables the engine adds, read off real runs
    <!-- twolayer:families -->            every family: its page, its folder, what it is
    <!-- twolayer:family_variables -->    a "Variables of NAME" section per family
    <!-- twolayer:presets -->             the shipped presets, their family and their size

So the CLI reference, the options, the Dataset layout and the preset list cannot drift from
the code. Families are found through the registry (``twolayer.families.names()``, the entry
points of group ``twolayer.families``): a new family gets its tables without editing this
file. Its variables table is its declared ``Family.variables`` (``Family.check`` refuses a
variable without a long name, and the contract tests hold every run's outputs to the
declaration); the engine's variables are read off a real tiny run of the default family.
"""
from __future__ import annotations

import functools
import math
import os
import re

os.environ.setdefault("TWOLAYER_PROGRESS", "0")
os.environ.setdefault("TWOLAYER_HOST_DEVICES", "1")

MARKER = re.compile(r"<!-- twolayer:(\w+)(?: (\w+))? -->")
FENCE = re.compile(r"(^```.*?^```[ \t]*$)", re.M | re.S)

# when a variable of each kind is recorded (twolayer.family.KINDS)
WHEN = {"observe": "every checkpoint", "finalize": "at the end", "info": "at the start"}


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _code(text) -> str:
    return f"`{text}`" if text != "" else ""


def cli_reference(files=None) -> str:
    from twolayer import cli

    parser = cli.build_parser("single_neuron")  # run --help: single_neuron's settings
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    parts = ["```text", parser.format_help().rstrip(), "```"]
    for name, p in sub.choices.items():
        p.prog = f"twolayer {name}"
        parts += [f"### twolayer {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    others = _families()[1:]
    links = ", ".join(f"[{n}]({_page(n, files)})" if _page(n, files) else f"`{n}`"
                      for n in others)
    parts += [f"`twolayer run --family NAME` takes the fields of that family instead ({links}: "
              "each family page lists its options).", ""]
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


def _engine_runs() -> dict:
    """The default family's example run with polish (where the family can polish) and the
    same run under gradient flow: between them they record every engine variable."""
    import twolayer
    from twolayer.families import DEFAULT, get

    fam = get(DEFAULT)
    gd = dict(fam.example, polish=fam.residuals is not None)
    flow = {k: v for k, v in fam.example.items() if k not in ("max_steps", "optimizer")}
    return {"gradient descent, Adam": twolayer.run(DEFAULT, progress=False, **gd),
            "gradient flow": twolayer.run(DEFAULT, progress=False, optimizer="flow",
                                          max_time=1.0, **flow)}


@functools.lru_cache(maxsize=None)
def engine_variables() -> str:
    """The variables the engine adds to every family's runs: read off a gradient-descent run
    with polish and a gradient-flow run of the default family."""
    from twolayer.train import ENGINE_DESCRIBE

    seen = {}
    for kind, ds in _engine_runs().items():
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
    """The family's declared variables (``Family.variables``): their dims beyond the
    sweep's axes (the checkpoint dim ``step``, ``time`` under gradient flow, for those
    recorded at every checkpoint), when they are recorded, their long name (the plot label)
    and units."""
    from twolayer.families import get

    if family == "engine":
        return engine_variables()
    rows = []
    for v in get(family).variables:
        dims = ("step",) + v.dims if v.kind == "observe" else v.dims
        when = WHEN.get(v.kind, v.kind) + (" (optional)" if v.optional else "")
        meaning = v.long_name + (f" [{v.units}]" if v.units else "")
        rows.append((f"`{v.name}`", ", ".join(dims) or "(per run)", when, meaning))
    return _table(("variable", "dims beyond the sweep's axes", "recorded", "meaning [units]"),
                  rows)


def _families() -> list[str]:
    """The installed families, the default first (not those registered from Python)."""
    from twolayer.families import DEFAULT, names, registered

    rest = [n for n in names() if n != DEFAULT and n not in registered()]
    return [DEFAULT] + rest


def _page(name: str, files) -> str | None:
    """The family's page NAME.md, if the docs have one."""
    if files is None:
        return None
    return f"{name}.md" if files.get_file_from_path(f"{name}.md") is not None else None


def families_table(files=None) -> str:
    from twolayer.families import get

    rows = []
    for name in _families():
        fam = get(name)
        page = _page(name, files)
        first = " ".join(fam.doc.replace("``", "`").split()).split(". ")[0].rstrip(".")
        first = first.split(": ", 1)[-1] if first.startswith("Family ") else first
        rows.append((f"[`{name}`]({page})" if page else f"`{name}`",
                     f"`src/twolayer/families/{name}/`", first + "."))
    return _table(("family", "folder", "what it is"), rows)


def family_variables(files=None) -> str:
    parts = []
    for name in _families():
        page = _page(name, files)
        parts += [f"### Variables of `{name}`", "",
                  f"Declared by the family (`Family.variables`; `step` is `time` under "
                  f"gradient flow)"
                  + (f"; the [family page]({page}) defines each quantity." if page else "."),
                  "", variables(name), ""]
    return "\n".join(parts)


@functools.lru_cache(maxsize=None)
def preset_table() -> str:
    from twolayer import boundaries, presets, sweeps

    rows = []
    for name in presets.names():
        if boundaries.is_boundary_spec(name):  # a boundary search: points x seeds x probes
            bspec = boundaries.load(name, scale="full")
            spec, search = bspec.sweep, bspec.search
            points = math.prod(len(a.values) for a in spec.axes if a.dim != search.seeds)
            seeds = math.prod(len(a.values) for a in spec.axes if a.dim == search.seeds)
            lo, hi = search.bracket
            step = (hi / lo) ** (1 / (search.coarse - 1)) if search.log else (hi - lo) / (search.coarse - 1)
            most = search.coarse + min(search.max_rounds, search.rounds_needed(lo, lo * step)
                                       if search.log else search.rounds_needed(0.0, step))
            runs_text = f"at most {points * seeds * most:,} ({points} boundary points)"
        else:
            spec = sweeps.load_spec(name, scale="full")
            runs_text = f"{math.prod(len(axis.values) for axis in spec.axes):,}"
        first = " ".join(spec.description.split()).split(". ")[0].rstrip(".")
        rows.append((f"[`{name}`](gallery.md#{name})", f"`{spec.family}`", runs_text,
                     first + "."))
    return _table(("preset", "family", "runs at full scale", "what it shows"), rows)


def on_page_markdown(markdown, page, config, files):
    def replace(m):
        kind, arg = m.group(1), m.group(2)
        if kind == "cli":
            return cli_reference(files)
        if kind == "options":
            return options(arg)
        if kind == "variables":
            return variables(arg)
        if kind == "families":
            return families_table(files)
        if kind == "family_variables":
            return family_variables(files)
        if kind == "presets":
            return preset_table()
        raise ValueError(f"{page.file.src_path}: unknown marker twolayer:{kind}")

    # markers inside fenced code blocks are shown, not replaced (write-a-family.md quotes them)
    parts = FENCE.split(markdown)
    return "".join(part if i % 2 else MARKER.sub(replace, part) for i, part in enumerate(parts))
