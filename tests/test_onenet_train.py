"""OneNet pretraining loop: runs, clamps the discriminators, saves a loadable projector."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax.baselines import OneNetConfig, load_projector, pretrain_onenet


def test_pretrain_two_steps_clamps_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((12, 64, 64, 3)) * 255).astype(np.uint8)
    cfg = OneNetConfig(width=1 / 16, steps=2, batch_size=2, clamp=1e-3, log_every=1,
                       checkpoint_every=1000, val_images=2)
    summary = pretrain_onenet(cfg, images, tmp_path / "run", progress=False)
    assert summary["step"] == 2
    recs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert all(np.isfinite(r["g_loss"]) and np.isfinite(r["d_loss"]) for r in recs)

    from admm_jax.train import Checkpointer
    from admm_jax.baselines.onenet_train import build_models, make_pretrain_step

    splits, _ = build_models(cfg)
    _, init = make_pretrain_step(cfg, splits)
    template = init(tuple(s[1] for s in splits))
    state, meta = Checkpointer(tmp_path / "run" / "checkpoints").restore(template)
    assert meta["step"] == 2
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params[1:]):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        if "kernel" in names:
            assert float(jnp.abs(leaf).max()) <= 1e-3 + 1e-9, names
    proj_fn, params, loaded_cfg = load_projector(tmp_path / "run" / "params")
    assert loaded_cfg == cfg
    x = jnp.asarray(images[:2], jnp.float32) / 255
    out = proj_fn(params, x)
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
    # found by a new-user check: a resume with another width failed in the checkpoint
    # restore ("may be corrupt") after rewriting config.json; now refused first, nothing written
    config = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ValueError, match=r"trained with width=0.0625, this call asks for "
                                         r"width=0.125"):
        pretrain_onenet(dataclasses.replace(cfg, width=1 / 8, steps=3), images,
                        tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ValueError, match=r"already at step 2, beyond steps=1"):
        pretrain_onenet(dataclasses.replace(cfg, steps=1), images, tmp_path / "run",
                        resume=True, progress=False)
    assert (tmp_path / "run" / "config.json").read_text() == config


def test_step_losses_equal_separate_network_calls():
    """The step calls each network once on stacked batches ([x; v] through the projector,
    [x; P(x); P(v)] through the image discriminator, [E(x); E(v)] through the latent one).
    Its logged losses equal the original's separate calls, assembled here by hand: the
    generator terms at the initial weights, the discriminator loss at the updated projector
    and the initial discriminators (the step updates G first)."""
    from flax import nnx

    from admm_jax.baselines.onenet_losses import (onenet_discriminator_loss,
                                                  onenet_projector_loss)
    from admm_jax.baselines.onenet_noise import onenet_noise
    from admm_jax.baselines.onenet_train import build_models, make_pretrain_step

    cfg = OneNetConfig(width=1 / 16, steps=2, batch_size=2, clamp=1e-3)  # as above
    splits, _ = build_models(cfg)
    step, init = make_pretrain_step(cfg, splits)
    params0 = tuple(s[1] for s in splits)
    images01 = jax.random.uniform(jax.random.PRNGKey(5), (2, 64, 64, 3))
    key = jax.random.PRNGKey(6)
    state1, metrics = step(init(jax.tree.map(jnp.copy, params0)), images01, key)

    @jax.jit
    def reference(params, projector_after):
        proj, d_img, d_lat = (nnx.merge(g, p, r) for (g, _, r), p in zip(splits, params))
        noisy01, _ = onenet_noise(jax.random.fold_in(key, 0), images01)
        x, v = 2.0 * images01 - 1.0, 2.0 * noisy01 - 1.0
        logit = lambda f, h: f(h).reshape(-1)  # noqa: E731
        px, pv = proj(x), proj(v)
        _, terms = onenet_projector_loss(
            x=x, v=v, proj_x=px, proj_v=pv, d_proj_x=logit(d_img, px),
            d_proj_v=logit(d_img, pv), dl_latent_v=logit(d_lat, proj.encode(v)),
            return_terms=True)
        proj = nnx.merge(splits[0][0], projector_after, splits[0][2])
        px, pv = proj(x), proj(v)
        d = onenet_discriminator_loss(
            d_x=logit(d_img, x), d_proj_x=logit(d_img, px), d_proj_v=logit(d_img, pv),
            dl_latent_x=logit(d_lat, proj.encode(x)), dl_latent_v=logit(d_lat, proj.encode(v)))
        return terms, d

    terms, d = reference(params0, state1.params[0])
    # float32 networks on batches of another size: rounding only (seen: <= 3e-7 relative)
    for name, value in terms.items():
        assert float(metrics[f"g_{name}"]) == pytest.approx(float(value), rel=2e-5), name
    assert float(metrics["d_loss"]) == pytest.approx(float(d), rel=2e-5)


# ------------------------------------------------------------------- virtual batch norm (VBN)

_VBN_CFG = OneNetConfig(width=1 / 16, norm="virtual_batch", n_reference=3, steps=2,
                        batch_size=2, log_every=1, checkpoint_every=1000, val_images=2)


@pytest.fixture(scope="module")
def vbn_run(tmp_path_factory):
    """One tiny VBN pretraining run shared by the VBN tests (the step compile dominates)."""
    images = (np.random.default_rng(1).random((12, 64, 64, 3)) * 255).astype(np.uint8)
    out = tmp_path_factory.mktemp("vbn") / "run"
    summary = pretrain_onenet(_VBN_CFG, images, out, progress=False)
    return images, out, summary


def _fresh_projector(params):
    """The VBN projector with ``params`` and the initial (unused) statistics 0 / 1."""
    from flax import nnx

    from admm_jax.baselines.onenet_train import build_models

    _, net = build_models(_VBN_CFG)
    nnx.update(net, params)
    return net


def test_vbn_pretrain_uses_and_stores_reference_batch(vbn_run):
    from admm_jax.baselines.onenet_train import build_models, draw_reference_batch
    from admm_jax.data import BatchIterator

    images, out, summary = vbn_run
    cfg = _VBN_CFG
    assert summary["step"] == 2 and np.isfinite(summary["val_denoised_psnr"])
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert all(np.isfinite(r["g_loss"]) and np.isfinite(r["d_loss"]) for r in recs)

    # one fixed reference batch, drawn from the config seed, saved with the run and the weights
    ref = np.load(out / "reference_batch.npy")
    assert ref.shape == (3, 64, 64, 3) and ref.dtype == np.float32
    np.testing.assert_array_equal(ref, draw_reference_batch(cfg, images))
    np.testing.assert_array_equal(ref, np.load(out / "params" / "reference_batch.npy"))

    # the training loss used it: step 1's recon term MSE(P(x), x) at the initial weights equals
    # the network called with the reference batch appended, not without it
    x = 2.0 * jnp.asarray(next(BatchIterator(images, cfg.batch_size, seed=cfg.seed))) - 1.0
    _, net0 = build_models(cfg)
    # (at the initial weights P(x) is small, so the two differ by only ~4e-4 relative)
    x64 = np.asarray(x, np.float64)
    with_ref = np.mean(np.square(np.asarray(net0(x, jnp.asarray(ref)), np.float64) - x64))
    without = np.mean(np.square(np.asarray(net0(x), np.float64) - x64))
    logged = recs[0]["g_recon_x"]
    assert logged == pytest.approx(with_ref, rel=2e-5)
    assert abs(logged - with_ref) < abs(logged - without) / 10

    # the loaded projector uses the stored reference statistics, no reference batch needed
    proj_fn, params, loaded_cfg = load_projector(out / "params")
    assert loaded_cfg == cfg
    x01 = jnp.asarray(images[:3], jnp.float32) / 255
    got = np.asarray(proj_fn(params, x01))
    net = _fresh_projector(params)
    stale = np.asarray((net(2 * x01 - 1) + 1) / 2)  # statistics 0 / 1: must not be what we got
    assert np.abs(got - stale).max() > 1e-3
    net.store_reference_statistics(jnp.asarray(ref))
    np.testing.assert_allclose(got, np.asarray((net(2 * x01 - 1) + 1) / 2), atol=1e-5)
    # ... i.e. the loaded projector on the reference batch equals the network's own
    # reference-only pass over it (normalised with the reference batch's statistics)
    net = _fresh_projector(params)
    r = jnp.asarray(ref)
    ref_pass = net.decode(net.encode(r, n_reference=3), n_reference=3)
    np.testing.assert_allclose(np.asarray(proj_fn(params, (r + 1) / 2)),
                               np.asarray((ref_pass + 1) / 2), atol=1e-5)


def test_vbn_projector_with_corrupt_statistics_is_refused_by_name(vbn_run, tmp_path):
    """Corrupt stored reference statistics: a CheckpointError naming them and the folder,
    not orbax's own exception (and no late 'Event loop is closed' reports; see test_cli)."""
    import shutil

    from conftest import no_late_tracebacks

    from admm_jax.train import CheckpointError

    _, out, _ = vbn_run
    bad = tmp_path / "params"
    shutil.copytree(out / "params", bad)
    data = [f for f in (bad / "batch_stats").rglob("*") if f.is_file() and f.parent.name == "d"]
    assert data
    for f in data:
        f.write_bytes(b"\x8b not an array chunk" * 8)
    with no_late_tracebacks(), pytest.raises(CheckpointError,
                                             match="virtual-batch-norm reference statistics"):
        load_projector(bad)


def test_vbn_projector_treats_images_independently(vbn_run):
    images, out, _ = vbn_run
    proj_fn, params, _ = load_projector(out / "params")
    x01 = jnp.asarray(images, jnp.float32) / 255
    alone = np.asarray(proj_fn(params, x01[:1]))[0]
    for others in (x01[1:4], x01[6:7], x01[jnp.array([5, 9])] * 0.3):
        batch = jnp.concatenate([x01[:1], others], axis=0)
        np.testing.assert_allclose(np.asarray(proj_fn(params, batch))[0], alone, atol=1e-5)
    # sanity check of the test's sensitivity: with the reference batch appended (training-mode
    # VBN) each instance also enters the statistics, so the companions do matter there
    net = _fresh_projector(params)
    ref = jnp.asarray(np.load(out / "params" / "reference_batch.npy"))
    v = 2 * x01 - 1
    a = np.asarray(net(v[:1], ref))[0]
    b = np.asarray(net(jnp.concatenate([v[:1], v[1:4]]), ref))[0]
    assert np.abs(a - b).max() > 1e-5
