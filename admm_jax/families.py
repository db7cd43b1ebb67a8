"""Randomised operator families: what the general prior is trained on, and what it never sees.

A *family* draws one operator (and a noise level) from a key: e.g. "inpainting with a random
fraction of pixels kept", "Gaussian blur of random width", "compressive sensing at a random
ratio". The general prior is trained on mini-batches that mix training families, every sample
with its own operator and noise level σ ~ U[0, 0.1] (images in [0, 1]): first the nine
randomised :data:`DEFAULT_FAMILIES` (mix "families", ``experiments/train_general_prior.sh``),
then the same plus the paper's three mask geometries (mix "families+paper",
``experiments/train_general_prior_stage2.sh``); the named mixes are :data:`FAMILY_MIXES`
(two of them, "families+paper+zeros" and "families+paper+cfa+aniso", add families related to
the held-out ones for A/B probes; RESULTS.md §7.0b: neither helped).

Families that share an operator class share a *group* (all mask families are
:class:`~admm_jax.operators.Mask`, Fourier and compressive-sensing sampling are
:class:`~admm_jax.operators.SampledOrthonormal`, ...). A training batch is laid out as a fixed
number of samples per group (:class:`FamilyMix`), so the data step of a batch of K families
costs one exact solve per sample, not K (:class:`~admm_jax.operators.groups.OperatorGroups`);
within a group every sample draws its family with the group's probabilities.

Held-out families (:data:`HELD_OUT_FAMILIES`) are kept out of training on purpose and measure
generalisation: Bayer demosaicing, Cartesian (row-wise) Fourier subsampling, ×3
super-resolution and motion blur.

All generators take a key and the image shape (H, W, C) and return ONE operator; they are
traceable in their random parameters (``jax.vmap`` over keys gives a batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    LinearOperator,
    Mask,
    SampledOrthonormal,
    block_mask,
    circular_kernel,
    fourier_mask_cartesian,
    pixelwise_mask,
    scattered_mask,
)
from admm_jax.operators.groups import OperatorGroups

Array = jax.Array
Shape = tuple[int, int, int]
Generator = Callable[[Array, Shape], LinearOperator]

#: noise std range of the training families (images in [0, 1])
NOISE_RANGE = (0.0, 0.1)
#: support of the random Gaussian blurs (taps per side) and their width range (pixels)
BLUR_TAPS = 17
BLUR_SIGMA_RANGE = (0.5, 2.5)
BOX_TAPS = 11
BOX_SIZE_RANGE = (3.0, 9.0)
DISK_RADIUS_RANGE = (1.5, 4.5)
#: anisotropic Gaussian blurs: width along the long and the short axis (pixels)
ANISO_LONG_RANGE = (1.0, 3.5)
ANISO_SHORT_RANGE = (0.3, 1.0)


# --------------------------------------------------------------------------- mask families
def _float():
    """The default float dtype (float32; float64 when ``jax_enable_x64`` is on, for tests)."""
    return jnp.result_type(float)


def _uniform(key: Array, low: float, high: float) -> Array:
    return jax.random.uniform(key, (), minval=low, maxval=high)


def random_density_mask(key: Array, shape: Shape) -> Mask:
    """Keep each pixel with a probability drawn from U[0.1, 0.9]; half of the draws drop
    colour channels independently (as the paper's pixelwise inpainting), half whole pixels."""
    k_p, k_mode, k_m = jax.random.split(key, 3)
    keep = _uniform(k_p, 0.1, 0.9)
    u_entry = jax.random.uniform(k_m, shape)
    u_pixel = jnp.broadcast_to(u_entry[..., :1], shape)
    u = jnp.where(jax.random.bernoulli(k_mode), u_entry, u_pixel)
    return Mask(mask=(u < keep).astype(_float()), in_shape=tuple(shape))


def _boxes_mask(shape: Shape, rows: Array, cols: Array, hs: Array, ws: Array,
                active: Array) -> Array:
    h, w, _ = shape
    r, c = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    in_r = (r >= rows[:, None]) & (r < rows[:, None] + hs[:, None])
    in_c = (c >= cols[:, None]) & (c < cols[:, None] + ws[:, None])
    covered = jnp.any(in_r[:, :, None] & in_c[:, None, :] & active[:, None, None], axis=0)
    return jnp.broadcast_to(~covered[:, :, None], shape).astype(_float())


def scattered_holes(key: Array, shape: Shape, max_boxes: int = 20) -> Mask:
    """1–``max_boxes`` square holes (all channels), each of side U{2, …, H/4}, anywhere."""
    h, w, _ = shape
    k_n, k_s, k_r, k_c = jax.random.split(key, 4)
    n = jax.random.randint(k_n, (), 1, max_boxes + 1)
    side = jax.random.randint(k_s, (max_boxes,), 2, max(3, h // 4 + 1))
    rows = jax.random.randint(k_r, (max_boxes,), 0, h) - side // 2
    cols = jax.random.randint(k_c, (max_boxes,), 0, w) - side // 2
    active = jnp.arange(max_boxes) < n
    return Mask(mask=_boxes_mask(shape, rows, cols, side, side, active), in_shape=tuple(shape))


def block_hole(key: Array, shape: Shape) -> Mask:
    """One rectangular hole of sides U[0.1, 0.45]·(H, W) at a uniform random position."""
    h, w, _ = shape
    k_h, k_w, k_r, k_c = jax.random.split(key, 4)
    bh = jnp.round(_uniform(k_h, 0.1, 0.45) * h).astype(jnp.int32)
    bw = jnp.round(_uniform(k_w, 0.1, 0.45) * w).astype(jnp.int32)
    r0 = jnp.floor(jax.random.uniform(k_r) * (h - bh + 1)).astype(jnp.int32)
    c0 = jnp.floor(jax.random.uniform(k_c) * (w - bw + 1)).astype(jnp.int32)
    one = jnp.ones((1,), bool)
    m = _boxes_mask(shape, r0[None], c0[None], bh[None], bw[None], one)
    return Mask(mask=m, in_shape=tuple(shape))


def line_drops(key: Array, shape: Shape) -> Mask:
    """Drop a fraction U[0.1, 0.5] of the rows, of the columns, or of both (1/3 each)."""
    h, w, _ = shape
    k_f, k_mode, k_r, k_c = jax.random.split(key, 4)
    frac = _uniform(k_f, 0.1, 0.5)
    mode = jax.random.randint(k_mode, (), 0, 3)  # 0 rows, 1 columns, 2 both
    drop_r = (jax.random.uniform(k_r, (h,)) < frac) & (mode != 1)
    drop_c = (jax.random.uniform(k_c, (w,)) < frac) & (mode != 0)
    keep = ~(drop_r[:, None] | drop_c[None, :])
    return Mask(mask=jnp.broadcast_to(keep[:, :, None], shape).astype(_float()),
                in_shape=tuple(shape))


def random_cfa_mask(key: Array, shape: Shape) -> Mask:
    """Random colour filter array: every pixel measures exactly one colour channel, drawn
    independently per pixel, the channel probabilities themselves random (weights U[0.5, 1.5],
    normalised). Never periodic, unlike the held-out Bayer array (a fixed 2×2 tile)."""
    h, w, c = shape
    k_w, k_c = jax.random.split(key)
    weights = jax.random.uniform(k_w, (c,), minval=0.5, maxval=1.5)
    channel = jax.random.categorical(k_c, jnp.log(weights), shape=(h, w))
    return Mask(mask=jax.nn.one_hot(channel, c, dtype=_float()), in_shape=tuple(shape))


# --------------------------------------------------------------------------- other families
def gaussian_psf(sigma: Array, taps: int = BLUR_TAPS) -> Array:
    """Normalised isotropic Gaussian point-spread function (taps, taps), ``sigma`` traceable."""
    r = jnp.arange(taps) - taps // 2
    g = jnp.exp(-0.5 * (r / sigma) ** 2)
    psf = jnp.outer(g, g)
    return psf / psf.sum()


def random_gaussian_blur(key: Array, shape: Shape) -> CircularConvolution:
    """Circular Gaussian blur of width σ_b ~ U[0.5, 2.5] px (pinv truncated at rcond 0.05)."""
    sigma = _uniform(key, *BLUR_SIGMA_RANGE)
    return CircularConvolution(kernel=circular_kernel(gaussian_psf(sigma), shape[:2]),
                               in_shape=tuple(shape), rcond=0.05)


def _rotated_taps(angle: Array, taps: int) -> tuple[Array, Array]:
    """Coordinates (px) of a (taps, taps) PSF grid along the direction ``angle`` (radians, from
    the column axis towards the row axis) and across it; the centre tap is the origin."""
    r = jnp.arange(taps) - taps // 2
    yy, xx = jnp.meshgrid(r, r, indexing="ij")
    return (xx * jnp.cos(angle) + yy * jnp.sin(angle),
            -xx * jnp.sin(angle) + yy * jnp.cos(angle))


def anisotropic_gaussian_psf(sigma_long: Array, sigma_short: Array, angle: Array,
                             taps: int = BLUR_TAPS) -> Array:
    """Normalised elliptical Gaussian PSF (taps, taps): width ``sigma_long`` px along the
    direction ``angle`` (radians), ``sigma_short`` px across it; all three traceable."""
    along, across = _rotated_taps(angle, taps)
    psf = jnp.exp(-0.5 * ((along / sigma_long) ** 2 + (across / sigma_short) ** 2))
    return psf / psf.sum()


def random_anisotropic_blur(key: Array, shape: Shape) -> CircularConvolution:
    """Circular elliptical Gaussian blur in a uniformly random direction, widths σ_long ~
    U[1, 3.5] px and σ_short ~ U[0.3, 1] px: directional like motion blur (held out), but
    smooth, with no line-shaped support (pinv truncated at rcond 0.05)."""
    k_l, k_s, k_a = jax.random.split(key, 3)
    psf = anisotropic_gaussian_psf(_uniform(k_l, *ANISO_LONG_RANGE),
                                   _uniform(k_s, *ANISO_SHORT_RANGE),
                                   _uniform(k_a, 0.0, math.pi))
    return CircularConvolution(kernel=circular_kernel(psf, shape[:2]), in_shape=tuple(shape),
                               rcond=0.05)


def box_psf(size: Array, taps: int = BOX_TAPS) -> Array:
    """Normalised square uniform blur of side ``size`` px (edge pixels weighted by the part of
    them the square covers), ``size`` traceable; (taps, taps)."""
    r = jnp.arange(taps) - taps // 2
    side = jnp.clip(size / 2 - jnp.abs(r) + 0.5, 0.0, 1.0)
    psf = jnp.outer(side, side)
    return psf / psf.sum()


def disk_psf(radius: Array, taps: int = BOX_TAPS) -> Array:
    """Normalised defocus (uniform disk) blur of ``radius`` px, soft 1-px edge; (taps, taps)."""
    r = jnp.arange(taps) - taps // 2
    yy, xx = jnp.meshgrid(r, r, indexing="ij")
    psf = jnp.clip(radius - jnp.sqrt(xx ** 2 + yy ** 2) + 0.5, 0.0, 1.0)
    return psf / psf.sum()


def random_box_blur(key: Array, shape: Shape) -> CircularConvolution:
    """Circular square box blur of side ~ U[3, 9] px: a transfer function with zeros (unlike
    the Gaussian family's), along horizontal and vertical lines (pinv truncated at 0.05)."""
    size = _uniform(key, *BOX_SIZE_RANGE)
    return CircularConvolution(kernel=circular_kernel(box_psf(size), shape[:2]),
                               in_shape=tuple(shape), rcond=0.05)


def random_defocus_blur(key: Array, shape: Shape) -> CircularConvolution:
    """Circular defocus blur, a uniform disk of radius ~ U[1.5, 4.5] px: transfer-function
    zeros on rings (pinv truncated at 0.05)."""
    radius = _uniform(key, *DISK_RADIUS_RANGE)
    return CircularConvolution(kernel=circular_kernel(disk_psf(radius), shape[:2]),
                               in_shape=tuple(shape), rcond=0.05)


def random_cs(key: Array, shape: Shape) -> SampledOrthonormal:
    """Structured compressive sensing: each DCT coefficient of ``s ⊙ x`` (random ±1 signs)
    kept with a probability drawn from U[0.1, 0.5]."""
    k_r, k_m, k_s = jax.random.split(key, 3)
    ratio = _uniform(k_r, 0.1, 0.5)
    mask = (jax.random.uniform(k_m, shape) < ratio).astype(_float())
    signs = jax.random.rademacher(k_s, shape, _float())
    return SampledOrthonormal(mask=mask, in_shape=tuple(shape), signs=signs, transform="dct")


def random_fourier_2d(key: Array, shape: Shape, center_fraction: float = 0.08
                      ) -> SampledOrthonormal:
    """Random 2-D k-space sampling: each frequency kept with a probability U[0.1, 0.5], the
    central ``center_fraction``² block of low frequencies always (same for every channel)."""
    h, w, _ = shape
    k_r, k_m = jax.random.split(key)
    keep = _uniform(k_r, 0.1, 0.5)
    freq = jax.random.uniform(k_m, (h, w)) < keep
    fh, fw = np.abs(np.fft.fftfreq(h)), np.abs(np.fft.fftfreq(w))
    centre = (fh[:, None] <= center_fraction / 2) & (fw[None, :] <= center_fraction / 2)
    mask = jnp.broadcast_to((freq | centre)[:, :, None], shape).astype(_float())
    return SampledOrthonormal(mask=mask, in_shape=tuple(shape), transform="fft")


def super_resolution(factor: int) -> Generator:
    """``factor``× box-average downsampling (no randomness; the true adjoint)."""
    def make(_key: Array, shape: Shape) -> BoxDownsample:
        return BoxDownsample(in_shape=tuple(shape), factor=factor)
    make.__name__ = f"super_resolution_x{factor}"
    return make


# --------------------------------------------------------------------------- held-out families
def bayer_mask(_key: Array, shape: Shape) -> Mask:
    """Demosaicing: the Bayer RGGB colour-filter array (R at even rows/even columns, B at odd
    rows/odd columns, G elsewhere); one colour per pixel is measured."""
    h, w, c = shape
    if c != 3:
        raise ValueError(f"Bayer demosaicing needs 3 colour channels, got shape {shape}")
    r, col = np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2
    m = np.zeros(shape, _float())
    m[..., 0] = (r == 0) & (col == 0)
    m[..., 1] = (r + col) == 1
    m[..., 2] = (r == 1) & (col == 1)
    return Mask(mask=jnp.asarray(m), in_shape=tuple(shape))


def motion_psf(angle: Array, length: int = 9, taps: int = 15, width: float = 0.5) -> Array:
    """Linear motion blur of ``length`` px at ``angle`` (radians), anti-aliased, normalised."""
    along, across = _rotated_taps(angle, taps)
    weight = jnp.exp(-0.5 * (across / width) ** 2) * (jnp.abs(along) <= length / 2)
    return weight / weight.sum()


def motion_blur(key: Array, shape: Shape, length: int = 9) -> CircularConvolution:
    """Circular linear motion blur of ``length`` px in a uniformly random direction."""
    angle = jax.random.uniform(key, (), minval=0.0, maxval=math.pi)
    return CircularConvolution(kernel=circular_kernel(motion_psf(angle, length), shape[:2]),
                               in_shape=tuple(shape), rcond=0.05)


def cartesian_fourier(key: Array, shape: Shape) -> SampledOrthonormal:
    """MRI-like Cartesian sampling: 1/4 of the k-space rows, 8 % central rows always."""
    return fourier_mask_cartesian(key, shape, accel=4.0, center_fraction=0.08, dtype=_float())


# --------------------------------------------------------------------------- paper geometries
def paper_pixelwise(key: Array, shape: Shape) -> Mask:
    """The paper's PID mask: every (pixel, channel) entry dropped with probability 0.5."""
    return pixelwise_mask(key, shape, drop_prob=0.5, dtype=_float())


def paper_scattered(key: Array, shape: Shape) -> Mask:
    """The paper's SI mask: 10 boxes of side ``0.1·H`` at the released code's positions."""
    return scattered_mask(key, shape, box_size=max(1, int(0.1 * shape[0])), num_boxes=10,
                          dtype=_float())


def paper_block(_key: Array, shape: Shape) -> Mask:
    """The paper's BI mask: the centred square of side ``0.3·H`` missing."""
    return block_mask(shape, box_size=int(0.3 * shape[0]), dtype=_float())


# --------------------------------------------------------------------------- registries
@dataclass(frozen=True)
class Family:
    """One randomised operator family: its group (operator class), generator and meaning."""

    name: str
    group: str
    make: Generator
    title: str


TRAINING_FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("inpaint", "mask", random_density_mask, "inpainting, 10-90 % of pixels kept"),
    Family("holes", "mask", scattered_holes, "1-20 scattered square holes of random size"),
    Family("block", "mask", block_hole, "one rectangular hole, 10-45 % of each side"),
    Family("lines", "mask", line_drops, "10-50 % of rows and/or columns dropped"),
    Family("blur", "blur", random_gaussian_blur, "Gaussian blur, width 0.5-2.5 px"),
    Family("cs", "cs", random_cs, "compressive sensing (random-sign DCT), 10-50 %"),
    Family("fourier", "fourier", random_fourier_2d, "random 2-D k-space sampling, 10-50 %"),
    Family("sr2", "sr2", super_resolution(2), "super-resolution x2 (box average)"),
    Family("sr4", "sr4", super_resolution(4), "super-resolution x4 (box average)"),
    # the paper's three mask geometries exactly (its SR x2 is the family "sr2"); not in the
    # default mix, used by the "families+paper" mix
    Family("paper_pid", "mask", paper_pixelwise, "the paper's pixelwise inpainting mask (50 %)"),
    Family("paper_bi", "mask", paper_block, "the paper's centred block hole (30 % of the side)"),
    Family("paper_si", "mask", paper_scattered, "the paper's 10 scattered boxes (10 % side)"),
    # blurs whose transfer functions have zeros (motion blur's has too, along lines; it stays
    # held out); not in the default mix, used by "families+paper+zeros"
    Family("box_blur", "blur", random_box_blur, "square box blur, side 3-9 px"),
    Family("defocus_blur", "blur", random_defocus_blur, "defocus (disk) blur, radius 1.5-4.5 px"),
    # one colour per pixel at random (not the held-out Bayer tile) and directional smooth
    # blurs (not the held-out line-shaped motion blur); used by "families+paper+cfa+aniso"
    Family("random_cfa", "mask", random_cfa_mask, "random colour filter array, 1 channel/pixel"),
    Family("aniso_blur", "blur", random_anisotropic_blur,
           "elliptical Gaussian blur, widths 1-3.5 x 0.3-1 px, random direction"),
)}

#: the nine randomised families of the default mix (the shipped general prior's training)
DEFAULT_FAMILIES = ("inpaint", "holes", "block", "lines", "blur", "cs", "fourier", "sr2", "sr4")

#: never used in training (with the noise σ they are evaluated at)
HELD_OUT_FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("demosaic", "mask", bayer_mask, "demosaicing (Bayer RGGB)"),
    Family("fourier_rows", "fourier", cartesian_fourier,
           "Cartesian k-space rows, 4x acceleration"),
    Family("sr3", "sr3", super_resolution(3), "super-resolution x3 (box average)"),
    Family("motion_blur", "blur", motion_blur, "linear motion blur, 9 px, random direction"),
)}


