"""2-D convolution (NHWC images, HWIO kernels) whose gradients are plain NHWC convolutions.

``conv2d`` computes exactly ``jax.lax.conv_general_dilated(x, kernel, strides, padding,
dimension_numbers=("NHWC", "HWIO", "NHWC"))``; only its reverse-mode derivative is written
out. Why: JAX's automatic transpose of a convolution expresses the weight gradient as a
convolution with permuted dimension labels (``f01b_i01o->01bf``) and the input gradient with
a swapped kernel (``01oi``). Outside loops XLA:CPU's layout passes turn those into its fast
convolution kernels, but inside the body of a rolled ``lax.scan`` (a while loop) they are left
as they are and run through XLA:CPU's generic loop emitter, 10–20× slower. Here both gradients
are stated as ordinary convolutions with the images' channels as the batch (weight gradient)
and a flipped, transposed kernel (input gradient), so every convolution the training step runs
has the canonical layout, in a rolled loop or not (BENCHMARKS.md, "Rolled scans").

Forward-mode differentiation (``jax.jvp``) of ``conv2d`` is not available (a ``custom_vjp``);
nothing in admm_jax uses it on a prior.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["conv2d"]

_DN = ("NHWC", "HWIO", "NHWC")
Padding = str | Sequence[tuple[int, int]]


def _explicit_padding(x_shape: tuple[int, ...], k_shape: tuple[int, ...],
                      strides: tuple[int, int], padding: Padding) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(jax.lax.padtype_to_pads(x_shape[1:3], k_shape[:2], strides, padding))
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != 2:
        raise ValueError(f"padding must be 'SAME', 'VALID' or two (low, high) pairs, got "
                         f"{padding!r}")
    return pads


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
           padding: Padding = "SAME") -> jax.Array:
    """Cross-correlation of ``x`` (B, H, W, C_in) with ``kernel`` (kh, kw, C_in, C_out).

    ``strides``: (sh, sw); ``padding``: "SAME" (TensorFlow's, asymmetric for even kernels),
    "VALID", or ((top, bottom), (left, right)) in pixels. Returns (B, H_out, W_out, C_out) in
    the inputs' dtype. Same values as ``jax.lax.conv_general_dilated``; reverse mode through
    canonical convolutions (module docstring).
    """
    strides = tuple(int(s) for s in strides)
    pads = _explicit_padding(x.shape, kernel.shape, strides, padding)
    return _conv(x, kernel, strides, pads)


def _forward(x, kernel, strides, pads):
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, pads):
    return _forward(x, kernel, strides, pads)


def _conv_fwd(x, kernel, strides, pads):
    return _forward(x, kernel, strides, pads), (x, kernel)


def _leftover(size: int, k: int, stride: int, pad: tuple[int, int], out: int) -> int:
    """Padded input rows after the last window (they receive no gradient)."""
    return size + pad[0] + pad[1] - k - (out - 1) * stride


def _conv_bwd(strides, pads, residuals, g):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    rest = [_leftover(x.shape[1 + a], kernel.shape[a], strides[a], pads[a], g.shape[1 + a])
            for a in (0, 1)]
    # input gradient: the output gradient, dilated by the stride, correlated with the kernel
    # flipped in space and with its two channel axes swapped: (kh, kw, C_out, C_in)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    in_pads = tuple((k - 1 - p[0], k - 1 - p[1] + r)
                    for k, p, r in zip((kh, kw), pads, rest))
    gx = jax.lax.conv_general_dilated(g, flipped, (1, 1), in_pads, lhs_dilation=strides,
                                      dimension_numbers=_DN)
    # weight gradient: the input's channels as the batch, its images as the contracted
    # features, the output gradient (H_out, W_out, B, C_out) as a kernel dilated by the stride
    xt = x.transpose(3, 1, 2, 0)
    gt = g.transpose(1, 2, 0, 3)
    w_pads = tuple((p[0], p[1] - r) for p, r in zip(pads, rest))
    gw = jax.lax.conv_general_dilated(xt, gt, (1, 1), w_pads, rhs_dilation=strides,
                                      dimension_numbers=_DN)
    return gx.astype(x.dtype), gw.transpose(1, 2, 0, 3).astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def flax_conv_general_dilated(inputs, kernel, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None,
                              feature_group_count: int = 1, precision=None, **kwargs):
    """Drop-in for ``jax.lax.conv_general_dilated`` as ``flax.nnx.Conv`` calls it: the 2-D,
    NHWC, undilated, ungrouped case goes through :func:`conv2d`; anything else (and any extra
    option such as an output sharding) through ``jax.lax.conv_general_dilated`` unchanged."""
    canonical = jax.lax.conv_dimension_numbers(inputs.shape, kernel.shape, _DN)
    plain = (inputs.ndim == 4 and feature_group_count == 1 and precision is None
             and all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
             and jax.lax.conv_dimension_numbers(inputs.shape, kernel.shape, dimension_numbers)
             == canonical
             and all(v is None for v in kwargs.values()))
    if not plain:
        return jax.lax.conv_general_dilated(
            inputs, kernel, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, precision=precision, **kwargs)
    return conv2d(inputs, kernel, window_strides, padding)
