"""Command line: thin commands over the Python API.

    twolayer run [--FIELD VALUE ...] [--out DIR]     one run, summary printed
    twolayer sweep SPEC --out DIR [--scale S]        a sweep and its figures (resumes in DIR)
    twolayer boundary SPEC --out DIR                 locate a [boundary] by bisection rounds
    twolayer reproduce PRESET [--out DIR]            a preset's sweep and its figures
    twolayer submit SPEC --out DIR                   a sweep's shards as a SLURM job array
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
import logging
import shutil
import sys
import textwrap
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


def _progress(args):
    return False if args.verbosity < 0 else None  # -q: no bar


def _cmd_sweep(args, extra):
    from . import api

    ds = api.sweep(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
                   executor=args.executor, state_every=args.state_every, replace=args.replace,
                   max_memory=args.max_memory, progress=_progress(args),
                   job_options=_job_options(args))
    if not args.no_figures:  # the spec's [[figure]]s, as reproduce and plot draw them
        from . import plots

        for p in plots.draw_all(ds, Path(args.out) / "figures"):
            print(f"figure: {p}")


def _cmd_boundary(args, extra):
    from . import api

    ds = api.boundary(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
                      executor=args.executor, state_every=args.state_every)
    from .boundaries import table

    print(table(ds))


def _cmd_reproduce(args, extra):
    from . import api

    out = args.out or f"runs/{args.preset}-{args.scale}"
    _, paths = api.reproduce(args.preset, out, scale=args.scale, shard_size=args.shard_size,
                             executor=args.executor, state_every=args.state_every,
                             replace=args.replace, max_memory=args.max_memory,
                             progress=_progress(args), job_options=_job_options(args))
    for p in paths:
        print(f"figure: {p}")


def _job_options(args) -> dict:
    """``--job KEY=VALUE`` options (submitit's parameters), values parsed as JSON."""
    out = {}
    for item in getattr(args, "job", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--job takes KEY=VALUE (a submitit parameter, e.g. "
                              f"slurm_partition=normal), got '{item}'")
        out[key.strip()] = _parse_value(value)
    return out


def _cmd_submit(args, extra):
    from . import jobs as jobs_

    options = _job_options(args)
    if args.print_script:
        print(jobs_.slurm_script(args.spec, args.out, scale=args.scale,
                                shard_size=args.shard_size, **options))
        return
    jobs = jobs_.submit(args.spec, args.out, scale=args.scale, shard_size=args.shard_size,
                        cluster=args.cluster, state_every=args.state_every,
                        replace=args.replace, max_memory=args.max_memory, **options)
    if not jobs:
        print(f"every shard of {args.out} is done; nothing submitted (merged)")
        return
    else:
        print(f"submitted {len(jobs)} shard(s) as jobs {jobs[0].job_id.split('_')[0]}"
              f"{'_[0-%d]' % (len(jobs) - 1) if '_' in jobs[0].job_id else ''}; logs in "
              f"{Path(args.out) / 'jobs'}")
    print(f"when they are done (`twolayer info {args.out}`), merge and draw with: "
          f"twolayer sweep {args.spec} --out {args.out} --scale {args.scale} "
          f"--shard-size {args.shard_size}")


def _cmd_plot(args, extra):
    from . import plots, store

    ds = store.load(args.dir)
    fmt = [f.strip() for f in args.format.split(",")] if args.format else None
    for p in plots.draw_all(ds, Path(args.dir) / "figures", format=fmt):
        print(f"figure: {p}")


def _cmd_info(args, extra):
    from . import store

    info = store.info(args.dir)
    if info["kind"] == "run":
        print(f"run (family {info['family']}, twolayer run --out)")
    elif info["kind"] == "boundary":
        print(f"boundary search {info['name']} (scale {info['scale']}): "
              f"{len(info['rounds'])} rounds")
        for r in info["rounds"]:
            print(f"  round {r['round']}: {r['runs_done']}/{r['runs_total']} runs done")
    if info["kind"] != "sweep":
        if info["running"]:
            print(f"running: {info['running']}")
        _print_result(info, "rerun the same command to finish it")
        return
    print(f"sweep {info['name']} (family {info['family']}, scale {info['scale']})")
    print(f"shards: {info['shards_done']}/{info['shards_total']} done, "
          f"runs: {info['runs_done']}/{info['runs_total']}")
    if info["running"]:
        print(f"running: {info['running']}")
    for s in info["missing"]:
        saved = s["resumes_at_step"]
        more = "" if saved is None else f" (training state saved at step {saved})"
        print(f"  missing shard {s['key']}: {s['runs']} runs, {s['desc']}{more}")
    _print_result(info, "rerun the sweep to finish it")


def _print_result(info: dict, finish: str) -> None:
    if info["result"]:
        print(f"result: {info['result']}")
        print("dims: " + ", ".join(f"{k}={v}" for k, v in info["dims"].items()))
        print("variables: " + ", ".join(info["variables"]))
        for k, v in info["provenance"].items():
            print(f"  {k}: {v}")
    elif info["running"]:
        print("result: not merged yet (it is running; it merges when its runs are done)")
    else:
        print(f"result: not merged yet ({finish})")


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _two_columns(rows, width=None) -> str:
    """Rows of (name, text) as two columns: the text wrapped at word boundaries beside the
    names (a name longer than the column gets its own line)."""
    width = width or _width()
    col = min(max((len(n) for n, _ in rows), default=0) + 2, 28)
    lines = []
    for name, text in rows:
        body = textwrap.wrap(text, width - col) or [""]
        if len(name) + 2 > col:
            lines.append(name)
            lines += [" " * col + b for b in body]
        else:
            lines.append(f"{name:{col}s}{body[0]}")
            lines += [" " * col + b for b in body[1:]]
    return "\n".join(lines)


def _cmd_presets(args, extra):
    import tomllib

    from . import presets

    rows = []
    for name in presets.names():
        raw = tomllib.loads(presets.path(name).read_text())
        text = " ".join(raw.get("description", "").split())
        first = text.split(". ")[0].rstrip(".") + "." if text else ""
        rows.append((name, first))
    print(_two_columns(rows))


def _run_epilog(family: str) -> str:
    """The settings of ``twolayer run`` (the family's config fields), with their defaults
    and choices, wrapped to the terminal."""
    from .families import get as get_family

    rows = []
    for name, f in field_specs(get_family(family).Config).items():
        if name != "family":
            choices = f.metadata.get("choices")
            also = f"; one of {', '.join(map(str, choices))}" if choices else ""
            rows.append((f"  --{name}", f"{f.metadata['doc']} (default {f.default!r}{also})"))
    head = f"settings of family '{family}' (--FIELD VALUE; lists and booleans as JSON):"
    return head + "\n" + _two_columns(rows)


SCALE_HELP = ("full (the spec as written: a preset's study settings) or one of the spec's "
              "[scales.NAME] tables; the presets have quick (minutes) and tiny (seconds) "
              "(default %(default)s)")


def _common() -> argparse.ArgumentParser:
    """-q / -v, accepted before or after the command."""
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                   default=argparse.SUPPRESS,
                   help="warnings and errors only: no progress display, no log lines")
    g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                   default=argparse.SUPPRESS, help="debug log lines too")
    return c