def get_family(name: str) -> Family:
    """A training or held-out family by name (unknown names list the available ones)."""
    table = {**TRAINING_FAMILIES, **HELD_OUT_FAMILIES}
    if name not in table:
        raise ValueError(f"unknown operator family {name!r}; choose one of "
                         f"{sorted(TRAINING_FAMILIES)} (training) or "
                         f"{sorted(HELD_OUT_FAMILIES)} (held out)")
    return table[name]


# --------------------------------------------------------------------------- the mix
@dataclass(frozen=True)
class FamilyMix:
    """How a training batch is laid out: samples per group, family probabilities in a group.

    ``slots``: (group, number of samples) in batch order; the batch size is their sum.
    ``weights``: relative probability of each family inside its group (default equal).
    ``noise``: σ range, drawn uniformly per sample.
    """

    slots: tuple[tuple[str, int], ...] = (("mask", 4), ("blur", 2), ("cs", 1), ("fourier", 1),
                                          ("sr2", 1), ("sr4", 1))
    weights: tuple[tuple[str, float], ...] = ()
    noise: tuple[float, float] = NOISE_RANGE
    families: tuple[str, ...] = DEFAULT_FAMILIES

    @property
    def batch_size(self) -> int:
        return sum(n for _, n in self.slots)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.slots)

    def members(self, group: str) -> tuple[Family, ...]:
        return tuple(TRAINING_FAMILIES[n] for n in self.families
                     if TRAINING_FAMILIES[n].group == group)

    def probabilities(self, group: str) -> np.ndarray:
        """The probability of each member family (in :meth:`members` order) inside ``group``."""
        w = dict(self.weights)
        p = np.asarray([w.get(f.name, 1.0) for f in self.members(group)], np.float64)
        return p / p.sum()

    def validate(self) -> None:
        for n in self.families:
            if n not in TRAINING_FAMILIES:
                get_family(n)  # raises with the list for unknown names
                raise ValueError(f"family {n!r} is held out; it cannot be trained on")
        groups = {TRAINING_FAMILIES[n].group for n in self.families}
        for g, n in self.slots:
            if g not in groups:
                raise ValueError(f"slot group {g!r} has no family; groups: {sorted(groups)}")
            _checks.check_int(f"slots[{g!r}]", n, minimum=1)
        known = {f for f in self.families}
        for name, wt in self.weights:
            if name not in known:
                raise ValueError(f"weights: unknown family {name!r}; families: {sorted(known)}")
            _checks.check_positive(f"weights[{name!r}]", wt)
        lo, hi = self.noise
        if not (0.0 <= lo <= hi):
            raise ValueError(f"noise must be a range 0 <= low <= high, got {self.noise}")


