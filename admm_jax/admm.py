"""ADMM for ``min_x ½‖y − A x‖² + φ(x)`` with any proximal step, over batches.

Both solvers are pure functions of a batch of B problems. They know nothing of networks: the
prior enters only through ``prox``.

Variables and sign convention (as in the released code, spec §4.1; ``u`` is minus the paper's
scaled dual ``U``)::

    z⁰ = A⁺ y,   u⁰ = 0
    x ← prox(z + u, ρ)                      # the prior step ("X-update")
    z ← (AᵀA + ρI)⁻¹ (Aᵀy + ρ (x − u))      # the data step, exact (operator.solve)
    u ← u + z − x

Shapes: images ``(B, H, W, C)``; ``y`` a batch of measurements (leading axis B; a tuple of such
arrays for a :class:`~admm_jax.operators.SelectOperator`); ``rho`` a scalar or ``(B,)``; ``op`` a
single operator shared by the batch or a batch of operators (leaves with leading axis B).

``prox(v, rho)`` receives ``v`` of shape (B, H, W, C) and ``rho`` of shape (B,) and returns x of
shape (B, H, W, C). A learned prior simply ignores ``rho``; the wavelet-ℓ1 prox uses it as the
threshold ``λ/ρ``.

The returned estimate is ``z`` (it satisfies the measurement model best), as in the paper.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.metrics import psnr
from admm_jax.operators.base import LinearOperator, vmap_over_batch
from admm_jax.operators.custom import check_linearity

Array = jax.Array
Prox = Callable[[Array, Array], Array]


class ADMMState(NamedTuple):
    """ADMM iterates, each (B, H, W, C)."""

    x: Array
    z: Array
    u: Array


class ADMMResult(NamedTuple):
    """Output of :func:`converging_admm`.

    z, x, u: final iterates (B, H, W, C); ``z`` is the estimate.
    iterations: (B,) int32, iterations each sample executed (stops on its own).
    history: dict of (max_iters, B) float arrays, NaN after a sample stopped:
      ``rms_xz`` = RMS(x − z) after each iteration (the stopping quantity),
      ``objective`` = ½‖y − A x‖² (data term at x), ``psnr`` of clip(z) if ``x_true`` was given.
    """

    z: Array
    x: Array
    u: Array
    iterations: Array
    history: dict[str, Array]


# --------------------------------------------------------------------------- building blocks
def _batch_size(y: Any) -> int:
    return jax.tree_util.tree_leaves(y)[0].shape[0]


def _as_batch_rho(rho: Array | float, batch: int, dtype: Any) -> Array:
    rho = jnp.asarray(rho, dtype)
    if rho.ndim == 0:
        return jnp.full((batch,), rho, dtype)
    if rho.shape != (batch,):
        raise ValueError(f"rho must be a scalar or have shape ({batch},), got {rho.shape}")
    return rho


def _as_schedule(rho: Array | float, num_iters: int, batch: int, dtype: Any) -> Array:
    """ρ as a (T, B) schedule: a scalar or (B,) is repeated over the T iterations."""
    rho = jnp.asarray(rho, dtype)
    if rho.ndim == 2:
        if rho.shape not in ((num_iters, batch), (num_iters, 1)):
            raise ValueError(f"a rho schedule must have shape (num_iters, batch) = "
                             f"({num_iters}, {batch}) or ({num_iters}, 1), got {rho.shape}")
        return jnp.broadcast_to(rho, (num_iters, batch))
    return jnp.broadcast_to(_as_batch_rho(rho, batch, dtype), (num_iters, batch))


def _check_batch_images(op: LinearOperator, name: str, x: Any, batch: int) -> None:
    """``x`` must be a float batch of images ``(B,) + op.in_shape`` with y's batch size B."""
    op.check_image(x, name)
    expected = (batch,) + tuple(op.in_shape)
    if tuple(jnp.shape(x)) != expected:
        raise ValueError(f"{name} must have shape (B,) + in_shape = {expected} (one image per "
                         f"sample of y), got {tuple(jnp.shape(x))}.")


