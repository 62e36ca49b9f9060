"""Analysing a finished sweep with plain xarray: which sample sizes recover the target, at
which imbalances, against the theory's thresholds.

    python examples/analyse_sweep.py                       # the folder of custom_sweep.py
    python examples/analyse_sweep.py runs/fig4-quick       # any single_neuron sweep over
                                                           # n_train, data_seed and imbalance
    python examples/analyse_sweep.py /tmp/x --small        # runs a small sweep first

If FOLDER holds no result yet, the sweep of ``examples/custom_sweep.py`` is run into it first
(``--small``: its few-second version).

What it shows:

- ``twolayer.load(folder)``: the merged Dataset, dims = the sweep's axes + ``step`` (+
  ``neuron``, ``input``), with the sweep spec and provenance in its attributes;
- ``twolayer.analysis.final``: the value at each run's last checkpoint (right also when
  groups with different step budgets were merged);
- reductions over named dims (``.mean(["data_seed", "imbalance"])``), masks with ``.where``,
  and ``groupby`` over a coordinate derived from the theory's sample sizes;
- a table printed per n_train and a figure saved next to the data.

The table: for each n_train, the regime the theory puts it in (below the optimistic size no
run can recover; at it, only c~ = 0 and 1; from the separation sizes on, a range of c~; at
the parameter count every global minimum recovers), the fraction of runs recovered, the same
at the ends c~ in {0, 1} and strictly inside, and the median final test error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.figure import Figure

import twolayer
from twolayer import analysis, plots
from twolayer.families.single_neuron.plots import sample_sizes_of


def regime(n: int, sizes: dict) -> str:
    """Where a sample size sits among theory.sample_sizes."""
    if n < sizes["optimistic"]:
        return "below-optimistic"
    if n < sizes["separation_q2"]:
        return "optimistic"
    if n < sizes["all_perfect"]:
        return "separated"
    return "all-perfect"


def ensure_result(folder: Path, small: bool):
    """The folder's Dataset; runs the sweep of custom_sweep.py into it when it has none."""
    if not (folder / "result.nc").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from custom_sweep import make_spec

        print(f"no result in {folder}: running the sweep of custom_sweep.py first")
        twolayer.sweep(make_spec(small), out=folder)
    return twolayer.load(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="runs/custom-sweep")
    p.add_argument("--small", action="store_true",
                   help="when the folder has no result: run the small sweep")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    ds = ensure_result(folder, args.small)
    print(f"{ds.attrs['title']} ({ds.attrs['family']}, created {ds.attrs['created']}, "
          f"git {ds.attrs['git_commit'][:10]}): {dict(ds.sizes)}")

    # the theory's thresholds (single_neuron's theory.sample_sizes) for the sweep's own
    # settings (input_dim, bias, width, target), read from the Dataset: the figures' overlay
    # "sample_sizes" uses the same helper
    sizes = sample_sizes_of(ds)
    print("thresholds: " + ", ".join(f"{k} n = {v}" for k, v in sizes.items()))

    seeds = [d for d in ds.recovered.dims if d not in ("n_train", "imbalance")]
    recovered = ds.recovered.astype(float)  # per run: 1.0 or 0.0
    err = analysis.final(ds.test_error)  # per run: the last recorded test error
    c = ds.imbalance
    ends = (c == 0.0) | (c == 1.0)

    table = {
        "all": recovered.mean(["imbalance", *seeds]),
        "ends": recovered.where(ends).mean(["imbalance", *seeds]),  # NaN outside: skipped
        "inside": recovered.where(~ends).mean(["imbalance", *seeds]),
        "median_error": err.median(["imbalance", *seeds]),
    }
    # the same fraction by theory regime: a coordinate along n_train, then groupby
    labels = [regime(int(n), sizes) for n in ds.n_train.values]
    by_regime = recovered.assign_coords(regime=("n_train", labels)).groupby("regime").mean(...)

    print(f"{'n_train':>7} {'regime':>16} {'all':>9} {'ends':>9} {'inside':>9} "
          f"{'median_error':>13}")
    for i, n in enumerate(ds.n_train.values):
        row = {k: float(v.isel(n_train=i)) for k, v in table.items()}
        print(f"{int(n):>7} {labels[i]:>16} {row['all']:>9.6f} {row['ends']:>9.6f} "
              f"{row['inside']:>9.6f} {row['median_error']:>13.6e}")
    for name in by_regime.regime.values:
        print(f"regime {name}: recovered fraction {float(by_regime.sel(regime=name)):.6f}")

    # the theory's first claim, checked on the data: below the optimistic size no run recovers
    below = ds.n_train < sizes["optimistic"]
    if bool(below.any()):
        ok = float(recovered.where(below).max()) == 0.0
        print(f"no recovery below the optimistic size: {'holds' if ok else 'VIOLATED'}")

    # a figure: recovered fraction against n_train, ends and inside, with the thresholds, in
    # twolayer's paper style (sizes, fonts, colour-blind-safe colours) and its axis labels
    with plots.style_context():
        fig = Figure(figsize=(5.2, 2.8), layout="constrained")
        ax = fig.subplots()
        for key, style in (("all", "-o"), ("ends", "--s"), ("inside", ":^")):
            ax.plot(ds.n_train.values, table[key].values, style, label=f"recovered ({key})")
        for key, color in (("optimistic", "k"), ("separation_q2", "#D55E00"),
                           ("separation_q1", "#CC79A7"), ("all_perfect", "#009E73")):
            ax.axvline(sizes[key], color=color, lw=0.8, ls="--",
                       label=f"{key.replace('_', ' ')} $n = {sizes[key]}$")
        ax.set(xlabel=plots.label("n_train", ds), ylabel="fraction recovered",
               ylim=(-0.05, 1.05), xticks=ds.n_train.values)
        fig.legend(loc="outside right center")
    path = plots.save(fig, folder / "figures" / "recovered_vs_n_train.png")
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