#: Named training mixes (``TrainConfig.operator_mix`` / ``admm-jax train --operator-mix``).
#: "families": the nine randomised families (the shipped general prior's first 1,500 steps).
#: "families+paper": the same slots, with the paper's three mask geometries added to the mask
#: group (the centred block twice as likely as any other mask family, so about one exact BI
#: sample per batch): the randomised families alone put the paper's 19-px centred block in too
#: few samples, and the general prior stayed 2.3 dB below the specialised one there.
#: "families+paper+zeros": "families+paper" with two more blur families whose transfer
#: functions have zeros (box and defocus), a third of the blur group each.
#: "families+paper+cfa+aniso": "families+paper" with random colour filter arrays in the mask
#: group (weight 2: 0.8 samples per batch on average) and elliptical Gaussian blurs as half of the
#: blur group: the nearest training relatives of the held-out demosaicing and motion blur.
#: "families+paper+bi": "families+paper" with the centred block six times as likely as any other
#: mask family (two exact BI samples per batch on average instead of one), for a prior whose
#: start never learnt the paper's 19-px hole (the Gaussian denoiser): as a repair stage it
#: lowered BI, used from the start it raised BI by only 0.1 dB (RESULTS.md section 7.0e).
FAMILY_MIXES: dict[str, FamilyMix] = {
    "families": FamilyMix(),
    "families+paper": FamilyMix(families=DEFAULT_FAMILIES + ("paper_pid", "paper_bi", "paper_si"),
                                weights=(("paper_bi", 2.0),)),
    "families+paper+zeros": FamilyMix(
        families=DEFAULT_FAMILIES + ("paper_pid", "paper_bi", "paper_si", "box_blur",
                                     "defocus_blur"),
        weights=(("paper_bi", 2.0),)),
    "families+paper+cfa+aniso": FamilyMix(
        families=DEFAULT_FAMILIES + ("paper_pid", "paper_bi", "paper_si", "random_cfa",
                                     "aniso_blur"),
        weights=(("paper_bi", 2.0), ("random_cfa", 2.0))),
    "families+paper+bi": FamilyMix(
        families=DEFAULT_FAMILIES + ("paper_pid", "paper_bi", "paper_si"),
        weights=(("paper_bi", 6.0),)),
}