def validate_problem(op: LinearOperator, y: Any, rho: Array | float) -> None:
    """Raise clear errors for inconsistent inputs (shapes always; values when concrete).

    An operator without a hand-written adjoint (or built from one) must be linear: checked
    once per operator structure on random inputs (:func:`~admm_jax.operators.custom.
    check_linearity`; skipped when the operator's arrays are traced).
    """
    if not isinstance(op, LinearOperator):
        raise TypeError(f"op must be a LinearOperator, got {type(op).__name__}")
    check_linearity(op)
    leaves = jax.tree_util.tree_leaves(y)
    if not leaves:
        raise ValueError("y is empty")
    if not all(hasattr(leaf, "ndim") for leaf in leaves):
        raise TypeError(f"y must be an array (B,) + {op.out_shape} (or a tuple of arrays for an "
                        f"operator with several measurements), got a {type(y).__name__} of "
                        f"Python numbers; convert it with jnp.asarray.")
    batch = leaves[0].shape[0] if leaves[0].ndim else None
    expected = op.out_shape
    if hasattr(op, "groups") and hasattr(op, "sizes"):  # OperatorGroups: one entry per group
        _validate_grouped(op, y)
        _checks.check_positive("rho", rho, "the ADMM penalty")
        return
    if isinstance(expected[0], tuple):  # SelectOperator: one slot per branch
        if not isinstance(y, (tuple, list)) or len(y) != len(expected):
            raise ValueError(f"y must be a tuple of {len(expected)} measurement batches, one "
                             f"per operator of the {type(op).__name__} (its measurements have "
                             f"shapes {list(expected)})")
        pairs = list(zip(y, expected))
    else:
        pairs = [(y, expected)]
    for k, (yk, shape_k) in enumerate(pairs):
        name = "y" if len(pairs) == 1 else f"y[{k}]"
        _checks.check_float(name, yk)
        if jnp.ndim(yk) != len(shape_k) + 1 or tuple(jnp.shape(yk)[1:]) != tuple(shape_k):
            hint = ""
            if tuple(jnp.shape(yk)) == tuple(shape_k):
                hint = ("; either y lacks its batch axis (give y[None] for one sample), or the "
                        "operator's arrays hold one operator per sample and it must be built "
                        "as a batch (e.g. FunctionOperator(..., batched=True))")
            raise ValueError(
                f"{name} has shape {tuple(jnp.shape(yk))}, expected (batch,) + {tuple(shape_k)} "
                f"for {type(op).__name__} with in_shape {op.in_shape}{hint}")
        if jnp.shape(yk)[0] != batch:
            raise ValueError("all measurement slots must share the batch size")
        _checks.check_finite(name, yk)
    if op.is_batched and op.batch_shape[0] != batch:
        raise ValueError(f"{type(op).__name__} is a batch of {op.batch_shape[0]} operators (the "
                         f"leading axis of its arrays) but y has a batch of {batch} measurements; "
                         f"give one operator per measurement, or one unbatched operator for all")
    _checks.check_positive("rho", rho, "the ADMM penalty")


def _validate_grouped(op: Any, y: Any) -> None:
    if not isinstance(y, (tuple, list)) or len(y) != len(op.groups):
        raise ValueError(f"y must be a tuple of {len(op.groups)} measurement batches, one per "
                         f"group of the OperatorGroups ({', '.join(op.names)})")
    for name, yg, sub, n in zip(op.names, y, op.groups, op.sizes):
        validate_problem(sub, yg, 1.0)
        if jax.tree_util.tree_leaves(yg)[0].shape[0] != n:
            raise ValueError(f"y for group {name!r} has batch "
                             f"{jax.tree_util.tree_leaves(yg)[0].shape[0]}, expected {n}")


