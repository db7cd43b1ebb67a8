"""Operator algebra (``A @ B``, ``c * A``, ``A + B``, ``A.T``, ``stack``) vs float64 references.

For every rule the composite's dense matrix (built column by column from its ``apply``) must equal
the same algebra done with NumPy on the operands' dense matrices; adjoint, solve (several ρ) and
pinv are compared with ``np.linalg.solve`` / ``np.linalg.pinv`` of that reference; the rule that
fired (exact closed form or CG) is checked; composites run inside ``unrolled_admm`` (vs a NumPy
ADMM loop) and in a mixed ``SelectOperator`` batch (vs each sample alone); gradients through
composed operators match central differences of the NumPy reference.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax.admm import unrolled_admm
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    Mask,
    SampledOrthonormal,
    SelectOperator,
    as_custom,
    circular_kernel,
    gaussian_blur,
    gaussian_cs,
    orthonormal_dct,
    orthonormal_fft,
    pixelwise_mask,
    subsampled_dct,
    vmap_over_batch,
)
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
from conftest import flat_output, take

SHAPE = (8, 6, 2)
D = math.prod(SHAPE)
F64 = jnp.float64
RHOS = (0.05, 0.5, 3.0)


# ------------------------------------------------------------------ operands
def _operands(key):
    """Every operand kind, drawn from one key (called with x64 enabled, also under jit/vmap)."""
    k = jax.random.split(key, 7)
    psf = jax.random.uniform(k[2], (3, 3), F64) + 0.1
    kspace = (jax.random.uniform(k[4], SHAPE) < 0.4).astype(F64)
    return {
        "mask_a": pixelwise_mask(k[0], SHAPE, dtype=F64),
        "mask_b": pixelwise_mask(k[1], SHAPE, drop_prob=0.3, dtype=F64),
        # the blurs with the near-exact cutoff the dense references use (their default,
        # BLUR_RCOND, truncates the ADMM start for noisy data: test_operators.py)
        "blur": gaussian_blur(SHAPE, sigma=0.5, size=3, dtype=F64, rcond=1e-6),
        "conv": CircularConvolution(kernel=circular_kernel(psf / psf.sum(), SHAPE[:2]),
                                    in_shape=SHAPE, rcond=1e-6),
        "box": BoxDownsample(in_shape=SHAPE, factor=2),
        "cs": gaussian_cs(k[3], SHAPE, ratio=0.25, dtype=F64),
        "dct": orthonormal_dct(SHAPE, F64),
        "sdct": subsampled_dct(k[5], SHAPE, ratio=0.5, dtype=F64),
        "fft": orthonormal_fft(SHAPE, F64),
        # one real weight per frequency (broadcast over real/imag) and a general real mask
        "kmask": Mask(mask=kspace[..., None], in_shape=SHAPE + (2,)),
        "kmask_ri": Mask(mask=jax.random.uniform(k[6], SHAPE + (2,), F64, 0.2, 1.0),
                         in_shape=SHAPE + (2,)),
    }


def _custom(o):
    return as_custom(o["conv"])


#: name -> (build(operands) -> operator, NumPy reference from the operands' dense matrices,
#:          expected class, expected path)
CASES = {
    "mask@mask": (lambda o: o["mask_a"] @ o["mask_b"], lambda m: m["mask_a"] @ m["mask_b"],
                  Mask, "closed"),
    "conv@conv": (lambda o: o["blur"] @ o["conv"], lambda m: m["blur"] @ m["conv"],
                  CircularConvolution, "closed"),
    "mask@sdct": (lambda o: o["mask_a"] @ o["sdct"], lambda m: m["mask_a"] @ m["sdct"],
                  SampledOrthonormal, "closed"),
    "kmask@fft": (lambda o: o["kmask"] @ o["fft"], lambda m: m["kmask"] @ m["fft"],
                  SampledOrthonormal, "closed"),
    "kmask_ri@fft": (lambda o: o["kmask_ri"] @ o["fft"], lambda m: m["kmask_ri"] @ m["fft"],
                     Composed, "cg"),
    "2.5*mask": (lambda o: 2.5 * o["mask_a"], lambda m: 2.5 * m["mask_a"], Mask, "closed"),
    "conv*-0.5": (lambda o: o["conv"] * -0.5, lambda m: -0.5 * m["conv"], CircularConvolution,
                  "closed"),
    "-1.5*box": (lambda o: -1.5 * o["box"], lambda m: -1.5 * m["box"], Scaled, "closed"),
    "0.7*cs": (lambda o: 0.7 * o["cs"], lambda m: 0.7 * m["cs"], Scaled, "closed"),
    "0*box": (lambda o: 0.0 * o["box"], lambda m: 0.0 * m["box"], Scaled, "closed"),
    "mask+mask": (lambda o: o["mask_a"] + o["mask_b"], lambda m: m["mask_a"] + m["mask_b"],
                  Mask, "closed"),
    "conv-blur": (lambda o: o["conv"] - o["blur"], lambda m: m["conv"] - m["blur"],
                  CircularConvolution, "closed"),
    "sdct+2sdct": (lambda o: o["sdct"] + 2.0 * o["sdct"], lambda m: 3.0 * m["sdct"],
                   SampledOrthonormal, "closed"),
    "mask.T": (lambda o: o["mask_a"].T, lambda m: m["mask_a"].T, Mask, "closed"),
    "conv.T": (lambda o: o["conv"].T, lambda m: m["conv"].T, CircularConvolution, "closed"),
    "box.T": (lambda o: o["box"].T, lambda m: m["box"].T, Transposed, "closed"),
    "sdct.T": (lambda o: o["sdct"].T, lambda m: m["sdct"].T, Transposed, "closed"),
    "cs.T": (lambda o: o["cs"].T, lambda m: m["cs"].T, Transposed, "closed"),
    "(2cs).T": (lambda o: (2.0 * o["cs"]).T, lambda m: 2.0 * m["cs"].T, Scaled, "closed"),
    "custom.T": (lambda o: _custom(o).T, lambda m: m["conv"].T, Transposed, "cg"),
    "stack(masks)": (lambda o: stack([o["mask_a"], o["mask_b"]]),
                     lambda m: np.vstack([m["mask_a"], m["mask_b"]]), Stack, "closed"),
    "stack(convs)": (lambda o: stack([o["blur"], o["conv"]]),
                     lambda m: np.vstack([m["blur"], m["conv"]]), Stack, "closed"),
    "stack(sampled)": (lambda o: stack([o["mask_a"] @ o["sdct"], o["mask_b"] @ o["sdct"]]),
                       lambda m: np.vstack([m["mask_a"] @ m["sdct"], m["mask_b"] @ m["sdct"]]),
                       Stack, "closed"),
    "stack(mixed)": (lambda o: stack([o["conv"], o["mask_a"], o["box"]]),
                     lambda m: np.vstack([m["conv"], m["mask_a"], m["box"]]), Stack, "cg"),
    "mask@conv": (lambda o: o["mask_a"] @ o["conv"], lambda m: m["mask_a"] @ m["conv"],
                  Composed, "cg"),
    "box@conv": (lambda o: o["box"] @ o["conv"], lambda m: m["box"] @ m["conv"], Composed,
                 "cg"),
    "mask+conv": (lambda o: o["mask_a"] + o["conv"], lambda m: m["mask_a"] + m["conv"], Sum,
                  "cg"),
    "0.5*(mask@conv)": (lambda o: 0.5 * (o["mask_a"] @ o["conv"]),
                        lambda m: 0.5 * m["mask_a"] @ m["conv"], Scaled, "cg"),
    "with_cg(mask@conv)": (lambda o: with_cg(o["mask_a"] @ o["conv"], 1e-12, 1000),
                           lambda m: m["mask_a"] @ m["conv"], WithCG, "cg"),
}
NAMES = list(CASES)


def _tol(name, path):
    if path == "closed":  # the push-through of a transpose loses ~‖A‖²/ρ digits
        return 1e-9 if "T" in name else 1e-11
    return 1e-9 if name.startswith("with_cg") else 2e-5  # CG relative residual 1e-6


def _rel_err(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _columns(op):
    d = math.prod(op.in_shape)
    basis = jnp.eye(d, dtype=F64).reshape((d,) + tuple(op.in_shape))
    return jax.vmap(op.apply)(basis)


_OPERANDS: dict = {}
_operands_jit = jax.jit(_operands)
_all_columns = jax.jit(lambda o: {k: _columns(v) for k, v in o.items()})


def _dense_operands(key):
    """Dense matrices of the operands drawn from ``key`` (column by column)."""
    return {k: _dense(v) for k, v in _all_columns(_operands_jit(key)).items()}


def _operands_at(seed):
    """The operands of one seed, drawn once by one compiled program, and their dense matrices."""
    assert jax.config.jax_enable_x64
    if seed not in _OPERANDS:
        key = jax.random.PRNGKey(seed)
        _OPERANDS[seed] = _operands_jit(key), _dense_operands(key)
    return _OPERANDS[seed]


@functools.partial(jax.jit, static_argnums=0)
def _core(name, operands, y_seed):
    """Everything the checks need for one case, in one compiled program."""
    op = CASES[name][0](operands)
    gen_keys = jax.random.split(y_seed, 3)
    leaves, treedef = jax.tree_util.tree_flatten(
        jax.eval_shape(op.apply, jax.ShapeDtypeStruct(op.in_shape, F64)))
    y = treedef.unflatten([jax.random.normal(k, leaf.shape, F64) for k, leaf in
                           zip(jax.random.split(gen_keys[0], len(leaves)), leaves)])
    b = jax.random.normal(gen_keys[1], op.in_shape, F64)
    return {"op": op, "columns": _columns(op), "y": y, "b": b, "aty": op.adjoint(y),
            "pinv_y": op.pinv(y), "solves": jax.vmap(op.solve, in_axes=(None, 0))(
                b, jnp.asarray(RHOS))}


_CACHE: dict = {}


def _dense(columns):
    leaves = jax.tree_util.tree_leaves(columns)
    n = leaves[0].shape[0]
    return np.concatenate([np.asarray(c).reshape(n, -1) for c in leaves], axis=1).T


def _results(name):
    assert jax.config.jax_enable_x64
    if name not in _CACHE:
        operands, parts = _operands_at(3)
        r = _core(name, operands, jax.random.PRNGKey(4))
        r = {k: (v if k == "op" else jax.tree_util.tree_map(np.asarray, v)) for k, v in r.items()}
        r["A"] = _dense(r.pop("columns"))
        r["A_ref"] = CASES[name][1](parts)
        _CACHE[name] = r
    return _CACHE[name]


# ------------------------------------------------------------------ rules and dense references
@pytest.mark.parametrize("name", NAMES)
def test_rule_fired_and_path_is_visible(x64, name):
    _, _, cls, path = CASES[name]
    op = _results(name)["op"]
    assert type(op) is cls, (name, type(op).__name__)
    assert op.solve_method.startswith("closed form" if path == "closed" else "cg"), \
        op.solve_method


@pytest.mark.parametrize("name", NAMES)
def test_apply_equals_algebra_of_dense_operands(x64, name):
    r = _results(name)
    assert r["A"].shape == r["A_ref"].shape
    np.testing.assert_allclose(r["A"], r["A_ref"], rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_adjoint_solve_pinv_match_dense(x64, name):
    r = _results(name)
    a, y, b = r["A_ref"], flat_output(r["y"]), r["b"].ravel()
    n = a.shape[1]
    np.testing.assert_allclose(r["aty"].ravel(), a.T @ y, rtol=1e-12, atol=1e-12)
    tol = _tol(name, CASES[name][3])
    for rho, got in zip(RHOS, r["solves"]):
        ref = np.linalg.solve(a.T @ a + rho * np.eye(n), b)
        assert _rel_err(got, ref) < tol, (rho, _rel_err(got, ref))
    ref = np.linalg.pinv(a, rcond=1e-6) @ y
    assert _rel_err(r["pinv_y"], ref) < tol, _rel_err(r["pinv_y"], ref)


def test_scaled_zero_operator(x64):
    """0·A is the zero operator: solve = b/ρ, pinv = 0 (no division by zero)."""
    r = _results("0*box")
    np.testing.assert_array_equal(r["A"], 0.0)
    np.testing.assert_allclose(r["solves"][1], r["b"] / RHOS[1], rtol=1e-15)
    np.testing.assert_array_equal(r["pinv_y"], 0.0)


def test_double_transpose_and_scalar_types(x64):
    o = _operands_at(0)[0]
    assert o["cs"].T.T is o["cs"] and o["box"].T.T is o["box"]
    for c in (2, 2.0, np.float64(2.0), jnp.asarray(2.0)):
        for op in (c * o["box"], o["box"] * c):
            assert isinstance(op, Scaled) and float(op.scale) == 2.0
    assert isinstance(-o["box"], Scaled) and float((-o["box"]).scale) == -1.0


def test_cg_arguments_are_used(x64):
    """The CG tolerance and cap are arguments: a cap of 2 iterations is visibly inexact, the
    defaults reach the 1e-6 residual, and the path names them."""
    o, m = _operands_at(1)
    a = m["mask_a"] @ m["conv"]
    b = np.random.default_rng(0).normal(size=SHAPE)
    ref = np.linalg.solve(a.T @ a + 0.05 * np.eye(D), b.ravel())
    rough = compose(o["mask_a"], o["conv"], cg_tol=1e-3, cg_maxiter=2)
    default = o["mask_a"] @ o["conv"]
    assert rough.solve_method == "cg (tol=0.001, maxiter=2)"
    assert default.solve_method == "cg (tol=1e-06, maxiter=200)"
    assert _rel_err(rough.solve(jnp.asarray(b), 0.05), ref) > 1e-3
    assert _rel_err(default.solve(jnp.asarray(b), 0.05), ref) < 2e-5
    # the base-class fallback keeps its defaults
    assert as_custom(o["mask_a"]).solve_method == "cg (tol=1e-06, maxiter=200)"
    # with_cg keeps a closed form as it is
    assert with_cg(o["mask_a"], 1e-3, 2).solve_method == o["mask_a"].solve_method


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("call,exc,match", [
    (lambda o: o["box"] @ o["box"], ValueError, r"B \(BoxDownsample\) outputs \(4, 3, 2\) but "
                                                r"A \(BoxDownsample\) takes \(8, 6, 2\)"),
    (lambda o: o["mask_a"] @ stack([o["mask_a"]]), ValueError, "output is a tuple"),
    (lambda o: o["mask_a"] + o["box"], ValueError, "A \\+ B needs equal shapes"),
    (lambda o: scale(jnp.ones(3), o["box"]), TypeError, "c must be a real scalar"),
    (lambda o: scale(1j, o["box"]), TypeError, "c must be a real scalar"),
    (lambda o: o["box"] @ 3, TypeError, "unsupported operand"),
    (lambda o: stack([]), ValueError, "at least one operator"),
    (lambda o: stack([o["mask_a"], o["box"].T]), ValueError, "must share in_shape"),
    (lambda o: stack([o["mask_a"], "mask"]), TypeError, r"ops\[1\] must be a LinearOperator"),
    (lambda o: stack([o["mask_a"]]).T, ValueError, "outputs a tuple of measurements"),
    (lambda o: compose(o["mask_a"], o["conv"], cg_tol=0), ValueError,
     "cg_tol must be a finite number > 0, got 0"),
    (lambda o: add(o["mask_a"], o["conv"], cg_maxiter=2.5), ValueError,
     "cg_maxiter must be an integer >= 1, got 2.5"),
    (lambda o: with_cg(o["mask_a"], 1e-6, 0), ValueError, "cg_maxiter must be an integer"),
    (lambda o: transpose("A"), TypeError, "op must be a LinearOperator, got str"),
])
def test_bad_operands_raise_clear_errors(x64, call, exc, match):
    with pytest.raises(exc, match=match):
        call(_operands_at(2)[0])


def test_batches_of_different_sizes_are_refused(x64):
    masks3 = jax.vmap(lambda k: pixelwise_mask(k, SHAPE, dtype=F64))(
        jax.random.split(jax.random.PRNGKey(0), 3))
    masks2 = take(masks3, slice(0, 2))
    with pytest.raises(ValueError, match=r"batches of different sizes \[\(2,\), \(3,\)\]"):
        masks3 @ (masks2 @ _operands_at(0)[0]["conv"])


# ------------------------------------------------------------------ batches and the solvers
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


@functools.partial(jax.jit, static_argnums=0)
def _build_batch(name, keys):
    """3 composites by vmap over keys; CG paths at a tight tolerance (compared to 1e-8 below:
    with the default 1e-6 residual the error would be about κ·1e-6 per solve)."""
    def one(k):
        op = CASES[name][0](_operands(k))
        return op if CASES[name][3] == "closed" else with_cg(op, 1e-12, 1000)
    return jax.vmap(one)(keys)


@pytest.mark.parametrize("name", ["mask@sdct", "0.7*cs", "box.T", "stack(masks)", "mask@conv",
                                  "stack(mixed)"])
def test_unrolled_admm_with_batches_of_composites(x64, name):
    """A batch of 3 composites (drawn by vmap over keys) inside unrolled_admm equals the NumPy
    ADMM loop with each sample's dense reference matrix."""
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    ops = _build_batch(name, keys)
    # a composite without arrays (the transpose of a downsampling) is shared by the batch
    assert ops.batch_shape == (3,) or not jax.tree_util.tree_leaves(ops)
    mats = [CASES[name][1](_dense_operands(kk)) for kk in keys]
    gen = np.random.default_rng(6)
    flat = [m @ gen.uniform(size=m.shape[1]) + 0.05 * gen.normal(size=m.shape[0]) for m in mats]
    shapes = jax.tree_util.tree_leaves(jax.eval_shape(
        take(ops, 0).apply, jax.ShapeDtypeStruct(ops.in_shape, F64)))
    sizes = np.cumsum([0] + [math.prod(s.shape) for s in shapes])
    y = [jnp.asarray(np.stack([f[sizes[j]:sizes[j + 1]] for f in flat]).reshape(
        (3,) + s.shape)) for j, s in enumerate(shapes)]
    y = tuple(y) if len(y) > 1 else y[0]
    rho = np.array([0.1, 0.5, 2.0])
    z = np.asarray(_unrolled(_prox_jax, ops, y, jnp.asarray(rho), 4))
    tol = 1e-9 if CASES[name][3] == "closed" else 1e-8
    for i in range(3):
        ref = _np_admm(_prox_np, mats[i], flat[i], rho[i], 4)
        np.testing.assert_allclose(z[i].ravel(), ref, rtol=tol, atol=tol, err_msg=str(i))


