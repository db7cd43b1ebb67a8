"""NN-upsample + 'SAME' conv computed phase by phase at low resolution (admm_jax.priors.upsample_conv)
against the literal form: a float64 NumPy gather + convolution, values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from admm_jax.priors import ResidualUNet, resize_index_map
from admm_jax.priors.upsample_conv import phase_plan, upsample_conv, use_phase_split


def np_upsample_conv(x, w, rows, cols):
    """float64 reference: gather by the maps, then TF 'SAME' conv (extra pad after for even k)."""
    hi = np.asarray(x, np.float64)[:, rows][:, :, cols]
    kh, kw = w.shape[:2]
    pads = ((0, 0), ((kh - 1) // 2, kh - 1 - (kh - 1) // 2),
            ((kw - 1) // 2, kw - 1 - (kw - 1) // 2), (0, 0))
    hp = np.pad(hi, pads)
    out = np.zeros(hi.shape[:3] + (w.shape[3],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", hp[:, i:i + hi.shape[1], j:j + hi.shape[2]],
                             np.asarray(w, np.float64)[i, j])
    return out


def _maps(kind, n):
    if kind == "clean":   # jax.image.resize "nearest" x2, the U-Net's up path
        return np.arange(2 * n) // 2
    if kind == "stretch":  # not a x2 map: the literal fallback
        return resize_index_map(n, 2 * n + 1, "custom")
    return resize_index_map(n, 2 * n, kind)


@pytest.mark.parametrize("kind", ["custom", "tf_legacy", "clean", "stretch"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_values_and_gradients_match_float64_literal_form(x64, kind, k):
    rng = np.random.default_rng(k)
    n_r, n_c = 8, 7                    # non-square: rows and columns planned apart
    rows, cols = _maps(kind, n_r), _maps(kind, n_c)
    x = rng.normal(size=(2, n_r, n_c, 3))
    w = rng.normal(size=(k, k + 1, 3, 2))   # non-square kernel too
    # gradients: the map is linear in x and in w, so the VJP of a fixed cotangent g is
    # <g, conv(x, w)> differentiated; check against finite-free identities: d/dx and d/dw of
    # sum(g * f) equal f applied to unit directions, here via a random direction (exact)
    g = rng.normal(size=(2, len(rows), len(cols), 2))  # the output's shape
    dx, dw = rng.normal(size=x.shape), rng.normal(size=w.shape)

    @jax.jit  # value and both gradients in one program (the suite is compile-bound)
    def value_and_vjp(a, b, cotangent):
        y, vjp = jax.vjp(lambda a, b: upsample_conv(a, b, rows, cols, force_split=True), a, b)
        return (y, *vjp(cotangent))

    got, gx, gw = value_and_vjp(jnp.asarray(x), jnp.asarray(w), jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(got), np_upsample_conv(x, w, rows, cols),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(float(jnp.sum(gx * dx)),
                               np.sum(g * np_upsample_conv(dx, w, rows, cols)), rtol=1e-10)
    np.testing.assert_allclose(float(jnp.sum(gw * dw)),
                               np.sum(g * np_upsample_conv(x, dw, rows, cols)), rtol=1e-10)


def test_plan_uses_the_phase_split_for_the_networks_maps():
    # the point of the module: the maps the priors use are split, others fall back
    for kind in ("custom", "tf_legacy", "clean"):
        for n in (8, 16, 32):
            assert phase_plan(_maps(kind, n), n, 4) is not None, (kind, n)
    assert phase_plan(_maps("custom", 8), 8, 4).corrections          # clamped ends
    assert not phase_plan(_maps("tf_legacy", 8), 8, 4).corrections   # a clean x2 repeat
    assert phase_plan(_maps("stretch", 8), 8, 4) is None
    # used from 16x16 inputs on (measured faster there), the literal form below
    assert use_phase_split((2, 16, 16, 8), (4, 4, 8, 4), _maps("custom", 16), _maps("custom", 16))
    assert not use_phase_split((2, 8, 8, 8), (4, 4, 8, 4), _maps("custom", 8), _maps("custom", 8))


def test_split_from_16_pixels_on_equals_literal_in_float64(x64):
    rng = np.random.default_rng(9)
    m = _maps("custom", 16)
    x, w = rng.normal(size=(1, 16, 16, 2)), rng.normal(size=(4, 4, 2, 3))
    np.testing.assert_allclose(np.asarray(upsample_conv(jnp.asarray(x), jnp.asarray(w), m, m)),
                               np_upsample_conv(x, w, m, m), rtol=1e-12, atol=1e-12)


def test_unet_up_path_equals_resize_then_conv():
    """The U-Net's split up path against jax.image.resize + its nnx.Conv, as before the split."""
    net = ResidualUNet(width=0.125, levels=3, blocks=1, rngs=nnx.Rngs(0))
    h = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 32))   # level 2: 16x16, 32 channels
    literal = net.up[1](jax.image.resize(h, (2, 32, 32, 32), method="nearest"))
    got = net._upsample(1, h)
    scale = float(jnp.max(jnp.abs(literal)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(literal), atol=2e-5 * scale)
    # and jax.image.resize "nearest" x2 is the map the split assumes
    v = jnp.arange(6.0).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(
        np.asarray(jax.image.resize(v, (1, 12, 1, 1), "nearest"))[0, :, 0, 0],
        np.arange(12) // 2)