def _shard_options(p, jobs: bool) -> None:
    """--shard-size, --executor and --state-every (the job executors only with ``jobs``)."""
    p.add_argument("--shard-size", dest="shard_size", type=int, default=512, metavar="N",
                   help="at most N runs per shard (default %(default)s); a shard is the unit "
                        "of work, resume and parallelism")
    where = ("dask-local:N, dask://HOST:PORT, slurm (a submitit job array, waited for) or "
             "submitit-local (the same on this machine)" if jobs
             else "dask-local:N or dask://HOST:PORT")
    p.add_argument("--executor", default="local", metavar="EXECUTOR",
                   help=f"where shards train: local (in this process), processes:N, {where} "
                        "(default %(default)s)")
    p.add_argument("--state-every", dest="state_every", type=float, default=60.0,
                   metavar="SECONDS", help="save a long shard's training state this often, "
                   "to resume mid-run after a kill (default %(default)g)")


def _sweep_options(p) -> None:
    _shard_options(p, jobs=True)
    p.add_argument("--replace", action="store_true",
                   help="allow settings that alter the runs already in --out (its result is "
                        "replaced; without it such a change is refused)")
    p.add_argument("--max-memory", dest="max_memory", metavar="SIZE", default=None,
                   help=MEMORY_HELP)
    p.add_argument("--job", action="append", metavar="KEY=VALUE",
                   help="with --executor slurm / submitit-local: a submitit job parameter "
                        "(repeatable), e.g. timeout_min=240, slurm_partition=normal, "
                        "cpus_per_task=16, mem_gb=32, slurm_setup='[\"source venv/bin/"
                        "activate\"]'")


