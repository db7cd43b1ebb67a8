"""OneNet pre-training perturbation family (spec §1.6), as pure, jit-able, batched JAX.

The original OneNet projector was trained to map ``v = perturb(x)`` back to ``x`` where the
perturbation (``projector/noise.py: add_noise``) is, per image, in the [0, 1] domain:

1. with probability 0.3 the image is made *blocky*: ``ratio ~ U[0.2, 0.95)``, nearest-neighbour
   downscale to ``int(H·ratio) × int(W·ratio)`` and nearest-neighbour upscale back to ``H × W``.
   The original goes through ``scipy.misc.imresize`` on a float image, which first byte-scales the
   image by *its own* min / max (over all pixels and channels, before the downscale) to uint8, so
   the blocky image is contrast-stretched to [0, 1] and quantised to multiples of 1/255
   (a constant image, whose range is 0, becomes all zeros: ``bytescale`` then divides by 1);
2. ``σ ~ U[0.05, 0.5)``; ``n = σ·N(0, 1)`` of shape (H, W, C);
3. per channel, a low-resolution map of ``r × c`` entries ``~ U[−1.732, 1.732]`` (unit variance)
   with ``r = max(round(H·U·0.09), 1)`` and ``c = max(round(W·U'·0.09), 1)`` drawn independently
   (1…6 for 64×64), upsampled bicubically (PIL, float mode) to ``H × W``; the channel's noise is
   multiplied by it (spatially varying std, sign flips allowed);
4. ``v = (blocky or original image) + n``; no clipping.

Design for ``jit`` (all shapes static, the sizes ``s``, ``r``, ``c`` traced):

* **Nearest neighbour.** Down- then up-scaling by a traced size ``s`` is one gather with a
  composed index map ``src(i) = down_s(up_s(i))``, where ``up_s`` (H ← s) and ``down_s`` (s ← H)
  are 1-D nearest index maps. Because ``H`` is static, the composed maps for *every* possible
  ``s = 1 … H`` are tabulated once in NumPy (an ``(H+1, H)`` int32 table, 16 KiB for 64) and the
  traced ``s`` just selects a row. ``nearest_mode`` picks the 1-D map:

  - ``"pil"`` (default): exactly what Pillow's ``Image.resize(..., NEAREST)`` does
    (``ImagingScaleAffine``): ``k ↦ trunc(x_k)`` with ``x_0 = ½·n_in/n_out`` and
    ``x_{k+1} = x_k + n_in/n_out`` accumulated in float64. This is the half-pixel rule
    ``⌊(k+½)·n_in/n_out⌋`` except where that product is an exact integer, where the float
    accumulation lands just below it (e.g. 64 → 7, k = 3 gives 31, not 32).
  - ``"half_pixel"``: exact rational ``⌊(2k+1)·n_in / (2·n_out)⌋``.
  - ``"asymmetric"``: ``⌊k·n_in/n_out⌋`` (TF1 legacy ``resize_nearest_neighbor``,
    ``align_corners=False``; old PIL).

* **Bicubic.** The upsampling weights for a traced source size are tabulated in the same way: for
  each possible ``n = 1 … n_max`` an ``(H, n_max)`` weight matrix (zero columns beyond ``n``),
  built from the Keys kernel with ``a = −0.5``, half-pixel (align-corners = False) coordinates
  ``t = (i+½)·n/H − ½``, taps outside the source dropped and the remaining weights renormalised
  to sum 1. That is precisely Pillow's float-mode BICUBIC for upsampling (and also what
  ``jax.image.resize(method="cubic")`` computes); the tests check both to ~1e-6. The low-res
  map is always drawn at the maximum size ``n_max × n_max``; only its top-left ``r × c`` block
  receives non-zero weight, so the result has the distribution of the original.

Randomness comes only from the explicit ``key`` (one batch-wide uniform draw, split into
the per-image scalars, the normals and the map entries).
RNG bit streams of course differ from NumPy's; only the distribution is reproduced.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "NEAREST_MODES",
    "nearest_indices",
    "blocky_index_table",
    "blocky_image",
    "keys_cubic",
    "bicubic_weight_table",
    "bicubic_upsample",
    "max_map_size",
    "expected_map_power",
    "onenet_noise",
]

NEAREST_MODES = ("pil", "half_pixel", "asymmetric")


# ----------------------------------------------------------------------------- nearest neighbour


@functools.lru_cache(maxsize=None)
def _nearest_indices_cached(n_in: int, n_out: int, mode: str) -> np.ndarray:
    k = np.arange(n_out, dtype=np.int64)
    if mode == "pil":
        # Pillow ImagingScaleAffine: xo = a0 * 0.5; per output pixel: x = (int) xo; xo += a0.
        a0 = float(n_in) / float(n_out)
        out = np.empty(n_out, dtype=np.int64)
        xo = a0 * 0.5
        for j in range(n_out):
            out[j] = int(xo)
            xo += a0
    elif mode == "half_pixel":
        out = ((2 * k + 1) * n_in) // (2 * n_out)
    elif mode == "asymmetric":
        out = (k * n_in) // n_out
    else:
        raise ValueError(f"nearest_mode must be one of {NEAREST_MODES}, got {mode!r}.")
    out = np.clip(out, 0, n_in - 1).astype(np.int32)
    out.setflags(write=False)
    return out


def nearest_indices(n_in: int, n_out: int, mode: str = "pil") -> np.ndarray:
    """1-D nearest-neighbour source indices (length ``n_out``) for resizing ``n_in → n_out``.

    Static sizes only (NumPy); see the module docstring for the three conventions.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}.")
    return _nearest_indices_cached(int(n_in), int(n_out), str(mode))


