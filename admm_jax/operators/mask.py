"""Diagonal (masking) operators: pixelwise, scattered and blockwise inpainting.

``A x = m ⊙ x`` with ``m`` of the image's shape (H, W, C). Binary masks are the paper's
inpainting problems; any real weights work (the closed forms use ``m²``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


@operator_pytree
class Mask(LinearOperator):
    """Elementwise mask. ``mask``: (..., H, W, C); leading axes make a batch of operators."""

    mask: Array
    in_shape: tuple[int, ...] = static_field()

    def __post_init__(self) -> None:
        # refused here, not as a broadcasting error deep inside a solve; placeholder leaves
        # (pytree utilities rebuild operators from ints or None) have no shape and pass
        if not hasattr(self.mask, "shape"):
            return
        shape, want = tuple(self.mask.shape), tuple(self.in_shape)
        tail = shape[len(shape) - len(want):] if len(shape) >= len(want) else None
        if tail is None or any(m not in (1, w) for m, w in zip(tail, want)):
            raise ValueError(f"mask has shape {shape}; its last {len(want)} axes must be the "
                             f"operator's in_shape {want} (or 1 where the mask is shared, e.g. "
                             f"over channels), after any batch axes")

    @classmethod
    def create(cls, mask: Array) -> "Mask":
        mask = jnp.asarray(mask)
        if mask.ndim < 3:
            raise ValueError(f"mask must have shape (..., H, W, C), got {mask.shape}")
        return cls(mask=mask, in_shape=tuple(mask.shape[-3:]))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape[: self.mask.ndim - len(self.in_shape)])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def apply(self, x: Array) -> Array:
        return self.mask * x

    def adjoint(self, y: Array) -> Array:
        return self.mask * y

    def normal(self, x: Array) -> Array:
        return self.mask * self.mask * x

    def solve(self, b: Array, rho: Array | float) -> Array:
        return b / (self.mask * self.mask + rho)

    def pinv(self, y: Array) -> Array:
        nonzero = self.mask != 0
        return jnp.where(nonzero, y / jnp.where(nonzero, self.mask, 1.0), 0.0)


def pixelwise_mask(key: Array, shape: tuple[int, int, int] = (64, 64, 3),
                   drop_prob: float = 0.5, dtype=jnp.float32) -> Mask:
    """Drop every (pixel, channel) entry independently with probability ``drop_prob``.

    As in the released code (spec §3, B18), the colour channels of a pixel are dropped
    independently. Pair it with Gaussian noise σ = 0.1 for the paper's inpainting-denoising.
    ``drop_prob`` in [0, 1) (1 would measure nothing).
    """
    _checks.check_in_range("drop_prob", drop_prob, 0.0, 1.0, high_open=True)
    keep = jax.random.uniform(key, shape) >= drop_prob
    return Mask(mask=keep.astype(dtype), in_shape=tuple(shape))


def scattered_mask(key: Array, shape: tuple[int, int, int] = (64, 64, 3), box_size: int = 6,
                   num_boxes: int = 10, dtype=jnp.float32) -> Mask:
    """Zero ``num_boxes`` boxes of ``box_size``² pixels (all channels) at random positions.

    Positions follow the released code: for each box, row then column are drawn as
    ``int(U * (H - box_size - 4) + 1.5)``, i.e. uniform in {1, ..., H - box_size - 3} for
    64×64 and 6×6 boxes (top-left in 1..55). Boxes may overlap. ``box_size`` in
    [1, min(H, W) − 4] (the released code's placement needs the margin), ``num_boxes`` >= 0.
    """
    h, w, _ = shape
    _checks.check_int("box_size", box_size, minimum=1, maximum=min(h, w) - 4)
    _checks.check_int("num_boxes", num_boxes, minimum=0)
    u = jax.random.uniform(key, (num_boxes, 2))
    rows = jnp.floor(u[:, 0] * (h - box_size - 4) + 1.5).astype(jnp.int32)
    cols = jnp.floor(u[:, 1] * (w - box_size - 4) + 1.5).astype(jnp.int32)
    r = jnp.arange(h)[None, :]
    c = jnp.arange(w)[None, :]
    in_rows = (r >= rows[:, None]) & (r < rows[:, None] + box_size)  # (boxes, H)
    in_cols = (c >= cols[:, None]) & (c < cols[:, None] + box_size)  # (boxes, W)
    covered = jnp.any(in_rows[:, :, None] & in_cols[:, None, :], axis=0)  # (H, W)
    keep = jnp.broadcast_to(~covered[:, :, None], shape)
    return Mask(mask=keep.astype(dtype), in_shape=tuple(shape))


def block_mask(shape: tuple[int, int, int] = (64, 64, 3), box_size: int = 19,
               dtype=jnp.float32) -> Mask:
    """Zero the centre ``box_size``² box (all channels).

    Start index ``round(H/2 - box_size/2)`` with round-half-even, as in the released code: for
    64×64 and 19 it covers rows/cols 22..40 inclusive. ``box_size`` in [0, min(H, W)].
    """
    h, w, _ = shape
    _checks.check_int("box_size", box_size, minimum=0, maximum=min(h, w))
    r0 = int(round(h / 2 - box_size / 2))
    c0 = int(round(w / 2 - box_size / 2))
    keep = jnp.ones(shape, dtype)
    keep = keep.at[r0:r0 + box_size, c0:c0 + box_size, :].set(0)
    return Mask(mask=keep, in_shape=tuple(shape))
