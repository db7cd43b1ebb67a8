"""Input validation shared by the public API.

Checks run on concrete (non-traced) values only: inside ``jit`` the shapes and dtypes are still
checked (they are static), but value checks such as "ρ > 0" or "all finite" are skipped because a
traced value cannot be inspected without a device sync. Call the public functions eagerly once
(or use :func:`check_finite` yourself) to get the value checks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_float(name: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a floating dtype (float32 or float64), got {dtype}; "
            f"convert images with x.astype(jnp.float32) / 255 if they are uint8."
        )


def check_shape(name: str, x: Any, expected: tuple[int, ...], what: str = "") -> None:
    """Raise ``ValueError`` unless ``x.shape[-len(expected):] == expected``."""
    shape = tuple(jnp.shape(x))
    tail = shape[len(shape) - len(expected):] if len(expected) <= len(shape) else shape
    if len(shape) < len(expected) or tail != tuple(expected):
        extra = f" ({what})" if what else ""
        raise ValueError(
            f"{name} has shape {shape}, but its trailing dimensions must be {tuple(expected)}{extra}."
        )


def check_finite(name: str, x: Any) -> None:
    """Raise ``ValueError`` if a concrete array holds NaN or Inf."""
    if _is_concrete(x):
        arr = np.asarray(x)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name} contains {n_bad} non-finite value(s) (NaN or Inf).")


def check_positive(name: str, x: Any) -> None:
    """Raise ``ValueError`` if a concrete value is not strictly positive (and finite)."""
    if _is_concrete(x):
        arr = np.asarray(x)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite and > 0, got {arr}.")
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be > 0 (the ADMM penalty), got min {arr.min()}.")
