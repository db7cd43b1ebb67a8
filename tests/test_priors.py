"""Tests of admm_jax.priors: layers, the DU-ADMM prior / OneNet projector, discriminators, bridge.

Full-size networks are only built abstractly (``nnx.eval_shape`` / ``jax.eval_shape``); forward
passes use tiny widths so the whole file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from admm_jax.priors import (
    PRIOR_PARAM_COUNT,
    ChannelWiseDense,
    Conv2D,
    Deconv2D,
    ImageDiscriminator,
    InstanceNorm,
    LatentDiscriminator,
    ProjectionNetwork,
    VirtualBatchNorm,
    count_params,
    du_admm_prior,
    elu_like,
    get_activation,
    make_prior_fn,
    onenet_discriminators,
    onenet_projector,
    resize_index_map,
    resize_nearest,
    scale_channels,
    unet_prior,
)

TINY = 1 / 16  # channels 4, 8, 16, 32, 64


# ------------------------------------------------------------------------------------------------
# helpers (independent NumPy references)
# ------------------------------------------------------------------------------------------------

def np_conv_same(x, w, b=None):
    """NHWC/HWIO stride-1 convolution with TF 'SAME' padding (extra pad after for even k)."""
    k = w.shape[0]
    before = (k - 1) // 2
    after = k - 1 - before
    xp = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    h, wd = x.shape[1], x.shape[2]
    out = np.zeros(x.shape[:3] + (w.shape[3],), np.float64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("bhwc,cd->bhwd", xp[:, i:i + h, j:j + wd], w[i, j])
    if b is not None:
        out += b
    return out


def assert_close_to_sums(got, ref, abs_ref, rel=1e-5):
    """float32 ``got`` vs the float64 ``ref`` of sums of products, entry-wise within
    ``rel`` of ``abs_ref`` (the same sums over absolute values). In any summation order a
    float32 sum of n products is off by at most about n·2^-24 of the sum of their magnitudes
    (4e-6 for the n <= 64 used here), so ``rel = 1e-5`` holds on any CPU and algorithm, also
    where terms cancel and a tolerance relative to |ref| would not; a wrong tap, padding or
    channel changes entries by O(abs_ref)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    err = np.abs(got - ref)
    bound = rel * np.asarray(abs_ref, np.float64)
    assert np.all(err <= bound), (err.max(), float(np.max(err / np.maximum(bound, 1e-300))))


def np_instance_norm(x, eps=1e-6):
    m = x.mean(axis=(1, 2), keepdims=True)
    v = x.var(axis=(1, 2), keepdims=True)
    return (x - m) / np.sqrt(v + eps)


def abstract(fn):
    return nnx.eval_shape(fn)


def bottleneck_params(c_in, c_out, stride):
    m = c_out // 4
    n = 2 * c_in + (c_in * m + m) + 2 * m + (9 * m * m + m) + 2 * m + (m * c_out + c_out)
    if stride != 1:
        n += c_in * c_out + c_out
    return n


# ------------------------------------------------------------------------------------------------
# parameter counts and shapes at full size (abstract)
# ------------------------------------------------------------------------------------------------

def test_full_prior_param_count_and_breakdown():
    model = abstract(lambda: du_admm_prior(1.0, rngs=nnx.Rngs(0)))
    assert count_params(model) == PRIOR_PARAM_COUNT == 22_431_363
    expected = {  # spec §1.2 breakdown
        "conv0": 3_136, "conv1": 131_200, "conv2": 131_328, "conv3": 524_800,
        "conv4": 2_098_176, "fc5": 4_194_304, "conv_fc": 4_195_328, "deconv3": 8_389_120,
        "deconv2": 2_097_408, "deconv1": 524_416, "deconv0": 131_136, "recon": 3_075,
    }
    for name, n in expected.items():
        assert count_params(getattr(model, name)) == n, name
    norms = ["bn0", "bn1", "bn2", "bn3", "bn4", "latent_norm", "debn3", "debn2", "debn1", "debn0"]
    assert sum(count_params(getattr(model, n)) for n in norms) == 7_936
    # kernel shapes actually applied (stride-2 convs use the halved kernel)
    assert model.conv2.kernel.shape == (2, 2, 128, 256)
    assert model.conv4.kernel.shape == (2, 2, 512, 1024)
    assert model.conv_fc.kernel.shape == (2, 2, 1024, 1024)
    assert model.deconv3.kernel.shape == (4, 4, 1024, 512)
    assert model.fc5.kernel.shape == (1024, 64, 64)
    assert model.fc5.bias is None
    # same count for every variant; VBN statistics are not parameters
    for variant in (lambda: onenet_projector(1.0, rngs=nnx.Rngs(0)),
                    lambda: onenet_projector(1.0, rngs=nnx.Rngs(0), norm="virtual_batch")):
        m = abstract(variant)
        assert count_params(m) == PRIOR_PARAM_COUNT
        assert count_params(nnx.state(m)) == PRIOR_PARAM_COUNT


