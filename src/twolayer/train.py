"""The batched engine, shared by every family.

One call trains a group of runs that share their static settings: ``jit(vmap(step))`` over
the runs, looped on the device with ``lax.while_loop`` in chunks. Between chunks control
returns to Python for the progress bar and the checkpoints; the loop ends early once every
run has stopped. Per run: the stop rule (training loss below ``loss_tol``), the budget, and
divergence (a non-finite loss marks the run diverged and freezes it; the others go on).
Observables are recorded at log-spaced checkpoints that always include the start and the
end; a run that has stopped keeps its final values.

Two kinds of optimizer share this loop. Gradient descent and Adam take one step per
iteration; their clock is the step count and their checkpoints are steps. Gradient flow
(``optimizer = "flow"``, ``twolayer.flow``) takes one adaptive solver step attempt per
iteration; its clock is the flow time t (each run its own steps), its checkpoints are
times, and each run's steps are shortened to land exactly on them.

When most runs have stopped, the still-active ones are gathered into a smaller batch (sizes
are powers of two, so few programs get compiled). On a multi-core CPU the batch is split
over the host devices with ``shard_map``; each device loops over its own runs. A run's
trajectory does not depend on which runs share its batch, nor on how the loop is chunked.
"""
from __future__ import annotations

import functools
import math
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, PartitionSpec as P

from . import runtime
from .config import batched_names, bucketed_names, field_specs, static_part

UNROLL = 1  # steps per while-loop iteration (1 measured fastest on CPU)
BLOCK = 128  # runs per device stepped together (see advance; measured on CPU)
OBSERVE_BLOCK = 16  # runs per device observed together (see observe; measured on CPU)
PAD = 32  # initial batch: runs per device rounded up to a multiple of this
# Gradient flow: at least this many runs per device (the batch sizes beyond are powers of
# two or multiples of PAD). XLA's CPU code for a solver step gave the same bits for any
# batch of a multiple of 4 runs (one 256-bit vector of float64) and other bits for 1, 2, 3,
# 5, ... runs (measured on AVX2; 8 covers 512-bit vectors too); an adaptive solver turns a
# last-bit difference into another sequence of steps, so a run's result would depend on
# the size of its batch.
LANES = 8
TREND_POINTS = 4  # checkpoint intervals the trend of the test error is fitted over

# status of a run at the end (variable ``status``; CF flag_values / flag_meanings)
STATUS = ("converged", "max_steps", "max_time", "diverged", "solver_failed")


# ---------------------------------------------------------------- checkpoints and optimizers
def checkpoint_steps(max_steps: int, n: int) -> np.ndarray:
    """n distinct integer steps in [0, max_steps], log-spaced, with 0 and max_steps."""
    n = min(n, max_steps + 1)
    if n <= 2:
        return np.array([0, max_steps], dtype=np.int64)
    if n == max_steps + 1:  # every step (what the search below ends with, found at once)
        return np.arange(max_steps + 1, dtype=np.int64)
    k = n - 1
    while True:
        grid = np.unique(np.round(np.logspace(0, math.log10(max_steps), k)).astype(np.int64))
        if len(grid) >= n - 1 or k > 100 * n:
            break
        # one more point at a time (grids of up to 1000 points need k < 7 n), then
        # doubling: a bounded search
        k = k + 1 if k < 8 * n and n <= 1000 else 2 * k
    if len(grid) > n - 1:  # keep the ends, thin the dense start evenly
        keep = np.unique(np.round(np.linspace(0, len(grid) - 1, n - 1)).astype(int))
        grid = grid[keep]
    return np.concatenate([[0], grid])


def checkpoint_times(max_time: float, n: int) -> np.ndarray:
    """n flow times: 0, then n - 1 log-spaced from min(0.01, max_time / 100) to max_time."""
    if n <= 2:
        return np.array([0.0, max_time])
    first = min(0.01, max_time / 100)
    grid = np.logspace(math.log10(first), math.log10(max_time), n - 1)
    grid[0], grid[-1] = first, max_time  # exactly, not through log10
    return np.concatenate([[0.0], grid])


def _gd(params, grads, opt, lr, bp, step):
    return jax.tree_util.tree_map(lambda p, g, lr: p - lr * g, params, grads, lr), opt


def _adam_init(params):
    import optax  # imported on use, like flow's solvers

    return optax.scale_by_adam().init(params)  # (count, mu, nu), zeros


def _adam(params, grads, opt, lr, bp, step):
    """Adam: optax's ``scale_by_adam`` with the run's ``adam_b1``, ``adam_b2``, ``adam_eps``
    (batched: built inside the vmapped step), then a step of ``-lr`` per parameter."""
    import optax

    adam = optax.scale_by_adam(b1=bp["adam_b1"], b2=bp["adam_b2"], eps=bp["adam_eps"])
    updates, opt = adam.update(grads, opt)
    return jax.tree_util.tree_map(lambda p, u, lr: p - lr * u, params, updates, lr), opt


# name -> (init(params) -> optimizer state, update(params, grads, state, lr, bp, step))
OPTIMIZERS = {
    "gd": (lambda params: (), _gd),
    "adam": (_adam_init, _adam),
}


# ---------------------------------------------------------------- one run's step
def _step_sizes(family, cfg, bp, params):
    """A step size per parameter (a pytree like params)."""
    if family.step_sizes is not None:
        return family.step_sizes(cfg, bp, params)
    return jax.tree_util.tree_map(lambda _: bp["learning_rate"], params)


