"""The Python API: ``run``, ``sweep``, ``reproduce``, ``load``."""
from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

from . import runtime, store
from . import sweeps as _sweep
from .config import ConfigError, make_config, plain, to_dict
from .family import get as get_family


def _setup() -> None:
    """JAX set up (``runtime.configure``) and its persistent compilation cache on, as the
    command line does: a restarted notebook kernel or a new script loads the programs
    compiled before instead of compiling them again (``TWOLAYER_CACHE_DIR``; ``0`` turns
    it off; see ``twolayer.executors.enable_compile_cache``)."""
    runtime.configure()
    from .executors import enable_compile_cache

    enable_compile_cache()


def run(family: str = "single_neuron", *, progress=None, out=None, max_memory=None,
        **settings) -> xr.Dataset:
    """Train one run of ``family`` in this process; ``settings`` are config fields (e.g.
    ``width=2, init_scale=1e-10``; any field of either section), checked as in a sweep file
    (``ConfigError`` on a bad one). ``progress``: True or False for the progress bar
    (default: shown on a terminal unless ``TWOLAYER_PROGRESS=0``). ``out``: a folder that
    receives ``result.nc`` and ``run.json`` (new, empty, or holding this same run; refused
    when it holds a sweep or another run; locked while the run trains). ``max_memory``: the
    limit of the estimated memory (see ``twolayer.sweeps.memory_limit``). Returns its
    Dataset: dims ``step`` and the family's own, the settings and provenance in its
    attributes."""
    _setup()
    from .train import check_group, run_bytes, train_group

    if not isinstance(family, str):
        raise ConfigError(f"'family' must be a string, got {type(family).__name__}")
    if out is not None and not isinstance(out, (str, Path)):
        raise ConfigError(f"'out' must be a folder path, got {type(out).__name__}")
    fam = get_family(family)
    settings = plain(settings)
    cfg = make_config(fam.Config, {"family": family, **settings})
    check_group(fam, cfg)
    _sweep.check_memory(sum(run_bytes(fam, cfg)), max_memory, "this run would")
    spec = _sweep.load_spec({"name": "run", "family": family,
                             **_split_sections(fam, settings)})
    config = json.loads(json.dumps(to_dict(cfg), default=str))
    if out is None:
        return _train_one(fam, cfg, spec, config, progress)

    def check(held):  # a sweep's folder, or another run's, is refused (store.check_folder)
        path = Path(out) / "run.json"
        if held == "run":
            try:
                old = json.loads(path.read_text()).get("config")
            except (OSError, ValueError, AttributeError):
                old = None
            if old != config:
                changed = ([f"{k} {old.get(k)} -> {v}" for k, v in config.items()
                            if old.get(k) != v] if isinstance(old, dict) else ["unreadable"])
                raise ConfigError(f"{out} holds the result of another run ("
                                  f"{'; '.join(changed[:4])}); choose a new --out folder")
        elif held != "new":
            raise ConfigError(f"{out} holds the results of a sweep; `run --out` writes only "
                              f"into a new folder or one of its own; choose a new --out folder")

    with store.open_folder(out, check, kind="run") as folder:
        ds = _train_one(fam, cfg, spec, config, progress)
        store.write_result(folder, ds)
        store._atomic(folder / "run.json", lambda tmp: tmp.write_text(json.dumps(
            {"family": family, "config": config}, indent=1)))
    return ds


def _train_one(fam, cfg, spec, config, progress) -> xr.Dataset:
    from .train import train_group

    ds = train_group(fam, [cfg], progress=progress, desc="run").isel(run=0)
    settings_attrs, _ = store.settings_attrs([config])
    ds.attrs = {**settings_attrs, **store.provenance(spec), "scale": ""}
    ds[store.RUN_CONFIG] = ((), json.dumps(config, sort_keys=True))
    return store.describe(ds)


def _split_sections(fam, settings: dict) -> dict:
    from .config import field_specs

    specs = field_specs(fam.Config)
    out = {"base": {}, "train": {}}
    for k, v in settings.items():
        out[specs[k].metadata["section"]][k] = v
    return out


def sweep(spec, out=None, *, scale: str = "full", shard_size: int = 512, progress=None,
          executor=None, state_every: float = 60.0, replace: bool = False,
          max_memory=None, job_options=None) -> xr.Dataset:
    """Run a sweep given as a TOML path, a preset name, or a dict (parsed TOML) at ``scale``
    (``"full"`` or one of the spec's ``[scales.NAME]`` tables) and return the merged Dataset
    (dims: the swept names plus ``step`` and the family's own). With ``out`` the shards and
    the merged result are written there, and a rerun resumes (a long shard from its
    training state, saved every ``state_every`` seconds); ``out`` must be new, empty, or
    hold the same sweep. ``shard_size``: at most this many runs per shard. ``executor``:
    None or ``"local"`` (in this process), ``"processes:N"``, ``"dask-local:N"``,
    ``"dask://HOST:PORT"``, ``"slurm"`` or ``"submitit-local"`` (jobs through submitit, with
    ``job_options``: submitit parameters), or a ``distributed.Client`` (see
    ``twolayer.executors``). ``progress``: True/False for the sweep's progress display
    (default: on a terminal or in a notebook; see ``twolayer.progress``).
    A folder holding this sweep with other axis values (grown or shrunk) or another shard
    size reuses every finished run and trains only the new ones; other fixed settings, name
    or family are refused unless ``replace``. ``max_memory``: the limit of the estimated
    memory (bytes, or "16G"; default ``TWOLAYER_MAX_MEMORY`` or the physical memory; see
    ``twolayer.sweeps.memory_limit``)."""
    _setup()
    return _sweep.run(spec, out, scale=scale, shard_size=shard_size, progress=progress,
                      executor=executor, state_every=state_every, replace=replace,
                      max_memory=max_memory, job_options=job_options)


def reproduce(preset: str, out, *, scale: str = "full", shard_size: int = 512,
              progress=None, executor=None, state_every: float = 60.0,
              replace: bool = False, max_memory=None,
              job_options=None) -> tuple[xr.Dataset, list[Path]]:
    """Run a preset's sweep into ``out`` (default scale ``"full"``, the study's settings, as
    for ``sweep``; ``"quick"`` and ``"tiny"`` are smaller; other arguments as for ``sweep``)
    and draw its figures into ``out/figures``. Returns the merged Dataset and the paths of
    the PNG files."""
    _setup()
    from . import presets
    from .config import ConfigError, suggest

    if not isinstance(preset, str) or preset not in presets.names():
        raise ConfigError(f"unknown preset '{preset}'{suggest(str(preset), presets.names())}; "
                          f"presets: {', '.join(presets.names())}")
    if not isinstance(out, (str, Path)):
        raise ConfigError(f"'out' must be a folder path, got {type(out).__name__}")
    ds = _sweep.run(preset, out, scale=scale, shard_size=shard_size, progress=progress,
                    executor=executor, state_every=state_every, replace=replace,
                    max_memory=max_memory, job_options=job_options)
    from . import plots

    return ds, plots.draw_all(ds, Path(out) / "figures")


def load(folder) -> xr.Dataset:
    """The merged Dataset of a sweep folder (or of a result file), as written by ``sweep``
    with ``out``; see ``twolayer.store.load``."""
    if not isinstance(folder, (str, Path)):
        raise ConfigError(f"'folder' must be a path, got {type(folder).__name__}")
    return store.load(folder)
