"""The batched engine, shared by every family.

One call trains a group of runs that share their static settings: ``jit(vmap(step))`` over
the runs, looped on the device with ``lax.while_loop`` in chunks of steps. Between chunks
control returns to Python for the progress bar and the checkpoints; the loop ends early once
every run has stopped. Per run: the stop rule (training loss below ``loss_tol``), the step
budget ``max_steps``, and divergence (a non-finite loss marks the run diverged and freezes
it; the others go on). Observables are recorded at log-spaced checkpoints that always
include step 0 and the last step; a run that has stopped keeps its final values.

When most runs have stopped, the still-active ones are gathered into a smaller batch (sizes
are powers of two, so few programs get compiled). On a multi-core CPU the batch is split
over the host devices with ``shard_map``; each device loops over its own runs. A run's
trajectory does not depend on which runs share its batch.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, PartitionSpec as P

from .config import batched_names, bucketed_names, static_part

UNROLL = 1  # steps per while-loop iteration (1 measured fastest on CPU)
BLOCK = 128  # runs per device stepped together (see advance; measured on CPU)
PAD = 32  # initial batch: runs per device rounded up to a multiple of this


# ---------------------------------------------------------------- checkpoints and optimizers
def checkpoint_steps(max_steps: int, n: int) -> np.ndarray:
    """n distinct integer steps in [0, max_steps], log-spaced, with 0 and max_steps."""
    n = min(n, max_steps + 1)
    if n <= 2:
        return np.array([0, max_steps], dtype=np.int64)
    k = n - 1
    while True:
        grid = np.unique(np.round(np.logspace(0, math.log10(max_steps), k)).astype(np.int64))
        if len(grid) >= n - 1 or k > 100 * n:
            break
        k += 1
    if len(grid) > n - 1:  # keep the ends, thin the dense start evenly
        keep = np.unique(np.round(np.linspace(0, len(grid) - 1, n - 1)).astype(int))
        grid = grid[keep]
    return np.concatenate([[0], grid])


def _gd(params, grads, opt, lr, bp, step):
    return jax.tree_util.tree_map(lambda p, g, lr: p - lr * g, params, grads, lr), opt


def _adam(params, grads, opt, lr, bp, step):
    m, v = opt
    b1, b2, eps = bp["adam_b1"], bp["adam_b2"], bp["adam_eps"]
    t = (step + 1).astype(b1.dtype)
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    new = jax.tree_util.tree_map(lambda p, m, v, lr: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                                 params, m, v, lr)
    return new, (m, v)


OPTIMIZERS = {
    "gd": (lambda params: (), _gd),
    "adam": (lambda params: (jax.tree_util.tree_map(jnp.zeros_like, params),) * 2, _adam),
}


# ---------------------------------------------------------------- compiled pieces of one group
def _program(family, cfg):
    return _program_cached(family.name, cfg)


@functools.lru_cache(maxsize=64)
def _program_cached(family_name, cfg):
    """Compiled functions of one static config (``cfg`` has its batched fields blanked)."""
    from .families import get
    family = get(family_name)
    opt_init, opt_update = OPTIMIZERS[cfg.optimizer]

    def step_sizes(bp, params):  # a pytree like params
        if family.step_sizes is not None:
            return family.step_sizes(cfg, bp, params)
        return jax.tree_util.tree_map(lambda _: bp["learning_rate"], params)

    def init_one(bp):
        params, data, info = family.setup(cfg, bp)
        state = {"params": params, "opt": opt_init(params), "step": jnp.zeros((), jnp.int64),
                 "done": jnp.zeros((), bool), "diverged": jnp.zeros((), bool)}
        return state, data, info

    def step_one(state, data, bp, end):
        value, grads = jax.value_and_grad(lambda p: family.loss(cfg, p, data))(state["params"])
        finite = jnp.isfinite(value)
        active = ~state["done"] & (state["step"] < end)
        stop = active & ((value < bp["loss_tol"]) | ~finite)
        move = active & ~stop
        params, opt = opt_update(state["params"], grads, state["opt"], step_sizes(bp, grads), bp,
                                 state["step"])
        keep = lambda new, old: jnp.where(move, new, old)  # noqa: E731
        return {"params": jax.tree_util.tree_map(keep, params, state["params"]),
                "opt": jax.tree_util.tree_map(keep, opt, state["opt"]),
                "step": state["step"] + move.astype(jnp.int64),
                "done": state["done"] | stop,
                "diverged": state["diverged"] | (active & ~finite)}

    batched_step = jax.vmap(step_one, in_axes=(0, 0, 0, None))
    tree_map = jax.tree_util.tree_map

    def loop(state, data, bp, end):
        def cond(s):
            return jnp.any(~s["done"] & (s["step"] < end))

        def body(s):
            for _ in range(UNROLL):
                s = batched_step(s, data, bp, end)
            return s

        return jax.lax.while_loop(cond, body, state)

    def advance(state, data, bp, end):
        # One device's runs, in blocks of BLOCK that each loop to `end` on their own: a
        # block's arrays stay in the core's cache (2048 runs stepped together ran at half
        # the speed), and a block whose runs have all stopped costs nothing more.
        n = state["step"].shape[0]
        nb = -(-n // BLOCK)
        if nb == 1 or n % nb:
            return loop(state, data, bp, end)
        split = lambda a: a.reshape((nb, n // nb) + a.shape[1:])  # noqa: E731
        out = jax.lax.map(lambda sdb: loop(*sdb, end), tree_map(split, (state, data, bp)))
        return tree_map(lambda a: a.reshape((n,) + a.shape[2:]), out)

    observe = jax.vmap(lambda p, d: family.observe(cfg, p, d))
    # one run at a time: a run's set-up must not depend on how many runs share its device
    # (vmap over 1 or 2 runs gave last-bit differences, so one device vs two differed).
    # A family's setup must not call XLA's CPU LAPACK routines (eigh, qr, triangular
    # solve): inside this loop under shard_map on several host devices they deadlock
    init = functools.partial(jax.lax.map, init_one)
    devices = jax.local_devices()
    if len(devices) > 1:  # each device sets up, steps and observes its own share of the runs
        mesh = Mesh(np.array(devices), ("runs",))
        init = jax.shard_map(init, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"),
                             check_vma=False)
        advance = jax.shard_map(advance, mesh=mesh, in_specs=(P("runs"),) * 3 + (P(),),
                                out_specs=P("runs"), check_vma=False)
        observe = jax.shard_map(observe, mesh=mesh, in_specs=(P("runs"),) * 2,
                                out_specs=P("runs"), check_vma=False)
    return {
        "init": jax.jit(init),
        "advance": jax.jit(advance),
        "observe": jax.jit(observe),
        "finalize": jax.jit(jax.vmap(lambda p, d, bp: family.finalize(cfg, p, d, bp))),
    }


def batched_values(cfgs, dtype) -> dict[str, np.ndarray]:
    """Per-run arrays of the batched fields (unset optional fields get a neutral value)."""
    out = {}
    for name in batched_names(type(cfgs[0])) + bucketed_names(type(cfgs[0])):
        vals = [getattr(c, name) for c in cfgs]
        if name == "data_seed":
            vals = [c.seed if v is None else v for c, v in zip(cfgs, vals)]
        vals = [0 if v is None else v for v in vals]
        kind = np.int64 if isinstance(vals[0], int) and not isinstance(vals[0], bool) else dtype
        out[name] = np.asarray(vals, dtype=kind)
    return out


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], tree)


def _pad_to(n: int, multiple: int, pow2: bool) -> int:
    size = 1 << max(0, (n - 1).bit_length()) if pow2 else n
    return -(-max(size, 1) // multiple) * multiple


def _progress(total, desc, enabled):
    if enabled is None:
        enabled = os.environ.get("TWOLAYER_PROGRESS", "1") != "0" and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------- the engine
def train_group(family, cfgs, *, progress=None, desc="train", state_file=None) -> xr.Dataset:
    """Train runs that share their static settings in one batched, compiled loop.

    Returns a Dataset with dims ``run`` (in the order of ``cfgs``) and ``step`` plus the
    family's own dims. With ``state_file`` (an object with ``load() -> dict | None``,
    ``save(dict)`` and ``every`` seconds, e.g. ``twolayer.store.TrainingState``), the
    loop's state is saved between chunks at most every ``every`` seconds, and a saved state
    is continued from: a killed shard resumes mid-run with the same result."""
    cfg0 = cfgs[0]
    cfg = static_part(cfg0)
    prog = _program(family, cfg)
    dtype = np.dtype(cfg0.dtype)
    n_runs, n_dev = len(cfgs), jax.local_device_count()
    bp_all = batched_values(cfgs, dtype)

    # initial batch: every run, padded (by repeating run 0) to a multiple of the devices and
    # of each device's number of blocks (see BLOCK), and to a power of two or a multiple of
    # PAD runs per device, so that shards of nearly equal sizes share one compiled program
    per_dev = -(-n_runs // n_dev)
    per_dev = _pad_to(per_dev, 1, pow2=True) if per_dev <= PAD else _pad_to(per_dev, PAD, pow2=False)
    idx = np.arange(_pad_to(per_dev, -(-per_dev // BLOCK), pow2=False) * n_dev)
    idx[idx >= n_runs] = 0
    state, data, info = prog["init"](_take(bp_all, idx))
    data_all = _take(data, slice(0, n_runs))
    info = _take(info, slice(0, n_runs))
    bp = _take(bp_all, idx)

    steps = checkpoint_steps(cfg0.max_steps, cfg0.n_checkpoints)
    obs = None
    final = None  # per run: its frozen state (host), filled once the run has stopped
    settled = np.zeros(n_runs, bool)  # final state and later checkpoints already filled
    chunk, now, first = 256, 0, 0
    saved = _resume(state_file, n_runs, len(steps), n_dev, state)
    if saved is not None:
        first, now, chunk, idx, settled, obs, final, state = saved
        data, bp = _take(data_all, idx), _take(bp_all, idx)
    saved_at = time.monotonic()
    bar = _progress(int(steps[-1]), desc, progress)
    if bar is not None:
        bar.update(now)
    for i in range(first, len(steps)):
        target = steps[i]
        while now < target:
            end = min(now + chunk, int(target))
            t0 = time.perf_counter()
            state = prog["advance"](state, data, bp, end)
            alive = ~np.asarray(state["done"])
            elapsed = time.perf_counter() - t0
            chunk = int(np.clip(chunk * 0.5 / max(elapsed, 1e-4), 16, 10_000_000))
            if bar is not None:
                bar.update(end - now)
                bar.set_postfix(active=int(alive[: n_runs].sum()), refresh=False)
            now = end
            if state_file is not None and time.monotonic() - saved_at >= state_file.every:
                state_file.save(_snapshot(i, now, chunk, idx, settled, obs, final, state, n_runs))
                saved_at = time.monotonic()
            if not alive.any():
                break
        o = jax.tree_util.tree_map(np.asarray, prog["observe"](state["params"], data))
        host = jax.tree_util.tree_map(np.asarray, state)
        if obs is None:
            obs = {k: np.empty((n_runs, len(steps)) + v.shape[1:], v.dtype) for k, v in o.items()}
            final = jax.tree_util.tree_map(lambda a: np.empty((n_runs,) + a.shape[1:], a.dtype), host)
        real = _unique_positions(idx, n_runs)
        for k, v in o.items():
            obs[k][idx[real], i] = v[real]
        done = host["done"]
        # runs that stopped keep their values at every later checkpoint
        # (each run once: when it has just stopped, or at the last checkpoint)
        leaving = real[(done[real] | (i == len(steps) - 1)) & ~settled[idx[real]]]
        settled[idx[leaving]] = True
        for k in obs:
            obs[k][idx[leaving], i + 1:] = obs[k][idx[leaving], i][:, None]
        jax.tree_util.tree_map(lambda f, h: f.__setitem__(idx[leaving], h[leaving]), final, host)
        alive_pos = real[~done[real]]
        if len(alive_pos) == 0 or i == len(steps) - 1:
            break
        remaining = (steps[-1] - now) * len(idx)
        if len(alive_pos) <= len(idx) // 2 and remaining > 200_000:
            new = _pad_to(len(alive_pos), n_dev, pow2=True)
            pos = np.concatenate([alive_pos, np.repeat(alive_pos[:1], new - len(alive_pos))])
            state, data, bp = _take(state, pos), _take(data, pos), _take(bp, pos)
            idx = idx[pos]
    if bar is not None:
        bar.close()

    fin = jax.tree_util.tree_map(np.asarray, prog["finalize"](final["params"], data_all, bp_all))
    return _to_dataset(family, cfg0, steps, obs, info, fin, final, bp_all)


def _snapshot(i, now, chunk, idx, settled, obs, final, state, n_runs) -> dict:
    """The loop's state between two chunks, as named host arrays."""
    out = {"i": i, "now": now, "chunk": chunk, "idx": idx, "settled": settled,
           "n_runs": n_runs, "n_steps": next(iter(obs.values())).shape[1]}
    for j, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        out[f"state_{j}"] = np.asarray(leaf)
    for j, leaf in enumerate(jax.tree_util.tree_leaves(final)):
        out[f"final_{j}"] = leaf
    out.update({f"obs_{k}": v for k, v in obs.items()})
    return out