def test_full_prior_layer_shapes():
    model = abstract(lambda: du_admm_prior(1.0, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).intermediates(x), state, x)
    expected = {
        "conv0": (64, 64), "conv1": (128, 64), "conv2": (256, 32), "conv3": (512, 16),
        "conv4": (1024, 8), "fc5": (1024, 8), "conv_fc": (1024, 8), "deconv3": (512, 16),
        "deconv2": (256, 32), "deconv1": (128, 64), "deconv0": (64, 64), "recon": (3, 64),
    }
    assert set(shapes) == set(expected)
    for name, (c, hw) in expected.items():
        assert shapes[name].shape == (2, hw, hw, c), name
    assert shapes["recon"].dtype == jnp.float32
    lat = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).encode(x), state, x)
    assert lat.shape == (2, 8, 8, 1024)


def test_full_discriminator_shapes_and_counts():
    img_d = abstract(lambda: ImageDiscriminator(rngs=nnx.Rngs(0)))
    lat_d = abstract(lambda: LatentDiscriminator(rngs=nnx.Rngs(0)))
    # independent closed-form counts (spec §1.4)
    n_img = 4 * 4 * 3 * 64 + 64
    c = 64
    for n_blocks in (3, 4, 6, 3):
        n_img += bottleneck_params(c, 2 * c, 2)
        c *= 2
        n_img += (n_blocks - 1) * bottleneck_params(c, c, 1)
    n_img += 2 * c + 4 * 4 * c + 1
    assert c == 1024
    assert count_params(img_d) == n_img
    n_lat = 5 * bottleneck_params(1024, 1024, 1) + bottleneck_params(1024, 1024, 2)
    n_lat += 2 * 1024 + 16 * 1024 + 1
    assert count_params(lat_d) == n_lat
    assert img_d.dense.kernel.shape == (16384, 1)
    assert lat_d.dense.kernel.shape == (16384, 1)
    assert lat_d.blocks[3].conv_sc is not None and lat_d.blocks[3].conv_sc.kernel.shape == (
        1, 1, 1024, 1024)
    for d, shape in ((img_d, (3, 64, 64, 3)), (lat_d, (3, 8, 8, 1024))):
        g, s = nnx.split(d)
        out = jax.eval_shape(lambda s, x: nnx.merge(g, s)(x), s,
                             jax.ShapeDtypeStruct(shape, jnp.float32))
        assert out.shape == (3, 1) and out.dtype == jnp.float32


# ------------------------------------------------------------------------------------------------
# resizing
# ------------------------------------------------------------------------------------------------

def _custom_expected(n_in, n_out):
    if n_out < n_in:  # every other pixel, last one replaced by the last input pixel
        return list(range(0, n_in - 2, 2)) + [n_in - 1]
    # upsampling x2: first pixel 3 times, then pairs, last pixel once
    return [0, 0, 0] + [i for i in range(1, n_in - 1) for _ in range(2)] + [n_in - 1]


PAIRS = [(64, 32), (32, 16), (16, 8), (8, 16), (16, 32), (32, 64)]


@pytest.mark.parametrize("n_in,n_out", PAIRS)
def test_resize_index_map_custom(n_in, n_out):
    idx = resize_index_map(n_in, n_out, "custom")
    assert idx.shape == (n_out,)
    np.testing.assert_array_equal(idx, _custom_expected(n_in, n_out))
    # float32 emulations of linspace (numpy and TF's start + step·i kernel) agree here
    np.testing.assert_array_equal(
        idx, np.floor(np.linspace(0, n_in - 1, n_out, dtype=np.float32)).astype(int))
    step = np.float32(n_in - 1) / np.float32(n_out - 1)
    np.testing.assert_array_equal(idx, np.floor(step * np.arange(n_out, dtype=np.float32)))


@pytest.mark.parametrize("n_in,n_out", PAIRS)
def test_resize_index_map_tf_legacy(n_in, n_out):
    idx = resize_index_map(n_in, n_out, "tf_legacy")
    expected = np.arange(n_out) * 2 if n_out < n_in else np.repeat(np.arange(n_in), 2)
    np.testing.assert_array_equal(idx, expected)


