"""admm_jax.priors.conv: the convolution with hand-written reverse mode.

Reference: ``jax.lax.conv_general_dilated`` and JAX's own transpose of it, in float64 (an
independent derivation of both gradients), over strides, paddings and odd/even kernels.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from admm_jax.priors.conv import conv2d, flax_conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


def _reference(x, k, strides, padding):
    return jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)


CASES = list(itertools.product(
    [(7, 9), (8, 8)],                         # image height, width
    [(1, 1), (2, 2), (3, 4), (4, 3)],          # kernel
    [(1, 1), (2, 2), (1, 3)],                  # strides
    ["SAME", "VALID", ((2, 1), (0, 3))],       # padding
))


@pytest.mark.parametrize("hw,kernel,strides,padding", CASES)
def test_values_and_both_gradients_match_lax_in_float64(x64, hw, kernel, strides, padding):
    # inputs from NumPy and both sides in one jitted program: one compile per case instead of
    # a dozen eager ones (the suite is compile-bound); the comparison is the same
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, *hw, 3)))
    k = jnp.asarray(rng.standard_normal((*kernel, 3, 5)))
    out = jax.eval_shape(lambda a, b: conv2d(a, b, strides, padding), x, k)
    assert out.shape == jax.eval_shape(lambda a, b: _reference(a, b, strides, padding),
                                       x, k).shape and out.dtype == jnp.float64
    g = jnp.asarray(rng.standard_normal(out.shape))

    @jax.jit
    def both(x, k, g):
        y_ref, vjp_ref = jax.vjp(lambda a, b: _reference(a, b, strides, padding), x, k)
        y, vjp = jax.vjp(lambda a, b: conv2d(a, b, strides, padding), x, k)
        return (y, *vjp(g)), (y_ref, *vjp_ref(g))

    for got, want in zip(*both(x, k, g)):
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                                   atol=1e-12 * max(scale, 1.0))


def test_gradients_inside_a_rolled_scan_equal_the_unrolled_ones(x64):
    """The reason the module exists: the same loss through ``lax.scan`` with unroll 1 and
    unroll T gives the same gradient (and equals the lax-convolution gradient)."""
    k = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (4, 4, 3, 3), jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 12, 12, 3), jnp.float64)

    def loss(kernel, conv, unroll):
        def body(z, _):
            return z + 0.5 * jnp.tanh(conv(z, kernel)), None
        z, _ = jax.lax.scan(body, x, None, length=4, unroll=unroll)
        return jnp.sum(z ** 2)

    ours = lambda z, kk: conv2d(z, kk, (1, 1), "SAME")              # noqa: E731
    theirs = lambda z, kk: _reference(z, kk, (1, 1), "SAME")         # noqa: E731
    want = jax.grad(loss)(k, theirs, 4)
    for unroll in (1, 4):
        got = jax.jit(jax.grad(loss), static_argnums=(1, 2))(k, ours, unroll)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)


def test_dtype_is_kept_in_reduced_precision():
    x = jnp.ones((1, 8, 8, 2), jnp.bfloat16)
    k = jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    y, vjp = jax.vjp(lambda a, b: conv2d(a, b), x, k)
    gx, gk = vjp(jnp.ones_like(y))
    assert (y.dtype, gx.dtype, gk.dtype) == (jnp.bfloat16,) * 3
    # interior pixel: 3x3 window over 2 channels of ones
    assert float(y[0, 4, 4, 0]) == 18.0


def test_bad_padding_is_named():
    with pytest.raises(ValueError, match="padding"):
        conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding=((1, 1),))


def test_flax_hook_matches_lax_and_falls_back_for_what_it_does_not_cover(x64):
    """nnx.Conv with the hook: same outputs and gradients as a plain nnx.Conv with the same
    weights, for a strided conv (covered) and a dilated one (passed to lax unchanged)."""
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 9, 3), jnp.float64)
    for kw in (dict(strides=2), dict(kernel_dilation=2)):
        plain = nnx.Conv(3, 4, (3, 3), padding="SAME", param_dtype=jnp.float64,
                         rngs=nnx.Rngs(0), **kw)
        hooked = nnx.Conv(3, 4, (3, 3), padding="SAME", param_dtype=jnp.float64,
                          rngs=nnx.Rngs(0), conv_general_dilated=flax_conv_general_dilated, **kw)

        def loss(model):
            return jnp.sum(jnp.sin(model(x)))

        np.testing.assert_allclose(np.asarray(hooked(x)), np.asarray(plain(x)), atol=1e-12)
        g_plain = nnx.grad(loss)(plain)
        g_hooked = nnx.grad(loss)(hooked)
        np.testing.assert_allclose(np.asarray(g_hooked["kernel"][...]),
                                   np.asarray(g_plain["kernel"][...]), atol=1e-11)