def _resume(state_file, n_runs, n_steps, n_dev, fresh):
    """(first checkpoint, now, chunk, idx, settled, obs, final, state) from a saved
    snapshot, or None. ``fresh`` (the initial state) gives the trees' structure."""
    snap = state_file.load() if state_file is not None else None
    if snap is None or int(snap["n_runs"]) != n_runs or int(snap["n_steps"]) != n_steps:
        return None
    tree = jax.tree_util.tree_structure(fresh)
    n_leaves = tree.num_leaves
    state = jax.tree_util.tree_unflatten(tree, [snap[f"state_{j}"] for j in range(n_leaves)])
    final = jax.tree_util.tree_unflatten(tree, [snap[f"final_{j}"] for j in range(n_leaves)])
    obs = {k[4:]: v for k, v in snap.items() if k.startswith("obs_")}
    idx = snap["idx"]
    pad = -len(idx) % n_dev  # saved by a process with another number of devices
    if pad:
        pos = np.concatenate([np.arange(len(idx)), np.zeros(pad, int)])
        state, idx = _take(state, pos), idx[pos]
    return (int(snap["i"]), int(snap["now"]), int(snap["chunk"]), idx, snap["settled"], obs,
            final, state)


def _unique_positions(idx, n_runs):
    """Positions of the batch that hold a real run (the first copy of each run index)."""
    _, first = np.unique(idx, return_index=True)
    return np.sort(first[idx[first] < n_runs])


