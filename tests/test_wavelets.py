"""Tests for admm_jax.wavelets (PyWavelets is the reference)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax import wavelets as wv
from admm_jax.wavelets import dwt2, idwt2, soft_threshold, wavelet_l1_prox

pywt = pytest.importorskip("pywt")


def _pywt_packed(img: np.ndarray, wavelet: str, level: int) -> np.ndarray:
    """Reference: pywt.wavedec2 + coeffs_to_array per channel of an (H, W, C) image."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "level too high" warning for beyond-max levels
        for c in range(img.shape[-1]):
            coeffs = pywt.wavedec2(img[..., c], wavelet, mode="periodization", level=level)
            arr, _ = pywt.coeffs_to_array(coeffs)
            out.append(arr)
    return np.stack(out, axis=-1)


def _rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def _f32_atol(level: int, x) -> float:
    """Tolerance for a float32 ``level``-level DWT of ``x`` against a float64 reference. Each
    level filters twice (rows, columns) with 2-8 taps, rounding at the scale of that level's
    approximation band, which grows about 2x per level (sum of the low-pass taps per axis is
    √2): a few ulps of 2^L·max|x| per level, in an order each backend picks.
    2e-6·(L + 1)·2^L·max|x| (about 32·(L + 1) ulps of the largest coefficient) keeps a factor
    > 10 over the measured error on every case here (the closest: 2 ulps at L = 1), while a
    wrong filter, band or packing is off by O(coefficient)."""
    return 2e-6 * (level + 1) * 2.0 ** level * float(np.max(np.abs(x)))


# ---------------------------------------------------------------------------------------------
# filters and one-level matrices