def test_resize_spec_examples_and_errors():
    assert resize_index_map(64, 32, "custom")[-3:].tolist() == [58, 60, 63]
    assert resize_index_map(8, 16, "custom").tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5,
                                                          6, 6, 7]
    assert resize_index_map(8, 16, "tf_legacy").tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5,
                                                             6, 6, 7, 7]
    with pytest.raises(ValueError):
        resize_index_map(8, 16, "bilinear")


@pytest.mark.parametrize("mode", ["custom", "tf_legacy"])
def test_resize_nearest_equals_gather(mode):
    """The slice/repeat implementation equals a plain gather, values and gradients."""
    rng = np.random.default_rng(0)
    resize = jax.jit(resize_nearest, static_argnums=(1, 2))
    for (h_in, w_in), (h_out, w_out) in [((64, 64), (32, 32)), ((8, 8), (16, 16)),
                                         ((16, 16), (8, 8)), ((32, 32), (64, 64)),
                                         ((10, 7), (7, 10)), ((64, 5), (48, 1))]:
        x = rng.normal(size=(2, h_in, w_in, 3)).astype(np.float32)
        ih = resize_index_map(h_in, h_out, mode)
        iw = resize_index_map(w_in, w_out, mode)
        np.testing.assert_array_equal(
            np.asarray(resize(jnp.asarray(x), (h_out, w_out), mode)), x[:, ih][:, :, iw])
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)).astype(np.float32))
    c = jnp.asarray(rng.normal(size=(2, 16, 16, 3)).astype(np.float32))
    idx = resize_index_map(8, 16, mode)
    g = jax.jit(jax.grad(lambda x: jnp.sum(c * resize_nearest(x, (16, 16), mode))))(x)
    g_ref = jax.jit(jax.grad(lambda x: jnp.sum(c * x[:, idx][:, :, idx])))(x)
    # each gradient entry sums the up to 9 copies (3 per axis) of c that read that pixel, in an
    # order each implementation picks; |c| < 5 here, so float32 rounding of a 9-term sum is at
    # most 8·2^-24·9·5 ≈ 2e-5 per side. 1e-4 covers both; a wrong index changes entries by ~|c|.
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# conv / deconv semantics
# ------------------------------------------------------------------------------------------------

def test_conv_stride2_is_resize_then_small_conv():
    rng = np.random.default_rng(1)
    conv = Conv2D(3, 5, 4, stride=2, resize_mode="custom", rngs=nnx.Rngs(0))
    assert conv.kernel.shape == (2, 2, 3, 5)
    conv.bias[...] = jnp.asarray(rng.normal(size=5).astype(np.float32))
    x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    idx = resize_index_map(16, 8, "custom")
    xs, k, b = x[:, idx][:, :, idx], np.asarray(conv.kernel[...]), np.asarray(conv.bias[...])
    assert_close_to_sums(conv(jnp.asarray(x)), np_conv_same(xs, k, b),
                         np_conv_same(np.abs(xs), np.abs(k), np.abs(b)))
    # 1x1 stride-2 conv: kernel stays 1x1
    assert Conv2D(3, 5, 1, stride=2, rngs=nnx.Rngs(0)).kernel.shape == (1, 1, 3, 5)


def test_conv_same_padding_even_kernel():
    rng = np.random.default_rng(2)
    conv = Conv2D(2, 3, 4, rngs=nnx.Rngs(0))
    x = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    k = np.asarray(conv.kernel[...])
    ref = np_conv_same(x, k)  # pads 1 before / 2 after
    assert_close_to_sums(conv(jnp.asarray(x)), ref, np_conv_same(np.abs(x), np.abs(k)))


@pytest.mark.parametrize("mode", ["custom", "tf_legacy"])
def test_deconv_is_upsample_then_full_conv(mode):
    rng = np.random.default_rng(3)
    deconv = Deconv2D(4, 2, 4, stride=2, resize_mode=mode, rngs=nnx.Rngs(0))
    assert deconv.kernel.shape == (4, 4, 4, 2)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    idx = resize_index_map(8, 16, mode)
    xs, k = x[:, idx][:, :, idx], np.asarray(deconv.kernel[...])
    y = deconv(jnp.asarray(x))
    assert y.shape == (2, 16, 16, 2)
    assert_close_to_sums(y, np_conv_same(xs, k), np_conv_same(np.abs(xs), np.abs(k)))


# ------------------------------------------------------------------------------------------------
# norms, activations, channel-wise dense, init
# ------------------------------------------------------------------------------------------------

