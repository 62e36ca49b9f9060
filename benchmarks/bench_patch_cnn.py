"""Run-steps per second on the patch CNN: the engine (direct and coefficient mode) against a
naive one-run-at-a-time PyTorch loop.

The work is the family ``patch_cnn`` (two-layer ReLU CNN on a signal patch and a noise
patch, both layers trained, logistic loss, full-batch GD): d = 1000, n_train = 50, width
m = 20 (2m = 40 filters), n_test = 1000, 10^4 steps, 20 log-spaced checkpoints, lr 0.1,
hidden init 0.01, constant output init 0.1, snr 0.05, float64, loss_tol = 0 (every run does
every step); runs differ in seed (and so in data seed).
- engine: ``twolayer.train.train_group`` on R runs at once, once with parameterization =
  "direct" and once with "coefficient"; timed on a second call (the first compiles; the
  compile estimate is first call minus second). Its time includes all that train_group
  does, also the checkpoint observations (each predicts the run's 1000 test points).
- torch: what peers write. One run at a time, a Conv1d-like model: W (2m, d) and v (2m)
  nn.Parameters, explicit inputs X (n, 2, d), f(x) = sum_j j sum_r v_{j,r} sum_p
  relu(<w_{j,r}, x_p>), loss = mean softplus(-y f), loss.backward(), in-place SGD under
  no_grad, zeroed gradients, and the test error on 1000 explicit test points at
  log-spaced checkpoints. Timed on a few runs x fewer steps; the time of a full run is
  extrapolated as steps x (time per step) + checkpoints x (time per evaluation).

A check first copies one run's initial weights and data from the engine into torch, trains
K steps each way and compares the training losses at every checkpoint (float64: ~1e-12).

    .venv/bin/python benchmarks/bench_patch_cnn.py                # full (a few minutes)
    .venv/bin/python benchmarks/bench_patch_cnn.py --quick        # smoke run (< 1 min)
    .venv/bin/python benchmarks/bench_patch_cnn.py --kou-heatmap  # + `reproduce kou2023-heatmap`
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
from machine import cpu_model, torch_or_none  # benchmarks/machine.py (the script's folder)

import twolayer
from twolayer import runtime

runtime.configure()  # host devices and float64, before jax is imported
import jax  # noqa: E402
import jax.numpy as jnp
from twolayer.config import make_config, static_part
from twolayer.families import get
from twolayer.families.patch_cnn import filter_signs, patches
from twolayer.train import checkpoint_steps, run_values, train_group

FAMILY = get("patch_cnn")
LR = 0.1


def configs(runs, steps, n_checkpoints, d, n, m, n_test, mode, dtype="float64"):
    return [make_config(FAMILY.Config, dict(
        input_dim=d, n_train=n, width=m, n_test=n_test, max_steps=steps,
        n_checkpoints=n_checkpoints, learning_rate=LR, loss_tol=0.0, output_init="constant",
        output_init_scale=0.1, hidden_init_scale=0.01, snr=0.05, parameterization=mode,
        dtype=dtype, seed=i)) for i in range(runs)]


def engine_initial(cfg):
    """One run's initial weights, training and test data as the engine builds them, as numpy
    (direct mode: explicit d-dimensional vectors)."""
    cfg = dataclasses.replace(cfg, parameterization="direct")
    bp = {k: jnp.asarray(v) for k, v in run_values(cfg).items()}
    scfg = static_part(cfg)
    params, data, _ = FAMILY.setup(scfg, bp)
    return {"w": np.asarray(params["w"]), "v": np.asarray(params["v"]),
            "x": np.asarray(patches(scfg, data)), "y": np.asarray(data["y"]),
            "x_test": np.asarray(patches(scfg, data, test=True)),
            "y_test": np.asarray(data["y_test"]), "signs": filter_signs(cfg)}


# ---------------------------------------------------------------- the naive torch loop
def torch_train(torch, init, steps, checkpoints, dtype, lr=LR):
    """One run: autograd and a Python loop per step. Returns the training loss and test
    error at ``checkpoints`` and the seconds spent in steps and in evaluations."""
    dt = getattr(torch, dtype)
    w = torch.nn.Parameter(torch.tensor(init["w"], dtype=dt))
    v = torch.nn.Parameter(torch.tensor(init["v"], dtype=dt))
    x, y = torch.tensor(init["x"], dtype=dt), torch.tensor(init["y"], dtype=dt)
    xt, yt = torch.tensor(init["x_test"], dtype=dt), torch.tensor(init["y_test"], dtype=dt)
    j = torch.tensor(init["signs"], dtype=dt)

    def f(inp):  # (N, 2, d) -> (N,)
        h = torch.relu(torch.einsum("fd,npd->fnp", w, inp)).sum(dim=2)  # (F, N)
        return (j * v) @ h

    losses, errors = [], []
    t_step = t_eval = 0.0
    marks = set(int(s) for s in checkpoints)
    for step in range(steps + 1):
        if step in marks:
            t0 = time.perf_counter()
            with torch.no_grad():
                losses.append(float(torch.nn.functional.softplus(-y * f(x)).mean()))
                errors.append(float((yt * f(xt) <= 0).to(dt).mean()))
            t_eval += time.perf_counter() - t0
        if step == steps:
            break
        t0 = time.perf_counter()
        loss = torch.nn.functional.softplus(-y * f(x)).mean()
        loss.backward()
        with torch.no_grad():
            for p in (w, v):
                p -= lr * p.grad
                p.grad.zero_()
        t_step += time.perf_counter() - t0
    return np.array(losses), np.array(errors), t_step, t_eval


def check_same_work(torch, k, size):
    """Run 0 from the engine's initialization, k steps both ways, direct and coefficient."""
    init = None
    for mode in ("direct", "coefficient"):
        cfg = configs(1, k, 10, *size, mode)[0]
        if init is None:
            init = engine_initial(cfg)
            steps = checkpoint_steps(k, 10)
            tl, _, _, _ = torch_train(torch, init, k, steps, "float64")
        ds = train_group(FAMILY, [cfg], progress=False)
        el = ds.train_loss.values[0]
        rel = float(np.max(np.abs(el - tl) / np.abs(tl)))
        ok = rel <= 1e-9
        print(f"same-work check ({mode}): {k} steps from the engine's initialization, training "
              f"loss at {len(steps)} checkpoints: engine {el[-1]:.15e}, torch {tl[-1]:.15e} at "
              f"step {k}; max relative difference {rel:.1e} -> {'OK' if ok else 'FAILED'}")
        if not ok:
            raise SystemExit("the engine and the torch loop disagree")


