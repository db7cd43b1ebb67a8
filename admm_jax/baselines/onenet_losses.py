"""OneNet adversarial training objective, optimisers and weight clamping (spec §1.5).

Notation (all images in the network's [-1, 1] domain): ``x`` clean, ``v`` perturbed, ``P`` the
projector, ``E`` its encoder (latent), ``D`` the image discriminator, ``D_l`` the latent
discriminator. ``MSE`` is the mean over batch × H × W × C; ``CE(ℓ, t)`` is the sigmoid
cross-entropy of logit ℓ with (soft) target t, averaged over all its elements (the batch).

Projector (generator) loss::

    λ_latent·CE(D_l(E(v)), 1)
  + λ_img·[λ_ratio·CE(D(P(x)), 1) + (1−λ_ratio)·CE(D(P(v)), 1)]
  + λ_l2·[λ_ratio·MSE(P(x), x) + (1−λ_ratio)·MSE(P(v), v)]
  + λ_de·MSE(P(v), x)

Discriminator loss (one-sided label smoothing: positives have target 0.85, negatives 0)::

    λ_latent·[λ_ratio·CE(D_l(E(x)), 0.85) + (1−λ_ratio)·CE(D_l(E(v)), 0)]
  + λ_img·½·[CE(D(x), 0.85) + λ_ratio·CE(D(P(x)), 0) + (1−λ_ratio)·CE(D(P(v)), 0)]

The generator uses hard targets 1 (no smoothing). The original's weight decay term has rate 0 in
every released config and is omitted. Which parameters receive gradients is the caller's business:
in the G step differentiate the projector loss w.r.t. the projector parameters (gradients flow
through the discriminators' logits); in the D step differentiate the discriminator loss w.r.t.
the discriminators' parameters (pass ``P(x)``, ``P(v)``, ``E(x)``, ``E(v)`` as constants).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "OneNetLossWeights",
    "sigmoid_cross_entropy",
    "mean_sigmoid_cross_entropy",
    "onenet_projector_loss",
    "onenet_discriminator_loss",
    "onenet_optimizers",
    "scale_by_tf1_adam",
    "Tf1AdamState",
    "is_kernel",
    "clamp_weights",
]


@dataclasses.dataclass(frozen=True)
class OneNetLossWeights:
    """Loss weights of the released OneNet configuration (``projector/run_celeb.sh``).

    Frozen and hashable, so it can be a static argument of ``jax.jit``.
    """

    lambda_ratio: float = 1e-2
    lambda_l2: float = 5e-3
    lambda_latent: float = 1e-4
    lambda_img: float = 1e-3
    lambda_de: float = 1.0
    soft_positive_label: float = 0.85  # one-sided label smoothing (discriminator positives only)


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array | float) -> jax.Array:
    """Element-wise sigmoid cross-entropy with soft targets, numerically stable
    (TF's ``sigmoid_cross_entropy_with_logits``): ``max(ℓ,0) − ℓ·t + log(1 + e^{−|ℓ|})``."""
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets, logits.dtype)
    return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def mean_sigmoid_cross_entropy(logits: jax.Array, target: jax.Array | float) -> jax.Array:
    """``CE(ℓ, t)``: the mean over all elements of :func:`sigmoid_cross_entropy`."""
    return jnp.mean(sigmoid_cross_entropy(logits, target))


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def onenet_projector_loss(
    *,
    x: jax.Array,
    v: jax.Array,
    proj_x: jax.Array,
    proj_v: jax.Array,
    d_proj_x: jax.Array,
    d_proj_v: jax.Array,
    dl_latent_v: jax.Array,
    weights: OneNetLossWeights = OneNetLossWeights(),
    return_terms: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Projector (generator) loss of OneNet (spec §1.5), see the module docstring.

    Args:
      x, v: clean and perturbed images, (B, H, W, C), [-1, 1] domain.
      proj_x, proj_v: ``P(x)``, ``P(v)``, same shape.
      d_proj_x, d_proj_v: image-discriminator logits ``D(P(x))``, ``D(P(v))``, (B,) or (B, 1).
      dl_latent_v: latent-discriminator logits ``D_l(E(v))``.
      weights: :class:`OneNetLossWeights`.
      return_terms: also return a dict of the individual (unweighted) terms, for logging.
    """
    w = weights
    adv_latent = mean_sigmoid_cross_entropy(dl_latent_v, 1.0)
    adv_img_x = mean_sigmoid_cross_entropy(d_proj_x, 1.0)
    adv_img_v = mean_sigmoid_cross_entropy(d_proj_v, 1.0)
    recon_x = _mse(proj_x, x)  # "loss_recon": P(x) ≈ x
    stay_v = _mse(proj_v, v)  # "loss_proj": P(v) stays close to its input
    denoise = _mse(proj_v, x)  # "loss_recon_z": the denoising term
    loss = (
        w.lambda_latent * adv_latent
        + w.lambda_img * (w.lambda_ratio * adv_img_x + (1.0 - w.lambda_ratio) * adv_img_v)
        + w.lambda_l2 * (w.lambda_ratio * recon_x + (1.0 - w.lambda_ratio) * stay_v)
        + w.lambda_de * denoise
    )
    if not return_terms:
        return loss
    terms = {
        "adv_latent": adv_latent, "adv_img_x": adv_img_x, "adv_img_v": adv_img_v,
        "recon_x": recon_x, "stay_v": stay_v, "denoise": denoise,
    }
    return loss, terms


def onenet_discriminator_loss(
    *,
    d_x: jax.Array,
    d_proj_x: jax.Array,
    d_proj_v: jax.Array,
    dl_latent_x: jax.Array,
    dl_latent_v: jax.Array,
    weights: OneNetLossWeights = OneNetLossWeights(),
    return_terms: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Discriminator loss of OneNet (spec §1.5), see the module docstring.

    Args:
      d_x, d_proj_x, d_proj_v: image-discriminator logits ``D(x)``, ``D(P(x))``, ``D(P(v))``.
      dl_latent_x, dl_latent_v: latent-discriminator logits ``D_l(E(x))``, ``D_l(E(v))``.
      weights: :class:`OneNetLossWeights` (``soft_positive_label`` is the positive target).
      return_terms: also return a dict of the individual (unweighted) terms, for logging.
    """
    w = weights
    pos = w.soft_positive_label
    latent_pos = mean_sigmoid_cross_entropy(dl_latent_x, pos)
    latent_neg = mean_sigmoid_cross_entropy(dl_latent_v, 0.0)
    img_pos = mean_sigmoid_cross_entropy(d_x, pos)
    img_neg_x = mean_sigmoid_cross_entropy(d_proj_x, 0.0)
    img_neg_v = mean_sigmoid_cross_entropy(d_proj_v, 0.0)
    loss_latent = w.lambda_ratio * latent_pos + (1.0 - w.lambda_ratio) * latent_neg
    loss_img = 0.5 * (img_pos + w.lambda_ratio * img_neg_x + (1.0 - w.lambda_ratio) * img_neg_v)
    loss = w.lambda_latent * loss_latent + w.lambda_img * loss_img
    if not return_terms:
        return loss
    terms = {
        "latent_pos": latent_pos, "latent_neg": latent_neg,
        "img_pos": img_pos, "img_neg_x": img_neg_x, "img_neg_v": img_neg_v,
    }
    return loss, terms


# ----------------------------------------------------------------------------- optimisers


class Tf1AdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_tf1_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam with TensorFlow-1 epsilon placement: ``m / (√v + ε) · √(1−b2^t)/(1−b1^t)``.

    ``optax.scale_by_adam`` adds ε to the *bias-corrected* ``√v̂``; TF1's ``AdamOptimizer`` adds
    it before the bias correction is folded into the step size (ε-hat of the Adam paper). The two
    agree for ε → 0 and differ noticeably only while ``√v`` is comparable to ε.
    """

    def init_fn(params):
        return Tf1AdamState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda n, g: b2 * n + (1.0 - b2) * jnp.square(g), state.nu, updates)
        t = count.astype(jnp.float32)
        step = jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        new = jax.tree.map(lambda m, n: (step * m / (jnp.sqrt(n) + eps)).astype(m.dtype), mu, nu)
        return new, Tf1AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def onenet_optimizers(
    lr: float = 2e-4,
    *,
    epoch_len: int | None = None,
    lr_decay: float = 0.95,
    clip_value: float = 10.0,
    lambda_de: float = 1.0,
    adam_variant: str = "optax",
) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """``(projector_tx, discriminator_tx)`` of the released OneNet configuration.

    * projector (G): Adam(b1 0.9, b2 0.999, eps 1e-6), learning rate ``min(lr, 0.2/λ_de)``;
    * discriminators (D): Adam(b1 0.5, b2 0.999, eps 1e-8), learning rate ``lr``;
    * both preceded by element-wise gradient value clipping to ``[−clip_value, clip_value]``
      (``optax.clip``, *not* a global-norm clip);
    * ``epoch_len`` (optional): multiply both learning rates by ``lr_decay`` after every
      ``epoch_len`` updates (staircase; the original's ×0.95 per epoch of ⌊N_train/batch⌋
      iterations). ``None``: constant learning rates.
    * ``adam_variant``: ``"optax"`` (ε added to the bias-corrected √v̂) or ``"tf1"`` (TF1's
      placement, :func:`scale_by_tf1_adam`).

    After every D update, apply :func:`clamp_weights` to the discriminator parameters.
    """
    if adam_variant not in ("optax", "tf1"):
        raise ValueError(f"adam_variant must be 'optax' or 'tf1', got {adam_variant!r}.")
    lr_g = min(float(lr), 0.2 / float(lambda_de))
    lr_d = float(lr)

    def schedule(value: float) -> optax.ScalarOrSchedule:
        if epoch_len is None:
            return value
        if epoch_len < 1:
            raise ValueError(f"epoch_len must be >= 1, got {epoch_len}.")
        return optax.exponential_decay(
            value, transition_steps=int(epoch_len), decay_rate=float(lr_decay), staircase=True
        )

    def adam(value: float, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
        if adam_variant == "optax":
            return optax.adam(schedule(value), b1=b1, b2=b2, eps=eps)
        return optax.chain(scale_by_tf1_adam(b1, b2, eps), optax.scale_by_learning_rate(schedule(value)))

    projector_tx = optax.chain(optax.clip(clip_value), adam(lr_g, 0.9, 0.999, 1e-6))
    discriminator_tx = optax.chain(optax.clip(clip_value), adam(lr_d, 0.5, 0.999, 1e-8))
    return projector_tx, discriminator_tx


# ----------------------------------------------------------------------------- weight clamping

_KERNEL_NAMES = ("kernel", "W")
_WRAPPER_NAMES = ("value", "raw_value")


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _path_names(path: tuple) -> tuple[str, ...]:
    names = tuple(_key_name(k) for k in path)
    while names and names[-1] in _WRAPPER_NAMES:  # nnx.State leaves end in ".value"
        names = names[:-1]
    return names


def is_kernel(path_names: tuple[str, ...], leaf: Any) -> bool:
    """Default clamp predicate: the leaf is a weight matrix / conv kernel (Flax ``kernel``, TF
    ``W``), not a bias or a normalisation scale / offset."""
    del leaf
    return bool(path_names) and path_names[-1] in _KERNEL_NAMES


def clamp_weights(
    params: Any,
    lo: float = -10.0,
    hi: float = 10.0,
    predicate: Callable[[tuple[str, ...], Any], bool] = is_kernel,
) -> Any:
    """Clip the leaves selected by ``predicate(path_names, leaf)`` to ``[lo, hi]``; others unchanged.

    ``path_names`` is the leaf's key path as strings (trailing ``value`` of ``nnx.State`` leaves
    dropped), e.g. ``("conv1", "kernel")``. Works on nested dicts, ``nnx.State`` and any pytree.
    The released OneNet clamps every ``W`` of both discriminators to ±10 after each D step (and,
    in the original code, the projector-encoder ``W`` too: call this on those parameters as well).
    """
    lo, hi = float(lo), float(hi)
    if lo > hi:
        raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}.")

    def f(path, leaf):
        if predicate(_path_names(path), leaf):
            return jnp.clip(leaf, lo, hi)
        return leaf

    return jax.tree_util.tree_map_with_path(f, params)
