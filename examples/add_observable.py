"""Recording a new quantity without editing the package: a family derived from
``single_neuron`` whose ``observe`` adds one variable, registered under its own name.

    python examples/add_observable.py                 # about 10 s on 2 cores
    python examples/add_observable.py --small         # a few seconds (what the tests run)
    python examples/add_observable.py --out runs/cos  # elsewhere (default runs/add-observable)

The new variable, ``target_cosine`` (dims ``neuron``, at every checkpoint): the cosine of the
angle between a student neuron's input weights (w_k, b_k) and the target neuron's (w*, b*)
(0 for a neuron whose weights are all zero). It tells the branches of global minima apart
along the way: on branch Q2 one neuron turns to +-1 and the other's output weight dies; on
Q1 both neurons turn to +-1.

How it works:

- a family is a typed bundle of functions and tables (``twolayer.family.Family``);
  ``FAMILY.replace(...)`` swaps some of them: here ``observe`` (the original's output plus
  the new entry) and ``variables`` (the original's plus the new one: its dims beyond run
  and step, its long name for the plot label); the copy is checked like any family;
- its ``Config`` derives the built-in one and redeclares the ``family`` field, so configs,
  sweep files and the stored result carry the new name;
- ``twolayer.register_family(FAMILY)`` makes the name usable by ``twolayer.sweep``,
  ``twolayer.run``, ``twolayer.load`` and the figures in this process. Built-in names are
  refused; registering a name again replaces it (no program compiled for the old one is
  used again);
- workers of ``processes:N`` and Dask executors are other processes and do not know the
  name: run such a family with the default in-process executor.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp

import twolayer
from twolayer import analysis, plots
from twolayer.config import static
from twolayer.families import single_neuron
from twolayer.families.single_neuron import analysis as sn_analysis
from twolayer.families.single_neuron import model
from twolayer.family import Variable

NAME = "single_neuron_cosine"


@dataclass(frozen=True, kw_only=True)
class Config(single_neuron.Config):
    family: str = static(NAME, choices=(NAME,), doc="experiment family")


def target_cosine(cfg, params):
    """cos of the angle between each (w_k, b_k) and the (first) target neuron's (w*, b*)."""
    target = model.target_params(cfg, params["w"].dtype)
    wb = params["w"]
    twb = target["w"][0]
    if cfg.bias:
        wb = jnp.concatenate([wb, params["b"][:, None]], axis=1)
        twb = jnp.concatenate([twb, target["b"][:1]])
    norm = jnp.linalg.norm(wb, axis=1) * jnp.linalg.norm(twb)
    return jnp.where(norm > 0, wb @ twb / jnp.where(norm > 0, norm, 1.0), 0.0)


def observe(cfg, bp, params, data):
    out = model.observe(cfg, bp, params, data)
    out["target_cosine"] = target_cosine(cfg, params)
    return out


FAMILY = single_neuron.FAMILY.replace(
    name=NAME, Config=Config, observe=observe,
    variables=single_neuron.FAMILY.variables + (
        Variable("target_cosine", "cos angle((w_k, b_k), (w*, b*))", ("neuron",)),))
twolayer.register_family(FAMILY)  # at import: any code that imports this module can use it


def make_spec(small: bool = False) -> dict:
    spec = {
        "name": "add-observable",
        "family": NAME,
        "base": {"width": 2, "sampling": "gaussian", "loss": "mean", "init_scale": 1e-20,
                 "n_train": 6},
        "train": {"learning_rate": 0.5, "max_steps": 50_000, "n_checkpoints": 60},
        "axes": {"data_seed": {"range": [0, 4]},
                 "imbalance": {"chebyshev": [0.0, 1.0, 7]}},
        "figure": [{"kind": "curves", "file": "target_cosine.png",
                    "vars": ["test_error", "target_cosine"], "hue": "imbalance",
                    "logy": ["test_error"]}],
    }
    if small:
        spec["train"].update(max_steps=5_000, n_checkpoints=30)
        spec["axes"] = {"data_seed": [0, 1], "imbalance": [0.0, 0.5, 1.0]}
    return spec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/add-observable", help="the sweep's folder")
    p.add_argument("--small", action="store_true", help="a few seconds: fewer runs and steps")
    args = p.parse_args(argv)
    out = Path(args.out)

    twolayer.sweep(make_spec(args.small), out=out)
    ds = twolayer.load(out)  # read back from disk: the new variable was stored like the others
    print(f"family {ds.attrs['family']}: target_cosine dims {ds.target_cosine.dims}")
    for path in plots.draw_all(ds, out / "figures"):
        print(f"figure: {path}")

    # the final cosines next to the branch of global minima each run reached
    branch = sn_analysis.branch(ds)
    cos = analysis.final(ds.target_cosine)
    print(f"{'data_seed':>9} {'imbalance':>9} {'branch':>6} {'cos_1':>9} {'cos_2':>9}")
    for seed in ds.data_seed.values:
        for c in ds.imbalance.values:
            at = {"data_seed": seed, "imbalance": c}
            c1, c2 = cos.sel(at).values
            print(f"{int(seed):>9} {float(c):>9.3f} {str(branch.sel(at).values):>6} "
                  f"{c1:>9.6f} {c2:>9.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
