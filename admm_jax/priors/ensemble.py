"""Test-time self-ensembling of a prox: average it over flips and rotations of its input.

A learned prior is not exactly equivariant to mirroring or rotating the image, although faces
and photos are nearly mirror-symmetric in distribution (and photos of texture nearly
rotation-symmetric). Averaging
``T⁻¹(prox(T(v)))`` over a group of such transforms T gives a prox that *is* equivariant and,
as an average of several estimates, usually a little more accurate (the "self-ensemble" of
image-restoration networks). Inside ADMM it replaces the prox at every iteration; the data
step is untouched, so every solver and operator works with it unchanged. It costs one network
evaluation per transform.

Groups (``transforms``):

* ``"none"``: the prox itself (1 evaluation);
* ``"hflip"``: the identity and the left-right mirror (2 evaluations): the safe choice for
  faces and photographs, whose statistics are mirror-symmetric but not upside-down symmetric
  (on faces the other six members of ``"dihedral"`` cost 2.3 dB of block inpainting);
* ``"dihedral"``: the 8 symmetries of the square (rotations by 0/90/180/270° with and without
  the mirror; 8 evaluations). Non-square images are fine: a 90° rotation swaps height and
  width on the way in and back on the way out, so the prox must accept both shapes (the
  shipped U-Nets do; the paper's 64×64 network only for square images).

Measured gains with the shipped general priors: RESULTS.md §7.0g.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["ENSEMBLES", "check_ensemble", "self_ensemble", "ensemble_average"]

Array = jax.Array

#: transform group name → its members as (quarter turns k, mirrored?)
ENSEMBLES: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "hflip": ((0, False), (0, True)),
    "dihedral": tuple((k, m) for k in range(4) for m in (False, True)),
}


def check_ensemble(transforms: Any) -> str:
    """``transforms`` if it names a group of :data:`ENSEMBLES`; else a ``ValueError`` naming it."""
    if not isinstance(transforms, str) or transforms not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {', '.join(map(repr, ENSEMBLES))}, "
                         f"got {transforms!r}")
    return transforms


def _forward(v: Array, k: int, mirror: bool) -> Array:
    """The transform on (B, H, W, C): rotate by k quarter turns in the (H, W) plane, then
    mirror left-right."""
    w = jnp.rot90(v, k, axes=(1, 2)) if k else v
    return w[:, :, ::-1] if mirror else w


def _inverse(w: Array, k: int, mirror: bool) -> Array:
    """The inverse of :func:`_forward`: undo the mirror, then rotate back."""
    w = w[:, :, ::-1] if mirror else w
    return jnp.rot90(w, -k, axes=(1, 2)) if k else w


def ensemble_average(fn: Callable[[Array], Array], v: Array, transforms: str = "hflip") -> Array:
    """``mean over T in the group of T⁻¹(fn(T(v)))`` for ``v`` of shape (B, H, W, C).

    ``fn`` maps (B, H', W', C) to the same shape; the result has ``v``'s shape. The group's
    members are evaluated one after the other (not stacked into one larger batch), so the peak
    memory is that of one call of ``fn``.
    """
    members = ENSEMBLES[check_ensemble(transforms)]
    if v.ndim != 4:
        raise ValueError(f"ensemble_average: v must be (B, H, W, C), got shape {v.shape}")
    total = None
    for k, mirror in members:
        out = _inverse(fn(_forward(v, k, mirror)), k, mirror)
        total = out if total is None else total + out
    return total / len(members) if len(members) > 1 else total


def self_ensemble(prox: Callable[[Array, Any], Array], transforms: str = "hflip"
                  ) -> Callable[[Array, Any], Array]:
    """The prox ``prox(v, rho)`` averaged over the ``transforms`` group (module docstring).

    >>> prior = aj.pretrained("general")
    >>> z = aj.unrolled_admm(aj.self_ensemble(prior, "hflip"), op, y, rho, 8)

    For a shipped prior, ``aj.pretrained(name, ensemble="hflip")`` does the same and keeps
    ``solve`` and the learned ρ rule. ``v`` is (B, H, W, C); ``rho`` is passed on unchanged.
    """
    check_ensemble(transforms)
    if transforms == "none":
        return prox

    def averaged(v: Array, rho: Any = None) -> Array:
        return ensemble_average(lambda w: prox(w, rho), v, transforms)

    return averaged
