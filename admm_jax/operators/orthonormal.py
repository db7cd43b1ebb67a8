"""Sampling in an orthonormal transform domain: subsampled DCT, structured compressive sensing
and MRI-like Fourier (k-space) sampling, all with exact closed-form solves.

One class, :class:`SampledOrthonormal`, covers the family ``A x = M ⊙ U(s ⊙ x)``:

* ``U`` is an orthonormal 2-D transform over the image axes (H, W), applied to every channel:
  ``"dct"`` (DCT-II, ``norm="ortho"``; real, square, ``UᵀU = UUᵀ = I``) or ``"fft"`` (the unitary
  DFT; complex, see the layout below);
* ``s`` is an optional ±1 sign pattern of the image's shape (random signs make the spectrum of
  any image flat, the "structurally random matrix" of compressive sensing);
* ``M`` is a real weight per transform coefficient, of the image's shape (H, W, C): 1 = sampled,
  0 = not sampled (any real weights work; the closed forms use ``M²``).

Measurement layout. ``y`` always has static shape (zeros where not sampled), so operators with
different sampling patterns batch and mix freely:

* ``"dct"``: ``y`` has shape (H, W, C), the masked DCT coefficients.
* ``"fft"``: ``y`` has shape (H, W, C, 2): ``y[..., 0]`` and ``y[..., 1]`` are the real and
  imaginary parts of the masked k-space ``M ⊙ F(s ⊙ x)`` in NumPy's unshifted FFT order
  (frequency 0 at index 0). ``A`` is a real-linear map from real images to this real array; its
  adjoint for the real inner product is ``Aᵀ y = s ⊙ Re F*(M ⊙ (y₀ + i y₁))``. Every
  measurement is kept, noise included: sampling both ``k`` and ``−k`` gives two independent
  looks at the same (Hermitian-symmetric) coefficient of a real image.

Closed forms (exact for every mask, batched or not). With ``g`` the diagonal of ``AᵀA`` in
the transform domain, ``AᵀA = D_s Uᵀ diag(g) U D_s`` and

    solve(b, ρ) = (AᵀA + ρI)⁻¹ b = s ⊙ Uᵀ[U(s ⊙ b) / (g + ρ)]
    pinv(y)     = A⁺ y        = s ⊙ Uᵀ[g⁺ ⊙ U(s ⊙ Aᵀ y)]    (A⁺ = (AᵀA)⁺ Aᵀ)

* DCT: ``g = M²``. For a 0/1 mask ``AAᵀ = diag(M)``, the identity on the measurement space (the
  sampled coefficients), ``AᵀA`` is a projection, ``solve = (I − AᵀA/(1+ρ))/ρ`` and
  ``A⁺ = Aᵀ``.
* FFT: for real ``x``, ``Re F*(M² F x) = F*(g F x)`` with ``g[k] = (M[k]² + M[−k]²)/2``, a
  Hermitian-symmetric diagonal, so the same formulas hold with this ``g``. If the mask is
  Hermitian symmetric (``M[k] = M[−k]``, e.g. full rows chosen in ± pairs) then ``g = M²``: a
  0/1 mask gives a projection ``AᵀA``, ``A⁺ = Aᵀ`` and ``AAᵀ`` is the identity on the
  Hermitian-consistent measurements. A general mask (random rows, random 2-D points) gives
  ``g = 1/2`` at frequencies sampled on one side only: ``AᵀA`` is then NOT a projection, and
  only the diagonal formulas above are exact (they are what :meth:`solve` / :meth:`pinv` use).

``pinv`` inverts ``g`` where ``√g > rcond · max √g`` (singular values, as ``numpy.linalg.pinv``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.fft import dctn, idctn

from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field

#: the orthonormal transforms ``U`` this module provides
TRANSFORMS = ("dct", "fft")
_AXES = (-3, -2)  # the image axes (H, W) of (..., H, W, C)


@operator_pytree
class SampledOrthonormal(LinearOperator):
    """``A x = M ⊙ U(s ⊙ x)`` (see the module docstring for layouts and closed forms).

    ``mask``: (..., H, W, C) real weights in the transform domain; ``signs``: (..., H, W, C) of
    ±1, or ``None`` for no sign flips; leading axes make a batch of operators. Build one with
    :meth:`create` (checks shapes) or a generator: :func:`subsampled_dct`,
    :func:`fourier_mask_cartesian`, :func:`fourier_mask_random`, :func:`orthonormal_dct`,
    :func:`orthonormal_fft`.
    """

    mask: Array
    in_shape: tuple[int, ...] = static_field()
    signs: Array | None = None
    transform: str = static_field(default="dct")
    rcond: float = static_field(default=1e-6)

    def __post_init__(self):
        # static fields only: array leaves may be tracers or placeholders during tree maps
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if len(self.in_shape) != 3:
            raise ValueError(f"in_shape must be (H, W, C), got {self.in_shape}")

    @classmethod
    def create(cls, mask: Array, transform: str = "dct", signs: Array | None = None,
               rcond: float = 1e-6) -> "SampledOrthonormal":
        """Build from a mask of shape (..., H, W, C) (and optional ±1 ``signs``, same shape)."""
        mask = jnp.asarray(mask)
        if mask.ndim < 3:
            raise ValueError(f"mask must have shape (..., H, W, C), got {mask.shape}")
        if signs is not None:
            signs = jnp.asarray(signs, mask.dtype)
            if signs.shape != mask.shape:
                raise ValueError(f"signs must have the mask's shape {mask.shape}, "
                                 f"got {signs.shape}")
        return cls(mask=mask, in_shape=tuple(mask.shape[-3:]), signs=signs,
                   transform=transform, rcond=rcond)

    # ------------------------------------------------------------------ shapes
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape[:-3])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape + ((2,) if self.transform == "fft" else ())

    @property
    def solve_method(self) -> str:
        """Which path :meth:`solve` takes (always exact here)."""
        return f"closed form: diagonal in the {self.transform.upper()} domain"

    # ------------------------------------------------------------------ transforms
    def _flip(self, x: Array) -> Array:
        return x if self.signs is None else self.signs * x

    def _forward(self, x: Array) -> Array:
        """``U x`` (complex for the FFT)."""
        if self.transform == "dct":
            return dctn(x, axes=_AXES, norm="ortho")
        return jnp.fft.fft2(x, axes=_AXES, norm="ortho")

    def _inverse(self, c: Array) -> Array:
        """``Uᵀ c`` restricted to real images (the real part for the FFT)."""
        if self.transform == "dct":
            return idctn(c, axes=_AXES, norm="ortho")
        return jnp.real(jnp.fft.ifft2(c, axes=_AXES, norm="ortho"))

    def _to_layout(self, c: Array) -> Array:
        return jnp.stack([jnp.real(c), jnp.imag(c)], axis=-1) if self.transform == "fft" else c

    def _from_layout(self, y: Array) -> Array:
        return y[..., 0] + 1j * y[..., 1] if self.transform == "fft" else y

    def coefficients(self, x: Array) -> Array:
        """``U(s ⊙ x)``: the transform coefficients of real images x (..., H, W, C) (complex for
        the FFT)."""
        return self._forward(self._flip(x))

    def from_coefficients(self, c: Array) -> Array:
        """``s ⊙ Uᵀ c``, back to real images (the real part for the FFT); inverse of
        :meth:`coefficients` on the coefficients of real images."""
        return self._flip(self._inverse(c))

    def gram_diagonal(self) -> Array:
        """``g``, the diagonal of ``AᵀA`` in the transform domain, shape (..., H, W, C)."""
        sq = self.mask * self.mask
        if self.transform == "dct":
            return sq
        # frequency k -> -k (mod N) on both image axes: flip, then shift by one
        reversed_sq = jnp.roll(jnp.flip(sq, axis=_AXES), shift=(1, 1), axis=_AXES)
        return 0.5 * (sq + reversed_sq)

    # ------------------------------------------------------------------ the maths
    def apply(self, x: Array) -> Array:
        return self._to_layout(self.mask * self._forward(self._flip(x))).astype(x.dtype)

    def adjoint(self, y: Array) -> Array:
        return self._flip(self._inverse(self.mask * self._from_layout(y))).astype(y.dtype)

    def solve(self, b: Array, rho: Array | float) -> Array:
        coef = self.coefficients(b) / (self.gram_diagonal() + rho)
        return self.from_coefficients(coef).astype(b.dtype)

    def pinv(self, y: Array) -> Array:
        g_inv = pinv_diagonal(self.gram_diagonal(), self.rcond)
        return self.from_coefficients(g_inv * self.coefficients(self.adjoint(y))).astype(y.dtype)


def pinv_diagonal(gram: Array, rcond: float) -> Array:
    """``g⁺`` of a non-negative diagonal ``g = σ²``: ``1/g`` where ``σ > rcond · max σ``, else 0
    (the cut of ``numpy.linalg.pinv`` on the singular values)."""
    root = jnp.sqrt(gram)
    keep = root > rcond * jnp.max(root)
    return jnp.where(keep, 1.0 / jnp.where(keep, gram, 1.0), 0.0)


# ---------------------------------------------------------------------------- validation
def _check_shape(shape: Any) -> tuple[int, int, int]:
    ok = (isinstance(shape, (tuple, list)) and len(shape) == 3
          and all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape))
    if not ok:
        raise ValueError(f"shape must be (H, W, C) with positive integers, got {shape!r}")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def _check_fraction(name: str, value: Any, low_open: bool = True) -> float:
    """``value`` in (0, 1] (``low_open``) or [0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    low_ok = v > 0 if low_open else v >= 0
    if not (math.isfinite(v) and low_ok and v <= 1):
        allowed = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return v


def _check_count(what: str, n: int, n_fixed: int, total: int, detail: str) -> None:
    if n < 1:
        raise ValueError(f"{detail} keeps no {what} (at least 1 is needed)")
    if n_fixed > n:
        raise ValueError(f"{detail}: the {n_fixed} always-kept central {what} exceed the "
                         f"{n} {what} kept in total; lower center_fraction")
    if n > total:  # pragma: no cover - guarded by the fraction checks
        raise ValueError(f"{detail} keeps {n} of {total} {what}")


# ---------------------------------------------------------------------------- sampling helpers
def _centre_indices(n: int, n_centre: int) -> np.ndarray:
    """Indices (unshifted FFT order) of the ``n_centre`` lowest frequencies of an axis of ``n``:
    the central block of the fftshift-ed axis."""
    start = (n - n_centre + 1) // 2
    return np.fft.ifftshift(np.arange(n))[start:start + n_centre]


def _random_subset(key: Array, total: int, fixed: np.ndarray, n_keep: int, dtype) -> Array:
    """0/1 vector of length ``total``: the ``fixed`` indices plus ``n_keep − len(fixed)`` others
    drawn uniformly without replacement (exactly ``n_keep`` ones)."""
    fixed = np.unique(np.asarray(fixed, np.int64))
    free = np.setdiff1d(np.arange(total), fixed)
    chosen = jax.random.permutation(key, jnp.asarray(free))[:n_keep - fixed.size]
    keep = jnp.zeros((total,), dtype).at[jnp.asarray(fixed, jnp.int32)].set(1)
    return keep.at[chosen].set(1)


# ---------------------------------------------------------------------------- generators
def orthonormal_dct(shape: tuple[int, int, int] = (64, 64, 3),
                    dtype=jnp.float32) -> SampledOrthonormal:
    """The full orthonormal 2-D DCT-II per channel (``U`` itself: every coefficient kept)."""
    shape = _check_shape(shape)
    return SampledOrthonormal(mask=jnp.ones(shape, dtype), in_shape=shape, transform="dct")


def orthonormal_fft(shape: tuple[int, int, int] = (64, 64, 3),
                    dtype=jnp.float32) -> SampledOrthonormal:
    """The full unitary 2-D DFT per channel, y of shape (H, W, C, 2) (real, imaginary)."""
    shape = _check_shape(shape)
    return SampledOrthonormal(mask=jnp.ones(shape, dtype), in_shape=shape, transform="fft")


def fourier_mask_cartesian(key: Array, shape: tuple[int, int, int] = (64, 64, 3),
                           accel: float = 4.0, center_fraction: float = 0.08,
                           dtype=jnp.float32) -> SampledOrthonormal:
    """MRI-like Cartesian k-space sampling: whole rows (frequencies along the H axis) are kept.

    ``round(H / accel)`` rows are kept: the ``round(center_fraction · H)`` lowest-frequency rows
    always, the others drawn uniformly without replacement. The same rows for every channel.
    The mask is in general not Hermitian symmetric (see the module docstring: the solve stays
    exact).
    """
    h, w, c = _check_shape(shape)
    try:
        accel_f = float(accel)
    except (TypeError, ValueError):
        raise TypeError(f"accel must be a number, got {accel!r}") from None
    if not (math.isfinite(accel_f) and accel_f >= 1):
        raise ValueError(f"accel must be a finite number >= 1 (keep H/accel rows), got {accel!r}")
    cf = _check_fraction("center_fraction", center_fraction, low_open=False)
    n_keep, n_centre = int(round(h / accel_f)), int(round(cf * h))
    _check_count("rows", n_keep, n_centre, h,
                 f"accel={accel!r} on {h} rows (round(H/accel) = {n_keep})")
    rows = _random_subset(key, h, _centre_indices(h, n_centre), n_keep, dtype)
    mask = jnp.broadcast_to(rows[:, None, None], (h, w, c))
    return SampledOrthonormal(mask=mask, in_shape=(h, w, c), transform="fft")


def fourier_mask_random(key: Array, shape: tuple[int, int, int] = (64, 64, 3),
                        keep_fraction: float = 0.25, center_fraction: float = 0.08,
                        dtype=jnp.float32) -> SampledOrthonormal:
    """Random 2-D k-space sampling: ``round(keep_fraction · H · W)`` frequencies are kept.

    The central ``round(center_fraction · H) × round(center_fraction · W)`` block of lowest
    frequencies is always kept, the others are drawn uniformly without replacement. The same
    frequencies for every channel.
    """
    h, w, c = _check_shape(shape)
    kf = _check_fraction("keep_fraction", keep_fraction)
    cf = _check_fraction("center_fraction", center_fraction, low_open=False)
    n_keep = int(round(kf * h * w))
    ch, cw = _centre_indices(h, int(round(cf * h))), _centre_indices(w, int(round(cf * w)))
    fixed = (ch[:, None] * w + cw[None, :]).ravel()
    _check_count("frequencies", n_keep, fixed.size, h * w,
                 f"keep_fraction={keep_fraction!r} on {h}x{w}")
    freq = _random_subset(key, h * w, fixed, n_keep, dtype).reshape(h, w)
    mask = jnp.broadcast_to(freq[:, :, None], (h, w, c))
    return SampledOrthonormal(mask=mask, in_shape=(h, w, c), transform="fft")


def subsampled_dct(key: Array, shape: tuple[int, int, int] = (64, 64, 3), ratio: float = 0.25,
                   random_signs: bool = True, dtype=jnp.float32) -> SampledOrthonormal:
    """Structured compressive sensing: ``round(ratio · H·W·C)`` DCT coefficients of ``s ⊙ x``.

    The kept coefficients are drawn uniformly without replacement over all H·W·C; with
    ``random_signs`` (default) ``s`` is a random ±1 pattern, which spreads every image's energy
    over all coefficients (a structurally random matrix: ``AAᵀ = I`` like a Gaussian CS matrix
    with orthonormal rows, at the cost of two DCTs instead of an m×D product).
    """
    shape = _check_shape(shape)
    r = _check_fraction("ratio", ratio)
    total = math.prod(shape)
    n_keep = int(round(r * total))
    _check_count("coefficients", n_keep, 0, total, f"ratio={ratio!r} on {total} coefficients")
    k_mask, k_sign = jax.random.split(key)
    mask = _random_subset(k_mask, total, np.zeros((0,), np.int64), n_keep, dtype).reshape(shape)
    signs = jax.random.rademacher(k_sign, shape, dtype) if random_signs else None
    return SampledOrthonormal(mask=mask, in_shape=shape, signs=signs, transform="dct")