def test_batch_combined_with_shared_operator(x64):
    """A batch of masks composed with / added to / stacked with ONE shared convolution: the
    shared operand is broadcast, and every sample equals its own composite."""
    conv = _operands_at(0)[0]["conv"]
    masks = jax.vmap(lambda k: pixelwise_mask(k, SHAPE, dtype=F64))(
        jax.random.split(jax.random.PRNGKey(1), 3))
    gen = np.random.default_rng(2)
    x = jnp.asarray(gen.normal(size=(3,) + SHAPE))
    rho = jnp.asarray([0.1, 0.5, 2.0])
    for batch_op, one in ((masks @ conv, lambda m: m @ conv), (conv @ masks, lambda m: conv @ m),
                          (masks + conv, lambda m: m + conv),
                          (stack([masks, conv]), lambda m: stack([m, conv])),
                          (2.0 * (masks @ conv), lambda m: 2.0 * (m @ conv))):
        assert batch_op.batch_shape == (3,), type(batch_op).__name__
        y = vmap_over_batch(lambda o, v: o.apply(v), batch_op, x)
        s = vmap_over_batch(lambda o, v, r: o.solve(v, r), batch_op, x, rho)
        for i in range(3):
            single = one(take(masks, i))
            np.testing.assert_allclose(flat_output(take(y, i)), flat_output(single.apply(x[i])),
                                       rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(s[i], single.solve(x[i], rho[i]), rtol=1e-9, atol=1e-9)


def test_mixed_batch_of_composites_equals_each_sample_alone(x64):
    """SelectOperator branches: blur-then-mask (CG), a stack of two masks (tuple measurement),
    masked k-space (closed form) and a scaled downsampling."""
    def build(key, index):
        o = _operands(key)
        branches = (o["mask_a"] @ o["conv"], stack([o["mask_a"], o["mask_b"]]),
                    o["kmask"] @ o["fft"], 0.5 * o["box"])
        return SelectOperator.create(branches, index)

    index = jnp.asarray([0, 1, 2, 3, 1])
    op = jax.jit(jax.vmap(build))(jax.random.split(jax.random.PRNGKey(7), 5), index)
    assert op.solve_method.startswith("cg: per-sample branch: [0] cg")
    gen = np.random.default_rng(8)
    x = jnp.asarray(gen.uniform(size=(5,) + SHAPE))
    y = vmap_over_batch(lambda o, v: o.apply(v), op, x)
    y = jax.tree_util.tree_map(lambda v: v + 0.05 * jnp.asarray(gen.normal(size=v.shape)), y)
    rho = jnp.asarray([0.2, 0.5, 1.0, 0.3, 0.7])
    # validate=False: admm.validate_problem does not yet accept a branch whose measurement is
    # itself a tuple (the stack); the computation does
    z = np.asarray(_unrolled(_prox_jax, op, y, rho, 4, validate=False))
    for i in range(5):
        k = int(index[i])
        branch = take(op.branches[k], i)
        yi = jax.tree_util.tree_map(lambda v: v[i:i + 1], y[k])
        zi = _unrolled(_prox_jax, branch, yi, rho[i:i + 1], 4)
        np.testing.assert_allclose(z[i:i + 1], zi, rtol=1e-9, atol=1e-9, err_msg=str(i))


# ------------------------------------------------------------------ gradients
def _prox_smooth_np(v):
    return 0.7 * v + 0.3 * np.tanh(v)


def _prox_smooth_jax(v, rho):
    return 0.7 * v + 0.3 * jnp.tanh(v)


@pytest.mark.parametrize("path", ["closed", "cg"])
def test_gradients_through_composed_operator(x64, path):
    """d/dy, d/dρ and d/dc of a loss after 3 unrolled iterations with A(c) = (c·mask) @ sdct
    (closed form) or c·(mask @ conv) (CG at 1e-12), and d/dx of Σ w·sin(A x), against central
    differences of the NumPy reference with the dense A(c)."""
    o, m = _operands_at(9)
    if path == "closed":
        build = lambda c: (c * o["mask_a"]) @ o["sdct"]
        dense = lambda c: c * m["mask_a"] @ m["sdct"]
    else:
        build = lambda c: c * compose(o["mask_a"], o["conv"], cg_tol=1e-12, cg_maxiter=1000)
        dense = lambda c: c * m["mask_a"] @ m["conv"]
    assert build(1.3).solve_method.startswith("closed form" if path == "closed" else "cg")
    gen = np.random.default_rng(10)
    c0, rho, eps = 1.3, 0.4, 1e-6
    a0 = dense(c0)
    y = a0 @ gen.uniform(size=D) + 0.05 * gen.normal(size=a0.shape[0])
    w, dy = gen.normal(size=D), gen.normal(size=a0.shape[0])
    out_shape = build(c0).out_shape

    def np_loss(yy, r, c):
        return float(w @ np.sin(_np_admm(_prox_smooth_np, dense(c), yy, r, 3)))

    def jax_loss(yy, r, c):
        z = unrolled_admm(_prox_smooth_jax, build(c), yy.reshape((1,) + out_shape), r, 3,
                          validate=False)
        return jnp.vdot(jnp.asarray(w), jnp.sin(z.ravel()))

    g_y, g_rho, g_c = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2)))(jnp.asarray(y), rho, c0)
    fd = {"y": (np_loss(y + eps * dy, rho, c0) - np_loss(y - eps * dy, rho, c0)) / (2 * eps),
          "rho": (np_loss(y, rho + eps, c0) - np_loss(y, rho - eps, c0)) / (2 * eps),
          "c": (np_loss(y, rho, c0 + eps) - np_loss(y, rho, c0 - eps)) / (2 * eps)}
    got = {"y": float(np.dot(g_y, dy)), "rho": float(g_rho), "c": float(g_c)}
    for k in fd:
        assert abs(got[k] - fd[k]) < 1e-6 * max(1.0, abs(fd[k])), (k, got[k], fd[k])

    x0, dx = gen.normal(size=D), gen.normal(size=D)
    wy = gen.normal(size=a0.shape[0])
    g_x = jax.jit(jax.grad(lambda xx: jnp.vdot(jnp.asarray(wy), jnp.sin(
        build(c0).apply(xx.reshape(SHAPE)).ravel()))))(jnp.asarray(x0))
    f = lambda xx: float(wy @ np.sin(a0 @ xx))
    fd_x = (f(x0 + eps * dx) - f(x0 - eps * dx)) / (2 * eps)
    assert abs(float(np.dot(g_x, dx)) - fd_x) < 1e-7 * max(1.0, abs(fd_x))