def _descent(family, cfg):
    """(init_one, [(phase, step_one)], clock) of gradient descent or Adam."""
    opt_init, opt_update = OPTIMIZERS[cfg.optimizer]

    def init_one(params, data, bp):
        return {"params": params, "opt": opt_init(params), "step": jnp.zeros((), jnp.int64),
                "done": jnp.zeros((), bool), "diverged": jnp.zeros((), bool)}

    def step_one(state, data, bp, target):
        value, grads = jax.value_and_grad(lambda p: family.loss(cfg, bp, p, data))(state["params"])
        finite = jnp.isfinite(value)
        active = ~state["done"] & (state["step"] < target)
        stop = active & ((value < bp["loss_tol"]) | ~finite)
        move = active & ~stop
        params, opt = opt_update(state["params"], grads, state["opt"],
                                 _step_sizes(family, cfg, bp, grads), bp, state["step"])
        keep = lambda new, old: jnp.where(move, new, old)  # noqa: E731
        return {"params": jax.tree_util.tree_map(keep, params, state["params"]),
                "opt": jax.tree_util.tree_map(keep, opt, state["opt"]),
                "step": state["step"] + move.astype(jnp.int64),
                "done": state["done"] | stop,
                "diverged": state["diverged"] | (active & ~finite)}

    return init_one, [(None, step_one)], lambda s: s["step"]


def _flow(family, cfg):
    """(init_one, [(phase, step_one)], clock) of gradient flow (``twolayer.flow``): phase 0
    with ``cfg.solver`` until the loss is below ``tail_switch`` times its start, then phase 1
    with ``cfg.tail_solver``. Each run steps to the checkpoint times on its own (no waiting
    for the other runs), landing exactly on each and keeping a copy of its parameters there
    (``saved``) for the observables, which are computed after training."""
    from . import flow

    # the loss of a run's (data, batched values): what the solver's args carry
    def loss(params, run):
        return family.loss(cfg, run[1], params, run[0])

    term = flow.vector_field(loss)
    grid = checkpoint_times(cfg.max_time, cfg.n_checkpoints)
    n_ckpt = len(grid)

    def rates(bp, params):
        return jax.tree_util.tree_map(lambda s: s / bp["learning_rate"],
                                      _step_sizes(family, cfg, bp, params))

    def init_one(params, data, bp):
        value = loss(params, (data, bp))
        order = flow.SOLVERS[cfg.solver]().order(term)
        dt = flow.initial_step(term, params, ((data, bp), rates(bp, params)), bp["rtol"], bp["atol"],
                               order)
        bad = ~jnp.isfinite(value)
        saved = jax.tree_util.tree_map(
            lambda p: jnp.zeros((n_ckpt,) + p.shape, p.dtype).at[0].set(p), params)
        return {"params": params, "t": jnp.zeros((), value.dtype), "dt": dt,
                "errors": jnp.ones((2,), value.dtype),
                "phase": (bp["tail_switch"] >= 1).astype(jnp.int32),
                "step": jnp.zeros((), jnp.int64), "attempts": jnp.zeros((), jnp.int64),
                "loss": value, "loss0": value, "done": bad | (value < bp["loss_tol"]),
                "diverged": bad, "failed": jnp.zeros((), bool),
                "next": jnp.ones((), jnp.int32), "saved": saved,
                "saved_step": jnp.zeros((n_ckpt,), jnp.int64)}

    def stepper(phase, name):
        def step_one(state, data, bp):
            active = ~state["done"] & (state["phase"] == phase)
            nxt = jnp.minimum(state["next"], n_ckpt - 1)
            target = jnp.asarray(grid, state["t"].dtype)[nxt]
            keep, y1, t1, dt1, (e1, e2) = flow.attempt(
                term, name, state["params"], state["t"], state["dt"], target,
                ((data, bp), rates(bp, state["params"])), state["errors"], bp["rtol"], bp["atol"])
            accept = active & keep
            params = jax.tree_util.tree_map(lambda new, old: jnp.where(accept, new, old), y1,
                                            state["params"])
            value = jnp.where(accept, loss(params, (data, bp)), state["loss"])
            t = jnp.where(accept, t1, state["t"])
            step = state["step"] + accept
            landed = accept & (t >= target)
            saved = jax.tree_util.tree_map(
                lambda buf, p: buf.at[nxt].set(jnp.where(landed, p, buf[nxt])), state["saved"],
                params)
            saved_step = state["saved_step"].at[nxt].set(
                jnp.where(landed, step, state["saved_step"][nxt]))
            dt = jnp.where(active, dt1, state["dt"])
            attempts = state["attempts"] + active
            bad = active & ~jnp.isfinite(value)
            # the tolerance cannot be met: the step size has collapsed
            failed = active & ~bad & (dt < flow.DT_FLOOR * jnp.maximum(t, grid[1]))
            stop = (bad | failed | (value < bp["loss_tol"]) | (attempts >= cfg.max_steps)
                    | (landed & (nxt == n_ckpt - 1)))
            tail = (value < bp["tail_switch"] * state["loss0"]) | (bp["tail_switch"] >= 1)
            return {"params": params, "t": t, "dt": dt,
                    "errors": jnp.where(active, jnp.stack([e1, e2]), state["errors"]),
                    "phase": jnp.where(active & tail, 1, state["phase"]),
                    "step": step, "attempts": attempts, "loss": value,
                    "loss0": state["loss0"], "done": state["done"] | (active & stop),
                    "diverged": state["diverged"] | bad, "failed": state["failed"] | failed,
                    "next": state["next"] + landed, "saved": saved, "saved_step": saved_step}
        return step_one

    phases = [(1, stepper(1, cfg.tail_solver))]
    if cfg.solver != cfg.tail_solver:
        phases.insert(0, (0, stepper(0, cfg.solver)))
    else:  # one solver: every run is in "phase 1" from the start
        base_init = init_one

        def init_one(params, data, bp):  # noqa: F811
            state = base_init(params, data, bp)
            return {**state, "phase": jnp.ones_like(state["phase"])}
    return init_one, phases, lambda s: s["t"]