def test_instance_norm_matches_numpy():
    rng = np.random.default_rng(4)
    x = (3.0 + 2.5 * rng.normal(size=(3, 8, 8, 5))).astype(np.float32)
    norm = InstanceNorm(5)
    y = np.asarray(norm(jnp.asarray(x)))
    np.testing.assert_allclose(y, np_instance_norm(x.astype(np.float64)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1.0, atol=1e-4)
    norm.scale[...] = jnp.full((5,), 2.0)
    norm.offset[...] = jnp.full((5,), -1.0)
    y2 = np.asarray(norm(jnp.asarray(x)))
    np.testing.assert_allclose(y2, 2.0 * y - 1.0, rtol=1e-5, atol=1e-5)
    assert norm.eps == 1e-6


def test_virtual_batch_norm_weights_and_stored_stats():
    rng = np.random.default_rng(5)
    n = 3
    inst = rng.normal(1.0, 2.0, size=(n, 4, 4, 2)).astype(np.float32)
    ref = rng.normal(-1.0, 0.5, size=(n, 4, 4, 2)).astype(np.float32)
    vbn = VirtualBatchNorm(2)
    assert vbn.eps == 1e-3
    y = np.asarray(vbn(jnp.asarray(np.concatenate([inst, ref])), n_reference=n))
    # weighted moments: per-sample weights 1/(n+1) (instances) and n/(n+1) (reference)
    w = np.array([1 / (n + 1)] * n + [n / (n + 1)] * n)
    w = w / w.sum()
    allx = np.concatenate([inst, ref]).astype(np.float64)
    mean = np.einsum("b,bc->c", w, allx.mean(axis=(1, 2)))
    var = np.einsum("b,bc->c", w, ((allx - mean) ** 2).mean(axis=(1, 2)))
    # the weights, written out (both sides in float64: NumPy's float32 means are only good to
    # ~1e-7, the default rtol, and their rounding depends on NumPy's SIMD width)
    inst64, ref64 = inst.astype(np.float64), ref.astype(np.float64)
    np.testing.assert_allclose(
        mean, inst64.mean(axis=(0, 1, 2)) / (n + 1) + ref64.mean(axis=(0, 1, 2)) * n / (n + 1),
        rtol=1e-12)
    np.testing.assert_allclose(y, (allx - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    # stored statistics untouched by a mixed batch; a reference-only pass stores them
    np.testing.assert_array_equal(np.asarray(vbn.mean[...]), 0.0)
    vbn(jnp.asarray(ref), n_reference=n)
    np.testing.assert_allclose(np.asarray(vbn.mean[...]), ref.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(vbn.var[...]), ref.var(axis=(0, 1, 2)), rtol=1e-4)
    y_inf = np.asarray(vbn(jnp.asarray(inst)))  # inference: stored reference statistics
    np.testing.assert_allclose(
        y_inf, (inst - ref.mean(axis=(0, 1, 2))) / np.sqrt(ref.var(axis=(0, 1, 2)) + 1e-3),
        rtol=1e-4, atol=1e-5)


def test_activations():
    xs = np.array([-50.0, -3.0, -0.5, 0.0, 0.7, 4.0, 50.0], np.float32)
    ref = np.logaddexp(0.0, 2 * xs.astype(np.float64) + 2) / 2 - 1
    np.testing.assert_allclose(np.asarray(elu_like(jnp.asarray(xs))), ref, rtol=1e-6, atol=1e-6)
    assert abs(float(elu_like(jnp.float32(0.0))) - 0.0635) < 1e-4
    assert abs(float(elu_like(jnp.float32(-50.0))) + 1.0) < 1e-6
    assert abs(float(elu_like(jnp.float32(50.0))) - 50.0) < 1e-4
    elu = get_activation("elu")
    np.testing.assert_allclose(np.asarray(elu(jnp.asarray(xs))),
                               np.where(xs > 0, xs, np.expm1(xs)), rtol=1e-6, atol=1e-7)
    assert get_activation("elu_like") is elu_like
    with pytest.raises(ValueError):
        get_activation("relu")


def test_channel_wise_dense_matches_numpy():
    rng = np.random.default_rng(6)
    layer = ChannelWiseDense(5, 64, rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (5, 64, 64) and layer.bias is None
    x = rng.normal(size=(2, 8, 8, 5)).astype(np.float32)
    w = np.asarray(layer.kernel[...]).astype(np.float64)
    flat = x.reshape(2, 64, 5)  # row-major: spatial index h*8 + w
    ref = np.zeros_like(flat, dtype=np.float64)
    for c in range(5):
        ref[:, :, c] = flat[:, :, c] @ w[c]
    y = np.asarray(layer(jnp.asarray(x)))
    scale = np.einsum("bpc,cpq->bqc", np.abs(flat), np.abs(w)).reshape(2, 8, 8, 5)
    assert_close_to_sums(y, ref.reshape(2, 8, 8, 5), scale)
    assert_close_to_sums(y, np.einsum("bpc,cpq->bqc", flat, w).reshape(2, 8, 8, 5), scale)


def test_init_truncated_normal():
    layer = ChannelWiseDense(256, 64, rngs=nnx.Rngs(0))  # 1,048,576 weights
    w = np.asarray(layer.kernel[...])
    assert w.dtype == np.float32
    # std of N(0, 0.005²) truncated at ±2σ is 0.005 · 0.8796
    assert abs(w.std() - 0.005 * 0.8796) < 0.02 * 0.005
    assert abs(w.mean()) < 2e-5
    assert np.abs(w).max() <= 0.01 + 1e-7
    assert np.abs(w).max() > 0.0099
    conv = Conv2D(8, 16, 3, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(np.asarray(conv.bias[...]), 0.0)
    norm = InstanceNorm(4)
    np.testing.assert_array_equal(np.asarray(norm.scale[...]), 1.0)
    np.testing.assert_array_equal(np.asarray(norm.offset[...]), 0.0)
    # deterministic in the seed, different across seeds
    w2 = np.asarray(ChannelWiseDense(256, 64, rngs=nnx.Rngs(0)).kernel[...])
    np.testing.assert_array_equal(w, w2)
    w3 = np.asarray(ChannelWiseDense(256, 64, rngs=nnx.Rngs(1)).kernel[...])
    assert not np.array_equal(w, w3)


# ------------------------------------------------------------------------------------------------
# small-width forward passes, the [0,1] bridge, gradients
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_prior():
    return du_admm_prior(TINY, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def images01():
    return jnp.asarray(np.random.default_rng(7).uniform(size=(2, 64, 64, 3)).astype(np.float32))


@pytest.fixture(scope="module")
def tiny_outputs(tiny_prior, images01):
    """One compiled pass: apply_fn(params, x01) and the model's own methods on 2·x01 − 1."""
    apply_fn, params = make_prior_fn(tiny_prior)
    graphdef, state = nnx.split(tiny_prior)

    @jax.jit
    def run(params, state, x01):
        m = nnx.merge(graphdef, state)
        v = 2.0 * x01 - 1.0
        lat = m.encode(v)
        return dict(bridge=apply_fn(params, x01), call=m(v), latent=lat, decoded=m.decode(lat))

    return run(params, state, images01)


def test_tiny_forward_encode_decode(tiny_prior, tiny_outputs):
    m = tiny_prior
    assert (m.resize_mode, m.activation, m.norm) == ("custom", "elu_like", "instance")
    assert m.latent_channels == scale_channels(1024, TINY) == 64
    y, lat = tiny_outputs["call"], tiny_outputs["latent"]
    assert y.shape == (2, 64, 64, 3) and y.dtype == jnp.float32
    assert lat.shape == (2, 8, 8, 64)
    assert np.all(np.isfinite(np.asarray(y)))
    np.testing.assert_allclose(np.asarray(y), np.asarray(tiny_outputs["decoded"]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        m(jnp.zeros((1, 32, 32, 3)))


def test_prior_fn_bridge(tiny_prior, images01, tiny_outputs):
    apply_fn, params = make_prior_fn(tiny_prior)
    assert count_params(params) == count_params(tiny_prior)
    out = tiny_outputs["bridge"]
    assert out.shape == images01.shape and out.dtype == jnp.float32
    ref = (tiny_outputs["call"] + 1.0) / 2.0  # (model(2x - 1) + 1) / 2 by hand
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
    # a single (H, W, C) image is accepted too (trace only: same program as the batch)
    single = jax.eval_shape(apply_fn, params, images01[0])
    assert single.shape == (64, 64, 3) and single.dtype == jnp.float32


def test_prior_fn_grad_and_scan(tiny_prior, images01):
    apply_fn, params = make_prior_fn(tiny_prior)

    # inside lax.scan + grad (traced only, to keep the test fast)
    def scan_loss(p):
        z, _ = jax.lax.scan(lambda z, _: (apply_fn(p, z), None), images01, None, length=2)
        return jnp.sum(z ** 2)

    g_abs = jax.eval_shape(jax.grad(scan_loss), params)
    assert jax.tree.structure(g_abs) == jax.tree.structure(params)

    # a real gradient: pytree shaped like params, finite, reaching the first layer
    grads = jax.jit(jax.grad(lambda p: apply_fn(p, images01).sum()))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert np.all(np.isfinite(np.asarray(g)))
    for name in ("recon", "fc5", "conv0"):
        assert float(jnp.abs(grads[name]["kernel"][...]).sum()) > 0, name


def test_bridge_domain_mapping_with_identity_network():
    """An identity-like network (recon output = its input) makes apply_fn the identity."""

    class Identity(nnx.Module):
        def __init__(self):
            self.a = nnx.Param(jnp.ones(()))

        def __call__(self, v):
            assert float(jnp.min(v)) >= -1.0 and float(jnp.max(v)) <= 1.0  # [-1, 1] inside
            return self.a[...] * v

    apply_fn, params = make_prior_fn(Identity())
    x = jnp.asarray(np.random.default_rng(8).uniform(size=(3, 4, 4, 3)).astype(np.float32))
    np.testing.assert_allclose(np.asarray(apply_fn(params, x)), np.asarray(x), atol=1e-6)
    # gradient of sum(apply_fn) w.r.t. the scale a is sum((2x-1)/2)
    g = jax.grad(lambda p: apply_fn(p, x).sum())(params)
    np.testing.assert_allclose(float(g["a"][...]), float(jnp.sum(x - 0.5)), rtol=1e-5)
    with pytest.raises(TypeError):
        apply_fn(params, jnp.zeros((1, 4, 4, 3), jnp.int32))


def test_bf16_compute_keeps_float32_params(tiny_prior, images01, tiny_outputs):
    m16 = du_admm_prior(TINY, rngs=nnx.Rngs(0), compute_dtype=jnp.bfloat16)
    nnx.update(m16, nnx.state(tiny_prior, nnx.Param))
    for leaf in jax.tree.leaves(nnx.state(m16, nnx.Param)):
        assert leaf.dtype == jnp.float32
    apply16, p16 = make_prior_fn(m16)
    y16 = jax.jit(apply16)(p16, images01)
    y32 = tiny_outputs["bridge"]
    assert y16.dtype == jnp.float32 and y16.shape == images01.shape
    err = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32 - 0.5))
    assert np.isfinite(err) and err < 0.1


def test_onenet_projector_options_and_vbn():
    p = onenet_projector(TINY, rngs=nnx.Rngs(0))
    assert (p.resize_mode, p.activation, p.norm) == ("tf_legacy", "elu", "instance")
    v = onenet_projector(TINY, rngs=nnx.Rngs(0), norm="virtual_batch")
    assert isinstance(v.bn0, VirtualBatchNorm) and isinstance(p.bn0, InstanceNorm)
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.uniform(-1, 1, size=(2, 64, 64, 3)).astype(np.float32))
    ref = jnp.asarray(rng.uniform(-1, 1, size=(3, 64, 64, 3)).astype(np.float32))

    @nnx.jit
    def train_then_store_then_infer(v, x, ref):
        y, lat = v.project(x, reference=ref)      # training: weighted statistics
        v.store_reference_statistics(ref)         # update_popmean
        return y, lat, v(x)                       # inference: stored statistics

    y, lat, y_inf = train_then_store_then_infer(v, x, ref)
    assert y.shape == (2, 64, 64, 3) and lat.shape == (2, 8, 8, 64)
    assert y_inf.shape == (2, 64, 64, 3) and np.all(np.isfinite(np.asarray(y_inf)))
    # the stored statistics persisted (nnx.jit propagates the update)
    assert not np.allclose(np.asarray(v.bn0.mean[...]), 0.0)
    assert np.all(np.asarray(v.debn0.var[...]) > 0)
    with pytest.raises(ValueError):
        ProjectionNetwork(width=TINY, norm="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError):
        p.store_reference_statistics(ref)


def test_discriminators_forward_and_grad():
    img_d, lat_d = onenet_discriminators(TINY, rngs=nnx.Rngs(0))
    assert lat_d.latent_channels == scale_channels(1024, TINY)
    assert lat_d.latent_channels == onenet_projector(TINY, rngs=nnx.Rngs(1)).latent_channels
    assert (img_d.activation, img_d.norm, img_d.resize_mode) == ("elu", "instance", "tf_legacy")
    assert len(img_d.blocks) == 16 and len(lat_d.blocks) == 6
    # the full [3, 4, 6, 3] depth is checked abstractly above; run a shallower one (fast compile)
    img_d = ImageDiscriminator(width=TINY, blocks=(1, 2, 1, 1), rngs=nnx.Rngs(2))
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32))
    lat = jnp.asarray(rng.uniform(-1, 2, (2, 8, 8, lat_d.latent_channels)).astype(np.float32))

    @nnx.jit
    def step(img_d, lat_d, x, lat):
        grads = nnx.grad(lambda d: jnp.mean(d(lat) ** 2))(lat_d)
        return img_d(x), lat_d(lat), grads

    logits_img, logits_lat, g_lat = step(img_d, lat_d, x, lat)
    assert logits_img.shape == (2, 1) and logits_lat.shape == (2, 1)
    assert logits_img.dtype == jnp.float32 and logits_lat.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits_img)))
    leaves = jax.tree.leaves(g_lat)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in leaves)
    assert float(jnp.abs(g_lat["blocks"][0]["conv1"]["kernel"][...]).sum()) > 0
    assert float(jnp.abs(g_lat["blocks"][3]["conv_sc"]["kernel"][...]).sum()) > 0


