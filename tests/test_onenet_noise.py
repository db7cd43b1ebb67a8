"""Tests for admm_jax.baselines: OneNet's pre-training noise family (spec §1.6) and its
adversarial objective, optimisers and weight clamping (spec §1.5).

Pillow is the reference for the nearest-neighbour and bicubic resizes (the original went through
``scipy.misc.imresize`` → PIL). Statistical checks use one large fixed-key batch and binomial /
normal-approximation bounds of 4σ.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from admm_jax.baselines import (
    OneNetLossWeights,
    bicubic_upsample,
    blocky_image,
    blocky_index_table,
    clamp_weights,
    expected_map_power,
    mean_sigmoid_cross_entropy,
    nearest_indices,
    onenet_discriminator_loss,
    onenet_noise,
    onenet_optimizers,
    onenet_projector_loss,
    sigmoid_cross_entropy,
)

H = W = 64
C = 3
N_BIG = 2000


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big():
    """2000 zero images through the default noise family (one compile). For zero images the
    blocky image is zero too (bytescale of a constant image), so ``noisy`` is the noise itself."""
    x = jnp.zeros((N_BIG, H, W, C), jnp.float32)
    noisy, info = jax.jit(onenet_noise)(jax.random.key(2024), x)
    return np.asarray(noisy), {k: np.asarray(v) for k, v in info.items()}


def _test_images(n: int, seed: int = 0) -> np.ndarray:
    """Random 8-bit images (k/255) whose min 0 and max 1 fill 16×16 corners, so that every
    nearest-neighbour downscale (≥ 12 px for ratios ≥ 0.2) keeps both extremes."""
    rng = np.random.default_rng(seed)
    img = rng.integers(1, 255, size=(n, H, W, C)).astype(np.float32) / 255.0
    img[:, :16, :16, :] = 0.0
    img[:, -16:, -16:, :] = 1.0
    return img


@pytest.fixture(scope="module")
def blocky_run():
    x = _test_images(48)
    noisy, info = jax.jit(
        functools.partial(onenet_noise, blocky_prob=0.5, sigma_range=(0.0, 0.0))
    )(jax.random.key(7), jnp.asarray(x))
    return x, np.asarray(noisy), {k: np.asarray(v) for k, v in info.items()}


# ----------------------------------------------------------------------------- resizing vs PIL


def _pil_resize_int(a: np.ndarray, size_wh: tuple[int, int], resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.int32), mode="I").resize(size_wh, resample))


@pytest.mark.parametrize("n", [64, 48])
def test_blocky_index_table_matches_pillow(n):
    table = blocky_index_table(n)
    idx = np.tile(np.arange(n, dtype=np.int32)[None, :], (2, 1))
    for s in range(1, n + 1):
        down = _pil_resize_int(idx, (s, 2), Image.NEAREST)
        up = _pil_resize_int(down, (n, 2), Image.NEAREST)[0]
        np.testing.assert_array_equal(table[s], up, err_msg=f"n={n}, s={s}")
        np.testing.assert_array_equal(nearest_indices(n, s), down[0])


def test_nearest_index_conventions():
    k = np.arange(7)
    np.testing.assert_array_equal(nearest_indices(64, 7, "asymmetric"), (k * 64) // 7)
    np.testing.assert_array_equal(nearest_indices(64, 7, "half_pixel"), ((2 * k + 1) * 64) // 14)
    # Pillow's float accumulation lands just below the exact integer 3.5·64/7 = 32
    assert nearest_indices(64, 7, "pil")[3] == 31 and nearest_indices(64, 7, "half_pixel")[3] == 32
    with pytest.raises(ValueError):
        nearest_indices(64, 7, "bogus")


def test_bicubic_upsample_matches_pillow_float_mode_and_jax_resize():
    rng = np.random.default_rng(1)
    up = jax.jit(lambda m, r, c: bicubic_upsample(m, r, c, (H, W)))  # r, c traced: one compile
    worst_pil = worst_jax = 0.0
    for r in range(1, 7):
        for c in range(1, 7):
            m = rng.uniform(-1.732, 1.732, size=(6, 6)).astype(np.float32)
            ours = np.asarray(up(jnp.asarray(m), r, c))
            small = np.ascontiguousarray(m[:r, :c])
            pil = np.asarray(Image.fromarray(small, mode="F").resize((W, H), Image.BICUBIC))
            worst_pil = max(worst_pil, float(np.abs(ours - pil).max()))
            if (r, c) in ((1, 1), (2, 5), (6, 6)):  # jax.image.resize compiles per shape
                ref = np.asarray(jax.image.resize(jnp.asarray(small), (H, W), "cubic"))
                worst_jax = max(worst_jax, float(np.abs(ours - ref).max()))
    assert worst_pil < 1e-5 and worst_jax < 1e-5, (worst_pil, worst_jax)


# ----------------------------------------------------------------------------- blocky images


def _reference_blocky(img: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """scipy.misc.imresize path: bytescale (whole image) → uint8 → PIL NEAREST down → up → /255."""
    lo, hi = img.min(), img.max()
    rng = hi - lo if hi > lo else 1.0
    u8 = (np.clip((img.astype(np.float64) - lo) * (255.0 / rng), 0, 255) + 0.5).astype(np.uint8)
    small = Image.fromarray(u8, mode="RGB").resize((sw, sh), Image.NEAREST)
    return np.asarray(small.resize((img.shape[1], img.shape[0]), Image.NEAREST)) / 255.0


def test_blocky_images_match_pillow_and_are_piecewise_constant(blocky_run):
    x, noisy, info = blocky_run
    blk = info["blocky"]
    assert 0 < blk.sum() < len(blk)
    # down sizes are int(H·ratio), ratio in [0.2, 0.95)
    assert np.all((info["ratio"] >= 0.2) & (info["ratio"] < 0.95))
    np.testing.assert_array_equal(info["down_h"], np.floor(info["ratio"] * H).astype(int))
    np.testing.assert_array_equal(info["down_h"], info["down_w"])
    for b in np.nonzero(blk)[0]:
        sh, sw = int(info["down_h"][b]), int(info["down_w"][b])
        ref = _reference_blocky(x[b], sh, sw)
        np.testing.assert_allclose(noisy[b], ref, atol=1e-6)
        # nearest neighbour: exactly sh distinct row runs and sw column runs, range [0, 1]
        row_changes = np.any(noisy[b][1:] != noisy[b][:-1], axis=(1, 2)).sum()
        col_changes = np.any(noisy[b][:, 1:] != noisy[b][:, :-1], axis=(0, 2)).sum()
        assert row_changes + 1 == sh and col_changes + 1 == sw
        assert noisy[b].min() == 0.0 and noisy[b].max() == 1.0
    # not blocky and σ = 0: the image passes through untouched
    np.testing.assert_array_equal(noisy[~blk], x[~blk])


def test_blocky_contrast_stretch_quantize_and_constant_quirk():
    rng = np.random.default_rng(3)
    img = (0.2 + 0.4 * rng.random((H, W, C))).astype(np.float32)
    img[:16, :16] = 0.2  # extremes survive any downscale ≥ 12 px
    img[-16:, -16:] = 0.6
    out = np.asarray(blocky_image(jnp.asarray(img), 0.5))
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)  # multiples of 1/255
    # without the quirk the values stay in the original range and are not quantised
    raw = np.asarray(blocky_image(jnp.asarray(img), 0.5, contrast_stretch=False, quantize=False))
    assert raw.min() >= 0.2 - 1e-7 and raw.max() <= 0.6 + 1e-7
    assert set(np.unique(raw)) <= set(np.unique(img))
    # bytescale of a constant image divides by 1: the blocky image is all zeros
    const = np.asarray(blocky_image(jnp.full((H, W, C), 0.7, jnp.float32), 0.3))
    assert np.all(const == 0.0)


# ----------------------------------------------------------------------------- statistics


def test_blocky_fraction(big):
    _, info = big
    p, n = 0.3, N_BIG
    frac = info["blocky"].mean()
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / n), frac


def test_sigma_range_and_uniformity(big):
    _, info = big
    s = info["sigma"]
    assert s.min() >= 0.05 and s.max() < 0.5
    sd = 0.45 / np.sqrt(12)
    assert abs(s.mean() - 0.275) < 4 * sd / np.sqrt(N_BIG), s.mean()
    # roughly uniform: each of 5 equal bins holds ≈ 20 %
    counts = np.histogram(s, bins=5, range=(0.05, 0.5))[0] / N_BIG
    assert np.all(np.abs(counts - 0.2) < 4 * np.sqrt(0.2 * 0.8 / N_BIG)), counts


def test_map_sizes(big):
    _, info = big
    # r = max(round(64·U·0.09), 1): P(1) = 1.5/5.76, P(2..5) = 1/5.76, P(6) = 0.26/5.76
    f = H * 0.09
    p = np.array([1.5 / f, 1 / f, 1 / f, 1 / f, 1 / f, (f - 5.5) / f])
    for name in ("map_rows", "map_cols"):
        v = info[name]
        assert v.shape == (N_BIG, C)
        assert v.min() == 1 and v.max() == 6
        freq = np.bincount(v.ravel(), minlength=7)[1:] / v.size
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / v.size)), (name, freq)
    # rows and cols are drawn independently
    corr = np.corrcoef(info["map_rows"].ravel(), info["map_cols"].ravel())[0, 1]
    assert abs(corr) < 4 / np.sqrt(info["map_rows"].size)


def test_overall_noise_std(big):
    noise, info = big  # zero images: noisy == noise
    # interpolation shrinks the unit-variance map: E[map²] = a²/3·mean Σw_r²·mean Σw_c² (≤ 1)
    pw = expected_map_power(np.arange(1, 7), np.arange(1, 7), H, W)
    assert pw[0] == pytest.approx(1.732**2 / 3) and np.all(np.diff(pw) < 0) and pw[-1] > 0.7
    expected = np.mean(info["sigma"][:, None] ** 2 * expected_map_power(info["map_rows"], info["map_cols"], H, W))
    measured = np.mean(noise.astype(np.float64) ** 2)
    assert measured == pytest.approx(expected, rel=0.05)
    # unconditional: E[σ²] = (0.5³ − 0.05³)/(3·0.45) = 0.0925, E[map²] ≈ 0.843 → std ≈ 0.279
    f = H * 0.09
    p = np.array([0, 1.5 / f, 1 / f, 1 / f, 1 / f, 1 / f, (f - 5.5) / f])
    e_map = np.sum(p[:, None] * p[None, :] * expected_map_power(np.arange(7)[:, None], np.arange(7)[None, :], H, W))
    assert 0.8 < e_map < 0.9
    e_std = np.sqrt(0.0925 * e_map)
    assert np.sqrt(measured) == pytest.approx(e_std, rel=0.05)
    assert abs(noise.mean()) < 1e-3


def _quadrant_ratio(z: np.ndarray) -> np.ndarray:
    """max / min over the four quadrants of the per-channel std; (B, C)."""
    h, w = z.shape[1] // 2, z.shape[2] // 2
    q = np.stack([z[:, :h, :w], z[:, :h, w:], z[:, h:, :w], z[:, h:, w:]], 1).std(axis=(2, 3))
    return q.max(1) / q.min(1)


def test_spatially_varying_std(big):
    noise, info = big
    z = noise[:500] / info["sigma"][:500, None, None, None]
    ratio = _quadrant_ratio(z)
    gauss = _quadrant_ratio(np.random.default_rng(0).standard_normal(z.shape).astype(np.float32))
    const_map = (info["map_rows"][:500] == 1) & (info["map_cols"][:500] == 1)
    assert np.median(gauss) < 1.1 and gauss.max() < 1.3
    assert np.median(ratio[~const_map]) > 1.4  # strongly varying local std
    assert np.median(ratio[const_map]) < 1.1  # a 1×1 map is a constant factor


def test_plain_gaussian_option():
    x = jnp.zeros((300, 16, 16, C), jnp.float32)
    noisy, info = jax.jit(
        functools.partial(onenet_noise, spatially_varying=False, blocky_prob=0.0)
    )(jax.random.key(1), x)
    z = np.asarray(noisy) / np.asarray(info["sigma"])[:, None, None, None]
    assert not np.asarray(info["blocky"]).any()
    assert z.std() == pytest.approx(1.0, rel=0.02) and abs(z.mean()) < 0.02


# ----------------------------------------------------------------------------- determinism, jit, API


def test_determinism_and_jit():
    x = jnp.asarray(_test_images(4, seed=5))
    f = jax.jit(onenet_noise, static_argnames=("blocky_prob", "nearest_mode"))
    a1, i1 = f(jax.random.key(11), x, blocky_prob=0.5)
    a2, i2 = f(jax.random.key(11), x, blocky_prob=0.5)
    b, ib = f(jax.random.key(12), x, blocky_prob=0.5)
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    for k in i1:
        np.testing.assert_array_equal(np.asarray(i1[k]), np.asarray(i2[k]))
    assert not np.allclose(np.asarray(a1), np.asarray(b))
    assert a1.shape == x.shape and a1.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(a1)))


def test_input_validation():
    with pytest.raises(ValueError):
        onenet_noise(jax.random.key(0), jnp.zeros((H, W, C)))
    with pytest.raises(TypeError):
        onenet_noise(jax.random.key(0), jnp.zeros((1, H, W, C), jnp.uint8))
    with pytest.raises(ValueError):
        onenet_noise(jax.random.key(0), jnp.zeros((1, H, W, C)), nearest_mode="bilinear")


# ----------------------------------------------------------------------------- losses


def _np_ce(logits, t):
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))  # |ℓ| ≲ 10 here: no saturation


@pytest.fixture(scope="module")
def loss_inputs():
    rng = np.random.default_rng(42)
    shape = (5, 8, 8, 3)
    t = {k: rng.uniform(-1, 1, shape).astype(np.float32) for k in ("x", "v", "proj_x", "proj_v")}
    for k in ("d_x", "d_proj_x", "d_proj_v", "dl_latent_x", "dl_latent_v"):
        t[k] = (3 * rng.standard_normal(5)).astype(np.float32)
    return t


def test_sigmoid_cross_entropy_soft_targets():
    logits = np.array([-30.0, -2.0, 0.0, 1.5, 30.0], np.float32)
    for t in (0.0, 0.85, 1.0):
        ours = np.asarray(sigmoid_cross_entropy(jnp.asarray(logits), t))
        lg = logits.astype(np.float64)  # −t·log σ(ℓ) − (1−t)·log(1−σ(ℓ)), via softplus
        ref = t * np.logaddexp(0, -lg) + (1 - t) * np.logaddexp(0, lg)
        # float32 log/exp are good to a few ulps (measured up to 2.3e-7 relative), and their
        # last ulps differ between XLA's vectorised and scalar paths; 1e-5 is ~80 ulps, while a
        # wrong formula is off by O(1) at these logits
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-12)
    assert float(mean_sigmoid_cross_entropy(jnp.zeros(4), 0.85)) == pytest.approx(np.log(2))


def test_projector_loss_matches_hand_computation(loss_inputs):
    t = loss_inputs
    w = OneNetLossWeights()
    assert (w.lambda_ratio, w.lambda_l2, w.lambda_latent, w.lambda_img, w.lambda_de) == (
        1e-2, 5e-3, 1e-4, 1e-3, 1.0)
    mse = lambda a, b: np.mean((a.astype(np.float64) - b) ** 2)  # noqa: E731
    ref = (
        1e-4 * _np_ce(t["dl_latent_v"], 1.0)
        + 1e-3 * (1e-2 * _np_ce(t["d_proj_x"], 1.0) + 0.99 * _np_ce(t["d_proj_v"], 1.0))
        + 5e-3 * (1e-2 * mse(t["proj_x"], t["x"]) + 0.99 * mse(t["proj_v"], t["v"]))
        + 1.0 * mse(t["proj_v"], t["x"])
    )
    kw = {k: jnp.asarray(t[k]) for k in ("x", "v", "proj_x", "proj_v", "d_proj_x", "d_proj_v", "dl_latent_v")}
    loss, terms = onenet_projector_loss(**kw, return_terms=True)
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(onenet_projector_loss(**kw)) == pytest.approx(ref, rel=1e-5)
    assert set(terms) == {"adv_latent", "adv_img_x", "adv_img_v", "recon_x", "stay_v", "denoise"}
    # the generator uses hard targets 1: the smoothing label must not change it
    smoothed = OneNetLossWeights(soft_positive_label=0.5)
    assert float(onenet_projector_loss(**kw, weights=smoothed)) == pytest.approx(float(loss), rel=1e-7)
    # jit with the (frozen, hashable) weights static
    jl = jax.jit(lambda kw: onenet_projector_loss(**kw, weights=w))(kw)
    assert float(jl) == pytest.approx(ref, rel=1e-5)


def test_discriminator_loss_matches_hand_computation(loss_inputs):
    t = loss_inputs
    ref = 1e-4 * (1e-2 * _np_ce(t["dl_latent_x"], 0.85) + 0.99 * _np_ce(t["dl_latent_v"], 0.0)) + 1e-3 * 0.5 * (
        _np_ce(t["d_x"], 0.85) + 1e-2 * _np_ce(t["d_proj_x"], 0.0) + 0.99 * _np_ce(t["d_proj_v"], 0.0)
    )
    kw = {k: jnp.asarray(t[k]) for k in ("d_x", "d_proj_x", "d_proj_v", "dl_latent_x", "dl_latent_v")}
    loss, terms = onenet_discriminator_loss(**kw, return_terms=True)
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    # positives use 0.85: very confident "real" logits are penalised (target 0.85, not 1)
    big_pos = dict(kw, d_x=jnp.full(5, 30.0), dl_latent_x=jnp.full(5, 30.0))
    _, tb = onenet_discriminator_loss(**big_pos, return_terms=True)
    assert float(tb["img_pos"]) == pytest.approx(0.15 * 30.0, rel=1e-4)
    hard = OneNetLossWeights(soft_positive_label=1.0)
    _, th = onenet_discriminator_loss(**big_pos, weights=hard, return_terms=True)
    assert float(th["img_pos"]) < 1e-6
    # negatives use 0: very negative fake logits cost nothing
    _, tn = onenet_discriminator_loss(**dict(kw, d_proj_v=jnp.full(5, -30.0)), return_terms=True)
    assert float(tn["img_neg_v"]) < 1e-6


# ----------------------------------------------------------------------------- optimisers, clamping


def _np_adam(grads, lr, b1, b2, eps):
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return out


def _run(tx, grads):
    p = jnp.zeros_like(grads[0])
    state = tx.init(p)
    ups = []
    for g in grads:
        u, state = tx.update(g, state, p)
        ups.append(np.asarray(u, np.float64))
    return ups


def test_optimizers_hyperparameters_and_elementwise_clipping():
    g_tx, d_tx = onenet_optimizers()
    raw = [jnp.array([1e-6, 3.0, -50.0, 12.0]), jnp.array([2e-6, -1.0, 40.0, -0.5])]
    clipped = [np.clip(np.asarray(g, np.float64), -10, 10) for g in raw]
    for tx, (b1, b2, eps) in ((g_tx, (0.9, 0.999, 1e-6)), (d_tx, (0.5, 0.999, 1e-8))):
        ours = _run(tx, raw)
        ref = _np_adam(clipped, 2e-4, b1, b2, eps)
        for o, r in zip(ours, ref):
            # float32 bias corrections 1 − β₂ᵗ (~1e-3·t) lose three digits to cancellation: one
            # ulp of β₂ᵗ is ~6e-5 of them, and β₂ᵗ comes from a float32 pow whose last ulps
            # depend on the implementation; 1e-3 covers that, a wrong β or ε moves steps by >= 5 %
            np.testing.assert_allclose(o, r, rtol=1e-3, atol=1e-12)
    # element-wise (not global-norm): −50 and −10 give identical updates, other entries unaffected
    a = _run(g_tx, [jnp.array([-50.0, 0.3])])[0]
    b = _run(g_tx, [jnp.array([-10.0, 0.3])])[0]
    np.testing.assert_allclose(a, b, rtol=1e-7)
    # the two ε differ: a tiny gradient moves G by lr/2 but D by ≈ lr on the first step
    small = [jnp.array([1e-6])]
    assert _run(g_tx, small)[0][0] == pytest.approx(-1e-4, rel=1e-3)
    assert _run(d_tx, small)[0][0] == pytest.approx(-2e-4 / 1.01, rel=1e-3)


def test_optimizers_epoch_decay_and_tf1_variant():
    g_tx, d_tx = onenet_optimizers(epoch_len=3)
    grads = [jnp.array([1.0])] * 7
    for tx in (g_tx, d_tx):
        mags = np.abs(np.concatenate(_run(tx, grads)))  # constant grad: |step| ≈ lr_t
        # rtol: float32 bias corrections, see above; the decay itself is 5 % per epoch
        np.testing.assert_allclose(mags, 2e-4 * 0.95 ** (np.arange(7) // 3), rtol=1e-3)
    # G lr is min(lr, 0.2 / λ_de)
    g_small, _ = onenet_optimizers(lambda_de=2000.0)
    assert abs(_run(g_small, [jnp.array([1.0])])[0][0]) == pytest.approx(1e-4, rel=1e-3)
    # TF1 ε placement: m/(√v + ε)·√(1−b2^t)/(1−b1^t)
    g_tf, _ = onenet_optimizers(adam_variant="tf1")
    g = 1e-6
    step1 = _run(g_tf, [jnp.array([g])])[0][0]
    m, v = 0.1 * g, 0.001 * g * g
    # (the optax placement would give -1e-4, 60 % away; rel 1e-3: float32 bias corrections)
    assert step1 == pytest.approx(-2e-4 * np.sqrt(0.001) / 0.1 * m / (np.sqrt(v) + 1e-6), rel=1e-3)
    with pytest.raises(ValueError):
        onenet_optimizers(adam_variant="adamw")


def test_clamp_weights_only_kernels():
    params = {
        "conv1": {"kernel": jnp.array([[-20.0, 5.0], [11.0, -3.0]]), "bias": jnp.array([-20.0, 30.0])},
        "norm": {"scale": jnp.array([15.0]), "bias": jnp.array([-15.0])},
        "W": jnp.array([100.0, -0.5]),
    }
    out = clamp_weights(params)
    np.testing.assert_array_equal(out["conv1"]["kernel"], [[-10.0, 5.0], [10.0, -3.0]])
    np.testing.assert_array_equal(out["W"], [10.0, -0.5])
    np.testing.assert_array_equal(out["conv1"]["bias"], params["conv1"]["bias"])
    np.testing.assert_array_equal(out["norm"]["scale"], params["norm"]["scale"])
    np.testing.assert_array_equal(out["norm"]["bias"], params["norm"]["bias"])
    # custom range and predicate
    tight = clamp_weights(params, -0.01, 0.01, predicate=lambda path, leaf: path[0] == "norm")
    np.testing.assert_array_equal(tight["norm"]["scale"], np.float32([0.01]))
    np.testing.assert_array_equal(tight["conv1"]["kernel"], params["conv1"]["kernel"])
    # jit-able
    jo = jax.jit(clamp_weights)(params)
    np.testing.assert_array_equal(jo["conv1"]["kernel"], out["conv1"]["kernel"])


def test_clamp_weights_on_nnx_state():
    nnx = pytest.importorskip("flax.nnx")
    lin = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    _, state = nnx.split(lin, nnx.Param)
    state = jax.tree.map(lambda a: a * 0 + 50.0, state)
    out = clamp_weights(state)
    leaves = {tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in p): np.asarray(v)
              for p, v in jax.tree_util.tree_leaves_with_path(out)}
    kern = [v for p, v in leaves.items() if "kernel" in p][0]
    bias = [v for p, v in leaves.items() if "bias" in p][0]
    assert np.all(kern == 10.0) and np.all(bias == 50.0)
