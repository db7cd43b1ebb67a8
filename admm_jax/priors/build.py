"""The prior network named by an architecture string, as ``(apply_fn, params)``.

Training configs (``TrainConfig.architecture``), exported weights' metadata and the shipped
priors all name their network by architecture (``"paper"`` or ``"unet"``) plus a few options.
This is the one place that turns such a description into a network, so that a new
architecture or option is added once for training, loading and the shipped priors alike.
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
from flax import nnx

from admm_jax.priors.functional import make_prior_fn
from admm_jax.priors.networks import du_admm_prior
from admm_jax.priors.unet import unet_prior

__all__ = ["PRIOR_ARCHITECTURES", "build_prior_network", "image_size_multiple"]

#: ``"paper"``: the DU-ADMM paper's projection network (:func:`du_admm_prior`, 64×64 images
#: only: dense bottleneck); ``"unet"``: the residual U-Net (:func:`unet_prior`, any size divisible
#: by ``2^(levels−1)``).
PRIOR_ARCHITECTURES = ("paper", "unet")


def build_prior_network(architecture: str, *, width: float, seed: int = 0,
                        abstract: bool = False, compute_dtype: Any = jnp.float32,
                        levels: int = 3, blocks: int = 1, residual: bool = False,
                        gated: bool = False) -> tuple[Callable[[Any, Any], Any], Any]:
    """The prior network ``architecture`` as ``(apply_fn, params)`` (see :func:`make_prior_fn`:
    ``apply_fn(params, x01)`` maps images ``(B, H, W, C)`` in [0, 1] to [0, 1]).

    Args:
      architecture: one of :data:`PRIOR_ARCHITECTURES`.
      width: channel multiplier (> 0; 1.0 is the paper's full width).
      seed: seed of the random initialisation (``nnx.Rngs(seed)``).
      abstract: build with ``nnx.eval_shape``: ``params`` is a template of
        ``jax.ShapeDtypeStruct`` leaves and no initializer runs (nor compiles), for filling in
        saved weights.
      compute_dtype: dtype of the network's activations (parameters stay float32).
      levels, blocks: the U-Net's resolutions and residual blocks per level (``"unet"`` only).
      residual, gated: the paper network's residual / gated-residual variants (``"paper"`` only).

    Raises:
      ValueError: an unknown architecture, or an option the architecture does not have.
    """
    _check_architecture(architecture)
    if architecture == "unet" and (residual or gated):
        raise ValueError(f"residual={residual}/gated={gated}: these variants belong to the "
                         "'paper' architecture; the U-Net prior is residual already")
    if architecture == "paper" and (levels, blocks) != (3, 1):
        raise ValueError(f"levels={levels}/blocks={blocks}: these options belong to the "
                         "'unet' architecture; the 'paper' network has a fixed layer table")

    def construct() -> nnx.Module:  # Rngs made inside: nnx.eval_shape traces this function
        rngs = nnx.Rngs(seed)
        if architecture == "unet":
            return unet_prior(width=width, levels=levels, blocks=blocks, rngs=rngs,
                              compute_dtype=compute_dtype)
        return du_admm_prior(width=width, rngs=rngs, compute_dtype=compute_dtype,
                             residual=residual, gated=gated)

    return make_prior_fn(nnx.eval_shape(construct) if abstract else construct())


def image_size_multiple(architecture: str, levels: int = 3) -> int:
    """What an image side must be divisible by for the raw network ``architecture``:
    ``2^(levels−1)`` for the U-Net (its poolings), 64 for the paper's network (a dense
    bottleneck: 64×64 images only)."""
    _check_architecture(architecture)
    return 2 ** (int(levels) - 1) if architecture == "unet" else 64


def _check_architecture(architecture: str) -> None:
    if architecture not in PRIOR_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {PRIOR_ARCHITECTURES}, got "
                         f"{architecture!r}")
