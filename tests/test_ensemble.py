"""Test-time self-ensemble of a prox (``admm_jax.priors.ensemble``), against numpy's own flips
and rotations, and the shipped priors' ``ensemble=`` option."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import admm_jax as aj
from admm_jax.priors.ensemble import ENSEMBLES, ensemble_average, self_ensemble


def _skewed_prox(v, rho=None):
    """A prox with no symmetry at all: a one-pixel shift down-right plus a position-dependent
    gain, so every member of a group gives a different output."""
    h, w = v.shape[1:3]
    gain = 1.0 + 0.01 * jnp.arange(h)[:, None, None] + 0.003 * jnp.arange(w)[None, :, None]
    return jnp.roll(v, (1, 1), axis=(1, 2)) * gain


def _numpy_group(group: str):
    """(forward, inverse) pairs of the group, written with numpy's flips/rotations."""
    pairs = [(lambda a: a, lambda a: a)]
    if group in ("hflip", "dihedral"):
        pairs.append((lambda a: a[:, :, ::-1], lambda a: a[:, :, ::-1]))
    if group == "dihedral":
        for k in (1, 2, 3):
            pairs.append((lambda a, k=k: np.rot90(a, k, axes=(1, 2)),
                          lambda a, k=k: np.rot90(a, -k, axes=(1, 2))))
            pairs.append((lambda a, k=k: np.rot90(a, k, axes=(1, 2))[:, :, ::-1],
                          lambda a, k=k: np.rot90(a[:, :, ::-1], -k, axes=(1, 2))))
    return pairs


@pytest.mark.parametrize("group", ["none", "hflip", "dihedral"])
@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 6, 10, 1)])
def test_average_equals_numpy_reference(group, shape):
    v = np.random.default_rng(0).random(shape).astype(np.float32)
    pairs = _numpy_group(group)
    assert len(pairs) == len(ENSEMBLES[group])
    want = np.mean([inv(np.asarray(_skewed_prox(jnp.asarray(np.ascontiguousarray(fwd(v))))))
                    for fwd, inv in pairs], axis=0)
    got = np.asarray(self_ensemble(_skewed_prox, group)(jnp.asarray(v), 0.3))
    assert got.shape == v.shape
    # permutations are exact; only the float32 sum of <= 8 terms of size ~1.1 rounds
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("group", ["hflip", "dihedral"])
def test_ensembled_prox_is_equivariant_to_its_group(group):
    """T(ens(v)) == ens(T(v)) for every T of the group, although the prox itself is not."""
    v = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    ens = self_ensemble(_skewed_prox, group)
    base = np.asarray(ens(jnp.asarray(v)))
    for fwd, _ in _numpy_group(group)[1:]:
        moved = np.asarray(ens(jnp.asarray(np.ascontiguousarray(fwd(v)))))
        np.testing.assert_allclose(moved, fwd(base), rtol=0, atol=2e-6)
        # the plain prox is not: the test would notice a group that does nothing
        plain = np.asarray(_skewed_prox(jnp.asarray(np.ascontiguousarray(fwd(v)))))
        assert np.abs(plain - fwd(np.asarray(_skewed_prox(jnp.asarray(v))))).max() > 1e-2


def test_rho_is_passed_through_and_none_is_the_prox_itself():
    seen = []

    def prox(v, rho):
        seen.append(rho)
        return v

    assert self_ensemble(prox, "none") is prox
    self_ensemble(prox, "hflip")(jnp.zeros((1, 8, 8, 3)), 0.7)
    assert seen == [0.7, 0.7]


@pytest.mark.parametrize("bad", ["flip", "", None, 2])
def test_unknown_group_is_refused_with_the_allowed_names(bad):
    with pytest.raises(ValueError, match=r"ensemble must be one of 'none', 'hflip', "
                                         r"'dihedral', got"):
        self_ensemble(_skewed_prox, bad)
    with pytest.raises(ValueError, match="ensemble must be one of"):
        aj.pretrained("general", ensemble=bad)


def test_average_needs_a_batch_of_images():
    with pytest.raises(ValueError, match=r"v must be \(B, H, W, C\)"):
        ensemble_average(lambda a: a, jnp.zeros((8, 8, 3)), "hflip")


def test_pretrained_ensemble_averages_the_network_over_the_mirror():
    """``pretrained(name, ensemble="hflip")`` is the plain prior averaged with its mirrored
    self, on an odd size (the mirror padding to a multiple of 4 happens per copy), and shares
    the plain prior's weights; ``solve`` runs the same ADMM with the averaged prox."""
    plain = aj.pretrained("general")
    ens = aj.pretrained("general", ensemble="hflip")
    assert ens is aj.pretrained("general", ensemble="hflip")  # cached like the plain one
    assert ens.params is plain.params and ens.ensemble == "hflip"
    assert "ensemble='hflip'" in repr(ens)
    v = jnp.asarray(np.random.default_rng(2).random((2, 22, 18, 3)), jnp.float32)
    want = 0.5 * (np.asarray(plain(v)) + np.asarray(plain(v[:, :, ::-1]))[:, :, ::-1])
    # the same network calls on the same inputs; float32 reassociation across compilations
    # stays far below 1e-5 in [0, 1]
    np.testing.assert_allclose(np.asarray(ens(v)), want, rtol=0, atol=1e-5)
    assert np.abs(np.asarray(plain(v)) - want).max() > 1e-3  # the mirror changes something

    x = v[:1, :16, :16]
    op = aj.pixelwise_mask(jax.random.PRNGKey(0), (16, 16, 3), 0.5)
    y = op.apply(x[0])[None]
    ops = jax.tree_util.tree_map(lambda a: a[None], op)
    got = ens.solve(ops, y, sigma=0.0)
    ref = aj.unrolled_admm(aj.self_ensemble(plain, "hflip"), ops, y,
                           plain.default_rho_for(None, 0.0), plain.num_iters)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=1e-4)
