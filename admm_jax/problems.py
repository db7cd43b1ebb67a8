"""Named inverse problems and the per-method settings of the paper and of its released code.

One place documents what every number means:

* ``rho`` (ρ): ADMM penalty of the constraint x = z. It weighs the prior's output against the
  measurements in the data step ``z = (AᵀA + ρI)⁻¹(Aᵀy + ρ(x − u))``: a larger ρ trusts the prior
  more. Used by DU-ADMM (training and test) and OneNet.
* ``noise_std`` (σ): std of the i.i.d. Gaussian noise added to ``A x`` in the [0, 1] image domain.
* ``tol``: stop when RMS(x − z) < tol after a full iteration ([0, 1] domain).
* ``max_iters``: iteration cap; for DU-ADMM it is the test-time number of unrolled iterations T.
* wavelet ``lam`` (λ): weight of ‖W x‖₁; with penalty α the soft threshold is λ/α.
* ``sr_adjoint_scale``: 1 = true adjoint; 4 = the released code's test-time SR step
  (ρ_eff = ρ/4, spec §3.1 / B4), which the paper's published SR numbers depend on.

Presets (spec §4.3, §8): ``"paper"`` (default) follows the paper's text and what its tables imply
(OneNet SR cap 30, wavelet cap 300, DU-ADMM SR T = 13 on faces / 11 on natural images);
``"released"`` follows ``test.py`` of the released code (OneNet cap 300, wavelet cap 100,
DU-ADMM T = 8 everywhere). Both evaluate SR with the legacy 4× adjoint, as the published numbers
were produced; ``"corrected"`` is the paper preset with the true SR adjoint.
"""

from __future__ import annotations

import dataclasses
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
)

Array = jax.Array
IMAGE_SHAPE = (64, 64, 3)


@dataclass(frozen=True)
class IterativeSettings:
    """ρ, stopping tolerance and iteration cap of one method on one problem."""

    rho: float
    tol: float
    max_iters: int


@dataclass(frozen=True)
class WaveletSettings:
    """Wavelet-ℓ1 ADMM: penalty α (=ρ), weight λ, tolerance, cap."""

    rho: float
    lam: float
    tol: float
    max_iters: int
    wavelet: str = "db4"
    level: int = 3


@dataclass(frozen=True)
class Problem:
    """A measurement model ``y = A x + σ ξ`` and how each method solves it.

    ``make_operator(key, image_shape, sr_adjoint_scale)`` returns ONE operator; batch it with
    ``jax.vmap`` over keys (see :func:`measure`).
    """

    name: str
    title: str
    make_operator: Callable[[Array, tuple[int, int, int], float], LinearOperator]
    noise_std: float
    rho: float
    du_admm: IterativeSettings
    onenet: IterativeSettings
    wavelet: WaveletSettings
    in_paper: bool = True


def _pid(key, shape, _scale):
    return pixelwise_mask(key, shape, drop_prob=0.5)


def _si(key, shape, _scale):
    return scattered_mask(key, shape, box_size=max(1, int(0.1 * shape[0])), num_boxes=10)


def _bi(_key, shape, _scale):
    return block_mask(shape, box_size=int(0.3 * shape[0]))


def _sr(_key, shape, scale):
    return BoxDownsample(in_shape=tuple(shape), factor=2, adjoint_scale=float(scale))


def _cs(key, shape, _scale):
    return gaussian_cs(key, shape, ratio=0.1)


def _deblur(_key, shape, _scale):
    return gaussian_blur(shape, sigma=1.5, rcond=0.05)


def _paper_problems() -> dict[str, Problem]:
    w = lambda lam, cap=300: WaveletSettings(rho=0.3, lam=lam, tol=1e-4, max_iters=cap)
    return {
        "pid": Problem("pid", "pixelwise inpainting-denoising", _pid, 0.1, 0.3,
                       IterativeSettings(0.3, 3e-3, 8), IterativeSettings(0.3, 3e-3, 300),
                       w(0.05)),
        "bi": Problem("bi", "blockwise inpainting", _bi, 0.0, 0.2,
                      IterativeSettings(0.2, 1e-5, 8), IterativeSettings(0.2, 1e-5, 300),
                      w(0.05)),
        "si": Problem("si", "scattered inpainting", _si, 0.0, 0.3,
                      IterativeSettings(0.3, 1e-4, 8), IterativeSettings(0.3, 1e-4, 300),
                      w(0.03)),
        "sr": Problem("sr", "super-resolution x2", _sr, 0.0, 0.5,
                      IterativeSettings(0.5, 2e-3, 13), IterativeSettings(0.5, 2e-3, 30),
                      w(0.05)),
        # Beyond the paper (original OneNet had CS; deblurring is new). Settings are ours.
        "cs": Problem("cs", "compressive sensing 10%", _cs, 0.0, 0.3,
                      IterativeSettings(0.3, 3e-3, 8), IterativeSettings(0.3, 3e-3, 300),
                      w(0.05), in_paper=False),
        "deblur": Problem("deblur", "Gaussian deblurring", _deblur, 0.01, 0.1,
                          IterativeSettings(0.1, 1e-4, 8), IterativeSettings(0.1, 1e-4, 300),
                          WaveletSettings(rho=0.1, lam=0.002, tol=1e-4, max_iters=300),
                          in_paper=False),
    }


PAPER_PROBLEMS = ("pid", "bi", "si", "sr")
PRESETS = ("paper", "released", "corrected")


