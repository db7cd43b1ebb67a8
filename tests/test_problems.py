"""Problem registry, presets and measurement helpers.

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

from admm_jax import problems as P
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    DenseOperator,
    Mask,
    SelectOperator,
)
from conftest import measure_mixed_jit, take

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


def _caps(problem):
    return problem.onenet.max_iters, problem.du_admm.max_iters, problem.wavelet.max_iters


def _strip_caps(problem):
    """The problem with every iteration cap set to 0 (to compare everything else)."""
    return dataclasses.replace(
        problem,
        du_admm=dataclasses.replace(problem.du_admm, max_iters=0),
        onenet=dataclasses.replace(problem.onenet, max_iters=0),
        wavelet=dataclasses.replace(problem.wavelet, max_iters=0),
    )


# ------------------------------------------------------------------ settings and presets
@pytest.mark.parametrize("name", sorted(SPEC))
def test_paper_problem_settings_match_spec(name):
    rho, tol, sigma, lam = SPEC[name]
    for preset in P.PRESETS:
        p = P.get_problem(name, preset)
        assert p.name == name and p.in_paper
        assert p.rho == rho and p.du_admm.rho == rho and p.onenet.rho == rho
        assert p.du_admm.tol == tol and p.onenet.tol == tol
        assert p.noise_std == sigma
        w = p.wavelet
        assert (w.rho, w.lam, w.tol, w.wavelet, w.level) == (0.3, lam, 1e-4, "db4", 3)
    assert set(P.PAPER_PROBLEMS) == set(SPEC)
    assert {n for n, p in P.get_problems().items() if not p.in_paper} == {"cs", "deblur"}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_presets_differ_exactly_in_the_caps(name):
    onenet, t_faces, t_natural, wavelet = PAPER_CAPS[name]
    paper = P.get_problem(name, "paper", "faces")
    assert _caps(paper) == (onenet, t_faces, wavelet)
    assert _caps(P.get_problem(name, "paper", "natural")) == (onenet, t_natural, wavelet)
    onenet, t_faces, t_natural, wavelet = RELEASED_CAPS[name]
    assert _caps(P.get_problem(name, "released", "faces")) == (onenet, t_faces, wavelet)
    assert _caps(P.get_problem(name, "released", "natural")) == (onenet, t_natural, wavelet)
    # nothing else changes between presets / datasets
    for preset in P.PRESETS:
        for dataset in ("faces", "natural"):
            assert _strip_caps(P.get_problem(name, preset, dataset)) == _strip_caps(paper)
    # "corrected" is the paper preset (the SR adjoint is chosen by sr_adjoint_scale_for)
    for dataset in ("faces", "natural"):
        assert P.get_problem(name, "corrected", dataset) == P.get_problem(name, "paper", dataset)


def test_natural_images_only_change_sr_du_admm_T():
    faces, natural = P.get_problems("paper", "faces"), P.get_problems("paper", "natural")
    assert set(faces) == set(natural)
    for name in faces:
        if name == "sr":
            assert natural[name] == dataclasses.replace(
                faces[name], du_admm=dataclasses.replace(faces[name].du_admm, max_iters=11))
            assert faces[name].du_admm.max_iters == 13
        else:
            assert natural[name] == faces[name]
    # the released code ran T = 8 everywhere
    assert P.get_problem("sr", "released", "natural").du_admm.max_iters == 8


def test_sr_adjoint_scale_per_preset():
    assert P.sr_adjoint_scale_for("paper") == 4.0
    assert P.sr_adjoint_scale_for("released") == 4.0
    assert P.sr_adjoint_scale_for("corrected") == 1.0
    key = jax.random.PRNGKey(0)
    for scale in (1.0, 4.0):
        op = P.get_problem("sr").make_operator(key, (64, 64, 3), scale)
        assert isinstance(op, BoxDownsample)
        assert (op.factor, op.adjoint_scale, op.out_shape) == (2, scale, (32, 32, 3))


def test_unknown_names_raise():
    with pytest.raises(ValueError, match=r"unknown problem 'inpaint'; choose one of"):
        P.get_problem("inpaint")
    with pytest.raises(ValueError, match=r"unknown preset 'Paper'"):
        P.get_problems("Paper")
    with pytest.raises(ValueError, match="dataset must be"):
        P.get_problem("sr", dataset="celeba")


def test_operators_of_each_problem():
    key = jax.random.PRNGKey(1)
    shape = (64, 64, 3)
    ops = {name: P.get_problem(name).make_operator(key, shape, 1.0)
           for name in ("pid", "si", "bi", "sr", "deblur")}
    assert all(isinstance(ops[n], Mask) for n in ("pid", "si", "bi"))
    assert isinstance(ops["deblur"], CircularConvolution)
    # compressive sensing: m = round(0.1·12288) = 1229 rows (shapes only)
    cs = jax.eval_shape(lambda k: P.get_problem("cs").make_operator(k, shape, 1.0), key)
    assert isinstance(cs, DenseOperator) and cs.matrix.shape == (1229, 12288)
    # pid drops about half of the entries, channels independently
    m = np.asarray(ops["pid"].mask)
    assert abs(m.mean() - 0.5) < 0.02 and not np.all(m == m[..., :1])
    # bi: rows/cols 22..40 zeroed
    assert np.all(np.asarray(ops["bi"].mask)[22:41, 22:41] == 0)
    assert int((np.asarray(ops["bi"].mask) == 0).sum()) == 19 * 19 * 3


# ------------------------------------------------------------------ measure
_measure = jax.jit(P.measure, static_argnums=0, static_argnames=("sr_adjoint_scale",))


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
    op, y = _measure(P.get_problem("sr"), jax.random.PRNGKey(0), images, sr_adjoint_scale=4.0)
    assert op.adjoint_scale == 4.0 and y.shape == (8, 8, 8, 3)
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
        op, y, rho, index = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                           probs=np.full(3, 1 / 3))
        index = np.asarray(index)
        if set(index.tolist()) == {0, 1, 2}:
            break
    assert isinstance(op, SelectOperator) and op.batch_shape == (8,)
    assert index.dtype == np.int32 and set(index.tolist()) == {0, 1, 2}, index
    np.testing.assert_array_equal(np.asarray(op.index), index)
    np.testing.assert_array_equal(np.asarray(rho), [problems[k].rho for k in index])
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
    _, _, _, only_sr = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                      probs=np.array([0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(only_sr), 2)


def test_measure_mixed_shared_problem_and_operator(x64):
    problems = tuple(P.get_problem(n) for n in MIXED)
    shape = (8, 8, 3)
    images = jnp.broadcast_to(jnp.asarray(np.random.default_rng(3).uniform(size=shape)),
                              (8,) + shape)
    seen = set()
    for seed in range(6):
        op, y, rho, index = _measure_mixed(problems, jax.random.PRNGKey(seed), images,
                                           probs=np.full(3, 1 / 3), per_sample=False)
        index = np.asarray(index)
        assert np.all(index == index[0])
        seen.add(int(index[0]))
        assert np.all(np.asarray(rho) == problems[index[0]].rho)
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