@functools.lru_cache(maxsize=None)
def _blocky_table_cached(n: int, mode: str) -> np.ndarray:
    table = np.empty((n + 1, n), dtype=np.int32)
    table[0] = np.arange(n)  # s = 0 never happens (s is clipped to >= 1); identity placeholder
    for s in range(1, n + 1):
        down = nearest_indices(n, s, mode)  # length s: which of the n source pixels survives
        up = nearest_indices(s, n, mode)  # length n: which of the s small pixels is shown
        table[s] = down[up]
    table.setflags(write=False)
    return table


def blocky_index_table(n: int, mode: str = "pil") -> np.ndarray:
    """``(n+1, n)`` int32 table; row ``s`` maps output pixel ``i`` of a nearest-neighbour
    downscale ``n → s`` followed by an upscale ``s → n`` to its source pixel. Row 0 is unused."""
    return _blocky_table_cached(int(n), str(mode))


def _down_size(n: int, ratio: jax.Array) -> jax.Array:
    """``int(n·ratio)`` (the size ``scipy.misc.imresize`` asks PIL for), clipped to [1, n]."""
    s = jnp.floor(jnp.asarray(ratio, jnp.float32) * n).astype(jnp.int32)
    return jnp.clip(s, 1, n)


def _stretch(image: jax.Array, contrast_stretch: bool, quantize: bool) -> jax.Array:
    """``scipy.misc.bytescale`` semantics (whole image, all channels), optionally without the
    uint8 rounding; returns values in [0, 1]."""
    x = image
    if contrast_stretch:
        lo = jnp.min(x)
        rng = jnp.max(x) - lo
        rng = jnp.where(rng == 0, jnp.ones_like(rng), rng)  # bytescale: cscale == 0 → 1
        x = (x - lo) / rng
    if quantize:
        x = jnp.floor(jnp.clip(x, 0.0, 1.0) * 255.0 + 0.5) / 255.0
    return x


def blocky_image(
    image: jax.Array,
    ratio: jax.Array | float,
    *,
    contrast_stretch: bool = True,
    quantize: bool = True,
    nearest_mode: str = "pil",
) -> jax.Array:
    """Make one image (H, W, C) blocky: byte-scale (optional), NN downscale by ``ratio`` to
    ``int(H·ratio) × int(W·ratio)`` and NN upscale back. ``ratio`` may be traced."""
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C), got {image.shape}.")
    h, w, _ = image.shape
    sh = _down_size(h, ratio)
    sw = _down_size(w, ratio)
    rows = jnp.asarray(blocky_index_table(h, nearest_mode))[sh]
    cols = jnp.asarray(blocky_index_table(w, nearest_mode))[sw]
    x = _stretch(image, contrast_stretch, quantize)
    return x[rows][:, cols]


# ----------------------------------------------------------------------------- bicubic


