"""OneNet pretraining loop: runs, clamps the discriminators, saves a loadable projector."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

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