def machine(torch):
    cpu = cpu_model()
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"cpu: {cpu}, nproc {avail} ({os.cpu_count()} cores), load average {load}\n"
            f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__} "
            f"({jax.local_device_count()} host devices), "
            + ("no torch" if torch is None else
               f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
            + f", twolayer {twolayer.__version__}")


def time_engine(runs, steps, n_ck, size, mode):
    cfgs = configs(runs, steps, n_ck, *size, mode)
    t0 = time.perf_counter()
    train_group(FAMILY, cfgs, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = train_group(FAMILY, cfgs, progress=False)
    warm = time.perf_counter() - t0
    assert int(ds.stop_step.min()) == steps, "every run must do every step"
    assert not bool(ds.diverged.any()), "a run diverged"
    return warm, max(first - warm, 0.0), float(ds.test_error.values[:, -1].mean())


def time_torch(torch, runs, steps, full_steps, n_ck, size, dtype):
    """Seconds of one full run (full_steps, n_ck checkpoints), extrapolated from runs x steps."""
    t_step = t_eval = 0.0
    n_eval = 0
    marks = checkpoint_steps(steps, n_ck)
    for i in range(runs):
        init = engine_initial(configs(i + 1, 10, n_ck, *size, "direct")[i])
        torch_train(torch, init, 20, [0], dtype)  # warm-up of torch's dispatch
        _, _, ts, te = torch_train(torch, init, steps, marks, dtype)
        t_step, t_eval, n_eval = t_step + ts, t_eval + te, n_eval + len(marks)
    per_step, per_eval = t_step / (runs * steps), t_eval / n_eval
    n_full = len(checkpoint_steps(full_steps, n_ck))
    return full_steps * per_step + n_full * per_eval, per_step, per_eval


def _thread_counts(spec, default):
    out = []
    for part in spec.split(","):
        th = default if part.strip() == "default" else int(part)
        if th not in out:
            out.append(th)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=16, help="engine runs in one group (per mode)")
    ap.add_argument("--steps", type=int, default=10_000, help="engine steps per run")
    ap.add_argument("--checkpoints", type=int, default=20, help="n_checkpoints (both sides)")
    ap.add_argument("--dim", type=int, default=1000, help="patch dimension d")
    ap.add_argument("--n-train", type=int, default=50, help="training samples n")
    ap.add_argument("--width", type=int, default=20, help="filters per bank m")
    ap.add_argument("--n-test", type=int, default=1000, help="test points")
    ap.add_argument("--modes", default="direct,coefficient", help="engine parameterizations")
    ap.add_argument("--torch-runs", type=int, default=2, help="torch runs (one at a time)")
    ap.add_argument("--torch-steps", type=int, default=500, help="torch steps per timed run")
    ap.add_argument("--torch-threads", default="default,1",
                    help="torch intra-op thread counts to time ('default': torch's own)")
    ap.add_argument("--no-float32", action="store_true", help="skip the torch float32 timing")
    ap.add_argument("--check-steps", type=int, default=100, help="K of the same-work check")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, a smoke run (seconds); without torch: the engine alone")
    ap.add_argument("--kou-heatmap", action="store_true",
                    help="also time `twolayer reproduce kou2023-heatmap --scale full` (if that "
                         "preset exists; about 10 minutes)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.steps, args.dim, args.n_train = 8, 1000, 200, 20
        args.torch_runs, args.torch_steps, args.check_steps = 1, 200, 50
        args.torch_threads = "1"  # (2 threads can take a minute on a loaded machine)
    size = (args.dim, args.n_train, args.width, args.n_test)

    torch = torch_or_none(args.quick)
    print(machine(torch))
    print(f"work: d = {args.dim}, n_train = {args.n_train}, m = {args.width} "
          f"({2 * args.width} filters), n_test = {args.n_test}, {args.steps} steps, "
          f"{args.checkpoints} checkpoints, lr {LR}, float64")
    rows, best = [], None
    if torch is None:
        print("torch: not installed, baseline skipped")
    else:
        check_same_work(torch, args.check_steps, size)
        rows, best = time_torch_rows(torch, args, size)

    for mode in args.modes.split(","):
        warm, compile_s, err = time_engine(args.runs, args.steps, args.checkpoints, size, mode)
        rate = args.runs * args.steps / warm
        print(f"engine {mode}: {args.runs} runs x {args.steps} steps in {warm:.2f} s (second "
              f"call); compile (first call minus second) {compile_s:.1f} s; mean final test "
              f"error {err:.3f}")
        rows.append((f"engine {mode}", args.runs, args.steps, warm, rate, compile_s))

    base = None if best is None else args.steps / best[1]
    print()
    print(f"| {'mode':<28} | {'runs':>5} | {'steps':>6} | {'seconds':>8} | {'M run-steps/s':>13} "
          f"| {'ratio vs torch f64':>18} | {'compile s':>9} |")
    print(f"|{'-' * 30}|{'-' * 7}|{'-' * 8}|{'-' * 10}|{'-' * 15}|{'-' * 20}|{'-' * 11}|")
    for name, r, s, sec, rate, comp in rows:
        c = "-" if comp is None else f"{comp:.1f}"
        ratio = "-" if base is None else f"{rate / base:,.1f}x"
        print(f"| {name:<28} | {r:>5} | {s:>6} | {sec:>8.2f} | {rate / 1e6:>13.4g} "
              f"| {ratio:>18} | {c:>9} |")
    if best is not None:
        print(f"(torch rows: one run's time extrapolated from the timed runs x steps; ratios "
              f"against torch float64 with {best[0]} thread(s), the fastest; the engine's "
              f"seconds are all runs of a warm train_group call)")
    if args.kou_heatmap:
        time_kou_heatmap()


def time_torch_rows(torch, args, size):
    """The torch rows of the table and (threads, seconds per run) of the fastest float64."""
    # torch: at its default thread count and at each --torch-threads; the ratios are taken
    # against the fastest float64 setting (on a loaded 2-core machine two intra-op threads
    # can be 10x slower than one: a descheduled thread stalls every parallel region)
    rows, default_threads = [], torch.get_num_threads()
    best = None
    for th in _thread_counts(args.torch_threads, default_threads):
        torch.set_num_threads(th)
        t_run, per_step, per_eval = time_torch(torch, args.torch_runs, args.torch_steps,
                                               args.steps, args.checkpoints, size, "float64")
        print(f"torch float64, {th} thread(s): {args.torch_runs} run(s) x {args.torch_steps} "
              f"steps timed; {per_step * 1e6:.0f} us per step, {per_eval * 1e3:.1f} ms per test "
              f"evaluation; a {args.steps}-step run with {args.checkpoints} checkpoints "
              f"extrapolated to {t_run:.1f} s")
        rows.append((f"torch f64, {th} thr (extrap.)", 1, args.steps, t_run, args.steps / t_run, None))
        if best is None or t_run < best[1]:
            best = (th, t_run)
    if not args.no_float32:
        torch.set_num_threads(best[0])
        t32, ps32, pe32 = time_torch(torch, 1, args.torch_steps, args.steps, args.checkpoints,
                                     size, "float32")
        print(f"torch float32, {best[0]} thread(s): 1 run x {args.torch_steps} steps timed; "
              f"{ps32 * 1e6:.0f} us per step, {pe32 * 1e3:.1f} ms per test evaluation; "
              f"extrapolated {t32:.1f} s per run")
        rows.append((f"torch f32, {best[0]} thr (extrap.)", 1, args.steps, t32, args.steps / t32, None))
    torch.set_num_threads(default_threads)
    return rows, best


def time_kou_heatmap():
    """Wall time of the whole kou2023-heatmap reproduction at full scale, as a user runs it."""
    import subprocess
    import sys
    import tempfile

    from twolayer import presets
    if "kou2023-heatmap" not in presets.names():
        print("reproduce kou2023-heatmap: skipped, no such preset (`twolayer presets` lists "
              f"{', '.join(presets.names())})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "twolayer.cli", "reproduce", "kou2023-heatmap", "--scale",
               "full", "--out", os.path.join(tmp, "kou2023-heatmap")]
        env = {**os.environ, "TWOLAYER_PROGRESS": "0", "TWOLAYER_CACHE_DIR": "0"}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    print(f"reproduce kou2023-heatmap --scale full: {wall:.0f} s wall ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
