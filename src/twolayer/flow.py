"""Gradient flow to its limit: d theta / dt = -R grad L(theta), integrated by implicit,
adaptive Runge-Kutta solvers of diffrax (``optimizer = "flow"``).

Why implicit: near the end of training the Hessian of the loss has eigenvalues from about
1e-6 to about 10, and the loss falls like a power of t. An explicit method's step is bound
by the largest eigenvalue (h < ~3 / lambda_max); an L-stable implicit method takes steps
that grow with t, and reaches t = 1e10 in a few thousand steps.

Time. R is the diagonal of per-parameter rates: a parameter's step size over
``learning_rate`` (1 for every parameter unless a family gives some parameters their own
step, e.g. a frozen output layer: 0). So gradient descent's step k sits at flow time
t = learning_rate * k, in the units of the loss the run uses.

Two solvers, one after the other (each run switches on its own): ``solver`` (default
Kvaerno5, 5th order) while the loss is above ``tail_switch`` times its initial value (the
escape from a small initialization: exponential growth over ~log(1/init_scale) / |g| time
units, where a high order pays), then ``tail_solver`` (default Kvaerno3) for the approach
to the limit (its chord iterations converge for very large steps, where Kvaerno5's often
fail). Measured on fig4's setting (n = 6, init 1e-20, rtol 1e-8): Kvaerno3 alone took
~11,600 steps per run, 9,100 of them in the escape; Kvaerno5 alone ~2,000 accepted plus ~600
rejected (failed stage solves) with outliers at 12,000; Kvaerno5 then Kvaerno3 ~3,100.

Error control (per step, PID controller, rms norm): the error of component i is measured
against ``atol_eff + rtol * |theta_i|`` with ``atol_eff = min(atol, rtol * max_j
|theta_j|)``. While the parameters are small (the escape from init 1e-20) this is relative
to the size of the whole parameter vector, so the escape is resolved the same way at every
init scale; once they are of order ``atol / rtol`` it is the usual mixed absolute/relative
control. (A plain atol would be meaningless at 1e-20; atol = 0 makes components that cross
zero thrash the step size.)

Linear algebra. Each implicit stage solves (I - gamma h J) x = b with the Jacobian J of the
vector field, a dense P x P matrix (P parameters). XLA's CPU LAPACK routines deadlocked
when batched under ``shard_map`` on several host devices, so the solve here is a plain-XLA
Gauss-Jordan elimination with partial pivoting (``GaussJordan``): fine for the tens to a few
hundred parameters of the studies' networks; its cost grows like P^3 per step.
"""
from __future__ import annotations

import diffrax
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import lineax as lx
from lineax.internal import pack_structures, transpose_packed_structures, unravel_solution

from .linalg import gauss_jordan_inverse

SOLVERS = {"kvaerno3": diffrax.Kvaerno3, "kvaerno4": diffrax.Kvaerno4,
           "kvaerno5": diffrax.Kvaerno5, "implicit_euler": diffrax.ImplicitEuler,
           "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}
PCOEFF, ICOEFF = 0.3, 0.4  # PI step-size control, as diffrax recommends for stiff problems
KAPPA = 0.1  # chord iterations: stop when the estimated remaining error is below kappa
DT_FLOOR = 1e-12  # a step below this times max(t, first checkpoint time): the solver failed
MAX_PARAMETERS = 2048  # dense P x P solves beyond this are refused (cost ~ P^3 per step)


class GaussJordan(lx.AbstractLinearSolver):
    """A lineax linear solver for small square systems: the inverse by
    ``gauss_jordan_inverse`` (no LAPACK), reused for every right-hand side."""

    def init(self, operator, options):
        if operator.in_size() != operator.out_size():
            raise ValueError("GaussJordan needs a square operator")
        return (gauss_jordan_inverse(operator.as_matrix()), pack_structures(operator),
                eqxi.Static(False))

    def compute(self, state, vector, options):
        inverse, packed, transposed = state
        # flattened by hand: lineax's own check of the vector's structure compares shapes
        # with their sharding, which differs spuriously under shard_map
        flat = jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree_util.tree_leaves(vector)])
        x = (inverse.T if transposed.value else inverse) @ flat
        ok = jnp.all(jnp.isfinite(x))
        return (unravel_solution(x, packed),
                lx.RESULTS.where(ok, lx.RESULTS.successful, lx.RESULTS.singular), {})

    def transpose(self, state, options):
        inverse, packed, transposed = state
        return (inverse, transpose_packed_structures(packed),
                eqxi.Static(not transposed.value)), {}

    def conj(self, state, options):  # real matrices only
        return state, {}

    def assume_full_rank(self):
        return True


def effective_atol(y, rtol, atol):
    """min(atol, rtol * max_i |y_i|): the absolute part of the error scale (module doc)."""
    size = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(y)]))
    return jnp.minimum(atol, rtol * size)


def controller(rtol, atol):
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=PCOEFF, icoeff=ICOEFF)


def solver(name: str, rtol, atol):
    """The diffrax solver ``name`` with chord iterations that solve through
    ``GaussJordan``, to the step's tolerances."""
    cls = SOLVERS[name]
    if not issubclass(cls, diffrax.AbstractImplicitSolver):
        return cls()
    root = diffrax.VeryChord(rtol=rtol, atol=atol, kappa=KAPPA, linear_solver=GaussJordan())
    return cls(root_finder=root)


def vector_field(loss):
    """The diffrax term of d theta / dt = -R grad L(theta); ``loss(params, data)``, and the
    term's args are ``(data, rates)`` with ``rates`` a pytree like the parameters."""
    def field(t, y, args):
        data, rates = args
        grad = jax.grad(loss)(y, data)
        return jax.tree_util.tree_map(lambda r, g: -r * g, rates, grad)

    return diffrax.ODETerm(field)


def initial_step(term, y, args, rtol, atol, order):
    """diffrax's initial step-size selection (Hairer's rule) for this run."""
    t0 = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(y)))
    func = lambda terms, t, y, args: terms.vf(t, y, args)  # noqa: E731
    t1, _ = controller(rtol, effective_atol(y, rtol, atol)).init(term, t0, t0, y, None, args,
                                                                 func, order)
    return t1 - t0


def attempt(term, name, y, t, dt, target, args, errors, rtol, atol):
    """One step attempt of solver ``name`` from (t, y) with proposed size ``dt``, clipped so
    as not to pass ``target``. Returns ``(accepted, y1, t1, next_dt, errors)``; ``errors``
    is the PID controller's memory (two scalars). A failed stage solve is a rejection."""
    atol_eff = effective_atol(y, rtol, atol)
    ctrl = controller(rtol, atol_eff)
    sol = solver(name, rtol, atol_eff)
    h = jnp.minimum(dt, target - t)
    t1 = t + h
    state = sol.init(term, t, t1, y, args)
    y1, y_error, _, _, result = sol.step(term, t, t1, y, args, state, False)
    keep, nt0, nt1, _, (e1, e2, _), _ = ctrl.adapt_step_size(
        t, t1, y, y1, args, y_error, sol.order(term), (errors[0], errors[1], False))
    keep = keep & (result == diffrax.RESULTS.successful)
    next_dt = nt1 - nt0
    # a step shortened to land on a checkpoint says nothing against the size proposed
    # before it: keep that size for the next step
    next_dt = jnp.where(keep & (h < dt), jnp.maximum(next_dt, dt), next_dt)
    return keep, y1, t1, next_dt, (e1, e2)
