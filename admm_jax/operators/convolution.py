"""Circular convolution (deblurring), diagonalised by the 2-D FFT."""

from __future__ import annotations

import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


#: pinv truncation of every blur by default (:class:`CircularConvolution`): |K| below 5 % of its
#: peak is not inverted, so the ADMM start amplifies the measurement noise at most 20 times
BLUR_RCOND = 0.05


@operator_pytree
class CircularConvolution(LinearOperator):
    """Convolve every channel with the same kernel, with periodic boundaries.

    ``kernel``: (..., H, W) real, the point-spread function already embedded in an H×W array with
    its centre at index (0, 0) (use :func:`circular_kernel` to embed a small kernel). In the
    Fourier domain ``A = F⁻¹ diag(K) F``, so ``(AᵀA + ρI)⁻¹ b = F⁻¹[F b / (|K|² + ρ)]`` exactly and
    ``A⁺ y = F⁻¹[conj(K) F y / |K|²]`` over the frequencies with ``|K| > rcond · max |K|`` (singular values, as ``numpy.linalg.pinv``).

    ``rcond`` (default :data:`BLUR_RCOND` = 0.05) sets where ``pinv``, the ADMM start
    ``z⁰ = A⁺y``, stops inverting. A blur's spectrum falls smoothly towards zero, so a tiny
    cutoff divides the noise by near-zero ``|K|``: the start is amplified noise, unlike any
    start the learned priors were trained from, and they do not recover from it (RESULTS.md
    §7.0h, ``experiments/blur_rcond_probe.py``). The cutoff caps the start's noise gain at
    ``1/(rcond · max |K|)``. Every blur the library builds (its deblurring problem,
    ``admm-jax solve``, the training families) uses 0.05; pass ``rcond=1e-6`` for the (nearly)
    exact pseudo-inverse of noise-free data. The solves ``(AᵀA + ρI)⁻¹`` never depend on it.
    """

    kernel: Array
    in_shape: tuple[int, ...] = static_field()
    rcond: float = static_field(default=0.05)

    def __post_init__(self) -> None:
        # rcond < 0 would keep the spectrum's zeros and make pinv infinite; rcond = 0 keeps
        # every non-zero frequency (the exact pseudo-inverse)
        if not (isinstance(self.rcond, numbers.Real) and 0 <= self.rcond < 1):
            raise ValueError(f"rcond must be in [0, 1) (the cutoff relative to max |K|), got "
                             f"{self.rcond!r}")
        # as Mask: a kernel of another size is refused here, placeholder leaves pass
        if hasattr(self.kernel, "shape"):
            _checks.check_shape("kernel", self.kernel, tuple(self.in_shape[:2]),
                                f"the image size of in_shape {tuple(self.in_shape)}, after any "
                                f"batch axes; embed a small PSF with circular_kernel(psf, "
                                f"(H, W))")

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.kernel.shape[:-2])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def _spectrum(self) -> Array:
        kernel = self.kernel.astype(_fft_dtype(self.kernel.dtype))
        return jnp.fft.rfft2(kernel, axes=(-2, -1))[..., None]  # (H, W//2+1, 1)

    def _filter(self, x: Array, spectrum: Array) -> Array:
        h, w = self.in_shape[0], self.in_shape[1]
        fx = jnp.fft.rfft2(x.astype(_fft_dtype(x.dtype)), axes=(-3, -2))
        return jnp.fft.irfft2(fx * spectrum, s=(h, w), axes=(-3, -2)).astype(x.dtype)

    def apply(self, x: Array) -> Array:
        return self._filter(x, self._spectrum())

    def adjoint(self, y: Array) -> Array:
        return self._filter(y, jnp.conj(self._spectrum()))

    def solve(self, b: Array, rho: Array | float) -> Array:
        k = self._spectrum()
        return self._filter(b, 1.0 / (jnp.abs(k) ** 2 + rho))

    def pinv(self, y: Array) -> Array:
        k = self._spectrum()
        power = jnp.abs(k) ** 2
        keep = jnp.abs(k) > self.rcond * jnp.max(jnp.abs(k))
        inv = jnp.where(keep, jnp.conj(k) / jnp.where(keep, power, 1.0), 0.0)
        return self._filter(y, inv)


def _fft_dtype(dtype: Any) -> Any:
    """The FFT's real dtype for data of ``dtype``: float32 for half precision (bfloat16,
    float16; XLA's FFT takes float32 or float64 only), else ``dtype``'s float type."""
    return jnp.promote_types(dtype, jnp.float32)


def circular_kernel(psf: Array, image_hw: tuple[int, int]) -> Array:
    """Embed a small (kh, kw) point-spread function in an H×W array centred at (0, 0)."""
    psf = jnp.asarray(psf)
    kh, kw = psf.shape[-2:]
    h, w = image_hw
    if kh > h or kw > w:
        raise ValueError(f"kernel {kh}x{kw} is larger than the image {h}x{w}")
    full = jnp.zeros(psf.shape[:-2] + (h, w), psf.dtype)
    full = full.at[..., :kh, :kw].set(psf)
    return jnp.roll(full, shift=(-(kh // 2), -(kw // 2)), axis=(-2, -1))


def gaussian_blur(shape: tuple[int, int, int] = (64, 64, 3), sigma: float = 1.0,
                  size: int | None = None, dtype=jnp.float32,
                  rcond: float = BLUR_RCOND) -> CircularConvolution:
    """Normalised isotropic Gaussian blur of std ``sigma`` pixels, ``size``² taps.

    ``size``: odd, at most the image's smaller side; default ``2·ceil(3·sigma) + 1`` (±3σ),
    capped at the largest odd size that fits the image. ``rcond`` truncates ``pinv`` (the ADMM
    start; :class:`CircularConvolution`)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (pixels), got {sigma}")
    fits = min(shape[0], shape[1])
    if size is None:
        size = min(2 * int(np.ceil(3 * sigma)) + 1, fits if fits % 2 else fits - 1)
    _checks.check_int("size", size, minimum=1, maximum=fits)
    if size % 2 == 0:
        raise ValueError(f"size must be odd (a kernel centred on its pixel), got {size}")
    r = np.arange(size) - size // 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    psf = np.outer(g, g)
    psf /= psf.sum()
    return CircularConvolution(kernel=circular_kernel(jnp.asarray(psf, dtype), shape[:2]),
                               in_shape=tuple(shape), rcond=rcond)


def box_blur(shape: tuple[int, int, int] = (64, 64, 3), size: int = 5,
             dtype=jnp.float32, rcond: float = BLUR_RCOND) -> CircularConvolution:
    """Uniform ``size``×``size`` blur (``size`` >= 1, at most the image size); ``rcond`` truncates
    ``pinv`` (the ADMM start; :class:`CircularConvolution`)."""
    _checks.check_int("size", size, minimum=1, maximum=min(shape[0], shape[1]))
    psf = jnp.full((size, size), 1.0 / (size * size), dtype)
    return CircularConvolution(kernel=circular_kernel(psf, shape[:2]), in_shape=tuple(shape),
                               rcond=rcond)