def _per_sample(rho: Array, like: Array) -> Array:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like`` (B, ...)."""
    return rho.reshape((-1,) + (1,) * (like.ndim - 1))


def initial_state(op: LinearOperator, y: Any) -> ADMMState:
    """``z⁰ = A⁺ y``, ``u⁰ = 0``, ``x⁰ = z⁰`` (x⁰ is never used by the iteration).

    ``y``: a batch of measurements, (B,) + ``op.out_shape``; returns an :class:`ADMMState`
    whose ``x``, ``z``, ``u`` have shape (B,) + ``op.in_shape`` (images: (B, H, W, C))."""
    z0 = vmap_over_batch(lambda o, yy: o.pinv(yy), op, y)
    return ADMMState(x=z0, z=z0, u=jnp.zeros_like(z0))


def data_step(op: LinearOperator, aty: Array, v: Array, rho: Array) -> Array:
    """The exact Z-update ``(AᵀA + ρI)⁻¹ (Aᵀy + ρ v)`` for a batch (rho: (B,))."""
    rhs = aty + _per_sample(rho, v) * v
    return vmap_over_batch(lambda o, b, r: o.solve(b, r), op, rhs, rho)


def admm_step(prox: Prox, op: LinearOperator, aty: Array, rho: Array,
              state: ADMMState) -> ADMMState:
    """One full ADMM iteration (x, then z, then u). The iterates keep ``state.z``'s dtype: a
    prox or operator computing in another precision (a float32 network in a float64 solve, a
    bfloat16 mask) has its result cast back, so that the scan's carry keeps one type."""
    dtype = state.z.dtype
    x = prox(state.z + state.u, rho)
    if jnp.shape(x) != state.z.shape:
        raise ValueError(f"prox(v, rho) returned shape {jnp.shape(x)}; it must return the shape "
                         f"of v, {state.z.shape} (B, H, W, C).")
    x = jnp.asarray(x).astype(dtype)
    z = data_step(op, aty, x - state.u, rho).astype(dtype)
    u = state.u + z - x
    return ADMMState(x=x, z=z, u=u)


def _rms(a: Array) -> Array:
    return jnp.sqrt(jnp.mean(jnp.square(a), axis=tuple(range(1, a.ndim))))


def data_objective(op: LinearOperator, y: Any, x: Array) -> Array:
    """½‖y − A x‖² per sample, shape (B,)."""
    def one(o: LinearOperator, yy: Any, xx: Array) -> Array:
        sq = jax.tree_util.tree_map(lambda a, b: jnp.sum(jnp.square(a - b)), yy, o.apply(xx))
        return 0.5 * sum(jax.tree_util.tree_leaves(sq))

    return vmap_over_batch(one, op, y, x)


def default_unroll(num_iters: int, backend: str | None = None) -> int:
    """Scan unrolling used when ``unroll="auto"``: rolled (1) on CPU, full (T) elsewhere.

    CPU: the rolled scan compiles one copy of the iteration instead of T: XLA compile 7.7–8.2 s
    instead of 12.5–12.8 s for the paper prior's training step at width 0.25, for steps 5–9 %
    slower than fully unrolled ones (BENCHMARKS.md, afternoon headline; pass ``unroll=T`` for
    long CPU trainings). A rolled scan is only this fast since the priors' convolutions state
    their own gradients (:mod:`admm_jax.priors.conv`); before, XLA:CPU ran the gradient
    convolutions inside the loop through its generic loop emitter, 12.7–17.5× slower.
    GPU/TPU: full unrolling, measured 19 % faster on an H100 (32.9 vs 40.6 ms per training
    step). ``backend``: default ``jax.default_backend()``.
    """
    backend = backend or jax.default_backend()
    return 1 if backend == "cpu" else max(1, int(num_iters))


