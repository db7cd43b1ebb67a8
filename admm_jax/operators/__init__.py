"""Linear measurement operators ``A`` with exact closed-form solves (see :mod:`.base`)."""

from admm_jax.operators.algebra import (
    Composed,
    Scaled,
    Stack,
    Sum,
    Transposed,
    WithCG,
    add,
    compose,
    scale,
    stack,
    transpose,
    with_cg,
)
from admm_jax.operators.base import (
    LinearOperator,
    operator_pytree,
    static_field,
    vmap_over_batch,
)
from admm_jax.operators.convolution import (
    CircularConvolution,
    box_blur,
    circular_kernel,
    gaussian_blur,
)
from admm_jax.operators.custom import FunctionOperator, as_custom, check_linearity
from admm_jax.operators.dense import DenseOperator, gaussian_cs
from admm_jax.operators.downsample import BoxDownsample
from admm_jax.operators.mask import Mask, block_mask, pixelwise_mask, scattered_mask
from admm_jax.operators.groups import OperatorGroups
from admm_jax.operators.mixture import SelectOperator
from admm_jax.operators.orthonormal import (
    SampledOrthonormal,
    fourier_mask_cartesian,
    fourier_mask_random,
    orthonormal_dct,
    orthonormal_fft,
    subsampled_dct,
)

__all__ = [
    "LinearOperator", "operator_pytree", "static_field", "vmap_over_batch",
    "Mask", "pixelwise_mask", "scattered_mask", "block_mask",
    "BoxDownsample",
    "DenseOperator", "gaussian_cs",
    "CircularConvolution", "circular_kernel", "gaussian_blur", "box_blur",
    "FunctionOperator", "as_custom", "check_linearity",
    "SelectOperator", "OperatorGroups",
    "SampledOrthonormal", "orthonormal_dct", "orthonormal_fft", "fourier_mask_cartesian",
    "fourier_mask_random", "subsampled_dct",
    "Composed", "Scaled", "Sum", "Transposed", "Stack", "WithCG", "compose", "scale", "add",
    "transpose", "stack", "with_cg",
]