@pytest.mark.parametrize("wavelet", wv.WAVELETS)
def test_filter_taps_match_pywt_and_are_orthonormal(wavelet):
    ref = pywt.Wavelet(wavelet)
    lo, hi = wv._filters(wavelet)
    np.testing.assert_allclose(lo, ref.dec_lo, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hi, ref.dec_hi, rtol=0, atol=1e-15)
    # Independent facts: sum = √2, unit norm, orthogonal to even shifts, p = L/2 vanishing moments.
    assert lo.sum() == pytest.approx(np.sqrt(2), abs=1e-14)
    n = lo.size
    for s in range(2, n, 2):
        assert np.dot(lo[s:], lo[:-s]) == pytest.approx(0.0, abs=1e-14)
    assert np.dot(lo, lo) == pytest.approx(1.0, abs=1e-14)
    k = np.arange(n)
    for m in range(n // 2):
        assert np.dot(k ** m, hi) == pytest.approx(0.0, abs=1e-9 * max(1, n ** m))


@pytest.mark.parametrize("wavelet", wv.WAVELETS)
@pytest.mark.parametrize("n", [2, 4, 8, 16, 64])
def test_analysis_matrix_matches_pywt_dwt(wavelet, n):
    mat = wv._analysis_matrix(wavelet, n)
    eye = np.eye(n)
    cols = [pywt.dwt(eye[i], wavelet, mode="periodization") for i in range(n)]
    ref = np.vstack([np.array([c[0] for c in cols]).T, np.array([c[1] for c in cols]).T])
    np.testing.assert_allclose(mat, ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(mat @ mat.T, eye, rtol=0, atol=1e-14)


def test_max_level_matches_pywt():
    for wavelet in wv.WAVELETS:
        for n in (1, 2, 7, 8, 16, 63, 64, 128):
            assert wv.max_level(n, wavelet) == pywt.dwt_max_level(n, wavelet)
    assert wv.max_level(64, "db4") == 3


def test_wavelet_names():
    assert set(wv.wavelet_names()) == {"haar", "db4"}
    assert wv.wavelet_names() == wv.WAVELETS


# ---------------------------------------------------------------------------------------------
# (1) coefficients equal pywt

@pytest.mark.parametrize(
    "wavelet, shape, level",
    [
        ("db4", (64, 64, 3), 3),
        ("db4", (64, 64, 3), 1),
        ("haar", (16, 16, 3), 2),
        ("haar", (16, 16, 2), 4),      # max level for haar: 1x1 approximation
        ("db4", (32, 64, 3), 2),       # non-square
        ("db4", (64, 64, 1), 5),       # beyond pywt's max level (filters wrap); pywt only warns
    ],
)
def test_dwt2_matches_pywt_float32(wavelet, shape, level):
    img = _rand(shape, seed=1)
    got = np.asarray(dwt2(jnp.asarray(img), wavelet, level))
    assert got.shape == img.shape and got.dtype == np.float32
    ref = _pywt_packed(img.astype(np.float64), wavelet, level)
    np.testing.assert_allclose(got, ref, rtol=0, atol=_f32_atol(level, img))


def test_dwt2_packing_layout_db4():
    """Explicitly check where cA, cH, cV, cD go (pywt.coeffs_to_array convention)."""
    img = _rand((64, 64), seed=2).astype(np.float64)
    got = np.asarray(dwt2(jnp.asarray(img[..., None], jnp.float32), "db4", 3))[..., 0]
    ca, *details = pywt.wavedec2(img, "db4", mode="periodization", level=3)
    tol = _f32_atol(3, img)
    np.testing.assert_allclose(got[:8, :8], ca, atol=tol)
    for (ch, cv, cd), n in zip(details, (8, 16, 32)):  # coarsest first
        np.testing.assert_allclose(got[n:2 * n, :n], ch, atol=tol)       # cH bottom-left
        np.testing.assert_allclose(got[:n, n:2 * n], cv, atol=tol)       # cV top-right
        np.testing.assert_allclose(got[n:2 * n, n:2 * n], cd, atol=tol)  # cD bottom-right


def test_dwt2_batched_leading_axes():
    x = _rand((2, 3, 32, 32, 2), seed=3)
    got = np.asarray(dwt2(jnp.asarray(x), "db4", 2))
    for a in range(2):
        for b in range(3):
            ref = _pywt_packed(x[a, b].astype(np.float64), "db4", 2)
            np.testing.assert_allclose(got[a, b], ref, atol=_f32_atol(2, x))


@pytest.mark.parametrize("wavelet, level", [("db4", 3), ("haar", 3)])
def test_dwt2_matches_pywt_float64(x64, wavelet, level):
    img = _rand((64, 64, 3), seed=4, dtype=np.float64)
    got = dwt2(jnp.asarray(img), wavelet, level)
    assert got.dtype == jnp.float64
    ref = _pywt_packed(img, wavelet, level)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-10)
    # and the inverse matches pywt.waverec2
    ref_coeffs = pywt.wavedec2(img[..., 0], wavelet, mode="periodization", level=level)
    arr, slices = pywt.coeffs_to_array(ref_coeffs)
    back = np.asarray(idwt2(jnp.asarray(arr[..., None]), wavelet, level))[..., 0]
    rec = pywt.waverec2(pywt.array_to_coeffs(arr, slices, output_format="wavedec2"), wavelet,
                        mode="periodization")
    np.testing.assert_allclose(back, rec, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# (2) perfect reconstruction, (3) energy / adjointness

@pytest.mark.parametrize("wavelet, level", [("db4", 3), ("db4", 1), ("haar", 6)])
def test_perfect_reconstruction_float32(wavelet, level):
    x = jnp.asarray(_rand((2, 64, 64, 3), seed=5))
    np.testing.assert_allclose(np.asarray(idwt2(dwt2(x, wavelet, level), wavelet, level)),
                               np.asarray(x), rtol=0, atol=2 * _f32_atol(level, x))


def test_perfect_reconstruction_float64(x64):
    x = jnp.asarray(_rand((2, 64, 32, 3), seed=6, dtype=np.float64))
    for wavelet in wv.WAVELETS:
        rec = idwt2(dwt2(x, wavelet, 3), wavelet, 3)
        np.testing.assert_allclose(np.asarray(rec), np.asarray(x), rtol=0, atol=1e-12)
        # and the other way round: dwt2(idwt2(c)) == c
        c = jnp.asarray(np.random.default_rng(7).standard_normal(x.shape))
        np.testing.assert_allclose(np.asarray(dwt2(idwt2(c, wavelet, 3), wavelet, 3)),
                                   np.asarray(c), rtol=0, atol=1e-12)


@pytest.mark.parametrize("wavelet", wv.WAVELETS)
def test_energy_preservation_and_adjoint(wavelet):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((2, 64, 64, 3)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((2, 64, 64, 3)), jnp.float32)
    cx = dwt2(x, wavelet, 3)
    assert float(jnp.linalg.norm(cx)) == pytest.approx(float(jnp.linalg.norm(x)), rel=1e-5)
    # <W x, y> == <x, W^{-1} y>  (inverse == adjoint)
    lhs = float(jnp.vdot(cx, y))
    rhs = float(jnp.vdot(x, idwt2(y, wavelet, 3)))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-3)


def test_vjp_of_dwt2_is_idwt2(x64):
    x = jnp.asarray(_rand((1, 16, 16, 2), seed=9, dtype=np.float64))
    g = jnp.asarray(np.random.default_rng(10).standard_normal(x.shape))
    _, vjp = jax.vjp(lambda z: dwt2(z, "db4", 2), x)
    np.testing.assert_allclose(np.asarray(vjp(g)[0]), np.asarray(idwt2(g, "db4", 2)), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# soft threshold and (4) the prox is the minimiser

def test_soft_threshold_values():
    w = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(np.asarray(soft_threshold(w, 1.0)),
                               [-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    t = jnp.array([[0.0], [2.5]])  # broadcasts to (2, 7)
    np.testing.assert_allclose(np.asarray(soft_threshold(w, t)),
                               np.stack([np.asarray(w), [-0.5, 0, 0, 0, 0, 0, 0.5]]))


def _pywt_matrix(shape_hw, wavelet, level):
    """Dense orthonormal (n, n) matrix of wavedec2+coeffs_to_array on an (H, W) image, from pywt."""
    h, w = shape_hw
    n = h * w
    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        cols.append(_pywt_packed(e.reshape(h, w, 1), wavelet, level).ravel())
    return np.array(cols).T


@pytest.mark.parametrize("wavelet, shape, level", [("haar", (4, 4), 2), ("db4", (8, 8), 1)])
def test_prox_is_minimiser(x64, wavelet, shape, level):
    """Check prox against the objective built independently with pywt (float64, tiny image)."""
    rng = np.random.default_rng(11)
    lam, rho = 0.3, 1.7
    v = rng.standard_normal(shape + (1,))
    z = np.asarray(wavelet_l1_prox(lam, wavelet, level)(jnp.asarray(v[None]), rho))[0]
    wmat = _pywt_matrix(shape, wavelet, level)

    def objective(x):
        return lam * np.abs(wmat @ x.ravel()).sum() + 0.5 * rho * np.sum((x - v) ** 2)

    # (a) optimality coefficient-wise: 0 ∈ rho(c − u) + lam·∂|c|, c = W z, u = W v.
    c, u = wmat @ z.ravel(), wmat @ v.ravel()
    t = lam / rho
    nz = np.abs(c) > 1e-12
    assert nz.any() and (~nz).any()  # both regimes exercised
    np.testing.assert_allclose(rho * (c[nz] - u[nz]) + lam * np.sign(c[nz]), 0.0, atol=1e-10)
    assert np.all(np.abs(u[~nz]) <= t + 1e-12)

    # (b) strong convexity: F(z + d) >= F(z) + rho/2 ||d||² for every perturbation d.
    f0 = objective(z)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(50):
            d = scale * rng.standard_normal(z.shape)
            assert objective(z + d) >= f0 + 0.5 * rho * np.sum(d ** 2) - 1e-10
    for i in range(z.size):  # single-pixel moves
        for s in (1e-4, -1e-4):
            d = np.zeros(z.size)
            d[i] = s
            assert objective(z + d.reshape(z.shape)) >= f0 - 1e-12

    # (c) brute-force numeric minimisation without the closed form, through the dual:
    #     lam‖Wx‖₁ = max_{|y|∞<=lam} yᵀWx gives x = v − Wᵀy/rho with y solving the box-constrained
    #     smooth problem min_{|y|<=lam} ‖Wᵀy‖²/(2 rho) − yᵀWv (solved by L-BFGS-B).
    optimize = pytest.importorskip("scipy.optimize")
    vf = v.ravel()
    wv_ = wmat @ vf

    def dual(y):
        wty = wmat.T @ y
        return wty @ wty / (2 * rho) - y @ wv_, wmat @ wty / rho - wv_

    res = optimize.minimize(dual, np.zeros(z.size), jac=True, method="L-BFGS-B",
                            bounds=[(-lam, lam)] * z.size,
                            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
    assert res.success, res.message
    x_bf = vf - wmat.T @ res.x / rho
    np.testing.assert_allclose(x_bf, z.ravel(), atol=1e-7)
    assert objective(z) <= objective(x_bf.reshape(z.shape)) + 1e-12


def test_prox_equals_closed_form_and_thresholds_approximation():
    x = jnp.asarray(_rand((2, 64, 64, 3), seed=12))
    lam, rho = 0.05, 0.5
    got = wavelet_l1_prox(lam)(x, rho)
    c = np.asarray(dwt2(x))
    ref = np.asarray(idwt2(jnp.asarray(np.sign(c) * np.maximum(np.abs(c) - lam / rho, 0))))
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)
    # The approximation band is shrunk too (images in [0,1] have large positive cA).
    ca_in = c[:, :8, :8, :]
    ca_out = np.asarray(dwt2(got))[:, :8, :8, :]
    np.testing.assert_allclose(ca_out, ca_in - lam / rho, atol=2 * _f32_atol(3, x))  # dwt twice
    # lam = 0 is the identity
    np.testing.assert_allclose(np.asarray(wavelet_l1_prox(0.0)(x, rho)), np.asarray(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# (5) per-sample rho; jit / vmap / grad

def test_per_sample_rho_equals_loop():
    v = jnp.asarray(_rand((3, 32, 32, 3), seed=13))
    rho = jnp.array([0.2, 1.0, 5.0])
    prox = wavelet_l1_prox(0.1, "db4", 2)
    batched = np.asarray(prox(v, rho))
    # Each comparison below runs another compiled program (batch of 1, broadcast rho, jit,
    # vmap), so float32 rounding may differ: measured up to ~5e-7 (8 ulps at 0.5) through the
    # two-level DWT, soft threshold and inverse; 1e-5 keeps a factor 20, while a wrong rho per
    # sample moves the output by more than 1e-3 (checked below).
    for i in range(3):
        one = np.asarray(prox(v[i:i + 1], float(rho[i])))
        np.testing.assert_allclose(batched[i:i + 1], one, rtol=0, atol=1e-5)
    # rho values differ enough that the results differ per sample
    assert not np.allclose(batched[0], np.asarray(prox(v[:1], 5.0))[0], atol=1e-3)
    # an already-broadcast (B, 1, 1, 1) rho gives the same
    np.testing.assert_allclose(np.asarray(prox(v, rho[:, None, None, None])), batched, atol=1e-5)
    # jit and vmap agree
    np.testing.assert_allclose(np.asarray(jax.jit(prox)(v, rho)), batched, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.vmap(prox)(v, rho)), batched, atol=1e-5)


def test_prox_grad(x64):
    prox = wavelet_l1_prox(0.2, "db4", 2)
    v = jnp.asarray(np.random.default_rng(14).standard_normal((2, 16, 16, 1)))
    rho = jnp.array([0.7, 1.3])

    def loss(v, rho):
        return jnp.sum(prox(v, rho) ** 2)

    gv, grho = jax.jit(jax.grad(loss, argnums=(0, 1)))(v, rho)
    assert gv.shape == v.shape and grho.shape == rho.shape
    assert np.all(np.isfinite(np.asarray(gv))) and np.all(np.isfinite(np.asarray(grho)))
    # directional finite differences (the point is generic, far from kinks for small eps)
    eps = 1e-6
    d = jnp.asarray(np.random.default_rng(15).standard_normal(v.shape))
    fd = (loss(v + eps * d, rho) - loss(v - eps * d, rho)) / (2 * eps)
    assert float(jnp.vdot(gv, d)) == pytest.approx(float(fd), rel=1e-5)
    dr = jnp.array([1.0, -0.5])
    fd = (loss(v, rho + eps * dr) - loss(v, rho - eps * dr)) / (2 * eps)
    assert float(jnp.vdot(grho, dr)) == pytest.approx(float(fd), rel=1e-5)
    # grad w.r.t. lam through a traced lam
    def loss_lam(lam):
        return jnp.sum(wavelet_l1_prox(lam, "db4", 2)(v, rho) ** 2)

    glam = jax.grad(loss_lam)(0.2)
    fd = (loss_lam(0.2 + eps) - loss_lam(0.2 - eps)) / (2 * eps)
    assert float(glam) == pytest.approx(float(fd), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# (6) errors

def test_errors():
    x = jnp.zeros((1, 64, 64, 3))
    with pytest.raises(ValueError, match="unknown wavelet"):
        dwt2(x, "db2")
    with pytest.raises(ValueError, match="unknown wavelet"):
        wavelet_l1_prox(0.1, "sym4")
    with pytest.raises(ValueError, match="divisible"):
        dwt2(jnp.zeros((1, 60, 64, 3)), "db4", 3)
    with pytest.raises(ValueError, match="divisible"):
        idwt2(jnp.zeros((1, 64, 36, 3)), "haar", 3)
    with pytest.raises(ValueError, match="level"):
        dwt2(x, "db4", 0)
    with pytest.raises(ValueError, match="level"):
        dwt2(x, "db4", 2.0)
    with pytest.raises(ValueError, match="level"):
        wavelet_l1_prox(0.1, "db4", 0)
    with pytest.raises(ValueError, match="floating"):
        dwt2(jnp.zeros((1, 64, 64, 3), jnp.int32))
    with pytest.raises(TypeError, match="floating"):  # also a TypeError, like _checks.check_float
        idwt2(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="H, W, C"):
        dwt2(jnp.zeros((64, 64)))
    with pytest.raises(ValueError, match="lam"):
        wavelet_l1_prox(-1.0)
    prox = wavelet_l1_prox(0.1)
    with pytest.raises(ValueError, match="rho"):
        prox(x, jnp.array([1.0, 2.0]))          # wrong batch size
    with pytest.raises(ValueError, match="rho"):
        prox(x, jnp.ones((1, 2)))               # too many dims for per-sample rho
    with pytest.raises(ValueError, match="rho"):
        prox(x, 0.0)                            # rho must be > 0
