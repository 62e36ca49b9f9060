"""Command line: thin commands over the Python API.

    twolayer run [--FIELD VALUE ...] [--out DIR]     one run, summary printed
    twolayer sweep SPEC.toml --out DIR [--executor E] a sweep (resumes in DIR)
    twolayer reproduce PRESET --out DIR --scale S    a preset's sweep and its figures
    twolayer plot DIR                                redraw a sweep's figures
    twolayer info DIR                                done / missing shards, dims, provenance
    twolayer presets                                 the shipped presets

``--help``, ``--version``, ``presets`` and every command's ``--help`` import no JAX (they
answer at once); ``run --family NAME --help`` lists that family's settings (it imports the
family's module, and so JAX).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, field_specs, suggest


def _parse_value(text: str):
    """A CLI value: JSON when it parses (numbers, true/false, lists), else a string."""
    if text in ("True", "False"):  # Python spelling, as --help prints the defaults
        return text == "True"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cmd_run(args, extra):
    from . import api
    from .families import get as get_family

    fam = get_family(args.family)
    specs = field_specs(fam.Config)
    settings, i = {}, 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--"):
            raise ConfigError(f"unexpected argument '{flag}'; settings are given as --FIELD VALUE")
        name, _, value = flag[2:].partition("=")
        name = name.replace("-", "_")
        if name not in specs or name == "family":
            raise ConfigError(f"unknown setting '--{name}'{suggest(name, specs)}; allowed: "
                              + ", ".join(f"--{n}" for n in sorted(specs) if n != "family"))
        if not value:
            if i + 1 >= len(extra):
                raise ConfigError(f"'--{name}' needs a value")
            value, i = extra[i + 1], i + 1
        settings[name] = _parse_value(value)
        i += 1
    ds = api.run(args.family, progress=None, out=args.out, max_memory=args.max_memory,
                 **settings)
    summary = {k: ds[k].item() for k in ("stop_step", "converged", "diverged", "recovered")
               if k in ds and ds[k].ndim == 0}
    summary["train_loss"] = float(ds.train_loss[-1])
    summary["test_error"] = float(ds.test_error[-1])
    print(json.dumps(summary))
    if args.out:
        from . import plots, store

        folder = Path(args.out)  # api.run wrote result.nc and run.json there
        path = plots.save(plots.run_figure(ds), folder / "run.png")
        print(f"result: {store.result_path(folder)}\nfigure: {path}")


def _cmd_sweep(args, extra):
    from . import api

    api.sweep(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
              executor=args.executor, state_every=args.state_every, replace=args.replace,
              max_memory=args.max_memory)


def _cmd_reproduce(args, extra):
    from . import api

    out = args.out or f"runs/{args.preset}-{args.scale}"
    _, paths = api.reproduce(args.preset, out, scale=args.scale, shard_size=args.shard_size,
                             executor=args.executor, state_every=args.state_every,
                             replace=args.replace, max_memory=args.max_memory)
    for p in paths:
        print(f"figure: {p}")


def _cmd_plot(args, extra):
    from . import plots, store

    ds = store.load(args.dir)
    for p in plots.draw_all(ds, Path(args.dir) / "figures"):
        print(f"figure: {p}")


def _cmd_info(args, extra):
    from . import store

    info = store.info(args.dir)
    print(f"sweep {info['name']} (family {info['family']}, scale {info['scale']})")
    print(f"shards: {info['shards_done']}/{info['shards_total']} done, "
          f"runs: {info['runs_done']}/{info['runs_total']}")
    if info["running"]:
        print(f"running: {info['running']}")
    for s in info["missing"]:
        saved = s["resumes_at_step"]
        more = "" if saved is None else f" (training state saved at step {saved})"
        print(f"  missing shard {s['key']}: {s['runs']} runs, {s['desc']}{more}")
    if info["result"]:
        print(f"result: {info['result']}")
        print("dims: " + ", ".join(f"{k}={v}" for k, v in info["dims"].items()))
        print("variables: " + ", ".join(info["variables"]))
        for k, v in info["provenance"].items():
            print(f"  {k}: {v}")
    else:
        print("result: not merged yet (rerun the sweep to finish it)")


def _cmd_presets(args, extra):
    import tomllib

    from . import presets

    for name in presets.names():
        raw = tomllib.loads(presets.path(name).read_text())
        first = " ".join(raw.get("description", "").split())[:100]
        print(f"{name:14s} {first}")


def _run_epilog(family: str) -> str:
    """The settings of ``twolayer run`` (the family's config fields), with their defaults."""
    from .families import get as get_family

    lines = [f"settings of family '{family}' (--FIELD VALUE; lists and booleans as JSON):"]
    for name, f in field_specs(get_family(family).Config).items():
        if name != "family":
            lines.append(f"  --{name:20s} {f.metadata['doc']} (default {f.default!r})")
    return "\n".join(lines)


MEMORY_HELP = ("refuse work estimated to need more memory than SIZE (e.g. 16G; 'none': no "
               "limit; default: $TWOLAYER_MAX_MEMORY, else the physical memory)")


def build_parser(run_family: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``run_family``, ``run --help`` lists that family's settings (built only
    when asked: it imports the family's module, and so JAX)."""
    p = argparse.ArgumentParser(prog="twolayer", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    epilog = (_run_epilog(run_family) if run_family else
              "settings: see 'twolayer run [--family NAME] --help'")
    r = sub.add_parser("run", help="train one run; settings as --FIELD VALUE",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--family", default="single_neuron",
                   help="the family (default single_neuron); its settings are listed by "
                        "'run --family NAME --help'")
    r.add_argument("--out", help="folder for result.nc and run.png")
    r.add_argument("--max-memory", dest="max_memory", metavar="SIZE", default=None,
                   help=MEMORY_HELP)
    s = sub.add_parser("sweep", help="run a sweep spec (TOML or preset name)")
    s.add_argument("spec")
    s.add_argument("--out", required=True)
    s.add_argument("--scale", default="full")
    q = sub.add_parser("reproduce", help="a preset's sweep and figures")
    q.add_argument("preset")
    q.add_argument("--out")
    q.add_argument("--scale", default="quick", help="full, quick or tiny (default quick)")
    for p_ in (s, q):
        p_.add_argument("--shard-size", dest="shard_size", type=int, default=512)
        p_.add_argument("--executor", default="local",
                        help="where shards train: local (default), processes:N, "
                             "dask-local:N or dask://HOST:PORT")
        p_.add_argument("--replace", action="store_true",
                        help="allow settings that alter the runs already in --out (its "
                             "result is replaced; without it such a change is refused)")
        p_.add_argument("--max-memory", dest="max_memory", metavar="SIZE", default=None,
                        help=MEMORY_HELP)
        p_.add_argument("--state-every", dest="state_every", type=float, default=60.0,
                        metavar="SECONDS", help="save a long shard's training state this "
                        "often, to resume mid-run after a kill (default 60)")
    pl = sub.add_parser("plot", help="draw a finished sweep's figures")
    pl.add_argument("dir")
    i = sub.add_parser("info", help="what is done, what is missing, dims, provenance")
    i.add_argument("dir")
    sub.add_parser("presets", help="list the shipped presets")
    return p


COMMANDS = {"run": _cmd_run, "sweep": _cmd_sweep, "reproduce": _cmd_reproduce,
            "plot": _cmd_plot, "info": _cmd_info, "presets": _cmd_presets}


def _run_help_family(argv: list[str]) -> str | None:
    """The family whose settings ``run ... --help`` asks for, else None (no help asked)."""
    if not argv or argv[0] != "run" or not {"-h", "--help"} & set(argv[1:]):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--family", default="single_neuron")
    return pre.parse_known_args(argv[1:])[0].family


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        parser = build_parser(_run_help_family(argv))
    except ConfigError as err:  # run --family UNKNOWN --help
        print(f"twolayer: error: {err}", file=sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command in ("run", "sweep", "reproduce", "plot"):
            from . import runtime

            runtime.configure()  # before anything imports jax
        if args.command in ("run", "sweep", "reproduce"):
            from .executors import enable_compile_cache

            enable_compile_cache()
        COMMANDS[args.command](args, extra)
    except ConfigError as err:
        print(f"twolayer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twolayer: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    except OSError as err:  # a path that cannot be read or written, a full disk
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"twolayer: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
