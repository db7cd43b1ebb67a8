"""Input validation shared by the public API.

Checks run on concrete (non-traced) values only: inside ``jit`` the shapes and dtypes are still
checked (they are static), but value checks such as "ρ > 0" or "all finite" are skipped because a
traced value cannot be inspected without a device sync. Call the public functions eagerly once
(or use :func:`check_finite` yourself) to get the value checks.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True unless ``x`` is a JAX tracer (inside ``jit``/``vmap``/``grad`` values are unknown)."""
    return not isinstance(x, jax.core.Tracer)


def check_float(name: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{name} must be real, got {dtype}: complex measurements (Fourier / k-space "
            f"sampling) are passed as a real array with a last axis of 2, real and imaginary "
            f"parts (jnp.stack([y.real, y.imag], -1)); admm_jax.operators.SampledOrthonormal "
            f"documents the layout."
        )
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
    if is_concrete(x):
        arr = np.asarray(x)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name} contains {n_bad} non-finite value(s) (NaN or Inf).")


def check_positive(name: str, x: Any, meaning: str = "") -> None:
    """Raise ``ValueError`` if a concrete value is not strictly positive (and finite).

    ``meaning`` (e.g. "the ADMM penalty") is added to the message after the name.
    """
    if is_concrete(x):
        arr = np.asarray(x)
        what = f" ({meaning})" if meaning else ""
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite and > 0{what}, got {arr}.")
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be > 0{what}, got {arr.min() if arr.ndim else arr}.")


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as a Python int; ``TypeError`` unless it is an integer (``bool`` and floats
    such as 2.5 or 8.0 are refused: a silent ``int()`` would truncate), ``ValueError`` outside
    ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}.")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} "
                        f"({type(value).__name__}).") from None
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        lo = "" if minimum is None else f">= {minimum}"
        hi = "" if maximum is None else f"<= {maximum}"
        raise ValueError(f"{name} must be {' and '.join(p for p in (lo, hi) if p)}, "
                         f"got {out}.")
    return out


def check_in_range(name: str, value: Any, low: float, high: float, *,
                   low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float; ``ValueError`` unless it is finite and in the interval (open or
    closed at each end, as given). The message shows the interval in the usual notation.
    A traced value is returned unchecked."""
    if not is_concrete(value):
        return value
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}.") from None
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not math.isfinite(v) or below or above:
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return v


def check_values_in_range(name: str, values: Any, low: float, high: float, what: str = "") -> None:
    """``ValueError`` unless every entry of the scalar or array ``values`` is finite and in
    ``[low, high]``; the message lists the values (or their range) and says ``what`` they are.
    Traced values pass unchecked."""
    if not is_concrete(values):
        return
    arr = np.asarray(values, np.float64)
    if np.all(np.isfinite(arr)) and np.all((arr >= low) & (arr <= high)):
        return
    shown = ([float(f"{v:.6g}") for v in arr.ravel()] if arr.ndim else float(f"{arr:.6g}")) \
        if arr.size <= 8 else f"values in [{np.nanmin(arr):.6g}, {np.nanmax(arr):.6g}]"
    raise ValueError(f"{name} must be in [{low}, {high}]{' (' + what + ')' if what else ''}, "
                     f"got {shown}.")


def check_choices(name: str, values: Sequence[str], allowed: Iterable[str],
                  what: str = "value") -> None:
    """``ValueError`` unless ``values`` is non-empty and every entry is in ``allowed``; the
    message names the unknown entries (as "unknown {what}(s)") and lists the allowed ones."""
    allowed = sorted(allowed)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{name}: unknown {what}(s) {unknown}; choose from {allowed}.")
    if len(values) == 0:
        raise ValueError(f"{name} is empty; choose at least one of {allowed}.")


def check_probabilities(name: str, probs: Any, k: int, what: str = "choice") -> Any:
    """Sampling weights of ``k`` choices, returned as float32 normalised to sum 1.

    ``ValueError`` unless ``probs`` has shape ``(k,)`` and, when concrete, every entry is
    finite and >= 0 with a positive sum. Traced values get the shape check only.
    """
    shape = tuple(np.shape(probs))
    if shape != (k,):
        shown = np.asarray(probs).tolist() if is_concrete(probs) else f"shape {shape}"
        raise ValueError(f"{name} must have one entry per {what} ({k}), got {shown}.")
    if is_concrete(probs):
        arr = np.asarray(probs, np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr.sum() <= 0:
            raise ValueError(f"{name} must be finite and >= 0 with a positive sum "
                             f"(they are normalised to sum 1), got {arr.tolist()}.")
    weights = jnp.asarray(probs, jnp.float32)
    return weights / jnp.sum(weights)


#: How far outside [0, 1] an image may reach before it is refused: room for resampling
#: overshoot and unclipped network outputs; 0–255 data (max ≫ 1) and the networks' [−1, 1]
#: domain (min ≈ −1) are far outside it.
IMAGE_RANGE_SLACK = 0.1


def _range_error(name: str, lo: float, hi: float) -> ValueError:
    return ValueError(
        f"{name}: expected float images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; divide "
        f"0-255 images by 255, map [-1, 1] images with x / 2 + 0.5, or clip slight overshoots "
        f"with clip(x, 0, 1) (allowed: [{-IMAGE_RANGE_SLACK}, {1 + IMAGE_RANGE_SLACK}]).")


def check_unit_images(name: str, x: Any) -> None:
    """Float images in [0, 1] for the JAX API: ``TypeError`` for integer/bool dtypes (uint8
    images must be converted, see :func:`check_float`); when concrete, ``ValueError`` for
    non-finite values or values outside [0, 1] by more than :data:`IMAGE_RANGE_SLACK`."""
    check_float(name, x)
    if is_concrete(x):
        check_finite(name, x)
        arr = np.asarray(x)
        if arr.size and (arr.min() < -IMAGE_RANGE_SLACK or arr.max() > 1 + IMAGE_RANGE_SLACK):
            raise _range_error(name, float(arr.min()), float(arr.max()))


def check_image_array(name: str, images: Any, channels: int | None = 3) -> None:
    """NumPy images for the file-level API (training, evaluation): ``(N, H, W, C)`` with N >= 1,
    uint8 (0–255, the documented integer form) or float in [0, 1] (see
    :func:`check_unit_images`). Other integer or bool dtypes (e.g. 16-bit images) raise
    ``TypeError``; wrong shapes, empty arrays and out-of-range floats ``ValueError``."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise TypeError(f"{name} must be uint8 (0-255) or float ([0, 1]) images, got dtype "
                        f"{arr.dtype}; convert e.g. 16-bit images with x / 65535.")
    if arr.ndim != 4 or (channels is not None and arr.shape[-1] != channels):
        want = f"(N, H, W, {channels})" if channels is not None else "(N, H, W, C)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); give at least one image.")
    if arr.dtype.kind == "f":
        check_unit_images(name, arr)


