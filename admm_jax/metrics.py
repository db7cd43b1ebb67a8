"""Image-quality metrics, as the paper's evaluation defines them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks


def psnr(estimate: jax.Array, reference: jax.Array, peak: float = 1.0) -> jax.Array:
    """PSNR in dB per image, spec §7: both images clipped to [0, 1] first, MSE over all pixels
    and channels, ``10·log10(peak² / MSE)``.

    Args: estimate, reference: (..., H, W, C) in the [0, 1] domain. Returns shape (...,).
    A concrete ``reference`` on another scale is refused: one reaching above 2 (0–255 images:
    clipped, every pair would score ``inf``) or below −0.5 (the networks' [−1, 1] domain);
    overshoots short of that are clipped, as the spec says.
    """
    if _checks.is_concrete(reference):
        ref = np.asarray(reference)
        if ref.size and (ref.max() > 2.0 or ref.min() < -0.5):
            raise ValueError(f"reference: expected images in [0, 1], got values in "
                             f"[{float(ref.min()):.4g}, {float(ref.max()):.4g}]; divide 0-255 "
                             f"images by 255, map [-1, 1] images with x / 2 + 0.5.")
    a = jnp.clip(estimate, 0.0, 1.0)
    b = jnp.clip(reference, 0.0, 1.0)
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(peak * peak / mse)


def rms(a: jax.Array) -> jax.Array:
    """Root mean square over the last three (H, W, C) axes."""
    return jnp.sqrt(jnp.mean(jnp.square(a), axis=(-3, -2, -1)))