# --------------------------------------------------------------------------- solvers
def unrolled_admm(prox: Prox, op: LinearOperator, y: Any, rho: Array | float, num_iters: int,
                  *, z0: Array | None = None, unroll: int | bool | str = "auto",
                  remat: bool = False, return_trajectory: bool = False,
                  restart_every: int | None = None,
                  validate: bool = True) -> Array | tuple[Array, ADMMState]:
    """Exactly ``num_iters`` ADMM iterations with ``lax.scan``; differentiable end to end.

    Args:
      prox: ``prox(v, rho) -> x`` on (B, H, W, C) batches (see module docstring).
      op: operator (shared) or batch of operators.
      y: measurements, leading axis B.
      rho: penalty, > 0: a scalar, (B,) (one per sample), or a schedule of shape (T, B) or
        (T, 1) (iteration t uses ``rho[t]``, e.g. from :class:`~admm_jax.rho_rules.LearnedRho`).
      num_iters: T, the number of iterations (static).
      z0: optional initial z (B, H, W, C); default ``A⁺ y``.
      unroll: scan unrolling (int, True/False) or "auto" (see :func:`default_unroll`).
      remat: rematerialise each iteration in the backward pass (``jax.checkpoint``): memory
        grows with one iteration instead of T, at about one extra forward pass. With
        ``unroll="auto"`` this also rolls the scan (unroll=1): in a fully unrolled scan XLA is
        free to schedule all recomputations at once and no memory is saved (measured,
        BENCHMARKS.md).
      return_trajectory: also return the stacked iterates (T, B, H, W, C) of x, z and u.
      restart_every: if given (R >= 1), the scaled dual u is reset to 0 before iterations R,
        2R, ...: the run is T/R blocks, each started from the previous block's z like a fresh
        solve with ``z0``. This lets a prior trained with an R-step ρ schedule run longer
        (the schedule tiled, as :meth:`~admm_jax.pretrained_priors.PretrainedPrior.solve`
        does for the general prior; RESULTS.md §7).
      validate: run the input checks (they are skipped automatically on traced values).

    Returns:
      ``z_T`` (B, H, W, C), or ``(z_T, ADMMState(x=(T,...), z=(T,...), u=(T,...)))``.
    """
    num_iters = _checks.check_int("num_iters", num_iters, minimum=1)
    if validate:
        validate_problem(op, y, rho)
    state = initial_state(op, y)
    if z0 is not None:
        _check_batch_images(op, "z0", z0, state.z.shape[0])
        state = ADMMState(x=z0, z=z0, u=jnp.zeros_like(z0))
    batch = state.z.shape[0]
    rho_t = _as_schedule(rho, num_iters, batch, state.z.dtype)
    aty = vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y)
    if restart_every is not None:
        restart_every = _checks.check_int("restart_every", restart_every, minimum=1)
    restarts = np.zeros(num_iters, bool)  # static: where u is reset before the step
    if restart_every is not None:
        restarts[restart_every::restart_every] = True

    def body(carry: ADMMState, xs: tuple[Array, Array]) -> tuple[ADMMState, ADMMState | None]:
        rho_b, restart = xs
        if restart_every is not None:
            carry = carry._replace(u=jnp.where(restart, jnp.zeros_like(carry.u), carry.u))
        new = admm_step(prox, op, aty, rho_b, carry)
        return new, (new if return_trajectory else None)

    if remat:
        body = jax.checkpoint(body)
    if unroll == "auto":
        n_unroll = 1 if remat else default_unroll(num_iters)
    else:
        n_unroll = unroll
    final, traj = jax.lax.scan(body, state, xs=(rho_t, jnp.asarray(restarts)),
                               length=num_iters, unroll=n_unroll)
    if return_trajectory:
        return final.z, traj
    return final.z


