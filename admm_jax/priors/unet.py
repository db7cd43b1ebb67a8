"""A small residual U-Net prior (Flax NNX): **not in the paper**, an alternative DU-ADMM prior.

Why it exists. The paper's prior (:class:`~admm_jax.priors.networks.ProjectionNetwork`) is a
bottleneck autoencoder with instance norm after every hidden layer. At CPU widths and CPU step
counts it stays blurry (it must learn to pass every detail through an 8×8 latent), and even the
residual variant adds a correction of nearly constant energy to every input, which pulls
super-resolution below its pinv start (RESULTS.md §4). A U-Net with additive skip connections,
no normalisation and a zero-initialised output layer starts as the identity, can leave a clean
image untouched (its correction can be exactly zero) and only has to learn *what to change*.
That is the design of DRUNet, the denoiser DeepInv users plug into plug-and-play ADMM
(residual blocks, additive skips, no normalisation), shrunk to a few hundred thousand parameters
and without its noise-level input.

Architecture (``c = round(64·width)``, ``L = levels``; all convolutions 3×3, 'SAME'):

* ``head``: conv 3 → c;
* encoder level ``k = 0 … L−1`` at resolution ``64 / 2^k`` with ``c·2^k`` channels:
  ``blocks`` residual blocks (conv, ReLU, conv, + input), then (except the last level) a
  stride-2 conv to ``c·2^(k+1)`` channels;
* decoder level ``k = L−2 … 0``: nearest-neighbour ×2 upsampling and a conv back to
  ``c·2^k`` channels (computed at the lower resolution, same values), **added** to the encoder's output at that level (skip), then ``blocks``
  residual blocks;
* ``tail``: conv c → 3, initialised to zero, so ``P(v) = v + tail(…)`` is the identity at
  initialisation.

Domain: input and output in the [−1, 1] network domain, as for the paper's prior; use it through
:func:`~admm_jax.priors.functional.make_prior_fn` like any other prior.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from admm_jax.priors.conv import flax_conv_general_dilated
from admm_jax.priors.upsample_conv import upsample_conv

__all__ = ["ResidualUNet", "unet_prior"]


def _conv(c_in: int, c_out: int, *, stride: int = 1, dtype, rngs: nnx.Rngs, zero: bool = False):
    kw = dict(kernel_init=nnx.initializers.zeros_init()) if zero else {}
    return nnx.Conv(c_in, c_out, kernel_size=(3, 3), strides=(stride, stride), padding="SAME",
                    dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                    conv_general_dilated=flax_conv_general_dilated, **kw)


class _ResBlock(nnx.Module):
    def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
        self.conv_a = _conv(channels, channels, dtype=dtype, rngs=rngs)
        self.conv_b = _conv(channels, channels, dtype=dtype, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return h + self.conv_b(jax.nn.relu(self.conv_a(h)))


class ResidualUNet(nnx.Module):
    """Residual U-Net prior ``P(v) = v + r(v)`` in the [−1, 1] domain (see module docstring).

    Parameters
    ----------
    width: channel multiplier; the first level has ``round(64·width)`` channels (≥ 1).
    levels: number of resolutions (≥ 1); the image size must be divisible by ``2^(levels−1)``.
    blocks: residual blocks per level on each side (≥ 1).
    compute_dtype: dtype of the convolutions (parameters and the output stay float32).
    image_channels: channels of the image (3 for RGB).
    rngs: ``nnx.Rngs`` for the initialisation.

    ``__call__(v)``: ``v`` is ``(B, H, W, image_channels)`` in [−1, 1]; returns the same shape,
    float32, unbounded.
    """

    def __init__(self, *, width: float = 0.25, levels: int = 3, blocks: int = 1,
                 compute_dtype=jnp.float32, image_channels: int = 3, rngs: nnx.Rngs):
        if not float(width) > 0:
            raise ValueError(f"width must be positive, got {width}")
        if int(levels) < 1 or int(blocks) < 1:
            raise ValueError(f"levels and blocks must be >= 1, got {levels} and {blocks}")
        self.width, self.levels, self.blocks = float(width), int(levels), int(blocks)
        self.image_channels = int(image_channels)
        dt = jnp.dtype(compute_dtype)
        c = max(1, int(round(64 * self.width)))
        chans = [c * 2 ** k for k in range(self.levels)]
        self.head = _conv(self.image_channels, c, dtype=dt, rngs=rngs)
        self.enc = nnx.List([nnx.List([_ResBlock(ch, dtype=dt, rngs=rngs)
                                       for _ in range(self.blocks)]) for ch in chans])
        self.down = nnx.List([_conv(chans[k], chans[k + 1], stride=2, dtype=dt, rngs=rngs)
                              for k in range(self.levels - 1)])
        self.up = nnx.List([_conv(chans[k + 1], chans[k], dtype=dt, rngs=rngs)
                            for k in range(self.levels - 1)])
        self.dec = nnx.List([nnx.List([_ResBlock(chans[k], dtype=dt, rngs=rngs)
                                       for _ in range(self.blocks)])
                             for k in range(self.levels - 1)])
        self.tail = _conv(c, self.image_channels, dtype=dt, rngs=rngs, zero=True)

    def __call__(self, v: jax.Array) -> jax.Array:
        if v.ndim != 4 or v.shape[-1] != self.image_channels:
            raise ValueError(f"expected (B, H, W, {self.image_channels}), got {v.shape}")
        factor = 2 ** (self.levels - 1)
        if v.shape[1] % factor or v.shape[2] % factor:
            raise ValueError(f"image size {v.shape[1:3]} must be divisible by {factor} for "
                             f"{self.levels} levels")
        v = v.astype(jnp.float32)
        h = self.head(v)
        skips = []
        for k in range(self.levels):
            for block in self.enc[k]:
                h = block(h)
            if k < self.levels - 1:
                skips.append(h)
                h = self.down[k](h)
        for k in reversed(range(self.levels - 1)):
            h = self._upsample(k, h) + skips[k]
            for block in self.dec[k]:
                h = block(h)
        return v + self.tail(h).astype(jnp.float32)


    def _upsample(self, k: int, h: jax.Array) -> jax.Array:
        """Nearest-neighbour ×2 (each pixel a 2×2 block) and the 3×3 conv ``up[k]``, computed
        at the input resolution, phase by phase (:mod:`admm_jax.priors.upsample_conv`)."""
        conv = self.up[k]
        dt = conv.dtype or h.dtype
        rows, cols = np.arange(2 * h.shape[1]) // 2, np.arange(2 * h.shape[2]) // 2
        y = upsample_conv(h.astype(dt), conv.kernel[...].astype(dt), rows, cols)
        return y + conv.bias[...].astype(dt)


def unet_prior(width: float = 0.25, rngs: nnx.Rngs | None = None, **overrides) -> ResidualUNet:
    """A :class:`ResidualUNet` prior (not the paper's network); ``overrides`` go to the class
    (``levels``, ``blocks``, ``compute_dtype``)."""
    if rngs is None:
        raise TypeError("rngs is required, e.g. rngs=nnx.Rngs(0)")
    return ResidualUNet(width=width, rngs=rngs, **overrides)