def keys_cubic(t: Any, a: float = -0.5) -> Any:
    """Keys' cubic convolution kernel (PIL / jax ``cubic`` use a = −0.5). Works on NumPy or JAX."""
    xp = jnp if isinstance(t, jax.Array) else np
    t = xp.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return xp.where(t < 1.0, near, xp.where(t < 2.0, far, 0.0))


@functools.lru_cache(maxsize=None)
def _bicubic_table_cached(n_out: int, n_in_max: int) -> np.ndarray:
    table = np.zeros((n_in_max + 1, n_out, n_in_max), dtype=np.float64)
    i = np.arange(n_out, dtype=np.float64)[:, None]
    for n in range(1, n_in_max + 1):
        j = np.arange(n, dtype=np.float64)[None, :]
        if n > n_out:
            raise ValueError("bicubic_weight_table only implements upsampling (n_in <= n_out).")
        center = (i + 0.5) * (n / n_out)  # source coordinate of output pixel i (pixel units)
        wts = keys_cubic(j + 0.5 - center)  # taps outside [0, n) are simply absent
        wts = wts / wts.sum(axis=1, keepdims=True)  # PIL renormalises the clipped window
        table[n, :, :n] = wts
    table.setflags(write=False)
    return table


def bicubic_weight_table(n_out: int, n_in_max: int) -> np.ndarray:
    """``(n_in_max+1, n_out, n_in_max)`` float64; slice ``n`` is the PIL-bicubic upsampling matrix
    ``n → n_out`` padded with zero columns. Slice 0 is all zeros (unused)."""
    return _bicubic_table_cached(int(n_out), int(n_in_max))


def bicubic_upsample(
    lowres: jax.Array, rows: jax.Array, cols: jax.Array, out_shape: tuple[int, int]
) -> jax.Array:
    """Bicubically upsample the top-left ``rows × cols`` block of ``lowres`` (R_max, C_max) to
    ``out_shape``; ``rows`` / ``cols`` may be traced (1 ≤ rows ≤ R_max, 1 ≤ cols ≤ C_max)."""
    r_max, c_max = lowres.shape
    h, w = out_shape
    wr = jnp.asarray(bicubic_weight_table(h, r_max), lowres.dtype)[rows]  # (H, R_max)
    wc = jnp.asarray(bicubic_weight_table(w, c_max), lowres.dtype)[cols]  # (W, C_max)
    hp = jax.lax.Precision.HIGHEST
    return jnp.einsum("ir,rc,jc->ij", wr, lowres, wc, precision=hp)


def max_map_size(n: int, map_size_max_frac: float) -> int:
    """Largest value of ``max(round(n·U·frac), 1)`` for U ∈ [0, 1) (static)."""
    return max(int(np.ceil(n * map_size_max_frac)), 1)


def expected_map_power(
    map_rows: Any, map_cols: Any, height: int, width: int, *, map_amplitude: float = 1.732,
    map_size_max_frac: float = 0.09,
) -> np.ndarray:
    """E[map²] averaged over the H×W pixels, for given low-res sizes (NumPy, elementwise).

    A pixel of the upsampled map is ``Σ w_r w_c M`` with i.i.d. zero-mean entries of variance
    ``a²/3``, so its mean square is ``a²/3 · Σ w_r² · Σ w_c²``; averaging over pixels factorises.
    Equal to ``a²/3 ≈ 1`` for a 1×1 map and smaller otherwise (interpolation smooths).
    """
    r_max = max_map_size(height, map_size_max_frac)
    c_max = max_map_size(width, map_size_max_frac)
    row_pow = (bicubic_weight_table(height, r_max) ** 2).sum(-1).mean(-1)  # (r_max+1,)
    col_pow = (bicubic_weight_table(width, c_max) ** 2).sum(-1).mean(-1)
    var = map_amplitude**2 / 3.0
    return var * row_pow[np.asarray(map_rows)] * col_pow[np.asarray(map_cols)]


# ----------------------------------------------------------------------------- the noise family