def converging_admm(prox: Prox, op: LinearOperator, y: Any, rho: Array | float, *,
                    tol: float | Array, max_iters: int, x_true: Array | None = None,
                    z0: Array | None = None, validate: bool = True) -> ADMMResult:
    """ADMM until each sample's RMS(x − z) < ``tol`` after a full iteration, or ``max_iters``.

    Every sample stops on its own: once converged, its iterates are frozen and its history
    entries are NaN. The iteration count is the number of executed iterations, i.e. the index
    of the iteration at which the rule fired plus one, or ``max_iters`` (spec §4.3).

    Args:
      prox: ``prox(v, rho) -> x`` on (B, H, W, C) batches (see module docstring).
      op: operator (shared) or batch of B operators.
      y: measurements, (B,) + ``op.out_shape``.
      rho: penalty, > 0: a scalar or (B,) (one per sample), fixed over the iterations.
      tol: stopping tolerance on RMS(x − z) in the [0, 1] image domain; scalar or (B,).
      max_iters: iteration cap (static).
      x_true: optional ground truth (B, H, W, C) for the PSNR history.
      z0: optional initial z (B, H, W, C); default ``A⁺ y``.
      validate: check shapes, dtypes and values first (skip only inside your own checks).
    Returns: :class:`ADMMResult`: ``z`` (B, H, W, C), per-sample ``iterations`` (B,), and
    per-iteration histories (max_iters, B) of RMS(x − z), ½‖y − Ax‖² and, with ``x_true``,
    PSNR. Not reverse-differentiable (a ``while_loop`` with a data-dependent stop): for
    gradients use :func:`unrolled_admm`.
    """
    max_iters = _checks.check_int("max_iters", max_iters, minimum=1)
    if validate:
        validate_problem(op, y, rho)
        _checks.check_positive("tol", tol, "the stopping tolerance on RMS(x - z)")
    state = initial_state(op, y)
    if z0 is not None:
        _check_batch_images(op, "z0", z0, state.z.shape[0])
        state = ADMMState(x=z0, z=z0, u=jnp.zeros_like(z0))
    if x_true is not None:
        _check_batch_images(op, "x_true", x_true, state.z.shape[0])
    batch = state.z.shape[0]
    dtype = state.z.dtype
    rho_b = _as_batch_rho(rho, batch, dtype)
    if jnp.ndim(tol) > 1 or (jnp.ndim(tol) == 1 and jnp.shape(tol)[0] != batch):
        raise ValueError(f"tol must be a scalar or one per sample ({batch},), got shape "
                         f"{jnp.shape(tol)}.")
    tol_b = jnp.broadcast_to(jnp.asarray(tol, dtype), (batch,))
    aty = vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y)
    nan_hist = jnp.full((max_iters, batch), jnp.nan, dtype)
    history = {"rms_xz": nan_hist, "objective": nan_hist}
    if x_true is not None:
        history["psnr"] = nan_hist

    def cond(carry):
        t, _, active, _, _ = carry
        return (t < max_iters) & jnp.any(active)

    def body(carry):
        t, st, active, iters, hist = carry
        new = admm_step(prox, op, aty, rho_b, st)
        keep = _per_sample(active, st.z)
        st = ADMMState(*(jnp.where(keep, n, o) for n, o in zip(new, st)))
        rms = _rms(new.x - new.z)
        record = {"rms_xz": rms, "objective": data_objective(op, y, new.x)}
        if x_true is not None:
            record["psnr"] = psnr(new.z, x_true)
        hist = {k: hist[k].at[t].set(jnp.where(active, record[k], jnp.nan)) for k in hist}
        iters = jnp.where(active, t + 1, iters)
        active = active & ~(rms < tol_b)
        return t + 1, st, active, iters, hist

    init = (jnp.asarray(0, jnp.int32), state, jnp.ones((batch,), bool),
            jnp.zeros((batch,), jnp.int32), history)
    _, final, _, iters, hist = jax.lax.while_loop(cond, body, init)
    return ADMMResult(z=final.z, x=final.x, u=final.u, iterations=iters, history=hist)