def get_family_mix(name: str) -> FamilyMix:
    """A named training mix of :data:`FAMILY_MIXES` (unknown names list the available ones)."""
    if name not in FAMILY_MIXES:
        raise ValueError(f"unknown family mix {name!r}; choose one of {sorted(FAMILY_MIXES)}")
    return FAMILY_MIXES[name]


class FamilyBatch(NamedTuple):
    """A measured training batch: operators, measurements, noise levels, family of each sample.

    op: :class:`OperatorGroups` (groups in ``mix.slots`` order); y: tuple, one measurement batch
    per group; sigma: (B,) noise std; family: (B,) int32 index into ``mix.families``.
    """

    op: OperatorGroups
    y: tuple
    sigma: Array
    family: Array


def _draw_group(mix: FamilyMix, group: str, key: Array, images: Array
                ) -> tuple[LinearOperator, Array]:
    """A batch of operators for ``images`` (one group's rows) and each sample's family index."""
    members = mix.members(group)
    shape = tuple(images.shape[1:])
    logits = jnp.log(jnp.asarray(mix.probabilities(group), jnp.float32))
    n = images.shape[0]
    k_choice, k_ops = jax.random.split(key)
    choice = jax.random.categorical(k_choice, logits, shape=(n,))
    keys = jax.random.split(k_ops, n)
    if len(members) == 1:
        op = jax.vmap(lambda k: members[0].make(k, shape))(keys)
        if not jax.tree_util.tree_leaves(op):  # nothing random (e.g. BoxDownsample): shared
            op = members[0].make(keys[0], shape)
    else:
        # the members share an operator class, so the draw picks leaves, not code paths
        def one(k, c):
            ops = [m.make(jax.random.fold_in(k, j), shape) for j, m in enumerate(members)]
            leaves = [jax.tree_util.tree_leaves(o) for o in ops]
            picked = [jnp.select([c == j for j in range(len(ops))], list(vals))
                      for vals in zip(*leaves)]
            return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(ops[0]), picked)
        op = jax.vmap(one)(keys, choice)
    index = jnp.asarray([mix.families.index(m.name) for m in members], jnp.int32)[choice]
    return op, index


