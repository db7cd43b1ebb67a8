"""admm_jax: differentiable unrolled ADMM (DU-ADMM OneNet) and classical ADMM in JAX.

The data flows one way: ``operators`` → ``admm`` solvers → ``priors`` → ``train`` →
``evaluate`` → ``reproduce``/CLI. The flat API below covers everyday use; the sub-packages
``admm_jax.data``, ``admm_jax.train``, ``admm_jax.evaluate`` and ``admm_jax.baselines`` are
imported on first access.

Conventions: images are NHWC float32 in [0, 1] at every public function; the networks work in
[−1, 1] and the conversion happens inside :func:`make_prior_fn`. Randomness comes only from
explicit ``jax.random`` keys.
"""

import importlib as _importlib

from admm_jax.admm import (
    ADMMResult,
    ADMMState,
    admm_step,
    converging_admm,
    data_step,
    initial_state,
    unrolled_admm,
)
from admm_jax.families import (
    HELD_OUT_FAMILIES,
    TRAINING_FAMILIES,
    FamilyMix,
    get_family,
    measure_family,
    sample_family_batch,
)
from admm_jax.metrics import psnr, rms
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    DenseOperator,
    FunctionOperator,
    LinearOperator,
    Mask,
    OperatorGroups,
    SampledOrthonormal,
    SelectOperator,
    as_custom,
    block_mask,
    box_blur,
    check_linearity,
    circular_kernel,
    fourier_mask_cartesian,
    fourier_mask_random,
    gaussian_blur,
    gaussian_cs,
    operator_pytree,
    orthonormal_dct,
    orthonormal_fft,
    pixelwise_mask,
    scattered_mask,
    stack,
    static_field,
    subsampled_dct,
    with_cg,
)
from admm_jax.problems import (
    PAPER_PROBLEMS,
    Problem,
    get_problem,
    get_problems,
    measure,
    measure_indexed,
    measure_mixed,
)
from admm_jax.presets import (
    IterativeSettings,
    Preset,
    ProblemSettings,
    WaveletSettings,
    get_preset,
    training_rho,
)
from admm_jax.rho_rules import init_rho_rule, rho_schedule
from admm_jax.wavelets import dwt2, idwt2, soft_threshold, wavelet_l1_prox

__version__ = "0.1.0"

_LAZY = {"data", "train", "evaluate", "baselines", "priors", "reproduce", "cli", "restore"}
_LAZY_NAMES = {
    "du_admm_prior": "priors", "onenet_projector": "priors", "make_prior_fn": "priors",
    "count_params": "priors", "unet_prior": "priors", "self_ensemble": "priors",
    "build_prior_network": "priors",
    "pretrained": "pretrained_priors", "pretrained_names": "pretrained_priors",
    "PretrainedPrior": "pretrained_priors", "trained_prior": "pretrained_priors",
}


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"admm_jax.{name}")
    if name in _LAZY_NAMES:
        return getattr(_importlib.import_module(f"admm_jax.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'admm_jax' has no attribute {name!r}")


def __dir__():
    # the lazily imported names too (tab completion, dir(admm_jax)), not only those loaded
    return sorted(set(globals()) | set(__all__) | _LAZY)


__all__ = [
    "ADMMResult", "ADMMState", "admm_step", "converging_admm", "data_step", "initial_state",
    "unrolled_admm", "psnr", "rms",
    "BoxDownsample", "CircularConvolution", "DenseOperator", "FunctionOperator",
    "LinearOperator", "Mask", "SelectOperator", "as_custom", "block_mask", "box_blur",
    "check_linearity",
    "circular_kernel", "gaussian_blur", "gaussian_cs", "operator_pytree", "pixelwise_mask",
    "scattered_mask", "static_field",
    "SampledOrthonormal", "orthonormal_dct", "orthonormal_fft", "fourier_mask_cartesian",
    "fourier_mask_random", "subsampled_dct", "stack", "with_cg",
    "PAPER_PROBLEMS", "Problem", "get_problem", "get_problems", "measure", "measure_indexed",
    "measure_mixed",
    "IterativeSettings", "Preset", "ProblemSettings", "WaveletSettings", "get_preset",
    "training_rho",
    "dwt2", "idwt2", "soft_threshold", "wavelet_l1_prox",
    "du_admm_prior", "onenet_projector", "make_prior_fn", "count_params", "unet_prior",
    "self_ensemble", "build_prior_network",
    "pretrained", "pretrained_names", "PretrainedPrior", "trained_prior",
    "OperatorGroups", "FamilyMix", "TRAINING_FAMILIES", "HELD_OUT_FAMILIES", "get_family",
    "measure_family", "sample_family_batch", "init_rho_rule", "rho_schedule",
]
