"""The optimiser: element-wise gradient value clipping, then Adam."""

from __future__ import annotations

import optax

from admm_jax.train.config import TrainConfig


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """``clip(±grad_clip)`` element-wise (not by global norm, as the paper) then Adam.

    Note: the released code used TF1's Adam, whose ε is added to √v before the bias correction
    is folded into the step size; optax adds it after. With ε = 1e-6 the difference only shows
    while √v̂ is itself ~1e-6.
    """
    return optax.chain(
        optax.clip(cfg.grad_clip),
        optax.adam(cfg.learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
    )
