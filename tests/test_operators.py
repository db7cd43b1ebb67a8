"""Operators against dense-matrix references (float64, small images).

For every operator ``A`` the dense matrix is built from the images of the basis vectors; then
adjoint, normal, solve, pinv, gradients of solve and batching are compared with NumPy
(``np.linalg.solve`` / ``np.linalg.pinv``) and with central finite differences. Every built-in
operator is also wrapped with :func:`as_custom` (apply only -> transposed adjoint + CG), which
must agree with the same references and with the closed forms.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    DenseOperator,
    FunctionOperator,
    Mask,
    SelectOperator,
    as_custom,
    block_mask,
    box_blur,
    circular_kernel,
    gaussian_blur,
    gaussian_cs,
    pixelwise_mask,
    scattered_mask,
    vmap_over_batch,
)
from admm_jax.operators.convolution import BLUR_RCOND
from conftest import dense_matrix, flat_output, take

SHAPE = (8, 8, 3)
D = math.prod(SHAPE)
F64 = jnp.float64
RCOND = 1e-6  # the dense and orthonormal operators' default rcond; numpy gets the same
# value. The blurs below are built with it too: their own default (BLUR_RCOND = 0.05, a
# truncated start for noisy data) is tested apart, in test_blur_default_rcond_*


def _random_conv(key):
    psf = jax.random.uniform(key, (3, 3), F64) + 0.1
    psf = psf / psf.sum()
    return CircularConvolution(kernel=circular_kernel(psf, SHAPE[:2]), in_shape=SHAPE,
                               rcond=RCOND)


def _select(key, index):
    k1, k2 = jax.random.split(key)
    branches = (pixelwise_mask(k1, SHAPE, dtype=F64), BoxDownsample(in_shape=SHAPE, factor=2),
                gaussian_cs(k2, SHAPE, ratio=0.25, dtype=F64))
    return SelectOperator.create(branches, index)


#: every built-in operator, as a function of a PRNG key (called with x64 enabled)
FACTORIES = {
    "pixelwise_mask": lambda k: pixelwise_mask(k, SHAPE, dtype=F64),
    "scattered_mask": lambda k: scattered_mask(k, SHAPE, box_size=2, num_boxes=3, dtype=F64),
    "block_mask": lambda k: block_mask(SHAPE, box_size=3, dtype=F64),
    "box_downsample": lambda k: BoxDownsample(in_shape=SHAPE, factor=2),
    "dense_gaussian_cs": lambda k: gaussian_cs(k, SHAPE, ratio=0.25, dtype=F64),
    "gaussian_blur": lambda k: gaussian_blur(SHAPE, sigma=0.5, dtype=F64, rcond=RCOND),
    "box_blur": lambda k: box_blur(SHAPE, size=3, dtype=F64, rcond=RCOND),
    "select": lambda k: _select(k, 2),
}
NAMES = sorted(FACTORIES)
FACTORIES["random_conv"] = _random_conv  # batch tests only (a random kernel per key)
WRAPS = ["closed", "custom"]


_BATCH_CACHE: dict = {}


def _batch(name):
    """A batch of 3 operators of one kind, drawn by the generator vmapped over keys (one compiled
    program per generator); the select batch uses a different branch per sample."""
    if name not in _BATCH_CACHE:
        keys = jax.random.split(jax.random.PRNGKey(7), 3)
        if name == "select":
            ops = jax.jit(jax.vmap(_select))(keys, jnp.asarray([2, 0, 1]))
        else:
            ops = jax.jit(jax.vmap(FACTORIES[name]))(keys)
        _BATCH_CACHE[name] = ops
    return _BATCH_CACHE[name]


def _make(name, wrap):
    """One operator: the first of :func:`_batch` (select: the CS branch), optionally wrapped."""
    op = take(_batch(name), 0)
    return as_custom(op) if wrap == "custom" else op


def _tol(wrap):
    # CG stops at a relative residual of 1e-6 (CG_TOL); closed forms are exact to rounding
    return 2e-5 if wrap == "custom" else 1e-10


def _rel_err(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ------------------------------------------------------------------ apply vs independent code
def test_apply_matches_independent_implementations(x64, rng):
    x = rng.uniform(size=SHAPE)
    # mask: elementwise product
    m = _make("pixelwise_mask", "closed")
    np.testing.assert_allclose(m.apply(jnp.asarray(x)), np.asarray(m.mask) * x, rtol=0, atol=0)
    # box downsample: mean of each 2x2 block, per channel
    ds = BoxDownsample(in_shape=SHAPE, factor=2)
    ref = np.zeros((4, 4, 3))
    for i in range(4):
        for j in range(4):
            ref[i, j] = x[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(0, 1))
    np.testing.assert_allclose(ds.apply(jnp.asarray(x)), ref, rtol=1e-14, atol=1e-15)
    assert ds.out_shape == (4, 4, 3)
    # dense: M @ row-major vec(x)
    cs = _make("dense_gaussian_cs", "closed")
    np.testing.assert_allclose(cs.apply(jnp.asarray(x)), np.asarray(cs.matrix) @ x.reshape(-1),
                               rtol=1e-12)


@pytest.mark.parametrize("sigma,size", [(1.0, None), (0.7, 5)])
def test_gaussian_blur_matches_scipy_wrap_convolution(x64, rng, sigma, size):
    shape = (16, 16, 3)
    x = rng.uniform(size=shape)
    op = gaussian_blur(shape, sigma=sigma, size=size, dtype=F64)
    n = size or 2 * int(np.ceil(3 * sigma)) + 1
    r = np.arange(n) - n // 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    psf = np.outer(g, g) / np.outer(g, g).sum()
    ref = np.stack([ndimage.convolve(x[..., c], psf, mode="wrap") for c in range(3)], -1)
    np.testing.assert_allclose(op.apply(jnp.asarray(x)), ref, rtol=1e-12, atol=1e-14)


def test_box_blur_matches_scipy_wrap_convolution(x64, rng):
    shape = (16, 16, 2)
    x = rng.uniform(size=shape)
    op = box_blur(shape, size=5, dtype=F64)
    psf = np.full((5, 5), 1 / 25)
    ref = np.stack([ndimage.convolve(x[..., c], psf, mode="wrap") for c in range(2)], -1)
    np.testing.assert_allclose(op.apply(jnp.asarray(x)), ref, rtol=1e-12, atol=1e-14)


def test_asymmetric_kernel_is_convolution_not_correlation(x64, rng):
    shape = (16, 16, 1)
    x = rng.uniform(size=shape)
    psf = rng.uniform(size=(3, 5))
    op = CircularConvolution(kernel=circular_kernel(jnp.asarray(psf), shape[:2]), in_shape=shape)
    ref = ndimage.convolve(x[..., 0], psf, mode="wrap")[..., None]
    np.testing.assert_allclose(op.apply(jnp.asarray(x)), ref, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ dense-matrix references
# Everything an operator computes for the reference checks is produced by ONE jitted call per
# (operator, closed/custom) pair and cached: compiling CG once instead of per eager call keeps the
# suite fast. The checks themselves (NumPy references) run on the host in the tests below.
RHOS = (0.05, 0.5, 3.0)
RHO0 = 0.4  # where the gradients are checked
EPS = 1e-6  # central-difference step


def _loss(op, rho, b, w):
    return jnp.sum(w * jnp.sin(op.solve(b, rho)))


@functools.partial(jax.jit, static_argnames="own_fd")
def _core(op, inputs, own_fd):
    basis, x, b, w, d = (inputs[k] for k in ("basis", "x", "b", "w", "d"))
    # a measurement with a component outside range(A): pinv must return min-norm least squares
    y = jax.tree_util.tree_map(lambda leaf, n: leaf + 0.1 * n, op.apply(inputs["x2"]),
                               inputs["noise"])
    g_rho, g_b = jax.grad(_loss, argnums=(1, 2))(op, RHO0, b, w)
    out = {
        "columns": jax.vmap(op.apply)(basis), "y": y,
        "ax": op.apply(x), "aty": op.adjoint(y), "normal_x": op.normal(x),
        "solves": jax.vmap(op.solve, in_axes=(None, 0))(b, jnp.asarray(RHOS)),
        "pinv_y": op.pinv(y),
        "g_rho": g_rho, "g_b_dir": jnp.vdot(g_b, d),
    }
    if own_fd:  # central differences of the operator's own solve (closed forms only)
        rhos = jnp.asarray([RHO0 + EPS, RHO0 - EPS, RHO0, RHO0])
        bs = jnp.stack([b, b, b + EPS * d, b - EPS * d])
        lp, lm, bp, bm = jax.vmap(_loss, in_axes=(None, 0, 0, None))(op, rhos, bs, w)
        out["fd_rho"], out["fd_dir"] = (lp - lm) / (2 * EPS), (bp - bm) / (2 * EPS)
    return out


_CACHE: dict = {}


def _results(name, wrap):
    """Host (NumPy) copies of :func:`_core` for one operator; computed once per session."""
    assert jax.config.jax_enable_x64
    if (name, wrap) not in _CACHE:
        op = _make(name, wrap)
        gen = np.random.default_rng(42)
        out_shape = op.out_shape
        shapes = out_shape if isinstance(out_shape[0], tuple) else [out_shape]
        noise = [jnp.asarray(gen.normal(size=s)) for s in shapes]
        inputs = {k: jnp.asarray(gen.normal(size=SHAPE)) for k in ("x", "x2", "b", "w", "d")}
        inputs["basis"] = jnp.eye(D).reshape((D,) + SHAPE)
        inputs["noise"] = tuple(noise) if isinstance(out_shape[0], tuple) else noise[0]
        res = jax.tree_util.tree_map(np.asarray, _core(op, inputs, wrap == "closed"))
        res.update({k: np.asarray(inputs[k]) for k in ("x", "b", "w", "d")})
        cols = jax.tree_util.tree_leaves(res["columns"])
        res["A"] = np.concatenate([c.reshape(D, -1) for c in cols], axis=1).T
        res["y_flat"] = flat_output(res["y"])
        res["out_shape"] = out_shape
        _CACHE[name, wrap] = res
    return _CACHE[name, wrap]


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("name", NAMES)
def test_adjoint_and_normal(x64, name, wrap):
    r = _results(name, wrap)
    a, x, y = r["A"], r["x"].ravel(), r["y_flat"]
    assert r["aty"].shape == SHAPE
    lhs = float(np.dot(flat_output(r["ax"]), y))
    rhs = float(np.dot(x, r["aty"].ravel()))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    np.testing.assert_allclose(flat_output(r["ax"]), a @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["aty"].ravel(), a.T @ y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["normal_x"].ravel(), a.T @ (a @ x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("name", NAMES)
def test_solve_matches_dense(x64, name, wrap):
    r = _results(name, wrap)
    a, b = r["A"], r["b"].ravel()
    for rho, got in zip(RHOS, r["solves"]):
        ref = np.linalg.solve(a.T @ a + rho * np.eye(D), b)
        assert got.shape == SHAPE
        assert _rel_err(got, ref) < _tol(wrap), (rho, _rel_err(got, ref))


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("name", NAMES)
def test_pinv_matches_numpy(x64, name, wrap):
    r = _results(name, wrap)
    ref = np.linalg.pinv(r["A"], rcond=RCOND) @ r["y_flat"]
    assert r["pinv_y"].shape == SHAPE
    assert _rel_err(r["pinv_y"], ref) < _tol(wrap), _rel_err(r["pinv_y"], ref)


@pytest.mark.parametrize("wrap", WRAPS)
def test_pinv_singular_convolution_uses_rcond(x64, rng, wrap):
    """A 4-tap box on 8 pixels has exact zeros in its spectrum: pinv drops them like numpy."""
    op = box_blur(SHAPE, size=4, dtype=F64, rcond=RCOND)
    a = dense_matrix(op)
    s = np.linalg.svd(a, compute_uv=False)
    assert s.min() < 1e-12 * s.max()  # genuinely singular
    op = as_custom(op) if wrap == "custom" else op
    y = rng.normal(size=D)
    got = op.pinv(jnp.asarray(y.reshape(SHAPE)))
    ref = np.linalg.pinv(a, rcond=RCOND) @ y
    assert _rel_err(got, ref) < _tol(wrap)


@pytest.mark.parametrize("rcond", [1e-6, 0.3])
def test_pinv_rank_deficient_dense_and_rcond(x64, rng, rcond):
    """Rank-deficient M (repeated rows) and an rcond that cuts a real singular value."""
    base = rng.normal(size=(20, D))
    scale = np.ones(20)
    scale[:5] = 0.05  # small singular directions, removed by rcond=0.3
    m = np.concatenate([base * scale[:, None], base[:10]], axis=0)  # rank 20, 30 rows
    op = DenseOperator.create(jnp.asarray(m), SHAPE, rcond=rcond)
    y = rng.normal(size=30)
    ref = np.linalg.pinv(m, rcond=rcond) @ y
    got = op.pinv(jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got).ravel(), ref, rtol=1e-8, atol=1e-10)


def test_pinv_rank_deficient_dense_float32(rng):
    """float32: eigh of M Mᵀ leaves noise eigenvalues ~eps·max λ where M is rank deficient;
    they must be cut (before the fix they were inverted: 1% error for a noisy y)."""
    base = rng.normal(size=(20, D))
    m = np.concatenate([base, base[:10]], axis=0).astype(np.float32)  # rank 20, 30 rows
    op = DenseOperator.create(jnp.asarray(m), SHAPE)
    assert op.matrix.dtype == jnp.float32
    y = (m.astype(np.float64) @ rng.normal(size=D) + 0.1 * rng.normal(size=30)).astype(np.float32)
    ref = np.linalg.pinv(m.astype(np.float64), rcond=RCOND) @ y
    got = np.asarray(op.pinv(jnp.asarray(y)), np.float64).ravel()
    assert _rel_err(got, ref) < 1e-5, _rel_err(got, ref)


@pytest.mark.parametrize("rcond", [1e-6, 0.05])
def test_pinv_convolution_rcond(x64, rng, rcond):
    op = gaussian_blur(SHAPE, sigma=1.0, dtype=F64)  # smallest singular value 2e-4
    op = CircularConvolution(kernel=op.kernel, in_shape=SHAPE, rcond=rcond)
    a = dense_matrix(op)
    y = rng.normal(size=D)
    ref = np.linalg.pinv(a, rcond=rcond) @ y
    np.testing.assert_allclose(np.asarray(op.pinv(jnp.asarray(y.reshape(SHAPE)))).ravel(), ref,
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", [
    lambda: gaussian_blur(SHAPE, sigma=2.0, size=7, dtype=F64),
    lambda: box_blur(SHAPE, size=5, dtype=F64),
    lambda: CircularConvolution(kernel=gaussian_blur(SHAPE, sigma=1.5, size=7, dtype=F64).kernel,
                                in_shape=SHAPE)], ids=["gaussian_blur", "box_blur", "class"])
def test_blur_default_rcond_truncates_the_start(x64, rng, make):
    """Blurs default to BLUR_RCOND = 0.05: ``pinv`` (the ADMM start) is numpy's pinv at that
    cutoff, so it amplifies measurement noise at most 1/(rcond·max|K|) times (Parseval over the
    kept frequencies); with the near-exact cutoff 1e-6 the same noise comes out far larger."""
    op = make()
    assert op.rcond == BLUR_RCOND == 0.05
    a = dense_matrix(op)
    y = rng.normal(size=D)
    np.testing.assert_allclose(np.asarray(op.pinv(jnp.asarray(y.reshape(SHAPE)))).ravel(),
                               np.linalg.pinv(a, rcond=BLUR_RCOND) @ y, rtol=1e-9, atol=1e-9)
    noise = 0.01 * rng.normal(size=SHAPE)
    peak = np.abs(np.fft.fft2(np.asarray(op.kernel))).max()
    gain = np.linalg.norm(op.pinv(jnp.asarray(noise))) / np.linalg.norm(noise)
    assert gain <= (1 + 1e-9) / (BLUR_RCOND * peak), gain
    exact = CircularConvolution(kernel=op.kernel, in_shape=SHAPE, rcond=1e-6)
    assert np.linalg.norm(exact.pinv(jnp.asarray(noise))) / np.linalg.norm(noise) > 1 / BLUR_RCOND


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("name", NAMES)
def test_solve_gradients_match_finite_differences(x64, name, wrap):
    """d/dρ and d/db of Σ w·sin(solve(b, ρ)) (closed form; CG by implicit differentiation)."""
    r = _results(name, wrap)
    a, b, w, d = r["A"], r["b"].ravel(), r["w"].ravel(), r["d"].ravel()
    gram = a.T @ a

    def np_loss(rho, bb):
        return float(np.sum(w * np.sin(np.linalg.solve(gram + rho * np.eye(D), bb))))

    # reference 1: central differences of the exact dense solve (NumPy)
    fd_rho = (np_loss(RHO0 + EPS, b) - np_loss(RHO0 - EPS, b)) / (2 * EPS)
    fd_dir = (np_loss(RHO0, b + EPS * d) - np_loss(RHO0, b - EPS * d)) / (2 * EPS)
    tol = 1e-4 if wrap == "custom" else 1e-7
    g_rho, g_dir = float(r["g_rho"]), float(r["g_b_dir"])
    assert abs(g_rho - fd_rho) <= tol * max(1.0, abs(fd_rho)), (g_rho, fd_rho)
    assert abs(g_dir - fd_dir) <= tol * max(1.0, abs(fd_dir)), (g_dir, fd_dir)
    # reference 2 (closed forms): central differences of the operator's own solve
    if wrap == "closed":
        assert abs(g_rho - float(r["fd_rho"])) <= 1e-7 * max(1.0, abs(fd_rho))
        assert abs(g_dir - float(r["fd_dir"])) <= 1e-7 * max(1.0, abs(fd_dir))


# ------------------------------------------------------------------ CG fallback vs closed form
@pytest.mark.parametrize("name", NAMES)
def test_custom_equals_closed_form(x64, name):
    closed, custom = _results(name, "closed"), _results(name, "custom")
    assert isinstance(_make(name, "custom"), FunctionOperator)
    assert custom["out_shape"] == closed["out_shape"]
    np.testing.assert_array_equal(custom["A"], closed["A"])
    np.testing.assert_allclose(custom["aty"], closed["aty"], rtol=1e-13, atol=1e-13)
    for got, ref in zip(custom["solves"], closed["solves"]):
        assert _rel_err(got, ref) < 1e-5
    assert _rel_err(custom["pinv_y"], closed["pinv_y"]) < 1e-5
    assert abs(float(custom["g_rho"]) - float(closed["g_rho"])) < 1e-5 * max(
        1.0, abs(float(closed["g_rho"])))


# ------------------------------------------------------------------ batches of operators
@jax.jit
def _batch_core(ops, singles, x, rho):
    y = vmap_over_batch(lambda o, xx: o.apply(xx), ops, x)
    batched = {
        "apply": y,
        "adjoint": vmap_over_batch(lambda o, yy: o.adjoint(yy), ops, y),
        "solve": vmap_over_batch(lambda o, bb, r: o.solve(bb, r), ops, x, rho),
        "pinv": vmap_over_batch(lambda o, yy: o.pinv(yy), ops, y),
    }
    one = []
    for i, op in enumerate(singles):
        yi = jax.tree_util.tree_map(lambda leaf: leaf[i], y)
        one.append({"apply": op.apply(x[i]), "adjoint": op.adjoint(yi),
                    "solve": op.solve(x[i], rho[i]), "pinv": op.pinv(yi)})
    return batched, one


# the CG path is batched the same way for every operator: check it on a representative subset
BATCH_CASES = ([(n, "closed") for n in NAMES + ["random_conv"]]
               + [(n, "custom") for n in ("pixelwise_mask", "dense_gaussian_cs", "random_conv")])


@pytest.mark.parametrize("name,wrap", BATCH_CASES)
def test_batch_of_operators_equals_one_by_one(x64, rng, name, wrap):
    ops = _batch(name)
    singles = [take(ops, i) for i in range(3)]
    if jax.tree_util.tree_leaves(ops):
        assert ops.batch_shape == (3,) and ops.is_batched
    else:  # an operator without array leaves (BoxDownsample) is shared by the batch
        assert not ops.is_batched
    if wrap == "custom":
        ops, singles = as_custom(ops), [as_custom(s) for s in singles]
        assert ops.batch_shape == (3,) or not jax.tree_util.tree_leaves(ops)
    x = jnp.asarray(rng.normal(size=(3,) + SHAPE))
    rho = jnp.asarray([0.1, 0.5, 2.0])
    batched, one = _batch_core(ops, singles, x, rho)
    tol = 1e-9 if wrap == "custom" else 1e-12
    for i in range(3):
        for k, v in one[i].items():
            got = take(batched[k], i)
            np.testing.assert_allclose(flat_output(got), flat_output(v), rtol=tol, atol=tol,
                                       err_msg=f"{name}/{wrap}/{k}/sample {i}")
    # the samples really differ where the generator is random
    if name in ("pixelwise_mask", "scattered_mask", "dense_gaussian_cs", "random_conv"):
        leaves = jax.tree_util.tree_leaves(ops)
        assert not np.allclose(np.asarray(leaves[0])[0], np.asarray(leaves[0])[1])


# ------------------------------------------------------------------ BoxDownsample scale
def test_box_downsample_adjoint_scale_4(x64, rng):
    op1 = BoxDownsample(in_shape=SHAPE, factor=2)
    op4 = BoxDownsample(in_shape=SHAPE, factor=2, adjoint_scale=4.0)
    a = dense_matrix(op1)
    np.testing.assert_allclose(dense_matrix(op4), a, rtol=0, atol=0)  # same forward model
    y = rng.normal(size=op1.out_shape)
    np.testing.assert_allclose(np.asarray(op4.adjoint(jnp.asarray(y))).ravel(),
                               4.0 * a.T @ y.ravel(), rtol=1e-14)
    # the legacy adjoint is the plain nearest-neighbour repeat
    np.testing.assert_allclose(op4.adjoint(jnp.asarray(y)),
                               np.repeat(np.repeat(y, 2, 0), 2, 1), rtol=1e-14)
    b = rng.normal(size=SHAPE)
    v = rng.normal(size=SHAPE)
    for rho in (0.125, 0.5, 2.0):
        got = op4.solve(jnp.asarray(b), rho)
        ref = np.linalg.solve(4.0 * a.T @ a + rho * np.eye(D), b.ravel())
        np.testing.assert_allclose(np.asarray(got).ravel(), ref, rtol=1e-12, atol=1e-12)
        # ADMM data step with the legacy adjoint = true-adjoint data step with rho/4
        z4 = op4.solve(op4.adjoint(jnp.asarray(y)) + rho * jnp.asarray(v), rho)
        z1 = op1.solve(op1.adjoint(jnp.asarray(y)) + (rho / 4) * jnp.asarray(v), rho / 4)
        np.testing.assert_allclose(z4, z1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(op4.solve(jnp.asarray(b), rho),
                                   op1.solve(jnp.asarray(b) / 4, rho / 4), rtol=1e-12, atol=1e-12)
    # pinv is a property of A alone
    np.testing.assert_allclose(np.asarray(op4.pinv(jnp.asarray(y))).ravel(),
                               np.linalg.pinv(a) @ y.ravel(), rtol=1e-12)


def test_box_downsample_adjoint_scale_4_admm_equivalence(x64, rng):
    from admm_jax.admm import unrolled_admm

    op1 = BoxDownsample(in_shape=SHAPE, factor=2)
    op4 = BoxDownsample(in_shape=SHAPE, factor=2, adjoint_scale=4.0)
    y = jnp.asarray(rng.uniform(size=(2,) + op1.out_shape))
    prox = lambda v, r: jnp.clip(0.8 * v + 0.05, 0.0, 1.0)  # ignores rho, like a learned prior
    z4 = unrolled_admm(prox, op4, y, 0.5, 6)
    z1 = unrolled_admm(prox, op1, y, 0.125, 6)
    np.testing.assert_allclose(z4, z1, rtol=1e-12, atol=1e-12)
    z1_wrong = unrolled_admm(prox, op1, y, 0.5, 6)
    assert not np.allclose(z4, z1_wrong, atol=1e-6)


# ------------------------------------------------------------------ mask generators
def test_pixelwise_mask_statistics():
    keys = jax.random.split(jax.random.PRNGKey(0), 100)
    masks = np.asarray(jax.jit(jax.vmap(lambda k: pixelwise_mask(k).mask))(keys))  # (100,64,64,3)
    assert masks.shape == (100, 64, 64, 3)
    assert np.all((masks == 0) | (masks == 1))
    # overall drop fraction 0.5 (std of the estimate 1.4e-4)
    assert abs(masks.mean() - 0.5) < 3e-3
    # every entry is dropped with probability 0.5 (per-entry std over 100 draws: 0.05)
    per_entry = masks.mean(axis=0)
    assert per_entry.min() > 0.2 and per_entry.max() < 0.8
    assert abs(per_entry.mean() - 0.5) < 3e-3
    # channels are independent: P(both kept) = 0.25 for every pair; all three equal 0.25
    for c1, c2 in ((0, 1), (0, 2), (1, 2)):
        assert abs((masks[..., c1] * masks[..., c2]).mean() - 0.25) < 3e-3
        corr = np.corrcoef(masks[..., c1].ravel(), masks[..., c2].ravel())[0, 1]
        assert abs(corr) < 0.01
    same = np.all(masks == masks[..., :1], axis=-1).mean()
    assert abs(same - 0.25) < 3e-3
    # drop_prob is honoured
    m = np.asarray(pixelwise_mask(jax.random.PRNGKey(1), drop_prob=0.8).mask)
    assert abs(m.mean() - 0.2) < 0.02


def _box_top_lefts(zero, box):
    """Top-left corners (r, c) of every all-zero box×box window of a 2-D boolean array."""
    windows = np.lib.stride_tricks.sliding_window_view(zero, (box, box))
    return [tuple(int(v) for v in rc) for rc in np.argwhere(windows.all(axis=(-2, -1)))]


def test_scattered_mask_geometry():
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    masks = np.asarray(jax.jit(jax.vmap(lambda k: scattered_mask(k).mask))(keys))  # (200,64,64,3)
    assert np.all((masks == 0) | (masks == 1))
    isolated_positions = []
    n_overlapping = 0
    for m in masks:
        assert np.all(m == m[..., :1])  # all channels together
        zero = m[..., 0] == 0
        n_zero = int(zero.sum())
        assert 36 <= n_zero <= 360
        n_overlapping += n_zero < 360
        rows, cols = np.nonzero(zero)
        assert rows.min() >= 1 and rows.max() <= 55 + 5
        assert cols.min() >= 1 and cols.max() <= 55 + 5
        # the zero set is a union of 6x6 boxes with top-left in 1..55
        corners = _box_top_lefts(zero, 6)
        covered = np.zeros_like(zero)
        for r, c in corners:
            assert 1 <= r <= 55 and 1 <= c <= 55
            covered[r:r + 6, c:c + 6] = True
        np.testing.assert_array_equal(covered, zero)
        # positions of boxes that touch no other box are read off directly
        labels, n = ndimage.label(zero)
        for lab in range(1, n + 1):
            rr, cc = np.nonzero(labels == lab)
            if rr.size == 36 and np.ptp(rr) == 5 and np.ptp(cc) == 5:
                isolated_positions.append((rr.min(), cc.min()))
        if n == 10 and n_zero == 360:
            assert len(corners) == 10
    pos = np.asarray(isolated_positions)
    # with ~1500 draws of a uniform position in {1..55}, both ends are hit
    assert pos[:, 0].min() == 1 and pos[:, 0].max() == 55
    assert pos[:, 1].min() == 1 and pos[:, 1].max() == 55
    assert len(np.unique(pos[:, 0])) == 55 and len(np.unique(pos[:, 1])) == 55
    assert n_overlapping > 0  # overlaps are allowed and happen


def test_block_mask_geometry():
    m = np.asarray(block_mask().mask)
    assert m.shape == (64, 64, 3)
    expected = np.ones((64, 64, 3))
    expected[22:41, 22:41, :] = 0  # rows/cols 22..40 inclusive, 19x19
    np.testing.assert_array_equal(m, expected)
    assert int((m == 0).sum()) == 19 * 19 * 3


def test_problem_masks_use_paper_sizes():
    from admm_jax.problems import get_problem

    key = jax.random.PRNGKey(5)
    bi = np.asarray(get_problem("bi").make_operator(key, (64, 64, 3)).mask)
    expected = np.ones((64, 64, 3))
    expected[22:41, 22:41, :] = 0
    np.testing.assert_array_equal(bi, expected)
    for k in jax.random.split(key, 5):
        si = np.asarray(get_problem("si").make_operator(k, (64, 64, 3)).mask)
        zero = si[..., 0] == 0
        assert np.all(si == si[..., :1]) and 36 <= zero.sum() <= 360
        covered = np.zeros_like(zero)
        for r, c in _box_top_lefts(zero, 6):
            assert 1 <= r <= 55 and 1 <= c <= 55
            covered[r:r + 6, c:c + 6] = True
        np.testing.assert_array_equal(covered, zero)


def test_mask_create_and_pinv_of_weights(x64, rng):
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
        Mask.create(jnp.ones((4, 4)))
    w = rng.uniform(0.5, 2.0, size=SHAPE)
    w[0, 0, 0] = 0.0
    op = Mask.create(jnp.asarray(w))
    a = np.diag(w.ravel())
    y = rng.normal(size=D)
    np.testing.assert_allclose(np.asarray(op.pinv(jnp.asarray(y.reshape(SHAPE)))).ravel(),
                               np.linalg.pinv(a) @ y, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(op.solve(jnp.asarray(y.reshape(SHAPE)), 0.3)).ravel(),
                               np.linalg.solve(a.T @ a + 0.3 * np.eye(D), y), rtol=1e-12)


# ------------------------------------------------------------------ Gaussian CS
def test_gaussian_cs_size_and_statistics(x64):
    # m = round(0.1 D): 1229 rows on 64x64x3 (shape only, nothing is computed)
    out = jax.eval_shape(lambda k: gaussian_cs(k), jax.random.PRNGKey(0))
    assert out.matrix.shape == (1229, 12288)
    assert out.eigvecs.shape == (1229, 1229) and out.eigvals.shape == (1229,)
    shape = (16, 16, 3)
    op = gaussian_cs(jax.random.PRNGKey(0), shape, ratio=0.1, dtype=F64)
    m = round(0.1 * 768)
    assert op.matrix.shape == (m, 768) and op.out_shape == (m,)
    entries = np.asarray(op.matrix)
    assert abs(entries.mean()) < 4 / np.sqrt(entries.size) / np.sqrt(m)
    assert abs(entries.std() * np.sqrt(m) - 1.0) < 0.02
    # the stored eigendecomposition is that of M Mᵀ
    u, lam = np.asarray(op.eigvecs), np.asarray(op.eigvals)
    np.testing.assert_allclose((u * lam) @ u.T, entries @ entries.T, rtol=1e-10, atol=1e-10)
    # float32 by default
    out = jax.eval_shape(lambda k: gaussian_cs(k, (8, 8, 3)), jax.random.PRNGKey(0))
    assert out.matrix.dtype == jnp.float32


def test_gaussian_cs_woodbury_reuses_eigendecomposition(x64, rng):
    op = _make("dense_gaussian_cs", "closed")
    leaves_before = [np.array(leaf) for leaf in jax.tree_util.tree_leaves(op)]
    a = dense_matrix(op)
    b = rng.normal(size=SHAPE)
    # solve contains no eigendecomposition / factorisation: only products with M and U
    jaxpr = str(jax.make_jaxpr(lambda o, bb, r: o.solve(bb, r))(op, jnp.asarray(b), 1.0))
    for prim in ("eigh", "svd", "cholesky", "lu", "triangular_solve", "qr"):
        assert prim not in jaxpr, prim
    solve = jax.jit(lambda o, bb, r: o.solve(bb, r))
    for rho in (1e-3, 0.05, 0.3, 1.0, 10.0):
        got = solve(op, jnp.asarray(b), rho)
        ref = np.linalg.solve(a.T @ a + rho * np.eye(D), b.ravel())
        assert _rel_err(got, ref) < 1e-9, rho
    for before, after in zip(leaves_before, jax.tree_util.tree_leaves(op)):
        np.testing.assert_array_equal(before, np.asarray(after))


def test_dense_create_rejects_wrong_width():
    with pytest.raises(ValueError, match="columns"):
        DenseOperator.create(jnp.ones((3, 10)), (2, 2, 3))


# ------------------------------------------------------------------ construction errors
def test_operator_construction_errors():
    with pytest.raises(ValueError, match="not divisible by factor"):
        BoxDownsample(in_shape=(7, 8, 3), factor=2)
    with pytest.raises(ValueError, match="not divisible by factor"):
        BoxDownsample(in_shape=(12, 12, 3), factor=5)
    with pytest.raises(ValueError, match="adjoint_scale"):
        BoxDownsample(in_shape=(8, 8, 3), factor=2, adjoint_scale=0.0)
    with pytest.raises(ValueError, match="larger than the image"):
        circular_kernel(jnp.ones((9, 9)), (8, 8))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur((8, 8, 3), sigma=0.0)
    with pytest.raises(ValueError, match="at least one branch"):
        SelectOperator.create((), 0)
    with pytest.raises(ValueError, match="share in_shape"):
        SelectOperator.create((block_mask((8, 8, 3), 2), block_mask((16, 16, 3), 2)), 0)