def test_residual_variant_starts_as_identity_with_same_parameter_count():
    """Not in the paper: P(x) = x + net(x) with a zero-initialised last layer."""
    from flax import nnx

    from admm_jax.priors import count_params, du_admm_prior, make_prior_fn

    plain = du_admm_prior(width=1 / 16, rngs=nnx.Rngs(0))
    res = du_admm_prior(width=1 / 16, rngs=nnx.Rngs(0), residual=True)
    assert count_params(plain) == count_params(res)
    fn, params = make_prior_fn(res)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 3))
    # one compiled program (eagerly every layer op compiles on its own: 4x slower)
    out, g = jax.jit(lambda p: (fn(p, x), jax.grad(lambda q: jnp.sum(fn(q, x) ** 2))(p)))(
        params)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    assert float(jnp.abs(g["recon"]["kernel"][...]).max()) > 0  # the correction can learn


def test_gated_residual_starts_as_identity_and_needs_residual():
    """Not in the paper: P(x) = x + sigmoid(g) * r; the last layer emits 2C maps."""
    from flax import nnx

    from admm_jax.priors import count_params, du_admm_prior, make_prior_fn

    res = du_admm_prior(width=1 / 16, rngs=nnx.Rngs(0), residual=True)
    gated = du_admm_prior(width=1 / 16, rngs=nnx.Rngs(0), residual=True, gated=True)
    c64 = gated.recon.kernel[...].shape[-2]
    assert gated.recon.kernel[...].shape == (4, 4, c64, 6)
    # the extra gate maps: a 4x4 kernel from c64 channels to 3 more outputs, plus 3 biases
    assert count_params(gated) - count_params(res) == 16 * c64 * 3 + 3
    fn, params = make_prior_fn(gated)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(fn(params, x)), np.asarray(x))
    # with a non-zero last layer the output is x + sigmoid(g) * r, checked against the raw maps
    k = jax.random.normal(jax.random.PRNGKey(2), gated.recon.kernel[...].shape) * 0.1
    gated.recon.kernel[...] = k
    v = 2.0 * x - 1.0
    raw = gated.intermediates(v)["recon"]
    assert float(jnp.abs(raw[..., :3]).mean()) > 1e-3  # the correction really is non-zero
    expected = v + jax.nn.sigmoid(raw[..., 3:]) * raw[..., :3]
    np.testing.assert_allclose(np.asarray(gated(v)), np.asarray(expected), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="residual"):
        du_admm_prior(width=1 / 16, rngs=nnx.Rngs(0), gated=True)