MEMORY_HELP = ("refuse work estimated to need more memory than SIZE (e.g. 16G; 'none': no "
               "limit; default: $TWOLAYER_MAX_MEMORY, else the physical memory)")


def build_parser(run_family: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``run_family``, ``run --help`` lists that family's settings (built only
    when asked: it imports the family's module, and so JAX)."""
    from .family import DEFAULT, names

    common = _common()
    p = argparse.ArgumentParser(prog="twolayer", description=__doc__.split("\n\n")[0],
                                parents=[common],
                                epilog="'twolayer COMMAND --help' for each command's options")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    epilog = (_run_epilog(run_family) if run_family else
              "settings: see 'twolayer run [--family NAME] --help'")
    r = sub.add_parser("run", help="train one run; settings as --FIELD VALUE",
                       description="Train one run of a family in this process and print "
                                   "its summary (JSON).",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
                       parents=[common])
    r.add_argument("--family", default=DEFAULT, metavar="FAMILY",
                   help=f"one of {', '.join(names())} (default %(default)s); "
                        f"'run --family NAME --help' lists its settings")
    r.add_argument("--out", metavar="DIR", help="also write result.nc, run.json and run.png "
                                                "into DIR")
    r.add_argument("--max-memory", dest="max_memory", metavar="SIZE", default=None,
                   help=MEMORY_HELP)
    s = sub.add_parser("sweep", help="run a sweep file or preset, draw its figures",
                       description="Run a sweep (a TOML file or a preset name) into DIR and "
                                   "draw its [[figure]]s into DIR/figures. Rerun the same "
                                   "command to resume: finished shards are skipped.",
                       parents=[common])
    s.add_argument("spec", metavar="SPEC", help="a sweep file (TOML) or a preset name "
                                                "('twolayer presets')")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: new, empty, or holding this sweep (to resume)")
    s.add_argument("--scale", default="full", help=SCALE_HELP)
    s.add_argument("--no-figures", dest="no_figures", action="store_true",
                   help="do not draw the figures (draw them later with 'twolayer plot DIR')")
    bd = sub.add_parser("boundary", help="locate where a metric crosses a level (a spec "
                        "with a [boundary] table), by bisection in batched rounds",
                        description="Locate, for every point of the other axes, where a final "
                                    "metric crosses a level along one axis: a coarse scan, "
                                    "then bisection; each round one batched sweep in "
                                    "DIR/rounds/K. Rerun the same command to resume.",
                        parents=[common])
    bd.add_argument("spec", metavar="SPEC", help="a sweep file (TOML) with a [boundary] table, "
                                                 "or such a preset's name")
    bd.add_argument("--out", required=True, metavar="DIR",
                    help="output folder: new, empty, or holding this search (to resume)")
    bd.add_argument("--scale", default="full", help=SCALE_HELP)
    _shard_options(bd, jobs=False)
    q = sub.add_parser("reproduce", help="a preset's sweep and its figures",
                       description="Run a shipped preset's sweep and draw its figures.",
                       parents=[common])
    q.add_argument("preset", metavar="PRESET", help="a preset name ('twolayer presets')")
    q.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/PRESET-SCALE)")
    q.add_argument("--scale", default="full", help=SCALE_HELP)
    for p_ in (s, q):
        _sweep_options(p_)
    u = sub.add_parser("submit", help="a sweep's shards as independent SLURM jobs (submitit)",
                       description="Submit every unfinished shard of a sweep as one job of a "
                                   "SLURM job array (submitit) and return; each job trains "
                                   "its shard into DIR. When they are done, 'twolayer sweep' "
                                   "with the same arguments merges them (and draws the "
                                   "figures). Needs pip install 'twolayer[slurm]'.",
                       parents=[common])
    u.add_argument("spec", metavar="SPEC", help="a sweep file (TOML) or a preset name")
    u.add_argument("--out", required=True, metavar="DIR",
                   help="output folder, on a filesystem the compute nodes share")
    u.add_argument("--scale", default="full", help=SCALE_HELP)
    u.add_argument("--shard-size", dest="shard_size", type=int, default=512, metavar="N",
                   help="at most N runs per shard, i.e. per job (default %(default)s)")
    u.add_argument("--state-every", dest="state_every", type=float, default=60.0,
                   metavar="SECONDS", help="save a long shard's training state this often "
                   "(a requeued job resumes from it) (default %(default)g)")
    u.add_argument("--cluster", default="slurm", choices=("slurm", "local"),
                   help="slurm, or local to try it out: the jobs as processes on this "
                        "machine (default %(default)s)")
    u.add_argument("--job", action="append", metavar="KEY=VALUE",
                   help="a submitit job parameter (repeatable), e.g. timeout_min=240, "
                        "slurm_partition=normal, slurm_account=ACC, cpus_per_task=16, "
                        "mem_gb=32, slurm_array_parallelism=50, slurm_setup='[\"source "
                        "venv/bin/activate\"]'")
    u.add_argument("--replace", action="store_true",
                   help="allow settings that alter the runs already in --out")
    u.add_argument("--max-memory", dest="max_memory", metavar="SIZE", default=None,
                   help=MEMORY_HELP)
    u.add_argument("--print-script", dest="print_script", action="store_true",
                   help="print the sbatch script of the job array and exit (submits nothing)")
    pl = sub.add_parser("plot", help="draw a finished sweep's figures",
                        description="Draw the [[figure]]s of a finished sweep into "
                                    "DIR/figures.", parents=[common])
    pl.add_argument("dir", metavar="DIR", help="a sweep folder (holding result.nc)")
    pl.add_argument("--format", metavar="FMT", default=None,
                    help="png, pdf or svg, or several separated by commas (e.g. pdf,png): "
                         "replaces every figure's own format (default: each figure's "
                         "format, else png)")
    i = sub.add_parser("info", help="what is done, what is missing, dims, provenance",
                       description="What a sweep folder holds: shards done and missing, "
                                   "whether a sweep is running on it, the result's dims, "
                                   "variables and provenance. Reads only.", parents=[common])
    i.add_argument("dir", metavar="DIR", help="a sweep folder")
    sub.add_parser("presets", help="list the shipped presets",
                   description="The shipped presets (the studies' figures) and what each "
                               "shows.", parents=[common])
    return p


