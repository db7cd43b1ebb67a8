"""Adversarial pretraining of the original OneNet projector (the baseline), spec §1.5–§1.6.

Each iteration, on one mini-batch of clean images ``x`` and their perturbed copies ``v`` (the
OneNet noise family, both mapped to [−1, 1]):

1. one projector step on the projector loss (denoising MSE + "stay close" terms + image and
   latent adversarial terms, weights of ``OneNetLossWeights``);
2. one discriminator step (image D on x / P(x) / P(v), latent D on E(x) / E(v), one-sided label
   smoothing 0.85), using the *updated* projector, then the discriminator weights are clamped.

Both optimisers clip gradient values element-wise to ±10 (G: Adam 2e-4, β=(0.9, 0.999), ε 1e-6;
D: Adam 2e-4, β=(0.5, 0.999)). Checkpointing, resume and logs work as for DU-ADMM training.
Once trained, the projector is used as the prox of ADMM (:func:`admm_jax.evaluate.onenet_method`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from admm_jax.baselines.onenet_losses import (
    OneNetLossWeights,
    clamp_weights,
    onenet_discriminator_loss,
    onenet_optimizers,
)
from admm_jax.baselines.onenet_noise import onenet_noise
from admm_jax.metrics import psnr


@dataclass(frozen=True)
class OneNetConfig:
    """A OneNet pretraining run (saved as ``config.json``). Defaults: the released scripts,
    batch 10 with instance norm (the srph25 baseline), 50,000 iterations."""

    width: float = 1.0
    norm: str = "instance"  # or "virtual_batch" (original OneNet)
    steps: int = 50_000
    batch_size: int = 10
    learning_rate: float = 2e-4
    clamp: float = 10.0
    seed: int = 0
    compute_dtype: str = "float32"
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    log_every: int = 10
    val_images: int = 32

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "OneNetConfig":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in
                                                          dataclasses.fields(cls)}})


class OneNetState(NamedTuple):
    step: jax.Array
    params: tuple  # (projector, image D, latent D) nnx.Param states
    opt_state: tuple  # (projector, discriminators)


def build_models(cfg: OneNetConfig):
    """Projector and both discriminators, split into (graphdef, params, rest) triples."""
    from flax import nnx

    from admm_jax.priors import onenet_discriminators, onenet_projector

    rngs = nnx.Rngs(cfg.seed)
    dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
    proj = onenet_projector(width=cfg.width, rngs=rngs, norm=cfg.norm, compute_dtype=dtype)
    d_img, d_lat = onenet_discriminators(width=cfg.width, rngs=rngs)
    return [nnx.split(m, nnx.Param, ...) for m in (proj, d_img, d_lat)], proj


def _caller(split, method: str | None = None):
    from flax import nnx

    graphdef, _, rest = split

    def call(params, x):
        m = nnx.merge(graphdef, params, rest)
        return (getattr(m, method) if method else m)(x)

    return call


def make_pretrain_step(cfg: OneNetConfig, splits, weights: OneNetLossWeights = OneNetLossWeights()):
    """Compile ``step(state, images01, base_key) -> (state, metrics)``."""
    proj, encode = _caller(splits[0]), _caller(splits[0], "encode")
    d_img, d_lat = _caller(splits[1]), _caller(splits[2])
    tx_g, tx_d = onenet_optimizers(cfg.learning_rate)

    def logits(f, p, x):
        return f(p, x).reshape(x.shape[0], -1)[:, 0]

    def g_loss(pp, pd, pl, x, v):
        px, pv = proj(pp, x), proj(pp, v)
        from admm_jax.baselines.onenet_losses import onenet_projector_loss

        loss, terms = onenet_projector_loss(
            x=x, v=v, proj_x=px, proj_v=pv, d_proj_x=logits(d_img, pd, px),
            d_proj_v=logits(d_img, pd, pv), dl_latent_v=logits(d_lat, pl, encode(pp, v)),
            weights=weights, return_terms=True)
        return loss, terms

    def d_loss(pd_pl, pp, x, v):
        pd, pl = pd_pl
        px = jax.lax.stop_gradient(proj(pp, x))
        pv = jax.lax.stop_gradient(proj(pp, v))
        lx = jax.lax.stop_gradient(encode(pp, x))
        lv = jax.lax.stop_gradient(encode(pp, v))
        return onenet_discriminator_loss(
            d_x=logits(d_img, pd, x), d_proj_x=logits(d_img, pd, px),
            d_proj_v=logits(d_img, pd, pv), dl_latent_x=logits(d_lat, pl, lx),
            dl_latent_v=logits(d_lat, pl, lv), weights=weights)

    def step(state: OneNetState, images01, base_key):
        key = jax.random.fold_in(base_key, state.step)
        noisy01, _ = onenet_noise(key, images01)
        x, v = 2.0 * images01 - 1.0, 2.0 * noisy01 - 1.0  # [-1, 1] network domain
        pp, pd, pl = state.params
        og, od = state.opt_state
        (gl, terms), gg = jax.value_and_grad(g_loss, has_aux=True)(pp, pd, pl, x, v)
        upd, og = tx_g.update(gg, og, pp)
        pp = optax.apply_updates(pp, upd)
        dl, gd = jax.value_and_grad(d_loss)((pd, pl), pp, x, v)
        upd, od = tx_d.update(gd, od, (pd, pl))
        pd, pl = optax.apply_updates((pd, pl), upd)
        pd = clamp_weights(pd, -cfg.clamp, cfg.clamp)
        pl = clamp_weights(pl, -cfg.clamp, cfg.clamp)
        metrics = {"g_loss": gl, "d_loss": dl, **{f"g_{k}": t for k, t in terms.items()}}
        return OneNetState(state.step + 1, (pp, pd, pl), (og, od)), metrics

    def init(params):
        return OneNetState(jnp.asarray(0, jnp.int32), params,
                           (tx_g.init(params[0]), tx_d.init((params[1], params[2]))))

    return jax.jit(step, donate_argnums=(0,)), init


def pretrain_onenet(cfg: OneNetConfig, train_images: np.ndarray, out_dir: str | Path, *,
                    resume: bool = False, overwrite: bool = False, progress: bool = True,
                    stop_after: int | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Pretrain the projector; outputs as :func:`admm_jax.train.train` (params/ at the end)."""
    from tqdm.auto import tqdm

    from admm_jax.data import BatchIterator, prefetch
    from admm_jax.train.checkpoint import Checkpointer
    from admm_jax.train.loop import _append_csv, _append_jsonl, _to_float, prepare_output_dir

    out = prepare_output_dir(out_dir, resume=resume, overwrite=overwrite)
    (out / "config.json").write_text(cfg.to_json())
    splits, _ = build_models(cfg)
    step_fn, init = make_pretrain_step(cfg, splits)
    state = init(tuple(s[1] for s in splits))
    n_val = min(cfg.val_images, max(1, len(train_images) // 10))
    val = _to_float(np.asarray(train_images[:n_val]))  # denoising sanity check only
    data = BatchIterator(train_images, cfg.batch_size, seed=cfg.seed)
    base_key = jax.random.PRNGKey(cfg.seed + 7)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    start = 0
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        data = BatchIterator.from_state(train_images, meta["data"])
        start = int(meta["step"])
        log(f"resumed OneNet pretraining from step {start}")

    data = prefetch(data, size=2)

    def data_state():
        return data.state() if callable(data.state) else data.state

    def save(step):
        ckpt.save(step, state, {"step": step, "data": data_state(), "seed": cfg.seed})

    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc="pretrain OneNet",
               unit="step", dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), start
    metrics = None
    try:
        for step in range(start, end):
            images = jnp.asarray(_to_float(next(data)))
            state, metrics = step_fn(state, images, base_key)
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                rec = {"step": done, **{k: float(v) for k, v in metrics.items()}}
                if not math.isfinite(rec["g_loss"]):
                    save(done)
                    raise FloatingPointError(f"OneNet loss became {rec['g_loss']} at {done}")
                now = time.perf_counter()
                rec["steps_per_s"] = (done - n_last) / max(now - t_last, 1e-9)
                t_last, n_last = now, done
                _append_jsonl(out / "metrics.jsonl", rec)
                _append_csv(out / "metrics.csv", rec)
                bar.set_postfix(g=f"{rec['g_loss']:.4f}", d=f"{rec['d_loss']:.4f}")
            bar.update(1)
            if done % cfg.checkpoint_every == 0 and done != end:
                save(done)
        save(end)
    except KeyboardInterrupt:
        save(int(state.step))
        log(f"\ninterrupted: checkpoint saved at step {int(state.step)}; rerun with --resume")
        raise
    finally:
        bar.close()
        ckpt.close()
        data.close()
    summary = {"out_dir": str(out), "step": end}
    if end == cfg.steps:
        proj_fn = _caller(splits[0])
        noisy, _ = onenet_noise(jax.random.PRNGKey(99), jnp.asarray(val))
        den = (proj_fn(state.params[0], 2 * noisy - 1) + 1) / 2
        summary["val_noisy_psnr"] = float(jnp.mean(psnr(noisy, val)))
        summary["val_denoised_psnr"] = float(jnp.mean(psnr(den, val)))
        _append_jsonl(out / "validation.jsonl", {"step": end, **summary})
        _save_projector(out / "params", state.params[0], cfg)
    log(f"OneNet outputs written to {out}")
    return summary


def _save_projector(path: Path, params: Any, cfg: OneNetConfig) -> None:
    from admm_jax.train.checkpoint import save_weights

    save_weights(path, params, cfg.to_json())


def load_projector(path: str | Path):
    """(projector_fn(params, x01) -> x01, params, cfg) from a ``params/`` folder."""
    from admm_jax.priors import make_prior_fn
    from admm_jax.train.checkpoint import read_weights_config, restore_weights

    cfg = OneNetConfig.from_dict(read_weights_config(path, "OneNet projector"))
    _, proj = build_models(cfg)
    proj_fn, template = make_prior_fn(proj)
    return proj_fn, restore_weights(path, template, "OneNet projector"), cfg
