"""Nearest-neighbour ×2 upsampling followed by a 'SAME' convolution, computed at low resolution.

Both priors upsample by nearest neighbour and then convolve: the paper's decoder layers
(``deconv3 … deconv1``: ×2, then a 4×4 convolution) and the U-Net's up path (×2, then 3×3).
Done literally, the convolution runs at the high resolution on an image in which every value
appears in a 2×2 block, so most of its multiply-adds repeat each other. Split by output
*phase* (the parity of the output row and column), each of the four output sub-grids is a small
convolution of the *low*-resolution input with a folded kernel (taps that read the same input
pixel summed), e.g. 3×3, 3×2, 2×3 and 2×2 instead of four 4×4: 25/64 of the multiply-adds for a
4×4 kernel, 16/36 for 3×3, in the forward pass and in both gradients.

The index maps need not be a clean ×2 repeat. The DU-ADMM code's own resize (``"custom"``,
``floor(k·(n−1)/(2n−1))``: 0,0,0,1,1,…,n−1) is a ×2 repeat shifted by one position with the
first and last samples clamped; together with the convolution's zero padding it differs from
the periodic (polyphase) model at two high-resolution positions per axis. Those differences
are added back exactly as thin corrections: one row (or column) of the image, convolved along
its length.

So ``upsample_conv(x, kernel, row_map, col_map)`` equals
``conv_same(x[:, row_map][:, :, col_map], kernel)`` up to float rounding (tested against a
float64 dense reference, values and gradients, in ``tests/test_upsample_conv.py``), for any
index maps; maps that are not a (shifted, clamped) ×2 repeat, and inputs smaller than
:data:`MIN_SPLIT_SIDE` (where the split is slower, measured), use the literal form.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.priors.conv import conv2d

__all__ = ["upsample_conv", "upsample_conv_reference", "phase_plan", "use_phase_split",
           "MIN_SPLIT_SIDE"]

#: The phase split is used when the input is at least this many pixels on each side. Measured
#: (benchmarks/bench_upsample_conv.py, 2-core CPU, forward + both gradients): from 16×16 on it
#: is 1.1–2× faster than the literal form; at 8×8 with 256 channels (the paper prior's first
#: decoder layer at width 0.25) the four small convolutions' weight gradients are 1.6× slower
#: and the edge corrections double that.
MIN_SPLIT_SIDE = 16


class AxisPlan(NamedTuple):
    """How one axis of "×2 NN-upsample then k-tap 'SAME' conv" splits into two phases.

    ``offsets[p][t]``: output ``2i + p`` reads input ``i + offsets[p][t]`` at tap ``t`` (in the
    periodic model; outside ``[0, n)`` it reads the zero padding). ``corrections``: the padded
    high-resolution positions ``m`` where the real map differs from that model, as
    ``(m, real source, model source)`` with −1 for the zero padding. ``real_map`` and
    ``model_map``: the source of every padded position ``m = −before … 2n − 1 + after``.
    """

    offsets: tuple[tuple[int, ...], tuple[int, ...]]
    corrections: tuple[tuple[int, int, int], ...]
    real_map: np.ndarray
    model_map: np.ndarray
    before: int


def phase_plan(index_map: np.ndarray, n_in: int, taps: int) -> AxisPlan | None:
    """The phase split of one axis, or None when the map is not a (shifted) ×2 repeat.

    index_map: (2·n_in,) source index of every high-resolution position (as from
    :func:`~admm_jax.priors.layers.resize_index_map`); taps: kernel size along the axis, with
    TensorFlow 'SAME' padding (``(taps−1)//2`` before).
    """
    idx = np.asarray(index_map, np.int64)
    n_out = idx.shape[0]
    before = (taps - 1) // 2
    after = taps - 1 - before
    if n_out != 2 * n_in or n_in < taps + 2 or np.any(np.diff(idx) < 0):
        return None
    positions = np.arange(-before, n_out + after)

    def real(m: int) -> int:
        return int(idx[m]) if 0 <= m < n_out else -1

    # the periodic model, read off the middle of the axis: position m ↔ source c(m) with
    # c(m + 2) = c(m) + 1
    mid = 2 * (n_in // 2)
    model_raw = np.asarray([real(mid + (m - mid) % 2) + (m - mid - (m - mid) % 2) // 2
                            for m in positions])
    inner = (positions >= 0) & (positions < n_out)
    if np.count_nonzero(model_raw[inner] != idx) > 2 * taps:
        return None          # not a (nearly) periodic ×2 map: use the literal form
    model = np.where((model_raw >= 0) & (model_raw < n_in), model_raw, -1)
    real_map = np.asarray([real(m) for m in positions])
    # output 2i + p, tap t reads position m = 2i + p + t − before, whose model source is
    # c(p + t − before) + i = model_raw[p + t] + i
    offsets = tuple(tuple(int(model_raw[p + t]) for t in range(taps)) for p in (0, 1))
    corrections = tuple((int(m), int(r), int(c)) for m, r, c in
                        zip(positions, real_map, model) if r != c)
    return AxisPlan(offsets, corrections, real_map, model, before)


def _fold(offsets: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """(smallest offset, 0/1 matrix summing the taps that read the same input sample)."""
    lo, hi = min(offsets), max(offsets)
    fold = np.zeros((hi - lo + 1, len(offsets)), np.float32)
    for t, o in enumerate(offsets):
        fold[o - lo, t] = 1.0
    return lo, fold


def _phases(x: jax.Array, kernel: jax.Array, rows: AxisPlan, cols: AxisPlan) -> jax.Array:
    """The periodic model: four low-resolution convolutions, interleaved. (B, 2H, 2W, O)."""
    b, h, w, _ = x.shape
    pad = kernel.shape[0] + kernel.shape[1]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = []
    for p in (0, 1):
        r0, fr = _fold(rows.offsets[p])
        row = []
        for q in (0, 1):
            c0, fc = _fold(cols.offsets[q])
            k = jnp.einsum("at,cu,tuio->acio", fr.astype(kernel.dtype), fc.astype(kernel.dtype),
                           kernel)
            window = xp[:, pad + r0:pad + r0 + h + k.shape[0] - 1,
                        pad + c0:pad + c0 + w + k.shape[1] - 1]
            row.append(conv2d(window, k, (1, 1), "VALID"))
        out.append(jnp.stack(row, axis=3))            # (B, H, W, 2, O)
    o = jnp.stack(out, axis=2)                         # (B, H, 2, W, 2, O)
    return o.reshape(b, 2 * h, 2 * w, o.shape[-1])


def _take_padded(x: jax.Array, sources: np.ndarray, axis: int) -> jax.Array:
    """``x`` gathered along ``axis`` by ``sources`` (−1: a zero)."""
    zero = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    ext = jnp.concatenate([x, zero], axis=axis)
    src = np.where(sources < 0, x.shape[axis], sources)
    return jnp.take(ext, jnp.asarray(src, jnp.int32), axis=axis)


def _row_corrections(out: jax.Array, x: jax.Array, kernel: jax.Array, rows: AxisPlan,
                     col_sources: np.ndarray) -> jax.Array:
    """Add the effect of the rows where the real row map differs from the periodic model.

    At each such padded position m the image row is ``x[real] − x[model]`` (zero rows for −1),
    spread along the columns by ``col_sources`` (padded); output row ``m − t + before`` gets
    its 1-D convolution with kernel row t.
    """
    if not rows.corrections:
        return out
    n_out = out.shape[1]
    taps = kernel.shape[0]
    real = np.asarray([r for _, r, _ in rows.corrections])
    model = np.asarray([c for _, _, c in rows.corrections])
    diff = _take_padded(x, real, 1) - _take_padded(x, model, 1)         # (B, M, W, C)
    diff = _take_padded(diff, col_sources, 2)                           # (B, M, 2W+k−1, C)
    o = kernel.shape[-1]
    k = jnp.transpose(kernel, (1, 2, 0, 3)).reshape(1, kernel.shape[1], kernel.shape[2],
                                                     taps * o)
    res = conv2d(diff, k, (1, 1), "VALID")
    res = res.reshape(res.shape[:3] + (taps, o))                        # (B, M, 2W, k, O)
    for j, (m, _, _) in enumerate(rows.corrections):
        for t in range(taps):
            r = m - t + rows.before
            if 0 <= r < n_out:
                out = out.at[:, r].add(res[:, j, :, t])
    return out


def upsample_conv_reference(x: jax.Array, kernel: jax.Array, row_map: np.ndarray,
                            col_map: np.ndarray) -> jax.Array:
    """The literal form: gather rows and columns by the index maps, then a stride-1 'SAME'
    convolution (TensorFlow padding, asymmetric for even kernels)."""
    hi = jnp.take(jnp.take(x, jnp.asarray(row_map), axis=1), jnp.asarray(col_map), axis=2)
    return jax.lax.conv_general_dilated(hi, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def use_phase_split(in_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
                    row_map: np.ndarray, col_map: np.ndarray) -> bool:
    """Whether :func:`upsample_conv` splits by phase for an NHWC input of ``in_shape`` and an
    HWIO ``kernel_shape``: both maps (shifted, clamped) ×2 repeats and both sides at least
    :data:`MIN_SPLIT_SIDE`."""
    h, w = int(in_shape[1]), int(in_shape[2])
    return (min(h, w) >= MIN_SPLIT_SIDE
            and phase_plan(row_map, h, int(kernel_shape[0])) is not None
            and phase_plan(col_map, w, int(kernel_shape[1])) is not None)


def upsample_conv(x: jax.Array, kernel: jax.Array, row_map: np.ndarray,
                  col_map: np.ndarray, *, force_split: bool = False) -> jax.Array:
    """``conv_same(x[:, row_map][:, :, col_map], kernel)`` computed at low resolution.

    x: (B, H, W, C); kernel: (kh, kw, C, O); row_map: (H_out,) and col_map: (W_out,) static
    integer source indices (numpy). Returns (B, H_out, W_out, O) in the dtype of ``x`` and
    ``kernel``. When both maps are (shifted, clamped) ×2 repeats the work is done by the phase
    split of the module docstring when :func:`use_phase_split` (``force_split``: whenever the
    maps allow, whatever the size; for tests); otherwise by :func:`upsample_conv_reference`.
    """
    rows = phase_plan(row_map, x.shape[1], kernel.shape[0])
    cols = phase_plan(col_map, x.shape[2], kernel.shape[1])
    if rows is None or cols is None or not (
            force_split or use_phase_split(x.shape, kernel.shape, row_map, col_map)):
        return upsample_conv_reference(x, kernel, row_map, col_map)
    out = _phases(x, kernel, rows, cols)
    # real = model + (real − model) along rows (with the real column map) + the model row
    # map with (real − model) along columns: two thin corrections, exact by linearity
    out = _row_corrections(out, x, kernel, rows, cols.real_map)
    if cols.corrections:
        xt = jnp.swapaxes(x, 1, 2)
        kt = jnp.swapaxes(kernel, 0, 1)
        out = jnp.swapaxes(_row_corrections(jnp.swapaxes(out, 1, 2), xt, kt, cols,
                                            rows.model_map), 1, 2)
    return out