def get_problems(preset: str = "paper", dataset: str = "faces") -> dict[str, Problem]:
    """All problems with the settings of ``preset`` (see module docstring).

    ``dataset``: "faces" or "natural" — only changes DU-ADMM's SR test-time T in the paper
    preset (13 on MS-Celeb-1M, 11 on ImageNet).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    if dataset not in ("faces", "natural"):
        raise ValueError(f"dataset must be 'faces' or 'natural', got {dataset!r}")
    problems = _paper_problems()
    if dataset == "natural":
        sr = problems["sr"]
        problems["sr"] = dataclasses.replace(
            sr, du_admm=dataclasses.replace(sr.du_admm, max_iters=11))
    if preset == "released":
        for name, p in problems.items():
            problems[name] = dataclasses.replace(
                p,
                du_admm=dataclasses.replace(p.du_admm, max_iters=8),
                onenet=dataclasses.replace(p.onenet, max_iters=300),
                wavelet=dataclasses.replace(p.wavelet, max_iters=100),
            )
    return problems


def get_problem(name: str, preset: str = "paper", dataset: str = "faces") -> Problem:
    problems = get_problems(preset, dataset)
    if name not in problems:
        raise ValueError(f"unknown problem {name!r}; choose one of {sorted(problems)}")
    return problems[name]


def sr_adjoint_scale_for(preset: str) -> float:
    """Test-time SR adjoint scale: 4 (legacy) for "paper"/"released", 1 for "corrected"."""
    return 1.0 if preset == "corrected" else 4.0


# --------------------------------------------------------------------------- measurements
def _check_images(images: Array) -> None:
    """Ground truth for a measurement: a float batch (B, H, W, C) in [0, 1] (uint8 refused)."""
    _checks.check_unit_images("images", images)
    if jnp.ndim(images) != 4:
        raise ValueError(f"images must be a batch (B, H, W, C), got shape {jnp.shape(images)}; "
                         f"add a leading axis for one image (x[None]).")


def _measure_one(problem: Problem, key: Array, x: Array, sr_adjoint_scale: float
                 ) -> tuple[LinearOperator, Array]:
    """One image (H, W, C): its operator from ``key`` and ``y = A x + σ ξ``."""
    k_op, k_noise = jax.random.split(key)
    op = problem.make_operator(k_op, tuple(x.shape), sr_adjoint_scale)
    y = op.apply(x)
    if problem.noise_std > 0:
        y = y + problem.noise_std * jax.random.normal(k_noise, y.shape, y.dtype)
    return op, y


def measure(problem: Problem, key: Array, images: Array, *,
            sr_adjoint_scale: float = 1.0) -> tuple[LinearOperator, Array]:
    """Draw one operator per image and measure: returns (batch of operators, y).

    images: (B, H, W, C) in [0, 1]. Each sample gets its own operator and noise from
    ``jax.random.split(key, B)[i]`` (pass different keys per batch; see :func:`measure_indexed`
    for draws that do not depend on the batch composition).
    """
    _check_images(images)
    batch = images.shape[0]
    keys = jax.random.split(key, batch)

    return jax.vmap(lambda k, x: _measure_one(problem, k, x, sr_adjoint_scale))(keys, images)


def measure_indexed(problem: Problem, base_key: Array, indices: Array, images: Array, *,
                    sr_adjoint_scale: float = 1.0) -> tuple[LinearOperator, Array]:
    """Like :func:`measure` but the operator and noise of image ``i`` depend only on
    ``fold_in(fold_in(base_key, problem_id), indices[i])``: evaluations are reproducible per
    image whatever the batching."""
    _check_images(images)
    pkey = jax.random.fold_in(base_key, zlib.crc32(problem.name.encode()) & 0x7FFFFFFF)

    return jax.vmap(lambda i, x: _measure_one(problem, jax.random.fold_in(pkey, i), x,
                                              sr_adjoint_scale))(jnp.asarray(indices), images)


def measure_mixed(problems: tuple[Problem, ...], key: Array, images: Array, *,
                  probs: Array | None = None, per_sample: bool = True
                  ) -> tuple[SelectOperator, tuple[Array, ...], Array, Array]:
    """A mini-batch that mixes problems: each sample draws its own problem, operator and ρ.

    Args:
      problems: the K problems to draw from.
      images: (B, H, W, C) ground truth in [0, 1].
      probs: (K,) sampling probabilities, >= 0 (normalised to sum 1; default uniform).
      per_sample: True = the paper (each sample its own problem and operator); False = the
        released code (one problem and one operator instance for the whole mini-batch, B8).
    Returns:
      (op, y, rho, index): a batch of SelectOperators, y a K-tuple of measurement batches
      (zeros in the slots a sample does not use), rho (B,), problem index (B,) int32.
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
            op = p.make_operator(jax.random.fold_in(k_op, j), shape, 1.0)
            y = op.apply(x)
            if p.noise_std > 0:
                y = y + p.noise_std * jax.random.normal(jax.random.fold_in(k_noise, j),
                                                        y.shape, y.dtype)
            branches.append(op)
            ys.append(jnp.where(idx == j, y, 0.0))
        return SelectOperator.create(tuple(branches), idx), tuple(ys)

    op, y = jax.vmap(one)(sample_keys, noise_keys, images, index)
    rhos = jnp.asarray([p.rho for p in problems], images.dtype)[index]
    return op, y, rhos, index