# ------------------------------------------------------------------------------------------------
# The residual U-Net prior (not in the paper)
# ------------------------------------------------------------------------------------------------
def _unet_param_count(width: float, levels: int, blocks: int, colors: int = 3) -> int:
    """Independent count: 3×3 convs with bias; c·2^k channels at level k."""
    conv = lambda a, b: 9 * a * b + b  # noqa: E731
    c = max(1, round(64 * width))
    ch = [c * 2 ** k for k in range(levels)]
    n = conv(colors, c) + conv(c, colors)                        # head, tail
    n += sum(blocks * 2 * conv(x, x) for x in ch)                 # encoder blocks
    n += sum(blocks * 2 * conv(x, x) for x in ch[:-1])            # decoder blocks
    n += sum(conv(ch[k], ch[k + 1]) + conv(ch[k + 1], ch[k]) for k in range(levels - 1))
    return n


@pytest.mark.parametrize("width,levels,blocks", [(0.125, 3, 1), (0.25, 3, 1), (0.0625, 2, 2)])
def test_unet_prior_starts_as_identity_with_expected_param_count(width, levels, blocks, images01):
    from admm_jax.priors import unet_prior

    model = unet_prior(width, rngs=nnx.Rngs(0), levels=levels, blocks=blocks)
    assert count_params(model) == _unet_param_count(width, levels, blocks)
    prior_fn, params = make_prior_fn(model)
    out = prior_fn(params, images01)
    assert out.shape == images01.shape and out.dtype == jnp.float32
    # identity up to the rounding of the [0, 1] -> [-1, 1] -> [0, 1] mapping
    np.testing.assert_allclose(np.asarray(out), np.asarray(images01), rtol=0, atol=1e-7)


