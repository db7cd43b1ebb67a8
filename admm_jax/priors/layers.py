"""Layer primitives of the OneNet / DU-ADMM networks (Flax NNX).

Everything here reproduces the semantics of the released code's ``layers_nearest.py``
(see ``original_code_spec.md`` §1.1); the implementation is independent.

Conventions
-----------
* Tensors are NHWC. Parameters are always stored in float32.
* ``compute_dtype`` (float32 or bfloat16) is the dtype in which convolutions and matmuls run;
  normalisation statistics are always computed in float32.
* "conv with stride s > 1" is **not** a strided convolution: the input is first resized by
  nearest neighbour to ``(H // s, W // s)`` and then convolved with stride 1 and a kernel of
  size ``max(k // s, 1)`` (:class:`Conv2D`).
* "deconv with stride s > 1" is **not** a transposed convolution: the input is resized by nearest
  neighbour to the target size and then convolved with stride 1 and the full ``k × k`` kernel
  (:class:`Deconv2D`).
* Padding is TensorFlow/JAX ``'SAME'``; for even kernels it is asymmetric (k=4: 1 before, 2 after;
  k=2: 0 before, 1 after).
* Every weight is initialised from a normal distribution with mean 0 and standard deviation 0.005
  truncated at ±2 standard deviations (TF1 ``truncated_normal_initializer(0, 0.005)``; the standard
  deviation is that of the *untruncated* normal, so the empirical std is ≈ 0.8796 · 0.005);
  biases start at 0, normalisation scales at 1 and offsets at 0.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from admm_jax.priors.conv import conv2d
from admm_jax.priors.upsample_conv import upsample_conv, use_phase_split

__all__ = [
    "INIT_STDDEV",
    "RESIZE_MODES",
    "ACTIVATIONS",
    "NORMS",
    "resize_index_map",
    "resize_nearest",
    "elu_like",
    "get_activation",
    "truncated_normal_init",
    "Conv2D",
    "Deconv2D",
    "InstanceNorm",
    "VirtualBatchNorm",
    "make_norm",
    "ChannelWiseDense",
    "Dense",
    "Bottleneck",
]

INIT_STDDEV = 0.005
RESIZE_MODES = ("custom", "tf_legacy")
ACTIVATIONS = ("elu_like", "elu")
NORMS = ("instance", "virtual_batch")


# --------------------------------------------------------------------------------------------
# Nearest-neighbour resizing
# --------------------------------------------------------------------------------------------

def resize_index_map(n_in: int, n_out: int, mode: str = "custom") -> np.ndarray:
    """Source index of every output position of a 1-D nearest-neighbour resize.

    Parameters
    ----------
    n_in, n_out:
        Input and output lengths (positive integers).
    mode:
        ``"custom"`` — the DU-ADMM code's own resize: ``floor(linspace(0, n_in-1, n_out)[k])``,
        i.e. ``floor(k·(n_in−1)/(n_out−1))`` (exact integer arithmetic; the last output always maps
        to the last input). 64→32 gives 0,2,…,60,63; 8→16 gives 0,0,0,1,1,…,6,6,7.
        ``"tf_legacy"`` — TF1 ``tf.image.resize_nearest_neighbor`` (align_corners=False, no
        half-pixel centres): ``floor(k·n_in/n_out)``. 64→32 gives 0,2,…,62; 8→16 gives 0,0,1,1,…,7,7.

    Returns
    -------
    numpy int32 array of shape ``(n_out,)`` with values in ``[0, n_in)``.
    """
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"resize sizes must be positive, got n_in={n_in}, n_out={n_out}")
    k = np.arange(n_out, dtype=np.int64)
    if mode == "custom":
        if n_out == 1:
            idx = np.zeros(1, dtype=np.int64)
        else:
            idx = (k * (n_in - 1)) // (n_out - 1)
    elif mode == "tf_legacy":
        idx = np.minimum((k * n_in) // n_out, n_in - 1)
    else:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    return idx.astype(np.int32)


def _index_map_pieces(idx: np.ndarray, n_in: int, max_pieces: int = 8):
    """Decompose a sorted index map into strided slices and repeated blocks.

    Returns a list of ``(start, stop, step, repeat)`` pieces such that concatenating
    ``repeat(x[start:stop:step], repeat)`` reproduces ``x[idx]``, or ``None`` when the map has
    no such short decomposition (the caller then falls back to a gather).
    """
    idx = np.asarray(idx, np.int64)
    if idx.size == 0 or np.any(np.diff(idx) < 0):
        return None
    values, counts = np.unique(idx, return_counts=True)
    pieces = []
    if np.all(counts == 1):
        # strictly increasing: greedy arithmetic progressions -> strided slices
        i = 0
        while i < len(values):
            if i + 1 == len(values):
                pieces.append((int(values[i]), int(values[i]) + 1, 1, 1))
                break
            step = int(values[i + 1] - values[i])
            j = i + 1
            while j + 1 < len(values) and values[j + 1] - values[j] == step:
                j += 1
            pieces.append((int(values[i]), int(values[j]) + 1, step, 1))
            i = j + 1
    else:
        # repeats: every source used must be contiguous (no gaps); group equal counts
        if np.any(np.diff(values) != 1):
            return None
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and counts[j + 1] == counts[i]:
                j += 1
            pieces.append((int(values[i]), int(values[j]) + 1, 1, int(counts[i])))
            i = j + 1
    return pieces if len(pieces) <= max_pieces else None


def _resize_axis(x: jax.Array, axis: int, n_out: int, mode: str) -> jax.Array:
    n_in = x.shape[axis]
    idx = resize_index_map(n_in, n_out, mode)
    pieces = _index_map_pieces(idx, n_in)
    if pieces is None:
        return jnp.take(x, idx, axis=axis, indices_are_sorted=True, mode="clip")
    parts = []
    for start, stop, step, rep in pieces:
        part = jax.lax.slice_in_dim(x, start, stop, step, axis=axis)
        if rep > 1:
            part = jnp.repeat(part, rep, axis=axis, total_repeat_length=part.shape[axis] * rep)
        parts.append(part)
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=axis)


def resize_nearest(x: jax.Array, size: Sequence[int], mode: str = "custom") -> jax.Array:
    """Nearest-neighbour resize of an NHWC batch to ``size = (H_out, W_out)``.

    Semantically a gather along H followed by a gather along W with the static index maps of
    :func:`resize_index_map`. The maps used by the networks (×½ and ×2 in both modes) are
    executed as a few strided slices / broadcast repeats, whose gradients are cheap pads and
    sums instead of scatter-adds; any other map falls back to ``jnp.take``. A no-op when the
    size already matches.
    """
    h_out, w_out = int(size[0]), int(size[1])
    if x.ndim != 4:
        raise ValueError(f"resize_nearest expects NHWC input, got shape {x.shape}")
    if x.shape[1] != h_out:
        x = _resize_axis(x, 1, h_out, mode)
    if x.shape[2] != w_out:
        x = _resize_axis(x, 2, w_out, mode)
    return x


# --------------------------------------------------------------------------------------------
# Activations and initialisers
# --------------------------------------------------------------------------------------------

def elu_like(x: jax.Array) -> jax.Array:
    """Smooth ELU-like activation of the DU-ADMM code: ``softplus(2x + 2) / 2 − 1``.

    Tends to −1 for x → −∞, to x for x → +∞; f(0) = log(1 + e²)/2 − 1 ≈ 0.0635.
    """
    return jax.nn.softplus(2.0 * x + 2.0) / 2.0 - 1.0


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """``"elu_like"`` → :func:`elu_like`; ``"elu"`` → :func:`jax.nn.elu` (α = 1)."""
    if name == "elu_like":
        return elu_like
    if name == "elu":
        return jax.nn.elu
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


_INIT_BLOCK = 1 << 18


def _zeros(n: int) -> jax.Array:
    return jnp.asarray(np.zeros((n,), np.float32))


def _ones(n: int) -> jax.Array:
    return jnp.asarray(np.ones((n,), np.float32))


@jax.jit
def _truncated_normal_block(key: jax.Array, index: jax.Array) -> jax.Array:
    return jax.random.truncated_normal(jax.random.fold_in(key, index), -2.0, 2.0,
                                       (_INIT_BLOCK,), jnp.float32)


def truncated_normal_init(stddev: float = INIT_STDDEV):
    """Initializer ``N(0, stddev²)`` truncated to ``[−2·stddev, 2·stddev]`` (TF1 semantics).

    ``stddev`` is the standard deviation of the untruncated normal. The samples are drawn in
    fixed-size blocks of 2¹⁸ from one compiled function (block ``i`` uses ``fold_in(key, i)``),
    so creating a network compiles the sampler once instead of once per weight shape, which on
    CPU would cost seconds per layer. Results are identical eagerly and under a trace.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        shape = tuple(int(d) for d in shape)
        n = int(np.prod(shape))
        n_blocks = max(1, -(-n // _INIT_BLOCK))
        blocks = [_truncated_normal_block(key, np.uint32(i)) for i in range(n_blocks)]
        if isinstance(key, jax.core.Tracer):   # under jit / eval_shape
            flat = blocks[0] if n_blocks == 1 else jnp.concatenate(blocks)
            return (flat[:n].reshape(shape) * np.float32(stddev)).astype(dtype)
        # eager: post-process on the host (avoids one XLA compilation per weight shape)
        flat = np.concatenate([np.asarray(b) for b in blocks])
        return jnp.asarray((flat[:n].reshape(shape) * np.float32(stddev)).astype(dtype))

    return init


# --------------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------------

def _conv_same(x: jax.Array, kernel: jax.Array, bias: jax.Array | None,
               compute_dtype) -> jax.Array:
    y = conv2d(x.astype(compute_dtype), kernel.astype(compute_dtype), (1, 1), "SAME")
    if bias is not None:
        y = y + bias.astype(compute_dtype)
    return y


class _ResizeConv(nnx.Module):
    """Shared set-up of :class:`Conv2D` and :class:`Deconv2D`: a ``k × k`` stride-1 'SAME'
    convolution (``kernel`` ``(k, k, in, out)``, ``bias`` ``(out,)``) preceded by an NN resize."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, stride: int,
                 use_bias: bool, resize_mode: str, compute_dtype, rngs: nnx.Rngs):
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        self.stride = int(stride)
        self.resize_mode = resize_mode
        self.compute_dtype = compute_dtype
        self.kernel_size = k = int(kernel_size)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.kernel = nnx.Param(truncated_normal_init()(
            rngs.params(), (k, k, self.in_features, self.out_features)))
        self.bias = nnx.Param(_zeros(self.out_features)) if use_bias else None

    def _conv(self, x: jax.Array) -> jax.Array:
        bias = None if self.bias is None else self.bias[...]
        return _conv_same(x, self.kernel[...], bias, self.compute_dtype)


class Conv2D(_ResizeConv):
    """The reference's ``new_conv_layer``: optional NN-downsample, then a stride-1 'SAME' conv.

    For ``stride > 1`` the input is resized to ``(H // stride, W // stride)`` with
    :func:`resize_nearest` and the kernel is ``max(kernel_size // stride, 1)`` wide; so a declared
    "4×4 stride-2" conv is an NN-downsample by 2 followed by a 2×2 conv.
    Parameters: ``kernel`` of shape ``(k', k', in, out)`` and ``bias`` of shape ``(out,)``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
                 use_bias: bool = True, resize_mode: str = "custom",
                 compute_dtype=jnp.float32, rngs: nnx.Rngs):
        k = int(kernel_size)
        if int(stride) > 1:
            k = max(k // int(stride), 1)
        super().__init__(in_features, out_features, k, stride, use_bias, resize_mode,
                         compute_dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.stride > 1:
            x = resize_nearest(x, (x.shape[1] // self.stride, x.shape[2] // self.stride),
                               self.resize_mode)
        return self._conv(x)


class Deconv2D(_ResizeConv):
    """The reference's ``new_deconv_layer``: NN-upsample to the target size, then a stride-1 conv.

    For ``stride > 1`` the input is resized to ``output_size`` (default ``(H·stride, W·stride)``)
    and convolved with the **full** ``k × k`` kernel, stride 1, 'SAME' padding. No transposed
    convolution is involved. Parameters: ``kernel`` ``(k, k, in, out)``, ``bias`` ``(out,)``.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
                 use_bias: bool = True, resize_mode: str = "custom",
                 compute_dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(in_features, out_features, kernel_size, stride, use_bias, resize_mode,
                         compute_dtype, rngs)

    def __call__(self, x: jax.Array, output_size: Sequence[int] | None = None) -> jax.Array:
        if self.stride > 1 or output_size is not None:
            if output_size is None:
                output_size = (x.shape[1] * self.stride, x.shape[2] * self.stride)
            if tuple(output_size) != tuple(x.shape[1:3]):
                return self._upsample_conv(x, output_size)
        return self._conv(x)

    def _upsample_conv(self, x: jax.Array, output_size: Sequence[int]) -> jax.Array:
        # resize + conv in one: for the ×2 maps the networks use, from 16×16 inputs on, the
        # convolution runs at the input resolution, phase by phase
        # (admm_jax.priors.upsample_conv); same values
        row_map = resize_index_map(x.shape[1], int(output_size[0]), self.resize_mode)
        col_map = resize_index_map(x.shape[2], int(output_size[1]), self.resize_mode)
        if not use_phase_split(x.shape, self.kernel.shape, row_map, col_map):
            return self._conv(resize_nearest(x, output_size, self.resize_mode))
        cd = self.compute_dtype
        y = upsample_conv(x.astype(cd), self.kernel[...].astype(cd), row_map, col_map)
        if self.bias is not None:
            y = y + self.bias[...].astype(cd)
        return y


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

class InstanceNorm(nnx.Module):
    """Instance normalisation (``tf.contrib.layers.instance_norm`` defaults).

    Per sample and per channel: ``(x − mean_HW) / sqrt(var_HW + eps) · scale + offset`` with the
    biased variance over H, W and eps = 1e-6. Statistics are computed in float32; the output is
    float32. ``n_reference`` is accepted for interface compatibility with
    :class:`VirtualBatchNorm` and ignored (instance statistics cannot see other samples).
    """

    def __init__(self, num_features: int, *, eps: float = 1e-6, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.scale = nnx.Param(_ones(self.num_features))
        self.offset = nnx.Param(_zeros(self.num_features))

    def __call__(self, x: jax.Array, n_reference: int = 0) -> jax.Array:
        del n_reference
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return y * self.scale[...] + self.offset[...]


class VirtualBatchNorm(nnx.Module):
    """The original OneNet's "poor man's virtual batch norm" (slim ``batch_norm`` with weights).

    The batch fed to the network is ``[instances; reference]``: the **last** ``n_reference`` rows
    are a fixed reference batch that travels through the whole network alongside the instances.

    * ``0 < n_reference < B`` (training): mean and biased variance are taken over batch, H and W
      with per-sample weights ``1/(n_ref+1)`` for instances and ``n_ref/(n_ref+1)`` for reference
      rows (when there are as many instances as reference images, the instance part thus gets
      total weight 1/(n_ref+1) and the reference part n_ref/(n_ref+1)). All rows are normalised
      with these shared statistics. Stored statistics are not updated (the original's
      exponential moving average is overwritten before testing anyway, see next case).
    * ``n_reference == B`` (a reference-only pass): uniform statistics of the batch are used *and
      stored* in ``mean`` / ``var`` (slim's decay 0 case; this is what ``update_popmean.py`` does
      before testing). Call it eagerly (or under ``nnx.jit``) so that the update persists.
    * ``n_reference == 0`` (inference): the stored ``mean`` / ``var`` are used (initially 0 / 1).

    eps = 1e-3 (slim default), learnable ``scale`` (init 1) and ``offset`` (init 0); statistics in
    float32, output float32.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-3, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.scale = nnx.Param(_ones(self.num_features))
        self.offset = nnx.Param(_zeros(self.num_features))
        self.mean = nnx.BatchStat(_zeros(self.num_features))
        self.var = nnx.BatchStat(_ones(self.num_features))

    def __call__(self, x: jax.Array, n_reference: int = 0) -> jax.Array:
        x = x.astype(jnp.float32)
        batch = x.shape[0]
        n_ref = int(n_reference)
        if n_ref < 0 or n_ref > batch:
            raise ValueError(f"n_reference={n_ref} must lie in [0, batch={batch}]")
        if n_ref == 0:
            mean, var = self.mean[...], self.var[...]
        else:
            n_inst = batch - n_ref
            if n_inst > 0:
                w = np.concatenate([np.full(n_inst, 1.0 / (n_ref + 1.0)),
                                    np.full(n_ref, n_ref / (n_ref + 1.0))])
            else:
                w = np.ones(batch)
            w = jnp.asarray(w / w.sum(), jnp.float32)
            m_b = jnp.mean(x, axis=(1, 2))                               # (B, C)
            mean = jnp.einsum("b,bc->c", w, m_b)
            v_b = jnp.mean(jnp.square(x - mean), axis=(1, 2))            # (B, C)
            var = jnp.einsum("b,bc->c", w, v_b)
            if n_inst == 0:
                self.mean[...] = jax.lax.stop_gradient(mean)
                self.var[...] = jax.lax.stop_gradient(var)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return y * self.scale[...] + self.offset[...]


def make_norm(kind: str, num_features: int, *, rngs: nnx.Rngs):
    """``"instance"`` → :class:`InstanceNorm`; ``"virtual_batch"`` → :class:`VirtualBatchNorm`."""
    if kind == "instance":
        return InstanceNorm(num_features, rngs=rngs)
    if kind == "virtual_batch":
        return VirtualBatchNorm(num_features, rngs=rngs)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


# --------------------------------------------------------------------------------------------
# Dense layers
# --------------------------------------------------------------------------------------------

class ChannelWiseDense(nnx.Module):
    """Channel-wise fully connected layer (``channel_wise_fc_layer``).

    Input ``(B, H, W, C)`` is viewed as ``(B, H·W, C)`` (spatial index ``h·W + w``, row-major);
    channel ``c`` gets its own ``(H·W) × (H·W)`` matrix: ``out[b, q, c] = Σ_p in[b, p, c] ·
    kernel[c, p, q]`` (+ ``bias[q]`` if enabled), reshaped back to ``(B, H, W, C)``.
    Parameter ``kernel`` has shape ``(C, H·W, H·W)``; the projector uses no bias.
    """

    def __init__(self, num_channels: int, spatial_size: int = 64, *, use_bias: bool = False,
                 compute_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_channels, self.spatial_size = int(num_channels), int(spatial_size)
        self.compute_dtype = compute_dtype
        self.kernel = nnx.Param(truncated_normal_init()(
            rngs.params(), (self.num_channels, self.spatial_size, self.spatial_size)))
        self.bias = (nnx.Param(_zeros(self.spatial_size))
                     if use_bias else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        if h * w != self.spatial_size or c != self.num_channels:
            raise ValueError(f"ChannelWiseDense expects H·W={self.spatial_size} and "
                             f"C={self.num_channels}, got {x.shape}")
        cd = self.compute_dtype
        flat = x.reshape(b, h * w, c).astype(cd)
        y = jnp.einsum("bpc,cpq->bqc", flat, self.kernel[...].astype(cd))
        if self.bias is not None:
            y = y + self.bias[...].astype(cd)[None, :, None]
        return y.reshape(b, h, w, c)


class Dense(nnx.Module):
    """``new_fc_layer``: flatten all non-batch axes, then ``x @ kernel + bias``."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 compute_dtype=jnp.float32, rngs: nnx.Rngs):
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.compute_dtype = compute_dtype
        self.kernel = nnx.Param(truncated_normal_init()(
            rngs.params(), (self.in_features, self.out_features)))
        self.bias = nnx.Param(_zeros(self.out_features)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got {x.shape[1]}")
        cd = self.compute_dtype
        y = x.astype(cd) @ self.kernel[...].astype(cd)
        if self.bias is not None:
            y = y + self.bias[...].astype(cd)
        return y.astype(jnp.float32)


# --------------------------------------------------------------------------------------------
# Pre-activation bottleneck (discriminators)
# --------------------------------------------------------------------------------------------

class Bottleneck(nnx.Module):
    """Pre-activation ResNet bottleneck (``bottleneck`` / ``bottleneck_flexible``).

    ``a = act(norm1(x))``; main path ``conv1×1(a, C_out/4, stride) → norm → act → conv3×3(C_out/4)
    → norm → act → conv1×1(C_out)``; shortcut ``conv1×1(a, C_out, stride)`` when ``stride ≠ 1``
    (an NN-downsample followed by a 1×1 conv, see :class:`Conv2D`), else the identity (then
    ``C_in`` must equal ``C_out``). Output = shortcut + main path. All convs have biases.
    ``out_features=None`` gives the plain ``bottleneck`` rule: ``2·C_in`` if ``stride ≠ 1`` else
    ``C_in``.
    """

    def __init__(self, in_features: int, out_features: int | None = None, *, stride: int = 1,
                 compress_ratio: int = 4, norm: str = "instance", activation: str = "elu",
                 resize_mode: str = "tf_legacy", compute_dtype=jnp.float32, rngs: nnx.Rngs):
        c_in = int(in_features)
        if out_features is None:
            out_features = 2 * c_in if stride != 1 else c_in
        c_out = int(out_features)
        if stride == 1 and c_in != c_out:
            raise ValueError("a stride-1 bottleneck has an identity shortcut: C_in must equal C_out")
        c_mid = max(c_out // compress_ratio, 1)
        self.stride = int(stride)
        self.in_features, self.out_features, self.mid_features = c_in, c_out, c_mid
        get_activation(activation)  # validate
        self.activation = activation
        kw = dict(resize_mode=resize_mode, compute_dtype=compute_dtype, rngs=rngs)
        self.norm1 = make_norm(norm, c_in, rngs=rngs)
        self.conv_sc = Conv2D(c_in, c_out, 1, stride=stride, **kw) if stride != 1 else None
        self.conv1 = Conv2D(c_in, c_mid, 1, stride=stride, **kw)
        self.norm2 = make_norm(norm, c_mid, rngs=rngs)
        self.conv2 = Conv2D(c_mid, c_mid, 3, **kw)
        self.norm3 = make_norm(norm, c_mid, rngs=rngs)
        self.conv3 = Conv2D(c_mid, c_out, 1, **kw)

    def __call__(self, x: jax.Array, n_reference: int = 0) -> jax.Array:
        act = get_activation(self.activation)
        a = act(self.norm1(x, n_reference))
        shortcut = x if self.conv_sc is None else self.conv_sc(a)
        h = act(self.norm2(self.conv1(a), n_reference))
        h = act(self.norm3(self.conv2(h), n_reference))
        h = self.conv3(h)
        return shortcut.astype(jnp.float32) + h.astype(jnp.float32)
