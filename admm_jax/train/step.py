"""The compiled DU-ADMM training step, data-parallel over a device mesh.

One step: draw a problem, an operator and ρ for every sample (or one per mini-batch in the
released preset), measure, run T unrolled ADMM iterations whose prior step is the network (the
prior runs once per iteration on the whole batch; each sample's data step uses its own
operator), take the MSE between z_T and the ground truth in the network's [−1, 1] domain, and
apply clipped Adam. With ``objective="denoise"`` the step trains the prior alone as a blind
Gaussian denoiser (:func:`denoise_loss`; the plug-and-play baseline), with the same optimiser.

Data parallelism is ``jax.jit`` over a 1-D device ``Mesh`` named ``"data"``: the image batch is
sharded on axis 0, parameters and optimiser state are replicated, and XLA inserts the gradient
all-reduce. The same code runs on one device, on several local devices, and across hosts after
``jax.distributed.initialize()``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from admm_jax.admm import unrolled_admm
from admm_jax.families import FAMILY_MIXES, sample_family_batch
from admm_jax.presets import training_rho
from admm_jax.problems import Problem, measure_mixed
from admm_jax.rho_rules import rho_for_batch
from admm_jax.train.config import DENOISE_SIGMA_MAX, TrainConfig

Array = jax.Array
PriorFn = Callable[[Any, Array], Array]


class TrainState(NamedTuple):
    step: Array  # int32 scalar
    params: Any
    opt_state: Any


#: ρ of every sample of a family-mix batch when the ρ rule is fixed (not learned)
FAMILY_MIX_RHO = 0.3


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices, all hosts) with axis ``"data"``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"batch size {batch_size} does not divide evenly across {n} devices; use a multiple "
            f"of {n} (e.g. {n * max(1, round(batch_size / n))}) or fewer devices.")


def du_admm_loss(prior_fn: PriorFn, params: Any, images: Array, key: Array,
                 problems: tuple[Problem, ...], cfg: TrainConfig
                 ) -> tuple[Array, dict[str, Array]]:
    """Mean over the batch of MSE(z_T, x*) in the [−1, 1] domain (= 4 × the [0, 1] MSE).

    With ``cfg.loss == "psnr"`` the loss is instead the mean over the batch of
    ``10·log10(MSE_i)`` in the [0, 1] domain, i.e. −(mean PSNR) in dB (not in the paper).

    Returns (loss, aux) with aux["per_sample"] (B,), always the [−1, 1] MSE, and
    aux["problem"] (B,) int.

    With ``cfg.loss_every = n > 0`` the loss is the mean of that loss over the iterates
    z_n, z_2n, …, z_T (aux["per_sample"] stays z_T's).

    With ``cfg.objective == "denoise"`` this is :func:`denoise_loss` instead (no ADMM).
    """
    if cfg.objective == "denoise":
        return denoise_loss(prior_fn, params, images, key, cfg)
    op, y, rho, index = _measure_batch(params, images, key, problems, cfg)
    prox = lambda v, _rho: prior_fn(params, v)
    every = cfg.loss_every or cfg.num_iters
    # the iterates the loss looks at, (K, B, H, W, C): z_T alone (no trajectory kept), or
    # z_n, z_2n, ..., z_T
    out = unrolled_admm(prox, op, y, rho, cfg.num_iters, unroll=cfg.unroll, remat=cfg.remat,
                        return_trajectory=every < cfg.num_iters, validate=False)
    zs = out[1].z[every - 1::every] if every < cfg.num_iters else out[None]
    per_block = 4.0 * jnp.mean(jnp.square(zs - images[None]), axis=(2, 3, 4))
    loss = jnp.mean(jax.vmap(lambda ps: _reduce_loss(ps, cfg))(per_block))
    return loss, {"per_sample": per_block[-1], "problem": index}


def _reduce_loss(per_sample: Array, cfg: TrainConfig) -> Array:
    """Batch loss from the per-sample [−1, 1] MSE: its mean ("mse") or the mean of
    10·log10 of the [0, 1] MSE ("psnr", = −mean PSNR)."""
    if cfg.loss == "psnr":
        # tiny floor only guards log(0) for a perfect reconstruction
        return jnp.mean(10.0 * jnp.log10(per_sample / 4.0 + 1e-12))
    return jnp.mean(per_sample)


def denoise_noise(key: Array, images: Array) -> tuple[Array, Array]:
    """The denoise objective's draw: (σ (B,) ~ U[0, DENOISE_SIGMA_MAX], noisy = x + σ ξ).

    ``σ`` from ``split(key)[0]``, ``ξ`` standard normal from ``split(key)[1]``; not clipped."""
    k_sigma, k_noise = jax.random.split(key)
    sigma = jax.random.uniform(k_sigma, (images.shape[0],), images.dtype, 0.0,
                               DENOISE_SIGMA_MAX)
    noise = jax.random.normal(k_noise, images.shape, images.dtype)
    return sigma, images + sigma.reshape((-1,) + (1,) * (images.ndim - 1)) * noise


def denoise_loss(prior_fn: PriorFn, params: Any, images: Array, key: Array, cfg: TrainConfig
                 ) -> tuple[Array, dict[str, Array]]:
    """The plain blind-denoiser loss (``objective="denoise"``, not in the paper): per sample
    σ ~ U[0, 0.2], ``out = prior_fn(params, x + σ ξ)``, loss of ``out`` against ``x`` as in
    :func:`du_admm_loss` (``cfg.loss``). aux["problem"] is 0 (the one category "denoise")."""
    _, noisy = denoise_noise(key, images)
    out = prior_fn(params, noisy)
    per_sample = 4.0 * jnp.mean(jnp.square(out - images), axis=(1, 2, 3))
    return _reduce_loss(per_sample, cfg), {
        "per_sample": per_sample, "problem": jnp.zeros((images.shape[0],), jnp.int32)}


def _measure_batch(params: Any, images: Array, key: Array, problems: tuple[Problem, ...],
                   cfg: TrainConfig) -> tuple[Any, Any, Array, Array]:
    """(operators, y, ρ, category of each sample) for the configured operator mix / ρ rule."""
    if cfg.operator_mix in FAMILY_MIXES:
        batch = sample_family_batch(FAMILY_MIXES[cfg.operator_mix], key, images)
        op, y, sigma, index = batch.op, batch.y, batch.sigma, batch.family
        rho = jnp.full((images.shape[0],), FAMILY_MIX_RHO, images.dtype)
    else:
        op, y, index = measure_mixed(problems, key, images, probs=cfg.problem_probs,
                                     per_sample=cfg.per_sample_problems)
        rho = jnp.asarray([training_rho(p) for p in problems], images.dtype)[index]
        sigma = jnp.asarray([p.noise_std for p in problems], images.dtype)[index]
    if cfg.rho_rule == "learned":
        rho = rho_for_batch(params["rho"], sigma, images.shape[0], cfg.num_iters)
    return op, y, rho, index


def loss_categories(problems: tuple[Problem, ...], cfg: TrainConfig) -> tuple[str, ...]:
    """Names of the per-category losses a step reports (problems, operator families, or the
    one category "denoise")."""
    if cfg.objective == "denoise":
        return ("denoise",)
    if cfg.operator_mix in FAMILY_MIXES:
        return FAMILY_MIXES[cfg.operator_mix].families
    return tuple(p.name for p in problems)


def make_train_step(prior_fn: PriorFn, tx: optax.GradientTransformation,
                    problems: tuple[Problem, ...], cfg: TrainConfig,
                    mesh: Mesh | None = None) -> Callable[[TrainState, Array, Array],
                                                          tuple[TrainState, dict]]:
    """Compile ``step(state, images, base_key) -> (state, metrics)``.

    ``images``: (B, H, W, C) float32 in [0, 1], B divisible by the number of devices in
    ``mesh``. The per-step key is ``fold_in(base_key, state.step)``, so a resumed run draws the
    same operators as an uninterrupted one.
    """
    mesh = make_mesh() if mesh is None else mesh
    check_batch_divides(cfg.batch_size, mesh)
    replicated = NamedSharding(mesh, P())
    batch_sharded = NamedSharding(mesh, P("data"))

    def step(state: TrainState, images: Array, base_key: Array):
        key = jax.random.fold_in(base_key, state.step)
        images = jax.lax.with_sharding_constraint(images, batch_sharded)
        (loss, aux), grads = jax.value_and_grad(
            lambda p: du_admm_loss(prior_fn, p, images, key, problems, cfg), has_aux=True
        )(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        n_prob = len(loss_categories(problems, cfg))
        onehot = jax.nn.one_hot(aux["problem"], n_prob)
        per_problem = (onehot * aux["per_sample"][:, None]).sum(0) / jnp.maximum(onehot.sum(0), 1)
        metrics = {"loss": loss, "loss_per_problem": per_problem,
                   "count_per_problem": onehot.sum(0),
                   "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))}
        return TrainState(state.step + 1, params, opt_state), metrics

    return jax.jit(step, in_shardings=(replicated, batch_sharded, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def init_train_state(params: Any, tx: optax.GradientTransformation,
                     mesh: Mesh | None = None) -> TrainState:
    """Fresh state (step 0), replicated over ``mesh``."""
    mesh = make_mesh() if mesh is None else mesh
    state = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))
    return jax.device_put(state, NamedSharding(mesh, P()))


def shard_batch(images: np.ndarray | Array, mesh: Mesh) -> Array:
    """Place the GLOBAL batch (B, H, W, C) on the mesh, split on axis 0 (checks divisibility).

    With several processes (after ``jax.distributed.initialize()``) every process draws the same
    global batch (same seed) and contributes only its own contiguous slice, in process order;
    ``tests/test_train.py`` runs this path with two CPU processes (``jax.distributed`` over
    gloo) and checks the parameters against one process; it has not yet run on real multi-host
    GPU hardware.
    """
    check_batch_divides(images.shape[0], mesh)
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() > 1:
        n_proc, rank = jax.process_count(), jax.process_index()
        local = images.shape[0] // n_proc
        piece = np.asarray(images[rank * local:(rank + 1) * local], np.float32)
        return jax.make_array_from_process_local_data(sharding, piece, tuple(images.shape))
    return jax.device_put(jnp.asarray(images, jnp.float32), sharding)