def as_unit_float32(name: str, images: Any, channels: int | None = 3) -> np.ndarray:
    """Images checked by :func:`check_image_array`, as float32 in [0, 1] (uint8 / 255)."""
    check_image_array(name, images, channels)
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return arr.astype(np.float32, copy=False)


#: Linearity check: relative tolerance on ‖A(a·x + b·y) − (a·A x + b·A y)‖ against
#: |a|·‖A x‖ + |b|·‖A y‖. Linear operators in float32 stay near 1e-6 (rounding); an affine or
#: nonlinear ``apply`` is off by O(1).
LINEARITY_RTOL = 1e-3
_LINEARITY_AB = (0.75, -1.25)  # a + b != 1, so an affine map x -> Lx + c is caught too


def check_linear(name: str, apply: Callable[[Any], Any], in_shape: tuple[int, ...], *,
                 rtol: float = LINEARITY_RTOL) -> None:
    """``ValueError`` unless ``apply(a·x + b·y) = a·apply(x) + b·apply(y)`` (to ``rtol``) on
    random float32 ``x, y`` of ``in_shape`` (fixed key, so the check is reproducible).

    Costs three calls of ``apply``. They run eagerly (``jax.ensure_compile_time_eval``), so the
    check also works while a ``jit`` trace is under way, provided ``apply`` closes over
    concrete values only; matmuls run at full float32 precision so that reduced-precision
    GPU passes (TF32) are not mistaken for nonlinearity.
    """
    a, b = _LINEARITY_AB
    with jax.ensure_compile_time_eval(), jax.default_matmul_precision("highest"):
        kx, ky = jax.random.split(jax.random.PRNGKey(0))
        x = jax.random.normal(kx, tuple(in_shape), jnp.float32)
        y = jax.random.normal(ky, tuple(in_shape), jnp.float32)
        try:
            outs = [apply(x), apply(y), apply(a * x + b * y)]
        except Exception as exc:  # any failure of user code: say where it happened
            raise ValueError(f"{name}.apply failed on a random float32 input of shape "
                             f"{tuple(in_shape)}: {type(exc).__name__}: {exc}") from exc
    ax, ay, axy = ([np.asarray(leaf, np.complex128 if np.iscomplexobj(leaf) else np.float64)
                    for leaf in jax.tree_util.tree_leaves(o)] for o in outs)
    norm = lambda leaves: math.sqrt(sum(float(np.sum(np.abs(v) ** 2)) for v in leaves))  # noqa: E731
    diff = norm([u - (a * v + b * w) for u, v, w in zip(axy, ax, ay)])
    scale = abs(a) * norm(ax) + abs(b) * norm(ay)
    if not (math.isfinite(diff) and math.isfinite(scale)):
        raise ValueError(f"{name}.apply returned non-finite values on random inputs of shape "
                         f"{tuple(in_shape)}; a linear operator must map finite to finite.")
    if diff > rtol * scale:
        rel = diff / scale if scale > 0 else math.inf
        raise ValueError(
            f"{name} is not linear: apply(a*x + b*y) differs from a*apply(x) + b*apply(y) by "
            f"{rel:.3g} relative to the output norm (allowed {rtol:g}) for random x, y and "
            f"a={a}, b={b}. ADMM needs a linear A (x -> A x with no constant term, no "
            f"powers, no clipping); for an affine model y = A x + c subtract c from y.")