def test_cg_pinv_gradient_in_y_of_an_ill_conditioned_operator_is_as_tight_as_its_cg(x64):
    """Reverse mode through ``pinv`` of a CG operator (a Gaussian blur of σ = 1 px after
    dropping pixels, 16×16×3: rank 383 of 768, non-zero singular values 0.77 down to 0.008, so
    κ(AᵀA) ≈ 9,000) against the transpose of NumPy's dense pseudo-inverse. The gradient needs
    ``(AᵀA)⁺`` of vectors outside its range: run as CG on (AᵀA)², as before, it was 24 % off
    at cg_tol 1e-10 while ``x`` itself was within 1e-6 of the dense one."""
    shape = (16, 16, 3)
    op = with_cg(compose(gaussian_blur(shape, 1.0, dtype=jnp.float64),
                         pixelwise_mask(jax.random.PRNGKey(0), shape, dtype=jnp.float64)),
                 1e-10, 2000)
    assert op.solve_method.startswith("cg")
    n = math.prod(shape)
    dense = np.asarray(jax.vmap(lambda e: op.apply(e.reshape(shape)).ravel())(
        jnp.eye(n, dtype=jnp.float64))).T
    pinv = np.linalg.pinv(dense, rcond=1e-10)
    gen = np.random.default_rng(3)
    y = dense @ gen.uniform(size=n) + 0.01 * gen.normal(size=n)  # with a part outside range(A)
    w = gen.normal(size=n)
    x = np.asarray(op.pinv(jnp.asarray(y).reshape(shape))).ravel()
    g = jax.grad(lambda yy: jnp.vdot(op.pinv(yy.reshape(shape)).ravel(), jnp.asarray(w)))(
        jnp.asarray(y))
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(x, pinv @ y) < 1e-6
    assert rel(np.asarray(g), pinv.T @ w) < 1e-6


