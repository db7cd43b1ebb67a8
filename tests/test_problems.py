"""Problem registry (measurement models), presets (method settings) and measurement helpers.

The expected numbers are typed in from the reference spec (original_code_spec.md §3, §4.3), not
copied from the code: per-problem ρ / tolerance / noise / wavelet λ, and the iteration caps that
differ between the "paper" and "released" presets.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax import presets as S
from admm_jax import problems as P
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    DenseOperator,
    Mask,
    SampledOrthonormal,
    SelectOperator,
)
from conftest import dense_matrix, measure_mixed_jit, take

# spec §3 / §4.3: (ρ, solver tol, noise σ, wavelet λ)
SPEC = {
    "sr": (0.5, 2e-3, 0.0, 0.05),
    "pid": (0.3, 3e-3, 0.1, 0.05),
    "si": (0.3, 1e-4, 0.0, 0.03),
    "bi": (0.2, 1e-5, 0.0, 0.05),
}
# (OneNet cap, DU-ADMM T faces, DU-ADMM T natural, wavelet cap)
PAPER_CAPS = {"sr": (30, 13, 11, 300), "pid": (300, 8, 8, 300), "si": (300, 8, 8, 300),
              "bi": (300, 8, 8, 300)}
RELEASED_CAPS = {name: (300, 8, 8, 100) for name in SPEC}


def _caps(s):
    return s.onenet.max_iters, s.du_admm.max_iters, s.wavelet.max_iters


def _strip_caps(s):
    """The settings with every iteration cap set to 1 (to compare everything else)."""
    return dataclasses.replace(
        s,
        du_admm=dataclasses.replace(s.du_admm, max_iters=1),
        onenet=dataclasses.replace(s.onenet, max_iters=1),
        wavelet=dataclasses.replace(s.wavelet, max_iters=1),
    )


# ------------------------------------------------------------------ problems and presets
def test_problems_are_measurement_models_only():
    """A Problem holds the operator draw and the noise; no method setting lives on it."""
    fields = {f.name for f in dataclasses.fields(P.Problem)}
    assert fields == {"name", "title", "make_operator", "noise_std", "in_paper"}
    for name, (_, _, sigma, _) in SPEC.items():
        p = P.get_problem(name)
        assert p.name == name and p.in_paper and p.noise_std == sigma
    assert set(P.PAPER_PROBLEMS) == set(SPEC)
    assert {n for n, p in P.get_problems().items() if not p.in_paper} == {"cs", "cs_dct", "deblur"}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_paper_problem_settings_match_spec(name):
    rho, tol, _, lam = SPEC[name]
    for preset in S.PRESETS:
        s = S.get_preset(preset).settings(name)
        assert s.problem == name
        assert s.du_admm.rho == rho and s.onenet.rho == rho
        assert s.du_admm.tol == tol and s.onenet.tol == tol
        w = s.wavelet
        assert (w.rho, w.lam, w.tol, w.wavelet, w.level) == (0.3, lam, 1e-4, "db4", 3)
        assert w.iterative == S.IterativeSettings(0.3, 1e-4, w.max_iters)
    # training uses the same rho, whatever the preset; a Problem or its name
    assert S.training_rho(name) == rho == S.training_rho(P.get_problem(name))


@pytest.mark.parametrize("name", sorted(SPEC))
def test_presets_differ_exactly_in_the_caps(name):
    onenet, t_faces, t_natural, wavelet = PAPER_CAPS[name]
    paper = S.get_preset("paper", "faces").settings(name)
    assert _caps(paper) == (onenet, t_faces, wavelet)
    assert _caps(S.get_preset("paper", "natural").settings(name)) == (onenet, t_natural, wavelet)
    onenet, t_faces, t_natural, wavelet = RELEASED_CAPS[name]
    assert _caps(S.get_preset("released", "faces").settings(name)) == (onenet, t_faces, wavelet)
    assert _caps(S.get_preset("released", "natural").settings(name)) == (onenet, t_natural,
                                                                          wavelet)
    # nothing else changes between presets / datasets
    for preset in S.PRESETS:
        for dataset in ("faces", "natural"):
            assert _strip_caps(S.get_preset(preset, dataset).settings(name)) == _strip_caps(paper)
    # "corrected" is the paper preset's settings with the true SR adjoint
    for dataset in ("faces", "natural"):
        assert (S.get_preset("corrected", dataset).settings(name)
                == S.get_preset("paper", dataset).settings(name))


def test_natural_images_only_change_sr_du_admm_T():
    faces, natural = S.get_preset("paper", "faces"), S.get_preset("paper", "natural")
    assert set(faces.problems) == set(natural.problems) == set(P.get_problems())
    for name in faces.problems:
        f, n = faces.settings(name), natural.settings(name)
        if name == "sr":
            assert n == dataclasses.replace(f, du_admm=dataclasses.replace(f.du_admm,
                                                                           max_iters=11))
            assert f.du_admm.max_iters == 13
        else:
            assert n == f
    # the released code ran T = 8 everywhere
    assert S.get_preset("released", "natural").settings("sr").du_admm.max_iters == 8


def test_sr_adjoint_scale_is_a_preset_setting(x64):
    """The SR operator is drawn with the true adjoint; the paper/released presets give the
    methods 4·Aᵀ at test time (Preset.test_operator), on one operator or a batch; y unchanged."""
    assert [S.get_preset(n).sr_adjoint_scale for n in ("paper", "released", "corrected")] == [
        4.0, 4.0, 1.0]
    shape = (8, 8, 3)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3,) + shape))
    op, y = P.measure(P.get_problem("sr"), jax.random.PRNGKey(0), x)
    assert isinstance(op, BoxDownsample) and op.adjoint_scale == 1.0
    A = dense_matrix(BoxDownsample(in_shape=shape, factor=2))  # (48, 192), true adjoint
    legacy = S.get_preset("paper").test_operator(op)
    assert legacy.adjoint_scale == 4.0 and legacy.out_shape == (4, 4, 3)
    np.testing.assert_allclose(np.asarray(legacy.apply(x)), np.asarray(y), rtol=1e-14)
    v = np.asarray(y)[0].reshape(-1)
    np.testing.assert_allclose(np.asarray(legacy.adjoint(y[0])).reshape(-1), 4.0 * A.T @ v,
                               rtol=1e-12)
    assert S.get_preset("corrected").test_operator(op) is op
    # every other operator passes through unchanged
    mask, _ = P.measure(P.get_problem("bi"), jax.random.PRNGKey(0), x)
    assert S.get_preset("paper").test_operator(mask) is mask


def test_unknown_names_raise():
    with pytest.raises(ValueError, match=r"unknown problem 'inpaint'; choose one of"):
        P.get_problem("inpaint")
    with pytest.raises(ValueError, match=r"preset: unknown preset\(s\) \['Paper'\]"):
        S.get_preset("Paper")
    with pytest.raises(ValueError, match=r"dataset: unknown dataset\(s\) \['celeba'\]"):
        S.get_preset("paper", dataset="celeba")
    with pytest.raises(ValueError, match=r"preset 'paper' has no settings for problem 'mine'"):
        S.get_preset("paper").settings("mine")
    with pytest.raises(ValueError, match=r"max_iters must be"):
        S.IterativeSettings(0.3, 1e-3, 0)
    with pytest.raises(ValueError, match=r"rho must be"):
        S.IterativeSettings(0.0, 1e-3, 8)


def test_operators_of_each_problem():
    key = jax.random.PRNGKey(1)
    shape = (64, 64, 3)
    ops = {name: P.get_problem(name).make_operator(key, shape)
           for name in ("pid", "si", "bi", "sr", "deblur")}
    assert all(isinstance(ops[n], Mask) for n in ("pid", "si", "bi"))
    assert isinstance(ops["deblur"], CircularConvolution)
    # compressive sensing: m = round(0.1·12288) = 1229 rows (shapes only)
    cs = jax.eval_shape(lambda k: P.get_problem("cs").make_operator(k, shape), key)
    assert isinstance(cs, DenseOperator) and cs.matrix.shape == (1229, 12288)
    # structured compressive sensing: 1229 of the 12288 DCT coefficients of s ⊙ x
    dct = P.get_problem("cs_dct").make_operator(key, shape)
    assert isinstance(dct, SampledOrthonormal) and dct.transform == "dct"
    assert int(np.asarray(dct.mask).sum()) == 1229 and dct.out_shape == shape  # zeros elsewhere
    assert set(np.unique(np.asarray(dct.signs)).tolist()) == {-1.0, 1.0}
    # pid drops about half of the entries, channels independently
    m = np.asarray(ops["pid"].mask)
    assert abs(m.mean() - 0.5) < 0.02 and not np.all(m == m[..., :1])
    # bi: rows/cols 22..40 zeroed
    assert np.all(np.asarray(ops["bi"].mask)[22:41, 22:41] == 0)
    assert int((np.asarray(ops["bi"].mask) == 0).sum()) == 19 * 19 * 3


def test_structured_cs_problem_against_dense_float64(x64):
    """cs_dct at 8×8×3 (19 of 192 coefficients, y zero elsewhere): A from basis images,
    A Aᵀ = I on the kept rows, the exact solve and pinv against numpy, and a different draw
    per image index."""
    shape = (8, 8, 3)
    x = jnp.asarray(np.random.default_rng(4).uniform(size=(2,) + shape))
    op, y = P.measure_indexed(P.get_problem("cs_dct"), jax.random.PRNGKey(2), jnp.arange(2), x)
    assert op.batch_shape == (2,) and y.shape == (2,) + shape
    for i in range(2):
        o = take(op, i)
        full = dense_matrix(o)  # (192, 192), zero rows where a coefficient is not kept
        kept = np.asarray(o.mask).reshape(-1) > 0
        assert kept.sum() == 19 and not np.any(full[~kept])
        A = full[kept]
        np.testing.assert_allclose(A @ A.T, np.eye(19), atol=1e-12)
        np.testing.assert_allclose(np.asarray(y)[i].reshape(-1),
                                   full @ np.asarray(x)[i].reshape(-1), atol=1e-12)
        b = np.random.default_rng(i).normal(size=192)
        ref = np.linalg.solve(A.T @ A + 0.05 * np.eye(192), b)
        # rho as a float64 array: a Python float would be rounded to the float32 mask's dtype
        got = np.asarray(o.solve(jnp.asarray(b.reshape(shape)), jnp.float64(0.05))).reshape(-1)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.asarray(o.pinv(y[i])).reshape(-1),
                                   np.linalg.pinv(A) @ np.asarray(y)[i].reshape(-1)[kept],
                                   atol=1e-10)
    assert not np.array_equal(np.asarray(op.mask)[0], np.asarray(op.mask)[1])


# ------------------------------------------------------------------ measure
_measure = jax.jit(P.measure, static_argnums=0)


def test_measure_noise_and_per_sample_operators(x64):
    shape = (16, 16, 3)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(size=(8,) + shape))
    op, y = _measure(P.get_problem("pid"), jax.random.PRNGKey(0), images)
    assert op.batch_shape == (8,)
    clean = np.asarray(op.mask) * np.asarray(images)
    noise = np.asarray(y) - clean
    # σ = 0.1 on every entry, dropped ones included (spec §3), not clipped
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    assert abs(noise[np.asarray(op.mask) == 0].std() - 0.1) < 0.01
    assert not np.allclose(np.asarray(op.mask)[0], np.asarray(op.mask)[1])
    # noiseless problems measure exactly A x
    op, y = _measure(P.get_problem("sr"), jax.random.PRNGKey(0), images)
    assert op.adjoint_scale == 1.0 and y.shape == (8, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(y),
                               np.asarray(images).reshape(8, 8, 2, 8, 2, 3).mean(axis=(2, 4)),
                               rtol=1e-14)


_measure_indexed = jax.jit(P.measure_indexed, static_argnums=0)


def test_measure_indexed_is_reproducible_per_index(x64):
    shape = (16, 16, 3)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.uniform(size=(5,) + shape))
    problem = P.get_problem("pid")
    base = jax.random.PRNGKey(11)
    indices = np.array([10, 11, 12, 13, 14])
    op_all, y_all = _measure_indexed(problem, base, indices, images)
    # another batch composition and order: images 13, 10, 14 among two new ones
    sel = np.array([3, 0, 4])
    idx2 = np.array([13, 30, 10, 14, 31])
    img2 = np.asarray(images)[[3, 1, 0, 4, 2]]
    op2, y2 = _measure_indexed(problem, base, idx2, img2)
    for pos_all, pos2 in zip(sel, (0, 2, 3)):
        np.testing.assert_array_equal(np.asarray(op2.mask)[pos2], np.asarray(op_all.mask)[pos_all])
        np.testing.assert_array_equal(np.asarray(y2)[pos2], np.asarray(y_all)[pos_all])
    # different indices get different operators and noise (same image 1 at index 30 and 11)
    assert not np.array_equal(np.asarray(op2.mask)[1], np.asarray(op_all.mask)[1])
    assert not np.allclose(np.asarray(y2)[1], np.asarray(y_all)[1])
    # the draw depends on the base key and on the problem (two problems, same index)
    op_k, _ = _measure_indexed(problem, jax.random.PRNGKey(12), indices, images)
    assert not np.array_equal(np.asarray(op_k.mask), np.asarray(op_all.mask))
    renamed = dataclasses.replace(problem, name="pid2")
    op_r, _ = _measure_indexed(renamed, base, indices, images)
    assert not np.array_equal(np.asarray(op_r.mask), np.asarray(op_all.mask))
    # noise is σ on top of A x
    noise = np.asarray(y_all) - np.asarray(op_all.mask) * np.asarray(images)
    assert abs(noise.std() - 0.1) < 0.01


# ------------------------------------------------------------------ measure_mixed
_measure_mixed = measure_mixed_jit()


_take = take


MIXED = ("pid", "sr", "cs")  # same problems and shapes as test_admm: one shared compile


def test_measure_mixed_per_sample(x64):
    problems = tuple(P.get_problem(n) for n in MIXED)
    shape = (8, 8, 3)
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.uniform(size=(8,) + shape))
    for seed in range(20):  # a key whose batch mixes all three problems
        op, y, index = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                      probs=np.full(3, 1 / 3))
        index = np.asarray(index)
        if set(index.tolist()) == {0, 1, 2}:
            break
    assert isinstance(op, SelectOperator) and op.batch_shape == (8,)
    assert index.dtype == np.int32 and set(index.tolist()) == {0, 1, 2}, index
    np.testing.assert_array_equal(np.asarray(op.index), index)
    assert len(y) == 3 and y[1].shape == (8, 4, 4, 3) and y[2].shape == (8, 19)
    for i in range(8):
        k = int(index[i])
        for j in range(3):
            if j != k:  # slots of the other problems are zero
                assert not np.any(np.asarray(y[j])[i])
        branch = _take(op.branches[k], i) if op.branches[k].is_batched else op.branches[k]
        x_i = jnp.asarray(np.asarray(images)[i])
        residual = np.asarray(y[k])[i] - np.asarray(branch.apply(x_i))
        if problems[k].noise_std == 0:
            np.testing.assert_allclose(residual, 0.0, atol=1e-14)  # jit vs eager rounding
        else:
            assert 0.05 < residual.std() < 0.15
    # each sample draws its own operator
    masks = np.asarray(op.branches[0].mask)
    assert not np.array_equal(masks[0], masks[1])
    matrices = np.asarray(op.branches[2].matrix)
    assert not np.array_equal(matrices[0], matrices[1])
    # probs
    _, _, only_sr = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                      probs=np.array([0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(only_sr), 2)


def test_measure_mixed_shared_problem_and_operator(x64):
    problems = tuple(P.get_problem(n) for n in MIXED)
    shape = (8, 8, 3)
    images = jnp.broadcast_to(jnp.asarray(np.random.default_rng(3).uniform(size=shape)),
                              (8,) + shape)
    seen = set()
    for seed in range(6):
        op, y, index = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                      probs=np.full(3, 1 / 3), per_sample=False)
        index = np.asarray(index)
        assert np.all(index == index[0])
        seen.add(int(index[0]))
        # one operator instance for the whole batch: every branch's leaves equal across samples
        for leaf in jax.tree_util.tree_leaves(op.branches):
            leaf = np.asarray(leaf)
            assert np.all(leaf == leaf[:1])
        k = int(index[0])
        yk = np.asarray(y[k])
        if problems[k].noise_std == 0:  # same image, same operator: same measurement
            assert np.all(yk == yk[:1])
        else:  # ...but i.i.d. noise per sample
            assert not np.allclose(yk[0], yk[1])
    assert len(seen) >= 2  # the shared problem is itself random