def test_unet_prior_every_parameter_reaches_the_output(images01):
    """Once the zero-initialised tail is perturbed, every weight of every level has a non-zero
    gradient, i.e. all levels and skips are wired into the output."""
    from admm_jax.priors import unet_prior

    model = unet_prior(1 / 16, rngs=nnx.Rngs(1))
    model.tail.kernel[...] = 0.01 * jax.random.normal(jax.random.PRNGKey(0),
                                                      model.tail.kernel[...].shape)
    prior_fn, params = make_prior_fn(model)
    grads = jax.grad(lambda p: jnp.sum(prior_fn(p, images01) ** 2))(params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) == len(jax.tree_util.tree_leaves(params))
    dead = [jax.tree_util.keystr(k) for k, g in flat if not np.any(np.asarray(g) != 0)]
    assert not dead, dead


def test_unet_prior_rejects_bad_input():
    from admm_jax.priors import unet_prior

    model = unet_prior(1 / 16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(jnp.zeros((1, 30, 30, 3)))
    with pytest.raises(ValueError, match=r"expected \(B, H, W, 3\)"):
        model(jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(ValueError, match="width must be positive"):
        unet_prior(0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="levels and blocks"):
        unet_prior(0.25, rngs=nnx.Rngs(0), levels=0)


# ------------------------------------------------------------------------------------------------
# build_prior_network: the one constructor behind training configs, saved metadata, shipped priors


@pytest.mark.parametrize("architecture, options, direct", [
    ("unet", dict(levels=2, blocks=2),
     lambda rngs: unet_prior(width=TINY, levels=2, blocks=2, rngs=rngs)),
    ("paper", dict(residual=True, gated=True),
     lambda rngs: du_admm_prior(width=TINY, residual=True, gated=True, rngs=rngs)),
])
def test_build_prior_network_is_the_named_constructor(architecture, options, direct):
    from admm_jax.priors import build_prior_network

    apply_fn, params = build_prior_network(architecture, width=TINY, seed=3, **options)
    want_fn, want = make_prior_fn(direct(nnx.Rngs(3)))
    # same seed, same constructor: the same initial weights, bit for bit, and the same outputs
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, want)
    x = jax.random.uniform(jax.random.PRNGKey(0), (1, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(apply_fn(params, x)), np.asarray(want_fn(want, x)))
    # abstract: the same tree of shapes and dtypes, no values
    _, template = build_prior_network(architecture, width=TINY, seed=3, abstract=True, **options)
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), want)
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), template) == shapes
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree_util.tree_leaves(template))


