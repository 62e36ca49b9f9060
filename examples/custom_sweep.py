"""A sweep written in Python: test error against the initial imbalance c~ and the number of
training samples n, with the study's sample-size thresholds drawn next to the data.

    python examples/custom_sweep.py                      # about 40 s on 2 cores
    python examples/custom_sweep.py --small              # a few seconds (what the tests run)
    python examples/custom_sweep.py --out runs/my-sweep  # elsewhere (default runs/custom-sweep)

What it shows:

- a sweep spec as a plain dict: the same tables as a TOML sweep file ([base], [train],
  [axes], [[figure]]), here a smaller cousin of the ``fig4`` preset (a width-2 tanh network
  learning tanh(x + 1) from Gaussian inputs and a tiny initialization);
- ``twolayer.sweep(spec, out=...)`` writes one file per shard and the merged ``result.nc``;
  run the script again and every finished shard is read back instead of trained (a sweep
  stopped half way continues where it stopped);
- the figures: ``twolayer.plots.draw_all`` draws every ``[[figure]]`` of the spec, and
  ``twolayer.plots.figure`` draws one spec given here (not stored in the sweep);
- theory: ``twolayer.families.single_neuron.theory.sample_sizes`` (optimistic, separation of the branches Q2 and
  Q1, all minima perfect), printed next to the fraction of runs that recovered the target.

Reading: below the optimistic sample size no run recovers; from the separation sizes on,
imbalances near 0 and 1 recover (the mean loss and the study's learning rate 0.5, as in
``fig4``); inside, runs converge slowly and 50,000 steps leave them above the threshold
(the ``fig4`` preset's quick scale takes 200,000). With ``--small`` the step budget is too
short for most runs to converge: the numbers show the machinery, not the study's result.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import twolayer
from twolayer import analysis, plots, store
from twolayer.families.single_neuron import theory


def make_spec(small: bool = False) -> dict:
    """The sweep, as parsed TOML would give it."""
    spec = {
        "name": "custom-sweep",
        "family": "single_neuron",
        "description": "Final test error against the imbalance c~, one panel per n_train.",
        "base": {"width": 2, "input_dim": 1, "bias": True, "activation": "tanh",
                 "sampling": "gaussian", "loss": "mean", "init_scale": 1e-20,
                 "recovery_threshold": 1e-8},
        "train": {"learning_rate": 0.5, "max_steps": 50_000, "loss_tol": 1e-15,
                  "n_checkpoints": 60},
        "axes": {"n_train": [2, 3, 4, 5, 6],
                 "data_seed": {"range": [0, 3]},
                 "imbalance": {"chebyshev": [0.0, 1.0, 11]}},
        # figures drawn by draw_all (and by `twolayer plot OUT`)
        "figure": [{"kind": "error_vs", "file": "error_vs_imbalance.png", "x": "imbalance",
                    "panel": "n_train", "hue": "data_seed", "clip": "recovery_threshold",
                    "overlays": ["sample_sizes"]}],
    }
    if small:
        spec["train"].update(max_steps=5_000, n_checkpoints=30)
        spec["axes"] = {"n_train": [2, 6], "data_seed": [0, 1],
                        "imbalance": [0.0, 0.5, 1.0]}
    return spec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/custom-sweep", help="the sweep's folder")
    p.add_argument("--small", action="store_true", help="a few seconds: fewer runs and steps")
    args = p.parse_args(argv)
    out = Path(args.out)

    spec = make_spec(args.small)
    if (out / "sweep.json").exists():  # a rerun: what is there already
        before = store.info(out)
        print(f"shards done before this run: {before['shards_done']}/{before['shards_total']}")
    ds = twolayer.sweep(spec, out=out)
    print(f"result: {store.result_path(out)}  dims: {dict(ds.sizes)}")

    # the spec's own figures, then one more drawn from a spec given here: the final test
    # error against n_train, each data seed a dot, mean and median over the seeds, the
    # theory's thresholds as vertical lines (the family's overlay "sample_sizes")
    paths = plots.draw_all(ds, out / "figures")
    extra = plots.figure(ds, {"kind": "error_vs", "x": "n_train", "points": "data_seed",
                              "hue": "imbalance", "clip": "recovery_threshold",
                              "overlays": ["sample_sizes"]})
    paths.append(plots.save(extra, out / "figures" / "error_vs_n_train.png"))
    for path in paths:
        print(f"figure: {path}")

    # theory: the thresholds for this model (d = 1 with bias: D = 2; width 2; one target
    # neuron), next to the fraction of (data seed, imbalance) pairs that recovered
    sizes = theory.sample_sizes(input_dim=1, bias=True, width=2, target_width=1)
    print("thresholds: " + ", ".join(f"{k} n = {v}" for k, v in sizes.items()))
    rate = analysis.recovery_rate(ds, ["data_seed", "imbalance"])
    for n, r in zip(ds.n_train.values, rate.values):
        tags = [k for k, v in sizes.items() if v == n]
        where = ("below optimistic" if n < sizes["optimistic"] else ", ".join(tags)) or "-"
        print(f"n_train = {int(n)}: recovered fraction {float(r):.3f}  ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
