"""Named inverse problems: measurement models ``y = A x + σ ξ``.

A :class:`Problem` says only how to draw an operator ``A`` for an image shape and how much
Gaussian noise to add (σ, ``noise_std``, in the [0, 1] image domain). How each *method* solves it
(ρ, tolerance, iteration cap, wavelet λ) and the test-time super-resolution adjoint of the
paper's protocols are settings of the methods, kept per preset in :mod:`admm_jax.presets`.

The paper's four problems are ``pid`` (pixelwise inpainting-denoising: half the pixels dropped,
σ = 0.1), ``bi`` (a centred block of 30 % of the side missing), ``si`` (10 scattered boxes of
10 % of the side) and ``sr`` (×2 box downsampling, true adjoint); beyond it, ``cs`` (Gaussian
compressive sensing, 10 %: a dense 1229 × 12288 matrix per 64×64 image, whose draw and
eigendecomposition cost seconds per image on a CPU), ``cs_dct`` (structured compressive sensing,
10 %: random signs, an orthonormal DCT and a random subset of the coefficients, ``AAᵀ = I``
like a Gaussian matrix with orthonormal rows, two DCTs per product; practical at 500 images)
and ``deblur`` (Gaussian blur of 1.5 px, σ = 0.01).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from admm_jax import _checks
from admm_jax.operators import (
    BoxDownsample,
    LinearOperator,
    SelectOperator,
    block_mask,
    gaussian_blur,
    gaussian_cs,
    pixelwise_mask,
    scattered_mask,
    subsampled_dct,
)

Array = jax.Array
IMAGE_SHAPE = (64, 64, 3)


@dataclass(frozen=True)
class Problem:
    """A measurement model ``y = A x + σ ξ``.

    ``make_operator(key, image_shape)`` returns ONE operator for one (H, W, C) image; batch it
    with ``jax.vmap`` over keys (see :func:`measure`). ``noise_std`` is σ in the [0, 1] domain.
    """

    name: str
    title: str
    make_operator: Callable[[Array, tuple[int, int, int]], LinearOperator]
    noise_std: float
    in_paper: bool = True


def _pid(key, shape):
    return pixelwise_mask(key, shape, drop_prob=0.5)


def _si(key, shape):
    return scattered_mask(key, shape, box_size=max(1, int(0.1 * shape[0])), num_boxes=10)


def _bi(_key, shape):
    return block_mask(shape, box_size=int(0.3 * shape[0]))


def _sr(_key, shape):
    return BoxDownsample(in_shape=tuple(shape), factor=2)


def _cs(key, shape):
    return gaussian_cs(key, shape, ratio=0.1)


def _cs_dct(key, shape):
    return subsampled_dct(key, shape, ratio=0.1)


def _deblur(_key, shape):
    return gaussian_blur(shape, sigma=1.5, rcond=0.05)


_PROBLEMS = {
    "pid": Problem("pid", "pixelwise inpainting-denoising", _pid, 0.1),
    "bi": Problem("bi", "blockwise inpainting", _bi, 0.0),
    "si": Problem("si", "scattered inpainting", _si, 0.0),
    "sr": Problem("sr", "super-resolution x2", _sr, 0.0),
    "cs": Problem("cs", "compressive sensing 10%", _cs, 0.0, in_paper=False),
    "cs_dct": Problem("cs_dct", "structured compressive sensing 10% (random-sign DCT)",
                      _cs_dct, 0.0, in_paper=False),
    "deblur": Problem("deblur", "Gaussian deblurring", _deblur, 0.01, in_paper=False),
}
PAPER_PROBLEMS = ("pid", "bi", "si", "sr")


def get_problems() -> dict[str, Problem]:
    """All named problems (a fresh dict: name -> :class:`Problem`)."""
    return dict(_PROBLEMS)


def get_problem(name: str) -> Problem:
    """The problem ``name`` (one of :func:`get_problems`)."""
    if name not in _PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {sorted(_PROBLEMS)}")
    return _PROBLEMS[name]


# --------------------------------------------------------------------------- measurements
def _check_images(images: Array) -> None:
    """Ground truth for a measurement: a float batch (B, H, W, C) in [0, 1] (uint8 refused)."""
    _checks.check_unit_images("images", images)
    if jnp.ndim(images) != 4:
        raise ValueError(f"images must be a batch (B, H, W, C), got shape {jnp.shape(images)}; "
                         f"add a leading axis for one image (x[None]).")


def _measure_one(problem: Problem, key: Array, x: Array) -> tuple[LinearOperator, Array]:
    """One image (H, W, C): its operator from ``key`` and ``y = A x + σ ξ``."""
    k_op, k_noise = jax.random.split(key)
    op = problem.make_operator(k_op, tuple(x.shape))
    y = op.apply(x)
    if problem.noise_std > 0:
        y = y + problem.noise_std * jax.random.normal(k_noise, y.shape, y.dtype)
    return op, y


def measure(problem: Problem, key: Array, images: Array) -> tuple[LinearOperator, Array]:
    """Draw one operator per image and measure: returns (batch of operators, y).

    images: (B, H, W, C) in [0, 1]. Each sample gets its own operator and noise from
    ``jax.random.split(key, B)[i]`` (pass different keys per batch; see :func:`measure_indexed`
    for draws that do not depend on the batch composition).
    """
    _check_images(images)
    batch = images.shape[0]
    keys = jax.random.split(key, batch)

    return jax.vmap(lambda k, x: _measure_one(problem, k, x))(keys, images)


def measure_indexed(problem: Problem, base_key: Array, indices: Array, images: Array
                    ) -> tuple[LinearOperator, Array]:
    """Like :func:`measure` but the operator and noise of image ``i`` depend only on
    ``fold_in(fold_in(base_key, problem_id), indices[i])``: evaluations are reproducible per
    image whatever the batching."""
    _check_images(images)
    pkey = jax.random.fold_in(base_key, zlib.crc32(problem.name.encode()) & 0x7FFFFFFF)

    return jax.vmap(lambda i, x: _measure_one(problem, jax.random.fold_in(pkey, i), x))(
        jnp.asarray(indices), images)


def measure_mixed(problems: tuple[Problem, ...], key: Array, images: Array, *,
                  probs: Array | None = None, per_sample: bool = True
                  ) -> tuple[SelectOperator, tuple[Array, ...], Array]:
    """A mini-batch that mixes problems: each sample draws its own problem and operator.

    Args:
      problems: the K problems to draw from.
      images: (B, H, W, C) ground truth in [0, 1].
      probs: (K,) sampling probabilities, >= 0 (normalised to sum 1; default uniform).
      per_sample: True = the paper (each sample its own problem and operator); False = the
        released code (one problem and one operator instance for the whole mini-batch, B8).
    Returns:
      (op, y, index): a batch of SelectOperators, y a K-tuple of measurement batches
      (zeros in the slots a sample does not use), problem index (B,) int32. A method's
      per-sample setting is a table lookup, e.g. DU-ADMM's training ρ:
      ``jnp.asarray([presets.training_rho(p) for p in problems])[index]``.
    """
    _check_images(images)
    if len(problems) == 0:
        raise ValueError("problems is empty; give at least one Problem to draw from.")
    batch = images.shape[0]
    shape = tuple(images.shape[1:])
    k_choice, k_ops = jax.random.split(key)
    logits = jnp.log(jnp.ones(len(problems)) / len(problems) if probs is None
                     else _checks.check_probabilities("probs", probs, len(problems), "problem"))
    if per_sample:
        index = jax.random.categorical(k_choice, logits, shape=(batch,)).astype(jnp.int32)
        sample_keys = jax.random.split(k_ops, batch)
    else:
        index = jnp.full((batch,), jax.random.categorical(k_choice, logits), jnp.int32)
        one_key = jax.random.split(k_ops, 2)
        # one operator instance for the batch; the noise stays i.i.d. per sample
        sample_keys = jnp.stack([one_key[0]] * batch)
    noise_keys = jax.random.split(jax.random.fold_in(k_ops, 1), batch)

    def one(k_op, k_noise, x, idx):
        branches, ys = [], []
        for j, p in enumerate(problems):
            op = p.make_operator(jax.random.fold_in(k_op, j), shape)
            y = op.apply(x)
            if p.noise_std > 0:
                y = y + p.noise_std * jax.random.normal(jax.random.fold_in(k_noise, j),
                                                        y.shape, y.dtype)
            branches.append(op)
            ys.append(jnp.where(idx == j, y, 0.0))
        return SelectOperator.create(tuple(branches), idx), tuple(ys)

    op, y = jax.vmap(one)(sample_keys, noise_keys, images, index)
    return op, y, index
