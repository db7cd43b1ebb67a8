"""Bad input is refused where a user enters, with the argument, its value and what is allowed.

One test per defect found by trying the library as a user (issue #14): each gives the bad input
and checks the exact error type and a fragment of the message; where a check could wrongly
refuse good input, the good neighbour is run too. The solver tests at the end run with and
without ``jit`` (``chex.variants``): the linearity check must work while a trace is under way,
and the generic (transposed adjoint + CG) path must equal the closed forms in both.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax import _checks
from admm_jax import problems as P
from admm_jax.admm import converging_admm, unrolled_admm
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    FunctionOperator,
    LinearOperator,
    Mask,
    SelectOperator,
    as_custom,
    block_mask,
    box_blur,
    gaussian_blur,
    gaussian_cs,
    operator_pytree,
    pixelwise_mask,
    scattered_mask,
    static_field,
)
from admm_jax.operators.custom import check_linearity

SHAPE = (8, 8, 3)
KEY = jax.random.PRNGKey(0)


def _images(n: int = 4, shape=(16, 16, 3)) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(1), (n,) + shape)


def _clip(v, rho):
    return jnp.clip(v, 0.0, 1.0)


# --------------------------------------------------------------------------- measure_mixed
def test_measure_mixed_refuses_more_probs_than_problems():
    problems = (P.get_problem("pid"), P.get_problem("bi"))
    with pytest.raises(ValueError, match=r"probs must have one entry per problem \(2\), got "
                                         r"\[0.2, 0.3, 0.5\]"):
        P.measure_mixed(problems, KEY, _images(), probs=[0.2, 0.3, 0.5])


@pytest.mark.parametrize("probs", [[-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_measure_mixed_refuses_negative_or_empty_weights(probs):
    problems = (P.get_problem("pid"), P.get_problem("bi"))
    with pytest.raises(ValueError, match=r"probs must be finite and >= 0 with a positive sum"):
        P.measure_mixed(problems, KEY, _images(), probs=probs)


def test_measure_mixed_weights_are_normalised_and_zero_weight_never_drawn():
    problems = (P.get_problem("pid"), P.get_problem("bi"))
    x = _images(16)
    _, _, idx_w = P.measure_mixed(problems, KEY, x, probs=[1.0, 3.0])
    _, _, idx_p = P.measure_mixed(problems, KEY, x, probs=[0.25, 0.75])
    np.testing.assert_array_equal(idx_w, idx_p)
    _, y, idx = P.measure_mixed(problems, KEY, x, probs=[0.0, 1.0])
    assert np.all(np.asarray(idx) == 1)
    # every sample measured in its own slot: nothing is left all-zero
    assert np.all(np.abs(np.asarray(y[1])).reshape(16, -1).max(axis=1) > 0)


# --------------------------------------------------------------------------- image range
def test_measure_refuses_uint8_images_and_says_divide_by_255():
    x = (np.asarray(_images()) * 255).astype(np.uint8)
    for fn in (lambda: P.measure(P.get_problem("bi"), KEY, x),
               lambda: P.measure_indexed(P.get_problem("bi"), KEY, np.arange(4), x),
               lambda: P.measure_mixed((P.get_problem("bi"),), KEY, x)):
        with pytest.raises(TypeError, match=r"images must have a floating dtype .* / 255"):
            fn()


@pytest.mark.parametrize("scale, offset", [(255.0, 0.0), (2.0, -1.0)])
def test_measure_refuses_float_images_outside_unit_range(scale, offset):
    x = np.asarray(_images()) * scale + offset  # 0-255 floats, and the networks' [-1, 1]
    with pytest.raises(ValueError, match=r"images: expected float images in \[0, 1\]"):
        P.measure(P.get_problem("bi"), KEY, x)


def test_measure_accepts_unit_images_with_slight_overshoot():
    x = np.asarray(_images()) * 1.05 - 0.02  # e.g. after a resampling filter
    op, y = P.measure(P.get_problem("bi"), KEY, x)
    np.testing.assert_allclose(y, np.asarray(op.mask) * x, rtol=1e-6)


def test_measure_refuses_a_single_image_without_batch_axis():
    with pytest.raises(ValueError, match=r"images must be a batch \(B, H, W, C\)"):
        P.measure(P.get_problem("bi"), KEY, _images()[0])


# --------------------------------------------------------------------------- generators
@pytest.mark.parametrize("ratio", [0, -1, 1.5, float("nan")])
def test_gaussian_cs_refuses_ratio_outside_zero_one(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0.0, 1.0\]"):
        gaussian_cs(KEY, SHAPE, ratio=ratio)


def test_gaussian_cs_smallest_ratio_still_has_a_row():
    assert gaussian_cs(KEY, SHAPE, ratio=1e-6).out_shape == (1,)
    assert gaussian_cs(KEY, SHAPE, ratio=1.0).out_shape == (math.prod(SHAPE),)


@pytest.mark.parametrize("drop_prob", [1.5, 1.0, -0.1])
def test_pixelwise_mask_refuses_drop_prob_outside_zero_one(drop_prob):
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0.0, 1.0\)"):
        pixelwise_mask(KEY, SHAPE, drop_prob=drop_prob)


def test_box_downsample_factor_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="factor must be >= 1, got 0"):
        BoxDownsample(in_shape=SHAPE, factor=0)
    with pytest.raises(TypeError, match=r"factor must be an integer, got 2.0"):
        BoxDownsample(in_shape=SHAPE, factor=2.0)


def test_mask_generators_refuse_box_sizes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"box_size must be >= 1 and <= 4, got 5"):
        scattered_mask(KEY, SHAPE, box_size=5)
    with pytest.raises(ValueError, match=r"num_boxes must be >= 0, got -1"):
        scattered_mask(KEY, SHAPE, box_size=2, num_boxes=-1)
    with pytest.raises(ValueError, match=r"box_size must be >= 0 and <= 8, got 9"):
        block_mask(SHAPE, box_size=9)
    with pytest.raises(ValueError, match=r"size must be >= 1 and <= 8, got 0"):
        box_blur(SHAPE, size=0)


def test_mask_and_kernel_of_another_size_are_refused_at_construction():
    """Found by a new-user check: a 64×64 mask on a 32×32 operator was accepted and failed
    later inside a solve as a raw broadcasting TypeError."""
    with pytest.raises(ValueError, match=r"mask has shape \(16, 16, 3\); its last 3 axes must "
                                         r"be the operator's in_shape \(8, 8, 3\)"):
        Mask(mask=jnp.ones((16, 16, 3)), in_shape=SHAPE)
    with pytest.raises(ValueError, match=r"kernel has shape \(3, 3\).*\(8, 8\).*circular_kernel"):
        CircularConvolution(kernel=jnp.ones((3, 3)) / 9, in_shape=SHAPE)
    # the good neighbours: a batch of masks, a mask shared over channels (as the k-space masks
    # of an orthonormal FFT are), a batch of kernels, and ops rebuilt by pytree utilities
    assert Mask(mask=jnp.ones((5,) + SHAPE), in_shape=SHAPE).batch_shape == (5,)
    shared = Mask(mask=jnp.ones(SHAPE[:2] + (1,)), in_shape=SHAPE)
    np.testing.assert_array_equal(shared.apply(jnp.full(SHAPE, 2.0)), jnp.full(SHAPE, 2.0))
    conv = CircularConvolution(kernel=jnp.zeros((4, 8, 8)).at[:, 0, 0].set(1.0), in_shape=SHAPE)
    assert conv.batch_shape == (4,)
    assert jax.tree_util.tree_map(lambda _: 0, conv).kernel == 0
    assert jax.vmap(lambda c: c.apply(jnp.ones(SHAPE)))(conv).shape == (4,) + SHAPE


# --------------------------------------------------------------------------- solver arguments
def _bi_problem(n: int = 2):
    x = _images(n)
    op, y = P.measure(P.get_problem("bi"), KEY, x)
    return op, y


@pytest.mark.parametrize("bad", [2.5, 8.0, True, "8"])
def test_num_iters_and_max_iters_must_be_integers(bad):
    op, y = _bi_problem()
    with pytest.raises(TypeError, match="num_iters must be an integer, got"):
        unrolled_admm(_clip, op, y, 0.3, num_iters=bad)
    with pytest.raises(TypeError, match="max_iters must be an integer, got"):
        converging_admm(_clip, op, y, 0.3, tol=1e-3, max_iters=bad)


def test_numpy_integer_iteration_counts_are_accepted():
    op, y = _bi_problem()
    _, traj = unrolled_admm(_clip, op, y, 0.3, num_iters=np.int64(3), return_trajectory=True)
    assert traj.z.shape[0] == 3


def test_negative_tol_is_named_as_the_stopping_tolerance():
    op, y = _bi_problem()
    with pytest.raises(ValueError, match=r"tol must be > 0 \(the stopping tolerance") as info:
        converging_admm(_clip, op, y, 0.3, tol=-1e-3, max_iters=3)
    assert "penalty" not in str(info.value)


# --------------------------------------------------------------------------- linearity
def _shift_plus_one(params, x):
    return x + 1.0


def _square(params, x):
    return x ** 2


@pytest.mark.parametrize("fn", [_shift_plus_one, _square])
def test_function_operator_refuses_nonlinear_fn_at_construction(fn):
    with pytest.raises(ValueError, match=r"FunctionOperator is not linear: apply\(a\*x \+ b\*y\)"):
        FunctionOperator(params=(), fn=fn, in_shape=SHAPE)


def _scaled_square(scale, x):
    return scale * x ** 2


def _scaled_self_product(scale, x):
    return scale * x * x


@pytest.mark.parametrize("fn", [_scaled_square, _scaled_self_product])
def test_a_nonlinear_function_operator_built_inside_jit_gets_our_error(fn):
    # Traced params skip the construction-time check; the adjoint's transposition then fails
    # inside JAX (NotImplementedError for x**2, AssertionError for x*x): it must say why.
    @jax.jit
    def adjoint(scale, y):
        return FunctionOperator(params=scale, fn=fn, in_shape=SHAPE).adjoint(y)

    with pytest.raises(ValueError, match="FunctionOperator.apply is not linear in x, so it has "
                                         "no adjoint"):
        adjoint(jnp.float32(2.0), jnp.ones(SHAPE))


def test_the_users_own_assertion_in_apply_is_not_called_nonlinearity():
    def fn(scale, x):
        assert x.ndim == 2, "my own check"
        return scale * x

    @jax.jit
    def adjoint(scale, y):
        return FunctionOperator(params=scale, fn=fn, in_shape=SHAPE).adjoint(y)

    with pytest.raises(AssertionError, match="my own check"):
        adjoint(jnp.float32(2.0), jnp.ones(SHAPE))


@operator_pytree
class _Squares(LinearOperator):
    """A user subclass whose apply is not linear (no closed forms: adjoint by transposition)."""

    in_shape: tuple = static_field(default=SHAPE)

    def apply(self, x):
        return x ** 2


@operator_pytree
class _RowPairs(LinearOperator):
    """A linear user subclass: sums of neighbouring rows (apply only)."""

    in_shape: tuple = static_field(default=SHAPE)

    def apply(self, x):
        return x[::2] + x[1::2]


def test_solvers_refuse_a_nonlinear_user_subclass_before_transposing_it():
    y = jnp.ones((2,) + SHAPE)
    with pytest.raises(ValueError, match="_Squares is not linear"):
        unrolled_admm(_clip, _Squares(), y, 0.3, 2)
    with pytest.raises(ValueError, match="_Squares is not linear"):
        converging_admm(_clip, _Squares(), y, 0.3, tol=1e-3, max_iters=2)


def test_a_nonlinear_branch_inside_a_select_operator_is_found():
    branches = (pixelwise_mask(KEY, SHAPE), _Squares())
    op = SelectOperator.create(branches, 0)
    with pytest.raises(ValueError, match="_Squares is not linear"):
        check_linearity(op)


def test_linear_custom_operators_pass_including_batches_and_dense_float32():
    check_linearity(_RowPairs())
    masks = jax.vmap(lambda k: pixelwise_mask(k, SHAPE))(jax.random.split(KEY, 3))
    check_linearity(as_custom(masks))  # a batch: every sample checked under vmap
    # a dense Gaussian matrix in float32: rounding stays far below the tolerance
    cs = gaussian_cs(KEY, SHAPE, ratio=0.5)
    check_linearity(FunctionOperator(params=cs.matrix, fn=lambda m, x: m @ x.reshape(-1),
                                     in_shape=SHAPE))


def test_linearity_is_checked_once_per_operator_structure(monkeypatch):
    checked = []

    def counting_check(name, apply, in_shape, **kw):
        checked.append(tuple(in_shape))
        return original(name, apply, in_shape, **kw)

    original = _checks.check_linear
    monkeypatch.setattr(_checks, "check_linear", counting_check)

    def scale(params, x):
        return params * x

    FunctionOperator(params=jnp.full(SHAPE, 2.0), fn=scale, in_shape=SHAPE)
    assert checked == [SHAPE]
    op = FunctionOperator(params=jnp.full(SHAPE, 3.0), fn=scale, in_shape=SHAPE)
    y = jax.vmap(op.apply)(_images(2, SHAPE))
    unrolled_admm(_clip, op, y, 0.3, 2)
    jax.jit(lambda o, yy: unrolled_admm(_clip, o, yy, 0.3, 2))(op, y)
    assert checked == [SHAPE]  # same fn and in_shape: remembered, not run again
    FunctionOperator(params=jnp.full((4, 4, 3), 2.0), fn=scale, in_shape=(4, 4, 3))
    assert checked == [SHAPE, (4, 4, 3)]  # another structure: checked


# --------------------------------------------------------------------------- with / without jit
class SolverWithAndWithoutJit(chex.TestCase):
    """The same checks and results whether or not the solver runs inside ``jit``."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_nonlinear_operator_refused(self):
        # built inside the (possibly traced) function: only static fields, so the check can
        # run at trace time
        solve = self.variant(lambda y: unrolled_admm(_clip, _Squares(), y, 0.5, 2))
        with pytest.raises(ValueError, match="_Squares is not linear"):
            solve(jnp.ones((2,) + SHAPE))

    @chex.variants(with_jit=True, without_jit=True)
    def test_transposed_adjoint_and_cg_equal_the_closed_forms(self):
        x = _images(3, SHAPE)
        masks = jax.vmap(lambda k: pixelwise_mask(k, SHAPE))(jax.random.split(KEY, 3))
        y = masks.mask * x
        solve = self.variant(lambda op, yy: unrolled_admm(_clip, op, yy, 0.3, 4))
        closed = solve(masks, y)
        generic = solve(as_custom(masks), y)
        # CG stops at relative residual 1e-6 (float32): agreement to a few float32 ulps × T
        np.testing.assert_allclose(generic, closed, atol=2e-5)
        chex.assert_tree_all_finite(generic)


