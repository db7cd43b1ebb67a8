"""Sampling in orthonormal transform domains (DCT, Fourier) against float64 references.

Every operator's dense matrix is built column by column from basis images; apply is compared
with SciPy's / NumPy's transforms, adjoint / normal / solve / pinv with NumPy linear algebra
(``np.linalg.solve``, ``np.linalg.pinv``); the row-orthonormal identities are checked where they
hold (DCT, Hermitian-symmetric Fourier masks) and shown NOT to hold for one-sided Fourier masks;
the operators run inside ``unrolled_admm`` (vs a NumPy ADMM loop) and inside a mixed
``SelectOperator`` batch (vs each sample alone); gradients match central differences of the
NumPy reference.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from admm_jax.admm import unrolled_admm
from admm_jax.operators import SelectOperator, pixelwise_mask, vmap_over_batch
from admm_jax.operators.orthonormal import (
    SampledOrthonormal,
    fourier_mask_cartesian,
    fourier_mask_random,
    orthonormal_dct,
    orthonormal_fft,
    subsampled_dct,
)
from conftest import dense_matrix, flat_output, take

SHAPE = (8, 5, 2)  # non-square, one odd side: the k -> -k reversal is checked on both parities
D = math.prod(SHAPE)
F64 = jnp.float64
RHOS = (0.05, 0.5, 3.0)


def _reverse(a):
    """a[-k1 mod H, -k2 mod W] on the first two axes (by indexing, not the module's flip+roll)."""
    h, w = a.shape[:2]
    return a[(-np.arange(h)) % h][:, (-np.arange(w)) % w]


def _symmetric_fourier(key):
    """A Hermitian-symmetric 0/1 k-space mask (a random mask OR-ed with its reversal)."""
    base = jax.random.uniform(key, SHAPE[:2]) < 0.3
    sym = (base | _reverse(base)).astype(F64)
    return SampledOrthonormal.create(jnp.broadcast_to(sym[:, :, None], SHAPE), "fft")


def _weighted(key, transform):
    """Real weights in [0.5, 2] with some zeros, and random signs: the general diagonal form."""
    k1, k2, k3 = jax.random.split(key, 3)
    w = jax.random.uniform(k1, SHAPE, F64, 0.5, 2.0) * (jax.random.uniform(k2, SHAPE) > 0.25)
    return SampledOrthonormal.create(w, transform, signs=jax.random.rademacher(k3, SHAPE, F64))


#: every operator kind, as a function of a PRNG key (called with x64 enabled)
FACTORIES = {
    "dct": lambda k: orthonormal_dct(SHAPE, F64),
    "fft": lambda k: orthonormal_fft(SHAPE, F64),
    "subsampled_dct": lambda k: subsampled_dct(k, SHAPE, ratio=0.3, dtype=F64),
    "subsampled_dct_nosign": lambda k: subsampled_dct(k, SHAPE, 0.3, random_signs=False,
                                                      dtype=F64),
    "fourier_cartesian": lambda k: fourier_mask_cartesian(k, SHAPE, accel=2.0,
                                                          center_fraction=0.25, dtype=F64),
    "fourier_random": lambda k: fourier_mask_random(k, SHAPE, keep_fraction=0.3,
                                                    center_fraction=0.2, dtype=F64),
    "fourier_symmetric": _symmetric_fourier,
    "weighted_dct": lambda k: _weighted(k, "dct"),
    "weighted_fft": lambda k: _weighted(k, "fft"),
}
NAMES = sorted(FACTORIES)
#: 0/1 masks for which A is row-orthonormal on its measurement space (AᵀA a projection)
PROJECTIONS = ("dct", "fft", "subsampled_dct", "subsampled_dct_nosign", "fourier_symmetric")


def _rel_err(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@functools.partial(jax.jit, static_argnums=0)
def _core(name, key, x, y, b):
    op = FACTORIES[name](key)
    basis = jnp.eye(D, dtype=F64).reshape((D,) + SHAPE)
    return {"columns": jax.vmap(op.apply)(basis), "ax": op.apply(x), "aty": op.adjoint(y),
            "normal_x": op.normal(x), "pinv_y": op.pinv(y), "g": op.gram_diagonal(),
            "solves": jax.vmap(op.solve, in_axes=(None, 0))(b, jnp.asarray(RHOS)),
            "op": op}


_CACHE: dict = {}


def _results(name):
    """Host copies of everything one operator computes, plus its dense matrix (cached)."""
    assert jax.config.jax_enable_x64
    if name not in _CACHE:
        gen = np.random.default_rng(11)
        out_shape = FACTORIES[name](jax.random.PRNGKey(0)).out_shape
        x, b = gen.normal(size=SHAPE), gen.normal(size=SHAPE)
        y = gen.normal(size=out_shape)  # generic: components outside range(A) too
        res = _core(name, jax.random.PRNGKey(3), jnp.asarray(x), jnp.asarray(y), jnp.asarray(b))
        op = res.pop("op")
        res = {k: np.asarray(v) for k, v in res.items()}
        res["A"] = res.pop("columns").reshape(D, -1).T
        res.update(x=x, y=y, b=b, op=op)
        _CACHE[name] = res
    return _CACHE[name]


# ------------------------------------------------------------------ apply vs SciPy / NumPy
@pytest.mark.parametrize("name", NAMES)
def test_apply_matches_scipy_and_numpy_transforms(x64, name):
    r = _results(name)
    op = r["op"]
    signs = np.ones(SHAPE) if op.signs is None else np.asarray(op.signs)
    mask = np.asarray(op.mask)
    if op.transform == "dct":
        ref = mask * scipy.fft.dctn(signs * r["x"], axes=(0, 1), norm="ortho")
    else:
        coef = mask * np.fft.fft2(signs * r["x"], axes=(0, 1), norm="ortho")
        ref = np.stack([coef.real, coef.imag], axis=-1)
    assert r["ax"].shape == op.out_shape == ref.shape
    np.testing.assert_allclose(r["ax"], ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["A"] @ r["x"].ravel(), ref.ravel(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ dense float64 references
@pytest.mark.parametrize("name", NAMES)
def test_adjoint_normal_solve_pinv_match_dense(x64, name):
    r = _results(name)
    a, x, y, b = r["A"], r["x"].ravel(), r["y"].ravel(), r["b"].ravel()
    np.testing.assert_allclose(r["aty"].ravel(), a.T @ y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r["normal_x"].ravel(), a.T @ (a @ x), rtol=1e-12, atol=1e-12)
    for rho, got in zip(RHOS, r["solves"]):
        ref = np.linalg.solve(a.T @ a + rho * np.eye(D), b)
        assert got.shape == SHAPE
        assert _rel_err(got, ref) < 1e-11, (rho, _rel_err(got, ref))
    ref = np.linalg.pinv(a, rcond=1e-6) @ y
    assert r["pinv_y"].shape == SHAPE
    assert _rel_err(r["pinv_y"], ref) < 1e-11, _rel_err(r["pinv_y"], ref)
    # the transform-domain diagonal g holds the eigenvalues of AᵀA
    np.testing.assert_allclose(np.sort(r["g"].ravel()), np.linalg.eigvalsh(a.T @ a),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", PROJECTIONS)
def test_row_orthonormal_identities(x64, name):
    """0/1 DCT masks and Hermitian-symmetric Fourier masks: AᵀA is a projection, AAᵀ is the
    identity on the measurement space, (AᵀA + ρI)⁻¹ = (I − AᵀA/(1+ρ))/ρ and A⁺ = Aᵀ."""
    r = _results(name)
    a = r["A"]
    gram, outer = a.T @ a, a @ a.T
    np.testing.assert_allclose(gram @ gram, gram, atol=1e-12)
    np.testing.assert_allclose(outer @ a, a, atol=1e-12)  # AAᵀ = I on range(A)
    if r["op"].transform == "dct":  # range(A) is every sampled coefficient: AAᵀ = diag(mask)
        np.testing.assert_allclose(outer, np.diag(np.asarray(r["op"].mask).ravel()), atol=1e-12)
    np.testing.assert_allclose(np.linalg.pinv(a, rcond=1e-6), a.T, atol=1e-12)
    np.testing.assert_allclose(r["pinv_y"].ravel(), a.T @ r["y"].ravel(), atol=1e-12)
    for rho, got in zip(RHOS, r["solves"]):
        closed = (np.eye(D) - gram / (1 + rho)) / rho
        np.testing.assert_allclose(got.ravel(), closed @ r["b"].ravel(), rtol=1e-11, atol=1e-11)


def test_one_sided_fourier_mask_is_not_a_projection(x64):
    """Frequencies sampled without their mirror -k weigh 1/2 in AᵀA: no projection, A⁺ ≠ Aᵀ,
    and the short closed form would be wrong; the diagonal solve above is what stays exact."""
    r = _results("fourier_random")
    a, g = r["A"], r["g"]
    assert np.any(np.isclose(g, 0.5)), "the test mask must sample some frequencies one-sided"
    gram = a.T @ a
    ev = np.linalg.eigvalsh(gram)
    assert np.max(np.minimum(np.abs(ev), np.abs(ev - 1))) > 0.49  # eigenvalue 1/2: G² ≠ G
    assert np.linalg.norm(gram @ gram - gram, 2) > 0.24  # = 1/4 at that eigenvalue
    assert np.linalg.norm(np.linalg.pinv(a) - a.T, 2) > 0.4
    short = (np.eye(D) - gram / 1.5) / 0.5 @ r["b"].ravel()
    assert _rel_err(short, r["solves"][1]) > 1e-2


def test_hermitian_symmetric_mask_has_binary_gram_diagonal(x64):
    g = _results("fourier_symmetric")["g"]
    assert set(np.unique(g).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(g, np.asarray(_results("fourier_symmetric")["op"].mask))


# ------------------------------------------------------------------ generators
def test_cartesian_mask_rows_count_and_centre():
    shape = (64, 32, 3)
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    ops = jax.jit(jax.vmap(lambda k: fourier_mask_cartesian(k, shape, 4.0, 0.08)))(keys)
    assert ops.batch_shape == (400,) and ops.out_shape == shape + (2,)
    masks = np.asarray(ops.mask)
    assert np.all((masks == 0) | (masks == 1))
    assert np.all(masks == masks[:, :, :1, :1])  # whole rows, all channels
    rows = masks[:, :, 0, 0]
    assert np.all(rows.sum(axis=1) == 16)  # round(64 / 4)
    centre = [62, 63, 0, 1, 2]  # round(0.08 * 64) = 5 lowest |frequency| rows: -2..2
    assert np.all(rows[:, centre] == 1)
    others = np.setdiff1d(np.arange(64), centre)
    # every other row is drawn with probability 11/59: 74.6 of 400 expected, std 7.8
    counts = rows[:, others].sum(axis=0)
    assert counts.min() > 40 and counts.max() < 110, (counts.min(), counts.max())
    assert len({tuple(r) for r in rows}) > 390  # different keys, different masks


def test_random_fourier_mask_count_and_centre():
    shape = (16, 12, 2)
    keys = jax.random.split(jax.random.PRNGKey(1), 300)
    masks = np.asarray(jax.jit(jax.vmap(
        lambda k: fourier_mask_random(k, shape, keep_fraction=0.25, center_fraction=0.25).mask))(
        keys))
    assert np.all(masks == masks[..., :1])
    freq = masks[..., 0]
    assert np.all(freq.sum(axis=(1, 2)) == 48)  # round(0.25 * 16 * 12)
    # centre block: 4 x 3 lowest frequencies, rows -2..1, columns -1..1
    rows, cols = [14, 15, 0, 1], [11, 0, 1]
    assert np.all(freq[:, rows][:, :, cols] == 1)
    free = np.ones((16, 12), bool)
    free[np.ix_(rows, cols)] = False
    rate = freq[:, free].mean(axis=0)  # each free frequency: 36/180 = 0.2 (std 0.023 per freq)
    assert abs(rate.mean() - 0.2) < 1e-12  # exact: the count is fixed
    assert rate.min() > 0.1 and rate.max() < 0.3


def test_subsampled_dct_count_and_signs():
    shape = (8, 8, 3)
    keys = jax.random.split(jax.random.PRNGKey(2), 200)
    ops = jax.jit(jax.vmap(lambda k: subsampled_dct(k, shape, ratio=0.25)))(keys)
    masks, signs = np.asarray(ops.mask), np.asarray(ops.signs)
    assert np.all(masks.sum(axis=(1, 2, 3)) == 48)  # round(0.25 * 192)
    assert np.all(np.abs(signs) == 1)
    assert abs(signs.mean()) < 0.02  # 38,400 fair signs: std 0.005
    rate = masks.mean(axis=0)  # every coefficient is kept with probability 0.25 (std 0.031)
    assert rate.min() > 0.1 and rate.max() < 0.4
    plain = subsampled_dct(keys[0], shape, 0.25, random_signs=False)
    assert plain.signs is None and plain.solve_method.startswith("closed form")


@pytest.mark.parametrize("call,match", [
    (lambda k: subsampled_dct(k, (8, 8, 3), ratio=0.0), r"ratio must be in \(0, 1\], got 0.0"),
    (lambda k: subsampled_dct(k, (8, 8, 3), ratio=-1), r"ratio must be in \(0, 1\], got -1"),
    (lambda k: subsampled_dct(k, (8, 8, 3), ratio=1.5), r"ratio must be in \(0, 1\], got 1.5"),
    (lambda k: subsampled_dct(k, (8, 8, 3), ratio=float("nan")), "ratio must be in"),
    (lambda k: subsampled_dct(k, (8, 8, 3), ratio=1e-4), "keeps no coefficients"),
    (lambda k: subsampled_dct(k, (8, 0, 3)), r"shape must be \(H, W, C\)"),
    (lambda k: subsampled_dct(k, (8, 8)), r"shape must be \(H, W, C\)"),
    (lambda k: fourier_mask_random(k, (8, 8, 1), keep_fraction=0), "keep_fraction must be in"),
    (lambda k: fourier_mask_random(k, (8, 8, 1), keep_fraction=0.1, center_fraction=0.5),
     "16 always-kept central frequencies exceed the 6 frequencies"),
    (lambda k: fourier_mask_random(k, (8, 8, 1), center_fraction=-0.1),
     r"center_fraction must be in \[0, 1\], got -0.1"),
    (lambda k: fourier_mask_cartesian(k, (8, 8, 1), accel=0.5),
     "accel must be a finite number >= 1"),
    (lambda k: fourier_mask_cartesian(k, (8, 8, 1), accel=float("inf")), "accel must be"),
    (lambda k: fourier_mask_cartesian(k, (8, 8, 1), accel=20), "keeps no rows"),
    (lambda k: fourier_mask_cartesian(k, (8, 8, 1), accel=4, center_fraction=0.5),
     "4 always-kept central rows exceed the 2 rows"),
    (lambda k: SampledOrthonormal.create(jnp.ones((4, 4, 1)), "wavelet"),
     "transform must be one of"),
    (lambda k: SampledOrthonormal.create(jnp.ones((4, 4)), "dct"), r"\(\.\.\., H, W, C\)"),
    (lambda k: SampledOrthonormal.create(jnp.ones((4, 4, 1)), signs=jnp.ones((4, 4, 2))),
     "signs must have the mask's shape"),
])
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(jax.random.PRNGKey(0))


def test_non_numeric_fraction_is_a_type_error():
    with pytest.raises(TypeError, match="ratio must be a number, got 'half'"):
        subsampled_dct(jax.random.PRNGKey(0), (8, 8, 3), ratio="half")


# ------------------------------------------------------------------ inside the solvers
def _np_admm(prox, a, y, rho, num_iters):
    """The spec's ADMM loop on flat vectors with a dense float64 A (independent reference)."""
    z = np.linalg.pinv(a, rcond=1e-6) @ y
    u = np.zeros_like(z)
    lhs = a.T @ a + rho * np.eye(a.shape[1])
    for _ in range(num_iters):
        x = prox(z + u)
        z = np.linalg.solve(lhs, a.T @ y + rho * (x - u))
        u = u + z - x
    return z


def _prox_np(v):
    return np.clip(0.8 * v + 0.1 * np.tanh(v - 0.5), -1.0, 2.0)


def _prox_jax(v, rho):
    return jnp.clip(0.8 * v + 0.1 * jnp.tanh(v - 0.5), -1.0, 2.0)


_unrolled = jax.jit(unrolled_admm, static_argnums=(0, 4), static_argnames=("validate",))


def _batch(name, n=3, seed=5):
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return jax.jit(jax.vmap(FACTORIES[name]))(keys)


@pytest.mark.parametrize("name", ["subsampled_dct", "fourier_cartesian", "fourier_random"])
def test_unrolled_admm_matches_dense_reference(x64, name):
    ops = _batch(name)
    mats = [dense_matrix(take(ops, i)) for i in range(3)]
    gen = np.random.default_rng(4)
    images = gen.uniform(size=(3, D))
    y = np.stack([m @ im + 0.05 * gen.normal(size=m.shape[0]) for m, im in zip(mats, images)])
    y = y.reshape((3,) + ops.out_shape)
    rho = np.array([0.1, 0.5, 2.0])
    z = np.asarray(_unrolled(_prox_jax, ops, jnp.asarray(y), jnp.asarray(rho), 5))
    for i in range(3):
        ref = _np_admm(_prox_np, mats[i], y[i].ravel(), rho[i], 5)
        np.testing.assert_allclose(z[i].ravel(), ref, rtol=1e-10, atol=1e-11, err_msg=str(i))


def test_mixed_batch_equals_each_sample_alone(x64):
    """One SelectOperator batch mixing k-space, structured CS and pixel masks."""
    keys = jax.random.split(jax.random.PRNGKey(9), 4)
    index = jnp.asarray([0, 1, 2, 1])

    @jax.jit
    def build(keys, index):
        def one(k, i):
            k1, k2, k3 = jax.random.split(k, 3)
            branches = (FACTORIES["fourier_random"](k1), FACTORIES["subsampled_dct"](k2),
                        pixelwise_mask(k3, SHAPE, dtype=F64))
            return SelectOperator.create(branches, i)
        return jax.vmap(one)(keys, index)

    op = build(keys, index)
    gen = np.random.default_rng(6)
    x = jnp.asarray(gen.uniform(size=(4,) + SHAPE))
    y = vmap_over_batch(lambda o, xx: o.apply(xx), op, x)
    y = jax.tree_util.tree_map(lambda v: v + 0.05 * jnp.asarray(gen.normal(size=v.shape)), y)
    rho = jnp.asarray([0.2, 0.5, 1.0, 0.3])
    z = np.asarray(_unrolled(_prox_jax, op, y, rho, 4))
    for i in range(4):
        k = int(index[i])
        branch = take(op.branches[k], i)
        yi = np.asarray(y[k])[i:i + 1]
        zi = _unrolled(_prox_jax, branch, jnp.asarray(yi), rho[i:i + 1], 4)
        np.testing.assert_allclose(z[i:i + 1], zi, rtol=1e-11, atol=1e-12, err_msg=str(i))
        # and the single-sample solve is the dense reference
        ref = _np_admm(_prox_np, dense_matrix(branch), yi.ravel(), float(rho[i]), 4)
        np.testing.assert_allclose(np.asarray(zi).ravel(), ref, rtol=1e-10, atol=1e-11)


def test_batch_of_operators_equals_one_by_one(x64):
    ops = _batch("fourier_random")
    assert ops.batch_shape == (3,)
    gen = np.random.default_rng(7)
    x = jnp.asarray(gen.normal(size=(3,) + SHAPE))
    rho = jnp.asarray([0.1, 0.5, 2.0])
    y = vmap_over_batch(lambda o, xx: o.apply(xx), ops, x)
    got = {"apply": y, "adjoint": vmap_over_batch(lambda o, v: o.adjoint(v), ops, y),
           "solve": vmap_over_batch(lambda o, v, r: o.solve(v, r), ops, x, rho),
           "pinv": vmap_over_batch(lambda o, v: o.pinv(v), ops, y)}
    for i in range(3):
        one = take(ops, i)
        ref = {"apply": one.apply(x[i]), "adjoint": one.adjoint(y[i]),
               "solve": one.solve(x[i], rho[i]), "pinv": one.pinv(y[i])}
        for k, v in ref.items():
            np.testing.assert_allclose(flat_output(got[k][i]), flat_output(v), rtol=1e-13,
                                       atol=1e-13, err_msg=k)


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", ["subsampled_dct", "fourier_random"])
def test_gradients_match_finite_differences_of_dense_reference(x64, name):
    """d/dy and d/dρ through 3 unrolled iterations, d/dx of apply and d/db, d/dρ of solve,
    against central differences of the NumPy dense-matrix computations."""
    op = FACTORIES[name](jax.random.PRNGKey(12))
    a = dense_matrix(op)
    gen = np.random.default_rng(13)
    y = a @ gen.uniform(size=D) + 0.05 * gen.normal(size=a.shape[0])
    w, dy, dx = gen.normal(size=D), gen.normal(size=a.shape[0]), gen.normal(size=D)
    wy = gen.normal(size=a.shape[0])
    rho, eps = 0.4, 1e-6

    def np_loss(yy, r):
        return float(w @ np.sin(_np_admm(_prox_smooth_np, a, yy, r, 3)))

    def jax_loss(yy, r):
        z = unrolled_admm(_prox_smooth_jax, op, yy.reshape((1,) + op.out_shape), r, 3,
                          validate=False)
        return jnp.vdot(jnp.asarray(w), jnp.sin(z.ravel()))

    g_y, g_rho = jax.jit(jax.grad(jax_loss, argnums=(0, 1)))(jnp.asarray(y), rho)
    fd_y = (np_loss(y + eps * dy, rho) - np_loss(y - eps * dy, rho)) / (2 * eps)
    fd_rho = (np_loss(y, rho + eps) - np_loss(y, rho - eps)) / (2 * eps)
    assert abs(float(np.dot(g_y, dy)) - fd_y) < 1e-7 * max(1.0, abs(fd_y)), (g_y @ dy, fd_y)
    assert abs(float(g_rho) - fd_rho) < 1e-7 * max(1.0, abs(fd_rho)), (g_rho, fd_rho)

    # apply, w.r.t. the image
    x0 = gen.normal(size=D)
    def apply_loss(xx):
        return jnp.vdot(jnp.asarray(wy), jnp.sin(op.apply(xx.reshape(SHAPE)).ravel()))

    g_x = jax.jit(jax.grad(apply_loss))(jnp.asarray(x0))
    f = lambda xx: float(wy @ np.sin(a @ xx))
    fd_x = (f(x0 + eps * dx) - f(x0 - eps * dx)) / (2 * eps)
    assert abs(float(np.dot(g_x, dx)) - fd_x) < 1e-7 * max(1.0, abs(fd_x))

    # solve, w.r.t. its right-hand side and ρ
    def solve_loss(bb, r):
        return jnp.vdot(jnp.asarray(w), jnp.sin(op.solve(bb.reshape(SHAPE), r).ravel()))

    g_b, g_r = jax.jit(jax.grad(solve_loss, argnums=(0, 1)))(jnp.asarray(x0), rho)
    s = lambda bb, r: float(w @ np.sin(np.linalg.solve(a.T @ a + r * np.eye(D), bb)))
    fd_b = (s(x0 + eps * dx, rho) - s(x0 - eps * dx, rho)) / (2 * eps)
    fd_r = (s(x0, rho + eps) - s(x0, rho - eps)) / (2 * eps)
    assert abs(float(np.dot(g_b, dx)) - fd_b) < 1e-7 * max(1.0, abs(fd_b))
    assert abs(float(g_r) - fd_r) < 1e-7 * max(1.0, abs(fd_r))


def _prox_smooth_np(v):
    return 0.7 * v + 0.3 * np.tanh(v)


def _prox_smooth_jax(v, rho):
    return 0.7 * v + 0.3 * jnp.tanh(v)
