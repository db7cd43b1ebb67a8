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

Virtual batch norm (``OneNetConfig(norm="virtual_batch")``, the original OneNet, spec §1.3/§1.5):
a fixed reference batch of ``n_reference`` training images is drawn once
(:func:`draw_reference_batch`, key derived from the config seed) and saved as
``reference_batch.npy`` in the run folder (a resumed run reloads it). Every projector call of
both losses appends it (``P(x)``/``E(x)`` and ``P(v)``/``E(v)`` are computed with
``ProjectionNetwork.project(·, reference)``), so the projector's normalisation statistics are
the weighted [instances; reference] statistics of :class:`~admm_jax.priors.layers.VirtualBatchNorm`.
At the end, :meth:`~admm_jax.priors.networks.ProjectionNetwork.store_reference_statistics`
stores the reference batch's own statistics (the original ``update_popmean.py``) and
``params/`` receives them (``batch_stats/``) together with ``reference_batch.npy``, so
:func:`load_projector` returns a test-time projector that needs no reference batch and treats
every image independently. The discriminators keep instance norm in both modes (they are
training-only and need no reference batch); the original ran them with VBN as well.
"""

from __future__ import annotations

import dataclasses
import json
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
    batch 10 with instance norm (the srph25 baseline), 50,000 iterations.

    ``norm``: ``"instance"`` (default, srph25 baseline) or ``"virtual_batch"`` (original
    OneNet). With virtual batch norm the projector is normalised with the help of a **reference
    batch**: ``n_reference`` training images (default 25, the original's ``ref_batch_25``) drawn
    once, without replacement, with ``jax.random`` keys derived from ``seed``
    (:func:`draw_reference_batch`); with ``reference_perturbed`` (default True, as in the
    original, which kept the perturbed member of each reference pair) they are perturbed with
    the OneNet noise family. It is held fixed for the whole run, appended to every projector
    call in training (each of the ``batch_size`` instances gets weight 1/(n_reference+1), each
    reference image n_reference/(n_reference+1) in the statistics), saved with the run and the
    final weights, and its own statistics are stored in the final weights for test time (no
    reference needed then). ``n_reference`` and ``reference_perturbed`` are ignored with
    instance norm.
    """

    width: float = 1.0
    norm: str = "instance"  # or "virtual_batch" (original OneNet)
    n_reference: int = 25  # VBN reference batch size (original: 25)
    reference_perturbed: bool = True  # VBN reference = perturbed images (original)
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

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field, its value and what is
        allowed. Called before anything is written to disk."""
        from admm_jax import _checks

        for name, low in (("n_reference", 1), ("steps", 1), ("batch_size", 1), ("seed", 0),
                          ("checkpoint_every", 1), ("keep_checkpoints", 1), ("log_every", 1),
                          ("val_images", 0)):
            _checks.check_int(name, getattr(self, name), minimum=low)
        for name in ("width", "learning_rate", "clamp"):
            _checks.check_positive(name, getattr(self, name))
        if self.norm not in ("instance", "virtual_batch"):
            raise ValueError(f"norm must be 'instance' or 'virtual_batch', got {self.norm!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got "
                             f"{self.compute_dtype!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "OneNetConfig":
        """Rebuild a saved config; unknown keys are refused (with the valid ones listed), as
        ``TrainConfig.from_dict`` does, so a config from another version is never half-read."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown OneNetConfig keys: {unknown}; valid keys: {known}")
        return cls(**d)


#: Stream of the reference-batch key: ``fold_in(PRNGKey(seed), 1085)`` (1085 is the original's
#: reference seed).
_REFERENCE_STREAM = 1085
REFERENCE_FILE = "reference_batch.npy"