def sample_family_batch(mix: FamilyMix, key: Array, images: Array) -> FamilyBatch:
    """Draw an operator and a noise level for every sample of ``images`` and measure them.

    images: (B, H, W, C) in [0, 1] with ``B == mix.batch_size``; rows follow ``mix.slots``.
    y_i = A_i x_i + σ_i ξ_i with σ_i ~ U[mix.noise] and ξ_i standard normal.
    """
    if images.shape[0] != mix.batch_size:
        raise ValueError(f"images has batch {images.shape[0]}, the family mix lays out "
                         f"{mix.batch_size} samples ({dict(mix.slots)})")
    k_groups, k_sigma, k_noise = jax.random.split(key, 3)
    sigma = jax.random.uniform(k_sigma, (images.shape[0],), minval=mix.noise[0],
                               maxval=mix.noise[1])
    ops, ys, fam, start = [], [], [], 0
    for g, (group, n) in enumerate(mix.slots):
        x = images[start:start + n]
        op, index = _draw_group(mix, group, jax.random.fold_in(k_groups, g), x)
        y = jax.vmap(lambda o, xx: o.apply(xx), in_axes=(0 if op.is_batched else None, 0))(
            op, x)
        noise = jax.random.normal(jax.random.fold_in(k_noise, g), y.shape, y.dtype)
        y = y + sigma[start:start + n].reshape((-1,) + (1,) * (y.ndim - 1)) * noise
        ops.append(op)
        ys.append(y)
        fam.append(index)
        start += n
    groups = OperatorGroups.create(ops, names=mix.group_names,
                                   sizes=tuple(n for _, n in mix.slots))
    return FamilyBatch(op=groups, y=tuple(ys), sigma=sigma, family=jnp.concatenate(fam))


def measure_family(family: str | Family, key: Array, images: Array, noise_std: float
                   ) -> tuple[LinearOperator, Array]:
    """One operator per image from ``family`` (keys ``fold_in(key, i)``) and
    ``y = A x + noise_std · ξ``.

    ``family``: a name of :data:`TRAINING_FAMILIES` or :data:`HELD_OUT_FAMILIES`, or a
    :class:`Family`; ``images``: (B, H, W, C) float in [0, 1]; ``noise_std``: σ of the white
    Gaussian noise ξ in the same [0, 1] units. Returns (a batch of B operators, ``y`` of shape
    (B,) + the operator's measurement shape, e.g. (B, H, W, C), or (B, H, W, C, 2) for
    k-space)."""
    fam = get_family(family) if isinstance(family, str) else family
    _checks.check_unit_images("images", images)
    shape = tuple(images.shape[1:])

    def one(i, x):
        k = jax.random.fold_in(key, i)
        op = fam.make(jax.random.fold_in(k, 0), shape)
        y = op.apply(x)
        return op, y + noise_std * jax.random.normal(jax.random.fold_in(k, 1), y.shape, y.dtype)

    return jax.vmap(one)(jnp.arange(images.shape[0]), images)
