"""Orthonormal periodised 2-D discrete wavelet transform and the wavelet-ℓ1 proximal operator.

The transform reproduces ``pywt.wavedec2(x, wavelet, mode="periodization", level=L)`` packed with
``pywt.coeffs_to_array`` (PyWavelets is *not* a dependency of this module; it is only used as a
reference in the tests). Images are ``(..., H, W, C)``: the transform acts on the ``H`` and ``W``
axes of every channel independently and every leading axis is a batch axis.

How it works: for a signal of even length ``n`` the one-level periodised analysis step is an
orthonormal ``n×n`` matrix ``M_n = [lowpass rows; highpass rows]`` with

    M_n[k,         (2k + L/2 − j) mod n] += dec_lo[j]     (k < n/2, j < L)
    M_n[n/2 + k,   (2k + L/2 − j) mod n] += dec_hi[j]

(``L`` = filter length; this is the phase PyWavelets uses in periodization mode). One 2-D level
applies ``M_h`` along ``H`` and ``M_w`` along ``W`` to the current approximation block, which leaves
the new approximation in the top-left quarter, the "horizontal" detail ``cH`` (high-pass along H)
bottom-left, the "vertical" detail ``cV`` (high-pass along W) top-right and ``cD`` bottom-right —
exactly the ``coeffs_to_array`` layout. The matrices are built in NumPy float64 at trace time and
cached; the inverse applies the transposes in reverse order.

Matmuls use ``Precision.HIGHEST`` so that float32 matmuls are not run at the reduced default
precision of GPUs/TPUs (TF32/bf16 passes), which would cost about 3 digits of accuracy and break
exact reconstruction.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax._checks import check_positive, is_concrete

Array = jax.Array

__all__ = [
    "WAVELETS",
    "wavelet_names",
    "max_level",
    "dwt2",
    "idwt2",
    "soft_threshold",
    "wavelet_l1_prox",
]

# Analysis low-pass filters (``dec_lo``) of the orthonormal Daubechies wavelets, in the order
# PyWavelets lists them. The high-pass filter is the quadrature mirror
# ``dec_hi[j] = (-1)**(j+1) * dec_lo[L-1-j]``.
_DEC_LO: dict[str, tuple[float, ...]] = {
    "haar": (
        0.7071067811865476,
        0.7071067811865476,
    ),
    # Daubechies 4 (4 vanishing moments, 8 taps).
    "db4": (
        -0.010597401785069032,
        0.0328830116668852,
        0.030841381835560764,
        -0.18703481171909309,
        -0.027983769416859854,
        0.6308807679298589,
        0.7148465705529157,
        0.2303778133088965,
    ),
}

#: Names of the supported wavelets.
WAVELETS: tuple[str, ...] = tuple(_DEC_LO)

_HIGHEST = jax.lax.Precision.HIGHEST


class WaveletDtypeError(ValueError, TypeError):
    """Input with a non-floating dtype (a ``ValueError`` and, like ``_checks.check_float``, a
    ``TypeError``)."""


def wavelet_names() -> tuple[str, ...]:
    """Return the names of the supported wavelets (``('haar', 'db4')``)."""
    return WAVELETS


def _check_wavelet(wavelet: Any) -> str:
    if not isinstance(wavelet, str) or wavelet not in _DEC_LO:
        raise ValueError(
            f"unknown wavelet {wavelet!r}; supported wavelets are {', '.join(WAVELETS)}.")
    return wavelet


def _filters(wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(_DEC_LO[wavelet], dtype=np.float64)
    n_taps = lo.size
    hi = np.array([(-1.0) ** (j + 1) * lo[n_taps - 1 - j] for j in range(n_taps)])
    return lo, hi


def max_level(n: int, wavelet: str = "db4") -> int:
    """Deepest level without boundary effects for a length-``n`` axis (``pywt.dwt_max_level``).

    ``floor(log2(n / (L − 1)))`` for a filter of length ``L``: 3 for 64 with db4, 6 for 64 with
    haar. :func:`dwt2` also accepts deeper levels (as PyWavelets does, which only warns): the
    transform stays orthonormal, the filters just wrap around the period more than once.
    """
    n_taps = len(_DEC_LO[_check_wavelet(wavelet)])
    if n < n_taps - 1:
        return 0
    return int(math.floor(math.log2(n / (n_taps - 1))))


@functools.lru_cache(maxsize=None)
def _analysis_matrix(wavelet: str, n: int) -> np.ndarray:
    """Orthonormal one-level periodised analysis matrix ``(n, n)``: rows ``[:n/2]`` give the
    approximation (low-pass) coefficients, rows ``[n/2:]`` the detail (high-pass) ones, matching
    ``pywt.dwt(x, wavelet, mode="periodization")``. NumPy float64, read-only (it is cached)."""
    if n < 2 or n % 2:
        raise ValueError(f"analysis matrix needs an even length >= 2, got {n}")
    lo, hi = _filters(wavelet)
    n_taps = lo.size
    half = n // 2
    mat = np.zeros((n, n), dtype=np.float64)
    for k in range(half):
        for j in range(n_taps):
            col = (2 * k + n_taps // 2 - j) % n
            mat[k, col] += lo[j]
            mat[half + k, col] += hi[j]
    mat.setflags(write=False)
    return mat


def _validate(name: str, x: Array, wavelet: Any, level: Any) -> None:
    _check_wavelet(wavelet)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise ValueError(f"level must be a Python int >= 1, got {level!r}")
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise WaveletDtypeError(
            f"{name} must have a floating dtype (float32 or float64), got {x.dtype}; "
            f"convert images with x.astype(jnp.float32) / 255 if they are uint8.")
    if x.ndim < 3:
        raise ValueError(
            f"{name} must have shape (..., H, W, C) with at least 3 dimensions, got {x.shape}")
    h, w = x.shape[-3], x.shape[-2]
    step = 2 ** int(level)
    if h % step or w % step or h == 0 or w == 0:
        raise ValueError(
            f"{name}: image size {h}x{w} must be divisible by 2**level = {step} "
            f"(level={level}); pad or crop the image, or lower the level.")


def _apply_level(block: Array, mh: np.ndarray, mw: np.ndarray) -> Array:
    """Apply ``mh`` along axis -3 (H) and ``mw`` along axis -2 (W) of ``block``."""
    mh_j = jnp.asarray(mh, dtype=block.dtype)
    mw_j = jnp.asarray(mw, dtype=block.dtype)
    out = jnp.einsum("ij,...jwc->...iwc", mh_j, block, precision=_HIGHEST)
    return jnp.einsum("kw,...iwc->...ikc", mw_j, out, precision=_HIGHEST)


def dwt2(x: Array, wavelet: str = "db4", level: int = 3) -> Array:
    """Multi-level orthonormal periodised 2-D DWT of the ``H, W`` axes of ``x``.

    Args:
      x: ``(..., H, W, C)`` floating array; ``H`` and ``W`` must be divisible by ``2**level``.
      wavelet: one of :data:`WAVELETS` (``"haar"``, ``"db4"``).
      level: number of decomposition levels, a Python int >= 1 (static under ``jit``).

    Returns:
      ``(..., H, W, C)`` coefficients, same dtype, packed per channel like
      ``pywt.coeffs_to_array(pywt.wavedec2(x, wavelet, mode="periodization", level=level))``:
      with ``h_j = H / 2**j``, ``w_j = W / 2**j``, the approximation is ``[:h_L, :w_L]`` and the
      level-``j`` details are ``cH = [h_j:h_{j-1}, :w_j]`` (high-pass along H),
      ``cV = [:h_j, w_j:w_{j-1}]`` (high-pass along W) and ``cD = [h_j:h_{j-1}, w_j:w_{j-1}]``.

    The transform is orthonormal: ``idwt2(dwt2(x)) == x`` and ``‖dwt2(x)‖ = ‖x‖``.
    """
    x = jnp.asarray(x)
    _validate("dwt2 input", x, wavelet, level)
    return _dwt2_impl(x, wavelet, int(level))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _dwt2_impl(x: Array, wavelet: str, level: int) -> Array:
    h, w = x.shape[-3], x.shape[-2]
    out = x
    for j in range(level):
        hj, wj = h >> j, w >> j
        block = _apply_level(out[..., :hj, :wj, :],
                             _analysis_matrix(wavelet, hj), _analysis_matrix(wavelet, wj))
        out = block if j == 0 else out.at[..., :hj, :wj, :].set(block)
    return out


def idwt2(coeffs: Array, wavelet: str = "db4", level: int = 3) -> Array:
    """Inverse (= adjoint) of :func:`dwt2`.

    Args:
      coeffs: ``(..., H, W, C)`` floating array packed as returned by :func:`dwt2`.
      wavelet, level: the values used for :func:`dwt2`.

    Returns:
      ``(..., H, W, C)`` image with ``idwt2(dwt2(x)) == x`` (to rounding).
    """
    coeffs = jnp.asarray(coeffs)
    _validate("idwt2 input", coeffs, wavelet, level)
    return _idwt2_impl(coeffs, wavelet, int(level))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _idwt2_impl(coeffs: Array, wavelet: str, level: int) -> Array:
    h, w = coeffs.shape[-3], coeffs.shape[-2]
    out = coeffs
    for j in reversed(range(level)):
        hj, wj = h >> j, w >> j
        block = _apply_level(out[..., :hj, :wj, :],
                             _analysis_matrix(wavelet, hj).T, _analysis_matrix(wavelet, wj).T)
        out = block if j == 0 else out.at[..., :hj, :wj, :].set(block)
    return out


def soft_threshold(w: Array, threshold: Array | float) -> Array:
    """Soft thresholding ``sign(w) · max(|w| − t, 0)`` (the prox of ``t‖·‖₁``).

    Args:
      w: array of any shape.
      threshold: ``t >= 0``, broadcastable against ``w``.

    Returns:
      array of the broadcast shape of ``w`` and ``threshold``.
    """
    w = jnp.asarray(w)
    return jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0)


def _check_lam(lam: Any) -> None:
    if is_concrete(lam):
        arr = np.asarray(lam)
        if arr.ndim != 0:
            raise ValueError(f"lam must be a scalar, got shape {arr.shape}")
        if not np.isfinite(arr) or arr < 0:
            raise ValueError(f"lam must be finite and >= 0, got {arr}")


def wavelet_l1_prox(
    lam: float, wavelet: str = "db4", level: int = 3
) -> Callable[[Array, Array | float], Array]:
    """Proximal operator of ``x ↦ lam·‖W x‖₁`` with ``W`` = :func:`dwt2` (orthonormal).

    Returns ``prox(v, rho) = argmin_x lam‖Wx‖₁ + rho/2‖x − v‖²
    = idwt2(soft_threshold(dwt2(v), lam / rho))``. Every coefficient is thresholded, the
    approximation band included.

    Args:
      lam: regularisation weight ``>= 0`` (a float; a traced value is accepted too, e.g. to learn
        it, in which case the value check is skipped).
      wavelet, level: see :func:`dwt2`; ``H`` and ``W`` must be divisible by ``2**level``.

    The returned ``prox(v, rho)`` takes ``v`` of shape ``(B, H, W, C)`` (generally
    ``(..., H, W, C)``) and ``rho > 0`` either a scalar or one value per sample, shape ``(B,)``
    (generally the leading batch shape, or anything already broadcastable to ``v``), and returns an
    array shaped like ``v``. It works under ``jax.jit``, ``jax.vmap`` (e.g.
    ``jax.vmap(prox)(v, rho)`` with per-sample ``(H, W, C)`` and scalar rho) and ``jax.grad``.
    """
    _check_lam(lam)
    _check_wavelet(wavelet)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"level must be a Python int >= 1, got {level!r}")

    def prox(v: Array, rho: Array | float) -> Array:
        v = jnp.asarray(v)
        rho = jnp.asarray(rho)
        check_positive("rho", rho)
        coeffs = dwt2(v, wavelet, level)
        if rho.ndim == v.ndim:
            rho_b = rho
        elif rho.ndim <= v.ndim - 3:
            rho_b = rho.reshape(rho.shape + (1, 1, 1))
        else:
            raise ValueError(
                f"rho must be a scalar, per-sample (leading batch shape of v, e.g. (B,)) or "
                f"broadcastable to v; got rho shape {rho.shape} for v shape {v.shape}")
        try:
            ok = jnp.broadcast_shapes(rho_b.shape, v.shape) == v.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"rho of shape {rho.shape} does not match v of shape {v.shape}: expected a "
                f"scalar or one value per sample")
        thr = (lam / rho_b).astype(coeffs.dtype)
        return idwt2(soft_threshold(coeffs, thr), wavelet, level)

    prox.__doc__ = (
        f"prox(v, rho): prox of {lam!r}·‖W x‖₁ (wavelet={wavelet!r}, level={level}) with penalty "
        f"rho/2‖x − v‖²; v is (..., H, W, C), rho scalar or per-sample.")
    return prox
