"""Run-steps per second: the batched engine against a naive one-run-at-a-time PyTorch loop.

The work is the fig4-like setting of the single-neuron study: width 2, tanh, bias, d = 1,
n_train = 6 gaussian points, target tanh(x + 1), sum loss, plain GD with lr 0.05 (stable),
init scale 1e-3, float64, loss_tol = 0 (every run does every step), runs differing in seed,
data seed and imbalance c~. The engine is ``twolayer.train.train_group`` (timed after a
warm-up call that compiles; the compile time is reported apart). The torch loop is the way
published code for such studies trains: nn.Parameter tensors, loss.backward(), an in-place
SGD update under no_grad, zeroed gradients, one Python iteration per step and per run.

A check first copies the engine's initial parameters and data of one run into torch, runs K
steps both ways and compares the final losses (to 1e-10): the two do the same work.

    .venv/bin/python benchmarks/bench_single_neuron.py            # full (a few minutes)
    .venv/bin/python benchmarks/bench_single_neuron.py --quick    # a smoke run
    .venv/bin/python benchmarks/bench_single_neuron.py --fig4-full  # + the fig4 reproduction
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from machine import cpu_model, torch_or_none  # benchmarks/machine.py (the script's folder)

from twolayer import runtime

runtime.configure()  # host devices and float64, before jax is imported
import jax  # noqa: E402
from twolayer.config import make_config, static_part
from twolayer.families import get
from twolayer.train import run_values, train_group

FAMILY = get("single_neuron")
LR = 0.05


def configs(runs, steps, n_checkpoints):
    return [make_config(FAMILY.Config, dict(
        width=2, activation="tanh", bias=True, input_dim=1, n_train=6, sampling="gaussian",
        loss="sum", optimizer="gd", learning_rate=LR, init_scale=1e-3, loss_tol=0.0,
        max_steps=steps, n_checkpoints=n_checkpoints, dtype="float64", seed=i,
        data_seed=i % 5, imbalance=(i % 101) / 100)) for i in range(runs)]


def engine_initial(ds, cfg, r=0):
    """Run ``r``'s initial parameters (the engine's record at step 0 in ``ds``, the result of
    ``train_group``) and training data (``family.setup``, as the engine builds it)."""
    params = {k: ds[k].isel(run=r, step=0).values for k in ("a", "w", "b")}
    _, data, _ = FAMILY.setup(static_part(cfg), run_values(cfg))
    return params, np.asarray(data["x"]), np.asarray(data["y"])


# ---------------------------------------------------------------- the naive torch loop
def torch_train(torch, params, x, y, steps, lr=LR):
    """One run: autograd and a Python loop per step (float64)."""
    dt = torch.float64
    a = torch.nn.Parameter(torch.tensor(params["a"], dtype=dt))
    w = torch.nn.Parameter(torch.tensor(params["w"], dtype=dt))
    b = torch.nn.Parameter(torch.tensor(params["b"], dtype=dt))
    xt, yt = torch.tensor(x, dtype=dt), torch.tensor(y, dtype=dt)
    for _ in range(steps):
        f = torch.tanh(xt @ w.T + b) @ a
        loss = 0.5 * ((f - yt) ** 2).sum()
        loss.backward()
        with torch.no_grad():
            for p in (a, w, b):
                p -= lr * p.grad
                p.grad.zero_()
    with torch.no_grad():
        return float(0.5 * ((torch.tanh(xt @ w.T + b) @ a - yt) ** 2).sum())


def check_same_work(torch, k):
    cfg = configs(1, k, 3)[0]  # (n_checkpoints = 2 stops at step 1: checkpoint_steps bug)
    ds = train_group(FAMILY, [cfg], progress=False)
    params, x, y = engine_initial(ds, cfg)
    eng = float(ds.train_loss.values[0, -1])
    tch = torch_train(torch, params, x, y, k)
    ok = abs(eng - tch) <= 1e-10
    print(f"same-work check: {k} steps from the engine's initialization: engine loss {eng:.15e}, "
          f"torch loss {tch:.15e}, |diff| {abs(eng - tch):.1e} -> {'OK' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit("the engine and the torch loop disagree")


def machine(torch):
    cpu = cpu_model()
    tch = "no torch" if torch is None else (f"torch {torch.__version__} "
                                            f"({torch.get_num_threads()} threads)")
    return (f"cpu: {cpu}, {os.cpu_count()} cores, {platform.python_version()}, jax {jax.__version__}"
            f" ({jax.local_device_count()} host devices), {tch}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2048, help="engine runs in one group")
    ap.add_argument("--steps", type=int, default=20000, help="engine steps per run")
    ap.add_argument("--checkpoints", type=int, default=100, help="engine n_checkpoints")
    ap.add_argument("--torch-runs", type=int, default=3, help="torch runs (one at a time)")
    ap.add_argument("--torch-steps", type=int, default=5000, help="torch steps per run")
    ap.add_argument("--check-steps", type=int, default=2000, help="K of the same-work check")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, a smoke run (seconds); without torch: the engine alone")
    ap.add_argument("--fig4-full", action="store_true",
                    help="also time `twolayer reproduce fig4 --scale full` (about 6 minutes)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.steps, args.torch_runs, args.torch_steps = 256, 2000, 1, 1000
        args.check_steps = 500

    torch = torch_or_none(args.quick)
    print(machine(torch))
    if torch is not None:
        check_same_work(torch, args.check_steps)

    # engine: a first call compiles, the second is timed
    cfgs = configs(args.runs, args.steps, args.checkpoints)
    t0 = time.perf_counter()
    train_group(FAMILY, cfgs, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = train_group(FAMILY, cfgs, progress=False)
    warm = time.perf_counter() - t0
    assert int(ds.stop_step.min()) == args.steps, "every run must do every step"
    eng = args.runs * args.steps / warm
    compile_s = max(first - warm, 0.0)

    print(f"engine: {args.runs} runs x {args.steps} steps ({args.checkpoints} checkpoints) "
          f"in {warm:.2f} s = {eng / 1e6:.2f} M run-steps/s; compile (first call minus warm) "
          f"{compile_s:.2f} s")
    if torch is None:
        print("torch: not installed, baseline skipped")
    else:  # one run at a time, each from its own initialization
        tot = 0.0
        for i in range(args.torch_runs):
            params, x, y = engine_initial(ds, cfgs[i], i)
            torch_train(torch, params, x, y, 50)  # warm-up of torch's dispatch
            t0 = time.perf_counter()
            torch_train(torch, params, x, y, args.torch_steps)
            tot += time.perf_counter() - t0
        tch = args.torch_runs * args.torch_steps / tot
        print(f"torch:  {args.torch_runs} runs x {args.torch_steps} steps in {tot:.2f} s = "
              f"{tch:,.0f} run-steps/s")
        print(f"ratio engine / torch: {eng / tch:,.0f}x")
    if args.fig4_full:
        time_fig4_full()


def time_fig4_full():
    """Wall time of the whole fig4 reproduction at full scale, as a user runs it."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "twolayer.cli", "reproduce", "fig4", "--scale", "full",
               "--out", os.path.join(tmp, "fig4")]
        env = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0"}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    print(f"reproduce fig4 --scale full: {wall:.0f} s wall ({wall / 60:.1f} min; target 10 min)")


if __name__ == "__main__":
    main()