def test_build_prior_network_refuses_unknown_names_and_foreign_options():
    from admm_jax.priors import PRIOR_ARCHITECTURES, build_prior_network
    from admm_jax.train.config import ARCHITECTURES

    assert ARCHITECTURES == PRIOR_ARCHITECTURES  # what TrainConfig accepts, this builds

    with pytest.raises(ValueError, match=r"architecture must be one of \('paper', 'unet'\), "
                                         r"got 'resnet'"):
        build_prior_network("resnet", width=TINY)
    with pytest.raises(ValueError, match="residual=True/gated=False: .* 'paper' architecture"):
        build_prior_network("unet", width=TINY, residual=True, abstract=True)
    with pytest.raises(ValueError, match="levels=4/blocks=1: .* 'unet' architecture"):
        build_prior_network("paper", width=TINY, levels=4, abstract=True)


def test_image_size_multiple_follows_the_architecture():
    from admm_jax.priors import build_prior_network, image_size_multiple

    assert image_size_multiple("paper") == 64
    assert [image_size_multiple("unet", levels) for levels in (1, 2, 3, 4)] == [1, 2, 4, 8]
    # the U-Net runs at a side of the multiple and refuses one it does not divide
    apply_fn, params = build_prior_network("unet", width=TINY, levels=3)
    assert apply_fn(params, jnp.zeros((1, 12, 4, 3))).shape == (1, 12, 4, 3)
    with pytest.raises(ValueError, match=r"must be divisible by 4 for 3 levels"):
        apply_fn(params, jnp.zeros((1, 10, 4, 3)))
    with pytest.raises(ValueError, match="architecture must be one of"):
        image_size_multiple("resnet")
