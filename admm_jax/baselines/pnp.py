"""Plug-and-play ADMM (PnP-ADMM) with a learned Gaussian denoiser as the prox (issue #12).

The comparison the unrolling literature makes: the *same* network as the DU-ADMM prior, but
trained as a plain blind Gaussian denoiser (``admm-jax train --objective denoise``,
``experiments/train_denoiser.sh``), then dropped into ordinary ADMM in place of the proximal
step. Nothing is trained end to end; the only knobs are the penalty ρ and the number of
iterations, tuned per operator on *training* images (:func:`tune_pnp`).

The iteration is exactly :func:`admm_jax.admm.unrolled_admm` (``z⁰ = A⁺y``, ``u⁰ = 0``;
``x ← D(z + u)``, ``z ← (AᵀA + ρI)⁻¹(Aᵀy + ρ(x − u))``, ``u ← u + z − x``; the estimate is
``z``). The denoiser ignores ρ (it is blind: it estimates the noise level itself).

Iteration count: PnP-ADMM with a learned denoiser has no convergence guarantee (the denoiser is
not a proximal operator, nor non-expansive), and in practice its PSNR rises, peaks and may then
drift. So the baseline is run for a *fixed* number of iterations chosen on training images, as
the issue asks ("ρ and iteration count tuned per operator"): :func:`pnp_admm` uses
``unrolled_admm`` (rolled scan) by default. Passing ``tol`` instead runs
:func:`admm_jax.admm.converging_admm` with ``max_iters=num_iters``, which stops each sample once
RMS(x − z) < tol (the repo's usual stopping rule).

The denoiser is any callable ``denoiser(v) -> x`` on (B, H, W, C) float batches in the [0, 1]
domain; :func:`load_denoiser` builds one from a weights folder written by ``train``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.admm import (admm_step, converging_admm, initial_state, unrolled_admm,
                            validate_problem)
from admm_jax.metrics import psnr
from admm_jax.operators.base import LinearOperator, vmap_over_batch

Array = jax.Array
Denoiser = Callable[[Array], Array]

#: the tuning grid of experiments/tune_pnp.py (issue #12)
DEFAULT_RHOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DEFAULT_ITERS = (5, 10, 20, 40)


def load_denoiser(path: str | Path) -> Denoiser:
    """A trained denoiser (``<run>/params`` or a committed weights folder) as a jitted
    ``denoiser(v) -> x``. Any prior loads (a DU-ADMM prior too; its config is not checked)."""
    from admm_jax.train.loop import load_prior

    prior_fn, params, _cfg = load_prior(path)
    return jax.jit(lambda v: prior_fn(params, v))


def pnp_admm(denoiser: Denoiser, op: LinearOperator, y: Any, rho: Array | float, *,
             num_iters: int, tol: float | None = None) -> Array:
    """PnP-ADMM: ADMM whose prox step is ``denoiser``; returns the estimate ``z`` (B, H, W, C).

    Args:
      denoiser: ``denoiser(v) -> x`` on (B, H, W, C) (ρ is not passed to it).
      op, y: operator (shared or one per sample) and measurements, as in
        :func:`admm_jax.admm.unrolled_admm`.
      rho: penalty ρ > 0, scalar or (B,).
      num_iters: the fixed iteration count (``tol=None``), or the cap when ``tol`` is given.
      tol: None (default): exactly ``num_iters`` iterations (``unrolled_admm``, rolled scan).
        A float: ``converging_admm`` with ``max_iters=num_iters``, each sample stops once
        RMS(x − z) < tol.
    """
    prox = lambda v, _rho: denoiser(v)
    if tol is None:
        return unrolled_admm(prox, op, y, rho, num_iters, unroll=1)
    return converging_admm(prox, op, y, rho, tol=tol, max_iters=num_iters).z


def pnp_psnr_trajectory(denoiser: Denoiser, op: LinearOperator, y: Any, rho: Array | float,
                        x_true: Array, num_iters: int) -> Array:
    """PSNR of ``z`` after each of ``num_iters`` PnP-ADMM iterations, shape (num_iters, B).

    Entry ``t − 1`` is the PSNR of ``pnp_admm(..., num_iters=t)``: one run of the largest
    iteration count gives every shorter count of the grid. Traceable (jit it, ρ traced).
    """
    validate_problem(op, y, rho)  # shapes always; rho > 0 and finite y when concrete
    num_iters = _checks.check_int("num_iters", num_iters, minimum=1)
    state = initial_state(op, y)
    batch = state.z.shape[0]
    _checks.check_unit_images("x_true", x_true)
    if tuple(jnp.shape(x_true)) != tuple(state.z.shape):
        raise ValueError(f"x_true must have the shape of the solution, {tuple(state.z.shape)} "
                         f"(one image per sample of y), got {tuple(jnp.shape(x_true))}.")
    rho_b = jnp.broadcast_to(jnp.asarray(rho, state.z.dtype), (batch,))
    aty = vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y)
    prox = lambda v, _rho: denoiser(v)

    def body(st, _):
        new = admm_step(prox, op, aty, rho_b, st)
        return new, psnr(new.z, x_true)

    _, hist = jax.lax.scan(body, state, xs=None, length=num_iters)
    return hist


def resolve_operator(family_or_problem: Any, noise_std: float | None = None):
    """``(kind, name, measure)`` for a problem or family given as an object or a name.

    Names resolve to the paper/extra problems first (:func:`admm_jax.problems.get_problems`:
    pid, bi, si, sr, cs, deblur), then to operator families (:mod:`admm_jax.families`); note
    that "cs" is the Gaussian compressive-sensing *problem*; pass
    ``admm_jax.families.get_family("cs")`` for the random-sign DCT family.
    ``measure(key, images) -> (op, y)``: problems with their own σ unless ``noise_std`` is
    given (SR with the true adjoint), families with ``noise_std`` (required).
    """
    from admm_jax.families import Family, get_family, measure_family
    from admm_jax.problems import Problem, get_problems, measure_indexed

    obj = family_or_problem
    if isinstance(obj, str):
        problems = get_problems()
        try:
            obj = problems[obj] if obj in problems else get_family(obj)
        except ValueError as exc:  # name both kinds of names, not only the families
            raise ValueError(f"unknown problem or operator family {obj!r}; problems: "
                             f"{sorted(problems)}; families: "
                             f"{str(exc).split('choose one of ', 1)[1]}") from None
    if isinstance(obj, Problem):
        prob = obj if noise_std is None else dataclasses.replace(obj, noise_std=float(noise_std))

        def measure(key, images):
            return measure_indexed(prob, key, jnp.arange(images.shape[0]), images)
        return "problem", prob.name, measure
    if isinstance(obj, Family):
        if noise_std is None:
            raise ValueError(f"noise_std is required for the operator family {obj.name!r}")
        if not (math.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        return "family", obj.name, lambda key, images: measure_family(obj, key, images,
                                                                      noise_std)
    raise TypeError(f"family_or_problem must be a Problem, a Family or a name, got "
                    f"{type(family_or_problem).__name__}")


def grid_edges(rhos: Sequence[float], iters: Sequence[int], rho: float, num_iters: int
               ) -> list[str]:
    """Which bounds of a (ρ, iterations) grid the chosen cell lies on (a grid of one value has
    no edge there)."""
    out = []
    for label, values, v in (("rho", rhos, rho), ("iters", iters, num_iters)):
        if len(set(values)) > 1:
            out += [f"{label} min"] if v == min(values) else []
            out += [f"{label} max"] if v == max(values) else []
    return out


def tune_pnp(denoiser: Denoiser, family_or_problem: Any, images: Array,
             noise_std: float | None = None, rhos: Sequence[float] = DEFAULT_RHOS,
             iters: Sequence[int] = DEFAULT_ITERS, key: Array | None = None, *,
             batch_size: int | None = None, progress: bool = True) -> dict:
    """Grid search of ρ and the iteration count of PnP-ADMM by mean PSNR on ``images``.

    Args:
      denoiser: ``denoiser(v) -> x`` on (B, H, W, C).
      family_or_problem: a :class:`~admm_jax.problems.Problem`, a
        :class:`~admm_jax.families.Family`, or a name (see :func:`resolve_operator`).
      images: (N, H, W, C) float in [0, 1], the *training* images to tune on.
      noise_std: measurement noise σ; None for a problem = its own σ (required for families).
      rhos, iters: the grid (iteration counts ≥ 1).
      key: measurement key (one operator and noise draw per image; default PRNGKey(0)).
      batch_size: images per compiled call (default all N at once); N must be a multiple.

    One compiled function per operator structure runs max(iters) iterations with ρ traced, so
    the whole grid costs len(rhos) runs of max(iters) iterations (a tqdm bar over ρ); the PSNR
    after t iterations equals that of ``pnp_admm(..., num_iters=t)``.

    Returns a dict: ``rho``, ``iters``, ``psnr`` (the best cell; ties go to the first in
    row-major order; NaN cells, e.g. a divergent run, never win), ``at_edge`` (which grid
    bounds the best cell sits on, e.g. ``["iters max"]``: widen the grid there), ``start_psnr``
    (mean PSNR of the pinv start ``A⁺y``), ``name``, ``kind`` and ``grid`` = {"rhos": [...],
    "iters": [...], "psnr": len(rhos) × len(iters) nested list of mean PSNR}.
    """
    images = jnp.asarray(images)
    _checks.check_unit_images("images", images)
    rhos = [float(r) for r in rhos]
    for r in rhos:
        _checks.check_positive("rhos", r, "the ADMM penalties of the grid")
    iters = [int(_checks.check_int("iters", t, minimum=1)) for t in iters]
    if not rhos or not iters:
        raise ValueError("rhos and iters must be non-empty")
    key = jax.random.PRNGKey(0) if key is None else key
    kind, name, measure = resolve_operator(family_or_problem, noise_std)
    n = images.shape[0]
    bs = n if batch_size is None else _checks.check_int("batch_size", batch_size, minimum=1)
    if n % bs:
        raise ValueError(f"batch_size={bs} must divide the number of images {n}")
    t_max = max(iters)
    op, y = measure(key, images)

    @jax.jit
    def run(rho, o, yy, x):
        return pnp_psnr_trajectory(denoiser, o, yy, rho, x, t_max)

    @jax.jit
    def start(o, yy, x):
        return psnr(initial_state(o, yy).z, x)

    def chunks():
        for i in range(0, n, bs):
            sl = slice(i, i + bs)
            o = jax.tree_util.tree_map(lambda a: a[sl], op) if op.is_batched else op
            yield o, jax.tree_util.tree_map(lambda a: a[sl], y), images[sl]

    start_psnr = float(np.mean(np.concatenate([np.asarray(start(*c)) for c in chunks()])))
    from tqdm.auto import tqdm

    table = np.full((len(rhos), len(iters)), np.nan)
    for i, rho in enumerate(tqdm(rhos, desc=f"tune PnP {name}", disable=not progress,
                                 unit="rho", dynamic_ncols=True)):
        hist = np.concatenate([np.asarray(run(jnp.asarray(rho, images.dtype), *c))
                               for c in chunks()], axis=1)  # (t_max, N)
        table[i] = [float(np.mean(hist[t - 1])) for t in iters]
    masked = np.where(np.isfinite(table), table, -np.inf)
    bi, bt = np.unravel_index(int(np.argmax(masked)), table.shape)
    return {"name": name, "kind": kind, "rho": rhos[bi], "iters": iters[bt],
            "psnr": float(table[bi, bt]),
            "at_edge": grid_edges(rhos, iters, rhos[bi], iters[bt]), "start_psnr": start_psnr,
            "grid": {"rhos": rhos, "iters": iters, "psnr": table.tolist()}}
