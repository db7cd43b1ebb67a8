"""Operator families, the grouped batch (OperatorGroups) and the learned ρ schedule.

References: dense float64 matrices of every family's operator (NumPy solve / pinv), each
sample of a grouped batch solved alone, finite differences through the grouped unrolled ADMM,
and a hand-written ADMM loop with a per-iteration ρ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax.admm import ADMMState, admm_step, initial_state, unrolled_admm
from admm_jax.families import (
    HELD_OUT_FAMILIES,
    TRAINING_FAMILIES,
    FamilyMix,
    get_family,
    measure_family,
    sample_family_batch,
)
from admm_jax.operators.groups import OperatorGroups
from admm_jax.rho_rules import init_rho_rule, rho_for_batch, rho_schedule
from conftest import dense_matrix, take

SHAPE = (20, 20, 3)
D = int(np.prod(SHAPE))
ALL = sorted(set(TRAINING_FAMILIES) | set(HELD_OUT_FAMILIES) - {"sr3"}) + ["sr3"]


def _shape(name):
    return (21, 21, 3) if name == "sr3" else SHAPE


# ------------------------------------------------------------------ each family vs dense
@pytest.mark.parametrize("name", ALL)
def test_family_operator_matches_dense_float64(x64, name):
    shape = _shape(name)
    d = int(np.prod(shape))
    op = get_family(name).make(jax.random.PRNGKey(7), shape)
    a = dense_matrix(op)
    gen = np.random.default_rng(0)
    x, b = gen.normal(size=shape), gen.normal(size=shape)
    y = gen.normal(size=a.shape[0])
    y_tree = jnp.asarray(y.reshape(op.out_shape))
    assert np.allclose(np.asarray(op.apply(jnp.asarray(x))).ravel(), a @ x.ravel(), atol=1e-10)
    assert np.allclose(np.asarray(op.adjoint(y_tree)).ravel(), a.T @ y, atol=1e-10)
    for rho in (0.05, 0.3, 2.0):
        want = np.linalg.solve(a.T @ a + rho * np.eye(d), b.ravel())
        got = np.asarray(op.solve(jnp.asarray(b), rho)).ravel()
        assert np.max(np.abs(got - want)) <= 1e-9 * max(1.0, np.max(np.abs(want))), (name, rho)
    rcond = getattr(op, "rcond", 1e-6)
    want = np.linalg.pinv(a, rcond=rcond) @ y
    got = np.asarray(op.pinv(y_tree)).ravel()
    assert np.max(np.abs(got - want)) <= 1e-8 * max(1.0, np.max(np.abs(want))), name


def test_unknown_family_lists_the_names():
    with pytest.raises(ValueError, match="unknown operator family 'mri'.*inpaint"):
        get_family("mri")
    with pytest.raises(ValueError, match="held out"):
        FamilyMix(families=("inpaint", "demosaic")).validate()


# ------------------------------------------------------------------ the sampler
def test_sampler_layout_noise_range_and_family_frequencies():
    mix = FamilyMix(weights=(("inpaint", 2.0),))
    mix.validate()
    want = mix.probabilities("mask")  # inpaint 2/5, holes/block/lines 1/5 each
    assert np.allclose(want, [0.4, 0.2, 0.2, 0.2])
    images = jnp.full((mix.batch_size,) + SHAPE, 0.5, jnp.float32)
    draw = jax.jit(lambda k: sample_family_batch(mix, k, images)[2:])
    counts = np.zeros(len(mix.families))
    n_draws = 400
    for i in range(n_draws):
        sigma, family = draw(jax.random.PRNGKey(i))
        sigma, family = np.asarray(sigma), np.asarray(family)
        assert np.all((sigma >= 0.0) & (sigma <= 0.1))
        groups = [TRAINING_FAMILIES[mix.families[f]].group for f in family]
        assert groups == [g for g, n in mix.slots for _ in range(n)]  # rows follow the slots
        counts += np.bincount(family, minlength=len(mix.families))
    mask_counts = counts[:4]  # inpaint, holes, block, lines: 4 mask slots per batch
    n = 4 * n_draws
    # binomial std of each frequency is <= sqrt(0.25 / 1600) = 0.0125: 4 std
    assert np.max(np.abs(mask_counts / n - want)) < 0.05
    assert counts[4] == 2 * n_draws and counts[5] == counts[6] == counts[7] == n_draws


def test_paper_families_are_the_paper_masks_and_the_paper_mix_draws_them():
    """The "families+paper" mixes: their paper_* families give exactly the named problems' masks
    (same key), and their samplers draw the mask group with the stated probabilities."""
    from admm_jax.families import FAMILY_MIXES, get_family_mix
    from admm_jax.problems import get_problem

    shape = (64, 64, 3)
    for fam, prob in (("paper_pid", "pid"), ("paper_bi", "bi"), ("paper_si", "si")):
        key = jax.random.PRNGKey(7)
        got = np.asarray(TRAINING_FAMILIES[fam].make(key, shape).mask)
        want = np.asarray(get_problem(prob).make_operator(key, shape).mask)
        np.testing.assert_array_equal(got, want, err_msg=fam)
    assert FamilyMix().families == FAMILY_MIXES["families"].families  # default unchanged
    assert "paper_bi" not in FamilyMix().families
    # "families+paper": 4 randomised + pid + si at 1/8, the centred block 2/8;
    # "families+paper+bi": the block at weight 6 of 12, the six others 1/12 each
    for name, p_block in (("families+paper", 0.25), ("families+paper+bi", 0.5)):
        mix = get_family_mix(name)
        mix.validate()
        want = mix.probabilities("mask")
        names = [f.name for f in mix.members("mask")]
        p_other = (1 - p_block) / 6
        assert np.allclose(want, [p_block if n == "paper_bi" else p_other for n in names])
        images = jnp.full((mix.batch_size,) + SHAPE, 0.5, jnp.float32)
        draw = jax.jit(lambda k, mix=mix: sample_family_batch(mix, k, images).family)
        fam = np.concatenate([np.asarray(draw(jax.random.PRNGKey(i)))[:4] for i in range(300)])
        freq = np.asarray([np.mean(fam == mix.families.index(n)) for n in names])
        # 1,200 mask draws: each frequency within 4 binomial standard deviations
        assert np.all(np.abs(freq - want) < 4 * np.sqrt(want * (1 - want) / fam.size)), (
            name, dict(zip(names, freq)))
    with pytest.raises(ValueError, match="unknown family mix 'paper'.*families\\+paper"):
        get_family_mix("paper")


def test_grouped_batch_equals_each_sample_alone(x64):
    """Every family in one OperatorGroups batch (a different ρ per sample) against each sample
    solved on its own with its own operator, in float64."""
    mix = FamilyMix()
    gen = np.random.default_rng(1)
    images = jnp.asarray(gen.uniform(size=(mix.batch_size,) + SHAPE))
    # drawn in one jitted program (as training draws it), not op by op: the suite is
    # compile-bound and eager drawing compiled ~300 small programs here
    batch = jax.jit(sample_family_batch, static_argnums=0)(mix, jax.random.PRNGKey(3), images)
    rho = jnp.linspace(0.1, 1.0, mix.batch_size)
    prox = lambda v, r: jnp.tanh(v) * 0.9 + 0.05  # nonlinear, per-pixel: batches exactly
    z = unrolled_admm(prox, batch.op, batch.y, rho, 4)
    # one program per operator structure (samples of a group share it)
    alone = jax.jit(lambda o, yy, r: unrolled_admm(prox, o, yy, r, 4, validate=False))
    row = 0
    for g, (op, y) in enumerate(zip(batch.op.groups, batch.y)):
        for i in range(batch.op.sizes[g]):
            one_op = take(op, i) if op.is_batched else op  # one operator, batch of one y
            z_i = alone(one_op, y[i:i + 1], rho[row])
            np.testing.assert_allclose(np.asarray(z[row]), np.asarray(z_i[0]), atol=1e-12)
            row += 1
    assert row == mix.batch_size


def test_gradient_through_grouped_admm_matches_finite_differences(x64):
    mix = FamilyMix(slots=(("mask", 1), ("blur", 1), ("fourier", 1), ("sr2", 1)))
    gen = np.random.default_rng(2)
    images = jnp.asarray(gen.uniform(size=(4,) + SHAPE))
    batch = jax.jit(sample_family_batch, static_argnums=0)(mix, jax.random.PRNGKey(5), images)

    def loss(w):
        prox = lambda v, r: jnp.tanh(w * v)
        z = unrolled_admm(prox, batch.op, batch.y, 0.4, 2, validate=False)
        return jnp.mean((z - images) ** 2)

    w0 = 0.8
    g = float(jax.grad(loss)(w0))
    eps = 1e-5
    fd = (float(loss(w0 + eps)) - float(loss(w0 - eps))) / (2 * eps)
    assert abs(g - fd) <= 1e-6 * max(1.0, abs(fd))


def test_operator_groups_errors():
    m = get_family("inpaint").make
    ops = jax.vmap(lambda k: m(k, SHAPE))(jax.random.split(jax.random.PRNGKey(0), 2))
    sr = get_family("sr2").make(None, SHAPE)
    with pytest.raises(ValueError, match="give its number of samples in sizes"):
        OperatorGroups.create([ops, sr])
    groups = OperatorGroups.create([ops, sr], names=("mask", "sr2"), sizes=(2, 1))
    assert groups.batch_shape == (3,) and groups.offsets == (0, 2)
    assert "closed form" in groups.solve_method
    images = jnp.zeros((3,) + SHAPE)
    y = (jnp.zeros((2,) + SHAPE), jnp.zeros((1, 10, 10, 3)))
    with pytest.raises(ValueError, match="tuple of 2 measurement batches"):
        unrolled_admm(lambda v, r: v, groups, y[0], 0.3, 2)
    with pytest.raises(ValueError, match="one entry per group"):
        groups.split((1, 2, 3), 0)
    with pytest.raises(TypeError, match="no per-sample"):
        groups.apply(images[0])
    assert unrolled_admm(lambda v, r: v, groups, y, 0.3, 2).shape == images.shape


def test_measure_family_noise_and_shapes():
    images = jnp.full((2,) + SHAPE, 0.5, jnp.float32)
    op, y = measure_family("demosaic", jax.random.PRNGKey(0), images, 0.0)
    # one colour per pixel, RGGB
    m = np.asarray(op.mask[0])
    assert np.all(m.sum(-1) == 1) and m[0, 0, 0] == 1 and m[1, 1, 2] == 1 and m[0, 1, 1] == 1
    np.testing.assert_allclose(np.asarray(y), 0.5 * m[None].repeat(2, 0), atol=0)
    _, y = measure_family("sr2", jax.random.PRNGKey(0), images, 0.1)
    assert y.shape == (2, 10, 10, 3) and 0.05 < float(jnp.std(y)) < 0.15


# ------------------------------------------------------------------ the ρ schedule
def test_rho_rule_starts_constant_and_follows_its_formula():
    params = init_rho_rule(5, rho=0.3)
    np.testing.assert_allclose(np.asarray(rho_schedule(params, jnp.array([0.0, 0.1]))), 0.3,
                               rtol=1e-6)
    p = {"log_rho": params["log_rho"], "slope": jnp.full((5,), 0.05)}  # b = 20·0.05 = 1
    sched = np.asarray(rho_schedule(p, jnp.array([0.0, 0.05, 0.1])))
    # ρ ∝ (σ + 0.01) with ρ(0.05) = 0.3
    np.testing.assert_allclose(sched[:, 1], 0.3, rtol=1e-6)
    np.testing.assert_allclose(sched[:, 0], 0.3 * 0.01 / 0.06, rtol=1e-5)
    np.testing.assert_allclose(sched[:, 2], 0.3 * 0.11 / 0.06, rtol=1e-5)
    assert rho_for_batch(params, 0.05, 7).shape == (5, 7)
    with pytest.raises(ValueError, match="rho must be > 0"):
        init_rho_rule(3, rho=0.0)


def test_unrolled_admm_with_a_schedule_equals_a_hand_loop(x64):
    op = get_family("blur").make(jax.random.PRNGKey(0), SHAPE)
    gen = np.random.default_rng(3)
    x = jnp.asarray(gen.uniform(size=(2,) + SHAPE))
    ops = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), op)
    y = jax.vmap(lambda o, xx: o.apply(xx))(ops, x)
    sched = jnp.asarray(gen.uniform(0.05, 1.0, size=(4, 2)))
    prox = lambda v, r: jnp.clip(v, 0.0, 1.0)
    z = unrolled_admm(prox, ops, y, sched, 4)
    state = initial_state(ops, y)
    aty = jax.vmap(lambda o, yy: o.adjoint(yy))(ops, y)
    for t in range(4):
        state = admm_step(prox, ops, aty, sched[t], state)
    np.testing.assert_allclose(np.asarray(z), np.asarray(state.z), atol=1e-13)
    with pytest.raises(ValueError, match=r"schedule must have shape \(num_iters, batch\)"):
        unrolled_admm(prox, ops, y, sched[:3], 4)
    assert isinstance(state, ADMMState)


# ------------------------------------------------------------------ training on families
def test_family_loss_trains_the_rho_rule_and_reports_every_family():
    """du_admm_loss with operator_mix="families" and a learned ρ rule: finite loss, a gradient
    for every schedule parameter, one loss category per training family."""
    from admm_jax.train import preset
    from admm_jax.train.step import du_admm_loss, loss_categories

    cfg = preset("paper", batch_size=10, num_iters=3, operator_mix="families",
                 rho_rule="learned")
    params = {"prior": jnp.asarray(0.9), "rho": init_rho_rule(3)}
    prior_fn = lambda p, v: jnp.clip(p["prior"] * v + 0.05, 0.0, 1.0)  # noqa: E731
    gen = np.random.default_rng(4)
    images = jnp.asarray(gen.uniform(0.2, 0.8, size=(10, 20, 20, 3)), jnp.float32)
    (loss, aux), grads = jax.jit(jax.value_and_grad(
        lambda p: du_admm_loss(prior_fn, p, images, jax.random.PRNGKey(0), (), cfg),
        has_aux=True))(params)
    assert np.isfinite(float(loss))
    for leaf in jax.tree_util.tree_leaves(grads["rho"]):
        assert np.all(np.isfinite(np.asarray(leaf))) and np.any(np.asarray(leaf) != 0)
    assert loss_categories((), cfg) == FamilyMix().families
    assert aux["problem"].shape == (10,) and int(aux["problem"].max()) < 9


def test_family_config_is_validated():
    from admm_jax.train import preset

    with pytest.raises(ValueError, match="lays out 10 samples"):
        preset("paper", batch_size=8, operator_mix="families")
    with pytest.raises(ValueError, match="operator_mix must be one of"):
        preset("paper", operator_mix="all")
    with pytest.raises(ValueError, match="rho_rule must be one of"):
        preset("paper", rho_rule="auto")


def test_training_mix_names_agree_with_the_family_mixes():
    """TrainConfig and the CLI accept exactly the mixes admm_jax.families defines (+ "problems")."""
    from admm_jax.cli import build_parser
    from admm_jax.families import FAMILY_MIXES
    from admm_jax.train.config import OPERATOR_MIXES

    assert OPERATOR_MIXES == ("problems",) + tuple(FAMILY_MIXES)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    (action,) = [a for a in train._actions if a.dest == "operator_mix"]
    assert tuple(action.choices) == OPERATOR_MIXES


def test_blur_families_with_transfer_function_zeros():
    """Box and defocus PSFs are normalised, symmetric, of the asked size, and (unlike the
    Gaussian family's) their transfer functions dip to zero inside the band and rise again."""
    from admm_jax.families import box_psf, disk_psf, gaussian_psf

    box, disk = np.asarray(box_psf(5.0), np.float64), np.asarray(disk_psf(3.0), np.float64)
    for psf in (box, disk):
        assert abs(psf.sum() - 1.0) < 1e-6 and np.allclose(psf, psf[::-1, ::-1])
    c = box.shape[0] // 2
    assert np.count_nonzero(box[c] > 1e-9) == 5  # side 5: five taps across
    assert np.count_nonzero(disk[c] > 1e-9) == 7  # radius 3 (soft edge): seven across
    def axis_response(psf):  # |H| along the first frequency axis, DC to Nyquist
        return np.abs(np.fft.fft2(psf, s=(64, 64)))[:33, 0]

    for psf in (box, disk):
        h = axis_response(psf)
        first_dip = int(np.argmax(h < 0.02))
        assert 0 < first_dip < 32 and h[first_dip:].max() > 0.1  # a zero, then a side lobe
    h = axis_response(np.asarray(gaussian_psf(1.0), np.float64))
    assert np.all(np.diff(h) <= 1e-12)  # the Gaussian's falls monotonically, no side lobes


def test_random_cfa_measures_one_channel_per_pixel_with_random_frequencies():
    """Every pixel of a random colour filter array sees exactly one channel; the channel counts
    follow the draw's own weights (so they vary between draws) and the array is never Bayer's."""
    from admm_jax.families import bayer_mask, random_cfa_mask

    shape = (64, 64, 3)
    bayer = np.asarray(bayer_mask(None, shape).mask)
    fractions = []
    for i in range(20):
        m = np.asarray(random_cfa_mask(jax.random.PRNGKey(i), shape).mask)
        assert set(np.unique(m)) == {0.0, 1.0} and np.all(m.sum(-1) == 1.0)
        assert not np.array_equal(m, bayer)
        fractions.append(m.mean((0, 1)))
    fractions = np.asarray(fractions)
    # weights U[0.5, 1.5] normalised: a channel's share lies in [1/7, 3/5]; 4096 pixels keep
    # the binomial error of a share below 0.008, so 0.03 of slack is about 4 std
    assert fractions.min() > 1 / 7 - 0.03 and fractions.max() < 3 / 5 + 0.03
    assert fractions[:, 0].std() > 0.03  # the frequencies themselves are random


def test_anisotropic_gaussian_psf_has_the_asked_second_moments():
    """The elliptical PSF's covariance has eigenvalues σ_long², σ_short² with the long axis at
    the asked angle (sampled Gaussians of width ≥ 1 px keep their continuous moments to
    ~1e-8 by Poisson summation; truncation at 4σ costs < 0.3 %)."""
    from admm_jax.families import anisotropic_gaussian_psf

    angle = 0.6
    psf = np.asarray(anisotropic_gaussian_psf(2.0, 1.0, angle), np.float64)
    assert abs(psf.sum() - 1.0) < 1e-6 and np.allclose(psf, psf[::-1, ::-1], atol=1e-7)
    r = np.arange(psf.shape[0]) - psf.shape[0] // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    cov = np.array([[np.sum(psf * xx * xx), np.sum(psf * xx * yy)],
                    [np.sum(psf * xx * yy), np.sum(psf * yy * yy)]])
    evals, evecs = np.linalg.eigh(cov)
    assert np.allclose(evals, [1.0, 4.0], rtol=1e-2)
    long_axis = evecs[:, 1]
    assert abs(abs(long_axis @ [np.cos(angle), np.sin(angle)]) - 1.0) < 1e-3
