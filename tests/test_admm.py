"""ADMM solvers against independent references (float64, small images).

* a convex problem (wavelet-ℓ1 deblurring) solved to a tight tolerance reaches the minimiser
  found by an independent FISTA in NumPy with a PyWavelets transform;
* the per-sample stopping rule, iteration counts and history follow the spec exactly;
* the unrolled scan equals a plain NumPy loop of the spec's update order;
* gradients through the unrolled solver match central finite differences;
* remat / unroll options change nothing numerically;
* a mixed-problem batch (SelectOperator) equals solving each sample alone;
* bad inputs raise clear errors; PSNR equals a NumPy computation.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax import problems as P
from admm_jax.admm import converging_admm, unrolled_admm, validate_problem
from admm_jax.metrics import psnr
from admm_jax.operators import (
    BoxDownsample,
    SelectOperator,
    gaussian_blur,
    gaussian_cs,
    pixelwise_mask,
)
from conftest import dense_matrix, measure_mixed_jit, take

F64 = jnp.float64
SHAPE = (8, 8, 3)
D = math.prod(SHAPE)


# ------------------------------------------------------------------ NumPy reference ADMM
def np_admm(prox, a, y, rho, num_iters, z0=None, tol=None):
    """The spec's loop (§4.1) on flat vectors with a dense A; returns the per-iteration iterates
    (lists of x, z, u after each iteration) and the RMS(x - z) history; with ``tol`` it stops
    after the first iteration whose RMS(x - z) < tol."""
    z = np.linalg.pinv(a) @ y if z0 is None else z0.copy()
    u = np.zeros_like(z)
    aty = a.T @ y
    lhs = a.T @ a + rho * np.eye(a.shape[1])
    xs, zs, us, rms = [], [], [], []
    for _ in range(num_iters):
        x = prox(z + u, rho)
        z = np.linalg.solve(lhs, aty + rho * (x - u))
        u = u + z - x
        xs.append(x), zs.append(z), us.append(u)
        rms.append(float(np.sqrt(np.mean((x - z) ** 2))))
        if tol is not None and rms[-1] < tol:
            break
    return xs, zs, us, rms


def _soft_np(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


LAM_PIX = 0.03


def prox_pixel_l1_jax(v, rho):
    """prox of LAM_PIX·‖x‖₁ (pixel domain), rho (B,)."""
    t = LAM_PIX / rho[:, None, None, None]
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0.0)


def prox_pixel_l1_np(v, rho):
    return _soft_np(v, LAM_PIX / rho)


#: unrolled_admm compiled once per operator structure (prox and num_iters are static)
_unrolled_jit = jax.jit(unrolled_admm, static_argnums=(0, 4),
                        static_argnames=("unroll", "remat", "return_trajectory", "validate"))


@jax.jit
def _masks_from_keys(keys):
    return jax.vmap(lambda k: pixelwise_mask(k, SHAPE, dtype=F64))(keys)


def _mask_batch(n, seed=0):
    """n <= 4 pixelwise masks (always drawn 4 at a time: one compiled generator)."""
    masks = _masks_from_keys(jax.random.split(jax.random.PRNGKey(seed), 4))
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(np.asarray(leaf)[:n]), masks)


_take = take


# ------------------------------------------------------------------ (a) convex problem
def _pywt_matrix(n, wavelet, level):
    """Orthonormal W (n²×n²) of pywt.wavedec2 (periodization), built from basis images."""
    pywt = pytest.importorskip("pywt")

    def w(img):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "level too high" for 16 px and db4
            arr, _ = pywt.coeffs_to_array(
                pywt.wavedec2(img, wavelet, mode="periodization", level=level))
        return arr.ravel()

    return np.stack([w(e.reshape(n, n)) for e in np.eye(n * n)], axis=1)


def test_converging_admm_reaches_wavelet_l1_minimiser(x64):
    """ADMM with x = prox(z + u) and z the data step minimises
    ½‖y − A z‖² + λ‖W z‖₁ (at the fixed point x = z): compare z with FISTA run to convergence.

    Deblurring with a σ = 0.5 Gaussian is strongly convex (|K|² ≥ 0.1), so the minimiser is
    unique and both methods converge linearly.
    """
    from admm_jax.wavelets import wavelet_l1_prox

    n, c, level, lam, rho = 16, 3, 2, 0.03, 0.05
    shape = (n, n, c)
    d = n * n * c
    op = gaussian_blur(shape, sigma=0.5, dtype=F64)
    a = dense_matrix(op)
    w1 = _pywt_matrix(n, "db4", level)
    np.testing.assert_allclose(w1 @ w1.T, np.eye(n * n), atol=1e-12)
    # W on the row-major HWC vector: channel c of pixel (h, w) is entry h·n·C + w·C + c
    w = np.zeros((d, d))
    pix = np.arange(n * n)
    for ch in range(c):
        w[np.ix_(ch * n * n + pix, (pix // n) * n * c + (pix % n) * c + ch)] = w1

    rng = np.random.default_rng(0)
    x_true = rng.uniform(size=d)
    y = a @ x_true + 0.01 * rng.normal(size=d)

    def objective(x):
        return 0.5 * np.sum((y - a @ x) ** 2) + lam * np.abs(w @ x).sum()

    # FISTA with the strongly convex momentum (L = ‖A‖², μ = σ_min(A)²)
    sv = np.linalg.svd(a, compute_uv=False)
    big_l, mu = sv.max() ** 2, sv.min() ** 2
    beta = (1 - np.sqrt(mu / big_l)) / (1 + np.sqrt(mu / big_l))
    gram, aty = a.T @ a, a.T @ y
    x = x_prev = np.zeros(d)
    for _ in range(2000):  # linear rate (1 − √(μ/L)) ≈ 0.67: converged after ~100 iterations
        v = x + beta * (x - x_prev)
        x_prev = x
        x = w.T @ _soft_np(w @ (v - (gram @ v - aty) / big_l), lam / big_l)
        if np.max(np.abs(x - x_prev)) < 1e-15:
            break
    assert np.max(np.abs(x - x_prev)) < 1e-14

    res = converging_admm(wavelet_l1_prox(lam, "db4", level), op,
                          jnp.asarray(y.reshape((1,) + shape)), rho, tol=1e-11, max_iters=3000)
    assert int(res.iterations[0]) < 3000  # it converged by the rule, not the cap
    z = np.asarray(res.z).ravel()
    np.testing.assert_allclose(z, x, atol=1e-8)
    assert objective(z) <= objective(x) + 1e-10
    # the solution is not trivial: ℓ1 is active (some wavelet coefficients exactly zero)
    n_zero = np.sum(np.abs(w @ np.asarray(res.x).ravel()) < 1e-12)
    assert n_zero > 50


# ------------------------------------------------------------------ (b) stopping rule
def test_converging_admm_stopping_rule_and_history(x64):
    batch, max_iters, tol = 4, 40, 1e-4
    ops = _mask_batch(batch, seed=1)
    rng = np.random.default_rng(1)
    x_true = rng.uniform(size=(batch,) + SHAPE)
    y = np.asarray(jax.vmap(lambda o, x: o.apply(x))(ops, jnp.asarray(x_true)))
    y = y + 0.05 * rng.normal(size=y.shape)
    rho = np.array([0.05, 0.3, 1.0, 4.0])  # different difficulty per sample
    res = converging_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), jnp.asarray(rho), tol=tol,
                          max_iters=max_iters, x_true=jnp.asarray(x_true))
    iters = np.asarray(res.iterations)
    hist = {k: np.asarray(v) for k, v in res.history.items()}
    assert set(hist) == {"rms_xz", "objective", "psnr"}
    assert all(h.shape == (max_iters, batch) for h in hist.values())
    assert len(set(iters.tolist())) > 1, iters  # samples stop at different counts
    assert iters.max() == max_iters and iters.min() < max_iters, iters  # cap and rule both used

    for i in range(batch):
        # the count follows the rule applied to the recorded history
        rms = hist["rms_xz"][:, i]
        below = np.nonzero(rms < tol)[0]
        expected = below[0] + 1 if below.size else max_iters
        assert iters[i] == expected
        for h in hist.values():
            assert np.all(np.isfinite(h[:iters[i], i]))
            assert np.all(np.isnan(h[iters[i]:, i]))
        # and it matches an independent NumPy run of the same ADMM with the same rule
        a = np.diag(np.asarray(ops.mask)[i].ravel())
        xs, zs, us, np_rms = np_admm(prox_pixel_l1_np, a, y[i].ravel(), rho[i], max_iters,
                                     tol=tol)
        assert len(np_rms) == iters[i]
        np.testing.assert_allclose(rms[:iters[i]], np_rms, rtol=1e-9, atol=1e-13)
        obj = [0.5 * np.sum((y[i].ravel() - a @ xx) ** 2) for xx in xs]
        np.testing.assert_allclose(hist["objective"][:iters[i], i], obj, rtol=1e-10)
        ps = [10 * np.log10(1 / np.mean((np.clip(zz, 0, 1) - x_true[i].ravel()) ** 2))
              for zz in zs]
        np.testing.assert_allclose(hist["psnr"][:iters[i], i], ps, rtol=1e-10)
        # the returned iterates are those of the stopping iteration (frozen afterwards)
        np.testing.assert_allclose(np.asarray(res.z)[i].ravel(), zs[-1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(res.x)[i].ravel(), xs[-1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(res.u)[i].ravel(), us[-1], rtol=1e-10, atol=1e-12)


def test_converging_admm_per_sample_tol_and_cap(x64):
    ops = _mask_batch(2, seed=2)
    rng = np.random.default_rng(2)
    y = jnp.asarray(rng.uniform(size=(2,) + SHAPE)) * ops.mask
    # a per-sample tolerance: the loose one stops first
    res = converging_admm(prox_pixel_l1_jax, ops, y, 0.3, tol=jnp.asarray([1e-2, 1e-6]),
                          max_iters=100)
    it = np.asarray(res.iterations)
    assert it[0] < it[1]
    # a cap below both counts: everybody stops at the cap, no NaN in the history
    capped = converging_admm(prox_pixel_l1_jax, ops, y, 0.3, tol=1e-6, max_iters=2)
    np.testing.assert_array_equal(np.asarray(capped.iterations), [2, 2])
    assert np.all(np.isfinite(np.asarray(capped.history["rms_xz"])))
    assert "psnr" not in capped.history


# ------------------------------------------------------------------ (c) unrolled = loop
def _unrolled_cases():
    """(name, op, per-sample dense matrices) for a batch of 3."""
    masks = _mask_batch(3, seed=3)
    cs = gaussian_cs(jax.random.PRNGKey(4), SHAPE, ratio=0.25, dtype=F64)
    sr = BoxDownsample(in_shape=SHAPE, factor=2)
    return [
        ("mask_batch", masks, [dense_matrix(_take(masks, i)) for i in range(3)]),
        ("shared_cs", cs, [dense_matrix(cs)] * 3),
        ("shared_sr", sr, [dense_matrix(sr)] * 3),
    ]


def test_unrolled_admm_equals_plain_loop(x64):
    rng = np.random.default_rng(3)
    num_iters = 6
    rho = np.array([0.1, 0.5, 2.0])
    for name, op, mats in _unrolled_cases():
        y = np.stack([m @ rng.uniform(size=D) for m in mats])
        y = y.reshape((3,) + tuple(op.out_shape))
        z, traj = _unrolled_jit(prox_pixel_l1_jax, op, jnp.asarray(y), jnp.asarray(rho),
                                num_iters, return_trajectory=True)
        assert z.shape == (3,) + SHAPE
        assert traj.x.shape == (num_iters, 3) + SHAPE
        for i in range(3):
            xs, zs, us, _ = np_admm(prox_pixel_l1_np, mats[i], y[i].ravel(), rho[i], num_iters)
            np.testing.assert_allclose(np.asarray(z)[i].ravel(), zs[-1], rtol=1e-10,
                                       atol=1e-12, err_msg=name)
            for t in range(num_iters):
                for got, ref in ((traj.x, xs), (traj.z, zs), (traj.u, us)):
                    np.testing.assert_allclose(np.asarray(got)[t, i].ravel(), ref[t],
                                               rtol=1e-10, atol=1e-12, err_msg=f"{name} t={t}")
        if name != "mask_batch":
            continue
        # a scalar rho is shared by the batch
        z_scalar = _unrolled_jit(prox_pixel_l1_jax, op, jnp.asarray(y), 0.5, num_iters)
        z_vector = _unrolled_jit(prox_pixel_l1_jax, op, jnp.asarray(y), np.full(3, 0.5),
                                 num_iters)
        np.testing.assert_allclose(z_scalar, z_vector, rtol=1e-14, atol=1e-14)


def test_unrolled_admm_custom_z0(x64):
    ops = _mask_batch(2, seed=5)
    rng = np.random.default_rng(5)
    y = np.asarray(jnp.asarray(rng.uniform(size=(2,) + SHAPE)) * ops.mask)
    z0 = rng.uniform(size=(2,) + SHAPE)
    z = unrolled_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), 0.3, 4, z0=jnp.asarray(z0))
    for i in range(2):
        a = np.diag(np.asarray(ops.mask)[i].ravel())
        _, zs, _, _ = np_admm(prox_pixel_l1_np, a, y[i].ravel(), 0.3, 4, z0=z0[i].ravel())
        np.testing.assert_allclose(np.asarray(z)[i].ravel(), zs[-1], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="z0"):
        unrolled_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), 0.3, 4, z0=jnp.zeros((2, 4, 4, 3)))


def test_unrolled_admm_restart_every_restarts_the_dual_per_block(x64):
    """restart_every=3 with a (9, B) schedule against a NumPy loop with rho_t that resets the
    scaled dual u to 0 before iterations 3 and 6."""
    ops = _mask_batch(2, seed=7)
    rng = np.random.default_rng(7)
    y = np.asarray(jnp.asarray(rng.uniform(size=(2,) + SHAPE)) * ops.mask)
    sched = np.array([[0.2, 0.7], [1.5, 0.4], [0.3, 0.9]] * 3)  # (9, 2): blocks of 3
    z = unrolled_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), jnp.asarray(sched), 9,
                      restart_every=3)
    plain = unrolled_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), jnp.asarray(sched), 9)
    for i in range(2):
        a = np.diag(np.asarray(ops.mask)[i].ravel())
        yi = y[i].ravel()
        zi, ui = np.linalg.pinv(a) @ yi, np.zeros(D)
        for t in range(9):  # the spec's loop with rho_t, u reset before iterations 3 and 6
            rho = sched[t, i]
            if t in (3, 6):
                ui = np.zeros(D)
            xi = prox_pixel_l1_np(zi + ui, rho)
            zi = np.linalg.solve(a.T @ a + rho * np.eye(D), a.T @ yi + rho * (xi - ui))
            ui = ui + zi - xi
        np.testing.assert_allclose(np.asarray(z)[i].ravel(), zi, rtol=1e-10, atol=1e-12)
    # without restarts the run differs (u carries over): the check can fail
    assert float(jnp.max(jnp.abs(plain - z))) > 1e-3
    with pytest.raises(ValueError, match="restart_every"):
        unrolled_admm(prox_pixel_l1_jax, ops, jnp.asarray(y), 0.3, 4, restart_every=0)


# ------------------------------------------------------------------ (d, e) gradients
def _grad_setup():
    ops = _mask_batch(2, seed=6)
    rng = np.random.default_rng(6)
    y = np.asarray(ops.mask) * rng.uniform(size=(2,) + SHAPE)  # NumPy: FD steps on the host
    w = jnp.asarray(rng.normal(size=(2,) + SHAPE))
    return ops, y, w


def _make_loss(ops, w, num_iters, **kwargs):
    def loss(params, y, rho):
        a, b = params

        def prox(v, _rho):
            return a * v + b * jnp.tanh(v)

        z = unrolled_admm(prox, ops, y, rho, num_iters, **kwargs)
        return jnp.sum(w * jnp.sin(z))

    return loss


def test_unrolled_admm_gradients_match_finite_differences(x64):
    ops, y, w = _grad_setup()
    loss = jax.jit(_make_loss(ops, w, 4))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    params = (0.7, 0.4)
    rho = np.array([0.3, 0.8])
    g_params, g_y, g_rho = grad(params, y, rho)
    eps = 1e-6

    def fd(f):
        return (float(f(eps)) - float(f(-eps))) / (2 * eps)

    fd_a = fd(lambda e: loss((params[0] + e, params[1]), y, rho))
    fd_b = fd(lambda e: loss((params[0], params[1] + e), y, rho))
    assert abs(float(g_params[0]) - fd_a) < 1e-7 * max(1, abs(fd_a)), (g_params[0], fd_a)
    assert abs(float(g_params[1]) - fd_b) < 1e-7 * max(1, abs(fd_b)), (g_params[1], fd_b)
    direction = np.random.default_rng(7).normal(size=y.shape)
    fd_y = fd(lambda e: loss(params, y + e * direction, rho))
    g_y_dir = float(np.vdot(np.asarray(g_y), direction))
    assert abs(g_y_dir - fd_y) < 1e-7 * max(1, abs(fd_y)), (g_y_dir, fd_y)
    # a single entry too (observed pixel of sample 1)
    idx = tuple(int(v) for v in np.argwhere(np.asarray(ops.mask)[1] == 1)[0])
    e_y = np.zeros(y.shape)
    e_y[(1,) + idx] = 1.0
    fd_entry = fd(lambda e: loss(params, y + e * e_y, rho))
    assert abs(float(np.asarray(g_y)[(1,) + idx]) - fd_entry) < 1e-7 * max(1, abs(fd_entry))
    g_rho = np.asarray(g_rho)
    for i in range(2):
        e_rho = np.eye(2)[i]
        fd_r = fd(lambda e: loss(params, y, rho + e * e_rho))
        assert abs(float(g_rho[i]) - fd_r) < 1e-7 * max(1, abs(fd_r)), (g_rho[i], fd_r)


def test_remat_and_unroll_do_not_change_values_or_gradients(x64):
    ops, y, w = _grad_setup()
    params = (0.7, 0.4)
    rho = np.array([0.3, 0.8])
    results = {}
    for name, kwargs in {"default": {}, "remat": {"remat": True}, "unroll1": {"unroll": 1},
                         "remat_unroll2": {"remat": True, "unroll": 2}}.items():
        loss = _make_loss(ops, w, 3, **kwargs)
        results[name] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, y, rho)
    ref_leaves = jax.tree_util.tree_leaves(results["default"])
    for name, res in results.items():
        for got, ref in zip(jax.tree_util.tree_leaves(res), ref_leaves):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14, err_msg=name)


# ------------------------------------------------------------------ (f) mixed batches
def _mixed_prox(v, rho):
    return jnp.clip(0.8 * v + 0.1 * jnp.tanh(v - 0.5), -1.0, 2.0)


def test_mixed_batch_equals_each_sample_alone(x64):
    problems = tuple(P.get_problem(n) for n in ("pid", "sr", "cs"))
    rng = np.random.default_rng(8)
    images = jnp.asarray(rng.uniform(size=(8,) + SHAPE))
    for seed in range(20):  # a key whose batch mixes all three problems
        op, y, index = measure_mixed_jit()(problems, jax.random.PRNGKey(seed), images,
                                           probs=np.full(3, 1 / 3))
        index = np.asarray(index)
        if set(index.tolist()) == {0, 1, 2}:
            break
    assert set(index.tolist()) == {0, 1, 2}, index  # the batch really mixes problems
    assert isinstance(op, SelectOperator) and op.batch_shape == (8,)
    rho = jnp.asarray([0.3, 0.5, 0.2])[index]  # a per-sample rho that differs by problem
    z = np.asarray(_unrolled_jit(_mixed_prox, op, y, rho, 3))
    y_np, rho_np = [np.asarray(yk) for yk in y], np.asarray(rho)
    for i in range(8):
        k = int(index[i])
        branch = _take(op.branches[k], i) if op.branches[k].is_batched else op.branches[k]
        zi = _unrolled_jit(_mixed_prox, branch, y_np[k][i:i + 1], rho_np[i:i + 1], 3)
        np.testing.assert_allclose(z[i:i + 1], zi, rtol=1e-10, atol=1e-12, err_msg=f"sample {i}")


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_raise_clear_errors(x64):
    op = pixelwise_mask(jax.random.PRNGKey(0), SHAPE, dtype=F64)
    prox = lambda v, r: v
    y = np.ones((2,) + SHAPE)
    y_nan, y_inf = y.copy(), y.copy()
    y_nan[1, 2, 3, 0] = np.nan
    y_inf[0, 0, 0, 0] = np.inf
    for solver in (lambda *a: unrolled_admm(prox, *a, 3),
                   lambda *a: converging_admm(prox, *a, tol=1e-3, max_iters=3)):
        with pytest.raises(ValueError, match=r"y has shape \(2, 8, 8\), expected \(batch,\)"):
            solver(op, jnp.ones((2, 8, 8)), 0.3)
        with pytest.raises(ValueError, match=r"expected \(batch,\) \+ \(8, 8, 3\)"):
            solver(op, jnp.ones((2, 8, 8, 1)), 0.3)
        with pytest.raises(ValueError, match="rho must be > 0"):
            solver(op, y, 0.0)
        with pytest.raises(ValueError, match="rho must be > 0"):
            solver(op, y, jnp.asarray([0.3, -1.0]))
        with pytest.raises(ValueError, match="rho must be finite"):
            solver(op, y, float("nan"))
        with pytest.raises(ValueError, match="rho must be finite"):
            solver(op, y, float("inf"))
        with pytest.raises(ValueError, match="non-finite"):
            solver(op, y_nan, 0.3)
        with pytest.raises(ValueError, match="non-finite"):
            solver(op, jnp.asarray(y_inf), 0.3)
        with pytest.raises(TypeError, match="floating dtype"):
            solver(op, jnp.ones((2,) + SHAPE, jnp.int32), 0.3)
        with pytest.raises(TypeError, match="floating dtype"):
            solver(op, np.ones((2,) + SHAPE, np.uint8), 0.3)
        with pytest.raises(TypeError, match=r"must be real, got complex64.*last axis of 2"):
            solver(op, jnp.ones((2,) + SHAPE, jnp.complex64), 0.3)
        with pytest.raises(ValueError, match="is a batch of 3 operators .the leading axis of its "
                                             "arrays. but y has a batch of 2 measurements"):
            solver(_mask_batch(3), y, 0.3)
        with pytest.raises(ValueError, match=r"rho must be a scalar or have shape \(2,\)"):
            solver(op, y, jnp.asarray([0.3, 0.3, 0.3]))
        with pytest.raises(TypeError, match="LinearOperator"):
            solver(np.eye(3), y, 0.3)
    with pytest.raises(ValueError, match="tol must be > 0"):
        converging_admm(prox, op, y, 0.3, tol=0.0, max_iters=3)
    with pytest.raises(ValueError, match="num_iters must be >= 1"):
        unrolled_admm(prox, op, y, 0.3, 0)
    with pytest.raises(ValueError, match="max_iters must be >= 1"):
        converging_admm(prox, op, y, 0.3, tol=1e-3, max_iters=0)
    # a SelectOperator needs one measurement slot per branch
    sel = SelectOperator.create((op, BoxDownsample(in_shape=SHAPE)), jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="tuple of 2 measurement batches"):
        validate_problem(sel, y, 0.3)
    with pytest.raises(ValueError, match=r"y\[1\] has shape"):
        validate_problem(sel, (y, jnp.ones((2, 8, 8, 3))), 0.3)
    validate_problem(sel, (y, jnp.ones((2, 4, 4, 3))), 0.3)  # fine


def test_indivisible_box_downsample_and_unknown_names():
    with pytest.raises(ValueError, match="not divisible by factor 2"):
        BoxDownsample(in_shape=(9, 8, 3), factor=2)
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        P.get_problem("nope")


# ------------------------------------------------------------------ PSNR
def test_psnr_matches_numpy_per_image(x64):
    rng = np.random.default_rng(9)
    ref = rng.uniform(-0.2, 1.2, size=(4, 8, 8, 3))  # out of range on purpose: clipped
    est = ref + rng.normal(scale=[[[[0.01]]], [[[0.05]]], [[[0.2]]], [[[0.5]]]], size=ref.shape)
    got = np.asarray(psnr(jnp.asarray(est), jnp.asarray(ref)))
    expected = [10 * np.log10(1.0 / np.mean((np.clip(e, 0, 1) - np.clip(r, 0, 1)) ** 2))
                for e, r in zip(est, ref)]
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert len(np.unique(np.round(got, 6))) == 4  # per image, not a batch average
    # one image without batch axis; and float32
    np.testing.assert_allclose(float(psnr(jnp.asarray(est[0]), jnp.asarray(ref[0]))), expected[0],
                               rtol=1e-12)
    got32 = np.asarray(psnr(jnp.asarray(est, jnp.float32), jnp.asarray(ref, jnp.float32)))
    np.testing.assert_allclose(got32, expected, rtol=1e-5)
    # a 0.1 uniform error is exactly 20 dB
    x = np.full((1, 4, 4, 3), 0.5)
    np.testing.assert_allclose(np.asarray(psnr(jnp.asarray(x + 0.1), jnp.asarray(x))), [20.0],
                               rtol=1e-12)


def test_a_prox_in_another_precision_keeps_the_iterates_dtype(x64):
    """A float32 prox (a network) inside a float64 solve used to break the scan's carry; the
    iterates now stay float64 and equal the float64 solve to float32 rounding."""
    op = pixelwise_mask(jax.random.PRNGKey(3), SHAPE, dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(4), (2,) + SHAPE, jnp.float64)
    y = op.apply(x)
    prox32 = lambda v, rho: (0.9 * v).astype(jnp.float32)  # noqa: E731
    prox64 = lambda v, rho: 0.9 * v  # noqa: E731
    for solver in (lambda p: unrolled_admm(p, op, y, 0.3, 5),
                   lambda p: converging_admm(p, op, y, 0.3, tol=1e-9, max_iters=5).z):
        z32, z64 = solver(prox32), solver(prox64)
        assert z32.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(z32), np.asarray(z64), atol=1e-6)


def test_a_prox_returning_another_shape_is_named():
    op = pixelwise_mask(jax.random.PRNGKey(3), SHAPE)
    y = op.apply(jnp.ones((1,) + SHAPE))
    with pytest.raises(ValueError, match=r"prox\(v, rho\) returned shape \(1, 8, 8, 1\); it "
                                         r"must return the shape of v, \(1, 8, 8, 3\)"):
        unrolled_admm(lambda v, rho: v[..., :1], op, y, 0.3, 2)