def draw_reference_batch(cfg: OneNetConfig, train_images: np.ndarray) -> np.ndarray:
    """The fixed VBN reference batch of ``cfg``: float32 ``(n_reference, H, W, C)`` in the
    [−1, 1] network domain.

    ``n_reference`` distinct images of ``train_images`` (uint8 0–255 or float [0, 1]) chosen
    with ``jax.random.choice(k_idx, N, replace=False)`` and, if ``cfg.reference_perturbed``,
    perturbed with :func:`onenet_noise` (key ``k_noise``), where ``k_idx, k_noise =
    split(fold_in(PRNGKey(cfg.seed), 1085))``. Deterministic given the config and the images.
    """
    from admm_jax.train.runtime import to_float

    n, n_ref = len(train_images), int(cfg.n_reference)
    if not 0 < n_ref <= n:
        raise ValueError(f"n_reference must lie in [1, {n}] (the number of training images), "
                         f"got {n_ref}")
    k_idx, k_noise = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed),
                                                         _REFERENCE_STREAM))
    idx = np.asarray(jax.random.choice(k_idx, n, (n_ref,), replace=False))
    ref01 = jnp.asarray(to_float(np.asarray(train_images[np.sort(idx)])))
    if cfg.reference_perturbed:
        ref01, _ = onenet_noise(k_noise, ref01)
    return np.asarray(2.0 * ref01 - 1.0, np.float32)


def load_reference_batch(path: str | Path) -> np.ndarray | None:
    """The VBN reference batch saved in a run folder or its ``params/`` folder ([−1, 1]
    domain), or None if there is none (instance norm)."""
    f = Path(path) / REFERENCE_FILE
    return np.load(f) if f.exists() else None


class OneNetState(NamedTuple):
    step: jax.Array
    params: tuple  # (projector, image D, latent D) nnx.Param states
    opt_state: tuple  # (projector, discriminators)


def build_models(cfg: OneNetConfig):
    """Projector and both discriminators, split into (graphdef, params, rest) triples."""
    from flax import nnx

    from admm_jax.priors import onenet_discriminators

    rngs = nnx.Rngs(cfg.seed)
    proj = _projector(cfg, rngs)
    d_img, d_lat = onenet_discriminators(width=cfg.width, rngs=rngs)
    return [nnx.split(m, nnx.Param, ...) for m in (proj, d_img, d_lat)], proj


def _projector(cfg: OneNetConfig, rngs):
    from admm_jax.priors import onenet_projector

    dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
    return onenet_projector(width=cfg.width, rngs=rngs, norm=cfg.norm, compute_dtype=dtype)


def _caller(split, method: str | None = None):
    from flax import nnx

    graphdef, _, rest = split

    def call(params, x, *args):
        m = nnx.merge(graphdef, params, rest)
        return (getattr(m, method) if method else m)(x, *args)

    return call