def test_onenet_config_from_dict_refuses_unknown_keys_and_eval_config_is_frozen():
    import dataclasses

    from admm_jax.baselines.onenet_train import OneNetConfig
    from admm_jax.evaluate.harness import EvalConfig

    saved = dataclasses.asdict(OneNetConfig(width=0.25))
    assert OneNetConfig.from_dict(saved) == OneNetConfig(width=0.25)
    with pytest.raises(ValueError, match=r"unknown OneNetConfig keys: \['widht'\]; valid keys: "
                                         r"\['width'"):
        OneNetConfig.from_dict({**saved, "widht": 1.0})
    cfg = EvalConfig(problems=("bi",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="problem"):
        EvalConfig(problems=("bi", "nope"))


@pytest.mark.parametrize("index", [5, -1, [0, 1, 2], 1.0])
def test_select_operator_refuses_an_index_outside_its_branches(index):
    # out of range, apply gave zeros while adjoint/solve used branch 0: 4-9 dB, no error
    branches = (pixelwise_mask(KEY, SHAPE), pixelwise_mask(jax.random.PRNGKey(1), SHAPE))
    with pytest.raises(ValueError, match=r"index must be integers in \[0, 2\)"):
        SelectOperator.create(branches, index)
    SelectOperator.create(branches, jnp.asarray([0, 1, 1]))  # a batch of valid indices


def test_z0_and_x_true_must_match_the_batch_of_y():
    op = pixelwise_mask(KEY, SHAPE)
    y = op.apply(jnp.ones((2,) + SHAPE))
    prox = lambda v, rho: v  # noqa: E731
    for z0 in (jnp.ones((3,) + SHAPE), jnp.ones(SHAPE)):
        with pytest.raises(ValueError, match=r"z0 must have shape \(B,\) \+ in_shape = "
                                             r"\(2, 8, 8, 3\)"):
            unrolled_admm(prox, op, y, 0.3, 2, z0=z0)
    # x_true of one image broadcast in psnr: every sample was scored against sample 0
    with pytest.raises(ValueError, match=r"x_true must have shape \(B,\) \+ in_shape"):
        converging_admm(prox, op, y, 0.3, tol=1e-3, max_iters=3, x_true=jnp.ones((1,) + SHAPE))


def test_y_given_as_nested_python_lists_is_refused_by_name():
    op = pixelwise_mask(KEY, SHAPE)
    with pytest.raises(TypeError, match=r"y must be an array \(B,\) \+ \(8, 8, 3\)"):
        unrolled_admm(lambda v, rho: v, op, [[1.0]], 0.3, 2)


@pytest.mark.parametrize("build, message", [
    (lambda: gaussian_blur(SHAPE, 1.0, rcond=-1.0), r"rcond must be in \[0, 1\)"),
    (lambda: box_blur(SHAPE, 3, rcond=-1.0), r"rcond must be in \[0, 1\)"),
    (lambda: gaussian_blur(SHAPE, 1.0, size=0), r"size must be >= 1 and <= 8, got 0"),
    (lambda: gaussian_blur(SHAPE, 1.0, size=4), r"size must be odd"),
    (lambda: gaussian_blur(SHAPE, 0.0), r"sigma must be > 0"),
])
def test_blur_constructors_refuse_values_that_gave_infinities_or_were_ignored(build, message):
    # rcond < 0 made pinv non-finite; size=0 silently meant the default; an even size is
    # off-centre
    with pytest.raises(ValueError, match=message):
        build()


def test_the_default_gaussian_size_fits_a_small_image():
    # 2·ceil(3σ)+1 = 7 taps do not fit 5 rows: capped at 5 instead of an error about a kernel
    op = gaussian_blur((5, 7, 1), 0.8)
    assert op.kernel.shape == (5, 7)
    np.testing.assert_allclose(float(jnp.sum(op.kernel)), 1.0, rtol=1e-6)


def test_the_rho_rule_refuses_noise_levels_outside_the_image_range():
    # rho_schedule(params, -0.5) returned NaN (log of a negative number); init_rho_rule(0) an
    # empty schedule
    from admm_jax.rho_rules import init_rho_rule, rho_schedule

    params = init_rho_rule(8)
    for sigma, shown in ((-0.5, r"-0.5"), (jnp.array([0.1, -0.2]), r"\[0.1, -0.2\]"),
                         (math.nan, "nan")):
        with pytest.raises(ValueError, match=r"sigma must be in \[0.0, 1.0\] .*got " + shown):
            rho_schedule(params, sigma)
    np.testing.assert_allclose(np.asarray(rho_schedule(params, 0.05)), 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="num_iters must be >= 1, got 0"):
        init_rho_rule(0)


def test_psnr_refuses_a_reference_outside_the_unit_range():
    # both images were clipped to [0, 1]: any pair of 0-255 images scored inf
    from admm_jax.metrics import psnr

    x = jnp.linspace(0.0, 1.0, 48).reshape(1, 4, 4, 3)
    with pytest.raises(ValueError, match=r"reference: expected images in \[0, 1\], got "
                                         r"values in \[0, 255\]; divide 0-255 images by 255"):
        psnr(x * 255 + 1, x * 255)
    with pytest.raises(ValueError, match=r"map \[-1, 1\] images with x / 2 \+ 0.5"):
        psnr(x, 2 * x - 1)
    # an estimate may overshoot: it is clipped, against a reference in range
    np.testing.assert_allclose(float(psnr(x + 2.0, x)[0]),
                               -10 * math.log10(float(jnp.mean((1.0 - x) ** 2))), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_blurs_take_half_precision_images_and_kernels(dtype):
    # XLA's FFT takes float32/float64 only: half-precision inputs raised from inside jnp.fft
    # Bounds from rounding alone (eps: the half type's machine epsilon): the normalised,
    # non-negative kernel averages, so apply/adjoint err by at most eps per pixel (input or
    # taps rounded by eps/2, the output by eps/2); pinv's gain is at most 1/(rcond·max|K|) =
    # 20, so its relative L2 error stays below 20·eps.
    eps = float(jnp.finfo(dtype).eps)
    x = jax.random.uniform(KEY, SHAPE)
    ref = gaussian_blur(SHAPE, 1.0)
    for op, arg in ((ref, x.astype(dtype)), (gaussian_blur(SHAPE, 1.0, dtype=dtype), x)):
        for method in ("apply", "adjoint", "pinv"):
            out = getattr(op, method)(arg)
            assert out.dtype == arg.dtype
            got = np.asarray(out, np.float32)
            want = np.asarray(getattr(ref, method)(x), np.float32)
            if method == "pinv":
                assert np.linalg.norm(got - want) <= 20 * eps * np.linalg.norm(want)
            else:
                np.testing.assert_allclose(got, want, atol=eps)


def test_tol_must_be_a_scalar_or_one_per_sample():
    op = pixelwise_mask(KEY, SHAPE)
    y = op.apply(jnp.ones((2,) + SHAPE))
    with pytest.raises(ValueError, match=r"tol must be a scalar or one per sample \(2,\), got "
                                         r"shape \(3,\)"):
        converging_admm(lambda v, rho: v, op, y, 0.3, tol=jnp.full((3,), 1e-3), max_iters=2)


def test_per_sample_arrays_in_an_unbatched_function_operator_get_a_hint():
    masks = jnp.stack([pixelwise_mask(jax.random.PRNGKey(i), SHAPE).mask for i in range(2)])
    op = FunctionOperator(params=masks, fn=lambda m, x: m * x, in_shape=SHAPE)  # not batched
    y = jnp.ones((2,) + SHAPE)
    with pytest.raises(ValueError, match=r"FunctionOperator\(\.\.\., batched=True\)"):
        unrolled_admm(lambda v, rho: v, op, y, 0.3, 2)
