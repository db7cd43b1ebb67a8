"""A tuning-free ρ: a per-iteration penalty schedule learned as a function of the noise level.

A hand-tuned ADMM needs ρ per operator. The general prior instead learns, jointly with its
network, a schedule of T penalties that depends only on the noise std σ of the measurements::

    ρ_t(σ) = exp(a_t + b_t · log((σ + σ₀) / (σ_ref + σ₀))),   t = 1, …, T

(σ₀ = 0.01 keeps σ = 0 finite, σ_ref = 0.05 the middle of the training range), i.e. a power law
in σ per iteration: noisy data wants a larger ρ (trust the prior more), clean data a smaller
one. A call on a new operator then needs only (A, y, σ). ``a_t`` starts at log 0.3 (the
paper's most common ρ) and ``b_t`` at 0, so an untrained rule is the constant ρ = 0.3.

The parameters are a small pytree ``{"log_rho": (T,), "slope": (T,)}`` trained with the prior
(``TrainConfig(rho_rule="learned")``, stored with the prior's weights under ``"rho"``). They
are stored divided by :data:`PARAM_SCALE`: Adam moves every parameter by about the learning
rate per step, which suits network weights but would let log ρ move only ~0.5 in a few
thousand fine-tuning steps; the scale makes the rule's steps 20× larger.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from admm_jax import _checks

Array = jax.Array

SIGMA_FLOOR = 0.01
SIGMA_REF = 0.05
PARAM_SCALE = 20.0


def init_rho_rule(num_iters: int, rho: float = 0.3) -> dict[str, Array]:
    """Parameters of the constant schedule ``rho`` over ``num_iters`` (>= 1) iterations."""
    num_iters = _checks.check_int("num_iters", num_iters, minimum=1)
    _checks.check_positive("rho", rho, "the constant penalty the rule starts from")
    return {"log_rho": jnp.full((num_iters,), math.log(rho) / PARAM_SCALE, jnp.float32),
            "slope": jnp.zeros((num_iters,), jnp.float32)}


def rho_schedule(params: Any, sigma: Array | float) -> Array:
    """The (T, B) schedule for noise levels ``sigma`` (scalar or (B,), image range [0, 1]).

    A scalar ``sigma`` gives (T, 1), which broadcasts over any batch in :func:`rho_for_batch`.
    A concrete ``sigma`` outside [0, 1] is refused (below −σ₀ it gave NaN).
    """
    if jnp.ndim(sigma) > 1:
        raise ValueError(f"sigma must be one noise level or one per sample (B,), got shape "
                         f"{jnp.shape(sigma)}.")
    _checks.check_values_in_range("sigma", sigma, 0.0, 1.0,
                                  "noise std in the [0, 1] image range")
    sigma = jnp.atleast_1d(jnp.asarray(sigma, jnp.float32))
    s = jnp.log((sigma + SIGMA_FLOOR) / (SIGMA_REF + SIGMA_FLOOR))
    a = PARAM_SCALE * params["log_rho"][:, None]
    b = PARAM_SCALE * params["slope"][:, None]
    return jnp.exp(a + b * s[None, :])


def rho_for_batch(params: Any, sigma: Array | float, batch: int,
                  num_iters: int | None = None) -> Array:
    """The schedule as ``unrolled_admm`` takes it: (T, batch).

    ``num_iters``: run length; a multiple k of the schedule's length P repeats the schedule
    k times (the "cycle" long-run rule: the scan state carries on), default P.
    """
    sched = rho_schedule(params, sigma)
    period = sched.shape[0]
    t = period if num_iters is None else int(num_iters)
    if t < 1 or t % period:
        raise ValueError(f"num_iters must be a multiple of the learned schedule's length "
                         f"{period}, got {num_iters}")
    return jnp.broadcast_to(jnp.tile(sched, (t // period, 1)), (t, batch))
