"""Image-quality metrics, as the paper's evaluation defines them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from admm_jax import _checks


def psnr(estimate: jax.Array, reference: jax.Array, peak: float = 1.0) -> jax.Array:
    """PSNR in dB per image, spec §7: both images clipped to [0, 1] first, MSE over all pixels
    and channels, ``10·log10(peak² / MSE)``.

    Args: estimate, reference: (..., H, W, C) in the [0, 1] domain. Returns shape (...,).
    A concrete ``reference`` outside [0, 1] (0–255 images: clipped, every pair would score
    ``inf``) is refused; ``estimate`` may overshoot, it is clipped.
    """
    _checks.check_unit_images("reference", reference)
    a = jnp.clip(estimate, 0.0, 1.0)
    b = jnp.clip(reference, 0.0, 1.0)
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(peak * peak / mse)


def rms(a: jax.Array) -> jax.Array:
    """Root mean square over the last three (H, W, C) axes."""
    return jnp.sqrt(jnp.mean(jnp.square(a), axis=(-3, -2, -1)))