# ---------------------------------------------------------------- compiled pieces of one group
def _program(family, cfg):
    from .family import version

    return _program_cached(family.name, version(), cfg)


@functools.lru_cache(maxsize=64)
def _program_cached(family_name, family_version, cfg):
    """Compiled functions of one static config (``cfg`` has its batched fields blanked), for
    one version of the family's registration (a family registered again gets new ones)."""
    from .family import get
    family = get(family_name)
    flow = cfg.optimizer == "flow"
    init_state, phases, clock = (_flow if flow else _descent)(family, cfg)

    def init_one(bp):
        params, data, info = family.setup(cfg, bp)
        return init_state(params, data, bp), data, info

    tree_map = jax.tree_util.tree_map

    def loop(state, data, bp, target, iters):
        # each phase's runs in turn, at most `iters` iterations in all: a run's steps do not
        # depend on where a chunk ends, since its whole stepping state is in `state`
        count = jnp.zeros((), jnp.int64)
        for phase, step_one in phases:
            if flow:  # each run heads for its own next checkpoint
                step = jax.vmap(step_one)
            else:
                def step(s, d, b, f=jax.vmap(step_one, in_axes=(0, 0, 0, None))):
                    return f(s, d, b, target)

            def waiting(s, phase=phase):
                if flow:
                    return ~s["done"] & (s["phase"] == phase)
                return ~s["done"] & (clock(s) < target)

            def cond(c, waiting=waiting):
                return (c[1] < iters) & jnp.any(waiting(c[0]))

            def body(c, step=step):
                s = c[0]
                for _ in range(UNROLL):
                    s = step(s, data, bp)
                return s, c[1] + 1

            state, count = jax.lax.while_loop(cond, body, (state, count))
        return state

    def advance(state, data, bp, target, iters):
        # Gradient descent: one device's runs in blocks of BLOCK that each loop on their own:
        # a block's arrays stay in the core's cache (2048 runs stepped together ran at half
        # the speed), and a block whose runs have all stopped costs nothing more. Flow: one
        # block (a solver step has a large fixed cost, so wide batches pay; measured).
        n = state["done"].shape[0]
        nb = -(-n // BLOCK)
        if flow or nb == 1 or n % nb:
            return loop(state, data, bp, target, iters)
        split = lambda a: a.reshape((nb, n // nb) + a.shape[1:])  # noqa: E731
        out = jax.lax.map(lambda sdb: loop(*sdb, target, iters), tree_map(split, (state, data, bp)))
        return tree_map(lambda a: a.reshape((n,) + a.shape[2:]), out)

    one = lambda p, d, b: family.observe(cfg, b, p, d)  # noqa: E731
    # flow: every checkpoint's saved parameters of a run at once
    observe_v = jax.vmap(jax.vmap(one, in_axes=(0, None, None)) if flow else one)

    def observe(params, data, bp):
        # blocks of OBSERVE_BLOCK runs in turn: a block's test-set arrays stay in the cache
        n = bp["learning_rate"].shape[0]
        nb = n // OBSERVE_BLOCK
        if nb <= 1 or n % OBSERVE_BLOCK:
            return observe_v(params, data, bp)
        split = lambda a: a.reshape((nb, n // nb) + a.shape[1:])  # noqa: E731
        out = jax.lax.map(lambda pdb: observe_v(*pdb), tree_map(split, (params, data, bp)))
        return tree_map(lambda a: a.reshape((n,) + a.shape[2:]), out)
    # one run at a time: a run's set-up must not depend on how many runs share its device
    # (vmap over 1 or 2 runs gave last-bit differences, so one device vs two differed).
    # A family's setup must not call XLA's CPU LAPACK routines (eigh, qr, triangular
    # solve): inside this loop under shard_map on several host devices they deadlock
    init = functools.partial(jax.lax.map, init_one)
    split = family.setup_shared is not None
    if split:  # the shared part once per distinct shared_fields, the rest per run
        shared = functools.partial(jax.lax.map, lambda b: family.setup_shared(cfg, b))

        def init_from(bp, which, sh):  # sh: every distinct share; which: each run's
            def one(b_i):
                b, i = b_i
                mine = jax.tree_util.tree_map(lambda a: a[i], sh)
                params, data, info = family.setup_run(cfg, b, mine)
                return init_state(params, data, b), data, info
            return jax.lax.map(one, (bp, which))
    devices = jax.local_devices()
    if len(devices) > 1:  # each device sets up, steps and observes its own share of the runs
        mesh = Mesh(np.array(devices), ("runs",))
        init = jax.shard_map(init, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"),
                             check_vma=False)
        if split:
            shared = jax.shard_map(shared, mesh=mesh, in_specs=P("runs"), out_specs=P("runs"),
                                   check_vma=False)
            init_from = jax.shard_map(init_from, mesh=mesh,
                                      in_specs=(P("runs"), P("runs"), P()),
                                      out_specs=P("runs"), check_vma=False)
        advance = jax.shard_map(advance, mesh=mesh, in_specs=(P("runs"),) * 3 + (P(), P()),
                                out_specs=P("runs"), check_vma=False)
        observe = jax.shard_map(observe, mesh=mesh, in_specs=(P("runs"),) * 3,
                                out_specs=P("runs"), check_vma=False)

    def finish(params, data, bp):
        out = dict(family.finalize(cfg, bp, params, data))
        grads = jax.grad(lambda p: family.loss(cfg, bp, p, data))(params)
        sizes = _step_sizes(family, cfg, bp, grads)
        moved = tree_map(lambda s, g: s / bp["learning_rate"] * g, sizes, grads)
        out["grad_norm"] = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(moved)))
        return out

    if split:
        init = _shared_init(jax.jit(shared), jax.jit(init_from), family.shared_fields,
                            len(devices))
    else:
        init = jax.jit(init)
    prog = {
        "init": init,
        "advance": jax.jit(advance),
        "observe": jax.jit(observe),
        "observe_one": jax.jit(jax.vmap(one)),
        "finalize": jax.jit(jax.vmap(finish)),
    }
    if cfg.polish:
        prog["polish"] = jax.jit(jax.vmap(_polisher(family, cfg)))
    return prog


def _shared_init(shared, init_from, fields, n_dev):
    """The engine's ``init`` for a family with a split set-up: ``setup_shared`` once per
    distinct combination of ``fields`` among the runs (on the first run that has it; their
    number padded to a power of two, so that batches of similar make-up share one compiled
    program), then ``setup_run`` of every run with its share. Each part runs one run at a
    time, as ``setup`` does, so a run's set-up does not depend on the batch."""
    def init(bp):
        bp = {k: np.asarray(v) for k, v in bp.items()}
        key = np.stack([bp[f].astype(np.float64) for f in fields], axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        u = _pad_to(len(first), n_dev, pow2=True)
        first = np.concatenate([first, np.full(u - len(first), first[0])])
        sh = shared(_take(bp, first))
        return init_from(bp, inverse.ravel().astype(np.int32), sh)
    return init


def _polisher(family, cfg):
    """params, data, bp -> (polished params, polish facts): Levenberg-Marquardt (optimistix)
    on the family's residuals from the end point: the nearest global minimum of
    1/2 |r|^2 (every training loss of such a family is a multiple of it). Parameters
    with step size 0 (frozen) stay where they are."""
    import lineax as lx
    import optimistix as optx

    from .flow import GaussJordan

    if family.residuals is None:
        raise ValueError(f"family '{family.name}' gives no residuals: polish is not available")

    def polish(params, data, bp):
        mask = jax.tree_util.tree_map(lambda s: (s != 0).astype(s.dtype),
                                      _step_sizes(family, cfg, bp, params))
        def fn(p, _):
            p = jax.tree_util.tree_map(lambda m, new, old: old + m * (new - old), mask, p, params)
            return family.residuals(cfg, bp, p, data)

        solver = optx.LevenbergMarquardt(rtol=1e-16, atol=1e-20,
                                         linear_solver=lx.Normal(GaussJordan()))
        sol = optx.least_squares(fn, solver, params, max_steps=cfg.polish_steps, throw=False)
        out = jax.tree_util.tree_map(lambda m, new, old: old + m * (new - old), mask,
                                     sol.value, params)
        return out, {"polish_steps_done": sol.stats["num_steps"]}

    return polish


def _output_shapes(family_name, family_version, cfg, bp):
    """The parameters' shapes of one static config, after checking (by tracing, without
    computing) that ``setup``, ``observe`` and ``finalize`` give only declared variables;
    checked once per static config and family registration."""
    key = (family_name, family_version, cfg)
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    from .family import get

    family = get(family_name)

    def outputs(b):
        params, data, info = family.setup(cfg, b)
        return (params, info, family.observe(cfg, b, params, data),
                family.finalize(cfg, b, params, data))

    params, info, obs, fin = jax.eval_shape(outputs, bp)
    family.check_outputs(info, "info")
    family.check_outputs(obs, "observe")
    family.check_outputs(fin, "finalize")
    if key is not None:
        _CHECKED[key] = params
    return params


_CHECKED: dict = {}


def _nbytes(tree) -> int:
    return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
               for leaf in jax.tree_util.tree_leaves(tree))


@functools.lru_cache(maxsize=256)
def _run_bytes_cached(family_name, family_version, cfg, bp_items):
    from .family import get

    family = get(family_name)
    bp = {k: v for k, v in bp_items}

    def outputs(b):
        params, data, info = family.setup(cfg, b)
        return (params, data, info, family.observe(cfg, b, params, data),
                family.finalize(cfg, b, params, data))

    params, data, info, obs, fin = jax.eval_shape(outputs, bp)
    # a gradient step, traced (not compiled): its largest intermediate array
    jaxpr = jax.make_jaxpr(lambda b, p, d: jax.grad(
        lambda q: family.loss(cfg, b, q, d))(p))(bp, params, data)
    largest = max([_nbytes(v.aval) for e in jaxpr.jaxpr.eqns for v in e.outvars] or [0])
    state = 3 * _nbytes(params)  # parameters and an optimizer's state (Adam: two moments)
    if cfg.optimizer == "flow":  # a dense P x P system, and the parameters per checkpoint
        p = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
        state += 4 * p * p * 8 + cfg.n_checkpoints * _nbytes(params)
    working = state + _nbytes(data) + _nbytes(info) + 2 * largest
    recorded = cfg.n_checkpoints * _nbytes(obs) + _nbytes(fin) + _nbytes(info) + 64
    return working, recorded


def run_bytes(family, cfg) -> tuple[int, int]:
    """Estimated memory of one run of ``cfg``, in bytes, from its shapes alone (nothing is
    allocated or compiled): ``(working, recorded)``: what training it holds (parameters,
    optimizer state, data, twice the largest array of a gradient step) and what its record
    in the result holds (every observable at every checkpoint, the final values)."""
    from .family import version

    bp = run_values(cfg)
    return _run_bytes_cached(family.name, version(), static_part(cfg),
                             tuple((k, jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype))
                                   for k, v in bp.items()))


def check_group(family, cfg) -> None:
    """Refuse, before any training, a group the engine cannot train: outputs of the family
    that are not declared variables, gradient flow with more parameters than
    ``flow.MAX_PARAMETERS`` (each implicit step solves a dense P x P system), or ``polish``
    for a family without residuals."""
    from .config import ConfigError

    if cfg.polish and family.residuals is None:
        raise ConfigError(f"polish = true needs a least-squares family; '{family.name}' gives "
                          f"no residuals")
    from . import flow
    from .family import version

    bp = run_values(cfg)
    shapes = _output_shapes(family.name, version(), static_part(cfg), bp)
    if cfg.optimizer != "flow":
        return
    size = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes))
    if size > flow.MAX_PARAMETERS:
        raise ConfigError(f"optimizer = 'flow' solves a dense {size} x {size} system per "
                          f"implicit stage; at most {flow.MAX_PARAMETERS} parameters are "
                          f"supported (use a smaller network or optimizer = 'gd')")