COMMANDS = {"run": _cmd_run, "sweep": _cmd_sweep, "boundary": _cmd_boundary,
            "reproduce": _cmd_reproduce,
            "submit": _cmd_submit, "plot": _cmd_plot, "info": _cmd_info,
            "presets": _cmd_presets}


def _logging(verbosity: int) -> None:
    """twolayer's log lines on stderr: warnings only (-q), info (default) or debug (-v)."""
    from .progress import StderrHandler

    log = logging.getLogger("twolayer")
    if not any(isinstance(h, StderrHandler) for h in log.handlers):
        log.addHandler(StderrHandler())
        log.propagate = False
    log.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])


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
    args.verbosity = getattr(args, "verbosity", 0)
    _logging(args.verbosity)
    try:
        if args.command in ("run", "sweep", "boundary", "reproduce", "submit", "plot"):
            from . import runtime

            runtime.configure()  # before anything imports jax
        if args.command in ("run", "sweep", "boundary", "reproduce", "submit"):
            from .executors import enable_compile_cache

            enable_compile_cache()
        COMMANDS[args.command](args, extra)
    except ConfigError as err:
        print(f"twolayer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twolayer: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `twolayer presets | head`
        sys.stderr.close()
        return 0
    except OSError as err:  # a path that cannot be read or written, a full disk
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"twolayer: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