def make_pretrain_step(cfg: OneNetConfig, splits, weights: OneNetLossWeights = OneNetLossWeights()):
    """Compile ``step(state, images01, base_key[, reference]) -> (state, metrics)``.

    ``reference`` (required iff ``cfg.norm == "virtual_batch"``): the fixed VBN reference batch
    in the [−1, 1] domain (:func:`draw_reference_batch`); every projector call of both losses
    appends it (``ProjectionNetwork.project(x, reference)``) and drops it from the outputs.
    """
    project = _caller(splits[0], "project")
    d_img, d_lat = _caller(splits[1]), _caller(splits[2])
    tx_g, tx_d = onenet_optimizers(cfg.learning_rate)
    vbn = cfg.norm == "virtual_batch"

    # Each network is called once on stacked batches: the discriminators (and the projector
    # with instance norm) normalise each image on its own, so every row gets the value that
    # separate calls give, and the compiled step holds one copy of each network instead of
    # one per call (XLA compile of the quick preset's step 53-55 s -> 34 s on a slow 2-core
    # CPU; BENCHMARKS.md, "Loading a prior and compiling the OneNet step").
    def logits(f, p, *xs):
        """Logits of ``f`` for each batch in ``xs``, from one call on their concatenation."""
        out = f(p, jnp.concatenate(xs, axis=0)).reshape(-1)
        return jnp.split(out, len(xs)) if len(xs) > 1 else out

    def project_both(pp, x, v, reference=None):
        """``(P(x), P(v), E(x), E(v))``; one pass with instance norm, two with VBN (a pass
        shares its statistics across its instances and the reference batch)."""
        if reference is None:
            p_xv, e_xv = project(pp, jnp.concatenate([x, v], axis=0))
            (px, pv), (lx, lv) = jnp.split(p_xv, 2), jnp.split(e_xv, 2)
        else:
            (px, lx), (pv, lv) = project(pp, x, reference), project(pp, v, reference)
        return px, pv, lx, lv

    def g_loss(pp, pd, pl, x, v, reference=None):
        px, pv, _, lv = project_both(pp, x, v, reference)
        from admm_jax.baselines.onenet_losses import onenet_projector_loss

        d_px, d_pv = logits(d_img, pd, px, pv)
        loss, terms = onenet_projector_loss(
            x=x, v=v, proj_x=px, proj_v=pv, d_proj_x=d_px, d_proj_v=d_pv,
            dl_latent_v=logits(d_lat, pl, lv), weights=weights, return_terms=True)
        return loss, terms

    def d_loss(pd_pl, pp, x, v, reference=None):
        pd, pl = pd_pl
        px, pv, lx, lv = jax.lax.stop_gradient(project_both(pp, x, v, reference))
        d_x, d_px, d_pv = logits(d_img, pd, x, px, pv)
        dl_x, dl_v = logits(d_lat, pl, lx, lv)
        return onenet_discriminator_loss(
            d_x=d_x, d_proj_x=d_px, d_proj_v=d_pv, dl_latent_x=dl_x, dl_latent_v=dl_v,
            weights=weights)

    def step(state: OneNetState, images01, base_key, reference=None):
        if vbn != (reference is not None):
            raise ValueError("the step needs a reference batch iff cfg.norm == 'virtual_batch' "
                             f"(norm={cfg.norm!r}, reference given: {reference is not None})")
        if reference is not None:
            reference = jnp.asarray(reference, jnp.float32)
        key = jax.random.fold_in(base_key, state.step)
        noisy01, _ = onenet_noise(key, images01)
        x, v = 2.0 * images01 - 1.0, 2.0 * noisy01 - 1.0  # [-1, 1] network domain
        pp, pd, pl = state.params
        og, od = state.opt_state
        (gl, terms), gg = jax.value_and_grad(g_loss, has_aux=True)(pp, pd, pl, x, v, reference)
        upd, og = tx_g.update(gg, og, pp)
        pp = optax.apply_updates(pp, upd)
        dl, gd = jax.value_and_grad(d_loss)((pd, pl), pp, x, v, reference)
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


#: what a OneNet checkpoint's arrays depend on: a resume must keep them
_RESUME_KEYS = ("width", "norm", "n_reference", "compute_dtype", "batch_size")