def batched_values(cfgs, dtype) -> dict[str, np.ndarray]:
    """Per-run arrays of the batched fields (unset optional fields get a neutral value)."""
    out = {}
    specs = field_specs(type(cfgs[0]))
    for name in batched_names(type(cfgs[0])) + bucketed_names(type(cfgs[0])):
        vals = [getattr(c, name) for c in cfgs]
        source = specs[name].metadata.get("default_from")
        if source:  # unset: the value of another field (data_seed: the run's seed)
            vals = [getattr(c, source) if v is None else v for c, v in zip(cfgs, vals)]
        vals = [0 if v is None else v for v in vals]
        kind = np.int64 if isinstance(vals[0], int) and not isinstance(vals[0], bool) else dtype
        out[name] = np.asarray(vals, dtype=kind)
    return out


def run_values(cfg) -> dict:
    """The batched values of one run, as a family's functions receive them (``bp``): for
    calling ``setup``, ``loss``, ``observe`` ... of a family directly."""
    return {k: v[0] for k, v in batched_values([cfg], np.dtype(cfg.dtype)).items()}


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], tree)


def _pad_to(n: int, multiple: int, pow2: bool) -> int:
    size = 1 << max(0, (n - 1).bit_length()) if pow2 else n
    return -(-max(size, 1) // multiple) * multiple


def _progress(total, desc, enabled, unit):
    """The engine's own bar (None: none; a callable ``progress`` reports to a sweep's
    display instead, see ``twolayer.progress``)."""
    from . import progress

    if callable(enabled) or not progress.wanted(enabled):
        return None
    return progress.bar(total, desc, unit)


def _reporter(progress):
    """The sweep display's callable ``(runs done, runs active)``, or None."""
    return progress if callable(progress) else None


# ---------------------------------------------------------------- the engine
def train_group(family, cfgs, *, progress=None, desc="train", state_file=None) -> xr.Dataset:
    """Train runs that share their static settings in one batched, compiled loop.

    Returns a Dataset with dims ``run`` (in the order of ``cfgs``) and the checkpoint dim
    (``step`` for gradient descent and Adam, ``time`` for gradient flow) plus the family's
    own dims. ``progress``: True/False/None (a bar of its own: see
    ``twolayer.progress.wanted``) or a callable ``(runs done, runs active)`` called between
    chunks of steps (runs done counts a stopped run as 1 and an active one by the fraction of
    its step budget done; under gradient flow only stopped runs). With ``state_file`` (an object with ``load() -> dict | None``, ``save(dict)``
    and ``every`` seconds, e.g. ``twolayer.store.TrainingState``), the loop's state is
    saved between chunks at most every ``every`` seconds, and a saved state is continued
    from: a killed shard resumes mid-run with the same result."""
    runtime.configure()
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
    if cfg0.optimizer == "flow":  # see LANES
        per_dev = max(per_dev, LANES)
    idx = np.arange(_pad_to(per_dev, -(-per_dev // BLOCK), pow2=False) * n_dev)
    idx[idx >= n_runs] = 0
    state, data, info = prog["init"](_take(bp_all, idx))
    data_all = _take(data, slice(0, n_runs))
    info = _take(info, slice(0, n_runs))
    bp = _take(bp_all, idx)
    loop = _loop_flow if cfg0.optimizer == "flow" else _loop_descent
    grid, obs, final = loop(prog, cfg0, state, data, bp, idx, n_runs, n_dev, data_all, bp_all,
                            progress, desc, state_file)
    fin = jax.tree_util.tree_map(np.asarray, prog["finalize"](final["params"], data_all, bp_all))
    if "polish" in prog:
        fin.update(_polished(prog, final["params"], data_all, bp_all))
    return _to_dataset(family, cfg0, grid, obs, info, fin, final, bp_all)


def _loop_descent(prog, cfg0, state, data, bp, idx, n_runs, n_dev, data_all, bp_all, progress,
                  desc, state_file):
    """Gradient descent and Adam: every active run steps together to each checkpoint step,
    where the observables are recorded. Returns (checkpoint steps, observables by name
    (runs, checkpoints, ...), final state of each run)."""
    grid = checkpoint_steps(cfg0.max_steps, cfg0.n_checkpoints)
    ls = LoopState("descent", n_runs, len(grid), idx, state, settled=np.zeros(n_runs, bool))
    resumed = _load(state_file, ls)
    if resumed is not None:
        ls = _on_devices(resumed, n_dev)
        data, bp = _take(data_all, ls.idx), _take(bp_all, ls.idx)
    save = _Saver(state_file)
    bar = _progress(int(grid[-1]), desc, progress, "step")
    report = _reporter(progress)
    while True:
        ls = _step_to(prog, ls, data, bp, grid[ls.checkpoint], bar, save, report, grid[-1])
        ls, alive = _record(ls, prog["observe"](ls.state["params"], data, bp))
        if len(alive) == 0 or ls.checkpoint == len(grid) - 1:
            break
        remaining = (grid[-1] - grid[ls.checkpoint]) * len(ls.idx)
        if len(alive) <= len(ls.idx) // 2 and remaining > 200_000:
            ls, data, bp = _gather(ls, data, bp, alive, n_dev)
        ls = ls._replace(checkpoint=ls.checkpoint + 1)
    if bar is not None:
        bar.close()
    return grid, ls.obs, ls.final


def _step_to(prog, ls, data, bp, target, bar, save, report=None, last=1):
    """Chunks of steps until every active run has reached step ``target``; between chunks
    the progress bar is updated (or ``report`` called: runs done, counting an active run by
    its fraction of the ``last`` step, and runs active) and the loop state saved."""
    state, chunk = ls.state, ls.chunk
    done, now = np.asarray(state["done"]), np.asarray(state["step"])
    while (~done & (now < target)).any():
        t0 = time.perf_counter()
        state = prog["advance"](state, data, bp, target, chunk)
        done, now = np.asarray(state["done"]), np.asarray(state["step"])
        chunk = _next_chunk(chunk, time.perf_counter() - t0)
        ls = ls._replace(state=state, chunk=chunk)
        if bar is not None:
            bar.update(int(now.max()) - bar.n)
            bar.set_postfix(active=int((~done[_unique_positions(ls.idx, ls.n_runs)]).sum()),
                            refresh=False)
        if report is not None:
            real = _unique_positions(ls.idx, ls.n_runs)
            alive = ~done[real]
            frac = np.minimum(now[real][alive] / max(int(last), 1), 1.0).sum()
            report(ls.n_runs - int(alive.sum()) + float(frac), int(alive.sum()))
        save(ls)
    return ls


def _record(ls, observed):
    """Record the observables (by name, batch layout) of checkpoint ``ls.checkpoint``. A run
    that has stopped (every run, at the last checkpoint) is settled, once: it keeps these
    values at the later checkpoints and its state is its final state. Returns the loop state
    (``obs``, ``final``, ``settled`` filled) and the positions of the runs still active."""
    tree_map = jax.tree_util.tree_map
    i, idx = ls.checkpoint, ls.idx
    o = tree_map(np.asarray, observed)
    host = tree_map(np.asarray, ls.state)
    obs, final = ls.obs, ls.final
    if obs is None:
        obs = {k: np.empty((ls.n_runs, ls.n_checkpoints) + v.shape[1:], v.dtype)
               for k, v in o.items()}
        final = tree_map(lambda a: np.empty((ls.n_runs,) + a.shape[1:], a.dtype), host)
    real = _unique_positions(idx, ls.n_runs)
    for k, v in o.items():
        obs[k][idx[real], i] = v[real]
    done = host["done"]
    leaving = real[(done[real] | (i == ls.n_checkpoints - 1)) & ~ls.settled[idx[real]]]
    ls.settled[idx[leaving]] = True
    for k in obs:
        obs[k][idx[leaving], i + 1:] = obs[k][idx[leaving], i][:, None]
    tree_map(lambda f, h: f.__setitem__(idx[leaving], h[leaving]), final, host)
    return ls._replace(obs=obs, final=final), real[~done[real]]


def _gather(ls, data, bp, alive, n_dev):
    """The runs at positions ``alive`` alone in a smaller batch (a power of two per device,
    padded by repeating the first): (loop state, data, batched values)."""
    new = _pad_to(len(alive), n_dev, pow2=True)
    pos = np.concatenate([alive, np.repeat(alive[:1], new - len(alive))])
    return (ls._replace(state=_take(ls.state, pos), idx=ls.idx[pos]), _take(data, pos),
            _take(bp, pos))


def _on_devices(ls, n_dev):
    """A saved descent batch padded (repeating its first position) to a multiple of
    ``n_dev``: it may have been saved by a process with another number of devices."""
    pad = -len(ls.idx) % n_dev
    if not pad:
        return ls
    pos = np.concatenate([np.arange(len(ls.idx)), np.zeros(pad, int)])
    return ls._replace(state=_take(ls.state, pos), idx=ls.idx[pos])


def _loop_flow(prog, cfg0, state, data, bp, idx, n_runs, n_dev, data_all, bp_all, progress,
               desc, state_file):
    """Gradient flow: every run integrates on its own until it stops (chunks of solver
    steps between which the host shows progress and saves the state); then the observables
    of the parameters each run saved at the checkpoint times. A run that stopped early
    keeps its final values at the later checkpoints. Same return as ``_loop_descent``."""
    grid = checkpoint_times(cfg0.max_time, cfg0.n_checkpoints)
    ls = LoopState("flow", n_runs, len(grid), idx, state)
    resumed = _load(state_file, ls)
    if resumed is not None:  # maybe saved from a batch of another layout (another number
        # of devices): each run's state is taken from where that batch held it
        first = {int(r): p for p, r in reversed(list(enumerate(resumed.idx)))}
        pos = np.array([first[int(r)] for r in idx])
        ls = ls._replace(state=_take(resumed.state, pos), chunk=resumed.chunk)
    save = _Saver(state_file)
    real = _unique_positions(idx, n_runs)
    bar = _progress(n_runs, desc, progress, "run")
    report = _reporter(progress)
    while True:
        t0 = time.perf_counter()
        state = prog["advance"](ls.state, data, bp, 0.0, ls.chunk)
        done = np.asarray(state["done"])
        ls = ls._replace(state=state, chunk=_next_chunk(ls.chunk, time.perf_counter() - t0))
        if bar is not None:
            bar.update(int(done[real].sum()) - bar.n)
            t = np.asarray(state["t"])[real]
            bar.set_postfix(t=f"{t[~done[real]].min(initial=np.inf):.3g}", refresh=False)
        if report is not None:
            stopped = int(done[real].sum())
            report(stopped, len(real) - stopped)
        save(ls)
        if done.all():
            break
    if bar is not None:
        bar.close()
    host = jax.tree_util.tree_map(lambda a: np.asarray(a)[real], ls.state)
    # checkpoints after a run stopped hold its final parameters
    later = np.arange(len(grid))[None, :] >= host["next"][:, None]  # (runs, checkpoints)
    saved = jax.tree_util.tree_map(
        lambda buf, p: np.where(later.reshape(later.shape + (1,) * (buf.ndim - 2)), p[:, None],
                                buf), host["saved"], host["params"])
    obs = jax.tree_util.tree_map(np.asarray, prog["observe"](_pad_runs(saved, idx, real),
                                                             data, bp))
    obs = {k: v[real] for k, v in obs.items()}
    obs["step"] = np.where(later, host["step"][:, None], host["saved_step"])
    final = {k: v for k, v in host.items() if k not in ("saved", "saved_step")}
    return grid, obs, final


def _pad_runs(tree, idx, real):
    """Host arrays of the real runs, laid out again like the batch (padding repeats run 0)."""
    where = np.zeros(len(idx), int)
    where[real] = np.arange(len(real))
    return jax.tree_util.tree_map(lambda a: a[where], tree)


def _next_chunk(chunk, elapsed):
    """The next chunk's iteration budget: about 0.5 s of work."""
    return int(np.clip(chunk * 0.5 / max(elapsed, 1e-4), 16, 10_000_000))


def _polished(prog, params, data, bp) -> dict:
    """Observables and final results at the polished end points, prefixed ``polished_``."""
    new, facts = prog["polish"](params, data, bp)
    out = {f"polished_{k}": v for k, v in prog["observe_one"](new, data, bp).items()}
    fin = prog["finalize"](new, data, bp)
    out.update({f"polished_{k}": v for k, v in fin.items() if k != "grad_norm"})
    out.update(facts)
    return jax.tree_util.tree_map(np.asarray, out)


# ---------------------------------------------------------------- the host loop's state
# Layout of the saved loop state (LoopState.to_arrays). State files are temporary (removed
# once their shard is written), so one saved by another version (1: the leaves of a
# positional tuple under numbered keys) is refused with a message and its shard trained
# from the start.
STATE_FORMAT = 2


class LoopState(NamedTuple):
    """The host loop's state between two chunks: all a killed shard needs to continue.

    Runs are numbered 0..n_runs-1 (the order of ``cfgs``); the batch holds them at
    positions, ``idx`` giving each position's run (padding repeats a run; its first copy
    counts, see ``_unique_positions``). Gradient descent and Adam record the observables at
    each checkpoint as they go (``obs``, ``final``, ``settled``, filled in place); gradient
    flow observes at the end."""
    kind: str  # "descent" (gradient descent, Adam) or "flow"
    n_runs: int
    n_checkpoints: int
    idx: np.ndarray  # (batch,) the run at each position
    state: dict  # the batch's stepping state (see _descent, _flow)
    chunk: int = 256  # iterations of the next chunk (see _next_chunk)
    checkpoint: int = 0  # descent: index of the checkpoint being stepped to
    settled: np.ndarray | None = None  # descent (n_runs,): stopped and final values recorded
    obs: dict | None = None  # descent: name -> (n_runs, n_checkpoints, ...); None before the first
    final: dict | None = None  # descent: each run's state once settled (like state, by run)

    def to_arrays(self) -> dict:
        """Host arrays by name (``TrainingState.save``): the scalars, ``idx``, ``settled``,
        ``now`` (the furthest step reached), the trees' leaves by path (``state.params.w``,
        ``final.opt.mu.w``) and the observables (``obs.train_loss``)."""
        out = {"format": STATE_FORMAT, "kind": self.kind, "n_runs": self.n_runs,
               "n_checkpoints": self.n_checkpoints, "chunk": self.chunk,
               "checkpoint": self.checkpoint,
               "now": int(np.asarray(self.state["step"]).max(initial=0)), "idx": self.idx}
        out.update(_named("state", self.state))
        if self.settled is not None:
            out["settled"] = self.settled
        if self.obs is not None:
            out.update({f"obs.{k}": v for k, v in self.obs.items()})
            out.update(_named("final", self.final))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, like: LoopState) -> LoopState:
        """The loop state ``to_arrays`` saved, continuing ``like`` (a fresh state of the same
        loop: it gives the trees' structure). ValueError where it cannot: saved by another
        version, for another loop or with another state layout."""
        if "format" not in arrays or int(arrays["format"]) != STATE_FORMAT:
            raise ValueError("saved by another version of twolayer")
        saved = (str(arrays["kind"]), int(arrays["n_runs"]), int(arrays["n_checkpoints"]))
        if saved != (like.kind, like.n_runs, like.n_checkpoints):
            raise ValueError(f"saved for another loop (kind, runs, checkpoints {saved})")
        obs = {k[4:]: np.array(v) for k, v in arrays.items() if k.startswith("obs.")}
        return cls(like.kind, like.n_runs, like.n_checkpoints, np.asarray(arrays["idx"]),
                   _unnamed("state", arrays, like.state), int(arrays["chunk"]),
                   int(arrays["checkpoint"]),
                   np.array(arrays["settled"]) if "settled" in arrays else None,
                   obs or None, _unnamed("final", arrays, like.state) if obs else None)


def _key(prefix, path) -> str:
    """A leaf's name: its path in the tree after ``prefix``, dot-separated."""
    parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
    return ".".join([prefix, *map(str, parts)])


def _named(prefix, tree) -> dict:
    """A tree's leaves as host arrays by name (see ``_key``)."""
    return {_key(prefix, path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unnamed(prefix, arrays, like):
    """The tree of ``like``'s structure from arrays saved by ``_named`` (copies: the loop
    fills them in place); the leading axis may differ, the rest and the dtypes may not."""
    paths, tree = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for path, ref in paths:
        name = _key(prefix, path)
        a = arrays.get(name)
        if a is None or a.shape[1:] != np.shape(ref)[1:] or a.dtype != ref.dtype:
            raise ValueError(f"saved with another state layout ({name})")
        leaves.append(np.array(a))
    return jax.tree_util.tree_unflatten(tree, leaves)


def _load(state_file, like) -> LoopState | None:
    """The saved loop state that continues ``like``, or None: nothing saved, or a state
    that cannot be continued (said on stderr; the shard trains from the start)."""
    arrays = state_file.load() if state_file is not None else None
    if arrays is None:
        return None
    try:
        return LoopState.from_arrays(arrays, like)
    except ValueError as e:
        print(f"twolayer: the saved training state is not used ({e}); training from the "
              f"start", file=sys.stderr, flush=True)
        return None


class _Saver:
    """save(loop state): to ``state_file`` (if any) at most every ``state_file.every``
    seconds."""

    def __init__(self, state_file):
        self.file, self.at = state_file, time.monotonic()

    def __call__(self, ls: LoopState) -> None:
        if self.file is not None and time.monotonic() - self.at >= self.file.every:
            self.file.save(ls.to_arrays())
            self.at = time.monotonic()


def _unique_positions(idx, n_runs):
    """Positions of the batch that hold a real run (the first copy of each run index)."""
    _, first = np.unique(idx, return_index=True)
    return np.sort(first[idx[first] < n_runs])


def _trend(values, clock, stop) -> np.ndarray:
    """Per run: the least-squares slope of log10(values) against log10(clock) over the last
    TREND_POINTS checkpoint intervals before the run stopped (NaN where fewer than two
    positive checkpoints exist)."""
    out = np.full(values.shape[0], np.nan)
    logc = np.log10(np.where(clock > 0, clock, np.nan))
    for r in range(values.shape[0]):
        upto = np.nonzero(clock <= stop[r])[0]
        pick = upto[-(TREND_POINTS + 1):]
        x, y = logc[pick], values[r, pick]
        ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            out[r] = np.polyfit(x[ok], np.log10(y[ok]), 1)[0]
    return out


def _to_dataset(family, cfg0, grid, obs, info, fin, final_state, bp_all) -> xr.Dataset:
    flow = cfg0.optimizer == "flow"
    dim = "time" if flow else "step"

    def dims(name, lead):
        return lead + family.dims(name.removeprefix("polished_"))

    ds = xr.Dataset(coords={dim: grid, **family.coords(cfg0)})
    for k, v in obs.items():
        ds[k] = (("run", dim) if (flow and k == "step") else dims(k, ("run", dim)), v)
    for k, v in {**info, **fin}.items():
        ds[k] = (dims(k, ("run",)), np.asarray(v))
    # integer labels for the family's index dims, so groups of other sizes (e.g. widths)
    # merge by label with NaN padding
    ds = ds.assign_coords({d: np.arange(n) for d, n in ds.sizes.items() if d not in ds.coords
                           and d != "run"})
    lr = bp_all["learning_rate"]
    stop_step = final_state["step"].astype(np.int64)
    ds["stop_step"] = ("run", stop_step)
    if flow:
        ds["stop_time"] = ("run", final_state["t"])
        ds["rejected_steps"] = ("run", (final_state["attempts"] - stop_step).astype(np.int64))
        stop = final_state["t"]
    else:  # gradient descent's step k sits at flow time learning_rate * k
        ds["time"] = (("run", "step"), np.minimum(grid[None, :], stop_step[:, None]) * lr[:, None])
        ds["stop_time"] = ("run", stop_step * lr)
        stop = stop_step
    ds["diverged"] = ("run", final_state["diverged"].astype(bool))
    converged = (obs["train_loss"][:, -1] < bp_all["loss_tol"]) & ~ds["diverged"].values
    ds["converged"] = ("run", converged)
    status = np.full(len(converged), STATUS.index("max_steps"), np.int8)
    if flow:
        status[final_state["attempts"] < cfg0.max_steps] = STATUS.index("max_time")
        status[final_state["failed"]] = STATUS.index("solver_failed")
    status[converged] = STATUS.index("converged")
    status[final_state["diverged"]] = STATUS.index("diverged")
    ds["status"] = ("run", status)
    ds["status"].attrs.update(flag_values=np.arange(len(STATUS), dtype=np.int8),
                              flag_meanings=" ".join(STATUS))
    if "test_error" in obs:
        ds["trend"] = ("run", _trend(obs["test_error"], np.asarray(grid, float),
                                     np.asarray(stop, float)))
    for k in ds.data_vars:
        label = family.long_name(k) or ENGINE_DESCRIBE.get(k)
        if not label and k.startswith("polished_"):
            base = family.long_name(k[9:]) or ENGINE_DESCRIBE.get(k[9:])
            label = f"{base} at the polished end point" if base else None
        if label:
            ds[k].attrs["long_name"] = label
        var = family.table.get(k.removeprefix("polished_"))
        if var is not None and var.units:
            ds[k].attrs["units"] = var.units
    return ds


# the variables every family's runs get from the engine (a family's variables may rename them)
ENGINE_DESCRIBE = {"stop_step": "updates done when the run stopped (flow: accepted solver steps)",
                   "stop_time": "flow time when the run stopped (gradient descent: "
                                "learning_rate * stop_step)",
                   "time": "flow time (gradient descent: learning_rate * step)",
                   "step": "accepted solver steps",
                   "rejected_steps": "rejected solver steps",
                   "diverged": "the loss became NaN or infinite",
                   "converged": "training loss reached loss_tol",
                   "status": "why the run stopped",
                   "grad_norm": "norm of the final gradient (of the trained parameters)",
                   "trend": "d log10(test error) / d log10(step or time) over the last "
                            f"{TREND_POINTS} checkpoint intervals",
                   "polish_steps_done": "Levenberg-Marquardt iterations of the polish"}