@pytest.mark.parametrize("wrap", ["composed", "custom"])
def test_cg_pinv_gradients_for_a_singular_operator(x64, wrap):
    """The CG pseudo-inverse of a rank-deficient A (blur, then drop pixels), differentiated in
    y and in the operator's arrays (mask weights and kernel, rank kept fixed), against central
    differences of np.linalg.pinv; y has a component outside range(A)."""
    o, m = _operands_at(11)
    gen = np.random.default_rng(12)
    # a mild blur (singular values >= 0.4), so that cg_tol = 1e-12 is reached
    delta = np.zeros(SHAPE[:2])
    delta[0, 0] = 1.0
    mask0 = np.asarray(o["mask_a"].mask)
    kernel0 = 0.7 * delta + 0.3 * np.asarray(o["conv"].kernel)
    d_mask = mask0 * gen.uniform(-1, 1, size=SHAPE)  # zero where the mask is: rank unchanged
    d_kernel = np.zeros_like(kernel0)
    d_kernel[:2, :2] = gen.uniform(-0.1, 0.1, size=(2, 2))

    def build(t):
        mask = Mask(mask=jnp.asarray(mask0) + t * jnp.asarray(d_mask), in_shape=SHAPE)
        conv = CircularConvolution(kernel=jnp.asarray(kernel0) + t * jnp.asarray(d_kernel),
                                   in_shape=SHAPE)
        op = compose(mask, conv, cg_tol=1e-12, cg_maxiter=1000)
        return op if wrap == "composed" else with_cg(as_custom(op), 1e-12, 1000)

    def dense(t):
        k = np.fft.fft2(kernel0 + t * d_kernel)
        conv = np.real(np.fft.ifft2(k[:, :, None, None, None] * np.fft.fft2(
            np.eye(D).reshape((D,) + SHAPE).transpose(1, 2, 3, 0), axes=(0, 1)).reshape(
            SHAPE[:2] + (1, SHAPE[2], D)), axes=(0, 1)))
        conv = conv.reshape(D, D)  # columns: images of the basis vectors, row-major rows
        return np.diag((mask0 + t * d_mask).ravel()) @ conv

    np.testing.assert_allclose(dense(0.0), m["mask_a"] @ (0.7 * np.eye(D) + 0.3 * m["conv"]),
                               atol=1e-13)
    assert build(0.0).solve_method.startswith("cg")
    sv = np.linalg.svd(dense(0.0), compute_uv=False)
    assert sv.min() < 1e-12 < 0.3 < sv[sv > 1e-12].min()  # singular AᵀA, κ(AᵀA) < 12
    y = dense(0.0) @ gen.uniform(size=D) + 0.1 * gen.normal(size=D)
    w, dy, eps = gen.normal(size=D), gen.normal(size=D), 1e-6

    def np_loss(t, yy):
        return float(w @ np.sin(np.linalg.pinv(dense(t), rcond=1e-10) @ yy))

    def jax_loss(t, yy):
        return jnp.vdot(jnp.asarray(w), jnp.sin(build(t).pinv(yy.reshape(SHAPE)).ravel()))

    g_t, g_y = jax.jit(jax.grad(jax_loss, argnums=(0, 1)))(0.0, jnp.asarray(y))
    fd_t = (np_loss(eps, y) - np_loss(-eps, y)) / (2 * eps)
    fd_y = (np_loss(0.0, y + eps * dy) - np_loss(0.0, y - eps * dy)) / (2 * eps)
    assert abs(float(g_t) - fd_t) < 1e-6 * max(1.0, abs(fd_t)), (float(g_t), fd_t)
    assert abs(float(g_y @ dy) - fd_y) < 1e-6 * max(1.0, abs(fd_y)), (float(g_y @ dy), fd_y)
    # forward mode agrees
    _, jvp_t = jax.jvp(lambda t: jax_loss(t, jnp.asarray(y)), (0.0,), (1.0,))
    assert abs(float(jvp_t) - fd_t) < 1e-6 * max(1.0, abs(fd_t))