def pretrain_onenet(cfg: OneNetConfig, train_images: np.ndarray, out_dir: str | Path, *,
                    resume: bool = False, overwrite: bool = False, progress: bool = True,
                    stop_after: int | None = None, time_budget_s: float | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Pretrain the projector; outputs as :func:`admm_jax.train.train` (params/ at the end).

    ``time_budget_s``: finish (final parameters written) after the first step that ends when
    the run has trained this many wall-clock seconds (a resumed run's earlier calls counted),
    as in :func:`admm_jax.train.train`.

    With ``cfg.norm == "virtual_batch"`` the run folder also holds ``reference_batch.npy`` (the
    fixed reference batch, drawn on a fresh run and reloaded on resume) and ``params/`` the
    stored reference statistics; see the module docstring.
    """
    from admm_jax import _checks
    from admm_jax.data import BatchIterator, prefetch
    from admm_jax.train.checkpoint import Checkpointer
    from admm_jax.train.loop import check_output_dir, check_resume_settings, prepare_output_dir
    from admm_jax.train.runtime import Batches, Schedule, append_jsonl, run_steps, to_float

    # every check before the output folder is created: a refused run leaves nothing behind
    cfg.validate()
    _checks.check_image_array("train_images", train_images)
    if resume:  # a folder of admm-jax's (check_output_dir), then its settings
        check_resume_settings(check_output_dir(out_dir, resume=True),
                              json.loads(cfg.to_json()), cfg.steps, _RESUME_KEYS)
    out = prepare_output_dir(out_dir, resume=resume, overwrite=overwrite)
    splits, _ = build_models(cfg)
    step_fn, init = make_pretrain_step(cfg, splits)
    state = init(tuple(s[1] for s in splits))
    n_val = min(cfg.val_images, max(1, len(train_images) // 10))
    val = to_float(np.asarray(train_images[:n_val]))  # denoising sanity check only
    reference = _reference_batch(cfg, train_images, out, resume)  # VBN only, [-1, 1] domain
    step_args = () if reference is None else (jnp.asarray(reference),)
    data = BatchIterator(train_images, cfg.batch_size, seed=cfg.seed)
    base_key = jax.random.PRNGKey(cfg.seed + 7)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    start, spent_s = 0, 0.0
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        data = BatchIterator.from_state(train_images, meta["data"])
        start, spent_s = int(meta["step"]), float(meta.get("train_seconds", 0.0))
        log(f"resumed OneNet pretraining from step {start}")
    (out / "config.json").write_text(cfg.to_json())  # after a resume point was found
    batches = Batches(prefetch(data, size=2), lambda b: jnp.asarray(to_float(b)))
    run = run_steps(
        out=out, state=state, batches=batches,
        step_fn=lambda st, images: step_fn(st, images, base_key, *step_args),
        checkpointer=ckpt, start=start,
        schedule=Schedule(total_steps=cfg.steps, log_every=cfg.log_every,
                          checkpoint_every=cfg.checkpoint_every, seed=cfg.seed),
        record=lambda step, m, rate: {**{k: float(v) for k, v in m.items()},
                                      "steps_per_s": rate},
        loss_key="g_loss",
        postfix=lambda rec: {"g": f"{rec['g_loss']:.4f}", "d": f"{rec['d_loss']:.4f}"},
        stop_after=stop_after, time_budget_s=time_budget_s, spent_s=spent_s,
        desc="pretrain OneNet",
        progress=progress, log=log)
    state, end, out_of_time = run.state, run.end, run.out_of_time
    summary = {"out_dir": str(out), "step": end}
    if end == cfg.steps or out_of_time:
        split, batch_stats = splits[0], None
        if reference is not None:  # store the reference statistics for test time
            split, batch_stats = _store_reference_statistics(split, state.params[0], reference)
        proj_fn = _caller(split)  # with VBN: the test-time projector (stored statistics)
        noisy, _ = onenet_noise(jax.random.PRNGKey(99), jnp.asarray(val))
        den = (proj_fn(state.params[0], 2 * noisy - 1) + 1) / 2
        summary["val_noisy_psnr"] = float(jnp.mean(psnr(noisy, val)))
        summary["val_denoised_psnr"] = float(jnp.mean(psnr(den, val)))
        append_jsonl(out / "validation.jsonl", {"step": end, **summary})
        _save_projector(out / "params", state.params[0], cfg, batch_stats=batch_stats,
                        reference=reference)
    log(f"OneNet outputs written to {out}")
    return summary


def _reference_batch(cfg: OneNetConfig, train_images: np.ndarray, out: Path,
                     resume: bool) -> np.ndarray | None:
    """VBN: the run's fixed reference batch (drawn and saved on a fresh run, reloaded on
    resume); None for instance norm."""
    if cfg.norm != "virtual_batch":
        return None
    ref_file = out / REFERENCE_FILE
    if resume and ref_file.exists():
        reference = np.load(ref_file)
        if reference.shape != (cfg.n_reference,) + tuple(np.shape(train_images)[1:]):
            raise ValueError(f"{ref_file} holds a reference batch of shape {reference.shape}, "
                             f"which does not match the config")
        return reference
    reference = draw_reference_batch(cfg, train_images)
    np.save(ref_file, reference)
    return reference


def _store_reference_statistics(split, params, reference):
    """VBN: the projector with ``params`` after ``store_reference_statistics(reference)``, as
    ``((graphdef, params, rest), batch_stats)``."""
    from flax import nnx

    graphdef, _, rest = split
    net = nnx.merge(graphdef, params, rest)
    net.store_reference_statistics(jnp.asarray(reference, jnp.float32))
    split = nnx.split(net, nnx.Param, ...)
    return split, nnx.state(net, nnx.BatchStat)


_BATCH_STATS_DIR = "batch_stats"


def _save_projector(path: Path, params: Any, cfg: OneNetConfig, *, batch_stats: Any = None,
                    reference: np.ndarray | None = None) -> None:
    """``params/``: weights + config (:func:`save_weights`); with VBN also the stored reference
    statistics (orbax, ``batch_stats/``) and the reference batch (``reference_batch.npy``)."""
    from admm_jax.train.checkpoint import save_weights

    def write_vbn_files(folder: Path) -> None:
        if batch_stats is not None:
            import orbax.checkpoint as ocp

            with ocp.StandardCheckpointer() as ckptr:
                ckptr.save(folder / _BATCH_STATS_DIR, batch_stats)
        if reference is not None:
            np.save(folder / REFERENCE_FILE, np.asarray(reference, np.float32))

    save_weights(path, params, cfg.to_json(), extra=write_vbn_files)


def load_projector(path: str | Path):
    """(projector_fn(params, x01) -> x01, params, cfg) from a ``params/`` folder (or the
    pretraining run's folder that holds it).

    With virtual batch norm the stored reference statistics are loaded into the projector, so
    ``projector_fn`` needs no reference batch and every image is processed independently (the
    reference batch itself: :func:`load_reference_batch`).
    """
    from flax import nnx

    from admm_jax.priors import make_prior_fn
    from admm_jax.train.checkpoint import (CheckpointError, read_weights_config,
                                           restore_pytree, restore_weights)

    path = Path(path)
    if not (path / "state").exists() and (path / "params" / "state").exists():
        path = path / "params"  # a pretraining run's folder: its final weights
    saved = read_weights_config(path, "OneNet projector")
    if "num_iters" in saved and "clamp" not in saved:
        raise CheckpointError(f"{path.absolute()} holds a DU-ADMM prior, not a OneNet "
                              f"projector; give it as --du-admm (evaluate) or to load_prior")
    cfg = OneNetConfig.from_dict(saved)
    # shapes only (nnx.eval_shape): the weights come from the folder, so neither the random
    # initializers nor the discriminators need to run
    proj = nnx.eval_shape(lambda: _projector(cfg, nnx.Rngs(cfg.seed)))
    if cfg.norm == "virtual_batch":
        stats_dir = Path(path).absolute() / _BATCH_STATS_DIR
        if not stats_dir.exists():
            raise CheckpointError(f"{path} holds a virtual-batch-norm projector without stored "
                                  f"reference statistics ({_BATCH_STATS_DIR}/ is missing)")
        nnx.update(proj, restore_pytree(stats_dir, nnx.state(proj, nnx.BatchStat),
                                        "virtual-batch-norm reference statistics"))
    proj_fn, template = make_prior_fn(proj)
    return proj_fn, restore_weights(path, template, "OneNet projector"), cfg