def _one_image(
    image: jax.Array,
    u: jax.Array,
    gauss: jax.Array,
    lowres: jax.Array | None,
    *,
    blocky_prob: float,
    ratio_range: tuple[float, float],
    sigma_range: tuple[float, float],
    map_size_max_frac: float,
    contrast_stretch: bool,
    quantize_blocky: bool,
    nearest_mode: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Deterministic part for one image, given its random draws:
    ``u`` (3 + 2C,) uniforms [coin, ratio, σ, map rows (C), map cols (C)], ``gauss`` (H, W, C)
    standard normals, ``lowres`` (C, R_max, C_max) map entries (None: no map)."""
    h, w, c = image.shape
    dtype = image.dtype

    # 1. blocky (computed for every image, selected by the coin: vmap has no per-item branches)
    is_blocky = u[0] < blocky_prob
    ratio = ratio_range[0] + u[1] * (ratio_range[1] - ratio_range[0])
    blocky = blocky_image(
        image, ratio, contrast_stretch=contrast_stretch, quantize=quantize_blocky,
        nearest_mode=nearest_mode,
    ).astype(dtype)
    base = jnp.where(is_blocky, blocky, image)

    # 2. Gaussian noise with per-image σ (as the original: σ = lo + U·(hi − lo))
    sigma = sigma_range[0] + u[2] * (sigma_range[1] - sigma_range[0])
    noise = gauss * sigma.astype(dtype)

    # 3. spatially varying, per-channel bicubic noise map
    r_max = max_map_size(h, map_size_max_frac)
    c_max = max_map_size(w, map_size_max_frac)
    u_rows, u_cols = u[3:3 + c], u[3 + c:]
    map_rows = jnp.clip(jnp.round(h * u_rows * map_size_max_frac).astype(jnp.int32), 1, r_max)
    map_cols = jnp.clip(jnp.round(w * u_cols * map_size_max_frac).astype(jnp.int32), 1, c_max)
    if lowres is not None:
        maps = jax.vmap(lambda m, r, cc: bicubic_upsample(m, r, cc, (h, w)))(
            lowres, map_rows, map_cols
        )  # (C, H, W)
        noise = noise * jnp.moveaxis(maps, 0, -1)

    info = {
        "blocky": is_blocky,
        "ratio": ratio,
        "down_h": _down_size(h, ratio),
        "down_w": _down_size(w, ratio),
        "sigma": sigma,
        "map_rows": map_rows,
        "map_cols": map_cols,
    }
    return base + noise, info


def _check_noise_args(images: Any, nearest_mode: str, map_size_max_frac: float,
                      ratio_range: tuple[float, float], sigma_range: tuple[float, float]
                      ) -> jax.Array:
    """``images`` as a (B, H, W, C) float array, after checking every option of onenet_noise."""
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(
            f"images must be floating point in [0, 1], got {images.dtype}; use x.astype(jnp.float32)/255."
        )
    if nearest_mode not in NEAREST_MODES:
        raise ValueError(f"nearest_mode must be one of {NEAREST_MODES}, got {nearest_mode!r}.")
    if not 0.0 < map_size_max_frac <= 1.0:
        raise ValueError(f"map_size_max_frac must be in (0, 1], got {map_size_max_frac}.")
    if not 0.0 < ratio_range[0] <= ratio_range[1] <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 < lo <= hi <= 1, got {ratio_range}.")
    if not 0.0 <= sigma_range[0] <= sigma_range[1]:
        raise ValueError(f"sigma_range must satisfy 0 <= lo <= hi, got {sigma_range}.")
    return images


def _draw_noise_randomness(key: jax.Array, images: jax.Array, map_size_max_frac: float,
                           map_amplitude: float, spatially_varying: bool
                           ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """All randomness of onenet_noise: per-image uniforms (B, 3 + 2C), Gaussian noise
    (B, H, W, C) and the low-res maps (B, C, r_max, c_max) or None.

    It is ONE batch-wide uniform draw on (−1, 1), split into the per-image scalars, the Gaussian
    noise (√2·erfinv(u), exactly how jax.random.normal makes normals) and the map entries. Each
    separate RNG call added ~1 s of XLA CPU compile time here; the per-image work is
    deterministic."""
    b, h, w, c = images.shape
    r_max = max_map_size(h, map_size_max_frac)
    c_max = max_map_size(w, map_size_max_frac)
    dtype = images.dtype
    n_u = 3 + 2 * c
    n_g = h * w * c
    n_m = c * r_max * c_max if spatially_varying else 0
    lo = float(np.nextafter(np.asarray(-1.0, dtype), np.asarray(0.0, dtype)))
    flat = jax.random.uniform(key, (b, n_u + n_g + n_m), dtype, lo, 1.0)
    u = (flat[:, :n_u] + 1.0) * 0.5  # [0, 1): [coin, ratio, σ, map rows (C), map cols (C)]
    gauss = (float(np.sqrt(2.0)) * jax.lax.erf_inv(flat[:, n_u:n_u + n_g])).reshape(b, h, w, c)
    lowres = None
    if spatially_varying:
        lowres = (map_amplitude * flat[:, n_u + n_g:]).reshape(b, c, r_max, c_max)
    return u, gauss, lowres


def onenet_noise(
    key: jax.Array,
    images: jax.Array,
    *,
    blocky_prob: float = 0.3,
    ratio_range: tuple[float, float] = (0.2, 0.95),
    sigma_range: tuple[float, float] = (0.05, 0.5),
    map_size_max_frac: float = 0.09,
    map_amplitude: float = 1.732,
    contrast_stretch: bool = True,
    quantize_blocky: bool = True,
    nearest_mode: str = "pil",
    spatially_varying: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Perturb a batch of [0,1] images (B, H, W, C) with OneNet's pre-training noise (spec §1.6).

    Args:
      key: PRNG key (the only source of randomness; same key and shape → same output).
      images: (B, H, W, C) floating images in the [0, 1] domain.
      blocky_prob: probability of the nearest-neighbour blocky degradation (0.3).
      ratio_range: ``[lo, hi)`` of the uniform downscale ratio (0.2, 0.95).
      sigma_range: ``[lo, hi)`` of the uniform per-image noise std (0.05, 0.5), [0,1] domain
        (it doubles in the network's [-1, 1] domain).
      map_size_max_frac: low-res map sizes are ``max(round(H·U·frac), 1)`` (0.09 = 0.1 − 0.01 in
        the original's parameterisation), so at most ``ceil(H·frac)``.
      map_amplitude: map entries ~ ``U[−a, a]`` (1.732 → variance ≈ 1).
      contrast_stretch: byte-scale blocky images to their own [min, max] → [0, 1] (the original's
        ``scipy.misc.imresize`` quirk; min / max over all pixels and channels *before* the
        downscale, so a dropped extreme pixel leaves the blocky range inside [0, 1]).
      quantize_blocky: round blocky images to multiples of 1/255 (the same quirk's uint8 step).
      nearest_mode: ``"pil"`` (default), ``"half_pixel"`` or ``"asymmetric"``; see module doc.
      spatially_varying: multiply the noise by the bicubic maps (original: on). ``False`` gives
        plain i.i.d. Gaussian noise of std σ.

    Returns:
      ``(noisy, info)``: ``noisy`` (B, H, W, C), not clipped; ``info`` dict of per-image arrays:
      ``blocky`` (B,) bool, ``ratio`` (B,) (drawn for every image, used only where blocky),
      ``down_h`` / ``down_w`` (B,) int32 = ``int(H·ratio)`` / ``int(W·ratio)`` (likewise),
      ``sigma`` (B,), ``map_rows`` / ``map_cols`` (B, C) int32 (reported even when
      ``spatially_varying=False``).

    All options are Python values (static under ``jax.jit``: pass them through
    ``static_argnames`` or close over them); ``key`` and ``images`` may be traced.
    """
    images = _check_noise_args(images, nearest_mode, map_size_max_frac, ratio_range, sigma_range)
    u, gauss, lowres = _draw_noise_randomness(key, images, map_size_max_frac, map_amplitude,
                                              spatially_varying)
    fn = functools.partial(
        _one_image,
        blocky_prob=float(blocky_prob),
        ratio_range=(float(ratio_range[0]), float(ratio_range[1])),
        sigma_range=(float(sigma_range[0]), float(sigma_range[1])),
        map_size_max_frac=float(map_size_max_frac),
        contrast_stretch=bool(contrast_stretch),
        quantize_blocky=bool(quantize_blocky),
        nearest_mode=nearest_mode,
    )
    if lowres is None:
        return jax.vmap(lambda im, uu, g: fn(im, uu, g, None))(images, u, gauss)
    return jax.vmap(fn)(images, u, gauss, lowres)
