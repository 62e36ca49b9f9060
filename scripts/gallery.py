#!/usr/bin/env python3
"""The reproduction gallery: every preset at one scale, its figures, its wall time, one page.

    python scripts/gallery.py                       # every preset at full scale (~40 min, 2 cores)
    python scripts/gallery.py --only fig2,fig4      # some presets
    python scripts/gallery.py --render-only         # rebuild docs/gallery.md from what is there
    python3 dev.py gallery [ARGS]                   # the same, inside the project's .venv

For each preset the script runs ``twolayer reproduce PRESET --scale SCALE --out
runs/gallery/PRESET-SCALE`` as a child process, exactly as a user would type it, with an
empty JAX compilation cache (so the time includes compiling), and measures the child's wall
time, CPU time and peak memory. The timings go to ``docs/gallery/timings.json`` (with the
machine, the date and the git commit), the figures to ``docs/gallery/figures/``, and
``docs/gallery.md`` is written from them and from the hand-written notes
``docs/gallery/notes/PRESET.md`` (what the paper reports, what we observe, where we differ).

A preset whose result is already complete in ``--runs`` and has a timing entry for this
scale is not run again (delete the entry or the folder to remeasure); a preset killed half
way resumes where it stopped, and its timing is then marked as resumed. Scales other than
``full`` write ``gallery-SCALE.md`` and ``timings-SCALE.json`` so that they never replace the
full-scale gallery.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_model  # noqa: E402

import twolayer  # noqa: E402
from twolayer import presets, store  # noqa: E402

NOTE_HEADINGS = ("**The paper**", "**We observe**", "**Where we differ**")


def machine() -> str:
    import jax

    gpu = "GPU" if any(d.platform != "cpu" for d in jax.devices()) else "no GPU"
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} ({gpu})"


def command(preset: str, scale: str, out: Path) -> list[str]:
    if out.resolve().is_relative_to(ROOT):  # as a user in the repository root would type it
        out = out.resolve().relative_to(ROOT)
    return ["twolayer", "reproduce", preset, "--scale", scale, "--out", out.as_posix()]


def run_preset(preset: str, scale: str, out: Path) -> dict:
    """Run one preset in a child process with a fresh compilation cache; its costs."""
    resumed = (out / "sweep.json").exists()
    cmd = command(preset, scale, out)
    with tempfile.TemporaryDirectory(prefix="twolayer-cache-") as cache:
        env = {**os.environ, "TWOLAYER_CACHE_DIR": cache, "TWOLAYER_PROGRESS": "0"}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "twolayer.cli", *cmd[1:]], env=env,
                                 cwd=ROOT)
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"gallery: '{' '.join(cmd)}' failed with exit code {code}")
    # the commit the run recorded in its own provenance (with "-dirty" for local changes)
    commit = (store.load(out).attrs.get("git_commit", "unknown") if (out / "boundary.json").exists()
              else store.info(out)["provenance"]["git_commit"])
    return {"command": " ".join(cmd), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "max_rss_mb": round(usage.ru_maxrss / 1024), "load_before": round(load, 2),
            "load_mean": round(sum(samples) / len(samples), 2) if samples else None,
            "resumed": resumed, "machine": machine(), "git_commit": commit,
            "date": datetime.date.today().isoformat(), "compile_cache": "empty"}


def _sample_load(samples: list, stop: threading.Event, every: float = 5.0) -> None:
    """The 1-minute load average every few seconds while a preset runs: a mean well above
    the core count means something else shared the machine and the wall time is inflated."""
    while not stop.wait(every):
        samples.append(os.getloadavg()[0])


def finished(out: Path) -> dict | None:
    """``store.info`` of a sweep folder whose result is complete, else None (a boundary
    search: its runs, once its result is written)."""
    if (out / "boundary.json").exists():
        if not store.result_path(out).exists():
            return None
        return {"runs_total": int(store.load(out)["runs"].sum())}
    try:
        info = store.info(out)
    except twolayer.ConfigError:
        return None
    done = info["result"] is not None and info["shards_done"] == info["shards_total"]
    return info if done else None


def facts(out: Path, info: dict) -> dict:
    """What the page states about a result, computed from it."""
    ds = store.load(out)
    steps = (int(ds.step.max()) if "step" in ds.dims
             else int(json.loads(ds.attrs["sweep"]).get("train", {}).get("max_steps", 0)))
    f = {"runs": info["runs_total"], "steps": steps,
         "family": ds.attrs.get("family", "?"),
         "description": " ".join(ds.attrs.get("description", "").split())}
    for flag in ("recovered", "converged", "diverged"):
        if flag in ds:
            f[flag] = int(ds[flag].sum())
    return f


def _fmt_time(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _load_text(t: dict) -> str:
    if t.get("load_mean") is not None:
        return f"load average {t['load_mean']} during the run ({t['load_before']} before)"
    return f"load average {t['load_before']} at the start"


def render(scale: str, timings: dict, docs: Path, runs: Path) -> Path:
    """Write the gallery page from the results in ``runs``, the timings and the notes: every
    preset with a timing at this scale, whichever run measured it."""
    names = [n for n in presets.names() if n in timings]
    missing_presets = [n for n in presets.names() if n not in timings]
    suffix = "" if scale == "full" else f"-{scale}"
    fig_dir = docs / "gallery" / f"figures{suffix}"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for name in names:
        out = runs / f"{name}-{scale}"
        t, info = timings.get(name), finished(out)
        if t is None or info is None:
            raise SystemExit(f"gallery: no complete result and timing for {name} at scale "
                             f"{scale}; run it first (without --render-only)")
        note_path = docs / "gallery" / "notes" / f"{name}.md"
        if not note_path.exists():
            raise SystemExit(f"gallery: no notes for preset {name}: write {note_path}")
        note = note_path.read_text().strip()
        missing = [h for h in NOTE_HEADINGS if h not in note]
        if missing:
            raise SystemExit(f"gallery: {note_path} lacks {', '.join(missing)}")
        f = facts(out, info)
        figures = []
        for png in sorted((out / "figures").glob("*.png")):
            target = fig_dir / f"{name}--{png.name}"
            shutil.copyfile(png, target)
            figures.append(target.relative_to(docs).as_posix())
        family = f["family"]
        flags = "".join(f", {f[k]} {k}" for k in ("recovered", "converged", "diverged") if k in f)
        time_text = _fmt_time(t["wall_s"]) + (" (resumed)" if t.get("resumed") else "")
        rows.append(f"| [{name}](#{name}) | `{family}` | {f['runs']:,} | {f['steps']:,} | "
                    f"{time_text} | {_fmt_time(t['cpu_s'])} | {t['max_rss_mb']:,} MB |")
        desc = f["description"].replace("*", r"\*")  # |mu|*, SNR*: not emphasis
        sections.append("\n".join([
            f"## {name}", "",
            *[f"![{name}]({p})" for p in figures], "",
            f"*{desc}*", "",
            note, "",
            "**Made by**", "",
            "```bash", t["command"], "```", "",
            f"{f['runs']:,} runs, up to {f['steps']:,} steps{flags}. Wall time {time_text}, "
            f"CPU time {_fmt_time(t['cpu_s'])}, peak memory {t['max_rss_mb']:,} MB, empty "
            f"compilation cache; {t['machine']}; {_load_text(t)}; "
            f"{t['date']}, commit {t['git_commit']}.", ""]))
    page = docs / f"gallery{suffix}.md"
    machines = sorted({timings[n]["machine"] for n in names})
    page.write_text("\n".join([
        "<!-- Written by scripts/gallery.py from docs/gallery/notes/*.md and "
        f"docs/gallery/timings{suffix}.json; edit those, not this file. -->",
        f"# Reproduction gallery ({scale} scale)", "",
        "Every preset twolayer ships, run at "
        f"{scale} scale by `python scripts/gallery.py` (the figures below are its output, "
        "untouched), next to what the paper reports, what we observe and where we differ. "
        "Reproduction means the qualitative pattern and the thresholds, not the papers' "
        "random draws. Each wall time is one `twolayer reproduce` command from start-up to "
        "the last figure, compiling included, on " + "; ".join(machines) + ".", "",
        "| preset | family | runs | steps (max) | wall time | CPU time | peak memory |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "To redraw one figure from its result without training: `twolayer plot "
        "runs/gallery/PRESET-full`. To remeasure everything: `python3 dev.py gallery`.", "",
        *([f"Not run at this scale yet: {', '.join(missing_presets)}.", ""]
          if missing_presets else []),
        *sections]))
    return page


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="full", help="full (default), quick or tiny")
    p.add_argument("--only", help="comma-separated presets (default: all)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "gallery"),
                   help="folder for the sweeps (default runs/gallery)")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="docs folder (default docs)")
    p.add_argument("--render-only", action="store_true",
                   help="train nothing; write the page from the results and timings there")
    args = p.parse_args(argv)
    names = presets.names()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            p.error(f"unknown presets {unknown}; presets: {', '.join(names)}")
        names = [n for n in names if n in wanted]
    docs, runs = Path(args.docs), Path(args.runs)
    suffix = "" if args.scale == "full" else f"-{args.scale}"
    timings_path = docs / "gallery" / f"timings{suffix}.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not args.render_only:
        for i, name in enumerate(names):
            out = runs / f"{name}-{args.scale}"
            if name in timings and finished(out):
                print(f"[{i + 1}/{len(names)}] {name}: done before ({_fmt_time(timings[name]['wall_s'])})",
                      flush=True)
                continue
            print(f"[{i + 1}/{len(names)}] {name} at {args.scale} scale ...", flush=True)
            timings[name] = run_preset(name, args.scale, out)
            timings_path.parent.mkdir(parents=True, exist_ok=True)
            timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
            print(f"[{i + 1}/{len(names)}] {name}: {_fmt_time(timings[name]['wall_s'])}", flush=True)
    page = render(args.scale, timings, docs, runs)
    print(f"gallery: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