def _to_dataset(family, cfg0, steps, obs, info, fin, final_state, bp_all) -> xr.Dataset:
    def dims(name, lead):
        return lead + family.dims.get(name, ())

    ds = xr.Dataset(coords={"step": steps, **family.coords(cfg0)})
    for k, v in obs.items():
        ds[k] = (dims(k, ("run", "step")), v)
    for k, v in {**info, **fin}.items():
        ds[k] = (dims(k, ("run",)), np.asarray(v))
    # integer labels for the family's index dims, so groups of other sizes (e.g. widths)
    # merge by label with NaN padding
    ds = ds.assign_coords({d: np.arange(n) for d, n in ds.sizes.items() if d not in ds.coords
                           and d != "run"})
    ds["stop_step"] = ("run", final_state["step"].astype(np.int64))
    ds["diverged"] = ("run", final_state["diverged"].astype(bool))
    ds["converged"] = ("run", (obs["train_loss"][:, -1] < bp_all["loss_tol"]) & ~ds["diverged"].values)
    for k in ds.data_vars:
        label = family.describe.get(k) or ENGINE_DESCRIBE.get(k)
        if label:
            ds[k].attrs["long_name"] = label
    return ds


# the variables every family's runs get from the engine (a family's DESCRIBE may rename them)
ENGINE_DESCRIBE = {"stop_step": "updates done when the run stopped",
                   "diverged": "the loss became NaN or infinite",
                   "converged": "training loss reached loss_tol"}
